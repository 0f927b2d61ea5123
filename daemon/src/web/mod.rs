//! The web layer: the HTTPS API and web UI. [`server`] has the listeners
//! and the life of each connection under the limits of [`limits`] (caps
//! per address, per network and in all, the slowest clients shed first, a
//! total deadline for each request); [`tls`] the certificate.
//!
//! Requests go to [`routes::handle`], which finds the route in the one
//! table [`api::ROUTES`], checks access ([`auth`]) and runs the handler of
//! the route's resource group (`api/*.rs`); [`reply`] has the JSON replies
//! and errors. This file has the state every handler reaches
//! ([`AppState`], its database pool) and the server-sent event source.

pub mod api;
pub mod auth;
pub mod limits;
pub mod reply;
pub mod routes;
pub mod server;
pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::db::throttle::Throttle;
use crate::db::Index;
use crate::keys::keyring::Keyring;
use crate::storage::Storage;

/// Counters for /metrics.
#[derive(Default)]
pub struct Counters {
    pub requests: std::sync::atomic::AtomicU64,
    pub responses_4xx: std::sync::atomic::AtomicU64,
    pub responses_5xx: std::sync::atomic::AtomicU64,
    pub refused_connections: std::sync::atomic::AtomicU64,
    /// Connections closed to make room for a newcomer (slow or idle ones).
    pub shed_connections: std::sync::atomic::AtomicU64,
    pub logins_ok: std::sync::atomic::AtomicU64,
    pub logins_failed: std::sync::atomic::AtomicU64,
}

/// What every request handler can reach.
pub struct AppState {
    pub db_path: PathBuf,
    pub keyring: Arc<Keyring>,
    pub storage: Storage,
    pub cameras: Arc<crate::run::cameras::Supervisor>,
    pub throttle: Mutex<Throttle>,
    /// The daemon's clock (sessions, login throttling, TOTP).
    pub clock: crate::base::clock::Clocks,
    pub counters: Counters,
    pub fingerprint: String,
    pub started: std::time::Instant,
    pub live: Arc<crate::ingest::live::LiveHub>,
    /// Admins must enrol TOTP before anything else.
    pub require_admin_mfa: bool,
    /// Server-sent events, already formatted (`event: ...\ndata: ...\n\n`).
    pub events: tokio::sync::broadcast::Sender<String>,
    /// Set when the recordings are not on a LUKS2 volume (allowed by config).
    pub volume_warning: Option<String>,
    /// One evidence bundle is built at a time (they read whole ranges).
    pub export_gate: tokio::sync::Semaphore,
    /// The audit of footage leaving (playback, downloads, live view).
    pub egress: Arc<crate::evidence::egress::EgressLog>,
    /// Footage streams open at once, per caller and in total.
    pub streams: Arc<crate::evidence::egress::StreamGate>,
    /// The retention policy (its storage floor, for `GET /api/v1/storage`).
    pub retention: crate::config::archive::RetentionPolicy,
    /// (name, URL as written) of each camera in vigil.toml (listed to admins only, redacted).
    pub provisioned_urls: Vec<(String, String)>,
    /// Live streams open at once, per caller and in total (apart from footage).
    pub live_streams: Arc<crate::evidence::egress::StreamGate>,
    /// H.265 → H.264 conversions for browsers (`[http] max_transcodes`).
    pub transcoders: Arc<crate::ingest::transcode::Transcoders>,
    /// `[alerts]` of vigil.toml (its channels cannot be changed from the UI).
    pub alerts: crate::config::alerts::AlertsConfig,
    /// `[onvif]` of vigil.toml (the discovery interface).
    pub onvif: crate::config::onvif::OnvifConfig,
    /// With `[replication]`: when lag becomes an alert, and the uploader's counters.
    pub replication: Option<(i64, Arc<crate::replica::upload::Stats>)>,
    pool: Mutex<Vec<Index>>,
}

