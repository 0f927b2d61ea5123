//! Alerts that reach someone: the message every channel carries, the error a
//! delivery ends with, and [`Transport`], one configured channel (webhook,
//! MQTT, Twilio SMS or email) that sends messages. The outbox dispatcher that
//! decides what to send when lives beside them.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::config::alerts::{ChannelConfig, ChannelKind, Severity};

pub mod channels;
pub mod dispatch;
pub mod http_client;
pub mod message;
pub mod mqtt;
pub mod smtp;
pub mod twilio;
pub mod webhook;

/// The longest one `send` may take, connection and TLS included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// What a message says about its alert(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Raised,
    Resolved,
    Digest,
    Test,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Raised => "raised",
            MessageKind::Resolved => "resolved",
            MessageKind::Digest => "digest",
            MessageKind::Test => "test",
        }
    }
}

/// One message for one channel, in the forms every kind needs.
#[derive(Clone, Debug)]
pub struct Message {
    /// The same for every retry of this message: receivers drop duplicates by it.
    pub idempotency_key: String,
    pub kind: MessageKind,
    /// The highest in a digest.
    pub severity: Severity,
    /// One line: "Camera front offline".
    pub title: String,
    /// The human sentence(s); a digest lists one line per event.
    pub text: String,
    /// The full JSON payload (the webhook body, the MQTT alert message).
    pub json: serde_json::Value,
    pub device_id: String,
    pub device_name: String,
}

impl Message {
    /// `[Vigil <device>] <SEVERITY>: <title>`: the email subject and SMS start.
    pub fn headline(&self) -> String {
        format!(
            "[Vigil {}] {}: {}",
            self.device_name,
            self.severity.as_str().to_uppercase(),
            self.title
        )
    }
}

/// Why a message was not delivered. The text is one sentence for a
/// technician and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The channel cannot work as configured (missing secret, unreadable CA file).
    #[error("the channel is not usable: {0}")]
    Config(String),
    /// Connection refused, name not found, connection lost: retry soon.
    #[error("{0}")]
    Unreachable(String),
    /// No answer within the bound: retry soon.
    #[error("{0}")]
    Timeout(String),
    /// The receiver answered but failed (5xx, 408, 429): retry soon.
    #[error("{0}")]
    Server(String),
    /// The TLS handshake failed (unknown CA, wrong name, no TLS): fix the
    /// configuration; retry later.
    #[error("{0}")]
    Tls(String),
    /// The receiver refused the message or our credentials (4xx, SMTP 5xx,
    /// MQTT not authorised): fix the configuration; retry later.
    #[error("{0}")]
    Rejected(String),
}

impl SendError {
    /// True when the failure is likely to pass by itself (network, timeout,
    /// server error): retry soon. False: a configuration or credential
    /// problem; retry later (the alert is kept, not dropped).
    pub fn retry_soon(&self) -> bool {
        matches!(
            self,
            SendError::Unreachable(_) | SendError::Timeout(_) | SendError::Server(_)
        )
    }
}

/// Who is sending: the box's id (`vigil-…`) and human name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportContext {
    pub device_id: String,
    pub device_name: String,
}

/// One configured channel, ready to send.
pub struct Transport {
    inner: Kind,
}

enum Kind {
    Webhook(webhook::Webhook),
    Mqtt(Box<mqtt::Mqtt>),
    Twilio(twilio::Twilio),
    Email(Box<smtp::Email>),
}

impl Transport {
    /// Builds the channel: reads `ca_file`, checks that the secret it needs
    /// is there. Connects nothing yet (MQTT connects on first use).
    pub fn new(
        cfg: &ChannelConfig,
        secret: Option<Zeroizing<Vec<u8>>>,
        ctx: &TransportContext,
    ) -> Result<Transport, SendError> {
        Transport::open(cfg, secret, ctx, false)
    }

