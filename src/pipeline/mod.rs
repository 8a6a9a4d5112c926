//! The one dataflow every command runs, built from typed settings:
//!
//! ```text
//! source -> parse --(bad)--> dead letters
//!             |
//!         featurize (velocity by account, on its shard)
//!             |
//!           score (the model version in force at the event's time)
//!             |
//!           route --> anomalies (alerts) / normal traffic
//! ```
//!
//! A command chooses the source, how far the graph goes (features only, or
//! scored and routed) and the outputs, which are opened before any worker
//! starts and owned by worker 0. Outputs of one line per event (the feature
//! table, a backtest's alerts and scores, a live run's alerts and normal
//! traffic) are formatted where the events are and reach worker 0 as
//! blocks ([`scored`]); a backtest's evaluation stays on each worker until
//! the end ([`evaluated`]). [`run`] builds the graph on every
//! worker through the [`harness`], which ends the run on the first
//! failure.

pub mod agree;
pub mod busy;
pub mod connect;
pub mod error;
mod evaluated;
pub mod feedback;
pub mod harness;
pub mod live;
mod observe;
mod scored;
pub mod stall;
pub mod training;
pub mod versions;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Probe};
use timely::dataflow::{ProbeHandle, Stream};
use timely::worker::Worker;

use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::feedback::live::LiveLabels;
use crate::dataflow::feedback::{Counts, FeedbackSettings, FeedbackSummary};
use crate::dataflow::score::{Outcome, Scorer, Shown};
use crate::dataflow::sink::{FormatLines, OrderedLines, OrderedSink, Text};
use crate::dataflow::table::write_row;
use crate::dataflow::threshold::{ThresholdChange, ThresholdSettings};
use crate::dataflow::{featurize, FeatureRow};
use crate::eval::kept::{Keep, KeptShare};
use crate::eval::spill::SpillDir;
use crate::features::Contract;
use crate::sinks::file::live::LiveStats;
use crate::sinks::kafka::{kafka_sink, Outbound};
use crate::sinks::BoxSink;
use crate::sources::file::ScanShare;
use crate::sources::kafka::Link;
use crate::sources::{SourceContext, SourceCounts, SourceSettings};
pub use error::PipelineError;
use feedback::Loops;
pub use harness::{Abort, Cluster};
pub use versions::{version_source, LiveVersions, VersionFeed};

/// How events become features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSettings {
    pub contract: Contract,
    /// Velocity window, in milliseconds of event time.
    pub window_ms: u64,
}

/// The models that score: `initial` from the start, then each version from
/// its time on.
#[derive(Clone, Debug)]
pub struct ScoringSettings {
    pub initial: Arc<Scorer>,
    pub versions: VersionFeed,
    /// The feedback loop: labels joined with features, and the online
    /// model's updates as versions. `None`: the models stay as given.
    pub feedback: Option<Box<FeedbackSettings>>,
    /// Labels from this process's server (a live run with feedback).
    pub labels: Option<Arc<LiveLabels>>,
    /// Where this process reports the name of the version in force.
    pub in_force: Option<Arc<Mutex<String>>>,
    /// The adaptive threshold; `None`: each version's own threshold.
    pub threshold: Option<ThresholdSettings>,
}

/// How far the graph goes, and so what its outputs are.
#[derive(Clone, Debug)]
pub enum Stage {
    /// Features only, written as the CSV table (each worker formats its
    /// own rows).
    CsvTable,
    /// Features only, as rows (Parquet, training's table).
    Rows,
    /// Scored and routed (a live run): to Kafka from each worker, or to
    /// files, each worker formatting its own outcomes (and recording their
    /// latency in `stats`) and worker 0 writing the blocks in order.
    Scored {
        scoring: ScoringSettings,
        /// This process's counts and latencies, shared with its HTTP API.
        stats: Arc<LiveStats>,
    },
    /// Scored and routed as a backtest evaluates it: alerts (and with
    /// `scores` every event's scores line) formatted where they were
    /// scored, and what `keep` asks kept on each worker until the end.
    Evaluated {
        scoring: ScoringSettings,
        keep: Keep,
        scores: bool,
        /// Where this process's workers keep every event's record for the
        /// report (each process its own directory).
        spill: Arc<SpillDir>,
    },
}

