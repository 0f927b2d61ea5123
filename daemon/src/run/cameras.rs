//! The cameras the daemon runs, and the ones added from the web UI.
//!
//! Cameras come from two places: `[[camera]]` in vigil.toml (provisioned;
//! read-only from the API) and the `managed_camera` table (added, changed and
//! removed through the API, stored by [`crate::db::cameras`]; their passwords
//! in the secrets store as `camera.<name>`). The [`Supervisor`] starts and stops each one at run time:
//! an ingest task with its own stop switch and a recorder thread, and for a
//! camera with a `sub_url` its sub stream ([`crate::run::sub_stream`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::CameraConfig;
use crate::db::Index;
use crate::ingest::live::LiveHub;
use crate::keys::KeyLookup;
use crate::storage::recorder::{Recorder, RecorderConfig, RecorderStats};
use crate::storage::Storage;

use super::sub_stream::{self, SubStream, BATCH_QUEUE};

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    recorder: std::thread::JoinHandle<RecorderStats>,
    /// When the recorder last finished handling an event ([`crate::base::clock::mono_ms`]).
    beat: Arc<std::sync::atomic::AtomicI64>,
    /// A sender kept only to read the queue's depth.
    queue: mpsc::Sender<crate::storage::recorder::Event>,
    /// The settings it runs with.
    config: CameraConfig,
    /// Its sub stream, when it has a sub_url.
    sub: Option<SubStream>,
    /// Its ONVIF task (clock, events), when it has an onvif_url.
    onvif: Option<tokio::task::JoinHandle<()>>,
}

