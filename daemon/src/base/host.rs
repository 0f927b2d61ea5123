//! Facts about the machine that health checks and (later) evidence manifests
//! report: free space of a filesystem, and the kernel's clock sync state.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// (available bytes, total bytes) of the filesystem holding `p`.
pub fn fs_space(p: &Path) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we own; the path is
    // a valid NUL-terminated string that outlives the call.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    if r != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    Some((s.f_bavail as u64 * frsize, s.f_blocks as u64 * frsize))
}

/// Gives the heap memory the allocator keeps free back to the system (after
/// a load such as many connections has ended). A no-op without glibc.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // takes no pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the filesystem holding a path sits on, as far as encryption goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// `major:minor` of the filesystem's device (`0:N` for tmpfs, overlay, ...).
    pub device: String,
    /// The dm-crypt mapping under it, e.g. `CRYPT-LUKS2-<uuid>-<name>`,
    /// found on the device itself or on any device below it (LVM on LUKS).
    pub crypt: Option<String>,
}

impl Volume {
    pub fn is_luks2(&self) -> bool {
        self.crypt.as_deref().is_some_and(|u| u.starts_with("CRYPT-LUKS2"))
    }
    pub fn describe(&self) -> String {
        match &self.crypt {
            Some(u) => format!("device {} on dm-crypt {u}", self.device),
            None => format!("device {} (not dm-crypt)", self.device),
        }
    }
}

/// The device of the filesystem holding `p` and any dm-crypt mapping under
/// it (from /sys/dev/block: `dm/uuid`, then `slaves/*` downwards).
pub fn volume(p: &Path) -> std::io::Result<Volume> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(p)?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let device = format!("{maj}:{min}");
    let sys = Path::new("/sys/dev/block").join(&device);
    let mut stack = vec![sys];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        if let Ok(uuid) = std::fs::read_to_string(d.join("dm/uuid")) {
            let uuid = uuid.trim();
            if uuid.starts_with("CRYPT-") {
                return Ok(Volume {
                    device,
                    crypt: Some(uuid.to_string()),
                });
            }
        }
        if let Ok(rd) = std::fs::read_dir(d.join("slaves")) {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    Ok(Volume { device, crypt: None })
}

/// The kernel's view of the clock (adjtimex, read only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSync {
    /// NTP (or PTP) has disciplined the clock and it is not flagged unsynchronised.
    pub synchronised: bool,
    /// The kernel's maximum error estimate, in microseconds (-1: unknown,
    /// when adjtimex is filtered out and timesyncd's flag file was used).
    pub max_error_us: i64,
}

pub fn time_sync() -> TimeSync {
    // SAFETY: with modes = 0 adjtimex only reads the clock state into the
    // zeroed struct we own.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::adjtimex(&mut t) };
    if r < 0 {
        // Under systemd's ProtectClock= the seccomp filter refuses adjtimex
        // even as a read: fall back to systemd-timesyncd's flag file.
        return TimeSync {
            synchronised: Path::new("/run/systemd/timesync/synchronized").exists(),
            max_error_us: -1,
        };
    }
    TimeSync {
        synchronised: r >= 0 && r != libc::TIME_ERROR && (t.status & libc::STA_UNSYNC) == 0,
        max_error_us: t.maxerror,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn space_and_clock_are_readable() {
        let (avail, total) = super::fs_space(std::path::Path::new("/")).unwrap();
        assert!(total > 0 && avail <= total);
        assert!(super::fs_space(std::path::Path::new("/no/such/dir")).is_none());
        let _ = super::time_sync();
        let v = super::volume(std::path::Path::new("/")).unwrap();
        assert!(v.device.contains(':'));
    }
}
