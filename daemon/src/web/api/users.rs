//! User administration (admins): list and add users; disable, enable,
//! delete one, change their role, reset their password or second factor,
//! and set the cameras one may see. The last enabled admin cannot be
//! disabled, demoted or deleted, nor can an admin do that to themself
//! (409, [`crate::db::user_admin`]).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use crate::db::camera_sets::{self, CameraSetError};
use crate::db::user_admin;
use crate::db::users::{self, Role, UserError};
use crate::web::auth::{caller_of, Caller, Ctx};
use crate::web::reply::{body_json, json_reply, ok, str_field, ApiError, Reply};
use crate::web::AppState;

/// `POST /api/v1/users/{name}/disable`.
pub async fn disable(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    user_action(&st, ctx.caller, ctx.params, "disable").await
}

/// `POST /api/v1/users/{name}/enable`.
pub async fn enable(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    user_action(&st, ctx.caller, ctx.params, "enable").await
}

/// `POST /api/v1/users/{name}/reset-mfa`.
pub async fn reset_mfa(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    user_action(&st, ctx.caller, ctx.params, "reset-mfa").await
}

/// Admin actions on a user: disable (ends their sessions; not oneself nor
/// the last enabled admin), enable, reset-mfa.
async fn user_action(st: &Arc<AppState>, caller: Option<Caller>, params: Vec<String>, action: &'static str) -> Reply {
    let c = caller_of(caller)?;
    let name = user_param(params)?;
    let keyring = st.keyring.clone();
    let clock = st.clock.clone();
    st.db(move |idx| {
        if users::find(idx, &name)?.is_none() {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such user"));
        }
        match action {
            "disable" => {
                user_admin::disable_checked(idx, &c.actor, c.user_id, &name, clock.as_ref()).map_err(user_error)?
            }
            "enable" => users::set_disabled(idx, &c.actor, &name, false, clock.as_ref())?,
            _ => crate::keys::mfa::admin_reset(&keyring, &c.actor, &name)
                .map_err(|e| ApiError::internal(e.to_string()))?,
        }
        Ok(())
    })
    .await?;
    ok(json!({ "status": "done" }))
}

/// The `{name}` of a user route (404 when it cannot be a user name).
fn user_param(params: Vec<String>) -> Result<String, ApiError> {
    params
        .into_iter()
        .next()
        .filter(|n| crate::base::names::valid_user_name(n))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such user"))
}

/// A refusal of the admin rules is 409 with its plain message.
fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::LastAdmin | UserError::NotYourself(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        other => other.into(),
    }
}

/// `DELETE /api/v1/users/{name}`: the user, their sessions and API tokens.
pub async fn delete(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = user_param(ctx.params)?;
    st.db(move |idx| user_admin::delete_user(idx, &c.actor, c.user_id, &name).map_err(user_error))
        .await?;
    ok(json!({ "status": "deleted" }))
}

/// `POST /api/v1/users/{name}/role` with `{"role": "viewer|operator|admin"}`:
/// applies to the user's sessions and tokens at their next request.
pub async fn set_role(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = user_param(ctx.params)?;
    let v = body_json(req).await?;
    let role_s = str_field(&v, "role")?;
    let role = Role::parse(role_s).ok_or_else(|| ApiError::from(UserError::BadRole(role_s.to_string())))?;
    let clock = st.clock.clone();
    st.db(move |idx| user_admin::set_role(idx, &c.actor, c.user_id, &name, role, clock.as_ref()).map_err(user_error))
        .await?;
    ok(json!({ "status": "done", "role": role.as_str() }))
}

/// `POST /api/v1/users/{name}/password` with `{"password": "..."}`: a
/// one-time password the user must change at next login; their sessions end.
pub async fn reset_password(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = user_param(ctx.params)?;
    let v = body_json(req).await?;
    let pw = zeroize::Zeroizing::new(str_field(&v, "password")?.to_string());
    let clock = st.clock.clone();
    st.db(move |idx| user_admin::reset_password(idx, &c.actor, &name, &pw, clock.as_ref()).map_err(user_error))
        .await?;
    ok(json!({ "status": "done; the password must be changed at next login" }))
}

