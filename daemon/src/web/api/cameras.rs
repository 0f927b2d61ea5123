//! Cameras: list them (configured in vigil.toml, added from the web UI, or
//! known only from the archive), add, change and remove the ones managed
//! here, delete the recordings of one that is gone, and probe a camera
//! before adding it. Only admins see a camera's URL (without any login:
//! `db::cameras::redacted_url`) and user name; other roles get null for
//! both. A change keeps what it leaves out.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::db::cameras::{self as managed_cameras, ManagedCamera};
use crate::db::stats;
use crate::db::users::Role;
use crate::web::auth::{caller_of, Caller, Ctx};
use crate::web::reply::{body_json, json_reply, ok, opt_str, str_field, ApiError, Reply};
use crate::web::AppState;

/// `GET /api/v1/cameras`: the cameras in the caller's set.
pub async fn list(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    cameras(&st, &c, None).await
}

/// `GET /api/v1/cameras/{name}`: 404 for a camera outside the caller's set.
pub async fn get(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    cameras(&st, &c, ctx.params.into_iter().next()).await
}

/// The message of a refusal for a camera outside the caller's set.
pub const NOT_IN_CAMERA_SET: &str = "this camera is not in your camera set";

/// Checks that `caller` may see `camera`'s footage; if not, the refusal of
/// `action` is audited (denied) and the answer is 403.
pub async fn require_view(
    st: &Arc<AppState>,
    caller: &Caller,
    camera: &str,
    action: &'static str,
) -> Result<(), ApiError> {
    if caller.may_view(camera) {
        return Ok(());
    }
    let (actor, cam) = (caller.actor.clone(), camera.to_string());
    let audited = st
        .db(move |idx| {
            crate::evidence::egress::record_denied(idx.conn(), &actor, action, &cam, NOT_IN_CAMERA_SET)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await;
    if let Err(e) = audited {
        tracing::error!("a refused request for footage was not audited: {}", e.message);
    }
    Err(ApiError::new(StatusCode::FORBIDDEN, NOT_IN_CAMERA_SET))
}

/// `POST /api/v1/cameras`.
pub async fn add(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    camera_put(&st, req, ctx.caller, None).await
}

/// `PUT /api/v1/cameras/{name}`.
pub async fn update(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    camera_put(&st, req, ctx.caller, ctx.params.into_iter().next()).await
}

/// Configured cameras, then cameras only the archive knows (imports, removed ones).
pub async fn camera_names(st: &Arc<AppState>) -> Result<(Vec<String>, Vec<crate::db::CameraRow>), ApiError> {
    let rows = st.db(|idx| Ok(idx.cameras()?)).await?;
    let mut names = st.active_cameras();
    for r in &rows {
        if !names.contains(&r.name) {
            names.push(r.name.clone());
        }
    }
    Ok((names, rows))
}

pub async fn known_camera(st: &Arc<AppState>, name: Option<String>) -> Result<String, ApiError> {
    let (names, _) = camera_names(st).await?;
    name.filter(|n| names.contains(n))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))
}

