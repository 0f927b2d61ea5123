//! `vigil status`: the box at a glance (cameras, open alerts, disk, clock,
//! keys, HTTPS certificate fingerprint).

use std::path::Path;

use super::{load_config, open_index, open_keyring, Failure};
use crate::base::time as cli_time;
use crate::db::audit;
use crate::keys::sealing::KekSealer;
use crate::keys::secrets;

pub fn run(config_path: &Path) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let index = open_index(&config)?;
    let cams = index.cameras()?;
    let streaming = cams.iter().filter(|c| c.state == "streaming").count();
    let clocks = crate::db::camera_clock::readings(&index).map_err(|e| Failure::Runtime(e.into()))?;
    println!(
        "cameras: {streaming}/{} streaming",
        config.cameras.iter().filter(|c| c.enabled).count()
    );
    for c in &cams {
        let clock = match clocks.iter().find(|(n, _)| *n == c.name) {
            Some((_, r)) => format!(
                "  clock {:+.1} s ({}{})",
                r.drift_ms as f64 / 1000.0,
                r.source.as_str(),
                if r.drift_ms.abs() > crate::db::camera_clock::DRIFT_ALERT_MS {
                    ", OFF"
                } else {
                    ""
                }
            ),
            None => String::new(),
        };
        println!(
            "  {:<16} {:<10} since {}{clock}",
            c.name,
            c.state,
            cli_time::format_ns(c.state_since_ns)
        );
    }
    let open = crate::db::alerts::open(index.conn()).map_err(|e| Failure::Runtime(e.into()))?;
    println!(
        "alerts: {} open{}",
        open.len(),
        if open.is_empty() { "" } else { " (vigil alerts list)" }
    );
    for a in &open {
        println!("  {:<8} {:<22} {}", a.severity, a.code, a.message);
    }
    match crate::base::host::fs_space(&config.storage_dir) {
        Some((avail, total)) => println!(
            "storage: {} free of {} ({:.1}%) in {}",
            human_bytes(avail),
            human_bytes(total),
            avail as f64 * 100.0 / total.max(1) as f64,
            config.storage_dir.display()
        ),
        None => println!("storage: {} is not readable", config.storage_dir.display()),
    }
    match &config.replication {
        None => println!("replication: off (no [replication] section)"),
        Some(r) => {
            let l = crate::db::replication::lag(index.conn()).map_err(|e| Failure::Runtime(e.into()))?;
            let now = crate::base::clock::now_ns();
            let behind = match l.oldest_queued_start_ns {
                None => "up to date".to_string(),
                Some(t) => format!(
                    "{} behind, {} recording(s) ({}) waiting",
                    crate::base::time::format_duration_s((now - t).max(0) / 1_000_000_000),
                    l.queued,
                    human_bytes(l.queued_bytes)
                ),
            };
            println!(
                "replication: {} to {}/{}: {} in the bucket ({}); {behind}{}",
                r.schedule.describe(),
                r.endpoint.as_str().trim_end_matches('/'),
                r.bucket,
                l.uploaded,
                human_bytes(l.uploaded_bytes),
                l.last_error.map(|e| format!("; last error: {e}")).unwrap_or_default()
            );
        }
    }
    let ts = crate::base::host::time_sync();
    println!(
        "clock: {} (max error {} ms)",
        if ts.synchronised {
            "synchronised"
        } else {
            "NOT synchronised"
        },
        ts.max_error_us / 1000
    );
    println!("keys: {}", KekSealer::new(config.keys.clone()).describe());
    match &config.http {
        None => println!("https: off (no [http] section)"),
        Some(http) => {
            let fp = match &http.cert_key {
                Some((cert, _)) => std::fs::read(cert)
                    .ok()
                    .and_then(|pem| rustls_pemfile::certs(&mut &pem[..]).next()?.ok())
                    .map(|der| crate::web::tls::fingerprint(der.as_ref())),
                None => open_keyring(&config, &audit::cli_actor())
                    .ok()
                    .and_then(|kr| {
                        secrets::get(&kr, crate::web::tls::CERT_SECRET, "status: certificate fingerprint").ok()
                    })
                    .and_then(|pem| rustls_pemfile::certs(&mut &pem[..]).next()?.ok())
                    .map(|der| crate::web::tls::fingerprint(der.as_ref())),
            };
            println!("https: https://{} ", http.listen);
            println!(
                "certificate SHA-256 fingerprint: {}",
                fp.unwrap_or_else(|| "(not made yet: the daemon makes it at first start)".into())
            );
        }
    }
    Ok(())
}

/// Bytes in binary units with one decimal, e.g. "1.5 GiB".
fn human_bytes(b: u64) -> String {
    let mut v = b as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} PiB")
}
