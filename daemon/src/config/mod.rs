//! `vigil.toml`: parsing and validation. Every error names the file, the line
//! and the key, in one line.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub mod alerts;
pub mod archive;
pub mod http;
pub mod onvif;
pub mod replication;
pub mod v4l2_url;

pub const DEFAULT_PATH: &str = "/etc/vigil/vigil.toml";

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    storage: Spanned<RawStorage>,
    keys: Spanned<RawKeys>,
    #[serde(default)]
    recording: Option<Spanned<RawRecording>>,
    #[serde(default)]
    camera: Vec<Spanned<RawCamera>>,
    #[serde(default)]
    http: Option<Spanned<http::RawHttp>>,
    #[serde(default)]
    retention: Option<Spanned<RawRetention>>,
    #[serde(default)]
    fixity: Option<Spanned<RawFixity>>,
    #[serde(default)]
    board: Option<Spanned<RawBoard>>,
    #[serde(default)]
    alerts: Option<Spanned<alerts::RawAlerts>>,
    #[serde(default)]
    onvif: Option<Spanned<onvif::RawOnvif>>,
    #[serde(default)]
    replication: Option<Spanned<replication::RawReplication>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoard {
    profile: Option<Spanned<String>>,
    watchdog: Option<String>,
    led_status: Option<String>,
    led_fault: Option<String>,
}

/// `[board]`: the hardware watchdog and status LEDs the health supervisor
/// drives (from a board profile, or named one by one; "" for none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoardConfig {
    pub profile: Option<String>,
    pub watchdog: Option<PathBuf>,
    pub led_status: Option<PathBuf>,
    pub led_fault: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    min_free_percent: Option<Spanned<f64>>,
    min_free_bytes: Option<Spanned<u64>>,
    days: Option<Spanned<u32>>,
    interval_seconds: Option<Spanned<u32>>,
    keep_until_replicated: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixity {
    rate_mb_per_s: Option<Spanned<f64>>,
    cycle_seconds: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    dir: Spanned<PathBuf>,
    db: Spanned<PathBuf>,
    #[serde(default)]
    allow_unencrypted_volume: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    source: Spanned<String>,
    file: Option<Spanned<PathBuf>>,
    credential: Option<Spanned<PathBuf>>,
    credential_name: Option<Spanned<String>>,
    tpm2_device: Option<Spanned<String>>,
    tpm2_pcrs: Option<Spanned<String>>,
    with_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    segment_seconds: Option<Spanned<u32>>,
    stall_timeout_seconds: Option<Spanned<u32>>,
    sync_interval_seconds: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    name: Spanned<String>,
    url: Spanned<String>,
    username: Option<String>,
    password: Option<Spanned<String>>,
    password_secret: Option<Spanned<String>>,
    #[serde(default = "yes")]
    enabled: bool,
    retention_days: Option<Spanned<u32>>,
    max_bytes: Option<Spanned<u64>>,
    sub_url: Option<Spanned<String>>,
    #[serde(default)]
    record_sub: bool,
    sub_retention_days: Option<Spanned<u32>>,
    #[serde(default)]
    record_audio: bool,
    onvif_url: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// Where a value came from, for errors found after parsing (e.g. a missing key file).
#[derive(Clone, Debug)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub key: String,
}

