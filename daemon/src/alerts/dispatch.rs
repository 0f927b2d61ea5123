//! The outbox dispatcher: one thread with a small single-threaded runtime.
//! Each second it gives the outbox events whose time has come to the
//! channels they concern (flap-damped ones held back), then lets each
//! channel's worker send what is ready: one message per event while the
//! channel's rate limit allows, a digest when many are ready at once or
//! when held-back messages have waited `digest_after_seconds`, retries
//! with backoff (2 s doubling to 60 s) for three days. Every step is
//! recorded in SQLite first ([`crate::db::alert_outbox`]), so a restart or
//! `kill -9` resends nothing under a new key and loses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::config::alerts::{AlertsConfig, ChannelConfig};
use crate::db::alert_outbox as outbox;
use crate::db::alerts::Alert;
use crate::keys::keyring::Keyring;

use super::channels::{self, Source};
use super::{message, Transport, TransportContext};

/// Messages older than this are given up (state `failed`).
const GIVE_UP_NS: i64 = 3 * 24 * 3600 * 1_000_000_000;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Delivered history is kept this long.
const KEEP_HISTORY_NS: i64 = 90 * 24 * 3600 * 1_000_000_000;
const SECOND: i64 = 1_000_000_000;

/// What the dispatcher needs.
pub struct Dispatcher {
    pub db_path: std::path::PathBuf,
    pub keyring: Arc<Keyring>,
    pub config: AlertsConfig,
    pub ctx: TransportContext,
}

/// Starts the dispatcher's thread; it stops soon after `stop` is set.
pub fn spawn(d: Dispatcher, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("alerts".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("alerts: cannot start the dispatcher's runtime, no alert will be sent: {e}");
                return;
            }
        };
        rt.block_on(d.run(stop));
    })
}

