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

use crate::base::clock::{Clock, Clocks};
use crate::db::fixity::{self as rows, Candidate};
use crate::db::Index;
use crate::storage::Storage;

use crate::config::archive::FixityConfig;

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

/// Scrubs one recording and stores the result, stamped with the clock's wall
/// time. None when there was nothing to do.
fn scrub_one(
    storage: &Storage,
    index: &Index,
    c: &Candidate,
    rate: u64,
    stop: &AtomicBool,
    clock: &dyn Clock,
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
    let ts = clock.wall_ns();
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

/// The scrub thread. Stops when `stop` is set. When a cycle is due and what
/// the results are stamped with come from `clock`; the waits themselves are
/// real time.
pub fn run_thread(storage: Storage, db_path: PathBuf, cfg: FixityConfig, stop: Arc<AtomicBool>, clock: Clocks) {
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
    let since = |started_ms: i64| Duration::from_millis((clock.mono_ms() - started_ms).max(0) as u64);
    let mut cycle_started_ms = clock.mono_ms();
    let mut cycle_start_ns = clock.wall_ns();
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
            Ok(Some(c)) => match scrub_one(&storage, &index, &c, cfg.rate_bytes_per_s, &stop, clock.as_ref()) {
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
                        .saturating_sub(since(cycle_started_ms))
                        .max(Duration::from_secs(1)),
                );
                if since(cycle_started_ms) >= cfg.cycle {
                    cycle_started_ms = clock.mono_ms();
                    cycle_start_ns = clock.wall_ns();
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
    use crate::storage::recorder_rig::{Camera, Rig, SECOND, T0};

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

    /// Scrubs every recording due in a cycle that starts now (as the thread does).
    fn scrub_cycle(rig: &Rig, index: &Index) -> Vec<(i64, Outcome)> {
        let stop = AtomicBool::new(false);
        let cycle_start_ns = rig.clock.wall_ns();
        let mut out = Vec::new();
        while let Some(c) = rows::next_candidate(index.conn(), cycle_start_ns).unwrap() {
            let o = scrub_one(&rig.storage, index, &c, 0, &stop, rig.clock.as_ref()).unwrap();
            out.push((c.id, o.unwrap()));
        }
        out
    }

    #[test]
    fn a_scrub_stamps_the_clock_and_finds_a_tampered_file() {
        let rig = Rig::new(T0);
        let mut rec = rig.recorder(2);
        rig.feed(&mut rec, &mut Camera::new(25), 150);
        rec.close("stopped");
        let recs = rig.recordings();
        assert!(recs.len() >= 2, "{} recordings", recs.len());
        // Flip a byte in the middle of the last recording's ciphertext.
        let tampered = recs[recs.len() - 1].clone();
        let path = rig.storage.path_of(&tampered.file_name);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();

        rig.clock.advance_ms(60_000);
        let scrubbed_at = rig.clock.wall_ns();
        assert!(scrubbed_at > T0 + 60 * SECOND);
        let index = rig.index();
        let results = scrub_cycle(&rig, &index);
        assert_eq!(results.len(), recs.len(), "every finished recording, once");
        for r in &recs {
            let want = if r.id == tampered.id {
                Outcome::Mismatch("ciphertext SHA-256 differs from the one recorded when the file was closed".into())
            } else {
                Outcome::Ok
            };
            assert!(results.contains(&(r.id, want.clone())), "recording {}: {want:?}", r.id);
            let ok = i64::from(r.id != tampered.id);
            assert_eq!(
                rows::of_recording(index.conn(), r.id).unwrap(),
                (Some(scrubbed_at), Some(ok)),
                "recording {}: checked at the clock's time",
                r.id
            );
        }
        let st = crate::db::fixity::status(index.conn()).unwrap();
        assert_eq!(st.oldest_verified_ns, Some(scrubbed_at));
        assert_eq!(st.failures.len(), 1);
        assert_eq!(
            (st.failures[0].id, st.failures[0].checked_ns),
            (tampered.id, scrubbed_at)
        );
        assert!(
            scrub_cycle(&rig, &index).is_empty(),
            "nothing is due again in the same cycle"
        );
    }
}
