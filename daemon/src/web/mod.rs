//! The HTTPS server: hyper 1 over tokio-rustls (TLS 1.3 only unless TLS 1.2
//! is configured). Every connection is its own task, bounded by a TLS
//! handshake timeout, a header read timeout and a per-client-address
//! connection cap, so slow or idle clients cannot starve others.
//!
//! Requests go to [`routes::handle`], which finds the route in the one
//! table [`api::ROUTES`], checks access ([`auth`]) and runs the handler of
//! the route's resource group (`api/*.rs`); [`reply`] has the JSON replies
//! and errors.

pub mod api;
pub mod auth;
pub mod reply;
pub mod routes;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::db::users::Throttle;
use crate::db::Index;
use crate::keys::keyring::Keyring;
use crate::storage::Storage;

/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request headers (and the wait for the next request on a kept-alive
/// connection) must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections from all clients together.
const MAX_CONNECTIONS: usize = 1024;

/// A stream that notes when it last moved a byte.
struct Activity<S> {
    inner: S,
    last: Arc<std::sync::atomic::AtomicU64>,
    epoch: std::time::Instant,
}

impl<S> Activity<S> {
    fn touch(&self) {
        self.last.store(
            self.epoch.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Activity<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Activity<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts open connections per client address.
#[derive(Default)]
pub struct ConnLimiter {
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    fn acquire(self: &Arc<Self>, ip: IpAddr, per_ip: usize) -> Option<ConnGuard> {
        let mut m = self.by_ip.lock().ok()?;
        let total: usize = m.values().sum();
        let n = m.entry(ip).or_insert(0);
        if *n >= per_ip || total >= MAX_CONNECTIONS {
            return None;
        }
        *n += 1;
        Some(ConnGuard {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.limiter.by_ip.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// Counters for /metrics.
#[derive(Default)]
pub struct Counters {
    pub requests: std::sync::atomic::AtomicU64,
    pub responses_4xx: std::sync::atomic::AtomicU64,
    pub responses_5xx: std::sync::atomic::AtomicU64,
    pub refused_connections: std::sync::atomic::AtomicU64,
    pub logins_ok: std::sync::atomic::AtomicU64,
    pub logins_failed: std::sync::atomic::AtomicU64,
}

/// What every request handler can reach.
pub struct AppState {
    pub db_path: PathBuf,
    pub keyring: Arc<Keyring>,
    pub storage: Storage,
    pub cameras: Arc<crate::run::cameras::Supervisor>,
    pub throttle: Mutex<Throttle>,
    /// The daemon's clock (sessions, login throttling, TOTP).
    pub clock: crate::base::clock::Clocks,
    pub counters: Counters,
    pub fingerprint: String,
    pub started: std::time::Instant,
    pub live: Arc<crate::ingest::live::LiveHub>,
    /// Admins must enrol TOTP before anything else.
    pub require_admin_mfa: bool,
    /// Server-sent events, already formatted (`event: ...\ndata: ...\n\n`).
    pub events: tokio::sync::broadcast::Sender<String>,
    /// Set when the recordings are not on a LUKS2 volume (allowed by config).
    pub volume_warning: Option<String>,
    /// One evidence bundle is built at a time (they read whole ranges).
    pub export_gate: tokio::sync::Semaphore,
    /// The audit of footage leaving (playback, downloads, live view).
    pub egress: Arc<crate::evidence::egress::EgressLog>,
    /// Footage streams open at once, per caller and in total.
    pub streams: Arc<crate::evidence::egress::StreamGate>,
    pool: Mutex<Vec<Index>>,
}

impl AppState {
    pub fn new(
        db_path: PathBuf,
        keyring: Arc<Keyring>,
        storage: Storage,
        cameras: Arc<crate::run::cameras::Supervisor>,
        fingerprint: String,
        live: Arc<crate::ingest::live::LiveHub>,
        clock: crate::base::clock::Clocks,
    ) -> Self {
        AppState {
            volume_warning: None,
            export_gate: tokio::sync::Semaphore::new(1),
            egress: Arc::new(crate::evidence::egress::EgressLog::new(
                db_path.clone(),
                crate::evidence::egress::DEFAULT_WINDOW,
            )),
            streams: Arc::default(),
            db_path,
            keyring,
            storage,
            cameras,
            throttle: Mutex::new(Throttle::new(clock.clone())),
            clock,
            counters: Counters::default(),
            fingerprint,
            started: std::time::Instant::now(),
            live,
            require_admin_mfa: false,
            events: tokio::sync::broadcast::channel(256).0,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Cameras from vigil.toml, then the running ones added from the web UI.
    pub fn active_cameras(&self) -> Vec<String> {
        let mut v = self.cameras.provisioned().to_vec();
        for n in self.cameras.running() {
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }

    /// Runs blocking database work off the async threads, on a pooled connection.
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Index) -> Result<T, reply::ApiError> + Send + 'static,
    ) -> Result<T, reply::ApiError> {
        let st = self.clone();
        tokio::task::spawn_blocking(move || {
            let idx = match st.pool.lock().ok().and_then(|mut p| p.pop()) {
                Some(i) => i,
                None => Index::open_existing(&st.db_path).map_err(|e| reply::ApiError::internal(e.to_string()))?,
            };
            let r = f(&idx);
            if let Ok(mut p) = st.pool.lock() {
                if p.len() < 8 {
                    p.push(idx);
                }
            }
            r
        })
        .await
        .map_err(|e| reply::ApiError::internal(e.to_string()))?
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    per_ip: usize,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let limiter = Arc::new(ConnLimiter::default());
    tokio::spawn(watch_events(state.clone(), shutdown.clone()));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(guard) = limiter.acquire(peer.ip(), per_ip) else {
            state
                .counters
                .refused_connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let st = state.clone();
        let acc = acceptor.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
            serve_connection(st, tls, peer, idle_timeout).await;
        });
    }
}

/// Serves one connection; closes it when no byte has moved for `idle_timeout`
/// (a kept-alive connection waiting for its next request, a stalled reader).
async fn serve_connection(
    st: Arc<AppState>,
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    idle_timeout: Duration,
) {
    let svc = service_fn(move |req| {
        // (returns a streamed or whole body; see reply::Body)
        let st = st.clone();
        async move { Ok::<_, Infallible>(routes::handle(st, req, peer).await) }
    });
    let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let epoch = std::time::Instant::now();
    let io = Activity {
        inner: tls,
        last: last.clone(),
        epoch,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = None;
    loop {
        tokio::select! {
            _ = &mut conn => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let idle = epoch.elapsed().as_millis() as u64 - last.load(std::sync::atomic::Ordering::Relaxed);
                match closing {
                    None if idle >= idle_timeout.as_millis() as u64 => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(std::time::Instant::now());
                    }
                    // A response that cannot finish (its reader stalled): drop it.
                    Some(t) if t.elapsed() > Duration::from_secs(5) => return,
                    _ => {}
                }
            }
        }
    }
}

/// The optional plain-HTTP listener: every request is redirected (308) to
/// the same path on HTTPS, or refused (403); nothing else is served.
pub async fn serve_plain(
    listener: TcpListener,
    https_port: u16,
    action: crate::config::PlainAction,
    per_ip: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let limiter = Arc::new(ConnLimiter::default());
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(guard) = limiter.acquire(peer.ip(), per_ip) else {
            continue;
        };
        tokio::spawn(async move {
            let _guard = guard;
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
                Ok::<_, Infallible>(reply::plain_reply(&req, https_port, action))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(HEADER_TIMEOUT + Duration::from_secs(5), conn).await;
        });
    }
}

/// Turns changes in the index into server-sent events, polled once a second:
/// camera state changes, new recordings, free space falling below 10 %.
async fn watch_events(st: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let mut states: HashMap<String, String> = HashMap::new();
    let mut last_recording: Option<i64> = None;
    let mut disk_low = false;
    let mut fixity_failed: std::collections::HashSet<i64> = Default::default();
    let mut paused: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = st
            .db(|idx| {
                let cams = idx.cameras()?;
                let newest = idx.newest_recording_id()?;
                let new = match newest {
                    Some(n) => idx.recordings_page(None, n - 50, 50)?,
                    None => Vec::new(),
                };
                let failures = crate::db::fixity::failures(idx.conn())?;
                Ok((cams, newest, new, failures))
            })
            .await;
        let Ok((cams, newest, recent, failures)) = snapshot else {
            continue;
        };
        let send = |kind: &str, v: serde_json::Value| {
            let _ = st.events.send(format!("event: {kind}\ndata: {v}\n\n"));
        };
        for c in cams {
            if states.get(&c.name) != Some(&c.state) {
                if states.contains_key(&c.name) || c.state != "unknown" {
                    send(
                        "camera",
                        serde_json::json!({ "camera": c.name, "state": c.state, "error": c.last_error }),
                    );
                }
                states.insert(c.name.clone(), c.state.clone());
            }
        }
        if let Some(prev) = last_recording {
            for r in recent.iter().filter(|r| r.id > prev) {
                send(
                    "recording",
                    serde_json::json!({ "camera": r.camera, "id": r.id, "start": crate::base::time::format_ns(r.start_wall_ns) }),
                );
            }
        }
        last_recording = newest.or(last_recording).or(Some(0));
        for f in failures {
            if fixity_failed.insert(f.id) {
                send(
                    "integrity",
                    serde_json::json!({ "camera": f.camera, "recording_id": f.id, "error": format!("fixity: {}", f.detail) }),
                );
            }
        }
        let now_paused = st.storage.alarm().paused();
        if now_paused != paused {
            send("storage", serde_json::json!({ "paused": now_paused }));
            paused = now_paused;
        }
        if let Some((avail, total)) = crate::base::host::fs_space(st.storage.dir()) {
            let low = total > 0 && avail * 10 < total;
            if low && !disk_low {
                send(
                    "disk_low",
                    serde_json::json!({ "free_bytes": avail, "total_bytes": total }),
                );
            }
            disk_low = low;
        }
    }
}
