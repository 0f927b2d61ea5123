//! Off-box replication's state in the index: which finished recordings are
//! queued for the bucket, a multipart upload in flight and its parts (so it
//! resumes after a restart or `kill -9` instead of starting again), the data
//! keys and the audit head already uploaded, the target, and the lag.
//! The uploader is `replica::upload`; retention reads
//! [`crate::db::holds::KEPT_FOR_REPLICA_SQL`].

use rusqlite::{params, Connection, OptionalExtension};

use crate::db::alerts::{self, Kind};
use crate::db::audit::{self, Outcome};
use crate::db::holds::{self, Hold, HELD_SQL};
use crate::db::{recording_from_row, RecordingRow, RECORDING_COLUMNS, RECORDING_COLUMN_COUNT as N};

/// One recording waiting for the bucket.
#[derive(Clone, Debug)]
pub struct Queued {
    pub rec: RecordingRow,
    /// The multipart upload in flight and its part size, if one was begun.
    pub upload_id: Option<String>,
    pub part_size: Option<i64>,
    pub attempts: i64,
    /// Bumped when the recording must go again (its file changed): a step
    /// of an older generation changes nothing.
    pub generation: i64,
    /// An object of that name in the bucket may be stale: send it even so.
    pub resend: bool,
}

/// How far behind the bucket is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    pub queued: u64,
    pub queued_bytes: u64,
    /// Start of the oldest recording still waiting.
    pub oldest_queued_start_ns: Option<i64>,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub last_uploaded_ns: Option<i64>,
    /// The latest failure among the waiting ones.
    pub last_error: Option<String>,
}

/// Records the target (`endpoint/bucket/prefix`) replicated to, auditing a
/// change (`replication.target`), and brings every waiting recording's
/// keep-local flag in line with the configuration. Returns whether the
/// target changed.
pub fn set_target(
    conn: &Connection,
    actor: &str,
    target: &str,
    keep_local: bool,
    now_ns: i64,
) -> rusqlite::Result<bool> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let old: Option<String> = tx
        .query_row("SELECT target FROM replica_target WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    let changed = old.as_deref() != Some(target);
    if changed {
        tx.execute(
            "INSERT INTO replica_target (id, target, since_ns, audit_head_entry) VALUES (1, ?1, ?2, NULL) \
             ON CONFLICT (id) DO UPDATE SET target = ?1, since_ns = ?2, audit_head_entry = NULL",
            params![target, now_ns],
        )?;
        // A new bucket holds nothing yet: every recording and key goes again.
        tx.execute("DELETE FROM replica_key", [])?;
        requeue_in(&tx, None)?;
        let detail = match &old {
            Some(o) => format!("from {o}"),
            None => "first target".into(),
        };
        audit::append(&tx, actor, "replication.target", target, Outcome::Ok, &detail)?;
    }
    tx.execute(
        "UPDATE replica SET keep_local = ?1 WHERE state = 'queued'",
        [i64::from(keep_local)],
    )?;
    tx.commit()?;
    Ok(changed)
}

/// Puts recording `id` (every recording: None) back in the queue, as if
/// never uploaded: its file changed (re-encryption), or the target did.
pub fn requeue_in(conn: &Connection, id: Option<i64>) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM replica_part WHERE ?1 IS NULL OR recording_id = ?1", [id])?;
    conn.execute(
        "UPDATE replica SET state = 'queued', upload_id = NULL, part_size = NULL, attempts = 0, next_try_ns = 0, \
         last_error = NULL, uploaded_ns = NULL, object_key = NULL, holds_stated = '', \
         generation = generation + 1, resend = 1, \
         bytes = (SELECT r.bytes FROM recording r WHERE r.id = replica.recording_id) \
         WHERE ?1 IS NULL OR recording_id = ?1",
        [id],
    )?;
    Ok(())
}

/// Forgets waiting recordings of cameras no longer replicated (`cameras`
/// narrowed; empty: all are). Returns how many.
pub fn forget_uncovered(conn: &Connection, cameras: &[String]) -> rusqlite::Result<usize> {
    if cameras.is_empty() {
        return Ok(0);
    }
    let list = serde_json::to_string(cameras).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "DELETE FROM replica WHERE state = 'queued' AND recording_id IN (SELECT r.id FROM recording r \
         JOIN camera c ON c.id = r.camera_id WHERE c.name NOT IN (SELECT value FROM json_each(?1)))",
        [list],
    )
}

