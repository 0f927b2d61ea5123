//! Anchors the audit log with the device key: signs checkpoints of its head
//! ([`crate::db::audit_checkpoint`]) and gives the current signed head for
//! bundle manifests and the API.

use vigil_format::bundle::audit_head::AuditHead;

use crate::db::audit_checkpoint::{self, Checkpoint, CheckpointError};
use crate::evidence::device::DeviceKey;

/// Signs a checkpoint of the log's head unless the newest one covers it.
/// Returns the checkpoint and whether it is new; `None` for an empty log.
pub fn checkpoint(
    conn: &rusqlite::Connection,
    device: &DeviceKey,
) -> Result<Option<(Checkpoint, bool)>, CheckpointError> {
    let id = device.identity();
    audit_checkpoint::record(
        conn,
        &id.device_id,
        &id.public_key,
        crate::base::clock::now_ns(),
        &|m| device.sign(m),
    )
}

/// The current signed head, taken fresh: a new checkpoint if the log grew.
/// When the log no longer extends the newest checkpoint (it was cut or
/// rewritten) nothing new is signed and the newest checkpoint is the head
/// (its signature still says what the log was), with an error logged.
pub fn signed_head(conn: &rusqlite::Connection, device: &DeviceKey) -> rusqlite::Result<Option<AuditHead>> {
    let cp = match checkpoint(conn, device) {
        Ok(cp) => cp.map(|(c, _)| c),
        Err(CheckpointError::Sql(e)) => return Err(e),
        Err(e @ CheckpointError::Diverged { .. }) => {
            tracing::error!("audit log: {e}");
            audit_checkpoint::latest(conn)?
        }
    };
    Ok(cp.and_then(|c| c.to_head()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::audit::{append, Outcome};
    use crate::db::audit_verify;

    fn keyring(d: &std::path::Path) -> crate::keys::keyring::Keyring {
        let db = d.join("vigil.db");
        let sealer = crate::keys::keyring::tests_support::file_sealer(d);
        crate::keys::keyring::init(&db, &sealer, "t").unwrap();
        crate::keys::keyring::Keyring::open(&db, sealer, "t").unwrap()
    }

    fn head(c: &rusqlite::Connection) -> (i64, i64) {
        let id = audit_checkpoint::log_head(c).unwrap().map_or(0, |h| h.0);
        (id, audit_checkpoint::latest(c).unwrap().map_or(0, |cp| cp.seq))
    }

    /// The attacks of issue 14 on a database with signed checkpoints: a cut
    /// tail, a rewrite with every hash recomputed, a deleted checkpoint and a
    /// checkpoint signed by a stranger are each named.
    #[test]
    fn truncation_rewrite_and_forged_checkpoints_are_named() {
        let d = tempfile::tempdir().unwrap();
        let kr = keyring(d.path());
        let device = DeviceKey::load_or_create(&kr, "test").unwrap();
        let idx = crate::db::Index::open(kr.db_path()).unwrap();
        let c = idx.conn();
        let (base, s0) = head(c);
        for n in 0..5 {
            append(c, "cli:t", "test", &n.to_string(), Outcome::Ok, "").unwrap();
            checkpoint(c, &device).unwrap();
        }
        let verify = || audit_verify::verify_with_device(c, None).unwrap();
        let rep = verify();
        assert!(rep.intact(), "{:?}", rep.problems);
        let last = rep.anchor.clone().unwrap();
        assert_eq!(rep.unanchored, 0);
        append(c, "cli:t", "test", "late", Outcome::Ok, "").unwrap();
        assert!(verify().anchor_line().contains("1 entries not yet anchored"));

        // Cut the last entry the checkpoint covers (and the unanchored one).
        let dir2 = tempfile::tempdir().unwrap();
        let copy = dir2.path().join("copy.db");
        c.execute("VACUUM INTO ?1", [copy.to_str().unwrap()]).unwrap();
        c.execute("DELETE FROM audit_log WHERE id >= ?1", [last.entry_id])
            .unwrap();
        let rep = verify();
        let all = rep.problems.join("\n");
        assert!(all.contains("truncated: 1 entry is missing after entry"), "{all}");
        assert!(all.contains(&format!("checkpoint {}", last.seq)), "{all}");

        // Rewrite one entry and recompute every hash with plain SHA-256.
        let c2 = rusqlite::Connection::open(&copy).unwrap();
        c2.execute("UPDATE audit_log SET outcome = 'denied' WHERE id = ?1", [base + 3])
            .unwrap();
        let mut prev = vec![0u8; 32];
        let entries = crate::db::audit::tail(&c2, 100).unwrap();
        for e in entries {
            let h = crate::db::audit::entry_hash(&prev, &e);
            c2.execute(
                "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
                rusqlite::params![prev, &h[..], e.id],
            )
            .unwrap();
            prev = h.to_vec();
        }
        let rep = audit_verify::verify_with_device(&c2, None).unwrap();
        let all = rep.problems.join("\n");
        assert!(all.contains(&format!("rewritten: checkpoint {}", s0 + 3)), "{all}");
        assert!(all.contains(&format!("covers entries {0} to {0}", base + 3)), "{all}");

        // A stranger's signature and a deleted checkpoint.
        c2.execute("DELETE FROM audit_checkpoint WHERE seq = ?1", [s0 + 1])
            .unwrap();
        c2.execute(
            "UPDATE audit_checkpoint SET public_key = zeroblob(32) WHERE seq = ?1",
            [s0 + 4],
        )
        .unwrap();
        c2.execute(
            "UPDATE audit_checkpoint SET signature = zeroblob(64) WHERE seq = ?1",
            [s0 + 5],
        )
        .unwrap();
        let rep = audit_verify::verify_with_device(&c2, None).unwrap();
        let all = rep.problems.join("\n");
        assert!(
            all.contains(&format!("checkpoints {0} to {0} are missing", s0 + 1)),
            "{all}"
        );
        assert!(
            all.contains(&format!("checkpoint {} is signed by another key", s0 + 4)),
            "{all}"
        );
        assert!(
            all.contains(&format!("checkpoint {} has a bad signature", s0 + 5)),
            "{all}"
        );

        // No checkpoint at all while the device key exists.
        c2.execute("DELETE FROM audit_checkpoint", []).unwrap();
        let rep = audit_verify::verify_with_device(&c2, None).unwrap();
        assert!(rep
            .problems
            .join("\n")
            .contains("no signed checkpoint: the chain is unanchored"));
    }

    /// The daemon's log names every entry and checkpoint: an attacker who
    /// also deletes the checkpoint rows is caught by it.
    #[test]
    fn the_log_copy_catches_a_cut_tail_with_its_checkpoints() {
        let d = tempfile::tempdir().unwrap();
        let kr = keyring(d.path());
        let device = DeviceKey::load_or_create(&kr, "test").unwrap();
        let idx = crate::db::Index::open(kr.db_path()).unwrap();
        let c = idx.conn();
        // Lines of an earlier installation (before this one's) are left out.
        let mut log = String::from(
            "audit-entry id=1 hash=00 x\naudit-checkpoint seq=1 entry=1 head=00 ts_ns=1 device=vigil-other\n",
        );
        for n in 1..=3 {
            append(c, "cli:t", "test", &n.to_string(), Outcome::Ok, "").unwrap();
        }
        let (cp, _) = checkpoint(c, &device).unwrap().unwrap();
        for e in crate::db::audit::tail(c, 100).unwrap() {
            let h: Vec<u8> = c
                .query_row("SELECT hash FROM audit_log WHERE id = ?1", [e.id], |r| r.get(0))
                .unwrap();
            log.push_str(&format!(
                "2026-01-01T00:00:00Z  INFO audit: audit-entry id={} hash={} actor=\"x\"\n",
                e.id,
                vigil_format::hex(&h)
            ));
        }
        log.push_str(&format!(
            "INFO audit: audit-checkpoint seq={} entry={} head={} ts_ns=1 device={}\n",
            cp.seq,
            cp.entry_id,
            vigil_format::hex(&cp.head_hash),
            device.identity().device_id
        ));
        let copy = audit_verify::parse_log(&log, Some(&device.identity().device_id));
        let rep = audit_verify::verify_with_device(c, Some(&copy)).unwrap();
        assert!(rep.intact(), "{:?}", rep.problems);
        c.execute("DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)", [])
            .unwrap();
        c.execute("DELETE FROM audit_checkpoint", []).unwrap();
        let rep = audit_verify::verify_with_device(c, Some(&copy)).unwrap();
        let all = rep.problems.join("\n");
        assert!(all.contains("truncated: 1 entry is missing after entry"), "{all}");
        assert!(all.contains("is logged but not in the database"), "{all}");

        // The attacker also removes the device row: the log still knows the
        // device, the daemon will not mint a new identity over its log.
        c.execute("DELETE FROM device", []).unwrap();
        let copy = audit_verify::parse_log(&log, None);
        let rep = audit_verify::verify_with_device(c, Some(&copy)).unwrap();
        let all = rep.problems.join("\n");
        assert!(all.contains("device replaced"), "{all}");
        assert!(all.contains("truncated"), "{all}");
        assert!(matches!(
            DeviceKey::load_or_create(&kr, "test"),
            Err(crate::evidence::device::DeviceError::IdentityRemoved)
        ));
    }

    /// The log lines the daemon would have written for every entry and
    /// checkpoint of this database so far.
    fn log_of(c: &rusqlite::Connection, device: &DeviceKey) -> String {
        let mut log = String::new();
        for e in crate::db::audit::tail(c, 1000).unwrap() {
            let h: Vec<u8> = c
                .query_row("SELECT hash FROM audit_log WHERE id = ?1", [e.id], |r| r.get(0))
                .unwrap();
            log.push_str(&format!("audit-entry id={} hash={}\n", e.id, vigil_format::hex(&h)));
        }
        for cp in audit_checkpoint::all(c).unwrap() {
            log.push_str(&format!(
                "audit-checkpoint seq={} entry={} head={} ts_ns={} device={}\n",
                cp.seq,
                cp.entry_id,
                vigil_format::hex(&cp.head_hash),
                cp.ts_ns,
                device.identity().device_id
            ));
        }
        log
    }

    /// The attack the review found: rewrite the log, remove the device row,
    /// the checkpoints, the key's creation entry and the key itself; the
    /// daemon then makes a new identity and signs the forged log. The log
    /// still links the old device to this database.
    #[test]
    fn a_new_identity_over_a_rewritten_log_is_named_by_the_log() {
        let d = tempfile::tempdir().unwrap();
        let kr = keyring(d.path());
        let old = DeviceKey::load_or_create(&kr, "test").unwrap();
        let idx = crate::db::Index::open(kr.db_path()).unwrap();
        let c = idx.conn();
        for n in 1..=4 {
            append(c, "cli:t", "login", &n.to_string(), Outcome::Denied, "").unwrap();
        }
        checkpoint(c, &old).unwrap();
        let old_log = log_of(c, &old);
        // The attacker (the database only): the last entry goes, the rest
        // is rehashed as the daemon would, and every trace of the identity.
        c.execute("DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)", [])
            .unwrap();
        c.execute("DELETE FROM audit_log WHERE action = 'device.signing-key.create'", [])
            .unwrap();
        crate::db::audit::tests_support::rehash(c);
        c.execute_batch("DELETE FROM audit_checkpoint; DELETE FROM device; DELETE FROM secret;")
            .unwrap();
        let new = DeviceKey::load_or_create(&kr, "test").unwrap();
        assert_ne!(new.identity().device_id, old.identity().device_id);
        checkpoint(c, &new).unwrap();
        let log = format!("{old_log}{}", log_of(c, &new));
        let copy = audit_verify::parse_log(&log, Some(&new.identity().device_id));
        let rep = audit_verify::verify_with_device(c, Some(&copy)).unwrap();
        let all = rep.problems.join("\n");
        assert!(
            all.contains("device replaced: this database's log continues that of device"),
            "{all}"
        );

        // A genuine new installation beside the old journal: only a note.
        let d2 = tempfile::tempdir().unwrap();
        let kr2 = keyring(d2.path());
        let fresh = DeviceKey::load_or_create(&kr2, "test").unwrap();
        let idx2 = crate::db::Index::open(kr2.db_path()).unwrap();
        let c2 = idx2.conn();
        checkpoint(c2, &fresh).unwrap();
        // (Its checkpoints are all dated before this database's first entry.)
        let log2 = format!("{old_log}{}", log_of(c2, &fresh));
        let copy2 = audit_verify::parse_log(&log2, Some(&fresh.identity().device_id));
        let rep2 = audit_verify::verify_with_device(c2, Some(&copy2)).unwrap();
        assert!(rep2.intact(), "{:?}", rep2.problems);
        assert!(
            rep2.notes.iter().any(|n| n.contains("an earlier installation")),
            "{:?}",
            rep2.notes
        );
    }
}
