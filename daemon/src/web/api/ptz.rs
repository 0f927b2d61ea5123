//! PTZ over HTTPS: `POST /api/v1/cameras/{name}/ptz` with one command
//! (`move`, `stop`, `goto`, `set_preset`). Operators and admins may move a
//! camera in their set; a viewer is refused with 403. Every call, refused
//! or not, is audited by `run::camera_control::ptz`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::cameras::{known_camera, require_view};
use crate::run::camera_control::{self, ControlError, PtzOp};
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{body_json, ok, str_field, ApiError, Reply};
use crate::web::AppState;

fn op_of(v: &Value) -> Result<PtzOp, ApiError> {
    let num = |k: &str| -> Result<f64, ApiError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(0.0),
            Some(x) => x
                .as_f64()
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("\"{k}\" must be a number"))),
        }
    };
    Ok(match str_field(v, "op")? {
        "move" => PtzOp::Move {
            x: num("x")?,
            y: num("y")?,
            zoom: num("zoom")?,
        },
        "stop" => PtzOp::Stop,
        "goto" => PtzOp::Goto {
            preset: str_field(v, "preset")?.to_string(),
        },
        "set_preset" => PtzOp::SetPreset {
            name: str_field(v, "name")?.to_string(),
        },
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"op\" must be move, stop, goto or set_preset",
            ))
        }
    })
}

/// `POST /api/v1/cameras/{name}/ptz`: `{"op": "move", "x", "y", "zoom"}`,
/// `{"op": "stop"}`, `{"op": "goto", "preset"}` or `{"op": "set_preset",
/// "name"}`; answers `{"ok": true}` (and `"preset"` for set_preset).
pub async fn command(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let name = ctx.params.first().cloned();
    let c = caller_of(ctx.caller)?;
    let name = known_camera(&st, name).await?;
    require_view(&st, &c, &name, "camera.ptz").await?;
    let v: Value = body_json(req).await?;
    let op = op_of(&v)?;
    match camera_control::ptz(
        camera_control::Target::Running(&st.cameras.logins),
        &st.db_path,
        &c.actor,
        c.role,
        &name,
        op,
    )
    .await
    {
        Ok(preset) => ok(json!({"ok": true, "preset": preset})),
        Err(e) => {
            let status = match &e {
                ControlError::Forbidden => StatusCode::FORBIDDEN,
                ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
                ControlError::NoOnvif(_) => StatusCode::CONFLICT,
                ControlError::NotRunning(_) => StatusCode::SERVICE_UNAVAILABLE,
                ControlError::Camera(_) | ControlError::Timeout(_) => StatusCode::BAD_GATEWAY,
                ControlError::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}
