//! The health supervisor's probes of the database: a plain connection (no
//! migration, no pool), whether the write lock can be taken, and how many
//! cameras the index says are streaming.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// A plain connection to `path` that waits `busy` for a lock.
pub fn connect(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(busy)?;
    Ok(c)
}

/// Takes and releases the database write lock (as long as the connection's
/// busy timeout at most).
pub fn write_lock(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
}

/// How many cameras the index at `path` says are streaming (a fresh
/// connection, so it sees the latest commit).
pub fn streaming_cameras(path: &Path) -> rusqlite::Result<i64> {
    Connection::open(path).and_then(|c| {
        c.query_row("SELECT count(*) FROM camera WHERE state = 'streaming'", [], |r| {
            r.get::<_, i64>(0)
        })
    })
}
