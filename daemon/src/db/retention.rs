//! What retention asks of the index: the oldest deletable recordings a rule
//! picks, how many of them a legal hold keeps, a camera's bytes. Deleting
//! them is `Storage::delete_unheld`'s; the rules are `archive::retention`'s.

use rusqlite::{Connection, ToSql};

use crate::db::holds::{HELD_SQL, KEPT_FOR_REPLICA_SQL};

/// The recordings a retention rule looks at.
#[derive(Clone, Copy, Debug)]
pub enum Pick {
    /// One camera's recordings that ended at or before `end_ns` (age).
    EndedBy { camera_id: i64, end_ns: i64 },
    /// One camera's recordings (size).
    Camera(i64),
    /// Every camera's recordings (the storage floor).
    All,
}

impl Pick {
    fn filter(&self) -> &'static str {
        match self {
            Pick::EndedBy { .. } => "r.camera_id = ?1 AND r.end_wall_ns <= ?2",
            Pick::Camera(_) => "r.camera_id = ?1",
            Pick::All => "1",
        }
    }
    fn with_params<T>(&self, f: impl FnOnce(&str, &[&dyn ToSql]) -> T) -> T {
        match self {
            Pick::EndedBy { camera_id, end_ns } => f(self.filter(), &[camera_id, end_ns]),
            Pick::Camera(camera_id) => f(self.filter(), &[camera_id]),
            Pick::All => f(self.filter(), &[]),
        }
    }
}

/// (id, bytes) of the oldest recordings `pick` selects that are neither
/// being written, nor held, nor waiting for the bucket with
/// `keep_until_replicated`, at most `limit`.
pub fn oldest_deletable(conn: &Connection, pick: Pick, limit: usize) -> rusqlite::Result<Vec<(i64, i64)>> {
    pick.with_params(|filter, p| {
        let sql = format!(
            "SELECT r.id, r.bytes FROM recording r WHERE r.state != 'writing' AND {filter} AND NOT {HELD_SQL} \
             AND NOT {KEPT_FOR_REPLICA_SQL} ORDER BY r.start_wall_ns, r.id LIMIT {limit}"
        );
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(p, |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    })
}

/// How many finished recordings `pick` selects are under a legal hold.
pub fn count_held(conn: &Connection, pick: Pick) -> rusqlite::Result<u64> {
    pick.with_params(|filter, p| {
        let sql = format!("SELECT count(*) FROM recording r WHERE r.state != 'writing' AND {filter} AND {HELD_SQL}");
        conn.query_row(&sql, p, |r| r.get::<_, i64>(0)).map(|n| n as u64)
    })
}

/// How many finished recordings `pick` selects are kept until they are replicated.
pub fn count_kept_for_replica(conn: &Connection, pick: Pick) -> rusqlite::Result<u64> {
    pick.with_params(|filter, p| {
        let sql = format!(
            "SELECT count(*) FROM recording r WHERE r.state != 'writing' AND {filter} AND NOT {HELD_SQL} \
             AND {KEPT_FOR_REPLICA_SQL}"
        );
        conn.query_row(&sql, p, |r| r.get::<_, i64>(0)).map(|n| n as u64)
    })
}

/// Every camera's (id, name), by id.
pub fn cameras(conn: &Connection) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut st = conn.prepare("SELECT id, name FROM camera ORDER BY id")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The bytes of all of a camera's recordings.
pub fn camera_bytes(conn: &Connection, camera_id: i64) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce(sum(bytes), 0) FROM recording WHERE camera_id = ?1",
        [camera_id],
        |r| r.get(0),
    )
}
