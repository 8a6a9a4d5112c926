//! The live source: events handed over by a server thread (HTTP now, Kafka
//! later), stamped with their own event time in milliseconds.
//!
//! Why the frontier moves as it does: an event must be scored within
//! milliseconds of arriving, so no source holds the frontier back by a
//! fixed lateness. The process keeps one *watermark*: the largest event time
//! handed over, plus one millisecond; and, when nothing arrives, the clock
//! less `lateness_ms`, so that a quiet source (another worker, another
//! process, the model-version source) never holds the others back. Every
//! worker's source downgrades its capability to the watermark as soon as it
//! moves (the server wakes them). An event stamped behind the frontier is
//! placed at the frontier and scored, never dropped; it is counted as late
//! when stamped behind the watermark its own stream made (the latest stamp
//! plus one, or the clock less the lateness), not behind the millisecond
//! the reader steps past each place it gives late events and dead letters
//! (which lets them through at once): those steps add up with every such
//! request, and once they ran ahead of the clock every event on time was
//! counted late.
//!
//! The trade-off: with several processes, a quiet process holds the global
//! frontier `lateness_ms` behind its clock, so events elsewhere wait up to
//! that long; a smaller `lateness_ms` lowers that wait but places more
//! events stamped a little in the past at the frontier (counted as late).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::SyncActivator;

use super::order::{admit_live, Frontier, TimeLimits};
use super::{Parsed, Runs, SourceContext};

/// Most events waiting for the dataflow before new ones are refused.
pub const MAX_WAITING: usize = 1_000_000;

/// What the server threads and this process's workers share.
#[derive(Debug)]
pub struct LiveInput {
    queue: Mutex<Queue>,
    watermark: AtomicU64,
    /// The watermark less the source's own moves past late events and
    /// dead letters ([`advance_to`](Self::advance_to)): the latest event
    /// time handed over plus one, or the clock less the lateness. Lateness
    /// is judged against this, never against those moves, which can run
    /// ahead of the clock (one millisecond for each request with a dead
    /// letter or a late event).
    stamped: AtomicU64,
    limits: TimeLimits,
    closed: AtomicBool,
    /// Another process of the run stopped: this one's server is to stop
    /// as on SIGTERM (and then close the input).
    stop: AtomicBool,
    started: AtomicBool,
    late: AtomicU64,
    activators: Mutex<Vec<SyncActivator>>,
    next: AtomicU64,
    /// This process's index and the number of processes: input order is
    /// numbered so that it is unique over the run.
    process: u64,
    processes: u64,
    /// How long a process of the run may stop stepping before the run
    /// ends as stalled (`pipeline::stall`).
    stall_after: Duration,
}

/// Why events were not taken (nothing of them was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// This many already wait to be scored.
    Full(usize),
    /// The input is closed: the run is stopping.
    Closed,
    /// A run of several processes whose processes have not all connected
    /// (and agreed on their settings) yet: were they never to, what was
    /// taken would be lost with the process.
    Starting,
}

/// The events waiting for the dataflow, and the frontier of all handed over:
/// one lock, so that input order is the order events are judged in.
#[derive(Debug, Default)]
struct Queue {
    events: Vec<Parsed>,
    frontier: Frontier,
}

impl LiveInput {
    /// `limits.lateness_ms` holds the clock's frontier back when nothing
    /// arrives; events further from the frontier (or, ahead, from the clock)
    /// than the limits are dead letters. A run of several processes one
    /// of which stops stepping for `stall_after` ends as stalled.
    pub fn new(
        limits: TimeLimits,
        (process, processes): (usize, usize),
        stall_after: Duration,
    ) -> Arc<LiveInput> {
        Arc::new(LiveInput {
            queue: Mutex::new(Queue::default()),
            watermark: AtomicU64::new(0),
            stamped: AtomicU64::new(0),
            limits,
            closed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            started: AtomicBool::new(false),
            late: AtomicU64::new(0),
            activators: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
            process: process as u64,
            processes: processes.max(1) as u64,
            stall_after,
        })
    }

