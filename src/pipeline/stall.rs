//! A run that stops moving is ended, not left to hang.
//!
//! Why: timely has no timeout. With several processes, one that is stopped
//! (SIGSTOP, a frozen virtual machine) or cut off without its connections
//! breaking leaves the others waiting for its progress for ever. So the
//! harness watches a probe ([`watch_end`]): after every step it looks
//! ([`check`]), and when the probe's frontier has stood still for the
//! source's stall timeout while the worker was there to see it, the run
//! fails with [`PipelineError::Stalled`] and every process ends (see
//! `pipeline::harness`). Which probe:
//!
//! - over a file, the one at the pipeline's end: a file source is never
//!   idle, so while the run is well its end moves;
//! - live, with several processes, a [`heartbeat`]'s: a dataflow beside the
//!   pipeline whose one operator a worker moves its capability on every
//!   [`PULSE`] until the pipeline's end completes, and whose frontier, the
//!   least over every worker of every process, stands still only when some
//!   worker stops stepping (stopped, cut off, or stuck in a step longer
//!   than the timeout). A live run's own end is no guide: it stands still
//!   whenever nothing arrives, and where a source holds it (a Kafka
//!   partition still taking events of its latest time, a sink waiting on a
//!   broker) for as long as that lasts. With one process there is no peer
//!   to lose, and no watch.
//!
//! Only time spent waiting counts: a gap between two looks longer than
//! [`AWAY`] (a long step, a write that blocked, this process stopped and
//! resumed, the machine asleep) starts the wait again, since the worker was
//! busy or away, not waiting on others; and so does another worker of the
//! process at work, inside a step or out of one within [`AWAY`], that
//! lasted longer than a park can ([`BUSY_STEP`]: parsing or scoring a huge
//! block while this one has nothing to do). A probe that completes is not
//! waited on.
//!
//! # Examples
//!
//! ```
//! use std::time::{Duration, Instant};
//! use fraudflow::pipeline::stall::StallWatch;
//!
//! let (start, s) = (Instant::now(), Duration::from_secs);
//! let mut watch = StallWatch::new(s(2), start);
//! let look = |n: u64| start + Duration::from_millis(50 * n);
//! // Looking every 50 ms at an end that does not move, no worker busy:
//! assert_eq!((1..40).find_map(|n| watch.check(Some(5), false, look(n))), None);
//! assert!(watch.check(Some(5), false, look(41)).is_some());
//! // Another worker busy in a long step starts the wait again.
//! assert_eq!(watch.check(Some(5), true, look(42)), None);
//! ```

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use super::harness::{Abort, POLL};
use super::PipelineError;

/// A gap between two looks longer than this means the worker was busy or
/// away: the wait starts again.
pub const AWAY: Duration = Duration::from_secs(1);

/// How long a watched end has stood still while the worker looked.
#[derive(Clone, Debug)]
pub struct StallWatch {
    after: Duration,
    /// When the end last moved, or the wait last started again.
    since: Instant,
    /// The last look.
    looked: Instant,
    /// The end's frontier at the last look (`None`: complete).
    seen: Option<u64>,
}

impl StallWatch {
    /// A watch that calls a run stalled once its end has stood still for
    /// `after`, from `now` on.
    pub fn new(after: Duration, now: Instant) -> StallWatch {
        StallWatch {
            after,
            since: now,
            looked: now,
            seen: None,
        }
    }

    /// Looks at the probe's frontier at `now`, and whether its standing
    /// still is `excused` (another worker of the process busy in a long
    /// step, or the probe complete): how long it has stood still while the
    /// process waited, once that reaches the watch's time.
    pub fn check(&mut self, end: Option<u64>, excused: bool, now: Instant) -> Option<Duration> {
        let gap = now.saturating_duration_since(self.looked);
        self.looked = now;
        if end != self.seen || gap > AWAY || excused {
            self.seen = end;
            self.since = now;
            return None;
        }
        let still = now.saturating_duration_since(self.since);
        (still >= self.after).then_some(still)
    }
}

/// How often a [`heartbeat`] moves while its worker steps.
pub const PULSE: Duration = Duration::from_millis(200);

