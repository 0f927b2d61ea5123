//! H.265 to H.264 for browsers that cannot play H.265: the box-wide cap on
//! conversion sessions ([`Transcoders`], `[http] max_transcodes`), one shared
//! converter per camera for all its live viewers (a broadcast like
//! `ingest::live`'s hub), and the converter itself ([`H265ToH264`]: the
//! hevc decoder of libavcodec, then `encoder.rs`'s H.264 encoder, scaled to
//! at most 1280 px wide). The codec work only exists in the build with the
//! `ffmpeg` feature; without it every conversion is
//! [`TranscodeError::Unsupported`]. Media time (pts) passes through
//! unchanged, so latency and the wall-clock mapping stay the source's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::ingest::live::{LiveFrame, LiveHub};

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
    #[error("you already have a conversion running; close it first")]
    PersonBusy,
    #[error("no such camera running")]
    NotRunning,
    #[error("cannot convert the stream: {0}")]
    Codec(String),
}

/// A live converter ends after this long without a frame from its camera
/// (its viewers see the stream end; the player reconnects).
pub const LIVE_SOURCE_SILENCE: Duration = Duration::from_secs(10);

/// How often a live converter waiting for its camera checks whether anyone
/// still watches.
const LIVE_WAKE: Duration = Duration::from_secs(1);

/// The conversion sessions of the box: at most `max` at once (a live
/// camera's converter counts once however many watch it), and at most one
/// playback or snapshot conversion per person.
pub struct Transcoders {
    max: usize,
    in_use: Mutex<usize>,
    /// The people with a playback or snapshot conversion running.
    people: Mutex<HashSet<String>>,
    /// The running live converters, by camera.
    live: Mutex<HashMap<String, broadcast::Sender<LiveFrame>>>,
    /// The H.264 encoder this box opens, once known.
    encoder: std::sync::OnceLock<Option<&'static str>>,
}

/// One conversion session's place; dropping it frees the place.
pub struct TranscodeSession {
    gate: Arc<Transcoders>,
    /// Whose conversion it is (None: a live converter, shared).
    person: Option<String>,
}

impl Drop for TranscodeSession {
    fn drop(&mut self) {
        if let Ok(mut n) = self.gate.in_use.lock() {
            *n = n.saturating_sub(1);
        }
        if let Some(who) = &self.person {
            if let Ok(mut people) = self.gate.people.lock() {
                people.remove(who);
            }
        }
    }
}

/// What a live converter does with its camera's frames.
pub trait LiveConverter {
    /// The converted frames of one source frame (none at first); None ends
    /// the converter (the source's parameters changed: viewers reconnect).
    fn convert(&mut self, frame: LiveFrame) -> Result<Option<Vec<LiveFrame>>, String>;
    /// Source frames were lost (the converter fell behind).
    fn lost(&mut self);
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
            people: Mutex::new(HashSet::new()),
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

    /// A place for one more playback or snapshot session of `person`:
    /// Unsupported without the codecs, PersonBusy when they have one
    /// running, Busy when every place is taken.
    pub fn session(self: &Arc<Self>, person: &str) -> Result<TranscodeSession, TranscodeError> {
        if !self.available() {
            return Err(TranscodeError::Unsupported);
        }
        self.take_place_for(person)
    }

    fn take_place_for(self: &Arc<Self>, person: &str) -> Result<TranscodeSession, TranscodeError> {
        let mut people = self.people.lock().map_err(|_| TranscodeError::Busy(self.max))?;
        if people.contains(person) {
            return Err(TranscodeError::PersonBusy);
        }
        let mut session = self.take_place()?;
        people.insert(person.to_string());
        session.person = Some(person.to_string());
        Ok(session)
    }

