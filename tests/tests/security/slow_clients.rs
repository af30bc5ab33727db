//! Anyone may reach the public listener, but may never hold connections
//! open without sending (DESIGN §6b). Each test opens the kind of
//! connection an attacker would (idle, trickling, stalled inside the HTTP/2
//! preface, over the connection limit, a large body to a made-up path)
//! against a real gateway, and checks that the server gives the socket back
//! within a bounded wait after its configured timeout, while signed
//! webhooks keep getting 200.
//!
//! The gateway runs in this process, so its sockets share this test's file
//! table (`ulimit -n` is far above what is opened here). Whether the server
//! closed a socket is read from the client's end: a read that returns EOF or
//! a reset comes only from the server closing its end.

use std::net::SocketAddr;
use std::time::Duration;

use ionflux_gateway::api::http::HttpConfig;
use ionflux_tests::{Gateway, Hook, Options};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const ORDER: &[u8] = br#"{"id": 820982911946154508, "total_price": "10.00"}"#;
const ADMIN_TOKEN: &str = "slow-clients-operator-token";
/// How long a test waits for the server to close what it should close:
/// many times the timeouts configured below, so that a loaded machine does
/// not fail the test, and short of the limits it is not meant to reach.
const CLOSE_WAIT: Duration = Duration::from_secs(30);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what an HTTP/2 client sends after the preface.
const H2_EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Short timeouts, so that the test sees them fire.
fn short_timeouts() -> HttpConfig {
    HttpConfig {
        handshake_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
        http2_keep_alive_interval: Some(Duration::from_secs(1)),
        http2_keep_alive_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    }
}

async fn start(http: HttpConfig) -> Gateway {
    let mut gw = Gateway::start(Options {
        admin_token: Some(ADMIN_TOKEN.into()),
        http: Some(http),
        ..Options::default()
    })
    .await;
    // A fresh connection per request: a pooled one could be reused at the
    // moment the server's (short) idle timeout closes it.
    gw.client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    gw
}

/// Reads until the server closes the connection (EOF or reset), throwing
/// away whatever it sent before (a 408, SETTINGS, GOAWAY). False if it was
/// still open at `deadline`.
async fn closed_by_server(mut read: impl AsyncRead + Unpin, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Waits for every socket in `reads` to be closed by the server; answers
/// how many were not.
async fn still_open<R: AsyncRead + Unpin + Send + 'static>(reads: Vec<R>) -> usize {
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut tasks = tokio::task::JoinSet::new();
    for read in reads {
        tasks.spawn(closed_by_server(read, deadline));
    }
    let mut open = 0;
    while let Some(closed) = tasks.join_next().await {
        if !closed.unwrap() {
            open += 1;
        }
    }
    open
}

/// The request `hook` describes, as bytes on an HTTP/1.1 connection.
fn raw_request(hook: &Hook<'_>, content_length: usize, with_body: bool) -> Vec<u8> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n",
        hook.path
    );
    for (k, v) in &hook.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if with_body {
        bytes.extend_from_slice(&hook.body);
    }
    bytes
}

