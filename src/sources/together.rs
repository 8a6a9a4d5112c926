//! A live run of several processes stops together.
//!
//! Why: SIGTERM closes one process's input (its server stops taking
//! events), but the dataflow spans every process and completes only when
//! every process's input has closed. Stopping one pod of a StatefulSet
//! left it waiting, past its grace period, for the others to be stopped
//! too, while they went on taking events. So each worker watches its
//! process's input: when it closes, the worker tells every worker, and each
//! stops its own process's input as SIGTERM would: an HTTP server stops
//! accepting, lets the requests it took finish and then closes its input
//! (closing it under a request in flight lost events answered 202); a
//! Kafka input closes. Every process then drains what it has taken and
//! ends, as one process alone does on SIGTERM.

use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Inspect;
use timely::dataflow::Scope;

/// How often a worker looks whether its process's input has closed.
const LOOK: Duration = Duration::from_millis(100);

/// An input that can be stopped as SIGTERM stops it, and asked whether it
/// has closed.
pub trait Closable: Send + Sync + 'static {
    fn close(&self);
    fn is_closed(&self) -> bool;
}

impl Closable for super::live::LiveInput {
    /// Through the server, which closes the input once its requests end.
    fn close(&self) {
        super::live::LiveInput::request_stop(self)
    }
    fn is_closed(&self) -> bool {
        super::live::LiveInput::is_closed(self)
    }
}

impl Closable for super::kafka::KafkaInput {
    fn close(&self) {
        super::kafka::KafkaInput::close(self)
    }
    fn is_closed(&self) -> bool {
        super::kafka::KafkaInput::is_closed(self)
    }
}

/// Builds, on this worker, the watch that closes `input` when any
/// process's input closes, and tells every worker when this process's
/// does. It holds nothing of the main graph back: its stream is its own,
/// and it ends when the input closes.
pub fn close_together<I: Closable>(scope: Scope<'_, u64>, input: std::sync::Arc<I>) {
    let watched = std::sync::Arc::clone(&input);
    let closed = source::<_, CapacityContainerBuilder<Vec<u64>>, _, _>(
        scope,
        "InputClosed",
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(cap);
            let me = scope.index() as u64;
            move |output| {
                let Some(held) = cap.as_ref() else { return };
                if watched.is_closed() {
                    output.session(held).give(me);
                    cap = None;
                } else {
                    activator.activate_after(LOOK);
                }
            }
        },
    );
    closed.broadcast().inspect(move |_| input.close());
}
