//! Helpers for `scripts/bench` (hidden subcommands): the writer's raw
//! throughput, and a long archive made by replaying a real recording through
//! the real recorder.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::db::recordings::SyntheticRecording;
use crate::db::Index;
use crate::keys::{random_bytes, DataKey, KeyLookup};
use crate::storage::recorder::{Event, Recorder, RecorderConfig};
use crate::storage::Storage;
use vigil_format::media::{Frame, StreamParams};
use vigil_format::vseg::{self, Chunk, Codec, FrameMeta, Header, RecordKind, SegmentReader, SegmentWriter, StreamInfo};

/// Seals and writes `mib` MiB as records of `record_kib` KiB, fdatasync per record.
/// Returns (bytes, seconds).
pub fn writer_throughput(dir: &Path, mib: usize, record_kib: usize) -> anyhow::Result<(u64, f64)> {
    std::fs::create_dir_all(dir)?;
    let key = DataKey::from_bytes(random_bytes::<32>()?);
    let header = Header {
        max_record_plaintext: vseg::DEFAULT_MAX_RECORD_PLAINTEXT,
        key_id: key.id(),
        file_id: random_bytes::<16>()?,
        camera_id: 1,
        start_wall_ns: 0,
        salt: random_bytes::<32>()?,
    };
    let si = StreamInfo {
        codec: Codec::H264,
        timescale: 90_000,
        width: 1920,
        height: 1080,
        start_pts: 0,
        sample_entry: vec![0; 100],
        audio: None,
    };
    let path = dir.join("bench.vseg");
    let _ = std::fs::remove_file(&path);
    let mut w = SegmentWriter::create(&path, &header, &key, &si)?;
    let frame = vec![0x5au8; (record_kib * 1024).saturating_sub(21).max(1)];
    let records = (mib * 1024 / record_kib.max(1)).max(1);
    let mut buf = Vec::new();
    let t = std::time::Instant::now();
    for _ in 0..records {
        let meta = [FrameMeta {
            duration: 3600,
            size: frame.len() as u32,
            key: true,
        }];
        Chunk::encode_into(0, &meta, &[&frame], &mut buf);
        w.append_chunk(&mut buf, 1, 3600)?;
        w.sync()?;
    }
    let fin = w.finish()?;
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok((fin.bytes, secs))
}

/// Seals `mib` MiB in memory as records of `record_kib` KiB (no I/O): the
/// figure to set beside `openssl speed`. Returns (bytes, seconds).
pub fn seal_throughput(mib: usize, record_kib: usize) -> anyhow::Result<(u64, f64)> {
    let key = DataKey::from_bytes(random_bytes::<32>()?);
    let header = [0u8; vseg::HEADER_LEN];
    let sealer = vseg::FileSealer::new(&key, &header, &random_bytes::<32>()?);
    let plain = vec![0x5au8; record_kib * 1024];
    let records = (mib * 1024 / record_kib.max(1)).max(1);
    let mut buf = Vec::with_capacity(plain.len() + vseg::TAG_LEN);
    let t = std::time::Instant::now();
    for i in 0..records {
        buf.clear();
        buf.extend_from_slice(&plain);
        sealer.seal(i as u64, RecordKind::Media, &mut buf);
    }
    Ok(((records * plain.len()) as u64, t.elapsed().as_secs_f64()))
}

