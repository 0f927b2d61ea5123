//! What happens to a recording after it is written: the start-up self test,
//! resealing under another data key, and recovery of a file cut short by a
//! crash (its last authenticated chunk becomes its end).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::*;
use crate::keys::DataKey;

/// Seals and opens one record under a fresh random key: proves the AEAD
/// works on this machine (the health check's encryption self-test).
pub fn self_test() -> bool {
    let Ok(key) = crate::keys::random_bytes::<32>() else {
        return false;
    };
    let Ok(salt) = crate::keys::random_bytes::<32>() else {
        return false;
    };
    let dk = DataKey::from_bytes(key);
    // Both versions' key derivations, and the v2 audio record kind.
    [
        (VERSION_1, RecordKind::Media),
        (VERSION, RecordKind::Media),
        (VERSION, RecordKind::Audio),
    ]
    .into_iter()
    .all(|(version, kind)| {
        let mut header = [7u8; HEADER_LEN];
        header[8..10].copy_from_slice(&version.to_be_bytes());
        seals_and_opens(&FileSealer::new(&dk, &header, &salt), kind)
    })
}

/// One record sealed, opened, and refused once tampered with.
fn seals_and_opens(sealer: &FileSealer, kind: RecordKind) -> bool {
    let plain = b"vigil self-test record".to_vec();
    let mut buf = plain.clone();
    sealer.seal(3, kind, &mut buf);
    if buf.len() != plain.len() + TAG_LEN || buf[..plain.len()] == plain[..] {
        return false;
    }
    let mut tampered = buf.clone();
    tampered[0] ^= 1;
    let n = sealer.open(3, kind, &mut buf);
    n == Some(plain.len()) && buf[..plain.len()] == plain[..] && sealer.open(3, kind, &mut tampered).is_none()
}

/// Re-seals a finished recording under another data key: every record of
/// `src` is authenticated and re-sealed, with the same kind, position and
/// plaintext, into `dst` (which must not exist) under `header`. Record
/// lengths do not change, so the index's chunk offsets stay valid. `src`
/// must end with a final record. `dst` is synced, its directory too.
pub fn reseal(
    src: &Path,
    keys: &dyn crate::keys::KeyLookup,
    dst: &Path,
    header: &Header,
    key: &DataKey,
) -> Result<Finished, FormatError> {
    let mut reader = SegmentReader::open(src, keys)?;
    if header.max_record_plaintext < reader.header.max_record_plaintext {
        return Err(FormatError::BadHeader {
            path: dst.to_path_buf(),
            what: "new header allows smaller records than the source",
        });
    }
    let mut w = SegmentWriter::create_raw(dst, header, key)?;
    let mut buf = Vec::new();
    let mut index = 0u64;
    let mut offset = HEADER_LEN as u64;
    loop {
        if offset >= reader.file_len {
            return Err(FormatError::MissingFinal {
                path: src.to_path_buf(),
                last_index: index.saturating_sub(1),
            });
        }
        let (kind, pos) = reader.read_record_into(index, offset, &mut buf)?;
        w.append_record(kind, &mut buf)?;
        offset += pos.len;
        index += 1;
        if kind.is_final() {
            break;
        }
    }
    if offset != reader.file_len {
        return Err(FormatError::TrailingData {
            path: src.to_path_buf(),
            extra: reader.file_len - offset,
        });
    }
    w.sync()?;
    if let Some(dir) = dst.parent() {
        sync_dir(dir)?;
    }
    let sha256 = arr(w.hash.clone().finish().as_ref());
    Ok(Finished {
        bytes: w.len,
        sha256,
        summary: w.summary,
        records: w.next_index,
    })
}

/// Result of crash recovery on one file.
#[derive(Debug)]
pub struct Recovered {
    pub scan: Scan,
    /// Bytes cut from a torn or unauthenticated tail.
    pub truncated_bytes: u64,
    /// Whether a recovered-final record was appended by this call.
    pub appended: bool,
    pub finished: Finished,
}

/// Crash recovery: keep the longest authenticated prefix, cut the rest, and
/// append a recovered-final record unless the file is already final.
/// Idempotent: running it twice changes nothing the second time.
pub fn recover(path: &Path, keys: &dyn crate::keys::KeyLookup) -> Result<Recovered, FormatError> {
    let mut reader = SegmentReader::open(path, keys)?;
    let scan = reader.scan()?;
    if scan.final_kind.is_some() && scan.error.is_none() {
        let finished = Finished {
            bytes: scan.file_len,
            sha256: scan.sha256,
            summary: scan.summary,
            records: scan.chunks.len() as u64 + scan.audio_records + 2,
        };
        return Ok(Recovered {
            scan,
            truncated_bytes: 0,
            appended: false,
            finished,
        });
    }
    if scan.stream.is_none() {
        // Not even the stream record survived: nothing to keep.
        return Err(scan.error.unwrap_or(FormatError::MissingFinal {
            path: path.to_path_buf(),
            last_index: 0,
        }));
    }
    // Keep the authenticated prefix (with a final record present, this cuts trailing junk).
    let keep = scan.authenticated_len;
    let truncated_bytes = scan.file_len - keep;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| FormatError::io(path, e))?;
    file.set_len(keep).map_err(|e| FormatError::io(path, e))?;
    file.sync_all().map_err(|e| FormatError::io(path, e))?;
    drop(file);
    let mut appended = false;
    if scan.final_kind.is_none() {
        let records = 1 + scan.chunks.len() as u64 + scan.audio_records;
        let mut f = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| FormatError::io(path, e))?;
        let mut buf = scan.summary.encode();
        reader.sealer.seal(records, RecordKind::RecoveredFinal, &mut buf);
        let mut rec = Vec::with_capacity(RECORD_PREFIX_LEN + buf.len());
        rec.extend_from_slice(&(buf.len() as u32).to_be_bytes());
        rec.push(RecordKind::RecoveredFinal as u8);
        rec.extend_from_slice(&buf);
        f.write_all(&rec).map_err(|e| FormatError::io(path, e))?;
        f.sync_data().map_err(|e| FormatError::io(path, e))?;
        appended = true;
    }
    // Re-scan so the returned hash and length describe the file as it now is.
    let mut reader = SegmentReader::open(path, keys)?;
    let scan = reader.scan()?;
    if let Some(e) = scan.error {
        return Err(e);
    }
    let finished = Finished {
        bytes: scan.file_len,
        sha256: scan.sha256,
        summary: scan.summary,
        records: scan.chunks.len() as u64 + scan.audio_records + 2,
    };
    Ok(Recovered {
        scan,
        truncated_bytes,
        appended,
        finished,
    })
}