    fn take_place(self: &Arc<Self>) -> Result<TranscodeSession, TranscodeError> {
        let mut n = self.in_use.lock().map_err(|_| TranscodeError::Busy(self.max))?;
        if *n >= self.max {
            return Err(TranscodeError::Busy(self.max));
        }
        *n += 1;
        Ok(TranscodeSession {
            gate: self.clone(),
            person: None,
        })
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
    /// camera stops, sends nothing for [`LIVE_SOURCE_SILENCE`] or changes
    /// its parameters.
    pub fn live_h264(
        self: &Arc<Self>,
        hub: &LiveHub,
        camera: &str,
    ) -> Result<broadcast::Receiver<LiveFrame>, TranscodeError> {
        if !self.available() {
            return Err(TranscodeError::Unsupported);
        }
        #[cfg(feature = "ffmpeg")]
        {
            self.start_live(hub, camera, codec::LiveConversion::default, LIVE_SOURCE_SILENCE)
        }
        #[cfg(not(feature = "ffmpeg"))]
        {
            let _ = (hub, camera);
            Err(TranscodeError::Unsupported)
        }
    }

    /// Joins `camera`'s running live converter, or starts one (made by
    /// `make`) on a thread of its own, taking a session, that ends when its
    /// last viewer has gone (checked at least every second), the camera
    /// stops or sends nothing for `silence`, or the converter ends it. Call
    /// from inside the runtime (the thread waits on its timers).
    #[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
    fn start_live<C: LiveConverter>(
        self: &Arc<Self>,
        hub: &LiveHub,
        camera: &str,
        make: impl FnOnce() -> C + Send + 'static,
        silence: Duration,
    ) -> Result<broadcast::Receiver<LiveFrame>, TranscodeError> {
        let mut live = self.live.lock().map_err(|_| TranscodeError::Busy(self.max))?;
        if let Some(tx) = live.get(camera) {
            return Ok(tx.subscribe());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| TranscodeError::Codec(e.to_string()))?;
        let source = hub.subscribe(camera).ok_or(TranscodeError::NotRunning)?;
        let session = self.take_place()?;
        let (tx, rx) = broadcast::channel(64);
        live.insert(camera.to_string(), tx.clone());
        drop(live);
        let gate = self.clone();
        let cam = camera.to_string();
        let mine = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("transcode {camera}"))
            .spawn(move || {
                let _session = session;
                // Forgotten however the thread ends (a panic in the codec
                // too): a dead channel left in the map would answer every
                // later viewer with a stream that never starts.
                let _forget = ForgetLive {
                    gate,
                    camera: cam.clone(),
                    tx: tx.clone(),
                };
                if let Err(e) = pump_live(&runtime, source, &tx, make(), silence) {
                    tracing::warn!(camera = %cam, "live conversion to H.264 stopped: {e}");
                }
            });
        if let Err(e) = spawned {
            self.forget_live(camera, &mine);
            return Err(TranscodeError::Codec(e.to_string()));
        }
        Ok(rx)
    }

