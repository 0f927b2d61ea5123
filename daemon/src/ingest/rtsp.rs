//! RTSP ingest with retina over TCP: connecting to a camera and demuxing
//! its first H.264/H.265 stream into frames, for the supervisor (which
//! reconnects with backoff, and whose no-frames watchdog catches a camera
//! that hangs with its connection open: retina does not notice), and the
//! camera test of the web UI.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tokio::sync::{mpsc, watch};

use crate::config::CameraConfig;
use crate::ingest::supervisor::{self, Backoff, Delivery, Session as _};
use crate::storage::recorder::Event;
use vigil_format::media::{Frame, StreamParams};
use vigil_format::vseg::Codec;

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
    let camera = RtspCamera { cam, password };
    supervisor::run(camera, backoff, stall_timeout, live, tx, shutdown).await;
}

/// A camera's RTSP address and credentials, connected by the supervisor.
struct RtspCamera {
    cam: CameraConfig,
    password: Option<zeroize::Zeroizing<String>>,
}

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
        open_stream(&cam.url, cam.username.as_deref(), password).await
    }

    fn stalled(&self, after: Duration) -> IngestError {
        IngestError::Stalled(after)
    }
}

/// One playing RTSP session: the frames of its video stream.
struct RtspSession {
    demuxed: retina::client::Demuxed,
    video: usize,
    sent_params: bool,
}

impl supervisor::Session for RtspSession {
    type Error = IngestError;

    async fn next(&mut self) -> Result<Delivery, IngestError> {
        loop {
            let item = match self.demuxed.next().await {
                None => return Err(IngestError::Ended),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(item)) => item,
            };
            let CodecItem::VideoFrame(f) = item else { continue };
            if f.stream_id() != self.video {
                continue;
            }
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
            return Ok(Delivery::Frame(Frame {
                pts: f.timestamp().timestamp(),
                key: f.is_random_access_point(),
                params,
                data: f.into_data(),
            }));
        }
    }

    async fn close(self) -> Vec<Frame> {
        Vec::new()
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
    let setup = SetupOptions::default()
        .transport(Transport::Tcp(TcpTransportOptions::default()))
        .frame_format(FrameFormat::MP4);
    timed("SETUP", session.setup(video, setup)).await?;
    let playing = timed("PLAY", session.play(PlayOptions::default())).await?;
    Ok(RtspSession {
        demuxed: playing.demuxed()?,
        video,
        sent_params: false,
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
        let mut session = open_stream(url, username, password).await?;
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