async fn cameras(st: &Arc<AppState>, caller: &Caller, one: Option<String>) -> Reply {
    if one.is_some() {
        let name = known_camera(st, one.clone()).await?;
        if !caller.may_view(&name) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such camera"));
        }
    }
    let (mut configured, rows) = camera_names(st).await?;
    configured.retain(|n| caller.may_view(n));
    let (managed, last, recorded) = st
        .db(|idx| {
            Ok((
                managed_cameras::managed(idx)?,
                stats::last_recordings(idx.conn())?,
                stats::cameras_with_recordings(idx.conn())?,
            ))
        })
        .await?;
    let running = st.cameras.running();
    // A camera only the archive knew, whose recordings are all gone, is not listed.
    configured.retain(|n| {
        st.cameras.is_provisioned(n)
            || running.contains(n)
            || managed.iter().any(|m| &m.name == n)
            || recorded.contains(n)
    });
    let list: Vec<Value> = configured
        .iter()
        .filter(|n| one.as_ref().is_none_or(|o| o == *n))
        .map(|n| {
            let row = rows.iter().find(|r| &r.name == n);
            let m = managed.iter().find(|m| &m.name == n);
            let source = if st.cameras.is_provisioned(n) {
                "vigil.toml"
            } else if m.is_some() {
                "web"
            } else {
                "archive"
            };
            let url = match m {
                Some(m) => Some(m.url.as_str()),
                None => st
                    .provisioned_urls
                    .iter()
                    .find(|(c, _)| c == n)
                    .map(|(_, u)| u.as_str()),
            };
            // (the URL without any login, whether that left something out)
            let shown = admin_only(caller, url).map(|u| {
                let r = crate::db::cameras::redacted_url(u);
                let cut = r != u;
                (r, cut)
            });
            let cfg = st.cameras.camera_config(n);
            let newest = last.iter().find(|l| &l.camera == n);
            let last_recording = newest.map(|l| {
                json!({
                    "end": crate::base::time::format_ns(l.end_ns),
                    "fps": l.fps,
                    "bitrate_bps": l.bitrate_bps,
                })
            });
            json!({
                "name": n,
                "source": source,
                "running": running.contains(n),
                "enabled": m.map(|m| m.enabled).unwrap_or(source == "vigil.toml"),
                // Never a login in a listing, not even an admin's: the URL as
                // the audit log shows it (an edit that leaves it out keeps
                // the stored one), and whether anything was left out.
                "url": shown.as_ref().map(|(r, _)| r),
                "url_redacted": shown.as_ref().map(|(_, cut)| cut),
                "codec": newest.map(|l| l.codec.as_str()),
                "last_recording": last_recording,
                "archived": source == "archive",
                "username": admin_only(caller, m.and_then(|m| m.username.clone())),
                "state": row.map(|r| r.state.as_str()).unwrap_or("unknown"),
                "since": row.map(|r| crate::base::time::format_ns(r.state_since_ns)),
                "last_error": row.and_then(|r| r.last_error.clone()),
                "sub_stream": cfg.as_ref().is_some_and(|c| c.sub_url.is_some()),
                "record_audio": cfg.as_ref().is_some_and(|c| c.record_audio),
                "onvif": cfg.as_ref().is_some_and(|c| c.onvif_url.is_some()),
                // A recorded sub stream (`<camera>.sub`) is listed as its own
                // archive row, naming its camera.
                "sub_stream_of": crate::base::names::main_of_sub_stream(n),
            })
        })
        .collect();
    match one {
        Some(_) => ok(list
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?),
        None => ok(Value::Array(list)),
    }
}

/// A camera's URL (already redacted) or user name in a listing: for admins,
/// for anyone else None.
fn admin_only<T>(caller: &Caller, v: Option<T>) -> Option<T> {
    v.filter(|_| caller.role == Role::Admin)
}

/// Adds (`name` None: it is in the body) or changes a camera managed from
/// the web UI, stores its password in the secrets store, and (re)starts it.
/// A change keeps what the body leaves out (`url`, `username`, `password`,
/// `enabled`); an add needs `url` and is enabled unless it says otherwise.
/// Cameras from vigil.toml are changed in the file, not here.
async fn camera_put(st: &Arc<AppState>, req: Request<Incoming>, caller: Option<Caller>, name: Option<String>) -> Reply {
    let c = caller_of(caller)?;
    let v = body_json(req).await?;
    let adding = name.is_none();
    let name = match name {
        Some(n) => n,
        None => str_field(&v, "name")?.to_string(),
    };
    if !crate::base::names::valid_camera_name(&name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("\"{name}\": {}", crate::base::names::CAMERA_NAME_RULE),
        ));
    }
    if st.cameras.is_provisioned(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this camera is defined in vigil.toml; change it there",
        ));
    }
    let url = match adding {
        true => Some(str_field(&v, "url")?.to_string()),
        false => opt_str(&v, "url")?,
    };
    if let Some(url) = &url {
        crate::config::camera_url(url).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    }
    // Some(None): set to none (`""`); None: left out, unchanged.
    let username = match v.get("username") {
        None | Some(Value::Null) => None,
        Some(_) => Some(camera_username(&v)?),
    };
    let password = camera_password(&v)?;
    let enabled = match v.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"enabled\" must be true or false",
            ))
        }
    };
    let keyring = st.keyring.clone();
    let n = name.clone();
    let actor = c.actor.clone();
    let cam = st
        .db(move |idx| {
            let existing = managed_cameras::find_managed(idx, &n)?;
            match (&existing, adding) {
                (Some(_), true) => return Err(ApiError::new(StatusCode::CONFLICT, "a camera of that name exists")),
                (None, false) => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "no camera of that name was added here",
                    ))
                }
                _ => {}
            }
            if adding && idx.find_camera_id(&n)?.is_some() {
                // An archive camera (imported, or removed earlier): adding it again continues its recordings.
                tracing::info!(camera = %n, "a camera with earlier recordings is added again");
            }
            let secret = managed_cameras::password_secret_name(&n);
            let has_password = match &password {
                Some(p) if p.is_empty() => {
                    let _ = crate::keys::secrets::remove(&keyring, &secret);
                    false
                }
                Some(p) => {
                    crate::keys::secrets::set(&keyring, &secret, p.as_bytes(), None)
                        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
                    true
                }
                None => existing.as_ref().is_some_and(|e| e.has_password),
            };
            let m = merged(n.clone(), existing.as_ref(), url, username, has_password, enabled)
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "missing string field \"url\""))?;
            managed_cameras::store_managed(idx, &actor, &m)?;
            Ok(m)
        })
        .await?;
    // Restart with the new settings (stopping finalises the open recording).
    st.cameras.stop(&name).await;
    if cam.enabled {
        let cfg = cam
            .to_config()
            .ok_or_else(|| ApiError::internal("stored camera URL unusable".into()))?;
        let password = match cam.has_password {
            true => {
                let kr = st.keyring.clone();
                let secret = managed_cameras::password_secret_name(&name);
                let who = format!("camera {name} login");
                let v = tokio::task::spawn_blocking(move || crate::keys::secrets::get(&kr, &secret, &who))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Some(zeroize::Zeroizing::new(String::from_utf8_lossy(&v).into_owned()))
            }
            false => None,
        };
        st.cameras
            .start(&cfg, password)
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(json_reply(
        if adding { StatusCode::CREATED } else { StatusCode::OK },
        &json!({ "name": name, "enabled": cam.enabled }),
    ))
}

