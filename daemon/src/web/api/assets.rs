//! The web UI's static files, compiled into the binary (nothing is fetched
//! from anywhere else).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};

use crate::web::auth::Ctx;
use crate::web::reply::{full, Body, Reply};
use crate::web::AppState;

/// `GET /`.
pub async fn index(_st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    Ok(asset("text/html; charset=utf-8", include_str!("../ui/index.html")))
}

/// `GET /app.js`.
pub async fn app_js(_st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    Ok(asset("text/javascript; charset=utf-8", include_str!("../ui/app.js")))
}

/// `GET /app.css`.
pub async fn app_css(_st: Arc<AppState>, _req: Request<Incoming>, _ctx: Ctx) -> Reply {
    Ok(asset("text/css; charset=utf-8", include_str!("../ui/app.css")))
}

/// A static file of the web UI (compiled into the binary; nothing is fetched
/// from anywhere else).
fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