/// Reads one HTTP/1.1 response (its head and a `content-length` body):
/// status and JSON body. None if the connection ended or `wait` passed
/// first.
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Option<(u16, serde_json::Value)> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            if got.len() >= end + 4 + length {
                let body = &got[end + 4..end + 4 + length];
                let json = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
                return Some((status, json));
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// Writes `bytes` one at a time, `every` apart, until the server stops
/// taking them (it closed the connection) or `CLOSE_WAIT` passed.
fn trickle(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    bytes: Vec<u8>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let deadline = Instant::now() + CLOSE_WAIT;
        for b in bytes.iter().cycle() {
            if Instant::now() > deadline || write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Sends a signed webhook over HTTP/2 (prior knowledge, as a proxy in
/// front might): status and JSON body.
async fn send_h2(addr: SocketAddr, hook: &Hook<'_>) -> (u16, serde_json::Value) {
    let io = hyper_util::rt::TokioIo::new(connect(addr).await);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::post(format!("http://{addr}{}", hook.path))
        .header("content-type", "application/json");
    for (k, v) in &hook.headers {
        request = request.header(*k, v);
    }
    let request = request
        .body(axum::body::Body::from(hook.body.clone()))
        .unwrap();
    let response = sender.send_request(request).await.expect("HTTP/2 request");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// The server's count of connections it closed for `reason`.
async fn closed_count(gw: &Gateway, reason: &str) -> u64 {
    let text = gw
        .client
        .get(gw.admin_url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("ionflux_http_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_closed_while_webhooks_are_answered() {
    let gw = start(short_timeouts()).await;
    let addr = gw.running.addr;
    let conn = gw.connect("slow-clients.myshopify.com").await;
    let handshakes_before = closed_count(&gw, "handshake_timeout").await;

    // Connect and send nothing, two thousand times.
    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(connect(addr).await);
    }
    let mut trickled = Vec::new();
    let mut writers = Vec::new();
    // Slowloris: a webhook request whose headers never end, a byte at a
    // time.
    for i in 0..20 {
        let (read, write) = connect(addr).await.into_split();
        let mut head = format!(
            "POST {} HTTP/1.1\r\nhost: gateway\r\ncontent-length: 10\r\n",
            conn.created.webhook_path
        )
        .into_bytes();
        head.extend(
            format!("x-slow-{i}: ")
                .bytes()
                .chain(std::iter::repeat_n(b'a', 100_000)),
        );
        writers.push(trickle(write, head, Duration::from_millis(100)));
        trickled.push(read);
    }
    // HTTP/2 prefaces: stalled halfway, and trickled.
    let mut prefaces = Vec::new();
    for _ in 0..20 {
        let mut s = connect(addr).await;
        s.write_all(&H2_PREFACE[..16]).await.unwrap();
        prefaces.push(s);
    }
    for _ in 0..10 {
        let (read, write) = connect(addr).await.into_split();
        writers.push(trickle(
            write,
            H2_PREFACE.to_vec(),
            Duration::from_millis(300),
        ));
        trickled.push(read);
    }
    // A whole HTTP/2 preface and SETTINGS, then silence (no request, no
    // answer to pings).
    for _ in 0..10 {
        let mut s = connect(addr).await;
        s.write_all(H2_PREFACE).await.unwrap();
        s.write_all(H2_EMPTY_SETTINGS).await.unwrap();
        prefaces.push(s);
    }
    // An HTTP/1.1 keep-alive connection that sent one webhook and then
    // idles.
    let mut kept_alive = Vec::new();
    for _ in 0..5 {
        let mut s = connect(addr).await;
        let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
        s.write_all(&raw_request(&hook, hook.body.len(), true))
            .await
            .unwrap();
        let (status, body) = read_response(&mut s, Duration::from_secs(60))
            .await
            .expect("an answer on the kept-alive connection");
        assert_eq!(status, 200, "{body}");
        kept_alive.push(s);
    }

    // Meanwhile, Shopify's webhooks are answered, over HTTP/1.1 and HTTP/2.
    for _ in 0..20 {
        let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
        let (status, body) = gw.send(&hook).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "accepted");
    }
    for _ in 0..5 {
        let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
        let (status, body) = send_h2(addr, &hook).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "accepted");
    }

    // And every one of the attacker's sockets is given back.
    assert_eq!(still_open(idle).await, 0, "idle sockets still open");
    assert_eq!(
        still_open(trickled).await,
        0,
        "trickling sockets still open"
    );
    assert_eq!(still_open(prefaces).await, 0, "HTTP/2 sockets still open");
    assert_eq!(
        still_open(kept_alive).await,
        0,
        "idle keep-alive still open"
    );
    for w in writers {
        w.await.unwrap();
    }
    assert!(closed_count(&gw, "handshake_timeout").await >= handshakes_before + 2000);

    // The server is still itself.
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    let (status, body) = gw.send(&hook).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    gw.settle().await;
    assert_eq!(gw.logged_events().await.len(), 5 + 20 + 5 + 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_resets_new_connections_at_once() {
    // Timeouts far beyond the wait below: only the limit can close the
    // extra connection.
    let gw = start(HttpConfig {
        max_connections: 64,
        handshake_timeout: Duration::from_secs(600),
        ..HttpConfig::default()
    })
    .await;
    let addr = gw.running.addr;
    let conn = gw.connect("full-server.myshopify.com").await;

    // Accepted in the order they connected: these hold every slot.
    let mut holders = Vec::new();
    for _ in 0..64 {
        holders.push(connect(addr).await);
    }
    let kept = match TcpStream::connect(addr).await {
        // The reset can come before the connect has returned.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        extra => still_open(vec![extra.expect("connect")]).await,
    };
    assert_eq!(kept, 0, "a connection over the limit was kept");

    // Once the holders go, their slots come back and webhooks flow again.
    drop(holders);
    let deadline = Instant::now() + CLOSE_WAIT;
    loop {
        let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
        let mut request = gw.client.post(gw.url(&hook.path)).body(hook.body.clone());
        for (k, v) in &hook.headers {
            request = request.header(*k, v);
        }
        let sent = request.send().await;
        if let Ok(response) = sent {
            assert_eq!(response.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "the slots never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_for_an_unknown_path_is_refused_unread() {
    // No request timeout within reach: an answer below can only come from
    // the server deciding on the head alone.
    let gw = start(HttpConfig {
        webhook_timeout: Duration::from_secs(600),
        header_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
        ..HttpConfig::default()
    })
    .await;
    let addr = gw.running.addr;
    let conn = gw.connect("unread-body.myshopify.com").await;
    // A signed-looking request to a path nobody was given, announcing 4 MB
    // (under the body limit) and sending none of it.
    let mut stranger = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    stranger.path = "/integrations/shopify/webhooks/madeUpIdentifier0123456789".into();
    let unanswered = Duration::from_secs(20);
    let mut s = connect(addr).await;
    s.write_all(&raw_request(&stranger, 4_000_000, false))
        .await
        .unwrap();
    let (status, body) = read_response(&mut s, unanswered)
        .await
        .expect("refused before the body was sent");
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("unknown_connection"))
    );

    // Any other unknown route alike.
    let mut s = connect(addr).await;
    s.write_all(
        b"POST /integrations/shopify/elsewhere HTTP/1.1\r\nhost: gateway\r\n\
          content-length: 4000000\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, body) = read_response(&mut s, unanswered)
        .await
        .expect("refused before the body was sent");
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // The right path with a body announced over the limit: 413, unread.
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    let mut s = connect(addr).await;
    s.write_all(&raw_request(&hook, 64 << 20, false))
        .await
        .unwrap();
    let (status, body) = read_response(&mut s, unanswered)
        .await
        .expect("refused before the body was sent");
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // And the right path with its body is taken, as ever.
    let (status, body) = gw.send(&hook).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    gw.settle().await;
    assert_eq!(gw.logged_events().await.len(), 1);
    gw.stop().await;
}