    /// The next `n` input-order numbers of this process, unique over the
    /// run (interleaved between processes).
    pub fn sequence(&self, n: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.next.fetch_add(n, Ordering::Relaxed);
        (first..first + n).map(|k| k * self.processes + self.process)
    }

    /// Hands events (and dead letters) to the dataflow, then moves the
    /// watermark past them and wakes the sources. Refused, with the number
    /// waiting, when more than [`MAX_WAITING`] would wait: the caller says
    /// so to its client instead of taking what it cannot score.
    /// An event stamped too far from the frontier becomes a dead letter
    /// here, in input order, and does not move the watermark.
    pub fn push(&self, events: Vec<Parsed>) -> Result<(), Refused> {
        let now = crate::clock::now_millis();
        let latest = {
            let mut queue = self.lock_queue();
            // Under the queue's lock: a source that saw the input closed
            // takes the queue after, so whatever got in before is drained,
            // and nothing gets in after.
            if self.is_closed() {
                return Err(Refused::Closed);
            }
            if !self.taking() {
                return Err(Refused::Starting);
            }
            if queue.events.len() + events.len() > MAX_WAITING {
                return Err(Refused::Full(queue.events.len()));
            }
            for parsed in events {
                let parsed = self.judge(parsed, &mut queue.frontier, now);
                queue.events.push(parsed);
            }
            queue.frontier.latest()
        };
        if let Some(latest) = latest {
            // `stamped` first: a reader that sees the new watermark sees it too.
            self.stamped.fetch_max(latest + 1, Ordering::SeqCst);
            self.watermark.fetch_max(latest + 1, Ordering::SeqCst);
        }
        self.wake();
        Ok(())
    }

    /// An event judged against the frontier: itself, or its dead letter.
    fn judge(&self, parsed: Parsed, frontier: &mut Frontier, now: u64) -> Parsed {
        match parsed {
            Ok(event) => admit_live(frontier, event, now, &self.limits, |e| {
                format!("live:{}", e.id)
            }),
            Err(_) => parsed,
        }
    }

    /// Moves the watermark to `to` when that is later, waking the sources.
    pub fn advance_to(&self, to: u64) {
        if self.watermark.fetch_max(to, Ordering::SeqCst) < to {
            self.wake();
        }
    }

    /// Moves the watermark with the clock when nothing arrives.
    pub fn tick(&self, now_ms: u64) {
        let clock = now_ms.saturating_sub(self.limits.lateness_ms);
        self.stamped.fetch_max(clock, Ordering::SeqCst);
        if self.watermark.fetch_max(clock, Ordering::SeqCst) < clock {
            self.wake();
        }
    }

    /// No more input: the sources drain what is queued and stop, so the
    /// dataflow completes.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// How far from the frontier an event may be stamped.
    pub fn limits(&self) -> TimeLimits {
        self.limits
    }

    /// How long a process of the run may stop stepping before the run
    /// ends as stalled (`pipeline::stall`).
    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// Asks the server that feeds this input to stop as SIGTERM stops it:
    /// it stops accepting, lets the requests it took finish, then closes
    /// the input.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether [`request_stop`](Self::request_stop) was called.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The dataflow's sources have started (a source other than
    /// [`live_source`] says so itself).
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Whether the dataflow's sources have started.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Whether what is handed over now is sure to reach the dataflow: with
    /// one process, always (its workers start at once); with several, only
    /// once this process's sources started, after every process connected
    /// and they agreed on their settings. Before, a run whose processes
    /// never all connect would end (`--connect-timeout`) with what it took.
    pub fn taking(&self) -> bool {
        self.processes == 1 || self.is_started()
    }

    /// Events stamped behind the stream's own watermark (see
    /// [`stamped`](Self::stamped)), placed at the frontier.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// The number of processes of the run.
    pub fn processes(&self) -> u64 {
        self.processes
    }

