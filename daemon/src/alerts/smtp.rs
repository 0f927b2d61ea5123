//! The email channel: SMTP with STARTTLS required (lettre on tokio and
//! rustls/ring), AUTH when a username is set, one connection per message.
//! Subject `[Vigil <device>] <SEVERITY>: <title>`, Message-ID from the
//! idempotency key, `X-Vigil-Idempotency-Key`, a text/plain body with the
//! sentence(s) and the JSON payload.

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use zeroize::Zeroizing;

use super::http_client::{redact, root_certs};
use super::{Message, SendError};
use crate::config::alerts::{ChannelConfig, ChannelKind};

/// The SMTP dialogue's bound per command (the whole send is bounded by
/// the transport's 15 s).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `X-Vigil-Idempotency-Key: <key>`.
#[derive(Clone)]
struct IdempotencyKey(String);

impl Header for IdempotencyKey {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Vigil-Idempotency-Key")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(IdempotencyKey(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    password: Option<Zeroizing<Vec<u8>>>,
    what: String,
}

fn mailbox(key: &str, a: &str) -> Result<Mailbox, SendError> {
    a.parse()
        .map_err(|e| SendError::Config(format!("{key} address \"{a}\" is not valid: {e}")))
}

impl Email {
    pub fn new(cfg: &ChannelConfig, secret: Option<Zeroizing<Vec<u8>>>) -> Result<Email, SendError> {
        let ChannelKind::Email {
            smtp_host,
            smtp_port,
            username,
            from,
            to,
        } = &cfg.kind
        else {
            return Err(SendError::Config("not an email channel".into()));
        };
        let mut tls = TlsParameters::builder(smtp_host.clone()).certificate_store(CertificateStore::None);
        for der in root_certs(cfg.ca_file.as_deref())? {
            if let Ok(c) = Certificate::from_der(der.to_vec()) {
                tls = tls.add_root_certificate(c);
            }
        }
        let tls: TlsParameters = tls
            .build_rustls()
            .map_err(|e| SendError::Config(format!("TLS setup for {smtp_host} failed: {e}")))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp_host.clone())
            .port(*smtp_port)
            .tls(Tls::Required(tls))
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = username {
            let Some(pw) = &secret else {
                return Err(SendError::Config(format!(
                    "channel \"{}\" has a username but no password: set `secret` and store it with `vigil secrets set`",
                    cfg.name
                )));
            };
            let pw = String::from_utf8(pw.to_vec())
                .map_err(|_| SendError::Config("the SMTP password is not UTF-8 text".into()))?;
            builder = builder.credentials(Credentials::new(user.clone(), pw));
        }
        Ok(Email {
            transport: builder.build(),
            from: mailbox("from", from)?,
            to: to.iter().map(|a| mailbox("to", a)).collect::<Result<_, _>>()?,
            password: secret,
            what: format!("SMTP server {smtp_host}:{smtp_port}"),
        })
    }

    fn mail(&self, m: &Message) -> Result<lettre::Message, SendError> {
        let pretty = serde_json::to_string_pretty(&m.json).unwrap_or_default();
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(m.headline())
            .message_id(Some(format!("<{}@vigil>", m.idempotency_key)))
            .header(IdempotencyKey(m.idempotency_key.clone()))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.body(format!("{}\n\n{pretty}\n", m.text))
            .map_err(|e| SendError::Config(format!("cannot build the email: {e}")))
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), SendError> {
        let mail = self.mail(m)?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = format!("{} did not take the email: {e}", self.what);
                let text = match &self.password {
                    Some(pw) => redact(text, pw),
                    None => text,
                };
                Err(if e.is_timeout() {
                    SendError::Timeout(text)
                } else if e.is_tls() || text.contains("peer certificate") {
                    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
                        " (the server's certificate is not signed by a trusted CA: check ca_file)"
                    } else {
                        ""
                    };
                    SendError::Tls(format!("{text}{hint}"))
                } else if e.is_permanent() {
                    SendError::Rejected(text)
                } else if e.is_transient() {
                    SendError::Server(text)
                } else if e.is_client() && (text.contains("STARTTLS") || text.contains("authentication")) {
                    SendError::Rejected(text)
                } else {
                    SendError::Unreachable(text)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
