//! Group commit of recordings to the disk: every camera's recorder asks for a
//! sync at its own moments (a GOP's end, or its sync interval), and one
//! `syncfs` of the recordings volume serves every request that came in while
//! the previous one ran. Eight cameras whose key frames come together cost
//! one or two syncs instead of eight: fewer flash erase cycles on an SD card
//! or eMMC (each sync rewrites a partly filled page and commits the
//! filesystem's journal) and less CPU (docs/performance.md).
//!
//! No thread of its own: the first recorder to ask runs the sync (the
//! leader); those that ask meanwhile wait, and one of them runs the next
//! round for all of them. A request is answered only by a round that began
//! after it, so every byte written before [`SyncGroup::sync`] was called is
//! on the disk when it returns Ok.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Debug)]
pub struct SyncGroup {
    /// An open handle on the recordings directory: `syncfs` syncs its filesystem.
    dir: File,
    path: PathBuf,
    rounds: Mutex<Rounds>,
    done: Condvar,
    /// Sync system calls made (for the flash-wear figures of `/metrics`).
    syncs: AtomicU64,
    /// Whether an Ok from `syncfs` means the recordings are on the disk:
    /// the kernel reports writeback errors through it (Linux 5.8 and
    /// later) and the handle is on the recordings volume. Otherwise each
    /// recorder also fdatasyncs its own file.
    trusted: bool,
}

#[derive(Debug, Default)]
struct Rounds {
    /// Rounds begun and finished; a round is running when they differ.
    begun: u64,
    finished: u64,
    /// The latest round that failed, and why.
    failed: Option<(u64, String)>,
}

impl SyncGroup {
    /// A group for the filesystem that holds `dir`, which should be the
    /// device `expected_dev` (the volume seen at start).
    pub fn open(dir: &Path, expected_dev: Option<u64>) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let handle = File::open(dir)?;
        let on_volume = expected_dev.is_some_and(|d| handle.metadata().is_ok_and(|m| m.dev() == d));
        Ok(SyncGroup {
            dir: handle,
            path: dir.to_path_buf(),
            rounds: Mutex::default(),
            done: Condvar::new(),
            syncs: AtomicU64::new(0),
            trusted: on_volume && kernel_reports_syncfs_errors(),
        })
    }

    /// See the field: when false, callers fdatasync their own files too.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Returns once everything written to the volume before the call is
    /// durable, or with the error of the round that should have made it so.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut r = self.lock();
        // The round running now may have started before our writes.
        let want = r.begun + 1;
        loop {
            if r.finished >= want {
                return match &r.failed {
                    Some((round, why)) if *round >= want => Err(std::io::Error::other(why.clone())),
                    _ => Ok(()),
                };
            }
            if r.begun == r.finished {
                r.begun += 1;
                let round = r.begun;
                drop(r);
                let result = self.syncfs();
                r = self.lock();
                r.finished = round;
                if let Err(e) = &result {
                    r.failed = Some((round, format!("sync of {}: {e}", self.path.display())));
                }
                self.done.notify_all();
                continue;
            }
            r = match self.done.wait(r) {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
    }

    /// Sync system calls made so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        // A panic while holding the lock leaves plain counters behind: go on.
        match self.rounds.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn syncfs(&self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: syncfs takes a file descriptor we own and keep open.
        if unsafe { libc::syncfs(self.dir.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Linux reports writeback errors through `syncfs` since 5.8.
fn kernel_reports_syncfs_errors() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[test]
    fn concurrent_requests_share_rounds_and_each_waits_for_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(SyncGroup::open(dir.path(), None).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let group = group.clone();
                let path = dir.path().join(format!("f{i}"));
                std::thread::spawn(move || {
                    let mut f = File::create(path).unwrap();
                    for _ in 0..20 {
                        f.write_all(&[0u8; 4096]).unwrap();
                        group.sync().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let syncs = group.syncs();
        // 160 requests; never more syncs than requests, and at least one
        // per request of the slowest thread.
        assert!((20..=160).contains(&syncs), "{syncs} syncs");
    }

    #[test]
    fn a_request_is_answered_by_a_round_that_began_after_it() {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(dir.path()).unwrap().dev();
        let group = SyncGroup::open(dir.path(), Some(dev)).unwrap();
        assert_eq!(group.trusted(), kernel_reports_syncfs_errors());
        assert!(
            !SyncGroup::open(dir.path(), Some(dev + 1)).unwrap().trusted(),
            "another device"
        );
        group.sync().unwrap();
        group.sync().unwrap();
        assert_eq!(group.syncs(), 2, "each lone request runs its own round");
    }
}
