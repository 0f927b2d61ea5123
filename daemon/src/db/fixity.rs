//! The fixity scrub's columns of `recording` (`fixity_ns`, `fixity_ok`,
//! `fixity_detail`): which recording to scrub next, the results, and the
//! status and failures shown by the CLI, health and the web UI. Hashing the
//! files belongs to `archive::fixity`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::db::audit::{self, Outcome};

/// A recording to scrub: what was recorded when its file was closed.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub file_name: String,
    pub bytes: i64,
    pub sha256: Vec<u8>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub id: i64,
    pub camera: String,
    pub file: String,
    pub checked_ns: i64,
    pub detail: String,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Status {
    pub recordings: i64,
    pub verified: i64,
    pub never_verified: i64,
    pub oldest_verified_ns: Option<i64>,
    pub newest_verified_ns: Option<i64>,
    pub failures: Vec<Failure>,
}

/// The next recording to scrub in the cycle that started at `cycle_start_ns`:
/// never verified ones first, then the least recently verified. A recording
/// finished after the cycle started waits for the next one (it was hashed
/// as it was written).
pub fn next_candidate(conn: &Connection, cycle_start_ns: i64) -> rusqlite::Result<Option<Candidate>> {
    conn.query_row(
        "SELECT id, file_name, bytes, sha256 FROM recording \
         WHERE state != 'writing' AND sha256 IS NOT NULL AND coalesce(fixity_ns, end_wall_ns) < ?1 \
         ORDER BY fixity_ns IS NOT NULL, fixity_ns, id LIMIT 1",
        [cycle_start_ns],
        |r| {
            Ok(Candidate {
                id: r.get(0)?,
                file_name: r.get(1)?,
                bytes: r.get(2)?,
                sha256: r.get(3)?,
            })
        },
    )
    .optional()
}

/// The file name and SHA-256 recording `id` has now (None: it is gone).
pub fn current_file(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    conn.query_row("SELECT file_name, sha256 FROM recording WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

/// Records that recording `id` matched at `ts_ns`.
pub fn record_ok(conn: &Connection, id: i64, ts_ns: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE recording SET fixity_ns = ?2, fixity_ok = 1, fixity_detail = NULL WHERE id = ?1",
        params![id, ts_ns],
    )?;
    Ok(())
}

/// Records that recording `id` (file `file_name`) did not match at `ts_ns`,
/// in one IMMEDIATE transaction with a `fixity.mismatch` audit entry and
/// alert when it was not already known to fail.
pub fn record_mismatch(conn: &Connection, id: i64, file_name: &str, ts_ns: i64, what: &str) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let was_ok: Option<i64> = tx.query_row("SELECT fixity_ok FROM recording WHERE id = ?1", [id], |r| r.get(0))?;
    tx.execute(
        "UPDATE recording SET fixity_ns = ?2, fixity_ok = 0, fixity_detail = ?3 WHERE id = ?1",
        params![id, ts_ns, what],
    )?;
    if was_ok != Some(0) {
        let camera: String = tx.query_row(
            "SELECT c.name FROM recording r JOIN camera c ON c.id = r.camera_id WHERE r.id = ?1",
            [id],
            |r| r.get(0),
        )?;
        super::alerts::raise(
            &tx,
            &super::alerts::Raise::camera(
                super::alerts::Kind::FixityMismatch,
                &camera,
                &format!(
                    "Recording {id} of camera {camera} changed on disk since it was written ({file_name}: {what})"
                ),
            ),
            ts_ns,
        )?;
        audit::append(
            &tx,
            "fixity",
            "fixity.mismatch",
            &format!("recording {id}"),
            Outcome::Failed,
            &format!("{file_name}: {what}"),
        )?;
    }
    tx.commit()
}

/// Fixity of recording `id`: when it was last checked and whether it matched.
pub fn of_recording(conn: &Connection, id: i64) -> rusqlite::Result<(Option<i64>, Option<i64>)> {
    conn.query_row("SELECT fixity_ns, fixity_ok FROM recording WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

pub fn status(conn: &Connection) -> rusqlite::Result<Status> {
    let mut s = conn.query_row(
        "SELECT count(*), count(fixity_ns), min(fixity_ns), max(fixity_ns) FROM recording WHERE state != 'writing'",
        [],
        |r| {
            Ok(Status {
                recordings: r.get(0)?,
                verified: r.get(1)?,
                oldest_verified_ns: r.get(2)?,
                newest_verified_ns: r.get(3)?,
                ..Default::default()
            })
        },
    )?;
    s.never_verified = s.recordings - s.verified;
    s.failures = failures(conn)?;
    Ok(s)
}

pub fn failures(conn: &Connection) -> rusqlite::Result<Vec<Failure>> {
    let mut st = conn.prepare_cached(
        "SELECT r.id, c.name, r.file_name, r.fixity_ns, coalesce(r.fixity_detail, '') FROM recording r \
         JOIN camera c ON c.id = r.camera_id WHERE r.fixity_ok = 0 ORDER BY r.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Failure {
            id: r.get(0)?,
            camera: r.get(1)?,
            file: r.get(2)?,
            checked_ns: r.get(3)?,
            detail: r.get(4)?,
        })
    })?;
    rows.collect()
}
