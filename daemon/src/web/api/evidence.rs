//! Evidence: signed, bundled exports (made, listed, downloaded), legal holds
//! (placed, listed, released), the device's signing identity, signed
//! recording manifests and the fixity status of the archive.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::cameras::require_view;
use crate::evidence::bundle::Download;
use crate::web::auth::{caller_of, Ctx};
use crate::web::reply::{body_json, full, id_param, json_reply, ok, str_field, time_field, ApiError, Reply};
use crate::web::AppState;

/// Where finished export bundles are kept: `exports/` next to the database.
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

/// `GET /api/v1/device`.
pub async fn device(st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    let st = &st;
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

/// What a route names by id, for the camera-set check.
enum Subject {
    Recording(i64),
    Export(i64),
    Hold(i64),
}

/// The cameras `subject` covers: a recording's camera, an export's cameras,
/// a hold's range camera or those of the recording or export it holds. An
/// unknown id covers none.
fn cameras_of(idx: &crate::db::Index, subject: Subject) -> Result<Vec<String>, ApiError> {
    Ok(match subject {
        Subject::Recording(id) => idx
            .recording(id)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map(|r| vec![r.camera])
            .unwrap_or_default(),
        Subject::Export(id) => crate::db::exports::cameras_of(idx.conn(), id)?
            .map(|list| list.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        Subject::Hold(id) => match crate::db::holds::get(idx.conn(), id)? {
            Some(h) => hold_cameras(idx, &h)?,
            None => Vec::new(),
        },
    })
}

/// The cameras a hold covers: its range's camera, or those of the recording
/// or the export it holds.
fn hold_cameras(idx: &crate::db::Index, h: &crate::db::holds::Hold) -> Result<Vec<String>, ApiError> {
    match (&h.camera, h.recording_id, h.export_id) {
        (Some(cam), _, _) => Ok(vec![cam.clone()]),
        (None, Some(id), _) => cameras_of(idx, Subject::Recording(id)),
        (None, None, Some(id)) => cameras_of(idx, Subject::Export(id)),
        (None, None, None) => Ok(Vec::new()),
    }
}

/// The caller may see every camera of `subject` (403, audited, when not).
/// An unknown id passes: the route answers 404 for it as for anyone.
async fn require_view_of(
    st: &Arc<AppState>,
    c: &crate::web::auth::Caller,
    subject: Subject,
    action: &'static str,
) -> Result<(), ApiError> {
    if c.cameras.is_none() {
        return Ok(());
    }
    let cameras = st.db(move |idx| cameras_of(idx, subject)).await?;
    for cam in &cameras {
        require_view(st, c, cam, action).await?;
    }
    Ok(())
}

/// `GET /api/v1/recordings/{id}/manifest`: the signed manifest of one recording.
pub async fn recording_manifest(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let id = id_param(&ctx.params)?;
    let st = &st;
    let c = caller_of(ctx.caller)?;
    require_view_of(st, &c, Subject::Recording(id), "recording.manifest").await?;
    let key = device_key(st, "sign a recording manifest").await?;
    let signed = st
        .db(move |idx| {
            crate::evidence::manifest::recording_manifest(idx, &key, id)
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
    if let Ok(v) = HeaderValue::from_str(&vigil_format::bundle::key::base64(&sig)) {
        h.insert(HeaderName::from_static("x-signature-ed25519"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&fp) {
        h.insert(HeaderName::from_static("x-signing-key-fingerprint"), v);
    }
    Ok(r)
}

/// `GET /api/v1/exports`.
pub async fn list_exports(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let rows = st.db(|idx| Ok(crate::db::exports::list(idx.conn())?)).await?;
    ok(Value::Array(
        rows.iter()
            .filter(|e| e.cameras.split(',').all(|cam| c.may_view(cam)))
            .map(|e| {
                json!({
                    "id": e.id,
                    "created": crate::base::time::format_ns(e.created_ns),
                    "operator": e.operator,
                    "cameras": e.cameras.split(',').collect::<Vec<_>>(),
                    "start": crate::base::time::format_ns(e.start_ns),
                    "end": crate::base::time::format_ns(e.end_ns),
                    "bytes": e.bytes,
                    "sha256": vigil_format::hex(&e.sha256),
                    "downloadable": e.file_name.is_some(),
                    "held": e.held,
                })
            })
            .collect(),
    ))
}

/// `POST /api/v1/exports`: builds a signed evidence bundle (one at a time).
pub async fn create_export(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let st = &st;
    let c = caller_of(ctx.caller)?;
    let v = body_json(req).await?;
    let cameras: Vec<String> = match v.get("cameras").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => vec![str_field(&v, "camera")?.to_string()],
    };
    if cameras.is_empty() || cameras.len() > 16 || cameras.iter().any(|n| !crate::base::names::valid_camera_name(n)) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "name 1 to 16 valid cameras"));
    }
    for cam in &cameras {
        require_view(st, &c, cam, "export.bundle").await?;
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
            audit_destination: None,
            store_in: Some(&dir),
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
                return Err(ApiError::new(status, e.to_string()));
            }
        };
        let sha = rep.archive_sha256.unwrap_or(rep.manifest_sha256);
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

/// `GET /api/v1/exports/{id}/download`: the bundle's file, audited.
pub async fn download_export(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let id = id_param(&ctx.params)?;
    let st = &st;
    let c = caller_of(ctx.caller)?;
    // An export of a camera outside the caller's set is not theirs to see.
    let cameras = st.db(move |idx| cameras_of(idx, Subject::Export(id))).await?;
    if cameras.iter().any(|cam| !c.may_view(cam)) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no downloadable export {id}"),
        ));
    }
    let slot = super::recordings::stream_slot(st, &c)?;
    let dir = exports_dir(st);
    let download = st
        .db(move |idx| Ok(crate::evidence::bundle::open_download(idx.conn(), &dir, id, &c.actor)?))
        .await?;
    let (file, bytes, sha, created_ns) = match download {
        Download::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no downloadable export {id}"),
            ))
        }
        Download::Gone(e) => {
            return Err(ApiError::new(
                StatusCode::GONE,
                format!("export {id}'s file is gone: {e}"),
            ))
        }
        Download::Ready {
            file,
            bytes,
            sha256,
            created_ns,
        } => (file, bytes, sha256, created_ns),
    };
    let sha_hex = vigil_format::hex(&sha);
    // Read on demand, 256 KiB at a time on a short blocking task: a client
    // that does not read holds no thread.
    let file = Arc::new(std::sync::Mutex::new(file));
    let stream = futures::stream::unfold(Some((file, slot)), |state| async move {
        let (file, slot) = state?;
        let f = file.clone();
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 256 * 1024];
            let mut file = f
                .lock()
                .map_err(|_| std::io::Error::other("export file lock poisoned"))?;
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match read {
            Ok(buf) if buf.is_empty() => None,
            Ok(buf) => Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), Some((file, slot)))),
            Err(e) => Some((Err(e), None)),
        }
    });
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

