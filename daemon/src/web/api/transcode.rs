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

/// Whether a sample entry is H.265 (`hvc1` or `hev1`).
pub fn is_h265(entry: &[u8]) -> bool {
    matches!(entry.get(4..8), Some(b"hvc1" | b"hev1"))
}

/// Whether a view holds H.265 recordings.
pub fn view_is_h265(layout: &ViewLayout) -> bool {
    layout.sample_entries.iter().any(|e| is_h265(e))
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
    use super::is_h265;
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
        let entries = &layout.sample_entries;
        let timescale = layout.timescale;
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
            let f =
                crate::evidence::export::view_chunk(storage, keys, layout, i, &mut buf).map_err(|e| e.to_string())?;
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
            for (_, frame, data) in f.chunk.iter() {
                if gone() {
                    return Ok(());
                }
                for c in c.push(pts, frame.key, data)? {
                    out.add(c);
                }
                pts += i64::from(frame.duration);
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
    fn sample_entries_say_whether_they_are_h265() {
        let entry = mp4::avc1_sample_entry(640, 360, &[1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 0, 1, 0, 0]);
        assert!(!is_h265(&entry));
        let hvc1 = [&entry[..4], b"hvc1", &entry[8..]].concat();
        let hev1 = [&entry[..4], b"hev1", &entry[8..]].concat();
        assert!(is_h265(&hvc1) && is_h265(&hev1));
        assert!(!is_h265(b"hvc1"), "a cut entry");
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
