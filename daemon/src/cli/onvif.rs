//! `vigil cameras discover`, `cameras add --onvif`, `cameras sync-time` and
//! `cameras ptz`: ONVIF cameras found on the camera network, onboarded as
//! managed cameras (password in the secrets store), their clocks set and
//! their heads moved (both audited by `run::camera_control`).

use std::path::Path;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{load_config, open_index, open_keyring, read_stdin_secret, Failure};
use crate::config::Config;
use crate::ingest::onvif::onboard::{self, OnboardError};
use crate::ingest::onvif::{discovery, Device, OnvifError};
use crate::keys::keyring::Keyring;
use crate::run::camera_control::{self, ControlError, PtzOp};

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}

/// The password read from standard input, as text.
fn stdin_password() -> Result<Zeroizing<String>, Failure> {
    let v = read_stdin_secret("the camera's password")?;
    let s = std::str::from_utf8(&v)
        .map_err(|_| Failure::Usage("the password on standard input is not UTF-8 text".into()))?;
    Ok(Zeroizing::new(s.to_string()))
}

/// A camera error: exit 1 with its sentence.
fn camera_failure(e: OnvifError) -> Failure {
    Failure::Runtime(anyhow::anyhow!("{e}"))
}

pub fn discover(
    config_path: &Path,
    interface: Option<String>,
    wait_ms: u64,
    username: Option<String>,
    password_stdin: bool,
    json: bool,
) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let interface = config
        .onvif
        .discovery_interface(interface.as_deref())
        .map_err(Failure::Usage)?;
    if password_stdin && username.is_none() {
        return Err(Failure::Usage("--password-stdin needs --username".into()));
    }
    let password = if password_stdin { Some(stdin_password()?) } else { None };
    let rt = runtime()?;
    let rows = rt.block_on(async {
        let found = discovery::probe(interface, Duration::from_millis(wait_ms))
            .await
            .map_err(camera_failure)?;
        Ok::<_, Failure>(onboard::check_found(found, username.as_deref(), password.as_ref()).await)
    })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| Failure::Runtime(e.into()))?
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("no ONVIF camera answered on {interface} within {wait_ms} ms");
        return Ok(());
    }
    println!(
        "{:<32} {:<16} {:<20} {:<12} CREDENTIALS",
        "ADDRESS", "MAKER", "MODEL", "FIRMWARE"
    );
    for r in &rows {
        println!(
            "{:<32} {:<16} {:<20} {:<12} {}",
            r.address, r.manufacturer, r.model, r.firmware, r.credentials
        );
    }
    Ok(())
}

impl From<OnboardError> for Failure {
    fn from(e: OnboardError) -> Self {
        match e {
            OnboardError::Usage(m) => Failure::Usage(m),
            OnboardError::Exists(_) => Failure::Usage(e.to_string()),
            other => Failure::Runtime(anyhow::anyhow!("{other}")),
        }
    }
}

pub fn add(
    config_path: &Path,
    address: &str,
    username: String,
    name: Option<String>,
    record_audio: bool,
) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let url = onboard::device_url(address)?;
    if let Some(n) = &name {
        if !crate::base::names::valid_camera_name(n) {
            return Err(Failure::Usage(format!(
                "\"{n}\": {}",
                crate::base::names::CAMERA_NAME_RULE
            )));
        }
    }
    let password = stdin_password()?;
    let rt = runtime()?;
    let found = rt
        .block_on(onboard::inspect(
            url.clone(),
            Some(username.clone()),
            Some(password.clone()),
        ))
        .map_err(camera_failure)?;
    let name = name.unwrap_or_else(|| onboard::default_name(&found.info, &url));
    if config.camera(&name).is_some() {
        return Err(Failure::Usage(format!(
            "a camera named {name} is defined in vigil.toml; choose another --name"
        )));
    }
    println!(
        "{} {} (firmware {}, serial {})",
        found.info.manufacturer, found.info.model, found.info.firmware, found.info.serial
    );
    println!("main stream: {} ({})", found.main.describe(), found.main.token);
    match &found.sub {
        Some(s) => println!("sub stream:  {} ({})", s.describe(), s.token),
        None => println!("sub stream:  none"),
    }
    let camera = onboard::managed_camera(&name, &found, Some(username), !password.is_empty(), record_audio)
        .ok_or_else(|| camera_failure(OnvifError::NoVideoProfile))?;
    let actor = crate::db::audit::cli_actor();
    let keyring = open_keyring(&config, &actor)?;
    let index = open_index(&config)?;
    onboard::store(&keyring, &index, &actor, &camera, Some(password.as_str()))?;
    println!("added camera {name}; the daemon records it from its next start (`systemctl restart vigil`)");
    Ok(())
}

/// The ONVIF device of camera `name` (in vigil.toml or managed), logged in
/// with its stored credentials.
pub fn camera_device(config: &Config, keyring: &Keyring, name: &str) -> Result<Device, Failure> {
    let index = open_index(config)?;
    let cam = match config.camera(name) {
        Some(c) => c.clone(),
        None => crate::db::cameras::find_managed(&index, name)
            .map_err(|e| Failure::Runtime(e.into()))?
            .and_then(|m| m.to_config())
            .ok_or_else(|| Failure::Usage(format!("no camera named {name}")))?,
    };
    let url = cam.onvif_url.clone().ok_or_else(|| {
        Failure::Usage(format!(
            "camera {name} has no ONVIF address (onvif_url); add it with `vigil cameras add --onvif`"
        ))
    })?;
    let password = super::run::camera_password(config, &cam, keyring)?;
    Ok(Device::new(url, cam.username.clone(), password))
}

fn seconds(ms: i64) -> String {
    format!("{:+.1} s", ms as f64 / 1000.0)
}

pub fn sync_time(config_path: &Path, name: &str, ntp: Option<String>) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let actor = crate::db::audit::cli_actor();
    let keyring = open_keyring(&config, &actor)?;
    let device = camera_device(&config, &keyring, name)?;
    let rt = runtime()?;
    let (before, after) = rt
        .block_on(camera_control::sync_time(
            &device,
            &config.db_path,
            &actor,
            name,
            ntp.as_deref(),
        ))
        .map_err(control_failure)?;
    println!("drift before: {} (camera minus this box)", seconds(before.drift_ms));
    match &ntp {
        Some(s) => println!("set to NTP server {s}"),
        None => println!("set to this box's UTC"),
    }
    println!("drift after:  {}", seconds(after.drift_ms));
    Ok(())
}

fn control_failure(e: ControlError) -> Failure {
    match e {
        ControlError::BadRequest(m) => Failure::Usage(m),
        other => Failure::Runtime(anyhow::anyhow!("{other}")),
    }
}

/// `vigil cameras ptz NAME ...`: one PTZ command, audited as the CLI's.
pub fn ptz(config_path: &Path, name: &str, op: PtzOp) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let actor = crate::db::audit::cli_actor();
    let keyring = open_keyring(&config, &actor)?;
    let device = camera_device(&config, &keyring, name)?;
    let rt = runtime()?;
    let what = op.describe();
    let preset = rt
        .block_on(camera_control::ptz(
            camera_control::Target::Device(&device),
            &config.db_path,
            &actor,
            crate::db::users::Role::Admin,
            name,
            op,
        ))
        .map_err(control_failure)?;
    match preset {
        Some(token) => println!("{name}: {what}: saved as preset {token}"),
        None => println!("{name}: {what}: done"),
    }
    Ok(())
}
