//! `fraudflow loadgen`: posts generated events to a running `fraudflow run`
//! at a fixed rate, in batches, and reports the rate it sustained and the
//! latency from receipt to the alert (or normal line) being written, as the
//! server measured it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fraudflow::dataflow::json_event::paysim_event;
use fraudflow::eval::Latency;
use fraudflow::generate::{Generator, GeneratorParams};
use serde_json::Value;

use super::grouped;

/// Sends generated events to `POST URL/events` at --rate events a second in
/// batches of --batch, for --seconds; then reads the server's latency, from
/// receipt to the alert or normal line written (p50/p99 over its most
/// recent 65,536 events: use a server that serves nothing else meanwhile).
#[derive(clap::Args)]
pub struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Events a second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events a request, as JSON lines.
    #[arg(long, default_value_t = 50)]
    batch: u64,
    /// Seed of the generated events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    if args.rate == 0 || args.batch == 0 || args.seconds == 0 {
        bail!("--rate, --batch and --seconds must be at least 1");
    }
    let url = args.url.trim_end_matches('/').to_string();
    let agent = ureq::Agent::new_with_defaults();
    let before = health(&agent, &url)?;
    let total = args.rate * args.seconds;
    let params = GeneratorParams::new(total, args.seed).check()?;
    let mut rows = Generator::new(params);
    let gap = Duration::from_secs_f64(args.batch as f64 / args.rate as f64);
    let started = Instant::now();
    let (mut sent, mut round_trips) = (0u64, Vec::new());
    while sent < total {
        let due = started + gap.mul_f64((sent / args.batch) as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = fraudflow::clock::now_millis();
        let mut body = String::new();
        for row in rows.by_ref().take(args.batch.min(total - sent) as usize) {
            sent += 1;
            body.push_str(
                &paysim_event(&row, &format!("lg-{}-{sent}", args.seed), now).to_string(),
            );
            body.push('\n');
        }
        let posted = Instant::now();
        let reply = agent
            .post(&format!("{url}/events"))
            .content_type("application/x-ndjson")
            .send(body.as_bytes())
            .with_context(|| format!("posting to {url}/events"))?;
        round_trips.push(posted.elapsed().as_micros() as u64);
        if reply.status() != 202 {
            bail!("{url}/events answered {}", reply.status());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let routed = wait_routed(&agent, &url, &before, sent)?;
    let rtt = Latency::of(round_trips);
    if !quiet {
        eprintln!("loadgen: waited for the server to write every event");
    }
    outln!(
        "sent {} events in {elapsed:.2} s: {:.0} events/s (target {}), in batches of {}",
        grouped(sent),
        sent as f64 / elapsed,
        grouped(args.rate),
        args.batch
    );
    if let Some(l) = rtt {
        outln!(
            "POST round trip: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
    }
    let latency: Option<Latency> = serde_json::from_value(routed["latency_us"].clone()).ok();
    match latency {
        Some(l) => outln!(
            "receipt to written: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (over {} events)",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            routed["latency_events"]
        ),
        None => outln!("receipt to written: the server reported no latency"),
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

fn health(agent: &ureq::Agent, url: &str) -> anyhow::Result<Value> {
    let mut reply = agent
        .get(&format!("{url}/health"))
        .call()
        .with_context(|| format!("reading {url}/health"))?;
    let text = reply.body_mut().read_to_string()?;
    serde_json::from_str(&text).with_context(|| format!("{url}/health is not JSON"))
}

/// Waits (up to 30 s) until the server has written `sent` more events than
/// `before` said; returns its health then.
fn wait_routed(agent: &ureq::Agent, url: &str, before: &Value, sent: u64) -> anyhow::Result<Value> {
    let out = |h: &Value| {
        ["alerts", "normal", "dead_letters"]
            .iter()
            .map(|k| h[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let target = out(before) + sent;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = health(agent, url)?;
        if out(&now) >= target {
            return Ok(now);
        }
        if Instant::now() > deadline {
            bail!(
                "the server wrote {} of {sent} events within 30 s",
                out(&now) - out(before)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
