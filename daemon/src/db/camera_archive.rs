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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::holds::{place, HoldTarget};
    use rusqlite::params;

    fn recording(idx: &Index, camera: &str, n: i64, state: &str) -> i64 {
        let cam = idx.camera_id(camera).unwrap();
        idx.conn()
            .execute(
                "INSERT INTO recording (camera_id, file_name, file_id, key_id, codec, state, start_wall_ns, \
                 observed_wall_ns, timescale, start_pts, end_pts, frames, chunks, bytes, end_wall_ns) \
                 VALUES (?1, ?2, x'00', x'00', 'h264', ?3, ?4, ?4, 90000, 0, 0, 25, 1, 100, ?4 + 1000)",
                params![cam, format!("{camera}-{n}.vseg"), state, n * 10_000],
            )
            .unwrap();
        idx.conn().last_insert_rowid()
    }

    #[test]
    fn held_recordings_stay_and_the_deletion_is_audited() {
        let d = tempfile::tempdir().unwrap();
        let idx = Index::open(&d.path().join("v.db")).unwrap();
        let ids: Vec<i64> = (1..=4).map(|n| recording(&idx, "old", n, "complete")).collect();
        recording(&idx, "other", 9, "complete");
        place(idx.conn(), &HoldTarget::Recording(ids[1]), "case 7", "user:op").unwrap();
        let done = queue_camera_archive(&idx, "user:admin", "old", 5).unwrap().unwrap();
        assert_eq!(
            done,
            ArchiveDeletion {
                deleted: 3,
                bytes: 300,
                kept_on_hold: 1
            }
        );
        let left: Vec<i64> = idx.recordings(Some("old")).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(left, [ids[1]]);
        assert_eq!(
            idx.recordings(Some("other")).unwrap().len(),
            1,
            "other cameras untouched"
        );
        assert_eq!(idx.garbage().unwrap().len(), 3, "files queued for step 2");
        let last = audit::tail(idx.conn(), 1).unwrap().remove(0);
        assert_eq!(
            (last.actor.as_str(), last.action.as_str(), last.target.as_str()),
            ("user:admin", "camera.archive.delete", "old")
        );
        assert_eq!(
            last.detail,
            "3 recording(s), 300 bytes deleted; 1 kept under a legal hold"
        );
        assert_eq!(queue_camera_archive(&idx, "user:admin", "nope", 5).unwrap(), None);
    }
}
