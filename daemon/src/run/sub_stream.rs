//! A camera's sub stream (`sub_url`): its second, smaller stream, for live
//! view in a grid.
//!
//! A recorded sub stream (`record_sub`) runs all the time with a recorder of
//! its own, stored as the camera `<name>.sub`, without `camera.offline` or
//! `recording.gap` alerts (those are the main stream's). A sub stream that is
//! not recorded only feeds the live hub, and connects only while someone
//! watches it: it starts when its channel gets a viewer and stops
//! [`IDLE_AFTER`] after the last one left. Either way the sub stream's state
//! is kept for health ("ok", "connecting", "offline", or "idle" while nobody
//! watches an unrecorded one).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::CameraConfig;
use crate::ingest::live::LiveHub;
use crate::storage::recorder::{Event, RecorderStats};

/// Frame batches buffered between a camera's ingest task and its recorder
/// thread before ingest waits. A batch ends at a key frame or after 1 s of
/// media, so this holds about 10 s of video.
pub const BATCH_QUEUE: usize = 10;

/// How often an unrecorded sub stream looks for a viewer.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// An unrecorded sub stream disconnects this long after its last viewer left
/// (a player reconnecting, or the grid reloaded, finds it still connected).
pub const IDLE_AFTER: Duration = Duration::from_secs(10);

const IDLE: u8 = 0;
const CONNECTING: u8 = 1;
const STREAMING: u8 = 2;
const OFFLINE: u8 = 3;

/// The sub stream's state as health shows it.
pub fn state_name(state: u8) -> &'static str {
    match state {
        STREAMING => "ok",
        CONNECTING => "connecting",
        OFFLINE => "offline",
        _ => "idle",
    }
}

/// The camera the sub stream runs as: named `<name>.sub`, its URL the
/// sub_url (same credentials), no audio. None without a sub_url.
pub fn sub_config(cam: &CameraConfig) -> Option<CameraConfig> {
    let url = cam.sub_url.clone()?;
    let mut sub = cam.clone();
    sub.name = crate::base::names::sub_stream_name(&cam.name);
    sub.url = url;
    sub.sub_url = None;
    sub.record_sub = false;
    sub.record_audio = false;
    Some(sub)
}

/// A running sub stream.
pub struct SubStream {
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: tokio::task::JoinHandle<()>,
    /// The recorder thread of a recorded sub stream.
    pub(super) recorder: Option<std::thread::JoinHandle<RecorderStats>>,
    pub(super) state: Arc<AtomicU8>,
}

impl SubStream {
    /// "ok", "connecting", "offline" or "idle".
    pub fn state(&self) -> &'static str {
        state_name(self.state.load(Ordering::Relaxed))
    }

    pub fn recorded(&self) -> bool {
        self.recorder.is_some()
    }

    /// Stops the ingest and, for a recorded one, lets its recorder finalise
    /// the open recording.
    pub async fn stop(self, camera: &str) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(recorder) = self.recorder {
            match tokio::task::spawn_blocking(move || recorder.join()).await {
                Ok(Ok(stats)) => tracing::info!(camera = %camera, ?stats, "sub stream stopped"),
                _ => tracing::error!(camera = %camera, "a sub stream's recorder thread panicked"),
            }
        }
    }
}

/// Keeps the sub stream's state from its ingest's events and hands them to
/// the recorder (when recorded), until the ingest ends.
pub(super) async fn relay(mut rx: mpsc::Receiver<Event>, state: Arc<AtomicU8>, recorder: Option<mpsc::Sender<Event>>) {
    while let Some(ev) = rx.recv().await {
        if let Event::State { state: s, .. } = &ev {
            let v = match *s {
                "streaming" => STREAMING,
                "offline" => OFFLINE,
                _ => CONNECTING,
            };
            state.store(v, Ordering::Relaxed);
        }
        if let Some(r) = &recorder {
            if r.send(ev).await.is_err() {
                tracing::error!("a sub stream's recorder stopped; its frames are dropped");
            }
        }
    }
}

/// Whether the stop switch is on (or its sender gone).
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Waits `d` or until the stop switch flips.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}

