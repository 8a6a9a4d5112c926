//! The wait of a run of several processes for one another, and its ends.
//!
//! Why: timely waits for every process of a cluster for ever. A process
//! whose peers never come ends after the cluster's `--connect-timeout`
//! (exit 2; 1 when it had failed on its data before), and one asked to
//! stop while it waits (SIGTERM, Ctrl-C) ends at once: before every
//! process has connected a live run takes no event or label
//! (`LiveInput::taking`), so there is nothing to drain.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Cluster;

/// Set when the run is asked to stop: a wait for the other processes
/// still going on then ends at once.
static STOP: AtomicBool = AtomicBool::new(false);

/// The error of a process that failed before its workers ran and waits
/// for the others only to tell them: said first should they never come.
static FAILED: Mutex<Option<(String, bool)>> = Mutex::new(None);

/// Notes the error this process waits for the others to be told of, and
/// whether the data was at fault.
pub(super) fn failed_before_start(error: &super::PipelineError) {
    *FAILED.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((error.to_string(), error.is_data_error()));
}

/// Asks the wait for the other processes, if it still goes on, to end the
/// process now (status 0: nothing was taken).
pub fn stop_waiting() {
    STOP.store(true, SeqCst);
}

/// Where the wait stands: the process's workers mark it connected, its
/// thread marks it ending (stopped or timed out); whichever comes first
/// wins, so that a process never ends this way once its workers have gone
/// on, and its workers never go on once it ends.
const WAITING: u8 = 0;
const CONNECTED: u8 = 1;
const ENDING: u8 = 2;

/// The wait for the other processes; clones share it.
#[derive(Clone)]
pub(super) struct Wait(Arc<AtomicU8>);

impl Wait {
    /// Marks the process connected (every process of the run has sent its
    /// settings and this one found them alike). False when the process is
    /// already ending: its workers must not go on.
    pub(super) fn connected(&self) -> bool {
        match self.0.compare_exchange(WAITING, CONNECTED, SeqCst, SeqCst) {
            Ok(_) => true,
            Err(now) => now == CONNECTED,
        }
    }

    /// Marks the process ending; false when its workers went on already.
    fn ending(&self) -> bool {
        self.0
            .compare_exchange(WAITING, ENDING, SeqCst, SeqCst)
            .is_ok()
    }
}

/// How the wait ended without the others.
enum Ended {
    TimedOut,
    Stopped,
}

/// Ends the process if the other processes have not all connected within
/// the cluster's timeout, or when it is asked to stop before they have.
/// Returns the wait, for the workers to mark connected.
pub(super) fn deadline(cluster: &Cluster) -> Wait {
    let wait = Wait(Arc::new(AtomicU8::new(WAITING)));
    let (state, timeout) = (wait.clone(), cluster.connect_timeout);
    let addresses = cluster.addresses.join(", ");
    std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        let ended = loop {
            if state.0.load(SeqCst) == CONNECTED {
                return;
            }
            if STOP.load(SeqCst) {
                break Ended::Stopped;
            }
            if Instant::now() >= deadline {
                break Ended::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Connected meanwhile: the run goes on, and drains as any other.
        if !state.ending() {
            return;
        }
        crate::atomic::remove_pending();
        match ended {
            Ended::TimedOut => {
                let failed = FAILED.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some((error, _)) = &failed {
                    eprintln!("fraudflow: {error}");
                }
                eprintln!(
                    "fraudflow: the other processes of this run ({addresses}) did not all \
                     connect and agree on their settings within {:.0} s",
                    timeout.as_secs_f64()
                );
                let data = failed.is_some_and(|(_, data)| data);
                std::process::exit(super::error::exit_status(data).into());
            }
            Ended::Stopped => {
                eprintln!(
                    "fraudflow: stopped before the other processes of this run ({addresses}) \
                     had all connected: nothing was taken"
                );
                std::process::exit(0);
            }
        }
    });
    wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_either_connected_or_ending_whichever_came_first() {
        let wait = Wait(Arc::new(AtomicU8::new(WAITING)));
        assert!(wait.connected());
        assert!(wait.connected(), "marking it twice keeps it connected");
        assert!(!wait.ending(), "a connected process does not end this way");
        let wait = Wait(Arc::new(AtomicU8::new(WAITING)));
        assert!(wait.ending());
        assert!(
            !wait.connected(),
            "an ending process's workers must not go on"
        );
        assert!(!wait.ending(), "it ends once");
    }
}
