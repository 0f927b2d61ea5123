//! The daemon's audit anchor: a thread that signs a checkpoint of the audit
//! log's head at start, within about a second after the log grows (it polls
//! the newest entry's id and hash, one indexed row) and at shutdown. Each
//! checkpoint also goes to the journal (`audit-checkpoint seq=...`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::evidence::audit_anchor::checkpoint;
use crate::evidence::device::DeviceKey;
use crate::keys::keyring::Keyring;

/// How often the head is polled.
const POLL: Duration = Duration::from_millis(400);

/// Starts the thread; it returns after the checkpoint at shutdown (`stop`).
pub fn spawn(
    db: &std::path::Path,
    keyring: &Arc<Keyring>,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (db, keyring, stop): (PathBuf, _, _) = (db.to_path_buf(), keyring.clone(), stop.clone());
    std::thread::Builder::new()
        .name("audit-anchor".into())
        .spawn(move || run(&db, &keyring, &stop))
}

fn run(db: &std::path::Path, keyring: &Keyring, stop: &AtomicBool) {
    let device = match DeviceKey::load_or_create(keyring, "sign audit checkpoints") {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("audit checkpoints are off: the device signing key is unavailable: {e}");
            return;
        }
    };
    let index = match crate::db::Index::open(db) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("audit checkpoints are off: cannot open the index: {e}");
            return;
        }
    };
    let mut anchor = Anchor::default();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        anchor.step(index.conn(), &device);
        if stopping {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// What the thread last signed or last complained about.
#[derive(Default)]
struct Anchor {
    signed: Option<(i64, Vec<u8>)>,
    complaint: Option<String>,
}

impl Anchor {
    /// Signs a checkpoint if the head moved since the last one.
    fn step(&mut self, conn: &rusqlite::Connection, device: &DeviceKey) {
        let head = match crate::db::audit_checkpoint::log_head(conn) {
            Ok(h) => h,
            Err(e) => return self.complain(format!("cannot read the audit log's head: {e}")),
        };
        if head.is_none() || head == self.signed {
            return;
        }
        match checkpoint(conn, device) {
            Ok(cp) => {
                self.signed = cp.map(|(c, _)| (c.entry_id, c.head_hash));
                self.complaint = None;
            }
            Err(e) => {
                let what = format!("audit log: {e}");
                if matches!(e, crate::db::audit_checkpoint::CheckpointError::Diverged { .. })
                    && self.complaint.as_deref() != Some(what.as_str())
                {
                    let message = format!("The audit log was cut or rewritten: {e}");
                    let r = crate::db::alerts::raise_now(
                        conn,
                        &crate::db::alerts::Raise::new(crate::db::alerts::Kind::AuditTampered, "", &message),
                        crate::base::clock::now_ns(),
                    );
                    if let Err(e) = r {
                        tracing::warn!("cannot store the audit alert: {e}");
                    }
                }
                self.complain(what)
            }
        }
    }

    /// Logs an error once, not every poll.
    fn complain(&mut self, what: String) {
        if self.complaint.as_deref() != Some(what.as_str()) {
            tracing::error!("{what}");
            self.complaint = Some(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::audit::{append, Outcome};

    #[test]
    fn signs_when_the_log_grows_and_stops_after_a_last_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("vigil.db");
        let sealer = crate::keys::keyring::tests_support::file_sealer(d.path());
        crate::keys::keyring::init(&db, &sealer, "t").unwrap();
        let kr = Arc::new(Keyring::open(&db, sealer, "t").unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let t = spawn(&db, &kr, &stop).unwrap();
        let idx = crate::db::Index::open(&db).unwrap();
        let covered = || {
            let head = crate::db::audit_checkpoint::log_head(idx.conn()).unwrap().unwrap().0;
            crate::db::audit_checkpoint::latest(idx.conn())
                .unwrap()
                .is_some_and(|c| c.entry_id == head)
        };
        let within_2s =
            |f: &dyn Fn() -> bool| (0..40).any(|_| f() || (std::thread::sleep(Duration::from_millis(50)), false).1);
        assert!(within_2s(&covered), "checkpoint at start");
        append(idx.conn(), "cli:t", "test", "x", Outcome::Ok, "").unwrap();
        assert!(within_2s(&covered), "checkpoint after growth");
        append(idx.conn(), "cli:t", "test", "y", Outcome::Ok, "").unwrap();
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert!(covered(), "checkpoint at shutdown");
        let rep = crate::db::audit_verify::verify_with_device(idx.conn(), None).unwrap();
        assert!(rep.intact() && rep.unanchored == 0, "{:?}", rep.problems);
    }
}
