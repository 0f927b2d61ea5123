//! `[replication]`: the S3-compatible bucket finished recordings are copied
//! to (ciphertext only), how they are addressed, and when and how fast they
//! go. The secret access key is not here: it is the secret
//! [`SECRET_NAME`] in the encrypted secrets store.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Src};

/// The secrets-store name of the bucket's secret access key.
pub const SECRET_NAME: &str = "replication.secret-access-key";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplication {
    endpoint: Spanned<String>,
    #[serde(default)]
    allow_http: bool,
    region: Option<Spanned<String>>,
    bucket: Spanned<String>,
    prefix: Option<Spanned<String>>,
    access_key_id: Spanned<String>,
    addressing: Option<Spanned<String>>,
    bandwidth_limit_mbit: Option<Spanned<f64>>,
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    cameras: Vec<Spanned<String>>,
    part_size_mib: Option<Spanned<u64>>,
    lag_alert_minutes: Option<Spanned<u64>>,
    ca_file: Option<Spanned<std::path::PathBuf>>,
}

/// When uploads may run: always, or inside a daily UTC window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Always,
    /// Minutes after UTC midnight: from (inclusive) to (exclusive); a window
    /// may wrap midnight (`22:00-06:00`).
    Window {
        from_min: u16,
        to_min: u16,
    },
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if t == "always" {
            return Ok(Schedule::Always);
        }
        let bad = || {
            format!(
                "\"{text}\" is not a schedule: give \"always\" or a UTC window \"HH:MM-HH:MM\" (e.g. \"22:00-06:00\")"
            )
        };
        let (a, b) = t.split_once('-').ok_or_else(bad)?;
        let minutes = |s: &str| -> Option<u16> {
            let (h, m) = s.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (from_min, to_min) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if from_min == to_min {
            return Err(format!(
                "\"{text}\": the window is empty (say \"always\" for no window)"
            ));
        }
        Ok(Schedule::Window { from_min, to_min })
    }

    /// Whether uploads may run at `wall_ns` (UTC).
    pub fn open_at(&self, wall_ns: i64) -> bool {
        match *self {
            Schedule::Always => true,
            Schedule::Window { from_min, to_min } => {
                let m = (wall_ns.rem_euclid(86_400_000_000_000) / 60_000_000_000) as u16;
                if from_min < to_min {
                    (from_min..to_min).contains(&m)
                } else {
                    m >= from_min || m < to_min
                }
            }
        }
    }

    /// How long uploads are held back each day (0 for `always`).
    pub fn closed_ns(&self) -> i64 {
        match *self {
            Schedule::Always => 0,
            Schedule::Window { from_min, to_min } => {
                let open = (i64::from(to_min) - i64::from(from_min)).rem_euclid(1440);
                (1440 - open) * 60_000_000_000
            }
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Schedule::Always => "always".into(),
            Schedule::Window { from_min, to_min } => format!(
                "{:02}:{:02}-{:02}:{:02} UTC",
                from_min / 60,
                from_min % 60,
                to_min / 60,
                to_min % 60
            ),
        }
    }
}

/// `[replication]`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationConfig {
    /// `https://host[:port]`, or `http://` with `allow_http`.
    pub endpoint: url::Url,
    pub region: String,
    pub bucket: String,
    /// The key prefix in the bucket; `None`: the device id.
    pub prefix: Option<String>,
    pub access_key_id: String,
    /// Path-style (`endpoint/bucket/key`, Garage, MinIO, Ceph) or virtual-host
    /// (`bucket.endpoint/key`, AWS).
    pub virtual_host: bool,
    /// Upload cap in bytes per second (None: no cap).
    pub bandwidth_bytes_per_s: Option<u64>,
    pub schedule: Schedule,
    /// The cameras replicated (empty: every camera).
    pub cameras: Vec<String>,
    /// Multipart part size in bytes (5 MiB to 64 MiB); a recording up to
    /// one part goes in one PUT.
    pub part_size: u64,
    /// `replication.lagging` when the oldest waiting recording is older.
    pub lag_alert_after_ns: i64,
    /// PEM roots to trust for an https endpoint (None: the system's).
    pub ca_file: Option<std::path::PathBuf>,
}

