//! The device row: the device id and the public half of its Ed25519 signing
//! key (the private half is a secret in the secrets store).

use rusqlite::{Connection, OptionalExtension};

/// The device id and the signing public key, if they were made.
pub fn identity(conn: &Connection) -> rusqlite::Result<Option<(String, [u8; 32])>> {
    let row: Option<(String, Vec<u8>)> = conn
        .query_row(
            "SELECT device_id, signing_public_key FROM device WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(id, pk)| Some((id, pk.try_into().ok()?))))
}

/// Records the device's identity unless another process did first; returns
/// whether this call inserted it.
pub fn insert_identity(
    conn: &Connection,
    device_id: &str,
    public_key: &[u8; 32],
    now_ns: i64,
) -> rusqlite::Result<bool> {
    let inserted = conn.execute(
        "INSERT INTO device (id, device_id, signing_public_key, created_ns) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT (id) DO NOTHING",
        rusqlite::params![device_id, &public_key[..], now_ns],
    )?;
    Ok(inserted > 0)
}

/// Whether this database shows that a device identity was made before: a
/// signed audit checkpoint, or the audit entry of the key's creation. With
/// no device row, that means the row was removed, and a new identity must
/// not be minted over the old one's log.
pub fn identity_was_made(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM audit_checkpoint) \
         OR EXISTS (SELECT 1 FROM audit_log WHERE action = 'device.signing-key.create')",
        [],
        |r| r.get(0),
    )
}
