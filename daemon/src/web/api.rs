//! Routes under `/api/v1`, `/health/*` and `/metrics`: who may call what
//! (the table [`ROUTES`]), authentication (session cookie + CSRF token, or an
//! API token), and JSON in and out. Every response carries the security
//! headers; errors are JSON without internals.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::AppState;
use crate::db::audit::{self, Outcome};
use crate::db::users::{self, Role};

/// Largest request body accepted (JSON).
const MAX_BODY: usize = 64 * 1024;
const COOKIE: &str = "vigil_session";

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    At(Role),
}

/// A route: method, path (`{x}` is one segment), access.
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec { method, path, access }
}

const VIEWER: Access = Access::At(Role::Viewer);
const OPERATOR: Access = Access::At(Role::Operator);
const ADMIN: Access = Access::At(Role::Admin);

/// Every route the server answers. `vigil http-routes` prints this table and
/// the RBAC test checks that each has a row in its matrix.
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/", Access::Public),
    route("GET", "/app.js", Access::Public),
    route("GET", "/app.css", Access::Public),
    route("GET", "/health/live", Access::Public),
    route("GET", "/health/ready", Access::Public),
    route("GET", "/metrics", VIEWER),
    route("POST", "/api/v1/login", Access::Public),
    route("POST", "/api/v1/logout", VIEWER),
    route("GET", "/api/v1/me", VIEWER),
    route("POST", "/api/v1/me/password", VIEWER),
    route("POST", "/api/v1/me/mfa", VIEWER),
    route("POST", "/api/v1/me/mfa/confirm", VIEWER),
    route("GET", "/api/v1/cameras", VIEWER),
    route("POST", "/api/v1/cameras", ADMIN),
    route("GET", "/api/v1/cameras/{name}", VIEWER),
    route("PUT", "/api/v1/cameras/{name}", ADMIN),
    route("DELETE", "/api/v1/cameras/{name}", ADMIN),
    route("GET", "/api/v1/cameras/{name}/snapshot.mp4", VIEWER),
    route("POST", "/api/v1/probe-camera", ADMIN),
    route("GET", "/api/v1/cameras/{name}/view.mp4", VIEWER),
    route("GET", "/api/v1/cameras/{name}/live.mp4", VIEWER),
    route("GET", "/api/v1/recordings", VIEWER),
    route("GET", "/api/v1/recordings/{id}/manifest", VIEWER),
    route("GET", "/api/v1/exports", OPERATOR),
    route("POST", "/api/v1/exports", OPERATOR),
    route("GET", "/api/v1/exports/{id}/download", OPERATOR),
    route("GET", "/api/v1/holds", VIEWER),
    route("POST", "/api/v1/holds", OPERATOR),
    route("POST", "/api/v1/holds/{id}/release", ADMIN),
    route("GET", "/api/v1/fixity", VIEWER),
    route("GET", "/api/v1/device", VIEWER),
    route("GET", "/api/v1/events", VIEWER),
    route("GET", "/api/v1/users", ADMIN),
    route("POST", "/api/v1/users", ADMIN),
    route("POST", "/api/v1/users/{name}/disable", ADMIN),
    route("POST", "/api/v1/users/{name}/enable", ADMIN),
    route("POST", "/api/v1/users/{name}/reset-mfa", ADMIN),
    route("GET", "/api/v1/audit", ADMIN),
    route("GET", "/api/v1/audit/verify", ADMIN),
];

/// Routes a user who must change the password may still call.
const BEFORE_PASSWORD_CHANGE: &[&str] = &["/api/v1/me", "/api/v1/me/password", "/api/v1/logout"];
/// Routes an admin without a second factor may still call when one is required.
const BEFORE_MFA: &[&str] = &[
    "/api/v1/me",
    "/api/v1/me/password",
    "/api/v1/me/mfa",
    "/api/v1/me/mfa/confirm",
    "/api/v1/logout",
];

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// Logged in full; the client sees only that something failed.
    pub fn internal(detail: String) -> Self {
        tracing::error!("http: {detail}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<users::UserError> for ApiError {
    fn from(e: users::UserError) -> Self {
        match e {
            users::UserError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            users::UserError::BadName(_) | users::UserError::BadRole(_) | users::UserError::WeakPassword => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            users::UserError::NoSuchUser(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}
impl From<crate::db::IndexError> for ApiError {
    fn from(e: crate::db::IndexError) -> Self {
        ApiError::internal(e.to_string())
    }
}
impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// Response bodies: whole (JSON) or streamed (video).
pub type Body = BoxBody<Bytes, std::io::Error>;
type Reply = Result<Response<Body>, ApiError>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(v: Value) -> Reply {
    Ok(json_reply(StatusCode::OK, &v))
}

/// Headers on every response.
fn harden(r: &mut Response<Body>) {
    let h = r.headers_mut();
    for (k, v) in [
        ("strict-transport-security", "max-age=31536000"),
        // MSE players need blob: media URLs; nothing else leaves 'self'.
        (
            "content-security-policy",
            "default-src 'self'; media-src 'self' blob:; frame-ancestors 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
}

/// The caller, once authenticated.
#[derive(Clone, Debug)]
struct Caller {
    /// `user:<name>` or `token:<name>`, for the audit log.
    actor: String,
    user_id: Option<i64>,
    role: Role,
    /// The session's CSRF token (None for API tokens, which need none).
    csrf: Option<String>,
    cookie: Option<String>,
    must_change_password: bool,
}

fn cookie_value(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_string())
        })
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|s| s.trim().to_string())
}

async fn authenticate(st: &Arc<AppState>, req: &Request<Incoming>) -> Result<Option<Caller>, ApiError> {
    if let Some(t) = bearer(req) {
        return st
            .db(move |idx| {
                Ok(users::token(idx, &t)?.map(|(name, role)| Caller {
                    actor: format!("token:{name}"),
                    user_id: None,
                    role,
                    csrf: None,
                    cookie: None,
                    must_change_password: false,
                }))
            })
            .await;
    }
    let Some(c) = cookie_value(req) else { return Ok(None) };
    st.db(move |idx| {
        Ok(users::session(idx, &c)?.map(|s| Caller {
            actor: format!("user:{}", s.user.name),
            user_id: Some(s.user.id),
            role: s.user.role,
            csrf: Some(s.csrf),
            cookie: Some(c),
            must_change_password: s.user.must_change_password,
        }))
    })
    .await
}

/// Matches `path` against a route pattern; returns the `{x}` segments.
fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    if p.len() != s.len() {
        return None;
    }
    let mut params = Vec::new();
    for (a, b) in p.iter().zip(&s) {
        if a.starts_with('{') {
            let decoded = percent_decode(b)?;
            params.push(decoded);
        } else if a != b {
            return None;
        }
    }
    Some(params)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

async fn body_json(req: Request<Incoming>) -> Result<Value, ApiError> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes or unreadable"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "request body is not valid JSON"))
}

fn str_field<'a>(v: &'a Value, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("missing string field \"{k}\"")))
}