/// The backoff after `attempts` failed attempts.
pub fn backoff(attempts: i64) -> Duration {
    let secs = 2u64.saturating_pow(attempts.clamp(1, 16) as u32);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Whether channel `c` wants alert `a` (severity and camera filters).
pub fn wants(c: &ChannelConfig, a: &Alert) -> bool {
    if message::severity_of(&a.severity) < c.min_severity {
        return false;
    }
    match &a.camera {
        Some(cam) if !c.cameras.is_empty() => c.cameras.iter().any(|n| n == cam),
        _ => true,
    }
}

/// One channel's sender: its transport (opened lazily, reopened after a
/// configuration change), its connection to the index.
struct Worker {
    cfg: ChannelConfig,
    conn: Connection,
    transport: Option<Transport>,
    /// When opening the transport last failed, and why.
    open_failed: Option<(i64, String)>,
    /// Camera states last published (MQTT).
    published: Option<(Vec<(String, bool)>, usize)>,
}

impl Dispatcher {
    async fn run(self, stop: Arc<AtomicBool>) {
        let idx = match crate::db::Index::open(&self.db_path) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!("alerts: cannot open the index, no alert will be sent: {e}");
                return;
            }
        };
        let _ = idx.use_small_cache();
        let conn = idx.conn();
        if let Err(e) = outbox::retry_all_now(conn, crate::base::clock::now_ns()) {
            tracing::warn!("alerts: cannot reschedule waiting messages: {e}");
        }
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let mut tick: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let now = crate::base::clock::now_ns();
            if tick.is_multiple_of(5) {
                self.refresh_workers(conn, &mut workers).await;
            }
            if tick.is_multiple_of(3600) {
                if let Err(e) = outbox::prune(conn, now - KEEP_HISTORY_NS) {
                    tracing::warn!("alerts: cannot prune old history: {e}");
                }
            }
            tick += 1;
            if let Err(e) = self.fan_out(conn, &workers, now) {
                tracing::warn!("alerts: cannot hand out messages: {e}");
            }
            let passes = workers.values_mut().map(|w| w.pass(&self, now));
            futures::future::join_all(passes).await;
            for _ in 0..10 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (_, mut w) in workers.drain() {
            if let Some(mut t) = w.transport.take() {
                t.close().await;
            }
        }
    }

    /// Starts a worker per channel, replaces those whose settings changed,
    /// stops those removed.
    async fn refresh_workers(&self, conn: &Connection, workers: &mut HashMap<String, Worker>) {
        let channels = match channels::all(conn, &self.config) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("alerts: cannot read the channels: {e}");
                return;
            }
        };
        let names: Vec<String> = channels.iter().map(|(c, _)| c.name.clone()).collect();
        let gone: Vec<String> = workers.keys().filter(|n| !names.contains(n)).cloned().collect();
        for n in gone {
            if let Some(mut w) = workers.remove(&n) {
                if let Some(mut t) = w.transport.take() {
                    t.close().await;
                }
            }
        }
        for (cfg, source) in channels {
            let changed = workers.get(&cfg.name).is_none_or(|w| {
                w.cfg.settings_json() != cfg.settings_json() || source == Source::Ui && w.stale_secret()
            });
            if !changed {
                continue;
            }
            if let Some(mut old) = workers.remove(&cfg.name) {
                if let Some(mut t) = old.transport.take() {
                    t.close().await;
                }
            }
            match crate::db::Index::open(&self.db_path) {
                Ok(i) => {
                    let _ = i.use_small_cache();
                    workers.insert(
                        cfg.name.clone(),
                        Worker {
                            cfg,
                            conn: i.into_conn(),
                            transport: None,
                            open_failed: None,
                            published: None,
                        },
                    );
                }
                Err(e) => tracing::warn!(channel = %cfg.name, "alerts: cannot open the index: {e}"),
            }
        }
    }

    /// Gives each due event to the channels that want it; an alert that
    /// flaps (raised more than `flap_threshold` times in the window) is held
    /// back for the digest.
    fn fan_out(&self, conn: &Connection, workers: &HashMap<String, Worker>, now: i64) -> rusqlite::Result<()> {
        let window = i64::try_from(self.config.flap_window_seconds).unwrap_or(i64::MAX / SECOND) * SECOND;
        for ev in outbox::due_events(conn, now, 500)? {
            let flaps = crate::db::alerts::raised_since(conn, &ev.alert.code, &ev.alert.subject, now - window)?;
            let damped = flaps > i64::from(self.config.flap_threshold);
            let targets: Vec<(String, bool)> = workers
                .values()
                .filter(|w| wants(&w.cfg, &ev.alert))
                .map(|w| (w.cfg.name.clone(), damped))
                .collect();
            if damped {
                tracing::info!(alert = %ev.alert.code, subject = %ev.alert.subject, flaps, "alert is flapping; its messages go to the digest");
            }
            outbox::fan_out(conn, ev.id, &targets, now)?;
        }
        Ok(())
    }
}

impl Worker {
    /// A UI channel's secret may have been replaced: reopen once a minute
    /// when the transport failed to open.
    fn stale_secret(&self) -> bool {
        self.open_failed.is_some()
    }

    /// Opens the transport if needed; None (and the reason kept) when it cannot be.
    fn transport(&mut self, d: &Dispatcher, now: i64) -> Option<&mut Transport> {
        if self.transport.is_none() {
            if let Some((at, _)) = &self.open_failed {
                if now - at < 30 * SECOND {
                    return None;
                }
            }
            match channels::open(&self.cfg, &d.keyring, &d.ctx, false) {
                Ok(t) => {
                    self.transport = Some(t);
                    self.open_failed = None;
                }
                Err(e) => {
                    tracing::warn!(channel = %self.cfg.name, "alerts: cannot open the channel: {e}");
                    self.open_failed = Some((now, e.to_string()));
                    return None;
                }
            }
        }
        self.transport.as_mut()
    }

    async fn pass(&mut self, d: &Dispatcher, now: i64) {
        if let Err(e) = self.try_pass(d, now).await {
            tracing::warn!(channel = %self.cfg.name, "alerts: delivery pass failed: {e}");
        }
    }

