//! RTSP ingest with retina over TCP: one task per camera, reconnect with
//! capped exponential backoff, and a no-frames watchdog (retina does not
//! notice a camera that hangs with its connection open).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tokio::sync::{mpsc, watch};

use crate::config::CameraConfig;
use crate::storage::recorder::{Event, Frame, StreamParams};
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
    #[error("recorder stopped")]
    RecorderGone,
}

/// Reconnect delays: first retry within 1 s, x1.5 each failure, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Backoff {
            next: initial,
            initial,
            cap,
        }
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 3 / 2).min(self.cap);
        d
    }
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// Runs one camera until `shutdown` flips to true.
pub async fn run_camera(
    cam: CameraConfig,
    password: Option<zeroize::Zeroizing<String>>,
    live: Option<tokio::sync::broadcast::Sender<crate::ingest::live::LiveFrame>>,
    stall_timeout: Duration,
    tx: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let _ = tx
            .send(Event::State {
                state: "connecting",
                error: None,
            })
            .await;
        tracing::info!(camera = %cam.name, url = %redacted(&cam.url), "connecting");
        let mut streamed = false;
        let mut batch = Vec::new();
        let result = tokio::select! {
            r = stream_once(&cam, password.as_deref().map(String::as_str), live.as_ref(), stall_timeout, &tx, &mut streamed, &mut batch) => r,
            // Shutting down: handled just below, once the batch is handed over.
            _ = shutdown.changed() => Ok(()),
        };
        // Frames received are never dropped: hand over what is batched.
        if !batch.is_empty() {
            let _ = tx.send(Event::Frames(std::mem::take(&mut batch))).await;
        }
        if *shutdown.borrow() {
            break;
        }
        let _ = tx.send(Event::Disconnected).await;
        let err = match result {
            Ok(()) => IngestError::Ended,
            Err(IngestError::RecorderGone) => break,
            Err(e) => e,
        };
        if streamed {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(camera = %cam.name, error = %err, retry_in_ms = delay.as_millis() as u64, "camera offline");
        let _ = tx
            .send(Event::State {
                state: "offline",
                error: Some(err.to_string()),
            })
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
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

/// Sends at a key frame (the recorder then writes the chunk it closes) or
/// when this much media has been batched.
const MAX_BATCH_AGE: Duration = Duration::from_secs(1);

/// The demuxed frames of a camera's first H.264/H.265 stream (DESCRIBE,
/// SETUP over TCP, PLAY; each step bounded by the connect timeout).
async fn open_stream(
    url: &url::Url,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<(retina::client::Demuxed, usize), IngestError> {
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
    Ok((playing.demuxed()?, video))
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
        let (mut demuxed, video) = open_stream(url, username, password).await?;
        loop {
            let item = match demuxed.next().await {
                None => return Err(IngestError::Ended),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(item)) => item,
            };
            let CodecItem::VideoFrame(f) = item else { continue };
            if f.stream_id() != video || !f.is_random_access_point() {
                continue;
            }
            let params = match demuxed.streams()[video].parameters() {
                Some(ParametersRef::Video(v)) => stream_params(v, demuxed.streams()[video].clock_rate_hz())?,
                _ => return Err(IngestError::Params("no video parameters yet".into())),
            };
            return Ok(ProbeResult {
                params: Arc::new(params),
                key_frame: f.into_data(),
            });
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(IngestError::Timeout("waiting for a key frame", limit)),
    }
}

async fn stream_once(
    cam: &CameraConfig,
    password: Option<&str>,
    live: Option<&tokio::sync::broadcast::Sender<crate::ingest::live::LiveFrame>>,
    stall: Duration,
    tx: &mpsc::Sender<Event>,
    streamed: &mut bool,
    batch: &mut Vec<Frame>,
) -> Result<(), IngestError> {
    let (mut demuxed, video) = open_stream(&cam.url, cam.username.as_deref(), password).await?;
    let mut sent_params = false;
    let mut live_params: Option<Arc<StreamParams>> = None;
    // One watchdog timer, pushed forward on every frame.
    let watchdog = tokio::time::sleep(stall);
    tokio::pin!(watchdog);
    let mut batch_started = tokio::time::Instant::now();
    loop {
        let item = tokio::select! {
            biased;
            item = demuxed.next() => match item {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(item)) => item,
            },
            _ = &mut watchdog => return Err(IngestError::Stalled(stall)),
        };
        let CodecItem::VideoFrame(f) = item else { continue };
        if f.stream_id() != video {
            continue;
        }
        let params = if f.has_new_parameters() || !sent_params {
            match demuxed.streams()[video].parameters() {
                Some(ParametersRef::Video(v)) => {
                    Some(Arc::new(stream_params(v, demuxed.streams()[video].clock_rate_hz())?))
                }
                _ => None,
            }
        } else {
            None
        };
        if params.is_some() {
            sent_params = true;
        }
        if !*streamed {
            *streamed = true;
            tracing::info!(camera = %cam.name, "streaming");
            tx.send(Event::State {
                state: "streaming",
                error: None,
            })
            .await
            .map_err(|_| IngestError::RecorderGone)?;
        }
        let now = tokio::time::Instant::now();
        watchdog.as_mut().reset(now + stall);
        let key = f.is_random_access_point();
        if batch.is_empty() {
            batch_started = now;
        }
        if let Some(p) = &params {
            live_params = Some(p.clone());
        }
        let pts = f.timestamp().timestamp();
        let data = f.into_data();
        if let (Some(live), Some(p)) = (live, &live_params) {
            // Copied only while someone watches.
            if live.receiver_count() > 0 {
                let _ = live.send(crate::ingest::live::LiveFrame {
                    pts,
                    key,
                    data: bytes::Bytes::copy_from_slice(&data),
                    params: p.clone(),
                });
            }
        }
        batch.push(Frame { pts, key, params, data });
        if key || now.duration_since(batch_started) >= MAX_BATCH_AGE {
            tx.send(Event::Frames(std::mem::take(batch)))
                .await
                .map_err(|_| IngestError::RecorderGone)?;
        }
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
    use super::*;

    #[test]
    fn backoff_starts_under_a_second_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        assert!(b.next_delay() < Duration::from_secs(1));
        let mut total = Duration::ZERO;
        for _ in 0..20 {
            total += b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(30));
        assert!(total > Duration::from_secs(60));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
