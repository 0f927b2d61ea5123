//! The health supervisor: the one place that decides whether the daemon is
//! alive enough to be left running. It pings the systemd watchdog
//! (`WATCHDOG=1`) only while
//! - the async runtime (every camera's ingest and the HTTPS server) ticks,
//! - every camera's ingest task is running and its recorder (the writer)
//!   keeps up: nothing waits in its queue longer than 10 s,
//! - the database grants its write lock within 5 s,
//!
//! so a stuck recorder, a wedged runtime or a locked database stop the pings
//! and systemd restarts the service. A free-running ping timer would keep a
//! broken daemon alive forever. It also publishes `STATUS=` ("3/4 cameras
//! recording, 62% free") and once a minute polls the conditions kept as
//! alerts ([`crate::run::conditions`]).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::run::notify::Notifier;

use crate::base::clock::mono_ms;

/// A recorder whose queue has work older than this is stuck.
const WRITER_STALL: Duration = Duration::from_secs(10);
/// How often the clock's synchronisation and the secrets' expiry are polled.
const CONDITIONS_POLL: Duration = Duration::from_secs(60);
/// The runtime heartbeat ticks every second; this much silence is a stall.
const RUNTIME_STALL: Duration = Duration::from_secs(10);

/// One camera as the supervisor sees it.
#[derive(Debug, Clone)]
pub struct CameraHealth {
    pub name: String,
    /// Event batches waiting for the recorder.
    pub queued: usize,
    /// Since the recorder last finished handling an event.
    pub writer_idle: Duration,
    /// The ingest task is still running.
    pub ingest_alive: bool,
}

/// What one check found: problems (empty when healthy) and the status line.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub problems: Vec<String>,
    pub status: String,
    /// Healthy, but not every camera is recording (or the disk is full).
    pub degraded: bool,
}

/// Judges the heartbeats. Pure, so it is unit-tested.
pub fn judge(runtime_idle: Duration, cameras: &[CameraHealth], db: Result<(), String>) -> Vec<String> {
    let mut p = Vec::new();
    if runtime_idle > RUNTIME_STALL {
        p.push(format!(
            "the async runtime has not ticked for {} s",
            runtime_idle.as_secs()
        ));
    }
    for c in cameras {
        if !c.ingest_alive {
            p.push(format!("camera {}: its ingest task has stopped", c.name));
        }
        if c.queued > 0 && c.writer_idle > WRITER_STALL {
            p.push(format!(
                "camera {}: the recorder has not taken work for {} s ({} batch(es) waiting)",
                c.name,
                c.writer_idle.as_secs(),
                c.queued
            ));
        }
    }
    if let Err(e) = db {
        p.push(format!("database: {e}"));
    }
    p
}

/// Takes and releases the database write lock (5 s at most).
fn database_check(conn: &rusqlite::Connection) -> Result<(), String> {
    crate::db::probe::write_lock(conn).map_err(|e| e.to_string())
}

/// What the status LEDs show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedState {
    /// Healthy, every camera recording: status LED on.
    Recording,
    /// Healthy, but a camera is not recording or the disk is full: status LED blinks.
    Degraded,
    /// A heartbeat is stale: status LED off, fault LED on.
    Fault,
}

/// The board's hardware watchdog and LEDs (sysfs `leds` class), driven by
/// the same verdict as the systemd watchdog.
pub struct BoardIo {
    watchdog: Option<(std::path::PathBuf, std::fs::File)>,
    led_status: Option<std::path::PathBuf>,
    led_fault: Option<std::path::PathBuf>,
    shown: Option<LedState>,
}

impl BoardIo {
    pub fn open(cfg: &crate::config::BoardConfig) -> BoardIo {
        let watchdog = cfg
            .watchdog
            .as_ref()
            .and_then(|p| match std::fs::OpenOptions::new().write(true).open(p) {
                Ok(f) => {
                    tracing::info!(device = %p.display(), "feeding the hardware watchdog while healthy");
                    Some((p.clone(), f))
                }
                Err(e) => {
                    tracing::error!(device = %p.display(), "cannot open the hardware watchdog: {e}");
                    None
                }
            });
        BoardIo {
            watchdog,
            led_status: cfg.led_status.clone(),
            led_fault: cfg.led_fault.clone(),
            shown: None,
        }
    }

    /// One keep-alive write (any byte but 'V').
    fn feed(&mut self) {
        use std::io::Write;
        if let Some((p, f)) = &mut self.watchdog {
            if let Err(e) = f.write_all(b"\0") {
                tracing::warn!(device = %p.display(), "cannot feed the hardware watchdog: {e}");
            }
        }
    }

    fn led_write(led: &std::path::Path, trigger: &str, brightness: &str) {
        for (f, v) in [("trigger", trigger), ("brightness", brightness)] {
            if let Err(e) = std::fs::write(led.join(f), v) {
                tracing::warn!(led = %led.display(), "cannot set the LED's {f}: {e}");
            }
        }
    }

