//! `fraudflow run FILE`: the live pipeline a dataflow file describes,
//! reading events over HTTP or from Kafka until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use fraudflow::bundle::Bundle;
use fraudflow::dataflow::feedback::live::LiveLabels;
use fraudflow::dataflow::feedback::store::{self, StoredVersion};
use fraudflow::dataflow::feedback::FeedbackSettings;
use fraudflow::dataflow::threshold::ThresholdSettings;
use fraudflow::kafka::labels::FeedbackTopic;
use fraudflow::kafka::publish::Publisher;
use fraudflow::metrics::Exposed;
use fraudflow::pipeline::{
    self, Cluster, LiveVersions, NormalSink, Outputs, PipelineSettings, ScoringSettings, Stage,
    StageOutputs, VersionFeed,
};
use fraudflow::serve::reload::{ModelReloader, PolicyChoice};
use fraudflow::serve::{ServeState, Server};
use fraudflow::settings::{DataflowFile, KafkaTable};
use fraudflow::sinks::file::live::{DeadLetterLines, LiveStats, OutcomeLines};
use fraudflow::sinks::file::rotating::Rotation;
use fraudflow::sources::kafka::{KafkaInput, KafkaSettings, SinkTopics};
use fraudflow::sources::live::LiveInput;
use fraudflow::sources::order::TimeLimits;
use fraudflow::sources::SourceSettings;

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

/// The parts of a live run, ready before any worker starts.
struct Live {
    settings: PipelineSettings,
    outputs: Option<Outputs>,
    state: Arc<ServeState>,
    listen: String,
    /// How often the clock ticks the input (HTTP); `None`: never (Kafka).
    tick: Option<Duration>,
    /// How often to look for a new bundle; `None`: only when asked.
    poll: Option<Duration>,
    /// A Kafka run's topics to make when missing.
    topics: Option<Vec<fraudflow::kafka::topics::TopicSpec>>,
    /// A Kafka run with feedback: its labels' publisher and reader.
    feedback_topic: Option<FeedbackTopic>,
}

fn serve(
    args: &Args,
    file: DataflowFile,
    cluster: Cluster,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let mut live = prepare(args, file, cluster)?;
    let addr = listen_addr(args, &live)?;
    let server = Server::start(addr, Arc::clone(&live.state), live.tick)
        .with_context(|| format!("listening on {addr}"))?;
    let watcher = match &live.state.kafka {
        Some(kafka) => Some(start_watcher(kafka, live.topics.take())?),
        None => None,
    };
    if !quiet {
        eprintln!(
            "run: {} on http://{} ({} workers); model {}; SIGTERM or Ctrl-C stops",
            live.state
                .kafka
                .as_ref()
                .map_or("serving".to_string(), |k| format!(
                    "reading {} from {}",
                    k.settings.topic, k.settings.brokers
                )),
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
    let summary = pipeline::run(live.settings, live.outputs);
    if let Some(topic) = live.feedback_topic.take() {
        topic.stop();
    }
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            // Refuse events at once (503): nothing would take them now.
            input.close();
            let _ = server.stop();
            return Err(e.into());
        }
    };
    server.join().context("the HTTP server")?;
    if let Some(w) = watcher {
        let _ = w.join();
    }
    if !quiet {
        report(&summary, &live.state);
    }
    Ok(ExitCode::SUCCESS)
}

/// The address to serve on: process P of several on its port + P.
fn listen_addr(args: &Args, live: &Live) -> anyhow::Result<SocketAddr> {
    let mut addr: SocketAddr = match args.listen {
        Some(a) => a,
        None => live.listen.parse().context("listen")?,
    };
    if addr.port() != 0 {
        let process = live.settings.cluster.process;
        let port = u16::try_from(process)
            .ok()
            .and_then(|p| addr.port().checked_add(p))
            .with_context(|| {
                format!(
                    "process {process}: port {} + {process} is past 65535",
                    addr.port()
                )
            })?;
        addr.set_port(port);
    }
    Ok(addr)
}

