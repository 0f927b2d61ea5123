//! Dispatch: finds the row of [`ROUTES`] a request names (404 for an unknown
//! path, 405 for a known path with another method; HEAD is a method of its
//! own), runs the access check of that row, then its handler. Every response
//! carries the security headers and is counted for /metrics; errors are JSON
//! without internals.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::api::{RouteSpec, ROUTES};
use super::auth::{self, Ctx};
use super::reply::{harden, json_reply, ApiError, Body, Reply};
use super::AppState;

/// Entry point for every request.
pub async fn handle(st: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    st.counters.requests.fetch_add(1, Ordering::Relaxed);
    let mut r = match route_request(&st, req, peer).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = json_reply(e.status, &json!({ "error": e.message }));
            if let Some(s) = e.retry_after {
                if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                    r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
                }
            }
            r
        }
    };
    match r.status().as_u16() {
        400..=499 => st.counters.responses_4xx.fetch_add(1, Ordering::Relaxed),
        500..=599 => st.counters.responses_5xx.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    harden(&mut r);
    r
}

async fn route_request(st: &Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
    let (spec, params) = find(req.method().as_str(), req.uri().path())?;
    let caller = auth::authorize(st, &req, spec.access, spec.path).await?;
    (spec.handler)(st.clone(), req, Ctx { caller, params, peer }).await
}

/// The first row of [`ROUTES`] with this method and a pattern `path`
/// matches, and the path's `{x}` segments.
fn find(method: &str, path: &str) -> Result<(&'static RouteSpec, Vec<String>), ApiError> {
    let mut path_known = false;
    for r in ROUTES {
        if let Some(params) = matches(r.path, path) {
            path_known = true;
            if r.method == method {
                return Ok((r, params));
            }
        }
    }
    Err(if path_known {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else {
        ApiError::new(StatusCode::NOT_FOUND, "not found")
    })
}

/// Matches `path` against a route pattern; returns the `{x}` segments.
fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    if p.len() != s.len() {
        return None;
    }
    let mut params = Vec::new();
    for (a, b) in p.iter().zip(&s) {
        if a.starts_with('{') {
            let decoded = percent_decode(b)?;
            params.push(decoded);
        } else if a != b {
            return None;
        }
    }
    Some(params)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::users::Role;
    use crate::web::auth::{Access, BEFORE_MFA, BEFORE_PASSWORD_CHANGE};

    #[test]
    fn patterns_match_one_segment_and_decode_it() {
        assert_eq!(
            matches("/api/v1/cameras/{name}", "/api/v1/cameras/front"),
            Some(vec!["front".into()])
        );
        assert_eq!(
            matches("/api/v1/cameras/{name}", "/api/v1/cameras/..%2F..%2Fetc%2Fpasswd"),
            Some(vec!["../../etc/passwd".into()])
        );
        assert_eq!(matches("/api/v1/cameras/{name}", "/api/v1/cameras/a/b"), None);
        assert_eq!(matches("/health/live", "/health/live"), Some(vec![]));
        assert_eq!(matches("/health/live", "/health/live/"), Some(vec![]));
        assert_eq!(
            matches("/api/v1/cameras/{name}", "/api/v1/cameras/a+b"),
            Some(vec!["a+b".into()])
        );
    }

    /// A path that matches `pattern`, with `x1`, `x2`... for its segments.
    fn sample(pattern: &str) -> String {
        let mut n = 0;
        pattern
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    n += 1;
                    format!("x{n}")
                } else {
                    s.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_route_is_reached_by_its_own_row() {
        for (i, r) in ROUTES.iter().enumerate() {
            let (found, params) =
                find(r.method, &sample(r.path)).unwrap_or_else(|e| panic!("{} {}: {e:?}", r.method, r.path));
            assert!(
                found.method == r.method && found.path == r.path,
                "{} {} is shadowed by {} {}",
                r.method,
                r.path,
                found.method,
                found.path
            );
            assert_eq!(params.len(), r.path.matches('{').count());
            for other in &ROUTES[..i] {
                assert!(
                    !(other.method == r.method && other.path == r.path),
                    "{} {} is in the table twice",
                    r.method,
                    r.path
                );
            }
        }
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        let status = |m: &str, p: &str| find(m, p).err().map(|e| e.status);
        assert_eq!(status("GET", "/api/v1/nothing"), Some(StatusCode::NOT_FOUND));
        assert_eq!(status("GET", "/api/v1/cameras/a/b"), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            status("PATCH", "/api/v1/cameras/front"),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(status("HEAD", "/api/v1/me"), Some(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(status("GET", "/api/v1/login"), Some(StatusCode::METHOD_NOT_ALLOWED));
    }

    #[test]
    fn access_of_every_route() {
        let public = [
            "/",
            "/app.js",
            "/app.css",
            "/health/live",
            "/health/ready",
            "/api/v1/login",
        ];
        for r in ROUTES {
            let name = format!("{} {}", r.method, r.path);
            match r.access {
                Access::Public => assert!(public.contains(&r.path), "{name} is public"),
                Access::At(role) => {
                    assert!(!public.contains(&r.path), "{name} needs a login");
                    let admin_only = r.path.starts_with("/api/v1/users")
                        || r.path.starts_with("/api/v1/audit")
                        || r.path == "/api/v1/probe-camera"
                        || r.path.ends_with("/release")
                        || (r.path.starts_with("/api/v1/cameras") && r.method != "GET");
                    let operator = !admin_only
                        && (r.path.starts_with("/api/v1/exports") || (r.path == "/api/v1/holds" && r.method == "POST"));
                    let expect = if admin_only {
                        Role::Admin
                    } else if operator {
                        Role::Operator
                    } else {
                        Role::Viewer
                    };
                    assert_eq!(role, expect, "{name}");
                }
            }
        }
        for p in BEFORE_PASSWORD_CHANGE.iter().chain(BEFORE_MFA) {
            assert!(ROUTES.iter().any(|r| r.path == *p), "{p} is not a route");
        }
    }
}
