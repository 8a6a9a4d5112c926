//! `fraudflow loadgen`: posts generated events to a running `fraudflow run`
//! at a fixed rate, in batches, and reports the rate it sustained and the
//! latency from receipt to the alert (or normal line) being written, as the
//! server measured it. The sending loop is `fraudflow::bench::load`, which
//! `fraudflow bench` drives its live run with too.

use std::process::ExitCode;

use fraudflow::bench::load::{drive, LoadSettings};

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
    let report = drive(&LoadSettings {
        url: args.url,
        rate: args.rate,
        seconds: args.seconds,
        batch: args.batch,
        seed: args.seed,
    })?;
    if !quiet {
        eprintln!("loadgen: waited for the server to write every event");
    }
    outln!(
        "sent {} events in {:.2} s: {:.0} events/s (target {}), in batches of {}",
        grouped(report.sent),
        report.elapsed_s,
        report.events_per_second(),
        grouped(args.rate),
        args.batch
    );
    if let Some(l) = report.round_trip_us {
        outln!(
            "POST round trip: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
    }
    match report.server_latency_us {
        Some(l) => outln!(
            "receipt to written: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (over {} events)",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            report.latency_events
        ),
        None => outln!("receipt to written: the server reported no latency"),
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}
