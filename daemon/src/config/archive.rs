//! The archive's settings as `vigil.toml` gives them: retention (how much
//! free space to keep, per-camera days and bytes) and the fixity scrub's pace.
//! The jobs that act on them live in the archive layer.

use std::collections::HashMap;
use std::time::Duration;

/// Limits of one camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CameraLimits {
    pub retention_days: Option<u32>,
    pub max_bytes: Option<u64>,
}

/// `[retention]`: what retention keeps and frees.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionPolicy {
    /// Keep at least this share of the recordings filesystem free.
    pub min_free_percent: f64,
    /// And at least this many bytes.
    pub min_free_bytes: u64,
    /// For cameras without their own `retention_days` (e.g. added from the UI).
    pub default_days: Option<u32>,
    pub cameras: HashMap<String, CameraLimits>,
    pub interval: Duration,
    /// Keep a recording queued for replication until it is uploaded (every
    /// rule, the free-space floor too: recording pauses rather than delete it).
    pub keep_until_replicated: bool,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            min_free_percent: 10.0,
            min_free_bytes: 0,
            default_days: None,
            cameras: HashMap::new(),
            interval: Duration::from_secs(300),
            keep_until_replicated: false,
        }
    }
}

impl RetentionPolicy {
    /// Free bytes that must remain on a filesystem of `total` bytes.
    pub fn floor(&self, total: u64) -> u64 {
        let pct = (total as f64 * self.min_free_percent / 100.0) as u64;
        pct.max(self.min_free_bytes).min(total)
    }

    /// The band above the floor where pruning starts (2% of the
    /// filesystem, at most 1 GiB, at least 1 MiB).
    pub fn headroom(&self, total: u64) -> u64 {
        (total / 50).clamp(1 << 20, 1 << 30).min(total / 4)
    }

    pub fn limits(&self, camera: &str) -> CameraLimits {
        let mut l = self.cameras.get(camera).copied().unwrap_or_default();
        if l.retention_days.is_none() {
            l.retention_days = self.default_days;
        }
        l
    }
}

/// `[fixity]`: how fast and how often the scrub re-hashes recordings.
#[derive(Clone, Debug, PartialEq)]
pub struct FixityConfig {
    /// Read rate cap, bytes per second (0: the scrub is off).
    pub rate_bytes_per_s: u64,
    /// Time from the start of one cycle to the start of the next.
    pub cycle: Duration,
}

impl Default for FixityConfig {
    fn default() -> Self {
        FixityConfig {
            rate_bytes_per_s: 8 << 20,
            cycle: Duration::from_secs(7 * 86_400),
        }
    }
}
