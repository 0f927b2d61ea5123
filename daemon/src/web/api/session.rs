//! The caller's own session: log in (password, second factor), log out, who
//! am I, change the password, enrol a second factor (TOTP). Every check of a
//! password or code here goes through the login throttle (reserved before
//! the check: see `db::throttle::Throttle`).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::{Body as _, Incoming};
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::db::audit::Outcome;
use crate::db::throttle::Attempt;
use crate::db::users::{self, Role};
use crate::keys::mfa::{self, Confirmation, Enrolment};
use crate::web::auth::{self, caller_of, session_user, Ctx};
use crate::web::reply::{body_json, json_reply, ok, opt_str, str_field, ApiError, Reply};
use crate::web::AppState;

/// The one answer to every refused login (unknown name, wrong password,
/// missing or wrong second factor), so that it tells nothing of which.
const LOGIN_REFUSED: &str = "wrong name, password or code";

pub async fn login(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let ip = ctx.peer.ip();
    let v = body_json(req).await?;
    let name = str_field(&v, "name")?.to_string();
    let password = Zeroizing::new(str_field(&v, "password")?.to_string());
    let code = v
        .get("totp")
        .and_then(Value::as_str)
        .map(|c| Zeroizing::new(c.to_string()));
    if !crate::base::names::valid_user_name(&name) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_REFUSED));
    }
    // Reserved before the password is hashed: parallel guesses cannot all
    // pass the check before the first failure is counted.
    let attempt = match auth::reserve_attempt(&st, &name, ip) {
        Ok(a) => a,
        Err(wait) => {
            st.counters.logins_failed.fetch_add(1, Ordering::Relaxed);
            if let Some(quiet) = auth::refusal_to_audit(&st, ip) {
                let n = name.clone();
                st.db(move |idx| {
                    Ok(users::record_throttled(
                        idx.conn(),
                        &format!("user:{n}"),
                        "login",
                        &n,
                        ip,
                        quiet,
                    )?)
                })
                .await?;
            }
            return Err(auth::throttled(wait, "too many failed logins; wait and try again"));
        }
    };
    let keyring = st.keyring.clone();
    let clock = st.clock.clone();
    let n = name.clone();
    let outcome: Result<Option<(users::User, String, String)>, ApiError> = st
        .db(move |idx| {
            // The password is hashed whatever follows: a missing second
            // factor takes the same path, and gets the same answer, as a
            // wrong password.
            let Some(user) = users::check_password(idx, &n, &password)? else {
                users::record_login(idx.conn(), &n, Outcome::Denied, &format!("wrong password, from {ip}"))?;
                return Ok(None);
            };
            let totp_name = users::totp_secret_name(&n);
            if crate::keys::secrets::exists(idx.conn(), &totp_name)? {
                let Some(code) = code else {
                    users::record_login(idx.conn(), &n, Outcome::Denied, "no TOTP code")?;
                    return Ok(None);
                };
                let seed = crate::keys::secrets::get(&keyring, &totp_name, "login second factor")
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let now_s = clock.wall_ns() / 1_000_000_000;
                if !mfa::check_login_code(idx, &user, &seed, &code, now_s) {
                    users::record_login(idx.conn(), &n, Outcome::Denied, "wrong or reused TOTP code")?;
                    return Ok(None);
                }
            }
            let (cookie, csrf) = users::log_in(idx, &user, &ip.to_string(), clock.as_ref())?;
            Ok(Some((user, cookie, csrf)))
        })
        .await;
    match outcome {
        Err(e) => {
            auth::login_failed(&st, attempt);
            Err(e)
        }
        Ok(None) => {
            auth::login_failed(&st, attempt);
            Err(ApiError::new(StatusCode::UNAUTHORIZED, LOGIN_REFUSED))
        }
        Ok(Some((user, cookie, csrf))) => {
            auth::login_succeeded(&st, attempt);
            let mut r = json_reply(
                StatusCode::OK,
                &json!({
                    "name": user.name,
                    "role": user.role.as_str(),
                    "csrf_token": csrf,
                    "must_change_password": user.must_change_password,
                }),
            );
            if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(&cookie)) {
                r.headers_mut().insert(hyper::header::SET_COOKIE, v);
            }
            Ok(r)
        }
    }
}

/// Reserves a check of `name`'s password or code from `ip` (the login's
/// throttle); a throttled attempt is audited as `action` denied and
/// answered 429.
async fn reserve(
    st: &Arc<AppState>,
    actor: &str,
    action: &'static str,
    name: &str,
    ip: IpAddr,
) -> Result<Attempt, ApiError> {
    match auth::reserve_attempt(st, name, ip) {
        Ok(a) => Ok(a),
        Err(wait) => {
            if let Some(quiet) = auth::refusal_to_audit(st, ip) {
                let (actor, name) = (actor.to_string(), name.to_string());
                st.db(move |idx| Ok(users::record_throttled(idx.conn(), &actor, action, &name, ip, quiet)?))
                    .await?;
            }
            Err(auth::throttled(
                wait,
                "too many wrong passwords or codes; wait and try again",
            ))
        }
    }
}