    async fn try_pass(&mut self, d: &Dispatcher, now: i64) -> rusqlite::Result<()> {
        let name = self.cfg.name.clone();
        self.publish_states(d, now).await?;
        // 1. Digests assigned earlier and not yet delivered (after a failure or a crash).
        let digesting = outbox::deliveries(&self.conn, &name, "digesting", Some(now), 1000)?;
        let mut keys: Vec<String> = digesting.iter().filter_map(|x| x.digest_key.clone()).collect();
        keys.dedup();
        for key in keys {
            let ds: Vec<_> = digesting
                .iter()
                .filter(|x| x.digest_key.as_deref() == Some(key.as_str()))
                .cloned()
                .collect();
            if !self.send_digest(d, &key, &ds, now).await? {
                return Ok(());
            }
        }
        // 2. Ready messages: many at once go as one digest; else one by
        // one within the rate limit, the rest held for the digest.
        let ready = outbox::deliveries(&self.conn, &name, "pending", Some(now), 1000)?;
        if ready.len() >= d.config.digest_threshold.max(2) as usize {
            let key = digest_key(&name, &ready);
            let ids: Vec<i64> = ready.iter().map(|x| x.event.id).collect();
            outbox::assign_digest(&self.conn, &name, &ids, &key, now)?;
            if !self.send_digest(d, &key, &ready, now).await? {
                return Ok(());
            }
        } else {
            let window = i64::try_from(self.cfg.rate_window_seconds).unwrap_or(i64::MAX / SECOND) * SECOND;
            for x in &ready {
                if outbox::sent_since(&self.conn, &name, now - window)? >= i64::from(self.cfg.rate_limit) {
                    outbox::mark_held(&self.conn, x.event.id, &name)?;
                    continue;
                }
                let msg = message::of_event(&d.ctx, &x.event, now);
                let Some(t) = self.transport(d, now) else {
                    let why = self.open_error();
                    retry(&self.conn, &name, x.event.id, x.attempts, x.queued_ns, &why, now)?;
                    return Ok(());
                };
                match t.send(&msg).await {
                    Ok(()) => outbox::mark_sent(&self.conn, x.event.id, &name, crate::base::clock::now_ns())?,
                    Err(e) => {
                        tracing::warn!(channel = %name, key = %x.event.idempotency_key, "alerts: delivery failed, will retry: {e}");
                        retry(
                            &self.conn,
                            &name,
                            x.event.id,
                            x.attempts,
                            x.queued_ns,
                            &e.to_string(),
                            now,
                        )?;
                        self.drop_transport_after(&e).await;
                        return Ok(());
                    }
                }
            }
        }
        // 3. Held messages go as a digest once the oldest has waited long
        // enough, and at most one digest per `digest_after_seconds`.
        let held = outbox::deliveries(&self.conn, &name, "held", None, 1000)?;
        let after = i64::try_from(d.config.digest_after_seconds).unwrap_or(3600) * SECOND;
        let oldest = held.iter().map(|x| x.queued_ns).min();
        let last = outbox::last_digest_ns(&self.conn, &name)?;
        if oldest.is_some_and(|o| now - o >= after) && last.is_none_or(|l| now - l >= after) {
            let key = digest_key(&name, &held);
            let ids: Vec<i64> = held.iter().map(|x| x.event.id).collect();
            outbox::assign_digest(&self.conn, &name, &ids, &key, now)?;
            self.send_digest(d, &key, &held, now).await?;
        }
        Ok(())
    }

