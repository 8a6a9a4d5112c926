//! `fraudflow demo`: the first thing a newcomer runs. Trains on a
//! generated month (or takes a bundle), starts the live pipeline of
//! `dataflows/local.toml`, plays payments into it over HTTP with simulated
//! analysts labelling its alerts, shows a status line, and writes the
//! HTML report. With `--brokers`, the same through Kafka.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use fraudflow::bundle::Bundle;
use fraudflow::demo::watch::Status;
use fraudflow::demo::{self, LocalRun, Seen, Session, Target};
use fraudflow::features::Contract;

use super::grouped;

/// Plays a live session on this machine, nothing to start by hand: trains
/// a bundle on a generated month (unless --models), serves
/// dataflows/local.toml, sends it generated payments over HTTP at --rate
/// for --seconds while simulated analysts label its alerts (POST
/// /feedback), shows a status line, then writes OUT/report.html and says
/// where everything is. /health and /metrics are served meanwhile.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds of traffic.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Payments a second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// A models directory from `fraudflow train`; default: train on a
    /// generated month into OUT/models.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Payments of the generated training month.
    #[arg(long, default_value_t = 500_000)]
    train_rows: u64,
    /// Where everything goes.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Address to serve on; when the default is taken, any free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Worker threads.
    #[arg(short = 'w', long, default_value_t = 2)]
    workers: usize,
    /// Seconds from an alert to its label.
    #[arg(long, default_value_t = 2.0)]
    analyst_delay: f64,
    /// Labels a second the analysts manage, at most.
    #[arg(long, default_value_t = 50.0)]
    analyst_capacity: f64,
    /// Seed of the generated traffic (the training month uses seed + 1).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Kafka bootstrap servers (`host:port,...`): run dataflows/live.toml
    /// on them instead, playing the payments onto raw-events and reading
    /// the alerts from the anomalies topic.
    #[arg(long)]
    brokers: Option<String>,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    check(&args)?;
    let models = models(&args, quiet)?;
    let live = args.out.join("live");
    let brokers = args.brokers.as_deref();
    let run = LocalRun::start(&models, &live, listen(&args), args.workers, brokers)?;
    if !quiet {
        eprintln!(
            "demo: serving on {} ({} workers): GET {0}/health, GET {0}/metrics",
            run.url, args.workers
        );
        if let Some(k) = &run.kafka {
            eprintln!(
                "demo: through Kafka at {}: payments onto {}, outputs mirrored from {}",
                k.brokers,
                k.input,
                k.outputs
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        eprintln!(
            "demo: playing {} payments a second for {} s; analysts label alerts {} s after them",
            grouped(args.rate),
            args.seconds,
            args.analyst_delay
        );
    }
    let session = session(&args);
    let mut line = StatusLine::new(quiet);
    let played = session.play(&Target::local(&run), |now, since| line.show(now, since));
    line.end();
    let summary = match played {
        Ok(seen) => (seen, run.stop()?),
        // The run's own failure says more than the session's.
        Err(e) => return Err(run.stop().err().map_or(e.into(), Into::into)),
    };
    finish(&args, &models, summary, quiet)
}

fn check(args: &Args) -> anyhow::Result<()> {
    if args.rate == 0 || args.seconds == 0 || args.workers == 0 {
        anyhow::bail!("--rate, --seconds and --workers must be at least 1");
    }
    if !(args.analyst_delay >= 0.0 && args.analyst_delay.is_finite()) {
        anyhow::bail!(
            "--analyst-delay must be 0 or more seconds, got {}",
            args.analyst_delay
        );
    }
    if !(args.analyst_capacity > 0.0 && args.analyst_capacity.is_finite()) {
        anyhow::bail!(
            "--analyst-capacity must be above 0, got {}",
            args.analyst_capacity
        );
    }
    Ok(())
}

/// The bundle given, or one trained on a generated month.
fn models(args: &Args, quiet: bool) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.models {
        Bundle::load(dir, Some(Contract::V2))?;
        return Ok(dir.clone());
    }
    if !quiet {
        eprintln!(
            "demo: training on {} generated payments over a month, into {}",
            grouped(args.train_rows),
            args.out.join("models").display()
        );
    }
    let say = |what: &str| {
        if !quiet {
            eprintln!("train: {what}");
        }
    };
    demo::train_month(&args.out, args.train_rows, args.seed + 1, args.workers, say)?;
    Ok(args.out.join("models"))
}

/// The address asked for, or 127.0.0.1:8080 when free, or any free port.
fn listen(args: &Args) -> SocketAddr {
    if let Some(a) = args.listen {
        return a;
    }
    let default = SocketAddr::from(([127, 0, 0, 1], 8080));
    match std::net::TcpListener::bind(default) {
        Ok(_) => default,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

fn session(args: &Args) -> Session {
    Session::steady(
        args.rate,
        args.seconds,
        args.seed,
        Duration::from_secs_f64(args.analyst_delay),
        args.analyst_capacity,
    )
}

/// The status line: rewritten in place on a terminal, else a line every
/// ten reads.
struct StatusLine {
    quiet: bool,
    terminal: bool,
    reads: u64,
}

impl StatusLine {
    fn new(quiet: bool) -> StatusLine {
        let terminal = std::io::stderr().is_terminal();
        StatusLine {
            quiet,
            terminal,
            reads: 0,
        }
    }

    fn show(&mut self, now: &Status, since: &Status) {
        self.reads += 1;
        if self.quiet {
            return;
        }
        if self.terminal {
            eprint!("\r\x1b[2K{}", now.line(since));
        } else if self.reads.is_multiple_of(10) {
            eprintln!("{}", now.line(since));
        }
    }

    fn end(&self) {
        if self.terminal && !self.quiet && self.reads > 0 {
            eprintln!();
        }
    }
}

/// Writes the report and the last scrape, and says where everything is.
fn finish(
    args: &Args,
    models: &std::path::Path,
    (seen, summary): (Seen, fraudflow::pipeline::RunSummary),
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let report = args.out.join("report.html");
    let metrics = args.out.join("metrics.txt");
    std::fs::write(&metrics, &seen.metrics)
        .with_context(|| format!("writing {}", metrics.display()))?;
    demo::report::write(&report, &seen, &args.out.join("live"), models)?;
    let last = seen.statuses.last().cloned().unwrap_or_default();
    outln!(
        "demo: {} events in {:.0} s ({} valid + {} dead letters), {} alerts; \
         labels: {} received, {} matched; model {}, {} updates promoted, {} rolled back",
        grouped(summary.events_in),
        seen.seconds,
        grouped(summary.valid),
        grouped(summary.dead),
        grouped(last.alerts),
        grouped(last.labels),
        grouped(last.matched),
        last.model_version,
        last.promoted,
        last.rolled_back
    );
    if let Some(l) = &last.latency_us {
        outln!(
            "demo: latency, receipt to written: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.p50 as f64 / 1e3,
            l.p99 as f64 / 1e3,
            l.max as f64 / 1e3
        );
    }
    if !quiet {
        eprintln!("demo: wrote");
        eprintln!("  {}  the report: open it in a browser", report.display());
        eprintln!(
            "  {}/  alerts, normal traffic and dead letters (JSON lines)",
            args.out.join("live").display()
        );
        eprintln!(
            "  {}/  the bundle, and the online model's versions in online/",
            models.display()
        );
        eprintln!("  {}  the last GET /metrics", metrics.display());
    }
    Ok(ExitCode::SUCCESS)
}