/// Builds, beside the pipeline whose end `end` probes, this worker's part
/// of a dataflow whose frontier moves every [`PULSE`] while every worker of
/// every process steps, until that end completes (so a peer stopped while
/// the run drains is seen too); returns its probe. Build it after the
/// pipeline.
pub fn heartbeat(worker: &mut Worker, end: &ProbeHandle<u64>) -> ProbeHandle<u64> {
    let probe = ProbeHandle::new();
    let end = end.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        source::<_, CapacityContainerBuilder<Vec<()>>, _, _>(scope, "Heartbeat", |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(cap);
            move |_output| {
                if end.done() {
                    cap = None;
                }
                if let Some(cap) = cap.as_mut() {
                    let next = *cap.time() + 1;
                    cap.downgrade(&next);
                    activator.activate_after(PULSE);
                }
            }
        })
        .probe_with(&probe);
    });
    probe
}

/// A worker's watched probe.
struct Watched {
    end: ProbeHandle<u64>,
    watch: StallWatch,
}

thread_local! {
    /// The end this worker thread's harness watches, if any.
    static WATCHED: RefCell<Option<Watched>> = const { RefCell::new(None) };
}

/// Has the harness of the calling worker watch `end` (the probe of its
/// pipeline's end, or of a [`heartbeat`]), and fail the run once it
/// stands still for `after`. Call while building the dataflows, on the
/// worker's thread.
pub fn watch_end(end: &ProbeHandle<u64>, after: Duration) {
    let watched = Watched {
        end: end.clone(),
        watch: StallWatch::new(after, Instant::now()),
    };
    WATCHED.with(|w| *w.borrow_mut() = Some(watched));
}

/// A step longer than this did work: a worker parks at most [`POLL`] in
/// one.
pub const BUSY_STEP: Duration = Duration::from_millis(2 * POLL.as_millis() as u64);

/// When each worker of a process entered the step it is in, and when it
/// last left a step longer than [`BUSY_STEP`] (milliseconds since
/// `origin`, plus one; 0: none).
#[derive(Clone)]
pub(super) struct Steps {
    origin: Instant,
    entered: Arc<Vec<AtomicU64>>,
    worked: Arc<Vec<AtomicU64>>,
}

