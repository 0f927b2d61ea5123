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

use crate::db::fixity::{self as rows, Candidate};
use crate::db::Index;
use crate::storage::Storage;

pub use crate::config::archive::FixityConfig;
pub use crate::db::fixity::{failures, status, Failure, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Mismatch(String),
    /// The recording changed under the scrub (deleted, re-encrypted): not a finding.
    Skipped,
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
    let now = rows::current_file(index.conn(), c.id)?;
    if now.as_ref() != Some(&(c.file_name.clone(), c.sha256.clone())) {
        return Ok(Some(Outcome::Skipped));
    }
    let ts = crate::base::clock::now_ns();
    match problem {
        None => {
            rows::record_ok(index.conn(), c.id, ts)?;
            Ok(Some(Outcome::Ok))
        }
        Some(what) => {
            rows::record_mismatch(index.conn(), c.id, &c.file_name, ts, &what)?;
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
    let _ = index.use_small_cache();
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
        match rows::next_candidate(index.conn(), cycle_start_ns) {
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
