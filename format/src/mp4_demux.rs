//! Reads the video track of an MP4 file for `vigil import`: progressive
//! files (moov sample tables) and fragmented ones (moof/trun, as Vigil's own
//! exports and many NVRs write). H.264 (avc1/avc3) and H.265 (hvc1/hev1).
//! Every length and offset is checked against the file: a hostile file gets
//! an error, never a panic or an allocation it names.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::vseg::Codec;

/// Largest sample table accepted (a day at 60 fps is 5.2 M samples).
const MAX_SAMPLES: usize = 8_000_000;
/// Largest box read into memory (moov, moof).
const MAX_META_BOX: u64 = 256 * 1024 * 1024;
/// Largest single sample.
pub const MAX_SAMPLE_BYTES: u32 = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DemuxError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a usable MP4: {what}")]
    Malformed { path: PathBuf, what: String },
    #[error("{path}: {what}")]
    Unsupported { path: PathBuf, what: String },
}

/// One video sample: where it is, how long it lasts, whether it is a key frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub size: u32,
    /// Decode time in `timescale` units.
    pub dts: i64,
    pub duration: u32,
    pub key: bool,
}

/// The video track of an MP4 file.
#[derive(Debug)]
pub struct VideoTrack {
    pub codec: Codec,
    pub timescale: u32,
    pub width: u16,
    pub height: u16,
    /// The sample entry box (avc1/hvc1/...) as stored in the file.
    pub sample_entry: Vec<u8>,
    pub samples: Vec<Sample>,
    /// mvhd creation time as Unix seconds, if the file states one.
    pub creation_unix: Option<i64>,
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cur { b, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_be_bytes(a)
        })
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
}

/// One box inside a buffer: its type, its body, and the whole box.
type BoxRef<'a> = ([u8; 4], &'a [u8], &'a [u8]);
/// A child box found by type: (body, whole box).
type Found<'a> = Option<(&'a [u8], &'a [u8])>;

/// Child boxes of a box body.
fn boxes(b: &[u8]) -> impl Iterator<Item = Result<BoxRef<'_>, String>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= b.len() {
            return None;
        }
        let rest = &b[pos..];
        if rest.len() < 8 {
            pos = b.len();
            return Some(Err("truncated box header".into()));
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let mut typ = [0u8; 4];
        typ.copy_from_slice(&rest[4..8]);
        let (hdr, size) = match size32 {
            0 => (8u64, rest.len() as u64),
            1 => {
                if rest.len() < 16 {
                    pos = b.len();
                    return Some(Err("truncated large box header".into()));
                }
                let mut a = [0u8; 8];
                a.copy_from_slice(&rest[8..16]);
                (16u64, u64::from_be_bytes(a))
            }
            n => (8u64, n),
        };
        if size < hdr || size > rest.len() as u64 {
            pos = b.len();
            return Some(Err(format!(
                "box '{}' of {size} bytes overruns its parent",
                String::from_utf8_lossy(&typ)
            )));
        }
        let whole = &rest[..size as usize];
        let body = &whole[hdr as usize..];
        pos += size as usize;
        Some(Ok((typ, body, whole)))
    })
}

fn child<'a>(b: &'a [u8], typ: &[u8; 4]) -> Result<Found<'a>, String> {
    for r in boxes(b) {
        let (t, body, whole) = r?;
        if &t == typ {
            return Ok(Some((body, whole)));
        }
    }
    Ok(None)
}

fn need<'a>(b: &'a [u8], typ: &[u8; 4]) -> Result<&'a [u8], String> {
    child(b, typ)?
        .map(|(body, _)| body)
        .ok_or_else(|| format!("no '{}' box", String::from_utf8_lossy(typ)))
}

const SHORT: &str = "box too short";

#[derive(Default, Clone, Copy)]
struct TrexDefaults {
    duration: u32,
    size: u32,
    flags: u32,
}

struct TrackInfo {
    id: u32,
    timescale: u32,
    codec: Codec,
    width: u16,
    height: u16,
    sample_entry: Vec<u8>,
    samples: Vec<Sample>,
    trex: TrexDefaults,
}

