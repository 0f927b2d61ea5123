//! Export: a fragmented MP4 of any time range across recordings, starting at
//! the key frame at or before the start. Streams one chunk at a time.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::index::{ns_to_ticks, ChunkRow, Index, IndexError, RecordingRow};
use crate::keys::KeyLookup;
use crate::mp4;
use crate::storage::Storage;
use crate::vseg::{self, Chunk, FormatError, RecordKind, SegmentReader};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown camera \"{0}\"")]
    UnknownCamera(String),
    #[error("no recordings of camera \"{camera}\" between {start} and {end}")]
    NothingToExport { camera: String, start: String, end: String },
    #[error("the end of the range must be after its start")]
    EmptyRange,
    #[error("recording {id}: integrity check failed: {source}")]
    Integrity {
        id: i64,
        #[source]
        source: FormatError,
    },
    #[error("recording {id} ({file}): {what}")]
    Mismatch { id: i64, file: String, what: String },
    #[error("recordings in the range use different timescales; export them separately")]
    MixedTimescales,
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ExportError {
    /// Whether this error means stored data failed an integrity check.
    pub fn is_integrity(&self) -> bool {
        matches!(self, ExportError::Integrity { .. } | ExportError::Mismatch { .. })
    }
}

#[derive(Debug, Default, Clone)]
pub struct ExportReport {
    pub recordings: Vec<i64>,
    pub frames: u64,
    pub bytes: u64,
    pub first_wall_ns: i64,
    pub end_wall_ns: i64,
}

struct Planned {
    rec: RecordingRow,
    chunks: Vec<ChunkRow>,
}

fn fmt_ns(ns: i64) -> String {
    crate::cli_time::format_ns(ns)
}

/// Which recordings and chunks cover `[start_ns, end_ns)`, starting at the key
/// frame at or before `start_ns`.
fn plan(index: &Index, camera: &str, start_ns: i64, end_ns: i64) -> Result<Vec<Planned>, ExportError> {
    if end_ns <= start_ns {
        return Err(ExportError::EmptyRange);
    }
    let camera_id = index
        .find_camera_id(camera)?
        .ok_or_else(|| ExportError::UnknownCamera(camera.to_string()))?;
    let mut out = Vec::new();
    for rec in index.recordings_overlapping(camera_id, start_ns, end_ns)? {
        let all = index.chunks(rec.id)?;
        let first = all
            .iter()
            .position(|c| rec.wall_of(c.first_pts + c.duration) > start_ns);
        let Some(mut first) = first else { continue };
        if out.is_empty() {
            while first > 0 && !all[first].key_frame {
                first -= 1;
            }
        }
        let chunks: Vec<ChunkRow> = all[first..]
            .iter()
            .take_while(|c| rec.wall_of(c.first_pts) < end_ns)
            .cloned()
            .collect();
        if !chunks.is_empty() {
            out.push(Planned { rec, chunks });
        }
    }
    if out.is_empty() {
        return Err(ExportError::NothingToExport {
            camera: camera.to_string(),
            start: fmt_ns(start_ns),
            end: fmt_ns(end_ns),
        });
    }
    Ok(out)
}

/// Opens a planned recording and checks what can be checked cheaply before
/// any byte is exported: header, key, length, and the final record.
fn open_checked(
    storage: &Storage,
    keys: &dyn KeyLookup,
    p: &Planned,
) -> Result<(SegmentReader, vseg::StreamInfo), ExportError> {
    let id = p.rec.id;
    let integrity = |source| ExportError::Integrity { id, source };
    let mismatch = |what: String| ExportError::Mismatch {
        id,
        file: p.rec.file_name.clone(),
        what,
    };
    let mut r = SegmentReader::open(&storage.path_of(&p.rec.file_name), keys).map_err(integrity)?;
    if r.header().camera_id != p.rec.camera_id as u64 {
        return Err(mismatch("file belongs to another camera".into()));
    }
    // Record 0 first: a wrong key or an edited header fails here, with that message.
    let (si, _) = r.read_stream_info().map_err(integrity)?;
    if p.rec.state != "writing" {
        if r.file_len() != p.rec.bytes as u64 {
            return Err(mismatch(format!(
                "file is {} bytes, the index says {}",
                r.file_len(),
                p.rec.bytes
            )));
        }
        let summary = r.read_final(p.rec.chunks as u64 + 2).map_err(integrity)?;
        if i64::from(summary.media_chunks) != p.rec.chunks || summary.frames as i64 != p.rec.frames {
            return Err(mismatch("final record does not match the index".into()));
        }
    }
    Ok((r, si))
}

/// What an export reads from: the index, the recordings, and their keys.
#[derive(Clone, Copy)]
pub struct Archive<'a> {
    pub index: &'a Index,
    pub storage: &'a Storage,
    pub keys: &'a dyn KeyLookup,
}

