//! What the modules share now that they run in one process: a gate that
//! keeps CPU-heavy tests away from tests with tight wall-clock bounds.
//!
//! As separate test binaries, a test only ever overlapped the tests of its
//! own file; in one binary, any three run together. Two cores cannot encode
//! H.265, run Chromium or rewrap 10 000 keys and still give a daemon its
//! 0.5 s watchdog cadence or a camera its "back within 5 s". So:
//! - [`heavy`]: held for the whole of a test that loads the CPU (an H.265
//!   encoder, Chromium, ffmpeg encodes, bulk key work, ten minutes of
//!   synthesized archive). No other heavy or timed test runs meanwhile.
//! - [`timed`]: held for the whole of a light test that asserts wall-clock
//!   bounds of a few seconds. Timed tests run together (as the resilience
//!   tests always did), never beside a heavy one. A waiting heavy test does
//!   not hold new timed ones back: a blocked test keeps one of the
//!   `--test-threads` idle, and a timed test can last five minutes.
//!
//! Tests that are neither (config checks, audit chains, most key handling)
//! take nothing and run beside anything. A camera or two at up to 2 Mbit/s
//! is light (two of them take a fifth of one core). The tmpfs tests
//! (disk_full, retention, storage_trouble) mount at their own temporary
//! directories and the daemon checks only its own, so they may overlap.
//!
//! Take the guard first thing in the test (`let _gate = heavy();`) so it is
//! dropped last, after the daemon and the camera are killed. Never take two.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

struct Running {
    heavy: bool,
    timed: usize,
}

static RUNNING: Mutex<Running> = Mutex::new(Running { heavy: false, timed: 0 });
static CHANGED: Condvar = Condvar::new();

fn running() -> MutexGuard<'static, Running> {
    // Never held across a test (only here), but do not let a panic elsewhere stop the rest.
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait_until(ready: impl Fn(&Running) -> bool) -> MutexGuard<'static, Running> {
    let mut r = running();
    while !ready(&r) {
        r = CHANGED.wait(r).unwrap_or_else(PoisonError::into_inner);
    }
    r
}

/// Held by a heavy test; see the module docs.
pub struct Heavy(());

/// Held by a timed test; see the module docs.
pub struct Timed(());

/// Waits until no heavy and no timed test runs, then runs the caller alone among them.
pub fn heavy() -> Heavy {
    wait_until(|r| !r.heavy && r.timed == 0).heavy = true;
    Heavy(())
}

/// Waits until no heavy test runs; keeps heavy tests waiting while the caller runs.
pub fn timed() -> Timed {
    wait_until(|r| !r.heavy).timed += 1;
    Timed(())
}

impl Drop for Heavy {
    fn drop(&mut self) {
        running().heavy = false;
        CHANGED.notify_all();
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        running().timed -= 1;
        CHANGED.notify_all();
    }
}
