//! Signed checkpoints of the audit log (table `audit_checkpoint`): the id
//! and chain hash of the last entry at a moment, signed with the device
//! key (the message is [`vigil_format::bundle::audit_head`]'s). A later
//! truncation or rewrite-and-rehash of the log no longer matches a
//! signature nobody without the device key can make. The signing itself is
//! the caller's (the evidence layer holds the key); this module reads the
//! head, refuses to sign a log that no longer extends the last checkpoint,
//! and stores what was signed.

use rusqlite::{params, Connection, OptionalExtension};
use vigil_format::bundle::audit_head::{checkpoint_message, AuditHead};

use crate::db::audit::{entry_from_row, entry_hash};

/// One stored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub entry_id: i64,
    pub head_hash: Vec<u8>,
    pub ts_ns: i64,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The form manifests and the API show; `None` if a stored column has
    /// the wrong length (a damaged row).
    pub fn to_head(&self) -> Option<AuditHead> {
        Some(AuditHead::new(
            self.seq,
            self.entry_id,
            &self.head_hash.as_slice().try_into().ok()?,
            crate::base::time::format_ns(self.ts_ns),
            self.ts_ns,
            &self.signature.as_slice().try_into().ok()?,
            &self.public_key.as_slice().try_into().ok()?,
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The log was cut or rewritten since the last checkpoint: signing its
    /// head now would bless the change.
    #[error("the audit log no longer extends checkpoint {seq} (entry {entry_id}): {what}; not signing")]
    Diverged { seq: i64, entry_id: i64, what: String },
}

const COLUMNS: &str = "seq, entry_id, head_hash, ts_ns, public_key, signature";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.get(0)?,
        entry_id: r.get(1)?,
        head_hash: r.get(2)?,
        ts_ns: r.get(3)?,
        public_key: r.get(4)?,
        signature: r.get(5)?,
    })
}

/// The id and hash of the newest entry (one indexed row: cheap to poll).
pub fn log_head(conn: &Connection) -> rusqlite::Result<Option<(i64, Vec<u8>)>> {
    conn.query_row("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

/// The newest checkpoint.
pub fn latest(conn: &Connection) -> rusqlite::Result<Option<Checkpoint>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM audit_checkpoint ORDER BY seq DESC LIMIT 1"),
        [],
        from_row,
    )
    .optional()
}

/// Every checkpoint, oldest first.
pub fn all(conn: &Connection) -> rusqlite::Result<Vec<Checkpoint>> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM audit_checkpoint ORDER BY seq"))?;
    let rows = st.query_map([], from_row)?;
    rows.collect()
}

/// Signs and stores a checkpoint of the log's head, in one IMMEDIATE
/// transaction, unless the newest checkpoint already covers the head (then
/// returns it, and `false`). Refuses ([`CheckpointError::Diverged`]) when
/// the entries since the newest checkpoint do not chain onto its signed
/// hash: a truncated or rewritten log is never signed. `None` when the log
/// is empty. `sign` signs the message with the key whose public half is
/// `public_key`.
pub fn record(
    conn: &Connection,
    device_id: &str,
    public_key: &[u8; 32],
    now_ns: i64,
    sign: &dyn Fn(&[u8]) -> [u8; 64],
) -> Result<Option<(Checkpoint, bool)>, CheckpointError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let Some((head_id, head_hash)) = log_head(&tx)? else {
        return Ok(None);
    };
    let last = latest(&tx)?;
    if let Some(cp) = &last {
        if cp.entry_id == head_id && cp.head_hash == head_hash {
            return Ok(Some((cp.clone(), false)));
        }
        extends(&tx, cp)?;
    }
    let head: [u8; 32] = head_hash.as_slice().try_into().map_err(|_| CheckpointError::Diverged {
        seq: last.as_ref().map_or(0, |c| c.seq),
        entry_id: head_id,
        what: "the newest entry's hash is not 32 bytes".into(),
    })?;
    let seq = last.as_ref().map_or(1, |c| c.seq + 1);
    let signature = sign(&checkpoint_message(device_id, seq, head_id, &head, now_ns));
    tx.execute(
        &format!("INSERT INTO audit_checkpoint ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![seq, head_id, &head[..], now_ns, &public_key[..], &signature[..]],
    )?;
    tx.commit()?;
    // The journal's copy, read back by `vigil audit verify --log`.
    tracing::info!(
        target: "audit",
        "{CHECKPOINT_LOG_PREFIX}{seq} entry={head_id} head={} ts_ns={now_ns} device={device_id}",
        vigil_format::hex(&head)
    );
    let cp = Checkpoint {
        seq,
        entry_id: head_id,
        head_hash: head.to_vec(),
        ts_ns: now_ns,
        public_key: public_key.to_vec(),
        signature: signature.to_vec(),
    };
    Ok(Some((cp, true)))
}

