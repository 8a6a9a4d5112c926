//! A backtest's outputs, with no stream of one record per event converging
//! on one worker: each worker formats its own alerts (and, with `--scores`,
//! every event's scores line) into blocks that worker 0 merges into the
//! files in `seq` order (see [`crate::dataflow::sink`]), and keeps what
//! evaluation needs of its own events without sending them anywhere: in
//! its process's share, or (another process) on the worker until its input
//! is complete (see [`crate::eval::kept`]).

use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{ProbeHandle, Stream};

use super::scored::{outcome_lines, text_writer};
use super::{Abort, PipelineError, Slot};
use crate::dataflow::score::Outcome;
use crate::dataflow::sink::{FormatLines, OrderedLines, Text};
use crate::eval::kept::{Keep, Kept, KeptShare};
use crate::sinks::file::scores_line;
use crate::sources::SourceCounts;

/// Where a worker's evaluated outcomes go.
pub(super) struct Ends<'a> {
    pub alerts: &'a Slot<Text>,
    pub scores: &'a Slot<Text>,
    /// Its process's share, on process 0.
    pub share: Option<KeptShare>,
    pub counts: &'a Rc<SourceCounts>,
    pub done: &'a ProbeHandle<u64>,
    pub abort: &'a Abort,
}

impl Ends<'_> {
    /// Alerts to alerts.jsonl; with `scores`, every outcome to scores.csv;
    /// what `keep` asks kept on this worker.
    pub fn build<'scope>(
        self,
        anomalies: Stream<'scope, u64, Vec<Outcome>>,
        normal: Stream<'scope, u64, Vec<Outcome>>,
        keep: Keep,
        scores: bool,
    ) {
        let anomalies = anomalies.probe_with(self.done);
        let normal = normal.probe_with(self.done);
        let alert = outcome_lines(true, self.abort);
        (anomalies.clone())
            .format_lines(|o: &Outcome| o.seq, alert, "FormatAlerts")
            .ordered_lines(text_writer(self.alerts, self.abort), "AlertSink");
        let all = anomalies.concat(normal);
        if scores {
            let failed = self.abort.clone();
            let line = move |o: &Outcome, out: &mut Vec<u8>| {
                if let Err(e) = scores_line(o, out) {
                    failed.fail(PipelineError::component("scores", e));
                }
            };
            (all.clone())
                .format_lines(|o: &Outcome| o.seq, line, "FormatScores")
                .ordered_lines(text_writer(self.scores, self.abort), "ScoreSink");
        }
        keep_each(all, keep, self.share, Rc::clone(self.counts), self.abort);
    }
}

/// Keeps what `keep` asks of each outcome: in the process's share as it
/// comes, or, on a process without one, on the worker until its input is
/// complete, then sent to worker 0 in pieces. The source's counts (final
/// once the input is complete) go the same way.
fn keep_each(
    outcomes: Stream<'_, u64, Vec<Outcome>>,
    keep: Keep,
    share: Option<KeptShare>,
    counts: Rc<SourceCounts>,
    abort: &Abort,
) {
    let here = share.clone();
    let peers = outcomes.scope().peers();
    type Pieces = CapacityContainerBuilder<Vec<Kept>>;
    let pieces = outcomes.unary_frontier::<Pieces, _, _, _>(Pipeline, "Keep", move |cap, _| {
        // Only a worker that must send holds a capability, until it has.
        let mut cap = here.is_none().then_some(cap);
        let mut mine = Some(Kept::default());
        if let (Some(kept), None) = (mine.as_mut(), &here) {
            kept.reserve(keep.share(peers), keep);
        }
        move |(input, frontier), output| {
            input.for_each(|_, data| match (&here, mine.as_mut()) {
                (Some(share), Some(_)) => share.add(data, keep),
                (None, Some(kept)) => kept.add(data, keep),
                (_, None) => {}
            });
            if !frontier.is_empty() {
                return;
            }
            let Some(mut kept) = mine.take() else {
                return;
            };
            kept.events_in = counts.events_in.get();
            kept.late = counts.late.get();
            match (&here, cap.take()) {
                (Some(share), _) => share.merge(kept),
                (None, Some(cap)) => output
                    .session(&cap)
                    .give_iterator(kept.pieces().into_iter()),
                (None, None) => {}
            }
        }
    });
    let abort = abort.clone();
    pieces.sink(
        Exchange::new(|_: &Kept| 0),
        "GatherKept",
        move |(input, _)| {
            input.for_each(|_, data| {
                for kept in data.drain(..) {
                    match &share {
                        Some(share) => share.merge(kept),
                        None => abort.fail(PipelineError::Setting {
                            setting: "outputs",
                            problem: "worker 0 was given no evaluation to gather into".into(),
                        }),
                    }
                }
            })
        },
    );
}
