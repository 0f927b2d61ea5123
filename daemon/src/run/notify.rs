//! The systemd notification protocol (`sd_notify`), without libsystemd:
//! datagrams to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). READY=1 when the daemon can record and serve, STATUS= lines,
//! WATCHDOG=1 pings from the health supervisor, STOPPING=1 at SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go; does nothing outside systemd.
pub struct Notifier {
    target: Option<Target>,
    /// `WATCHDOG_USEC`, when systemd asked for pings (and for this process).
    watchdog: Option<Duration>,
}

enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let b = std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str()).to_vec();
            match b.first() {
                Some(b'@') => Some(Target::Abstract(b[1..].to_vec())),
                Some(b'/') => Some(Target::Path(std::path::PathBuf::from(s))),
                _ => None,
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (e.g. "READY=1\nSTATUS=..."); errors are logged once per call.
    pub fn send(&self, msg: &str) {
        let Some(t) = &self.target else { return };
        let r = UnixDatagram::unbound().and_then(|s| match t {
            Target::Path(p) => s.send_to(msg.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
            }
        });
        if let Err(e) = r {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        let n = Notifier {
            target: Some(Target::Path(p)),
            watchdog: None,
        };
        n.send("READY=1\nSTATUS=ok");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
    }
}