/// A required string field of free text (a reason): no control characters.
fn free_text_field(v: &Value, k: &str) -> Result<String, ApiError> {
    let s = str_field(v, k)?;
    if !crate::base::names::valid_free_text(s) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("\"{k}\": {}", crate::base::names::FREE_TEXT_RULE),
        ));
    }
    Ok(s.to_string())
}

/// `GET /api/v1/holds` (`?all=1`: released ones too).
pub async fn list_holds(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let all = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "all=1" || p == "all=true"));
    let limited = c.cameras.is_some();
    let holds = st
        .db(move |idx| {
            let holds = crate::db::holds::list(idx.conn(), all)?;
            // With a camera set, each hold with the cameras it covers (a
            // recording's, an export's, a range's).
            let mut out = Vec::with_capacity(holds.len());
            for h in holds {
                let cams = if limited { hold_cameras(idx, &h)? } else { Vec::new() };
                out.push((h, cams));
            }
            Ok(out)
        })
        .await?;
    // A hold on a camera outside the caller's set is not shown.
    ok(Value::Array(
        holds
            .iter()
            .filter(|(_, cams)| cams.iter().all(|cam| c.may_view(cam)))
            .map(|(h, _)| hold_json(h))
            .collect(),
    ))
}

/// `POST /api/v1/holds`.
pub async fn place_hold(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    use crate::db::holds::HoldTarget;
    let c = caller_of(ctx.caller)?;
    let v = body_json(req).await?;
    let reason = free_text_field(&v, "reason")?;
    let target = if let Some(id) = v.get("recording_id").and_then(Value::as_i64) {
        require_view_of(&st, &c, Subject::Recording(id), "hold.place").await?;
        HoldTarget::Recording(id)
    } else if let Some(id) = v.get("export_id").and_then(Value::as_i64) {
        require_view_of(&st, &c, Subject::Export(id), "hold.place").await?;
        HoldTarget::Export(id)
    } else {
        let camera = str_field(&v, "camera")?.to_string();
        require_view(&st, &c, &camera, "hold.place").await?;
        HoldTarget::Range {
            camera,
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

/// `POST /api/v1/holds/{id}/release`.
pub async fn release_hold(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> Reply {
    let id = id_param(&ctx.params)?;
    let c = caller_of(ctx.caller)?;
    let v = body_json(req).await?;
    let reason = free_text_field(&v, "reason")?;
    // Releasing lets retention delete footage: only on cameras of the set.
    require_view_of(&st, &c, Subject::Hold(id), "hold.release").await?;
    let actor = c.actor.clone();
    let hold = st
        .db(move |idx| crate::db::holds::release(idx.conn(), id, &reason, &actor).map_err(hold_error))
        .await?;
    ok(hold_json(&hold))
}

/// `GET /api/v1/fixity`.
pub async fn fixity(st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let c = caller_of(ctx.caller)?;
    let mut s = st.db(|idx| Ok(crate::db::fixity::status(idx.conn())?)).await?;
    // Failures name a camera and its file: only those of the caller's set.
    s.failures.retain(|f| c.may_view(&f.camera));
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
