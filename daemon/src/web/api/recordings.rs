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

use super::cameras::known_camera;
use crate::db::users::Role;
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{full, json_reply, ok, param, query, time_param, ApiError, Reply};
use crate::web::AppState;

/// `GET /api/v1/recordings?camera=&start=&end=`.
pub async fn list(st: Arc<AppState>, req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let (st, req) = (&st, &req);
    let q = query(req);
    let camera = param(&q, "camera")
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"camera\" is required"))?
        .to_string();
    let camera = known_camera(st, Some(camera)).await?;
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
/// are decrypted, streamed with back-pressure.
pub async fn view_mp4(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let (st, req) = (&st, &req);
    let Ctx { caller, params, .. } = ctx;
    let name = params.into_iter().next();

    let camera = known_camera(st, name).await?;
    let q = query(req);
    let download = param(&q, "download") == Some("1");
    // Watching is for viewers; taking a copy away (an export) is for operators.
    if download && caller.as_ref().is_none_or(|c| c.role < Role::Operator) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "exporting needs the operator role",
        ));
    }
    let start =
        time_param(&q, "start")?.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"start\" is required"))?;
    let end = time_param(&q, "end")?.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"end\" is required"))?;
    let storage = st.storage.clone();
    let keyring = st.keyring.clone();
    let events = st.events.clone();
    let cam = camera.clone();
    let layout = st
        .db(move |idx| {
            let archive = crate::evidence::export::Archive {
                index: idx,
                storage: &storage,
                keys: keyring.as_ref(),
            };
            crate::evidence::export::view_layout(archive, &cam, start, end).map_err(|e| match e {
                crate::evidence::export::ExportError::NothingToExport { .. }
                | crate::evidence::export::ExportError::UnknownCamera(_) => {
                    ApiError::new(StatusCode::NOT_FOUND, e.to_string())
                }
                crate::evidence::export::ExportError::EmptyRange => {
                    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
                }
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
        .await?;
    let layout = Arc::new(layout);
    let total = layout.total_len;
    let etag = layout.etag.clone();
    if download && req.headers().get(hyper::header::RANGE).is_none() {
        // A download (not playback seeking) is an export: audited.
        let c = caller_of(caller)?;
        let view = layout.clone();
        let cam = camera.clone();
        st.db(move |idx| {
            Ok(crate::evidence::export::record_download(
                idx.conn(),
                &c.actor,
                &cam,
                &view,
            )?)
        })
        .await?;
    }
    if req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
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
    let events = st.events.clone();
    let camera_for_events = camera.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
    let storage = st.storage.clone();
    let keyring = st.keyring.clone();
    let lay = layout.clone();
    tokio::task::spawn_blocking(move || {
        let end = last + 1;
        let init_len = lay.init.len() as u64;
        let mut pos = first;
        if pos < init_len {
            let stop = end.min(init_len);
            let chunk = Bytes::copy_from_slice(&lay.init[pos as usize..stop as usize]);
            if tx.blocking_send(Ok(hyper::body::Frame::data(chunk))).is_err() {
                return;
            }
            pos = stop;
        }
        let mut buf = Vec::new();
        let mut i = lay.fragment_at(pos);
        while pos < end {
            let Some(f) = lay.fragments.get(i) else { break };
            if let Err(e) = crate::evidence::export::view_fragment(&storage, keyring.as_ref(), &lay, i, &mut buf) {
                tracing::error!("view stopped at byte {pos}: {e}");
                let _ = events.send(format!(
                    "event: integrity\ndata: {}\n\n",
                    json!({ "camera": camera_for_events, "error": e.to_string() })
                ));
                let _ = tx.blocking_send(Err(std::io::Error::other("integrity failure")));
                return;
            }
            let from = (pos - f.offset) as usize;
            let to = (end.min(f.offset + f.len) - f.offset) as usize;
            if tx
                .blocking_send(Ok(hyper::body::Frame::data(Bytes::copy_from_slice(&buf[from..to]))))
                .is_err()
            {
                return; // the client went away
            }
            pos = f.offset + to as u64;
            i += 1;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
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
    Ok(r)
}

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