    pub fn show(&mut self, state: LedState) {
        if self.shown == Some(state) {
            return;
        }
        self.shown = Some(state);
        if let Some(l) = &self.led_status {
            match state {
                LedState::Recording => Self::led_write(l, "none", "1"),
                LedState::Degraded => Self::led_write(l, "timer", "1"),
                LedState::Fault => Self::led_write(l, "none", "0"),
            }
        }
        if let Some(l) = &self.led_fault {
            Self::led_write(l, "none", if state == LedState::Fault { "1" } else { "0" });
        }
    }

    /// A clean stop: the magic close ('V') disarms the hardware watchdog so
    /// an orderly shutdown does not reset the board.
    pub fn close(&mut self) {
        use std::io::Write;
        if let Some((p, mut f)) = self.watchdog.take() {
            if let Err(e) = f.write_all(b"V") {
                tracing::warn!(device = %p.display(), "cannot disarm the hardware watchdog: {e}");
            }
        }
    }
}

/// Where the health supervisor reads each camera's state from (the camera
/// supervisor), so that the judge does not depend on who runs the cameras.
pub trait CameraHealthSource: Send + Sync {
    fn camera_health(&self) -> Vec<CameraHealth>;
}

pub struct HealthSupervisor {
    pub notifier: Notifier,
    pub board: BoardIo,
    pub cameras: Arc<dyn CameraHealthSource>,
    pub db_path: std::path::PathBuf,
    pub storage: crate::storage::Storage,
    pub runtime_beat: Arc<AtomicI64>,
}

impl HealthSupervisor {
    /// Runs until `stop`. Checks every quarter of the watchdog interval
    /// (every 5 s without one).
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        let tick = self
            .notifier
            .watchdog()
            .map(|w| (w / 4).max(Duration::from_millis(250)))
            .unwrap_or(Duration::from_secs(5));
        let conn = crate::db::probe::connect(&self.db_path, Duration::from_secs(5));
        let mut last_problems: Vec<String> = Vec::new();
        let mut next_poll = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let (Ok(c), true) = (&conn, Instant::now() >= next_poll) {
                next_poll = Instant::now() + CONDITIONS_POLL;
                if let Err(e) = crate::run::conditions::poll(c, crate::base::clock::now_ns()) {
                    tracing::warn!("cannot update the clock and secret alerts: {e}");
                }
            }
            let v = self.check(conn.as_ref().map_err(|e| e.to_string()));
            if v.problems.is_empty() {
                self.notifier.send(&format!("WATCHDOG=1\nSTATUS={}", v.status));
                self.board.feed();
                self.board.show(if v.degraded {
                    LedState::Degraded
                } else {
                    LedState::Recording
                });
                if !last_problems.is_empty() {
                    tracing::info!("health: all heartbeats fresh again; watchdog pings resumed");
                }
            } else {
                self.board.show(LedState::Fault);
                self.notifier
                    .send(&format!("STATUS=unhealthy: {}", v.problems.join("; ")));
                if v.problems != last_problems {
                    tracing::error!(
                        "health: {}; the watchdog is not pinged, so systemd restarts vigil if this lasts",
                        v.problems.join("; ")
                    );
                }
            }
            last_problems = v.problems;
            let until = Instant::now() + tick;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
            }
        }
        self.board.close();
    }

    fn check(&self, conn: Result<&rusqlite::Connection, String>) -> Verdict {
        let runtime_idle = Duration::from_millis((mono_ms() - self.runtime_beat.load(Ordering::Relaxed)).max(0) as u64);
        let cams = self.cameras.camera_health();
        let db = conn.and_then(database_check);
        let problems = judge(runtime_idle, &cams, db);
        // "N/M cameras recording": streaming per the index, of those running.
        let streaming = crate::db::probe::streaming_cameras(&self.db_path).unwrap_or(0);
        let free = crate::base::host::fs_space(self.storage.dir())
            .filter(|(_, t)| *t > 0)
            .map(|(a, t)| format!(", {}% free", a * 100 / t))
            .unwrap_or_default();
        let paused = self
            .storage
            .alarm()
            .paused()
            .map(|_| ", recording paused: disk full".to_string())
            .unwrap_or_default();
        Verdict {
            problems,
            degraded: (streaming as usize) < cams.len() || !paused.is_empty(),
            status: format!("{streaming}/{} cameras recording{free}{paused}", cams.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(queued: usize, idle_s: u64, alive: bool) -> CameraHealth {
        CameraHealth {
            name: "c".into(),
            queued,
            writer_idle: Duration::from_secs(idle_s),
            ingest_alive: alive,
        }
    }

    #[test]
    fn only_fresh_heartbeats_pass() {
        let ok = Duration::from_secs(1);
        assert!(
            judge(ok, &[cam(0, 600, true)], Ok(())).is_empty(),
            "an idle recorder with nothing queued is fine"
        );
        assert!(judge(ok, &[cam(3, 2, true)], Ok(())).is_empty(), "busy and keeping up");
        assert_eq!(judge(ok, &[cam(3, 11, true)], Ok(())).len(), 1, "work waits: stuck");
        assert_eq!(judge(ok, &[cam(0, 0, false)], Ok(())).len(), 1, "ingest gone");
        assert_eq!(judge(Duration::from_secs(11), &[], Ok(())).len(), 1, "runtime stalled");
        assert_eq!(judge(ok, &[], Err("locked".into())).len(), 1, "database");
    }
}
