//! Dispatch: finds the row of [`ROUTES`] a request names (404 for an unknown
//! path, 405 for a known path with another method; HEAD is a method of its
//! own), checks the Origin and the body's type of anything that changes
//! state ([`check_boundary`]), runs the access check of that row, then its
//! handler. Every response
//! carries the security headers and is counted for /metrics; errors are JSON
//! without internals.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
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
    check_boundary(&req)?;
    let caller = auth::authorize(st, &req, spec.access, spec.path).await?;
    (spec.handler)(st.clone(), req, Ctx { caller, params, peer }).await
}

/// What every request that changes state (any method but GET and HEAD)
/// passes before its route's access check, whatever the route:
/// - with an `Origin` header, the origin must be this server (`https://`
///   and the host and port of the request's own `Host`), else 403: a page
///   of another site cannot make a browser change anything here;
/// - a body must be sent as `Content-Type: application/json`, else 415: a
///   cross-site HTML form can send `text/plain` or form data without a
///   preflight, never JSON (this closed login CSRF).
fn check_boundary<B: hyper::body::Body>(req: &Request<B>) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN) {
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let same = match (origin.to_str(), host) {
            (Ok(origin), Some(host)) => same_origin(origin, host),
            _ => false,
        };
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: the Origin is not this server",
            ));
        }
    }
    let has_body = !req.body().is_end_stream()
        && req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() != b"0");
    if has_body && !is_json(req.headers().get(hyper::header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request body as Content-Type: application/json",
        ));
    }
    Ok(())
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `origin` (`https://host[:port]`) is the server the request was
/// sent to (`host[:port]` of its Host header), 443 when no port is given.
/// `null`, another scheme, a path or another host or port is not.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some(authority) = origin.strip_prefix("https://") else {
        return false;
    };
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return false;
    }
    let with_port = |a: &str| -> String {
        let a = a.to_ascii_lowercase();
        // A port is what follows the last ':' outside an IPv6 literal's brackets.
        let has_port = a.rsplit_once(':').is_some_and(|(h, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!h.starts_with('[') || h.ends_with(']'))
        });
        if has_port {
            a
        } else {
            format!("{a}:443")
        }
    };
    with_port(authority) == with_port(host.trim())
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

    fn request(
        method: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Request<http_body_util::Full<bytes::Bytes>> {
        let mut b = Request::builder().method(method).uri("/api/v1/login");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())))
            .unwrap()
    }

    fn boundary_status(method: &str, headers: &[(&str, &str)], body: &'static str) -> Option<StatusCode> {
        check_boundary(&request(method, headers, body)).err().map(|e| e.status)
    }

    #[test]
    fn bodies_that_change_state_must_be_json() {
        let login = r#"{"name":"admin","password":"x"}"#;
        let json = ("content-type", "application/json");
        assert_eq!(boundary_status("POST", &[json], login), None);
        assert_eq!(
            boundary_status("POST", &[("content-type", "Application/JSON; charset=utf-8")], login),
            None
        );
        // The CSRF hole: JSON sent as text/plain by a cross-site form.
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "text/plain; application/json",
        ] {
            assert_eq!(
                boundary_status("POST", &[("content-type", ct)], login),
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{ct}"
            );
        }
        assert_eq!(
            boundary_status("POST", &[], login),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            boundary_status("PUT", &[], "{}"),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            boundary_status("DELETE", &[], "{}"),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        // No body (logout, disable, reset-mfa): nothing to type.
        assert_eq!(boundary_status("POST", &[], ""), None);
        assert_eq!(boundary_status("DELETE", &[], ""), None);
        assert_eq!(boundary_status("GET", &[("content-type", "text/plain")], "x"), None);
    }

    #[test]
    fn state_changes_from_another_origin_are_refused() {
        let json = ("content-type", "application/json");
        let host = ("host", "192.168.1.20:8443");
        let ok = |o: &str| boundary_status("POST", &[json, host, ("origin", o)], "{}");
        assert_eq!(ok("https://192.168.1.20:8443"), None);
        for evil in [
            "https://evil.example",
            "https://192.168.1.20",
            "http://192.168.1.20:8443",
            "https://192.168.1.20:8444",
            "https://192.168.1.20:8443.evil.example",
            "https://user@192.168.1.20:8443",
            "null",
            "",
        ] {
            assert_eq!(ok(evil), Some(StatusCode::FORBIDDEN), "{evil}");
        }
        // No Origin (curl, the CLI's scripts): allowed; GET is never checked.
        assert_eq!(boundary_status("POST", &[json, host], "{}"), None);
        assert_eq!(
            boundary_status("GET", &[host, ("origin", "https://evil.example")], ""),
            None
        );
        // An Origin without a Host to compare with: refused.
        assert_eq!(
            boundary_status("POST", &[json, ("origin", "https://192.168.1.20:8443")], "{}"),
            Some(StatusCode::FORBIDDEN)
        );
        // The Origin check comes first: a cross-site form gets 403, not 415.
        assert_eq!(
            boundary_status(
                "POST",
                &[host, ("origin", "https://evil.example"), ("content-type", "text/plain")],
                "{}"
            ),
            Some(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        assert!(same_origin("https://vigil.local", "vigil.local"));
        assert!(same_origin("https://vigil.local", "vigil.local:443"));
        assert!(same_origin("https://Vigil.Local:443", "vigil.local"));
        assert!(same_origin("https://[::1]:8443", "[::1]:8443"));
        assert!(!same_origin("https://[::1]", "[::1]:8443"));
        assert!(same_origin("https://[::1]", "[::1]"));
        assert!(!same_origin("https://vigil.local/", "vigil.local"));
        assert!(!same_origin("https://vigil.local:8443", "vigil.local"));
    }

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
            "/ui/{file}",
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
                        || r.path.starts_with("/api/v1/alerts/channels")
                        || r.path == "/api/v1/probe-camera"
                        || r.path.starts_with("/api/v1/onvif")
                        || r.path.ends_with("/release")
                        || (r.path.starts_with("/api/v1/cameras") && r.method != "GET" && !r.path.ends_with("/ptz"));
                    // PTZ lets viewers in so that its handler can refuse them with an audit entry
                    // (run::camera_control::ptz needs the operator role).
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
