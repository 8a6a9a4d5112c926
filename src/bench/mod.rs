//! The pieces of `fraudflow bench`: measured runs as child processes, the
//! live load, the Flink peer, and the figures they give.
//!
//! Every measured run is a child process of the benchmark (the running
//! `fraudflow` executable, started again with `backtest ...` or `run ...`),
//! so that each run's peak memory is its own and not the largest of every
//! run before it in one process (see [`child`]). The command in
//! `src/cmd/bench.rs` orders the runs; this module starts them, reads what
//! they wrote, and holds the figures in one machine-readable shape.

pub mod child;
pub mod live;
pub mod load;
pub mod peer;
pub mod scaling;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::Latency;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot start {name} ({program}): {cause}")]
    Spawn {
        name: String,
        program: String,
        cause: std::io::Error,
    },
    #[error("waiting for {name}: {cause}")]
    Wait { name: String, cause: std::io::Error },
    #[error("{name} {how}; the end of its standard error ({}):\n{tail}", stderr.display())]
    Child {
        name: String,
        how: String,
        stderr: PathBuf,
        tail: String,
    },
    #[error("{}: {problem}", path.display())]
    Output { path: PathBuf, problem: String },
    #[error("the server at {url} was not ready within {seconds} s")]
    NotReady { url: String, seconds: u64 },
    #[error("driving the server: {0}")]
    Load(#[from] load::LoadError),
}

/// The machine a benchmark ran on, and how busy it was.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// Cores this process may use (`nproc`).
    pub cores: usize,
    /// The CPU's model name, from /proc/cpuinfo where there is one.
    pub cpu: Option<String>,
    /// Memory in KiB, from /proc/meminfo where there is one.
    pub memory_kib: Option<u64>,
}

impl Machine {
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: field(&cpuinfo, "model name"),
            memory_kib: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse().ok()),
        }
    }
}

/// The one-minute load average just before a run (`None` where the
/// system does not say): a busy machine explains a slow figure.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A child that ran to its end: how long, how much memory, how busy the
/// machine was when it started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildRun {
    /// Seconds from starting the process to its exit.
    pub wall_s: f64,
    pub peak_rss_kib: Option<u64>,
    /// CPU seconds the process used (user and system).
    pub cpu_s: Option<f64>,
    pub load_before: Option<f64>,
}

impl ChildRun {
    pub fn of(finished: &child::Finished, load_before: Option<f64>) -> ChildRun {
        ChildRun {
            wall_s: finished.wall_s,
            peak_rss_kib: finished.peak_rss_kib,
            cpu_s: finished.cpu_s,
            load_before,
        }
    }
}

/// One backtest over the whole input, at one worker count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BacktestFigures {
    pub workers: usize,
    /// Events read, as the backtest's report counts them.
    pub events: u64,
    /// The dataflow's seconds, as the report gives them (no start-up, no
    /// report writing).
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_second: f64,
    /// From the source reading an event to its routing.
    pub latency_us: Option<Latency>,
    pub run: ChildRun,
}

/// What a backtest's `report.json` says that the benchmark reads.
#[derive(Deserialize)]
struct ReportFigures {
    events_in: u64,
    seconds: f64,
    latency_us: Option<Latency>,
}

impl BacktestFigures {
    /// The figures of the backtest whose `report.json` is in `out`.
    pub fn read(out: &Path, workers: usize, run: ChildRun) -> Result<Self, BenchError> {
        let path = out.join("report.json");
        let text = std::fs::read_to_string(&path).map_err(|cause| BenchError::Io {
            path: path.clone(),
            cause,
        })?;
        let r: ReportFigures = serde_json::from_str(&text).map_err(|e| BenchError::Output {
            path,
            problem: format!("not a backtest report: {e}"),
        })?;
        Ok(BacktestFigures {
            workers,
            events: r.events_in,
            seconds: r.seconds,
            events_per_second: r.events_in as f64 / r.seconds.max(1e-9),
            latency_us: r.latency_us,
            run,
        })
    }
}

/// The live HTTP path at a fixed rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LiveFigures {
    pub workers: usize,
    /// The rate asked for, events a second.
    pub rate: u64,
    pub sent: u64,
    /// Seconds from the first request to the last answer, or to the end
    /// of the period when that came first.
    pub seconds: f64,
    /// `sent / seconds`: the rate sustained.
    pub events_per_second: f64,
    /// The server's, from receipt to the alert or normal line written.
    pub latency_us: Option<Latency>,
    /// Events the server's latency covers (its most recent ones).
    pub latency_events: u64,
    /// Each POST's round trip, as the client saw it.
    pub round_trip_us: Option<Latency>,
    /// The server process, from start to exit after SIGTERM.
    pub run: ChildRun,
}

/// The input every run read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputFigures {
    pub path: String,
    /// Rows and seed when the benchmark generated it.
    pub rows: Option<u64>,
    pub seed: Option<u64>,
    pub generated: Option<ChildRun>,
}

/// fraudflow's `features` over the whole input, for the peer comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeaturesFigures {
    pub workers: usize,
    pub events: u64,
    /// `events / run.wall_s`: process start to exit, as the peer's figure.
    pub events_per_second: f64,
    pub run: ChildRun,
}

impl FeaturesFigures {
    pub fn new(workers: usize, events: u64, run: ChildRun) -> FeaturesFigures {
        FeaturesFigures {
            workers,
            events,
            events_per_second: events as f64 / run.wall_s.max(1e-9),
            run,
        }
    }
}

/// fraudflow and the peer on the same input, one after the other.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerComparison {
    pub peer: peer::PeerFigures,
    pub features: FeaturesFigures,
    /// The backtest at the peer's parallelism, when one ran.
    pub backtest: Option<BacktestFigures>,
    /// Events a second from process start to exit, fraudflow over the
    /// peer: `features`, and the whole backtest.
    pub features_ratio: f64,
    pub backtest_ratio: Option<f64>,
    /// CPU seconds for the same input, the peer's over fraudflow's: less
    /// moved by other work on a shared machine than wall time.
    pub features_cpu_ratio: Option<f64>,
    pub backtest_cpu_ratio: Option<f64>,
}

impl PeerComparison {
    pub fn new(
        peer: peer::PeerFigures,
        features: FeaturesFigures,
        backtest: Option<BacktestFigures>,
    ) -> PeerComparison {
        let theirs = peer.events_per_second.max(1e-9);
        let backtest_ratio = backtest
            .as_ref()
            .map(|b| b.events as f64 / b.run.wall_s.max(1e-9) / theirs);
        let cpu_ratio = |ours: Option<f64>| Some(peer.cpu_s? / ours?.max(1e-9));
        PeerComparison {
            features_cpu_ratio: cpu_ratio(features.run.cpu_s),
            backtest_cpu_ratio: cpu_ratio(backtest.as_ref().and_then(|b| b.run.cpu_s)),
            features_ratio: features.events_per_second / theirs,
            backtest_ratio,
            peer,
            features,
            backtest,
        }
    }
}

/// Everything one `fraudflow bench` measured (`--json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub input: InputFigures,
    /// Training the bundle, when the benchmark trained one.
    pub training: Option<ChildRun>,
    pub backtest: Vec<BacktestFigures>,
    pub live: Option<LiveFigures>,
    pub peer: Option<PeerComparison>,
    /// With `--scaling`: each worker count's backtest and features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<scaling::Scaling>,
}