impl Steps {
    /// For a process of `workers` workers.
    pub(super) fn new(workers: usize) -> Steps {
        let stamps = || Arc::new((0..workers.max(1)).map(|_| AtomicU64::new(0)).collect());
        Steps {
            origin: Instant::now(),
            entered: stamps(),
            worked: stamps(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether a worker but `me` is at work: inside a step for longer than
    /// BUSY_STEP, or out of such a step within AWAY.
    fn other_busy(&self, me: usize) -> bool {
        let now = self.now();
        let (busy, away) = (BUSY_STEP.as_millis() as u64, AWAY.as_millis() as u64);
        let load = |stamps: &[AtomicU64], k: usize| stamps[k].load(Ordering::Relaxed);
        (0..self.entered.len()).filter(|&k| k != me).any(|k| {
            let (entered, worked) = (load(&self.entered, k), load(&self.worked, k));
            (entered != 0 && now.saturating_sub(entered) > busy)
                || (worked != 0 && now.saturating_sub(worked) <= away)
        })
    }
}

/// Steps `worker` until its dataflows are done or the run is aborted,
/// failing the run when the watched end stalls.
pub(super) fn step_to_end(worker: &mut Worker, abort: &Abort, steps: &Steps) {
    let me = worker.index() % steps.entered.len();
    let busy = BUSY_STEP.as_millis() as u64;
    while !abort.is_set() {
        let entered = steps.now();
        steps.entered[me].store(entered, Ordering::Relaxed);
        let more = worker.step_or_park(Some(POLL));
        let left = steps.now();
        steps.entered[me].store(0, Ordering::Relaxed);
        if left - entered > busy {
            steps.worked[me].store(left, Ordering::Relaxed);
        }
        if !more {
            break;
        }
        crate::metrics::worker::tick();
        check(|| steps.other_busy(me)).unwrap_or_else(|stalled| abort.fail(stalled));
    }
    forget();
}

/// The harness's look after a step: the stall, if the watched probe has
/// stood still for its time while the process waited (`busy`: whether
/// another worker is at work, asked only when a probe is watched and not
/// complete).
fn check(busy: impl FnOnce() -> bool) -> Result<(), PipelineError> {
    WATCHED.with(|w| {
        let mut watched = w.borrow_mut();
        let Some(Watched { end, watch }) = watched.as_mut() else {
            return Ok(());
        };
        let frontier = end.with_frontier(|f| f.first().copied());
        let excused = frontier.is_none() || busy();
        match watch.check(frontier, excused, Instant::now()) {
            Some(still) => Err(PipelineError::Stalled {
                seconds: still.as_secs(),
            }),
            None => Ok(()),
        }
    })
}

/// Stops watching on this thread (a worker's dataflows are done).
fn forget() {
    WATCHED.with(|w| w.borrow_mut().take());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::agree::Terms;
    use crate::pipeline::harness::{execute, Finish};
    use crate::pipeline::Cluster;
    use timely::dataflow::operators::{Probe, ToStream};
    use timely::worker::Worker;

    /// A worker that looks every `every` from `from`, `n` times, at `end`.
    fn looks(watch: &mut StallWatch, from: Instant, every: Duration, n: u32, end: Option<u64>) {
        for k in 1..=n {
            assert_eq!(watch.check(end, false, from + every * k), None, "look {k}");
        }
    }

    #[test]
    fn only_an_end_that_stands_still_while_the_worker_looks_is_a_stall() {
        let (t0, ms) = (Instant::now(), Duration::from_millis);
        let mut watch = StallWatch::new(ms(2_000), t0);
        // The first frontier seen counts as a move.
        assert_eq!(watch.check(Some(0), false, t0 + ms(50)), None);
        looks(&mut watch, t0 + ms(50), ms(50), 39, Some(0));
        assert_eq!(watch.check(Some(0), false, t0 + ms(2_050)), Some(ms(2_000)));
        // The end moving, forward or to completion, starts the wait again.
        assert_eq!(watch.check(Some(9), false, t0 + ms(2_100)), None);
        looks(&mut watch, t0 + ms(2_100), ms(100), 19, Some(9));
        assert_eq!(watch.check(Some(9), false, t0 + ms(4_100)), Some(ms(2_000)));
        assert_eq!(watch.check(None, false, t0 + ms(4_150)), None);
        // A gap over AWAY (a long step, this process stopped) is not
        // waiting: the wait starts again after it, however long it was.
        let back = t0 + ms(4_150) + AWAY + ms(1);
        assert_eq!(watch.check(None, false, back), None);
        looks(&mut watch, back, ms(500), 3, None);
        assert_eq!(watch.check(None, false, back + ms(2_000)), Some(ms(2_000)));
        // Gaps just within AWAY add up.
        let mut watch = StallWatch::new(ms(2_000), t0);
        assert_eq!(watch.check(Some(1), false, t0), None);
        assert_eq!(watch.check(Some(1), false, t0 + AWAY), None);
        assert_eq!(watch.check(Some(1), false, t0 + AWAY * 2), Some(AWAY * 2));
        // A clock that goes back never counts as time passed.
        assert_eq!(watch.check(Some(1), false, t0), None);
        // Another worker busy in a long step holds the wait off.
        let mut watch = StallWatch::new(ms(2_000), t0);
        assert_eq!(watch.check(Some(1), false, t0), None);
        assert_eq!(watch.check(Some(1), true, t0 + AWAY), None);
        assert_eq!(watch.check(Some(1), false, t0 + AWAY * 2), None);
        assert_eq!(watch.check(Some(1), false, t0 + AWAY * 3), Some(AWAY * 2));
    }

    /// Two workers, each stepping: the heartbeat's frontier moves; worker 1
    /// sleeping in a step (as a stopped process would) holds it still for
    /// worker 0; the pipeline's end completing completes it.
    #[test]
    fn a_heartbeat_moves_while_every_worker_steps_and_stands_still_while_one_does_not() {
        use std::sync::Barrier;
        use timely::dataflow::operators::vec::Input;
        let barrier = Arc::new(Barrier::new(2));
        let guards = timely::execute::execute(timely::Config::process(2), move |worker| {
            let end = ProbeHandle::new();
            let input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, stream) = scope.new_input::<u64>();
                stream.probe_with(&end);
                input
            });
            let beat = heartbeat(worker, &end);
            let frontier = |w: &mut Worker, for_: Duration| {
                let until = Instant::now() + for_;
                while Instant::now() < until {
                    w.step_or_park(Some(Duration::from_millis(10)));
                }
                beat.with_frontier(|f| f.first().copied())
            };
            let ms = Duration::from_millis;
            let moving = frontier(worker, ms(700));
            barrier.wait();
            let (held, still) = if worker.index() == 1 {
                std::thread::sleep(ms(1_000));
                (None, None)
            } else {
                (frontier(worker, ms(150)), frontier(worker, ms(700)))
            };
            barrier.wait();
            let moved = frontier(worker, ms(700));
            let beating = !beat.done();
            input.close();
            let until = Instant::now() + ms(5_000);
            while !beat.done() && Instant::now() < until {
                worker.step_or_park(Some(ms(10)));
            }
            (moving, held, still, moved, beating && beat.done())
        })
        .unwrap();
        let seen: Vec<_> = guards.join().into_iter().map(Result::unwrap).collect();
        let (moving, held, still, moved, done) = seen[0];
        assert!(moving >= Some(2), "{seen:?}");
        assert_eq!(held, still, "{seen:?}");
        assert!(moved > still, "{seen:?}");
        assert!(done && seen[1].4, "{seen:?}");
    }

