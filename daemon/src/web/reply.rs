//! Replies: [`ApiError`] (a status and a message, sent as JSON without
//! internals), JSON responses, the security headers every response carries,
//! request bodies (JSON, at most [`MAX_BODY`] bytes) and query parameters,
//! and the plain-HTTP listener's redirect.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::db::users;
use crate::web::limits::RequestDeadline;

/// Largest request body accepted (JSON).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    /// Logged in full; the client sees only that something failed.
    pub fn internal(detail: String) -> Self {
        tracing::error!("http: {detail}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<users::UserError> for ApiError {
    fn from(e: users::UserError) -> Self {
        match e {
            users::UserError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            users::UserError::BadName(_)
            | users::UserError::BadRole(_)
            | users::UserError::WeakPassword
            | users::UserError::CommonPassword
            | users::UserError::SamePassword => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            users::UserError::NoSuchUser(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<crate::db::IndexError> for ApiError {
    fn from(e: crate::db::IndexError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// Response bodies: whole (JSON) or streamed (video).
pub type Body = BoxBody<Bytes, std::io::Error>;

pub type Reply = Result<Response<Body>, ApiError>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn json_reply(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn ok(v: Value) -> Reply {
    Ok(json_reply(StatusCode::OK, &v))
}

/// The headers on every response (names in lower case): set by [`harden`]
/// on ours, and written by the connection into the server library's own
/// error responses (400, 431...).
pub const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("strict-transport-security", "max-age=31536000"),
    // MSE players need blob: media URLs; nothing else leaves 'self'.
    (
        "content-security-policy",
        "default-src 'self'; media-src 'self' blob:; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

/// Headers on every response.
pub fn harden(r: &mut Response<Body>) {
    let h = r.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
}

pub fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

/// The request's JSON body. It must have arrived by the request's deadline
/// (see [`crate::web::limits::RequestDeadline`]; 408 after it), however
/// slowly it trickles.
pub async fn body_json(req: Request<Incoming>) -> Result<Value, ApiError> {
    let deadline = req.extensions().get::<RequestDeadline>().cloned();
    let read = crate::base::body::read_whole(req.into_body(), MAX_BODY);
    let read = match &deadline {
        Some(d) => tokio::time::timeout_at(d.at.into(), read)
            .await
            .map_err(|_| ApiError::new(StatusCode::REQUEST_TIMEOUT, "the request was not sent in time"))?,
        None => read.await,
    };
    if let Some(d) = deadline {
        d.body_read();
    }
    let body = read.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY} bytes or unreadable"),
        )
    })?;
    serde_json::from_slice(&body).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "request body is not valid JSON"))
}

pub fn str_field<'a>(v: &'a Value, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("missing string field \"{k}\"")))
}

pub fn opt_str(v: &Value, k: &str) -> Result<Option<String>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("\"{k}\" must be a string"),
        )),
    }
}

pub fn time_param(q: &[(String, String)], k: &str) -> Result<Option<i64>, ApiError> {
    match param(q, k) {
        None => Ok(None),
        Some(s) => crate::base::time::parse_rfc3339(s)
            .map(Some)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("\"{k}\" must be an RFC 3339 time"))),
    }
}

pub fn time_field(v: &Value, k: &str) -> Result<i64, ApiError> {
    crate::base::time::parse_rfc3339(str_field(v, k)?)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{k}: {e}")))
}

pub fn id_param(params: &[String]) -> Result<i64, ApiError> {
    params
        .first()
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "the id must be a positive integer"))
}

/// The host name of a Host header without its port; None if it holds
/// anything a host name cannot (so a redirect never carries it elsewhere).
pub fn host_name(h: &str) -> Option<&str> {
    let name = match h.rsplit_once(':') {
        Some((n, p))
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!n.contains(':') || n.ends_with(']')) =>
        {
            n
        }
        _ => h,
    };
    let ok = !name.is_empty()
        && name.len() < 256
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    ok.then_some(name)
}

/// The plain-HTTP listener's only answer: a redirect to the same path over
/// HTTPS on `host` (the configured name, never the request's Host header),
/// or 403.
pub fn plain_reply(
    req: &Request<Incoming>,
    host: &str,
    https_port: u16,
    action: crate::config::http::PlainAction,
) -> Response<Body> {
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // Only an origin-form path: never `//other.host` or a scheme.
    let path = if path.starts_with('/') && !path.starts_with("//") {
        path
    } else {
        "/"
    };
    let mut r = match action {
        crate::config::http::PlainAction::Redirect => {
            let mut r = json_reply(StatusCode::PERMANENT_REDIRECT, &json!({ "error": "use HTTPS" }));
            if let Ok(v) = HeaderValue::from_str(&format!("https://{host}:{https_port}{path}")) {
                r.headers_mut().insert(hyper::header::LOCATION, v);
            }
            r
        }
        crate::config::http::PlainAction::Refuse => json_reply(
            StatusCode::FORBIDDEN,
            &json!({ "error": "plain HTTP is not served; use HTTPS" }),
        ),
    };
    harden(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("vigil.local:8080"), Some("vigil.local"));
        assert_eq!(host_name("vigil.local"), Some("vigil.local"));
        assert_eq!(host_name("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_name("evil.com/@x"), None);
        assert_eq!(host_name(""), None);
    }
}