/// The camera a PUT stores: what the body gave, else what `existing` had
/// (an add without `enabled` is enabled). None when there is no URL at all.
fn merged(
    name: String,
    existing: Option<&ManagedCamera>,
    url: Option<String>,
    username: Option<Option<String>>,
    has_password: bool,
    enabled: Option<bool>,
) -> Option<ManagedCamera> {
    Some(ManagedCamera {
        name,
        url: url.or_else(|| existing.map(|e| e.url.clone()))?,
        username: username.unwrap_or_else(|| existing.and_then(|e| e.username.clone())),
        has_password,
        enabled: enabled.or(existing.map(|e| e.enabled)).unwrap_or(true),
        sub_url: existing.and_then(|e| e.sub_url.clone()),
        onvif_url: existing.and_then(|e| e.onvif_url.clone()),
        record_audio: existing.is_some_and(|e| e.record_audio),
    })
}

/// Stops and removes a camera added from the web UI; its recordings stay
/// (the camera is then listed as an archive).
pub async fn delete(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let name = ctx.params.into_iter().next();
    let c = caller_of(ctx.caller)?;
    let name = name.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?;
    if st.cameras.is_provisioned(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this camera is defined in vigil.toml; remove it there",
        ));
    }
    let keyring = st.keyring.clone();
    let n = name.clone();
    st.db(move |idx| {
        if !managed_cameras::delete_managed(idx, &c.actor, &n)? {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no camera of that name was added here",
            ));
        }
        let _ = crate::keys::secrets::remove(&keyring, &managed_cameras::password_secret_name(&n));
        Ok(())
    })
    .await?;
    st.cameras.stop(&name).await;
    ok(json!({ "status": "removed; its recordings are kept" }))
}

