//! Recordings: the list of a camera's recordings in a time range, and a time
//! range played back (or downloaded, by operators, audited) as one
//! fragmented MP4 with Range and ETag support.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::cameras::{known_camera, require_view};
use crate::db::users::Role;
use crate::evidence::egress::{EgressKind, EgressTicket, FootageRequest, StreamSlot};
use crate::evidence::export::{ExportError, ViewAudio, ViewLayout};
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{full, json_reply, ok, param, query, time_param, ApiError, Reply};
use crate::web::AppState;

/// `GET /api/v1/recordings?camera=&start=&end=`.
/// A camera outside the caller's set has no rows for them.
pub async fn list(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let (st, req) = (&st, &req);
    let caller = caller_of(ctx.caller)?;
    let q = query(req);
    let camera = param(&q, "camera")
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"camera\" is required"))?
        .to_string();
    let camera = known_camera(st, Some(camera)).await?;
    if !caller.may_view(&camera) {
        return ok(Value::Array(Vec::new()));
    }
    let end = time_param(&q, "end")?.unwrap_or(i64::MAX);
    let start = time_param(&q, "start")?.unwrap_or(i64::MIN);
    if start >= end {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "start must be before end"));
    }
    let rows = st
        .db(move |idx| {
            let Some(cam) = idx.find_camera_id(&camera)? else {
                return Ok(Vec::new());
            };
            Ok(idx.recordings_overlapping(cam, start, end)?)
        })
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .take(5000)
        .map(|r| {
            json!({
                "id": r.id,
                "start": crate::base::time::format_ns(r.start_wall_ns),
                "end": crate::base::time::format_ns(r.end_wall_ns()),
                "frames": r.frames,
                "bytes": r.bytes,
                "codec": r.codec,
                "state": r.state,
            })
        })
        .collect();
    ok(Value::Array(list))
}

/// One `bytes=` range of a `total`-byte entity: Ok(None) for none, Err for
/// an unsatisfiable or unsupported one.
fn byte_range(header: Option<&str>, total: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Err(());
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: answer with the whole entity (allowed by RFC 9110)
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (total.saturating_sub(n), total.checked_sub(1).ok_or(())?)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            total.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(total.saturating_sub(1))
        };
        (start, end)
    };
    if range.0 > range.1 || range.0 >= total {
        return Err(());
    }
    Ok(Some(range))
}