impl AppState {
    pub fn new(
        db_path: PathBuf,
        keyring: Arc<Keyring>,
        storage: Storage,
        cameras: Arc<crate::run::cameras::Supervisor>,
        fingerprint: String,
        live: Arc<crate::ingest::live::LiveHub>,
        clock: crate::base::clock::Clocks,
    ) -> Self {
        AppState {
            volume_warning: None,
            export_gate: tokio::sync::Semaphore::new(1),
            egress: Arc::new(crate::evidence::egress::EgressLog::new(
                db_path.clone(),
                crate::evidence::egress::DEFAULT_WINDOW,
            )),
            streams: Arc::default(),
            retention: Default::default(),
            provisioned_urls: Vec::new(),
            live_streams: Arc::new(crate::evidence::egress::StreamGate::live()),
            transcoders: Arc::default(),
            alerts: Default::default(),
            onvif: Default::default(),
            replication: None,
            db_path,
            keyring,
            storage,
            cameras,
            throttle: Mutex::new(Throttle::new(clock.clone())),
            clock,
            counters: Counters::default(),
            fingerprint,
            started: std::time::Instant::now(),
            live,
            require_admin_mfa: false,
            events: tokio::sync::broadcast::channel(256).0,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Cameras from vigil.toml, then the running ones added from the web UI.
    pub fn active_cameras(&self) -> Vec<String> {
        let mut v = self.cameras.provisioned().to_vec();
        for n in self.cameras.running() {
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }

    /// Runs blocking database work off the async threads, on a pooled connection.
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Index) -> Result<T, reply::ApiError> + Send + 'static,
    ) -> Result<T, reply::ApiError> {
        let st = self.clone();
        tokio::task::spawn_blocking(move || {
            let idx = match st.pool.lock().ok().and_then(|mut p| p.pop()) {
                Some(i) => i,
                None => Index::open_existing(&st.db_path).map_err(|e| reply::ApiError::internal(e.to_string()))?,
            };
            let r = f(&idx);
            if let Ok(mut p) = st.pool.lock() {
                if p.len() < 8 {
                    p.push(idx);
                }
            }
            r
        })
        .await
        .map_err(|e| reply::ApiError::internal(e.to_string()))?
    }
}

/// Turns changes in the index into server-sent events, polled once a second:
/// camera state changes, new recordings, free space falling below 10 %.
pub(crate) async fn watch_events(st: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let mut states: HashMap<String, String> = HashMap::new();
    let mut last_recording: Option<i64> = None;
    let mut disk_low = false;
    let mut fixity_failed: std::collections::HashSet<i64> = Default::default();
    let mut paused: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = st
            .db(|idx| {
                let cams = idx.cameras()?;
                let newest = idx.newest_recording_id()?;
                let new = match newest {
                    Some(n) => idx.recordings_page(None, n - 50, 50)?,
                    None => Vec::new(),
                };
                let failures = crate::db::fixity::failures(idx.conn())?;
                Ok((cams, newest, new, failures))
            })
            .await;
        let Ok((cams, newest, recent, failures)) = snapshot else {
            continue;
        };
        let send = |kind: &str, v: serde_json::Value| {
            let _ = st.events.send(format!("event: {kind}\ndata: {v}\n\n"));
        };
        for c in cams {
            if states.get(&c.name) != Some(&c.state) {
                if states.contains_key(&c.name) || c.state != "unknown" {
                    send(
                        "camera",
                        serde_json::json!({ "camera": c.name, "state": c.state, "error": c.last_error }),
                    );
                }
                states.insert(c.name.clone(), c.state.clone());
            }
        }
        if let Some(prev) = last_recording {
            for r in recent.iter().filter(|r| r.id > prev) {
                send(
                    "recording",
                    serde_json::json!({ "camera": r.camera, "id": r.id, "start": crate::base::time::format_ns(r.start_wall_ns) }),
                );
            }
        }
        last_recording = newest.or(last_recording).or(Some(0));
        for f in failures {
            if fixity_failed.insert(f.id) {
                send(
                    "integrity",
                    serde_json::json!({ "camera": f.camera, "recording_id": f.id, "error": format!("fixity: {}", f.detail) }),
                );
            }
        }
        let now_paused = st.storage.alarm().paused();
        if now_paused != paused {
            send("storage", serde_json::json!({ "paused": now_paused }));
            paused = now_paused;
        }
        if let Some((avail, total)) = crate::base::host::fs_space(st.storage.dir()) {
            let low = total > 0 && avail * 10 < total;
            if low && !disk_low {
                send(
                    "disk_low",
                    serde_json::json!({ "free_bytes": avail, "total_bytes": total }),
                );
            }
            disk_low = low;
        }
    }
}

/// Test support: the API's state on a fresh installation.
#[cfg(test)]
pub mod tests_support {
    use std::sync::Arc;
    use std::time::Duration;

    use super::AppState;

    /// The API's state over a fresh archive in `dir`.
    pub fn app_state(dir: &std::path::Path) -> Arc<AppState> {
        let db = dir.join("vigil.db");
        let sealer = crate::keys::keyring::tests_support::file_sealer(dir);
        crate::keys::keyring::init(&db, &sealer, "t").unwrap();
        let keyring = Arc::new(crate::keys::keyring::Keyring::open(&db, sealer, "t").unwrap());
        let mut storage = crate::storage::Storage::new(&dir.join("rec"));
        storage.ensure().unwrap();
        let live = Arc::new(crate::ingest::live::LiveHub::new());
        let cameras = Arc::new(crate::run::cameras::Supervisor::new(
            tokio::runtime::Handle::current(),
            storage.clone(),
            db.clone(),
            keyring.clone(),
            live.clone(),
            Duration::from_secs(60),
            Duration::from_secs(5),
            Vec::new(),
        ));
        Arc::new(AppState::new(
            db,
            keyring,
            storage,
            cameras,
            "fp".into(),
            live,
            crate::base::clock::system(),
        ))
    }
}
