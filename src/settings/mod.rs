//! The dataflow files under `dataflows/`: one TOML file per dataflow a user
//! launches. Every table rejects unknown keys and every field has a doc
//! comment, which `dataflows/README.md` repeats (a test holds the two
//! together). A bad file is refused before anything starts, naming the
//! file, the line and the key ([`SettingsError`]).

mod check;
pub mod kafka;
pub mod limits;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::dataflow::threshold::ThresholdSettings;

pub use check::{line_of, message};
pub use kafka::{Guarantee, KafkaSinksTable, KafkaTable, PartitionsTable};

/// A dataflow file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataflowFile {
    /// What the dataflow is for, in a sentence.
    #[serde(default)]
    pub description: String,
    /// Where events come from: exactly one of `[source.file]`,
    /// `[source.http]` or `[source.kafka]`.
    pub source: SourceTable,
    /// How events become features.
    #[serde(default)]
    pub features: FeaturesTable,
    /// The model bundle that scores, and how new versions are picked up.
    pub models: ModelsTable,
    /// Where alerts, normal traffic and dead letters go.
    pub sinks: SinksTable,
    /// Worker threads and processes.
    #[serde(default)]
    pub cluster: ClusterTable,
    /// Learn online from analysts' labels (`POST /feedback`); absent: the
    /// models stay as loaded.
    pub feedback: Option<FeedbackTable>,
    /// Let the alert threshold follow the scores; absent: each model
    /// version's own threshold.
    pub adaptive_threshold: Option<AdaptiveThresholdTable>,
}

/// The source tables; exactly one is given.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceTable {
    /// Replay a PaySim CSV or JSON-lines file.
    pub file: Option<FileTable>,
    /// Serve `POST /events` over HTTP.
    pub http: Option<HttpTable>,
    /// Consume a Kafka topic.
    pub kafka: Option<KafkaTable>,
}

/// `[source.file]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileTable {
    /// The file: `.csv` (PaySim) or `.jsonl` (JSON events); relative paths
    /// are from the directory the command runs in.
    pub path: PathBuf,
    /// Seconds an event may come after later ones and still be placed at
    /// its own time.
    #[serde(default = "defaults::lateness_seconds")]
    pub lateness_seconds: u64,
    /// Seconds of event time the source may run ahead of finished output, once it has 4 blocks of its own unfinished.
    #[serde(default = "defaults::max_ahead_seconds")]
    pub max_ahead_seconds: u64,
    /// Bytes of input per block; workers take blocks in turn.
    #[serde(default = "defaults::block_bytes")]
    pub block_bytes: usize,
    /// Seconds an event may be stamped after the latest event time before
    /// it; later ones are dead letters (`time_too_far_ahead`).
    #[serde(default = "defaults::future_limit_seconds")]
    pub future_limit_seconds: u64,
    /// Seconds an event may be stamped before the latest event time before
    /// it; earlier ones are dead letters (`time_too_far_behind`).
    #[serde(default = "defaults::past_limit_seconds")]
    pub past_limit_seconds: u64,
    /// Seconds the run's end may stand still while its workers wait before
    /// the run is ended as stalled (a process of several stopped or cut
    /// off).
    #[serde(default = "defaults::stall_timeout_seconds")]
    pub stall_timeout_seconds: u64,
}

/// `[source.http]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpTable {
    /// Address to listen on, `host:port`; process `p` of several listens
    /// on port + p.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes (413 above it).
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Milliseconds between ticks of the event-time clock when no events
    /// arrive: the frontier advances with the clock, so nothing waits.
    #[serde(default = "defaults::tick_ms")]
    pub tick_ms: u64,
    /// Milliseconds an event may be stamped behind the frontier and still be
    /// placed at its own time; older ones are placed at the frontier and
    /// counted as late.
    #[serde(default)]
    pub lateness_ms: u64,
    /// Seconds an event may be stamped after the later of the latest event
    /// time and the clock; later ones are dead letters
    /// (`time_too_far_ahead`). Small: an accepted event in the future
    /// would hold every later one behind it as late.
    #[serde(default = "defaults::live_future_limit_seconds")]
    pub future_limit_seconds: u64,
    /// Seconds an event may be stamped before the latest event time; earlier
    /// ones are dead letters (`time_too_far_behind`).
    #[serde(default = "defaults::past_limit_seconds")]
    pub past_limit_seconds: u64,
    /// With several processes, seconds one of them may stop stepping
    /// (stopped, cut off from this one, or stuck) before the run ends as
    /// stalled.
    #[serde(default = "defaults::stall_timeout_seconds")]
    pub stall_timeout_seconds: u64,
}

/// `[features]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeaturesTable {
    /// The feature contract, `v1` or `v2`; the bundle must match it.
    #[serde(default = "defaults::contract")]
    pub contract: crate::features::Contract,
    /// Velocity window, in seconds.
    #[serde(default = "defaults::window_seconds")]
    pub window_seconds: u64,
}

