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
//! placed at the frontier, counted as late and scored, never dropped.
//!
//! The trade-off: with several processes, a quiet process holds the global
//! frontier `lateness_ms` behind its clock, so events elsewhere wait up to
//! that long; a smaller `lateness_ms` lowers that wait but places more
//! events stamped a little in the past at the frontier (counted as late).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::SyncActivator;

use super::{Parsed, Runs, SourceContext};

/// What the server threads and this process's workers share.
#[derive(Debug)]
pub struct LiveInput {
    queue: Mutex<Vec<Parsed>>,
    watermark: AtomicU64,
    lateness_ms: u64,
    closed: AtomicBool,
    started: AtomicBool,
    late: AtomicU64,
    activators: Mutex<Vec<SyncActivator>>,
    next: AtomicU64,
    /// This process's index and the number of processes: input order is
    /// numbered so that it is unique over the run.
    process: u64,
    processes: u64,
}

impl LiveInput {
    pub fn new(lateness_ms: u64, process: usize, processes: usize) -> Arc<LiveInput> {
        Arc::new(LiveInput {
            queue: Mutex::new(Vec::new()),
            watermark: AtomicU64::new(0),
            lateness_ms,
            closed: AtomicBool::new(false),
            started: AtomicBool::new(false),
            late: AtomicU64::new(0),
            activators: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
            process: process as u64,
            processes: processes.max(1) as u64,
        })
    }

    /// The next `n` input-order numbers of this process, unique over the
    /// run (interleaved between processes).
    pub fn sequence(&self, n: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.next.fetch_add(n, Ordering::Relaxed);
        (first..first + n).map(|k| k * self.processes + self.process)
    }

    /// Hands events (and dead letters) to the dataflow, then moves the
    /// watermark past them and wakes the sources.
    pub fn push(&self, events: Vec<Parsed>) {
        let latest = events
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|e| e.time_ms))
            .max();
        self.lock_queue().extend(events);
        if let Some(latest) = latest {
            self.watermark.fetch_max(latest + 1, Ordering::SeqCst);
        }
        self.wake();
    }

    /// Moves the watermark with the clock when nothing arrives.
    pub fn tick(&self, now_ms: u64) {
        let clock = now_ms.saturating_sub(self.lateness_ms);
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

    /// Whether the dataflow's sources have started.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Events placed at the frontier because they came behind it.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// The event time (ms) the sources may advance to.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::SeqCst)
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

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Parsed>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Vec<Parsed> {
        std::mem::take(&mut *self.lock_queue())
    }
}

/// This worker's part of the live source: the process's first worker emits
/// what the server handed over; every worker follows the watermark.
pub fn live_source<'scope>(
    scope: Scope<'scope, u64>,
    input: Arc<LiveInput>,
    workers_per_process: usize,
    context: SourceContext,
) -> Stream<'scope, u64, Vec<Parsed>> {
    let reader = scope.index().is_multiple_of(workers_per_process.max(1));
    let counts = context.counts;
    source::<_, CapacityContainerBuilder<Vec<Parsed>>, _, _>(
        scope,
        "LiveSource",
        move |cap, info| {
            input.register(scope.worker().sync_activator_for(info.address.to_vec()));
            let mut cap = Some(cap);
            let mut runs = Runs::default();
            input.started.store(true, Ordering::SeqCst);
            move |output| {
                let Some(current) = cap.as_mut() else { return };
                // Read before draining: whatever was pushed before the watermark
                // moved is in the queue now.
                let watermark = input.watermark();
                let closed = input.is_closed();
                if reader {
                    let floor = *current.time();
                    for parsed in input.take() {
                        counts.read(&parsed);
                        if runs.place(parsed, floor, &counts) {
                            input.late.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for (time, mut run) in runs.drain() {
                        output
                            .session(&current.delayed(&time))
                            .give_container(&mut run);
                    }
                }
                if closed {
                    cap = None;
                } else if watermark > *current.time() {
                    current.downgrade(&watermark);
                }
            }
        },
    )
}