impl ReplicationConfig {
    /// Whether `camera` (a main stream, or `<name>.sub`) is replicated.
    pub fn covers(&self, camera: &str) -> bool {
        self.cameras.is_empty() || self.cameras.iter().any(|c| c == camera)
    }
}

/// A bucket name as S3 allows it (3-63 of a-z 0-9 . -).
pub fn bucket_name(b: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!("\"{b}\" is not a bucket name (3 to 63 of a-z, 0-9, '.', '-')"))
    }
}

/// A key prefix: path segments of letters, digits, `-`, `_`, `.`; no `..`.
pub fn key_prefix(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && p.len() <= 200
        && p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{p}\" is not a key prefix (segments of letters, digits, '-', '_', '.', joined by '/')"
        ))
    }
}

/// The endpoint: https, or http when `allow_http`; a host; no credentials,
/// path, query or fragment.
pub fn endpoint(text: &str, allow_http: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("invalid URL \"{text}\": {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(
                "the endpoint is plain http: the access key's signatures and every object's metadata would cross \
                 the network unprotected; use https, or set allow_http = true for a store on this box or a trusted link"
                    .into(),
            )
        }
        other => return Err(format!("unsupported scheme \"{other}\" (expected https://)")),
    }
    super::host_without_credentials(&url)?;
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(
            "give the endpoint as scheme://host[:port] only; the bucket and prefix are their own settings".into(),
        );
    }
    Ok(url)
}