/// Replication is off: nothing is kept on its account any more.
pub fn release_all(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute("UPDATE replica SET keep_local = 0 WHERE keep_local = 1", [])
}

/// Queues every finished recording of `cameras` (empty: all) not queued
/// before, looking only at ids from `floor` on (0: all). Returns how many
/// were queued and the floor for the next call: the oldest recording being
/// written when this one looked, or one past the newest. Both are read in
/// one IMMEDIATE transaction, so no recording can finish between them.
/// (Ids can be reused after the newest row is deleted: the caller scans
/// from 0 now and then.)
pub fn enqueue(
    conn: &Connection,
    cameras: &[String],
    keep_local: bool,
    now_ns: i64,
    floor: i64,
) -> rusqlite::Result<(usize, i64)> {
    let list = serde_json::to_string(cameras).unwrap_or_else(|_| "[]".into());
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let next: i64 = tx
        .prepare_cached(
            "SELECT coalesce((SELECT min(id) FROM recording WHERE state = 'writing'), \
             (SELECT coalesce(max(id), 0) + 1 FROM recording))",
        )?
        .query_row([], |r| r.get(0))?;
    let n = tx
        .prepare_cached(
            "INSERT INTO replica (recording_id, state, keep_local, queued_ns, bytes) \
             SELECT r.id, 'queued', ?1, ?2, r.bytes FROM recording r JOIN camera c ON c.id = r.camera_id \
             WHERE r.id >= ?4 AND r.state != 'writing' AND r.sha256 IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM replica q WHERE q.recording_id = r.id) \
             AND (?3 = '[]' OR c.name IN (SELECT value FROM json_each(?3)))",
        )?
        .execute(params![i64::from(keep_local), now_ns, list, floor])?;
    tx.commit()?;
    Ok((n, next))
}

/// The oldest waiting recording that is due (its back-off has passed).
pub fn next_due(conn: &Connection, now_ns: i64) -> rusqlite::Result<Option<Queued>> {
    let sql = format!(
        "SELECT {RECORDING_COLUMNS}, q.upload_id, q.part_size, q.attempts, q.generation, q.resend FROM replica q \
         JOIN recording r ON r.id = q.recording_id JOIN camera c ON c.id = r.camera_id \
         WHERE q.state = 'queued' AND q.next_try_ns <= ?1 ORDER BY r.start_wall_ns, r.id LIMIT 1"
    );
    conn.prepare_cached(&sql)?
        .query_row([now_ns], |row| {
            Ok(Queued {
                rec: recording_from_row(row)?,
                upload_id: row.get(N)?,
                part_size: row.get(N + 1)?,
                attempts: row.get(N + 2)?,
                generation: row.get(N + 3)?,
                resend: row.get(N + 4)?,
            })
        })
        .optional()
}

/// A multipart upload was begun: its id is kept so a restart resumes it.
pub fn begin_multipart(
    conn: &Connection,
    recording_id: i64,
    generation: i64,
    upload_id: &str,
    part_size: i64,
) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM replica_part WHERE recording_id = ?1", [recording_id])?;
    tx.execute(
        "UPDATE replica SET upload_id = ?2, part_size = ?3 WHERE recording_id = ?1 AND generation = ?4",
        params![recording_id, upload_id, part_size, generation],
    )?;
    tx.commit()
}

/// Part `part_no` (from 1) of generation `generation` is in the bucket
/// with this ETag. Returns false (nothing kept) when the recording was
/// queued again since (its file changed).
pub fn record_part(
    conn: &Connection,
    recording_id: i64,
    generation: i64,
    part_no: i64,
    etag: &str,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO replica_part (recording_id, part_no, etag) SELECT ?1, ?3, ?4 \
         WHERE EXISTS (SELECT 1 FROM replica WHERE recording_id = ?1 AND generation = ?2 AND state = 'queued')",
    )?
    .execute(params![recording_id, generation, part_no, etag])
    .map(|n| n == 1)
}