/// Entry point for every request.
pub async fn handle(st: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    st.counters.requests.fetch_add(1, Ordering::Relaxed);
    let mut r = match route_request(&st, req, peer).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = json_reply(e.status, &json!({ "error": e.message }));
            if let Some(s) = e.retry_after {
                if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                    r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
                }
            }
            r
        }
    };
    match r.status().as_u16() {
        400..=499 => st.counters.responses_4xx.fetch_add(1, Ordering::Relaxed),
        500..=599 => st.counters.responses_5xx.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    harden(&mut r);
    r
}

async fn route_request(st: &Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let mut found = None;
    let mut path_known = false;
    for r in ROUTES {
        if let Some(params) = matches(r.path, &path) {
            path_known = true;
            if r.method == method.as_str() {
                found = Some((r, params));
                break;
            }
        }
    }
    let Some((spec, params)) = found else {
        return Err(if path_known {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        } else {
            ApiError::new(StatusCode::NOT_FOUND, "not found")
        });
    };
    let caller = match spec.access {
        Access::Public => None,
        Access::At(need) => {
            let Some(c) = authenticate(st, &req).await? else {
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "log in first"));
            };
            if c.role < need {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("needs the {} role", need.as_str()),
                ));
            }
            if c.must_change_password && !BEFORE_PASSWORD_CHANGE.contains(&spec.path) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "change the one-time password first",
                ));
            }
            if st.require_admin_mfa && c.role == Role::Admin && c.user_id.is_some() && !BEFORE_MFA.contains(&spec.path)
            {
                let name = c.actor.trim_start_matches("user:").to_string();
                let enrolled = st
                    .db(move |idx| {
                        Ok(crate::keys::secrets::exists(
                            idx.conn(),
                            &users::totp_secret_name(&name),
                        )?)
                    })
                    .await?;
                if !enrolled {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "enrol a second factor (TOTP) first",
                    ));
                }
            }
            let changes_state = !matches!(method, Method::GET | Method::HEAD);
            if changes_state {
                if let Some(csrf) = &c.csrf {
                    let sent = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
                    if !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), csrf.as_bytes())) {
                        return Err(ApiError::new(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token"));
                    }
                }
            }
            Some(c)
        }
    };
    match (spec.method, spec.path) {
        ("GET", "/") => Ok(asset("text/html; charset=utf-8", include_str!("ui/index.html"))),
        ("GET", "/app.js") => Ok(asset("text/javascript; charset=utf-8", include_str!("ui/app.js"))),
        ("GET", "/app.css") => Ok(asset("text/css; charset=utf-8", include_str!("ui/app.css"))),
        ("GET", "/health/live") => ok(json!({ "status": "live" })),
        ("GET", "/health/ready") => ready(st).await,
        ("GET", "/metrics") => metrics(st).await,
        ("POST", "/api/v1/login") => login(st, req, peer).await,
        ("POST", "/api/v1/logout") => logout(st, caller).await,
        ("GET", "/api/v1/me") => me(st, caller).await,
        ("POST", "/api/v1/me/password") => change_password(st, req, caller).await,
        ("POST", "/api/v1/me/mfa") => mfa_start(st, caller).await,
        ("POST", "/api/v1/me/mfa/confirm") => mfa_confirm(st, req, caller).await,
        ("POST", "/api/v1/users/{name}/disable") => user_action(st, caller, params, "disable").await,
        ("POST", "/api/v1/users/{name}/enable") => user_action(st, caller, params, "enable").await,
        ("POST", "/api/v1/users/{name}/reset-mfa") => user_action(st, caller, params, "reset-mfa").await,
        ("GET", "/api/v1/cameras") => cameras(st, None).await,
        ("GET", "/api/v1/cameras/{name}") => cameras(st, params.into_iter().next()).await,
        ("POST", "/api/v1/cameras") => camera_put(st, req, caller, None).await,
        ("PUT", "/api/v1/cameras/{name}") => camera_put(st, req, caller, params.into_iter().next()).await,
        ("DELETE", "/api/v1/cameras/{name}") => camera_delete(st, caller, params.into_iter().next()).await,
        ("GET", "/api/v1/cameras/{name}/snapshot.mp4") => snapshot(st, params.into_iter().next()).await,
        ("POST", "/api/v1/probe-camera") => probe_camera(req).await,
        ("GET", "/api/v1/cameras/{name}/view.mp4") => view_mp4(st, &req, params.into_iter().next(), caller).await,
        ("GET", "/api/v1/cameras/{name}/live.mp4") => live_mp4(st, params.into_iter().next()).await,
        ("GET", "/api/v1/recordings") => recordings(st, &req).await,
        ("GET", "/api/v1/recordings/{id}/manifest") => recording_manifest(st, id_param(&params)?).await,
        ("GET", "/api/v1/exports") => list_exports(st).await,
        ("POST", "/api/v1/exports") => create_export(st, req, caller).await,
        ("GET", "/api/v1/exports/{id}/download") => download_export(st, id_param(&params)?, caller).await,
        ("GET", "/api/v1/holds") => list_holds(st, &req).await,
        ("POST", "/api/v1/holds") => place_hold(st, req, caller).await,
        ("POST", "/api/v1/holds/{id}/release") => release_hold(st, req, id_param(&params)?, caller).await,
        ("GET", "/api/v1/fixity") => fixity(st).await,
        ("GET", "/api/v1/device") => device(st).await,
        ("GET", "/api/v1/events") => events(st),
        ("GET", "/api/v1/users") => list_users(st).await,
        ("POST", "/api/v1/users") => add_user(st, req, caller).await,
        ("GET", "/api/v1/audit") => audit_log(st, &req).await,
        ("GET", "/api/v1/audit/verify") => audit_verify(st).await,
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn caller_of(c: Option<Caller>) -> Result<Caller, ApiError> {
    c.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "log in first"))
}

