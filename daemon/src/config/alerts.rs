//! `[alerts]` and `[[alerts.channel]]` of `vigil.toml`: when alerts are raised
//! (offline and gap delays, flap damping, digests) and the channels that carry
//! them (webhook, MQTT, Twilio SMS, email). A channel added from the web UI is
//! stored as JSON with the same keys and checked by the same rules
//! ([`ChannelConfig::from_json`]).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use toml::Spanned;

use super::{ConfigError, Src};

/// How bad an alert is. Ordered: `Info < Warning < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// `[alerts]`: when alerts are raised and damped, and where they go.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertsConfig {
    /// A camera not streaming this long raises `camera.offline`.
    pub offline_after_seconds: u64,
    /// A hole between two recordings longer than this raises `recording.gap`.
    pub gap_after_seconds: u64,
    /// More than `flap_threshold` raises of one alert within this window...
    pub flap_window_seconds: u64,
    /// ...and its further messages go to the digest.
    pub flap_threshold: u32,
    /// Held-back messages go out as one digest after at most this long.
    pub digest_after_seconds: u64,
    /// This many messages ready at once for a channel go as one digest.
    pub digest_threshold: u32,
    /// The human name of the box in messages (None: the host name).
    pub device_name: Option<String>,
    pub channels: Vec<ChannelConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            offline_after_seconds: 30,
            gap_after_seconds: 10,
            flap_window_seconds: 600,
            flap_threshold: 4,
            digest_after_seconds: 60,
            digest_threshold: 5,
            device_name: None,
            channels: Vec::new(),
        }
    }
}

/// One alert channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    /// Alerts below this severity are not sent here.
    pub min_severity: Severity,
    /// Only alerts about these cameras (box-wide alerts always pass); empty: all.
    pub cameras: Vec<String>,
    /// At most this many messages (digests aside) per `rate_window_seconds`.
    pub rate_limit: u32,
    pub rate_window_seconds: u64,
    /// The name of the entry in the secrets store (HMAC key, password, token).
    pub secret: Option<String>,
    /// PEM roots for TLS (None: the system's roots).
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChannelKind {
    Webhook {
        url: url::Url,
    },
    Mqtt {
        url: url::Url,
        username: Option<String>,
        topic_prefix: Option<String>,
        home_assistant: bool,
        discovery_prefix: String,
    },
    Twilio {
        base_url: url::Url,
        account_sid: String,
        from: String,
        to: String,
    },
    Email {
        smtp_host: String,
        smtp_port: u16,
        username: Option<String>,
        from: String,
        to: Vec<String>,
    },
}

impl ChannelKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Mqtt { .. } => "mqtt",
            ChannelKind::Twilio { .. } => "twilio",
            ChannelKind::Email { .. } => "email",
        }
    }
}

pub const CHANNEL_NAME_RULE: &str = "a channel name is 1 to 32 lowercase letters, digits or '-'";

pub fn valid_channel_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "min_severity",
    "cameras",
    "rate_limit",
    "rate_window_seconds",
    "secret",
    "ca_file",
];

fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "webhook" => &["url"],
        "mqtt" => &["url", "username", "topic_prefix", "home_assistant", "discovery_prefix"],
        "twilio" => &["base_url", "account_sid", "from", "to"],
        "email" => &["smtp_host", "smtp_port", "username", "from", "to"],
        _ => &[],
    }
}

/// A rule broken by one key of a channel: (key, one-sentence message).
type KeyError = (String, String);

fn bad(key: &str, message: impl Into<String>) -> KeyError {
    (key.to_string(), message.into())
}

struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn str(&self, key: &str) -> Result<Option<String>, KeyError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                Err(bad(key, "must not contain control characters"))
            }
            Some(Value::String(s)) if s.len() > 500 => Err(bad(key, "must be at most 500 characters")),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(key, "must be a string")),
        }
    }
    fn required(&self, key: &str, kind: &str) -> Result<String, KeyError> {
        match self.str(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(bad(key, format!("a {kind} channel needs `{key}`"))),
        }
    }
    fn bool(&self, key: &str) -> Result<Option<bool>, KeyError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(key, "must be true or false")),
        }
    }
    fn int(&self, key: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>, KeyError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(bad(
                    key,
                    format!("must be a whole number between {} and {}", range.start(), range.end()),
                )),
            },
        }
    }
    fn list(&self, key: &str) -> Result<Option<Vec<String>>, KeyError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(s.clone()),
                    _ => Err(bad(key, "must be a list of non-empty strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(bad(key, "must be a list of strings")),
        }
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // mqtt:// is not a "special" scheme: its IPv4 host stays text.
        Some(url::Host::Domain(d)) => d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A URL with one of `secure` (any host) or `plain` (loopback IP only), a
/// host, and no credentials inside.
fn channel_url(key: &str, s: &str, secure: &str, plain: &str) -> Result<url::Url, KeyError> {
    let url = url::Url::parse(s).map_err(|e| bad(key, format!("invalid URL \"{s}\": {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(key, format!("URL \"{s}\" has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            key,
            "put credentials in the secrets store (`secret`), not in the URL",
        ));
    }
    if url.scheme() == secure || (url.scheme() == plain && is_loopback_host(&url)) {
        return Ok(url);
    }
    if url.scheme() == plain {
        return Err(bad(
            key,
            format!("{plain}:// is only allowed to a loopback address (127.0.0.1 or [::1]); use {secure}://"),
        ));
    }
    Err(bad(
        key,
        format!("unsupported URL scheme \"{}\" (expected {secure}://)", url.scheme()),
    ))
}

/// A host name or IP address for SMTP.
fn valid_host(h: &str) -> bool {
    h.parse::<IpAddr>().is_ok() || super::http::valid_host_name(h) && !h.contains(['[', ']', ':'])
}

fn valid_topic_part(t: &str) -> bool {
    !t.is_empty() && !t.contains(['+', '#', '\0']) && !t.starts_with('/') && !t.ends_with('/')
}

fn valid_address(a: &str) -> bool {
    let a = a.trim();
    match a.split_once('@') {
        Some((user, host)) => {
            !user.is_empty() && !host.is_empty() && !a.contains([' ', '<', '>', ',', ';']) && !host.contains('@')
        }
        None => false,
    }
}

fn valid_phone(p: &str) -> bool {
    // E.164 (+ and up to 15 digits), or a Twilio sender id / messaging service (letters and digits).
    (p.starts_with('+') && (8..=16).contains(&p.len()) && p[1..].bytes().all(|b| b.is_ascii_digit()))
        || ((1..=34).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl ChannelConfig {
    /// A channel from its JSON form (a channel added from the web UI), with
    /// the keys of `[[alerts.channel]]`. `name` in the object, if given, must
    /// be `name`; `secret_value` (the write-only value the API takes) is
    /// ignored here. The error is one sentence naming the key.
    pub fn from_json(name: &str, v: &Value) -> Result<ChannelConfig, String> {
        let Value::Object(map) = v else {
            return Err("a channel's settings must be a JSON object".into());
        };
        if let Some(n) = map.get("name") {
            if n.as_str() != Some(name) {
                return Err(format!("name: must be \"{name}\" (the channel's name)"));
            }
        }
        let mut map = map.clone();
        map.remove("secret_value");
        map.insert("name".into(), Value::String(name.to_string()));
        parse_channel(&map).map_err(|(key, msg)| format!("{key}: {msg}"))
    }

    /// The settings with the keys of `[[alerts.channel]]` (no secret value:
    /// `secret` is the name of the secrets-store entry), without `name`.
    pub fn settings_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!(self.kind.as_str()));
        m.insert("min_severity".into(), json!(self.min_severity.as_str()));
        m.insert("cameras".into(), json!(self.cameras));
        m.insert("rate_limit".into(), json!(self.rate_limit));
        m.insert("rate_window_seconds".into(), json!(self.rate_window_seconds));
        if let Some(s) = &self.secret {
            m.insert("secret".into(), json!(s));
        }
        if let Some(c) = &self.ca_file {
            m.insert("ca_file".into(), json!(c.display().to_string()));
        }
        let kind = match &self.kind {
            ChannelKind::Webhook { url } => json!({ "url": url.as_str() }),
            ChannelKind::Mqtt {
                url,
                username,
                topic_prefix,
                home_assistant,
                discovery_prefix,
            } => json!({
                "url": url.as_str(), "username": username, "topic_prefix": topic_prefix,
                "home_assistant": home_assistant, "discovery_prefix": discovery_prefix,
            }),
            ChannelKind::Twilio {
                base_url,
                account_sid,
                from,
                to,
            } => json!({ "base_url": base_url.as_str(), "account_sid": account_sid, "from": from, "to": to }),
            ChannelKind::Email {
                smtp_host,
                smtp_port,
                username,
                from,
                to,
            } => {
                json!({ "smtp_host": smtp_host, "smtp_port": smtp_port, "username": username, "from": from, "to": to })
            }
        };
        if let Value::Object(k) = kind {
            for (key, v) in k {
                if !v.is_null() {
                    m.insert(key, v);
                }
            }
        }
        Value::Object(m)
    }
}

/// The checks shared by the config file and the web UI.
fn parse_channel(map: &Map<String, Value>) -> Result<ChannelConfig, KeyError> {
    let f = Fields(map);
    let name = f.str("name")?.unwrap_or_default();
    if !valid_channel_name(&name) {
        return Err(bad("name", format!("\"{}\": {CHANNEL_NAME_RULE}", name.escape_debug())));
    }
    let kind = f.str("kind")?.unwrap_or_default();
    if !["webhook", "mqtt", "twilio", "email"].contains(&kind.as_str()) {
        return Err(bad(
            "kind",
            format!(
                "\"{}\": expected \"webhook\", \"mqtt\", \"twilio\" or \"email\"",
                kind.escape_debug()
            ),
        ));
    }
    for key in map.keys() {
        if !COMMON_KEYS.contains(&key.as_str()) && !kind_keys(&kind).contains(&key.as_str()) {
            let mut allowed: Vec<&str> = COMMON_KEYS.to_vec();
            allowed.extend(kind_keys(&kind));
            return Err(bad(
                key,
                format!(
                    "unknown key for a {kind} channel (expected one of: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let min_severity = match f.str("min_severity")? {
        None => Severity::Warning,
        Some(s) => Severity::parse(&s).ok_or_else(|| {
            bad(
                "min_severity",
                format!(
                    "\"{}\": expected \"info\", \"warning\" or \"critical\"",
                    s.escape_debug()
                ),
            )
        })?,
    };
    let cameras = f.list("cameras")?.unwrap_or_default();
    if let Some(c) = cameras.iter().find(|c| !crate::base::names::valid_camera_name(c)) {
        return Err(bad(
            "cameras",
            format!("\"{}\": {}", c.escape_debug(), crate::base::names::CAMERA_NAME_RULE),
        ));
    }
    let rate_limit = f.int("rate_limit", 1..=100_000)?.unwrap_or(10) as u32;
    let rate_window_seconds = f.int("rate_window_seconds", 1..=7 * 86_400)?.unwrap_or(3600);
    let secret = f.str("secret")?;
    if let Some(s) = &secret {
        if !crate::base::names::valid_secret_name(s) {
            return Err(bad(
                "secret",
                format!("\"{}\": {}", s.escape_debug(), crate::base::names::SECRET_NAME_RULE),
            ));
        }
    }
    let ca_file = f.str("ca_file")?.map(PathBuf::from);
    if let Some(c) = &ca_file {
        if !c.is_absolute() {
            return Err(bad("ca_file", format!("\"{}\" must be an absolute path", c.display())));
        }
    }
    if secret.is_none() && ["webhook", "twilio"].contains(&kind.as_str()) {
        let what = if kind == "webhook" { "HMAC key" } else { "auth token" };
        return Err(bad(
            "secret",
            format!("a {kind} channel needs `secret`, the name of its {what} in the secrets store"),
        ));
    }
    let kind = match kind.as_str() {
        "webhook" => ChannelKind::Webhook {
            url: channel_url("url", &f.required("url", &kind)?, "https", "http")?,
        },
        "mqtt" => {
            let mut url = channel_url("url", &f.required("url", &kind)?, "mqtts", "mqtt")?;
            if url.port().is_none() {
                let port = if url.scheme() == "mqtts" { 8883 } else { 1883 };
                url.set_port(Some(port))
                    .map_err(|()| bad("url", "cannot set the port of this URL"))?;
            }
            if !matches!(url.path(), "" | "/") || url.query().is_some() {
                return Err(bad(
                    "url",
                    "an MQTT URL is only a host and port (put topics in topic_prefix)",
                ));
            }
            let topic_prefix = f.str("topic_prefix")?;
            if topic_prefix.as_deref().is_some_and(|t| !valid_topic_part(t)) {
                return Err(bad(
                    "topic_prefix",
                    "must be a topic without '+', '#' or a leading or trailing '/'",
                ));
            }
            let discovery_prefix = f.str("discovery_prefix")?.unwrap_or_else(|| "homeassistant".into());
            if !valid_topic_part(&discovery_prefix) {
                return Err(bad(
                    "discovery_prefix",
                    "must be a topic without '+', '#' or a leading or trailing '/'",
                ));
            }
            ChannelKind::Mqtt {
                url,
                username: f.str("username")?,
                topic_prefix,
                home_assistant: f.bool("home_assistant")?.unwrap_or(false),
                discovery_prefix,
            }
        }
        "twilio" => {
            let base_url = match f.str("base_url")? {
                Some(u) => channel_url("base_url", &u, "https", "http")?,
                None => url::Url::parse("https://api.twilio.com").map_err(|e| bad("base_url", e.to_string()))?,
            };
            let account_sid = f.required("account_sid", &kind)?;
            if !(1..=64).contains(&account_sid.len()) || !account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad("account_sid", "must be letters and digits (e.g. \"AC0123...\")"));
            }
            let from = f.required("from", &kind)?;
            let to = f.required("to", &kind)?;
            for (key, v) in [("from", &from), ("to", &to)] {
                if !valid_phone(v) {
                    return Err(bad(
                        key,
                        format!(
                            "\"{}\": expected a phone number like \"+15550001111\"",
                            v.escape_debug()
                        ),
                    ));
                }
            }
            ChannelKind::Twilio {
                base_url,
                account_sid,
                from,
                to,
            }
        }
        _ => {
            let smtp_host = f.required("smtp_host", &kind)?;
            if !valid_host(&smtp_host) {
                return Err(bad(
                    "smtp_host",
                    format!(
                        "\"{}\": expected a host name or an IP address",
                        smtp_host.escape_debug()
                    ),
                ));
            }
            let smtp_port = f.int("smtp_port", 1..=65_535)?.unwrap_or(587) as u16;
            let from = f.required("from", &kind)?;
            let to = match (map.get("to"), f.str("to")) {
                (Some(Value::String(_)), Ok(Some(one))) => vec![one],
                _ => f.list("to")?.unwrap_or_default(),
            };
            if to.is_empty() {
                return Err(bad("to", "an email channel needs at least one address in `to`"));
            }
            for a in std::iter::once(&from).chain(&to) {
                if !valid_address(a) {
                    let key = if a == &from { "from" } else { "to" };
                    return Err(bad(
                        key,
                        format!("\"{}\": expected an address like \"tech@shop.lan\"", a.escape_debug()),
                    ));
                }
            }
            ChannelKind::Email {
                smtp_host,
                smtp_port,
                username: f.str("username")?,
                from,
                to,
            }
        }
    };
    Ok(ChannelConfig {
        name,
        kind,
        min_severity,
        cameras,
        rate_limit,
        rate_window_seconds,
        secret,
        ca_file,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    offline_after_seconds: Option<Spanned<u64>>,
    gap_after_seconds: Option<Spanned<u64>>,
    flap_window_seconds: Option<Spanned<u64>>,
    flap_threshold: Option<Spanned<u32>>,
    digest_after_seconds: Option<Spanned<u64>>,
    digest_threshold: Option<Spanned<u32>>,
    device_name: Option<Spanned<String>>,
    #[serde(default)]
    channel: Vec<Spanned<toml::Table>>,
}

/// The line of a channel table (starting at `span`) where `key = ...` is
/// written (the table's first line when the key is not there).
fn key_line_offset(src: &Src<'_>, span: std::ops::Range<usize>, key: &str) -> usize {
    let start = span.start.min(src.text.len());
    let mut offset = start;
    for (i, line) in src.text[start..].split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        if i > 0 && t.starts_with('[') {
            break;
        }
        if let Some(rest) = t.strip_prefix(key).or_else(|| t.strip_prefix(&format!("\"{key}\""))) {
            if rest.trim_start().starts_with('=') {
                return offset;
            }
        }
        offset += line.len();
    }
    start
}

pub(super) fn parse(src: &Src<'_>, a: Spanned<RawAlerts>) -> Result<AlertsConfig, ConfigError> {
    let a = a.into_inner();
    let mut cfg = AlertsConfig::default();
    let ranged = |v: Option<Spanned<u64>>, key: &str, lo: u64, hi: u64, default: u64| match v {
        None => Ok(default),
        Some(s) if (lo..=hi).contains(s.get_ref()) => Ok(*s.get_ref()),
        Some(s) => Err(src.err(s.span(), key, format!("must be between {lo} and {hi}"))),
    };
    cfg.offline_after_seconds = ranged(
        a.offline_after_seconds,
        "alerts.offline_after_seconds",
        0,
        3600,
        cfg.offline_after_seconds,
    )?;
    cfg.gap_after_seconds = ranged(
        a.gap_after_seconds,
        "alerts.gap_after_seconds",
        1,
        86_400,
        cfg.gap_after_seconds,
    )?;
    cfg.flap_window_seconds = ranged(
        a.flap_window_seconds,
        "alerts.flap_window_seconds",
        10,
        86_400,
        cfg.flap_window_seconds,
    )?;
    let widen = |v: Option<Spanned<u32>>| v.map(|s| Spanned::new(s.span(), u64::from(*s.get_ref())));
    cfg.flap_threshold = ranged(
        widen(a.flap_threshold),
        "alerts.flap_threshold",
        1,
        1000,
        u64::from(cfg.flap_threshold),
    )? as u32;
    cfg.digest_after_seconds = ranged(
        a.digest_after_seconds,
        "alerts.digest_after_seconds",
        1,
        86_400,
        cfg.digest_after_seconds,
    )?;
    cfg.digest_threshold = ranged(
        widen(a.digest_threshold),
        "alerts.digest_threshold",
        2,
        1000,
        u64::from(cfg.digest_threshold),
    )? as u32;
    if let Some(n) = a.device_name {
        if n.get_ref().trim().is_empty() || n.get_ref().len() > 64 || n.get_ref().chars().any(char::is_control) {
            return Err(src.err(
                n.span(),
                "alerts.device_name",
                "use 1 to 64 characters and no control characters",
            ));
        }
        cfg.device_name = Some(n.into_inner());
    }
    let mut names = HashSet::new();
    for ch in a.channel {
        let span = ch.span();
        let map = match serde_json::to_value(ch.get_ref()) {
            Ok(Value::Object(m)) => m,
            _ => return Err(src.err(span, "alerts.channel", "cannot read this channel's settings")),
        };
        let c = parse_channel(&map).map_err(|(key, msg)| {
            let at = key_line_offset(src, span.clone(), &key);
            src.err(at..at, &format!("alerts.channel.{key}"), msg)
        })?;
        if !names.insert(c.name.clone()) {
            let at = key_line_offset(src, span.clone(), "name");
            return Err(src.err(
                at..at,
                "alerts.channel.name",
                format!("duplicate channel name \"{}\"", c.name),
            ));
        }
        cfg.channels.push(c);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const BASE: &str = r#"
[storage]
dir = "/srv/vigil/recordings"
db = "/var/lib/vigil/vigil.db"

[keys]
source = "file"
file = "/var/lib/vigil/kek.key"
"#;

    fn alerts(extra: &str) -> Result<AlertsConfig, ConfigError> {
        Ok(Config::parse(Path::new("/etc/vigil/vigil.toml"), &format!("{BASE}{extra}"))?.alerts)
    }

    const FOUR: &str = r#"
[alerts]
offline_after_seconds = 45
device_name = "shop-nvr-3"

[[alerts.channel]]
name = "ops"
kind = "webhook"
url = "https://hooks.example/vigil"
secret = "alert-ops"
cameras = ["front"]

[[alerts.channel]]
name = "ha"
kind = "mqtt"
url = "mqtts://broker.lan"
username = "vigil"
secret = "alert-ha"
home_assistant = true
min_severity = "info"

[[alerts.channel]]
name = "sms"
kind = "twilio"
account_sid = "AC0123456789"
from = "+15550001111"
to = "+15552223333"
secret = "alert-sms"
min_severity = "critical"

[[alerts.channel]]
name = "mail"
kind = "email"
smtp_host = "mail.lan"
from = "vigil@shop.lan"
to = ["tech@shop.lan"]
ca_file = "/etc/vigil/alert-ca.pem"
"#;

    #[test]
    fn missing_section_gives_defaults_and_no_channels() {
        let a = alerts("").unwrap();
        assert_eq!(a, AlertsConfig::default());
        assert_eq!(
            (a.offline_after_seconds, a.flap_threshold, a.digest_threshold),
            (30, 4, 5)
        );
    }

    #[test]
    fn four_kinds_parse_with_defaults() {
        let a = alerts(FOUR).unwrap();
        assert_eq!(a.offline_after_seconds, 45);
        assert_eq!(a.device_name.as_deref(), Some("shop-nvr-3"));
        assert_eq!(a.channels.len(), 4);
        let ops = &a.channels[0];
        assert_eq!((ops.rate_limit, ops.rate_window_seconds), (10, 3600));
        assert_eq!(ops.min_severity, Severity::Warning);
        assert_eq!(ops.cameras, ["front"]);
        let ChannelKind::Mqtt {
            url,
            home_assistant,
            discovery_prefix,
            ..
        } = &a.channels[1].kind
        else {
            panic!("{:?}", a.channels[1]);
        };
        assert_eq!((url.port(), *home_assistant), (Some(8883), true));
        assert_eq!(discovery_prefix, "homeassistant");
        let ChannelKind::Twilio { base_url, .. } = &a.channels[2].kind else {
            panic!()
        };
        assert_eq!(base_url.as_str(), "https://api.twilio.com/");
        let ChannelKind::Email { smtp_port, .. } = &a.channels[3].kind else {
            panic!()
        };
        assert_eq!(*smtp_port, 587);
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }

    #[test]
    fn json_round_trip_uses_the_same_rules() {
        let a = alerts(FOUR).unwrap();
        for c in &a.channels {
            let j = c.settings_json();
            assert!(j.get("name").is_none());
            let back = ChannelConfig::from_json(&c.name, &j).unwrap();
            assert_eq!(&back, c);
        }
        let e = ChannelConfig::from_json(
            "ops",
            &json!({"kind": "webhook", "url": "http://hooks.example/x", "secret": "s"}),
        )
        .unwrap_err();
        assert!(e.starts_with("url: http:// is only allowed to a loopback"), "{e}");
        let e = ChannelConfig::from_json("Bad Name", &json!({"kind": "webhook"})).unwrap_err();
        assert!(e.starts_with("name: "), "{e}");
        let e = ChannelConfig::from_json("x", &json!({"kind": "mqtt", "url": "mqtt://127.0.0.1", "colour": 1}))
            .unwrap_err();
        assert!(e.starts_with("colour: unknown key for a mqtt channel"), "{e}");
        let ok = ChannelConfig::from_json(
            "x",
            &json!({"kind": "mqtt", "url": "mqtt://127.0.0.1", "secret_value": "pw"}),
        )
        .unwrap();
        let ChannelKind::Mqtt { url, .. } = ok.kind else {
            panic!()
        };
        assert_eq!(url.port(), Some(1883));
        let ok = ChannelConfig::from_json(
            "hook",
            &json!({"kind": "webhook", "url": "http://127.0.0.1:9/x", "secret": "alert-hook", "rate_limit": 3}),
        )
        .unwrap();
        assert_eq!(ok.rate_limit, 3);
    }

    #[test]
    fn bad_lines_are_named() {
        let at = |text: &str| {
            let e = alerts(text).unwrap_err();
            // The line marked #here, or the channel's header for a missing key.
            let marked = text.lines().position(|l| l.contains("#here"));
            let header = text.lines().position(|l| l.contains("[[alerts.channel]]"));
            let line = BASE.lines().count() + marked.or(header).unwrap() + 1;
            assert_eq!(e.line, line, "{e}");
            e
        };
        let one = |body: &str| format!("[alerts]\n[[alerts.channel]]\n{body}\n");
        for (body, key, words) in [
            ("name = \"Ops\" #here\nkind = \"webhook\"", "alerts.channel.name", "lowercase"),
            (
                "name = \"ops\"\nkind = \"pager\" #here",
                "alerts.channel.kind",
                "expected \"webhook\"",
            ),
            (
                "name = \"ops\"\nkind = \"webhook\"\nurl = \"http://hooks.example/\" #here\nsecret = \"s\"",
                "alerts.channel.url",
                "loopback",
            ),
            (
                "name = \"ops\"\nkind = \"webhook\"\nurl = \"https://hooks.example/\"",
                "alerts.channel.secret",
                "needs `secret`",
            ),
            (
                "name = \"ops\"\nkind = \"webhook\"\nurl = \"https://h.example/\"\nsecret = \"s\"\nrate_limit = 0 #here",
                "alerts.channel.rate_limit",
                "between 1 and",
            ),
            (
                "name = \"m\"\nkind = \"mqtt\"\nurl = \"mqtt://broker.lan\" #here",
                "alerts.channel.url",
                "loopback",
            ),
            (
                "name = \"m\"\nkind = \"mqtt\"\nurl = \"mqtts://broker.lan\"\nsmtp_port = 1 #here",
                "alerts.channel.smtp_port",
                "unknown key for a mqtt channel",
            ),
            (
                "name = \"t\"\nkind = \"twilio\"\nbase_url = \"http://api.example\" #here\naccount_sid = \"AC1\"\nfrom = \"+15550001111\"\nto = \"+15550001112\"\nsecret = \"tok\"",
                "alerts.channel.base_url",
                "loopback",
            ),
            (
                "name = \"e\"\nkind = \"email\"\nsmtp_host = \"mail.lan\"\nfrom = \"vigil@lan\"",
                "alerts.channel.to",
                "at least one address",
            ),
            (
                "name = \"e\"\nkind = \"email\"\nsmtp_host = \"mail.lan\"\nfrom = \"vigil@lan\"\nto = [\"x\"] #here",
                "alerts.channel.to",
                "expected an address",
            ),
            (
                "name = \"e\"\nkind = \"webhook\"\nurl = \"https://h.example/\"\nsecret = \"s\"\nmin_severity = \"loud\" #here",
                "alerts.channel.min_severity",
                "expected \"info\"",
            ),
        ] {
            let e = at(&one(body));
            assert_eq!(e.key, key, "{body}: {e}");
            assert!(e.message.contains(words), "{body}: {e}");
        }
        let dup = "[alerts]\n[[alerts.channel]]\nname = \"m\"\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1\"\n[[alerts.channel]]\nname = \"m\" #here\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1\"\n";
        assert_eq!(at(dup).key, "alerts.channel.name");
        let e = at("[alerts]\nflap_threshold = 0 #here\n");
        assert_eq!(e.key, "alerts.flap_threshold");
        let e = at("[alerts]\nwhatever = 1 #here\n");
        assert_eq!(e.key, "alerts.whatever");
    }
}