pub async fn logout(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let actor = c.actor.clone();
    st.db(move |idx| Ok(users::log_out(idx, &actor, c.cookie.as_deref())?))
        .await?;
    let mut r = json_reply(StatusCode::OK, &json!({ "status": "logged out" }));
    r.headers_mut()
        .insert(hyper::header::SET_COOKIE, HeaderValue::from_static(auth::LOGOUT_COOKIE));
    Ok(r)
}

pub async fn me(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
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
        "mfa_required": st.require_admin_mfa && c.role == Role::Admin && c.cookie.is_some() && !mfa,
        "csrf_token": c.csrf,
    }))
}

pub async fn change_password(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let v = body_json(req).await?;
    let old = Zeroizing::new(str_field(&v, "old_password")?.to_string());
    let new = Zeroizing::new(str_field(&v, "new_password")?.to_string());
    let Some(name) = c.actor.strip_prefix("user:").map(str::to_string) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "API tokens have no password"));
    };
    // The same throttle as the login's: a stolen session is no password oracle.
    let attempt = reserve(&st, &c.actor, "user.password", &name, ctx.peer.ip()).await?;
    let clock = st.clock.clone();
    let changed = st
        .db(move |idx| {
            Ok(users::change_password(
                idx,
                &c.actor,
                &name,
                &old,
                &new,
                clock.as_ref(),
            )?)
        })
        .await;
    match changed {
        Ok(true) => {
            auth::attempt_released(&st, attempt);
            ok(json!({ "status": "password changed; log in again" }))
        }
        Ok(false) => {
            auth::attempt_failed(&st, attempt);
            Err(ApiError::new(StatusCode::FORBIDDEN, "the old password is wrong"))
        }
        // The old password was right; the new one is refused (or a fault).
        Err(e) => {
            auth::attempt_released(&st, attempt);
            Err(e)
        }
    }
}

/// Starts TOTP enrolment: a new seed, kept pending until a code from it is
/// confirmed; returns the otpauth URI and its QR code (SVG). Replacing a
/// second factor already enrolled needs the current password in the body
/// (`{"password": "..."}`), checked under the login's throttle.
pub async fn mfa_start(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = session_user(&c)?;
    let password = if req.body().is_end_stream() {
        None
    } else {
        opt_str(&body_json(req).await?, "password")?.map(Zeroizing::new)
    };
    let attempt = reserve(&st, &c.actor, "user.mfa.enrol", &name, ctx.peer.ip()).await?;
    let keyring = st.keyring.clone();
    let n = name.clone();
    let started = st
        .db(move |idx| {
            mfa::start_enrolment(&keyring, idx, &c.actor, &n, password.as_deref().map(String::as_str))
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await;
    let seed = match started {
        Ok(Enrolment::Started(seed)) => {
            auth::attempt_released(&st, attempt);
            seed
        }
        Ok(Enrolment::PasswordNeeded) => {
            auth::attempt_released(&st, attempt);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a second factor is enrolled: replacing it needs the current password (\"password\")",
            ));
        }
        Ok(Enrolment::WrongPassword) => {
            auth::attempt_failed(&st, attempt);
            return Err(ApiError::new(StatusCode::FORBIDDEN, "the password is wrong"));
        }
        Err(e) => {
            auth::attempt_failed(&st, attempt);
            return Err(e);
        }
    };
    let uri = crate::base::totp::otpauth_uri("Vigil", &name, &seed[..]);
    let svg = crate::base::totp::qr_svg(&uri).ok_or_else(|| ApiError::internal("QR code too long".into()))?;
    ok(json!({ "otpauth_uri": uri, "qr_svg": svg }))
}

/// Confirms enrolment with a code from the new seed; the seed becomes the
/// user's second factor. Wrong codes count against the login's throttle.
pub async fn mfa_confirm(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = session_user(&c)?;
    let v = body_json(req).await?;
    let code = Zeroizing::new(str_field(&v, "code")?.to_string());
    let attempt = reserve(&st, &c.actor, "user.mfa.enrol", &name, ctx.peer.ip()).await?;
    let keyring = st.keyring.clone();
    let user_id = c.user_id;
    let now = st.clock.wall_ns() / 1_000_000_000;
    let confirmation = st
        .db(move |_| {
            mfa::confirm_enrolment(&keyring, &c.actor, &name, user_id, &code, now)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await;
    match confirmation {
        Ok(Confirmation::NotStarted) => {
            auth::attempt_released(&st, attempt);
            Err(ApiError::new(StatusCode::BAD_REQUEST, "start the enrolment first"))
        }
        Ok(Confirmation::WrongCode) => {
            auth::attempt_failed(&st, attempt);
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "wrong code: check the phone's clock and try the next one",
            ))
        }
        Ok(Confirmation::Enabled) => {
            auth::attempt_released(&st, attempt);
            ok(json!({ "status": "second factor enrolled" }))
        }
        Err(e) => {
            auth::attempt_failed(&st, attempt);
            Err(e)
        }
    }
}
