//! Acting on a camera through ONVIF, for the API and the CLI: PTZ moves
//! (continuous move, stop, go to a preset, set a preset), each audited as
//! `camera.ptz` with its outcome by [`ptz`] itself, and setting the
//! camera's clock ([`sync_time`], audited `camera.sync_time`). Also the
//! table of the running cameras' logins ([`CameraLogins`], kept by the
//! camera supervisor) that the API's commands need.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::config::CameraConfig;
use crate::db::audit::{self, Outcome};
use crate::db::users::Role;
use crate::ingest::onvif::{CameraClock, Device, OnvifError};

/// One PTZ command.
#[derive(Clone, Debug, PartialEq)]
pub enum PtzOp {
    /// Pan, tilt and zoom speeds in [-1, 1], until [`PtzOp::Stop`].
    Move {
        x: f64,
        y: f64,
        zoom: f64,
    },
    Stop,
    Goto {
        preset: String,
    },
    SetPreset {
        name: String,
    },
}

impl PtzOp {
    /// The audit entry's words for it.
    pub fn describe(&self) -> String {
        match self {
            PtzOp::Move { x, y, zoom } => format!("move x={x:.2} y={y:.2} zoom={zoom:.2}"),
            PtzOp::Stop => "stop".into(),
            PtzOp::Goto { preset } => format!("goto preset {preset}"),
            PtzOp::SetPreset { name } => format!("set preset {name}"),
        }
    }

