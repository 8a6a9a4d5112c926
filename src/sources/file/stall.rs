//! A run over a file that stops moving is ended, not left to hang.
//!
//! Why: timely has no timeout. With several processes, one that is stopped
//! (SIGSTOP, a frozen virtual machine) or cut off without its connections
//! breaking leaves the others waiting for its progress for ever; in one
//! process, a dataflow left waiting on itself (a bug) does the same. A
//! blocked write is another matter: every worker ends up waiting on it, and
//! none is left to watch. A file source knows what a run
//! over a file does while it is well: it reads, or the end of the dataflow
//! moves. When it has seen neither for a while (`[source.file]
//! stall_timeout_seconds`, `--stall-timeout`), it ends the run with
//! [`crate::pipeline::PipelineError::Stalled`], and the harness ends every
//! process (see `pipeline::harness`). A live source is idle by nature and
//! has no such watch.
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//! use fraudflow::sources::file::stall::StallWatch;
//!
//! let start = Instant::now();
//! let mut watch = StallWatch::new(Duration::from_secs(60), start);
//! assert_eq!(watch.check(Some(5), start + Duration::from_secs(59)), None);
//! // The end moved: the wait starts again.
//! assert_eq!(watch.check(Some(6), start + Duration::from_secs(61)), None);
//! let stalled = watch.check(Some(6), start + Duration::from_secs(121));
//! assert_eq!(stalled, Some(Duration::from_secs(60)));
//! ```

use std::time::{Duration, Instant};

/// When a file source last saw its run move.
#[derive(Clone, Debug)]
pub struct StallWatch {
    after: Duration,
    last: Instant,
    /// The end's frontier last seen (`None`: the run is complete).
    seen: Option<u64>,
}

impl StallWatch {
    /// A watch that calls a run stalled once nothing has moved for `after`
    /// since `now`.
    pub fn new(after: Duration, now: Instant) -> StallWatch {
        StallWatch {
            after,
            last: now,
            seen: None,
        }
    }

    /// The source read or sent something at `now`.
    pub fn moved(&mut self, now: Instant) {
        self.last = now;
    }

    /// Notes the frontier of the dataflow's end (`None` once complete) at
    /// `now`; when neither it nor the source has moved for the watch's
    /// time, how long it has been.
    pub fn check(&mut self, end: Option<u64>, now: Instant) -> Option<Duration> {
        if end != self.seen {
            self.seen = end;
            self.last = now;
            return None;
        }
        let still = now.saturating_duration_since(self.last);
        (still >= self.after).then_some(still)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_that_neither_reads_nor_ends_anything_is_stalled() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut watch = StallWatch::new(s(10), t0);
        // Nothing seen yet: the first frontier counts as a move.
        assert_eq!(watch.check(Some(0), t0 + s(9)), None);
        assert_eq!(watch.check(Some(0), t0 + s(18)), None);
        assert_eq!(watch.check(Some(0), t0 + s(19)), Some(s(10)));
        // Reading moves it on, whatever the end does.
        watch.moved(t0 + s(20));
        assert_eq!(watch.check(Some(0), t0 + s(29)), None);
        assert_eq!(watch.check(Some(0), t0 + s(31)), Some(s(11)));
        // So does the end, forward or to completion.
        assert_eq!(watch.check(Some(7), t0 + s(32)), None);
        assert_eq!(watch.check(None, t0 + s(41)), None);
        assert_eq!(watch.check(None, t0 + s(50)), None);
        assert_eq!(watch.check(None, t0 + s(51)), Some(s(10)));
        // A clock that goes back never counts as time passed.
        assert_eq!(watch.check(None, t0), None);
    }
}