/// A login attempt's audit entry (who tried, what happened).
fn audit_login(idx: &crate::db::Index, name: &str, outcome: Outcome, detail: &str) -> rusqlite::Result<i64> {
    audit::append(idx.conn(), &format!("user:{name}"), "login", name, outcome, detail)
}

async fn login(st: &Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
    let v = body_json(req).await?;
    let name = str_field(&v, "name")?.to_string();
    let password = zeroize::Zeroizing::new(str_field(&v, "password")?.to_string());
    let code = v.get("totp").and_then(Value::as_str).map(str::to_string);
    let ip = peer.ip();
    if !users::valid_user_name(&name) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name, password or code"));
    }
    if let Some(wait) = st.throttle.lock().ok().and_then(|mut t| t.locked(&name, ip)) {
        let stc = st.clone();
        let n = name.clone();
        st.db(move |idx| {
            audit_login(idx, &n, Outcome::Denied, &format!("throttled, from {ip}"))?;
            Ok(())
        })
        .await?;
        stc.counters.logins_failed.fetch_add(1, Ordering::Relaxed);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins; wait and try again",
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let keyring = st.keyring.clone();
    let n = name.clone();
    let outcome: Result<(users::User, String, String), &'static str> = st
        .db(move |idx| {
            let Some(user) = users::check_password(idx, &n, &password)? else {
                audit_login(idx, &n, Outcome::Denied, &format!("wrong password, from {ip}"))?;
                return Ok(Err("wrong name, password or code"));
            };
            let totp_name = users::totp_secret_name(&n);
            if crate::keys::secrets::exists(idx.conn(), &totp_name)? {
                let Some(code) = code else {
                    audit_login(idx, &n, Outcome::Denied, "no TOTP code")?;
                    return Ok(Err("a TOTP code is required"));
                };
                let seed = crate::keys::secrets::get(&keyring, &totp_name, "login second factor")
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let now = crate::base::clock::now_ns() / 1_000_000_000;
                let step = crate::base::totp::verify(&seed, &code, now, user.totp_last_step);
                if !step.is_some_and(|s| users::set_totp_step(idx, user.id, s).unwrap_or(false)) {
                    audit_login(idx, &n, Outcome::Denied, "wrong or reused TOTP code")?;
                    return Ok(Err("wrong name, password or code"));
                }
            }
            let (cookie, csrf) = users::create_session(idx, user.id, &ip.to_string())?;
            audit_login(idx, &n, Outcome::Ok, &format!("from {ip}"))?;
            Ok(Ok((user, cookie, csrf)))
        })
        .await?;
    match outcome {
        Err(msg) => {
            if let Ok(mut t) = st.throttle.lock() {
                t.failed(&name, ip);
            }
            st.counters.logins_failed.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::new(StatusCode::UNAUTHORIZED, msg))
        }
        Ok((user, cookie, csrf)) => {
            if let Ok(mut t) = st.throttle.lock() {
                t.succeeded(&name);
            }
            st.counters.logins_ok.fetch_add(1, Ordering::Relaxed);
            let mut r = json_reply(
                StatusCode::OK,
                &json!({
                    "name": user.name,
                    "role": user.role.as_str(),
                    "csrf_token": csrf,
                    "must_change_password": user.must_change_password,
                }),
            );
            let c = format!(
                "{COOKIE}={cookie}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
                users::SESSION_ABSOLUTE.as_secs()
            );
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().insert(hyper::header::SET_COOKIE, v);
            }
            Ok(r)
        }
    }
}

async fn logout(st: &Arc<AppState>, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let actor = c.actor.clone();
    st.db(move |idx| {
        if let Some(cookie) = &c.cookie {
            users::revoke_session(idx, cookie)?;
        }
        audit::append(idx.conn(), &actor, "logout", &actor, Outcome::Ok, "")?;
        Ok(())
    })
    .await?;
    let mut r = json_reply(StatusCode::OK, &json!({ "status": "logged out" }));
    r.headers_mut().insert(
        hyper::header::SET_COOKIE,
        HeaderValue::from_static("vigil_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

async fn me(st: &Arc<AppState>, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let mfa = match c.user_id {
        Some(_) => {
            let name = c.actor.trim_start_matches("user:").to_string();
            st.db(move |idx| {
                Ok(crate::keys::secrets::exists(
                    idx.conn(),
                    &users::totp_secret_name(&name),
                )?)
            })
            .await?
        }
        None => false,
    };
    ok(json!({
        "actor": c.actor,
        "role": c.role.as_str(),
        "must_change_password": c.must_change_password,
        "mfa": mfa,
        "mfa_required": st.require_admin_mfa && c.role == Role::Admin && c.user_id.is_some() && !mfa,
        "csrf_token": c.csrf,
    }))
}

async fn change_password(st: &Arc<AppState>, req: Request<Incoming>, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let v = body_json(req).await?;
    let old = zeroize::Zeroizing::new(str_field(&v, "old_password")?.to_string());
    let new = zeroize::Zeroizing::new(str_field(&v, "new_password")?.to_string());
    let Some(name) = c.actor.strip_prefix("user:").map(str::to_string) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "API tokens have no password"));
    };
    st.db(move |idx| {
        if users::check_password(idx, &name, &old)?.is_none() {
            audit::append(
                idx.conn(),
                &c.actor,
                "user.password",
                &name,
                Outcome::Denied,
                "wrong old password",
            )?;
            return Err(ApiError::new(StatusCode::FORBIDDEN, "the old password is wrong"));
        }
        users::set_password(idx, &name, &new)?;
        audit::append(idx.conn(), &c.actor, "user.password", &name, Outcome::Ok, "")?;
        Ok(())
    })
    .await?;
    ok(json!({ "status": "password changed; log in again" }))
}

/// Configured cameras, then cameras only the archive knows (imports, removed ones).
async fn camera_names(st: &Arc<AppState>) -> Result<(Vec<String>, Vec<crate::db::CameraRow>), ApiError> {
    let rows = st.db(|idx| Ok(idx.cameras()?)).await?;
    let mut names = st.active_cameras();
    for r in &rows {
        if !names.contains(&r.name) {
            names.push(r.name.clone());
        }
    }
    Ok((names, rows))
}

async fn known_camera(st: &Arc<AppState>, name: Option<String>) -> Result<String, ApiError> {
    let (names, _) = camera_names(st).await?;
    name.filter(|n| names.contains(n))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))
}