    /// Checks the speeds and names a request gave.
    pub fn check(&self) -> Result<(), ControlError> {
        let speed = |v: f64| v.is_finite() && (-1.0..=1.0).contains(&v);
        let text = |s: &str| !s.is_empty() && s.len() <= 64 && crate::base::names::valid_free_text(s);
        let ok = match self {
            PtzOp::Move { x, y, zoom } => speed(*x) && speed(*y) && speed(*zoom),
            PtzOp::Stop => true,
            PtzOp::Goto { preset } => text(preset),
            PtzOp::SetPreset { name } => text(name),
        };
        if ok {
            Ok(())
        } else {
            Err(ControlError::BadRequest(
                "speeds are numbers from -1 to 1; a preset is 1 to 64 characters of text".into(),
            ))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("camera \"{0}\" has no ONVIF address (onvif_url)")]
    NoOnvif(String),
    #[error("camera \"{0}\" is not running")]
    NotRunning(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Camera(#[from] OnvifError),
    #[error("the camera did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the audit log could not be written: {0}")]
    Audit(String),
    #[error("moving a camera needs the operator role")]
    Forbidden,
}

/// How long one PTZ command may take, with its profile lookup.
const PTZ_TIMEOUT: Duration = Duration::from_secs(8);

/// A camera's settings and password.
type Login = (CameraConfig, Option<Zeroizing<String>>);

/// What the running cameras log in with: their settings and password, as
/// the supervisor started them.
#[derive(Default)]
pub struct CameraLogins {
    map: Mutex<HashMap<String, Login>>,
    /// Each camera's PTZ profile token, once read.
    profiles: Mutex<HashMap<String, String>>,
    /// One command at a time per camera, in the order they came (a stop
    /// never overtakes its move).
    queues: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl CameraLogins {
    pub fn insert(&self, cam: &CameraConfig, password: Option<Zeroizing<String>>) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(cam.name.clone(), (cam.clone(), password));
        }
    }

    pub fn remove(&self, name: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(name);
        }
        if let Ok(mut p) = self.profiles.lock() {
            p.remove(name);
        }
    }

    /// The camera's command queue.
    fn queue(&self, name: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        match self.queues.lock() {
            Ok(mut q) => q.entry(name.to_string()).or_default().clone(),
            Err(_) => Default::default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Login> {
        self.map.lock().ok()?.get(name).cloned()
    }

    /// The camera's ONVIF device, or why there is none.
    pub fn device(&self, name: &str) -> Result<Device, ControlError> {
        let (cam, password) = self
            .get(name)
            .ok_or_else(|| ControlError::NotRunning(name.to_string()))?;
        let url = cam
            .onvif_url
            .clone()
            .ok_or_else(|| ControlError::NoOnvif(name.to_string()))?;
        Ok(Device::new(url, cam.username.clone(), password))
    }
}

/// Which device a command goes to: a running camera's (its login from the
/// supervisor, its PTZ profile remembered), or one given (the CLI's).
pub enum Target<'a> {
    Running(&'a CameraLogins),
    Device(&'a Device),
}

/// Sends `op` to camera `name`'s PTZ service, then writes the audit entry
/// `camera.ptz` (outcome ok or failed, with the command) for `actor`. A
/// caller below the operator role is refused, and that is audited too
/// (denied). A command the audit log cannot record is reported as failed.
/// Returns the preset token for [`PtzOp::SetPreset`].
pub async fn ptz(
    target: Target<'_>,
    db_path: &Path,
    actor: &str,
    role: Role,
    name: &str,
    op: PtzOp,
) -> Result<Option<String>, ControlError> {
    let result = match op.check() {
        _ if role < Role::Operator => Err(ControlError::Forbidden),
        Err(e) => Err(e),
        Ok(()) => match tokio::time::timeout(PTZ_TIMEOUT, send(&target, name, &op)).await {
            Ok(r) => r,
            Err(_) => Err(ControlError::Timeout(PTZ_TIMEOUT)),
        },
    };
    let (outcome, detail) = match &result {
        Ok(_) => (Outcome::Ok, op.describe()),
        Err(ControlError::Forbidden) => (Outcome::Denied, format!("{}: needs the operator role", op.describe())),
        Err(e) => (
            Outcome::Failed,
            format!(
                "{}: {}",
                op.describe(),
                crate::base::text::one_line(&e.to_string(), 200)
            ),
        ),
    };
    // The command's words come from the request: one bounded line in the log.
    let detail = crate::base::text::one_line(&detail, 300);
    let (actor, camera) = (actor.to_string(), name.to_string());
    crate::db::Index::on_blocking_thread(db_path, move |idx| {
        audit::append(idx.conn(), &actor, "camera.ptz", &camera, outcome, &detail)
    })
    .await
    .map_err(ControlError::Audit)?;
    result
}

async fn send(target: &Target<'_>, name: &str, op: &PtzOp) -> Result<Option<String>, ControlError> {
    let queue = match target {
        Target::Running(logins) => Some(logins.queue(name)),
        Target::Device(_) => None,
    };
    let _turn = match &queue {
        Some(q) => Some(q.lock().await),
        None => None,
    };
    let owned;
    let (device, logins) = match target {
        Target::Running(logins) => {
            owned = logins.device(name)?;
            (&owned, Some(*logins))
        }
        Target::Device(d) => (*d, None),
    };
    let known = logins.and_then(|l| l.profiles.lock().ok()?.get(name).cloned());
    let token = match known {
        Some(t) => t,
        None => {
            let profiles = device.profiles().await?;
            let main = crate::ingest::onvif::choose_streams(&profiles)?.0.token;
            if let Some(mut p) = logins.and_then(|l| l.profiles.lock().ok()) {
                p.insert(name.to_string(), main.clone());
            }
            main
        }
    };
    let ptz = device.ptz(&token);
    match op {
        PtzOp::Move { x, y, zoom } => ptz.continuous_move(*x, *y, *zoom).await?,
        PtzOp::Stop => ptz.stop().await?,
        PtzOp::Goto { preset } => ptz.goto_preset(preset).await?,
        PtzOp::SetPreset { name } => return Ok(Some(ptz.set_preset(name).await?)),
    }
    Ok(None)
}

/// Sets camera `name`'s clock through `device` to this box's UTC, or
/// points it at the NTP server `ntp`, and writes the audit entry
/// `camera.sync_time` (with the drift before and after; the drift after is
/// stored as the camera's, which clears its drift alert). Returns the
/// clock before and after.
pub async fn sync_time(
    device: &Device,
    db_path: &Path,
    actor: &str,
    name: &str,
    ntp: Option<&str>,
) -> Result<(CameraClock, CameraClock), ControlError> {
    let work = async {
        let before = device.clock().await?;
        match ntp {
            Some(server) => device.set_ntp(server).await?,
            None => device.set_clock_utc(crate::base::clock::now_ns() / 1_000_000).await?,
        }
        let after = device.clock().await?;
        Ok::<_, OnvifError>((before, after))
    };
    let result = match tokio::time::timeout(PTZ_TIMEOUT * 2, work).await {
        Ok(r) => r.map_err(ControlError::from),
        Err(_) => Err(ControlError::Timeout(PTZ_TIMEOUT * 2)),
    };
    let what = match ntp {
        Some(s) => format!("NTP server {s}"),
        None => "this box's UTC".to_string(),
    };
    let (outcome, detail, after) = match &result {
        Ok((b, a)) => (
            Outcome::Ok,
            format!("set to {what}; drift before {} ms, after {} ms", b.drift_ms, a.drift_ms),
            Some(a.drift_ms),
        ),
        Err(e) => (Outcome::Failed, format!("set to {what} failed: {e}"), None),
    };
    let detail = crate::base::text::one_line(&detail, 300);
    let (actor, camera) = (actor.to_string(), name.to_string());
    crate::db::Index::on_blocking_thread(db_path, move |idx| {
        let now = crate::base::clock::now_ns();
        crate::db::camera_clock::record_sync(idx, &actor, &camera, outcome, &detail, after, now)
    })
    .await
    .map_err(ControlError::Audit)?;
    result
}