/// A time range of a camera as a fragmented MP4, with Range and ETag: every
/// byte offset is computed from the index; only the chunks a request covers
/// are decrypted, each on demand when the client has taken the one before
/// (a client that does not read holds no thread and no database
/// connection). Audited before the first byte and when the response ends
/// (`footage.play`, `footage.download`; see `evidence::egress`); a camera
/// outside the caller's set is 403, audited as denied.
pub async fn view_mp4(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let (st, req) = (&st, &req);
    let Ctx { caller, params, .. } = ctx;
    let name = params.into_iter().next();
    let caller = caller_of(caller)?;

    let camera = known_camera(st, name).await?;
    let q = query(req);
    let download = param(&q, "download") == Some("1");
    let kind = if download {
        EgressKind::Download
    } else {
        EgressKind::Play
    };
    require_view(st, &caller, &camera, kind.action()).await?;
    // Watching is for viewers; taking a copy away (an export) is for operators.
    if download && caller.role < Role::Operator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "exporting needs the operator role",
        ));
    }
    let start =
        time_param(&q, "start")?.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"start\" is required"))?;
    let end = time_param(&q, "end")?.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"end\" is required"))?;
    let h264 = param(&q, "codec") == Some("h264");
    if h264 && download {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "codec=h264 is for watching; a download is the recording as it is",
        ));
    }
    // Sound: AAC for a player; as recorded for a download; none with `audio=0`.
    let audio = match (download, param(&q, "audio")) {
        (_, Some("0")) => ViewAudio::Omit,
        (true, _) => ViewAudio::AsRecorded,
        (false, _) => ViewAudio::Playable,
    };
    let slot = stream_slot(st, &caller)?;
    let (layout, slot) = layout_of(st, &camera, (start, end), audio, slot).await?;
    let layout = Arc::new(layout);
    if h264 && super::transcode::view_is_h265(&layout) {
        let mut r = converted_view_mp4(st, &caller, camera, (start, end), layout.clone(), slot).await?;
        audio_header(&mut r, &layout, "the converted video carries no sound");
        return Ok(r);
    }
    let total = layout.total_len;
    let etag = layout.etag.clone();
    if req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        // No footage leaves: the client has these bytes already.
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(hyper::header::ETAG, v);
        }
        return Ok(r);
    }
    let range_header = req.headers().get(hyper::header::RANGE).and_then(|v| v.to_str().ok());
    let range = match byte_range(range_header, total) {
        Ok(r) => r,
        Err(()) => {
            let mut r = json_reply(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &json!({ "error": "range not satisfiable" }),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(hyper::header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let (first, last) = range.unwrap_or((0, total.saturating_sub(1)));
    // Audited before the first byte, with or without a Range header.
    let footage = FootageRequest {
        actor: caller.actor.clone(),
        kind,
        camera: camera.clone(),
        range_ns: Some((start, end)),
        bytes: Some((first, last, total)),
    };
    let ticket = start_egress(st, footage).await?;
    let body = ViewBody {
        layout: layout.clone(),
        pos: first,
        end: last + 1,
        storage: st.storage.clone(),
        keyring: st.keyring.clone(),
        events: st.events.clone(),
        camera: camera.clone(),
        ticket,
        _slot: slot,
    };
    let stream = futures::stream::unfold(Some(body), |b| async move {
        let mut b = b?;
        match b.next_piece().await {
            Ok(Some(piece)) => {
                b.ticket.sent(piece.len() as u64);
                Some((Ok(hyper::body::Frame::data(piece)), Some(b)))
            }
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    *r.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(hyper::header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&(last + 1 - first).to_string()) {
        h.insert(hyper::header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(hyper::header::ETAG, v);
    }
    if range.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
            h.insert(hyper::header::CONTENT_RANGE, v);
        }
    }
    if download {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"{camera}-{}.mp4\"",
            crate::base::time::format_ns(layout.first_wall_ns).replace(':', "")
        )) {
            h.insert(hyper::header::CONTENT_DISPOSITION, v);
        }
    }
    audio_header(
        &mut r,
        &layout,
        if audio == ViewAudio::Omit {
            "audio=0 asked for none"
        } else {
            "G.711 does not play in browsers; download the range to hear it"
        },
    );
    Ok(r)
}

/// `view.mp4?codec=h264` of an H.265 range: converted on the box and sent
/// as a progressive fragmented MP4 (no Range, no length), audited like any
/// playback.
async fn converted_view_mp4(
    st: &Arc<AppState>,
    caller: &crate::web::auth::Caller,
    camera: String,
    range_ns: (i64, i64),
    layout: Arc<ViewLayout>,
    slot: StreamSlot,
) -> Reply {
    let pieces = super::transcode::converted_view(st, &person_of(caller), layout)?;
    let footage = FootageRequest {
        actor: caller.actor.clone(),
        kind: EgressKind::Play,
        camera,
        range_ns: Some(range_ns),
        bytes: None,
    };
    let ticket = start_egress(st, footage).await?;
    let stream = futures::stream::unfold((pieces, ticket, slot), |(mut rx, mut ticket, slot)| async move {
        let piece = rx.recv().await?;
        if let Ok(p) = &piece {
            ticket.sent(p.len() as u64);
        }
        Some((piece.map(hyper::body::Frame::data), (rx, ticket, slot)))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    Ok(r)
}

/// `X-Vigil-Audio`: the codec of the sound the view carries (`aac`, or
/// `pcma`/`pcmu` in a download), `omitted (why)` when the recordings have
/// sound the view leaves out, `none` when they have none.
fn audio_header<B>(r: &mut Response<B>, layout: &ViewLayout, why_omitted: &str) {
    let value = match &layout.audio_track {
        None => "none".to_string(),
        Some(t) if layout.audio_included => t.codec.name().to_string(),
        Some(_) => format!("omitted ({why_omitted})"),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut()
            .insert(hyper::header::HeaderName::from_static("x-vigil-audio"), v);
    }
}

/// The view of `camera` from `start` to `end`: 404 when nothing is
/// recorded there, 409 (and an `integrity` event) when a recording in it
/// fails its check.
/// `hold` (the caller's stream slot) is held by the planning job itself and
/// handed back with the layout: a client that disconnects while the range
/// is planned does not free its slot before the work ends.
async fn layout_of<H: Send + 'static>(
    st: &Arc<AppState>,
    camera: &str,
    (start, end): (i64, i64),
    audio: ViewAudio,
    hold: H,
) -> Result<(ViewLayout, H), ApiError> {
    let storage = st.storage.clone();
    let keyring = st.keyring.clone();
    let events = st.events.clone();
    let cam = camera.to_string();
    st.db(move |idx| {
        let archive = crate::evidence::export::Archive {
            index: idx,
            storage: &storage,
            keys: keyring.as_ref(),
        };
        let planned = crate::evidence::export::view_layout_with(archive, &cam, start, end, audio);
        planned.map(|layout| (layout, hold)).map_err(|e| match e {
            ExportError::NothingToExport { .. } | ExportError::UnknownCamera(_) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            ExportError::EmptyRange => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            e if e.is_integrity() => {
                tracing::error!("view refused: {e}");
                let _ = events.send(format!(
                    "event: integrity\ndata: {}\n\n",
                    json!({ "camera": cam, "error": e.to_string() })
                ));
                ApiError::new(
                    StatusCode::CONFLICT,
                    "a recording in this range failed its integrity check; see `vigil verify`",
                )
            }
            e => ApiError::internal(e.to_string()),
        })
    })
    .await
}

/// `GET /api/v1/cameras/{name}/view.json?start=&end=`: what `view.mp4` of
/// the range would play, without reading footage (not egress): the wall
/// time of its time 0, its end, its codec and length. A camera outside the
/// caller's set is 403 like `view.mp4`.
pub async fn view_json(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let (st, req) = (&st, &req);
    let Ctx { caller, params, .. } = ctx;
    let caller = caller_of(caller)?;
    let camera = known_camera(st, params.into_iter().next()).await?;
    require_view(st, &caller, &camera, EgressKind::Play.action()).await?;
    let q = query(req);
    let start =
        time_param(&q, "start")?.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"start\" is required"))?;
    let end = time_param(&q, "end")?.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"end\" is required"))?;
    if end.saturating_sub(start) > VIEW_JSON_MAX_RANGE_NS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the range is longer than 31 days",
        ));
    }
    // It opens every recording of the range: a footage stream's slot meanwhile.
    let slot = stream_slot(st, &caller)?;
    let (layout, _slot) = layout_of(st, &camera, (start, end), ViewAudio::Playable, slot).await?;
    ok(view_summary(&layout))
}