fn parse_trak(trak: &[u8]) -> Result<Option<TrackInfo>, String> {
    let tkhd = need(trak, b"tkhd")?;
    let mut c = Cur::new(tkhd);
    let version = c.u8().ok_or(SHORT)?;
    c.skip(3).ok_or(SHORT)?;
    c.skip(if version == 1 { 16 } else { 8 }).ok_or(SHORT)?;
    let id = c.u32().ok_or(SHORT)?;
    let mdia = need(trak, b"mdia")?;
    let hdlr = need(mdia, b"hdlr")?;
    if hdlr.get(8..12) != Some(b"vide".as_slice()) {
        return Ok(None);
    }
    let mdhd = need(mdia, b"mdhd")?;
    let mut c = Cur::new(mdhd);
    let version = c.u8().ok_or(SHORT)?;
    c.skip(3).ok_or(SHORT)?;
    c.skip(if version == 1 { 16 } else { 8 }).ok_or(SHORT)?;
    let timescale = c.u32().ok_or(SHORT)?;
    if timescale == 0 {
        return Err("video track timescale is 0".into());
    }
    let stbl = need(need(mdia, b"minf")?, b"stbl")?;
    let stsd = need(stbl, b"stsd")?;
    let mut c = Cur::new(stsd);
    c.skip(4).ok_or(SHORT)?;
    let count = c.u32().ok_or(SHORT)?;
    if count != 1 {
        return Err(format!(
            "{count} sample descriptions (parameters change inside the file); expected 1"
        ));
    }
    let (typ, body, whole) = boxes(&stsd[8..]).next().ok_or("empty stsd")??;
    let codec = match &typ {
        b"avc1" | b"avc3" => Codec::H264,
        b"hvc1" | b"hev1" => Codec::H265,
        b"jpeg" => Codec::Mjpeg,
        other => {
            return Err(format!(
                "video codec '{}' (Vigil stores H.264 and H.265)",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let mut c = Cur::new(body);
    c.skip(24).ok_or(SHORT)?;
    let width = c.u16().ok_or(SHORT)?;
    let height = c.u16().ok_or(SHORT)?;
    let samples = sample_table(stbl)?;
    Ok(Some(TrackInfo {
        id,
        timescale,
        codec,
        width,
        height,
        sample_entry: whole.to_vec(),
        samples,
        trex: TrexDefaults::default(),
    }))
}

fn full_box_entries(b: &[u8]) -> Result<(Cur<'_>, u32), String> {
    let mut c = Cur::new(b);
    c.skip(4).ok_or(SHORT)?;
    let n = c.u32().ok_or(SHORT)?;
    Ok((c, n))
}

fn check_count(n: u32, each: usize, c: &Cur<'_>) -> Result<usize, String> {
    let n = n as usize;
    if n > MAX_SAMPLES || n.saturating_mul(each) > c.b.len().saturating_sub(c.pos) {
        return Err(format!("table of {n} entries does not fit its box"));
    }
    Ok(n)
}

/// The progressive sample table (empty for a fragmented file).
fn sample_table(stbl: &[u8]) -> Result<Vec<Sample>, String> {
    let mut c2 = Cur::new(need(stbl, b"stsz")?);
    c2.skip(4).ok_or(SHORT)?;
    let fixed = c2.u32().ok_or(SHORT)?;
    let count = c2.u32().ok_or(SHORT)?;
    let mut sizes = Vec::new();
    if fixed == 0 {
        let k = check_count(count, 4, &c2)?;
        for _ in 0..k {
            sizes.push(c2.u32().ok_or(SHORT)?);
        }
    } else {
        if count as usize > MAX_SAMPLES {
            return Err("too many samples".into());
        }
        sizes = vec![fixed; count as usize];
    }
    let total = sizes.len();
    if total == 0 {
        return Ok(Vec::new());
    }
    // Decode times.
    let (mut c, n) = full_box_entries(need(stbl, b"stts")?)?;
    let n = check_count(n, 8, &c)?;
    let mut durations = Vec::with_capacity(total);
    for _ in 0..n {
        let cnt = c.u32().ok_or(SHORT)? as usize;
        let d = c.u32().ok_or(SHORT)?;
        if durations.len() + cnt > total {
            return Err("stts describes more samples than stsz".into());
        }
        durations.extend(std::iter::repeat_n(d, cnt));
    }
    if durations.len() != total {
        return Err("stts and stsz disagree on the sample count".into());
    }
    if let Some((body, _)) = child(stbl, b"ctts")? {
        let (mut c, n) = full_box_entries(body)?;
        let n = check_count(n, 8, &c)?;
        for _ in 0..n {
            c.skip(4).ok_or(SHORT)?;
            if c.u32().ok_or(SHORT)? != 0 {
                return Err(
                    "B-frames (composition offsets) are not supported: Vigil stores frames in presentation order"
                        .into(),
                );
            }
        }
    }
    // Key frames (no stss: every sample is one).
    let mut key = vec![child(stbl, b"stss")?.is_none(); total];
    if let Some((body, _)) = child(stbl, b"stss")? {
        let (mut c, n) = full_box_entries(body)?;
        let n = check_count(n, 4, &c)?;
        for _ in 0..n {
            let i = c.u32().ok_or(SHORT)? as usize;
            if i == 0 || i > total {
                return Err(format!("stss names sample {i} of {total}"));
            }
            key[i - 1] = true;
        }
    }
    // Chunk offsets and the sample-to-chunk runs.
    let offsets: Vec<u64> = if let Some((body, _)) = child(stbl, b"stco")? {
        let (mut c, n) = full_box_entries(body)?;
        let n = check_count(n, 4, &c)?;
        (0..n)
            .map(|_| c.u32().map(u64::from).ok_or(SHORT))
            .collect::<Result<_, _>>()?
    } else {
        let (mut c, n) = full_box_entries(need(stbl, b"co64")?)?;
        let n = check_count(n, 8, &c)?;
        (0..n).map(|_| c.u64().ok_or(SHORT)).collect::<Result<_, _>>()?
    };
    let (mut c, n) = full_box_entries(need(stbl, b"stsc")?)?;
    let n = check_count(n, 12, &c)?;
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        let first = c.u32().ok_or(SHORT)?;
        let per = c.u32().ok_or(SHORT)?;
        c.skip(4).ok_or(SHORT)?;
        runs.push((first, per));
    }
    let mut out = Vec::with_capacity(total);
    let mut dts = 0i64;
    let mut s = 0usize;
    for (ri, &(first, per)) in runs.iter().enumerate() {
        let last = runs.get(ri + 1).map(|r| r.0).unwrap_or(offsets.len() as u32 + 1);
        if first == 0 || last < first {
            return Err("stsc runs out of order".into());
        }
        for chunk in first..last {
            let mut off = *offsets
                .get(chunk as usize - 1)
                .ok_or_else(|| format!("stsc names chunk {chunk} of {}", offsets.len()))?;
            for _ in 0..per {
                if s >= total {
                    break;
                }
                out.push(Sample {
                    offset: off,
                    size: sizes[s],
                    dts,
                    duration: durations[s],
                    key: key[s],
                });
                off = off.checked_add(u64::from(sizes[s])).ok_or("offset overflow")?;
                dts = dts.checked_add(i64::from(durations[s])).ok_or("time overflow")?;
                s += 1;
            }
        }
    }
    if out.len() != total {
        return Err(format!("chunks hold {} samples, stsz lists {total}", out.len()));
    }
    Ok(out)
}

/// The samples of one moof for track `t`. `moof_start` is its file offset.
fn parse_moof(
    moof: &[u8],
    moof_start: u64,
    t: &TrackInfo,
    next_dts: &mut i64,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    for r in boxes(moof) {
        let (typ, traf, _) = r?;
        if &typ != b"traf" {
            continue;
        }
        let tfhd = need(traf, b"tfhd")?;
        let mut c = Cur::new(tfhd);
        let flags = c.u32().ok_or(SHORT)? & 0xff_ffff;
        if c.u32().ok_or(SHORT)? != t.id {
            continue;
        }
        let mut base = moof_start;
        let mut d = t.trex;
        if flags & 0x1 != 0 {
            base = c.u64().ok_or(SHORT)?;
        }
        if flags & 0x2 != 0 {
            c.skip(4).ok_or(SHORT)?;
        }
        if flags & 0x8 != 0 {
            d.duration = c.u32().ok_or(SHORT)?;
        }
        if flags & 0x10 != 0 {
            d.size = c.u32().ok_or(SHORT)?;
        }
        if flags & 0x20 != 0 {
            d.flags = c.u32().ok_or(SHORT)?;
        }
        if let Some((tfdt, _)) = child(traf, b"tfdt")? {
            let mut c = Cur::new(tfdt);
            let v = c.u8().ok_or(SHORT)?;
            c.skip(3).ok_or(SHORT)?;
            let t0 = if v == 1 {
                c.u64().ok_or(SHORT)?
            } else {
                u64::from(c.u32().ok_or(SHORT)?)
            };
            *next_dts = i64::try_from(t0).map_err(|_| "tfdt out of range")?;
        }
        for r in boxes(traf) {
            let (typ, trun, _) = r?;
            if &typ != b"trun" {
                continue;
            }
            let mut c = Cur::new(trun);
            let tf = c.u32().ok_or(SHORT)?;
            let n = c.u32().ok_or(SHORT)? as usize;
            if n > MAX_SAMPLES || out.len() + n > MAX_SAMPLES {
                return Err("too many samples".into());
            }
            let mut off = base;
            if tf & 0x1 != 0 {
                let rel = c.u32().ok_or(SHORT)? as i32;
                off = base
                    .checked_add_signed(i64::from(rel))
                    .ok_or("data offset out of range")?;
            }
            let first_flags = if tf & 0x4 != 0 {
                Some(c.u32().ok_or(SHORT)?)
            } else {
                None
            };
            for i in 0..n {
                let dur = if tf & 0x100 != 0 {
                    c.u32().ok_or(SHORT)?
                } else {
                    d.duration
                };
                let size = if tf & 0x200 != 0 { c.u32().ok_or(SHORT)? } else { d.size };
                let sflags = if tf & 0x400 != 0 {
                    c.u32().ok_or(SHORT)?
                } else if i == 0 {
                    first_flags.unwrap_or(d.flags)
                } else {
                    d.flags
                };
                if tf & 0x800 != 0 && c.u32().ok_or(SHORT)? != 0 {
                    return Err(
                        "B-frames (composition offsets) are not supported: Vigil stores frames in presentation order"
                            .into(),
                    );
                }
                out.push(Sample {
                    offset: off,
                    size,
                    dts: *next_dts,
                    duration: dur,
                    key: sflags & 0x0001_0000 == 0,
                });
                off = off.checked_add(u64::from(size)).ok_or("offset overflow")?;
                *next_dts = next_dts.checked_add(i64::from(dur)).ok_or("time overflow")?;
            }
        }
    }
    Ok(())
}

fn read_box_body(f: &mut File, path: &Path, start: u64, len: u64) -> Result<Vec<u8>, DemuxError> {
    if len > MAX_META_BOX {
        return Err(DemuxError::Unsupported {
            path: path.to_path_buf(),
            what: format!("a metadata box of {len} bytes"),
        });
    }
    let io = |source| DemuxError::Io {
        path: path.to_path_buf(),
        source,
    };
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut b = vec![0u8; len as usize];
    f.read_exact(&mut b).map_err(io)?;
    Ok(b)
}

/// Opens `path` and reads its (single) video track's sample table.
pub fn open(path: &Path) -> Result<(File, VideoTrack), DemuxError> {
    let io = |source| DemuxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |what: String| DemuxError::Malformed {
        path: path.to_path_buf(),
        what,
    };
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    // Top-level boxes: where moov and every moof are.
    let mut pos = 0u64;
    let mut moov = None;
    let mut moofs = Vec::new();
    let mut n = 0usize;
    while pos < file_len {
        n += 1;
        if n > 10_000_000 {
            return Err(bad("too many top-level boxes".into()));
        }
        f.seek(SeekFrom::Start(pos)).map_err(io)?;
        let mut h = [0u8; 16];
        let got = f.read(&mut h).map_err(io)?;
        if got < 8 {
            return Err(bad(format!("truncated box at byte {pos}")));
        }
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
        let typ = [h[4], h[5], h[6], h[7]];
        let (hdr, size) = match size32 {
            0 => (8, file_len - pos),
            1 if got >= 16 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&h[8..16]);
                (16, u64::from_be_bytes(a))
            }
            1 => return Err(bad(format!("truncated box at byte {pos}"))),
            s => (8, s),
        };
        if size < hdr || pos.checked_add(size).is_none_or(|e| e > file_len) {
            return Err(bad(format!(
                "box '{}' at byte {pos} runs past the end of the file",
                String::from_utf8_lossy(&typ)
            )));
        }
        match &typ {
            b"moov" => moov = Some((pos + hdr, size - hdr)),
            b"moof" => moofs.push((pos, pos + hdr, size - hdr)),
            _ => {}
        }
        pos += size;
    }
    let (ms, ml) = moov.ok_or_else(|| bad("no 'moov' box".into()))?;
    let moov = read_box_body(&mut f, path, ms, ml)?;
    let mut creation_unix = None;
    if let Some((mvhd, _)) = child(&moov, b"mvhd").map_err(&bad)? {
        let mut c = Cur::new(mvhd);
        let v = c.u8().unwrap_or(0);
        let _ = c.skip(3);
        let t = if v == 1 { c.u64() } else { c.u32().map(u64::from) };
        // Seconds since 1904-01-01; 0 means unknown.
        creation_unix = t.filter(|&t| t > 0).map(|t| t as i64 - 2_082_844_800);
    }
    let mut track = None;
    for r in boxes(&moov) {
        let (typ, body, _) = r.map_err(&bad)?;
        if &typ == b"trak" {
            if let Some(t) = parse_trak(body).map_err(|w| DemuxError::Unsupported {
                path: path.to_path_buf(),
                what: w,
            })? {
                if track.is_some() {
                    return Err(DemuxError::Unsupported {
                        path: path.to_path_buf(),
                        what: "more than one video track".into(),
                    });
                }
                track = Some(t);
            }
        }
    }
    let mut t = track.ok_or_else(|| DemuxError::Unsupported {
        path: path.to_path_buf(),
        what: "no H.264 or H.265 video track".into(),
    })?;
    if let Some(mvex) = child(&moov, b"mvex").map_err(&bad)?.map(|(b, _)| b) {
        for r in boxes(mvex) {
            let (typ, body, _) = r.map_err(&bad)?;
            if &typ == b"trex" {
                let mut c = Cur::new(body);
                let _ = c.skip(4);
                if c.u32() == Some(t.id) {
                    let _ = c.skip(4);
                    t.trex = TrexDefaults {
                        duration: c.u32().unwrap_or(0),
                        size: c.u32().unwrap_or(0),
                        flags: c.u32().unwrap_or(0),
                    };
                }
            }
        }
    }
    let mut samples = std::mem::take(&mut t.samples);
    let mut next_dts = samples.last().map(|s| s.dts + i64::from(s.duration)).unwrap_or(0);
    for (start, body_start, body_len) in moofs {
        let moof = read_box_body(&mut f, path, body_start, body_len)?;
        parse_moof(&moof, start, &t, &mut next_dts, &mut samples).map_err(&bad)?;
    }
    for (i, s) in samples.iter().enumerate() {
        if s.size == 0
            || s.size > MAX_SAMPLE_BYTES
            || s.offset.checked_add(u64::from(s.size)).is_none_or(|e| e > file_len)
        {
            return Err(bad(format!(
                "sample {i} ({} bytes at {}) is outside the file",
                s.size, s.offset
            )));
        }
    }
    if samples.is_empty() {
        return Err(bad("the video track has no samples".into()));
    }
    Ok((
        f,
        VideoTrack {
            codec: t.codec,
            timescale: t.timescale,
            width: t.width,
            height: t.height,
            sample_entry: t.sample_entry,
            samples,
            creation_unix,
        },
    ))
}

/// Reads one sample's bytes.
pub fn read_sample(f: &mut File, path: &Path, s: &Sample, buf: &mut Vec<u8>) -> Result<(), DemuxError> {
    let io = |source| DemuxError::Io {
        path: path.to_path_buf(),
        source,
    };
    f.seek(SeekFrom::Start(s.offset)).map_err(io)?;
    buf.clear();
    buf.resize(s.size as usize, 0);
    f.read_exact(buf).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Arbitrary bytes, and arbitrary boxes around a moov, never panic.
        #[test]
        fn hostile_files_never_panic(body in proptest::collection::vec(any::<u8>(), 0..3000), typ in 0usize..4) {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("x.mp4");
            let names: [&[u8; 4]; 4] = [b"moov", b"moof", b"trak", b"ftyp"];
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(names[typ]);
            b.extend_from_slice(&body);
            std::fs::write(&p, &b).unwrap();
            let _ = open(&p);
            std::fs::write(&p, &body).unwrap();
            let _ = open(&p);
        }
    }
}