/// Replays recording `source_id` through a [`Recorder`] for `camera` until
/// `minutes` of media exist: real sealing, real files, real index rows.
pub fn synthesize(
    storage: &Storage,
    db: &Path,
    keys: Arc<dyn KeyLookup>,
    camera: &str,
    source_id: i64,
    minutes: u32,
    segment: std::time::Duration,
) -> anyhow::Result<u64> {
    let index = Index::open(db)?;
    let src = index
        .recording(source_id)?
        .ok_or_else(|| anyhow::anyhow!("no recording {source_id}"))?;
    let mut reader = SegmentReader::open(&storage.path_of(&src.file_name), keys.as_ref())?;
    let (si, _) = reader.read_stream_info()?;
    let mut frames: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    let mut buf = Vec::new();
    for c in index.chunks(source_id)? {
        let (kind, _) = reader.read_record_into(c.idx as u64, c.offset as u64, &mut buf)?;
        anyhow::ensure!(kind == RecordKind::Media, "chunk {} is not media", c.idx);
        let chunk = Chunk::decode(&buf).map_err(anyhow::Error::msg)?;
        frames.extend(chunk.iter().map(|(_, f, d)| (f.duration, f.key, d.to_vec())));
    }
    anyhow::ensure!(
        frames.first().is_some_and(|f| f.1),
        "source recording does not start with a key frame"
    );
    let params = Arc::new(StreamParams {
        codec: si.codec,
        timescale: si.timescale,
        width: si.width,
        height: si.height,
        sample_entry: si.sample_entry.clone(),
    });
    let camera_id = index.camera_id(camera)?;
    let mut rec = Recorder::new(
        RecorderConfig {
            camera_id,
            camera: camera.to_string(),
            segment_duration: segment,
            sync_interval: std::time::Duration::ZERO,
            import_start_wall_ns: None,
            clock: crate::base::clock::system(),
            offline_alert_after_ns: None,
            gap_alert_after_ns: None,
        },
        storage.clone(),
        Index::open(db)?,
        keys,
    )?;
    let target = i64::from(minutes) * 60 * i64::from(si.timescale);
    let mut pts = 0i64;
    let mut count = 0u64;
    let mut first = true;
    while pts < target {
        for (dur, key, data) in &frames {
            let p = if first { Some(params.clone()) } else { None };
            first = false;
            rec.handle(Event::Frames(vec![Frame {
                pts,
                key: *key,
                data: data.clone(),
                params: p,
            }]));
            pts += i64::from(*dur);
            count += 1;
        }
    }
    rec.close("synthesized");
    anyhow::ensure!(rec.stats.write_errors == 0, "{} write errors", rec.stats.write_errors);
    Ok(count)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summarize(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    format!(
        "mean {:.3} ms, median {:.3} ms, p99 {:.3} ms",
        mean,
        percentile(&v, 0.5),
        percentile(&v, 0.99)
    )
}

/// Key and secret latencies on an open keyring: data key unwrap (crypto
/// only, and through the database with the cache cold), secret set (one
/// durable transaction with its audit entry) and get (audited).
pub fn keys(kr: &crate::keys::keyring::Keyring, iterations: usize) -> Result<String, crate::keys::KeyError> {
    use crate::keys::wrap::Purpose;
    let n = iterations.max(1);
    let dek = kr.active_key(Purpose::Recording, "bench:unwrap", None, None)?;
    let kek = crate::keys::sealing::Kek::generate()?;
    let (nonce, wrapped) = crate::keys::wrap::wrap_dek(&kek, &dek, "recording", "bench:unwrap")?;
    let t = Instant::now();
    for _ in 0..n {
        let k = crate::keys::wrap::unwrap_dek(&kek, dek.id(), "recording", "bench:unwrap", &nonce, &wrapped)?;
        std::hint::black_box(k.bytes());
    }
    let unwrap_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let mut cold = Vec::with_capacity(n);
    for _ in 0..n {
        kr.forget(&[dek.id()]);
        let t = Instant::now();
        let k = kr.lookup(&dek.id())?;
        cold.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(k);
    }
    let mut set = Vec::with_capacity(n);
    let mut get = Vec::with_capacity(n);
    let secret_err = |e: crate::keys::secrets::SecretError| crate::keys::KeyError::Keyring(e.to_string());
    for i in 0..n {
        let value = format!("bench-value-{i:08}");
        let t = Instant::now();
        crate::keys::secrets::set(kr, "bench-secret", value.as_bytes(), None).map_err(secret_err)?;
        set.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let v = crate::keys::secrets::get(kr, "bench-secret", "benchmark").map_err(secret_err)?;
        get.push(t.elapsed().as_secs_f64() * 1e3);
        if v.as_slice() != value.as_bytes() {
            return Err(crate::keys::KeyError::Keyring(
                "benchmark secret read back wrong".into(),
            ));
        }
    }
    crate::keys::secrets::remove(kr, "bench-secret").map_err(secret_err)?;
    Ok(format!(
        "dek unwrap (ChaCha20-Poly1305, crypto only): {unwrap_us:.2} us\n\
         dek lookup (SQLite row + unwrap, cache cold): {}\n\
         secret set (encrypt + durable transaction + audit entry): {}\n\
         secret get (read + decrypt + audit entry): {}",
        summarize(cold),
        summarize(set),
        summarize(get)
    ))
}

/// One retention pass over an index of `n` recordings (4 cameras, 1-minute
/// recordings, one empty file each) with 100 legal holds: first a pass with
/// nothing to delete, then one where the age rule deletes the oldest 10%
/// (durably: garbage rows, unlink, directory fsync). Prints both timings.
pub fn retention_pass(n: usize) -> anyhow::Result<()> {
    use crate::archive::retention::run_pass;
    use crate::config::archive::{CameraLimits, RetentionPolicy};
    let dir = tempfile_dir("vigil-retention-bench")?;
    let mut storage = Storage::new(&dir.join("rec"));
    storage.ensure()?;
    let mut index = Index::open(&dir.join("db/vigil.db"))?;
    let minute = 60_000_000_000i64;
    let now = crate::base::clock::now_ns();
    let start0 = now - n as i64 / 4 * minute;
    let t = Instant::now();
    {
        let cams: Vec<i64> = (0..4)
            .map(|c| index.camera_id(&format!("cam{c}")))
            .collect::<Result<_, _>>()?;
        for c in 0..4 {
            std::fs::create_dir_all(storage.dir().join(format!("cam{c}")))?;
        }
        let mut rows = Vec::with_capacity(n);
        for i in 0..n {
            let cam = i % 4;
            let start = start0 + (i / 4) as i64 * minute;
            let file_name = format!("cam{cam}/{i:08}.vseg");
            std::fs::File::create(storage.path_of(&file_name))?;
            rows.push(SyntheticRecording {
                camera_id: cams[cam],
                file_name,
                file_id: (i as u128).to_le_bytes().to_vec(),
                start_wall_ns: start,
                end_wall_ns: start + minute,
            });
        }
        index.insert_synthetic_recordings(&rows)?;
        for h in 0..100 {
            let s = start0 + h * 1000 * minute;
            crate::db::holds::place(
                index.conn(),
                &crate::db::holds::HoldTarget::Range {
                    camera: format!("cam{}", h % 4),
                    start_ns: s,
                    end_ns: s + 10 * minute,
                },
                "bench",
                "bench",
            )?;
        }
    }
    println!(
        "retention_setup recordings={n} holds=100 seconds={:.1}",
        t.elapsed().as_secs_f64()
    );
    let space = || Some((1u64 << 40, 1u64 << 41));
    // Idle: every rule runs (age and size per camera, the floor) and finds nothing.
    let mut policy = RetentionPolicy::default();
    for c in 0..4 {
        policy.cameras.insert(
            format!("cam{c}"),
            CameraLimits {
                retention_days: Some(3650),
                max_bytes: Some(u64::MAX / 2),
            },
        );
    }
    let t = Instant::now();
    let rep = run_pass(&storage, &mut index, &policy, now, &space, "bench")?;
    println!(
        "retention_pass_idle recordings={n} deleted={} ms={:.1}",
        rep.deleted.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    // Days so that the oldest 10% are past it.
    let keep_minutes = (n as i64 / 4) * 9 / 10;
    let days = (keep_minutes / 1440).max(1) as u32;
    for c in 0..4 {
        policy.cameras.insert(
            format!("cam{c}"),
            CameraLimits {
                retention_days: Some(days),
                max_bytes: Some(u64::MAX / 2),
            },
        );
    }
    let t = Instant::now();
    let rep = run_pass(&storage, &mut index, &policy, now, &space, "bench")?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "retention_pass_delete recordings={n} deleted={} held_kept={} ms={:.1} per_deletion_us={:.0}",
        rep.deleted.len(),
        rep.held_kept,
        secs * 1e3,
        secs * 1e6 / rep.deleted.len().max(1) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir(prefix: &str) -> anyhow::Result<std::path::PathBuf> {
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