impl Stage {
    fn scoring(&self) -> Option<&ScoringSettings> {
        match self {
            Stage::Scored { scoring, .. } | Stage::Evaluated { scoring, .. } => Some(scoring),
            _ => None,
        }
    }

    /// Whose component scores the stage's outputs show: a live run writes
    /// every event's (alerts and normal traffic alike), a backtest its
    /// alerts', and every event's with `--scores` or the HTML report.
    fn shown(&self) -> Shown {
        match self {
            Stage::Evaluated { keep, scores, .. } if !scores && !keep.page => Shown::Alerts,
            _ => Shown::Every,
        }
    }
}

/// Everything a run needs, the same on every process.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    pub cluster: Cluster,
    pub source: SourceSettings,
    pub features: FeatureSettings,
    pub stage: Stage,
}

/// The outputs of the stage the graph ends in.
pub enum StageOutputs {
    CsvTable(BoxSink<Text>),
    Rows(BoxSink<FeatureRow>),
    /// A live run's files: the lines of alerts and of normal traffic.
    Scored {
        anomalies: BoxSink<Text>,
        normal: BoxSink<Text>,
    },
    Evaluated {
        /// alerts.jsonl's lines.
        alerts: BoxSink<Text>,
        /// scores.csv's lines, with [`Stage::Evaluated`]'s `scores`.
        scores: Option<BoxSink<Text>>,
        /// Where this process's workers merge what they kept.
        kept: KeptShare,
    },
}

/// The run's outputs, opened before any worker starts; only the process of
/// worker 0 has them.
pub struct Outputs {
    pub dead_letters: BoxSink<Box<DeadLetter>>,
    pub stage: StageOutputs,
}

impl Outputs {
    /// The share every worker of this process merges its evaluation into.
    fn kept(&self) -> Option<KeptShare> {
        match &self.stage {
            StageOutputs::Evaluated { kept, .. } => Some(kept.clone()),
            _ => None,
        }
    }
}

/// What one process read and, on process 0, wrote (a backtest's report
/// takes what every process read from its evaluation's [`crate::eval::kept::Kept`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    pub events_in: u64,
    pub valid: u64,
    pub dead: u64,
    /// Events placed at the frontier because they came behind it.
    pub late: u64,
    /// Dead letters written (process 0).
    pub dead_written: u64,
    /// Rows, or anomalies, written (process 0).
    pub written: u64,
    /// Normal traffic written (process 0, scored runs).
    pub normal_written: u64,
    /// What the feedback loop did (scored runs with feedback).
    pub feedback: FeedbackSummary,
    /// The adaptive threshold's changes, in order (worker 0's).
    pub thresholds: Vec<ThresholdChange>,
    pub seconds: f64,
}

