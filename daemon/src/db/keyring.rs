//! The keyring's rows: the keyring row itself (which key-encryption key
//! wraps the data keys, how it is sealed, the recovery escrow), the wrapped
//! data keys (`data_key`) and the re-encryption jobs (`key_job`). The bytes
//! are opaque here: wrapping and unwrapping belong to `keys::keyring`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::db::audit::AuditedTx;
use crate::db::{Index, IndexError};

/// The keyring row as stored.
#[derive(Clone, Debug)]
pub struct KeyringRecord {
    pub kek_id: Vec<u8>,
    pub kek_generation: i64,
    pub kek_created_ns: i64,
    pub sealing: String,
    pub pcrs: String,
    pub recovery_pub: Vec<u8>,
    pub escrow: Vec<u8>,
    pub created_ns: i64,
    pub rotated_ns: Option<i64>,
}

/// A data_key row as stored: the data key wrapped under a KEK.
#[derive(Clone, Debug)]
pub struct WrappedKeyRow {
    pub id: Vec<u8>,
    pub purpose: String,
    pub scope: String,
    pub kek_id: Vec<u8>,
    pub nonce: Vec<u8>,
    pub wrapped: Vec<u8>,
}

fn wrapped_key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WrappedKeyRow> {
    Ok(WrappedKeyRow {
        id: r.get(0)?,
        purpose: r.get(1)?,
        scope: r.get(2)?,
        kek_id: r.get(3)?,
        nonce: r.get(4)?,
        wrapped: r.get(5)?,
    })
}

const WRAPPED_KEY_COLUMNS: &str = "id, purpose, scope, kek_id, nonce, wrapped";

/// The new keyring row `keys init` writes.
pub struct NewKeyring<'a> {
    pub kek_id: &'a [u8],
    pub now_ns: i64,
    pub sealing: &'a str,
    pub pcrs: &'a str,
    pub recovery_pub: &'a [u8],
    pub escrow: &'a [u8],
}

/// A new active data key.
pub struct NewDataKey<'a> {
    pub id: &'a [u8],
    pub purpose: &'a str,
    pub scope: &'a str,
    pub camera_id: Option<i64>,
    pub day: Option<&'a str>,
    pub created_ns: i64,
    pub kek_id: &'a [u8],
    pub nonce: &'a [u8],
    pub wrapped: &'a [u8],
}

/// The keyring row after a rotation to a new KEK.
pub struct RotatedKek<'a> {
    pub kek_id: &'a [u8],
    pub now_ns: i64,
    pub escrow: &'a [u8],
    pub sealing: &'a str,
    pub pcrs: &'a str,
}

/// The keyring row, if `keys init` ran.
pub fn keyring(conn: &Connection) -> rusqlite::Result<Option<KeyringRecord>> {
    conn.query_row(
        "SELECT kek_id, kek_generation, kek_created_ns, sealing, pcrs, recovery_pub, escrow, created_ns, rotated_ns \
         FROM keyring WHERE id = 1",
        [],
        |r| {
            Ok(KeyringRecord {
                kek_id: r.get(0)?,
                kek_generation: r.get(1)?,
                kek_created_ns: r.get(2)?,
                sealing: r.get(3)?,
                pcrs: r.get(4)?,
                recovery_pub: r.get(5)?,
                escrow: r.get(6)?,
                created_ns: r.get(7)?,
                rotated_ns: r.get(8)?,
            })
        },
    )
    .optional()
}

/// Overwrites freed pages with zeros on this connection (deleted keys leave
/// no trace in the file).
pub fn enable_secure_delete(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA secure_delete = ON;")
}

/// The active key of `scope`, if there is one.
pub fn active_key(conn: &Connection, scope: &str) -> rusqlite::Result<Option<WrappedKeyRow>> {
    conn.query_row(
        &format!("SELECT {WRAPPED_KEY_COLUMNS} FROM data_key WHERE scope = ?1 AND state = 'active'"),
        [scope],
        wrapped_key_from_row,
    )
    .optional()
}

/// The data key `id`, if the keyring has it.
pub fn data_key(conn: &Connection, id: &[u8]) -> rusqlite::Result<Option<WrappedKeyRow>> {
    conn.query_row(
        &format!("SELECT {WRAPPED_KEY_COLUMNS} FROM data_key WHERE id = ?1"),
        [id],
        wrapped_key_from_row,
    )
    .optional()
}

