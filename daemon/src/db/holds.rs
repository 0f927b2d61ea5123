//! Legal holds: what retention and shredding must not delete.
//!
//! A hold names one recording, a camera and time range, or an export (which
//! holds every recording the export drew on). It carries a reason and who
//! placed it. Releasing a hold keeps its row (with who released it and why),
//! so the history of holds stays on record; only active holds protect.
//! Placing and releasing are audited in the same transaction.

use rusqlite::{params, Connection, OptionalExtension};

use crate::db::audit;

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("no recording {0}")]
    NoRecording(i64),
    #[error("unknown camera \"{0}\"")]
    UnknownCamera(String),
    #[error("no export {0}")]
    NoExport(i64),
    #[error("no active hold {0}")]
    NoHold(i64),
    #[error("a hold needs a reason")]
    NoReason,
    #[error("the end of the range must be after its start")]
    EmptyRange,
}

/// What a hold protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldTarget {
    Recording(i64),
    Range { camera: String, start_ns: i64, end_ns: i64 },
    Export(i64),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Hold {
    pub id: i64,
    pub kind: String,
    pub recording_id: Option<i64>,
    pub camera: Option<String>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub export_id: Option<i64>,
    pub reason: String,
    pub placed_by: String,
    pub placed_ns: i64,
    pub released_by: Option<String>,
    pub released_ns: Option<i64>,
    pub release_reason: Option<String>,
}

impl Hold {
    pub fn describe(&self) -> String {
        use crate::base::time::format_ns;
        match self.kind.as_str() {
            "recording" => format!("recording {}", self.recording_id.unwrap_or(0)),
            "export" => format!("export {}", self.export_id.unwrap_or(0)),
            _ => format!(
                "camera {} from {} to {}",
                self.camera.as_deref().unwrap_or("?"),
                format_ns(self.start_ns.unwrap_or(0)),
                format_ns(self.end_ns.unwrap_or(0))
            ),
        }
    }
}

/// The condition on a hold `h` that it is active and covers recording `r`.
macro_rules! covers_r {
    () => {
        "h.released_ns IS NULL AND (\
       (h.kind = 'recording' AND h.recording_id = r.id) \
    OR (h.kind = 'range' AND h.camera_id = r.camera_id AND h.start_ns < r.end_wall_ns AND h.end_ns > r.start_wall_ns) \
    OR (h.kind = 'export' AND h.export_id IN (SELECT er.export_id FROM export_recording er WHERE er.recording_id = r.id)))"
    };
}

/// SQL condition, true when recording `r` (aliased `r`) is under an active hold.
pub const HELD_SQL: &str = concat!("EXISTS (SELECT 1 FROM legal_hold h WHERE ", covers_r!(), ")");

/// True for a recording `r` that must stay on this box until it is in the
/// off-box replica (`keep_until_replicated`; `db::replication` keeps the queue).
pub const KEPT_FOR_REPLICA_SQL: &str =
    "EXISTS (SELECT 1 FROM replica q WHERE q.recording_id = r.id AND q.state = 'queued' AND q.keep_local = 1)";

/// The active holds that cover recording `recording_id`, oldest first.
pub fn holding(conn: &Connection, recording_id: i64) -> rusqlite::Result<Vec<Hold>> {
    let sql = concat!(
        "SELECT {COLUMNS} FROM recording r, legal_hold h LEFT JOIN camera c ON c.id = h.camera_id WHERE r.id = ?1 AND ",
        covers_r!(),
        " ORDER BY h.id"
    )
    .replace("{COLUMNS}", COLUMNS);
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map([recording_id], from_row)?;
    rows.collect()
}

/// Places a hold; returns its id.
pub fn place(conn: &Connection, target: &HoldTarget, reason: &str, actor: &str) -> Result<i64, HoldError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(HoldError::NoReason);
    }
    let now = crate::base::clock::now_ns();
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let (kind, rec, cam, start, end, exp) = match target {
        HoldTarget::Recording(id) => {
            let found: Option<i64> = tx
                .query_row("SELECT id FROM recording WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            found.ok_or(HoldError::NoRecording(*id))?;
            ("recording", Some(*id), None, None, None, None)
        }
        HoldTarget::Range {
            camera,
            start_ns,
            end_ns,
        } => {
            if end_ns <= start_ns {
                return Err(HoldError::EmptyRange);
            }
            let cam: Option<i64> = tx
                .query_row("SELECT id FROM camera WHERE name = ?1", [camera], |r| r.get(0))
                .optional()?;
            let cam = cam.ok_or_else(|| HoldError::UnknownCamera(camera.clone()))?;
            ("range", None, Some(cam), Some(*start_ns), Some(*end_ns), None)
        }
        HoldTarget::Export(id) => {
            let found: Option<i64> = tx
                .query_row("SELECT id FROM export WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            found.ok_or(HoldError::NoExport(*id))?;
            ("export", None, None, None, None, Some(*id))
        }
    };
    tx.execute(
        "INSERT INTO legal_hold (kind, recording_id, camera_id, start_ns, end_ns, export_id, reason, placed_by, placed_ns) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![kind, rec, cam, start, end, exp, reason, actor, now],
    )?;
    let id = tx.last_insert_rowid();
    let held = get(&tx, id)?.map(|h| h.describe()).unwrap_or_default();
    audit::append(
        &tx,
        actor,
        "hold.place",
        &format!("hold {id}"),
        audit::Outcome::Ok,
        &format!("{held}; reason: {reason}"),
    )?;
    tx.commit()?;
    Ok(id)
}

/// Releases an active hold (its row stays, marked released).
pub fn release(conn: &Connection, id: i64, reason: &str, actor: &str) -> Result<Hold, HoldError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE legal_hold SET released_by = ?2, released_ns = ?3, release_reason = ?4 \
         WHERE id = ?1 AND released_ns IS NULL",
        params![id, actor, crate::base::clock::now_ns(), reason],
    )?;
    if n == 0 {
        return Err(HoldError::NoHold(id));
    }
    let h = get(&tx, id)?.ok_or(HoldError::NoHold(id))?;
    audit::append(
        &tx,
        actor,
        "hold.release",
        &format!("hold {id}"),
        audit::Outcome::Ok,
        &format!("{}; reason: {reason}", h.describe()),
    )?;
    tx.commit()?;
    Ok(h)
}

