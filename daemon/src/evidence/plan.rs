//! What an export or a view of a time range covers: the recordings and
//! chunks of the range, checked before any byte goes out, and where each
//! recording's media time lands on the output's timeline.

use std::path::PathBuf;

use crate::db::{ns_to_ticks, Index, IndexError, RecordingRow};
use crate::keys::KeyLookup;
use crate::storage::Storage;
use vigil_format::mp4;
use vigil_format::vseg::{self, AudioCodec, AudioTrack, FormatError, SegmentReader};

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
    /// Reading failed (EIO, EMFILE, ...): not evidence of tampering.
    #[error("recording {id}: {source}")]
    Read {
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
    /// What a failure to read recording `id` means: an I/O error is a read
    /// failure; anything the format check rejected is an integrity failure.
    pub(super) fn reading(id: i64, source: FormatError) -> Self {
        match source {
            FormatError::Io { .. } => ExportError::Read { id, source },
            source => ExportError::Integrity { id, source },
        }
    }

    /// Whether this error means stored data failed an integrity check.
    pub fn is_integrity(&self) -> bool {
        matches!(self, ExportError::Integrity { .. } | ExportError::Mismatch { .. })
    }
}

/// A recording in the export: which of its chunk rows, and the media time they span.
/// Chunk rows are loaded again, one recording at a time, while streaming, so
/// memory does not grow with the length of the range.
pub(super) struct Planned {
    pub(super) rec: RecordingRow,
    pub(super) chunks: std::ops::Range<usize>,
    pub(super) first_pts: i64,
    pub(super) end_pts: i64,
    /// The record index and end offset of the recording's last chunk: the
    /// final record follows it, or follows the audio record after it.
    pub(super) last_chunk: Option<(u64, u64)>,
}

fn fmt_ns(ns: i64) -> String {
    crate::base::time::format_ns(ns)
}

/// Which recordings and chunks cover `[start_ns, end_ns)`, starting at the key
/// frame at or before `start_ns`.
pub(super) fn plan(index: &Index, camera: &str, start_ns: i64, end_ns: i64) -> Result<Vec<Planned>, ExportError> {
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
        let n = all[first..]
            .iter()
            .take_while(|c| rec.wall_of(c.first_pts) < end_ns)
            .count();
        if n > 0 {
            let (head, tail) = (&all[first], &all[first + n - 1]);
            let (first_pts, end_pts) = (head.first_pts, tail.first_pts + tail.duration);
            let last_chunk = all.last().map(|c| (c.idx as u64, (c.offset + c.len) as u64));
            out.push(Planned {
                rec,
                chunks: first..first + n,
                first_pts,
                end_pts,
                last_chunk,
            });
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

/// Checks, before any byte is exported, what can be checked cheaply in a
/// planned recording: header, key, length, the final record. Returns its stream description.
fn check_recording(storage: &Storage, keys: &dyn KeyLookup, p: &Planned) -> Result<vseg::StreamInfo, ExportError> {
    let id = p.rec.id;
    let integrity = |source| ExportError::reading(id, source);
    let mismatch = |what: String| ExportError::Mismatch {
        id,
        file: p.rec.file_name.clone(),
        what,
    };
    let mut r = SegmentReader::open(&storage.path_of(&p.rec.file_name), keys).map_err(integrity)?;
    if r.header().camera_id != p.rec.file_camera_id as u64 {
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
        // Records: the stream record, the chunks, their audio records, the final.
        let final_index = match p.last_chunk {
            None => 1,
            Some((idx, end)) if end + vseg::FINAL_RECORD_LEN == r.file_len() => idx + 1,
            Some((idx, _)) => idx + 2,
        };
        let summary = r.read_final(final_index + 1).map_err(integrity)?;
        if i64::from(summary.media_chunks) != p.rec.chunks || summary.frames as i64 != p.rec.frames {
            return Err(mismatch("final record does not match the index".into()));
        }
    }
    Ok(si)
}

/// The sample entries of an export, and per recording its stream info and
/// the 1-based index of its entry.
pub(super) type Checked = (Vec<Vec<u8>>, Vec<(vseg::StreamInfo, u32)>);

/// Checks every planned recording (see [`check_recording`]) before any byte
/// goes out, one file open at a time, and collects the distinct sample
/// entries: (entries, per recording its stream info and 1-based entry index).
/// All recordings must share one timescale.
pub(super) fn check_all(storage: &Storage, keys: &dyn KeyLookup, planned: &[Planned]) -> Result<Checked, ExportError> {
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut infos = Vec::with_capacity(planned.len());
    for p in planned {
        let si = check_recording(storage, keys, p)?;
        let desc = match entries.iter().position(|e| *e == si.sample_entry) {
            Some(i) => i,
            None => {
                entries.push(si.sample_entry.clone());
                entries.len() - 1
            }
        };
        infos.push((si, desc as u32 + 1));
    }
    let timescale = infos.first().map(|(si, _)| si.timescale).unwrap_or(90_000);
    if infos.iter().any(|(si, _)| si.timescale != timescale) {
        return Err(ExportError::MixedTimescales);
    }
    Ok((entries, infos))
}

/// The decode time of a recording's start in an export whose time 0 is
/// `origin_ns`: snapped onto the previous recording's end when they are
/// contiguous (sub-millisecond rounding), would overlap, or the recording
/// continues the previous one in media time (the wall clock stepped between
/// them: the video itself has no gap).
pub(super) fn decode_base(rec: &RecordingRow, origin_ns: i64, ts: i64, prev_end: Option<i64>) -> i64 {
    let base = ns_to_ticks(rec.start_wall_ns - origin_ns, ts);
    match prev_end {
        Some(pe) if rec.continues_previous || (base - pe).abs() <= ts / 1000 || base < pe => pe,
        _ => base,
    }
}

/// The MP4 sample entry of an audio track.
pub(super) fn audio_sample_entry(t: &AudioTrack) -> Vec<u8> {
    match t.codec {
        AudioCodec::Aac => mp4::aac_sample_entry(t.sample_rate, t.channels, &t.config),
        AudioCodec::Pcma => mp4::g711_sample_entry(true, t.sample_rate, t.channels),
        AudioCodec::Pcmu => mp4::g711_sample_entry(false, t.sample_rate, t.channels),
    }
}

/// What an export reads from: the index, the recordings, and their keys.
#[derive(Clone, Copy)]
pub struct Archive<'a> {
    pub index: &'a Index,
    pub storage: &'a Storage,
    pub keys: &'a dyn KeyLookup,
}