    fn open_error(&self) -> String {
        self.open_failed
            .as_ref()
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| "the channel could not be opened".into())
    }

    /// Sends digest `key`; false when it failed (the pass stops).
    async fn send_digest(
        &mut self,
        d: &Dispatcher,
        key: &str,
        ds: &[outbox::Delivery],
        now: i64,
    ) -> rusqlite::Result<bool> {
        let name = self.cfg.name.clone();
        let msg = message::digest(&d.ctx, key, ds, now);
        let attempts = ds.iter().map(|x| x.attempts).max().unwrap_or(0);
        let queued = ds.iter().map(|x| x.queued_ns).min().unwrap_or(now);
        let Some(t) = self.transport(d, now) else {
            let why = self.open_error();
            let next = now + backoff(attempts + 1).as_nanos() as i64;
            outbox::mark_digest_retry(&self.conn, &name, key, next, &why, now - queued > GIVE_UP_NS)?;
            return Ok(false);
        };
        match t.send(&msg).await {
            Ok(()) => {
                tracing::info!(channel = %name, key, messages = ds.len(), "alerts: digest sent");
                outbox::mark_digest_sent(&self.conn, &name, key, crate::base::clock::now_ns())?;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(channel = %name, key, "alerts: digest failed, will retry: {e}");
                let next = now + backoff(attempts + 1).as_nanos() as i64;
                outbox::mark_digest_retry(&self.conn, &name, key, next, &e.to_string(), now - queued > GIVE_UP_NS)?;
                self.drop_transport_after(&e).await;
                Ok(false)
            }
        }
    }

    /// After a failed send the transport is opened afresh next time
    /// (a new connection, a re-read secret).
    async fn drop_transport_after(&mut self, _e: &super::SendError) {
        if let Some(mut t) = self.transport.take() {
            if t.kind_name() == "mqtt" {
                // MQTT reconnects by itself; keep its session.
                self.transport = Some(t);
                return;
            }
            t.close().await;
        }
    }

    /// MQTT: the retained camera states and open problems, when they changed.
    async fn publish_states(&mut self, d: &Dispatcher, now: i64) -> rusqlite::Result<()> {
        if !matches!(self.cfg.kind, crate::config::alerts::ChannelKind::Mqtt { .. }) {
            return Ok(());
        }
        let cams: Vec<(String, bool)> = crate::db::stats::camera_states(&self.conn)?;
        let open = crate::db::alerts::open(&self.conn)?;
        let now_state = (cams.clone(), open.len());
        if self.published.as_ref() == Some(&now_state) {
            return Ok(());
        }
        let problems = serde_json::json!({
            "open": open.len(),
            "alerts": open.iter().map(|a| serde_json::json!({
                "code": a.code, "severity": a.severity, "camera": a.camera, "message": a.message
            })).collect::<Vec<_>>(),
        });
        let Some(t) = self.transport(d, now) else { return Ok(()) };
        match t.publish_states(&cams, &problems).await {
            Ok(()) => self.published = Some(now_state),
            Err(e) => tracing::debug!(channel = %self.cfg.name, "alerts: states not published yet: {e}"),
        }
        Ok(())
    }
}

/// A digest's idempotency key: the channel and its first and last event,
/// so a retry of the same set keeps the key.
fn digest_key(channel: &str, ds: &[outbox::Delivery]) -> String {
    let first = ds.iter().map(|x| x.event.id).min().unwrap_or(0);
    let last = ds.iter().map(|x| x.event.id).max().unwrap_or(0);
    let tag = ds.first().map(|x| x.event.idempotency_key.as_str()).unwrap_or("vigil-");
    format!("{tag}-d-{channel}-{first}-{last}")
}

fn retry(
    conn: &Connection,
    channel: &str,
    event_id: i64,
    attempts: i64,
    queued_ns: i64,
    error: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let next = now + backoff(attempts + 1).as_nanos() as i64;
    outbox::mark_retry(conn, event_id, channel, next, error, now - queued_ns > GIVE_UP_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(severity: &str, camera: Option<&str>) -> Alert {
        Alert {
            id: 1,
            code: "camera.offline".into(),
            severity: severity.into(),
            subject: camera.unwrap_or("").into(),
            camera: camera.map(str::to_string),
            message: "m".into(),
            first_seen_ns: 0,
            last_seen_ns: 0,
            cleared_ns: None,
            occurrences: 1,
            silent: false,
        }
    }

    #[test]
    fn a_channel_wants_its_severities_and_cameras_and_every_box_alert() {
        let v = serde_json::json!({"kind": "webhook", "url": "https://127.0.0.1:9/x", "secret": "s",
                                   "min_severity": "critical", "cameras": ["front"]});
        let c = ChannelConfig::from_json("ops", &v).unwrap();
        assert!(wants(&c, &alert("critical", Some("front"))));
        assert!(!wants(&c, &alert("warning", Some("front"))), "below min_severity");
        assert!(!wants(&c, &alert("critical", Some("yard"))), "another camera");
        assert!(
            wants(&c, &alert("critical", None)),
            "the box's own alerts always pass the camera filter"
        );
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(6), Duration::from_secs(60));
        assert_eq!(backoff(1000), Duration::from_secs(60));
    }
}
