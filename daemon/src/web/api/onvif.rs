//! ONVIF from the web UI (admin): discover cameras on the camera network
//! (`GET /api/v1/onvif/discover`) and add one by its ONVIF address
//! (`POST /api/v1/cameras/onvif`): its main and sub stream are read from
//! the camera, its password goes to the secrets store, and it starts.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::ingest::onvif::onboard::{self, OnboardError};
use crate::ingest::onvif::{discovery, MediaProfile, OnvifError};
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{body_json, json_reply, ok, opt_str, param, query, str_field, ApiError, Reply};
use crate::web::AppState;

/// How long discovery collects answers unless `wait_ms` says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_millis(2000);

/// A camera error as an answer: a refused login or a camera that does not
/// speak ONVIF as it should is the request's fault (400); one that cannot
/// be reached is a gateway's (502, 504).
fn camera_error(e: OnvifError) -> ApiError {
    let status = match e {
        OnvifError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        OnvifError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.to_string())
}

/// `GET /api/v1/onvif/discover?wait_ms=N`: the cameras that answer a
/// WS-Discovery probe out of `[onvif] discovery_interface` (the installer's
/// setting: the web UI cannot send probes out of another interface, such as
/// the uplink). No login is tried (a password does not belong in a URL):
/// their credentials are "not given".
pub async fn discover(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    caller_of(ctx.caller)?;
    let q = query(&req);
    if param(&q, "interface").is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the interface is the installer's setting ([onvif] discovery_interface), not a parameter",
        ));
    }
    let interface = st
        .onvif
        .discovery_interface(None)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let wait = match param(&q, "wait_ms") {
        None => DEFAULT_WAIT,
        Some(w) => Duration::from_millis(
            w.parse::<u64>()
                .ok()
                .filter(|w| (1..=10_000).contains(w))
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"wait_ms\" must be 1 to 10000"))?,
        ),
    };
    let found = discovery::probe(interface, wait).await.map_err(camera_error)?;
    let cameras = onboard::check_found(found, None, None).await;
    ok(json!({ "interface": interface.to_string(), "cameras": cameras }))
}

fn profile_json(p: &MediaProfile) -> Value {
    json!({
        "token": p.token,
        "name": p.name,
        "codec": p.codec,
        "width": p.width,
        "height": p.height,
        "fps": p.fps,
    })
}

/// `POST /api/v1/cameras/onvif` `{"address", "username", "password",
/// "name"?, "record_audio"?}`: reads the camera's profiles and adds it as
/// a managed camera (audited `camera.add`), then starts it. 201 with the
/// streams chosen; 409 for a name in use.
pub async fn add(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let v = body_json(req).await?;
    let address = str_field(&v, "address")?.to_string();
    let url = onboard::device_url(&address).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let username = super::cameras::camera_username(&v)?;
    let password = super::cameras::camera_password(&v)?;
    let name = opt_str(&v, "name")?.filter(|n| !n.is_empty());
    let record_audio = match v.get("record_audio") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"record_audio\" must be true or false",
            ))
        }
    };
    if let Some(n) = &name {
        if !crate::base::names::valid_camera_name(n) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("\"{n}\": {}", crate::base::names::CAMERA_NAME_RULE),
            ));
        }
    }
    let found = onboard::inspect(url.clone(), username.clone(), password.clone())
        .await
        .map_err(camera_error)?;
    let name = name.unwrap_or_else(|| onboard::default_name(&found.info, &url));
    if st.cameras.is_provisioned(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a camera of that name is defined in vigil.toml",
        ));
    }
    let has_password = password.as_ref().is_some_and(|p| !p.is_empty());
    let cam = onboard::managed_camera(&name, &found, username, has_password, record_audio)
        .ok_or_else(|| camera_error(OnvifError::NoVideoProfile))?;
    let (keyring, actor, stored, secret) = (st.keyring.clone(), c.actor.clone(), cam.clone(), password.clone());
    st.db(move |idx| {
        onboard::store(&keyring, idx, &actor, &stored, secret.as_deref().map(String::as_str)).map_err(|e| match e {
            OnboardError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "a camera of that name exists"),
            OnboardError::Usage(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            OnboardError::Camera(e) => camera_error(e),
            other => ApiError::internal(other.to_string()),
        })
    })
    .await?;
    let cfg = cam
        .to_config()
        .ok_or_else(|| ApiError::internal("stored camera URL unusable".into()))?;
    st.cameras
        .start(&cfg, password.filter(|p| !p.is_empty()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_reply(
        StatusCode::CREATED,
        &json!({
            "name": name,
            "enabled": true,
            "manufacturer": found.info.manufacturer,
            "model": found.info.model,
            "firmware": found.info.firmware,
            "main": profile_json(&found.main),
            "sub": found.sub.as_ref().map(profile_json),
            "sub_stream": found.sub.is_some(),
            "record_audio": record_audio,
        }),
    ))
}
