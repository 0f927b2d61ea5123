//! The listeners: hyper 1 over tokio-rustls (HTTPS) or plain TCP (the
//! redirect). Each connection is its own task holding a [`Slot`] of the
//! listener's [`Registry`] (caps per address, per network and in all; the
//! longest-waiting client shed first when full) and is closed when
//! - its TLS handshake takes longer than the handshake timeout;
//! - a request's head and body have not both arrived within the request
//!   timeout of its first byte, however slowly they trickle (hyper's header
//!   timeout covers the head, [`RequestDeadline`] the body, and a watchdog
//!   here both);
//! - no byte has moved for the idle timeout;
//! - it is shed to make room.
//!
//! [`Watched`], the stream wrapper, records what the connection does for the
//! registry, and writes the security headers into the responses hyper makes
//! on its own (400 for a malformed request, 431 for an oversized head),
//! which no handler sees.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

use super::limits::{ConnStats, Phase, Refused, Registry, RequestDeadline, ServerLimits, Slot};
use super::reply::{Body, SECURITY_HEADERS};
use super::AppState;
use crate::base::clock::mono_ms;

/// Largest request head (and read buffer) per connection: bounded memory
/// under many connections; a bigger head gets 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// How often a connection's watchdog looks at it.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// A response that cannot finish after a graceful close began is dropped after this.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Past the request deadline, the handler has this long to answer 408.
const DEADLINE_GRACE_MS: i64 = 500;

/// Counts what the listener refused and shed (for /metrics).
pub trait ConnCounters: Send + Sync + 'static {
    fn refused(&self);
    fn shed(&self, n: usize);
}

impl ConnCounters for AppState {
    fn refused(&self) {
        self.counters.refused_connections.fetch_add(1, Ordering::Relaxed);
    }
    fn shed(&self, n: usize) {
        self.counters.shed_connections.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Accepts HTTPS connections until `shutdown` turns true; requests go to
/// [`super::routes::handle`].
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: ServerLimits,
    shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(super::watch_events(state.clone(), shutdown.clone()));
    let st = state.clone();
    let handler = move |req, peer| super::routes::handle(st.clone(), req, peer);
    serve_with(listener, Some(acceptor), limits, state, handler, true, shutdown).await;
}

/// The optional plain-HTTP listener: every request is redirected (308) to
/// the same path on HTTPS at `host`, or refused (403); nothing else is served.
pub async fn serve_plain(
    listener: TcpListener,
    host: String,
    https_port: u16,
    action: crate::config::http::PlainAction,
    limits: ServerLimits,
    shutdown: watch::Receiver<bool>,
) {
    let host: Arc<str> = host.into();
    let handler = move |req: Request<Incoming>, _peer| {
        let r = super::reply::plain_reply(&req, &host, https_port, action);
        async move { r }
    };
    serve_with(listener, None, limits, Arc::new(Uncounted), handler, false, shutdown).await;
}

struct Uncounted;

impl ConnCounters for Uncounted {
    fn refused(&self) {}
    fn shed(&self, _: usize) {}
}

/// Accepts connections (TLS when `tls` is given) and serves each with
/// `handler` under `limits`, until `shutdown` turns true.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    counters: Arc<dyn ConnCounters>,
    handler: H,
    keep_alive: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let registry = Registry::new(limits);
    tokio::spawn(release_memory_after_load(registry.clone(), shutdown.clone()));
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
        let slot = match registry.admit(peer.ip()) {
            Ok(a) => {
                if a.shed > 0 {
                    counters.shed(a.shed);
                }
                a.slot
            }
            Err(Refused::Address) | Err(Refused::Full) => {
                counters.refused();
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            slot,
            limits: registry.limits().clone(),
            peer,
            keep_alive,
            spare: None,
        };
        tokio::spawn(conn.run(tcp, tls.clone(), handler.clone()));
    }
}

struct Connection {
    slot: Slot,
    limits: ServerLimits,
    peer: SocketAddr,
    keep_alive: bool,
    /// A duplicate of the socket, for a lingering close ([`linger`]).
    spare: Option<std::net::TcpStream>,
}

