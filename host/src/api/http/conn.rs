//! Connections: how many are served at once, and how long each may take
//! over every phase of its life, so that clients that connect and send
//! nothing, or trickle, cannot hold the server's sockets, tasks and memory.
//!
//! The phases of a connection and what bounds each:
//!
//! - accepted over [`HttpConfig::max_connections`]: reset at once;
//! - until the protocol is known (the first bytes of an HTTP/1 request, or
//!   the whole HTTP/2 preface): [`HttpConfig::handshake_timeout`]. Read
//!   here, before hyper: `auto::Builder`'s own detection read has no
//!   deadline, and hyper's header timer only starts after it;
//! - an HTTP/1 request head, from its first byte (or from the accept, for
//!   the first request): [`HttpConfig::header_timeout`];
//! - a webhook request, from its head to its answer: the caller's
//!   `webhook_timeout`;
//! - no request in flight: [`HttpConfig::idle_timeout`] (HTTP/1 keep-alive
//!   and HTTP/2 alike), and on HTTP/2 a peer that stops answering pings is
//!   dropped after [`HttpConfig::http2_keep_alive_timeout`].
//!
//! hyper's own `header_read_timeout` is off: it also runs while an HTTP/1
//! connection waits idle for its next request, so it would close keep-alive
//! connections after the header timeout, well before a load balancer in
//! front gives up on them (and it would race that balancer's reuse).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use super::ApiError;

/// How the HTTP server treats connections. One value serves every
/// listener; the defaults are production's (`config.default.toml`'s
/// `[http]` documents each one).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Connections served at once; one accepted beyond that is reset at
    /// once.
    pub max_connections: usize,
    /// From the accept until the protocol is known: a client that connects
    /// and sends nothing, or stalls inside the HTTP/2 preface, is closed
    /// after this.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1 request head may take, from its first byte.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2: told to go away first).
    pub idle_timeout: Duration,
    /// A webhook request, from its head to the answer, body upload
    /// included; past it the answer is 408. Shopify gives up after 5 s.
    pub webhook_timeout: Duration,
    /// HTTP/2 pings, so that a peer that vanished is noticed; None: none.
    pub http2_keep_alive_interval: Option<Duration>,
    /// An HTTP/2 ping not answered in this time closes the connection.
    pub http2_keep_alive_timeout: Duration,
    /// Streams (requests) one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            webhook_timeout: Duration::from_secs(30),
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: 100,
        }
    }
}

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `router` on `listener` until `stop` turns true, then stops
/// accepting, lets the requests in flight finish and returns once every
/// connection is closed.
///
/// Not `axum::serve`: that one sets no timer, so it cannot bound how long a
/// request head takes, and leaves Nagle's algorithm on, which delays small
/// acknowledgements.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: HttpConfig,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Ours instead (see the module's comment).
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout)
        .max_concurrent_streams(config.http2_max_concurrent_streams);
    let shared = Arc::new(Shared {
        builder,
        router,
        config,
    });
    // A permit per connection; all of them back means every connection
    // has closed, which is what shutdown waits for.
    let max = shared.config.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pass, not die.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { drop(stop.wait_for(|stop| *stop).await) } => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: reset it now rather than stop accepting. Connections
            // left in the kernel's accept queue are out of reach of every
            // timer here (a client would wait out its own timeout for
            // nothing, and a flood would keep the queue full of them); a
            // reset tells Shopify or a balancer at once to retry later or
            // elsewhere, and leaves no TIME_WAIT behind on our side.
            let _ = stream.set_zero_linger();
            drop(stream);
            crate::support::metrics::connection_closed("at_capacity");
            refused_warning();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_one(shared, stream, remote, stop).await;
        });
    }
    drop(listener);
    // Every permit back: every connection has finished.
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

/// What every connection of one listener shares.
struct Shared {
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    router: Router,
    config: HttpConfig,
}

/// Says, at most once a minute, that connections are being refused: a
/// flood must not turn into a flood of log lines.
fn refused_warning() {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = crate::store::now_ms() as u64;
    let last = LAST.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60_000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!("at the connection limit (http.max_connections): new connections are reset");
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Http1,
    Http2,
}

/// Reads until the protocol is known: a byte that departs from the HTTP/2
/// preface (HTTP/1), or the whole preface (HTTP/2). Answers the bytes read,
/// which hyper must see again.
async fn read_start(stream: &mut TcpStream) -> io::Result<(Protocol, [u8; 24], usize)> {
    let mut head = [0u8; 24];
    let mut len = 0;
    loop {
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if head[..len] != H2_PREFACE[..len] {
            return Ok((Protocol::Http1, head, len));
        }
        if len == H2_PREFACE.len() {
            return Ok((Protocol::Http2, head, len));
        }
    }
}

