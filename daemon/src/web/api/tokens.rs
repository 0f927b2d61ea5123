//! API tokens over the API: list (your own; admins every token), create
//! (for yourself, from a logged-in session only, so a stolen token cannot
//! mint more), revoke (your own; admins any). The secret is in the create
//! reply only; listings never carry it or its hash.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::users::camera_set;
use crate::base::time::format_ns;
use crate::db::camera_sets::CameraSetError;
use crate::db::tokens::{self, NewToken, TokenError, TokenInfo};
use crate::db::users::{Role, UserError};
use crate::web::auth::{caller_of, session_user, Caller, Ctx};
use crate::web::reply::{body_json, json_reply, ok, opt_str, str_field, ApiError, Reply};
use crate::web::AppState;

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let status = match &e {
            TokenError::BadName | TokenError::BadExpiry => StatusCode::BAD_REQUEST,
            TokenError::CameraSet(CameraSetError::BadCamera(_) | CameraSetError::TooMany) => StatusCode::BAD_REQUEST,
            TokenError::RoleAboveOwner(_)
            | TokenError::CameraNotAllowed(_)
            | TokenError::OwnerDisabled(_)
            | TokenError::NoSuchUser(_) => StatusCode::FORBIDDEN,
            TokenError::Exists(_) | TokenError::TooMany(_) => StatusCode::CONFLICT,
            TokenError::NoSuchToken(_) => StatusCode::NOT_FOUND,
            TokenError::User(UserError::BadRole(_)) => StatusCode::BAD_REQUEST,
            _ => return ApiError::internal(e.to_string()),
        };
        ApiError::new(status, e.to_string())
    }
}

/// A token as the API lists it.
pub fn token_json(t: &TokenInfo) -> Value {
    json!({
        "name": t.name,
        "owner": t.owner,
        "role": t.role.as_str(),
        "cameras": t.cameras,
        "created": format_ns(t.created_ns),
        "expires": t.expires_ns.map(format_ns),
        "last_used": t.last_used_ns.map(format_ns),
        "revoked": t.revoked_ns.map(format_ns),
    })
}

/// Whose tokens the caller may see and revoke: None for every token (an
/// admin), else the caller's own.
fn scope(c: &Caller) -> Result<Option<i64>, ApiError> {
    if c.role == Role::Admin {
        return Ok(None);
    }
    c.user_id
        .map(Some)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "no user"))
}

/// `GET /api/v1/tokens`.
pub async fn list(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let owner = scope(&c)?;
    let list = st.db(move |idx| Ok(tokens::list(idx, owner)?)).await?;
    ok(Value::Array(list.iter().map(token_json).collect()))
}

/// `POST /api/v1/tokens` with `{"name", "role"?, "expires_in_days"?, "cameras"?}`:
/// a token for the caller; replies `{"name", "token", "expires"}` (201).
pub async fn create(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    if c.cookie.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an API token cannot make tokens: log in",
        ));
    }
    let owner = session_user(&c)?;
    let v = body_json(req).await?;
    let name = str_field(&v, "name")?.to_string();
    let role = match opt_str(&v, "role")? {
        Some(r) => Some(Role::parse(&r).ok_or_else(|| ApiError::from(UserError::BadRole(r.clone())))?),
        None => None,
    };
    let expires_in_days = match v.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(d) => Some(
            d.as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| ApiError::from(TokenError::BadExpiry))?,
        ),
    };
    let cameras = match v.get("cameras") {
        None => None,
        Some(set) => camera_set(set)?,
    };
    let new = NewToken {
        owner,
        name,
        role,
        expires_in_days,
        cameras,
    };
    let clock = st.clock.clone();
    let made = st
        .db(move |idx| Ok(tokens::create(idx, &c.actor, new, clock.as_ref())?))
        .await?;
    Ok(json_reply(
        StatusCode::CREATED,
        &json!({
            "name": made.name,
            "token": made.secret.as_str(),
            "expires": format_ns(made.expires_ns),
        }),
    ))
}

/// `DELETE /api/v1/tokens/{name}`: the owner or an admin revokes it.
/// Another user's token is 404, as if it did not exist.
pub async fn revoke(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let only_of = scope(&c)?;
    let name = ctx
        .params
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such token"))?;
    let clock = st.clock.clone();
    st.db(move |idx| Ok(tokens::revoke(idx, &c.actor, &name, only_of, clock.as_ref())?))
        .await?;
    ok(json!({ "status": "revoked" }))
}
