//! The audit log (admins): its entries, newest first, filtered by actor,
//! action prefix and time, and a check of its hash chain.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::db::audit;
use crate::web::auth::Ctx;
use crate::web::reply::{ok, param, query, time_param, ApiError, Reply};
use crate::web::AppState;

/// `GET /api/v1/audit?actor=&action=&since=&until=&limit=&before=`: newest
/// first; `actor` exact, `action` a prefix, `since`/`until` RFC 3339,
/// `before` an entry id (the next page: the last id of this one).
pub async fn log(st: Arc<AppState>, req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let q = query(&req);
    let limit = match param(&q, "limit") {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"limit\" must be 1 to 1000"))?,
    };
    let before_id = match param(&q, "before") {
        None => None,
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "\"before\" must be an entry id"))?,
        ),
    };
    let filter = audit::Filter {
        actor: param(&q, "actor").filter(|s| !s.is_empty()).map(str::to_string),
        action_prefix: param(&q, "action").filter(|s| !s.is_empty()).map(str::to_string),
        since_ns: time_param(&q, "since")?,
        until_ns: time_param(&q, "until")?,
        before_id,
        limit,
    };
    let entries = st.db(move |idx| Ok(audit::search(idx.conn(), &filter)?)).await?;
    ok(Value::Array(
        entries
            .into_iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "time": crate::base::time::format_ns(e.ts_ns),
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "outcome": e.outcome,
                    "detail": e.detail,
                })
            })
            .collect(),
    ))
}

/// `GET /api/v1/audit/verify`: the chain and the signed checkpoints.
/// `intact`, `entries`, `problem` (the first) as before; `problems` (all),
/// `anchored` (one line), `unanchored` (entries after the newest good
/// checkpoint) and `head` (that checkpoint, signed: `seq`, `entry_id`,
/// `hash`, `ts`, `ts_ns`, `signature`, `public_key_fingerprint`; null if none).
pub async fn verify(st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let rep = st
        .db(|idx| Ok(crate::db::audit_verify::verify_with_device(idx.conn(), None)?))
        .await?;
    let head = rep.anchor.as_ref().and_then(|c| c.to_head());
    let mut v = json!({
        "intact": rep.intact(),
        "entries": rep.entries,
        "problems": rep.problems,
        "anchored": rep.anchor_line(),
        "unanchored": rep.unanchored,
        "head": head,
    });
    if let Some(first) = rep.problems.first() {
        v["problem"] = json!(first);
    }
    ok(v)
}