/// The secrets-store name of a TOTP seed being enrolled (not yet confirmed).
fn pending_totp_name(user: &str) -> String {
    format!("totp-pending.{user}")
}

fn session_user(c: &Caller) -> Result<String, ApiError> {
    c.actor
        .strip_prefix("user:")
        .map(str::to_string)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "API tokens have no second factor"))
}

/// Starts TOTP enrolment: a new seed, kept pending until a code from it is
/// confirmed; returns the otpauth URI and its QR code (SVG).
async fn mfa_start(st: &Arc<AppState>, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let name = session_user(&c)?;
    let seed =
        zeroize::Zeroizing::new(crate::keys::random_bytes::<20>().map_err(|e| ApiError::internal(e.to_string()))?);
    let keyring = st.keyring.clone();
    let uri = crate::base::totp::otpauth_uri("Vigil", &name, &seed[..]);
    let n = name.clone();
    st.db(move |idx| {
        crate::keys::secrets::set(&keyring, &pending_totp_name(&n), &seed[..], None)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        audit::append(idx.conn(), &c.actor, "user.mfa.enrol", &n, Outcome::Ok, "started")?;
        Ok(())
    })
    .await?;
    let svg = crate::base::totp::qr_svg(&uri).ok_or_else(|| ApiError::internal("QR code too long".into()))?;
    ok(json!({ "otpauth_uri": uri, "qr_svg": svg }))
}

/// Confirms enrolment with a code from the new seed; the seed becomes the
/// user's second factor.
async fn mfa_confirm(st: &Arc<AppState>, req: Request<Incoming>, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let name = session_user(&c)?;
    let v = body_json(req).await?;
    let code = str_field(&v, "code")?.to_string();
    let keyring = st.keyring.clone();
    let user_id = c.user_id;
    st.db(move |idx| {
        let pending = pending_totp_name(&name);
        if !crate::keys::secrets::exists(idx.conn(), &pending)? {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "start the enrolment first"));
        }
        let seed = crate::keys::secrets::get(&keyring, &pending, "second factor enrolment")
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let now = crate::base::clock::now_ns() / 1_000_000_000;
        let Some(step) = crate::base::totp::verify(&seed, &code, now, None) else {
            audit::append(
                idx.conn(),
                &c.actor,
                "user.mfa.enrol",
                &name,
                Outcome::Denied,
                "wrong code",
            )?;
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "wrong code: check the phone's clock and try the next one",
            ));
        };
        crate::keys::secrets::set(&keyring, &users::totp_secret_name(&name), &seed, None)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        crate::keys::secrets::remove(&keyring, &pending).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(id) = user_id {
            users::set_totp_step(idx, id, step)?;
        }
        audit::append(idx.conn(), &c.actor, "user.mfa.enable", &name, Outcome::Ok, "")?;
        Ok(())
    })
    .await?;
    ok(json!({ "status": "second factor enrolled" }))
}

/// Admin actions on a user: disable (ends their sessions), enable, reset-mfa.
async fn user_action(st: &Arc<AppState>, caller: Option<Caller>, params: Vec<String>, action: &'static str) -> Reply {
    let c = caller_of(caller)?;
    let name = params
        .into_iter()
        .next()
        .filter(|n| users::valid_user_name(n))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such user"))?;
    if action == "disable" && c.actor == format!("user:{name}") {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "you cannot disable yourself"));
    }
    let keyring = st.keyring.clone();
    st.db(move |idx| {
        if users::find(idx, &name)?.is_none() {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such user"));
        }
        match action {
            "disable" => users::set_disabled(idx, &name, true)?,
            "enable" => users::set_disabled(idx, &name, false)?,
            _ => match crate::keys::secrets::remove(&keyring, &users::totp_secret_name(&name)) {
                Ok(()) | Err(crate::keys::secrets::SecretError::NotFound(_)) => {}
                Err(e) => return Err(ApiError::internal(e.to_string())),
            },
        }
        audit::append(idx.conn(), &c.actor, &format!("user.{action}"), &name, Outcome::Ok, "")?;
        Ok(())
    })
    .await?;
    ok(json!({ "status": "done" }))
}

async fn cameras(st: &Arc<AppState>, one: Option<String>) -> Reply {
    if one.is_some() {
        known_camera(st, one.clone()).await?;
    }
    let (configured, rows) = camera_names(st).await?;
    let managed = st.db(|idx| Ok(crate::run::cameras::managed(idx)?)).await?;
    let running = st.cameras.running();
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
            json!({
                "name": n,
                "source": source,
                "running": running.contains(n),
                "enabled": m.map(|m| m.enabled).unwrap_or(source == "vigil.toml"),
                "url": m.map(|m| m.url.clone()),
                "username": m.and_then(|m| m.username.clone()),
                "state": row.map(|r| r.state.as_str()).unwrap_or("unknown"),
                "since": row.map(|r| crate::base::time::format_ns(r.state_since_ns)),
                "last_error": row.and_then(|r| r.last_error.clone()),
            })
        })
        .collect();
    match one {
        Some(_) => ok(list.into_iter().next().unwrap_or(Value::Null)),
        None => ok(Value::Array(list)),
    }
}

fn opt_str(v: &Value, k: &str) -> Result<Option<String>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("\"{k}\" must be a string"),
        )),
    }
}