/// An unrecorded sub stream: connects while its live channel has viewers.
pub(super) async fn on_demand(
    cam: CameraConfig,
    password: Option<zeroize::Zeroizing<String>>,
    live: Arc<LiveHub>,
    stall: Duration,
    state: Arc<AtomicU8>,
    mut stop: watch::Receiver<bool>,
) {
    // The channel exists from the start, so a viewer can subscribe before
    // the stream connects.
    let _tap = live.tap(&cam.name);
    loop {
        while live.watchers(&cam.name) == 0 {
            if stopping(&stop) {
                return;
            }
            pause(&mut stop, WATCH_POLL).await;
        }
        if stopping(&stop) {
            return;
        }
        tracing::info!(camera = %cam.name, "a viewer: the sub stream connects");
        state.store(CONNECTING, Ordering::Relaxed);
        let (ingest_stop, ingest_stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(BATCH_QUEUE);
        let ingest = tokio::spawn(crate::ingest::rtsp::run_camera(
            cam.clone(),
            password.clone(),
            live.tap(&cam.name),
            stall,
            tx,
            ingest_stop_rx,
        ));
        let relayed = tokio::spawn(relay(rx, state.clone(), None));
        let mut unwatched_since: Option<tokio::time::Instant> = None;
        while !stopping(&stop) {
            pause(&mut stop, Duration::from_secs(1)).await;
            if live.watchers(&cam.name) > 0 {
                unwatched_since = None;
            } else if unwatched_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= IDLE_AFTER {
                break;
            }
        }
        let _ = ingest_stop.send(true);
        let _ = ingest.await;
        let _ = relayed.await;
        state.store(IDLE, Ordering::Relaxed);
        tracing::info!(camera = %cam.name, "no viewer: the sub stream disconnected");
        if stopping(&stop) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(sub: Option<&str>) -> CameraConfig {
        let text = format!(
            "[storage]\ndir = \"/srv/v\"\ndb = \"/srv/v.db\"\n[keys]\nsource = \"file\"\nfile = \"/srv/k\"\n\
             [[camera]]\nname = \"door\"\nurl = \"rtsp://192.0.2.1/main\"\nrecord_audio = true\n{}",
            sub.map(|s| format!("sub_url = \"{s}\"\nrecord_sub = true\n"))
                .unwrap_or_default()
        );
        crate::config::Config::parse(std::path::Path::new("vigil.toml"), &text)
            .unwrap()
            .cameras
            .remove(0)
    }

    #[test]
    fn the_sub_stream_runs_as_its_own_camera() {
        assert!(sub_config(&camera(None)).is_none());
        let main = camera(Some("rtsp://192.0.2.1/sub"));
        let sub = sub_config(&main).unwrap();
        assert_eq!(sub.name, "door.sub");
        assert_eq!(sub.url.as_str(), "rtsp://192.0.2.1/sub");
        assert!(sub.sub_url.is_none() && !sub.record_sub && !sub.record_audio);
        assert_eq!(sub.username, main.username);
    }

    #[test]
    fn sub_retention_days_is_the_sub_streams_age_limit() {
        let text = "[storage]\ndir = \"/srv/v\"\ndb = \"/srv/v.db\"\n[keys]\nsource = \"file\"\nfile = \"/srv/k\"\n\
                    [[camera]]\nname = \"door\"\nurl = \"rtsp://192.0.2.1/main\"\nretention_days = 30\n\
                    sub_url = \"rtsp://192.0.2.1/sub\"\nrecord_sub = true\nsub_retention_days = 7\n";
        let c = crate::config::Config::parse(std::path::Path::new("vigil.toml"), text).unwrap();
        assert_eq!(c.retention.limits("door.sub").retention_days, Some(7));
        assert_eq!(c.retention.limits("door").retention_days, Some(30));
    }

    #[tokio::test]
    async fn the_relay_keeps_the_state_and_hands_on_the_events() {
        let (tx, rx) = mpsc::channel(4);
        let (rec_tx, mut rec_rx) = mpsc::channel(4);
        let state = Arc::new(AtomicU8::new(IDLE));
        let relayed = tokio::spawn(relay(rx, state.clone(), Some(rec_tx)));
        let say = |s: &'static str| Event::State { state: s, error: None };
        tx.send(say("connecting")).await.unwrap();
        assert!(matches!(
            rec_rx.recv().await,
            Some(Event::State {
                state: "connecting",
                ..
            })
        ));
        assert_eq!(state_name(state.load(Ordering::Relaxed)), "connecting");
        tx.send(say("streaming")).await.unwrap();
        assert!(rec_rx.recv().await.is_some());
        assert_eq!(state_name(state.load(Ordering::Relaxed)), "ok");
        tx.send(say("offline")).await.unwrap();
        assert!(rec_rx.recv().await.is_some());
        assert_eq!(state_name(state.load(Ordering::Relaxed)), "offline");
        drop(tx);
        relayed.await.unwrap();
        assert!(
            rec_rx.recv().await.is_none(),
            "the recorder's channel closes with the ingest"
        );
    }

    #[tokio::test]
    async fn an_unrecorded_sub_stream_waits_for_a_viewer() {
        let live = Arc::new(LiveHub::new());
        let cam = sub_config(&camera(Some("rtsp://127.0.0.1:9/sub"))).unwrap();
        let state = Arc::new(AtomicU8::new(IDLE));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(on_demand(
            cam,
            None,
            live.clone(),
            Duration::from_secs(5),
            state.clone(),
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(state_name(state.load(Ordering::Relaxed)), "idle", "nobody watches");
        let viewer = live
            .subscribe("door.sub")
            .expect("the channel exists before it connects");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_ne!(state_name(state.load(Ordering::Relaxed)), "idle", "a viewer starts it");
        drop(viewer);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state_name(state.load(Ordering::Relaxed)), "idle");
    }
}
