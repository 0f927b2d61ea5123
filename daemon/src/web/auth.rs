//! Who is calling: authentication (a session cookie with its CSRF token, or
//! an API token), the access check every route passes before its handler
//! runs, the caller context handlers get ([`Ctx`], [`Caller`]), and the
//! login throttle and session cookie glue.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::reply::ApiError;
use super::AppState;
use crate::db::throttle::Attempt;
use crate::db::tokens;
use crate::db::users::{self, Role};

/// The session cookie's name.
pub const COOKIE: &str = "vigil_session";

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    At(Role),
}

/// Routes a user who must change the password may still call.
pub const BEFORE_PASSWORD_CHANGE: &[&str] = &["/api/v1/me", "/api/v1/me/password", "/api/v1/logout"];
/// Routes an admin without a second factor may still call when one is required.
pub const BEFORE_MFA: &[&str] = &[
    "/api/v1/me",
    "/api/v1/me/password",
    "/api/v1/me/mfa",
    "/api/v1/me/mfa/confirm",
    "/api/v1/logout",
];

/// The caller, once authenticated.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `user:<name>` or `token:<name>`, for the audit log.
    pub actor: String,
    pub user_id: Option<i64>,
    pub role: Role,
    /// The session's CSRF token (None for API tokens, which need none).
    pub csrf: Option<String>,
    pub cookie: Option<String>,
    pub must_change_password: bool,
    /// The cameras the caller may see: None for every camera, else these
    /// (a user's set, narrowed further by a token's own set).
    pub cameras: Option<Vec<String>>,
}

impl Caller {
    /// Whether the caller may see this camera's footage and state.
    pub fn may_view(&self, camera: &str) -> bool {
        // A camera's recorded sub stream (`<camera>.sub`) goes with it.
        let camera = crate::base::names::main_of_sub_stream(camera).unwrap_or(camera);
        self.cameras.as_ref().is_none_or(|set| set.iter().any(|c| c == camera))
    }
}

/// What a handler gets besides the request: the caller (None on public
/// routes), the `{x}` segments of the path, percent-decoded, and the peer.
pub struct Ctx {
    pub caller: Option<Caller>,
    pub params: Vec<String>,
    pub peer: SocketAddr,
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

/// Who is calling, if anyone: an API token (`Authorization: Bearer`) or a
/// session cookie. A token is accepted only while it is live and its owner
/// enabled ([`tokens::authenticate`]); it acts as `token:<name>` for its
/// owner, with the lower of the two roles and the cameras both allow. A
/// session acts as its user, with the user's camera set.
pub async fn authenticate(st: &Arc<AppState>, req: &Request<Incoming>) -> Result<Option<Caller>, ApiError> {
    let clock = st.clock.clone();
    if let Some(t) = bearer(req) {
        return st
            .db(move |idx| {
                let found = tokens::authenticate(idx, &t, clock.as_ref())
                    .map_err(|e| ApiError::internal(format!("token lookup: {e}")))?;
                Ok(found.map(|t| Caller {
                    actor: format!("token:{}", t.name),
                    user_id: Some(t.owner.id),
                    role: t.role,
                    csrf: None,
                    cookie: None,
                    must_change_password: false,
                    cameras: t.cameras,
                }))
            })
            .await;
    }
    let Some(c) = cookie_value(req) else { return Ok(None) };
    st.db(move |idx| {
        Ok(users::session(idx, &c, clock.as_ref())?.map(|s| Caller {
            actor: format!("user:{}", s.user.name),
            user_id: Some(s.user.id),
            role: s.user.role,
            csrf: Some(s.csrf),
            cookie: Some(c),
            must_change_password: s.user.must_change_password,
            cameras: s.user.cameras,
        }))
    })
    .await
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn caller_of(c: Option<Caller>) -> Result<Caller, ApiError> {
    c.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "log in first"))
}

pub fn session_user(c: &Caller) -> Result<String, ApiError> {
    c.actor
        .strip_prefix("user:")
        .map(str::to_string)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "API tokens have no second factor"))
}

/// The access check of a route (`path` is its pattern): the caller must be
/// logged in with at least the role `access` names, have changed a one-time
/// password and (admins, when required) enrolled a second factor, and send
/// the session's CSRF token with anything that changes state. Returns the
/// caller (None on public routes).
pub async fn authorize(
    st: &Arc<AppState>,
    req: &Request<Incoming>,
    access: Access,
    path: &str,
) -> Result<Option<Caller>, ApiError> {
    let need = match access {
        Access::Public => return Ok(None),
        Access::At(need) => need,
    };
    let Some(c) = authenticate(st, req).await? else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "log in first"));
    };
    if c.role < need {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("needs the {} role", need.as_str()),
        ));
    }
    if c.must_change_password && !BEFORE_PASSWORD_CHANGE.contains(&path) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "change the one-time password first",
        ));
    }
    if st.require_admin_mfa && c.role == Role::Admin && c.cookie.is_some() && !BEFORE_MFA.contains(&path) {
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
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes_state {
        if let Some(csrf) = &c.csrf {
            let sent = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), csrf.as_bytes())) {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token"));
            }
        }
    }
    Ok(Some(c))
}

/// Reserves a password or second-factor check for `name` from `ip`, before
/// it is made (see [`crate::db::throttle::Throttle`]): `Err(seconds to wait)` when
/// throttled. Settle it with [`attempt_failed`], [`login_succeeded`] or
/// [`attempt_released`].
pub fn reserve_attempt(st: &AppState, name: &str, ip: IpAddr) -> Result<Attempt, u64> {
    throttle(st).reserve(name, ip)
}

/// Whether a refused attempt from `ip` gets its own audit entry (see
/// [`crate::db::throttle::Throttle::refusal_to_audit`]).
pub fn refusal_to_audit(st: &AppState, ip: IpAddr) -> Option<u64> {
    throttle(st).refusal_to_audit(ip)
}

/// The 429 of a throttled attempt, with its Retry-After.
pub fn throttled(wait: u64, message: &str) -> ApiError {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message);
    e.retry_after = Some(wait);
    e
}

/// The attempt was wrong: it counts against the user and the address.
pub fn attempt_failed(st: &AppState, a: Attempt) {
    throttle(st).failed(a);
}

/// The attempt was right, or no guess: it does not count.
pub fn attempt_released(st: &AppState, a: Attempt) {
    throttle(st).released(a);
}

/// Counts a failed login (for the throttle and /metrics).
pub fn login_failed(st: &AppState, a: Attempt) {
    attempt_failed(st, a);
    st.counters.logins_failed.fetch_add(1, Ordering::Relaxed);
}

/// Counts a login (for the throttle and /metrics).
pub fn login_succeeded(st: &AppState, a: Attempt) {
    throttle(st).succeeded(a);
    st.counters.logins_ok.fetch_add(1, Ordering::Relaxed);
}

/// The throttle, also after a panic elsewhere poisoned its lock: its data is
/// a set of timestamps, always consistent, and refusing every login then
/// would lock everyone out.
fn throttle(st: &AppState) -> std::sync::MutexGuard<'_, crate::db::throttle::Throttle> {
    st.throttle.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Set-Cookie value of a new session.
pub fn session_cookie(cookie: &str) -> String {
    format!(
        "{COOKIE}={cookie}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        users::SESSION_ABSOLUTE.as_secs()
    )
}

/// The Set-Cookie value that ends a session in the browser.
pub const LOGOUT_COOKIE: &str = "vigil_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_compare_in_constant_time() {
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