impl Origin {
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

/// Where the key-encryption key (KEK) is sealed.
#[derive(Clone, Debug)]
pub enum KeySourceConfig {
    /// Development only: the KEK in a plain file (mode 0600).
    File { path: PathBuf, origin: Origin },
    /// A systemd credential sealed by the TPM (`systemd-creds encrypt`).
    Credential(CredentialConfig),
}

#[derive(Clone, Debug)]
pub struct CredentialConfig {
    /// The sealed credential file (what `LoadCredentialEncrypted=` names).
    pub path: PathBuf,
    /// The credential name (`LoadCredentialEncrypted=NAME:PATH`).
    pub name: String,
    /// `--tpm2-device=` for systemd-creds; `None` is systemd's `auto`.
    pub tpm2_device: Option<String>,
    /// PCRs the seal is bound to, e.g. "7" or "7+11"; empty for none.
    pub tpm2_pcrs: String,
    /// `tpm2` or `host+tpm2`.
    pub with_key: String,
    pub origin: Origin,
}

/// How a camera's password is given.
#[derive(Clone, Debug)]
pub enum CameraPassword {
    None,
    /// A plaintext password in the config file (accepted with a warning).
    Plain(String),
    /// The name of an entry in the encrypted secrets store.
    Secret {
        name: String,
        origin: Origin,
    },
}

#[derive(Clone, Debug)]
pub struct CameraConfig {
    pub name: String,
    pub url: url::Url,
    pub username: Option<String>,
    pub password: CameraPassword,
    /// Where `password` was written, for the warning that says to move it.
    pub password_origin: Option<Origin>,
    pub enabled: bool,
    pub limits: archive::CameraLimits,
    /// The camera's second, smaller stream (live view in a grid); same
    /// credentials as `url`.
    pub sub_url: Option<url::Url>,
    /// Record the sub stream too (as the camera `<name>.sub`).
    pub record_sub: bool,
    /// The recorded sub stream's own age limit (default: the camera's).
    pub sub_retention_days: Option<u32>,
    /// Record the camera's audio track (AAC, G.711). Off by default: in
    /// many places recording sound needs consent or a notice.
    pub record_audio: bool,
    /// The camera's ONVIF device service (`http://host/onvif/device_service`):
    /// clock, PTZ and events; same credentials as `url`.
    pub onvif_url: Option<url::Url>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub storage_dir: PathBuf,
    pub db_path: PathBuf,
    /// Record even when the recordings directory is not on a dm-crypt
    /// (LUKS2) volume (development; health shows a warning).
    pub allow_unencrypted_volume: bool,
    pub keys: KeySourceConfig,
    pub segment_duration: Duration,
    pub stall_timeout: Duration,
    /// How often a recording is made durable on disk: 0 at the end of
    /// every GOP (a power cut loses at most the GOP being received), else
    /// at the first GOP end after this long (fewer syncs, for SD cards; a
    /// power cut loses up to this much more). See docs/performance.md.
    pub sync_interval: Duration,
    pub cameras: Vec<CameraConfig>,
    pub http: Option<http::HttpConfig>,
    pub retention: archive::RetentionPolicy,
    pub fixity: archive::FixityConfig,
    pub board: BoardConfig,
    /// `[alerts]`: defaults and no channels when absent.
    pub alerts: alerts::AlertsConfig,
    /// `[onvif]`: unset when absent.
    pub onvif: onvif::OnvifConfig,
    /// `[replication]`: off when absent.
    pub replication: Option<replication::ReplicationConfig>,
}

struct Src<'a> {
    file: String,
    text: &'a str,
}

