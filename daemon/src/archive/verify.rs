//! `vigil verify`: authenticates every chunk of every recording and checks the
//! file against its index row (chunk count and positions, frames, length,
//! ciphertext SHA-256). Reports files without rows and rows without files.
//! A recording that fails raises a `recording.tampered` alert.

use crate::db::{Index, IndexError, RecordingRow};
use crate::keys::KeyLookup;
use crate::storage::Storage;
use vigil_format::vseg::SegmentReader;

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub recordings: usize,
    pub ok: usize,
    pub in_progress: usize,
    /// One line per failure, naming the recording, its file and the chunk.
    pub failures: Vec<String>,
}

pub fn verify(
    index: &Index,
    storage: &Storage,
    keys: &dyn KeyLookup,
    camera: Option<&str>,
) -> Result<VerifyReport, IndexError> {
    let mut rep = VerifyReport::default();
    let mut after = 0;
    loop {
        let page = index.recordings_page(camera, after, 500)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for rec in &page {
            rep.recordings += 1;
            match verify_one(index, storage, keys, rec) {
                Ok(true) => rep.ok += 1,
                Ok(false) => rep.in_progress += 1,
                // Deleted (retention, shredding) while being checked: not a failure.
                Err(_) if matches!(index.recording(rec.id), Ok(None)) => {}
                Err(what) => {
                    let line = format!("recording {} ({}): {what}", rec.id, rec.file_name);
                    tamper_alert(index, rec, &what);
                    rep.failures.push(line);
                }
            }
        }
    }
    let known = index.file_names()?;
    match storage.orphans(&known) {
        Ok(orphans) => {
            for f in orphans {
                let cam_matches = camera.is_none_or(|c| f.starts_with(&format!("{c}/")));
                if cam_matches {
                    rep.failures
                        .push(format!("file {f}: no index row names it (left in place)"));
                }
            }
        }
        Err(e) => rep.failures.push(format!("storage dir: {e}")),
    }
    Ok(rep)
}

/// A recording that fails verification raises `recording.tampered` for its camera.
fn tamper_alert(index: &Index, rec: &RecordingRow, what: &str) {
    use crate::db::alerts::{raise_now, Kind, Raise};
    let message = format!(
        "Recording {} of camera {} failed verification ({}): {what}",
        rec.id, rec.camera, rec.file_name
    );
    let r = raise_now(
        index.conn(),
        &Raise::camera(Kind::RecordingTampered, &rec.camera, &message),
        crate::base::clock::now_ns(),
    );
    if let Err(e) = r {
        tracing::warn!(recording = rec.id, "cannot store the tamper alert: {e}");
    }
}

/// Ok(true): verified; Ok(false): still being written, prefix verified.
fn verify_one(index: &Index, storage: &Storage, keys: &dyn KeyLookup, rec: &RecordingRow) -> Result<bool, String> {
    let path = storage.path_of(&rec.file_name);
    if !path.exists() {
        return Err("file is missing".into());
    }
    let mut r = SegmentReader::open(&path, keys).map_err(|e| e.to_string())?;
    if r.header().camera_id != rec.file_camera_id as u64 {
        return Err("file header names another camera".into());
    }
    let scan = r.scan().map_err(|e| e.to_string())?;
    let rows = index.chunks(rec.id).map_err(|e| e.to_string())?;
    // Chunk rows must describe the authenticated records, in order.
    for (row, c) in rows.iter().zip(scan.chunks.iter()) {
        if row.idx as u64 != c.pos.index || row.offset as u64 != c.pos.offset || row.first_pts != c.first_pts {
            return Err(format!("chunk {}: index row does not match the file", row.idx));
        }
    }
    if rec.state == "writing" {
        if scan.chunks.len() as i64 >= rec.chunks {
            return Ok(false);
        }
        return Err(scan
            .error
            .map_or_else(|| "fewer chunks than indexed".to_string(), |e| e.to_string()));
    }
    if let Some(e) = scan.error {
        return Err(e.to_string());
    }
    if scan.final_kind.is_none() {
        return Err("no final record".into());
    }
    let mut problems = Vec::new();
    if scan.chunks.len() as i64 != rec.chunks || rows.len() as i64 != rec.chunks {
        problems.push(format!(
            "{} chunks in the file, {} in the index",
            scan.chunks.len(),
            rec.chunks
        ));
    }
    if scan.summary.frames as i64 != rec.frames {
        problems.push(format!(
            "{} frames in the file, {} in the index",
            scan.summary.frames, rec.frames
        ));
    }
    if scan.file_len as i64 != rec.bytes {
        problems.push(format!(
            "{} bytes in the file, {} in the index",
            scan.file_len, rec.bytes
        ));
    }
    if rec.sha256.as_deref() != Some(&scan.sha256[..]) {
        problems.push(format!(
            "ciphertext SHA-256 {} differs from the index {}",
            vigil_format::hex(&scan.sha256),
            rec.sha256
                .as_deref()
                .map(vigil_format::hex)
                .unwrap_or_else(|| "(none)".into())
        ));
    }
    if problems.is_empty() {
        Ok(true)
    } else {
        Err(problems.join("; "))
    }
}

/// Authenticates one loose recording file (e.g. a copy taken off the box)
/// with this device's keyring. Ok: a one-line description; Err: why not.
pub fn verify_file(path: &std::path::Path, keys: &dyn KeyLookup) -> Result<String, String> {
    let mut r = SegmentReader::open(path, keys).map_err(|e| e.to_string())?;
    let key = r.header().key_id;
    let scan = r.scan().map_err(|e| e.to_string())?;
    if let Some(e) = scan.error {
        return Err(e.to_string());
    }
    Ok(format!(
        "{}: authentic, {} frames in {} chunks, sealed under data key {key}",
        path.display(),
        scan.summary.frames,
        scan.summary.media_chunks
    ))
}