/// Adds (`name` None: it is in the body) or changes a camera managed from
/// the web UI, stores its password in the secrets store, and (re)starts it.
/// Cameras from vigil.toml are changed in the file, not here.
async fn camera_put(st: &Arc<AppState>, req: Request<Incoming>, caller: Option<Caller>, name: Option<String>) -> Reply {
    let c = caller_of(caller)?;
    let v = body_json(req).await?;
    let adding = name.is_none();
    let name = match name {
        Some(n) => n,
        None => str_field(&v, "name")?.to_string(),
    };
    if !crate::config::valid_camera_name(&name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("\"{name}\": {}", crate::config::CAMERA_NAME_RULE),
        ));
    }
    if st.cameras.is_provisioned(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this camera is defined in vigil.toml; change it there",
        ));
    }
    let url = str_field(&v, "url")?.to_string();
    crate::config::camera_url(&url).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let username = opt_str(&v, "username")?.filter(|u| !u.is_empty());
    let password = opt_str(&v, "password")?.map(zeroize::Zeroizing::new);
    let enabled = v.get("enabled").and_then(Value::as_bool).unwrap_or(true);
    let keyring = st.keyring.clone();
    let n = name.clone();
    let actor = c.actor.clone();
    let cam = st
        .db(move |idx| {
            let existing = crate::run::cameras::find_managed(idx, &n)?;
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
            let secret = crate::run::cameras::password_secret_name(&n);
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
            let m = crate::run::cameras::ManagedCamera {
                name: n.clone(),
                url: url.clone(),
                username,
                has_password,
                enabled,
            };
            crate::run::cameras::store_managed(idx, &m)?;
            audit::append(
                idx.conn(),
                &actor,
                if adding { "camera.add" } else { "camera.update" },
                &n,
                Outcome::Ok,
                &format!("{url} (enabled: {enabled})"),
            )?;
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
                let secret = crate::run::cameras::password_secret_name(&name);
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

/// Stops and removes a camera added from the web UI; its recordings stay
/// (the camera is then listed as an archive).
async fn camera_delete(st: &Arc<AppState>, caller: Option<Caller>, name: Option<String>) -> Reply {
    let c = caller_of(caller)?;
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
        if !crate::run::cameras::delete_managed(idx, &n)? {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no camera of that name was added here",
            ));
        }
        let _ = crate::keys::secrets::remove(&keyring, &crate::run::cameras::password_secret_name(&n));
        audit::append(
            idx.conn(),
            &c.actor,
            "camera.delete",
            &n,
            Outcome::Ok,
            "recordings kept",
        )?;
        Ok(())
    })
    .await?;
    st.cameras.stop(&name).await;
    ok(json!({ "status": "removed; its recordings are kept" }))
}

/// An init segment and one fragment holding `frame`: a playable one-frame MP4.
fn one_frame_mp4(params: &crate::storage::recorder::StreamParams, frame: &[u8]) -> Result<Vec<u8>, ApiError> {
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

/// The next key frame of a running camera as a one-frame MP4.
async fn snapshot(st: &Arc<AppState>, name: Option<String>) -> Reply {
    let camera = name.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?;
    let (_, frame) = next_key_frame(st, &camera).await?;
    let mut r = Response::new(full(one_frame_mp4(&frame.params, &frame.data)?));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    Ok(r)
}

/// Tries a camera before it is added: connects as the recorder would and
/// returns its codec, size and first key frame (a one-frame MP4, base64), or
/// the exact error.
async fn probe_camera(req: Request<Incoming>) -> Reply {
    let v = body_json(req).await?;
    let url =
        crate::config::camera_url(str_field(&v, "url")?).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let username = opt_str(&v, "username")?.filter(|u| !u.is_empty());
    let password = opt_str(&v, "password")?.map(zeroize::Zeroizing::new);
    if url.scheme() == "v4l2" {
        // A local device: what it offers, and whether Vigil records one of its formats.
        let src = crate::ingest::v4l2::parse_url(&url).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
        let report = tokio::task::spawn_blocking(move || crate::ingest::v4l2::probe_device(&src.device))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "probe failed"))?;
        let recordable = report.capture && report.formats.iter().any(|f| f.vigil.is_some());
        let error = report.error.clone().or_else(|| {
            (!recordable)
                .then(|| "the device offers no format this build records (see `vigil cameras probe`)".to_string())
        });
        return ok(json!({ "ok": recordable, "device": report, "error": error }));
    }
    match crate::ingest::rtsp::probe(
        &url,
        username.as_deref(),
        password.as_deref().map(String::as_str),
        std::time::Duration::from_secs(10),
    )
    .await
    {
        Ok(p) => {
            let mp4 = one_frame_mp4(&p.params, &p.key_frame)?;
            ok(json!({
                "ok": true,
                "codec": p.params.codec.name(),
                "width": p.params.width,
                "height": p.params.height,
                "codec_string": vigil_format::media::codec_string(&p.params.sample_entry),
                "snapshot_mp4_base64": base64_encode(&mp4),
            }))
        }
        Err(e) => ok(json!({ "ok": false, "error": e.to_string() })),
    }
}

fn base64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 { A[n as usize & 63] as char } else { '=' });
    }
    out
}

fn time_param(q: &[(String, String)], k: &str) -> Result<Option<i64>, ApiError> {
    match param(q, k) {
        None => Ok(None),
        Some(s) => crate::base::time::parse_rfc3339(s)
            .map(Some)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("\"{k}\" must be an RFC 3339 time"))),
    }
}

async fn recordings(st: &Arc<AppState>, req: &Request<Incoming>) -> Reply {
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

/// The host name of a Host header without its port; None if it holds
/// anything a host name cannot (so a redirect never carries it elsewhere).
fn host_name(h: &str) -> Option<&str> {
    let name = match h.rsplit_once(':') {
        Some((n, p))
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!n.contains(':') || n.ends_with(']')) =>
        {
            n
        }
        _ => h,
    };
    let ok = !name.is_empty()
        && name.len() < 256
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    ok.then_some(name)
}

/// The plain-HTTP listener's only answer: a redirect to the same path over
/// HTTPS (the host name the client used, checked), or 403.
pub fn plain_reply(req: &Request<Incoming>, https_port: u16, action: crate::config::PlainAction) -> Response<Body> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_name);
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut r = match (action, host) {
        (crate::config::PlainAction::Redirect, Some(host)) => {
            let mut r = json_reply(StatusCode::PERMANENT_REDIRECT, &json!({ "error": "use HTTPS" }));
            if let Ok(v) = HeaderValue::from_str(&format!("https://{host}:{https_port}{path}")) {
                r.headers_mut().insert(hyper::header::LOCATION, v);
            }
            r
        }
        _ => json_reply(
            StatusCode::FORBIDDEN,
            &json!({ "error": "plain HTTP is not served; use HTTPS" }),
        ),
    };
    harden(&mut r);
    r
}

/// Server-sent events: `camera` (state changes), `recording` (started),
/// `disk_low`; a comment every 15 s keeps the connection alive.
fn events(st: &Arc<AppState>) -> Reply {
    let rx = st.events.subscribe();
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if first {
            return Some((
                Ok(hyper::body::Frame::data(Bytes::from_static(b": connected\n\n"))),
                (rx, false),
            ));
        }
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Ok(m) => m,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => ": keepalive\n\n".to_string(),
        };
        Some((
            Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(msg))),
            (rx, false),
        ))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(r)
}

