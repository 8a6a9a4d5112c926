//! `fraudflow run FILE`: the live pipeline a dataflow file describes,
//! reading events over HTTP or from Kafka until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use fraudflow::pipeline::live::{Live, LiveOptions, Running};
use fraudflow::pipeline::{self, Cluster};
use fraudflow::serve::ServeState;
use fraudflow::settings::DataflowFile;

use super::timely_args::TimelyArgs;

/// The environment variable holding the API token that `POST /feedback`
/// requires, when set and not empty.
pub const API_TOKEN_VAR: &str = "FRAUDFLOW_API_TOKEN";
use super::{grouped, on_cluster};

/// Runs the live pipeline of a dataflow file: dataflows/local.toml takes
/// `POST /events` and writes alerts, normal traffic and dead letters as
/// JSON lines; dataflows/live.toml reads the raw-events topic and writes
/// to the anomalies, metrics and dead-letter topics. Both serve
/// `GET /health`, `GET /ready` and `POST /models/reload`. Flags override
/// the file.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// The dataflow file.
    file: PathBuf,
    /// Address to listen on (overrides [source.http] or [source.kafka]
    /// listen); process P of several listens on its port + P.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The models directory (overrides [models] dir).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides [source.kafka] brokers).
    #[arg(long)]
    brokers: Option<String>,
    /// Where the JSON-lines files go (overrides [sinks] dir).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    timely: TimelyArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let file = DataflowFile::load(&args.file)?;
    let mut timely = args.timely.clone();
    timely.workers = timely.workers.or(Some(file.cluster.workers));
    if !args.timely.connect_timeout_given() {
        timely.connect_timeout = Some(file.cluster.connect_timeout_seconds);
    }
    let cluster = timely.cluster()?;
    on_cluster(&cluster, || serve(&args, file, cluster.clone(), quiet))
}

fn serve(
    args: &Args,
    file: DataflowFile,
    cluster: Cluster,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let options = LiveOptions {
        file: args.file.clone(),
        listen: args.listen,
        models: args.models.clone(),
        brokers: args.brokers.clone(),
        out: args.out.clone(),
        api_token: std::env::var(API_TOKEN_VAR).ok(),
    };
    let running = Live::prepare(&options, file, cluster)?.start()?;
    if !quiet {
        banner(&running);
    }
    let state = Arc::clone(running.state());
    let summary = running.run()?;
    if !quiet {
        report(&summary, &state);
    }
    Ok(ExitCode::SUCCESS)
}

fn banner(running: &Running) {
    let state = running.state();
    eprintln!(
        "run: {} on http://{} ({} workers); model {}; SIGTERM or Ctrl-C stops",
        state
            .kafka
            .as_ref()
            .map_or("serving".to_string(), |k| format!(
                "reading {} from {}",
                k.settings.topic, k.settings.brokers
            )),
        running.addr(),
        running.workers(),
        state
            .model_version
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    );
}

fn report(summary: &pipeline::RunSummary, state: &ServeState) {
    let stats = &state.stats;
    let load = |a: &AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let (alerts, normal) = match &state.kafka {
        Some(_) => (load(&stats.alerts), load(&stats.normal)),
        None => (summary.written, summary.normal_written),
    };
    eprintln!(
        "run: {} events in = {} valid + {} dead letters ({} late); {} alerts, {} normal, {:.1} s",
        grouped(summary.events_in),
        grouped(summary.valid),
        grouped(summary.dead),
        grouped(summary.late),
        grouped(alerts),
        grouped(normal),
        summary.seconds
    );
    if let Some(k) = &state.kafka {
        eprintln!(
            "run: {} dead letters sent; {} events read again to rebuild state",
            grouped(load(&stats.dead_letters)),
            grouped(load(&k.replayed))
        );
    }
    if let (Some(first), Some(last)) = (summary.thresholds.first(), summary.thresholds.last()) {
        eprintln!(
            "run: adaptive threshold: {} changes, from {:.6} to {:.6}",
            summary.thresholds.len(),
            first.threshold,
            last.threshold
        );
    }
    if state.labels.is_some() {
        let f = &summary.feedback;
        eprintln!(
            "run: feedback: {} labels, {} matched, {} unmatched, {} duplicates ({} relabels); \
             {} updates: {} promoted, {} refused, {} rolled back",
            grouped(f.received),
            grouped(f.matched),
            grouped(f.unmatched),
            grouped(f.duplicate),
            grouped(f.relabel),
            grouped(f.updates),
            grouped(f.promoted),
            grouped(f.refused),
            grouped(f.rolled_back)
        );
    }
}