/// Writes the export to `out`. On error, what was written is incomplete and
/// must be discarded by the caller.
pub fn export<W: Write>(
    archive: Archive<'_>,
    camera: &str,
    start_ns: i64,
    end_ns: i64,
    out: &mut W,
    out_name: &Path,
) -> Result<ExportReport, ExportError> {
    let Archive { index, storage, keys } = archive;
    let planned = plan(index, camera, start_ns, end_ns)?;
    let output = |source| ExportError::Output {
        path: out_name.to_path_buf(),
        source,
    };

    // Check every recording first, so a tampered file fails before output starts.
    let mut opened = Vec::with_capacity(planned.len());
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for p in &planned {
        let (r, si) = open_checked(storage, keys, p)?;
        let desc = match entries.iter().position(|e| *e == si.sample_entry) {
            Some(i) => i,
            None => {
                entries.push(si.sample_entry.clone());
                entries.len() - 1
            }
        };
        opened.push((r, si, desc as u32 + 1));
    }
    let timescale = opened[0].1.timescale;
    if opened.iter().any(|(_, si, _)| si.timescale != timescale) {
        return Err(ExportError::MixedTimescales);
    }
    let ts = i64::from(timescale);
    let first = &planned[0];
    let origin_ns = first.rec.wall_of(first.chunks[0].first_pts);
    let last = &planned[planned.len() - 1];
    let last_chunk = &last.chunks[last.chunks.len() - 1];
    let end_guess = end_ns.min(last.rec.wall_of(last_chunk.first_pts + last_chunk.duration));
    let duration = ns_to_ticks(end_guess - origin_ns, ts).max(0) as u64;
    let si0 = &opened[0].1;
    let init = mp4::init_segment(&mp4::TrackInfo {
        timescale,
        width: si0.width,
        height: si0.height,
        duration,
        sample_entries: &entries,
    });
    out.write_all(&init).map_err(output)?;

    let mut report = ExportReport {
        first_wall_ns: origin_ns,
        bytes: init.len() as u64,
        ..Default::default()
    };
    let mut seq = 0u32;
    let mut prev_end: Option<i64> = None;
    let mut buf = Vec::new();
    let mut samples = Vec::new();
    for (p, (reader, _, desc)) in planned.iter().zip(opened.iter_mut()) {
        report.recordings.push(p.rec.id);
        // Decode time of this recording's first pts, snapped onto the previous
        // recording's end when they are contiguous (sub-millisecond rounding).
        let mut base = ns_to_ticks(p.rec.start_wall_ns - origin_ns, ts);
        if let Some(pe) = prev_end {
            if (base - pe).abs() <= ts / 1000 || base < pe {
                base = pe;
            }
        }
        for c in &p.chunks {
            let (kind, _) = reader
                .read_record_into(c.idx as u64, c.offset as u64, &mut buf)
                .map_err(|source| ExportError::Integrity { id: p.rec.id, source })?;
            let path = storage.path_of(&p.rec.file_name);
            let malformed = |what: String| ExportError::Integrity {
                id: p.rec.id,
                source: FormatError::Malformed {
                    path: path.clone(),
                    index: c.idx as u64,
                    offset: c.offset as u64,
                    what,
                },
            };
            if kind != RecordKind::Media {
                return Err(malformed(format!("expected a media chunk, found {kind:?}")));
            }
            let chunk = Chunk::decode(&buf).map_err(malformed)?;
            if chunk.first_pts != c.first_pts {
                return Err(malformed("chunk time does not match the index".into()));
            }
            samples.clear();
            let mut datas: Vec<&[u8]> = Vec::with_capacity(chunk.frames.len());
            for (pts, f, d) in chunk.iter() {
                if p.rec.wall_of(pts) >= end_ns {
                    break;
                }
                samples.push(mp4::Sample {
                    duration: f.duration,
                    size: f.size,
                    key: f.key,
                });
                datas.push(d);
            }
            if samples.is_empty() {
                break;
            }
            let decode = base + (chunk.first_pts - p.rec.start_pts);
            seq += 1;
            report.bytes +=
                mp4::write_fragment(out, seq, decode.max(0) as u64, *desc, &samples, &datas).map_err(output)?;
            report.frames += samples.len() as u64;
            let dur: i64 = samples.iter().map(|s| i64::from(s.duration)).sum();
            prev_end = Some(decode + dur);
            report.end_wall_ns = p.rec.wall_of(chunk.first_pts + dur);
        }
    }
    out.flush().map_err(output)?;
    Ok(report)
}

/// Exports to a file: written as `<out>.partial`, fsynced, renamed into place;
/// removed on any error so a failed export never leaves a plausible file.
pub fn export_to_file(
    archive: Archive<'_>,
    camera: &str,
    start_ns: i64,
    end_ns: i64,
    out_path: &Path,
) -> Result<ExportReport, ExportError> {
    let output = |source| ExportError::Output {
        path: out_path.to_path_buf(),
        source,
    };
    if out_path == Path::new("-") {
        // Streamed: on an error the reader sees a short stream and the exit status.
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
        return export(archive, camera, start_ns, end_ns, &mut w, out_path);
    }
    let mut partial = out_path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial).map_err(output)?;
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
    let result = export(archive, camera, start_ns, end_ns, &mut w, out_path).and_then(|r| {
        let f = w.into_inner().map_err(|e| output(e.into_error()))?;
        f.sync_all().map_err(output)?;
        std::fs::rename(&partial, out_path).map_err(output)?;
        Ok(r)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}