/// The Kafka watcher: makes the missing topics, then follows the input
/// topic's partitions and the brokers' health.
fn start_watcher(
    kafka: &Arc<KafkaInput>,
    topics: Option<Vec<fraudflow::kafka::topics::TopicSpec>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let brokers = kafka.settings.brokers.clone();
    let bootstrap: fraudflow::sources::kafka::watcher::Bootstrap = Box::new(move || {
        if let Some(specs) = &topics {
            fraudflow::kafka::topics::ensure_topics(&brokers, specs, Duration::from_secs(10))?;
        }
        Ok(())
    });
    Ok(fraudflow::sources::kafka::watcher::start(
        Arc::clone(kafka),
        bootstrap,
    )?)
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

fn prepare(args: &Args, file: DataflowFile, cluster: Cluster) -> anyhow::Result<Live> {
    if let Some(kafka) = file.source.kafka.clone() {
        return prepare_kafka(args, file, cluster, kafka);
    }
    let Some(http) = file.source.http.clone() else {
        bail!(
            "{}: run serves [source.http] or [source.kafka]; replay a file with fraudflow backtest",
            args.file.display()
        );
    };
    let limits = TimeLimits {
        lateness_ms: http.lateness_ms,
        future_ms: http.future_limit_seconds.saturating_mul(1_000),
        past_ms: http.past_limit_seconds.saturating_mul(1_000),
    };
    let input = LiveInput::new(limits, cluster.process, cluster.processes());
    let models = Models::load(args, &file, &input, &cluster)?;
    let stats = Arc::new(LiveStats::default());
    let outputs = file_outputs(args, &file, &cluster, &stats)?;
    let state = models.state(
        Arc::clone(&input),
        None,
        stats,
        &cluster,
        (http.max_body_bytes, None),
    );
    Ok(Live {
        settings: models.settings(SourceSettings::Live(input), &file, cluster),
        outputs,
        state,
        listen: http.listen,
        tick: Some(Duration::from_millis(http.tick_ms)),
        poll: models.poll,
        topics: None,
        feedback_topic: None,
    })
}

/// A file run's outputs (on process 0): alerts, normal traffic and dead
/// letters as rotated JSON lines in `[sinks] dir`.
fn file_outputs(
    args: &Args,
    file: &DataflowFile,
    cluster: &Cluster,
    stats: &Arc<LiveStats>,
) -> anyhow::Result<Option<Outputs>> {
    if !cluster.owns_outputs() {
        return Ok(None);
    }
    let Some(out) = args.out.clone().or(file.sinks.dir.clone()) else {
        bail!("{}: [sinks] dir is missing", args.file.display());
    };
    // Files are only ever added there (never replaced): the directory must
    // be one, or be creatable.
    fraudflow::atomic::make_dir("[sinks] dir", &out)?;
    let rotation = |prefix: &str| Rotation {
        dir: out.clone(),
        prefix: prefix.to_string(),
        process: cluster.process,
        max_bytes: file.sinks.rotate_bytes,
        flush: Duration::from_millis(file.sinks.flush_ms),
    };
    let alerts = OutcomeLines::create(rotation("alerts"), Arc::clone(stats), true)?;
    let normal = OutcomeLines::create(rotation("normal"), Arc::clone(stats), false)?;
    let dead = DeadLetterLines::create(rotation("dead_letters"), Arc::clone(stats))?;
    Ok(Some(Outputs {
        dead_letters: Box::new(dead),
        stage: StageOutputs::Scored {
            anomalies: Box::new(alerts),
            normal: NormalSink::Outcomes(Box::new(normal)),
        },
    }))
}

/// The Kafka source's and sinks' settings from the file and the flags.
fn kafka_settings(args: &Args, file: &DataflowFile, kafka: &KafkaTable) -> KafkaSettings {
    let sinks = file.sinks.kafka.clone().unwrap_or_default();
    let window_ms = file.features.window_seconds.saturating_mul(1_000);
    KafkaSettings {
        brokers: args.brokers.clone().unwrap_or(kafka.brokers.clone()),
        topic: kafka.topic.clone(),
        group: kafka.group.clone(),
        guarantee: kafka.guarantee,
        idle: Duration::from_millis(kafka.idle_ms),
        commit_every: Duration::from_millis(kafka.commit_ms),
        max_batch: kafka.max_batch,
        limits: TimeLimits {
            lateness_ms: 0,
            future_ms: kafka.future_limit_seconds.saturating_mul(1_000),
            past_ms: kafka.past_limit_seconds.saturating_mul(1_000),
        },
        // One window, and the commit interval's worth more of slack.
        restore_ms: kafka
            .restore
            .then(|| window_ms.saturating_add(kafka.commit_ms)),
        sinks: SinkTopics {
            anomalies: sinks.anomalies,
            metrics: sinks.metrics,
            dead_letter: sinks.dead_letter,
        },
    }
}

/// The topics a Kafka run makes when missing, with the file's counts.
fn topic_specs(kafka: &KafkaTable, sinks: &SinkTopics) -> Vec<fraudflow::kafka::topics::TopicSpec> {
    let p = &kafka.partitions;
    let spec = fraudflow::kafka::topics::TopicSpec::new;
    vec![
        spec(&kafka.topic, p.raw_events),
        spec(&sinks.anomalies, p.anomalies),
        spec("feedback", p.feedback),
        spec(&sinks.metrics, p.metrics),
        spec(&sinks.dead_letter, p.dead_letter),
        spec("model-updates", p.model_updates),
    ]
}

/// A Kafka run: the raw-events topic in, the output topics out.
fn prepare_kafka(
    args: &Args,
    file: DataflowFile,
    cluster: Cluster,
    kafka: KafkaTable,
) -> anyhow::Result<Live> {
    let settings = kafka_settings(args, &file, &kafka);
    let input = KafkaInput::new(settings, cluster.process, cluster.processes());
    let mut models = Models::load(args, &file, &input.hub, &cluster)?;
    let stats = Arc::clone(&input.stats);
    let feedback_topic = models.feedback_topic(&kafka, &cluster)?;
    if let Some(f) = models.feedback.as_mut().filter(|_| cluster.process == 0) {
        // The learner runs on process 0: it announces its versions.
        f.learner.announce = fraudflow::kafka::publish::version_announcer(&kafka.brokers)?;
    }
    let publisher = feedback_topic.as_ref().map(|t| Arc::clone(&t.publisher));
    let state = models.state(
        Arc::clone(&input.hub),
        Some(Arc::clone(&input)),
        stats,
        &cluster,
        (0, publisher),
    );
    let topics = kafka
        .create_topics
        .then(|| topic_specs(&kafka, &input.settings.sinks));
    Ok(Live {
        settings: models.settings(SourceSettings::Kafka(input), &file, cluster),
        outputs: None,
        state,
        listen: kafka.listen,
        tick: None,
        poll: models.poll,
        topics,
        feedback_topic,
    })
}

/// The bundle that scores first, and where later versions come from.
struct Models {
    bundle: Bundle,
    choice: PolicyChoice,
    versions: Arc<LiveVersions>,
    reloader: Option<Arc<ModelReloader>>,
    poll: Option<Duration>,
    /// The feedback loop, when the file has `[feedback]`, and the labels
    /// this process's server takes for it.
    feedback: Option<FeedbackSettings>,
    labels: Option<Arc<LiveLabels>>,
    /// The adaptive threshold, when the file has `[adaptive_threshold]`.
    threshold: Option<ThresholdSettings>,
    in_force: Arc<Mutex<String>>,
    /// The learner's newest kept version, which scores from the start.
    resumed: Option<StoredVersion>,
}

impl Models {
    fn load(
        args: &Args,
        file: &DataflowFile,
        input: &Arc<LiveInput>,
        cluster: &Cluster,
    ) -> anyhow::Result<Models> {
        let models_dir = args.models.clone().unwrap_or(file.models.dir.clone());
        let contract = file.features.contract;
        let bundle = Bundle::load(&models_dir, Some(contract))?;
        let choice = PolicyChoice {
            parity: file.models.parity,
            weights: None,
            threshold: file.models.threshold,
        };
        let versions = LiveVersions::new(Arc::clone(input));
        let reloader = cluster.owns_outputs().then(|| {
            Arc::new(ModelReloader::new(
                models_dir.clone(),
                contract,
                choice,
                Arc::clone(&versions),
                bundle.version.clone(),
            ))
        });
        let poll =
            (file.models.poll_seconds > 0).then(|| Duration::from_secs(file.models.poll_seconds));
        let feedback = file.feedback.as_ref().map(|t| {
            let mut settings = t.settings();
            settings.learner.store = Some(models_dir.clone());
            settings.flush = Some(Arc::default());
            settings
        });
        let labels = feedback
            .is_some()
            .then(|| LiveLabels::new(Arc::clone(input), cluster.process, cluster.processes()));
        // The newest version the learner kept for this bundle goes on.
        let width = bundle.models.logistic.n_features();
        let resumed = match &feedback {
            Some(_) => store::newest(&models_dir, &bundle.version, width)?,
            None => None,
        };
        let name = resumed.as_ref().map_or(&bundle.version, |v| &v.version);
        let threshold = file
            .adaptive_threshold
            .as_ref()
            .map(|t| t.settings(bundle.budget));
        Ok(Models {
            threshold,
            in_force: Arc::new(Mutex::new(name.clone())),
            resumed,
            bundle,
            choice,
            versions,
            reloader,
            poll,
            feedback,
            labels,
        })
    }

    /// A Kafka run with `[feedback]`: labels go to the topic through an
    /// outbox of this process's (`MODELS/online/feedback-pP.outbox`), and
    /// process 0 reads them into the dataflow.
    fn feedback_topic(
        &self,
        kafka: &KafkaTable,
        cluster: &Cluster,
    ) -> anyhow::Result<Option<FeedbackTopic>> {
        let (Some(labels), Some(feedback)) = (&self.labels, &self.feedback) else {
            return Ok(None);
        };
        let dir = feedback
            .learner
            .store
            .clone()
            .unwrap_or_default()
            .join("online");
        fraudflow::atomic::make_dir("the feedback outbox's directory", &dir)?;
        let outbox = dir.join(format!("feedback-p{}.outbox", cluster.process));
        let reader = (cluster.process == 0).then(|| Arc::clone(labels));
        let topic = FeedbackTopic::start(&kafka.brokers, &kafka.group, &outbox, reader)?;
        Ok(Some(topic))
    }

    /// The server's state; `body` is the largest request body (HTTP runs)
    /// and a Kafka run's label publisher.
    fn state(
        &self,
        input: Arc<LiveInput>,
        kafka: Option<Arc<KafkaInput>>,
        stats: Arc<LiveStats>,
        cluster: &Cluster,
        body: (usize, Option<Arc<Publisher>>),
    ) -> Arc<ServeState> {
        let (max_body_bytes, publisher) = body;
        let is_kafka = kafka.is_some();
        Arc::new(ServeState {
            input,
            kafka,
            stats,
            models: self.reloader.clone(),
            model_version: Arc::clone(&self.in_force),
            labels: self.labels.clone(),
            publisher,
            flush: self.feedback.as_ref().and_then(|f| f.flush.clone()),
            api_token: std::env::var(API_TOKEN_VAR).ok().filter(|t| !t.is_empty()),
            workers: cluster.workers,
            process: cluster.process,
            processes: cluster.processes(),
            max_body_bytes,
            // On in every live run: each process serves its own.
            metrics: Some(fraudflow::metrics::install(Exposed {
                process: cluster.process,
                workers: cluster.workers,
                kafka: is_kafka,
            })),
            events_in: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// The bundle's scorer, with the learner's newest kept version of its
    /// online model when there is one.
    fn initial(&self) -> fraudflow::dataflow::score::Scorer {
        let mut scorer = self.choice.scorer(&self.bundle);
        if let Some(v) = &self.resumed {
            scorer.models.logistic = v.logistic.clone();
            scorer.model_version = v.version.clone();
        }
        scorer
    }

    fn settings(
        &self,
        source: SourceSettings,
        file: &DataflowFile,
        cluster: Cluster,
    ) -> PipelineSettings {
        PipelineSettings {
            source,
            features: fraudflow::pipeline::FeatureSettings {
                contract: file.features.contract,
                window_ms: file.features.window_seconds.saturating_mul(1_000),
            },
            stage: Stage::Scored {
                scoring: ScoringSettings {
                    initial: Arc::new(self.initial()),
                    versions: VersionFeed::Live(Arc::clone(&self.versions)),
                    feedback: self.feedback.clone().map(Box::new),
                    labels: self.labels.clone(),
                    in_force: Some(Arc::clone(&self.in_force)),
                    threshold: self.threshold,
                },
                all_outcomes: true,
            },
            cluster,
        }
    }
}
