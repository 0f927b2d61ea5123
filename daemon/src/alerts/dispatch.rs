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
use crate::db::alert_outbox::{self as outbox, Target};
use crate::db::alerts::Alert;
use crate::keys::keyring::Keyring;

use super::channels;
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
        // Channel workers are local tasks of this one thread.
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, Arc::new(d).run(stop));
        // Nothing may hold the daemon's shutdown: a name lookup still
        // running on a blocking thread is left behind.
        drop(local);
        rt.shutdown_timeout(Duration::from_secs(1));
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

/// One channel's sender: its transport (opened lazily), its connection to
/// the index. Runs as its own task, so a slow receiver holds up only its
/// own channel.
struct Worker {
    cfg: ChannelConfig,
    conn: Connection,
    transport: Option<Transport>,
    /// When opening the transport last failed, and why.
    open_failed: Option<(i64, String)>,
    /// Camera states last published (MQTT).
    published: Option<(Vec<(String, bool)>, usize)>,
}

/// A worker's stop signal: a flag, and a wake-up for its sleep.
#[derive(Default)]
struct StopSignal {
    stopped: AtomicBool,
    wake: tokio::sync::Notify,
}

impl StopSignal {
    fn is_set(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Sleeps `d`, or less when stopped meanwhile (one wake-up, no polling).
    async fn nap(&self, d: Duration) {
        if !self.is_set() {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

/// A running worker: its stop signal and task.
struct Running {
    fingerprint: String,
    stop: Arc<StopSignal>,
    task: tokio::task::JoinHandle<()>,
}

/// How long stopping workers may take before they are aborted (a send may
/// be waiting on a slow receiver).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Stops workers: every one is told at once, then each is waited for until
/// one shared deadline and aborted after it (a task dropped while waiting
/// on a receiver leaves its row to be retried under the same key).
async fn stop_all(workers: Vec<Running>) {
    for r in &workers {
        r.stop.set();
    }
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    for r in workers {
        let abort = r.task.abort_handle();
        if tokio::time::timeout_at(deadline, r.task).await.is_err() {
            tracing::warn!("alerts: a channel worker did not stop within 5 s; aborted");
            abort.abort();
        }
    }
}

/// Sleeps about `d` in 1 s steps, returning early (within a second) when
/// `stop` (the daemon's flag, set from another thread) is set.
async fn nap(d: Duration, stop: &AtomicBool) {
    let until = tokio::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}

impl Dispatcher {
    async fn run(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let idx = loop {
            match crate::db::Index::open(&self.db_path) {
                Ok(i) => break i,
                Err(e) => tracing::error!("alerts: cannot open the index, retrying in 10 s: {e}"),
            }
            nap(Duration::from_secs(10), &stop).await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
        };
        let _ = idx.use_small_cache();
        let conn = idx.conn();
        if let Err(e) = outbox::retry_all_now(conn, crate::base::clock::now_ns()) {
            tracing::warn!("alerts: cannot reschedule waiting messages: {e}");
        }
        let mut running: HashMap<String, Running> = HashMap::new();
        // The channels as last read; nothing is handed out before the
        // first successful read (an event handed to no channel is done).
        let mut channels: Option<Vec<ChannelConfig>> = None;
        let mut tick: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let now = crate::base::clock::now_ns();
            if tick.is_multiple_of(5) {
                match self.refresh_workers(conn, &mut running).await {
                    Ok(list) => channels = Some(list),
                    Err(e) => tracing::warn!("alerts: cannot read the channels (messages wait): {e}"),
                }
            }
            if tick.is_multiple_of(3600) {
                if let Err(e) = outbox::prune(conn, now - KEEP_HISTORY_NS) {
                    tracing::warn!("alerts: cannot prune old history: {e}");
                }
            }
            tick += 1;
            if let Some(list) = &channels {
                if let Err(e) = self.fan_out(conn, list, now) {
                    tracing::warn!("alerts: cannot hand out messages: {e}");
                }
            }
            nap(Duration::from_secs(1), &stop).await;
        }
        stop_all(running.drain().map(|(_, r)| r).collect()).await;
    }

    /// What makes a worker stale: its settings and its secret's version.
    fn fingerprint(cfg: &ChannelConfig, secrets: &[crate::keys::secrets::SecretMeta]) -> String {
        let version = cfg
            .secret
            .as_ref()
            .and_then(|n| secrets.iter().find(|s| &s.name == n))
            .map(|s| format!("{}:{}", s.version, s.updated_ns))
            .unwrap_or_default();
        format!("{}|{version}", cfg.settings_json())
    }

    /// Starts a worker per channel, restarts those whose settings or
    /// secret changed, stops those removed; returns the channels.
    async fn refresh_workers(
        self: &Arc<Self>,
        conn: &Connection,
        running: &mut HashMap<String, Running>,
    ) -> rusqlite::Result<Vec<ChannelConfig>> {
        let list = channels::all(conn, &self.config)?;
        let secrets = crate::keys::secrets::list_in(conn)?;
        let wanted: HashMap<String, String> = list
            .iter()
            .map(|(c, _)| (c.name.clone(), Self::fingerprint(c, &secrets)))
            .collect();
        let stale: Vec<String> = running
            .iter()
            .filter(|(n, r)| wanted.get(*n) != Some(&r.fingerprint))
            .map(|(n, _)| n.clone())
            .collect();
        stop_all(stale.iter().filter_map(|n| running.remove(n)).collect()).await;
        let names: Vec<String> = list.iter().map(|(c, _)| c.name.clone()).collect();
        let gone = outbox::give_up_removed_channels(conn, &names, crate::base::clock::now_ns())?;
        if gone > 0 {
            tracing::warn!(messages = gone, "alerts: messages of removed channels given up");
        }
        for (cfg, _) in &list {
            if running.contains_key(&cfg.name) {
                continue;
            }
            let stop = Arc::new(StopSignal::default());
            let task = tokio::task::spawn_local(worker(self.clone(), cfg.clone(), stop.clone()));
            running.insert(
                cfg.name.clone(),
                Running {
                    fingerprint: wanted.get(&cfg.name).cloned().unwrap_or_default(),
                    stop,
                    task,
                },
            );
        }
        Ok(list.into_iter().map(|(c, _)| c).collect())
    }

    /// Gives each due event to the channels that want it; an alert that
    /// flaps (raised more than `flap_threshold` times in the window) is held
    /// back for the digest.
    fn fan_out(&self, conn: &Connection, list: &[ChannelConfig], now: i64) -> rusqlite::Result<()> {
        let window = i64::try_from(self.config.flap_window_seconds).unwrap_or(i64::MAX / SECOND) * SECOND;
        for ev in outbox::due_events(conn, now, 500)? {
            let flaps = crate::db::alerts::raised_since(conn, &ev.alert.code, &ev.alert.subject, now - window)?;
            let damped = flaps > i64::from(self.config.flap_threshold);
            let targets: Vec<(String, bool)> = list
                .iter()
                .filter(|c| wants(c, &ev.alert))
                .map(|c| (c.name.clone(), damped))
                .collect();
            if damped {
                tracing::info!(alert = %ev.alert.code, subject = %ev.alert.subject, flaps, "alert is flapping; its messages go to the digest");
            }
            outbox::fan_out(conn, ev.id, &targets, now)?;
        }
        Ok(())
    }
}

/// One channel's task: opens its own index connection, then a pass a
/// second until stopped; closes the transport cleanly.
async fn worker(d: Arc<Dispatcher>, cfg: ChannelConfig, stop: Arc<StopSignal>) {
    let conn = loop {
        match crate::db::Index::open(&d.db_path) {
            Ok(i) => {
                let _ = i.use_small_cache();
                break i.into_conn();
            }
            Err(e) => tracing::warn!(channel = %cfg.name, "alerts: cannot open the index, retrying in 5 s: {e}"),
        }
        stop.nap(Duration::from_secs(5)).await;
        if stop.is_set() {
            return;
        }
    };
    let mut w = Worker {
        cfg,
        conn,
        transport: None,
        open_failed: None,
        published: None,
    };
    while !stop.is_set() {
        w.pass(&d, &stop, crate::base::clock::now_ns()).await;
        stop.nap(Duration::from_secs(1)).await;
    }
    if let Some(mut t) = w.transport.take() {
        t.close().await;
    }
}

impl Worker {
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

    async fn pass(&mut self, d: &Dispatcher, stop: &StopSignal, now: i64) {
        if let Err(e) = self.try_pass(d, stop, now).await {
            tracing::warn!(channel = %self.cfg.name, "alerts: delivery pass failed: {e}");
        }
    }

    /// One pass; stops between messages once `stop` is set.
    async fn try_pass(&mut self, d: &Dispatcher, stop: &StopSignal, now: i64) -> rusqlite::Result<()> {
        let name = self.cfg.name.clone();
        self.publish_states(d, now).await?;
        // 1. Digests assigned earlier and not yet delivered (after a failure or a crash).
        let digesting = outbox::deliveries(&self.conn, &name, "digesting", Some(now), 1000)?;
        let mut by_key: std::collections::BTreeMap<String, Vec<outbox::Delivery>> = Default::default();
        for x in digesting {
            if let Some(k) = x.digest_key.clone() {
                by_key.entry(k).or_default().push(x);
            }
        }
        for (key, ds) in by_key {
            if stop.is_set() || !self.send_digest(d, &key, &ds, now).await? {
                return Ok(());
            }
        }
        let after = i64::try_from(d.config.digest_after_seconds).unwrap_or(3600) * SECOND;
        // One digest at a time: none while one waits to be delivered (a
        // receiver's outage must not pile up digests that all go at once).
        let digest_ok = outbox::last_digest_ns(&self.conn, &name)?.is_none_or(|l| now - l >= after)
            && !outbox::digest_waiting(&self.conn, &name)?;
        // 2. Ready messages. Many at once go as one digest (with whatever is
        // held), at most one digest per `digest_after_seconds`; else one by
        // one within the rate limit, the rest held for the digest. Every
        // digest carries everything held, so nothing held (a critical alert
        // included) waits much longer than `digest_after_seconds`.
        let ready = outbox::deliveries(&self.conn, &name, "pending", Some(now), 1000)?;
        if ready.len() >= d.config.digest_threshold.max(2) as usize && digest_ok {
            let mut all = ready;
            all.extend(outbox::deliveries(&self.conn, &name, "held", None, 1000)?);
            all.sort_by_key(|x| x.event.id);
            // A retry reads at most 1000 rows of a digest: never assign more.
            all.truncate(1000);
            return self.digest_now(d, &all, now).await.map(|_| ());
        }
        let window = i64::try_from(self.cfg.rate_window_seconds).unwrap_or(i64::MAX / SECOND) * SECOND;
        for x in &ready {
            if stop.is_set() {
                return Ok(());
            }
            if outbox::sent_since(&self.conn, &name, now - window)? >= i64::from(self.cfg.rate_limit) {
                outbox::mark_held(&self.conn, x.event.id, &name)?;
                continue;
            }
            let msg = message::of_event(&d.ctx, &x.event, now);
            let Some(t) = self.transport(d, now) else {
                let why = self.open_error();
                retry(
                    &self.conn,
                    &name,
                    Target::Event(x.event.id),
                    x.attempts,
                    x.queued_ns,
                    &why,
                    now,
                )?;
                return Ok(());
            };
            match t.send(&msg).await {
                Ok(()) => outbox::mark_sent(
                    &self.conn,
                    &name,
                    Target::Event(x.event.id),
                    crate::base::clock::now_ns(),
                )?,
                Err(e) => {
                    tracing::warn!(channel = %name, key = %x.event.idempotency_key, "alerts: delivery failed, will retry: {e}");
                    retry(
                        &self.conn,
                        &name,
                        Target::Event(x.event.id),
                        x.attempts,
                        x.queued_ns,
                        &e.to_string(),
                        now,
                    )?;
                    self.after_failure(&e).await;
                    return Ok(());
                }
            }
        }
        // 3. Held messages go as a digest once the oldest has waited
        // `digest_after_seconds`, at most one digest per that long.
        let held = outbox::deliveries(&self.conn, &name, "held", None, 1000)?;
        let oldest = held.iter().map(|x| x.queued_ns).min();
        if digest_ok && oldest.is_some_and(|o| now - o >= after) {
            self.digest_now(d, &held, now).await?;
        }
        Ok(())
    }

    /// Assigns deliveries `ds` to a new digest and sends it.
    async fn digest_now(&mut self, d: &Dispatcher, ds: &[outbox::Delivery], now: i64) -> rusqlite::Result<bool> {
        if ds.is_empty() {
            return Ok(true);
        }
        let key = digest_key(&self.cfg.name, ds);
        let ids: Vec<i64> = ds.iter().map(|x| x.event.id).collect();
        outbox::assign_digest(&self.conn, &self.cfg.name, &ids, &key, now)?;
        self.send_digest(d, &key, ds, now).await
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
            retry(&self.conn, &name, Target::Digest(key), attempts, queued, &why, now)?;
            return Ok(false);
        };
        match t.send(&msg).await {
            Ok(()) => {
                tracing::info!(channel = %name, key, messages = ds.len(), "alerts: digest sent");
                outbox::mark_sent(&self.conn, &name, Target::Digest(key), crate::base::clock::now_ns())?;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(channel = %name, key, "alerts: digest failed, will retry: {e}");
                retry(
                    &self.conn,
                    &name,
                    Target::Digest(key),
                    attempts,
                    queued,
                    &e.to_string(),
                    now,
                )?;
                self.after_failure(&e).await;
                Ok(false)
            }
        }
    }

    /// After a failed send: a transport whose configuration is unusable is
    /// opened afresh next time. The others are kept: webhooks, Twilio and
    /// email hold no connection, and reopening would re-read (and audit)
    /// the secret on every retry; MQTT reconnects by itself; a replaced
    /// secret restarts the whole worker (its fingerprint changed).
    async fn after_failure(&mut self, e: &super::SendError) {
        if matches!(e, super::SendError::Config(_)) {
            if let Some(mut t) = self.transport.take() {
                t.close().await;
            }
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

/// An error as stored and shown: one line of at most 300 characters.
fn short(e: &str) -> String {
    crate::base::text::one_line(e, 300)
}

/// A digest's idempotency key: the channel and its first and last event,
/// so a retry of the same set keeps the key.
fn digest_key(channel: &str, ds: &[outbox::Delivery]) -> String {
    let first = ds.iter().map(|x| x.event.id).min().unwrap_or(0);
    let last = ds.iter().map(|x| x.event.id).max().unwrap_or(0);
    let tag = ds.first().map(|x| x.event.idempotency_key.as_str()).unwrap_or("vigil-");
    format!("{tag}-d-{channel}-{first}-{last}")
}

/// A failed attempt at `target` (one event's delivery or a digest): tried
/// again after the backoff of its attempts, or given up once its oldest
/// message is three days old; the error stored one line.
fn retry(
    conn: &Connection,
    channel: &str,
    target: Target<'_>,
    attempts: i64,
    queued_ns: i64,
    error: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let next = now + backoff(attempts + 1).as_nanos() as i64;
    outbox::mark_retry(conn, channel, target, next, &short(error), now - queued_ns > GIVE_UP_NS)
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