/// Runs the pipeline: `outputs` must be given on the process of worker 0
/// (process 0), and its kind must match the settings' stage.
pub fn run(
    settings: PipelineSettings,
    outputs: Option<Outputs>,
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let settings = bound_the_loop(settings)?;
    let cluster = settings.cluster.clone();
    let share = outputs.as_ref().and_then(Outputs::kept);
    let file_share = ScanShare::default();
    let outputs = Arc::new(Mutex::new(outputs));
    let terms = if cluster.processes() > 1 {
        agree::terms(&settings)?
    } else {
        agree::Terms::new()
    };
    let results = harness::execute(&cluster, terms, move |worker, abort| {
        let mine = if worker.index() == 0 {
            outputs.lock().unwrap_or_else(|e| e.into_inner()).take()
        } else {
            None
        };
        let shares = (share.clone(), file_share.clone());
        build(worker, &settings, (mine, shares), abort)
    })?;
    let mut total = RunSummary::default();
    for s in results {
        total.events_in += s.events_in;
        total.valid += s.valid;
        total.dead += s.dead;
        total.late += s.late;
        total.dead_written += s.dead_written;
        total.written += s.written;
        total.normal_written += s.normal_written;
        total.feedback.add(&s.feedback);
        total.thresholds.extend(s.thresholds);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// With a loop closed (the feedback loop, the adaptive threshold), a
/// change comes back round it the loop's delay after the logical time of
/// the events it is found on, and scoring waits for the changes at each
/// event's place: so no event may be placed that far past its logical
/// time. A file source's epochs are bounded so, under the shorter loop.
fn bound_the_loop(mut settings: PipelineSettings) -> Result<PipelineSettings, PipelineError> {
    let Some(scoring) = settings.stage.scoring() else {
        return Ok(settings);
    };
    let lateness = match &settings.source {
        SourceSettings::File(f) => f.limits.lateness_ms,
        _ => 0,
    };
    let refused = |setting: &'static str| {
        move |e: &dyn std::fmt::Display| PipelineError::Setting {
            setting,
            problem: e.to_string(),
        }
    };
    let mut delays = Vec::new();
    if let Some(feedback) = &scoring.feedback {
        feedback
            .check(lateness)
            .map_err(|e| refused("feedback")(&e))?;
        delays.push(feedback.loop_delay_ms());
    }
    if let Some(threshold) = &scoring.threshold {
        let check = threshold.check(lateness);
        check.map_err(|e| refused("adaptive_threshold")(&e))?;
        delays.push(threshold.every_ms);
    }
    // A place is less than span + lateness past its epoch: less than each
    // loop's delay (which the checks above hold above the lateness).
    let shortest = delays.into_iter().min();
    if let (Some(delay), SourceSettings::File(f)) = (shortest, &mut settings.source) {
        f.epoch_span_ms = Some(delay.saturating_sub(lateness).max(1));
    }
    Ok(settings)
}

/// One output, owned by worker 0 (`None` elsewhere, and once it failed).
pub(crate) type Slot<D> = Rc<RefCell<Option<BoxSink<D>>>>;

fn slot<D>(sink: Option<BoxSink<D>>) -> Slot<D> {
    Rc::new(RefCell::new(sink))
}

/// Finishes a slot's sink: its count, 0 where it has none.
fn finish<D>(slot: &Slot<D>) -> Result<u64, PipelineError> {
    slot.borrow_mut().take().map_or(Ok(0), |s| s.finish())
}

/// A writer for a sink operator: hands each batch to the slot's sink; the
/// first error ends the run and drops the sink (no partial file is left).
fn writer<D: 'static>(slot: &Slot<D>, abort: &Abort) -> impl FnMut(&mut [D]) + 'static {
    let (slot, abort) = (Rc::clone(slot), abort.clone());
    move |batch| {
        let mut owned = slot.borrow_mut();
        if let Some(sink) = owned.as_mut() {
            if let Err(e) = sink.write(batch) {
                *owned = None;
                abort.fail(e);
            }
        }
    }
}

/// The slots of one worker's outputs.
struct Slots {
    dead: Slot<Box<DeadLetter>>,
    csv: Slot<Text>,
    rows: Slot<FeatureRow>,
    anomalies: Slot<Text>,
    normal: Slot<Text>,
    alerts: Slot<Text>,
    scores: Slot<Text>,
    /// A backtest's evaluation, on every worker of process 0.
    kept: Option<KeptShare>,
}

impl Slots {
    fn new(outputs: Option<Outputs>, kept: Option<KeptShare>) -> Slots {
        let mut slots = Slots {
            dead: slot(None),
            csv: slot(None),
            rows: slot(None),
            anomalies: slot(None),
            normal: slot(None),
            alerts: slot(None),
            scores: slot(None),
            kept,
        };
        if let Some(o) = outputs {
            slots.dead = slot(Some(o.dead_letters));
            match o.stage {
                StageOutputs::CsvTable(s) => slots.csv = slot(Some(s)),
                StageOutputs::Rows(s) => slots.rows = slot(Some(s)),
                StageOutputs::Scored { anomalies, normal } => {
                    slots.anomalies = slot(Some(anomalies));
                    slots.normal = slot(Some(normal));
                }
                StageOutputs::Evaluated { alerts, scores, .. } => {
                    slots.alerts = slot(Some(alerts));
                    slots.scores = slot(scores);
                }
            }
        }
        slots
    }

    /// Commits every output, the large ones first (a late write error there
    /// then leaves no dead-letter file behind either); the summary's counts.
    fn finish(&self, counts: &SourceCounts, loops: &Loops) -> Result<RunSummary, PipelineError> {
        let written = finish(&self.csv)?
            + finish(&self.rows)?
            + finish(&self.anomalies)?
            + finish(&self.alerts)?;
        finish(&self.scores)?;
        let normal_written = finish(&self.normal)?;
        Ok(RunSummary {
            events_in: counts.events_in.get(),
            valid: counts.valid.get(),
            dead: counts.dead.get(),
            late: counts.late.get(),
            dead_written: finish(&self.dead)?,
            written,
            normal_written,
            feedback: loops.counts.borrow().clone(),
            thresholds: loops.thresholds.borrow().clone(),
            seconds: 0.0,
        })
    }
}

/// What the workers of a process share: the evaluation, the file's
/// reader.
type Shares = (Option<KeptShare>, ScanShare);

/// Builds this worker's graph, with its outputs (worker 0) and its
/// process's shares; returns its finish step.
fn build(
    worker: &mut Worker,
    settings: &PipelineSettings,
    (outputs, (kept, file_share)): (Option<Outputs>, Shares),
    abort: &Abort,
) -> Result<harness::Finish<RunSummary>, PipelineError> {
    if let (Some(o), stage) = (&outputs, &settings.stage) {
        check_shape(&o.stage, stage)?;
    }
    let kafka_error = |e| PipelineError::component("Kafka", e);
    let link = (settings.source)
        .kafka_link(worker, settings.cluster.workers)
        .map_err(kafka_error)?;
    let counts = Rc::new(SourceCounts::default());
    let loops = Loops {
        counts: Counts::default(),
        thresholds: Rc::default(),
        abort: abort.clone(),
    };
    let slots = Slots::new(outputs, kept);
    let done = ProbeHandle::new();
    observe::install(worker.index(), &counts, &done);
    worker
        .dataflow::<u64, _, _>(|scope| {
            let context = SourceContext {
                counts: Rc::clone(&counts),
                done: done.clone(),
                abort: abort.clone(),
                workers_per_process: settings.cluster.workers,
                file_share: file_share.clone(),
            };
            let parsed = settings.source.build(scope, context, link.clone())?;
            let (events, dead) = parsed.ok_err(|r| r);
            let counted = observe::Counted::of(&settings.source, scope.peers());
            let events = observe::parsed(events, counted);
            let f = settings.features;
            let rows = observe::featurized(featurize(events, f.contract, f.window_ms), counted);
            let ends = Ends {
                slots: &slots,
                done: &done,
                abort,
                link: link.as_ref(),
                loops: loops.clone(),
                counts: &counts,
            };
            ends.build(scope, rows, dead, settings)
        })
        .map_err(kafka_error)?;
    settings.source.watch_stalls(worker, &done);
    Ok(Box::new(move |_: &mut Worker| {
        let summary = slots.finish(&counts, &loops);
        crate::metrics::worker::uninstall();
        summary
    }))
}

/// Where a worker's graph ends: its outputs, the probe, and (Kafka) its
/// link.
struct Ends<'a> {
    slots: &'a Slots,
    done: &'a ProbeHandle<u64>,
    abort: &'a Abort,
    link: Option<&'a Rc<Link>>,
    loops: Loops,
    counts: &'a Rc<SourceCounts>,
}

