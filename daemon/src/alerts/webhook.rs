//! The webhook channel: the message's JSON POSTed to a URL, signed with
//! HMAC-SHA256 over "<timestamp>.<body>" (`X-Vigil-Signature`), with the
//! timestamp (`X-Vigil-Timestamp`, receivers refuse one more than 300 s off)
//! and the idempotency key (`Idempotency-Key`).

use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::http_client::{self, redact};
use super::{shown_url, Message, SendError};

/// The `X-Vigil-Signature` value: `sha256=` and the lowercase hex
/// HMAC-SHA256 of "<timestamp>.<body>" keyed with `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub struct Webhook {
    url: url::Url,
    secret: Zeroizing<Vec<u8>>,
    tls: Arc<rustls::ClientConfig>,
    what: String,
}

impl Webhook {
    pub fn new(url: url::Url, secret: Zeroizing<Vec<u8>>, ca_file: Option<&Path>) -> Result<Webhook, SendError> {
        if secret.is_empty() {
            return Err(SendError::Config("the webhook's HMAC key is empty".into()));
        }
        let tls = if url.scheme() == "https" {
            http_client::tls_config(ca_file, &[b"http/1.1"])?
        } else {
            // Plain HTTP (loopback only): no roots needed.
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| SendError::Config(format!("TLS setup failed: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        };
        let what = format!("webhook {}", shown_url(&url));
        Ok(Webhook { url, secret, tls, what })
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), SendError> {
        let body = serde_json::to_vec(&m.json)
            .map_err(|e| SendError::Config(format!("cannot encode the message as JSON: {e}")))?;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let headers = [
            ("content-type", "application/json".to_string()),
            ("idempotency-key", m.idempotency_key.clone()),
            ("x-vigil-timestamp", ts.to_string()),
            ("x-vigil-signature", signature(&self.secret, ts, &body)),
        ];
        let answer = http_client::post(&self.tls, &self.url, &headers, body, &self.what).await?;
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let e = http_client::status_error(&self.what, &answer, &answer.excerpt());
        Err(match e {
            SendError::Server(t) => SendError::Server(redact(t, &self.secret)),
            SendError::Rejected(t) => SendError::Rejected(redact(t, &self.secret)),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::test_tls::{self, Seen};

    #[test]
    fn signature_matches_openssl() {
        // printf '%s' '1764590400.{"version":1,"type":"test"}' | openssl dgst -sha256 -hmac 'hook-secret-1'
        assert_eq!(
            signature(b"hook-secret-1", 1_764_590_400, br#"{"version":1,"type":"test"}"#),
            "sha256=0b012aaef2f0a6878b756bf118546598e8d684e7911bc2e0e296feb05610652c"
        );
    }

    fn hook(url: &str, ca: &Path) -> Webhook {
        let url = url::Url::parse(url).unwrap();
        Webhook::new(url, Zeroizing::new(b"hook-secret-1".to_vec()), Some(ca)).unwrap()
    }

    #[tokio::test]
    async fn signed_post_arrives_and_errors_are_classified() {
        let pki = test_tls::Pki::new();
        let m = test_tls::message();
        // 200: delivered; the receiver checks method, path, headers and the HMAC.
        let srv = test_tls::Server::start(&pki, vec![(200, String::from("{}"))]).await;
        let mut w = hook(&format!("https://localhost:{}/hooks/vigil?x=1", srv.port), &pki.ca_path);
        w.send(&m).await.unwrap();
        let Seen { head, body } = srv.requests().await.remove(0);
        assert!(head.starts_with("POST /hooks/vigil?x=1 HTTP/1.1\r\n"), "{head}");
        let header = |n: &str| test_tls::header(&head, n).unwrap_or_else(|| panic!("no {n} in {head}"));
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("idempotency-key"), m.idempotency_key);
        let ts: i64 = header("x-vigil-timestamp").parse().unwrap();
        assert_eq!(header("x-vigil-signature"), signature(b"hook-secret-1", ts, &body));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - ts).abs() < 60);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap(), m.json);

        // 500: retry soon; 401: rejected; neither text holds the secret.
        let srv = test_tls::Server::start(
            &pki,
            vec![
                (500, String::from("oops hook-secret-1")),
                (401, String::from("bad signature")),
            ],
        )
        .await;
        let mut w = hook(&format!("https://127.0.0.1:{}/h", srv.port), &pki.ca_path);
        let e = w.send(&m).await.unwrap_err();
        assert!(matches!(e, SendError::Server(_)) && e.retry_soon(), "{e:?}");
        assert!(e.to_string().contains("answered HTTP 500"), "{e}");
        let e2 = w.send(&m).await.unwrap_err();
        assert!(matches!(e2, SendError::Rejected(_)) && !e2.retry_soon(), "{e2:?}");
        assert!(e2.to_string().contains("HTTP 401: bad signature"), "{e2}");
        for e in [&e, &e2] {
            assert!(!e.to_string().contains("hook-secret-1"), "{e}");
        }

        // A wrong CA: a TLS error that says so.
        let other = test_tls::Pki::new();
        let srv = test_tls::Server::start(&pki, vec![(200, String::new())]).await;
        let mut w = hook(&format!("https://localhost:{}/h", srv.port), &other.ca_path);
        let e = w.send(&m).await.unwrap_err();
        assert!(matches!(e, SendError::Tls(_)), "{e:?}");
        assert!(e.to_string().contains("not signed by a trusted CA"), "{e}");

        // Nothing listening: unreachable, retry soon.
        let (_refusing, port) = test_tls::refused_port();
        let mut w = hook(&format!("https://127.0.0.1:{port}/h"), &pki.ca_path);
        let e = w.send(&m).await.unwrap_err();
        assert!(matches!(e, SendError::Unreachable(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_within_the_bound() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let pki = test_tls::Pki::new();
        let cfg = crate::config::alerts::ChannelConfig::from_json(
            "hook",
            &serde_json::json!({"kind": "webhook", "url": format!("https://127.0.0.1:{port}/h"), "secret": "alert-hook",
                "ca_file": pki.ca_path.display().to_string()}),
        )
        .unwrap();
        let ctx = test_tls::context();
        let mut t = crate::alerts::Transport::new(&cfg, Some(Zeroizing::new(b"hook-secret-1".to_vec())), &ctx).unwrap();
        let started = std::time::Instant::now();
        let e = t.send(&test_tls::message()).await.unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(16),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(e, SendError::Timeout(_)) && e.retry_soon(), "{e:?}");
        assert!(e.to_string().contains("did not finish within"), "{e}");
        hold.abort();

        let e = crate::alerts::Transport::new(&cfg, None, &ctx).err().unwrap();
        assert!(matches!(e, SendError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("vigil secrets set alert-hook"), "{e}");
    }
}
