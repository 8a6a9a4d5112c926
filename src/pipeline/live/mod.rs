//! A live run assembled from a dataflow file: the source (HTTP or Kafka),
//! the sinks, the model versions, the feedback loop and the HTTP server,
//! all made and checked before any worker starts.
//!
//! `fraudflow run`, `fraudflow demo` and `fraudflow readiness` start their
//! pipelines through here, so a live run is put together one way whichever
//! command asks for it: [`Live::prepare`] reads the settings, [`Live::start`]
//! binds the server, and [`Running::run`] runs the dataflow on the calling
//! thread until the server is stopped (SIGTERM, Ctrl-C or a [`Stopper`]).

mod kafka;
mod models;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::kafka::labels::FeedbackTopic;
use crate::kafka::topics::TopicSpec;
use crate::pipeline::{
    self, Cluster, Outputs, PipelineError, PipelineSettings, RunSummary, StageOutputs,
};
use crate::serve::reload::ModelReloader;
use crate::serve::{ServeState, Server, Stopper};
use crate::settings::DataflowFile;
use crate::sinks::file::live::{DeadLetterLines, LiveStats, OutcomeLines};
use crate::sinks::file::rotating::Rotation;
use crate::sources::live::LiveInput;
use crate::sources::order::TimeLimits;
use crate::sources::SourceSettings;
use models::Models;

/// What a command may set over the dataflow file.
#[derive(Clone, Debug, Default)]
pub struct LiveOptions {
    /// The dataflow file's path, named in messages.
    pub file: PathBuf,
    /// Address to listen on (overrides the source's `listen`); process P of
    /// several listens on its port + P.
    pub listen: Option<SocketAddr>,
    /// The models directory (overrides `[models] dir`).
    pub models: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides `[source.kafka] brokers`).
    pub brokers: Option<String>,
    /// Where the JSON-lines files go (overrides `[sinks] dir`).
    pub out: Option<PathBuf>,
    /// The token `POST /feedback` and `POST /flush` require, if any.
    pub api_token: Option<String>,
}

/// The parts of a live run, ready before any worker starts.
pub struct Live {
    settings: PipelineSettings,
    outputs: Option<Outputs>,
    state: Arc<ServeState>,
    listen: SocketAddr,
    /// How often the clock ticks the input (HTTP); `None`: never (Kafka).
    tick: Option<Duration>,
    /// How often to look for a new bundle; `None`: only when asked.
    poll: Option<Duration>,
    /// A Kafka run's topics to make when missing.
    topics: Option<Vec<TopicSpec>>,
    /// A Kafka run with feedback: its labels' publisher and reader.
    feedback_topic: Option<FeedbackTopic>,
}

/// A live run whose server is up; [`Running::run`] runs its dataflow.
pub struct Running {
    live: Live,
    server: Server,
    watcher: Option<JoinHandle<()>>,
}

impl Live {
    /// Reads the file's source, sinks and models (flags in `options` win),
    /// loads the bundle and opens the outputs; nothing listens yet.
    pub fn prepare(
        options: &LiveOptions,
        file: DataflowFile,
        cluster: Cluster,
    ) -> Result<Live, PipelineError> {
        if let Some(table) = file.source.kafka.clone() {
            return kafka::prepare(options, file, cluster, table);
        }
        let Some(http) = file.source.http.clone() else {
            return Err(PipelineError::Setting {
                setting: "[source]",
                problem: format!(
                    "{}: a live run serves [source.http] or [source.kafka]; \
                     replay a file with fraudflow backtest",
                    options.file.display()
                ),
            });
        };
        let limits = TimeLimits {
            lateness_ms: http.lateness_ms,
            future_ms: http.future_limit_seconds.saturating_mul(1_000),
            past_ms: http.past_limit_seconds.saturating_mul(1_000),
        };
        let input = LiveInput::new(
            limits,
            (cluster.process, cluster.processes()),
            Duration::from_secs(http.stall_timeout_seconds),
        );
        let models = Models::load(options, &file, &input, &cluster)?;
        let stats = Arc::new(LiveStats::default());
        let outputs = file_outputs(options, &file, &cluster, &stats)?;
        let state = models.state(
            Arc::clone(&input),
            None,
            Arc::clone(&stats),
            &cluster,
            (http.max_body_bytes, None),
        );
        Ok(Live {
            listen: listen_addr(options.listen, &http.listen, &cluster)?,
            settings: models.settings(SourceSettings::Live(input), &file, cluster, stats),
            outputs,
            state,
            tick: Some(Duration::from_millis(http.tick_ms)),
            poll: models.poll,
            topics: None,
            feedback_topic: None,
        })
    }

