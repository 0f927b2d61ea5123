//! Alerts over HTTPS: open and recent alerts (viewers see those about
//! their cameras and the box's, without the login and secret ones;
//! delivery details are for admins), and the
//! channels (admins): list with delivery figures, add or change one from
//! the UI (its secret goes to the secrets store, write-only), remove one,
//! send a test message through one.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::alerts::channels;
use crate::base::time::format_ns;
use crate::config::alerts::ChannelConfig;
use crate::db::alert_outbox;
use crate::db::alerts::{self, Alert};
use crate::db::users::Role;
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{body_json, ok, query, ApiError, Reply};
use crate::web::AppState;

/// How many recent alerts `?all=1` lists.
const RECENT: usize = 100;
/// The longest secret value accepted.
const MAX_SECRET: usize = 4096;

fn alert_json(a: &Alert, deliveries: Option<Vec<alert_outbox::Delivery>>) -> Value {
    let mut v = crate::alerts::message::alert_json(a);
    v["last_seen"] = json!(format_ns(a.last_seen_ns));
    v["occurrences"] = json!(a.occurrences);
    if let Some(ds) = deliveries {
        v["deliveries"] = ds
            .iter()
            .map(|d| {
                json!({"channel": d.channel, "type": d.event.kind, "state": d.state, "attempts": d.attempts,
                       "last_error": d.last_error, "sent_at": d.sent_ns.map(format_ns)})
            })
            .collect();
    }
    v
}

/// `GET /api/v1/alerts[?all=1]`: `{"open": [...], "recent": [...]}`.
pub async fn list(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let all = crate::web::reply::param(&query(&req), "all").is_some_and(|v| v == "1" || v == "true");
    let admin = c.role >= Role::Admin;
    let (open, recent) = st
        .db(move |idx| {
            let conn = idx.conn();
            let with = |a: Alert| -> rusqlite::Result<(Alert, Option<Vec<alert_outbox::Delivery>>)> {
                let ds = if admin {
                    Some(alert_outbox::deliveries_of_alert(conn, a.id)?)
                } else {
                    None
                };
                Ok((a, ds))
            };
            // Others see alerts about their cameras and the box's, but not
            // who was locked out, from where, nor secrets' names.
            let visible = |a: &Alert| match a.camera.as_deref() {
                Some(cam) => c.may_view(cam),
                None => admin || !(a.code.starts_with("login.") || a.code.starts_with("secret.")),
            };
            let open: Vec<_> = alerts::open(conn)?
                .into_iter()
                .filter(visible)
                .map(with)
                .collect::<Result<_, _>>()?;
            let recent: Vec<_> = if all {
                alerts::recent(conn, RECENT)?
                    .into_iter()
                    .filter(visible)
                    .map(with)
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            Ok((open, recent))
        })
        .await?;
    let render = |v: Vec<(Alert, Option<Vec<alert_outbox::Delivery>>)>| -> Vec<Value> {
        v.into_iter().map(|(a, ds)| alert_json(&a, ds)).collect()
    };
    ok(json!({"open": render(open), "recent": render(recent)}))
}

/// `GET /api/v1/alerts/channels`: each channel, where it is defined, its
/// settings (never a secret), and its delivery figures.
pub async fn channels_list(st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let file = st.alerts.clone();
    let now = st.clock.wall_ns();
    let rows = st
        .db(move |idx| {
            let conn = idx.conn();
            let stats = alert_outbox::channel_stats(conn)?;
            let list = channels::all(conn, &file)?;
            let mut out = Vec::new();
            for (ch, source) in list {
                let s = stats.iter().find(|s| s.channel == ch.name).cloned().unwrap_or_default();
                let has_secret = match &ch.secret {
                    Some(n) => crate::keys::secrets::exists(conn, n)?,
                    None => false,
                };
                let mut settings = ch.settings_json();
                if let Some(o) = settings.as_object_mut() {
                    o.remove("secret");
                }
                out.push(json!({
                    "name": ch.name,
                    "kind": ch.kind.as_str(),
                    "source": source.as_str(),
                    "settings": settings,
                    "has_secret": has_secret,
                    "min_severity": ch.min_severity.as_str(),
                    "rate_limit": ch.rate_limit,
                    "rate_window_seconds": ch.rate_window_seconds,
                    "cameras": ch.cameras,
                    "delivered": s.sent,
                    "pending": s.pending,
                    "held": s.held,
                    "failed": s.failed,
                    "oldest_pending_seconds": s.oldest_pending_ns.map(|t| (now - t) / 1_000_000_000),
                    "last_sent": s.last_sent_ns.map(format_ns),
                    "last_error": s.last_error,
                }));
            }
            Ok(out)
        })
        .await?;
    ok(Value::Array(rows))
}

fn channel_param(params: &[String]) -> Result<String, ApiError> {
    let name = params.first().cloned().unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a channel name is 1 to 32 of a-z, 0-9 and -",
        ));
    }
    Ok(name)
}