impl Connection {
    async fn run<H, F>(mut self, tcp: TcpStream, tls: Option<TlsAcceptor>, handler: H)
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let kill = self.slot.kill.clone();
        // A second handle on the socket, for a lingering close.
        match spare_handle(&tcp) {
            Ok(spare) => self.spare = Some(spare),
            Err(_) => return,
        }
        match tls {
            None => {
                self.slot.stats.enter(Phase::Idle, mono_ms());
                self.serve_http(tcp, handler).await
            }
            Some(acc) => {
                // The handshake (and the wait for this address's turn at
                // one) must finish within the handshake timeout.
                let turns = self.slot.handshake_turns.clone();
                let handshake = tokio::time::timeout(self.limits.handshake_timeout, async move {
                    let _turn = turns.acquire_owned().await.ok()?;
                    acc.accept(tcp).await.ok()
                });
                let stream = tokio::select! {
                    r = handshake => match r {
                        Ok(Some(s)) => s,
                        _ => return,
                    },
                    _ = kill.notified() => return,
                };
                self.slot.stats.enter(Phase::Idle, mono_ms());
                self.serve_http(stream, handler).await
            }
        }
    }

    /// Serves HTTP/1.1 on `io` until the client or a limit closes it.
    async fn serve_http<S, H, F>(mut self, io: S, handler: H)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let stats = self.slot.stats.clone();
        let limits = self.limits.clone();
        let peer = self.peer;
        let svc_stats = stats.clone();
        let request_timeout = limits.request_timeout;
        let svc = service_fn(move |req: Request<Incoming>| {
            let stats = svc_stats.clone();
            let handler = handler.clone();
            async move {
                let req = begin_request(req, &stats, request_timeout);
                let r = handler(req, peer).await;
                stats.enter(Phase::Responding, mono_ms());
                stats.touch();
                Ok::<_, Infallible>(r.map(|b| EndOfResponse { inner: b, stats }.boxed()))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.request_timeout)
            .keep_alive(self.keep_alive)
            .max_buf_size(MAX_HEAD)
            .serve_connection(TokioIo::new(Watched::new(io, stats.clone())), svc);
        let mut conn = Box::pin(conn);
        let kill: Arc<Notify> = self.slot.kill.clone();
        let idle_ms = i64::try_from(limits.idle_timeout.as_millis()).unwrap_or(i64::MAX);
        let mut closing: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = &mut conn => break,
                _ = kill.notified() => break,
                _ = tokio::time::sleep(WATCH_EVERY) => {
                    let now = mono_ms();
                    // A request still arriving past its deadline (the body
                    // reader had its chance to answer 408): close.
                    if stats.request_overdue(now - DEADLINE_GRACE_MS, limits.request_timeout) {
                        break;
                    }
                    match closing {
                        // (A handler at work is not the client idling.)
                        None if now - stats.last_ms() >= idle_ms && stats.phase() != Phase::Working => {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                        // A response that cannot finish (its reader stalled): drop it.
                        Some(t) if t.elapsed() > CLOSE_GRACE => break,
                        _ => {}
                    }
                }
            }
        }
        // Hyper's own error response went out: close gently (the slot
        // stays taken meanwhile).
        drop(conn);
        if let Some(spare) = self.spare.take() {
            if stats.refused_head() {
                // Shed meanwhile (the server is full): close at once.
                tokio::select! {
                    // Boxed: a connection's future (allocated for each
                    // connection, whatever it does) holds none of it.
                    _ = Box::pin(linger(spare)) => {}
                    _ = kill.notified() => {}
                }
            }
        }
    }
}

/// The kernel's send buffer of each connection. Bounded (and not left to
/// grow to `tcp_wmem`'s 4 MiB) so that a client that stops reading pins at
/// most this much kernel memory, and a footage stream it stalls stays open
/// (and counted against the caller's stream cap) instead of vanishing into
/// the kernel. 256 KiB keeps a LAN or Wi-Fi player at full rate (8 Mbit/s
/// at up to 250 ms round trip).
pub const SEND_BUFFER: u32 = 256 * 1024;

/// A listening socket on `addr` whose connections get [`SEND_BUFFER`]
/// (accepted sockets inherit it).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A duplicate of the stream's socket (one `dup`; the stream stays with
/// the reactor as it is): while it is open, closing the stream does not
/// close the connection. It is non-blocking, as the stream's socket is.
fn spare_handle(tcp: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::AsFd;
    Ok(std::net::TcpStream::from(tcp.as_fd().try_clone_to_owned()?))
}