/// The purpose of data key `id` ("recording", "secrets"), if it exists.
pub fn data_key_purpose(conn: &Connection, id: &[u8]) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT purpose FROM data_key WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}

/// One `PRAGMA wal_checkpoint(TRUNCATE)`: whether it emptied the WAL (no
/// reader held old pages).
pub fn checkpoint_truncate_once(conn: &Connection) -> rusqlite::Result<bool> {
    let (busy, _log, _done): (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(busy == 0)
}

/// Records how the (same) KEK is sealed now, after `keys recover`.
pub fn set_sealing(conn: &Connection, sealing: &str, pcrs: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE keyring SET sealing = ?1, pcrs = ?2 WHERE id = 1",
        params![sealing, pcrs],
    )?;
    Ok(())
}

/// What `keys status` counts.
#[derive(Clone, Debug)]
pub struct KeyCounts {
    pub recording_keys: i64,
    pub secrets_keys: i64,
    pub retired_keys: i64,
    pub oldest_ns: Option<i64>,
    pub newest_ns: Option<i64>,
}

pub fn key_counts(conn: &Connection) -> rusqlite::Result<KeyCounts> {
    let count = |sql: &str| -> rusqlite::Result<i64> { conn.query_row(sql, [], |r| r.get(0)) };
    let recording_keys = count("SELECT count(*) FROM data_key WHERE purpose = 'recording'")?;
    let secrets_keys = count("SELECT count(*) FROM data_key WHERE purpose = 'secrets'")?;
    let retired_keys = count("SELECT count(*) FROM data_key WHERE state = 'retired'")?;
    let (oldest_ns, newest_ns) = conn.query_row("SELECT min(created_ns), max(created_ns) FROM data_key", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(KeyCounts {
        recording_keys,
        secrets_keys,
        retired_keys,
        oldest_ns,
        newest_ns,
    })
}

/// The pending re-encryption jobs (key id, reason), oldest first.
pub fn key_jobs(conn: &Connection) -> rusqlite::Result<Vec<(Vec<u8>, String)>> {
    let mut st = conn.prepare("SELECT key_id, reason FROM key_job ORDER BY started_ns")?;
    let jobs = st
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(jobs)
}

/// The keyring's IMMEDIATE transaction: what the key operations change
/// together, with their audit entries ([`AuditedTx`]).
pub type Tx<'a> = AuditedTx<'a>;

impl<'a> Tx<'a> {
    /// The KEK id the keyring row names.
    pub fn kek_id(&self) -> rusqlite::Result<Vec<u8>> {
        self.0
            .query_row("SELECT kek_id FROM keyring WHERE id = 1", [], |r| r.get(0))
    }

    pub fn insert_keyring(&self, k: &NewKeyring<'_>) -> rusqlite::Result<()> {
        self.0.execute(
            "INSERT INTO keyring (id, kek_id, kek_generation, kek_created_ns, sealing, pcrs, recovery_pub, escrow, created_ns) \
             VALUES (1, ?1, 1, ?2, ?3, ?4, ?5, ?6, ?2)",
            params![k.kek_id, k.now_ns, k.sealing, k.pcrs, k.recovery_pub, k.escrow],
        )?;
        Ok(())
    }

    /// Whether `scope` has an active key.
    pub fn has_active_key(&self, scope: &str) -> rusqlite::Result<bool> {
        let exists: Option<i64> = self
            .0
            .query_row(
                "SELECT 1 FROM data_key WHERE scope = ?1 AND state = 'active'",
                [scope],
                |r| r.get(0),
            )
            .optional()?;
        Ok(exists.is_some())
    }

    pub fn insert_data_key(&self, k: &NewDataKey<'_>) -> rusqlite::Result<()> {
        self.0.execute(
            "INSERT INTO data_key (id, purpose, scope, camera_id, day, state, created_ns, kek_id, nonce, wrapped) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?8, ?9)",
            params![
                k.id,
                k.purpose,
                k.scope,
                k.camera_id,
                k.day,
                k.created_ns,
                k.kek_id,
                k.nonce,
                k.wrapped
            ],
        )?;
        Ok(())
    }

    /// Recording keys of a day before `day_before`, created before
    /// `created_before`, that no recording and no re-encryption job uses.
    pub fn unused_recording_keys(&self, day_before: &str, created_before: i64) -> rusqlite::Result<Vec<Vec<u8>>> {
        let mut st = self.0.prepare(
            "SELECT d.id FROM data_key d WHERE d.purpose = 'recording' AND d.day IS NOT NULL AND d.day < ?1 \
             AND d.created_ns < ?2 \
             AND NOT EXISTS (SELECT 1 FROM recording r WHERE r.key_id = d.id) \
             AND NOT EXISTS (SELECT 1 FROM key_job j WHERE j.key_id = d.id)",
        )?;
        let it = st.query_map(params![day_before, created_before], |r| r.get(0))?;
        it.collect()
    }

    pub fn delete_data_key(&self, id: &[u8]) -> rusqlite::Result<()> {
        self.0.execute("DELETE FROM data_key WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every data key, as wrapped.
    pub fn data_keys(&self) -> rusqlite::Result<Vec<WrappedKeyRow>> {
        let mut st = self.0.prepare(&format!("SELECT {WRAPPED_KEY_COLUMNS} FROM data_key"))?;
        let it = st.query_map([], wrapped_key_from_row)?;
        it.collect()
    }

    /// Stores data key `id` wrapped anew (under KEK `kek_id`).
    pub fn rewrap_data_key(&self, id: &[u8], kek_id: &[u8], nonce: &[u8], wrapped: &[u8]) -> rusqlite::Result<()> {
        self.0
            .prepare_cached("UPDATE data_key SET kek_id = ?1, nonce = ?2, wrapped = ?3 WHERE id = ?4")?
            .execute(params![kek_id, nonce, wrapped, id])?;
        Ok(())
    }

    /// Retires data key `id`: no new recording or secret uses it.
    pub fn retire_data_key(&self, id: &[u8]) -> rusqlite::Result<()> {
        self.0
            .execute("UPDATE data_key SET state = 'retired' WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Records a re-encryption job for data key `id`; false if there was one.
    pub fn start_reencrypt_job(&self, id: &[u8], reason: &str, now_ns: i64) -> rusqlite::Result<bool> {
        let new = self.0.execute(
            "INSERT OR IGNORE INTO key_job (key_id, kind, reason, started_ns) VALUES (?1, 'reencrypt', ?2, ?3)",
            params![id, reason, now_ns],
        )?;
        Ok(new > 0)
    }

    /// How many (recordings, secrets) data key `id` still protects.
    pub fn key_users(&self, id: &[u8]) -> rusqlite::Result<(i64, i64)> {
        let recordings: i64 = self
            .0
            .query_row("SELECT count(*) FROM recording WHERE key_id = ?1", [id], |r| r.get(0))?;
        let secrets: i64 = self
            .0
            .query_row("SELECT count(*) FROM secret WHERE key_id = ?1", [id], |r| r.get(0))?;
        Ok((recordings, secrets))
    }

    pub fn delete_key_job(&self, id: &[u8]) -> rusqlite::Result<()> {
        self.0.execute("DELETE FROM key_job WHERE key_id = ?1", [id])?;
        Ok(())
    }

    /// Step 1 of durable deletion of recording `id`, in this transaction
    /// ([`Index::queue_deletion_in`]).
    pub fn queue_deletion(&self, id: i64, reason: &str, now_ns: i64) -> Result<Option<String>, IndexError> {
        Index::queue_deletion_in(&self.0, id, reason, now_ns)
    }

    /// The keyring row names the new KEK (one generation more).
    pub fn rotate_kek(&self, k: &RotatedKek<'_>) -> rusqlite::Result<()> {
        self.0.execute(
            "UPDATE keyring SET kek_id = ?1, kek_generation = kek_generation + 1, kek_created_ns = ?2, \
             rotated_ns = ?2, escrow = ?3, sealing = ?4, pcrs = ?5 WHERE id = 1",
            params![k.kek_id, k.now_ns, k.escrow, k.sealing, k.pcrs],
        )?;
        Ok(())
    }
}
