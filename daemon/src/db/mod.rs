//! The db layer: every SQL statement of the daemon. [`Index`] is the SQLite
//! index itself (cameras, recordings, the per-chunk seek index, the garbage
//! table for durable deletion; WAL mode; schema versions via
//! `PRAGMA user_version`); the submodules keep the audit log, legal holds,
//! users, exports, the keyring's and the secrets' rows (the cryptography is
//! the keys layer's), fixity results, retention's picks, more recording
//! queries and the health probes.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

pub mod alert_outbox;
pub mod alerts;
pub mod audit;
pub mod audit_checkpoint;
pub mod audit_verify;
pub mod camera_archive;
pub mod camera_clock;
pub mod camera_events;
pub mod camera_sets;
pub mod cameras;
pub mod device;
pub mod exports;
pub mod fixity;
pub mod holds;
pub mod keyring;
pub mod probe;
pub mod recordings;
pub mod replication;
pub mod retention;
mod schema;
pub mod secrets;
pub mod stats;
pub mod throttle;
pub mod tokens;
pub mod user_admin;
pub mod users;

use schema::MIGRATIONS;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database schema version {0} is newer than this vigil understands ({SCHEMA_VERSION})")]
    TooNew(i64),
    #[error("database directory: {0}")]
    Io(#[from] std::io::Error),
}

pub const SCHEMA_VERSION: i64 = 11;

#[derive(Clone, Debug)]
pub struct RecordingRow {
    pub id: i64,
    pub camera_id: i64,
    pub camera: String,
    pub file_name: String,
    pub key_id: Vec<u8>,
    pub codec: String,
    pub state: String,
    pub start_wall_ns: i64,
    pub timescale: i64,
    pub start_pts: i64,
    pub end_pts: i64,
    pub frames: i64,
    pub chunks: i64,
    pub bytes: i64,
    pub sha256: Option<Vec<u8>>,
    pub end_reason: Option<String>,
    /// Continues the previous recording of the camera in media time (same
    /// camera session), even if the wall clock moved between them.
    pub continues_previous: bool,
    /// The camera id the file's header names: this box's `camera_id`, or
    /// the id on the box that wrote it, for a recording restored from a replica.
    pub file_camera_id: i64,
}

impl RecordingRow {
    /// Wall-clock time of media time `pts` in this recording.
    pub fn wall_of(&self, pts: i64) -> i64 {
        self.start_wall_ns + ticks_to_ns(pts - self.start_pts, self.timescale)
    }
    pub fn end_wall_ns(&self) -> i64 {
        self.wall_of(self.end_pts)
    }
}

pub fn ticks_to_ns(ticks: i64, timescale: i64) -> i64 {
    (i128::from(ticks) * 1_000_000_000 / i128::from(timescale.max(1))) as i64
}

pub fn ns_to_ticks(ns: i64, timescale: i64) -> i64 {
    (i128::from(ns) * i128::from(timescale) / 1_000_000_000) as i64
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRow {
    pub idx: i64,
    pub offset: i64,
    pub len: i64,
    pub first_pts: i64,
    pub duration: i64,
    pub frames: i64,
    pub key_frame: bool,
}

impl From<&vigil_format::vseg::ScannedChunk> for ChunkRow {
    /// The row of a chunk found by reading its file (crash recovery, a restore).
    fn from(c: &vigil_format::vseg::ScannedChunk) -> Self {
        ChunkRow {
            idx: c.pos.index as i64,
            offset: c.pos.offset as i64,
            len: c.pos.len as i64,
            first_pts: c.first_pts,
            duration: c.duration,
            frames: i64::from(c.frames),
            key_frame: c.key_frame,
        }
    }
}

pub struct NewRecording<'a> {
    pub camera_id: i64,
    pub file_name: &'a str,
    pub file_id: &'a [u8],
    pub key_id: &'a [u8],
    pub codec: &'a str,
    pub start_wall_ns: i64,
    pub observed_wall_ns: i64,
    pub timescale: i64,
    pub start_pts: i64,
    pub bytes: i64,
    /// Raise `recording.gap` when the camera's previous recording ended
    /// more than this long (ns) before this one starts (None: never).
    pub gap_alert_after_ns: Option<i64>,
    /// It continues the camera's previous recording in media time (one
    /// camera session, rotated at a key frame).
    pub continues_previous: bool,
}

