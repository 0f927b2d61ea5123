//! The MQTT channel (rumqttc, MQTT 3.1.1, TLS through our rustls
//! configuration, username/password, persistent session): alert messages on
//! `<prefix>/alerts` (QoS 1; delivered = the broker's PUBACK), retained
//! `<prefix>/state` (online, last will offline), one retained state per
//! camera, the open problems, and Home Assistant discovery configs.
//!
//! A background task polls rumqttc's event loop, reconnects with backoff and
//! re-publishes the retained topics on every CONNACK. Publishes are matched
//! to their PUBACKs through the order rumqttc sends them in: every publish
//! is queued under one lock together with its place in `waiting`, so the
//! n-th `Outgoing::Publish(pkid)` event belongs to the n-th entry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch, Notify};
use zeroize::Zeroizing;

use super::http_client::{redact, tls_config};
use super::{Message, SendError, TransportContext};
use crate::config::alerts::{ChannelConfig, ChannelKind};

/// How long `send` waits for the broker's PUBACK.
pub const PUBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `send` waits for a connection before giving up.
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Requests queued towards rumqttc at most: the reconnect burst (3 + 2 per
/// camera: states and discovery) of a 64-camera box fits, with room left.
const REQUEST_CAPACITY: usize = 256;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The topics of one box.
#[derive(Clone, Debug)]
struct Topics {
    prefix: String,
    discovery: Option<String>,
    device_id: String,
    device_name: String,
}

impl Topics {
    fn state(&self) -> String {
        format!("{}/state", self.prefix)
    }
    fn alerts(&self) -> String {
        format!("{}/alerts", self.prefix)
    }
    fn problems(&self) -> String {
        format!("{}/problems", self.prefix)
    }
    fn camera(&self, name: &str) -> String {
        format!("{}/camera/{name}/state", self.prefix)
    }
    fn device(&self) -> Value {
        json!({"identifiers": [self.device_id], "name": self.device_name, "manufacturer": "Vigil", "model": "Vigil NVR"})
    }
    /// (topic, config) of a camera's Home Assistant binary sensor.
    fn camera_discovery(&self, camera: &str) -> Option<(String, Value)> {
        let d = self.discovery.as_ref()?;
        Some((
            format!("{d}/binary_sensor/{}/{camera}_online/config", self.device_id),
            json!({
                "name": format!("{camera} online"),
                "unique_id": format!("{}_{camera}_online", self.device_id),
                "state_topic": self.camera(camera),
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "availability_topic": self.state(),
                "device": self.device(),
            }),
        ))
    }
    fn problem_discovery(&self) -> Option<(String, Value)> {
        let d = self.discovery.as_ref()?;
        Some((
            format!("{d}/binary_sensor/{}/problem/config", self.device_id),
            json!({
                "name": "problem",
                "unique_id": format!("{}_problem", self.device_id),
                "state_topic": self.problems(),
                "value_template": "{{ 'ON' if value_json.open > 0 else 'OFF' }}",
                "device_class": "problem",
                "availability_topic": self.state(),
                "device": self.device(),
            }),
        ))
    }
}

/// Why the connection is down, for the error `send` returns.
#[derive(Clone, Debug)]
enum Down {
    NotYet,
    Refused(String),
    Tls(String),
    Network(String),
}

struct State {
    connected: bool,
    /// One entry per publish queued to rumqttc, in order: Some for a `send`
    /// waiting for its PUBACK.
    waiting: VecDeque<Option<oneshot::Sender<()>>>,
    /// Packet id → the `send` waiting for its PUBACK.
    inflight: HashMap<u16, oneshot::Sender<()>>,
    cameras: Vec<(String, bool)>,
    problems: Option<Value>,
    discovered: HashSet<String>,
    down: Down,
}

struct Shared {
    state: Mutex<State>,
    closing: AtomicBool,
    wake: Notify,
    topics: Topics,
    /// None until the first attempt ends; then whether connected.
    connected: watch::Sender<Option<bool>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Queues one QoS 1 publish and its place in `waiting`; under the lock.
fn queue(
    client: &AsyncClient,
    st: &mut State,
    topic: String,
    retain: bool,
    payload: Vec<u8>,
    ack: Option<oneshot::Sender<()>>,
) -> bool {
    match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        Ok(()) => {
            st.waiting.push_back(ack);
            true
        }
        Err(e) => {
            tracing::warn!("mqtt: cannot queue a publish: {e}");
            false
        }
    }
}

/// Everything retained, after a (re)connect: state online, discovery,
/// camera states, problems.
fn publish_all(client: &AsyncClient, st: &mut State, t: &Topics) {
    queue(client, st, t.state(), true, b"online".to_vec(), None);
    st.discovered.clear();
    let cameras = st.cameras.clone();
    publish_cameras(client, st, t, &cameras, true);
    if let Some((topic, cfg)) = t.problem_discovery() {
        queue(client, st, topic, true, cfg.to_string().into_bytes(), None);
    }
    if let Some(p) = st.problems.clone() {
        queue(client, st, t.problems(), true, p.to_string().into_bytes(), None);
    }
}

fn publish_cameras(client: &AsyncClient, st: &mut State, t: &Topics, cameras: &[(String, bool)], all: bool) {
    for (name, online) in cameras {
        if !st.discovered.contains(name) {
            if let Some((topic, cfg)) = t.camera_discovery(name) {
                queue(client, st, topic, true, cfg.to_string().into_bytes(), None);
            }
            st.discovered.insert(name.clone());
        }
        let changed = !st.cameras.iter().any(|(n, o)| n == name && o == online);
        if all || changed {
            let state = if *online { "online" } else { "offline" };
            queue(client, st, t.camera(name), true, state.as_bytes().to_vec(), None);
        }
    }
}

fn describe(e: &ConnectionError, broker: &str) -> Down {
    match e {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => Down::Refused(format!(
            "MQTT broker {broker} refused the login ({code:?}): check username and the password in the secrets store"
        )),
        ConnectionError::ConnectionRefused(code) => {
            Down::Refused(format!("MQTT broker {broker} refused the connection ({code:?})"))
        }
        ConnectionError::Tls(t) => {
            let text = t.to_string();
            let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
                " (the broker's certificate is not signed by a trusted CA: check ca_file)"
            } else {
                ""
            };
            Down::Tls(format!("TLS handshake with MQTT broker {broker} failed: {text}{hint}"))
        }
        other => Down::Network(format!("cannot reach MQTT broker {broker}: {other}")),
    }
}

