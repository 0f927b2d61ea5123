//! Export: a fragmented MP4 of any time range across recordings, starting at
//! the key frame at or before the start, with the recordings' audio as a
//! second track when they have one. Streams one chunk at a time.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::base::time::format_ns;
use crate::db::audit::{self, Outcome};
use crate::db::{ns_to_ticks, ChunkRow, Index, IndexError, RecordingRow};
use crate::keys::KeyLookup;
use crate::storage::Storage;
use vigil_format::mp4;
use vigil_format::vseg::{self, AudioChunk, AudioCodec, AudioTrack, Chunk, FormatError, RecordKind, SegmentReader};

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
    fn reading(id: i64, source: FormatError) -> Self {
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

#[derive(Debug, Default, Clone)]
pub struct ExportReport {
    pub recordings: Vec<i64>,
    pub frames: u64,
    pub bytes: u64,
    pub first_wall_ns: i64,
    pub end_wall_ns: i64,
    /// Audio samples exported (0 when the recordings have no audio track).
    pub audio_samples: u64,
}

/// A recording in the export: which of its chunk rows, and the media time they span.
/// Chunk rows are loaded again, one recording at a time, while streaming, so
/// memory does not grow with the length of the range.
struct Planned {
    rec: RecordingRow,
    chunks: std::ops::Range<usize>,
    first_pts: i64,
    end_pts: i64,
    /// The record index and end offset of the recording's last chunk: the
    /// final record follows it, or follows the audio record after it.
    last_chunk: Option<(u64, u64)>,
}

fn fmt_ns(ns: i64) -> String {
    crate::base::time::format_ns(ns)
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
type Checked = (Vec<Vec<u8>>, Vec<(vseg::StreamInfo, u32)>);

/// Checks every planned recording (see [`check_recording`]) before any byte
/// goes out, one file open at a time, and collects the distinct sample
/// entries: (entries, per recording its stream info and 1-based entry index).
/// All recordings must share one timescale.
fn check_all(storage: &Storage, keys: &dyn KeyLookup, planned: &[Planned]) -> Result<Checked, ExportError> {
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
fn decode_base(rec: &RecordingRow, origin_ns: i64, ts: i64, prev_end: Option<i64>) -> i64 {
    let base = ns_to_ticks(rec.start_wall_ns - origin_ns, ts);
    match prev_end {
        Some(pe) if rec.continues_previous || (base - pe).abs() <= ts / 1000 || base < pe => pe,
        _ => base,
    }
}

/// Where a recording's media time lands in the export: export video time =
/// `base` + recording pts (in `timescale` ticks); audio that plays from
/// `end` on belongs to a later chunk or is past the export's end.
struct Placement {
    base: i64,
    timescale: i64,
    end: i64,
}

/// The export's audio track: its samples placed on the video's timeline
/// (the audio starts with the video's first frame), in sequence.
struct AudioOut {
    track: AudioTrack,
    /// Export audio time (sample-rate ticks) after the last sample written.
    next: Option<i64>,
    samples: Vec<mp4::Sample>,
}

impl AudioOut {
    fn new(track: AudioTrack) -> Self {
        AudioOut {
            track,
            next: None,
            samples: Vec::new(),
        }
    }

    /// The track's timescale and its MP4 sample entry.
    fn sample_entry(&self) -> (u32, Vec<u8>) {
        let t = &self.track;
        let entry = match t.codec {
            AudioCodec::Aac => mp4::aac_sample_entry(t.sample_rate, t.channels, &t.config),
            AudioCodec::Pcma => mp4::g711_sample_entry(true, t.sample_rate, t.channels),
            AudioCodec::Pcmu => mp4::g711_sample_entry(false, t.sample_rate, t.channels),
        };
        (t.sample_rate, entry)
    }

    /// Writes the samples of `ac` that play within the export (from its
    /// start, after what was written, before `place.end`) as one fragment;
    /// returns (samples, bytes).
    fn write<W: Write>(
        &mut self,
        out: &mut W,
        seq: u32,
        ac: &AudioChunk<'_>,
        place: &Placement,
    ) -> std::io::Result<(u64, u64)> {
        let rate = i128::from(self.track.sample_rate);
        let vts = i128::from(place.timescale.max(1));
        // Export video time of the record's first sample, then in audio ticks.
        let first_video = i128::from(place.base) + i128::from(ac.first_video_pts);
        let first = (first_video * rate / vts) as i64;
        let end = (i128::from(place.end) * rate / vts) as i64;
        // Consecutive records meet within rounding (and a camera's jitter):
        // snap onto the previous record's end rather than leave a gap or overlap.
        let slack = i64::from(self.track.sample_rate) / 50;
        let shift = match self.next {
            Some(n) if (first - n).abs() <= slack => n - first,
            _ => 0,
        };
        let floor = self.next.unwrap_or(0).max(0);
        // G.711 is a byte per sample and channel: a packet that straddles
        // the floor (the first frame, or the audio already written) is cut there...
        let g711_channels = match self.track.codec {
            AudioCodec::Aac => None,
            AudioCodec::Pcma | AudioCodec::Pcmu => Some(usize::from(self.track.channels.max(1))),
        };
        self.samples.clear();
        let mut datas: Vec<&[u8]> = Vec::new();
        let mut start = None;
        for (pts, m, d) in ac.iter() {
            let mut t = first + shift + (pts - ac.first_pts);
            let (mut d, mut duration) = (d, m.duration);
            if t < floor {
                let cut = (floor - t) as usize;
                match g711_channels {
                    Some(ch) if cut < duration as usize && cut * ch < d.len() => {
                        d = &d[cut * ch..];
                        duration -= cut as u32;
                        t = floor;
                    }
                    _ => continue,
                }
            }
            if t >= end {
                break;
            }
            // ... and one that runs past the end is cut there.
            if let Some(ch) = g711_channels.filter(|_| t + i64::from(duration) > end) {
                duration = (end - t) as u32;
                d = &d[..(duration as usize * ch).min(d.len())];
            }
            start.get_or_insert(t);
            self.samples.push(mp4::Sample {
                duration,
                size: d.len() as u32,
                key: true,
            });
            datas.push(d);
        }
        let Some(start) = start else { return Ok((0, 0)) };
        let bytes = mp4::write_audio_fragment(out, seq, start as u64, &self.samples, &datas)?;
        let dur: i64 = self.samples.iter().map(|s| i64::from(s.duration)).sum();
        self.next = Some(start + dur);
        Ok((self.samples.len() as u64, bytes))
    }
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

    // Check every recording first, so a tampered file fails before output
    // starts. Each is closed again: one open file at a time, whatever the range.
    let (entries, opened) = check_all(storage, keys, &planned)?;
    let timescale = opened[0].0.timescale;
    let ts = i64::from(timescale);
    let first = &planned[0];
    let origin_ns = first.rec.wall_of(first.first_pts);
    let last = &planned[planned.len() - 1];
    let end_guess = end_ns.min(last.rec.wall_of(last.end_pts));
    // The media timeline's length: a wall-clock step between continuing
    // recordings is not part of it.
    let mut media_end = None;
    for p in &planned {
        let b = decode_base(&p.rec, origin_ns, ts, media_end);
        media_end = Some(b + (p.end_pts - p.rec.start_pts));
    }
    let duration = ns_to_ticks(end_guess - origin_ns, ts)
        .min(media_end.unwrap_or(0))
        .max(0) as u64;
    let si0 = &opened[0].0;
    let mut audio = opened.iter().find_map(|(si, _)| si.audio.clone()).map(AudioOut::new);
    let audio_entry = audio.as_ref().map(|a| a.sample_entry());
    let audio_info = audio_entry.as_ref().map(|e| mp4::AudioTrackInfo {
        timescale: e.0,
        sample_entry: &e.1,
    });
    let init = mp4::init_segment_with_audio(
        &mp4::TrackInfo {
            timescale,
            width: si0.width,
            height: si0.height,
            duration,
            sample_entries: &entries,
        },
        audio_info.as_ref(),
    );
    out.write_all(&init).map_err(output)?;

    let mut report = ExportReport {
        first_wall_ns: origin_ns,
        bytes: init.len() as u64,
        ..Default::default()
    };
    let mut seq = 0u32;
    let mut prev_end: Option<i64> = None;
    let mut buf = Vec::new();
    let mut audio_buf = Vec::new();
    let mut samples = Vec::new();
    for (p, (si, desc)) in planned.iter().zip(opened.iter()) {
        report.recordings.push(p.rec.id);
        let path = storage.path_of(&p.rec.file_name);
        let mut reader = SegmentReader::open(&path, keys).map_err(|source| ExportError::reading(p.rec.id, source))?;
        let rows = index.chunks(p.rec.id)?;
        let chunks = rows.get(p.chunks.clone()).ok_or_else(|| ExportError::Mismatch {
            id: p.rec.id,
            file: p.rec.file_name.clone(),
            what: "its chunk index changed during the export".into(),
        })?;
        let base = decode_base(&p.rec, origin_ns, ts, prev_end);
        for c in chunks {
            let (kind, _) = reader
                .read_record_into(c.idx as u64, c.offset as u64, &mut buf)
                .map_err(|source| ExportError::reading(p.rec.id, source))?;
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
            // The audio played against this chunk, when the recording's
            // track is the export's.
            if let Some(a) = audio.as_mut().filter(|a| si.audio.as_ref() == Some(&a.track)) {
                let pos = vseg::RecordPos {
                    index: c.idx as u64,
                    offset: c.offset as u64,
                    len: c.len as u64,
                };
                if reader
                    .read_audio_after(&pos, &mut audio_buf)
                    .map_err(|source| ExportError::reading(p.rec.id, source))?
                {
                    let ac = AudioChunk::decode(&audio_buf).map_err(malformed)?;
                    let place = Placement {
                        base: base - p.rec.start_pts,
                        timescale: ts,
                        end: decode + dur,
                    };
                    seq += 1;
                    let (n, bytes) = a.write(out, seq, &ac, &place).map_err(output)?;
                    if n == 0 {
                        seq -= 1;
                    }
                    report.audio_samples += n;
                    report.bytes += bytes;
                }
            }
        }
    }
    out.flush().map_err(output)?;
    Ok(report)
}

/// Exports to a file: written as `<out>.partial`, fsynced, renamed into place;
/// removed on any error so a failed export never leaves a plausible file.
/// Once it is written, `actor`'s export is audited (`export`).
pub fn export_to_file(
    archive: Archive<'_>,
    actor: &str,
    camera: &str,
    start_ns: i64,
    end_ns: i64,
    out_path: &Path,
) -> Result<ExportReport, ExportError> {
    let r = write_file(archive, camera, start_ns, end_ns, out_path)?;
    let _ = audit::append(
        archive.index.conn(),
        actor,
        "export",
        camera,
        Outcome::Ok,
        &format!(
            "{} to {}, {} frames, {} bytes, to {}",
            format_ns(r.first_wall_ns),
            format_ns(r.end_wall_ns),
            r.frames,
            r.bytes,
            out_path.display()
        ),
    );
    Ok(r)
}

fn write_file(
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

/// A chunk-granular view of a time range as one fragmented MP4 whose every
/// byte offset is known from the index before anything is decrypted: the
/// init segment, then one fragment per whole chunk overlapping the range
/// (so it may run up to a chunk, about 1 s, past `end`). Any byte range of
/// it can be produced by decrypting only the chunks that range touches;
/// HTTP Range requests use this.
pub struct ViewLayout {
    pub init: Vec<u8>,
    pub fragments: Vec<ViewFragment>,
    pub total_len: u64,
    /// Changes whenever any byte of the view would (a recording grew, was
    /// re-encrypted or deleted).
    pub etag: String,
    pub first_wall_ns: i64,
    pub end_wall_ns: i64,
    /// The init segment's sample entries (a fragment's description index
    /// 1, 2, ... names them) and its timescale.
    pub sample_entries: Vec<Vec<u8>>,
    pub timescale: u32,
}

pub struct ViewFragment {
    /// Offset of this fragment in the view.
    pub offset: u64,
    pub len: u64,
    recording: RecordingRow,
    chunk: ChunkRow,
    decode_time: u64,
    sequence: u32,
    description: u32,
}

impl ViewLayout {
    /// Index of the fragment holding byte `pos` (pos >= init length).
    pub fn fragment_at(&self, pos: u64) -> usize {
        self.fragments.partition_point(|f| f.offset + f.len <= pos)
    }
}

/// Plans a view (see [`ViewLayout`]): reads the index and each recording's
/// stream record, nothing else.
pub fn view_layout(archive: Archive<'_>, camera: &str, start_ns: i64, end_ns: i64) -> Result<ViewLayout, ExportError> {
    let Archive { index, storage, keys } = archive;
    let planned = plan(index, camera, start_ns, end_ns)?;
    let (entries, infos) = check_all(storage, keys, &planned)?;
    let mut etag = ring::digest::Context::new(&ring::digest::SHA256);
    etag.update(format!("{camera}\0{start_ns}\0{end_ns}").as_bytes());
    for p in &planned {
        etag.update(&p.rec.id.to_be_bytes());
        etag.update(p.rec.file_name.as_bytes());
        etag.update(&p.rec.bytes.to_be_bytes());
        etag.update(&p.rec.chunks.to_be_bytes());
    }
    let timescale = infos[0].0.timescale;
    let ts = i64::from(timescale);
    let first = &planned[0];
    let origin_ns = first.rec.wall_of(first.first_pts);
    let last = &planned[planned.len() - 1];
    let end_wall_ns = last.rec.wall_of(last.end_pts);
    let init = mp4::init_segment(&mp4::TrackInfo {
        timescale,
        width: infos[0].0.width,
        height: infos[0].0.height,
        duration: ns_to_ticks(end_wall_ns - origin_ns, ts).max(0) as u64,
        sample_entries: &entries,
    });
    let mut offset = init.len() as u64;
    let mut fragments = Vec::new();
    let mut prev_end: Option<i64> = None;
    let mut seq = 0u32;
    for (p, (_, desc)) in planned.iter().zip(&infos) {
        let base = decode_base(&p.rec, origin_ns, ts, prev_end);
        let rows = index.chunks(p.rec.id)?;
        let rows = rows.get(p.chunks.clone()).ok_or_else(|| ExportError::Mismatch {
            id: p.rec.id,
            file: p.rec.file_name.clone(),
            what: "its chunk index changed".into(),
        })?;
        for c in rows {
            let data = vseg::media_data_len(c.len as u64, c.frames as u64).ok_or_else(|| ExportError::Mismatch {
                id: p.rec.id,
                file: p.rec.file_name.clone(),
                what: format!("chunk {} is shorter than its frame table", c.idx),
            })?;
            let len = mp4::fragment_len(c.frames as usize, data);
            let decode = base + (c.first_pts - p.rec.start_pts);
            seq += 1;
            fragments.push(ViewFragment {
                offset,
                len,
                recording: p.rec.clone(),
                chunk: c.clone(),
                decode_time: decode.max(0) as u64,
                sequence: seq,
                description: *desc,
            });
            offset += len;
            prev_end = Some(decode + c.duration);
        }
    }
    let etag = format!("\"{}\"", &vigil_format::hex(etag.finish().as_ref())[..32]);
    Ok(ViewLayout {
        init,
        fragments,
        total_len: offset,
        etag,
        first_wall_ns: origin_ns,
        end_wall_ns,
        sample_entries: entries,
        timescale,
    })
}

/// The frames of fragment `i` of a view, as its MP4 fragment carries them.
pub struct ViewChunk<'a> {
    /// The fragment's decode time (ticks of the view's timescale from the
    /// view's first frame) and sample description index (1-based).
    pub decode_time: u64,
    pub description: u32,
    pub chunk: Chunk<'a>,
}

/// The frames of fragment `i` of a view: decrypts and authenticates its
/// chunk into `buf` and checks it against the layout (a mismatch is an
/// integrity error: the stream must stop rather than send bytes at the
/// wrong offsets).
pub fn view_chunk<'b>(
    storage: &Storage,
    keys: &dyn KeyLookup,
    layout: &ViewLayout,
    i: usize,
    buf: &'b mut Vec<u8>,
) -> Result<ViewChunk<'b>, ExportError> {
    let f = layout.fragments.get(i).ok_or(ExportError::EmptyRange)?;
    let rec = &f.recording;
    let path = storage.path_of(&rec.file_name);
    let mut reader = SegmentReader::open(&path, keys).map_err(|source| ExportError::reading(rec.id, source))?;
    let (kind, _) = reader
        .read_record_into(f.chunk.idx as u64, f.chunk.offset as u64, buf)
        .map_err(|source| ExportError::reading(rec.id, source))?;
    let bad = |what: String| ExportError::Mismatch {
        id: rec.id,
        file: rec.file_name.clone(),
        what,
    };
    if kind != RecordKind::Media {
        return Err(bad(format!("chunk {} is a {kind:?} record", f.chunk.idx)));
    }
    let chunk = Chunk::decode(buf).map_err(|w| bad(format!("chunk {}: {w}", f.chunk.idx)))?;
    if chunk.first_pts != f.chunk.first_pts || chunk.frames.len() as i64 != f.chunk.frames {
        return Err(bad(format!("chunk {} does not match the index", f.chunk.idx)));
    }
    Ok(ViewChunk {
        decode_time: f.decode_time,
        description: f.description,
        chunk,
    })
}

/// Produces fragment `i` of a view into `out` (see [`view_chunk`]).
pub fn view_fragment(
    storage: &Storage,
    keys: &dyn KeyLookup,
    layout: &ViewLayout,
    i: usize,
    out: &mut Vec<u8>,
) -> Result<(), ExportError> {
    let mut buf = Vec::new();
    let chunk = view_chunk(storage, keys, layout, i, &mut buf)?.chunk;
    let f = layout.fragments.get(i).ok_or(ExportError::EmptyRange)?;
    let bad = |what: String| ExportError::Mismatch {
        id: f.recording.id,
        file: f.recording.file_name.clone(),
        what,
    };
    let samples: Vec<mp4::Sample> = chunk
        .frames
        .iter()
        .map(|m| mp4::Sample {
            duration: m.duration,
            size: m.size,
            key: m.key,
        })
        .collect();
    let datas: Vec<&[u8]> = chunk.iter().map(|(_, _, d)| d).collect();
    out.clear();
    let n = mp4::write_fragment(out, f.sequence, f.decode_time, f.description, &samples, &datas)
        .map_err(|e| bad(e.to_string()))?;
    if n != f.len {
        return Err(bad(format!("fragment is {n} bytes, the layout says {}", f.len)));
    }
    Ok(())
}
