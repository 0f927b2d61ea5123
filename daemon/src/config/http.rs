//! `[http]` of `vigil.toml`: the HTTPS listener, its connection limits and
//! timeouts, and the optional plain-HTTP redirect.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{absolute, ConfigError, Src};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<String>>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    #[serde(default)]
    tls12: bool,
    max_connections_per_ip: Option<Spanned<u32>>,
    max_connections_per_network: Option<Spanned<u32>>,
    max_connections: Option<Spanned<u32>>,
    idle_timeout_seconds: Option<Spanned<u32>>,
    #[serde(alias = "request_timeout")]
    request_timeout_seconds: Option<Spanned<u32>>,
    host_name: Option<Spanned<String>>,
    plain_listen: Option<Spanned<String>>,
    plain_action: Option<Spanned<String>>,
    #[serde(default)]
    require_mfa_for_admins: bool,
    max_transcodes: Option<Spanned<u32>>,
}

/// `[http]`: the HTTPS API and web UI. Absent: no listener.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain and key; both or neither. Neither: a self-signed
    /// certificate is made at first start and its key kept in the secrets store.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// Also accept TLS 1.2 (TLS 1.3 only by default).
    pub tls12: bool,
    pub max_connections_per_ip: usize,
    /// Connections from one /24 (IPv4) or /64 (IPv6) network.
    pub max_connections_per_network: usize,
    /// Connections from all clients together.
    pub max_connections: usize,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: Duration,
    /// A request's head and body must both arrive within this.
    pub request_timeout: Duration,
    /// The name the plain-HTTP redirect sends clients to; None: the
    /// machine's host name (the self-signed certificate's name).
    pub host_name: Option<String>,
    /// An optional plain-HTTP listener that only redirects to HTTPS
    /// (`redirect`) or refuses with 403 (`refuse`).
    pub plain: Option<(std::net::SocketAddr, PlainAction)>,
    /// Admins must enrol a TOTP second factor before doing anything else.
    pub require_mfa_for_admins: bool,
    /// H.265 → H.264 conversions for browsers running at once over the
    /// whole box (a live camera's converter counts once).
    pub max_transcodes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainAction {
    Redirect,
    Refuse,
}

/// A host name for the redirect: a DNS name, an IPv4 address or a bracketed
/// IPv6 address; nothing that could carry a path, a port or a user.
pub fn valid_host_name(n: &str) -> bool {
    let bracketed = n.starts_with('[') && n.ends_with(']') && n.len() > 2;
    !n.is_empty()
        && n.len() < 254
        && !n.starts_with(['-', '.'])
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b) || (bracketed && b"[]:".contains(&b)))
}

