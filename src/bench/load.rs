//! Generated traffic for a running `fraudflow run`: PaySim rows as JSON
//! events, posted in batches at a fixed rate, then the server's own
//! latency figures once it has written every event.
//!
//! `fraudflow loadgen` and `fraudflow bench` both drive a server with it,
//! so their figures come from the same request pattern.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dataflow::json_event::paysim_event;
use crate::eval::Latency;
use crate::generate::{Generator, GeneratorParams, ParamError};

/// How long to wait for the server to write the last event sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// What to send, and where.
#[derive(Clone, Debug)]
pub struct LoadSettings {
    /// The server, e.g. `http://127.0.0.1:8080` (no trailing slash needed).
    pub url: String,
    /// Events a second.
    pub rate: u64,
    /// Seconds to send for.
    pub seconds: u64,
    /// Events a request, as JSON lines.
    pub batch: u64,
    /// Seed of the generated events.
    pub seed: u64,
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub sent: u64,
    /// Seconds from the first request to the last answer, or to the end
    /// of the period when that came first.
    pub elapsed_s: f64,
    /// Each request's round trip, in microseconds.
    pub round_trip_us: Option<Latency>,
    /// The server's latency from receipt to the alert or normal line
    /// written, over its most recent events (`GET /health`).
    pub server_latency_us: Option<Latency>,
    /// How many events the server's latency covers.
    pub latency_events: u64,
}

impl LoadReport {
    /// Events a second over the sending time.
    pub fn events_per_second(&self) -> f64 {
        self.sent as f64 / self.elapsed_s.max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--rate, --batch and --seconds must be at least 1 (got {rate}, {batch}, {seconds})")]
    Zero { rate: u64, batch: u64, seconds: u64 },
    #[error("generating {rows} events: {cause}")]
    Generator { rows: u64, cause: ParamError },
    #[error("{url}: {cause}")]
    Http {
        url: String,
        cause: Box<ureq::Error>,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} did not answer 200 within {} s (a run of several processes takes events once they have all connected)", READY_LIMIT.as_secs())]
    NotReady { url: String },
    #[error("{url} is not JSON: {cause}")]
    NotJson {
        url: String,
        cause: serde_json::Error,
    },
    #[error("the server wrote {written} of {sent} events within {} s", DRAIN_LIMIT.as_secs())]
    NotWritten { written: u64, sent: u64 },
}

/// Sends `s.rate × s.seconds` generated events to `POST URL/events`, then
/// waits until the server has written them all and reads its latency.
pub fn drive(s: &LoadSettings) -> Result<LoadReport, LoadError> {
    if s.rate == 0 || s.batch == 0 || s.seconds == 0 {
        let (rate, batch, seconds) = (s.rate, s.batch, s.seconds);
        return Err(LoadError::Zero {
            rate,
            batch,
            seconds,
        });
    }
    let url = s.url.trim_end_matches('/');
    let agent = ureq::Agent::new_with_defaults();
    let before = health(&agent, url)?;
    wait_ready(&agent, url)?;
    let total = s.rate.saturating_mul(s.seconds);
    let params = GeneratorParams::new(total, s.seed)
        .check()
        .map_err(|cause| LoadError::Generator { rows: total, cause })?;
    let started = Instant::now();
    let round_trips = send(&agent, s, url, Generator::new(params), total)?;
    // The last batch stands for the last gap of the period: a run that
    // kept up ends when the period does, not when its last batch left.
    let period = started + Duration::from_secs(s.seconds);
    if let Some(rest) = period.checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let routed = wait_written(&agent, url, &before, total)?;
    Ok(LoadReport {
        sent: total,
        elapsed_s,
        round_trip_us: Latency::of(round_trips),
        server_latency_us: serde_json::from_value(routed["latency_us"].clone()).ok(),
        latency_events: routed["latency_events"].as_u64().unwrap_or(0),
    })
}

/// Posts `total` rows of `rows` in batches on the schedule `s` sets;
/// returns each request's round trip in microseconds.
fn send(
    agent: &ureq::Agent,
    s: &LoadSettings,
    url: &str,
    mut rows: Generator,
    total: u64,
) -> Result<Vec<u64>, LoadError> {
    let gap = Duration::from_secs_f64(s.batch as f64 / s.rate as f64);
    let started = Instant::now();
    let (mut sent, mut round_trips) = (0u64, Vec::new());
    let events = format!("{url}/events");
    while sent < total {
        let due = started + gap.mul_f64((sent / s.batch) as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = crate::clock::now_millis();
        let mut body = String::new();
        for row in rows.by_ref().take(s.batch.min(total - sent) as usize) {
            sent += 1;
            let id = format!("lg-{}-{sent}", s.seed);
            body.push_str(&paysim_event(&row, &id, now).to_string());
            body.push('\n');
        }
        let posted = Instant::now();
        let reply = agent
            .post(&events)
            .content_type("application/x-ndjson")
            .send(body.as_bytes())
            .map_err(|cause| http(&events, cause))?;
        round_trips.push(posted.elapsed().as_micros() as u64);
        if reply.status() != 202 {
            let status = reply.status().as_u16();
            return Err(LoadError::Status {
                url: events,
                status,
            });
        }
    }
    Ok(round_trips)
}

fn http(url: &str, cause: ureq::Error) -> LoadError {
    LoadError::Http {
        url: url.to_string(),
        cause: Box::new(cause),
    }
}

/// The server's `GET /health`, as JSON.
pub fn health(agent: &ureq::Agent, url: &str) -> Result<Value, LoadError> {
    let at = format!("{url}/health");
    let mut reply = agent.get(&at).call().map_err(|cause| http(&at, cause))?;
    let text = reply
        .body_mut()
        .read_to_string()
        .map_err(|cause| http(&at, cause))?;
    serde_json::from_str(&text).map_err(|cause| LoadError::NotJson { url: at, cause })
}

/// Longest wait for a server to take events.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Waits (up to [`READY_LIMIT`]) until `GET /ready` answers 200.
fn wait_ready(agent: &ureq::Agent, url: &str) -> Result<(), LoadError> {
    let at = format!("{url}/ready");
    let deadline = Instant::now() + READY_LIMIT;
    while agent.get(&at).call().is_err() {
        if Instant::now() > deadline {
            return Err(LoadError::NotReady { url: at });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Waits (up to [`DRAIN_LIMIT`]) until the server has written `sent` more
/// events than `before` said; returns its health then.
fn wait_written(
    agent: &ureq::Agent,
    url: &str,
    before: &Value,
    sent: u64,
) -> Result<Value, LoadError> {
    let out = |h: &Value| {
        ["alerts", "normal", "dead_letters"]
            .iter()
            .map(|k| h[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let target = out(before) + sent;
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let now = health(agent, url)?;
        if out(&now) >= target {
            return Ok(now);
        }
        if Instant::now() > deadline {
            let written = out(&now).saturating_sub(out(before));
            return Err(LoadError::NotWritten { written, sent });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