    /// A one-off transport for a test message, beside the daemon's own
    /// (MQTT: another client id and session, and it never marks the box
    /// offline).
    pub fn for_test(
        cfg: &ChannelConfig,
        secret: Option<Zeroizing<Vec<u8>>>,
        ctx: &TransportContext,
    ) -> Result<Transport, SendError> {
        Transport::open(cfg, secret, ctx, true)
    }

    fn open(
        cfg: &ChannelConfig,
        secret: Option<Zeroizing<Vec<u8>>>,
        ctx: &TransportContext,
        ephemeral: bool,
    ) -> Result<Transport, SendError> {
        let need = |what: &str| {
            SendError::Config(format!(
                "channel \"{}\" needs its {what} in the secrets store{}",
                cfg.name,
                match &cfg.secret {
                    Some(name) => format!(" (`vigil secrets set {name}`)"),
                    None => String::from(" (set `secret` to the name of the entry)"),
                }
            ))
        };
        let inner = match &cfg.kind {
            ChannelKind::Webhook { url } => {
                let secret = secret.ok_or_else(|| need("HMAC key"))?;
                Kind::Webhook(webhook::Webhook::new(url.clone(), secret, cfg.ca_file.as_deref())?)
            }
            ChannelKind::Twilio {
                base_url,
                account_sid,
                from,
                to,
            } => {
                let token = secret.ok_or_else(|| need("auth token"))?;
                Kind::Twilio(twilio::Twilio::new(
                    twilio::TwilioSettings {
                        base_url: base_url.clone(),
                        account_sid: account_sid.clone(),
                        from: from.clone(),
                        to: to.clone(),
                    },
                    token,
                    cfg.ca_file.as_deref(),
                )?)
            }
            ChannelKind::Email { .. } => Kind::Email(Box::new(smtp::Email::new(cfg, secret)?)),
            ChannelKind::Mqtt { .. } => Kind::Mqtt(Box::new(mqtt::Mqtt::new(cfg, secret, ctx, ephemeral)?)),
        };
        Ok(Transport { inner })
    }

    /// Sends one message; returns when the receiver has taken it (HTTP 2xx,
    /// SMTP 250, MQTT PUBACK), within [`SEND_TIMEOUT`].
    pub async fn send(&mut self, m: &Message) -> Result<(), SendError> {
        let what = self.kind_name();
        let sending = async {
            match &mut self.inner {
                Kind::Webhook(w) => w.send(m).await,
                Kind::Twilio(t) => t.send(m).await,
                Kind::Email(e) => e.send(m).await,
                Kind::Mqtt(q) => q.send(m).await,
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, sending).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(format!(
                "the {what} receiver did not take the message within {} s",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Publishes the box's state where the kind keeps one (MQTT: retained
    /// camera states and open problems; the others: nothing). `cameras` is
    /// (name, streaming); `problems` is `{"open":N,"alerts":[…]}`.
    pub async fn publish_states(
        &mut self,
        cameras: &[(String, bool)],
        problems: &serde_json::Value,
    ) -> Result<(), SendError> {
        match &mut self.inner {
            Kind::Mqtt(q) => q.publish_states(cameras, problems).await,
            _ => Ok(()),
        }
    }

    /// Closes the channel cleanly (MQTT: "offline" on the box's state
    /// topic, then DISCONNECT, waited for); the others hold no connection.
    pub async fn close(&mut self) {
        if let Kind::Mqtt(q) = &mut self.inner {
            q.close().await;
        }
    }

    /// "webhook" | "mqtt" | "twilio" | "email".
    pub fn kind_name(&self) -> &'static str {
        match self.inner {
            Kind::Webhook(_) => "webhook",
            Kind::Mqtt(_) => "mqtt",
            Kind::Twilio(_) => "twilio",
            Kind::Email(_) => "email",
        }
    }
}

/// A URL as errors show it: scheme, host, port and path; no query, no user.
pub(crate) fn shown_url(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("{}://{host}{port}{}", url.scheme(), url.path())
}

#[cfg(test)]
pub(crate) mod test_tls;
