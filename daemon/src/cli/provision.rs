//! `vigil provision`: after `keys init`, make the device signing key, the
//! HTTPS certificate and the first admin (one-time password), then print the
//! provisioning report. Idempotent.

use std::path::{Path, PathBuf};

use super::{load_config, open_index, open_keyring, write_private, Failure};
use crate::base::clock::SystemClock;
use crate::db::audit;

#[derive(clap::Args)]
pub struct Args {
    /// Write the admin's one-time password to this new file (mode 0600)
    /// instead of printing it.
    #[arg(long)]
    admin_password_file: Option<PathBuf>,
    /// Where the recovery key went (for the report), e.g. "printed" or a path.
    #[arg(long, default_value = "printed at `vigil keys init`")]
    recovery_key: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(
    config_path: &Path,
    Args {
        admin_password_file,
        recovery_key,
        report,
    }: Args,
) -> Result<(), Failure> {
    provision(
        config_path,
        admin_password_file.as_deref(),
        &recovery_key,
        report.as_deref(),
    )
}

fn provision(
    config_path: &Path,
    admin_password_file: Option<&Path>,
    recovery_key: &str,
    report_path: Option<&Path>,
) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let actor = audit::cli_actor();
    let kr = open_keyring(&config, &actor)?;
    let index = open_index(&config)?;
    let device = crate::evidence::device::DeviceKey::load_or_create(&kr, "provisioning")
        .map_err(|e| Failure::Runtime(e.into()))?;
    let https = match &config.http {
        Some(http) => Some(
            crate::web::tls::server_config(http, &kr)
                .map_err(|e| Failure::Runtime(e.into()))?
                .1,
        ),
        None => None,
    };
    // The one-time password goes to the private file or, once, to standard
    // output: never to the log. It is handed over before the admin is
    // committed, so a file that cannot be written leaves no admin behind.
    let mut delivered_to = String::new();
    let deliver = |pw: &str| -> Result<(), String> {
        match admin_password_file {
            Some(p) => {
                write_private(p, &format!("{pw}\n")).map_err(failure_text)?;
                delivered_to = format!("created; one-time password written to {}", p.display());
            }
            None => {
                println!("ADMIN ONE-TIME PASSWORD (shown once; it must be changed at first login): {pw}");
                delivered_to = "created; one-time password printed above".to_string();
            }
        }
        Ok(())
    };
    let created = crate::db::users::ensure_first_admin(&index, &actor, "provisioning", &SystemClock, deliver).map_err(
        |e| match e {
            crate::db::users::UserError::Deliver(_) => Failure::Usage(e.to_string()),
            e => Failure::Runtime(e.into()),
        },
    )?;
    let admin = if created {
        delivered_to
    } else {
        "exists (not changed)".to_string()
    };
    let ks = crate::keys::keyring::status(&index).map_err(Failure::from)?;
    let kr_row = ks
        .keyring
        .ok_or_else(|| Failure::Usage("run `vigil keys init` first".into()))?;
    // The recordings directory may not exist yet: its nearest existing ancestor is on the same volume.
    let volume = config
        .storage_dir
        .ancestors()
        .find(|p| p.exists())
        .and_then(|p| crate::base::host::volume(p).ok());
    let id = device.identity();
    let report = serde_json::json!({
        "device_id": id.device_id,
        "signing_key_fingerprint_sha256": id.fingerprint(),
        "https_certificate_fingerprint_sha256": https,
        "kek": { "id": vigil_format::hex(&kr_row.kek_id), "sealing": kr_row.sealing, "pcrs": kr_row.pcrs },
        "recovery_key": recovery_key,
        "recordings_volume": volume.as_ref().map(|v| v.describe()),
        "recordings_volume_luks2": volume.as_ref().is_some_and(|v| v.is_luks2()),
        "admin": admin,
        "software": crate::evidence::bundle::software_version(),
    });
    crate::evidence::device::record_provisioning(index.conn(), &actor, id, &admin);
    println!("=== Vigil provisioning report");
    println!("device id:                 {}", id.device_id);
    println!("signing key fingerprint:   {}", id.fingerprint());
    println!(
        "HTTPS certificate:         {}",
        https.as_deref().unwrap_or("none (no [http] section)")
    );
    println!(
        "key-encryption key:        {} sealed by {} (PCRs: {})",
        vigil_format::hex(&kr_row.kek_id),
        kr_row.sealing,
        if kr_row.pcrs.is_empty() {
            "none"
        } else {
            kr_row.pcrs.as_str()
        }
    );
    println!("recovery key:              {recovery_key}");
    println!(
        "recordings volume:         {}",
        volume
            .as_ref()
            .map(|v| v.describe())
            .unwrap_or_else(|| "unknown".into())
    );
    println!("admin:                     {admin}");
    if let Some(p) = report_path {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Failure::Runtime(e.into()))?;
        std::fs::write(p, format!("{text}\n")).map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?;
        println!("report:                    {}", p.display());
    }
    Ok(())
}

/// The message of a failure, for an error that carries text.
fn failure_text(f: Failure) -> String {
    match f {
        Failure::Usage(s) | Failure::Integrity(s) | Failure::OriginNotVerified(s) => s,
        Failure::Runtime(e) => format!("{e:#}"),
    }
}
