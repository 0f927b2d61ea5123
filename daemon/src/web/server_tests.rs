//! Attacks on a real listener on loopback (plain TCP: the TLS listener runs
//! the same connection code after its handshake): a trickled body, a
//! trickled head, malformed and oversized heads (hyper's own errors), a
//! full server shedding idle and slow clients for a newcomer, the
//! per-address cap and the redirect's host name; and the API's health
//! endpoints behind it (liveness when the database workers are all taken).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::*;
use crate::web::reply::{body_json, harden, json_reply};

fn limits(per_address: usize, per_network: usize, total: usize) -> ServerLimits {
    ServerLimits {
        per_address,
        per_network,
        total,
        handshake_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
    }
}

/// POST: reads the JSON body (as the API's handlers do); anything else: 200.
async fn handler(req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let mut r = if req.method() == hyper::Method::POST {
        match body_json(req).await {
            Ok(v) => json_reply(StatusCode::OK, &v),
            Err(e) => json_reply(e.status, &json!({ "error": e.message })),
        }
    } else {
        json_reply(StatusCode::OK, &json!({ "status": "live" }))
    };
    harden(&mut r);
    r
}

/// A listener on 0.0.0.0 (so every 127.x.y.z reaches it), stopped when the
/// sender is dropped.
async fn start(limits: ServerLimits) -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(serve_with(
        listener,
        None,
        limits,
        Arc::new(Uncounted),
        handler,
        true,
        rx,
    ));
    (port, tx)
}

