//! RTSP ingest with retina over TCP: connecting to a camera and demuxing
//! its first H.264/H.265 stream into frames (and, when the camera's audio is
//! recorded, its first AAC or G.711 stream), for the supervisor (which
//! reconnects with backoff, and whose no-frames watchdog catches a camera
//! that hangs with its connection open: retina does not notice), and the
//! camera test of the web UI.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{AudioParameters, CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tokio::sync::{mpsc, watch};

use crate::config::CameraConfig;
use crate::ingest::supervisor::{self, Backoff, Delivery, Session as _};
use crate::storage::recorder::Event;
use vigil_format::media::{AudioFrame, AudioParams, Frame, StreamParams};
use vigil_format::vseg::{AudioCodec, Codec};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("RTSP: {0}")]
    Rtsp(#[from] retina::Error),
    #[error("{0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    #[error("no frames for {0:?} (camera hung?)")]
    Stalled(Duration),
    #[error("the camera ended the stream")]
    Ended,
    #[error("no H.264 or H.265 video stream (streams: {0})")]
    NoVideo(String),
    #[error("unusable stream parameters: {0}")]
    Params(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// Runs one camera until `shutdown` flips to true.
pub async fn run_camera(
    cam: CameraConfig,
    password: Option<zeroize::Zeroizing<String>>,
    live: Option<tokio::sync::broadcast::Sender<crate::ingest::live::LiveFrame>>,
    stall_timeout: Duration,
    tx: mpsc::Sender<Event>,
    shutdown: watch::Receiver<bool>,
) {
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let camera = RtspCamera {
        cam,
        password,
        audio_failures: Arc::default(),
    };
    supervisor::run(camera, backoff, stall_timeout, live, tx, shutdown).await;
}

/// A camera's RTSP address and credentials, connected by the supervisor.
struct RtspCamera {
    cam: CameraConfig,
    password: Option<zeroize::Zeroizing<String>>,
    /// Sessions with audio in a row that failed within [`AUDIO_TRIAL`]
    /// (retina refuses some audio, e.g. interleaved AAC, by failing the
    /// whole session): after [`MAX_AUDIO_FAILURES`] the camera is recorded
    /// without its audio, so that its video is.
    audio_failures: Arc<std::sync::atomic::AtomicU32>,
}

const AUDIO_TRIAL: Duration = Duration::from_secs(5);
const MAX_AUDIO_FAILURES: u32 = 3;

impl supervisor::Source for RtspCamera {
    type Error = IngestError;
    type Session = RtspSession;

    fn camera(&self) -> &str {
        &self.cam.name
    }

    async fn connect(&mut self) -> Result<RtspSession, IngestError> {
        let cam = &self.cam;
        tracing::info!(camera = %cam.name, url = %redacted(&cam.url), "connecting");
        let password = self.password.as_deref().map(String::as_str);
        let failures = self.audio_failures.load(std::sync::atomic::Ordering::Relaxed);
        let audio = cam.record_audio && failures < MAX_AUDIO_FAILURES;
        if cam.record_audio && failures == MAX_AUDIO_FAILURES {
            tracing::warn!(camera = %cam.name, "sessions with audio keep failing at once; recording this camera without audio");
            self.audio_failures
                .store(MAX_AUDIO_FAILURES + 1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut session = open_stream(&cam.url, cam.username.as_deref(), password, audio).await?;
        // The camera's clock from its RTCP sender reports, unless ONVIF reads it
        // (more directly) or this is a camera's sub stream (its main one has it).
        if cam.onvif_url.is_none() && crate::base::names::main_of_sub_stream(&cam.name).is_none() {
            session.clock_due = Some(std::time::Instant::now());
        }
        if session.audio.is_some() {
            session.audio_trial = Some((std::time::Instant::now(), self.audio_failures.clone()));
        }
        Ok(session)
    }

    fn stalled(&self, after: Duration) -> IngestError {
        IngestError::Stalled(after)
    }
}

/// One playing RTSP session: the frames of its video stream, and of its
/// audio stream when that is recorded.
struct RtspSession {
    demuxed: retina::client::Demuxed,
    video: usize,
    sent_params: bool,
    audio: Option<AudioStream>,
    /// The video stream's RTP start and clock rate, from its first frame:
    /// audio is placed on the video clock through it.
    video_clock: Option<(u32, u32)>,
    /// Audio that came before the first video frame (bounded), then
    /// deliveries waiting to be handed over.
    early_audio: std::collections::VecDeque<retina::codec::AudioFrame>,
    ready: std::collections::VecDeque<Delivery>,
    /// A session with audio: when it started, and the camera's count of
    /// such sessions that failed at once (see [`RtspCamera`]).
    audio_trial: Option<(std::time::Instant, Arc<std::sync::atomic::AtomicU32>)>,
    /// When the next RTCP sender report of the video stream is read for the
    /// camera's clock; None: not measured from RTCP.
    clock_due: Option<std::time::Instant>,
}

/// How long a session with nothing to hand over lets its socket fill before
/// reading: two or three frames at 25 fps, ~50 KB at 4 Mbit/s, well inside
/// a TCP receive buffer. 100 ms took about a sixth off 8 cameras' CPU
/// against 50 ms (docs/performance.md); live view is that much later.
const READ_COALESCE: Duration = Duration::from_millis(100);

/// The next multiple of [`READ_COALESCE`] since the first call: every
/// camera waits for the same tick, so one timer wake-up serves them all.
fn next_read_tick() -> tokio::time::Instant {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    let now = tokio::time::Instant::now();
    let tick = READ_COALESCE.as_nanos();
    let elapsed = now.saturating_duration_since(origin).as_nanos();
    let next = (elapsed / tick + 1) * tick;
    origin + Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
}

/// How often the camera's clock is taken from its RTCP sender reports.
const RTCP_CLOCK_EVERY: Duration = Duration::from_secs(60);

/// The camera's clock minus this box's, in ms, from a sender report's NTP
/// timestamp (seconds since 1900 in its high 32 bits, a binary fraction in
/// its low 32) received at `now_ms` (Unix ms). None for a report with no
/// wall time (an NTP timestamp of 0, as some cameras send).
pub fn rtcp_drift_ms(ntp: u64, now_ms: i64) -> Option<i64> {
    const NTP_TO_UNIX_S: i64 = 2_208_988_800;
    if ntp == 0 {
        return None;
    }
    let secs = (ntp >> 32) as i64 - NTP_TO_UNIX_S;
    let frac_ms = (((ntp & 0xFFFF_FFFF) * 1000) >> 32) as i64;
    Some(secs * 1000 + frac_ms - now_ms)
}

/// Audio frames kept while the first video frame is awaited (~4 s of AAC).
const MAX_EARLY_AUDIO: usize = 200;

/// The audio stream set up for recording.
struct AudioStream {
    stream: usize,
    params: Arc<AudioParams>,
    /// Whether the params went to the recorder (first thing in a session).
    announced: bool,
}

impl supervisor::Session for RtspSession {
    type Error = IngestError;

    async fn next(&mut self) -> Result<Delivery, IngestError> {
        if let Some(a) = self.audio.as_mut().filter(|a| !a.announced) {
            a.announced = true;
            return Ok(Delivery::AudioParams(a.params.clone()));
        }
        if let Some(d) = self.ready.pop_front() {
            return Ok(d);
        }
        loop {
            let item = match self.next_item().await {
                None => return Err(IngestError::Ended),
                Some(Err(e)) => {
                    if let Some((_, failures)) = &self.audio_trial {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Err(e.into());
                }
                Some(Ok(item)) => item,
            };
            if let Some((started, failures)) = &self.audio_trial {
                if started.elapsed() >= AUDIO_TRIAL {
                    failures.store(0, std::sync::atomic::Ordering::Relaxed);
                    self.audio_trial = None;
                }
            }
            let f = match item {
                CodecItem::VideoFrame(f) if f.stream_id() == self.video => f,
                CodecItem::AudioFrame(a) if self.video_clock.is_none() => {
                    if self.audio.as_ref().is_some_and(|s| s.stream == a.stream_id()) {
                        if self.early_audio.len() == MAX_EARLY_AUDIO {
                            self.early_audio.pop_front();
                        }
                        self.early_audio.push_back(a);
                    }
                    continue;
                }
                CodecItem::AudioFrame(a) => match self.audio_frame(a) {
                    Some(d) => return Ok(d),
                    None => continue,
                },
                CodecItem::Rtcp(r) if r.stream_id() == self.video => match self.clock_from(&r) {
                    Some(d) => return Ok(d),
                    None => continue,
                },
                _ => continue,
            };
            if self.video_clock.is_none() {
                let ts = f.timestamp();
                self.video_clock = Some((ts.start(), ts.clock_rate().get()));
                // The audio that came first goes to the recorder before this frame.
                let early: Vec<_> = self.early_audio.drain(..).collect();
                let mut ready: std::collections::VecDeque<Delivery> =
                    early.into_iter().filter_map(|a| self.audio_frame(a)).collect();
                if let Some(first) = ready.pop_front() {
                    self.ready = ready;
                    let video = self.video_delivery(f)?;
                    self.ready.push_back(video);
                    return Ok(first);
                }
            }
            return self.video_delivery(f);
        }
    }

    async fn close(self) -> Vec<Frame> {
        Vec::new()
    }
}

impl RtspSession {
    /// The next item of the session. When none is ready, waits
    /// [`READ_COALESCE`] before waiting on the socket: the packets of two or
    /// three frames then come in one read instead of one read, one wake-up
    /// and one ACK each (the largest CPU cost of a recorded camera, see
    /// docs/performance.md). Live view is that much later; a recording is not.
    async fn next_item(&mut self) -> Option<Result<CodecItem, retina::Error>> {
        if let std::task::Poll::Ready(item) = futures::poll!(self.demuxed.next()) {
            return item;
        }
        tokio::time::sleep_until(next_read_tick()).await;
        self.demuxed.next().await
    }

    /// The camera's clock drift from the video stream's sender report, when
    /// one is due (once a [`RTCP_CLOCK_EVERY`]).
    fn clock_from(&mut self, r: &retina::rtcp::ReceivedCompoundPacket) -> Option<Delivery> {
        let due = self.clock_due?;
        if std::time::Instant::now() < due {
            return None;
        }
        let now_ms = crate::base::clock::now_ns() / 1_000_000;
        let drift = r
            .pkts()
            .find_map(|p| p.as_sender_report().ok().flatten())
            .and_then(|sr| rtcp_drift_ms(sr.ntp_timestamp().0, now_ms))?;
        self.clock_due = Some(std::time::Instant::now() + RTCP_CLOCK_EVERY);
        Some(Delivery::ClockDrift(drift))
    }

    /// A frame of the video stream, with its parameters when they are new.
    fn video_delivery(&mut self, f: retina::codec::VideoFrame) -> Result<Delivery, IngestError> {
        let stream = &self.demuxed.streams()[self.video];
        let params = match stream.parameters() {
            Some(ParametersRef::Video(v)) if f.has_new_parameters() || !self.sent_params => {
                Some(Arc::new(stream_params(v, stream.clock_rate_hz())?))
            }
            _ => None,
        };
        if params.is_some() {
            self.sent_params = true;
        }
        Ok(Delivery::Frame(Frame {
            pts: f.timestamp().timestamp(),
            key: f.is_random_access_point(),
            params,
            data: f.into_data(),
        }))
    }

    /// An audio frame of the recorded audio stream, placed on the video
    /// clock: both streams' timestamps count from the same instant (their
    /// RTP-Info start in the PLAY answer, or their first packets), so audio
    /// elapsed time converts to video elapsed time. Audio before the first
    /// video frame has nothing to play against and is dropped.
    fn audio_frame(&self, a: retina::codec::AudioFrame) -> Option<Delivery> {
        let audio = self.audio.as_ref().filter(|s| s.stream == a.stream_id())?;
        let (video_start, video_rate) = self.video_clock?;
        let ts = a.timestamp();
        let rate = i128::from(audio.params.sample_rate.max(1));
        let video_pts = i64::from(video_start) + (i128::from(ts.elapsed()) * i128::from(video_rate) / rate) as i64;
        Some(Delivery::Audio(AudioFrame {
            pts: ts.timestamp(),
            video_pts,
            duration: a.frame_length().get(),
            data: a.data().to_vec(),
        }))
    }
}

fn redacted(u: &url::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_password(None);
    u.to_string()
}

async fn timed<T, E: Into<IngestError>>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, IngestError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(IngestError::Timeout(what, CONNECT_TIMEOUT)),
    }
}

/// The demuxed frames of a camera's first H.264/H.265 stream (DESCRIBE,
/// SETUP over TCP, PLAY; each step bounded by the connect timeout).
async fn open_stream(
    url: &url::Url,
    username: Option<&str>,
    password: Option<&str>,
    record_audio: bool,
) -> Result<RtspSession, IngestError> {
    let creds = username.map(|u| Credentials {
        username: u.to_string(),
        password: password.map(str::to_string).unwrap_or_default(),
    });
    let opts = SessionOptions::default()
        .creds(creds)
        .user_agent(format!("vigil/{}", env!("CARGO_PKG_VERSION")));
    let mut session = timed("DESCRIBE", Session::describe(url.clone(), opts)).await?;
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
        .ok_or_else(|| {
            IngestError::NoVideo(
                session
                    .streams()
                    .iter()
                    .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
    let setup = || {
        SetupOptions::default()
            .transport(Transport::Tcp(TcpTransportOptions::default()))
            .frame_format(FrameFormat::MP4)
    };
    timed("SETUP", session.setup(video, setup())).await?;
    let audio = match record_audio.then(|| recordable_audio(session.streams())).flatten() {
        Some((stream, params)) => {
            timed("SETUP", session.setup(stream, setup())).await?;
            tracing::info!(url = %redacted(url), codec = params.codec.name(), rate = params.sample_rate, "recording audio");
            Some(AudioStream {
                stream,
                params: Arc::new(params),
                announced: false,
            })
        }
        None => {
            if record_audio {
                tracing::info!(url = %redacted(url), "record_audio is set but the camera offers no AAC or G.711 audio");
            }
            None
        }
    };
    let playing = timed("PLAY", session.play(PlayOptions::default())).await?;
    Ok(RtspSession {
        demuxed: playing.demuxed()?,
        video,
        sent_params: false,
        audio,
        video_clock: None,
        early_audio: Default::default(),
        ready: Default::default(),
        audio_trial: None,
        clock_due: None,
    })
}

/// The first audio stream Vigil records (AAC, G.711 A-law or mu-law) and
/// its parameters, from the DESCRIBE answer.
fn recordable_audio(streams: &[retina::client::Stream]) -> Option<(usize, AudioParams)> {
    streams.iter().enumerate().find_map(|(i, s)| {
        if s.media() != "audio" {
            return None;
        }
        let codec = match s.encoding_name() {
            "mpeg4-generic" => AudioCodec::Aac,
            "pcma" => AudioCodec::Pcma,
            "pcmu" => AudioCodec::Pcmu,
            _ => return None,
        };
        match s.parameters() {
            Some(ParametersRef::Audio(a)) => audio_params(codec, a),
            _ => None,
        }
        .map(|p| (i, p))
    })
}

fn audio_params(codec: AudioCodec, a: &AudioParameters) -> Option<AudioParams> {
    let config = match codec {
        AudioCodec::Aac => a.extra_data().to_vec(),
        AudioCodec::Pcma | AudioCodec::Pcmu => Vec::new(),
    };
    if codec == AudioCodec::Aac && !(1..=64).contains(&config.len()) {
        return None;
    }
    Some(AudioParams {
        codec,
        sample_rate: a.clock_rate(),
        channels: u8::try_from(a.channels().get()).ok().filter(|c| (1..=8).contains(c))?,
        config,
    })
}

/// What a camera test found: the stream's parameters and its first key frame.
pub struct ProbeResult {
    pub params: Arc<StreamParams>,
    pub key_frame: Vec<u8>,
}

/// Connects to a camera as the recorder would and waits (bounded by
/// `limit`) for its first key frame: the camera test of the web UI. The
/// error is retina's own words (wrong password, refused, no video...).
pub async fn probe(
    url: &url::Url,
    username: Option<&str>,
    password: Option<&str>,
    limit: Duration,
) -> Result<ProbeResult, IngestError> {
    let work = async {
        let mut session = open_stream(url, username, password, false).await?;
        let mut params = None;
        loop {
            let Delivery::Frame(f) = session.next().await? else {
                continue;
            };
            params = f.params.or(params);
            if f.key {
                return Ok(ProbeResult {
                    params: params.ok_or_else(|| IngestError::Params("no video parameters yet".into()))?,
                    key_frame: f.data,
                });
            }
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(IngestError::Timeout("waiting for a key frame", limit)),
    }
}

fn stream_params(v: &retina::codec::VideoParameters, clock_rate: u32) -> Result<StreamParams, IngestError> {
    let codec = match v.codec_params() {
        VideoParametersCodec::H264 { .. } => Codec::H264,
        VideoParametersCodec::H265 { .. } => Codec::H265,
        other => return Err(IngestError::Params(format!("unsupported codec {other:?}"))),
    };
    let sample_entry = v
        .mp4_sample_entry()
        .build()
        .map_err(|e| IngestError::Params(e.to_string()))?;
    let (w, h) = v.pixel_dimensions();
    Ok(StreamParams {
        codec,
        timescale: clock_rate,
        width: u16::try_from(w).unwrap_or(u16::MAX),
        height: u16::try_from(h).unwrap_or(u16::MAX),
        sample_entry,
    })
}

#[cfg(test)]
mod tests {
    use super::rtcp_drift_ms;

    #[test]
    fn a_sender_reports_ntp_time_becomes_the_cameras_drift() {
        // 2026-12-02T00:00:00Z is Unix 1796169600 s; NTP counts from 1900.
        let unix_s: u64 = 1_796_169_600;
        let ntp = (unix_s + 2_208_988_800) << 32 | (1u64 << 31); // + 0.5 s
        let now_ms = unix_s as i64 * 1000;
        assert_eq!(rtcp_drift_ms(ntp, now_ms), Some(500));
        assert_eq!(rtcp_drift_ms(ntp, now_ms + 90_500), Some(-90_000));
        assert_eq!(rtcp_drift_ms(0, now_ms), None, "no wall time in the report");
    }
}