/// Starts and stops cameras while the daemon runs.
pub struct Supervisor {
    runtime: tokio::runtime::Handle,
    storage: Storage,
    db_path: PathBuf,
    keys: Arc<dyn KeyLookup>,
    live: Arc<LiveHub>,
    segment: Duration,
    stall: Duration,
    /// `[recording] sync_interval_seconds` (zero: every GOP).
    sync_interval: Duration,
    /// Names from vigil.toml (not changeable through the API).
    provisioned: Vec<String>,
    /// The settings of vigil.toml's cameras (running or not).
    provisioned_configs: Vec<CameraConfig>,
    running: Mutex<HashMap<String, Running>>,
    /// (camera offline, recording gap) alert delays in ns; None: no alerts.
    alert_delays: (Option<i64>, Option<i64>),
    /// What the running cameras log in with (PTZ from the API).
    pub logins: super::camera_control::CameraLogins,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: tokio::runtime::Handle,
        storage: Storage,
        db_path: PathBuf,
        keys: Arc<dyn KeyLookup>,
        live: Arc<LiveHub>,
        segment: Duration,
        stall: Duration,
        provisioned: Vec<String>,
    ) -> Self {
        Supervisor {
            runtime,
            storage,
            db_path,
            keys,
            live,
            segment,
            stall,
            sync_interval: Duration::ZERO,
            provisioned,
            provisioned_configs: Vec::new(),
            running: Mutex::new(HashMap::new()),
            logins: Default::default(),
            alert_delays: (None, None),
        }
    }

    /// Recordings are made durable this often (zero: at every GOP's end).
    pub fn with_sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Raise `camera.offline` after a camera stops streaming for `offline`,
    /// and `recording.gap` for holes longer than `gap`.
    pub fn with_alerts(mut self, offline: Duration, gap: Duration) -> Self {
        let ns = |d: Duration| Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        self.alert_delays = (ns(offline), ns(gap));
        self
    }

    /// The settings of vigil.toml's cameras, for the listing of those not
    /// running.
    pub fn with_camera_configs(mut self, configs: Vec<CameraConfig>) -> Self {
        self.provisioned_configs = configs;
        self
    }

    /// The settings `name` runs with, else vigil.toml's.
    pub fn camera_config(&self, name: &str) -> Option<CameraConfig> {
        let running = self
            .running
            .lock()
            .ok()
            .and_then(|m| m.get(name).map(|r| r.config.clone()));
        running.or_else(|| self.provisioned_configs.iter().find(|c| c.name == name).cloned())
    }

    /// The state of a running camera's sub stream ("ok", "connecting",
    /// "offline", "idle" while an unrecorded one has no viewer); None without one.
    pub fn sub_stream_state(&self, name: &str) -> Option<&'static str> {
        let m = self.running.lock().ok()?;
        m.get(name)?.sub.as_ref().map(SubStream::state)
    }

    /// Whether `name` (a camera) records its sub stream now.
    pub fn records_sub_stream(&self, name: &str) -> bool {
        let Ok(m) = self.running.lock() else { return false };
        m.get(name)
            .and_then(|r| r.sub.as_ref())
            .is_some_and(SubStream::recorded)
    }

    pub fn is_provisioned(&self, name: &str) -> bool {
        self.provisioned.iter().any(|n| n == name)
    }

    pub fn provisioned(&self) -> &[String] {
        &self.provisioned
    }

    /// Names of the cameras running now.
    pub fn running(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .running
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Starts `cam` (its recorder thread and ingest task). A camera of that
    /// name that runs already is left alone.
    pub fn start(&self, cam: &CameraConfig, password: Option<zeroize::Zeroizing<String>>) -> anyhow::Result<()> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| anyhow::anyhow!("camera table poisoned"))?;
        if running.contains_key(&cam.name) {
            return Ok(());
        }
        let v4l2_source = match cam.url.scheme() {
            "v4l2" => Some(
                crate::config::v4l2_url::parse_url(&cam.url)
                    .map_err(|e| anyhow::anyhow!("camera {}: {e}", cam.name))?,
            ),
            _ => None,
        };
        let recorder = self.recorder(&cam.name, self.alert_delays)?;
        let (tx, rx) = mpsc::channel(BATCH_QUEUE);
        let beat = Arc::new(std::sync::atomic::AtomicI64::new(crate::base::clock::mono_ms()));
        let mut recorder = recorder;
        recorder.set_heartbeat(beat.clone());
        let queue = tx.clone();
        let recorder = std::thread::Builder::new()
            .name(format!("rec-{}", cam.name))
            .spawn(move || recorder.run(rx))?;
        let (stop, stop_rx) = watch::channel(false);
        let sub = match sub_stream::sub_config(cam) {
            Some(sub_cam) => Some(self.start_sub(sub_cam, cam.record_sub, password.clone())?),
            None => None,
        };
        let onvif = cam.onvif_url.is_some().then(|| {
            self.runtime.spawn(super::camera_events::run(
                self.db_path.clone(),
                cam.clone(),
                password.clone(),
                stop_rx.clone(),
            ))
        });
        self.logins.insert(cam, password.clone());
        let task = if let Some(src) = v4l2_source {
            self.runtime.spawn(crate::ingest::v4l2::run_camera(
                cam.clone(),
                src,
                self.live.tap(&cam.name),
                self.stall,
                tx,
                stop_rx,
            ))
        } else {
            self.runtime.spawn(crate::ingest::rtsp::run_camera(
                cam.clone(),
                password,
                self.live.tap(&cam.name),
                self.stall,
                tx,
                stop_rx,
            ))
        };
        running.insert(
            cam.name.clone(),
            Running {
                stop,
                task,
                recorder,
                beat,
                queue,
                config: cam.clone(),
                sub,
                onvif,
            },
        );
        tracing::info!(camera = %cam.name, "camera started");
        Ok(())
    }

    /// A recorder for the camera `name` (its index row made if new), with
    /// these (offline, gap) alert delays.
    fn recorder(&self, name: &str, alerts: (Option<i64>, Option<i64>)) -> anyhow::Result<Recorder> {
        let index = Index::open(&self.db_path)?;
        // A recorder appends rows and reads back almost nothing: SQLite's
        // default 2 MB page cache would only grow with the archive, per camera.
        // Memory only: a recorder with the default cache still records.
        let _ = index.use_small_cache();
        let camera_id = index.camera_id(name)?;
        Ok(Recorder::new(
            RecorderConfig {
                camera_id,
                camera: name.to_string(),
                segment_duration: self.segment,
                sync_interval: self.sync_interval,
                import_start_wall_ns: None,
                clock: crate::base::clock::system(),
                offline_alert_after_ns: alerts.0,
                gap_alert_after_ns: alerts.1,
            },
            self.storage.clone(),
            index,
            self.keys.clone(),
        )?)
    }

    /// Starts a camera's sub stream `cam` (named `<camera>.sub`): recorded,
    /// with a recorder of its own and no alerts, or only for live view, then
    /// connected while someone watches it.
    fn start_sub(
        &self,
        cam: CameraConfig,
        recorded: bool,
        password: Option<zeroize::Zeroizing<String>>,
    ) -> anyhow::Result<SubStream> {
        let state = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let (stop, stop_rx) = watch::channel(false);
        if !recorded {
            let task = self.runtime.spawn(sub_stream::on_demand(
                cam,
                password,
                self.live.clone(),
                self.stall,
                state.clone(),
                stop_rx,
            ));
            return Ok(SubStream {
                stop,
                task,
                recorder: None,
                state,
            });
        }
        // The main stream's outage raises camera.offline, not this one's.
        let recorder = self.recorder(&cam.name, (None, None))?;
        let (rec_tx, rec_rx) = mpsc::channel(BATCH_QUEUE);
        let recorder = std::thread::Builder::new()
            .name(format!("rec-{}", cam.name))
            .spawn(move || recorder.run(rec_rx))?;
        let (tx, rx) = mpsc::channel(BATCH_QUEUE);
        let ingest =
            crate::ingest::rtsp::run_camera(cam.clone(), password, self.live.tap(&cam.name), self.stall, tx, stop_rx);
        let relayed = sub_stream::relay(rx, state.clone(), Some(rec_tx));
        let task = self.runtime.spawn(async move {
            tokio::join!(ingest, relayed);
        });
        tracing::info!(camera = %cam.name, "sub stream started (recorded)");
        Ok(SubStream {
            stop,
            task,
            recorder: Some(recorder),
            state,
        })
    }

    /// Stops a camera: its ingest hands over what it holds, its recorder
    /// finalises the open recording. Returns whether it was running.
    pub async fn stop(&self, name: &str) -> bool {
        let Some(r) = self.running.lock().ok().and_then(|mut m| m.remove(name)) else {
            return false;
        };
        self.live.remove(name);
        self.logins.remove(name);
        let Running {
            stop,
            task,
            recorder,
            queue,
            sub,
            onvif,
            ..
        } = r;
        if let Some(sub) = sub {
            let sub_name = crate::base::names::sub_stream_name(name);
            sub.stop(&sub_name).await;
            self.live.remove(&sub_name);
        }
        // The recorder ends when every sender is gone: ours too.
        drop(queue);
        let _ = stop.send(true);
        let _ = task.await;
        if let Some(onvif) = onvif {
            // It ends at the stop signal; a camera that hangs a request is not waited for.
            if tokio::time::timeout(Duration::from_secs(5), onvif).await.is_err() {
                tracing::warn!(camera = %name, "the ONVIF task did not end within 5 s");
            }
        }
        let joined = tokio::task::spawn_blocking(move || recorder.join()).await;
        match joined {
            Ok(Ok(stats)) => tracing::info!(camera = %name, ?stats, "camera stopped"),
            _ => tracing::error!(camera = %name, "a recorder thread panicked"),
        }
        true
    }

    /// Stops every camera (daemon shutdown).
    pub async fn stop_all(&self) {
        for name in self.running() {
            self.stop(&name).await;
        }
    }
}

impl crate::run::health::CameraHealthSource for Supervisor {
    /// Each running camera's heartbeats, for the health supervisor.
    fn camera_health(&self) -> Vec<crate::run::health::CameraHealth> {
        let now = crate::base::clock::mono_ms();
        let Ok(m) = self.running.lock() else { return Vec::new() };
        let mut v: Vec<_> = m
            .iter()
            .map(|(name, r)| crate::run::health::CameraHealth {
                name: name.clone(),
                // The queue keeps our own sender: capacity counts free slots.
                queued: r.queue.max_capacity() - r.queue.capacity(),
                writer_idle: std::time::Duration::from_millis(
                    (now - r.beat.load(std::sync::atomic::Ordering::Relaxed)).max(0) as u64,
                ),
                ingest_alive: !r.task.is_finished(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}
