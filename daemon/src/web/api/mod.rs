//! The API: [`ROUTES`], the one table of every route the server answers
//! (method, path, who may call it, its handler), and the handlers, one file
//! per resource group. `vigil http-routes` prints the table; the dispatcher
//! in `web::routes` and the access-control tests read it.

pub mod alerts;
pub mod assets;
pub mod audit;
pub mod cameras;
pub mod events;
pub mod evidence;
pub mod health;
pub mod live;
pub mod onvif;
pub mod ptz;
pub mod recordings;
pub mod session;
pub mod storage;
pub mod tokens;
pub mod transcode;
pub mod users;

use std::sync::Arc;

use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper::Request;

use super::auth::Access;
use super::auth::Ctx;
use super::reply::Reply;
use super::AppState;
use crate::db::users::Role;

/// A route's handler: every handler takes the same arguments, so each row
/// of [`ROUTES`] names one and a route cannot be without one.
pub type Handler = fn(Arc<AppState>, Request<Incoming>, Ctx) -> BoxFuture<'static, Reply>;

/// A route: method, path (`{x}` is one segment), access, handler.
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

/// A [`Handler`] from an `async fn(Arc<AppState>, Request<Incoming>, Ctx) -> Reply`.
macro_rules! handler {
    ($f:path) => {{
        fn boxed(st: Arc<AppState>, req: Request<Incoming>, ctx: Ctx) -> BoxFuture<'static, Reply> {
            Box::pin($f(st, req, ctx))
        }
        boxed as Handler
    }};
}

const fn route(method: &'static str, path: &'static str, access: Access, handler: Handler) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        handler,
    }
}

const PUBLIC: Access = Access::Public;
const VIEWER: Access = Access::At(Role::Viewer);
const OPERATOR: Access = Access::At(Role::Operator);
const ADMIN: Access = Access::At(Role::Admin);

