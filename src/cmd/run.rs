//! `fraudflow run FILE`: the live pipeline a dataflow file describes,
//! serving events over HTTP until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use fraudflow::bundle::Bundle;
use fraudflow::pipeline::{
    self, Cluster, LiveVersions, NormalSink, Outputs, PipelineSettings, ScoringSettings, Stage,
    StageOutputs, VersionFeed,
};
use fraudflow::serve::reload::{ModelReloader, PolicyChoice};
use fraudflow::serve::{ServeState, Server};
use fraudflow::settings::{DataflowFile, HttpTable};
use fraudflow::sinks::file::live::{DeadLetterLines, LiveStats, OutcomeLines};
use fraudflow::sinks::file::rotating::Rotation;
use fraudflow::sources::live::LiveInput;
use fraudflow::sources::order::TimeLimits;
use fraudflow::sources::SourceSettings;

use super::timely_args::TimelyArgs;
use super::{grouped, on_cluster};

/// Runs the live pipeline of a dataflow file (e.g. dataflows/local.toml):
/// `POST /events` in, alerts, normal traffic and dead letters out as
/// JSON lines; `GET /health`, `GET /ready`, `POST /models/reload`. Flags
/// override the file.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// The dataflow file.
    file: PathBuf,
    /// Address to listen on (overrides [source.http] listen); process P of
    /// several listens on its port + P.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The models directory (overrides [models] dir).
    #[arg(long)]
    models: Option<PathBuf>,
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

/// The parts of a live run, ready before any worker starts.
struct Live {
    settings: PipelineSettings,
    outputs: Option<Outputs>,
    state: Arc<ServeState>,
    http: HttpTable,
    /// How often to look for a new bundle; `None`: only when asked.
    poll: Option<Duration>,
}

fn serve(
    args: &Args,
    file: DataflowFile,
    cluster: Cluster,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let live = prepare(args, file, cluster)?;
    let mut addr: SocketAddr = match args.listen {
        Some(a) => a,
        None => live.http.listen.parse().context("[source.http] listen")?,
    };
    if addr.port() != 0 {
        let port = u16::try_from(live.settings.cluster.process)
            .ok()
            .and_then(|p| addr.port().checked_add(p))
            .with_context(|| {
                format!(
                    "process {}: port {} + {0} is past 65535",
                    live.settings.cluster.process,
                    addr.port()
                )
            })?;
        addr.set_port(port);
    }
    let tick = Duration::from_millis(live.http.tick_ms);
    let server = Server::start(addr, Arc::clone(&live.state), tick)
        .with_context(|| format!("listening on {addr}"))?;
    if !quiet {
        eprintln!(
            "run: serving on http://{} ({} workers); model {}; SIGTERM or Ctrl-C stops",
            server.addr,
            live.settings.cluster.workers,
            live.state
                .model_version
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default()
        );
    }
    if let Some(every) = live.poll {
        ModelReloader::poll(Arc::clone(&live.state), every);
    }
    let input = Arc::clone(&live.state.input);
    let summary = match pipeline::run(live.settings, live.outputs) {
        Ok(s) => s,
        Err(e) => {
            // Refuse events at once (503): nothing would take them now.
            input.close();
            let _ = server.stop();
            return Err(e.into());
        }
    };
    server.join().context("the HTTP server")?;
    if !quiet {
        eprintln!(
            "run: {} events in = {} valid + {} dead letters ({} late); {} alerts, {} normal, {:.1} s",
            grouped(summary.events_in),
            grouped(summary.valid),
            grouped(summary.dead),
            grouped(summary.late),
            grouped(summary.written),
            grouped(summary.normal_written),
            summary.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn prepare(args: &Args, file: DataflowFile, cluster: Cluster) -> anyhow::Result<Live> {
    let Some(http) = file.source.http.clone() else {
        if file.source.kafka.is_some() {
            bail!(
                "{}: [source.kafka] is not built yet; serve [source.http] (dataflows/local.toml)",
                args.file.display()
            );
        }
        bail!(
            "{}: run serves [source.http]; replay a file with fraudflow backtest",
            args.file.display()
        );
    };
    let models_dir = args.models.clone().unwrap_or(file.models.dir.clone());
    let contract = file.features.contract;
    let bundle = Bundle::load(&models_dir, Some(contract))?;
    let choice = PolicyChoice {
        parity: file.models.parity,
        weights: None,
        threshold: file.models.threshold,
    };
    let limits = TimeLimits {
        lateness_ms: http.lateness_ms,
        future_ms: http.future_limit_seconds.saturating_mul(1_000),
        past_ms: http.past_limit_seconds.saturating_mul(1_000),
    };
    let input = LiveInput::new(limits, cluster.process, cluster.processes());
    let versions = LiveVersions::new(Arc::clone(&input));
    let stats = Arc::new(LiveStats::default());
    let owner = cluster.owns_outputs();
    let reloader = owner.then(|| {
        Arc::new(ModelReloader::new(
            models_dir.clone(),
            contract,
            choice,
            Arc::clone(&versions),
            bundle.version.clone(),
        ))
    });
    let out = args.out.clone().unwrap_or(file.sinks.dir.clone());
    // Files are only ever added there (never replaced): the directory must
    // be one, or be creatable.
    if owner {
        fraudflow::atomic::make_dir("[sinks] dir", &out)?;
    }
    let rotation = |prefix: &str| Rotation {
        dir: out.clone(),
        prefix: prefix.to_string(),
        process: cluster.process,
        max_bytes: file.sinks.rotate_bytes,
        flush: Duration::from_millis(file.sinks.flush_ms),
    };
    let outputs = if owner {
        let alerts = OutcomeLines::create(rotation("alerts"), Arc::clone(&stats), true)?;
        let normal = OutcomeLines::create(rotation("normal"), Arc::clone(&stats), false)?;
        let dead = DeadLetterLines::create(rotation("dead_letters"), Arc::clone(&stats))?;
        Some(Outputs {
            dead_letters: Box::new(dead),
            stage: StageOutputs::Scored {
                anomalies: Box::new(alerts),
                normal: NormalSink::Outcomes(Box::new(normal)),
            },
        })
    } else {
        None
    };
    let state = Arc::new(ServeState {
        input: Arc::clone(&input),
        stats,
        models: reloader,
        model_version: Mutex::new(bundle.version.clone()),
        workers: cluster.workers,
        process: cluster.process,
        processes: cluster.processes(),
        max_body_bytes: http.max_body_bytes,
        events_in: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    });
    let settings = PipelineSettings {
        source: SourceSettings::Live(input),
        features: fraudflow::pipeline::FeatureSettings {
            contract,
            window_ms: file.features.window_seconds.saturating_mul(1_000),
        },
        stage: Stage::Scored {
            scoring: ScoringSettings {
                initial: Arc::new(choice.scorer(&bundle)),
                versions: VersionFeed::Live(versions),
            },
            all_outcomes: true,
        },
        cluster,
    };
    let poll =
        (file.models.poll_seconds > 0).then(|| Duration::from_secs(file.models.poll_seconds));
    Ok(Live {
        settings,
        outputs,
        state,
        http,
        poll,
    })
}
