//! Export: a fragmented MP4 of any time range across recordings, starting at
//! the key frame at or before the start, with the recordings' audio as a
//! second track when they have one. Streams one chunk at a time.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::base::time::format_ns;
use crate::db::audit::{self, Outcome};
use crate::db::ns_to_ticks;
use vigil_format::mp4;
use vigil_format::vseg::{self, AudioChunk, AudioCodec, AudioTrack, Chunk, FormatError, RecordKind, SegmentReader};

use super::plan::{audio_sample_entry, check_all, decode_base, plan};
pub use super::plan::{Archive, ExportError};
pub use super::view::{
    view_chunk, view_fragment, view_layout, view_layout_with, ViewAudio, ViewChunk, ViewFragment, ViewLayout,
};

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
        (self.track.sample_rate, audio_sample_entry(&self.track))
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