/// How a checkpoint's journal line starts: `audit-checkpoint seq=`.
pub const CHECKPOINT_LOG_PREFIX: &str = "audit-checkpoint seq=";

/// Checks that the entries after `cp` chain onto its signed hash (only
/// those: cheap once a second).
fn extends(conn: &Connection, cp: &Checkpoint) -> Result<(), CheckpointError> {
    let diverged = |what: String| CheckpointError::Diverged {
        seq: cp.seq,
        entry_id: cp.entry_id,
        what,
    };
    let at: Option<Vec<u8>> = conn
        .query_row("SELECT hash FROM audit_log WHERE id = ?1", [cp.entry_id], |r| r.get(0))
        .optional()?;
    match at {
        None => return Err(diverged(format!("entry {} is gone (truncated)", cp.entry_id))),
        Some(h) if h != cp.head_hash => {
            return Err(diverged(format!("entry {} has another hash (rewritten)", cp.entry_id)))
        }
        Some(_) => {}
    }
    let mut st = conn.prepare(
        "SELECT id, ts_ns, actor, action, target, outcome, detail, prev_hash, hash FROM audit_log \
         WHERE id > ?1 ORDER BY id",
    )?;
    let mut rows = st.query([cp.entry_id])?;
    let mut prev = cp.head_hash.clone();
    let mut expect = cp.entry_id + 1;
    while let Some(r) = rows.next()? {
        let e = entry_from_row(r)?;
        let prev_hash: Vec<u8> = r.get(7)?;
        let hash: Vec<u8> = r.get(8)?;
        if e.id != expect || prev_hash != prev || hash != entry_hash(&prev, &e) {
            return Err(diverged(format!("entry {} does not chain on", e.id)));
        }
        prev = hash;
        expect += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::audit::{append, Outcome};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    pub(crate) fn key() -> (Ed25519KeyPair, [u8; 32]) {
        let rng = ring::rand::SystemRandom::new();
        let p = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let pk = p.public_key().as_ref().try_into().unwrap();
        (p, pk)
    }

    #[test]
    fn records_once_per_head_and_never_signs_a_cut_or_rewritten_log() {
        let d = tempfile::tempdir().unwrap();
        let i = crate::db::Index::open(&d.path().join("v.db")).unwrap();
        let c = i.conn();
        let (p, pk) = key();
        let sign = |m: &[u8]| -> [u8; 64] { p.sign(m).as_ref().try_into().unwrap() };
        assert!(record(c, "dev", &pk, 1, &sign).unwrap().is_none(), "empty log");
        for n in 0..3 {
            append(c, "cli:t", "test", &n.to_string(), Outcome::Ok, "").unwrap();
        }
        let (cp, new) = record(c, "dev", &pk, 2, &sign).unwrap().unwrap();
        assert!(new);
        assert_eq!((cp.seq, cp.entry_id), (1, 3));
        let head = cp.to_head().unwrap();
        assert_eq!(head.verify("dev", &pk), Ok(()));
        let (again, new) = record(c, "dev", &pk, 3, &sign).unwrap().unwrap();
        assert!(!new);
        assert_eq!(again, cp);
        append(c, "cli:t", "test", "x", Outcome::Ok, "").unwrap();
        assert_eq!(record(c, "dev", &pk, 4, &sign).unwrap().unwrap().0.seq, 2);
        // Cut the tail: the daemon must not sign the shorter log.
        c.execute("DELETE FROM audit_log WHERE id = 4", []).unwrap();
        assert!(matches!(
            record(c, "dev", &pk, 5, &sign),
            Err(CheckpointError::Diverged { .. })
        ));
        // A new entry with the same id as the cut one: still refused.
        append(c, "cli:t", "test", "y", Outcome::Ok, "").unwrap();
        assert!(matches!(
            record(c, "dev", &pk, 6, &sign),
            Err(CheckpointError::Diverged { .. })
        ));
        assert_eq!(all(c).unwrap().len(), 2);
    }
}
