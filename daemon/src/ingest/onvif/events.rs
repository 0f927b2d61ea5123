//! Camera events (ONVIF Events ver10, WS-BaseNotification pull points):
//! subscribe, pull motion and tamper messages, renew, unsubscribe.

use std::time::Duration;

use url::Url;

use super::soap::{self, NS_EVENTS, NS_SCHEMA, NS_WSNT};
use super::{Device, OnvifError};

const NS_WSA: &str = "http://www.w3.org/2005/08/addressing";
/// The longest a pull may wait for a message.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(60);
/// How long a subscription lasts unless renewed.
pub const SUBSCRIPTION_SECONDS: u64 = 60;

/// One motion or tamper message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CameraEvent {
    /// The camera's time of the event (its clock, not this box's).
    pub utc_ms: i64,
    /// "motion" or "tamper".
    pub kind: &'static str,
    /// Whether it started (true) or ended.
    pub state: bool,
    /// The ONVIF topic as the camera wrote it.
    pub topic: String,
}

/// A pull-point subscription on one camera.
pub struct PullPoint<'a> {
    device: &'a Device,
    address: Url,
}

impl Device {
    /// CreatePullPointSubscription, for [`SUBSCRIPTION_SECONDS`].
    pub async fn create_pull_point(&self) -> Result<PullPoint<'_>, OnvifError> {
        let url = self.services().await?.events.ok_or_else(|| OnvifError::Fault {
            code: "NoEventService".into(),
            reason: "the camera offers no event service".into(),
        })?;
        let xml = self
            .call_at(
                &url,
                &format!(
                    "<tev:CreatePullPointSubscription xmlns:tev=\"{NS_EVENTS}\">\
                     <tev:InitialTerminationTime>PT{SUBSCRIPTION_SECONDS}S</tev:InitialTerminationTime>\
                     </tev:CreatePullPointSubscription>"
                ),
                None,
                soap::ANSWER_TIMEOUT,
            )
            .await?;
        let doc = soap::parse(&xml)?;
        let address = soap::descendant(doc.root(), NS_EVENTS, "SubscriptionReference")
            .and_then(|r| soap::text_of(r, NS_WSA, "Address"))
            .and_then(|a| Url::parse(a).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| OnvifError::Malformed("no usable SubscriptionReference Address".into()))?;
        Ok(PullPoint { device: self, address })
    }
}

impl PullPoint<'_> {
    /// The pull point's address.
    pub fn address(&self) -> &Url {
        &self.address
    }

    async fn call(&self, body: &str, wait: Duration) -> Result<String, OnvifError> {
        self.device
            .call_at(&self.address, body, Some(self.address.as_str()), wait)
            .await
    }

    /// PullMessages: waits up to `timeout` (at most [`MAX_PULL_WAIT`]) for
    /// at most `limit` messages; returns the motion and tamper ones.
    pub async fn pull(&self, timeout: Duration, limit: u32) -> Result<Vec<CameraEvent>, OnvifError> {
        let timeout = timeout.min(MAX_PULL_WAIT);
        let xml = self
            .call(
                &format!(
                    "<tev:PullMessages xmlns:tev=\"{NS_EVENTS}\"><tev:Timeout>PT{}S</tev:Timeout>\
                     <tev:MessageLimit>{}</tev:MessageLimit></tev:PullMessages>",
                    timeout.as_secs().max(1),
                    limit.max(1)
                ),
                timeout + soap::ANSWER_TIMEOUT,
            )
            .await?;
        parse_messages(&xml)
    }

    /// Renew for another [`SUBSCRIPTION_SECONDS`].
    pub async fn renew(&self) -> Result<(), OnvifError> {
        self.call(
            &format!(
                "<wsnt:Renew xmlns:wsnt=\"{NS_WSNT}\"><wsnt:TerminationTime>PT{SUBSCRIPTION_SECONDS}S</wsnt:TerminationTime></wsnt:Renew>"
            ),
            soap::ANSWER_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// Unsubscribe.
    pub async fn unsubscribe(&self) -> Result<(), OnvifError> {
        self.call(
            &format!("<wsnt:Unsubscribe xmlns:wsnt=\"{NS_WSNT}\"/>"),
            soap::ANSWER_TIMEOUT,
        )
        .await
        .map(|_| ())
    }
}

/// The kind of a topic and the data item that holds its state.
fn kind_of(topic: &str) -> Option<(&'static str, &'static [&'static str])> {
    let path = topic.split_once(':').map_or(topic, |(_, p)| p);
    if path.contains("MotionDetector/Motion") || path.contains("MotionAlarm") {
        Some(("motion", &["IsMotion", "State"]))
    } else if path.contains("GlobalSceneChange") || path.contains("Tamper") {
        Some(("tamper", &["State", "IsTamper"]))
    } else {
        None
    }
}

/// The motion and tamper messages of a PullMessagesResponse; others are
/// left out, as are messages without a time or a state.
pub fn parse_messages(xml: &str) -> Result<Vec<CameraEvent>, OnvifError> {
    let doc = soap::parse(xml)?;
    let mut out = Vec::new();
    for n in soap::descendants(doc.root(), NS_WSNT, "NotificationMessage") {
        let topic = soap::text_of(n, NS_WSNT, "Topic").unwrap_or("").to_string();
        let Some((kind, items)) = kind_of(&topic) else {
            continue;
        };
        let Some(msg) = soap::descendant(n, NS_SCHEMA, "Message") else {
            continue;
        };
        let Some(utc_ms) = msg
            .attribute("UtcTime")
            .and_then(|t| crate::base::time::parse_rfc3339(t).ok())
            .map(|ns| ns / 1_000_000)
        else {
            continue;
        };
        let state = soap::child(msg, NS_SCHEMA, "Data")
            .into_iter()
            .flat_map(|d| soap::descendants(d, NS_SCHEMA, "SimpleItem"))
            .find(|i| i.attribute("Name").is_some_and(|name| items.contains(&name)))
            .and_then(|i| i.attribute("Value"))
            .map(str::trim);
        let state = match state {
            Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            _ => continue,
        };
        out.push(CameraEvent {
            utc_ms,
            kind,
            state,
            topic,
        });
    }
    Ok(out)
}