/// Every route the server answers. `vigil http-routes` prints this table and
/// the RBAC test checks that each has a row in its matrix.
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/", PUBLIC, handler!(assets::index)),
    route("GET", "/app.js", PUBLIC, handler!(assets::app_js)),
    route("GET", "/app.css", PUBLIC, handler!(assets::app_css)),
    route("GET", "/ui/{file}", PUBLIC, handler!(assets::ui_file)),
    route("GET", "/health/live", PUBLIC, handler!(health::live)),
    route("GET", "/health/ready", PUBLIC, handler!(health::ready)),
    route("GET", "/metrics", VIEWER, handler!(health::metrics)),
    route("POST", "/api/v1/login", PUBLIC, handler!(session::login)),
    route("POST", "/api/v1/logout", VIEWER, handler!(session::logout)),
    route("GET", "/api/v1/me", VIEWER, handler!(session::me)),
    route(
        "POST",
        "/api/v1/me/password",
        VIEWER,
        handler!(session::change_password),
    ),
    route("POST", "/api/v1/me/mfa", VIEWER, handler!(session::mfa_start)),
    route("POST", "/api/v1/me/mfa/confirm", VIEWER, handler!(session::mfa_confirm)),
    route("GET", "/api/v1/cameras", VIEWER, handler!(cameras::list)),
    route("POST", "/api/v1/cameras", ADMIN, handler!(cameras::add)),
    route("GET", "/api/v1/cameras/{name}", VIEWER, handler!(cameras::get)),
    route("PUT", "/api/v1/cameras/{name}", ADMIN, handler!(cameras::update)),
    route("DELETE", "/api/v1/cameras/{name}", ADMIN, handler!(cameras::delete)),
    route(
        "GET",
        "/api/v1/cameras/{name}/snapshot.mp4",
        VIEWER,
        handler!(live::snapshot),
    ),
    route("POST", "/api/v1/probe-camera", ADMIN, handler!(cameras::probe)),
    route("POST", "/api/v1/cameras/onvif", ADMIN, handler!(onvif::add)),
    route("GET", "/api/v1/onvif/discover", ADMIN, handler!(onvif::discover)),
    route(
        "GET",
        "/api/v1/cameras/{name}/view.mp4",
        VIEWER,
        handler!(recordings::view_mp4),
    ),
    route(
        "GET",
        "/api/v1/cameras/{name}/live.mp4",
        VIEWER,
        handler!(live::live_mp4),
    ),
    route("GET", "/api/v1/cameras/{name}/live", VIEWER, handler!(live::live_mp4)),
    route("POST", "/api/v1/cameras/{name}/ptz", VIEWER, handler!(ptz::command)),
    route(
        "GET",
        "/api/v1/cameras/{name}/view.json",
        VIEWER,
        handler!(recordings::view_json),
    ),
    route("GET", "/api/v1/transcode", VIEWER, handler!(transcode::status)),
    route("GET", "/api/v1/recordings", VIEWER, handler!(recordings::list)),
    route(
        "GET",
        "/api/v1/recordings/{id}/manifest",
        VIEWER,
        handler!(evidence::recording_manifest),
    ),
    route("GET", "/api/v1/exports", OPERATOR, handler!(evidence::list_exports)),
    route("POST", "/api/v1/exports", OPERATOR, handler!(evidence::create_export)),
    route(
        "GET",
        "/api/v1/exports/{id}/download",
        OPERATOR,
        handler!(evidence::download_export),
    ),
    route("GET", "/api/v1/holds", VIEWER, handler!(evidence::list_holds)),
    route("POST", "/api/v1/holds", OPERATOR, handler!(evidence::place_hold)),
    route(
        "POST",
        "/api/v1/holds/{id}/release",
        ADMIN,
        handler!(evidence::release_hold),
    ),
    route("GET", "/api/v1/fixity", VIEWER, handler!(evidence::fixity)),
    route("GET", "/api/v1/device", VIEWER, handler!(evidence::device)),
    route("GET", "/api/v1/events", VIEWER, handler!(events::stream_or_list)),
    route("GET", "/api/v1/alerts", VIEWER, handler!(alerts::list)),
    route("GET", "/api/v1/alerts/channels", ADMIN, handler!(alerts::channels_list)),
    route(
        "PUT",
        "/api/v1/alerts/channels/{name}",
        ADMIN,
        handler!(alerts::channel_put),
    ),
    route(
        "DELETE",
        "/api/v1/alerts/channels/{name}",
        ADMIN,
        handler!(alerts::channel_delete),
    ),
    route(
        "POST",
        "/api/v1/alerts/channels/{name}/test",
        ADMIN,
        handler!(alerts::channel_test),
    ),
    route("GET", "/api/v1/users", ADMIN, handler!(users::list)),
    route("POST", "/api/v1/users", ADMIN, handler!(users::add)),
    route("POST", "/api/v1/users/{name}/disable", ADMIN, handler!(users::disable)),
    route("POST", "/api/v1/users/{name}/enable", ADMIN, handler!(users::enable)),
    route(
        "POST",
        "/api/v1/users/{name}/reset-mfa",
        ADMIN,
        handler!(users::reset_mfa),
    ),
    route(
        "PUT",
        "/api/v1/users/{name}/cameras",
        ADMIN,
        handler!(users::set_cameras),
    ),
    route("GET", "/api/v1/tokens", VIEWER, handler!(tokens::list)),
    route("POST", "/api/v1/tokens", VIEWER, handler!(tokens::create)),
    route("DELETE", "/api/v1/tokens/{name}", VIEWER, handler!(tokens::revoke)),
    route("GET", "/api/v1/audit", ADMIN, handler!(audit::log)),
    route("GET", "/api/v1/audit/verify", ADMIN, handler!(audit::verify)),
    route("DELETE", "/api/v1/users/{name}", ADMIN, handler!(users::delete)),
    route("POST", "/api/v1/users/{name}/role", ADMIN, handler!(users::set_role)),
    route(
        "POST",
        "/api/v1/users/{name}/password",
        ADMIN,
        handler!(users::reset_password),
    ),
    route(
        "DELETE",
        "/api/v1/cameras/{name}/recordings",
        ADMIN,
        handler!(cameras::delete_archive),
    ),
    route("GET", "/api/v1/timeline", VIEWER, handler!(storage::timeline)),
    route("GET", "/api/v1/storage", VIEWER, handler!(storage::storage)),
];
