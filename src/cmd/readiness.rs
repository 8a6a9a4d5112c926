//! `fraudflow readiness`: the original system's readiness gates, judged
//! against the real pipeline after a short session has played through it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use fraudflow::bundle::Bundle;
use fraudflow::demo::readiness::{judge, Objectives, Readiness};
use fraudflow::demo::{self, LocalRun, Seen, Session, Target};

/// Plays a short session through a live run and judges the gates: the
/// anomaly path exercised, the feedback path exercised, an online update
/// applied and promoted, the latency objective met, the bundle's quality
/// figures present, and every metric the dashboard reads served. Without
/// --url it trains a bundle and starts the run itself (dataflows/local.toml,
/// any free port). Prints a JSON report (also written to OUT/readiness.json);
/// exits 1 naming each gate that failed.
#[derive(clap::Args)]
pub struct Args {
    /// A run already serving dataflows/local.toml (e.g.
    /// http://127.0.0.1:8080) to judge instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// With --url: the run's [sinks] dir, where its alerts are read.
    #[arg(long, default_value = "out/live", requires = "url")]
    outputs: PathBuf,
    /// The run's models directory; without --url, default: train one into
    /// OUT/models.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Where the trained bundle, the run's files and readiness.json go.
    #[arg(long, default_value = "out/readiness")]
    out: PathBuf,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Payments a second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// The latency objective: p99 from receipt to written, in ms.
    #[arg(long, default_value_t = 50.0)]
    latency_slo_ms: f64,
    /// Worker threads of the run it starts.
    #[arg(short = 'w', long, default_value_t = 2)]
    workers: usize,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    if args.rate == 0 || args.seconds == 0 || args.workers == 0 {
        anyhow::bail!("--rate, --seconds and --workers must be at least 1");
    }
    if !(args.latency_slo_ms > 0.0 && args.latency_slo_ms.is_finite()) {
        anyhow::bail!(
            "--latency-slo-ms must be above 0, got {}",
            args.latency_slo_ms
        );
    }
    let readiness = match &args.url {
        Some(url) => against(&args, url, quiet)?,
        None => started(&args, quiet)?,
    };
    report(&args, &readiness, quiet)
}

/// Starts a run of its own, plays, judges, stops it.
fn started(args: &Args, quiet: bool) -> anyhow::Result<Readiness> {
    let models = match &args.models {
        Some(dir) => dir.clone(),
        None => {
            let say = |what: &str| {
                if !quiet {
                    eprintln!("train: {what}");
                }
            };
            demo::train_month(&args.out, 200_000, 2, args.workers, say)?;
            args.out.join("models")
        }
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let run = LocalRun::start(&models, &args.out.join("live"), listen, args.workers, None)?;
    if !quiet {
        eprintln!(
            "readiness: a run of dataflows/local.toml on {}; playing {} s",
            run.url, args.seconds
        );
    }
    let seen = session(args).play(&Target::local(&run), |_, _| {});
    let outputs = run.out.clone();
    let seen = match seen {
        Ok(seen) => seen,
        Err(e) => return Err(run.stop().err().map_or(e.into(), Into::into)),
    };
    run.stop()?;
    judged(args, &seen, &outputs, &models)
}

/// Plays against a run already serving at `url`.
fn against(args: &Args, url: &str, quiet: bool) -> anyhow::Result<Readiness> {
    let url = url.trim_end_matches('/').to_string();
    let text = ureq::get(format!("{url}/health"))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .with_context(|| format!("reading {url}/health"))?;
    let health: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{url}/health is not JSON"))?;
    if !health["kafka"].is_null() {
        anyhow::bail!(
            "{url} reads Kafka: readiness plays its traffic over POST /events, \
             which only an HTTP run (dataflows/local.toml) takes"
        );
    }
    if !quiet {
        eprintln!("readiness: playing {} s into {url}", args.seconds);
    }
    let target = Target {
        url: url.clone(),
        outputs: args.outputs.clone(),
        local: None,
        kafka: None,
    };
    let seen = session(args).play(&target, |_, _| {})?;
    let models = args
        .models
        .clone()
        .unwrap_or_else(|| PathBuf::from("models"));
    judged(args, &seen, &args.outputs, &models)
}

fn judged(
    args: &Args,
    seen: &Seen,
    outputs: &std::path::Path,
    models: &std::path::Path,
) -> anyhow::Result<Readiness> {
    let bundle = Bundle::load(models, None)?;
    let objectives = Objectives {
        latency_p99_ms: args.latency_slo_ms,
    };
    // Only an HTTP run is played through: no Kafka families are asked for.
    Ok(judge(seen, outputs, &bundle, &objectives, false))
}

fn session(args: &Args) -> Session {
    Session::steady(args.rate, args.seconds, 11, Duration::from_secs(1), 200.0)
}

/// Prints the JSON report, writes it to OUT/readiness.json, and says which
/// gates failed.
fn report(args: &Args, readiness: &Readiness, quiet: bool) -> anyhow::Result<ExitCode> {
    let json = serde_json::to_string_pretty(readiness)?;
    fraudflow::atomic::make_dir("--out", &args.out)?;
    let path = args.out.join("readiness.json");
    std::fs::write(&path, format!("{json}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    outln!("{json}");
    if !quiet {
        for g in &readiness.gates {
            let verdict = if g.passed { "pass" } else { "FAIL" };
            eprintln!("readiness: {verdict}  {:<16} {}", g.name, g.detail);
        }
    }
    if readiness.ready {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "readiness: not ready: failed {}",
        readiness.failed.join(", ")
    );
    Ok(ExitCode::from(1))
}
