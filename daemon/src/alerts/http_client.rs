//! A one-shot HTTP/1.1 POST over TLS (or plain TCP to a loopback address),
//! for the webhook and Twilio channels: hyper's client on a tokio socket and
//! tokio-rustls, the system's roots or the channel's `ca_file`, bounded
//! connect, handshake and answer times and a capped answer body. Also builds
//! the rustls client configuration the MQTT and email channels use.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

use super::SendError;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer's body that is read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The largest `ca_file` read: a bundle of every public root is ~250 KiB.
const MAX_CA_FILE: u64 = 1 << 20;

/// Reads `ca_file`: a regular file of at most [`MAX_CA_FILE`] bytes (not
/// a device such as /dev/zero, not a database).
fn read_ca_file(path: &Path) -> Result<Vec<u8>, SendError> {
    use std::io::Read;
    let bad = |why: String| SendError::Config(format!("cannot read ca_file {}: {why}", path.display()));
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let meta = f.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > MAX_CA_FILE {
        return Err(bad(format!("larger than {} KiB", MAX_CA_FILE >> 10)));
    }
    let mut pem = Vec::new();
    f.take(MAX_CA_FILE)
        .read_to_end(&mut pem)
        .map_err(|e| bad(e.to_string()))?;
    Ok(pem)
}

/// The trusted roots: the PEM certificates in `ca_file`, or the system's.
pub fn root_certs(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, SendError> {
    match ca_file {
        Some(path) => {
            let pem = read_ca_file(path)?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SendError::Config(format!("ca_file {} is not valid PEM: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(SendError::Config(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            Ok(certs)
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(SendError::Config(
                    "no CA certificates found in the system store (/etc/ssl/certs); set ca_file".into(),
                ));
            }
            Ok(found.certs)
        }
    }
}

/// A TLS 1.2/1.3 client configuration (ring) trusting `ca_file` or the
/// system's roots; `alpn` e.g. `[b"http/1.1"]`.
pub fn tls_config(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, SendError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(root_certs(ca_file)?);
    if added == 0 {
        return Err(SendError::Config(match ca_file {
            Some(p) => format!("ca_file {} holds no usable CA certificate", p.display()),
            None => "no usable CA certificate in the system store (/etc/ssl/certs); set ca_file".into(),
        }));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SendError::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The name the server's certificate must carry: the URL's DNS name or IP.
pub fn server_name(url: &url::Url) -> Result<ServerName<'static>, SendError> {
    match url.host() {
        Some(url::Host::Domain(d)) => ServerName::try_from(d.to_string())
            .map_err(|_| SendError::Config(format!("\"{d}\" is not a valid TLS server name"))),
        Some(url::Host::Ipv4(ip)) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(ip).into())),
        Some(url::Host::Ipv6(ip)) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(ip).into())),
        None => Err(SendError::Config("the URL has no host".into())),
    }
}

/// The text of a TLS failure, with a hint a technician can act on.
pub fn tls_failure(what: &str, e: &dyn std::fmt::Display) -> SendError {
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (the server's certificate is not signed by a trusted CA: check ca_file)"
    } else if text.contains("NotValidForName") {
        " (the server's certificate is not for this host name)"
    } else if text.contains("Expired") {
        " (the server's certificate has expired)"
    } else {
        ""
    };
    SendError::Tls(format!("TLS handshake with {what} failed: {text}{hint}"))
}

/// Connects to host:port of `url` within [`CONNECT_TIMEOUT`].
pub async fn connect(url: &url::Url, what: &str) -> Result<TcpStream, SendError> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(SendError::Config(format!("{what}: the URL has no host"))),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(SendError::Unreachable(format!("cannot connect to {what}: {e}"))),
        Err(_) => Err(SendError::Timeout(format!(
            "cannot connect to {what}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// An HTTP answer: status and (at most [`MAX_ANSWER_BYTES`] of) body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text for an error message: one line, at most 300 chars.
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        line.trim().to_string()
    }
}

/// The error for a non-2xx answer: 408, 429 and 5xx are the receiver's
/// trouble (retry soon), other codes a refusal (retry later).
pub fn status_error(what: &str, answer: &Answer, detail: &str) -> SendError {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    let text = format!("{what} answered HTTP {}{detail}", answer.status);
    match answer.status {
        408 | 429 | 500..=599 => SendError::Server(text),
        _ => SendError::Rejected(text),
    }
}

/// Sends one POST to `url` (https, or http to loopback) with `headers` and
/// `body`, and reads the answer. `what` names the receiver in errors.
pub async fn post(
    tls: &Arc<ClientConfig>,
    url: &url::Url,
    headers: &[(&str, String)],
    body: Vec<u8>,
    what: &str,
) -> Result<Answer, SendError> {
    let tcp = connect(url, what).await?;
    match url.scheme() {
        "https" => {
            let name = server_name(url)?;
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(tls_failure(what, &e)),
                Err(_) => {
                    return Err(SendError::Timeout(format!(
                        "TLS handshake with {what} did not finish within {} s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    )))
                }
            };
            exchange(stream, url, headers, body, what).await
        }
        "http" => exchange(tcp, url, headers, body, what).await,
        other => Err(SendError::Config(format!("{what}: unsupported scheme {other}://"))),
    }
}

async fn exchange<S>(
    io: S,
    url: &url::Url,
    headers: &[(&str, String)],
    body: Vec<u8>,
    what: &str,
) -> Result<Answer, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let lost = |e: hyper::Error| SendError::Unreachable(format!("the connection to {what} failed: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(lost)?;
    let driver = tokio::spawn(conn);
    let _stop = AbortOnDrop(driver);

    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    };
    let mut req = hyper::Request::post(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, concat!("vigil/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| SendError::Config(format!("{what}: cannot build the request: {e}")))?;

    let answer = async {
        let resp = sender.send_request(req).await.map_err(lost)?;
        let status = resp.status().as_u16();
        // An over-long or cut body reads as empty: the status still says what happened.
        let body: Vec<u8> = crate::base::body::read_whole(resp.into_body(), MAX_ANSWER_BYTES)
            .await
            .unwrap_or_default();
        Ok(Answer { status, body })
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(r) => r,
        Err(_) => Err(SendError::Timeout(format!(
            "{what} did not answer within {} s",
            ANSWER_TIMEOUT.as_secs()
        ))),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `text` with every occurrence of `secret` (as text) replaced by "***": for
/// error texts built from what a receiver answered.
pub fn redact(text: String, secret: &[u8]) -> String {
    match std::str::from_utf8(secret) {
        Ok(s) if s.len() >= 4 && text.contains(s) => text.replace(s, "***"),
        _ => text,
    }
}