const COLUMNS: &str =
    "h.id, h.kind, h.recording_id, c.name, h.start_ns, h.end_ns, h.export_id, h.reason, h.placed_by, \
     h.placed_ns, h.released_by, h.released_ns, h.release_reason";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Hold> {
    Ok(Hold {
        id: r.get(0)?,
        kind: r.get(1)?,
        recording_id: r.get(2)?,
        camera: r.get(3)?,
        start_ns: r.get(4)?,
        end_ns: r.get(5)?,
        export_id: r.get(6)?,
        reason: r.get(7)?,
        placed_by: r.get(8)?,
        placed_ns: r.get(9)?,
        released_by: r.get(10)?,
        released_ns: r.get(11)?,
        release_reason: r.get(12)?,
    })
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Hold>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM legal_hold h LEFT JOIN camera c ON c.id = h.camera_id WHERE h.id = ?1"),
        [id],
        from_row,
    )
    .optional()
}

/// Holds, newest first; released ones too when `all`.
pub fn list(conn: &Connection, all: bool) -> rusqlite::Result<Vec<Hold>> {
    let filter = if all { "" } else { "WHERE h.released_ns IS NULL" };
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM legal_hold h LEFT JOIN camera c ON c.id = h.camera_id {filter} ORDER BY h.id DESC"
    ))?;
    let rows = st.query_map([], from_row)?;
    rows.collect()
}

/// Whether recording `id` is under an active hold.
pub fn is_held(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.query_row(
        &format!("SELECT {HELD_SQL} FROM recording r WHERE r.id = ?1"),
        [id],
        |r| r.get::<_, bool>(0),
    )
    .optional()
    .map(|o| o.unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Index, NewRecording};

    fn rec(idx: &Index, cam: i64, n: i64, start: i64, end: i64) -> i64 {
        let name = format!("cam/{n}.vseg");
        let id = idx
            .insert_recording(&NewRecording {
                camera_id: cam,
                file_name: &name,
                file_id: &[n as u8; 16],
                key_id: &[0; 8],
                codec: "h264",
                start_wall_ns: start,
                observed_wall_ns: start,
                timescale: 1_000_000_000,
                start_pts: 0,
                bytes: 10,
                gap_alert_after_ns: None,
                continues_previous: false,
            })
            .unwrap();
        idx.conn()
            .execute(
                "UPDATE recording SET end_pts = ?2, end_wall_ns = ?3, state = 'complete' WHERE id = ?1",
                params![id, end - start, end],
            )
            .unwrap();
        id
    }

    #[test]
    fn each_kind_of_hold_protects_and_release_ends_it() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let cam = idx.camera_id("yard").unwrap();
        let a = rec(&idx, cam, 1, 0, 10);
        let b = rec(&idx, cam, 2, 10, 20);
        let c = rec(&idx, cam, 3, 20, 30);
        let conn = idx.conn();
        assert!(!is_held(conn, a).unwrap());
        assert!(matches!(
            place(conn, &HoldTarget::Recording(a), " ", "t"),
            Err(HoldError::NoReason)
        ));
        let h1 = place(conn, &HoldTarget::Recording(a), "case 1", "t").unwrap();
        assert!(is_held(conn, a).unwrap() && !is_held(conn, b).unwrap());
        // A range touching only b (half-open overlap).
        let range = HoldTarget::Range {
            camera: "yard".into(),
            start_ns: 12,
            end_ns: 20,
        };
        place(conn, &range, "case 2", "t").unwrap();
        assert!(is_held(conn, b).unwrap() && !is_held(conn, c).unwrap());
        conn.execute(
            "INSERT INTO export (id, created_ns, operator, camera, start_ns, end_ns, bytes, sha256, manifest_sha256) \
             VALUES (7, 0, 't', 'yard', 0, 1, 0, x'', x'')",
            [],
        )
        .unwrap();
        conn.execute("INSERT INTO export_recording VALUES (7, ?1)", [c])
            .unwrap();
        place(conn, &HoldTarget::Export(7), "case 3", "t").unwrap();
        assert!(is_held(conn, c).unwrap());
        release(conn, h1, "case closed", "admin").unwrap();
        assert!(!is_held(conn, a).unwrap());
        assert!(matches!(release(conn, h1, "again", "admin"), Err(HoldError::NoHold(_))));
        assert_eq!(list(conn, false).unwrap().len(), 2);
        assert_eq!(list(conn, true).unwrap().len(), 3);
        assert!(crate::db::audit::verify(conn).unwrap().is_ok());
    }
}
