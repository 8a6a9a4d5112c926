//! A live session played end to end on this machine, with nothing to start
//! by hand: a bundle trained on a generated month, the live pipeline of
//! `dataflows/local.toml` (embedded, so it runs from any directory),
//! generated payments played into it over HTTP at a steady rate, and
//! simulated analysts labelling its alerts over `POST /feedback`.
//!
//! `fraudflow demo` shows it to a newcomer; `fraudflow readiness` judges
//! the same session against the original system's gates. Both go through
//! the one live run of [`crate::pipeline::live`], and read the run only
//! through its HTTP API and its output files, as an operator would.

pub mod analysts;
pub mod kafka;
pub mod readiness;
pub mod report;
pub mod traffic;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::bundle::Bundle;
use crate::features::Contract;
use crate::pipeline::live::{Live, LiveOptions};
use crate::pipeline::training::{train_bundle, TrainingError};
use crate::pipeline::{
    Cluster, FeatureSettings, PipelineError, PipelineSettings, RunSummary, Stage,
};
use crate::serve::Stopper;
use crate::settings::DataflowFile;
use crate::sources::file::FileSource;
use crate::sources::SourceSettings;
use analysts::{Analysts, Labelled};
use traffic::{Played, Traffic, Truth};
use watch::Status;

/// `dataflows/local.toml`, as built into the binary.
pub const LOCAL_TOML: &str = include_str!("../../dataflows/local.toml");

/// `dataflows/live.toml`, as built into the binary: a session through
/// Kafka runs it, with `local.toml`'s `[feedback]`.
pub const LIVE_TOML: &str = include_str!("../../dataflows/live.toml");