async fn run(mut eventloop: EventLoop, client: AsyncClient, shared: Arc<Shared>, broker: String, password: Vec<u8>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if shared.closing.load(Ordering::SeqCst) {
            break;
        }
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_secs(1);
                let mut st = shared.lock();
                st.connected = true;
                st.waiting.clear();
                publish_all(&client, &mut st, &shared.topics);
                drop(st);
                shared.connected.send_replace(Some(true));
                tracing::info!("mqtt: connected to {broker}");
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut st = shared.lock();
                if let Some(Some(ack)) = st.waiting.pop_front() {
                    st.inflight.insert(pkid, ack);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(tx) = shared.lock().inflight.remove(&ack.pkid) {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if shared.closing.load(Ordering::SeqCst) => break,
            Ok(_) => {}
            Err(e) => {
                let down = describe(&e, &broker);
                {
                    let mut st = shared.lock();
                    st.connected = false;
                    // Waiting sends fail now (their receivers see the drop)
                    // and nothing old is re-sent, so publish events and
                    // `waiting` stay in step after the reconnect.
                    st.waiting.clear();
                    st.inflight.clear();
                    eventloop.clean();
                    eventloop.pending.clear();
                    st.down = down.clone();
                }
                shared.connected.send_replace(Some(false));
                if shared.closing.load(Ordering::SeqCst) {
                    break;
                }
                let text = match &down {
                    Down::Refused(t) | Down::Tls(t) | Down::Network(t) => t.clone(),
                    Down::NotYet => String::new(),
                };
                tracing::warn!("mqtt: {}; retrying in {} s", redact(text, &password), backoff.as_secs());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.wake.notified() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

pub struct Mqtt {
    /// The event loop until the background task starts (on first use).
    eventloop: Option<EventLoop>,
    /// The background task, once started.
    task: Option<tokio::task::JoinHandle<()>>,
    /// A one-off connection (a test message): its own client id, a clean
    /// session, no last will, nothing said about the box when it closes.
    ephemeral: bool,
    closed: bool,
    client: AsyncClient,
    shared: Arc<Shared>,
    connected: watch::Receiver<Option<bool>>,
    password: Zeroizing<Vec<u8>>,
    broker: String,
}

impl Mqtt {
    /// `ephemeral`: a one-off connection beside the daemon's (a test
    /// message), which must neither take over the daemon's session nor
    /// mark the box offline when it closes.
    pub fn new(
        cfg: &ChannelConfig,
        secret: Option<Zeroizing<Vec<u8>>>,
        ctx: &TransportContext,
        ephemeral: bool,
    ) -> Result<Mqtt, SendError> {
        let ChannelKind::Mqtt {
            url,
            username,
            topic_prefix,
            home_assistant,
            discovery_prefix,
        } = &cfg.kind
        else {
            return Err(SendError::Config("not an MQTT channel".into()));
        };
        if ctx.device_id.trim().is_empty() {
            return Err(SendError::Config("the device id is empty".into()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(SendError::Config("the MQTT URL has no host".into())),
        };
        let port = url.port().unwrap_or(if url.scheme() == "mqtts" { 8883 } else { 1883 });
        let broker = format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or(""));
        let topics = Topics {
            prefix: topic_prefix
                .clone()
                .unwrap_or_else(|| format!("vigil/{}", ctx.device_id)),
            discovery: home_assistant.then(|| discovery_prefix.clone()),
            device_id: ctx.device_id.clone(),
            device_name: ctx.device_name.clone(),
        };
        let client_id = if ephemeral {
            format!("vigil-{}-test-{}", ctx.device_id, std::process::id())
        } else {
            format!("vigil-{}", ctx.device_id)
        };
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_clean_session(ephemeral)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if !ephemeral {
            opts.set_last_will(LastWill::new(topics.state(), "offline", QoS::AtLeastOnce, true));
        }
        let password = secret.unwrap_or_default();
        match (username, password.is_empty()) {
            (Some(user), false) => {
                let pw = std::str::from_utf8(&password)
                    .map_err(|_| SendError::Config("the MQTT password is not UTF-8 text".into()))?;
                opts.set_credentials(user.clone(), pw.to_string());
            }
            (Some(_), true) => {
                return Err(SendError::Config(format!(
                    "channel \"{}\" has a username but no password: set `secret` and store it with `vigil secrets set`",
                    cfg.name
                )))
            }
            (None, false) => {
                return Err(SendError::Config(format!(
                    "channel \"{}\" has a password but no username",
                    cfg.name
                )))
            }
            (None, true) => {}
        }
        if url.scheme() == "mqtts" {
            let tls = tls_config(cfg.ca_file.as_deref(), &[])?;
            opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
                tls,
            )));
        }
        let (connected_tx, connected) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                connected: false,
                waiting: VecDeque::new(),
                inflight: HashMap::new(),
                cameras: Vec::new(),
                problems: None,
                discovered: HashSet::new(),
                down: Down::NotYet,
            }),
            closing: AtomicBool::new(false),
            wake: Notify::new(),
            topics,
            connected: connected_tx,
        });
        let (client, eventloop) = AsyncClient::new(opts, REQUEST_CAPACITY);
        Ok(Mqtt {
            eventloop: Some(eventloop),
            task: None,
            ephemeral,
            closed: false,
            client,
            shared,
            connected,
            password,
            broker,
        })
    }

    /// Starts the background task (needs a tokio runtime: first use).
    fn client(&mut self) -> AsyncClient {
        if let Some(eventloop) = self.eventloop.take() {
            let pw = self.password.to_vec();
            self.task = Some(tokio::spawn(run(
                eventloop,
                self.client.clone(),
                self.shared.clone(),
                self.broker.clone(),
                pw,
            )));
        }
        self.client.clone()
    }

    /// Waits (at most [`CONNECT_WAIT`]) for the first connection attempt;
    /// while the connection is down, fails at once with why.
    async fn connection(&mut self) -> Result<(), SendError> {
        let _ = self.client();
        let mut rx = self.connected.clone();
        let _ = tokio::time::timeout(CONNECT_WAIT, rx.wait_for(Option::is_some)).await;
        if *rx.borrow() == Some(true) {
            return Ok(());
        }
        let down = self.shared.lock().down.clone();
        Err(match down {
            Down::NotYet => SendError::Timeout(format!(
                "no connection to MQTT broker {} within {} s",
                self.broker,
                CONNECT_WAIT.as_secs()
            )),
            Down::Refused(t) => SendError::Rejected(redact(t, &self.password)),
            Down::Tls(t) => SendError::Tls(redact(t, &self.password)),
            Down::Network(t) => SendError::Unreachable(redact(t, &self.password)),
        })
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), SendError> {
        let payload = serde_json::to_vec(&m.json)
            .map_err(|e| SendError::Config(format!("cannot encode the message as JSON: {e}")))?;
        self.connection().await?;
        let client = self.client();
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if !st.connected {
                return Err(SendError::Unreachable(format!(
                    "the connection to MQTT broker {} was lost",
                    self.broker
                )));
            }
            if !queue(&client, &mut st, self.shared.topics.alerts(), false, payload, Some(tx)) {
                return Err(SendError::Server(format!(
                    "too many messages are waiting for MQTT broker {}",
                    self.broker
                )));
            }
        }
        match tokio::time::timeout(PUBACK_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SendError::Unreachable(format!(
                "the connection to MQTT broker {} was lost before it acknowledged the message",
                self.broker
            ))),
            Err(_) => Err(SendError::Timeout(format!(
                "MQTT broker {} did not acknowledge the message within {} s",
                self.broker,
                PUBACK_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Keeps the cameras' states and the problems; publishes what changed
    /// now when connected (all of it again on every reconnect).
    pub async fn publish_states(&mut self, cameras: &[(String, bool)], problems: &Value) -> Result<(), SendError> {
        let client = self.client();
        let mut st = self.shared.lock();
        if st.connected {
            publish_cameras(&client, &mut st, &self.shared.topics, cameras, false);
            if st.problems.as_ref() != Some(problems) {
                queue(
                    &client,
                    &mut st,
                    self.shared.topics.problems(),
                    true,
                    problems.to_string().into_bytes(),
                    None,
                );
            }
        }
        st.cameras = cameras.to_vec();
        st.problems = Some(problems.clone());
        Ok(())
    }
}

impl Mqtt {
    /// A clean stop: says the box is offline (unless ephemeral; a clean
    /// DISCONNECT does not fire the last will), then disconnects.
    fn stop(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if self.eventloop.is_none() {
            if !self.ephemeral {
                let state = self.shared.topics.state();
                let _ = self
                    .client
                    .try_publish(state, QoS::AtLeastOnce, true, b"offline".to_vec());
            }
            let _ = self.client.try_disconnect();
        }
    }

    /// [`Mqtt::stop`], then waits (2 s at most) for the background task
    /// to send it and end.
    pub async fn close(&mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
                tracing::debug!("mqtt: the connection did not close within 2 s");
            }
        }
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