/// `DELETE /api/v1/cameras/{name}/recordings`: deletes the recordings of a
/// camera that is gone (neither in vigil.toml nor managed here, and not
/// running, nor a sub stream its camera records; 409 otherwise), except
/// those under a legal hold. Answers
/// `{"deleted": n, "kept_on_hold": m}`.
pub async fn delete_archive(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = ctx
        .params
        .into_iter()
        .next()
        .filter(|n| crate::base::names::valid_recorded_camera_name(n))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?;
    let n = name.clone();
    let managed = st.db(move |idx| Ok(managed_cameras::find_managed(idx, &n)?)).await?;
    // A sub stream's recordings (`<camera>.sub`) while its camera records it.
    let recording_sub = crate::base::names::main_of_sub_stream(&name).is_some_and(|m| st.cameras.records_sub_stream(m));
    if st.cameras.is_provisioned(&name) || managed.is_some() || st.cameras.running().contains(&name) || recording_sub {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this camera is configured; remove it first, then delete its recordings",
        ));
    }
    let (storage, db_path, now) = (st.storage.clone(), st.db_path.clone(), st.clock.wall_ns());
    let done = tokio::task::spawn_blocking(move || {
        let mut idx = crate::db::Index::open_existing(&db_path).map_err(|e| ApiError::internal(e.to_string()))?;
        crate::archive::camera_archive::delete_camera_archive(&storage, &mut idx, &c.actor, &name, now)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??
    .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?;
    ok(json!({ "deleted": done.deleted, "kept_on_hold": done.kept_on_hold }))
}

/// Tries a camera before it is added: connects as the recorder would and
/// answers with a verdict only (`ingest::probe`): the codec and size, or a
/// short category of the failure. Only `rtsp://` URLs and V4L2 device nodes.
pub async fn probe(_st: Arc<AppState>, req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let v = body_json(req).await?;
    let url =
        crate::config::camera_url(str_field(&v, "url")?).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let username = camera_username(&v)?;
    let password = camera_password(&v)?;
    if url.scheme() == "v4l2" {
        let src = crate::config::v4l2_url::parse_url(&url).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
        let device = match crate::ingest::probe::video_device(&src.device) {
            Ok(d) => d,
            Err(Some(e)) => return Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string())),
            Err(None) => return ok(json!({ "ok": false, "error": "unreachable" })),
        };
        let verdict = tokio::task::spawn_blocking(move || crate::ingest::probe::probe_v4l2(&device))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "probe failed"))?;
        return ok(json!(verdict));
    }
    let verdict = crate::ingest::probe::probe_rtsp(
        &url,
        username.as_deref(),
        password.as_deref().map(String::as_str),
        std::time::Duration::from_secs(10),
    )
    .await;
    ok(json!(verdict))
}

/// The optional `username` of a camera (empty is none): free text.
pub(super) fn camera_username(v: &Value) -> Result<Option<String>, ApiError> {
    let username = opt_str(v, "username")?.filter(|u| !u.is_empty());
    if username
        .as_deref()
        .is_some_and(|u| !crate::base::names::valid_free_text(u))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("\"username\": {}", crate::base::names::FREE_TEXT_RULE),
        ));
    }
    Ok(username)
}

/// The optional `password` of a camera: no control characters.
pub(super) fn camera_password(v: &Value) -> Result<Option<zeroize::Zeroizing<String>>, ApiError> {
    let password = opt_str(v, "password")?.map(zeroize::Zeroizing::new);
    if password.as_deref().is_some_and(|p| p.chars().any(char::is_control)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "\"password\" must not contain control characters",
        ));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> ManagedCamera {
        ManagedCamera {
            name: "door".into(),
            url: "rtsp://192.0.2.1/s?channel=2&subtype=1".into(),
            username: Some("bob".into()),
            has_password: true,
            enabled: false,
            sub_url: None,
            onvif_url: None,
            record_audio: false,
        }
    }

    #[test]
    fn only_an_admin_sees_a_camera_url() {
        let url = "rtsp://192.0.2.1/user=admin&password=x&channel=1?loginPas=y";
        assert_eq!(
            crate::db::cameras::redacted_url(url),
            "rtsp://192.0.2.1/...?...",
            "the listing shows no login"
        );
        for (role, shown) in [(Role::Viewer, None), (Role::Operator, None), (Role::Admin, Some(url))] {
            let caller = Caller {
                actor: "token:t".into(),
                user_id: Some(1),
                role,
                csrf: None,
                cookie: None,
                must_change_password: false,
                cameras: None,
            };
            assert_eq!(admin_only(&caller, Some(url)), shown, "{role:?}");
        }
    }

    #[test]
    fn a_change_keeps_what_the_body_leaves_out() {
        let e = stored();
        // Neither url nor enabled: a disabled camera stays disabled, its URL as stored.
        let m = merged("door".into(), Some(&e), None, None, true, None).unwrap();
        assert_eq!(m, e);
        // Each given field changes only itself; "" clears the user name.
        let m = merged("door".into(), Some(&e), None, Some(None), true, Some(true)).unwrap();
        assert_eq!((m.url.as_str(), m.username, m.enabled), (e.url.as_str(), None, true));
        let m = merged(
            "door".into(),
            Some(&e),
            Some("rtsp://192.0.2.2/x".into()),
            None,
            true,
            None,
        )
        .unwrap();
        assert_eq!(
            (m.url.as_str(), m.username.as_deref(), m.enabled),
            ("rtsp://192.0.2.2/x", Some("bob"), false)
        );
        // An add is enabled unless it says otherwise, and needs a URL.
        let m = merged(
            "door".into(),
            None,
            Some("rtsp://192.0.2.2/x".into()),
            None,
            false,
            None,
        )
        .unwrap();
        assert!(m.enabled);
        assert!(merged("door".into(), None, None, None, false, Some(true)).is_none());
    }
}
