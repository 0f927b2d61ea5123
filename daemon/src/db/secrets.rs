//! The secrets store's rows (`secret`): name, version, expiry and the value
//! as sealed. The bytes are opaque here: sealing and opening the values
//! belong to `keys::secrets`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::db::audit::AuditedTx;

/// A secret's value as stored.
#[derive(Clone, Debug)]
pub struct SealedSecret {
    pub id: i64,
    pub key_id: Vec<u8>,
    pub nonce: Vec<u8>,
    pub value: Vec<u8>,
}

/// A secret as listed: never the value.
#[derive(Clone, Debug)]
pub struct SecretRow {
    pub name: String,
    pub version: i64,
    pub key_id: Vec<u8>,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub expires_ns: Option<i64>,
}

/// A secret's version and expiry, for writing a new version.
#[derive(Clone, Copy, Debug)]
pub struct SecretVersion {
    pub id: i64,
    pub version: i64,
    pub expires_ns: Option<i64>,
}

/// A sealed value to re-encrypt.
#[derive(Clone, Debug)]
pub struct NamedSealedSecret {
    pub id: i64,
    pub name: String,
    pub nonce: Vec<u8>,
    pub value: Vec<u8>,
}

/// The sealed value of `name`, if it exists.
pub fn sealed(conn: &Connection, name: &str) -> rusqlite::Result<Option<SealedSecret>> {
    conn.query_row(
        "SELECT id, key_id, nonce, value FROM secret WHERE name = ?1",
        [name],
        |r| {
            Ok(SealedSecret {
                id: r.get(0)?,
                key_id: r.get(1)?,
                nonce: r.get(2)?,
                value: r.get(3)?,
            })
        },
    )
    .optional()
}

/// Whether a secret of this name exists.
pub fn exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM secret WHERE name = ?1", [name], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some())
}

/// Every secret by name.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<SecretRow>> {
    let mut st =
        conn.prepare("SELECT name, version, key_id, created_ns, updated_ns, expires_ns FROM secret ORDER BY name")?;
    let rows = st.query_map([], |r| {
        Ok(SecretRow {
            name: r.get(0)?,
            version: r.get(1)?,
            key_id: r.get(2)?,
            created_ns: r.get(3)?,
            updated_ns: r.get(4)?,
            expires_ns: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The secrets' IMMEDIATE transaction, with the audit entries that belong
/// to the change ([`AuditedTx`]).
pub type Tx<'a> = AuditedTx<'a>;

impl<'a> Tx<'a> {
    /// Whether data key `key_id` is still active.
    pub fn key_is_active(&self, key_id: &[u8]) -> rusqlite::Result<bool> {
        let active: Option<i64> = self
            .0
            .query_row(
                "SELECT 1 FROM data_key WHERE id = ?1 AND state = 'active'",
                [key_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(active.is_some())
    }

    pub fn version(&self, name: &str) -> rusqlite::Result<Option<SecretVersion>> {
        self.0
            .query_row(
                "SELECT id, version, expires_ns FROM secret WHERE name = ?1",
                [name],
                |r| {
                    Ok(SecretVersion {
                        id: r.get(0)?,
                        version: r.get(1)?,
                        expires_ns: r.get(2)?,
                    })
                },
            )
            .optional()
    }

    /// Row `id` gets `version` (its value follows with [`Tx::store_value`]).
    pub fn set_version(&self, id: i64, version: i64, now_ns: i64, expires_ns: Option<i64>) -> rusqlite::Result<()> {
        self.0.execute(
            "UPDATE secret SET version = ?2, updated_ns = ?3, expires_ns = ?4 WHERE id = ?1",
            params![id, version, now_ns, expires_ns],
        )?;
        Ok(())
    }

    /// A new row for `name`, version 1, value still empty (it is sealed to
    /// the row id, so it follows with [`Tx::store_value`]). Returns the row id.
    pub fn insert_empty(&self, name: &str, now_ns: i64, expires_ns: Option<i64>) -> rusqlite::Result<i64> {
        self.0.execute(
            "INSERT INTO secret (name, version, key_id, nonce, value, created_ns, updated_ns, expires_ns) \
             VALUES (?1, 1, x'', x'', x'', ?2, ?2, ?3)",
            params![name, now_ns, expires_ns],
        )?;
        Ok(self.0.last_insert_rowid())
    }

    pub fn store_value(&self, id: i64, key_id: &[u8], nonce: &[u8], value: &[u8]) -> rusqlite::Result<()> {
        self.0.execute(
            "UPDATE secret SET key_id = ?2, nonce = ?3, value = ?4 WHERE id = ?1",
            params![id, key_id, nonce, value],
        )?;
        Ok(())
    }

    /// Deletes `name`; returns how many rows went (0 or 1).
    pub fn delete(&self, name: &str) -> rusqlite::Result<usize> {
        self.0.execute("DELETE FROM secret WHERE name = ?1", [name])
    }

    /// The secrets sealed under data key `key_id`.
    pub fn sealed_under(&self, key_id: &[u8]) -> rusqlite::Result<Vec<NamedSealedSecret>> {
        let mut st = self
            .0
            .prepare("SELECT id, name, nonce, value FROM secret WHERE key_id = ?1")?;
        let it = st.query_map([key_id], |r| {
            Ok(NamedSealedSecret {
                id: r.get(0)?,
                name: r.get(1)?,
                nonce: r.get(2)?,
                value: r.get(3)?,
            })
        })?;
        it.collect()
    }
}
