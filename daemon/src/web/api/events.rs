//! `GET /api/v1/events`: without a range, the server-sent event stream of
//! the web UI (`live::events`); with `start` and `end` (and optionally
//! `camera`), the cameras' own events (motion, tamper) in that range, for
//! the playback timeline and its "next / previous event". A caller sees
//! only the events of the cameras they may view; no camera means all of
//! those.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::cameras::known_camera;
use crate::base::time::format_ns;
use crate::db::camera_events;
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{ok, param, query, time_param, ApiError, Reply};
use crate::web::AppState;

/// The widest range one request may ask for (the timeline shows a day at most; a week gives room).
const WIDEST_RANGE_NS: i64 = 8 * 24 * 3600 * 1_000_000_000;

/// `GET /api/v1/events`: the listing when the query names a range or a
/// camera, else the live event stream.
pub async fn stream_or_list(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let q = query(&req);
    if ["start", "end", "camera"].iter().any(|k| param(&q, k).is_some()) {
        list(st, req, ctx).await
    } else {
        super::live::events(st, req, ctx).await
    }
}

/// `GET /api/v1/events?camera=&start=&end=`: `{"events": [{"id", "camera",
/// "kind", "start", "end", "topic"}]}`, oldest first; `end` is null while
/// the event lasts. `start` and `end` are required RFC 3339 times.
pub async fn list(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let caller = caller_of(ctx.caller)?;
    let q = query(&req);
    let need = |k: &str| ApiError::new(StatusCode::BAD_REQUEST, format!("\"{k}\" is required"));
    let start = time_param(&q, "start")?.ok_or_else(|| need("start"))?;
    let end = time_param(&q, "end")?.ok_or_else(|| need("end"))?;
    if start >= end {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "start must be before end"));
    }
    if end.saturating_sub(start) > WIDEST_RANGE_NS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the range may span at most 8 days",
        ));
    }
    let only: Option<Vec<String>> = match param(&q, "camera") {
        Some(c) => {
            let c = known_camera(&st, Some(c.to_string())).await?;
            if !caller.may_view(&c) {
                return ok(json!({"events": []}));
            }
            Some(vec![c])
        }
        None => caller.cameras.clone(),
    };
    let (rows, truncated) = st
        .db(move |idx| Ok(camera_events::list(idx.conn(), only.as_deref(), start, end)?))
        .await?;
    let events: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({"id": e.id, "camera": e.camera, "kind": e.kind.as_str(), "start": format_ns(e.start_ns),
                   "end": e.end_ns.map(format_ns), "topic": e.topic})
        })
        .collect();
    ok(json!({ "events": events, "truncated": truncated }))
}