    /// A run whose input is all read and whose end then stands still (an
    /// operator holds it, as a stopped process of several would): with its
    /// end watched, it ends as stalled; unwatched, the same end completes.
    #[test]
    fn a_watched_end_that_stands_still_after_the_input_ends_the_run_unless_a_worker_is_busy() {
        use timely::dataflow::channels::pact::Pipeline;
        use timely::dataflow::operators::generic::Operator;
        use timely::dataflow::ProbeHandle;
        // Whether the operator holds the end, and how long worker 0 works
        // in one step (its first) while worker 1 has nothing to do.
        let run = |hold: bool, work: Duration| {
            let started = Instant::now();
            let result = execute(&Cluster::local(2), Terms::new(), move |worker, _| {
                let end = ProbeHandle::new();
                let mut nap = (worker.index() == 0).then_some(work);
                worker.dataflow::<u64, _, _>(|scope| {
                    (0..10u64)
                        .to_stream(scope)
                        .container::<Vec<_>>()
                        .unary::<timely::container::CapacityContainerBuilder<Vec<u64>>, _, _, _>(
                            Pipeline,
                            "Hold",
                            move |cap, _| {
                                let mut held = hold.then_some(cap);
                                move |input, _| {
                                    input.for_each(|_, _| {});
                                    held.as_mut().map(|c| *c.time());
                                    if let Some(nap) = nap.take() {
                                        std::thread::sleep(nap);
                                    }
                                }
                            },
                        )
                        .probe_with(&end);
                });
                watch_end(&end, Duration::from_millis(1_500));
                Ok(Box::new(|_: &mut Worker| Ok(())) as Finish<()>)
            });
            (result, started.elapsed())
        };
        let (stalled, took) = run(true, Duration::ZERO);
        let err = stalled.unwrap_err();
        assert!(matches!(err, PipelineError::Stalled { .. }), "{err}");
        assert!(took >= Duration::from_millis(1_500), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        let (ended, took) = run(false, Duration::ZERO);
        assert_eq!(ended.unwrap().len(), 2);
        assert!(took < Duration::from_millis(1_500), "{took:?}");
        // Worker 0 busy for twice the watch's time in one step: worker 1
        // sees the end still, and the process at work.
        let (ended, took) = run(false, Duration::from_secs(3));
        assert_eq!(ended.unwrap().len(), 2);
        assert!(took >= Duration::from_secs(3), "{took:?}");
    }
}
