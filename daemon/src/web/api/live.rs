//! Live pictures and events: a running camera's next key frame as a
//! one-frame MP4, its live stream (main or sub) as a never-ending fragmented
//! MP4, and the server-sent event stream of the web UI.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::cameras::require_view;
use super::recordings::{live_slot, person_of, start_egress};
use super::transcode::refused;
use crate::evidence::egress::{EgressKind, FootageRequest, SNAPSHOT_ACTION};
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{full, param, query, ApiError, Reply};
use crate::web::AppState;

/// A live stream ends after this long without a frame (a camera that stays
/// connected but sends nothing), so the player does not show a frozen
/// picture as live.
const LIVE_SILENCE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a live viewer may take nothing before its stream ends (a client
/// whose network vanished without closing would hold its slot for the
/// TCP timeout, about 15 min).
const LIVE_CLIENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An init segment and one fragment holding `frame`: a playable one-frame MP4.
pub fn one_frame_mp4(params: &vigil_format::media::StreamParams, frame: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut out = vigil_format::mp4::init_segment(&vigil_format::mp4::TrackInfo {
        timescale: params.timescale,
        width: params.width,
        height: params.height,
        duration: u64::from(params.timescale / 25),
        sample_entries: std::slice::from_ref(&params.sample_entry),
    });
    let sample = vigil_format::mp4::Sample {
        duration: (params.timescale / 25).max(1),
        size: frame.len() as u32,
        key: true,
    };
    vigil_format::mp4::write_fragment(&mut out, 1, 0, 1, &[sample], &[frame])
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(out)
}

/// Which of a camera's streams live view plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Main,
    Sub,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Main => "main",
            Stream::Sub => "sub",
        }
    }
}

/// The stream `?stream=` asks for (`main`, the default, or `sub`).
fn asked_stream(req: &Request<Incoming>) -> Result<Stream, ApiError> {
    parse_stream(param(&query(req), "stream"))
}

fn parse_stream(asked: Option<&str>) -> Result<Stream, ApiError> {
    match asked {
        None | Some("main") => Ok(Stream::Main),
        Some("sub") => Ok(Stream::Sub),
        Some(_) => Err(ApiError::new(StatusCode::BAD_REQUEST, "\"stream\" must be main or sub")),
    }
}

/// The stream served for `asked` and the live channel it comes on: a camera
/// without a sub stream serves its main stream for `sub`.
fn served(st: &AppState, camera: &str, asked: Stream) -> (Stream, String) {
    let has_sub = st.cameras.sub_stream_state(camera).is_some();
    match asked {
        Stream::Sub if has_sub => (Stream::Sub, crate::base::names::sub_stream_name(camera)),
        _ => (Stream::Main, camera.to_string()),
    }
}

/// The next key frame of a running camera, and the subscription it came on.
async fn next_key_frame(
    st: &Arc<AppState>,
    camera: &str,
) -> Result<
    (
        tokio::sync::broadcast::Receiver<crate::ingest::live::LiveFrame>,
        crate::ingest::live::LiveFrame,
    ),
    ApiError,
> {
    st.live
        .next_key_frame(camera, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| match e {
            crate::ingest::live::NoFrame::NotRunning => ApiError::new(StatusCode::NOT_FOUND, "no such camera running"),
            crate::ingest::live::NoFrame::NotStreaming => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the camera is not streaming")
            }
        })
}

/// Whether the request asks for H.264 (`?codec=h264`): an H.265 camera's
/// pictures are then converted on the box.
fn wants_h264(req: &Request<Incoming>) -> bool {
    param(&query(req), "codec") == Some("h264")
}

/// The next key frame of `rx` (a converted stream), waiting at most 10 s.
async fn first_key_frame(
    mut rx: tokio::sync::broadcast::Receiver<crate::ingest::live::LiveFrame>,
) -> Result<
    (
        tokio::sync::broadcast::Receiver<crate::ingest::live::LiveFrame>,
        crate::ingest::live::LiveFrame,
    ),
    ApiError,
> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(f) if f.key => return Some(f),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), wait).await {
        Ok(Some(f)) => Ok((rx, f)),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the camera's stream could not be converted",
        )),
    }
}

/// One H.265 key frame as a one-frame H.264 MP4 (a conversion session of
/// `person` for the time it takes).
async fn converted_snapshot(
    st: &Arc<AppState>,
    person: &str,
    frame: &crate::ingest::live::LiveFrame,
) -> Result<Vec<u8>, ApiError> {
    let session = st.transcoders.session(person).map_err(refused)?;
    #[cfg(feature = "ffmpeg")]
    {
        let (params, data) = (frame.params.clone(), frame.data.clone());
        let c = tokio::task::spawn_blocking(move || {
            let _session = session;
            crate::ingest::transcode::one_picture(&params, &data)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
        one_frame_mp4(&c.params, &c.data)
    }
    #[cfg(not(feature = "ffmpeg"))]
    {
        let _ = (session, frame);
        Err(refused(crate::ingest::transcode::TranscodeError::Unsupported))
    }
}

/// The next key frame of a running camera as a one-frame MP4 (converted to
/// H.264 with `?codec=h264` when the camera is H.265), audited
/// (`live.snapshot`, with its bytes) before it is sent.
pub async fn snapshot(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let st = &st;
    let caller = caller_of(ctx.caller)?;
    let name = ctx.params.into_iter().next();
    let camera = name.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?;
    require_view(st, &caller, &camera, SNAPSHOT_ACTION).await?;
    let (_, frame) = next_key_frame(st, &camera).await?;
    let mp4 = if wants_h264(&req) && frame.params.codec == vigil_format::vseg::Codec::H265 {
        converted_snapshot(st, &person_of(&caller), &frame).await?
    } else {
        one_frame_mp4(&frame.params, &frame.data)?
    };
    let (actor, cam, bytes) = (caller.actor.clone(), camera.clone(), mp4.len() as u64);
    st.db(move |idx| {
        crate::evidence::egress::record_snapshot(idx.conn(), &actor, &cam, bytes)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    let mut r = Response::new(full(mp4));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    Ok(r)
}

/// Whether an event (`event: ...\ndata: {json}\n\n`) may go to `caller`:
/// one that names a camera only if the caller may see that camera.
fn event_for(caller: &crate::web::auth::Caller, msg: &str) -> bool {
    if caller.cameras.is_none() {
        return true;
    }
    let data = msg.lines().find_map(|l| l.strip_prefix("data: "));
    let camera = data
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v.get("camera").and_then(|c| c.as_str()).map(str::to_string));
    camera.is_none_or(|cam| caller.may_view(&cam))
}

/// Server-sent events: `camera` (state changes), `recording` (started),
/// `disk_low`; a comment every 15 s keeps the connection alive. Events of
/// a camera outside the caller's set are left out.
pub async fn events(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let caller = crate::web::auth::caller_of(ctx.caller)?;
    let rx = st.events.subscribe();
    let stream = futures::stream::unfold((rx, true), move |(mut rx, first)| {
        let caller = caller.clone();
        async move {
            if first {
                return Some((
                    Ok(hyper::body::Frame::data(Bytes::from_static(b": connected\n\n"))),
                    (rx, false),
                ));
            }
            let keepalive = tokio::time::sleep(std::time::Duration::from_secs(15));
            tokio::pin!(keepalive);
            let msg = loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(m) if event_for(&caller, &m) => break m,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => break format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = &mut keepalive => break ": keepalive\n\n".to_string(),
                }
            };
            Some((
                Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(msg))),
                (rx, false),
            ))
        }
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(r)
}

/// Live video as a never-ending fragmented MP4: the init segment, then one
/// fragment per frame from the next key frame on (one frame of delay, to
/// know its duration). `X-Codec` gives the codec string for Media Source
/// Extensions. Ends when the camera's parameters change, this viewer falls
/// behind or no frame comes for [`LIVE_SILENCE`]; the player reconnects. With `?codec=h264` an H.265 camera's
/// stream comes converted to H.264 (one converter per camera shared by its
/// viewers; 501 without the codecs, 503 when every session is busy); a
/// camera with an H.264 sub stream then serves that instead of converting.
/// `?stream=sub` asks for the camera's sub stream (its main stream when it
/// has none); `X-Vigil-Stream` says which one came (`main` or `sub`).
/// Counted in the live stream budget, not the footage one. Audited when it
/// starts (`live.start`) and when it stops (`live.stop`, with the bytes
/// sent); reconnects within a short window share the entries (see
/// `evidence::egress`).
pub async fn live_mp4(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let st = &st;
    let caller = caller_of(ctx.caller)?;
    let name = ctx.params.into_iter().next();

    let camera = name.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?;
    require_view(st, &caller, &camera, EgressKind::Live.action()).await?;
    let asked = asked_stream(&req)?;
    let slot = live_slot(st, &caller)?;
    let (mut served_stream, channel) = served(st, &camera, asked);
    let (rx, first) = next_key_frame(st, &channel).await?;
    let is_h265 = |f: &crate::ingest::live::LiveFrame| f.params.codec == vigil_format::vseg::Codec::H265;
    let converted = wants_h264(&req) && is_h265(&first);
    let (mut rx, first) = if converted {
        drop(rx);
        match h264_sub_stream(st, &camera, served_stream).await {
            Some(sub) => {
                served_stream = Stream::Sub;
                sub
            }
            None => {
                let converted = st.transcoders.live_h264(&st.live, &channel).map_err(refused)?;
                first_key_frame(converted).await?
            }
        }
    } else {
        (rx, first)
    };
    let footage = FootageRequest {
        actor: caller.actor.clone(),
        kind: EgressKind::Live,
        camera: camera.clone(),
        range_ns: None,
        bytes: None,
    };
    let mut ticket = start_egress(st, footage).await?;
    let params = first.params.clone();
    let codec = vigil_format::media::codec_string(&params.sample_entry);
    let (sound, audio_said) = live_sound(param(&query(&req), "audio") == Some("1"), &first, converted);
    let audio_entry = sound
        .as_ref()
        .map(|a| vigil_format::mp4::aac_sample_entry(a.sample_rate, a.channels, &a.config));
    let init = vigil_format::mp4::init_segment_with_audio(
        &vigil_format::mp4::TrackInfo {
            timescale: params.timescale,
            width: params.width,
            height: params.height,
            duration: 0,
            sample_entries: std::slice::from_ref(&params.sample_entry),
        },
        sound
            .as_ref()
            .zip(audio_entry.as_ref())
            .map(|(a, entry)| vigil_format::mp4::AudioTrackInfo {
                timescale: a.sample_rate,
                sample_entry: entry,
            })
            .as_ref(),
    );
    let audio_codec = sound.as_ref().map(|a| vigil_format::mp4::aac_codec_string(&a.config));
    // When the server had the first frame: with the player's position, how
    // far behind real time the picture is.
    let first_wall_ms = crate::base::clock::now_ns() / 1_000_000;
    let (tx, out) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(8);
    tokio::spawn(async move {
        let _slot = slot;
        let init_len = init.len() as u64;
        // A viewer that takes nothing for LIVE_CLIENT_WAIT (its network gone
        // without a close) gives back its slot and its converter's viewer.
        let send = |frame: Bytes| {
            let tx = tx.clone();
            async move {
                matches!(
                    tokio::time::timeout(LIVE_CLIENT_WAIT, tx.send(Ok(hyper::body::Frame::data(frame)))).await,
                    Ok(Ok(()))
                )
            }
        };
        if !send(Bytes::from(init)).await {
            return;
        }
        ticket.sent(init_len);
        let origin = first.pts;
        let mut sound = sound.map(|params| LiveSound {
            params,
            video_timescale: first.params.timescale,
            zero: None,
        });
        let mut held = first;
        let mut seq = 0u32;
        let mut buf = Vec::new();
        loop {
            let next = match tokio::time::timeout(LIVE_SILENCE, rx.recv()).await {
                Ok(Ok(f)) => f,
                // Behind, the camera stopped or sent nothing for a while: the
                // stream ends (the picture blanks) and the player reconnects.
                Ok(Err(_)) | Err(_) => return,
            };
            if !Arc::ptr_eq(&next.params, &held.params) && *next.params != *held.params {
                return;
            }
            let duration = (next.pts - held.pts).clamp(1, i64::from(u32::MAX)) as u32;
            seq = seq.wrapping_add(1);
            buf.clear();
            let sample = vigil_format::mp4::Sample {
                duration,
                size: held.data.len() as u32,
                key: held.key,
            };
            let decode = (held.pts - origin).max(0) as u64;
            if vigil_format::mp4::write_fragment(&mut buf, seq, decode, 1, &[sample], &[&held.data]).is_err() {
                return;
            }
            if let Some(sound) = sound.as_mut() {
                match sound.write(&mut buf, seq.wrapping_add(1), origin, held.audio.as_deref()) {
                    Some(true) => seq = seq.wrapping_add(1),
                    Some(false) => {}
                    None => return, // the camera's audio changed: the player reconnects
                }
            }
            let n = buf.len() as u64;
            if !send(Bytes::from(std::mem::take(&mut buf))).await {
                return; // the viewer left, or took nothing for too long
            }
            ticket.sent(n);
            held = next;
        }
    });
    let stream = futures::stream::unfold(out, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    if let Ok(v) = HeaderValue::from_str(&codec) {
        r.headers_mut().insert(HeaderName::from_static("x-codec"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&first_wall_ms.to_string()) {
        r.headers_mut()
            .insert(HeaderName::from_static("x-first-frame-wall-ms"), v);
    }
    r.headers_mut().insert(
        HeaderName::from_static("x-vigil-stream"),
        HeaderValue::from_static(served_stream.as_str()),
    );
    if let Some(v) = audio_said.and_then(|v| HeaderValue::from_str(&v).ok()) {
        r.headers_mut().insert(HeaderName::from_static("x-vigil-audio"), v);
    }
    if let Some(v) = audio_codec.and_then(|v| HeaderValue::from_str(&v).ok()) {
        r.headers_mut().insert(HeaderName::from_static("x-audio-codec"), v);
    }
    Ok(r)
}

/// The sound of a live stream when `?audio=1` asks for it: the AAC track
/// of the camera (whose audio is recorded; the ingest sets audio up only
/// then), and what `X-Vigil-Audio` says: `aac`, `none` (the camera sends
/// no sound, or it is not recorded), or `omitted (why)`. Nothing when not asked.
fn live_sound(
    asked: bool,
    first: &crate::ingest::live::LiveFrame,
    converted: bool,
) -> (Option<Arc<vigil_format::media::AudioParams>>, Option<String>) {
    if !asked {
        return (None, None);
    }
    if converted {
        return (None, Some("omitted (the converted stream carries no sound)".into()));
    }
    match first.audio.as_ref().map(|a| &a.params) {
        None => (None, Some("none".into())),
        Some(p) if p.codec == vigil_format::vseg::AudioCodec::Aac => (Some(p.clone()), Some("aac".into())),
        Some(_) => (None, Some("omitted (G.711 does not play in browsers)".into())),
    }
}

/// A live stream's audio track: its samples placed against the video by the
/// first one's video time, then by their own clock.
struct LiveSound {
    params: Arc<vigil_format::media::AudioParams>,
    video_timescale: u32,
    /// Audio pts at the stream's time 0, once the first sample came.
    zero: Option<i64>,
}

impl LiveSound {
    /// Appends to `out` an audio fragment (sequence `seq`) of the audio a
    /// frame carries: Some(true) when one was written, Some(false) when
    /// there was nothing to write, None when the camera's audio track changed.
    fn write(
        &mut self,
        out: &mut Vec<u8>,
        seq: u32,
        origin: i64,
        audio: Option<&crate::ingest::live::LiveAudio>,
    ) -> Option<bool> {
        let Some(audio) = audio else { return Some(false) };
        if !Arc::ptr_eq(&audio.params, &self.params) && *audio.params != *self.params {
            return None;
        }
        let rate = i128::from(self.params.sample_rate);
        let vts = i128::from(self.video_timescale.max(1));
        let mut start = None;
        let mut samples = Vec::new();
        let mut datas: Vec<&[u8]> = Vec::new();
        for a in &audio.frames {
            let zero = *self
                .zero
                .get_or_insert_with(|| a.pts - (i128::from(a.video_pts - origin) * rate / vts) as i64);
            let t = a.pts - zero;
            if t < 0 || a.duration == 0 {
                continue; // before the first picture
            }
            start.get_or_insert(t);
            samples.push(vigil_format::mp4::Sample {
                duration: a.duration,
                size: a.data.len() as u32,
                key: true,
            });
            datas.push(&a.data);
        }
        let Some(start) = start else { return Some(false) };
        vigil_format::mp4::write_audio_run(out, seq, start as u64, &samples, &datas).ok()?;
        Some(true)
    }
}

/// For an H.265 main stream asked for as H.264: the camera's own H.264 sub
/// stream (its next key frame and subscription) when it has one, so the box
/// need not convert. None when `stream` is the sub already, there is none,
/// it is H.265 too, or it sends no key frame in time.
async fn h264_sub_stream(
    st: &Arc<AppState>,
    camera: &str,
    stream: Stream,
) -> Option<(
    tokio::sync::broadcast::Receiver<crate::ingest::live::LiveFrame>,
    crate::ingest::live::LiveFrame,
)> {
    if stream == Stream::Sub {
        return None;
    }
    let (Stream::Sub, channel) = served(st, camera, Stream::Sub) else {
        return None;
    };
    let (rx, first) = next_key_frame(st, &channel).await.ok()?;
    (first.params.codec == vigil_format::vseg::Codec::H264).then_some((rx, first))
}

#[cfg(test)]
mod tests {
    use super::event_for;
    use crate::db::users::Role;
    use crate::web::auth::Caller;

    fn caller(cameras: Option<&[&str]>) -> Caller {
        Caller {
            actor: "user:v".into(),
            user_id: Some(1),
            role: Role::Viewer,
            csrf: None,
            cookie: None,
            must_change_password: false,
            cameras: cameras.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn the_stream_asked_for_is_main_or_sub() {
        use super::{parse_stream, Stream};
        assert_eq!(parse_stream(None).unwrap(), Stream::Main);
        assert_eq!(parse_stream(Some("main")).unwrap(), Stream::Main);
        assert_eq!(parse_stream(Some("sub")).unwrap(), Stream::Sub);
        let e = parse_stream(Some("third")).unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
        assert_eq!((Stream::Main.as_str(), Stream::Sub.as_str()), ("main", "sub"));
    }

    #[test]
    fn events_of_a_camera_outside_the_set_are_left_out() {
        let door = "event: camera\ndata: {\"camera\":\"door\",\"state\":\"recording\"}\n\n";
        let yard = "event: recording\ndata: {\"camera\":\"yard\",\"id\":7}\n\n";
        let disk = "event: disk_low\ndata: {\"free_bytes\":1}\n\n";
        let limited = caller(Some(&["door"]));
        assert!(event_for(&limited, door));
        assert!(!event_for(&limited, yard));
        assert!(event_for(&limited, disk), "events of no camera go to everyone");
        assert!(event_for(&caller(None), yard));
        assert!(!event_for(&caller(Some(&[])), door), "an empty set sees no camera");
    }
}
