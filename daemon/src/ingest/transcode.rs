//! H.265 to H.264 for browsers that cannot play H.265: the box-wide cap on
//! conversion sessions ([`Transcoders`], `[http] max_transcodes`), one shared
//! converter per camera for all its live viewers (a broadcast like
//! `ingest::live`'s hub), and the converter itself ([`H265ToH264`]: the
//! hevc decoder of libavcodec, then `encoder.rs`'s H.264 encoder, scaled to
//! at most 1280 px wide). The codec work only exists in the build with the
//! `ffmpeg` feature; without it every conversion is
//! [`TranscodeError::Unsupported`]. Media time (pts) passes through
//! unchanged, so latency and the wall-clock mapping stay the source's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

#[cfg(feature = "ffmpeg")]
pub use codec::{one_picture, Converted, H265ToH264};

/// Widest picture sent to a browser after conversion (bounds the CPU).
pub const MAX_WIDTH: u32 = 1280;

/// Why a conversion cannot be had.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    #[error("this build cannot convert H.265 for the browser")]
    Unsupported,
    #[error("all {0} conversion sessions are in use")]
    Busy(usize),
    #[error("no such camera running")]
    NotRunning,
    #[error("cannot convert the stream: {0}")]
    Codec(String),
}

/// The conversion sessions of the box: at most `max` at once (a live
/// camera's converter counts once however many watch it).
pub struct Transcoders {
    max: usize,
    in_use: Mutex<usize>,
    /// The running live converters, by camera.
    live: Mutex<HashMap<String, broadcast::Sender<crate::ingest::live::LiveFrame>>>,
    /// The H.264 encoder this box opens, once known.
    encoder: std::sync::OnceLock<Option<&'static str>>,
}

/// One conversion session's place; dropping it frees the place.
pub struct TranscodeSession {
    gate: Arc<Transcoders>,
}

impl Drop for TranscodeSession {
    fn drop(&mut self) {
        if let Ok(mut n) = self.gate.in_use.lock() {
            *n = n.saturating_sub(1);
        }
    }
}

/// The default of `[http] max_transcodes`.
pub const DEFAULT_MAX_TRANSCODES: usize = 2;

impl Default for Transcoders {
    fn default() -> Self {
        Transcoders::new(DEFAULT_MAX_TRANSCODES)
    }
}

impl Transcoders {
    pub fn new(max: usize) -> Self {
        Transcoders {
            max,
            in_use: Mutex::new(0),
            live: Mutex::new(HashMap::new()),
            encoder: std::sync::OnceLock::new(),
        }
    }

    /// Whether this build can convert at all.
    pub fn available(&self) -> bool {
        cfg!(feature = "ffmpeg")
    }

    pub fn max_sessions(&self) -> usize {
        self.max
    }

    /// Sessions running now.
    pub fn in_use(&self) -> usize {
        self.in_use.lock().map(|n| *n).unwrap_or(self.max)
    }

    /// A place for one more session: Unsupported without the codecs, Busy
    /// when every place is taken.
    pub fn session(self: &Arc<Self>) -> Result<TranscodeSession, TranscodeError> {
        if !self.available() {
            return Err(TranscodeError::Unsupported);
        }
        self.take_place()
    }

    fn take_place(self: &Arc<Self>) -> Result<TranscodeSession, TranscodeError> {
        let mut n = self.in_use.lock().map_err(|_| TranscodeError::Busy(self.max))?;
        if *n >= self.max {
            return Err(TranscodeError::Busy(self.max));
        }
        *n += 1;
        Ok(TranscodeSession { gate: self.clone() })
    }

    /// The H.264 encoder conversions use on this box (the first that
    /// opens: the hardware one where there is one); None without one.
    /// Blocking the first time (it opens one): call off the async threads.
    pub fn encoder_name(&self) -> Option<&'static str> {
        *self.encoder.get_or_init(|| {
            #[cfg(feature = "ffmpeg")]
            {
                codec::probe_encoder()
            }
            #[cfg(not(feature = "ffmpeg"))]
            {
                None
            }
        })
    }

    /// A receiver of `camera`'s live stream converted to H.264: joins the
    /// camera's running converter, or starts one (taking a session) on a
    /// thread of its own that ends when its last viewer has gone, the
    /// camera stops or its parameters change.
    pub fn live_h264(
        self: &Arc<Self>,
        hub: &crate::ingest::live::LiveHub,
        camera: &str,
    ) -> Result<broadcast::Receiver<crate::ingest::live::LiveFrame>, TranscodeError> {
        if !self.available() {
            return Err(TranscodeError::Unsupported);
        }
        let mut live = self.live.lock().map_err(|_| TranscodeError::Busy(self.max))?;
        if let Some(tx) = live.get(camera) {
            return Ok(tx.subscribe());
        }
        let source = hub.subscribe(camera).ok_or(TranscodeError::NotRunning)?;
        let session = self.take_place()?;
        let (tx, rx) = broadcast::channel(64);
        live.insert(camera.to_string(), tx.clone());
        drop(live);
        #[cfg(feature = "ffmpeg")]
        {
            let gate = self.clone();
            let cam = camera.to_string();
            let mine = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("transcode {camera}"))
                .spawn(move || {
                    let _session = session;
                    if let Err(e) = codec::run_live(source, &tx) {
                        tracing::warn!(camera = %cam, "live conversion to H.264 stopped: {e}");
                    }
                    gate.forget_live(&cam, &tx);
                });
            if let Err(e) = spawned {
                self.forget_live(camera, &mine);
                return Err(TranscodeError::Codec(e.to_string()));
            }
        }
        #[cfg(not(feature = "ffmpeg"))]
        {
            let _ = (source, session, tx);
        }
        Ok(rx)
    }

    /// Live converters running now (for tests and the log).
    pub fn live_converters(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// A live converter ended: it is no longer joined.
    #[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
    fn forget_live(&self, camera: &str, tx: &broadcast::Sender<crate::ingest::live::LiveFrame>) {
        if let Ok(mut m) = self.live.lock() {
            if m.get(camera).is_some_and(|t| t.same_channel(tx)) {
                m.remove(camera);
            }
        }
    }
}