pub(super) fn parse(src: &Src<'_>, h: Spanned<RawHttp>) -> Result<HttpConfig, ConfigError> {
    let span = h.span();
    let h = h.into_inner();
    let listen = match h.listen {
        Some(l) => l.get_ref().parse().map_err(|_| {
            src.err(
                l.span(),
                "http.listen",
                format!("\"{}\": expected address:port, e.g. \"0.0.0.0:8443\"", l.get_ref()),
            )
        })?,
        None => std::net::SocketAddr::from(([0, 0, 0, 0], 8443)),
    };
    let cert_key = match (h.cert, h.key) {
        (Some(c), Some(k)) => Some((absolute(src, c, "http.cert")?, absolute(src, k, "http.key")?)),
        (None, None) => None,
        _ => return Err(src.err(span, "http.cert", "give both cert and key, or neither (self-signed)")),
    };
    let max_connections_per_ip = match h.max_connections_per_ip {
        Some(m) if (1..=10_000).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => return Err(src.err(m.span(), "http.max_connections_per_ip", "must be between 1 and 10000")),
        None => 32,
    };
    let max_connections = match h.max_connections {
        Some(m) if (1..=100_000).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => return Err(src.err(m.span(), "http.max_connections", "must be between 1 and 100000")),
        // Each open connection costs about 22 KiB (hyper's 8 KiB read
        // buffer, rustls' record buffers, the task): 512 hold about 11 MiB,
        // which a board with 1 GiB and the 64 MiB budget under attack
        // affords (docs/performance.md). nginx's default is 512 too.
        None => 512,
    };
    let max_connections_per_network = match h.max_connections_per_network {
        Some(m) if (1..=100_000).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => {
            return Err(src.err(
                m.span(),
                "http.max_connections_per_network",
                "must be between 1 and 100000",
            ))
        }
        None => (4 * max_connections_per_ip).min(max_connections),
    };
    let request_timeout = match h.request_timeout_seconds {
        Some(m) if (1..=600).contains(m.get_ref()) => Duration::from_secs(u64::from(*m.get_ref())),
        Some(m) => return Err(src.err(m.span(), "http.request_timeout_seconds", "must be between 1 and 600")),
        None => Duration::from_secs(10),
    };
    let host_name = match h.host_name {
        None => None,
        Some(n) if valid_host_name(n.get_ref()) => Some(n.into_inner()),
        Some(n) => {
            return Err(src.err(
                n.span(),
                "http.host_name",
                format!(
                    "\"{}\": expected a DNS name or an IP address (letters, digits, '-', '.', ':' and [ ])",
                    n.get_ref().escape_debug()
                ),
            ))
        }
    };
    let idle_timeout = match h.idle_timeout_seconds {
        Some(m) if (1..=3600).contains(m.get_ref()) => Duration::from_secs(u64::from(*m.get_ref())),
        Some(m) => return Err(src.err(m.span(), "http.idle_timeout_seconds", "must be between 1 and 3600")),
        None => Duration::from_secs(30),
    };
    let plain = match h.plain_listen {
        None => None,
        Some(l) => {
            let addr = l.get_ref().parse().map_err(|_| {
                src.err(
                    l.span(),
                    "http.plain_listen",
                    format!("\"{}\": expected address:port, e.g. \"0.0.0.0:8080\"", l.get_ref()),
                )
            })?;
            let action = match h.plain_action.as_ref().map(|a| a.get_ref().as_str()) {
                None | Some("redirect") => PlainAction::Redirect,
                Some("refuse") => PlainAction::Refuse,
                Some(other) => {
                    let span = h.plain_action.as_ref().map(|a| a.span()).unwrap_or(span.clone());
                    return Err(src.err(
                        span,
                        "http.plain_action",
                        format!("\"{other}\": expected \"redirect\" or \"refuse\""),
                    ));
                }
            };
            Some((addr, action))
        }
    };
    let max_transcodes = match h.max_transcodes {
        Some(m) if (0..=16).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => return Err(src.err(m.span(), "http.max_transcodes", "must be between 0 and 16")),
        None => 2,
    };
    Ok(HttpConfig {
        listen,
        max_transcodes,
        cert_key,
        tls12: h.tls12,
        max_connections_per_ip,
        max_connections_per_network,
        max_connections,
        idle_timeout,
        request_timeout,
        host_name,
        plain,
        require_mfa_for_admins: h.require_mfa_for_admins,
    })
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

[http]
"#;

    fn http(extra: &str) -> Result<HttpConfig, ConfigError> {
        let c = Config::parse(Path::new("/etc/vigil/vigil.toml"), &format!("{BASE}{extra}"))?;
        Ok(c.http.unwrap())
    }

    #[test]
    fn defaults_bound_every_client() {
        let h = http("").unwrap();
        assert_eq!(h.max_connections_per_ip, 32);
        assert_eq!(h.max_connections_per_network, 128);
        assert_eq!(h.max_connections, 512);
        assert_eq!(h.request_timeout, Duration::from_secs(10));
        assert_eq!(h.host_name, None);
        assert_eq!(h.max_transcodes, 2);
        assert_eq!(http("max_transcodes = 0\n").unwrap().max_transcodes, 0);
        let h = http("max_connections = 64\nrequest_timeout_seconds = 3\nhost_name = \"nvr.example\"\n").unwrap();
        assert_eq!(h.max_connections_per_network, 64, "never above the total");
        assert_eq!(h.request_timeout, Duration::from_secs(3));
        assert_eq!(h.host_name.as_deref(), Some("nvr.example"));
        assert_eq!(
            http("request_timeout = 4\n").unwrap().request_timeout,
            Duration::from_secs(4)
        );
        assert_eq!(
            http("host_name = \"[fd00::1]\"\n").unwrap().host_name.as_deref(),
            Some("[fd00::1]")
        );
    }

    #[test]
    fn hostile_or_out_of_range_values_are_refused() {
        for (extra, key) in [
            ("host_name = \"evil.example/x\"\n", "http.host_name"),
            ("host_name = \"a@b\"\n", "http.host_name"),
            ("host_name = \"a.example\\r\\nX: y\"\n", "http.host_name"),
            ("host_name = \"a:8443\"\n", "http.host_name"),
            ("host_name = \"\"\n", "http.host_name"),
            ("max_connections = 0\n", "http.max_connections"),
            ("max_connections_per_network = 0\n", "http.max_connections_per_network"),
            ("request_timeout_seconds = 0\n", "http.request_timeout_seconds"),
            ("request_timeout_seconds = 601\n", "http.request_timeout_seconds"),
            ("max_transcodes = 17\n", "http.max_transcodes"),
        ] {
            let e = http(extra).unwrap_err();
            assert_eq!(e.key, key, "{extra}: {e}");
            assert!(!e.to_string().contains('\r'), "{e}");
        }
    }
}