/// The new file of a re-encrypted recording.
pub struct SwappedFile<'a> {
    pub file_name: &'a str,
    pub file_id: &'a [u8],
    pub key_id: &'a [u8],
    pub sha256: &'a [u8],
}

#[derive(Clone, Debug)]
pub struct CameraRow {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub state_since_ns: i64,
    pub last_error: Option<String>,
}

pub struct Index {
    conn: Connection,
}

pub(crate) const RECORDING_COLUMNS: &str =
    "r.id, r.camera_id, c.name, r.file_name, r.key_id, r.codec, r.state, r.start_wall_ns, \
     r.timescale, r.start_pts, r.end_pts, r.frames, r.chunks, r.bytes, r.sha256, r.end_reason, r.continues_previous, \
     coalesce(r.file_camera_id, r.camera_id)";
/// How many columns [`RECORDING_COLUMNS`] has: a query's own columns follow.
pub(crate) const RECORDING_COLUMN_COUNT: usize = 18;

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

const INSERT_CHUNK: &str =
    "INSERT INTO chunk (recording_id, idx, offset, len, first_pts, duration, frames, key_frame) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub(crate) fn insert_chunk(tx: &rusqlite::Transaction<'_>, recording_id: i64, c: &ChunkRow) -> rusqlite::Result<usize> {
    tx.prepare_cached(INSERT_CHUNK)?.execute(params![
        recording_id,
        c.idx,
        c.offset,
        c.len,
        c.first_pts,
        c.duration,
        c.frames,
        c.key_frame
    ])
}

pub(crate) fn recording_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordingRow> {
    Ok(RecordingRow {
        id: r.get(0)?,
        camera_id: r.get(1)?,
        camera: r.get(2)?,
        file_name: r.get(3)?,
        key_id: r.get(4)?,
        codec: r.get(5)?,
        state: r.get(6)?,
        start_wall_ns: r.get(7)?,
        timescale: r.get(8)?,
        start_pts: r.get(9)?,
        end_pts: r.get(10)?,
        frames: r.get(11)?,
        chunks: r.get(12)?,
        bytes: r.get(13)?,
        sha256: r.get(14)?,
        end_reason: r.get(15)?,
        continues_previous: r.get(16)?,
        file_camera_id: r.get(17)?,
    })
}

