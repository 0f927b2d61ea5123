//! Health and metrics: liveness (a real round trip through the database
//! workers the API uses), readiness (database, storage, encryption
//! self-test, fixity, time sync, cameras; only "ok" or "not ready" to an
//! anonymous caller, the details to anyone logged in) and Prometheus metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::web::auth::{self, Ctx};
use crate::web::reply::{full, json_reply, ok, ApiError, Reply};
use crate::web::AppState;

/// `/health/live` fails when the database workers do not answer within this.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health/live`: 200 only when the API can answer: a query through
/// the same blocking workers and database pool every request uses comes
/// back within [`LIVE_TIMEOUT`]; 503 when they are exhausted or failing.
pub async fn live(st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let probe = st.db(|idx| Ok(idx.cameras().map(|_| ())?));
    let problem = match tokio::time::timeout(LIVE_TIMEOUT, probe).await {
        Ok(Ok(())) => return ok(json!({ "status": "live" })),
        Ok(Err(_)) => "the database does not answer",
        Err(_) => "the API's database workers are busy",
    };
    Ok(json_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "status": "not live", "problem": problem }),
    ))
}

/// `GET /health/ready`: the details to a logged-in caller (any role), only
/// `{"status":"ok"}` or `{"status":"not ready"}` to anyone else.
pub async fn ready(st: Arc<AppState>, req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let logged_in = matches!(auth::authenticate(&st, &req).await, Ok(Some(_)));
    let storage_dir = st.storage.dir().to_path_buf();
    let keyring = st.keyring.clone();
    let (db_ok, cams, fixity_failures) = match st
        .db(|idx| {
            Ok((
                (idx.cameras()?, crate::db::camera_clock::readings(idx)?),
                crate::db::fixity::failures(idx.conn())?.len(),
            ))
        })
        .await
    {
        Ok((c, f)) => (true, c, f),
        Err(_) => (false, (Vec::new(), Vec::new()), 0),
    };
    let (cams, clocks) = cams;
    let replication = replication_state(&st).await;
    let paused = st.storage.alarm().paused();
    let storage = st.storage.clone();
    let checks = tokio::task::spawn_blocking(move || {
        // Never probe the mount point's own filesystem if the volume is gone.
        let probe = storage_dir.join(".vigil-ready-probe");
        let writable = storage.check_volume().is_ok()
            && std::fs::write(&probe, b"probe")
                .and_then(|()| std::fs::remove_file(&probe))
                .is_ok();
        let space = crate::base::host::fs_space(&storage_dir);
        let self_test = vigil_format::vseg::self_test();
        let sealing = keyring.sealer().describe();
        (writable, space, self_test, sealing, crate::base::host::time_sync())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (writable, space, self_test, sealing, ts) = checks;
    let ready = db_ok && writable && self_test && fixity_failures == 0 && paused.is_none();
    let mut problems = Vec::new();
    if !writable {
        problems.push("the recordings directory is not writable".to_string());
    }
    if fixity_failures > 0 {
        problems.push(format!(
            "{fixity_failures} recording(s) failed the fixity check (see `vigil fixity status`)"
        ));
    }
    if let Some(p) = &paused {
        problems.push(p.clone());
    }
    let cameras: Vec<Value> = st
        .active_cameras()
        .iter()
        .map(|n| {
            let state = cams
                .iter()
                .find(|c| &c.name == n)
                .map(|c| c.state.as_str())
                .unwrap_or("unknown");
            let clock = clocks.iter().find(|(c, _)| c == n).map(|(_, r)| r);
            json!({ "name": n, "state": state, "sub_stream": st.cameras.sub_stream_state(n),
                    "clock_drift_ms": clock.map(|r| r.drift_ms), "clock_source": clock.map(|r| r.source.as_str()),
                    "clock_measured": clock.map(|r| crate::base::time::format_ns(r.measured_ns)) })
        })
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": db_ok,
        "storage_writable": writable,
        "free_bytes": space.map(|s| s.0),
        "free_percent": space.map(|(a, t)| if t == 0 { 0.0 } else { (a as f64 * 1000.0 / t as f64).round() / 10.0 }),
        "encryption_self_test": self_test,
        "key_source": sealing,
        "time_synchronised": ts.synchronised,
        "time_max_error_us": ts.max_error_us,
        "fixity_failures": fixity_failures,
        "storage_paused": paused,
        "problems": problems,
        "warnings": st.volume_warning.iter().collect::<Vec<_>>(),
        "storage_encrypted_volume": st.volume_warning.is_none(),
        "cameras": cameras,
        "replication": replication,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !logged_in {
        return Ok(json_reply(
            status,
            &json!({ "status": if ready { "ok" } else { "not ready" } }),
        ));
    }
    Ok(json_reply(status, &body))
}

/// `[replication]`'s state for the health check: off, or the queue, the
/// lag, what was uploaded and the last error.
async fn replication_state(st: &Arc<AppState>) -> Value {
    let Some((after_ns, stats)) = st.replication.clone() else {
        return json!({ "enabled": false });
    };
    let now = st.clock.wall_ns();
    match st.db(|idx| Ok(crate::db::replication::lag(idx.conn())?)).await {
        Ok(l) => {
            let lag_s = l
                .oldest_queued_start_ns
                .map(|t| (now - t).max(0) / 1_000_000_000)
                .unwrap_or(0);
            json!({
                "enabled": true,
                "queued_recordings": l.queued,
                "queued_bytes": l.queued_bytes,
                "oldest_queued_utc": l.oldest_queued_start_ns.map(crate::base::time::format_ns),
                "lag_seconds": lag_s,
                "lagging": lag_s * 1_000_000_000 > after_ns,
                "uploaded_recordings": l.uploaded,
                "uploaded_bytes": l.uploaded_bytes,
                "last_uploaded_utc": l.last_uploaded_ns.map(crate::base::time::format_ns),
                "last_error": stats.blocked().or(l.last_error),
            })
        }
        Err(_) => json!({ "enabled": true, "last_error": "the database does not answer" }),
    }
}

/// `GET /metrics`.
pub async fn metrics(st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let cams = st.db(|idx| Ok(idx.cameras()?)).await?;
    let (open_alerts, deliveries) = st
        .db(|idx| {
            Ok((
                crate::db::alerts::open_by_severity(idx.conn())?,
                crate::db::alert_outbox::channel_stats(idx.conn())?,
            ))
        })
        .await?;
    let now = st.clock.wall_ns();
    let space = crate::base::host::fs_space(st.storage.dir());
    let c = &st.counters;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, lines: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in lines {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    metric(
        "vigil_up",
        "1 while the daemon serves",
        "gauge",
        vec![(String::new(), "1".into())],
    );
    metric(
        "vigil_uptime_seconds",
        "seconds since the HTTPS server started",
        "gauge",
        vec![(String::new(), st.started.elapsed().as_secs().to_string())],
    );
    metric(
        "vigil_camera_streaming",
        "1 when the camera is streaming",
        "gauge",
        st.active_cameras()
            .iter()
            .map(|n| {
                let s = cams.iter().any(|c| &c.name == n && c.state == "streaming");
                (format!("{{camera=\"{n}\"}}"), u8::from(s).to_string())
            })
            .collect(),
    );
    if let Some((avail, total)) = space {
        metric(
            "vigil_storage_free_bytes",
            "free bytes on the recordings filesystem",
            "gauge",
            vec![(String::new(), avail.to_string())],
        );
        metric(
            "vigil_storage_size_bytes",
            "size of the recordings filesystem",
            "gauge",
            vec![(String::new(), total.to_string())],
        );
    }
    metric(
        "vigil_transcode_sessions",
        "H.265 to H.264 conversions running",
        "gauge",
        vec![(String::new(), st.transcoders.in_use().to_string())],
    );
    metric(
        "vigil_alerts_open",
        "open alerts by severity",
        "gauge",
        ["critical", "warning", "info"]
            .iter()
            .map(|sev| {
                let v = open_alerts.iter().find(|(s, _)| s == sev).map(|(_, n)| *n).unwrap_or(0);
                (format!("{{severity=\"{sev}\"}}"), v.to_string())
            })
            .collect(),
    );
    metric(
        "vigil_alert_deliveries_total",
        "alert messages per channel and delivery state (held: waiting for a digest)",
        "gauge",
        deliveries
            .iter()
            .flat_map(|d| {
                [
                    ("sent", d.sent),
                    ("pending", d.pending),
                    ("held", d.held),
                    ("failed", d.failed),
                ]
                .map(|(state, v)| {
                    (
                        format!("{{channel=\"{}\",state=\"{state}\"}}", d.channel),
                        v.to_string(),
                    )
                })
            })
            .collect(),
    );
    metric(
        "vigil_alert_oldest_pending_seconds",
        "age of the oldest undelivered alert message per channel (0: none)",
        "gauge",
        deliveries
            .iter()
            .map(|d| {
                let age = d
                    .oldest_pending_ns
                    .map(|t| (now - t).max(0) / 1_000_000_000)
                    .unwrap_or(0);
                (format!("{{channel=\"{}\"}}", d.channel), age.to_string())
            })
            .collect(),
    );
    if let Some((_, stats)) = st.replication.clone() {
        let l = st.db(|idx| Ok(crate::db::replication::lag(idx.conn())?)).await?;
        let lag = l
            .oldest_queued_start_ns
            .map(|t| (now - t).max(0) / 1_000_000_000)
            .unwrap_or(0);
        metric(
            "vigil_replication_lag_seconds",
            "age of the oldest recording not yet in the bucket (0: none waiting)",
            "gauge",
            vec![(String::new(), lag.to_string())],
        );
        metric(
            "vigil_replication_queued_bytes",
            "bytes of recordings waiting for the bucket",
            "gauge",
            vec![(String::new(), l.queued_bytes.to_string())],
        );
        metric(
            "vigil_replication_queued_recordings",
            "recordings waiting for the bucket",
            "gauge",
            vec![(String::new(), l.queued.to_string())],
        );
        metric(
            "vigil_replication_uploaded_recordings",
            "recordings kept on this box that are in the bucket",
            "gauge",
            vec![(String::new(), l.uploaded.to_string())],
        );
        let sent = stats.bytes_sent.load(Ordering::Relaxed);
        let errors = stats.errors.load(Ordering::Relaxed);
        metric(
            "vigil_replication_sent_bytes_total",
            "bytes sent to the bucket since the start (a part sent again counts again)",
            "counter",
            vec![(String::new(), sent.to_string())],
        );
        metric(
            "vigil_replication_errors_total",
            "failed replication steps since the start",
            "counter",
            vec![(String::new(), errors.to_string())],
        );
    }
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    metric(
        "vigil_http_requests_total",
        "HTTP requests",
        "counter",
        vec![(String::new(), n(&c.requests))],
    );
    metric(
        "vigil_http_errors_total",
        "HTTP error responses",
        "counter",
        vec![
            ("{class=\"4xx\"}".into(), n(&c.responses_4xx)),
            ("{class=\"5xx\"}".into(), n(&c.responses_5xx)),
        ],
    );
    metric(
        "vigil_http_refused_connections_total",
        "connections refused: their address at its cap, or every slot busy",
        "counter",
        vec![(String::new(), n(&c.refused_connections))],
    );
    metric(
        "vigil_http_shed_connections_total",
        "slow or idle connections closed to make room for new ones",
        "counter",
        vec![(String::new(), n(&c.shed_connections))],
    );
    metric(
        "vigil_logins_total",
        "login attempts",
        "counter",
        vec![
            ("{outcome=\"ok\"}".into(), n(&c.logins_ok)),
            ("{outcome=\"failed\"}".into(), n(&c.logins_failed)),
        ],
    );
    let mut r = Response::new(full(out));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}
