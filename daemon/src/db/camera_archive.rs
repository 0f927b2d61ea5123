//! Deleting an archived camera's recordings (step 1, in the index): every
//! finished recording of the camera that no legal hold protects is queued
//! for deletion, and the audit entry `camera.archive.delete` is written, in
//! one IMMEDIATE transaction. The files go in step 2
//! (`Storage::collect_garbage`), as for retention.

use rusqlite::{OptionalExtension, TransactionBehavior};

use crate::db::audit::{self, Outcome};
use crate::db::holds::HELD_SQL;
use crate::db::{Index, IndexError};

/// What a deletion did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveDeletion {
    pub deleted: u64,
    pub bytes: i64,
    /// Recordings that stay: under a legal hold (or still being written).
    pub kept_on_hold: u64,
}

/// Queues the deletion of `camera`'s unheld recordings; None when no camera
/// of that name is in the index.
pub fn queue_camera_archive(
    idx: &Index,
    actor: &str,
    camera: &str,
    now_ns: i64,
) -> Result<Option<ArchiveDeletion>, IndexError> {
    let tx = rusqlite::Transaction::new_unchecked(idx.conn(), TransactionBehavior::Immediate)?;
    let Some(camera_id) = tx
        .query_row("SELECT id FROM camera WHERE name = ?1", [camera], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
    else {
        return Ok(None);
    };
    let doomed: Vec<(i64, i64)> = {
        let mut st = tx.prepare(&format!(
            "SELECT r.id, r.bytes FROM recording r WHERE r.camera_id = ?1 AND r.state != 'writing' \
             AND NOT {HELD_SQL} ORDER BY r.start_wall_ns, r.id"
        ))?;
        let rows = st.query_map([camera_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut done = ArchiveDeletion::default();
    for (id, bytes) in doomed {
        if Index::queue_deletion_in(&tx, id, "camera archive deleted", now_ns)?.is_some() {
            done.deleted += 1;
            done.bytes += bytes;
        }
    }
    done.kept_on_hold = tx.query_row(
        "SELECT count(*) FROM recording WHERE camera_id = ?1",
        [camera_id],
        |r| r.get::<_, i64>(0),
    )? as u64;
    audit::append(
        &tx,
        actor,
        "camera.archive.delete",
        camera,
        Outcome::Ok,
        &format!(
            "{} recording(s), {} bytes deleted; {} kept under a legal hold",
            done.deleted, done.bytes, done.kept_on_hold
        ),
    )?;
    tx.commit()?;
    Ok(Some(done))
}