impl Src<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
    }
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line_of(span.start),
            key: key.to_string(),
            message: message.into(),
        }
    }
    fn origin(&self, span: Range<usize>, key: &str) -> Origin {
        Origin {
            file: self.file.clone(),
            line: self.line_of(span.start),
            key: key.to_string(),
        }
    }

    /// For a parse error at `offset`: the dotted key written on that line, with
    /// the table header in force there (`camera.url`, `storage.dir`).
    fn key_at(&self, offset: usize) -> String {
        let line_no = self.line_of(offset);
        let mut table = String::new();
        let mut key = String::new();
        for (i, line) in self.text.lines().enumerate() {
            if i + 1 > line_no {
                break;
            }
            let t = line.trim();
            if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                table = h.trim().to_string();
            } else if let Some(h) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                table = h.trim().to_string();
            }
            if i + 1 == line_no {
                if let Some((k, _)) = t.split_once('=') {
                    key = k.trim().trim_matches('"').to_string();
                }
            }
        }
        match (table.is_empty(), key.is_empty()) {
            (true, true) => "(top level)".to_string(),
            (false, true) => table,
            (true, false) => key,
            (false, false) => format!("{table}.{key}"),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let src = Src {
            file: path.display().to_string(),
            text,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().replace('\n', " ");
            src.err(offset..offset, &src.key_at(offset), msg)
        })?;

        let storage = raw.storage.into_inner();
        let allow_unencrypted_volume = storage.allow_unencrypted_volume;
        let dir = absolute(&src, storage.dir, "storage.dir")?;
        let db = absolute(&src, storage.db, "storage.db")?;

        let keys_span = raw.keys.span();
        let keys = raw.keys.into_inner();
        let keys = match keys.source.get_ref().as_str() {
            "file" => {
                let Some(f) = keys.file else {
                    return Err(src.err(
                        keys_span,
                        "keys.file",
                        "source = \"file\" needs `file = \"/path/to/kek.key\"`",
                    ));
                };
                let origin = src.origin(f.span(), "keys.file");
                let path = absolute(&src, f, "keys.file")?;
                KeySourceConfig::File { path, origin }
            }
            "credential" => {
                let Some(c) = keys.credential else {
                    return Err(src.err(
                        keys_span,
                        "keys.credential",
                        "source = \"credential\" needs `credential = \"/var/lib/vigil/kek.cred\"`",
                    ));
                };
                let origin = src.origin(c.span(), "keys.credential");
                let path = absolute(&src, c, "keys.credential")?;
                let name = match keys.credential_name {
                    Some(n) => {
                        let ok = !n.get_ref().is_empty()
                            && n.get_ref().len() <= 64
                            && n.get_ref()
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                        if !ok {
                            return Err(src.err(
                                n.span(),
                                "keys.credential_name",
                                "use 1 to 64 letters, digits, '-', '_' or '.'",
                            ));
                        }
                        n.into_inner()
                    }
                    None => "vigil-kek".to_string(),
                };
                let tpm2_pcrs = match keys.tpm2_pcrs {
                    Some(p) => {
                        let v = p.get_ref().trim().to_string();
                        let ok = v.is_empty() || v.split(['+', ',']).all(|x| x.parse::<u8>().is_ok_and(|n| n < 24));
                        if !ok {
                            return Err(src.err(
                                p.span(),
                                "keys.tpm2_pcrs",
                                format!("\"{v}\": expected PCR numbers 0-23 joined by '+', e.g. \"7\" or \"7+11\""),
                            ));
                        }
                        v.replace(',', "+")
                    }
                    None => String::new(),
                };
                let with_key = match keys.with_key {
                    Some(w) if ["tpm2", "host+tpm2"].contains(&w.get_ref().as_str()) => w.into_inner(),
                    Some(w) => {
                        return Err(src.err(
                            w.span(),
                            "keys.with_key",
                            format!("\"{}\": expected \"tpm2\" or \"host+tpm2\"", w.get_ref()),
                        ))
                    }
                    None => "tpm2".to_string(),
                };
                let tpm2_device = match keys.tpm2_device {
                    Some(d) if d.get_ref().is_empty() || d.get_ref().contains(char::is_whitespace) => {
                        return Err(src.err(d.span(), "keys.tpm2_device", "must be a device path, `auto` or a TCTI"))
                    }
                    Some(d) => Some(d.into_inner()),
                    None => None,
                };
                KeySourceConfig::Credential(CredentialConfig {
                    path,
                    name,
                    tpm2_device,
                    tpm2_pcrs,
                    with_key,
                    origin,
                })
            }
            other => {
                return Err(src.err(
                    keys.source.span(),
                    "keys.source",
                    format!("unknown key source \"{other}\" (expected \"credential\" or \"file\")"),
                ))
            }
        };

        let mut segment_duration = Duration::from_secs(60);
        let mut stall_timeout = Duration::from_secs(5);
        let mut sync_interval = Duration::ZERO;
        if let Some(rec) = raw.recording {
            let rec = rec.into_inner();
            if let Some(s) = rec.segment_seconds {
                if !(1..=3600).contains(s.get_ref()) {
                    return Err(src.err(s.span(), "recording.segment_seconds", "must be between 1 and 3600"));
                }
                segment_duration = Duration::from_secs(u64::from(*s.get_ref()));
            }
            if let Some(s) = rec.stall_timeout_seconds {
                if !(1..=10).contains(s.get_ref()) {
                    return Err(src.err(s.span(), "recording.stall_timeout_seconds", "must be between 1 and 10"));
                }
                stall_timeout = Duration::from_secs(u64::from(*s.get_ref()));
            }
            if let Some(s) = rec.sync_interval_seconds {
                if *s.get_ref() > 300 {
                    return Err(src.err(
                        s.span(),
                        "recording.sync_interval_seconds",
                        "must be between 0 (every GOP) and 300",
                    ));
                }
                sync_interval = Duration::from_secs(u64::from(*s.get_ref()));
            }
        }

        let mut names = HashSet::new();
        let mut cameras = Vec::new();
        for cam in raw.camera {
            let cam = cam.into_inner();
            let name = cam.name.get_ref().clone();
            if !valid_camera_name(&name) {
                return Err(src.err(
                    cam.name.span(),
                    "camera.name",
                    format!("\"{name}\": {CAMERA_NAME_RULE}"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(src.err(
                    cam.name.span(),
                    "camera.name",
                    format!("duplicate camera name \"{name}\""),
                ));
            }
            let url = camera_url(cam.url.get_ref()).map_err(|m| src.err(cam.url.span(), "camera.url", m))?;
            // Control characters in credentials would reach RTSP headers and logs.
            if cam
                .username
                .as_deref()
                .is_some_and(|u| !crate::base::names::valid_free_text(u))
            {
                let rule = crate::base::names::FREE_TEXT_RULE;
                return Err(src.err(cam.name.span(), "camera.username", rule));
            }
            if let Some(p) = cam
                .password
                .as_ref()
                .filter(|p| p.get_ref().chars().any(char::is_control))
            {
                return Err(src.err(p.span(), "camera.password", "must not contain control characters"));
            }
            let (password, password_origin) = match (cam.password, cam.password_secret) {
                (Some(_), Some(s)) => {
                    return Err(src.err(
                        s.span(),
                        "camera.password_secret",
                        "give either password or password_secret, not both",
                    ));
                }
                (Some(p), None) => {
                    let origin = src.origin(p.span(), "camera.password");
                    (CameraPassword::Plain(p.into_inner()), Some(origin))
                }
                (None, Some(s)) => {
                    if !crate::base::names::valid_secret_name(s.get_ref()) {
                        return Err(src.err(
                            s.span(),
                            "camera.password_secret",
                            format!("\"{}\": {}", s.get_ref(), crate::base::names::SECRET_NAME_RULE),
                        ));
                    }
                    let origin = src.origin(s.span(), "camera.password_secret");
                    (
                        CameraPassword::Secret {
                            name: s.into_inner(),
                            origin,
                        },
                        None,
                    )
                }
                (None, None) => (CameraPassword::None, None),
            };
            if let Some(d) = &cam.retention_days {
                if !(1..=36_500).contains(d.get_ref()) {
                    return Err(src.err(d.span(), "camera.retention_days", "must be between 1 and 36500"));
                }
            }
            let sub_url = match &cam.sub_url {
                None => None,
                Some(u) => {
                    let url = camera_url(u.get_ref()).map_err(|m| src.err(u.span(), "camera.sub_url", m))?;
                    if url.scheme() != "rtsp" {
                        return Err(src.err(u.span(), "camera.sub_url", "must be an rtsp:// URL"));
                    }
                    Some(url)
                }
            };
            if cam.record_sub && sub_url.is_none() {
                return Err(src.err(cam.name.span(), "camera.record_sub", "needs a sub_url"));
            }
            if let Some(d) = &cam.sub_retention_days {
                if !(1..=36_500).contains(d.get_ref()) {
                    return Err(src.err(d.span(), "camera.sub_retention_days", "must be between 1 and 36500"));
                }
            }
            let onvif_url = match &cam.onvif_url {
                None => None,
                Some(u) => Some(onvif_url(u.get_ref()).map_err(|m| src.err(u.span(), "camera.onvif_url", m))?),
            };
            if let Some(m) = &cam.max_bytes {
                if *m.get_ref() < 1 << 20 {
                    return Err(src.err(m.span(), "camera.max_bytes", "must be at least 1048576 (1 MiB)"));
                }
            }
            cameras.push(CameraConfig {
                name,
                url,
                username: cam.username,
                password,
                password_origin,
                enabled: cam.enabled,
                limits: archive::CameraLimits {
                    retention_days: cam.retention_days.map(|d| d.into_inner()),
                    max_bytes: cam.max_bytes.map(|m| m.into_inner()),
                },
                sub_url,
                record_sub: cam.record_sub,
                sub_retention_days: cam.sub_retention_days.map(|d| d.into_inner()),
                record_audio: cam.record_audio,
                onvif_url,
            });
        }

        let http = match raw.http {
            None => None,
            Some(h) => Some(http::parse(&src, h)?),
        };

        let mut retention = archive::RetentionPolicy::default();
        if let Some(r) = raw.retention {
            let r = r.into_inner();
            if let Some(p) = r.min_free_percent {
                if !(0.0..=90.0).contains(p.get_ref()) {
                    return Err(src.err(p.span(), "retention.min_free_percent", "must be between 0 and 90"));
                }
                retention.min_free_percent = *p.get_ref();
            }
            if let Some(b) = r.min_free_bytes {
                retention.min_free_bytes = b.into_inner();
            }
            if let Some(d) = r.days {
                if !(1..=36_500).contains(d.get_ref()) {
                    return Err(src.err(d.span(), "retention.days", "must be between 1 and 36500"));
                }
                retention.default_days = Some(d.into_inner());
            }
            if let Some(i) = r.interval_seconds {
                if !(5..=86_400).contains(i.get_ref()) {
                    return Err(src.err(i.span(), "retention.interval_seconds", "must be between 5 and 86400"));
                }
                retention.interval = Duration::from_secs(u64::from(i.into_inner()));
            }
            retention.keep_until_replicated = r.keep_until_replicated.unwrap_or(false);
        }
        for c in &cameras {
            retention.cameras.insert(c.name.clone(), c.limits);
            if let Some(days) = c.sub_retention_days {
                let sub = archive::CameraLimits {
                    retention_days: Some(days),
                    max_bytes: None,
                };
                retention
                    .cameras
                    .insert(crate::base::names::sub_stream_name(&c.name), sub);
            }
        }
        let mut fixity = archive::FixityConfig::default();
        if let Some(f) = raw.fixity {
            let f = f.into_inner();
            if let Some(r) = f.rate_mb_per_s {
                if !(0.0..=10_000.0).contains(r.get_ref()) {
                    return Err(src.err(r.span(), "fixity.rate_mb_per_s", "must be between 0 (off) and 10000"));
                }
                fixity.rate_bytes_per_s = (*r.get_ref() * 1_048_576.0) as u64;
            }
            if let Some(c) = f.cycle_seconds {
                if !(1..=365 * 86_400).contains(c.get_ref()) {
                    return Err(src.err(c.span(), "fixity.cycle_seconds", "must be between 1 and 31536000"));
                }
                fixity.cycle = Duration::from_secs(c.into_inner());
            }
        }

        let mut board = BoardConfig::default();
        if let Some(b) = raw.board {
            let b = b.into_inner();
            let path = |s: String| (!s.is_empty()).then(|| PathBuf::from(s));
            if let Some(name) = b.profile {
                let profiles = crate::base::board::profiles();
                let Some(p) = profiles.iter().find(|p| &p.name == name.get_ref()) else {
                    return Err(src.err(
                        name.span(),
                        "board.profile",
                        format!("no board profile \"{}\" (see `vigil board list`)", name.get_ref()),
                    ));
                };
                board.profile = Some(p.name.clone());
                board.watchdog = path(p.watchdog.clone());
                board.led_status = path(p.led_status.clone());
                board.led_fault = path(p.led_fault.clone());
            }
            if let Some(w) = b.watchdog {
                board.watchdog = path(w);
            }
            if let Some(l) = b.led_status {
                board.led_status = path(l);
            }
            if let Some(l) = b.led_fault {
                board.led_fault = path(l);
            }
        }

        let alerts = match raw.alerts {
            None => alerts::AlertsConfig::default(),
            Some(a) => alerts::parse(&src, a)?,
        };

        let onvif = match raw.onvif {
            None => onvif::OnvifConfig::default(),
            Some(o) => onvif::parse(&src, o)?,
        };
        let replication = match raw.replication {
            None => None,
            Some(r) => Some(replication::parse(&src, r)?),
        };
        if retention.keep_until_replicated && replication.is_none() {
            return Err(ConfigError {
                file: src.file.clone(),
                line: 1,
                key: "retention.keep_until_replicated".into(),
                message: "keep_until_replicated = true needs a [replication] section".into(),
            });
        }

        Ok(Config {
            alerts,
            onvif,
            replication,
            board,
            allow_unencrypted_volume,
            retention,
            fixity,
            http,
            path: path.to_path_buf(),
            storage_dir: dir,
            db_path: db,
            keys,
            segment_duration,
            stall_timeout,
            sync_interval,
            cameras,
        })
    }

    pub fn camera(&self, name: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

use crate::base::names::{valid_camera_name, CAMERA_NAME_RULE};

/// A camera URL as Vigil takes it: rtsp:// with a host and no credentials
/// inside (they go in username / the secrets store), or a V4L2 device
/// `v4l2:///dev/video0?format=mjpeg&width=1280&height=720&fps=30`.
/// The error is one sentence.
/// An ONVIF device service address: `http(s)://host[:port]/path`, no
/// credentials in it.
pub fn onvif_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("invalid URL \"{s}\": {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "must be an http:// URL, not {}:// (https device services are not supported yet)",
            url.scheme()
        ));
    }
    host_without_credentials(&url)?;
    Ok(url)
}