/// The parts already uploaded, by part number.
pub fn parts(conn: &Connection, recording_id: i64) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut st =
        conn.prepare_cached("SELECT part_no, etag FROM replica_part WHERE recording_id = ?1 ORDER BY part_no")?;
    let rows = st.query_map([recording_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The bucket no longer knows the upload (aborted or expired): start again.
pub fn forget_multipart(conn: &Connection, recording_id: i64) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM replica_part WHERE recording_id = ?1", [recording_id])?;
    tx.execute(
        "UPDATE replica SET upload_id = NULL, part_size = NULL WHERE recording_id = ?1",
        [recording_id],
    )?;
    tx.commit()
}

/// The recording and its manifest are in the bucket; the manifest names
/// the holds `holds_stated` (their ids, comma-joined). Returns false
/// (nothing changed) when the recording was queued again since generation
/// `generation` began (its file changed): it goes again.
pub fn mark_done(
    conn: &Connection,
    recording_id: i64,
    generation: i64,
    object_key: &str,
    holds_stated: &str,
    now_ns: i64,
) -> rusqlite::Result<bool> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE replica SET state = 'done', uploaded_ns = ?2, object_key = ?3, upload_id = NULL, part_size = NULL, \
         last_error = NULL, holds_stated = ?4, resend = 0 \
         WHERE recording_id = ?1 AND generation = ?5 AND state = 'queued'",
        params![recording_id, now_ns, object_key, holds_stated, generation],
    )?;
    if n == 1 {
        tx.execute("DELETE FROM replica_part WHERE recording_id = ?1", [recording_id])?;
    }
    tx.commit()?;
    Ok(n == 1)
}

/// The ids of `holds`, as a manifest states them and [`mark_done`] keeps them.
pub fn hold_ids(holds: &[Hold]) -> String {
    holds.iter().map(|h| h.id.to_string()).collect::<Vec<_>>().join(",")
}

/// Uploaded recordings whose manifest no longer states their holds (a hold
/// placed or released since), with the holds that cover them now.
pub fn restatable(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<(RecordingRow, Vec<Hold>)>> {
    let sql = format!(
        "SELECT {RECORDING_COLUMNS}, q.holds_stated FROM replica q JOIN recording r ON r.id = q.recording_id \
         JOIN camera c ON c.id = r.camera_id WHERE q.state = 'done' AND (q.holds_stated != '' OR {HELD_SQL}) \
         ORDER BY r.id"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows: Vec<(RecordingRow, String)> = st
        .query_map([], |row| Ok((recording_from_row(row)?, row.get(N)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (rec, stated) in rows {
        let now = holds::holding(conn, rec.id)?;
        if hold_ids(&now) != stated {
            out.push((rec, now));
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// The manifest of an uploaded recording was uploaded again, stating these holds.
pub fn restated(conn: &Connection, recording_id: i64, holds_stated: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE replica SET holds_stated = ?2 WHERE recording_id = ?1",
        params![recording_id, holds_stated],
    )
    .map(|_| ())
}

/// An attempt of generation `generation` failed: try again at `next_try_ns`.
pub fn mark_failed(
    conn: &Connection,
    recording_id: i64,
    generation: i64,
    error: &str,
    next_try_ns: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE replica SET attempts = attempts + 1, last_error = ?2, next_try_ns = ?3 \
         WHERE recording_id = ?1 AND generation = ?4",
        params![
            recording_id,
            crate::base::text::one_line(error, 500),
            next_try_ns,
            generation
        ],
    )
    .map(|_| ())
}

pub fn key_uploaded(conn: &Connection, key_id: &[u8]) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM replica_key WHERE key_id = ?1")?
        .query_row([key_id], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
}

pub fn record_key_uploaded(conn: &Connection, key_id: &[u8], now_ns: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO replica_key (key_id, uploaded_ns) VALUES (?1, ?2)")?
        .execute(params![key_id, now_ns])
        .map(|_| ())
}

/// The audit entry whose signed head was uploaded last.
pub fn audit_head_uploaded(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT audit_head_entry FROM replica_target WHERE id = 1", [], |r| {
        r.get(0)
    })
    .optional()
    .map(Option::flatten)
}

pub fn record_audit_head(conn: &Connection, entry: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE replica_target SET audit_head_entry = ?1 WHERE id = 1", [entry])
        .map(|_| ())
}

/// The queue and what has been uploaded.
pub fn lag(conn: &Connection) -> rusqlite::Result<Lag> {
    let (queued, queued_bytes, oldest): (i64, i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(q.bytes), 0), min(r.start_wall_ns) FROM replica q \
             JOIN recording r ON r.id = q.recording_id WHERE q.state = 'queued'",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let (uploaded, uploaded_bytes, last): (i64, i64, Option<i64>) = conn
        .prepare_cached("SELECT count(*), coalesce(sum(bytes), 0), max(uploaded_ns) FROM replica WHERE state = 'done'")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let last_error: Option<String> = conn
        .prepare_cached(
            "SELECT last_error FROM replica WHERE state = 'queued' AND last_error IS NOT NULL \
             ORDER BY next_try_ns DESC LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(Lag {
        queued: queued as u64,
        queued_bytes: queued_bytes as u64,
        oldest_queued_start_ns: oldest,
        uploaded: uploaded as u64,
        uploaded_bytes: uploaded_bytes as u64,
        last_uploaded_ns: last,
        last_error,
    })
}

/// Raises `replication.lagging` while the oldest waiting recording started
/// more than `after_ns` ago, clears it once the bucket has caught up.
pub fn judge_lag(conn: &Connection, after_ns: i64, now_ns: i64) -> rusqlite::Result<Lag> {
    let l = lag(conn)?;
    let behind = l
        .oldest_queued_start_ns
        .map(|t| now_ns - t)
        .filter(|&age| age > after_ns);
    let message = behind.map(|age| {
        format!(
            "Off-box replication is {} min behind: {} recording(s), {} MiB waiting{}",
            age / 60_000_000_000,
            l.queued,
            l.queued_bytes >> 20,
            l.last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        )
    });
    alerts::set_now(conn, Kind::ReplicationLagging, "", message.as_deref(), now_ns)?;
    Ok(l)
}

/// The recording whose ciphertext has this SHA-256 (a restored copy), if any.
pub fn recording_with_sha256(conn: &Connection, sha256: &[u8]) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM recording WHERE sha256 = ?1 LIMIT 1", [sha256], |r| {
        r.get(0)
    })
    .optional()
}

