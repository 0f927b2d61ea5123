//! The SMS channel through Twilio's Messages API (or anything of its shape at
//! a configured base URL): a form POST with HTTP Basic auth
//! (account SID : auth token); HTTP 201 with a message `sid` is delivered.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use zeroize::Zeroizing;

use super::http_client::{self, redact};
use super::{shown_url, Message, SendError};

/// The longest SMS body sent (two segments).
pub const MAX_BODY_CHARS: usize = 320;

pub struct TwilioSettings {
    pub base_url: url::Url,
    pub account_sid: String,
    pub from: String,
    pub to: String,
}

pub struct Twilio {
    settings: TwilioSettings,
    url: url::Url,
    token: Zeroizing<Vec<u8>>,
    authorization: Zeroizing<String>,
    tls: Arc<rustls::ClientConfig>,
    what: String,
}

/// The SMS text: `[Vigil <device>] <SEVERITY>: <title>. <text> (ref <last 8
/// of the key>)`, at most [`MAX_BODY_CHARS`] characters; when too long the
/// text is cut (with "…") and the reference kept.
pub fn sms_body(m: &Message) -> String {
    let key: Vec<char> = m.idempotency_key.chars().collect();
    let tail: String = key[key.len().saturating_sub(8)..].iter().collect();
    let reference = format!(" (ref {tail})");
    let text = m.text.split_whitespace().collect::<Vec<_>>().join(" ");
    let main = format!("{}. {text}", m.headline());
    let room = MAX_BODY_CHARS.saturating_sub(reference.chars().count());
    let main = if main.chars().count() > room {
        let mut cut: String = main.chars().take(room.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        main
    };
    format!("{main}{reference}")
}

impl Twilio {
    pub fn new(
        settings: TwilioSettings,
        token: Zeroizing<Vec<u8>>,
        ca_file: Option<&Path>,
    ) -> Result<Twilio, SendError> {
        if token.is_empty() {
            return Err(SendError::Config("the Twilio auth token is empty".into()));
        }
        let mut url = settings.base_url.clone();
        let path = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            url.path().trim_end_matches('/'),
            settings.account_sid
        );
        url.set_path(&path);
        let mut pair = Zeroizing::new(Vec::with_capacity(settings.account_sid.len() + 1 + token.len()));
        pair.extend_from_slice(settings.account_sid.as_bytes());
        pair.push(b':');
        pair.extend_from_slice(&token);
        let authorization = Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&*pair)
        ));
        let tls = if url.scheme() == "https" {
            http_client::tls_config(ca_file, &[b"http/1.1"])?
        } else {
            http_client::tls_config(ca_file, &[b"http/1.1"]).or_else(|_| {
                // Plain HTTP (loopback only): the roots are not used.
                Ok::<_, SendError>(Arc::new(
                    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                        .with_safe_default_protocol_versions()
                        .map_err(|e| SendError::Config(format!("TLS setup failed: {e}")))?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                ))
            })?
        };
        let what = format!("Twilio at {}", shown_url(&settings.base_url));
        Ok(Twilio {
            settings,
            url,
            token,
            authorization,
            tls,
            what,
        })
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), SendError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("To", &self.settings.to)
            .append_pair("From", &self.settings.from)
            .append_pair("Body", &sms_body(m))
            .finish();
        let headers = [
            ("content-type", "application/x-www-form-urlencoded".to_string()),
            ("authorization", self.authorization.to_string()),
            ("idempotency-key", m.idempotency_key.clone()),
            ("accept", "application/json".to_string()),
        ];
        let answer = http_client::post(&self.tls, &self.url, &headers, form.into_bytes(), &self.what).await?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
        let field = |k: &str| json.as_ref().and_then(|j| j.get(k)).cloned();
        if (200..300).contains(&answer.status) {
            if field("sid").is_some_and(|s| s.as_str().is_some_and(|s| !s.is_empty())) {
                return Ok(());
            }
            return Err(SendError::Server(format!(
                "{} answered HTTP {} without a message sid",
                self.what, answer.status
            )));
        }
        // Twilio's error shape: {"code":21211,"message":"…","status":400}.
        let detail = match (
            field("code"),
            field("message").and_then(|m| m.as_str().map(String::from)),
        ) {
            (Some(code), Some(msg)) => format!("error {code}: {msg}"),
            (None, Some(msg)) => msg,
            _ => answer.excerpt(),
        };
        let detail = if matches!(answer.status, 401 | 403) {
            format!("{detail} (check account_sid and the auth token in the secrets store)")
        } else {
            detail
        };
        let e = http_client::status_error(&self.what, &answer, &detail);
        Err(match e {
            SendError::Server(t) => SendError::Server(redact(t, &self.token)),
            SendError::Rejected(t) => SendError::Rejected(redact(t, &self.token)),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::test_tls;

    const TOKEN: &[u8] = b"twilio-token-0123456789";

    fn client(port: u16, ca: &Path) -> Twilio {
        let settings = TwilioSettings {
            base_url: url::Url::parse(&format!("https://localhost:{port}")).unwrap(),
            account_sid: "AC0123456789".into(),
            from: "+15550001111".into(),
            to: "+15552223333".into(),
        };
        Twilio::new(settings, Zeroizing::new(TOKEN.to_vec()), Some(ca)).unwrap()
    }

    #[test]
    fn body_is_cut_and_keeps_the_reference() {
        let mut m = test_tls::message();
        assert_eq!(
            sms_body(&m),
            "[Vigil shop-nvr-3] CRITICAL: Camera front offline. Camera front has not streamed for 30 s. (ref 3c4d-e17)"
        );
        m.text = "word ".repeat(200);
        let b = sms_body(&m);
        assert_eq!(b.chars().count(), MAX_BODY_CHARS);
        assert!(b.ends_with("… (ref 3c4d-e17)"), "{b}");
    }

    #[tokio::test]
    async fn messages_api_shape_and_errors() {
        let pki = test_tls::Pki::new();
        let m = test_tls::message();
        let srv = test_tls::Server::start(
            &pki,
            vec![
                (201, r#"{"sid":"SM123","status":"queued"}"#.into()),
                (
                    400,
                    r#"{"code":21211,"message":"The 'To' number is not valid.","status":400}"#.into(),
                ),
                (401, r#"{"code":20003,"message":"Authenticate","status":401}"#.into()),
                (503, "busy".into()),
                (200, "{}".into()),
            ],
        )
        .await;
        let mut t = client(srv.port, &pki.ca_path);
        t.send(&m).await.unwrap();
        let e1 = t.send(&m).await.unwrap_err();
        let e2 = t.send(&m).await.unwrap_err();
        let e3 = t.send(&m).await.unwrap_err();
        let e4 = t.send(&m).await.unwrap_err();
        let seen = srv.requests().await;
        let first = &seen[0];
        assert!(
            first
                .head
                .starts_with("POST /2010-04-01/Accounts/AC0123456789/Messages.json HTTP/1.1\r\n"),
            "{}",
            first.head
        );
        let h = |n: &str| test_tls::header(&first.head, n).unwrap();
        assert_eq!(h("content-type"), "application/x-www-form-urlencoded");
        assert_eq!(h("idempotency-key"), m.idempotency_key);
        let basic = base64::engine::general_purpose::STANDARD.encode(b"AC0123456789:twilio-token-0123456789");
        assert_eq!(h("authorization"), format!("Basic {basic}"));
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&first.body).into_owned().collect();
        assert_eq!(form["To"], "+15552223333");
        assert_eq!(form["From"], "+15550001111");
        assert_eq!(form["Body"], sms_body(&m));

        assert!(matches!(e1, SendError::Rejected(_)), "{e1:?}");
        assert!(
            e1.to_string()
                .contains("HTTP 400: error 21211: The 'To' number is not valid."),
            "{e1}"
        );
        assert!(matches!(e2, SendError::Rejected(_)), "{e2:?}");
        assert!(e2.to_string().contains("check account_sid"), "{e2}");
        assert!(matches!(e3, SendError::Server(_)) && e3.retry_soon(), "{e3:?}");
        assert!(e4.to_string().contains("without a message sid"), "{e4}");
        for e in [e1, e2, e3, e4] {
            assert!(!e.to_string().contains("twilio-token"), "{e}");
            assert!(!e.to_string().contains(&basic), "{e}");
        }
    }
}
