//! Labels handed over by the server (`POST /feedback`) or, in a Kafka run,
//! by the feedback topic's reader, taken into the dataflow by one worker of
//! the process at the live frontier, once the frontier has left zero (the
//! first events are in): a label read again after a restart then waits for
//! its transaction from where the events are, not from the epoch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::{Scope, Stream};

use super::ledger::{Ledger, TopicPlace};
use super::Feedback;
use crate::event::EventId;
use crate::sources::live::LiveInput;

/// Most labels waiting for the dataflow before new ones are refused.
pub const MAX_WAITING: usize = 100_000;

/// The labels this process's server took and the dataflow has not yet,
/// and the live input whose frontier they are placed at.
#[derive(Debug)]
pub struct LiveLabels {
    pending: Mutex<Vec<(EventId, bool, Option<TopicPlace>)>>,
    next: AtomicU64,
    /// Where the feedback topic's labels are noted as placed.
    ledger: Option<Arc<Ledger>>,
    input: Arc<LiveInput>,
    process: u64,
    processes: u64,
}

impl LiveLabels {
    pub fn new(
        input: Arc<LiveInput>,
        process: usize,
        processes: usize,
        ledger: Option<Arc<Ledger>>,
    ) -> Arc<LiveLabels> {
        Arc::new(LiveLabels {
            pending: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            ledger,
            input,
            process: process as u64,
            processes: processes.max(1) as u64,
        })
    }

    /// Hands a label to the dataflow; `Err(waiting)` when too many wait
    /// already, or `Err(0)` once the run is stopping (nothing is taken).
    pub fn push(&self, id: EventId, is_fraud: bool) -> Result<(), usize> {
        self.push_from(id, is_fraud, None)
    }

    /// [`LiveLabels::push`] for a label read at `place` of the feedback
    /// topic.
    pub fn push_from(
        &self,
        id: EventId,
        is_fraud: bool,
        place: Option<TopicPlace>,
    ) -> Result<(), usize> {
        if self.input.is_closed() {
            return Err(0);
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_WAITING {
            return Err(pending.len());
        }
        pending.push((id, is_fraud, place));
        drop(pending);
        self.input.wake();
        Ok(())
    }

    /// The ledger the feedback topic's labels are noted in, if any.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    fn take(&self) -> Vec<(EventId, bool, Option<TopicPlace>)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The next order of receipt, unique over the run's processes.
    fn seq(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) * self.processes + self.process
    }
}

/// The labels of `live`, each at the live frontier when the `taker` worker
/// takes it; the others only follow the frontier.
pub fn label_source<'scope>(
    scope: Scope<'scope, u64>,
    live: Arc<LiveLabels>,
    taker: bool,
) -> Stream<'scope, u64, Vec<Feedback>> {
    source::<_, CapacityContainerBuilder<Vec<Feedback>>, _, _>(
        scope,
        "LiveLabels",
        move |cap, info| {
            let mut cap = Some(cap);
            live.input
                .register(scope.worker().sync_activator_for(info.address.to_vec()));
            move |output| {
                let Some(current) = cap.as_mut() else { return };
                let (watermark, closed) = (live.input.watermark(), live.input.is_closed());
                if !closed && watermark > *current.time() {
                    current.downgrade(&watermark);
                }
                if taker && (closed || *current.time() > 0) {
                    let time = *current.time();
                    let mut session = output.session(current);
                    for (id, is_fraud, place) in live.take() {
                        let seq = live.seq();
                        if let (Some(ledger), Some(place)) = (&live.ledger, place) {
                            ledger.placed(place, seq, time);
                        }
                        session.give(Feedback {
                            id,
                            is_fraud,
                            seq,
                            time,
                        });
                    }
                }
                if closed {
                    cap = None;
                }
            }
        },
    )
}
