//! H.265 converted to H.264 for the browser (`?codec=h264`): the state of
//! the conversion sessions (`GET /api/v1/transcode`), the errors a request
//! gets when it cannot have one (501 without the `ffmpeg` feature, 503 with
//! Retry-After when every session is busy), and a recorded range played as
//! a converted progressive fragmented MP4 (read fragment by fragment from
//! the view's layout on a thread of its own, no Range support).

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use crate::evidence::export::ViewLayout;
use crate::ingest::transcode::TranscodeError;
use crate::web::auth::Ctx;
use crate::web::reply::{ok, ApiError, Reply};
use crate::web::AppState;

/// Seconds a client is told to wait when every session is busy.
const RETRY_AFTER_SECONDS: u64 = 10;

/// How long a converted view waits for its client to take the next piece
/// before it ends (a paused player keeps the connection open unread).
#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
const CLIENT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `GET /api/v1/transcode`: whether this box converts, with which encoder,
/// how many sessions it allows and how many run.
pub async fn status(st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let t = st.transcoders.clone();
    let encoder = tokio::task::spawn_blocking(move || t.encoder_name())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let t = &st.transcoders;
    ok(json!({
        "available": t.available() && encoder.is_some(),
        "encoder": encoder,
        "max_sessions": t.max_sessions(),
        "in_use": t.in_use(),
    }))
}

/// The answer to a request that cannot have a conversion.
pub fn refused(e: TranscodeError) -> ApiError {
    match e {
        TranscodeError::Unsupported => ApiError::new(StatusCode::NOT_IMPLEMENTED, e.to_string()),
        TranscodeError::Busy(_) | TranscodeError::PersonBusy => {
            let mut a = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            a.retry_after = Some(RETRY_AFTER_SECONDS);
            a
        }
        TranscodeError::NotRunning => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        TranscodeError::Codec(m) => ApiError::internal(m),
    }
}

/// Whether a view's init segment describes H.265 (an `hvcC`).
pub fn is_h265(init: &[u8]) -> bool {
    init.windows(4).any(|w| w == b"hvcC")
}

/// The sample entries of an init segment's `stsd`, in order (sample
/// description index 1, 2, ...); empty if it has none that parse.
pub fn sample_entries(init: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let Some(at) = init.windows(4).position(|w| w == b"stsd") else {
        return out;
    };
    let count = be32(init, at + 8).unwrap_or(0);
    let mut pos = at + 12;
    for _ in 0..count {
        let Some(size) = be32(init, pos).map(|n| n as usize) else {
            break;
        };
        let Some(entry) = pos.checked_add(size).and_then(|end| init.get(pos..end)) else {
            break;
        };
        if size < 8 {
            break;
        }
        out.push(entry);
        pos += size;
    }
    out
}

/// The media timescale of an init segment (its `mdhd`).
pub fn timescale_of(init: &[u8]) -> Option<u32> {
    let at = init.windows(4).position(|w| w == b"mdhd")?;
    let version = *init.get(at + 4)?;
    let pos = if version == 1 { at + 24 } else { at + 16 };
    Some(u32::from_be_bytes(init.get(pos..pos + 4)?.try_into().ok()?))
}

/// One fragment of a view as `mp4::write_fragment` writes it.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceFragment<'a> {
    pub decode_time: u64,
    pub description: u32,
    /// Each sample's duration, whether it is a key frame, its data.
    pub samples: Vec<(u32, bool, &'a [u8])>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Reads a fragment of the fixed layout `mp4::write_fragment` writes
/// (moof: mfhd, traf: tfhd with the description index, tfdt v1, trun with
/// duration, size and flags per sample; then mdat). None if it is not one.
pub fn parse_fragment(buf: &[u8]) -> Option<SourceFragment<'_>> {
    let fourcc = |at: usize, f: &[u8; 4]| buf.get(at..at + 4) == Some(&f[..]);
    if !(fourcc(4, b"moof") && fourcc(36, b"tfhd") && fourcc(56, b"tfdt") && fourcc(76, b"trun")) {
        return None;
    }
    let description = be32(buf, 48)?;
    let decode_time = u64::from_be_bytes(buf.get(64..72)?.try_into().ok()?);
    let count = usize::try_from(be32(buf, 84)?).ok()?;
    let mut data = usize::try_from(be32(buf, 88)?).ok()?;
    let mut samples = Vec::with_capacity(count.min(10_000));
    for i in 0..count {
        let at = i.checked_mul(12)?.checked_add(92)?;
        let size = usize::try_from(be32(buf, at.checked_add(4)?)?).ok()?;
        let (duration, flags) = (be32(buf, at)?, be32(buf, at.checked_add(8)?)?);
        let end = data.checked_add(size)?;
        samples.push((duration, flags & 0x0001_0000 == 0, buf.get(data..end)?));
        data = end;
    }
    Some(SourceFragment {
        decode_time,
        description,
        samples,
    })
}

