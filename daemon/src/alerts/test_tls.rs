//! Test helpers for the channels: a throwaway certificate (rcgen) whose PEM
//! the client trusts through `ca_file`, a tiny loopback HTTPS server that
//! records each request and answers from a script, and a sample message.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Message, MessageKind, TransportContext};
use crate::config::alerts::Severity;

/// A self-signed certificate for localhost and 127.0.0.1, written to a tempdir.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

impl Pki {
    pub fn new() -> Pki {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&ca_path, ck.cert.pem()).unwrap();
        std::fs::write(&cert_path, ck.cert.pem()).unwrap();
        std::fs::write(&key_path, ck.key_pair.serialize_pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        Pki {
            _dir: dir,
            ca_path,
            cert_path,
            key_path,
            server: Arc::new(server),
        }
    }
}

/// One request as the server read it: the head (request line and headers)
/// and the body.
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

/// A header's value in a request head (name case-insensitive).
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A loopback HTTPS server: the n-th connection gets the n-th (status, body).
pub struct Server {
    pub port: u16,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(pki: &Pki, script: Vec<(u16, String)>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            for (status, body) in script {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = header(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(Seen {
                    head,
                    body: buf[head_end..head_end + len].to_vec(),
                });
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        Server { port, seen, task }
    }

    /// The requests read so far.
    pub async fn requests(mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Ok(s) = self.seen.try_recv() {
            out.push(s);
        }
        self.task.abort();
        out
    }
}

/// A loopback port that refuses connections and stays so while the
/// socket lives: bound but not listening, so no other test's server (nor
/// a client's own ephemeral port, which would connect to itself) can
/// take it, as one merely freed could be.
pub fn refused_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// A loopback port free now, never handed out before in this process (two
/// tests asking at once would otherwise both get the port one of them just
/// let go, and their servers race for it). Another process may still take
/// it: servers that can bind port 0 themselves should.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no loopback port that was not handed out already")
}

pub fn context() -> TransportContext {
    TransportContext {
        device_id: "vigil-1a2b3c4d".into(),
        device_name: "shop-nvr-3".into(),
    }
}

pub fn message() -> Message {
    Message {
        idempotency_key: "vigil-1a2b3c4d-e17".into(),
        kind: MessageKind::Raised,
        severity: Severity::Critical,
        title: "Camera front offline".into(),
        text: "Camera front has not streamed for 30 s.".into(),
        json: serde_json::json!({
            "version": 1, "type": "raised", "idempotency_key": "vigil-1a2b3c4d-e17",
            "device_id": "vigil-1a2b3c4d", "device_name": "shop-nvr-3", "sent_at": "2026-12-01T12:00:00Z",
            "alert": {"id": 17, "code": "camera.offline", "severity": "critical", "camera": "front",
                "message": "Camera front has not streamed for 30 s.", "first_seen": "2026-12-01T11:59:30Z", "cleared": null}
        }),
        device_id: "vigil-1a2b3c4d".into(),
        device_name: "shop-nvr-3".into(),
    }
}

/// A helper program started for a test, killed (by its PID) when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The program's path when it is installed, else None (the test prints
/// SKIPPED and returns).
pub fn tool(path: &str) -> Option<PathBuf> {
    let p = PathBuf::from(path);
    if p.exists() {
        Some(p)
    } else {
        println!("SKIPPED: {path} is not installed");
        None
    }
}

/// Waits (at most 10 s) until 127.0.0.1:port accepts connections.
pub fn wait_port(port: u16) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "nothing listens on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
