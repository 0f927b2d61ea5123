//! The dashboard's figures and the playback timeline (viewers): what each
//! camera recorded in a window, as spans ([`crate::db::stats::timeline`]),
//! and the state of the recordings filesystem: size, free space, the
//! retention floor, bytes per day and how many days of footage fit.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::base::time::format_ns;
use crate::db::stats;
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{ok, query, time_param, ApiError, Reply};
use crate::web::AppState;

/// The longest window one timeline request may ask for: 31 days.
const MAX_WINDOW_NS: i64 = 31 * 86_400 * 1_000_000_000;
/// The days of `GET /api/v1/storage`'s `days`.
const DAYS_SHOWN: i64 = 14;

/// `GET /api/v1/timeline?start=&end=`: per camera in the caller's set, its
/// codec and the spans it recorded (recordings merged across gaps under
/// 1 s, at most 20,000; `truncated` when cut).
pub async fn timeline(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let q = query(&req);
    let required = |k: &str| ApiError::new(StatusCode::BAD_REQUEST, format!("\"{k}\" is required"));
    let start = time_param(&q, "start")?.ok_or_else(|| required("start"))?;
    let end = time_param(&q, "end")?.ok_or_else(|| required("end"))?;
    if start >= end {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "start must be before end"));
    }
    if end - start > MAX_WINDOW_NS {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the window is at most 31 days"));
    }
    let rows = st.db(move |idx| Ok(stats::timeline(idx.conn(), start, end)?)).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .filter(|r| c.may_view(&r.camera))
        .map(|r| {
            let spans: Vec<Value> = r
                .spans
                .iter()
                .map(|(s, e)| json!({ "start": format_ns(*s), "end": format_ns(*e) }))
                .collect();
            let mut v = json!({ "camera": r.camera, "codec": r.codec, "spans": spans });
            if r.truncated {
                v["truncated"] = json!(true);
            }
            v
        })
        .collect();
    ok(Value::Array(list))
}

/// `GET /api/v1/storage`: `total_bytes`, `free_bytes`, `recordings_bytes`,
/// `floor_bytes` (retention keeps this much free), `days` (bytes recorded
/// per UTC day, the last 14, oldest first), `retained_days_estimate`
/// ((recordings + free - floor) / the mean of those of the last 7 full
/// days with recordings; null when there is none) and `oldest_recording`.
/// For a caller limited to some cameras, `days`, `recordings_bytes` and
/// `oldest_recording` are of those cameras only; the filesystem's figures
/// and the estimate (how long the box keeps footage) are the box's.
pub async fn storage(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let now = st.clock.wall_ns();
    let (size, oldest, days, (box_size, mean)) = st
        .db(move |idx| {
            let only = c.cameras.as_deref();
            let (size, oldest) = stats::archive_size(idx.conn(), only)?;
            let days = stats::bytes_per_day(idx.conn(), now, DAYS_SHOWN, only)?;
            // The estimate is the box's (its disk fills with every camera).
            let box_size = match only {
                None => size,
                Some(_) => stats::archive_size(idx.conn(), None)?.0,
            };
            let mean = stats::mean_daily_bytes(idx.conn(), now, None)?;
            Ok((size, oldest, days, (box_size, mean)))
        })
        .await?;
    let dir = st.storage.dir().to_path_buf();
    let space = tokio::task::spawn_blocking(move || crate::base::host::fs_space(&dir))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let (free, total) = space.unwrap_or((0, 0));
    let floor = st.retention.floor(total);
    let recordings = size.max(0) as u64;
    let days: Vec<Value> = days
        .into_iter()
        .map(|(day, bytes)| {
            let date = format_ns(day * 86_400 * 1_000_000_000);
            json!({ "day": date.get(..10).unwrap_or(&date), "bytes": bytes })
        })
        .collect();
    ok(json!({
        "total_bytes": total,
        "free_bytes": free,
        "recordings_bytes": recordings,
        "floor_bytes": floor,
        "days": days,
        "retained_days_estimate": space.and_then(|_| stats::retained_days_estimate(box_size.max(0) as u64, free, floor, mean)),
        "oldest_recording": oldest.map(format_ns),
    }))
}
