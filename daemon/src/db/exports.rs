//! Evidence exports as the index keeps them (the `export` table): the list
//! the web UI shows, the file an export was written to, and the lookup of a
//! downloadable one. `evidence::bundle` makes the rows with the functions
//! here (a pending row, then finished or forgotten).

use rusqlite::{Connection, OptionalExtension};

/// One finished export, as listed.
#[derive(Clone, Debug)]
pub struct ExportRow {
    pub id: i64,
    pub created_ns: i64,
    /// Who made it (`user:<name>` or `token:<name>`).
    pub operator: String,
    /// The cameras, comma-separated.
    pub cameras: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub bytes: i64,
    pub sha256: Vec<u8>,
    /// The file in the exports directory, if one was kept.
    pub file_name: Option<String>,
    /// An active legal hold names this export.
    pub held: bool,
}

/// The newest 500 finished exports (those with a SHA-256), newest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<ExportRow>> {
    let mut q = conn.prepare(
        "SELECT e.id, e.created_ns, e.operator, e.camera, e.start_ns, e.end_ns, e.bytes, e.sha256, e.file_name, \
         EXISTS (SELECT 1 FROM legal_hold h WHERE h.kind = 'export' AND h.export_id = e.id AND h.released_ns IS NULL) \
         FROM export e WHERE length(e.sha256) > 0 ORDER BY e.id DESC LIMIT 500",
    )?;
    let rows = q.query_map([], |r| {
        Ok(ExportRow {
            id: r.get(0)?,
            created_ns: r.get(1)?,
            operator: r.get(2)?,
            cameras: r.get(3)?,
            start_ns: r.get(4)?,
            end_ns: r.get(5)?,
            bytes: r.get(6)?,
            sha256: r.get(7)?,
            file_name: r.get(8)?,
            held: r.get(9)?,
        })
    })?;
    rows.collect()
}

/// A new export row, pending until [`finish`] (no SHA-256 yet): its id.
pub fn insert_pending(
    conn: &Connection,
    created_ns: i64,
    operator: &str,
    cameras: &str,
    start_ns: i64,
    end_ns: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO export (created_ns, operator, camera, start_ns, end_ns, file_name, bytes, sha256, manifest_sha256) \
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, 0, x'', x'')",
        rusqlite::params![created_ns, operator, cameras, start_ns, end_ns],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Finishes a pending export: its size, digests and source recordings.
/// Call inside the caller's transaction.
pub fn finish(
    conn: &Connection,
    id: i64,
    bytes: i64,
    sha256: &[u8],
    manifest_sha256: &[u8],
    recording_ids: impl IntoIterator<Item = i64>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE export SET bytes = ?2, sha256 = ?3, manifest_sha256 = ?4 WHERE id = ?1",
        rusqlite::params![id, bytes, sha256, manifest_sha256],
    )?;
    for r in recording_ids {
        conn.execute(
            "INSERT OR IGNORE INTO export_recording (export_id, recording_id) VALUES (?1, ?2)",
            [id, r],
        )?;
    }
    Ok(())
}

/// Removes a pending export that failed.
pub fn forget(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM export WHERE id = ?1", [id])?;
    Ok(())
}

/// Notes the file (in the exports directory) export `id` was written to.
pub fn set_file_name(conn: &Connection, id: i64, file_name: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE export SET file_name = ?2 WHERE id = ?1",
        rusqlite::params![id, file_name],
    )?;
    Ok(())
}

/// A finished export's file, as a download needs it.
#[derive(Clone, Debug)]
pub struct ExportFile {
    pub file_name: Option<String>,
    pub sha256: Vec<u8>,
    pub created_ns: i64,
    pub bytes: i64,
}

/// Export `id` if it is finished (has a SHA-256); None otherwise.
pub fn file(conn: &Connection, id: i64) -> rusqlite::Result<Option<ExportFile>> {
    conn.query_row(
        "SELECT file_name, sha256, created_ns, bytes FROM export WHERE id = ?1 AND length(sha256) > 0",
        [id],
        |r| {
            Ok(ExportFile {
                file_name: r.get(0)?,
                sha256: r.get(1)?,
                created_ns: r.get(2)?,
                bytes: r.get(3)?,
            })
        },
    )
    .optional()
}

/// The cameras (comma-separated) of export `id`, if there is one.
pub fn cameras_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT camera FROM export WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}
