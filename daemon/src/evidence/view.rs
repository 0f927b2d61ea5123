//! Views for playback: a time range as one fragmented MP4 whose every byte
//! offset is known from the index before anything is decrypted, so that
//! any byte range of it (HTTP Range) is produced by decrypting only the
//! chunks it touches. Each chunk is a video fragment, followed by an audio
//! fragment of the audio record stored after it when the view carries audio.

use super::plan::{audio_sample_entry, check_all, decode_base, plan, Archive, ExportError, Planned};
use crate::db::{ns_to_ticks, ChunkRow, RecordingRow};
use crate::keys::KeyLookup;
use crate::storage::Storage;
use vigil_format::mp4;
use vigil_format::vseg::{self, AudioChunk, AudioCodec, AudioTrack, Chunk, RecordKind, SegmentReader};

/// The bytes of an audio record that are not its sample table and data:
/// record prefix, tag, and the plaintext head (`u32 m, i64 first_pts, i64
/// first_video_pts`).
const AUDIO_RECORD_OVERHEAD: u64 = (vseg::RECORD_PREFIX_LEN + vseg::TAG_LEN + 20) as u64;

/// Which audio a view carries, when its recordings have an audio track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewAudio {
    /// Video only.
    Omit,
    /// AAC, which browsers play; G.711 is left out.
    Playable,
    /// The track as recorded, whatever its codec (a download).
    AsRecorded,
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
    /// The audio track of the view's recordings (of the first that has
    /// one), whether or not the view carries it.
    pub audio_track: Option<AudioTrack>,
    /// Whether the view carries that track (a second MP4 track).
    pub audio_included: bool,
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
    audio: Option<AudioPart>,
}

/// The audio fragment after a chunk's video fragment: the audio record
/// stored right after the chunk, whole.
struct AudioPart {
    sequence: u32,
    /// Export video time = `base` + recording pts (video ticks).
    base: i64,
}

impl ViewLayout {
    /// Index of the fragment holding byte `pos` (pos >= init length).
    pub fn fragment_at(&self, pos: u64) -> usize {
        self.fragments.partition_point(|f| f.offset + f.len <= pos)
    }
}

/// A video-only view (see [`view_layout_with`]).
pub fn view_layout(archive: Archive<'_>, camera: &str, start_ns: i64, end_ns: i64) -> Result<ViewLayout, ExportError> {
    view_layout_with(archive, camera, start_ns, end_ns, ViewAudio::Omit)
}

/// Plans a view (see [`ViewLayout`]): reads the index and each recording's
/// stream record, nothing else. With audio, an audio record's size comes
/// from where the next chunk (or the final record) starts.
pub fn view_layout_with(
    archive: Archive<'_>,
    camera: &str,
    start_ns: i64,
    end_ns: i64,
    audio: ViewAudio,
) -> Result<ViewLayout, ExportError> {
    let Archive { index, storage, keys } = archive;
    let planned = plan(index, camera, start_ns, end_ns)?;
    let (entries, infos) = check_all(storage, keys, &planned)?;
    let audio_track = infos.iter().find_map(|(si, _)| si.audio.clone());
    let audio_included = match (&audio_track, audio) {
        (None, _) | (_, ViewAudio::Omit) => false,
        (Some(t), ViewAudio::Playable) => t.codec == AudioCodec::Aac,
        (Some(_), ViewAudio::AsRecorded) => true,
    };
    let mut etag = ring::digest::Context::new(&ring::digest::SHA256);
    etag.update(format!("{camera}\0{start_ns}\0{end_ns}").as_bytes());
    if audio_included {
        etag.update(b"\0audio");
    }
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
    let included = audio_track.as_ref().filter(|_| audio_included);
    let audio_entry = included.map(|t| (t.sample_rate, audio_sample_entry(t)));
    let audio_info = audio_entry.as_ref().map(|(rate, entry)| mp4::AudioTrackInfo {
        timescale: *rate,
        sample_entry: entry,
    });
    let init = mp4::init_segment_with_audio(
        &mp4::TrackInfo {
            timescale,
            width: infos[0].0.width,
            height: infos[0].0.height,
            duration: ns_to_ticks(end_wall_ns - origin_ns, ts).max(0) as u64,
            sample_entries: &entries,
        },
        audio_info.as_ref(),
    );
    let mut offset = init.len() as u64;
    let mut fragments = Vec::new();
    let mut prev_end: Option<i64> = None;
    let mut seq = 0u32;
    for (p, (si, desc)) in planned.iter().zip(&infos) {
        let base = decode_base(&p.rec, origin_ns, ts, prev_end);
        let all = index.chunks(p.rec.id)?;
        let changed = || ExportError::Mismatch {
            id: p.rec.id,
            file: p.rec.file_name.clone(),
            what: "its chunk index changed".into(),
        };
        let rows = all.get(p.chunks.clone()).ok_or_else(changed)?;
        let with_audio = included.is_some() && si.audio.as_ref() == included;
        for (j, c) in rows.iter().enumerate() {
            let data = vseg::media_data_len(c.len as u64, c.frames as u64).ok_or_else(|| ExportError::Mismatch {
                id: p.rec.id,
                file: p.rec.file_name.clone(),
                what: format!("chunk {} is shorter than its frame table", c.idx),
            })?;
            let len = mp4::fragment_len(c.frames as usize, data);
            let decode = base + (c.first_pts - p.rec.start_pts);
            seq += 1;
            let (video_seq, video_offset) = (seq, offset);
            offset += len;
            let audio = match with_audio {
                true => audio_record_len(p, &all, p.chunks.start + j)?,
                false => None,
            };
            let audio = audio.map(|record_len| {
                seq += 1;
                offset += mp4::audio_run_len(record_len - AUDIO_RECORD_OVERHEAD);
                AudioPart {
                    sequence: seq,
                    base: base - p.rec.start_pts,
                }
            });
            fragments.push(ViewFragment {
                offset: video_offset,
                len: offset - video_offset,
                recording: p.rec.clone(),
                chunk: c.clone(),
                decode_time: decode.max(0) as u64,
                sequence: video_seq,
                description: *desc,
                audio,
            });
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
        audio_track,
        audio_included,
    })
}