pub(super) fn parse(src: &Src<'_>, raw: Spanned<RawReplication>) -> Result<ReplicationConfig, ConfigError> {
    let r = raw.into_inner();
    let k = |name: &str| format!("replication.{name}");
    let endpoint =
        endpoint(r.endpoint.get_ref(), r.allow_http).map_err(|m| src.err(r.endpoint.span(), &k("endpoint"), m))?;
    bucket_name(r.bucket.get_ref()).map_err(|m| src.err(r.bucket.span(), &k("bucket"), m))?;
    let prefix = match r.prefix {
        None => None,
        Some(p) => {
            let t = p.get_ref().trim_matches('/').to_string();
            key_prefix(&t).map_err(|m| src.err(p.span(), &k("prefix"), m))?;
            Some(t)
        }
    };
    let id = r.access_key_id.get_ref().trim().to_string();
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(src.err(
            r.access_key_id.span(),
            &k("access_key_id"),
            "an access key id is 1 to 128 printable characters",
        ));
    }
    let region = match r.region {
        None => "us-east-1".to_string(),
        Some(reg) => {
            let t = reg.get_ref().trim().to_string();
            if t.is_empty() || t.len() > 64 || !t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
                return Err(src.err(reg.span(), &k("region"), "a region is letters, digits, '-' and '_'"));
            }
            t
        }
    };
    let virtual_host = match r.addressing {
        None => false,
        Some(a) => match a.get_ref().as_str() {
            "path" => false,
            "virtual-host" => true,
            other => {
                return Err(src.err(
                    a.span(),
                    &k("addressing"),
                    format!("\"{other}\": give \"path\" (Garage, MinIO, Ceph) or \"virtual-host\" (AWS)"),
                ))
            }
        },
    };
    let bandwidth_bytes_per_s = match r.bandwidth_limit_mbit {
        None => None,
        Some(b) => {
            let v = *b.get_ref();
            if !v.is_finite() || !(0.0..=100_000.0).contains(&v) {
                return Err(src.err(
                    b.span(),
                    &k("bandwidth_limit_mbit"),
                    "give Mbit/s from 0 (no cap) to 100000",
                ));
            }
            (v > 0.0).then(|| ((v * 1_000_000.0 / 8.0) as u64).max(1))
        }
    };
    let schedule = match r.schedule {
        None => Schedule::Always,
        Some(s) => Schedule::parse(s.get_ref()).map_err(|m| src.err(s.span(), &k("schedule"), m))?,
    };
    let mut cameras = Vec::new();
    for c in r.cameras {
        if !crate::base::names::valid_recorded_camera_name(c.get_ref()) {
            return Err(src.err(
                c.span(),
                &k("cameras"),
                format!("\"{}\" is not a camera name", c.get_ref()),
            ));
        }
        cameras.push(c.into_inner());
    }
    let part_size = match r.part_size_mib {
        None => 8 << 20,
        Some(p) => {
            let v = *p.get_ref();
            if !(5..=64).contains(&v) {
                return Err(src.err(
                    p.span(),
                    &k("part_size_mib"),
                    "give 5 to 64 (MiB; S3 parts are at least 5 MiB)",
                ));
            }
            v << 20
        }
    };
    let lag_alert_after_ns = match r.lag_alert_minutes {
        None => 60,
        Some(m) if (1..=10_080).contains(m.get_ref()) => *m.get_ref(),
        Some(m) => return Err(src.err(m.span(), &k("lag_alert_minutes"), "give 1 to 10080 minutes")),
    } as i64
        * 60_000_000_000;
    let ca_file = match r.ca_file {
        None => None,
        Some(p) => Some(super::absolute(src, p, "replication.ca_file")?),
    };
    Ok(ReplicationConfig {
        ca_file,
        endpoint,
        region,
        bucket: r.bucket.into_inner(),
        prefix,
        access_key_id: id,
        virtual_host,
        bandwidth_bytes_per_s,
        schedule,
        cameras,
        part_size,
        lag_alert_after_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_wrap_midnight() {
        assert_eq!(Schedule::parse("always"), Ok(Schedule::Always));
        let night = Schedule::parse("22:00-06:00").unwrap();
        let at = |h: i64, m: i64| (h * 3600 + m * 60) * 1_000_000_000 + 3 * 86_400_000_000_000;
        assert!(night.open_at(at(23, 0)) && night.open_at(at(0, 0)) && night.open_at(at(5, 59)));
        assert!(!night.open_at(at(6, 0)) && !night.open_at(at(12, 0)) && !night.open_at(at(21, 59)));
        assert_eq!(night.closed_ns(), 16 * 3_600_000_000_000);
        assert_eq!(Schedule::Always.closed_ns(), 0);
        let day = Schedule::parse("09:30-17:00").unwrap();
        assert!(day.open_at(at(9, 30)) && !day.open_at(at(17, 0)) && !day.open_at(at(9, 29)));
        for bad in ["", "9-17", "24:00-01:00", "10:00-10:00", "10:60-11:00", "never"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_are_https_unless_allowed_and_bare() {
        assert!(endpoint("https://s3.example.net", false).is_ok());
        assert!(endpoint("http://127.0.0.1:3900", false)
            .unwrap_err()
            .contains("allow_http"));
        assert!(endpoint("http://127.0.0.1:3900", true).is_ok());
        assert!(endpoint("https://k:s@s3.example.net", false).is_err());
        assert!(endpoint("https://s3.example.net/bucket", false).is_err());
        assert!(endpoint("ftp://s3.example.net", true).is_err());
    }

    #[test]
    fn names_and_prefixes() {
        assert!(bucket_name("vigil-evidence").is_ok());
        for bad in ["ab", "Vigil", "-x-y", "a_b_c"] {
            assert!(bucket_name(bad).is_err(), "{bad}");
        }
        assert!(key_prefix("site-3/box_7").is_ok());
        for bad in ["", "a//b", "../x", "a/./b", "a b"] {
            assert!(key_prefix(bad).is_err(), "{bad}");
        }
    }
}