impl Ends<'_> {
    /// The stage's operators after the features, and the sinks.
    #[allow(clippy::vec_box)] // dead letters travel boxed
    fn build<'scope>(
        &self,
        scope: timely::dataflow::Scope<'scope, u64>,
        rows: Stream<'scope, u64, Vec<FeatureRow>>,
        mut dead: Stream<'scope, u64, Vec<Box<DeadLetter>>>,
        settings: &PipelineSettings,
    ) -> Result<(), crate::kafka::KafkaError> {
        let (slots, done, abort) = (self.slots, self.done, self.abort);
        match &settings.stage {
            Stage::CsvTable => csv_table(rows, slots, done, abort),
            Stage::Rows => rows.probe_with(done).ordered_sink(
                |r: &FeatureRow| r.seq,
                writer(&slots.rows, abort),
                "FeatureSink",
            ),
            Stage::Scored { scoring, .. } | Stage::Evaluated { scoring, .. } => {
                let versions = version_source(scope, scoring.versions.clone());
                let first = scope
                    .index()
                    .is_multiple_of(settings.cluster.workers.max(1));
                let loops = self.loops.clone();
                let role = feedback::Role {
                    first,
                    shown: settings.stage.shown(),
                };
                let routed = feedback::score(scope, rows, versions, scoring, loops, role);
                // Events no finite score could be given join the parse
                // stage's dead letters: nothing is dropped.
                let counted = observe::Counted::of(&settings.source, scope.peers());
                dead = observe::dead_letters(dead.concat(routed.dead), counted);
                let anomalies = observe::routed(routed.anomalies, true, counted);
                let normal = observe::routed(routed.normal, false, counted);
                if let (SourceSettings::Kafka(input), Some(link)) = (&settings.source, self.link) {
                    let outputs = kafka_outputs(anomalies, normal, dead);
                    kafka_sink(outputs, Arc::clone(input), Rc::clone(link), abort.clone())?
                        .probe_with(done);
                    return Ok(());
                }
                self.file_outputs(&settings.stage, anomalies, normal);
            }
        }
        #[allow(clippy::borrowed_box)] // the stream's records are boxes
        dead.ordered_sink(
            |d: &Box<DeadLetter>| d.as_ref().seq,
            writer(&slots.dead, abort),
            "DeadLetterSink",
        );
        Ok(())
    }

    /// A scored or evaluated stage's alerts and normal traffic into files.
    fn file_outputs<'scope>(
        &self,
        stage: &Stage,
        anomalies: Stream<'scope, u64, Vec<Outcome>>,
        normal: Stream<'scope, u64, Vec<Outcome>>,
    ) {
        let (slots, done, abort) = (self.slots, self.done, self.abort);
        match stage {
            Stage::Evaluated {
                keep,
                scores,
                spill,
                ..
            } => evaluated::Ends {
                alerts: &slots.alerts,
                scores: &slots.scores,
                share: slots.kept.clone(),
                spill: Arc::clone(spill),
                counts: self.counts,
                done,
                abort,
            }
            .build(anomalies, normal, *keep, *scores),
            Stage::Scored { stats, .. } => scored::Ends {
                anomalies: &slots.anomalies,
                normal: &slots.normal,
                stats,
                done,
                abort,
            }
            .build(anomalies, normal),
            Stage::CsvTable | Stage::Rows => {}
        }
    }
}