/// A static file of the web UI (compiled into the binary; nothing is fetched
/// from anywhere else).
fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Live video as a never-ending fragmented MP4: the init segment, then one
/// fragment per frame from the next key frame on (one frame of delay, to
/// know its duration). `X-Codec` gives the codec string for Media Source
/// Extensions. Ends when the camera's parameters change or this viewer falls
/// behind; the player reconnects.
async fn live_mp4(st: &Arc<AppState>, name: Option<String>) -> Reply {
    let camera = name.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such camera"))?;
    let (mut rx, first) = next_key_frame(st, &camera).await?;
    let params = first.params.clone();
    let codec = vigil_format::media::codec_string(&params.sample_entry);
    let init = vigil_format::mp4::init_segment(&vigil_format::mp4::TrackInfo {
        timescale: params.timescale,
        width: params.width,
        height: params.height,
        duration: 0,
        sample_entries: std::slice::from_ref(&params.sample_entry),
    });
    // When the server had the first frame: with the player's position, how
    // far behind real time the picture is.
    let first_wall_ms = crate::base::clock::now_ns() / 1_000_000;
    let (tx, out) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(8);
    tokio::spawn(async move {
        if tx.send(Ok(hyper::body::Frame::data(Bytes::from(init)))).await.is_err() {
            return;
        }
        let origin = first.pts;
        let mut held = first;
        let mut seq = 0u32;
        let mut buf = Vec::new();
        loop {
            let next = match rx.recv().await {
                Ok(f) => f,
                Err(_) => return, // behind, or the camera stopped: the player reconnects
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
            if tx
                .send(Ok(hyper::body::Frame::data(Bytes::from(std::mem::take(&mut buf)))))
                .await
                .is_err()
            {
                return; // the viewer left
            }
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
    Ok(r)
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
async fn view_mp4(st: &Arc<AppState>, req: &Request<Incoming>, name: Option<String>, caller: Option<Caller>) -> Reply {
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
        let detail = format!(
            "{} to {} ({} bytes, ETag {etag})",
            crate::base::time::format_ns(layout.first_wall_ns),
            crate::base::time::format_ns(layout.end_wall_ns),
            total
        );
        let cam = camera.clone();
        st.db(move |idx| {
            Ok(audit::append(
                idx.conn(),
                &c.actor,
                "export.download",
                &cam,
                Outcome::Ok,
                &detail,
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

async fn list_users(st: &Arc<AppState>) -> Reply {
    let list = st
        .db(|idx| {
            let mut out = Vec::new();
            for u in users::list(idx)? {
                let mfa = crate::keys::secrets::exists(idx.conn(), &users::totp_secret_name(&u.name))?;
                out.push(json!({
                    "name": u.name,
                    "role": u.role.as_str(),
                    "disabled": u.disabled,
                    "must_change_password": u.must_change_password,
                    "mfa": mfa,
                    "created": crate::base::time::format_ns(u.created_ns),
                }));
            }
            Ok(out)
        })
        .await?;
    ok(Value::Array(list))
}

async fn add_user(st: &Arc<AppState>, req: Request<Incoming>, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let v = body_json(req).await?;
    let name = str_field(&v, "name")?.to_string();
    let role_s = str_field(&v, "role")?;
    let role = Role::parse(role_s).ok_or_else(|| ApiError::from(users::UserError::BadRole(role_s.to_string())))?;
    let pw = zeroize::Zeroizing::new(str_field(&v, "password")?.to_string());
    st.db(move |idx| {
        users::add(idx, &name, role, &pw, true)?;
        audit::append(idx.conn(), &c.actor, "user.add", &name, Outcome::Ok, role.as_str())?;
        Ok(())
    })
    .await?;
    Ok(json_reply(
        StatusCode::CREATED,
        &json!({ "status": "created; the password must be changed at first login" }),
    ))
}

async fn audit_log(st: &Arc<AppState>, req: &Request<Incoming>) -> Reply {
    let q = query(req);
    let limit = match param(&q, "limit") {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "\"limit\" must be 1 to 1000"))?,
    };
    let entries = st.db(move |idx| Ok(audit::tail(idx.conn(), limit)?)).await?;
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

async fn audit_verify(st: &Arc<AppState>) -> Reply {
    match st.db(|idx| Ok(audit::verify(idx.conn())?)).await? {
        Ok(n) => ok(json!({ "intact": true, "entries": n })),
        Err(what) => ok(json!({ "intact": false, "problem": what })),
    }
}

async fn ready(st: &Arc<AppState>) -> Reply {
    let storage_dir = st.storage.dir().to_path_buf();
    let keyring = st.keyring.clone();
    let (db_ok, cams, fixity_failures) = match st
        .db(|idx| Ok((idx.cameras()?, crate::archive::fixity::failures(idx.conn())?.len())))
        .await
    {
        Ok((c, f)) => (true, c, f),
        Err(_) => (false, Vec::new(), 0),
    };
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
            json!({ "name": n, "state": state })
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
    });
    Ok(json_reply(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    ))
}

async fn metrics(st: &Arc<AppState>) -> Reply {
    let cams = st.db(|idx| Ok(idx.cameras()?)).await?;
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
        "connections refused by the per-address cap",
        "counter",
        vec![(String::new(), n(&c.refused_connections))],
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

fn id_param(params: &[String]) -> Result<i64, ApiError> {
    params
        .first()
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "the id must be a positive integer"))
}

fn time_field(v: &Value, k: &str) -> Result<i64, ApiError> {
    crate::base::time::parse_rfc3339(str_field(v, k)?)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{k}: {e}")))
}

fn exports_dir(st: &AppState) -> std::path::PathBuf {
    st.db_path
        .parent()
        .map(|p| p.join("exports"))
        .unwrap_or_else(|| std::path::PathBuf::from("exports"))
}

/// The device key, unsealed on a blocking thread.
async fn device_key(
    st: &Arc<AppState>,
    why: &'static str,
) -> Result<Arc<crate::evidence::device::DeviceKey>, ApiError> {
    let kr = st.keyring.clone();
    tokio::task::spawn_blocking(move || crate::evidence::device::DeviceKey::load_or_create(&kr, why).map(Arc::new))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("device signing key: {e}")))
}

async fn device(st: &Arc<AppState>) -> Reply {
    let key = device_key(st, "show the device key").await?;
    let id = key.identity();
    ok(json!({
        "device_id": id.device_id,
        "signing_key": {
            "algorithm": "Ed25519",
            "public_key_pem": id.public_key_pem(),
            "fingerprint_sha256": id.fingerprint(),
        },
        "https_certificate_fingerprint": st.fingerprint,
    }))
}

async fn recording_manifest(st: &Arc<AppState>, id: i64) -> Reply {
    let key = device_key(st, "sign a recording manifest").await?;
    let signed = st
        .db(move |idx| {
            crate::evidence::bundle::recording_manifest(idx, &key, id)
                .map(|m| m.map(|(b, sig)| (b, sig, key.identity().fingerprint())))
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
    let Some((body, sig, fp)) = signed else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no recording {id}")));
    };
    let mut r = Response::new(full(body));
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&crate::evidence::device::base64(&sig)) {
        h.insert(HeaderName::from_static("x-signature-ed25519"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&fp) {
        h.insert(HeaderName::from_static("x-signing-key-fingerprint"), v);
    }
    Ok(r)
}

async fn list_exports(st: &Arc<AppState>) -> Reply {
    let rows = st
        .db(|idx| {
            let mut q = idx.conn().prepare(
                "SELECT e.id, e.created_ns, e.operator, e.camera, e.start_ns, e.end_ns, e.bytes, e.sha256, e.file_name, \
                 EXISTS (SELECT 1 FROM legal_hold h WHERE h.kind = 'export' AND h.export_id = e.id AND h.released_ns IS NULL) \
                 FROM export e WHERE length(e.sha256) > 0 ORDER BY e.id DESC LIMIT 500",
            )?;
            let rows = q.query_map([], |r| {
                let sha: Vec<u8> = r.get(7)?;
                let file: Option<String> = r.get(8)?;
                Ok(json!({
                    "id": r.get::<_, i64>(0)?,
                    "created": crate::base::time::format_ns(r.get(1)?),
                    "operator": r.get::<_, String>(2)?,
                    "cameras": r.get::<_, String>(3)?.split(',').collect::<Vec<_>>(),
                    "start": crate::base::time::format_ns(r.get(4)?),
                    "end": crate::base::time::format_ns(r.get(5)?),
                    "bytes": r.get::<_, i64>(6)?,
                    "sha256": vigil_format::hex(&sha),
                    "downloadable": file.is_some(),
                    "held": r.get::<_, bool>(9)?,
                }))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    ok(Value::Array(rows))
}

async fn create_export(st: &Arc<AppState>, req: Request<Incoming>, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let v = body_json(req).await?;
    let cameras: Vec<String> = match v.get("cameras").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => vec![str_field(&v, "camera")?.to_string()],
    };
    if cameras.is_empty() || cameras.len() > 16 || cameras.iter().any(|n| !crate::config::valid_camera_name(n)) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "name 1 to 16 valid cameras"));
    }
    let (start_ns, end_ns) = (time_field(&v, "start")?, time_field(&v, "end")?);
    let Ok(_permit) = st.export_gate.try_acquire() else {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "another export is being made; try again shortly",
        );
        e.retry_after = Some(5);
        return Err(e);
    };
    let device = device_key(st, "sign an export").await?;
    let dir = exports_dir(st);
    let storage = st.storage.clone();
    let keyring = st.keyring.clone();
    let db_path = st.db_path.clone();
    let actor = c.actor.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
        let index = crate::db::Index::open_existing(&db_path).map_err(|e| ApiError::internal(e.to_string()))?;
        let tmp = dir.join(format!(
            "pending-{}.zip",
            vigil_format::hex(&crate::keys::random_bytes::<8>().unwrap_or([0; 8]))
        ));
        let archive = crate::evidence::export::Archive {
            index: &index,
            storage: &storage,
            keys: keyring.as_ref(),
        };
        let req = crate::evidence::bundle::BundleRequest {
            cameras: &cameras,
            start_ns,
            end_ns,
            operator: &actor,
        };
        let rep = crate::evidence::bundle::create_bundle(
            archive,
            &device,
            &req,
            &crate::evidence::bundle::BundleTarget::Zip(tmp.clone()),
        );
        let rep = match rep {
            Ok(r) => r,
            Err(e) => {
                let status = match &e {
                    crate::evidence::bundle::EvidenceError::Export(
                        crate::evidence::export::ExportError::UnknownCamera(_)
                        | crate::evidence::export::ExportError::NothingToExport { .. }
                        | crate::evidence::export::ExportError::EmptyRange,
                    ) => StatusCode::NOT_FOUND,
                    e if e.is_integrity() => StatusCode::CONFLICT,
                    _ => return Err(ApiError::internal(e.to_string())),
                };
                let _ = audit::append(
                    index.conn(),
                    &actor,
                    "export.bundle",
                    &cameras.join(","),
                    Outcome::Failed,
                    &e.to_string(),
                );
                return Err(ApiError::new(status, e.to_string()));
            }
        };
        let name = format!("export-{}.zip", rep.export_id);
        std::fs::rename(&tmp, dir.join(&name)).map_err(|e| ApiError::internal(e.to_string()))?;
        let _ = vigil_format::vseg::sync_dir(&dir);
        let sha = rep.archive_sha256.unwrap_or(rep.manifest_sha256);
        index.conn().execute(
            "UPDATE export SET file_name = ?2 WHERE id = ?1",
            rusqlite::params![rep.export_id, name],
        )?;
        audit::append(
            index.conn(),
            &actor,
            "export.bundle",
            &cameras.join(","),
            Outcome::Ok,
            &format!(
                "export {}: {} to {}, {} frames, {} bytes, sha256 {}",
                rep.export_id,
                crate::base::time::format_ns(rep.manifest.actual.start_ns),
                crate::base::time::format_ns(rep.manifest.actual.end_ns),
                rep.frames,
                rep.archive_bytes,
                vigil_format::hex(&sha)
            ),
        )?;
        Ok(json!({
            "id": rep.export_id,
            "bytes": rep.archive_bytes,
            "sha256": vigil_format::hex(&sha),
            "frames": rep.frames,
            "exported_utc": rep.manifest.exported_utc,
            "actual": { "start": rep.manifest.actual.start_utc, "end": rep.manifest.actual.end_utc },
            "device_id": rep.manifest.device_id,
            "signing_key_fingerprint": rep.manifest.signing_key.fingerprint_sha256,
            "download": format!("/api/v1/exports/{}/download", rep.export_id),
        }))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(json_reply(StatusCode::CREATED, &result))
}

async fn download_export(st: &Arc<AppState>, id: i64, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let row: Option<(Option<String>, Vec<u8>, i64, i64)> = st
        .db(move |idx| {
            use rusqlite::OptionalExtension;
            Ok(idx
                .conn()
                .query_row(
                    "SELECT file_name, sha256, created_ns, bytes FROM export WHERE id = ?1 AND length(sha256) > 0",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?)
        })
        .await?;
    let Some((Some(name), sha, created_ns, bytes)) = row else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no downloadable export {id}"),
        ));
    };
    let path = exports_dir(st).join(&name);
    let file = std::fs::File::open(&path)
        .map_err(|e| ApiError::new(StatusCode::GONE, format!("export {id}'s file is gone: {e}")))?;
    // The length of the file as it is (the body must match Content-Length).
    let bytes = file.metadata().map(|m| m.len() as i64).unwrap_or(bytes);
    let sha_hex = vigil_format::hex(&sha);
    let actor = c.actor.clone();
    let detail = format!("{bytes} bytes, sha256 {sha_hex}");
    st.db(move |idx| {
        Ok(audit::append(
            idx.conn(),
            &actor,
            "export.download",
            &format!("export {id}"),
            Outcome::Ok,
            &detail,
        )?)
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = file;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx
                        .blocking_send(Ok(hyper::body::Frame::data(Bytes::from(buf))))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    for (k, v) in [
        ("content-length", bytes.to_string()),
        (
            "content-disposition",
            format!("attachment; filename=\"vigil-export-{id}.zip\""),
        ),
        ("x-export-sha256", sha_hex),
        ("x-export-utc", crate::base::time::format_ns(created_ns)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(HeaderName::from_static(k), v);
        }
    }
    Ok(r)
}

fn hold_json(h: &crate::db::holds::Hold) -> Value {
    let t = |o: Option<i64>| o.map(crate::base::time::format_ns);
    json!({
        "id": h.id,
        "kind": h.kind,
        "what": h.describe(),
        "recording_id": h.recording_id,
        "camera": h.camera,
        "start": t(h.start_ns),
        "end": t(h.end_ns),
        "export_id": h.export_id,
        "reason": h.reason,
        "placed_by": h.placed_by,
        "placed": crate::base::time::format_ns(h.placed_ns),
        "released_by": h.released_by,
        "released": t(h.released_ns),
        "release_reason": h.release_reason,
    })
}

fn hold_error(e: crate::db::holds::HoldError) -> ApiError {
    use crate::db::holds::HoldError;
    match e {
        HoldError::Sql(e) => ApiError::internal(e.to_string()),
        e @ (HoldError::NoRecording(_)
        | HoldError::NoExport(_)
        | HoldError::NoHold(_)
        | HoldError::UnknownCamera(_)) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        e => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn list_holds(st: &Arc<AppState>, req: &Request<Incoming>) -> Reply {
    let all = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "all=1" || p == "all=true"));
    let holds = st.db(move |idx| Ok(crate::db::holds::list(idx.conn(), all)?)).await?;
    ok(Value::Array(holds.iter().map(hold_json).collect()))
}

async fn place_hold(st: &Arc<AppState>, req: Request<Incoming>, caller: Option<Caller>) -> Reply {
    use crate::db::holds::HoldTarget;
    let c = caller_of(caller)?;
    let v = body_json(req).await?;
    let reason = str_field(&v, "reason")?.to_string();
    let target = if let Some(id) = v.get("recording_id").and_then(Value::as_i64) {
        HoldTarget::Recording(id)
    } else if let Some(id) = v.get("export_id").and_then(Value::as_i64) {
        HoldTarget::Export(id)
    } else {
        HoldTarget::Range {
            camera: str_field(&v, "camera")?.to_string(),
            start_ns: time_field(&v, "start")?,
            end_ns: time_field(&v, "end")?,
        }
    };
    let actor = c.actor.clone();
    let hold = st
        .db(move |idx| {
            let id = crate::db::holds::place(idx.conn(), &target, &reason, &actor).map_err(hold_error)?;
            crate::db::holds::get(idx.conn(), id)?.ok_or_else(|| ApiError::internal("hold vanished".into()))
        })
        .await?;
    Ok(json_reply(StatusCode::CREATED, &hold_json(&hold)))
}

async fn release_hold(st: &Arc<AppState>, req: Request<Incoming>, id: i64, caller: Option<Caller>) -> Reply {
    let c = caller_of(caller)?;
    let v = body_json(req).await?;
    let reason = str_field(&v, "reason")?.to_string();
    let actor = c.actor.clone();
    let hold = st
        .db(move |idx| crate::db::holds::release(idx.conn(), id, &reason, &actor).map_err(hold_error))
        .await?;
    ok(hold_json(&hold))
}

async fn fixity(st: &Arc<AppState>) -> Reply {
    let s = st.db(|idx| Ok(crate::archive::fixity::status(idx.conn())?)).await?;
    let t = |o: Option<i64>| o.map(crate::base::time::format_ns);
    ok(json!({
        "recordings": s.recordings,
        "verified": s.verified,
        "never_verified": s.never_verified,
        "oldest_check": t(s.oldest_verified_ns),
        "newest_check": t(s.newest_verified_ns),
        "failures": s.failures.iter().map(|f| json!({
            "recording_id": f.id,
            "camera": f.camera,
            "file": f.file,
            "checked": crate::base::time::format_ns(f.checked_ns),
            "detail": f.detail,
        })).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("vigil.local:8080"), Some("vigil.local"));
        assert_eq!(host_name("vigil.local"), Some("vigil.local"));
        assert_eq!(host_name("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_name("evil.com/@x"), None);
        assert_eq!(host_name(""), None);
    }

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
        assert_eq!(byte_range(Some("items=0-1"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None));
    }

    #[test]
    fn patterns_match_one_segment_and_decode_it() {
        assert_eq!(
            matches("/api/v1/cameras/{name}", "/api/v1/cameras/front"),
            Some(vec!["front".into()])
        );
        assert_eq!(
            matches("/api/v1/cameras/{name}", "/api/v1/cameras/..%2F..%2Fetc%2Fpasswd"),
            Some(vec!["../../etc/passwd".into()])
        );
        assert_eq!(matches("/api/v1/cameras/{name}", "/api/v1/cameras/a/b"), None);
        assert_eq!(matches("/health/live", "/health/live"), Some(vec![]));
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
