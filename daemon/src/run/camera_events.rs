//! A camera's ONVIF side while it runs: its clock read each minute (the
//! drift goes to `db::camera_clock`, which raises `camera.clock_drift` past
//! 2 s) and a PullPoint subscription to its motion and tamper events,
//! stored by `db::camera_events` on the box's timeline (the camera's
//! timestamps corrected by its measured drift). One task per camera with an
//! `onvif_url`; errors are logged and retried with a growing delay, never
//! fatal to the recording.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::config::CameraConfig;
use crate::db::camera_events::{self, EventKind};
use crate::ingest::onvif::{measure_clock, CameraEvent, Device, OnvifError};

/// How often the camera's clock is read.
const CLOCK_EVERY: Duration = Duration::from_secs(60);
/// One PullMessages long-poll.
const PULL_WAIT: Duration = Duration::from_secs(10);
/// Messages per pull.
const PULL_LIMIT: u32 = 50;
/// Renew the subscription this long after creating or renewing it.
const RENEW_EVERY: Duration = Duration::from_secs(50);
/// The shortest time between two pulls that brought nothing.
const MIN_PULL_GAP: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// Below this a measured drift is not applied to event times: ONVIF gives
/// the camera's clock in whole seconds, so a smaller reading is noise (and
/// the drift alert starts at 2 s too).
const APPLY_DRIFT_OVER_MS: i64 = 2000;

/// Runs until `stop` turns true: the clock every [`CLOCK_EVERY`] and the
/// event subscription side by side, each retried on its own.
pub async fn run(
    db_path: PathBuf,
    cam: CameraConfig,
    password: Option<Zeroizing<String>>,
    stop: watch::Receiver<bool>,
) {
    let Some(url) = cam.onvif_url.clone() else { return };
    let device = Device::new(url, cam.username.clone(), password);
    let drift_ms = AtomicI64::new(0);
    tokio::join!(
        clock_loop(&device, &cam.name, &db_path, &drift_ms, stop.clone()),
        events_loop(&device, &cam.name, &db_path, &drift_ms, stop),
    );
}

/// Sleeps `d`, or returns false if `stop` turned true first.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

async fn clock_loop(
    device: &Device,
    camera: &str,
    db_path: &Path,
    drift_ms: &AtomicI64,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let read = tokio::select! {
            r = measure_clock(device, camera, db_path) => r,
            _ = stop.changed() => return,
        };
        match read {
            Ok(c) => {
                let applied = if c.drift_ms.abs() > APPLY_DRIFT_OVER_MS {
                    c.drift_ms
                } else {
                    0
                };
                drift_ms.store(applied, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(camera = %camera, "reading the camera's clock failed: {e}"),
        }
        if !pause(CLOCK_EVERY, &mut stop).await {
            return;
        }
    }
}

async fn events_loop(
    device: &Device,
    camera: &str,
    db_path: &Path,
    drift_ms: &AtomicI64,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut pulled_any = false;
        let failed = tokio::select! {
            r = subscription(device, camera, db_path, drift_ms, &mut pulled_any) => match r {
                Err(e) => e,
                Ok(never) => match never {},
            },
            _ = stop.changed() => return,
        };
        if pulled_any {
            backoff = BACKOFF_MIN;
        }
        tracing::warn!(camera = %camera, "camera events: {failed}; subscribing again in {backoff:?}");
        if !pause(backoff, &mut stop).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription, pulled until something fails (it returns only then).
/// `pulled_any` turns true once a pull answered.
async fn subscription(
    device: &Device,
    camera: &str,
    db_path: &Path,
    drift_ms: &AtomicI64,
    pulled_any: &mut bool,
) -> Result<Infallible, OnvifError> {
    let pull = device.create_pull_point().await?;
    // What was open before this subscription may have ended unseen: closed now.
    close_open(db_path, camera).await;
    let mut renewed = tokio::time::Instant::now();
    loop {
        let step = async {
            if renewed.elapsed() >= RENEW_EVERY {
                pull.renew().await?;
                renewed = tokio::time::Instant::now();
            }
            let asked = tokio::time::Instant::now();
            let events = pull.pull(PULL_WAIT, PULL_LIMIT).await?;
            Ok::<_, OnvifError>((events, asked.elapsed()))
        };
        let (events, took) = match step.await {
            Ok(r) => r,
            Err(e) => {
                // Free the camera's subscription slot (best effort, bounded).
                let _ = tokio::time::timeout(Duration::from_secs(3), pull.unsubscribe()).await;
                return Err(e);
            }
        };
        *pulled_any = true;
        if events.is_empty() {
            // A camera that answers an empty pull at once is not asked again at once.
            if took < MIN_PULL_GAP {
                tokio::time::sleep(MIN_PULL_GAP - took).await;
            }
        } else {
            store_events(db_path, camera, events, drift_ms.load(Ordering::Relaxed)).await;
        }
    }
}

/// Closes `camera`'s events still open (their end is now).
async fn close_open(db_path: &Path, camera: &str) {
    let camera = camera.to_string();
    let closed = crate::db::Index::on_blocking_thread(db_path, move |idx| {
        camera_events::close_open(idx.conn(), &camera, crate::base::clock::now_ns())
    })
    .await;
    if let Err(e) = closed {
        tracing::warn!("closing camera events failed: {e}");
    }
}

async fn store_events(db_path: &std::path::Path, camera: &str, events: Vec<CameraEvent>, drift_ms: i64) {
    let camera = camera.to_string();
    let stored = crate::db::Index::on_blocking_thread(db_path, move |idx| {
        for e in events {
            let Some(kind) = EventKind::parse(e.kind) else { continue };
            let at_ns = e.utc_ms.saturating_sub(drift_ms).saturating_mul(1_000_000);
            let topic = crate::base::text::one_line(&e.topic, 200);
            camera_events::record(idx.conn(), &camera, kind, e.state, at_ns, &topic)?;
        }
        Ok::<_, rusqlite::Error>(())
    })
    .await;
    if let Err(e) = stored {
        tracing::warn!("storing camera events failed: {e}");
    }
}