/// The longest range `view.json` describes: 31 days.
const VIEW_JSON_MAX_RANGE_NS: i64 = 31 * 86_400 * 1_000_000_000;

/// The JSON of `view.json` for a layout.
fn view_summary(layout: &ViewLayout) -> Value {
    json!({
        "first_frame": crate::base::time::format_ns(layout.first_wall_ns),
        "end": crate::base::time::format_ns(layout.end_wall_ns),
        "codec": if super::transcode::view_is_h265(layout) { "h265" } else { "h264" },
        "bytes": layout.total_len,
        "audio": layout.audio_track.as_ref().map(|t| t.codec.name()),
    })
}

/// A slot for one more footage stream of the caller, or 429 with
/// Retry-After. Counted per person: a user's sessions and every token they
/// own share one allowance (minting tokens buys no more streams).
pub fn stream_slot(st: &AppState, caller: &crate::web::auth::Caller) -> Result<StreamSlot, ApiError> {
    slot_in(&st.streams, caller)
}

/// A slot for one more live stream of the caller (a budget apart from the
/// footage streams: a grid of 16 cameras plays), or 429 with Retry-After.
pub fn live_slot(st: &AppState, caller: &crate::web::auth::Caller) -> Result<StreamSlot, ApiError> {
    slot_in(&st.live_streams, caller)
}