/// The parameter sets of an `hvcC` (or `avcC`-less) sample entry as Annex B
/// NAL units, and the length of each NAL unit's size prefix in the samples.
/// None when `sample_entry` holds no well-formed `hvcC`.
pub fn hvcc_parameter_sets(sample_entry: &[u8]) -> Option<(Vec<u8>, usize)> {
    let at = sample_entry.windows(4).position(|w| w == b"hvcC")?;
    let size = u32::from_be_bytes(sample_entry.get(at.checked_sub(4)?..at)?.try_into().ok()?) as usize;
    let body = sample_entry.get(at + 4..(at - 4).checked_add(size)?)?;
    let length_size = usize::from(body.get(21)? & 3) + 1;
    let arrays = *body.get(22)?;
    let mut pos = 23;
    let mut out = Vec::new();
    for _ in 0..arrays {
        let count = u16::from_be_bytes(body.get(pos + 1..pos + 3)?.try_into().ok()?);
        pos += 3;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes(body.get(pos..pos + 2)?.try_into().ok()?));
            let nal = body.get(pos + 2..pos + 2 + len)?;
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
            pos += 2 + len;
        }
    }
    Some((out, length_size))
}

/// An MP4 sample (NAL units each after a `length_size`-byte size) as Annex
/// B; None when a size runs past the end.
pub fn sample_to_annexb(sample: &[u8], length_size: usize, out: &mut Vec<u8>) -> Option<()> {
    let mut pos = 0;
    while pos < sample.len() {
        let head = sample.get(pos..pos + length_size)?;
        let len = head.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        let nal = sample.get(pos + length_size..(pos + length_size).checked_add(len)?)?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        pos += length_size + len;
    }
    Some(())
}

/// The size a `width`×`height` picture is converted at: at most
/// [`MAX_WIDTH`] wide, aspect kept, even sides.
pub fn output_size(width: u32, height: u32) -> (u32, u32) {
    let w = width.clamp(2, MAX_WIDTH);
    let h = if width == 0 {
        height
    } else {
        (u64::from(height) * u64::from(w) / u64::from(width)) as u32
    };
    (w & !1, (h & !1).max(2))
}

#[cfg(feature = "ffmpeg")]
#[path = "transcode_codec.rs"]
mod codec;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_capped_and_freed() {
        let t = Arc::new(Transcoders::new(2));
        let a = t.take_place().unwrap();
        let _b = t.take_place().unwrap();
        assert_eq!(t.in_use(), 2);
        assert_eq!(t.take_place().err(), Some(TranscodeError::Busy(2)));
        assert_eq!(
            TranscodeError::Busy(2).to_string(),
            "all 2 conversion sessions are in use"
        );
        drop(a);
        assert_eq!(t.in_use(), 1);
        assert!(t.take_place().is_ok());
    }

    #[cfg(not(feature = "ffmpeg"))]
    #[test]
    fn without_ffmpeg_nothing_converts() {
        let t = Arc::new(Transcoders::default());
        assert!(!t.available());
        assert_eq!(t.session().err(), Some(TranscodeError::Unsupported));
        let hub = crate::ingest::live::LiveHub::new();
        assert_eq!(t.live_h264(&hub, "garage").err(), Some(TranscodeError::Unsupported));
        assert_eq!(t.encoder_name(), None);
        assert_eq!(
            TranscodeError::Unsupported.to_string(),
            "this build cannot convert H.265 for the browser"
        );
    }

    #[test]
    fn output_is_at_most_1280_wide_with_its_aspect() {
        assert_eq!(output_size(3840, 2160), (1280, 720));
        assert_eq!(output_size(640, 480), (640, 480));
        assert_eq!(output_size(2592, 1944), (1280, 960));
        assert_eq!(output_size(0, 0), (2, 2));
    }

    #[test]
    fn hvcc_and_samples_become_annexb() {
        // hvcC: 22 bytes of header (length size 4), 2 arrays: VPS, SPS+PPS.
        let mut body = vec![1u8; 21];
        body.push(0xfc | 3);
        body.push(2);
        body.extend_from_slice(&[0x20, 0, 1, 0, 2, 0x40, 0x01]);
        body.extend_from_slice(&[0x21, 0, 2, 0, 1, 0x42, 0, 1, 0x44]);
        let mut entry = b"hvc1....".to_vec();
        entry.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
        entry.extend_from_slice(b"hvcC");
        entry.extend_from_slice(&body);
        let (ps, n) = hvcc_parameter_sets(&entry).unwrap();
        assert_eq!(n, 4);
        assert_eq!(ps, [0, 0, 0, 1, 0x40, 1, 0, 0, 0, 1, 0x42, 0, 0, 0, 1, 0x44]);
        assert!(hvcc_parameter_sets(&entry[..entry.len() - 1]).is_none(), "a cut box");
        assert!(hvcc_parameter_sets(b"avc1avcC").is_none());

        let mut out = Vec::new();
        sample_to_annexb(&[0, 0, 0, 2, 0x26, 1, 0, 0, 0, 1, 0x02], 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x26, 1, 0, 0, 0, 1, 0x02]);
        assert!(sample_to_annexb(&[0, 0, 0, 9, 1], 4, &mut Vec::new()).is_none());
    }
}
