//! More of [`Index`] on the recordings: the newest id (for the live event
//! stream), the durable deletion of what no hold protects (for retention
//! and `recordings delete`), and synthetic rows for the benchmarks.

use rusqlite::{params, OptionalExtension};

use crate::db::holds::{HELD_SQL, KEPT_FOR_REPLICA_SQL};
use crate::db::{Index, IndexError, RecordingRow};

/// A finished recording made up by a benchmark: 60 chunks of H.264, 1 min.
pub struct SyntheticRecording {
    pub camera_id: i64,
    pub file_name: String,
    pub file_id: Vec<u8>,
    pub start_wall_ns: i64,
    pub end_wall_ns: i64,
}

impl Index {
    /// The highest recording id, if there is any recording.
    pub fn newest_recording_id(&self) -> rusqlite::Result<Option<i64>> {
        self.conn.query_row("SELECT max(id) FROM recording", [], |r| r.get(0))
    }

    /// Step 1 of durable deletion of those of `ids` that are finished, under
    /// no legal hold and not kept until replicated, in one IMMEDIATE transaction. Returns the rows
    /// queued (their files are for [`Index::garbage`]).
    pub fn queue_unheld_deletions(
        &mut self,
        ids: &[i64],
        reason: &str,
        now_ns: i64,
    ) -> Result<Vec<RecordingRow>, IndexError> {
        let mut deleted = Vec::with_capacity(ids.len());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for &id in ids {
            let deletable: bool = tx
                .query_row(
                    &format!(
                        "SELECT r.state != 'writing' AND NOT {HELD_SQL} AND NOT {KEPT_FOR_REPLICA_SQL} \
                         FROM recording r WHERE r.id = ?1"
                    ),
                    [id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            if !deletable {
                continue;
            }
            let row = Index::recording_in(&tx, id)?;
            if Index::queue_deletion_in(&tx, id, reason, now_ns)?.is_some() {
                deleted.extend(row);
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Inserts `rows` as complete recordings, in one transaction.
    pub fn insert_synthetic_recordings(&mut self, rows: &[SyntheticRecording]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO recording (camera_id, file_name, file_id, key_id, codec, state, start_wall_ns, \
                 observed_wall_ns, timescale, start_pts, end_pts, frames, chunks, bytes, sha256, end_wall_ns) \
                 VALUES (?1, ?2, ?3, x'0000000000000000', 'h264', 'complete', ?4, ?4, 90000, 0, 5400000, 1500, 60, \
                 30000000, NULL, ?5)",
            )?;
            for r in rows {
                ins.execute(params![
                    r.camera_id,
                    r.file_name,
                    r.file_id,
                    r.start_wall_ns,
                    r.end_wall_ns
                ])?;
            }
        }
        tx.commit()
    }
}