    /// Live converters running now (for tests and the log).
    pub fn live_converters(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// A live converter ended: it is no longer joined.
    #[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
    fn forget_live(&self, camera: &str, tx: &broadcast::Sender<LiveFrame>) {
        if let Ok(mut m) = self.live.lock() {
            if m.get(camera).is_some_and(|t| t.same_channel(tx)) {
                m.remove(camera);
            }
        }
    }
}

/// Removes a live converter's channel from the map when its thread ends,
/// by returning or by unwinding.
struct ForgetLive {
    gate: Arc<Transcoders>,
    camera: String,
    tx: broadcast::Sender<LiveFrame>,
}

impl Drop for ForgetLive {
    fn drop(&mut self) {
        self.gate.forget_live(&self.camera, &self.tx);
    }
}

/// A live converter's loop (on its own thread): `source` frames through
/// `conv` onto `tx`, until nobody receives (checked at least every
/// [`LIVE_WAKE`], with or without frames), the camera stops, sends nothing
/// for `silence` (an error, for the log) or `conv` ends it.
#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
fn pump_live(
    runtime: &tokio::runtime::Handle,
    mut source: broadcast::Receiver<LiveFrame>,
    tx: &broadcast::Sender<LiveFrame>,
    mut conv: impl LiveConverter,
    silence: Duration,
) -> Result<(), String> {
    let mut last_frame = Instant::now();
    loop {
        if tx.receiver_count() == 0 {
            return Ok(());
        }
        let quiet = last_frame.elapsed();
        if quiet >= silence {
            return Err(format!("no frame from the camera for {} s", quiet.as_secs()));
        }
        let wait = LIVE_WAKE.min(silence - quiet);
        // The timer is made inside block_on: it needs the runtime's context.
        match runtime.block_on(async { tokio::time::timeout(wait, source.recv()).await }) {
            Err(_) => continue, // no frame yet: look at the viewers and the silence again
            Ok(Ok(f)) => {
                last_frame = Instant::now();
                let Some(out) = conv.convert(f)? else {
                    return Ok(());
                };
                for f in out {
                    let _ = tx.send(f);
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                last_frame = Instant::now();
                conv.lost();
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(()),
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

    #[test]
    fn one_playback_conversion_per_person() {
        let t = Arc::new(Transcoders::new(3));
        let a = t.take_place_for("user #1").unwrap();
        assert_eq!(t.take_place_for("user #1").err(), Some(TranscodeError::PersonBusy));
        assert_eq!(
            TranscodeError::PersonBusy.to_string(),
            "you already have a conversion running; close it first"
        );
        let _b = t.take_place_for("user #2").unwrap();
        assert_eq!(t.in_use(), 2, "a refused person takes no place");
        drop(a);
        assert_eq!(t.in_use(), 1);
        let _a = t.take_place_for("user #1").unwrap();
        let _c = t.take_place_for("user #3").unwrap();
        assert_eq!(t.take_place_for("user #4").err(), Some(TranscodeError::Busy(3)));
    }

    /// Frames pass unchanged (the codecs are not needed to test the loop).
    struct Passthrough;

    impl LiveConverter for Passthrough {
        fn convert(&mut self, frame: LiveFrame) -> Result<Option<Vec<LiveFrame>>, String> {
            Ok(Some(vec![frame]))
        }
        fn lost(&mut self) {}
    }

    fn live_frame(pts: i64) -> LiveFrame {
        LiveFrame {
            pts,
            key: true,
            data: bytes::Bytes::from_static(&[0, 0, 0, 1, 0x26]),
            params: Arc::new(vigil_format::media::StreamParams {
                codec: vigil_format::vseg::Codec::H265,
                timescale: 90_000,
                width: 64,
                height: 64,
                sample_entry: Vec::new(),
            }),
            audio: None,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Waits (at most `limit`) until `t` has no session in use.
    fn freed_within(t: &Transcoders, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if t.in_use() == 0 && t.live_converters() == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_live_converter_whose_camera_goes_silent_frees_its_session() {
        let rt = runtime();
        let _in_runtime = rt.enter();
        let hub = LiveHub::new();
        // The camera stays "connected" (its channel lives) but goes silent.
        let camera = hub.tap("garage").unwrap();
        let t = Arc::new(Transcoders::new(1));
        let mut rx = t
            .start_live(&hub, "garage", || Passthrough, Duration::from_millis(400))
            .unwrap();
        assert_eq!((t.in_use(), t.live_converters()), (1, 1));
        camera.send(live_frame(0)).unwrap();
        let got = rt.block_on(tokio::time::timeout(Duration::from_secs(2), rx.recv()));
        assert_eq!(got.unwrap().unwrap().pts, 0, "a frame passes");
        // A viewer still watches, but no frame comes: the converter ends.
        assert!(freed_within(&t, Duration::from_secs(3)), "the session is freed");
        let end = rt.block_on(tokio::time::timeout(Duration::from_secs(1), rx.recv()));
        assert!(
            matches!(end, Ok(Err(broadcast::error::RecvError::Closed))),
            "the viewer sees the end"
        );
        drop(camera);
    }

    #[test]
    fn a_live_converter_whose_viewers_left_ends_while_its_camera_is_silent() {
        let rt = runtime();
        let _in_runtime = rt.enter();
        let hub = LiveHub::new();
        let camera = hub.tap("garage").unwrap();
        let t = Arc::new(Transcoders::new(1));
        let rx = t
            .start_live(&hub, "garage", || Passthrough, Duration::from_secs(60))
            .unwrap();
        let joined = t
            .start_live(&hub, "garage", || Passthrough, Duration::from_secs(60))
            .unwrap();
        assert_eq!(t.in_use(), 1, "viewers of one camera share a converter");
        drop((rx, joined));
        assert!(
            freed_within(&t, Duration::from_secs(3)),
            "the session is freed within about a second"
        );
        drop(camera);
    }

    #[cfg(not(feature = "ffmpeg"))]
    #[test]
    fn without_ffmpeg_nothing_converts() {
        let t = Arc::new(Transcoders::default());
        assert!(!t.available());
        assert_eq!(t.session("user #1").err(), Some(TranscodeError::Unsupported));
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
