//! The load generator: `connections` HTTP/1.1 keep-alive connections, each
//! driven by one worker, sending signed webhooks on an open-loop schedule
//! (or back to back with `Rate::Max`).
//!
//! Coordinated omission: at a fixed rate, request `i` is due at `start +
//! i / rate` whether or not earlier ones were answered. Workers claim slots
//! in order from one counter; a worker that claims a slot already past due
//! (every connection was busy) measures its latency from the slot's due
//! time, so a stalled server is charged for the requests it made wait. A
//! worker that is early sleeps until the slot is due and measures from when
//! it woke: the timer's lateness is ours, not the server's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;

use super::payloads::Payload;
use crate::providers::shopify::headers as webhook;

/// Requests per second, or as fast as the connections go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `max`, or a number with an optional `/s`: `2000`, `2000/s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let n: f64 = s
            .strip_suffix("/s")
            .unwrap_or(s)
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: expected `max` or requests per second, e.g. 2000/s"))?;
        if !(n.is_finite() && n > 0.0) {
            return Err(format!("{s:?}: the rate must be above zero"));
        }
        Ok(Rate::PerSecond(n))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::PerSecond(n) => write!(f, "{n}/s"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// Where one brand's webhooks go and how they are signed.
pub struct Endpoint {
    pub path: String,
    pub shop: HeaderValue,
    /// The HMAC header of each payload under this endpoint's secret,
    /// computed up front so the client spends its CPU on sending.
    pub signatures: Vec<HeaderValue>,
}

/// Everything one load phase needs.
pub struct Plan {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    pub endpoints: Vec<Endpoint>,
    pub payloads: Vec<Payload>,
    pub rate: Rate,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
    /// Prefix of every webhook id of this phase, unique per run: the lag
    /// collector recognises its webhooks by it.
    pub id_prefix: String,
    /// The clock all times in webhook ids are relative to.
    pub base: Instant,
}

/// Counters the progress bar and the RSS sampler read while a phase runs.
#[derive(Default)]
pub struct Live {
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    /// Micros after `Plan::base` at which measuring starts and stops; zero
    /// until the phase has started.
    pub window_start_us: AtomicU64,
    pub window_end_us: AtomicU64,
}

/// What a phase measured.
pub struct Outcome {
    /// Requests of the measured window that got an answer or an error.
    pub sent: u64,
    /// 2xx answers to requests of the measured window.
    pub acked: u64,
    /// Ack latency of the measured window, microseconds.
    pub latency: Histogram<u64>,
    /// Failures of the measured window: `http_<status>`, `timeout`,
    /// `connect: …`, `io: …`.
    pub errors: BTreeMap<String, u64>,
    /// Slots of the window a fixed rate asked for that were never sent,
    /// because the generator fell too far behind.
    pub not_sent: u64,
    /// From the first due slot of the window to the last measured answer
    /// (at least the configured duration).
    pub window: Duration,
    pub window_start: Instant,
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits: a few hundred KiB.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// How long past its end a fixed-rate phase may run to catch up on slots
/// it fell behind on, before giving them up as not sent.
fn catch_up_grace(duration: Duration) -> Duration {
    (duration / 2).clamp(Duration::from_secs(2), Duration::from_secs(30))
}

struct Shared {
    plan: Plan,
    live: Arc<Live>,
    next: AtomicU64,
    start: Instant,
    window_start: Instant,
    end: Instant,
    /// Slots a fixed rate asks for in warmup + window.
    total_slots: u64,
    /// One for all workers: a histogram is a few hundred KiB, and with
    /// the gateway in-process every KiB here shows in its RSS.
    latency: Mutex<Histogram<u64>>,
}

#[derive(Default)]
struct WorkerOut {
    sent: u64,
    acked: u64,
    errors: BTreeMap<String, u64>,
    abandoned: u64,
    last_answer: Option<Instant>,
}

/// Runs one phase to the end. Call it on a runtime of its own, so that the
/// gateway under test (in-process) and the client do not share a scheduler.
pub async fn drive(plan: Plan, live: Arc<Live>) -> Outcome {
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + plan.warmup;
    let end = window_start + plan.duration;
    let total_slots = match plan.rate {
        Rate::PerSecond(r) => ((plan.warmup + plan.duration).as_secs_f64() * r).ceil() as u64,
        Rate::Max => u64::MAX,
    };
    live.window_start_us.store(
        window_start.duration_since(plan.base).as_micros() as u64,
        Ordering::Relaxed,
    );
    live.window_end_us.store(
        end.duration_since(plan.base).as_micros() as u64,
        Ordering::Relaxed,
    );
    let connections = plan.connections.max(1);
    let shared = Arc::new(Shared {
        plan,
        live,
        next: AtomicU64::new(0),
        start,
        window_start,
        end,
        total_slots,
        latency: Mutex::new(new_histogram()),
    });
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut out = Outcome {
        sent: 0,
        acked: 0,
        latency: Histogram::new(1).expect("valid histogram"),
        errors: BTreeMap::new(),
        not_sent: 0,
        window: shared.plan.duration,
        window_start,
    };
    let mut last_answer = end;
    for w in workers {
        let Ok(w) = w.await else {
            *out.errors
                .entry("internal: worker panicked".into())
                .or_default() += 1;
            continue;
        };
        out.sent += w.sent;
        out.acked += w.acked;
        for (k, v) in w.errors {
            *out.errors.entry(k).or_default() += v;
        }
        out.not_sent += w.abandoned;
        last_answer = last_answer.max(w.last_answer.unwrap_or(end));
    }
    if let Rate::PerSecond(r) = shared.plan.rate {
        // Slots nobody claimed before the grace ran out, counted if they
        // fall in the window.
        let claimed = shared.next.load(Ordering::Relaxed).min(total_slots);
        let first_window_slot = (shared.plan.warmup.as_secs_f64() * r).ceil() as u64;
        out.not_sent += total_slots.saturating_sub(claimed.max(first_window_slot));
    }
    out.window = last_answer.duration_since(window_start);
    out.latency = std::mem::replace(
        &mut *shared.latency.lock().unwrap_or_else(|p| p.into_inner()),
        Histogram::new(1).expect("valid histogram"),
    );
    out
}

/// A slot: its number, when it is due, and whether it is measured.
struct Slot {
    index: u64,
    due: Option<Instant>,
    measured: bool,
}

impl Shared {
    /// The next slot, or None when the phase is over for this worker.
    fn claim(&self, abandoned: &mut u64) -> Option<Slot> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        match self.plan.rate {
            Rate::PerSecond(r) => {
                if index >= self.total_slots {
                    return None;
                }
                let due = self.start + Duration::from_secs_f64(index as f64 / r);
                let measured = due >= self.window_start;
                if Instant::now() > self.end + catch_up_grace(self.plan.duration) {
                    *abandoned += u64::from(measured);
                    return None;
                }
                Some(Slot {
                    index,
                    due: Some(due),
                    measured,
                })
            }
            Rate::Max => {
                let now = Instant::now();
                if now >= self.end {
                    return None;
                }
                Some(Slot {
                    index,
                    due: None,
                    measured: now >= self.window_start,
                })
            }
        }
    }
}

async fn worker(shared: Arc<Shared>) -> WorkerOut {
    let plan = &shared.plan;
    let mut out = WorkerOut::default();
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let content_type = HeaderValue::from_static("application/json");
    if let Rate::Max = plan.rate {
        tokio::time::sleep_until(shared.start.into()).await;
    }
    while let Some(slot) = shared.claim(&mut out.abandoned) {
        let begin = match slot.due {
            Some(due) if due > Instant::now() => {
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
            // Late: the wait since the slot fell due is the server's.
            Some(due) => due,
            None => Instant::now(),
        };
        let n_endpoints = plan.endpoints.len() as u64;
        let endpoint = &plan.endpoints[(slot.index % n_endpoints) as usize];
        let p = ((slot.index / n_endpoints) % plan.payloads.len() as u64) as usize;
        let payload = &plan.payloads[p];
        let webhook_id = format!(
            "{}-{}-{}-{}",
            plan.id_prefix,
            if slot.measured { 'm' } else { 'w' },
            slot.index,
            begin.duration_since(plan.base).as_micros()
        );
        let request = hyper::Request::post(endpoint.path.as_str())
            .header(HOST, plan.host.clone())
            .header(CONTENT_TYPE, content_type.clone())
            .header(
                HeaderName::from_static(webhook::TOPIC_HEADER),
                payload.topic.as_str(),
            )
            .header(
                HeaderName::from_static(webhook::SHOP_HEADER),
                endpoint.shop.clone(),
            )
            .header(
                HeaderName::from_static(webhook::WEBHOOK_ID_HEADER),
                webhook_id.as_str(),
            )
            .header(
                HeaderName::from_static(webhook::API_VERSION_HEADER),
                payload.api_version.as_str(),
            )
            .header(
                HeaderName::from_static(webhook::TRIGGERED_AT_HEADER),
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
            .header(
                HeaderName::from_static(webhook::EVENT_ID_HEADER),
                uuid::Uuid::new_v4().to_string(),
            )
            .header(
                HeaderName::from_static(webhook::HMAC_HEADER),
                endpoint.signatures[p].clone(),
            )
            .body(Full::new(payload.body.clone()))
            .expect("a well-formed request");
        let result =
            tokio::time::timeout(plan.request_timeout, send(&mut conn, plan.addr, request)).await;
        let done = Instant::now();
        let failure = match result {
            Ok(Ok(status)) if (200..300).contains(&status) => None,
            Ok(Ok(status)) => Some(format!("http_{status}")),
            Ok(Err(e)) => {
                // Whatever it was, this connection is not to be trusted.
                conn = None;
                Some(e)
            }
            Err(_) => {
                conn = None;
                Some("timeout".to_string())
            }
        };
        match failure {
            None => {
                shared.live.acked.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {
                shared.live.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !slot.measured {
            continue;
        }
        out.sent += 1;
        out.last_answer = Some(done);
        match failure {
            None => {
                out.acked += 1;
                let us = done.duration_since(begin).as_micros().max(1) as u64;
                shared
                    .latency
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(us);
            }
            Some(kind) => {
                *out.errors.entry(kind).or_default() += 1;
                if conn.is_none() {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    out
}

/// Sends one request on the worker's connection, opening it first if need
/// be; returns the status once the whole answer is read (so the connection
/// is ready for the next one).
async fn send(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    request: hyper::Request<Full<Bytes>>,
) -> Result<u16, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        // Small requests and answers: Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *conn = Some(sender);
    }
    let sender = conn.as_mut().expect("opened above");
    sender
        .ready()
        .await
        .map_err(|e| format!("io: {}", short(&e)))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("io: {}", short(&e)))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("io: {}", short(&e)))?;
    Ok(status)
}

/// hyper's error kind without the varying detail, so errors group.
fn short(e: &hyper::Error) -> &'static str {
    if e.is_closed() || e.is_incomplete_message() {
        "connection closed"
    } else if e.is_canceled() {
        "canceled"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_parse() {
        "bad response"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>().unwrap(), Rate::Max);
        assert_eq!("2000/s".parse::<Rate>().unwrap(), Rate::PerSecond(2000.0));
        assert_eq!("150".parse::<Rate>().unwrap(), Rate::PerSecond(150.0));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }
}
