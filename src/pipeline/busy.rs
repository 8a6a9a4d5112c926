//! How long each worker worked, for measuring how evenly a run shares its
//! work (`fraudflow bench --scaling`).
//!
//! A worker is busy while it schedules its dataflows, and otherwise polls
//! for messages or parks. Timely logs the start and stop of every
//! operator's scheduling; the outermost of them (a dataflow scheduled by
//! the worker) nest the rest, so their durations summed are the worker's
//! busy time, and the run's wall time less that is the time it waited.
//! Logging every scheduling costs a little, so this is on only when the
//! environment names a file ([`WORKER_BUSY`]): each process writes its
//! workers' figures there (process P of several to `FILE.pP`), one JSON
//! line a worker.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
use timely::worker::Worker;

use super::PipelineError;

/// The environment variable naming the file of the workers' busy times.
pub const WORKER_BUSY: &str = "FRAUDFLOW_WORKER_BUSY";

/// One worker's time, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerBusy {
    /// The worker's index among every process's workers.
    pub worker: usize,
    /// Scheduling its dataflows.
    pub busy_s: f64,
    /// From its dataflows' start to their end.
    pub wall_s: f64,
}

/// Sums the outermost schedulings of one worker.
pub struct BusyClock {
    worker: usize,
    started: Instant,
    busy: Rc<Cell<Duration>>,
}

/// The file of this process's figures, when the environment names one.
pub fn file(process: usize) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(WORKER_BUSY)?);
    Some(match process {
        0 => path,
        p => PathBuf::from(format!("{}.p{p}", path.display())),
    })
}

impl BusyClock {
    /// Starts timing `worker`'s schedulings: call before it builds its
    /// dataflows (their schedulings are logged from their building on).
    pub fn install(worker: &mut Worker) -> Option<BusyClock> {
        let busy = Rc::new(Cell::new(Duration::ZERO));
        let sum = Rc::clone(&busy);
        let (mut depth, mut since) = (0usize, Duration::ZERO);
        let mut registry = worker.log_register()?;
        registry.insert::<TimelyEventBuilder, _>("timely", move |_, events| {
            for (at, event) in events.iter().flatten() {
                let TimelyEvent::Schedule(s) = event else {
                    continue;
                };
                match s.start_stop {
                    StartStop::Start => {
                        if depth == 0 {
                            since = *at;
                        }
                        depth += 1;
                    }
                    StartStop::Stop => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            sum.set(sum.get() + at.saturating_sub(since));
                        }
                    }
                }
            }
        });
        Some(BusyClock {
            worker: worker.index(),
            started: Instant::now(),
            busy,
        })
    }

    /// The worker's figures, once its dataflows have ended.
    pub fn finish(self, worker: &mut Worker) -> WorkerBusy {
        if let Some(logger) = worker.logging() {
            logger.flush();
        }
        if let Some(mut registry) = worker.log_register() {
            drop(registry.remove("timely"));
        }
        WorkerBusy {
            worker: self.worker,
            busy_s: self.busy.get().as_secs_f64(),
            wall_s: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Writes `workers`' figures to `path`, one JSON line each.
pub fn write(path: &Path, workers: &[WorkerBusy]) -> Result<(), PipelineError> {
    let mut text = String::new();
    for w in workers {
        let line = serde_json::to_string(w).map_err(|e| PipelineError::component("busy", e))?;
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| PipelineError::io(path, e))
}

/// Reads the figures [`write`] wrote.
pub fn read(path: &Path) -> Result<Vec<WorkerBusy>, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| PipelineError::component("busy", e)))
        .collect()
}
