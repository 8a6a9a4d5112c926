//! A backtest's outputs, with no stream of one record per event converging
//! on one worker: each worker formats its own alerts (and, with `--scores`,
//! every event's scores line) into blocks that worker 0 merges into the
//! files in `seq` order (see [`crate::dataflow::sink`]), and keeps what
//! evaluation needs of its own events without sending them anywhere as
//! they come: their records on disk (see [`crate::eval::spill`]), the rest
//! in its process's share, or (another process) on the worker until its
//! input is complete (see [`crate::eval::kept`]).

use std::rc::Rc;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{ProbeHandle, Stream};

use super::scored::{outcome_lines, text_writer};
use super::{Abort, PipelineError, Slot};
use crate::dataflow::score::Outcome;
use crate::dataflow::sink::{FormatLines, OrderedLines, Text};
use crate::eval::kept::{Keep, Kept, KeptShare, PIECE};
use crate::eval::spill::{DayWriter, Pieces as SpillPieces, SpillDir, SpillError};
use crate::eval::Record;
use crate::sinks::file::scores_line;
use crate::sources::SourceCounts;

/// What a worker keeps of each outcome, and where.
struct Keeping {
    keep: Keep,
    share: Option<KeptShare>,
    spill: Arc<SpillDir>,
    counts: Rc<SourceCounts>,
}

/// Where a worker's evaluated outcomes go.
pub(super) struct Ends<'a> {
    pub alerts: &'a Slot<Text>,
    pub scores: &'a Slot<Text>,
    /// Its process's share, on process 0.
    pub share: Option<KeptShare>,
    /// Where its process's workers keep their records.
    pub spill: Arc<SpillDir>,
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
        let keeping = Keeping {
            keep,
            share: self.share,
            spill: self.spill,
            counts: Rc::clone(self.counts),
        };
        keep_each(all, keeping, self.abort);
    }
}

/// Keeps each outcome's record on disk (this worker's day files) and
/// what else `keep` asks in the process's share as it comes, or, on a
/// process without one, on the worker until its input is complete; then
/// sends that to worker 0, followed by its records read back a piece an
/// activation. The source's counts (final once the input is complete) go
/// the same way.
fn keep_each(outcomes: Stream<'_, u64, Vec<Outcome>>, keeping: Keeping, abort: &Abort) {
    let (share, spill) = (keeping.share.clone(), Arc::clone(&keeping.spill));
    let scope = outcomes.scope();
    let index = scope.index();
    let failed = abort.clone();
    type Pieces = CapacityContainerBuilder<Vec<Kept>>;
    let pieces = outcomes.unary_frontier::<Pieces, _, _, _>(Pipeline, "Keep", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut keeper = Keeper::new(keeping, index, failed);
        // Only a worker that must send holds a capability, until it has.
        let mut cap = keeper.share.is_none().then_some(cap);
        move |(input, frontier), output| {
            input.for_each(|_, data| keeper.take(data));
            keeper.passed(frontier.frontier().first().copied());
            if !frontier.is_empty() {
                return;
            }
            let Some(c) = &cap else {
                keeper.finish();
                return;
            };
            let mut session = output.session(c);
            if let Some(kept) = keeper.finish() {
                session.give_iterator(kept.pieces().into_iter());
            }
            // Its records, a piece at a time: reading them all back at
            // once would hold them all.
            match keeper.next_piece() {
                Some(piece) => {
                    session.give(piece);
                    activator.activate();
                }
                None => {
                    drop(session);
                    cap = None;
                }
            }
        }
    });
    gather(pieces, share, &spill, abort);
}

/// One worker's keeping, step by step as its operator runs.
struct Keeper {
    keep: Keep,
    share: Option<KeptShare>,
    counts: Rc<SourceCounts>,
    writer: Option<DayWriter>,
    /// Until the input is complete: the counts kept.
    mine: Option<Kept>,
    /// Then, on a process without a share: the records to send.
    sending: Option<SpillPieces>,
    failed: Abort,
}

impl Keeper {
    fn new(k: Keeping, index: usize, failed: Abort) -> Keeper {
        Keeper {
            keep: k.keep,
            writer: Some(k.spill.writer(&format!("w{index}"))),
            share: k.share,
            counts: k.counts,
            mine: Some(Kept::default()),
            sending: None,
            failed,
        }
    }

    fn fail(&self, e: SpillError) {
        self.failed.fail(PipelineError::component("evaluation", e));
    }

    /// Writes the outcomes' records and keeps the rest.
    fn take(&mut self, outcomes: &[Outcome]) {
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = outcomes
                .iter()
                .try_for_each(|o| w.add(&Record::of(o, self.keep.page)))
            {
                self.fail(e);
            }
        }
        match (&self.share, self.mine.as_mut()) {
            (Some(share), Some(_)) => share.add(outcomes, self.keep),
            (None, Some(kept)) => kept.add(outcomes, self.keep),
            (_, None) => {}
        }
    }

    /// The input has passed every time before `frontier`: the files of
    /// the days before its day are complete (a late record reopens one).
    fn passed(&mut self, frontier: Option<u64>) {
        let (Some(w), Some(t)) = (self.writer.as_mut(), frontier) else {
            return;
        };
        if let Err(e) = w.close_before(day_of(t)) {
            self.fail(e);
        }
    }

    /// Once, when the input is complete: writes out the records and merges
    /// what else was kept into the share, or returns it to send.
    fn finish(&mut self) -> Option<Kept> {
        if let Some(w) = self.writer.take() {
            match w.finish() {
                // Only a process without a share sends its records.
                Ok(files) if self.share.is_none() => {
                    self.sending = Some(SpillPieces::new(files.into_values(), PIECE));
                }
                Ok(_) => {}
                Err(e) => self.fail(e),
            }
        }
        let mut kept = self.mine.take()?;
        kept.events_in = self.counts.events_in.get();
        kept.late = self.counts.late.get();
        match &self.share {
            Some(share) => {
                share.merge(kept);
                None
            }
            None => Some(kept),
        }
    }

    /// The next piece of this worker's records to send; `None` once all
    /// are sent, or reading failed.
    fn next_piece(&mut self) -> Option<Kept> {
        match self.sending.as_mut()?.next_piece() {
            Ok(Some(records)) => Some(Kept {
                records,
                ..Kept::default()
            }),
            Ok(None) => None,
            Err(e) => {
                self.fail(e);
                self.sending = None;
                None
            }
        }
    }
}

/// On worker 0: merges the pieces other processes send into the share,
/// their records into this process's day files.
fn gather(
    pieces: Stream<'_, u64, Vec<Kept>>,
    share: Option<KeptShare>,
    spill: &SpillDir,
    abort: &Abort,
) {
    let abort = abort.clone();
    let mut received = spill.writer("received");
    pieces.sink(
        Exchange::new(|_: &Kept| 0),
        "GatherKept",
        move |(input, _)| {
            input.for_each(|_, data| {
                for mut kept in data.drain(..) {
                    let records = std::mem::take(&mut kept.records);
                    let written = records.iter().try_for_each(|r| received.add(r));
                    // Each piece is written out whole: the run may end
                    // with this activation.
                    if let Err(e) = written.and_then(|()| received.close_before(u32::MAX)) {
                        abort.fail(PipelineError::component("evaluation", e));
                    }
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

/// The day of event time a logical time (milliseconds) falls in.
fn day_of(time_ms: u64) -> u32 {
    crate::eval::split::hour_of(time_ms) / 24
}