/// The length of the audio record after chunk `all[j]` of a recording with
/// an audio track, from the index alone: the bytes between the chunk's end
/// and the next chunk (or, after the last chunk, the final record). None
/// when there is none, and after the last chunk of a recording still being
/// written (its audio may not be written yet: leaving it out keeps the view
/// the same for the same index rows).
fn audio_record_len(p: &Planned, all: &[ChunkRow], j: usize) -> Result<Option<u64>, ExportError> {
    let c = &all[j];
    let end = (c.offset + c.len) as u64;
    let is_last = p.last_chunk.is_some_and(|(idx, _)| idx == c.idx as u64);
    let next = match all.get(j + 1) {
        Some(n) if !is_last => n.offset as u64,
        _ if p.rec.state == "writing" => return Ok(None),
        _ => (p.rec.bytes as u64).saturating_sub(vseg::FINAL_RECORD_LEN),
    };
    match next.checked_sub(end) {
        Some(0) => Ok(None),
        // At least one sample: its 8-byte entry.
        Some(gap) if gap >= AUDIO_RECORD_OVERHEAD + 8 => Ok(Some(gap)),
        _ => Err(ExportError::Mismatch {
            id: p.rec.id,
            file: p.rec.file_name.clone(),
            what: format!(
                "chunk {} is followed by {} unexplained bytes",
                c.idx,
                next as i64 - end as i64
            ),
        }),
    }
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
    read_chunk(storage, keys, layout, i, buf).map(|(_, c)| c)
}

/// [`view_chunk`], and the open reader of its recording.
fn read_chunk<'b>(
    storage: &Storage,
    keys: &dyn KeyLookup,
    layout: &ViewLayout,
    i: usize,
    buf: &'b mut Vec<u8>,
) -> Result<(SegmentReader, ViewChunk<'b>), ExportError> {
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
    let c = ViewChunk {
        decode_time: f.decode_time,
        description: f.description,
        chunk,
    };
    Ok((reader, c))
}

/// Produces fragment `i` of a view into `out`: the chunk's video fragment,
/// then its audio fragment when the layout has one (see [`view_chunk`]).
pub fn view_fragment(
    storage: &Storage,
    keys: &dyn KeyLookup,
    layout: &ViewLayout,
    i: usize,
    out: &mut Vec<u8>,
) -> Result<(), ExportError> {
    let mut buf = Vec::new();
    let (mut reader, vc) = read_chunk(storage, keys, layout, i, &mut buf)?;
    let chunk = vc.chunk;
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
    let mut n = mp4::write_fragment(out, f.sequence, f.decode_time, f.description, &samples, &datas)
        .map_err(|e| bad(e.to_string()))?;
    if let (Some(a), Some(track)) = (&f.audio, &layout.audio_track) {
        let pos = vseg::RecordPos {
            index: f.chunk.idx as u64,
            offset: f.chunk.offset as u64,
            len: f.chunk.len as u64,
        };
        let mut audio_buf = Vec::new();
        let there = reader
            .read_audio_after(&pos, &mut audio_buf)
            .map_err(|source| ExportError::reading(f.recording.id, source))?;
        if !there {
            return Err(bad(format!("chunk {}: its audio record is missing", f.chunk.idx)));
        }
        let ac = AudioChunk::decode(&audio_buf).map_err(|w| bad(format!("chunk {} audio: {w}", f.chunk.idx)))?;
        // Where the record's first sample plays against the view's video,
        // in audio ticks (before the view's start: at its start).
        let vts = i128::from(layout.timescale.max(1));
        let first_video = i128::from(a.base) + i128::from(ac.first_video_pts);
        let start = (first_video * i128::from(track.sample_rate) / vts).max(0) as u64;
        let samples: Vec<mp4::Sample> = ac
            .samples
            .iter()
            .map(|m| mp4::Sample {
                duration: m.duration,
                size: m.size,
                key: true,
            })
            .collect();
        let datas: Vec<&[u8]> = ac.iter().map(|(_, _, d)| d).collect();
        n += mp4::write_audio_run(out, a.sequence, start, &samples, &datas).map_err(|e| bad(e.to_string()))?;
    }
    if n != f.len {
        return Err(bad(format!("fragment is {n} bytes, the layout says {}", f.len)));
    }
    Ok(())
}