/// Who a caller counts as for per-person allowances: a user's sessions and
/// every token they own are one person.
pub fn person_of(caller: &crate::web::auth::Caller) -> String {
    match caller.user_id {
        Some(id) => format!("user #{id}"),
        None => caller.actor.clone(),
    }
}

fn slot_in(
    gate: &Arc<crate::evidence::egress::StreamGate>,
    caller: &crate::web::auth::Caller,
) -> Result<StreamSlot, ApiError> {
    gate.acquire(&person_of(caller)).map_err(|busy| {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, busy.to_string());
        e.retry_after = Some(5);
        e
    })
}

/// Audits the start of a footage stream (or joins a recent one of the same
/// footage); fails closed: no entry, no footage.
pub async fn start_egress(st: &Arc<AppState>, footage: FootageRequest) -> Result<EgressTicket, ApiError> {
    if let Some(t) = st.egress.rejoin(&footage) {
        return Ok(t);
    }
    let log = st.egress.clone();
    st.db(move |idx| {
        log.start(idx.conn(), &footage)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
}

/// The body of a `view.mp4` response: produces the next piece only when
/// asked (hyper asks when the client has room), one chunk decrypted on a
/// short blocking task at a time; dropped with the response.
struct ViewBody {
    layout: Arc<ViewLayout>,
    pos: u64,
    end: u64,
    storage: crate::storage::Storage,
    keyring: Arc<crate::keys::keyring::Keyring>,
    events: tokio::sync::broadcast::Sender<String>,
    camera: String,
    ticket: EgressTicket,
    _slot: StreamSlot,
}

impl ViewBody {
    /// The next piece of the requested bytes; None at the end.
    async fn next_piece(&mut self) -> Result<Option<Bytes>, std::io::Error> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let init_len = self.layout.init.len() as u64;
        if self.pos < init_len {
            let stop = self.end.min(init_len);
            let piece = Bytes::copy_from_slice(&self.layout.init[self.pos as usize..stop as usize]);
            self.pos = stop;
            return Ok(Some(piece));
        }
        let i = self.layout.fragment_at(self.pos);
        let Some(f) = self.layout.fragments.get(i) else {
            return Ok(None);
        };
        let (f_offset, f_len) = (f.offset, f.len);
        let (storage, keyring, layout) = (self.storage.clone(), self.keyring.clone(), self.layout.clone());
        let made = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            crate::evidence::export::view_fragment(&storage, keyring.as_ref(), &layout, i, &mut buf).map(|()| buf)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        let buf = match made {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("view stopped at byte {}: {e}", self.pos);
                let _ = self.events.send(format!(
                    "event: integrity\ndata: {}\n\n",
                    json!({ "camera": self.camera, "error": e.to_string() })
                ));
                return Err(std::io::Error::other("integrity failure"));
            }
        };
        let from = (self.pos - f_offset) as usize;
        let to = (self.end.min(f_offset + f_len) - f_offset) as usize;
        let piece = buf
            .get(from..to)
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| std::io::Error::other("fragment shorter than its layout"))?;
        self.pos = f_offset + to as u64;
        Ok(Some(piece))
    }
}

#[cfg(test)]
#[path = "recordings_tests.rs"]
mod server_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=9-1"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(byte_range(Some("items=0-1"), 100), Err(()));
    }
}