impl Index {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path).map_err(|source| IndexError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut idx = Index { conn };
        idx.setup("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        Ok(idx)
    }

    /// The connection, for the modules that own other tables in this database
    /// (keyring, secrets, audit).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }
    /// The connection itself, for a thread that keeps it.
    pub fn into_conn(self) -> Connection {
        self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// A small page cache (256 KiB): plenty for a background connection.
    pub fn use_small_cache(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch("PRAGMA cache_size = -256")
    }

    /// Runs `f` on a fresh connection to the existing database at `path`,
    /// on a blocking thread (for async tasks that write a row now and then:
    /// a camera's clock or events, an audit entry). Any failure, opening
    /// included, comes back as its text.
    pub async fn on_blocking_thread<T, E>(
        path: &Path,
        f: impl FnOnce(&Index) -> Result<T, E> + Send + 'static,
    ) -> Result<T, String>
    where
        T: Send + 'static,
        E: std::fmt::Display,
    {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let idx = Index::open_existing(&path).map_err(|e| e.to_string())?;
            f(&idx).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Opens an existing database without creating or migrating it.
    pub fn open_existing(path: &Path) -> Result<Self, IndexError> {
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(|source| {
                IndexError::Open {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut idx = Index { conn };
        idx.setup("PRAGMA foreign_keys = ON;")?;
        Ok(idx)
    }

    /// Pragmas, then migrations. Retried (100 x 50 ms at most) while another
    /// process holds the database: switching to WAL and the first migration
    /// can see SQLITE_BUSY/LOCKED without the busy handler being consulted.
    fn setup(&mut self, pragmas: &str) -> Result<(), IndexError> {
        let mut attempts = 0;
        loop {
            let r = self
                .conn
                .execute_batch(pragmas)
                .map_err(IndexError::from)
                .and_then(|()| self.migrate());
            match r {
                Err(IndexError::Sql(e)) if is_busy(&e) && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Brings the schema to [`SCHEMA_VERSION`]. Safe against other processes
    /// opening the same database at the same moment (the daemon and a CLI
    /// command): each step holds the write lock (`BEGIN IMMEDIATE`), reads the
    /// version inside that transaction, and commits with its version bump, so
    /// a crash leaves the old or the new version and no step runs twice.
    fn migrate(&mut self) -> Result<(), IndexError> {
        for _ in 0..MIGRATIONS.len() + 1 {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let v: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if v > SCHEMA_VERSION {
                return Err(IndexError::TooNew(v));
            }
            let Some(step) = MIGRATIONS.get(v.max(0) as usize) else {
                return Ok(());
            };
            tx.execute_batch(step)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", v.max(0) + 1))?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn camera_id(&self, name: &str) -> Result<i64, IndexError> {
        self.conn.execute(
            "INSERT INTO camera (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
            [name],
        )?;
        Ok(self
            .conn
            .query_row("SELECT id FROM camera WHERE name = ?1", [name], |r| r.get(0))?)
    }

    pub fn find_camera_id(&self, name: &str) -> Result<Option<i64>, IndexError> {
        Ok(self
            .conn
            .query_row("SELECT id FROM camera WHERE name = ?1", [name], |r| r.get(0))
            .optional()?)
    }

    /// Stores a camera's state; in the same transaction, streaming clears
    /// its `camera.offline` alert, and any other state but "stopped" raises
    /// it, sent only if it lasts `offline_alert_after_ns` (None: no alert).
    pub fn set_camera_state(
        &self,
        id: i64,
        state: &str,
        since_ns: i64,
        error: Option<&str>,
        offline_alert_after_ns: Option<i64>,
    ) -> Result<(), IndexError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE camera SET state = ?2, state_since_ns = ?3, last_error = COALESCE(?4, last_error) WHERE id = ?1",
            params![id, state, since_ns, error],
        )?;
        if let Some(after) = offline_alert_after_ns {
            let name: String = tx.query_row("SELECT name FROM camera WHERE id = ?1", [id], |r| r.get(0))?;
            match state {
                "streaming" => {
                    alerts::clear(&tx, alerts::Kind::CameraOffline, &name, since_ns)?;
                }
                "stopped" => {}
                _ => {
                    let why = error
                        .map(|e| format!("{state}: {e}"))
                        .unwrap_or_else(|| state.to_string());
                    let message = format!("Camera {name} is not streaming ({why})");
                    alerts::raise(
                        &tx,
                        &alerts::Raise::camera(alerts::Kind::CameraOffline, &name, &message).after(after),
                        since_ns,
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// At daemon start: no camera is streaming until its task says so.
    /// Offline alerts still waiting out their delay are withdrawn in the
    /// same transaction ([`alerts::withdraw_waiting_camera_raises`]).
    pub fn reset_camera_states(&self, now_ns: i64) -> Result<(), IndexError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("UPDATE camera SET state = 'stopped', state_since_ns = ?1", [now_ns])?;
        alerts::withdraw_waiting_camera_raises(&tx, now_ns)?;
        tx.commit()?;
        Ok(())
    }

    pub fn cameras(&self) -> Result<Vec<CameraRow>, IndexError> {
        let mut st = self
            .conn
            .prepare("SELECT id, name, state, state_since_ns, last_error FROM camera ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(CameraRow {
                id: r.get(0)?,
                name: r.get(1)?,
                state: r.get(2)?,
                state_since_ns: r.get(3)?,
                last_error: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Inserts a new recording. With `n.gap_alert_after_ns`, a hole since
    /// the camera's previous recording longer than that raises a
    /// `recording.gap` alert in the same transaction.
    pub fn insert_recording(&self, n: &NewRecording<'_>) -> Result<i64, IndexError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        if let Some(after) = n.gap_alert_after_ns {
            let prev: Option<(i64, String)> = tx
                .query_row(
                    "SELECT r.end_wall_ns, c.name FROM recording r JOIN camera c ON c.id = r.camera_id \
                     WHERE r.camera_id = ?1 ORDER BY r.end_wall_ns DESC LIMIT 1",
                    [n.camera_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((end, name)) = prev.filter(|(end, _)| n.start_wall_ns - end > after) {
                let message = format!(
                    "Camera {name} recorded nothing for {} s, from {} to {}",
                    (n.start_wall_ns - end) / 1_000_000_000,
                    crate::base::time::format_ns(end),
                    crate::base::time::format_ns(n.start_wall_ns)
                );
                alerts::raise(
                    &tx,
                    &alerts::Raise::camera(alerts::Kind::RecordingGap, &name, &message),
                    n.start_wall_ns,
                )?;
            }
        }
        tx.execute(
            "INSERT INTO recording (camera_id, file_name, file_id, key_id, codec, state, start_wall_ns, end_wall_ns, \
             observed_wall_ns, timescale, start_pts, end_pts, bytes, continues_previous) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'writing', ?6, ?6, ?7, ?8, ?9, ?9, ?10, ?11)",
            params![
                n.camera_id,
                n.file_name,
                n.file_id,
                n.key_id,
                n.codec,
                n.start_wall_ns,
                n.observed_wall_ns,
                n.timescale,
                n.start_pts,
                n.bytes,
                n.continues_previous
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Runs `f` with commits that are not synced on their own (WAL,
    /// `synchronous = NORMAL`): a later FULL commit, a checkpoint or the
    /// recorders' group sync of the volume makes them durable. For rows
    /// that crash recovery can rebuild from the files.
    pub fn without_sync<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, IndexError>) -> Result<T, IndexError> {
        self.conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let r = f(self);
        self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        r
    }

    /// Records chunks that are already durable in the file, in one
    /// transaction, and `file_len` as the recording's length.
    ///
    /// Committed without an fsync of their own ([`without_sync`](Self::without_sync)):
    /// the synced file is the authority for its chunks, and crash recovery
    /// rebuilds a recording's chunk rows from it. A recorder calls this once
    /// per sync of its file (a GOP, or its sync interval), not per chunk.
    pub fn add_chunks(&mut self, recording_id: i64, chunks: &[ChunkRow], file_len: i64) -> Result<(), IndexError> {
        let Some(last) = chunks.last() else {
            return Ok(());
        };
        let frames: i64 = chunks.iter().map(|c| c.frames).sum();
        self.without_sync(|idx| {
            let tx = idx.conn.transaction()?;
            for c in chunks {
                insert_chunk(&tx, recording_id, c)?;
            }
            tx.prepare_cached(
                "UPDATE recording SET frames = frames + ?2, chunks = chunks + ?3, end_pts = ?4, bytes = ?5, \
                 end_wall_ns = start_wall_ns + ((?4 - start_pts) * 1000000000) / timescale WHERE id = ?1",
            )?
            .execute(params![
                recording_id,
                frames,
                chunks.len() as i64,
                last.first_pts + last.duration,
                file_len
            ])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Marks a recording closed, with what the file now is.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_recording(
        &mut self,
        id: i64,
        state: &str,
        frames: i64,
        chunks: i64,
        end_pts: i64,
        bytes: i64,
        sha256: &[u8],
        reason: &str,
    ) -> Result<(), IndexError> {
        self.conn.execute(
            "UPDATE recording SET state = ?2, frames = ?3, chunks = ?4, end_pts = ?5, bytes = ?6, sha256 = ?7, end_reason = ?8, \
             end_wall_ns = start_wall_ns + ((?5 - start_pts) * 1000000000) / timescale WHERE id = ?1",
            params![id, state, frames, chunks, end_pts, bytes, sha256, reason],
        )?;
        Ok(())
    }

    /// Replaces a recording's chunk rows with what recovery found in the file.
    pub fn replace_chunks(&mut self, id: i64, chunks: &[ChunkRow]) -> Result<(), IndexError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM chunk WHERE recording_id = ?1", [id])?;
        for c in chunks {
            insert_chunk(&tx, id, c)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn query_recordings(&self, filter: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<RecordingRow>, IndexError> {
        let sql = format!(
            "SELECT {RECORDING_COLUMNS} FROM recording r JOIN camera c ON c.id = r.camera_id {filter} \
             ORDER BY r.camera_id, r.start_wall_ns, r.id"
        );
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(p, recording_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn recordings(&self, camera: Option<&str>) -> Result<Vec<RecordingRow>, IndexError> {
        match camera {
            Some(name) => self.query_recordings("WHERE c.name = ?1", &[&name]),
            None => self.query_recordings("", &[]),
        }
    }

    /// Up to `limit` recordings with an id above `after`, in id order: for
    /// walking a large archive without holding all of its rows.
    pub fn recordings_page(
        &self,
        camera: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordingRow>, IndexError> {
        let sql = format!(
            "SELECT {RECORDING_COLUMNS} FROM recording r JOIN camera c ON c.id = r.camera_id \
             WHERE r.id > ?1 AND (?2 IS NULL OR c.name = ?2) ORDER BY r.id LIMIT ?3"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![after, camera, limit], recording_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn recordings_in_state(&self, state: &str) -> Result<Vec<RecordingRow>, IndexError> {
        self.query_recordings("WHERE r.state = ?1", &[&state])
    }

    pub fn recording(&self, id: i64) -> Result<Option<RecordingRow>, IndexError> {
        Ok(self.query_recordings("WHERE r.id = ?1", &[&id])?.into_iter().next())
    }

    /// Recordings of a camera that overlap `[start_ns, end_ns)`.
    pub fn recordings_overlapping(
        &self,
        camera_id: i64,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<RecordingRow>, IndexError> {
        self.query_recordings(
            "WHERE r.camera_id = ?1 AND r.start_wall_ns < ?2 AND r.end_wall_ns > ?3",
            &[&camera_id, &end_ns, &start_ns],
        )
    }

    pub fn chunks(&self, recording_id: i64) -> Result<Vec<ChunkRow>, IndexError> {
        let mut st = self.conn.prepare(
            "SELECT idx, offset, len, first_pts, duration, frames, key_frame FROM chunk WHERE recording_id = ?1 ORDER BY idx",
        )?;
        let rows = st.query_map([recording_id], |r| {
            Ok(ChunkRow {
                idx: r.get(0)?,
                offset: r.get(1)?,
                len: r.get(2)?,
                first_pts: r.get(3)?,
                duration: r.get(4)?,
                frames: r.get(5)?,
                key_frame: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Wall-clock end of the camera's latest recording (to keep ordering when the clock steps back).
    pub fn last_end_wall_ns(&self, camera_id: i64) -> Result<Option<i64>, IndexError> {
        Ok(self.conn.query_row(
            "SELECT MAX(end_wall_ns) FROM recording WHERE camera_id = ?1",
            [camera_id],
            |r| r.get(0),
        )?)
    }

    pub fn file_names(&self) -> Result<std::collections::HashSet<String>, IndexError> {
        let mut st = self
            .conn
            .prepare("SELECT file_name FROM recording UNION SELECT file_name FROM garbage")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Step 1 of durable deletion: in one transaction the recording row goes
    /// and its file name is queued in `garbage`.
    pub fn queue_deletion(&mut self, id: i64, reason: &str, now_ns: i64) -> Result<Option<String>, IndexError> {
        let tx = self.conn.transaction()?;
        let name = Self::queue_deletion_in(&tx, id, reason, now_ns)?;
        tx.commit()?;
        Ok(name)
    }

    /// Queues a file that has no recording row (yet) for deletion, e.g. a
    /// re-encrypted copy being written: a crash leaves it to be collected.
    pub fn queue_garbage(
        &self,
        file_name: &str,
        recording_id: i64,
        reason: &str,
        now_ns: i64,
    ) -> Result<(), IndexError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO garbage (file_name, recording_id, reason, queued_ns) VALUES (?1, ?2, ?3, ?4)",
            params![file_name, recording_id, reason, now_ns],
        )?;
        Ok(())
    }

    /// Points recording `id` at a re-encrypted file in one transaction: the
    /// row takes the new file, name and key (only if it is still under
    /// `old_key_id`), the new file leaves the garbage queue and the old one
    /// joins it. Returns false if the row was not under `old_key_id`.
    pub fn swap_recording_file(
        &mut self,
        id: i64,
        old_key_id: &[u8],
        new: &SwappedFile<'_>,
        now_ns: i64,
    ) -> Result<bool, IndexError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old_name: Option<String> = tx
            .query_row(
                "SELECT file_name FROM recording WHERE id = ?1 AND key_id = ?2",
                params![id, old_key_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(old_name) = old_name else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE recording SET file_name = ?2, file_id = ?3, key_id = ?4, sha256 = ?5 WHERE id = ?1",
            params![id, new.file_name, new.file_id, new.key_id, new.sha256],
        )?;
        // New ciphertext under a new key: the replica must get it again.
        replication::requeue_in(&tx, Some(id))?;
        tx.execute("DELETE FROM garbage WHERE file_name = ?1", [new.file_name])?;
        tx.execute(
            "INSERT OR REPLACE INTO garbage (file_name, recording_id, reason, queued_ns) VALUES (?1, ?2, ?3, ?4)",
            params![old_name, id, "re-encrypted", now_ns],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Recordings sealed under data key `key_id`.
    pub fn recordings_with_key(&self, key_id: &[u8]) -> Result<Vec<RecordingRow>, IndexError> {
        self.query_recordings("WHERE r.key_id = ?1", &[&key_id])
    }

    /// Step 1 of durable deletion inside a caller's transaction (so that it
    /// commits together with, e.g., the destruction of the data keys).
    pub fn queue_deletion_in(
        tx: &rusqlite::Transaction<'_>,
        id: i64,
        reason: &str,
        now_ns: i64,
    ) -> Result<Option<String>, IndexError> {
        let name: Option<String> = tx
            .query_row("SELECT file_name FROM recording WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        if let Some(n) = &name {
            tx.execute(
                "INSERT OR REPLACE INTO garbage (file_name, recording_id, reason, queued_ns) VALUES (?1, ?2, ?3, ?4)",
                params![n, id, reason, now_ns],
            )?;
            tx.execute("DELETE FROM recording WHERE id = ?1", [id])?;
        }
        Ok(name)
    }

    pub fn garbage(&self) -> Result<Vec<String>, IndexError> {
        let mut st = self.conn.prepare("SELECT file_name FROM garbage ORDER BY queued_ns")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn forget_garbage(&self, file_name: &str) -> Result<(), IndexError> {
        self.conn
            .execute("DELETE FROM garbage WHERE file_name = ?1", [file_name])?;
        Ok(())
    }

    /// Drops many garbage rows in one transaction.
    pub fn forget_garbage_all(&mut self, names: &[String]) -> Result<(), IndexError> {
        let tx = self.conn.transaction()?;
        for n in names {
            tx.execute("DELETE FROM garbage WHERE file_name = ?1", [n])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// One recording, read inside a caller's transaction.
    pub fn recording_in(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<Option<RecordingRow>, IndexError> {
        Ok(tx
            .query_row(
                &format!(
                    "SELECT {RECORDING_COLUMNS} FROM recording r JOIN camera c ON c.id = r.camera_id WHERE r.id = ?1"
                ),
                [id],
                recording_from_row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_wall_time_is_indexed_and_matches_media_time() {
        let d = tempfile::tempdir().unwrap();
        let mut idx = Index::open(&d.path().join("v.db")).unwrap();
        let cam = idx.camera_id("c").unwrap();
        let start = 1_800_000_000_000_000_000i64;
        let id = idx
            .insert_recording(&NewRecording {
                camera_id: cam,
                file_name: "c/a.vseg",
                file_id: &[1; 16],
                key_id: &[2; 8],
                codec: "h264",
                start_wall_ns: start,
                observed_wall_ns: start,
                timescale: 90_000,
                start_pts: 1_000,
                bytes: 300,
                gap_alert_after_ns: None,
                continues_previous: false,
            })
            .unwrap();
        let chunk = ChunkRow {
            idx: 1,
            offset: 300,
            len: 50,
            first_pts: 1_000,
            duration: 90_000,
            frames: 25,
            key_frame: true,
        };
        idx.add_chunks(id, &[chunk], 350).unwrap();
        let row = idx.recording(id).unwrap().unwrap();
        assert_eq!(row.end_wall_ns(), start + 1_000_000_000);
        assert_eq!(idx.last_end_wall_ns(cam).unwrap(), Some(start + 1_000_000_000));
        // Overlap is decided by the indexed column: [start+0.5 s, start+2 s) overlaps, [start+1 s, ...) does not.
        assert_eq!(
            idx.recordings_overlapping(cam, start + 500_000_000, start + 2_000_000_000)
                .unwrap()
                .len(),
            1
        );
        assert!(idx
            .recordings_overlapping(cam, start + 1_000_000_000, start + 2_000_000_000)
            .unwrap()
            .is_empty());
        idx.finish_recording(id, "complete", 25, 1, 1_000 + 45_000, 391, &[0; 32], "test")
            .unwrap();
        assert_eq!(idx.last_end_wall_ns(cam).unwrap(), Some(start + 500_000_000));
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn a_v1_database_is_upgraded_and_its_end_times_filled_in() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(super::MIGRATIONS[0]).unwrap();
            c.execute_batch("PRAGMA user_version = 1").unwrap();
            c.execute_batch(
                "INSERT INTO camera (name) VALUES ('c'); \
                 INSERT INTO recording (camera_id, file_name, file_id, key_id, codec, state, start_wall_ns, \
                 observed_wall_ns, timescale, start_pts, end_pts) \
                 VALUES (1, 'c/a.vseg', x'00', x'00', 'h264', 'complete', 1000000000, 1000000000, 90000, 0, 180000);",
            )
            .unwrap();
        }
        let idx = Index::open(&path).unwrap();
        let v: i64 = idx.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(idx.last_end_wall_ns(1).unwrap(), Some(3_000_000_000));
        assert_eq!(
            idx.recordings_overlapping(1, 2_000_000_000, 2_500_000_000)
                .unwrap()
                .len(),
            1
        );
        drop(idx);
        // Opening again changes nothing.
        assert!(Index::open(&path).is_ok());
    }

    #[test]
    fn concurrent_first_opens_do_not_race() {
        for round in 0..10 {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join(format!("r{round}.db"));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let p = path.clone();
                    std::thread::spawn(move || Index::open(&p).map(|_| ()).map_err(|e| e.to_string()))
                })
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap(), Ok(()), "round {round}");
            }
        }
    }
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    #[test]
    fn pages_walk_every_recording_once_in_id_order() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        for (i, cam) in ["a", "b", "a", "a", "b"].iter().enumerate() {
            let camera_id = idx.camera_id(cam).unwrap();
            idx.insert_recording(&NewRecording {
                camera_id,
                file_name: &format!("{cam}/{i}.vseg"),
                file_id: &[i as u8; 16],
                key_id: &[0; 8],
                codec: "h264",
                start_wall_ns: i as i64,
                observed_wall_ns: i as i64,
                timescale: 90_000,
                start_pts: 0,
                bytes: 0,
                gap_alert_after_ns: None,
                continues_previous: false,
            })
            .unwrap();
        }
        let walk = |camera: Option<&str>| {
            let (mut after, mut ids) = (0, Vec::new());
            loop {
                let page = idx.recordings_page(camera, after, 2).unwrap();
                let Some(last) = page.last() else { break ids };
                after = last.id;
                ids.extend(page.iter().map(|r| r.id));
            }
        };
        assert_eq!(walk(None), vec![1, 2, 3, 4, 5]);
        assert_eq!(walk(Some("a")), vec![1, 3, 4]);
    }
}
