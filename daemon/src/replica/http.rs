//! The S3 client's transport: object_store builds and signs each request,
//! this sends it with hyper over a tokio socket and tokio-rustls (ring, the
//! system's roots or `ca_file`), one connection per request, with bounded
//! connect, handshake and answer times, and the upload bandwidth cap applied
//! to request bodies as they are written.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse,
    HttpResponseBody, HttpService,
};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a request may take beyond what the bandwidth cap makes it take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The body is written in slices of this size, each one paid for first.
const SLICE: usize = 64 * 1024;

/// A token bucket over bytes per second, shared by every request of one
/// uploader, allowing a burst of one second.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    pub fn new(bytes_per_s: u64) -> Self {
        Throttle {
            rate: bytes_per_s.max(1),
            state: Mutex::new((bytes_per_s as f64, Instant::now())),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Takes `n` bytes; returns how long to wait before sending them.
    fn take(&self, n: usize) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let rate = self.rate as f64;
        let (tokens, at) = *s;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * rate).min(rate) - n as f64;
        *s = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / rate)
        }
    }
}

/// A request body written in slices, each after the throttle allows it.
struct ThrottledBody {
    data: Bytes,
    throttle: Option<Arc<Throttle>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The slice already paid for, sent once `wait` is over.
    ready: Option<Bytes>,
}

impl Body for ThrottledBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(w) = self.wait.as_mut() {
            if w.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        if let Some(slice) = self.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(slice))));
        }
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.data.len().min(SLICE);
        let slice = self.data.split_to(n);
        let delay = self.throttle.as_ref().map(|t| t.take(n)).unwrap_or_default();
        if delay.is_zero() {
            return Poll::Ready(Some(Ok(Frame::data(slice))));
        }
        self.ready = Some(slice);
        let mut sleep = Box::pin(tokio::time::sleep(delay));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(self.ready.take().map(|s| Ok(Frame::data(s))));
        }
        self.wait = Some(sleep);
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.ready.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() + self.ready.as_ref().map_or(0, Bytes::len)) as u64)
    }
}

/// An answer's body that fails when the store sends nothing for
/// [`IDLE_TIMEOUT`] (a stalled download never hangs the uploader).
struct IdleBody {
    inner: hyper::body::Incoming,
    idle: Pin<Box<tokio::time::Sleep>>,
}

const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Body for IdleBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
                self.idle.as_mut().reset(deadline);
                Poll::Ready(
                    r.map(|f| f.map_err(|e| err(HttpErrorKind::Interrupted, format!("reading the answer: {e}")))),
                )
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(err(
                    HttpErrorKind::Timeout,
                    format!("the store sent nothing for {} s", IDLE_TIMEOUT.as_secs()),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// object_store's HTTP connector and service.
#[derive(Clone, Debug)]
pub struct Transport {
    tls: Arc<ClientConfig>,
    throttle: Option<Arc<Throttle>>,
}

impl Transport {
    pub fn new(tls: Arc<ClientConfig>, throttle: Option<Arc<Throttle>>) -> Self {
        Transport { tls, throttle }
    }
}

impl HttpConnector for Transport {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.clone()))
    }
}

fn err(kind: HttpErrorKind, text: String) -> HttpError {
    HttpError::new(kind, std::io::Error::other(text))
}

/// Collects a request body (object_store's are already in memory).
async fn body_bytes(body: HttpRequestBody) -> Result<Bytes, HttpError> {
    if let Some(b) = body.as_bytes() {
        return Ok(b.clone());
    }
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| err(HttpErrorKind::Request, format!("reading the request body: {e}")))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

impl Transport {
    async fn open(&self, uri: &http::Uri) -> Result<Box<dyn Stream>, HttpError> {
        let host = uri
            .host()
            .ok_or_else(|| err(HttpErrorKind::Connect, "the URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(err(
                    HttpErrorKind::Connect,
                    format!("cannot connect to {host}:{port}: {e}"),
                ))
            }
            Err(_) => {
                return Err(err(
                    HttpErrorKind::Connect,
                    format!(
                        "cannot connect to {host}:{port}: no answer within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ))
            }
        };
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(Box::new(tcp));
        }
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone()).map_err(|_| {
                err(
                    HttpErrorKind::Connect,
                    format!("\"{host}\" is not a valid TLS server name"),
                )
            })?,
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => Ok(Box::new(s)),
            Ok(Err(e)) => Err(err(
                HttpErrorKind::Connect,
                format!("TLS handshake with {host} failed: {e}"),
            )),
            Err(_) => Err(err(
                HttpErrorKind::Connect,
                format!("TLS handshake with {host} timed out"),
            )),
        }
    }
}

#[async_trait::async_trait]
impl HttpService for Transport {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (mut parts, body) = req.into_parts();
        let uri = parts.uri.clone();
        let data = body_bytes(body).await?;
        let stream = self.open(&uri).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| err(HttpErrorKind::Connect, format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| err(HttpErrorKind::Request, "the URL has no host".into()))?;
        if let Ok(v) = http::HeaderValue::from_str(&authority) {
            parts.headers.insert(http::header::HOST, v);
        }
        parts.uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|e| err(HttpErrorKind::Request, format!("bad request path: {e}")))?;
        // The cap makes a large part take a while: the deadline grows with it.
        let paced = self
            .throttle
            .as_ref()
            .map(|t| Duration::from_secs_f64(data.len() as f64 / t.rate() as f64))
            .unwrap_or_default();
        let body = ThrottledBody {
            data,
            throttle: self.throttle.clone(),
            wait: None,
            ready: None,
        };
        let answer = tokio::time::timeout(
            ANSWER_TIMEOUT + paced,
            sender.send_request(http::Request::from_parts(parts, body)),
        );
        let resp = match answer.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(err(HttpErrorKind::Request, format!("{e}"))),
            Err(_) => return Err(err(HttpErrorKind::Timeout, "no answer in time".into())),
        };
        Ok(resp.map(|inner| {
            HttpResponseBody::new(IdleBody {
                inner,
                idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_paces_bytes_after_a_one_second_burst() {
        let t = Throttle::new(1_000_000);
        assert_eq!(t.take(1_000_000), Duration::ZERO);
        let wait = t.take(500_000);
        assert!(
            wait >= Duration::from_millis(450) && wait <= Duration::from_millis(510),
            "{wait:?}"
        );
    }
}