/// The feature table: each worker formats its own rows, worker 0 writes
/// the blocks in order.
fn csv_table(
    rows: Stream<'_, u64, Vec<FeatureRow>>,
    slots: &Slots,
    done: &ProbeHandle<u64>,
    abort: &Abort,
) {
    rows.probe_with(done)
        .format_lines(|r: &FeatureRow| r.seq, write_row, "FormatFeatures")
        .ordered_lines(scored::text_writer(&slots.csv, abort), "FeatureSink");
}

/// The three outputs of a Kafka run as one stream, where they were made.
#[allow(clippy::vec_box)] // the stream's records are boxes
fn kafka_outputs<'scope>(
    anomalies: Stream<'scope, u64, Vec<Outcome>>,
    normal: Stream<'scope, u64, Vec<Outcome>>,
    dead: Stream<'scope, u64, Vec<Box<DeadLetter>>>,
) -> Stream<'scope, u64, Vec<Outbound>> {
    anomalies
        .map(Outbound::Alert)
        .concat(normal.map(Outbound::Normal))
        .concat(dead.map(Outbound::Dead))
}

/// The outputs must be the kind the stage writes.
fn check_shape(outputs: &StageOutputs, stage: &Stage) -> Result<(), PipelineError> {
    let fits = match (outputs, stage) {
        (StageOutputs::CsvTable(_), Stage::CsvTable)
        | (StageOutputs::Rows(_), Stage::Rows)
        | (StageOutputs::Scored { .. }, Stage::Scored { .. }) => true,
        (StageOutputs::Evaluated { scores: sink, .. }, Stage::Evaluated { scores, .. }) => {
            sink.is_some() == *scores
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(PipelineError::Setting {
            setting: "outputs",
            problem: "the outputs given are not the kind the pipeline's stage writes".into(),
        })
    }
}
