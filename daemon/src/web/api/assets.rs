//! The web UI's static files, compiled into the binary (nothing is fetched
//! from anywhere else).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use crate::web::auth::Ctx;
use crate::web::reply::{full, ApiError, Body, Reply};
use crate::web::AppState;

/// `GET /`.
pub async fn index(_st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    Ok(asset("text/html; charset=utf-8", include_str!("../ui/index.html")))
}

/// `GET /app.js`.
pub async fn app_js(_st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    Ok(asset(JS, include_str!("../ui/app.js")))
}

/// `GET /app.css`.
pub async fn app_css(_st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    Ok(asset("text/css; charset=utf-8", include_str!("../ui/app.css")))
}

/// The UI's modules, by the name under `/ui/`: a fixed list compiled into
/// the binary. Each page owns one module; `common.js` is shared.
const UI_FILES: &[(&str, &str, &str)] = &[
    ("common.js", JS, include_str!("../ui/common.js")),
    ("live.js", JS, include_str!("../ui/live.js")),
    ("playback.js", JS, include_str!("../ui/playback.js")),
    ("timeline.js", JS, include_str!("../ui/timeline.js")),
    ("dashboard.js", JS, include_str!("../ui/dashboard.js")),
    ("admin.js", JS, include_str!("../ui/admin.js")),
    ("alerts.js", JS, include_str!("../ui/alerts.js")),
    ("ptz.js", JS, include_str!("../ui/ptz.js")),
    ("onvif.js", JS, include_str!("../ui/onvif.js")),
    ("media.css", CSS, include_str!("../ui/media.css")),
];

const CSS: &str = "text/css; charset=utf-8";

const JS: &str = "text/javascript; charset=utf-8";

/// `GET /ui/{file}`: one of [`UI_FILES`], else 404.
pub async fn ui_file(_st: Arc<AppState>, _req: Request<Incoming>, ctx: Ctx) -> Reply {
    let name = ctx.params.into_iter().next().unwrap_or_default();
    match UI_FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => Ok(asset(content_type, body)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such file")),
    }
}

/// A static file of the web UI (compiled into the binary; nothing is fetched
/// from anywhere else). Debug builds only: with `VIGIL_DEV_UI_DIR` set (the
/// source folder `daemon/src/web/ui`), the file is read from there instead,
/// so a changed script needs no rebuild while developing. Release builds
/// have no such path.
fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    #[cfg(debug_assertions)]
    if let Some(dev) = dev_copy(body) {
        let mut r = Response::new(full(dev));
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return r;
    }
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The development copy of the compiled-in file whose text is `body`: the
/// file of the same name in `VIGIL_DEV_UI_DIR` (debug builds only).
#[cfg(debug_assertions)]
fn dev_copy(body: &'static str) -> Option<String> {
    let dir = std::env::var_os("VIGIL_DEV_UI_DIR")?;
    let name = [
        ("index.html", include_str!("../ui/index.html")),
        ("app.js", include_str!("../ui/app.js")),
        ("app.css", include_str!("../ui/app.css")),
    ]
    .into_iter()
    .chain(UI_FILES.iter().map(|(n, _, b)| (*n, *b)))
    .find(|(_, b)| *b == body)?
    .0;
    std::fs::read_to_string(std::path::Path::new(&dir).join(name)).ok()
}