/// Longest and most a lingering close waits for and reads.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// A lingering close (as nginx does after an error): after hyper refused a
/// request head it could not parse or that was too large (400, 431) and
/// closed its side, the client may still be sending that request. Closing
/// with its bytes unread would send a reset, and the client's kernel would
/// drop the error response before the client read it. So: end our side
/// (FIN after the response) and read and discard what still comes, at most
/// [`LINGER`] and [`LINGER_BYTES`], before the socket is closed.
async fn linger(spare: std::net::TcpStream) {
    let _ = spare.shutdown(std::net::Shutdown::Write);
    let Ok(mut tcp) = TcpStream::from_std(spare) else {
        return;
    };
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0usize;
        while total < LINGER_BYTES {
            match tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Notes that a request's head has arrived: its deadline (the request
/// timeout after its first byte) goes into its extensions, and the
/// connection now waits on its body (if it has one) or its handler.
fn begin_request(mut req: Request<Incoming>, stats: &Arc<ConnStats>, timeout: Duration) -> Request<Incoming> {
    let now = mono_ms();
    let started = match stats.phase() {
        Phase::Head => stats.since_ms().min(now),
        _ => now,
    };
    let elapsed = Duration::from_millis(u64::try_from(now - started).unwrap_or(0));
    let at = Instant::now().checked_sub(elapsed).unwrap_or_else(Instant::now) + timeout;
    let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    stats.enter(if has_body { Phase::Body } else { Phase::Working }, started);
    req.extensions_mut().insert(RequestDeadline::new(at, stats.clone()));
    req
}

/// A response body that marks the connection idle again once it is done.
struct EndOfResponse {
    inner: Body,
    stats: Arc<ConnStats>,
}

impl hyper::body::Body for EndOfResponse {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for EndOfResponse {
    fn drop(&mut self) {
        self.stats.advance(Phase::Responding, Phase::Idle);
    }
}

/// A connection's stream: notes every byte moved and the start of each
/// request in its [`ConnStats`], and adds the security headers to a
/// response written while no request is being handled (hyper's own).
struct Watched<S> {
    inner: S,
    stats: Arc<ConnStats>,
    /// Bytes accepted from hyper (and counted as written) not yet passed on.
    pending: Vec<u8>,
    pending_from: usize,
}

impl<S> Watched<S> {
    fn new(inner: S, stats: Arc<ConnStats>) -> Self {
        Watched {
            inner,
            stats,
            pending: Vec::new(),
            pending_from: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Writes out what [`Watched::pending`] holds.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.pending_from < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_from..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.stats.touch();
            self.pending_from += n;
        }
        self.pending = Vec::new();
        self.pending_from = 0;
        Poll::Ready(Ok(()))
    }
}

/// `buf` with the security headers after its status line, if it starts
/// with a whole response head that lacks them.
pub fn with_security_headers(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status_end = buf.windows(2).position(|w| w == b"\r\n")? + 2;
    let head = buf[..head_end].to_ascii_lowercase();
    if head.windows(23).any(|w| w == b"x-content-type-options:") {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + 256);
    out.extend_from_slice(&buf[..status_end]);
    for (k, v) in SECURITY_HEADERS {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&buf[status_end..]);
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.stats.touch();
            // The first byte of a request: its deadline runs from here.
            self.stats.advance(Phase::Idle, Phase::Head);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        ready!(self.drain(cx))?;
        let ours = matches!(self.stats.phase(), Phase::Body | Phase::Working | Phase::Responding);
        if !ours {
            if let Some(hardened) = with_security_headers(buf) {
                self.stats.note_refused_head();
                // All of `buf` is taken now; drain() passes it on (with the
                // headers) before any later write, flush or shutdown.
                self.pending = hardened;
                self.pending_from = 0;
                if let Poll::Ready(Err(e)) = self.drain(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.stats.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// After a load (many connections) ends, gives the memory the allocator
/// kept back to the system, so the daemon's RSS returns to its baseline.
async fn release_memory_after_load(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let mut peak = 0;
    // Trims still to come after a load: connections, their tasks and the
    // buffers they held are freed over some seconds, not all at once.
    let mut settling = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        let open = registry.open();
        peak = peak.max(open);
        if peak >= 64 && open * 4 <= peak {
            crate::base::host::release_free_memory();
            peak = open;
            settling = 6;
        } else if settling > 0 {
            crate::base::host::release_free_memory();
            settling -= 1;
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