/// `[models]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelsTable {
    /// The models directory (or its `bundle.json`) from `fraudflow train`.
    pub dir: PathBuf,
    /// Seconds between looks at the directory for a newly written bundle;
    /// 0 turns polling off (`POST /models/reload` still works).
    #[serde(default = "defaults::poll_seconds")]
    pub poll_seconds: u64,
    /// Score with the original weights 0.4/0.3/0.3 and the threshold
    /// training chose for them.
    #[serde(default)]
    pub parity: bool,
    /// Override the alert threshold.
    pub threshold: Option<f64>,
}

/// `[sinks]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinksTable {
    /// Directory of `alerts-*.jsonl`, `normal-*.jsonl` and
    /// `dead_letters-*.jsonl`; required unless `[sinks.kafka]` is given.
    pub dir: Option<PathBuf>,
    /// A file is closed and a new one begun past this many bytes.
    #[serde(default = "defaults::rotate_bytes")]
    pub rotate_bytes: u64,
    /// Milliseconds between flushes: what is written reaches the file at
    /// least this often.
    #[serde(default = "defaults::flush_ms")]
    pub flush_ms: u64,
    /// Write to Kafka topics instead of files (runs from `[source.kafka]`).
    pub kafka: Option<KafkaSinksTable>,
}

/// `[feedback]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedbackTable {
    /// Seconds a scored transaction's features are kept for its label, and
    /// a label waits for a transaction not seen yet.
    #[serde(default = "defaults::retention_seconds")]
    pub retention_seconds: u64,
    /// Labelled examples per update of the online model.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Seconds of event time a labelled example waits for its batch to
    /// fill before the batch is fitted as it is.
    #[serde(default = "defaults::max_wait_seconds")]
    pub max_wait_seconds: u64,
    /// An update is promoted unless its PR-AUC on the holdout falls by more
    /// than this.
    #[serde(default = "defaults::promotion_margin")]
    pub promotion_margin: f64,
    /// The most recent labelled examples kept as the holdout.
    #[serde(default = "defaults::holdout")]
    pub holdout: usize,
    /// One labelled transaction in this many goes to the holdout instead of
    /// training; 0: none, and every update is promoted.
    #[serde(default = "defaults::holdout_every")]
    pub holdout_every: u64,
    /// The online model's learning rate for each update, before its decay
    /// with the examples seen; absent: 0.05.
    pub learning_rate: Option<f64>,
    /// Weight of a fraud example in each update; absent: the model's own.
    pub positive_weight: Option<f64>,
    /// The most recent fraud examples learned from that are fitted again
    /// with each update; 0: none.
    #[serde(default = "defaults::replay_positives")]
    pub replay_positives: usize,
}

impl FeedbackTable {
    /// The loop's settings (labels from outside: no simulated analysts).
    pub fn settings(&self) -> crate::dataflow::feedback::FeedbackSettings {
        use crate::dataflow::feedback::{FeedbackSettings, LearnerSettings};
        let params = LearnerSettings::params_with(self.learning_rate, self.positive_weight);
        FeedbackSettings {
            retention_ms: self.retention_seconds.saturating_mul(1_000),
            learner: LearnerSettings {
                batch_size: self.batch_size,
                max_wait_ms: self.max_wait_seconds.saturating_mul(1_000),
                margin: self.promotion_margin,
                holdout: self.holdout,
                holdout_every: self.holdout_every,
                params,
                replay_positives: self.replay_positives,
                ..LearnerSettings::default()
            },
            analysts: None,
            flush: None,
            compare_frozen: false,
        }
    }
}

/// `[adaptive_threshold]`: see `crate::dataflow::threshold`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveThresholdTable {
    /// The share of events to alert on; absent: the bundle's budget.
    pub budget: Option<f64>,
    /// Seconds of event time whose scores each change looks back on: a whole number of intervals.
    #[serde(default = "defaults::threshold_window_seconds")]
    pub window_seconds: u64,
    /// Seconds of event time between changes; a change applies this long after the scores it was found on, so it must exceed the source's allowed lateness.
    #[serde(default = "defaults::threshold_every_seconds")]
    pub every_seconds: u64,
    /// The lowest the threshold goes (a bundle's trained threshold may be far below 0.01).
    #[serde(default = "defaults::threshold_floor")]
    pub floor: f64,
    /// The highest the threshold goes.
    #[serde(default = "defaults::threshold_ceiling")]
    pub ceiling: f64,
    /// Scores the window must hold before the threshold moves.
    #[serde(default = "defaults::threshold_min_samples")]
    pub min_samples: usize,
}

impl AdaptiveThresholdTable {
    /// The settings, for a bundle whose budget is `bundle_budget`.
    pub fn settings(&self, bundle_budget: f64) -> ThresholdSettings {
        ThresholdSettings {
            budget: self.budget.unwrap_or(bundle_budget),
            window_ms: self.window_seconds.saturating_mul(1_000),
            every_ms: self.every_seconds.saturating_mul(1_000),
            floor: self.floor,
            ceiling: self.ceiling,
            min_samples: self.min_samples,
        }
    }
}