/// What can end a session.
#[derive(Debug, Error)]
pub enum DemoError {
    /// A setting that cannot work, named with its value.
    #[error("{0}")]
    Setting(String),
    /// The run's HTTP API did not answer as it should.
    #[error("{0}")]
    Http(String),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Training(#[from] TrainingError),
    #[error("the run wrote {written} of the {sent} events sent within {seconds} s")]
    Undelivered {
        sent: u64,
        written: u64,
        seconds: u64,
    },
    /// The brokers of a session through Kafka.
    #[error("{0}")]
    Kafka(String),
    #[error("a thread of the session panicked: {0}")]
    Panic(&'static str),
}

impl DemoError {
    fn io(path: &Path, cause: std::io::Error) -> DemoError {
        DemoError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// The HTTP client every part of a session uses: it reads replies of any
/// status rather than turning them into errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Generates `rows` payments over a month of steps into `dir/train.csv`
/// and trains a bundle on them into `dir/models`.
pub fn train_month(
    dir: &Path,
    rows: u64,
    seed: u64,
    workers: usize,
    say: impl FnMut(&str),
) -> Result<Bundle, DemoError> {
    crate::atomic::make_dir("the demo's directory", dir).map_err(PipelineError::from)?;
    let path = dir.join("train.csv");
    let params = crate::generate::GeneratorParams::new(rows, seed)
        .check()
        .map_err(|e| DemoError::Setting(format!("the training month: {e}")))?;
    crate::generate::write_file(params, &path, &indicatif::ProgressBar::hidden())
        .map_err(|e| DemoError::Setting(format!("{}: {e}", path.display())))?;
    let settings = PipelineSettings {
        cluster: Cluster::local(workers),
        source: SourceSettings::File(FileSource::open(&path)?),
        features: FeatureSettings {
            contract: Contract::V2,
            window_ms: 3_600_000,
        },
        stage: Stage::Rows,
    };
    let params = crate::train::TrainParams::default();
    let bundle = train_bundle(settings, &params, &dir.join("models"), say)?;
    bundle.ok_or(DemoError::Setting("training returned no bundle".into()))
}

/// A live run of `dataflows/local.toml` (or, through Kafka,
/// `dataflows/live.toml`) in this process, its dataflow on a thread of its
/// own.
pub struct LocalRun {
    pub url: String,
    pub addr: SocketAddr,
    pub stopper: Stopper,
    /// The run's counts, model version and latencies.
    pub state: Arc<crate::serve::ServeState>,
    /// Where its alerts, normal traffic and dead letters are found as
    /// JSON lines (through Kafka: where the session mirrors its topics).
    pub out: PathBuf,
    /// A run through Kafka: its brokers and topics.
    pub kafka: Option<kafka::KafkaTopics>,
    thread: JoinHandle<Result<RunSummary, PipelineError>>,
}

/// The dataflow file a session runs, and its name: `local.toml`, or
/// through `brokers`, `live.toml` with `local.toml`'s `[feedback]`.
fn session_file(brokers: Option<&str>) -> Result<(PathBuf, DataflowFile), DemoError> {
    let parse = |name: &str, text: &str| {
        let name = PathBuf::from(name);
        let file = DataflowFile::parse(&name, text).map_err(|e| DemoError::Setting(e.to_string()));
        Ok::<_, DemoError>((name, file?))
    };
    let (local_name, local) = parse("dataflows/local.toml", LOCAL_TOML)?;
    if brokers.is_none() {
        return Ok((local_name, local));
    }
    let (name, mut file) = parse("dataflows/live.toml", LIVE_TOML)?;
    file.feedback = local.feedback;
    Ok((name, file))
}

/// A Kafka run's topics, as `file` names them, on `brokers`.
fn kafka_topics(file: &DataflowFile, brokers: &str) -> Option<kafka::KafkaTopics> {
    let source = file.source.kafka.as_ref()?;
    let sinks = file.sinks.kafka.clone().unwrap_or_default();
    Some(kafka::KafkaTopics {
        brokers: brokers.to_string(),
        input: source.topic.clone(),
        outputs: vec![
            (sinks.anomalies, "alerts"),
            (sinks.metrics, "normal"),
            (sinks.dead_letter, "dead_letters"),
        ],
    })
}

impl LocalRun {
    /// Starts the embedded `local.toml` with `models`, writing into `out`,
    /// listening on `listen` (port 0: any free port); with `brokers`, the
    /// embedded `live.toml` on them instead, its outputs to be mirrored
    /// into `out`.
    pub fn start(
        models: &Path,
        out: &Path,
        listen: SocketAddr,
        workers: usize,
        brokers: Option<&str>,
    ) -> Result<LocalRun, DemoError> {
        let (name, file) = session_file(brokers)?;
        crate::atomic::make_dir("the demo's outputs", out).map_err(PipelineError::from)?;
        let kafka = brokers.and_then(|b| kafka_topics(&file, b));
        let options = LiveOptions {
            file: name,
            listen: Some(listen),
            models: Some(models.to_path_buf()),
            out: Some(out.to_path_buf()),
            brokers: brokers.map(str::to_string),
            ..LiveOptions::default()
        };
        let running = Live::prepare(&options, file, Cluster::local(workers))?.start()?;
        let addr = running.addr();
        let (stopper, state) = (running.stopper(), Arc::clone(running.state()));
        let thread = std::thread::Builder::new()
            .name("fraudflow:demo-run".into())
            .spawn(move || running.run())
            .map_err(|e| DemoError::io(out, e))?;
        Ok(LocalRun {
            url: format!("http://{addr}"),
            addr,
            stopper,
            state,
            out: out.to_path_buf(),
            kafka,
            thread,
        })
    }

    /// Stops the run (as SIGTERM would), waits for it to drain, and gives
    /// its summary, or the error that ended it.
    pub fn stop(self) -> Result<RunSummary, DemoError> {
        self.stopper.stop();
        match self.thread.join() {
            Ok(result) => Ok(result?),
            Err(_) => Err(DemoError::Panic("the dataflow")),
        }
    }

    /// Whether the run has ended by itself (a failure).
    pub fn has_ended(&self) -> bool {
        self.thread.is_finished()
    }
}

/// The run a session plays against: its URL, the directory it writes its
/// alerts and normal traffic into (the analysts read them there), and,
/// when it runs in this process, the run itself.
pub struct Target<'a> {
    pub url: String,
    pub outputs: PathBuf,
    pub local: Option<&'a LocalRun>,
    /// A run through Kafka: the traffic goes onto its input topic, and
    /// its output topics are mirrored into `outputs`.
    pub kafka: Option<kafka::KafkaTopics>,
}

impl<'a> Target<'a> {
    pub fn local(run: &'a LocalRun) -> Target<'a> {
        Target {
            url: run.url.clone(),
            outputs: run.out.clone(),
            local: Some(run),
            kafka: run.kafka.clone(),
        }
    }
}

/// How a session plays.
#[derive(Clone, Debug)]
pub struct Session {
    pub traffic: Traffic,
    pub analysts: Analysts,
    /// How often the status is read.
    pub every: Duration,
}

/// What a session did and saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every status read, oldest first; the last after the drain.
    pub statuses: Vec<Status>,
    /// `/metrics` as the last read found it.
    pub metrics: String,
    pub truth: Arc<Truth>,
    pub played: Arc<Played>,
    pub labelled: Arc<Labelled>,
    pub seconds: f64,
    /// The run's most recent latencies, receipt to written (µs).
    pub latency_us: Vec<u64>,
}

impl Session {
    /// A session of `rate` payments a second for `seconds`, in requests of
    /// a hundredth of the rate, one in a thousand malformed, read every
    /// second; analysts label after `delay`, chargebacks come five delays
    /// later.
    pub fn steady(rate: u64, seconds: u64, seed: u64, delay: Duration, capacity: f64) -> Session {
        Session {
            traffic: Traffic {
                rate,
                batch: (rate / 100).clamp(1, 500),
                seconds: seconds as f64,
                seed,
                garbage_every: 1_000,
            },
            analysts: Analysts {
                delay,
                capacity,
                chargeback_delay: delay * 5,
            },
            every: Duration::from_secs(1),
        }
    }

    /// Plays the session against `run`, calling `show` with each status
    /// and the one before; then waits until every event sent is written,
    /// lets the analysts clear their queue, asks the learner to fit what
    /// it holds (`POST /flush`), and reads the run a last time.
    pub fn play(
        &self,
        run: &Target<'_>,
        mut show: impl FnMut(&Status, &Status),
    ) -> Result<Seen, DemoError> {
        let seen = Seen::default();
        let started = Instant::now();
        let agent = agent();
        let mut statuses = vec![watch::read(&agent, &run.url, 0.0)?];
        let mirror = match &run.kafka {
            Some(topics) => Some(kafka::Mirror::start(topics, &run.outputs)?),
            None => None,
        };
        let watching = Watching {
            run,
            agent: &agent,
            started,
            mirror: mirror.as_ref(),
        };
        let played = self.play_all(&watching, &seen, &mut statuses, &mut show);
        let mirrored = mirror.map_or(Ok(()), kafka::Mirror::stop);
        played.and(mirrored)?;
        let _ = agent.post(format!("{}/flush", run.url)).send_empty();
        std::thread::sleep(Duration::from_millis(1_500));
        statuses.push(watch::read(
            &agent,
            &run.url,
            started.elapsed().as_secs_f64(),
        )?);
        let metrics = watch::get(&agent, &format!("{}/metrics", run.url))?;
        Ok(Seen {
            statuses,
            metrics,
            latency_us: run
                .local
                .map(|r| r.state.stats.recent_latencies())
                .unwrap_or_default(),
            seconds: started.elapsed().as_secs_f64(),
            ..seen
        })
    }

    /// The traffic and the analysts, each on a thread, followed until the
    /// traffic is played and every event sent is written; then the
    /// analysts clear their queue.
    fn play_all(
        &self,
        watching: &Watching<'_>,
        seen: &Seen,
        statuses: &mut Vec<Status>,
        show: &mut impl FnMut(&Status, &Status),
    ) -> Result<(), DemoError> {
        let (truth, played, labelled) = (&seen.truth, &seen.played, &seen.labelled);
        let run = watching.run;
        let base = statuses[0].routed();
        std::thread::scope(|s| -> Result<(), DemoError> {
            let player = s.spawn(|| match &run.kafka {
                Some(topics) => kafka::play(topics, &self.traffic, truth, played),
                None => traffic::play(&run.url, &self.traffic, truth, played),
            });
            let analysts =
                s.spawn(|| analysts::work(&run.url, &run.outputs, &self.analysts, truth, labelled));
            let result = self.follow(watching, statuses, show, &player);
            played.stop.store(true, Ordering::Relaxed);
            let played_ok = player.join().map_err(|_| DemoError::Panic("the traffic"))?;
            let drained = result.and(played_ok).and_then(|()| {
                // A run already serving counts what it wrote before too.
                let sent = played.sent.load(Ordering::Relaxed);
                drain(watching, base + sent, sent)
            });
            labelled.stop.store(true, Ordering::Relaxed);
            let analysts_ok = analysts
                .join()
                .map_err(|_| DemoError::Panic("the analysts"))?;
            drained.and(analysts_ok)
        })
    }

    /// Reads the status every `self.every` while the traffic plays.
    fn follow(
        &self,
        watching: &Watching<'_>,
        statuses: &mut Vec<Status>,
        show: &mut impl FnMut(&Status, &Status),
        player: &std::thread::ScopedJoinHandle<'_, Result<(), DemoError>>,
    ) -> Result<(), DemoError> {
        let (run, agent) = (watching.run, watching.agent);
        while !player.is_finished() {
            std::thread::sleep(self.every);
            if run.local.is_some_and(LocalRun::has_ended) {
                return Err(DemoError::Http("the run ended during the session".into()));
            }
            let at = watching.started.elapsed().as_secs_f64();
            let now = watch::read(agent, &run.url, at)?;
            let since = &statuses[statuses.len().saturating_sub(5)];
            show(&now, since);
            statuses.push(now);
        }
        Ok(())
    }
}

/// What a session watches its run through.
struct Watching<'a> {
    run: &'a Target<'a>,
    agent: &'a ureq::Agent,
    started: Instant,
    /// A session through Kafka: the copy of the output topics.
    mirror: Option<&'a kafka::Mirror>,
}

/// Waits (up to 30 s) until the run has written `routed` events in all
/// (and, through Kafka, the mirror has copied the `sent` of this session),
/// then a little longer, so its files are flushed (every second) for the
/// analysts.
fn drain(watching: &Watching<'_>, routed: u64, sent: u64) -> Result<(), DemoError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let copied = || {
        watching
            .mirror
            .map_or(sent, |m| m.copied.load(Ordering::Relaxed))
    };
    loop {
        let now = watch::read(watching.agent, &watching.run.url, 0.0)?;
        if now.routed() >= routed && copied() >= sent {
            std::thread::sleep(Duration::from_millis(1_500));
            return Ok(());
        }
        if Instant::now() > deadline && now.routed() < routed {
            return Err(DemoError::Undelivered {
                sent: routed,
                written: now.routed(),
                seconds: 30,
            });
        }
        if Instant::now() > deadline {
            return Err(DemoError::Kafka(format!(
                "the output topics gave back {} of the {sent} events sent within 30 s",
                copied()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
