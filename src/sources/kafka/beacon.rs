//! The run's watermark across processes.
//!
//! Why: a partition that has nothing to read must stop holding the
//! frontier back, and follow the latest time placed anywhere in the run;
//! but a process only sees its own partitions. Each worker therefore runs
//! a second, tiny dataflow beside the pipeline: the first worker of each
//! process sends its process's latest place to every worker whenever it
//! grows, and each worker moves its process's watermark to the largest
//! it hears of. Being a dataflow of its own, its frontier holds nothing
//! of the pipeline's back. Its operators run when the hub wakes them (a
//! watermark moved, or the run is closing), not on a timer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::{source, Operator};
use timely::dataflow::operators::vec::Broadcast;
use timely::worker::Worker;

use super::KafkaInput;

/// Builds this worker's part of the beacon dataflow.
pub fn build(worker: &mut Worker, input: Arc<KafkaInput>, workers_per_process: usize) {
    let sender = worker.index().is_multiple_of(workers_per_process.max(1));
    let hub = Arc::clone(&input);
    worker.dataflow::<u64, _, _>(|scope| {
        let sent = source::<_, CapacityContainerBuilder<Vec<u64>>, _, _>(
            scope,
            "WatermarkBeacon",
            move |cap, info| {
                // A place that grows moves the hub's watermark, which wakes
                // this operator, as closing the run does.
                input
                    .hub
                    .register(scope.worker().sync_activator_for(info.address.to_vec()));
                let mut cap = Some(cap);
                let mut last = 0;
                move |output| {
                    if input.is_closed() {
                        cap = None;
                    }
                    let Some(current) = cap.as_ref() else { return };
                    let own = input.own.load(Ordering::SeqCst);
                    if sender && own > last {
                        output.session(current).give(own);
                        last = own;
                    }
                }
            },
        );
        sent.broadcast()
            .sink(Pipeline, "WatermarkHub", move |(heard, _)| {
                heard.for_each(|_, data| {
                    if let Some(&latest) = data.iter().max() {
                        hub.advance(latest);
                    }
                })
            });
    });
}