/// A recording brought back from a replica, whole: its row, chunks and
/// final state in one transaction, so an interrupted restore leaves either
/// nothing or a complete row.
pub struct Restored<'a> {
    pub new: crate::db::NewRecording<'a>,
    /// The camera id the file's header names (the box that wrote it).
    pub file_camera_id: i64,
    pub chunks: &'a [crate::db::ChunkRow],
    pub state: &'a str,
    pub frames: i64,
    pub end_pts: i64,
    pub sha256: &'a [u8],
    pub continues_previous: bool,
}

pub fn insert_restored(index: &mut crate::db::Index, r: &Restored<'_>) -> rusqlite::Result<i64> {
    let n = &r.new;
    let tx = index
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO recording (camera_id, file_name, file_id, key_id, codec, state, start_wall_ns, end_wall_ns, \
         observed_wall_ns, timescale, start_pts, end_pts, bytes, frames, chunks, sha256, end_reason, \
         continues_previous, file_camera_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7 + ((?10 - ?9) * 1000000000) / ?8, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
         'restored from the replica', ?15, nullif(?16, ?1))",
        params![
            n.camera_id,
            n.file_name,
            n.file_id,
            n.key_id,
            n.codec,
            r.state,
            n.start_wall_ns,
            n.timescale,
            n.start_pts,
            r.end_pts,
            n.bytes,
            r.frames,
            r.chunks.len() as i64,
            r.sha256,
            r.continues_previous,
            r.file_camera_id
        ],
    )?;
    let id = tx.last_insert_rowid();
    for c in r.chunks {
        crate::db::insert_chunk(&tx, id, c)?;
    }
    tx.commit()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::holds::HoldTarget;
    use crate::db::recordings::SyntheticRecording;
    use crate::db::retention::{oldest_deletable, Pick};
    use crate::db::Index;

    const MIN: i64 = 60_000_000_000;

    /// An index with `n` finished recordings of cam (1 min each, from t=0)
    /// and 1 of other, hashed.
    fn index(n: i64) -> (tempfile::TempDir, Index) {
        let d = tempfile::tempdir().unwrap();
        let mut idx = Index::open(&d.path().join("v.db")).unwrap();
        let cam = idx.camera_id("cam").unwrap();
        let other = idx.camera_id("other").unwrap();
        let mut rows: Vec<SyntheticRecording> = (0..n)
            .map(|i| SyntheticRecording {
                camera_id: cam,
                file_name: format!("cam/{i}.vseg"),
                file_id: vec![i as u8; 16],
                start_wall_ns: i * MIN,
                end_wall_ns: (i + 1) * MIN,
            })
            .collect();
        rows.push(SyntheticRecording {
            camera_id: other,
            file_name: "other/0.vseg".into(),
            file_id: vec![99; 16],
            start_wall_ns: 0,
            end_wall_ns: MIN,
        });
        idx.insert_synthetic_recordings(&rows).unwrap();
        idx.conn().execute("UPDATE recording SET sha256 = x'01'", []).unwrap();
        (d, idx)
    }

    #[test]
    fn recordings_queue_oldest_first_for_the_cameras_named_and_only_once() {
        let (_d, idx) = index(3);
        let c = idx.conn();
        assert_eq!(enqueue(c, &["cam".to_string()], true, 5, 0).unwrap().0, 3);
        assert_eq!(
            enqueue(c, &["cam".to_string()], true, 6, 0).unwrap().0,
            0,
            "queued once"
        );
        let first = next_due(c, 10).unwrap().unwrap();
        assert_eq!((first.rec.start_wall_ns, first.upload_id.as_deref()), (0, None));
        let l = lag(c).unwrap();
        assert_eq!(
            (l.queued, l.queued_bytes, l.oldest_queued_start_ns),
            (3, 90_000_000, Some(0))
        );
        // The other camera only when all are replicated.
        assert_eq!(enqueue(c, &[], false, 7, 0).unwrap().0, 1);
    }

    #[test]
    fn the_floor_never_passes_a_recording_still_being_written() {
        let (_d, idx) = index(3);
        let c = idx.conn();
        c.execute("UPDATE recording SET state = 'writing' WHERE id = 2", [])
            .unwrap();
        let (n, floor) = enqueue(c, &[], false, 0, 0).unwrap();
        assert_eq!((n, floor), (3, 2), "1, 3 and other queued; 2 still written");
        c.execute("UPDATE recording SET state = 'complete' WHERE id = 2", [])
            .unwrap();
        let (n, floor) = enqueue(c, &[], false, 1, floor).unwrap();
        assert_eq!((n, floor), (1, 5));
        assert_eq!(enqueue(c, &[], false, 2, floor).unwrap(), (0, 5));
    }

    #[test]
    fn a_multipart_upload_is_remembered_until_done_and_a_failure_waits() {
        let (_d, idx) = index(2);
        let c = idx.conn();
        enqueue(c, &[], false, 0, 0).unwrap();
        let q = next_due(c, 0).unwrap().unwrap();
        begin_multipart(c, q.rec.id, q.generation, "upload-1", 8 << 20).unwrap();
        assert!(record_part(c, q.rec.id, q.generation, 1, "etag-1").unwrap());
        // What a restart (or kill -9) finds:
        let again = next_due(c, 0).unwrap().unwrap();
        assert_eq!(
            (again.rec.id, again.upload_id.as_deref(), again.part_size),
            (q.rec.id, Some("upload-1"), Some(8 << 20))
        );
        assert_eq!(parts(c, q.rec.id).unwrap(), vec![(1, "etag-1".to_string())]);
        mark_failed(c, q.rec.id, q.generation, "store down", 1_000).unwrap();
        assert_ne!(
            next_due(c, 999).unwrap().unwrap().rec.id,
            q.rec.id,
            "waits its back-off"
        );
        assert_eq!(lag(c).unwrap().last_error.as_deref(), Some("store down"));
        assert_eq!(next_due(c, 1_000).unwrap().unwrap().rec.id, q.rec.id);
        assert!(mark_done(c, q.rec.id, q.generation, "box/recordings/x.vseg", "", 5).unwrap());
        assert!(parts(c, q.rec.id).unwrap().is_empty());
        let l = lag(c).unwrap();
        assert_eq!((l.queued, l.uploaded, l.last_uploaded_ns), (2, 1, Some(5)));
    }

    #[test]
    fn retention_keeps_what_waits_for_the_bucket_only_while_asked_to() {
        let (_d, mut idx) = index(3);
        enqueue(idx.conn(), &[], true, 0, 0).unwrap();
        let cam = idx.camera_id("cam").unwrap();
        let pick = Pick::EndedBy {
            camera_id: cam,
            end_ns: 10 * MIN,
        };
        assert!(oldest_deletable(idx.conn(), pick, 10).unwrap().is_empty());
        let first = next_due(idx.conn(), 0).unwrap().unwrap().rec.id;
        assert!(mark_done(idx.conn(), first, 0, "k", "", 1).unwrap());
        assert_eq!(
            oldest_deletable(idx.conn(), pick, 10).unwrap().len(),
            1,
            "replicated: may go"
        );
        assert!(
            idx.queue_unheld_deletions(&[first + 1], "t", 2).unwrap().is_empty(),
            "still waiting"
        );
        release_all(idx.conn()).unwrap();
        assert_eq!(oldest_deletable(idx.conn(), pick, 10).unwrap().len(), 3);
        // Deleting a recording forgets its queue row.
        idx.queue_unheld_deletions(&[first], "t", 3).unwrap();
        assert_eq!(
            idx.conn()
                .query_row("SELECT count(*) FROM replica", [], |r| r.get::<_, i64>(0))
                .unwrap(),
            3
        );
    }

    #[test]
    fn a_hold_placed_or_released_after_upload_makes_the_manifest_restatable() {
        let (_d, idx) = index(2);
        let c = idx.conn();
        enqueue(c, &[], false, 0, 0).unwrap();
        let id = next_due(c, 0).unwrap().unwrap().rec.id;
        assert!(mark_done(c, id, 0, "k", "", 1).unwrap());
        assert!(restatable(c, 10).unwrap().is_empty());
        let h = holds::place(c, &HoldTarget::Recording(id), "case 7", "t").unwrap();
        let r = restatable(c, 10).unwrap();
        assert_eq!((r.len(), r[0].0.id, hold_ids(&r[0].1)), (1, id, h.to_string()));
        restated(c, id, &h.to_string()).unwrap();
        assert!(restatable(c, 10).unwrap().is_empty());
        holds::release(c, h, "closed", "t").unwrap();
        assert_eq!(
            restatable(c, 10).unwrap()[0].1.len(),
            0,
            "released: restated with no hold"
        );
    }

    #[test]
    fn lag_beyond_the_limit_is_an_alert_that_clears_when_caught_up() {
        let (_d, idx) = index(1);
        let c = idx.conn();
        enqueue(c, &["cam".to_string()], false, 0, 0).unwrap();
        judge_lag(c, 30 * MIN, 10 * MIN).unwrap();
        let open = |c: &Connection| {
            crate::db::alerts::open(c)
                .unwrap()
                .into_iter()
                .filter(|a| a.code == "replication.lagging")
                .count()
        };
        assert_eq!(open(c), 0, "10 min behind is within the limit");
        judge_lag(c, 30 * MIN, 40 * MIN).unwrap();
        assert_eq!(open(c), 1);
        let id = next_due(c, 0).unwrap().unwrap().rec.id;
        assert!(mark_done(c, id, 0, "k", "", 1).unwrap());
        judge_lag(c, 30 * MIN, 41 * MIN).unwrap();
        assert_eq!(open(c), 0);
    }

    #[test]
    fn a_changed_file_goes_again_and_a_camera_no_longer_covered_is_forgotten() {
        let (_d, idx) = index(2);
        let c = idx.conn();
        enqueue(c, &[], false, 0, 0).unwrap();
        let id = next_due(c, 0).unwrap().unwrap().rec.id;
        assert!(mark_done(c, id, 0, "k", "", 1).unwrap());
        requeue_in(c, Some(id)).unwrap();
        assert_eq!(lag(c).unwrap().queued, 3);
        let again = next_due(c, 0).unwrap().unwrap();
        assert_eq!((again.rec.id, again.generation, again.resend), (id, 1, true));
        // An upload of the old file that finishes now changes nothing.
        assert!(!record_part(c, id, 0, 1, "old").unwrap());
        assert!(!mark_done(c, id, 0, "k", "", 2).unwrap());
        assert!(mark_done(c, id, 1, "k", "", 3).unwrap());
        requeue_in(c, Some(id)).unwrap();
        assert_eq!(forget_uncovered(c, &["other".to_string()]).unwrap(), 2);
        assert_eq!(lag(c).unwrap().queued, 1);
    }

    #[test]
    fn a_new_target_is_audited_once_and_forgets_the_uploaded_keys() {
        let (_d, idx) = index(1);
        let c = idx.conn();
        assert!(set_target(c, "daemon", "http://s3/b/p", true, 1).unwrap());
        record_key_uploaded(c, b"12345678", 1).unwrap();
        assert!(!set_target(c, "daemon", "http://s3/b/p", true, 2).unwrap());
        assert!(key_uploaded(c, b"12345678").unwrap());
        enqueue(c, &[], false, 2, 0).unwrap();
        let id = next_due(c, 2).unwrap().unwrap().rec.id;
        assert!(mark_done(c, id, 0, "k", "", 2).unwrap());
        assert!(set_target(c, "daemon", "http://s3/b/other", false, 3).unwrap());
        assert!(!key_uploaded(c, b"12345678").unwrap());
        assert_eq!(lag(c).unwrap().uploaded, 0, "everything goes to the new target");
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'replication.target'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2);
    }
}
