//! How many workers and processes a run may start.
//!
//! Timely runs each worker as a thread and connects every worker to every
//! other, so memory and start-up grow with the square of the count: `-w
//! 1000` on two cores took 37.7 s and 8.1 GB for 41k rows, and threads
//! beyond the cores add no speed. Counts far beyond the cores are refused
//! before any work starts, with a message naming the count and the cores;
//! the command line (`-w`, `-n`) and the dataflow files (`[cluster]`) share
//! these checks.

use std::num::NonZeroUsize;

use thiserror::Error;

/// Worker threads allowed per core this process may use.
pub const WORKERS_PER_CORE: usize = 4;
/// Worker threads allowed per process, however many cores.
pub const MAX_WORKERS: usize = 256;
/// Processes allowed in one run.
pub const MAX_PROCESSES: usize = 64;

/// A count of workers or processes over its limit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error(
        "{workers} workers is far beyond the {cores} cores this process may use: at most \
         {limit} ({WORKERS_PER_CORE} a core, {MAX_WORKERS} at most); each worker is a thread \
         connected to every other, so more cost memory and start-up time and add no speed"
    )]
    Workers {
        workers: usize,
        cores: usize,
        limit: usize,
    },
    #[error(
        "{processes} processes of {workers} workers on this machine (no hostfile) make {total} \
         workers, far beyond its {cores} cores: at most {limit} in all"
    )]
    LocalTotal {
        processes: usize,
        workers: usize,
        total: usize,
        cores: usize,
        limit: usize,
    },
    #[error("{processes} processes is beyond the limit of {MAX_PROCESSES}")]
    Processes { processes: usize },
}

/// The cores this process may use (1 when the system cannot say).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The most worker threads one process may run on `cores` cores.
pub fn max_workers(cores: usize) -> usize {
    cores.saturating_mul(WORKERS_PER_CORE).clamp(1, MAX_WORKERS)
}

/// Checks `workers` threads per process.
///
/// ```
/// use fraudflow::settings::limits::{check_workers, cores, max_workers};
///
/// assert!(check_workers(1).is_ok());
/// let err = check_workers(1000).unwrap_err().to_string();
/// assert!(err.starts_with("1000 workers is far beyond the"), "{err}");
/// assert!(check_workers(max_workers(cores()) + 1).is_err());
/// ```
pub fn check_workers(workers: usize) -> Result<(), LimitError> {
    let cores = cores();
    let limit = max_workers(cores);
    if workers > limit {
        return Err(LimitError::Workers {
            workers,
            cores,
            limit,
        });
    }
    Ok(())
}

/// Checks a run of `processes` processes of `workers` workers each; with
/// `all_local` (no hostfile: every process on this machine) their total
/// counts against this machine's cores.
pub fn check_cluster(workers: usize, processes: usize, all_local: bool) -> Result<(), LimitError> {
    check_workers(workers)?;
    if processes > MAX_PROCESSES {
        return Err(LimitError::Processes { processes });
    }
    let cores = cores();
    let limit = max_workers(cores);
    let total = workers.saturating_mul(processes);
    if all_local && total > limit {
        return Err(LimitError::LocalTotal {
            processes,
            workers,
            total,
            cores,
            limit,
        });
    }
    Ok(())
}