    /// The event time (ms) the sources may advance to.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::SeqCst)
    }

    /// The event time (ms) before which an event is late: the watermark
    /// without the source's own moves past late events and dead letters.
    pub fn stamped(&self) -> u64 {
        self.stamped.load(Ordering::SeqCst)
    }

    /// Wakes every source registered here.
    pub fn wake(&self) {
        for a in self
            .activators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // An error means the dataflow is gone: nothing left to wake.
            let _ = a.activate();
        }
    }

    /// Registers a source to wake when the input or the watermark moves.
    pub fn register(&self, activator: SyncActivator) {
        self.activators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(activator);
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Vec<Parsed> {
        std::mem::take(&mut self.lock_queue().events)
    }
}

/// This worker's part of the live source: the process's first worker emits
/// what the server handed over; every worker follows the watermark.
pub fn live_source<'scope>(
    scope: Scope<'scope, u64>,
    input: Arc<LiveInput>,
    context: SourceContext,
) -> Stream<'scope, u64, Vec<Parsed>> {
    // The first worker of each process reads.
    let reader = scope
        .index()
        .is_multiple_of(context.workers_per_process.max(1));
    let counts = context.counts;
    source::<_, CapacityContainerBuilder<Vec<Parsed>>, _, _>(
        scope,
        "LiveSource",
        move |cap, info| {
            input.register(scope.worker().sync_activator_for(info.address.to_vec()));
            let mut cap = Some(cap);
            let mut runs = Runs::default();
            // What lateness is judged against: `stamped` as of the last
            // activation, as the capability is the watermark as of then.
            let mut judged = 0;
            input.started.store(true, Ordering::SeqCst);
            move |output| {
                let Some(current) = cap.as_mut() else { return };
                // Read before draining: whatever was pushed before the watermark
                // moved is in the queue now; `stamped` after it, as it moves first.
                let watermark = input.watermark();
                let stamped = input.stamped();
                let closed = input.is_closed();
                let mut placed = 0;
                if reader {
                    let floor = *current.time();
                    let behind = judged.min(floor);
                    let mut emit = |time: u64, run: &mut Vec<Parsed>| {
                        output.session(&current.delayed(&time)).give_container(run)
                    };
                    for parsed in input.take() {
                        counts.read(&parsed);
                        // Live, each place is its own logical time.
                        if runs.place_behind(parsed, floor, behind, &counts, |p| p, &mut emit) {
                            input.late.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    runs.flush(&mut emit);
                    // Late events and dead letters go at the frontier: move it
                    // past them, or they would wait for the clock.
                    if let Some(latest) = runs.take_latest() {
                        placed = latest + 1;
                        input.advance_to(placed);
                    }
                }
                judged = judged.max(stamped);
                if closed {
                    cap = None;
                } else if watermark.max(placed) > *current.time() {
                    current.downgrade(&watermark.max(placed));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use timely::dataflow::operators::capture::{Capture, Event as Captured};
    use timely::dataflow::ProbeHandle;

    use super::*;
    use crate::event::{Event, EventId};
    use crate::paysim::{AccountId, TxnType};
    use crate::pipeline::harness::Abort;
    use crate::sources::SourceCounts;

    fn event(time_ms: u64) -> Parsed {
        Ok(Event {
            id: EventId::Row(time_ms),
            seq: time_ms,
            time_ms,
            place_ms: time_ms,
            hour_of_day: 0,
            step: None,
            kind: TxnType::Payment,
            amount: 1.0,
            orig: AccountId::from_name("C1"),
            old_balance_orig: 1.0,
            new_balance_orig: 0.0,
            dest: None,
            old_balance_dest: 0.0,
            new_balance_dest: 0.0,
            label: None,
            received_us: 0,
        })
    }

    #[test]
    fn events_too_far_from_the_clock_or_the_frontier_are_dead_letters_in_input_order() {
        let limits = TimeLimits {
            lateness_ms: 0,
            future_ms: 300_000,
            past_ms: 1_000,
        };
        let input = LiveInput::new(limits, (0, 1), Duration::from_secs(60));
        let now = crate::clock::now_millis();
        // The first is a candidate that the second confirms.
        let times = [now, now + 1, now + 3_600_000, now - 5_000, now + 1_000];
        input
            .push(times.iter().map(|&t| event(t)).collect())
            .unwrap();
        let codes: Vec<Option<String>> = input
            .take()
            .iter()
            .map(|p| p.as_ref().err().map(|d| d.code.clone()))
            .collect();
        let code = |c: &str| Some(c.to_string());
        assert_eq!(
            codes,
            [
                None,
                None,
                code("time_too_far_ahead"),
                code("time_too_far_behind"),
                None
            ]
        );
        // Refused stamps did not move the watermark.
        assert_eq!(input.watermark(), now + 1_001);
    }

    /// A live input that allows a minute of lateness.
    fn a_minute_late() -> Arc<LiveInput> {
        let limits = TimeLimits::with_lateness(60_000);
        LiveInput::new(limits, (0, 1), Duration::from_secs(60))
    }

    /// A source's context on one worker, and its counts.
    fn context() -> (Rc<SourceCounts>, SourceContext) {
        let counts = Rc::new(SourceCounts::default());
        let context = SourceContext {
            counts: Rc::clone(&counts),
            done: ProbeHandle::new(),
            abort: Abort::default(),
            workers_per_process: 1,
            file_share: Default::default(),
        };
        (counts, context)
    }

    #[test]
    fn late_events_go_at_the_frontier_which_then_moves_past_them() {
        let input = a_minute_late();
        let feed = Arc::clone(&input);
        let captured = timely::execute_directly(move |worker| {
            let (counts, context) = context();
            let rx = worker.dataflow::<u64, _, _>(|scope| {
                live_source(scope, Arc::clone(&feed), context).capture()
            });
            feed.push(vec![event(1_000), event(1_000)]).unwrap();
            worker.step();
            // Behind the frontier the first batch moved to 1,001.
            feed.push(vec![event(1_000), event(400)]).unwrap();
            worker.step();
            assert_eq!(counts.late.get(), 2);
            // Moved past the late ones: they wait for no clock.
            assert_eq!(feed.watermark(), 1_002);
            feed.close();
            while worker.step() {}
            rx
        });
        let mut times: Vec<(u64, usize)> = captured
            .try_iter()
            .filter_map(|e| match e {
                Captured::Messages(t, data) => t.least().map(|&t| (t, data.len())),
                Captured::Progress(_) => None,
            })
            .collect();
        times.sort();
        assert_eq!(times, [(1_000, 2), (1_001, 2)]);
        assert_eq!(input.late(), 2);
    }

    #[test]
    fn moves_past_late_events_do_not_make_the_next_on_time_event_late() {
        let input = a_minute_late();
        let feed = Arc::clone(&input);
        timely::execute_directly(move |worker| {
            let (counts, context) = context();
            worker.dataflow::<u64, _, _>(|scope| {
                live_source(scope, Arc::clone(&feed), context);
            });
            feed.push(vec![event(1_000), event(1_000)]).unwrap();
            worker.step();
            // Three requests of one late event each: each moves the
            // frontier a millisecond past the one it was placed at.
            for _ in 0..3 {
                feed.push(vec![event(400)]).unwrap();
                worker.step();
            }
            assert_eq!(feed.watermark(), 1_004);
            // Stamped after every event before it: on time, though placed
            // at the frontier those moves left.
            feed.push(vec![event(1_001)]).unwrap();
            worker.step();
            assert_eq!(counts.late.get(), 3);
            feed.close();
            while worker.step() {}
        });
        assert_eq!(input.late(), 3);
    }
}