    /// Binds the server (a port in use is reported here, before any
    /// worker starts), makes a Kafka run's missing topics and starts
    /// watching its brokers, and starts polling for new bundles.
    pub fn start(mut self) -> Result<Running, PipelineError> {
        let server =
            Server::start(self.listen, Arc::clone(&self.state), self.tick).map_err(|e| {
                PipelineError::Setting {
                    setting: "listen",
                    problem: format!("listening on {}: {e}", self.listen),
                }
            })?;
        let watcher = match &self.state.kafka {
            Some(input) => Some(kafka::start_watcher(input, self.topics.take())?),
            None => None,
        };
        if let Some(every) = self.poll {
            ModelReloader::poll(Arc::clone(&self.state), every);
        }
        Ok(Running {
            live: self,
            server,
            watcher,
        })
    }
}

impl Running {
    /// The address the server listens on (its port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// What the server's handlers share: the input, counts, versions.
    pub fn state(&self) -> &Arc<ServeState> {
        &self.live.state
    }

    /// Worker threads of this process.
    pub fn workers(&self) -> usize {
        self.live.settings.cluster.workers
    }

    /// Stops the run from another thread, as SIGTERM does.
    pub fn stopper(&self) -> Stopper {
        self.server.stopper()
    }

    /// Runs the dataflow on this thread until a server of the run stops
    /// and the dataflow has drained, then ends the server and the watcher. On a
    /// failure the input closes at once, so new events are refused (503).
    pub fn run(mut self) -> Result<RunSummary, PipelineError> {
        let input = Arc::clone(&self.live.state.input);
        let summary = pipeline::run(self.live.settings, self.live.outputs);
        if let Some(topic) = self.live.feedback_topic.take() {
            topic.stop();
        }
        let summary = match summary {
            Ok(s) => s,
            Err(e) => {
                input.close();
                let _ = self.server.stop();
                return Err(e);
            }
        };
        // The dataflow drained: this server stopped it, or another
        // process's did (a live run of several stops together), and then
        // this one must stop too.
        self.server
            .stop()
            .map_err(|e| PipelineError::component("the HTTP server", e))?;
        if let Some(w) = self.watcher {
            let _ = w.join();
        }
        Ok(summary)
    }
}

/// The address to serve on: process P of several on its port + P.
fn listen_addr(
    given: Option<SocketAddr>,
    file: &str,
    cluster: &Cluster,
) -> Result<SocketAddr, PipelineError> {
    let mut addr: SocketAddr = match given {
        Some(a) => a,
        None => file.parse().map_err(|e| PipelineError::Setting {
            setting: "listen",
            problem: format!("{file:?} is not an address: {e}"),
        })?,
    };
    if addr.port() != 0 {
        let process = cluster.process;
        let port = u16::try_from(process)
            .ok()
            .and_then(|p| addr.port().checked_add(p))
            .ok_or_else(|| PipelineError::Setting {
                setting: "listen",
                problem: format!(
                    "process {process}: port {} + {process} is past 65535",
                    addr.port()
                ),
            })?;
        addr.set_port(port);
    }
    Ok(addr)
}

/// A file run's outputs (on process 0): alerts, normal traffic and dead
/// letters as rotated JSON lines in `[sinks] dir`.
fn file_outputs(
    options: &LiveOptions,
    file: &DataflowFile,
    cluster: &Cluster,
    stats: &Arc<LiveStats>,
) -> Result<Option<Outputs>, PipelineError> {
    if !cluster.owns_outputs() {
        return Ok(None);
    }
    let Some(out) = options.out.clone().or(file.sinks.dir.clone()) else {
        return Err(PipelineError::Setting {
            setting: "[sinks] dir",
            problem: format!("{}: missing", options.file.display()),
        });
    };
    // Files are only ever added there (never replaced): the directory must
    // be one, or be creatable.
    crate::atomic::make_dir("[sinks] dir", &out)?;
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
            normal: Box::new(normal),
        },
    }))
}