async fn serve_one(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    remote: std::net::SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;

    let cfg = &shared.config;
    let start = tokio::select! {
        read = tokio::time::timeout(cfg.handshake_timeout, read_start(&mut stream)) => read,
        _ = stop.wait_for(|stop| *stop) => return,
    };
    let (protocol, head, len) = match start {
        Ok(Ok(start)) => start,
        // Gone before saying anything: its own business.
        Ok(Err(_)) => return,
        Err(_) => {
            crate::support::metrics::connection_closed("handshake_timeout");
            return;
        }
    };
    let activity = Arc::new(Activity::new(protocol));
    let io = Replay {
        head,
        pos: 0,
        len,
        stream,
        activity: (protocol == Protocol::Http1).then(|| activity.clone()),
    };
    let router = shared.router.clone();
    let webhook_timeout = cfg.webhook_timeout;
    let in_service = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let in_flight = InFlight::enter(&in_service);
        req.extensions_mut().insert(ConnectInfo(remote));
        let webhook = req
            .uri()
            .path()
            .starts_with("/integrations/shopify/webhooks/");
        let call = router.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let _in_flight = in_flight;
            if !webhook {
                return call.await;
            }
            match tokio::time::timeout(webhook_timeout, call).await {
                Ok(answer) => answer,
                Err(_) => Ok(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request took too long to arrive; send it again",
                )
                .into_response()),
            }
        }
    });
    let connection = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    // When a graceful close was asked for (shutdown, or HTTP/2 idleness):
    // from then on a connection with nothing in flight gets one keep-alive
    // timeout more to go, not for ever (an HTTP/2 peer that never answers
    // the GOAWAY's ping would otherwise keep it).
    let mut closing: Option<Instant> = None;
    loop {
        let (deadline, _) = activity.deadline(cfg, closing);
        tokio::select! {
            // A client that goes away mid-request is its own business.
            _ = connection.as_mut() => return,
            _ = stop.wait_for(|stop| *stop), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = activity.changed.notified() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                if deadline.is_some() => {
                // Re-read: a request may have started meanwhile.
                let (now_due, why) = activity.deadline(cfg, closing);
                if now_due.is_none_or(|d| d > Instant::now()) {
                    continue;
                }
                crate::support::metrics::connection_closed(why);
                if protocol == Protocol::Http2 && closing.is_none() {
                    // GOAWAY first, so that a well-behaved client does not
                    // send a request into a closing connection.
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                } else {
                    return;
                }
            }
        }
    }
}

/// What the connection's driver needs to know of its requests, shared with
/// the service (HTTP/2 runs each request on a task of its own) and, on
/// HTTP/1, with the socket's reads.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request in flight ended.
    idle_since: AtomicU64,
    /// HTTP/1: milliseconds after `opened` when the head being read began,
    /// [`NO_HEAD`] when none is.
    head_since: AtomicU64,
    /// Wakes the driver to compute its deadline again.
    changed: Notify,
}

const NO_HEAD: u64 = u64::MAX;

impl Activity {
    fn new(protocol: Protocol) -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // The first head began with the connection: the bytes that told
            // its protocol were its first.
            head_since: AtomicU64::new(match protocol {
                Protocol::Http1 => 0,
                Protocol::Http2 => NO_HEAD,
            }),
            changed: Notify::new(),
        }
    }

    fn ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// When the connection is to be closed if nothing changes, and why;
    /// None while a request is in flight (the webhook timeout bounds those).
    fn deadline(
        &self,
        cfg: &HttpConfig,
        closing: Option<Instant>,
    ) -> (Option<Instant>, &'static str) {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return (None, "");
        }
        let idle_since = self.at(self.idle_since.load(Ordering::Acquire));
        let (mut due, mut why) = match self.head_since.load(Ordering::Acquire) {
            NO_HEAD => (idle_since + cfg.idle_timeout, "idle_timeout"),
            head => (self.at(head) + cfg.header_timeout, "header_timeout"),
        };
        if let Some(closing) = closing {
            let grace = closing.max(idle_since) + cfg.http2_keep_alive_timeout;
            if grace < due {
                (due, why) = (grace, "shutdown_grace");
            }
        }
        (Some(due), why)
    }

    /// HTTP/1: bytes arrived. Between requests, they begin the next head,
    /// whose timer starts now.
    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .head_since
                .compare_exchange(NO_HEAD, self.ms(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }
}

/// One request in flight, from the head parsed to the answer produced (or
/// the request dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        // The head is whole; what the driver waits on now is the answer.
        activity.head_since.store(NO_HEAD, Ordering::Release);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.ms(), Ordering::Release);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.changed.notify_one();
        }
    }
}

/// The socket, with the bytes [`read_start`] took from it given back first.
struct Replay {
    head: [u8; 24],
    pos: usize,
    len: usize,
    stream: TcpStream,
    /// HTTP/1: told of every read, for the header timer.
    activity: Option<Arc<Activity>>,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.len {
            let n = (this.len - this.pos).min(buf.remaining());
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(activity)) = (&read, &this.activity)
            && buf.filled().len() > before
        {
            activity.read();
        }
        read
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_protocol_is_told_by_the_first_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (sent, want) in [
            (&b"GET / HTTP/1.1\r\n"[..], Protocol::Http1),
            (&b"P"[..], Protocol::Http1),
            (&H2_PREFACE[..], Protocol::Http2),
        ] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut client, sent)
                .await
                .unwrap();
            if sent == b"P" {
                // Still a prefix of the preface: not decided until the next
                // byte departs from it.
                tokio::io::AsyncWriteExt::write_all(&mut client, b"OST")
                    .await
                    .unwrap();
            }
            let (protocol, head, len) = read_start(&mut server).await.unwrap();
            assert_eq!(protocol, want);
            assert!(sent.starts_with(&head[..len]) || head[..len].starts_with(sent));
        }
    }
}
