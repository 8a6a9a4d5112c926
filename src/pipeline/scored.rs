//! A live run's file outputs, with no stream of one record per event
//! converging on one worker: each worker formats the outcomes it routed
//! into blocks of JSON lines (alerts, normal traffic) and records their
//! latency, receipt to formatting, in its process's [`LiveStats`]; only the
//! blocks travel to worker 0, which merges them by `seq` into the rotating
//! files (see [`crate::dataflow::sink`]). The files are the same bytes for
//! any number of workers and processes. The counts the HTTP API reports
//! are kept where the lines are written ([`crate::sinks::file::live`]).

use std::sync::Arc;

use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, Stream};

use super::{writer, Abort, PipelineError, Slot};
use crate::dataflow::score::Outcome;
use crate::dataflow::sink::{FormatLines, OrderedLines, Text};
use crate::sinks::file::live::{outcome_line, LiveStats};

/// Where a worker's routed outcomes go.
pub(super) struct Ends<'a> {
    pub anomalies: &'a Slot<Text>,
    pub normal: &'a Slot<Text>,
    /// This process's counts and latencies, shared with its HTTP API.
    pub stats: &'a Arc<LiveStats>,
    pub done: &'a ProbeHandle<u64>,
    pub abort: &'a Abort,
}

impl Ends<'_> {
    /// Alerts to the alerts' files, normal traffic to its own.
    pub fn build<'scope>(
        self,
        anomalies: Stream<'scope, u64, Vec<Outcome>>,
        normal: Stream<'scope, u64, Vec<Outcome>>,
    ) {
        self.lines(
            anomalies,
            true,
            self.anomalies,
            ["FormatAlerts", "AlertSink"],
        );
        self.lines(normal, false, self.normal, ["FormatNormal", "NormalSink"]);
    }

    /// One output: `alerts`, each outcome's alert; else its line of normal
    /// traffic. `names`: the formatting operator's and the sink's.
    fn lines(
        &self,
        outcomes: Stream<'_, u64, Vec<Outcome>>,
        alerts: bool,
        slot: &Slot<Text>,
        names: [&str; 2],
    ) {
        let stats = Arc::clone(self.stats);
        let timed = move |formatted: &[Outcome]| stats.record_since_receipt(formatted);
        outcomes
            .probe_with(self.done)
            .format_lines_then(
                |o: &Outcome| o.seq,
                outcome_lines(alerts, self.abort),
                timed,
                names[0],
            )
            .ordered_lines(text_writer(slot, self.abort), names[1]);
    }
}

/// Formats outcomes with [`outcome_line`] (`alerts`: their alerts); a
/// failure ends the run.
pub(super) fn outcome_lines(
    alerts: bool,
    abort: &Abort,
) -> impl FnMut(&Outcome, &mut Vec<u8>) + 'static {
    let failed = abort.clone();
    let what = if alerts { "alerts" } else { "normal traffic" };
    move |o, out| {
        if let Err(e) = outcome_line(o, alerts, out) {
            failed.fail(PipelineError::component(what, e));
        }
    }
}

/// A writer of text for [`OrderedLines`]: see [`super::writer`].
pub(super) fn text_writer(slot: &Slot<Text>, abort: &Abort) -> impl FnMut(Text) + 'static {
    let mut write = writer(slot, abort);
    move |text| write(&mut [text])
}