/// The body of a converted view for `person` (one at a time each): its
/// pieces, produced on a thread of its own (which holds the conversion
/// session) and taken as the client reads; it ends when the client leaves
/// or takes nothing for [`CLIENT_WAIT`].
pub fn converted_view(
    st: &Arc<AppState>,
    person: &str,
    layout: Arc<ViewLayout>,
) -> Result<tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>, ApiError> {
    let session = st.transcoders.session(person).map_err(refused)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    #[cfg(feature = "ffmpeg")]
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| ApiError::internal(e.to_string()))?;
        let (storage, keyring) = (st.storage.clone(), st.keyring.clone());
        std::thread::Builder::new()
            .name("transcode view".into())
            .spawn(move || {
                let _session = session;
                let send = |piece: Result<Bytes, std::io::Error>| {
                    // The timer is made inside block_on: it needs the runtime's context.
                    let sent = runtime.block_on(async { tokio::time::timeout(CLIENT_WAIT, tx.send(piece)).await });
                    matches!(sent, Ok(Ok(())))
                };
                let gone = || tx.is_closed();
                if let Err(e) = convert::view(&storage, keyring.as_ref(), &layout, |b| send(Ok(Bytes::from(b))), gone) {
                    tracing::warn!("converted playback stopped: {e}");
                    send(Err(std::io::Error::other(e)));
                }
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    #[cfg(not(feature = "ffmpeg"))]
    {
        let _ = (session, tx, layout);
    }
    Ok(rx)
}

#[cfg(feature = "ffmpeg")]
mod convert {
    use super::{is_h265, parse_fragment, sample_entries, timescale_of};
    use crate::evidence::export::ViewLayout;
    use crate::ingest::transcode::{Converted, H265ToH264};
    use vigil_format::mp4;

    /// Converts `layout`'s fragments in order, handing each output piece to
    /// `send` (false: the client left or took nothing for too long); stops
    /// early, between frames, once `gone` says the client has left.
    pub fn view(
        storage: &crate::storage::Storage,
        keys: &dyn vigil_format::keys::KeyLookup,
        layout: &ViewLayout,
        mut send: impl FnMut(Vec<u8>) -> bool,
        gone: impl Fn() -> bool,
    ) -> Result<(), String> {
        let entries = sample_entries(&layout.init);
        let timescale = timescale_of(&layout.init).ok_or("the view has no media timescale")?;
        let duration = (i128::from(layout.end_wall_ns - layout.first_wall_ns) * i128::from(timescale) / 1_000_000_000)
            .clamp(0, i128::from(u64::MAX)) as u64;
        let mut conv: Option<(u32, H265ToH264)> = None;
        let mut out = Output {
            timescale,
            duration,
            started: None,
            held: None,
            seq: 0,
            batch: Vec::new(),
            last_duration: (timescale / 25).max(1),
        };
        let mut buf = Vec::new();
        for i in 0..layout.fragments.len() {
            crate::evidence::export::view_fragment(storage, keys, layout, i, &mut buf).map_err(|e| e.to_string())?;
            let f = parse_fragment(&buf).ok_or("a view fragment did not parse")?;
            let c = match &mut conv {
                Some((d, c)) if *d == f.description => c,
                _ => {
                    // A recording with other parameters: a fresh decoder.
                    let entry = f
                        .description
                        .checked_sub(1)
                        .and_then(|d| entries.get(d as usize))
                        .ok_or("a fragment names a sample entry the view lacks")?;
                    if !is_h265(entry) {
                        return Err("the range mixes H.264 and H.265 recordings; play it unconverted".into());
                    }
                    if let Some((_, old)) = conv.as_mut() {
                        for c in old.finish()? {
                            out.add(c);
                        }
                    }
                    &mut conv.insert((f.description, H265ToH264::new(entry, timescale)?)).1
                }
            };
            let mut pts = f.decode_time as i64;
            for (duration, key, data) in &f.samples {
                if gone() {
                    return Ok(());
                }
                for c in c.push(pts, *key, data)? {
                    out.add(c);
                }
                pts += i64::from(*duration);
            }
            if !out.flush(&mut send, None)? {
                return Ok(());
            }
        }
        if let Some((_, c)) = conv.as_mut() {
            for c in c.finish()? {
                out.add(c);
            }
        }
        // The last frame lasts as long as the one before it.
        let last = out.last_duration;
        out.flush(&mut send, Some(last))?;
        Ok(())
    }

    /// The converted MP4 being written: its init segment once the first
    /// frame's parameters are known, then a fragment per source fragment.
    struct Output {
        timescale: u32,
        duration: u64,
        started: Option<std::sync::Arc<vigil_format::media::StreamParams>>,
        /// The newest frame, kept until the next one gives its duration.
        held: Option<Converted>,
        seq: u32,
        batch: Vec<(Converted, u32)>,
        /// The duration of the newest frame written to the batch.
        last_duration: u32,
    }

    impl Output {
        fn add(&mut self, c: Converted) {
            if let Some(h) = self.held.take() {
                let d = (c.pts - h.pts).clamp(1, i64::from(u32::MAX)) as u32;
                self.last_duration = d;
                self.batch.push((h, d));
            }
            self.held = Some(c);
        }

        /// Writes the frames of known duration (and the held one too, with
        /// `last`, at the end); false when the client left.
        fn flush(&mut self, send: &mut impl FnMut(Vec<u8>) -> bool, last: Option<u32>) -> Result<bool, String> {
            if let Some(d) = last {
                if let Some(h) = self.held.take() {
                    self.batch.push((h, d));
                }
            }
            let Some((first, _)) = self.batch.first() else {
                return Ok(true);
            };
            let mut piece = Vec::new();
            match &self.started {
                None => {
                    let p = first.params.clone();
                    piece = mp4::init_segment(&mp4::TrackInfo {
                        timescale: self.timescale,
                        width: p.width,
                        height: p.height,
                        duration: self.duration,
                        sample_entries: std::slice::from_ref(&p.sample_entry),
                    });
                    self.started = Some(p);
                }
                Some(p) if **p != *first.params => return Err("the converted stream's parameters changed".into()),
                Some(_) => {}
            }
            let samples: Vec<mp4::Sample> = self
                .batch
                .iter()
                .map(|(c, d)| mp4::Sample {
                    duration: *d,
                    size: c.data.len() as u32,
                    key: c.key,
                })
                .collect();
            let datas: Vec<&[u8]> = self.batch.iter().map(|(c, _)| c.data.as_slice()).collect();
            self.seq += 1;
            let decode = first.pts.max(0) as u64;
            mp4::write_fragment(&mut piece, self.seq, decode, 1, &samples, &datas).map_err(|e| e.to_string())?;
            self.batch.clear();
            Ok(send(piece))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_format::mp4;

    #[test]
    fn fragments_read_back_as_written() {
        let samples = [
            mp4::Sample {
                duration: 3600,
                size: 3,
                key: true,
            },
            mp4::Sample {
                duration: 3000,
                size: 2,
                key: false,
            },
        ];
        let mut buf = Vec::new();
        mp4::write_fragment(&mut buf, 7, 90_000, 2, &samples, &[&[1, 2, 3], &[4, 5]]).unwrap();
        let f = parse_fragment(&buf).unwrap();
        assert_eq!(
            f,
            SourceFragment {
                decode_time: 90_000,
                description: 2,
                samples: vec![(3600, true, &[1, 2, 3][..]), (3000, false, &[4, 5][..])],
            }
        );
        assert!(parse_fragment(&buf[..buf.len() - 1]).is_none(), "a cut fragment");
        assert!(parse_fragment(b"not a fragment").is_none());
        // A sample count and data offset near u32::MAX: no overflow, no fragment.
        let mut huge = buf.clone();
        huge[84..88].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_fragment(&huge).is_none());
        huge[88..92].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_fragment(&huge).is_none());
    }

    #[test]
    fn init_segments_give_their_timescale_and_codec() {
        let entry = mp4::avc1_sample_entry(640, 360, &[1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 0, 1, 0, 0]);
        let init = mp4::init_segment(&mp4::TrackInfo {
            timescale: 90_000,
            width: 640,
            height: 360,
            duration: 0,
            sample_entries: std::slice::from_ref(&entry),
        });
        assert_eq!(timescale_of(&init), Some(90_000));
        assert!(!is_h265(&init));
        assert_eq!(sample_entries(&init), vec![&entry[..]]);
        let hvc1 = [&entry[..4], b"hvc1", &entry[8..]].concat();
        let both = mp4::init_segment(&mp4::TrackInfo {
            timescale: 90_000,
            width: 640,
            height: 360,
            duration: 0,
            sample_entries: &[entry.clone(), hvc1.clone()],
        });
        assert_eq!(sample_entries(&both), vec![&entry[..], &hvc1[..]]);
        assert!(sample_entries(&both[..both.len() / 2]).len() < 2, "a cut init segment");
        assert!(is_h265(b"....hvcC"));
    }

    #[test]
    fn refusals_say_why_with_the_right_status() {
        let e = refused(TranscodeError::Unsupported);
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(e.message, "this build cannot convert H.265 for the browser");
        let e = refused(TranscodeError::Busy(2));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.message, "all 2 conversion sessions are in use");
        assert!(e.retry_after.is_some());
        let e = refused(TranscodeError::PersonBusy);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.message, "you already have a conversion running; close it first");
    }
}
