//! The channels alerts go out through: those of vigil.toml's
//! `[[alerts.channel]]` (they win a name clash) and those added from the
//! web UI (stored in SQLite, their secret in the secrets store as
//! `alert-<name>`). Also the one test message a person sends through a
//! channel, audited.

use std::time::Instant;

use crate::config::alerts::{AlertsConfig, ChannelConfig};
use crate::db::audit::{self, Outcome};
use crate::keys::keyring::Keyring;

use super::{SendError, Transport, TransportContext};

/// Where a channel is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Config,
    Ui,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Ui => "ui",
        }
    }
}

/// The secrets-store name of a UI channel's secret.
pub fn ui_secret_name(channel: &str) -> String {
    format!("alert-{channel}")
}

/// Every channel: the config file's, then the UI's (skipping a name the
/// file has, and a stored one that no longer parses, with a warning).
pub fn all(conn: &rusqlite::Connection, file: &AlertsConfig) -> rusqlite::Result<Vec<(ChannelConfig, Source)>> {
    let mut out: Vec<(ChannelConfig, Source)> = file.channels.iter().map(|c| (c.clone(), Source::Config)).collect();
    for s in crate::db::alert_outbox::stored_channels(conn)? {
        if out.iter().any(|(c, _)| c.name == s.name) {
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(&s.settings)
            .map_err(|e| e.to_string())
            .and_then(|v| ChannelConfig::from_json(&s.name, &v));
        match parsed {
            Ok(mut c) => {
                c.secret = Some(ui_secret_name(&s.name));
                out.push((c, Source::Ui));
            }
            Err(e) => tracing::warn!(channel = %s.name, "stored alert channel is unusable, skipped: {e}"),
        }
    }
    Ok(out)
}

/// Opens channel `cfg`'s transport, reading its secret (audited) if it
/// has one; `for_test`: a one-off transport beside the daemon's.
pub fn open(
    cfg: &ChannelConfig,
    keyring: &Keyring,
    ctx: &TransportContext,
    for_test: bool,
) -> Result<Transport, SendError> {
    let secret = match &cfg.secret {
        None => None,
        Some(name) => match crate::keys::secrets::get(keyring, name, &format!("alert channel {}", cfg.name)) {
            Ok(v) => Some(v),
            Err(crate::keys::secrets::SecretError::NotFound(_)) => {
                return Err(SendError::Config(format!(
                    "channel {}: no secret named \"{name}\"; add it with `vigil secrets set {name}` (value on stdin)",
                    cfg.name
                )))
            }
            Err(e) => {
                return Err(SendError::Config(format!(
                    "channel {}: secret \"{name}\": {e}",
                    cfg.name
                )))
            }
        },
    };
    if for_test {
        Transport::for_test(cfg, secret, ctx)
    } else {
        Transport::new(cfg, secret, ctx)
    }
}

/// What a test send did.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub channel: String,
    pub key: String,
    pub ms: u128,
    /// None when delivered.
    pub error: Option<String>,
}

/// Sends one test message through channel `name` now, audited as
/// `alerts.test` by `actor` (ok or failed, with the error).
pub async fn send_test(
    db_path: &std::path::Path,
    file: &AlertsConfig,
    keyring: &Keyring,
    ctx: &TransportContext,
    name: &str,
    actor: &str,
) -> Result<TestResult, String> {
    let idx = crate::db::Index::open(db_path).map_err(|e| e.to_string())?;
    let channels = all(idx.conn(), file).map_err(|e| e.to_string())?;
    let Some((cfg, _)) = channels.into_iter().find(|(c, _)| c.name == name) else {
        return Err(format!("no alert channel named \"{name}\""));
    };
    let key = format!(
        "vigil-t-{}",
        vigil_format::hex(&crate::keys::random_bytes::<8>().map_err(|e| e.to_string())?)
    );
    let now = crate::base::clock::now_ns();
    let msg = super::message::test(ctx, &key, name, actor, now);
    let t = Instant::now();
    let sent = match open(&cfg, keyring, ctx, true) {
        Ok(mut tr) => {
            let r = tr.send(&msg).await;
            tr.close().await;
            r
        }
        Err(e) => Err(e),
    };
    let ms = t.elapsed().as_millis();
    let error = sent.err().map(|e| e.to_string());
    let (outcome, detail) = match &error {
        None => (Outcome::Ok, format!("delivered in {ms} ms, key {key}")),
        Some(e) => (Outcome::Failed, format!("after {ms} ms: {e}")),
    };
    audit::append(idx.conn(), actor, "alerts.test", name, outcome, &detail).map_err(|e| e.to_string())?;
    Ok(TestResult {
        channel: name.to_string(),
        key,
        ms,
        error,
    })
}

/// Who the messages say they are from: the device id (from the index) and
/// `[alerts] device_name`, else the host name.
pub fn context(conn: &rusqlite::Connection, file: &AlertsConfig) -> TransportContext {
    let device_id = crate::db::device::identity(conn)
        .ok()
        .flatten()
        .map(|(id, _)| id)
        .unwrap_or_else(|| "vigil-unprovisioned".into());
    let device_name = file.device_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| device_id.clone())
    });
    TransportContext { device_id, device_name }
}
