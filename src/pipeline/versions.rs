//! Model versions as a stream: each applies from a logical time on, and
//! reaches every worker, so which version scores an event depends on the
//! event's time alone, never on the number of workers.

use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::{Scope, Stream};

use crate::dataflow::score::{ModelVersion, Scorer};
use crate::sources::live::LiveInput;

/// Where a run's model versions come from.
#[derive(Clone, Debug)]
pub enum VersionFeed {
    /// Known before the run, each with its time (a backtest).
    Fixed(Vec<ModelVersion>),
    /// Handed over while the run goes (a reload): each applies from the
    /// live frontier at the moment worker 0 takes it.
    Live(Arc<LiveVersions>),
}

/// New versions waiting for worker 0, and the live input whose watermark
/// (and end) the version source follows.
#[derive(Debug)]
pub struct LiveVersions {
    pending: Mutex<Vec<Scorer>>,
    input: Arc<LiveInput>,
}

impl LiveVersions {
    pub fn new(input: Arc<LiveInput>) -> Arc<LiveVersions> {
        Arc::new(LiveVersions {
            pending: Mutex::new(Vec::new()),
            input,
        })
    }

    /// Hands a new version to the dataflow.
    pub fn push(&self, scorer: Scorer) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(scorer);
        self.input.wake();
    }

    fn take(&self) -> Vec<Scorer> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Worker 0 sends each version at its time to every worker; the others only
/// follow the frontier.
pub fn version_source<'scope>(
    scope: Scope<'scope, u64>,
    feed: VersionFeed,
) -> Stream<'scope, u64, Vec<ModelVersion>> {
    let leader = scope.index() == 0;
    source::<_, CapacityContainerBuilder<Vec<ModelVersion>>, _, _>(
        scope,
        "ModelVersions",
        move |cap, info| {
            let mut cap = Some(cap);
            let mut fixed = None;
            if let VersionFeed::Live(live) = &feed {
                live.input
                    .register(scope.worker().sync_activator_for(info.address.to_vec()));
            } else if let VersionFeed::Fixed(list) = &feed {
                fixed = Some(list.clone());
            }
            move |output| {
                let Some(current) = cap.as_mut() else { return };
                let live = match &feed {
                    VersionFeed::Fixed(_) => {
                        for v in fixed.take().unwrap_or_default().into_iter() {
                            if leader {
                                output.session(&current.delayed(&v.from)).give(v);
                            }
                        }
                        cap = None;
                        return;
                    }
                    VersionFeed::Live(live) => live,
                };
                let watermark = live.input.watermark();
                let closed = live.input.is_closed();
                if leader {
                    let from = *current.time();
                    let mut session = output.session(current);
                    for scorer in live.take() {
                        session.give(ModelVersion { from, scorer });
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
    .broadcast()
}
