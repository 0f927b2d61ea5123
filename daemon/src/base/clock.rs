//! Time, injectable: the wall clock (UTC nanoseconds, which steps when NTP or
//! an operator sets it) and a monotonic clock (which never steps). Code that
//! decides by time takes a [`Clock`], so that tests can step the wall clock,
//! stall the monotonic one, or roll the UTC day over without waiting.
//! [`now_ns`] and [`mono_ms`] read the system clocks for the code that only
//! stamps what it logs.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A wall clock and a monotonic clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// UTC wall time in nanoseconds since the Unix epoch.
    fn wall_ns(&self) -> i64;
    /// Monotonic milliseconds since an arbitrary start; never goes back.
    fn mono_ms(&self) -> i64;
}

/// Shared handle to a clock.
pub type Clocks = Arc<dyn Clock>;

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ns(&self) -> i64 {
        now_ns()
    }
    fn mono_ms(&self) -> i64 {
        mono_ms()
    }
}

/// The system clocks as a [`Clocks`] handle.
pub fn system() -> Clocks {
    Arc::new(SystemClock)
}

/// A clock that moves only when told: for tests (rotation, clock steps,
/// the UTC day rollover, session expiry, throttling windows, TOTP steps).
#[derive(Debug)]
pub struct ManualClock {
    wall_ns: AtomicI64,
    mono_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(wall_ns: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            wall_ns: AtomicI64::new(wall_ns),
            mono_ms: AtomicI64::new(0),
        })
    }
    /// Both clocks move forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.wall_ns.fetch_add(ms * 1_000_000, Ordering::SeqCst);
        self.mono_ms.fetch_add(ms, Ordering::SeqCst);
    }
    /// The wall clock alone is set (an NTP step, either way); the monotonic
    /// clock does not move.
    pub fn set_wall_ns(&self, wall_ns: i64) {
        self.wall_ns.store(wall_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall_ns(&self) -> i64 {
        self.wall_ns.load(Ordering::SeqCst)
    }
    fn mono_ms(&self) -> i64 {
        self.mono_ms.load(Ordering::SeqCst)
    }
}

/// The system's UTC wall time in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// Milliseconds on the system's monotonic clock since the first call in this
/// process.
pub fn mono_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_steps_the_wall_clock_alone() {
        let c = ManualClock::new(1_000_000_000);
        c.advance_ms(1500);
        assert_eq!(c.wall_ns(), 2_500_000_000);
        assert_eq!(c.mono_ms(), 1500);
        c.set_wall_ns(0);
        assert_eq!(c.wall_ns(), 0);
        assert_eq!(c.mono_ms(), 1500, "a wall-clock step leaves the monotonic clock alone");
    }

    #[test]
    fn system_clocks_move_forward() {
        let a = mono_ms();
        let w = now_ns();
        assert!(mono_ms() >= a);
        assert!(w > 1_600_000_000_000_000_000, "the wall clock reads a date after 2020");
    }
}
