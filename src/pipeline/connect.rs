//! The wait of a run of several processes for one another, and its ends.
//!
//! Why: timely waits for every process of a cluster for ever. A process
//! whose peers never come ends after the cluster's `--connect-timeout`
//! (exit 2), and one asked to stop while it waits (SIGTERM, Ctrl-C) ends at
//! once: before every process has connected a live run takes no event or
//! label (`LiveInput::taking`), so there is nothing to drain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Cluster;

/// Set when the run is asked to stop: a wait for the other processes
/// still going on then ends at once.
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the wait for the other processes, if it still goes on, to end the
/// process now (status 0: nothing was taken).
pub fn stop_waiting() {
    STOP.store(true, Ordering::SeqCst);
}

/// How the wait ended without the others.
enum Ended {
    TimedOut,
    Stopped,
}

/// Ends the process if the other processes have not all connected within
/// the cluster's timeout, or when it is asked to stop before they have.
/// Returns the flag to set once connected.
pub(super) fn deadline(cluster: &Cluster) -> Arc<AtomicBool> {
    let connected = Arc::new(AtomicBool::new(false));
    let (flag, timeout) = (Arc::clone(&connected), cluster.connect_timeout);
    let addresses = cluster.addresses.join(", ");
    std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        let ended = loop {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            // Connected meanwhile: the run drains as any other.
            if STOP.load(Ordering::SeqCst) && !flag.load(Ordering::SeqCst) {
                break Ended::Stopped;
            }
            if Instant::now() >= deadline {
                break Ended::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        crate::atomic::remove_pending();
        match ended {
            Ended::TimedOut => {
                eprintln!(
                    "fraudflow: the other processes of this run ({addresses}) did not all \
                     connect and agree on their settings within {:.0} s",
                    timeout.as_secs_f64()
                );
                std::process::exit(2);
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
    connected
}
