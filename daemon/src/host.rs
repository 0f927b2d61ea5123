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

/// The kernel's view of the clock (adjtimex, read only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSync {
    /// NTP (or PTP) has disciplined the clock and it is not flagged unsynchronised.
    pub synchronised: bool,
    /// The kernel's maximum error estimate, in microseconds.
    pub max_error_us: i64,
}

pub fn time_sync() -> TimeSync {
    // SAFETY: with modes = 0 adjtimex only reads the clock state into the
    // zeroed struct we own.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::adjtimex(&mut t) };
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
    }
}