/// Refuses a change to a channel of vigil.toml (409).
fn not_from_file(st: &AppState, name: &str) -> Result<(), ApiError> {
    if st.alerts.channels.iter().any(|c| c.name == name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("channel {name} is defined in the configuration file; change it there"),
        ));
    }
    Ok(())
}

/// `PUT /api/v1/alerts/channels/{name}`: adds or replaces a UI channel.
/// The body holds the settings as in vigil.toml's `[[alerts.channel]]`
/// and, write-only, `secret_value` (stored as `alert-<name>`).
pub async fn channel_put(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = channel_param(&ctx.params)?;
    not_from_file(&st, &name)?;
    let mut v = body_json(req).await?;
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is a JSON object of settings",
        ));
    };
    let secret_value = match obj.remove("secret_value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SECRET => Some(zeroize::Zeroizing::new(s)),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("\"secret_value\" is a non-empty string of at most {MAX_SECRET} bytes"),
            ))
        }
    };
    obj.remove("name");
    // A file path chosen from a browser would let the UI make the daemon
    // read any file it may (a device, the database): vigil.toml only.
    if obj.get("ca_file").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "\"ca_file\" can be set only in vigil.toml; a channel added here trusts the system's certificate authorities",
        ));
    }
    obj.insert("secret".into(), json!(channels::ui_secret_name(&name)));
    let cfg: ChannelConfig =
        ChannelConfig::from_json(&name, &v).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let settings = cfg.settings_json().to_string();
    let keyring = st.keyring.clone();
    let actor = c.actor.clone();
    let now = st.clock.wall_ns();
    st.db(move |idx| {
        let secret_name = channels::ui_secret_name(&name);
        match &secret_value {
            Some(s) => {
                crate::keys::secrets::set(&keyring, &secret_name, s.as_bytes(), None)
                    .map_err(|e| ApiError::internal(format!("storing the secret of channel {name}: {e}")))?;
            }
            None => {
                let needs = matches!(
                    cfg.kind,
                    crate::config::alerts::ChannelKind::Webhook { .. }
                        | crate::config::alerts::ChannelKind::Twilio { .. }
                );
                if needs && !crate::keys::secrets::exists(idx.conn(), &secret_name)? {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "this kind of channel needs a secret: give \"secret_value\"",
                    ));
                }
            }
        }
        alert_outbox::store_channel(idx.conn(), &actor, &name, &settings, now)?;
        Ok(())
    })
    .await?;
    ok(json!({"ok": true}))
}

/// `DELETE /api/v1/alerts/channels/{name}`: removes a UI channel, its
/// secret and its undelivered messages.
pub async fn channel_delete(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = channel_param(&ctx.params)?;
    not_from_file(&st, &name)?;
    let keyring = st.keyring.clone();
    let actor = c.actor.clone();
    let found = st
        .db(move |idx| {
            let found = alert_outbox::delete_channel(idx.conn(), &actor, &name)?;
            if found {
                match crate::keys::secrets::remove(&keyring, &channels::ui_secret_name(&name)) {
                    Ok(()) | Err(crate::keys::secrets::SecretError::NotFound(_)) => {}
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "removing the secret of channel {name}: {e}"
                        )))
                    }
                }
            }
            Ok(found)
        })
        .await?;
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such channel added from the web UI",
        ));
    }
    ok(json!({"ok": true}))
}

/// `POST /api/v1/alerts/channels/{name}/test`: one test message now;
/// `{"ok": true, "ms", "key"}` or `{"ok": false, "error"}` (audited either way).
pub async fn channel_test(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = channel_param(&ctx.params)?;
    let file = st.alerts.clone();
    let ctx_file = file.clone();
    let tctx = st.db(move |idx| Ok(channels::context(idx.conn(), &ctx_file))).await?;
    // Opening the index, reading the secret and the CA file, and the audit
    // entry block: the test runs on its own small runtime on a blocking
    // thread, not on the two workers that serve the cameras and the API.
    let (db_path, keyring, actor) = (st.db_path.clone(), st.keyring.clone(), c.actor.clone());
    let r = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(channels::send_test(&db_path, &file, &keyring, &tctx, &name, &actor))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))?;
    match r.error {
        None => ok(json!({"ok": true, "ms": r.ms as u64, "key": r.key})),
        Some(e) => ok(json!({"ok": false, "ms": r.ms as u64, "error": e})),
    }
}
