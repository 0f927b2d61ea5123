//! The caller's own session: log in (password, second factor, throttled),
//! log out, who am I, change the password, enrol a second factor (TOTP).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::db::audit::Outcome;
use crate::db::users::{self, Role};
use crate::keys::mfa::{self, Confirmation};
use crate::web::auth::{self, caller_of, session_user, Ctx};
use crate::web::reply::{body_json, json_reply, ok, str_field, ApiError, Reply};
use crate::web::AppState;

pub async fn login(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let st = &st;
    let peer = ctx.peer;
    let v = body_json(req).await?;
    let name = str_field(&v, "name")?.to_string();
    let password = zeroize::Zeroizing::new(str_field(&v, "password")?.to_string());
    let code = v.get("totp").and_then(Value::as_str).map(str::to_string);
    let ip = peer.ip();
    if !crate::base::names::valid_user_name(&name) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name, password or code"));
    }
    if let Some(wait) = auth::login_throttled(st, &name, ip) {
        let stc = st.clone();
        let n = name.clone();
        st.db(move |idx| {
            users::record_login(idx.conn(), &n, Outcome::Denied, &format!("throttled, from {ip}"))?;
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
    let clock = st.clock.clone();
    let n = name.clone();
    let outcome: Result<(users::User, String, String), &'static str> = st
        .db(move |idx| {
            let Some(user) = users::check_password(idx, &n, &password)? else {
                users::record_login(idx.conn(), &n, Outcome::Denied, &format!("wrong password, from {ip}"))?;
                return Ok(Err("wrong name, password or code"));
            };
            let totp_name = users::totp_secret_name(&n);
            if crate::keys::secrets::exists(idx.conn(), &totp_name)? {
                let Some(code) = code else {
                    users::record_login(idx.conn(), &n, Outcome::Denied, "no TOTP code")?;
                    return Ok(Err("a TOTP code is required"));
                };
                let seed = crate::keys::secrets::get(&keyring, &totp_name, "login second factor")
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let now_s = clock.wall_ns() / 1_000_000_000;
                if !mfa::check_login_code(idx, &user, &seed, &code, now_s) {
                    users::record_login(idx.conn(), &n, Outcome::Denied, "wrong or reused TOTP code")?;
                    return Ok(Err("wrong name, password or code"));
                }
            }
            let (cookie, csrf) = users::log_in(idx, &user, &ip.to_string(), clock.as_ref())?;
            Ok(Ok((user, cookie, csrf)))
        })
        .await?;
    match outcome {
        Err(msg) => {
            auth::login_failed(st, &name, ip);
            Err(ApiError::new(StatusCode::UNAUTHORIZED, msg))
        }
        Ok((user, cookie, csrf)) => {
            auth::login_succeeded(st, &name);
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
        "mfa_required": st.require_admin_mfa && c.role == Role::Admin && c.user_id.is_some() && !mfa,
        "csrf_token": c.csrf,
    }))
}

pub async fn change_password(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let v = body_json(req).await?;
    let old = zeroize::Zeroizing::new(str_field(&v, "old_password")?.to_string());
    let new = zeroize::Zeroizing::new(str_field(&v, "new_password")?.to_string());
    let Some(name) = c.actor.strip_prefix("user:").map(str::to_string) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "API tokens have no password"));
    };
    let clock = st.clock.clone();
    st.db(move |idx| {
        if !users::change_password(idx, &c.actor, &name, &old, &new, clock.as_ref())? {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "the old password is wrong"));
        }
        Ok(())
    })
    .await?;
    ok(json!({ "status": "password changed; log in again" }))
}

/// Starts TOTP enrolment: a new seed, kept pending until a code from it is
/// confirmed; returns the otpauth URI and its QR code (SVG).
pub async fn mfa_start(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = session_user(&c)?;
    let keyring = st.keyring.clone();
    let n = name.clone();
    let seed = st
        .db(move |_| mfa::start_enrolment(&keyring, &c.actor, &n).map_err(|e| ApiError::internal(e.to_string())))
        .await?;
    let uri = crate::base::totp::otpauth_uri("Vigil", &name, &seed[..]);
    let svg = crate::base::totp::qr_svg(&uri).ok_or_else(|| ApiError::internal("QR code too long".into()))?;
    ok(json!({ "otpauth_uri": uri, "qr_svg": svg }))
}

/// Confirms enrolment with a code from the new seed; the seed becomes the
/// user's second factor.
pub async fn mfa_confirm(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;

    let name = session_user(&c)?;
    let v = body_json(req).await?;
    let code = str_field(&v, "code")?.to_string();
    let keyring = st.keyring.clone();
    let user_id = c.user_id;
    let now = st.clock.wall_ns() / 1_000_000_000;
    let confirmation = st
        .db(move |_| {
            mfa::confirm_enrolment(&keyring, &c.actor, &name, user_id, &code, now)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
    match confirmation {
        Confirmation::NotStarted => Err(ApiError::new(StatusCode::BAD_REQUEST, "start the enrolment first")),
        Confirmation::WrongCode => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "wrong code: check the phone's clock and try the next one",
        )),
        Confirmation::Enabled => ok(json!({ "status": "second factor enrolled" })),
    }
}