/// `[cluster]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterTable {
    /// Worker threads per process (`-w`).
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// Seconds to wait for every process to connect.
    #[serde(default = "defaults::connect_timeout_seconds")]
    pub connect_timeout_seconds: u64,
}

impl Default for FeaturesTable {
    fn default() -> Self {
        FeaturesTable {
            contract: defaults::contract(),
            window_seconds: defaults::window_seconds(),
        }
    }
}

impl Default for ClusterTable {
    fn default() -> Self {
        ClusterTable {
            workers: defaults::workers(),
            connect_timeout_seconds: defaults::connect_timeout_seconds(),
        }
    }
}

/// Defaults of the keys that have one.
pub mod defaults {
    use super::ThresholdSettings;
    use crate::sources::file;

    pub fn lateness_seconds() -> u64 {
        file::DEFAULT_LATENESS
    }
    pub fn max_ahead_seconds() -> u64 {
        file::DEFAULT_MAX_AHEAD
    }
    pub fn block_bytes() -> usize {
        file::DEFAULT_BLOCK_BYTES
    }
    pub fn stall_timeout_seconds() -> u64 {
        file::DEFAULT_STALL_TIMEOUT
    }
    pub fn future_limit_seconds() -> u64 {
        crate::sources::order::DEFAULT_FUTURE_LIMIT
    }
    pub fn live_future_limit_seconds() -> u64 {
        crate::sources::order::DEFAULT_LIVE_FUTURE_LIMIT
    }
    pub fn past_limit_seconds() -> u64 {
        crate::sources::order::DEFAULT_PAST_LIMIT
    }
    pub fn listen() -> String {
        "127.0.0.1:8080".to_string()
    }
    pub fn max_body_bytes() -> usize {
        16 << 20
    }
    pub fn tick_ms() -> u64 {
        5
    }
    pub fn topic() -> String {
        "raw-events".to_string()
    }
    pub fn group() -> String {
        "fraudflow".to_string()
    }
    pub fn contract() -> crate::features::Contract {
        crate::features::Contract::V2
    }
    pub fn window_seconds() -> u64 {
        crate::dataflow::WINDOW_SECONDS
    }
    pub fn poll_seconds() -> u64 {
        5
    }
    pub fn rotate_bytes() -> u64 {
        64 << 20
    }
    pub fn flush_ms() -> u64 {
        1_000
    }
    pub fn workers() -> usize {
        1
    }
    pub fn retention_seconds() -> u64 {
        crate::dataflow::feedback::FeedbackSettings::DEFAULT_RETENTION_MS / 1_000
    }
    pub fn batch_size() -> usize {
        crate::dataflow::feedback::LearnerSettings::default().batch_size
    }
    pub fn max_wait_seconds() -> u64 {
        crate::dataflow::feedback::LearnerSettings::default().max_wait_ms / 1_000
    }
    pub fn promotion_margin() -> f64 {
        crate::dataflow::feedback::LearnerSettings::default().margin
    }
    pub fn holdout() -> usize {
        crate::dataflow::feedback::LearnerSettings::default().holdout
    }
    pub fn holdout_every() -> u64 {
        crate::dataflow::feedback::LearnerSettings::default().holdout_every
    }
    pub fn replay_positives() -> usize {
        crate::dataflow::feedback::LearnerSettings::default().replay_positives
    }
    fn threshold() -> ThresholdSettings {
        ThresholdSettings::for_budget(0.005)
    }
    pub fn threshold_window_seconds() -> u64 {
        threshold().window_ms / 1_000
    }
    pub fn threshold_every_seconds() -> u64 {
        threshold().every_ms / 1_000
    }
    pub fn threshold_floor() -> f64 {
        threshold().floor
    }
    pub fn threshold_ceiling() -> f64 {
        threshold().ceiling
    }
    pub fn threshold_min_samples() -> usize {
        threshold().min_samples
    }
    pub fn connect_timeout_seconds() -> u64 {
        crate::pipeline::harness::CONNECT_TIMEOUT.as_secs()
    }
}

/// Why a dataflow file was refused.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Not TOML, an unknown key, a wrong type or a missing key.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A value out of its range, or keys that cannot go together.
    #[error("{}:{line}: key {key}: {problem}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        problem: String,
    },
}

impl DataflowFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<DataflowFile, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|cause| SettingsError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        DataflowFile::parse(path, &text)
    }

    /// Parses and checks `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<DataflowFile, SettingsError> {
        let file: DataflowFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| check::line_at(text, s.start));
            // An empty span at the start, or one over the whole file, is the
            // top-level table's.
            let top = e
                .span()
                .is_some_and(|s| s.start == 0 && (s.end == 0 || s.end >= text.trim_end().len()));
            SettingsError::Parse {
                path: path.to_path_buf(),
                line,
                message: check::message(e.message(), text, if top { 0 } else { line }),
            }
        })?;
        check::check(&file, path, text)?;
        Ok(file)
    }
}
