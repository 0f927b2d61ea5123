//! Fixity: a background scrub that re-hashes every finished recording's
//! ciphertext (no key needed) and compares it with the SHA-256 and size
//! recorded when the file was closed.
//!
//! It reads at a capped rate so recording and playback keep the disk. Each
//! result is stored on the recording (`fixity_ns`, `fixity_ok`,
//! `fixity_detail`); a mismatch is logged, audited, shown as an SSE
//! `integrity` event and fails `/health/ready` until the recording is dealt
//! with (restored, or deleted by an admin). One cycle visits every
//! recording once; the next cycle starts `cycle` after the previous one did.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension};

use crate::db::Index;
use crate::storage::Storage;

pub use crate::config::archive::FixityConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Mismatch(String),
    /// The recording changed under the scrub (deleted, re-encrypted): not a finding.
    Skipped,
}

struct Candidate {
    id: i64,
    file_name: String,
    bytes: i64,
    sha256: Vec<u8>,
}

/// The next recording to scrub in the cycle that started at `cycle_start_ns`:
/// never verified ones first, then the least recently verified. A recording
/// finished after the cycle started waits for the next one (it was hashed
/// as it was written).
fn next_candidate(index: &Index, cycle_start_ns: i64) -> rusqlite::Result<Option<Candidate>> {
    index
        .conn()
        .query_row(
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

/// Hashes a file at no more than `rate` bytes/s (0: unlimited). Returns
/// (SHA-256, length).
pub fn hash_file(path: &std::path::Path, rate: u64, stop: &AtomicBool) -> std::io::Result<Option<([u8; 32], u64)>> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 << 10];
    let mut len = 0u64;
    let t0 = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        len += n as u64;
        if rate > 0 {
            let due = Duration::from_secs_f64(len as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(Some((out, len)))
}

/// Scrubs one recording and stores the result. None when there was nothing to do.
fn scrub_one(
    storage: &Storage,
    index: &Index,
    c: &Candidate,
    rate: u64,
    stop: &AtomicBool,
) -> rusqlite::Result<Option<Outcome>> {
    let path = storage.path_of(&c.file_name);
    let measured = hash_file(&path, rate, stop);
    if matches!(measured, Ok(None)) {
        return Ok(None);
    }
    let problem = match measured {
        Ok(Some((sha, len))) if sha[..] == c.sha256[..] && len as i64 == c.bytes => None,
        Ok(Some((_, len))) if len as i64 != c.bytes => Some(format!("file is {len} bytes, {} were written", c.bytes)),
        Ok(Some(_)) => Some("ciphertext SHA-256 differs from the one recorded when the file was closed".to_string()),
        Ok(None) => return Ok(None),
        Err(e) => Some(format!("cannot read the file: {e}")),
    };
    // The row may have changed while we read (deleted by retention, or
    // re-encrypted into a new file): then this was not a finding.
    let now: Option<(String, Vec<u8>)> = index
        .conn()
        .query_row("SELECT file_name, sha256 FROM recording WHERE id = ?1", [c.id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if now.as_ref() != Some(&(c.file_name.clone(), c.sha256.clone())) {
        return Ok(Some(Outcome::Skipped));
    }
    let ts = crate::base::clock::now_ns();
    match problem {
        None => {
            index.conn().execute(
                "UPDATE recording SET fixity_ns = ?2, fixity_ok = 1, fixity_detail = NULL WHERE id = ?1",
                params![c.id, ts],
            )?;
            Ok(Some(Outcome::Ok))
        }
        Some(what) => {
            let tx = rusqlite::Transaction::new_unchecked(index.conn(), rusqlite::TransactionBehavior::Immediate)?;
            let was_ok: Option<i64> =
                tx.query_row("SELECT fixity_ok FROM recording WHERE id = ?1", [c.id], |r| r.get(0))?;
            tx.execute(
                "UPDATE recording SET fixity_ns = ?2, fixity_ok = 0, fixity_detail = ?3 WHERE id = ?1",
                params![c.id, ts, what],
            )?;
            if was_ok != Some(0) {
                crate::db::audit::append(
                    &tx,
                    "fixity",
                    "fixity.mismatch",
                    &format!("recording {}", c.id),
                    crate::db::audit::Outcome::Failed,
                    &format!("{}: {what}", c.file_name),
                )?;
            }
            tx.commit()?;
            tracing::error!(recording = c.id, file = %c.file_name, "FIXITY FAILURE: {what}");
            Ok(Some(Outcome::Mismatch(what)))
        }
    }
}

/// The scrub thread. Stops when `stop` is set.
pub fn run_thread(storage: Storage, db_path: PathBuf, cfg: FixityConfig, stop: Arc<AtomicBool>) {
    if cfg.rate_bytes_per_s == 0 {
        tracing::warn!("fixity scrubbing is off ([fixity] rate_mb_per_s = 0)");
        return;
    }
    let index = match Index::open(&db_path) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("fixity cannot open the index, so no scrubbing: {e}");
            return;
        }
    };
    // A background connection: a small page cache is plenty.
    let _ = index.conn().execute_batch("PRAGMA cache_size = -256");
    let sleep = |d: Duration| {
        let until = Instant::now() + d;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200).min(until.saturating_duration_since(Instant::now())));
        }
    };
    let mut cycle_started = Instant::now();
    let mut cycle_start_ns = crate::base::clock::now_ns();
    let (mut checked, mut failed) = (0u64, 0u64);
    let mut volume_gone = false;
    while !stop.load(Ordering::Relaxed) {
        // A vanished volume is a storage fault (recording reports it), not
        // a change to the files: pause the scrub until it is back.
        if let Err(e) = storage.check_volume() {
            if !volume_gone {
                tracing::warn!("fixity scrub paused: {e}");
                volume_gone = true;
            }
            sleep(Duration::from_secs(5));
            continue;
        }
        volume_gone = false;
        match next_candidate(&index, cycle_start_ns) {
            Ok(Some(c)) => match scrub_one(&storage, &index, &c, cfg.rate_bytes_per_s, &stop) {
                Ok(Some(Outcome::Ok)) => checked += 1,
                Ok(Some(Outcome::Mismatch(_))) => {
                    checked += 1;
                    failed += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("fixity: {e}");
                    sleep(Duration::from_secs(5));
                }
            },
            Ok(None) => {
                if checked > 0 {
                    tracing::info!(recordings = checked, failures = failed, "fixity cycle complete");
                }
                sleep(
                    cfg.cycle
                        .saturating_sub(cycle_started.elapsed())
                        .max(Duration::from_secs(1)),
                );
                if cycle_started.elapsed() >= cfg.cycle {
                    cycle_started = Instant::now();
                    cycle_start_ns = crate::base::clock::now_ns();
                    (checked, failed) = (0, 0);
                }
            }
            Err(e) => {
                tracing::warn!("fixity: {e}");
                sleep(Duration::from_secs(5));
            }
        }
    }
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

#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub id: i64,
    pub camera: String,
    pub file: String,
    pub checked_ns: i64,
    pub detail: String,
}

pub fn status(conn: &rusqlite::Connection) -> rusqlite::Result<Status> {
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

pub fn failures(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Failure>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_cap_is_respected() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, vec![7u8; 3 << 20]).unwrap();
        let stop = AtomicBool::new(false);
        let t = Instant::now();
        let (sha, len) = hash_file(&p, 10 << 20, &stop).unwrap().unwrap();
        assert_eq!(len, 3 << 20);
        assert!(t.elapsed() >= Duration::from_millis(290), "{:?}", t.elapsed());
        assert_eq!(
            sha[..],
            ring::digest::digest(&ring::digest::SHA256, &vec![7u8; 3 << 20]).as_ref()[..]
        );
    }
}