pub async fn list(st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
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
                    "cameras": u.cameras,
                    "created": crate::base::time::format_ns(u.created_ns),
                }));
            }
            Ok(out)
        })
        .await?;
    ok(Value::Array(list))
}

pub async fn add(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;

    let v = body_json(req).await?;
    let name = str_field(&v, "name")?.to_string();
    let role_s = str_field(&v, "role")?;
    let role = Role::parse(role_s).ok_or_else(|| ApiError::from(users::UserError::BadRole(role_s.to_string())))?;
    let pw = zeroize::Zeroizing::new(str_field(&v, "password")?.to_string());
    // Checked before the user exists: a bad set must not leave a user who
    // sees every camera.
    let cameras = match v.get("cameras") {
        None => None,
        Some(set) => Some(camera_set(set)?.map(camera_sets::validate).transpose()?),
    };
    let clock = st.clock.clone();
    st.db(move |idx| {
        users::add(idx, &c.actor, &name, role, &pw, true, clock.as_ref())?;
        if let Some(set) = cameras {
            if let Err(e) = camera_sets::set_user_cameras(idx, &c.actor, &name, set, clock.as_ref()) {
                // Fail closed: a user meant to see some cameras who could
                // see all of them is disabled until an admin looks.
                let _ = users::set_disabled(idx, &c.actor, &name, true, clock.as_ref());
                return Err(e.into());
            }
        }
        Ok(())
    })
    .await?;
    Ok(json_reply(
        StatusCode::CREATED,
        &json!({ "status": "created; the password must be changed at first login" }),
    ))
}

impl From<CameraSetError> for ApiError {
    fn from(e: CameraSetError) -> Self {
        match e {
            CameraSetError::BadCamera(_) | CameraSetError::TooMany => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            CameraSetError::NoSuchUser(_) => ApiError::new(StatusCode::NOT_FOUND, "no such user"),
            CameraSetError::Sql(e) => ApiError::internal(e.to_string()),
        }
    }
}

/// A camera set in a request: `null` (every camera) or an array of camera
/// names; anything else is refused.
pub fn camera_set(v: &Value) -> Result<Option<Vec<String>>, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "\"cameras\" must be null or an array of camera names",
        )
    };
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => {
            let names = items
                .iter()
                .map(|c| c.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(camera_sets::validate(names)?))
        }
        _ => Err(bad()),
    }
}

/// `PUT /api/v1/users/{name}/cameras` with `{"cameras": [..]}` or
/// `{"cameras": null}` (every camera). The field must be there: a body
/// without it changes nothing.
pub async fn set_cameras(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let name = user_param(ctx.params)?;
    let v = body_json(req).await?;
    let set = camera_set(
        v.get("cameras")
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "missing field \"cameras\""))?,
    )?;
    let shown = camera_sets::describe(set.as_deref());
    let clock = st.clock.clone();
    st.db(move |idx| {
        Ok(camera_sets::set_user_cameras(
            idx,
            &c.actor,
            &name,
            set,
            clock.as_ref(),
        )?)
    })
    .await?;
    ok(json!({ "status": "done", "cameras": shown }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_set_in_a_request_is_null_or_names() {
        assert_eq!(camera_set(&json!(null)).unwrap(), None);
        assert_eq!(
            camera_set(&json!(["yard", "door", "yard"])).unwrap(),
            Some(vec!["door".to_string(), "yard".to_string()])
        );
        assert_eq!(camera_set(&json!([])).unwrap(), Some(vec![]));
        for bad in [
            json!("door"),
            json!("all"),
            json!([1]),
            json!([["door"]]),
            json!({"door": true}),
            json!(["door\r\nyard"]),
            json!(["../etc"]),
            json!(true),
        ] {
            let e = camera_set(&bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