async fn connect_from(from: &str, port: u16) -> std::io::Result<TcpStream> {
    let from: IpAddr = from.parse().unwrap();
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Everything the server sends until it closes or `limit` passes.
async fn read_all(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let end = Instant::now() + limit;
    loop {
        let mut b = [0u8; 4096];
        match tokio::time::timeout_at(end.into(), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&b[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

/// One GET from `from`: (response head and body, time taken).
async fn get(from: &str, port: u16) -> (String, Duration) {
    let t = Instant::now();
    let mut s = connect_from(from, port).await.unwrap();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_all(&mut s, Duration::from_secs(3)).await;
    (text, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_at_the_request_deadline() {
    let (port, _stop) = start(limits(8, 32, 64)).await;
    let mut s = connect_from("127.0.0.1", port).await.unwrap();
    let t = Instant::now();
    s.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), rd.read_to_end(&mut out)).await;
    let took = t.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&out);
    assert!(took < Duration::from_millis(2_500), "cut off after {took:?}");
    assert!(took >= Duration::from_millis(900), "cut off early, after {took:?}");
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_cut_off_at_the_request_deadline() {
    let (port, _stop) = start(limits(8, 32, 64)).await;
    let mut s = connect_from("127.0.0.1", port).await.unwrap();
    let t = Instant::now();
    s.write_all(b"GET /health/live HTTP/1.1\r\n").await.unwrap();
    let mut closed = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(format!("X-{i}: y\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
            assert!(matches!(r, Ok(0) | Err(_)), "answered a head never finished");
            closed = true;
            break;
        }
    }
    let took = t.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(took < Duration::from_millis(2_500), "cut off after {took:?}");
}

fn assert_hardened(text: &str) {
    let lower = text.to_ascii_lowercase();
    let head = lower.split("\r\n\r\n").next().unwrap_or_default();
    for (k, v) in SECURITY_HEADERS {
        let line = format!("\r\n{k}: {}\r\n", v.to_ascii_lowercase());
        assert_eq!(head.matches(&line).count(), 1, "{k} once in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_s_own_error_responses_carry_the_security_headers() {
    let (port, _stop) = start(limits(8, 32, 64)).await;
    // A malformed request line: hyper answers 400 itself.
    let mut s = connect_from("127.0.0.1", port).await.unwrap();
    s.write_all(b"GARBAGE\x01 / HTTP/9\r\n\r\n").await.unwrap();
    let (text, closed) = read_all(&mut s, Duration::from_secs(3)).await;
    assert!(closed && text.starts_with("HTTP/1.1 400"), "{text}");
    assert_hardened(&text);
    // A head over the buffer limit: 431.
    let mut s = connect_from("127.0.0.1", port).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD + 1024)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let (text, _) = read_all(&mut s, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_hardened(&text);
    // Our own responses have them once, not twice; two on one connection.
    let mut s = connect_from("127.0.0.1", port).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_all(&mut s, Duration::from_secs(3)).await;
    let second = text.rfind("HTTP/1.1 200").unwrap_or(0);
    assert!(second > 0, "{text}");
    assert_hardened(&text[..second]);
    assert_hardened(&text[second..]);
}

#[test]
fn security_headers_go_after_the_status_line_only_when_missing() {
    let raw = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    let out = String::from_utf8(with_security_headers(raw).unwrap()).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\nstrict-transport-security: "));
    assert!(out.ends_with("content-length: 0\r\n\r\n"));
    assert!(with_security_headers(out.as_bytes()).is_none());
    assert!(with_security_headers(b"{\"json\":1}").is_none());
    assert!(with_security_headers(b"HTTP/1.1 400 Bad Req").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_cap_is_refused_others_are_not() {
    let (port, _stop) = start(limits(2, 32, 64)).await;
    let _a = connect_from("127.0.0.2", port).await.unwrap();
    let _b = connect_from("127.0.0.2", port).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect_from("127.0.0.2", port).await.unwrap();
    let (text, closed) = read_all(&mut c, Duration::from_secs(2)).await;
    assert!(closed && text.is_empty(), "a third connection was served: {text}");
    let (text, took) = get("127.0.0.3", port).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// 1,024 connections from 32 addresses, idle or halfway through a request
/// head: a client from another address is answered within a second, from
/// another network and from theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_sheds_the_longest_waiting_clients_for_a_newcomer() {
    let mut l = limits(32, 2048, 1024);
    l.request_timeout = Duration::from_secs(30);
    let (port, _stop) = start(l).await;
    let mut hostile = Vec::new();
    for a in 2..34 {
        for i in 0..32 {
            let mut s = connect_from(&format!("127.0.0.{a}"), port).await.unwrap();
            if i % 2 == 1 {
                let _ = s.write_all(b"GET /health/live HTTP/1.1\r\n").await;
            }
            hostile.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for from in ["127.0.1.1", "127.0.0.1", "127.0.2.7"] {
        let (text, took) = get(from, port).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{from}: {text:?}");
        assert!(took < Duration::from_secs(1), "{from}: {took:?}");
    }
    // Three were shed to make room: the oldest ones.
    let mut closed = 0;
    for s in hostile.iter_mut().take(16) {
        let mut b = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no early hostile connection was shed");
}

/// A network at its cap: a newcomer of that network takes the place of its
/// longest-waiting connection; other networks are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_network_sheds_its_own_slowest_client() {
    let (port, _stop) = start(limits(4, 8, 1024)).await;
    let mut other = connect_from("127.0.9.1", port).await.unwrap();
    let mut hostile = Vec::new();
    for a in 2..4 {
        for _ in 0..4 {
            hostile.push(connect_from(&format!("127.0.0.{a}"), port).await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (text, took) = get("127.0.0.1", port).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_millis(100), other.read(&mut b)).await;
    assert!(r.is_err(), "another network's connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_names_the_configured_host_never_the_request_s() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_tx, rx) = watch::channel(false);
    tokio::spawn(serve_plain(
        listener,
        "vigil.example".into(),
        8443,
        crate::config::http::PlainAction::Redirect,
        limits(8, 32, 64),
        rx,
    ));
    for (request, location) in [
        (
            "GET /api/v1/me?x=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            "https://vigil.example:8443/api/v1/me?x=1",
        ),
        (
            "GET http://evil.example/a HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            "https://vigil.example:8443/a",
        ),
        ("GET / HTTP/1.1\r\n\r\n", "https://vigil.example:8443/"),
    ] {
        let mut s = connect_from("127.0.0.1", port).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let (text, _) = read_all(&mut s, Duration::from_secs(3)).await;
        assert!(text.starts_with("HTTP/1.1 308"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains(&format!("\r\nlocation: {location}\r\n")),
            "{text}"
        );
        assert!(!text.contains("evil"), "{text}");
        assert_hardened(&text);
    }
}

/// `/health/live` is a round trip through the API's database workers: 503
/// when they are all taken. Anonymous `/health/ready` is only a verdict.
#[test]
fn liveness_fails_when_the_api_cannot_answer_and_readiness_tells_strangers_only_the_verdict() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let st = crate::web::tests_support::app_state(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_stop, rx) = watch::channel(false);
        let app = st.clone();
        let handler = move |req, peer| crate::web::routes::handle(app.clone(), req, peer);
        tokio::spawn(serve_with(listener, None, limits(8, 32, 64), st, handler, true, rx));
        let ask = |path: &'static str| async move {
            let mut s = connect_from("127.0.0.1", port).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            read_all(&mut s, Duration::from_secs(5)).await.0
        };
        let text = ask("/health/live").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let text = ask("/health/ready").await;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(
            body == r#"{"status":"ok"}"# || body == r#"{"status":"not ready"}"#,
            "{text}"
        );
        // Every blocking worker taken (as by stalled requests holding them).
        let release = Arc::new(std::sync::Barrier::new(3));
        for _ in 0..2 {
            let r = release.clone();
            tokio::task::spawn_blocking(move || {
                r.wait();
            });
        }
        let t = Instant::now();
        let text = ask("/health/live").await;
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        release.wait();
        let text = ask("/health/live").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    });
}
