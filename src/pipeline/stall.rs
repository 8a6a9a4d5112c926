//! A run that stops moving is ended, not left to hang.
//!
//! Why: timely has no timeout. With several processes, one that is stopped
//! (SIGSTOP, a frozen virtual machine) or cut off without its connections
//! breaking leaves the others waiting for its progress for ever. A run
//! knows what it does while it is well: its end (the probe after its last
//! operator) follows what its sources let go of. So the pipeline has the
//! harness watch that end ([`watch_end`]) beside how far this worker's
//! source has gone ([`Held`]); after every step the harness looks
//! ([`check`]), and when the end has stood still *behind* the source for
//! the source's stall timeout (`--stall-timeout`, `stall_timeout_seconds`
//! in `[source.file]`, `[source.http]` or `[source.kafka]`) while the
//! worker was there to see it, the run fails with
//! [`PipelineError::Stalled`] and every process ends (see
//! `pipeline::harness`).
//!
//! A file source is never idle: while it has input its end must move, so
//! it reports itself always ahead ([`Held::ahead`]). A live source is
//! idle by nature: an end that stands where the source holds it (nothing
//! arrives, or a Kafka partition holds the time of its latest events for
//! more of them) waits on nothing; an end left behind while the source
//! moves on (its events go on arriving, or its clock ticks) waits on
//! another worker or process.
//!
//! Only time spent waiting counts: a gap between two looks longer than
//! [`AWAY`] (a long step, a write that blocked, this process stopped and
//! resumed, the machine asleep) starts the wait again, since the worker was
//! busy or away, not waiting on others; and so does another worker of the
//! process at work, inside a step or out of one within [`AWAY`], that
//! lasted longer than a park can ([`BUSY_STEP`]: parsing or scoring a huge
//! block while this one has nothing to do).
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
//! // Another worker busy in a long step, or an end that is where the
//! // source holds it, starts the wait again.
//! assert_eq!(watch.check(Some(5), true, look(42)), None);
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Looks at the end's frontier at `now`, and whether its standing
    /// still is `excused` (another worker of the process busy in a long
    /// step, or the end where this worker's source holds it): how long the
    /// end has stood still while the process waited, once that reaches the
    /// watch's time.
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

/// How far the sources of a process have let its dataflow go: one slot
/// for each of its workers, the time of the capabilities the worker's
/// source holds (the least of them), or past every time once it holds
/// none. Each source sets its worker's slot; the watch reads the least of
/// them, so an end held by a source of the same process (another worker's
/// Kafka partition still taking events of its latest time) is no stall.
pub type HeldSlots = Arc<[AtomicU64]>;

/// Slots for a process of `workers` workers, each at time 0.
pub fn held_slots(workers: usize) -> HeldSlots {
    (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect()
}

/// A worker's view of [`HeldSlots`].
#[derive(Clone)]
pub struct Held {
    slots: HeldSlots,
    me: usize,
    /// While this says so, an end behind the sources waits on something
    /// a source knows is away (a Kafka broker), not on a stopped process.
    paused: Option<Rc<dyn Fn() -> bool>>,
}

impl Default for Held {
    /// A process of one worker whose source holds time 0.
    fn default() -> Held {
        Held::of(&held_slots(1), 0)
    }
}

impl Held {
    /// Worker `me`'s slot of `slots` (taken modulo their number).
    pub fn of(slots: &HeldSlots, me: usize) -> Held {
        Held {
            slots: Arc::clone(slots),
            me: me % slots.len().max(1),
            paused: None,
        }
    }

    /// A source that is never idle: its end standing still is always
    /// waiting on something.
    pub fn ahead() -> Held {
        let held = Held::default();
        held.release();
        held
    }

    /// The same, but an end behind the sources is not waited on while
    /// `paused` says so.
    pub fn paused_while(self, paused: impl Fn() -> bool + 'static) -> Held {
        Held {
            paused: Some(Rc::new(paused)),
            ..self
        }
    }

    /// This worker's source holds capabilities at `time` and later.
    pub fn set(&self, time: u64) {
        self.slots[self.me].store(time, Ordering::Relaxed);
    }

    /// This worker's source holds nothing.
    pub fn release(&self) {
        self.set(u64::MAX);
    }

    /// Whether an end at `end` (`None`: complete) is behind every source
    /// of the process and waits on something other than what pauses it.
    fn is_behind(&self, end: Option<u64>) -> bool {
        let least = || self.slots.iter().map(|s| s.load(Ordering::Relaxed)).min();
        end.is_some_and(|e| least().is_some_and(|l| e < l))
            && !self.paused.as_ref().is_some_and(|p| p())
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("me", &self.me)
            .field("slots", &self.slots)
            .field("paused", &self.paused.is_some())
            .finish()
    }
}

/// A worker's watched end.
struct Watched {
    end: ProbeHandle<u64>,
    source: Held,
    watch: StallWatch,
}

thread_local! {
    /// The end this worker thread's harness watches, if any.
    static WATCHED: RefCell<Option<Watched>> = const { RefCell::new(None) };
}

/// Has the harness of the calling worker watch `end`, the probe of its
/// dataflow's end, and fail the run once it stands still behind `source`
/// for `after`. Call while building the dataflow, on the worker's thread.
pub fn watch_end(end: &ProbeHandle<u64>, source: Held, after: Duration) {
    let watched = Watched {
        end: end.clone(),
        source,
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

/// The harness's look after a step: the stall, if the watched end has
/// stood still behind the source for its time while the process waited
/// (`busy`: whether another worker is at work, asked only when an end is
/// watched and behind).
fn check(busy: impl FnOnce() -> bool) -> Result<(), PipelineError> {
    WATCHED.with(|w| {
        let mut watched = w.borrow_mut();
        let Some(Watched { end, source, watch }) = watched.as_mut() else {
            return Ok(());
        };
        let frontier = end.with_frontier(|f| f.first().copied());
        let excused = !source.is_behind(frontier) || busy();
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

    #[test]
    fn an_end_is_behind_only_when_behind_every_source_of_the_process_and_not_paused() {
        use std::cell::Cell;
        let slots = held_slots(2);
        let (a, b) = (Held::of(&slots, 0), Held::of(&slots, 3));
        // Both sources at time 0 (as they start): nothing is behind them.
        assert!(!a.is_behind(Some(0)));
        a.set(10);
        b.set(5);
        assert!(a.is_behind(Some(4)) && b.is_behind(Some(4)));
        // Held by worker 1's source, of the same process: no stall.
        assert!(!a.is_behind(Some(5)) && !a.is_behind(Some(7)));
        assert!(!a.is_behind(None));
        b.release();
        assert!(a.is_behind(Some(9)) && !a.is_behind(Some(10)));
        a.release();
        assert!(b.is_behind(Some(u64::MAX - 1)));
        // Paused (a broker away), an end behind is not waited on.
        let away = Rc::new(Cell::new(true));
        let seen = Rc::clone(&away);
        let paused = a.clone().paused_while(move || seen.get());
        assert!(!paused.is_behind(Some(3)));
        away.set(false);
        assert!(paused.is_behind(Some(3)));
        assert!(Held::ahead().is_behind(Some(0)) && !Held::ahead().is_behind(None));
        assert!(!Held::default().is_behind(Some(0)));
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
                watch_end(&end, Held::ahead(), Duration::from_millis(1_500));
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