/// A camera's network address names a host and holds no credentials (they
/// go in `username` and the secrets store, never in a URL that is logged).
pub(super) fn host_without_credentials(url: &url::Url) -> Result<(), String> {
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err("URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in username/password, not in the URL".into());
    }
    Ok(())
}

pub fn camera_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("invalid URL \"{s}\": {e}"))?;
    if url.scheme() == "v4l2" {
        v4l2_url::parse_url(&url)?;
        return Ok(url);
    }
    if url.scheme() != "rtsp" {
        return Err(format!(
            "unsupported URL scheme \"{}\" (expected rtsp:// or v4l2:///dev/videoN)",
            url.scheme()
        ));
    }
    host_without_credentials(&url)?;
    Ok(url)
}

fn absolute(src: &Src<'_>, p: Spanned<PathBuf>, key: &str) -> Result<PathBuf, ConfigError> {
    let span = p.span();
    let p = p.into_inner();
    if !p.is_absolute() {
        return Err(src.err(span, key, format!("\"{}\" must be an absolute path", p.display())));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[storage]
dir = "/srv/vigil/recordings"
db = "/var/lib/vigil/vigil.db"

[keys]
source = "file"
file = "/var/lib/vigil/kek.key"

[recording]
segment_seconds = 10

[[camera]]
name = "front-door"
url = "rtsp://127.0.0.1:8554/h264"
"#;

    fn err(text: &str) -> ConfigError {
        Config::parse(Path::new("/etc/vigil/vigil.toml"), text).unwrap_err()
    }

    #[test]
    fn good_config_parses() {
        let c = Config::parse(Path::new("/x.toml"), GOOD).unwrap();
        assert_eq!(c.segment_duration, Duration::from_secs(10));
        assert_eq!(c.sync_interval, Duration::ZERO, "every GOP by default");
        assert_eq!(c.cameras[0].name, "front-door");
        let sd = GOOD.replace(
            "segment_seconds = 10",
            "segment_seconds = 10\nsync_interval_seconds = 30",
        );
        let c = Config::parse(Path::new("/x.toml"), &sd).unwrap();
        assert_eq!(c.sync_interval, Duration::from_secs(30));
        let e = err(&GOOD.replace(
            "segment_seconds = 10",
            "segment_seconds = 10\nsync_interval_seconds = 301",
        ));
        assert_eq!((e.line, e.key.as_str()), (12, "recording.sync_interval_seconds"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err(&GOOD.replace("segment_seconds = 10", "segment_seconds = 10\nsegment_secs = 3"));
        assert_eq!(e.line, 12, "{e}");
        assert_eq!(e.key, "recording.segment_secs", "{e}");
    }

    #[test]
    fn bad_url_and_duplicate_name() {
        let e = err(&GOOD.replace("rtsp://127.0.0.1:8554/h264", "rtsp//nope"));
        assert_eq!((e.line, e.key.as_str()), (15, "camera.url"), "{e}");
        let dup = format!("{GOOD}\n[[camera]]\nname = \"front-door\"\nurl = \"rtsp://127.0.0.1/x\"\n");
        let e = err(&dup);
        assert_eq!((e.line, e.key.as_str()), (18, "camera.name"), "{e}");
    }
}
