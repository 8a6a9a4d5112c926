//! Scoring with the feedback loop closed: the labels (from simulated
//! analysts in a backtest) join the features of their transactions, the
//! learner fits them, and its versions score the events after them.
//!
//! ```text
//!           ┌──────────── features kept by id ─────────────┐
//! rows ─────┤                                              join ─► learner ─┐
//!           └─► score ◄── versions (run's) ◄───────────────┼───────────────┘
//!                 │                                        │
//!                 └─► analysts ──(loop: + their delay)─────┘
//! ```
//!
//! The loop is timely's: a label comes back at least the analysts' delay
//! after the event it labels, which is what lets scoring go on while the
//! learner waits for labels.
//!
//! With an adaptive threshold (`crate::dataflow::threshold`), the routed
//! scores go round a second loop, of the threshold's interval: worker 0
//! finds each change and every worker's scoring applies it from then on.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, ConnectLoop, Feedback as _, Inspect};
use timely::dataflow::{Scope, Stream};

use crate::dataflow::feedback::analysts::analysts;
use crate::dataflow::feedback::join::feedback_join;
use crate::dataflow::feedback::learner::learn;
use crate::dataflow::feedback::live::label_source;
use crate::dataflow::feedback::{Counts, Feedback, FeedbackSettings};
use crate::dataflow::score::{score_and_route, Change, ModelVersion, Routed, Shown};
use crate::dataflow::threshold::{adapt, ThresholdChange};
use crate::dataflow::FeatureRow;
use crate::metrics::events::{ModelInForce, ThresholdInForce};
use crate::pipeline::{Abort, ScoringSettings};

/// A worker's part in scoring: whether it is its process's first, which
/// takes the live labels and reports the version in force, and whose
/// component scores the run's outputs show.
#[derive(Clone, Copy, Debug)]
pub struct Role {
    pub first: bool,
    pub shown: Shown,
}

/// Scores and routes `rows` with the run's `versions` and, when the
/// settings close the feedback loop, the learner's. With an adaptive
/// threshold, its changes come round a loop of their own.
pub fn score<'scope>(
    scope: Scope<'scope, u64>,
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
    versions: Stream<'scope, u64, Vec<ModelVersion>>,
    scoring: &ScoringSettings,
    loops: Loops,
    role: Role,
) -> Routed<'scope> {
    let first = role.first;
    let adaptive = scoring
        .threshold
        .map(|t| (t, scope.feedback::<Vec<ThresholdChange>>(t.every_ms)));
    let thresholds = match &adaptive {
        Some((_, (_, changes))) => changes.clone().map(Change::Threshold),
        None => empty(scope),
    };
    let in_force = scoring.in_force.clone().filter(|_| first);
    if in_force.is_some() {
        let initial = &scoring.initial;
        crate::metrics::worker::emit(ModelInForce {
            version: &initial.model_version,
            first: true,
            unix_seconds: crate::clock::now_millis() as f64 / 1e3,
        });
        crate::metrics::worker::emit(ThresholdInForce(initial.policy.threshold));
    }
    let routed = match &scoring.feedback {
        Some(settings) => learning(rows, versions, thresholds, scoring, settings, &loops, role),
        None => {
            let own = scoring.threshold.is_none();
            let changes = report(versions, in_force, own)
                .map(|v| Change::Version(Box::new(v)))
                .concat(thresholds);
            let versions = (Arc::clone(&scoring.initial), None);
            score_and_route(rows, changes, versions, role.shown)
        }
    };
    if let Some((settings, (handle, _))) = adaptive {
        let scores = routed.anomalies.clone().concat(routed.normal.clone());
        let scores = scores.map(|o| (o.place_ms, o.score));
        // Found on worker 0, applied on every worker.
        let changes = adapt(scores, settings, loops.thresholds).broadcast();
        changes.connect_loop(handle);
    }
    routed
}

/// What the loops keep for the run's summary, and how they fail it.
#[derive(Clone)]
pub struct Loops {
    pub counts: Counts,
    pub thresholds: Rc<RefCell<Vec<ThresholdChange>>>,
    pub abort: Abort,
}

/// Scoring with the feedback loop closed.
fn learning<'scope>(
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
    versions: Stream<'scope, u64, Vec<ModelVersion>>,
    thresholds: Stream<'scope, u64, Vec<Change>>,
    scoring: &ScoringSettings,
    settings: &FeedbackSettings,
    loops: &Loops,
    role: Role,
) -> Routed<'scope> {
    let (scope, first) = (rows.scope(), role.first);
    let initial = Arc::clone(&scoring.initial);
    let in_force = scoring.in_force.clone().filter(|_| first);
    let (handle, looped) = scope.feedback::<Vec<Feedback>>(settings.loop_delay_ms());
    let labels = match &scoring.labels {
        Some(live) => looped.concat(label_source(scope, Arc::clone(live), first)),
        None => looped,
    };
    let examples = feedback_join(rows.clone(), labels, settings.retention_ms);
    let learned = learn(
        examples,
        versions.clone(),
        Arc::clone(&initial),
        settings.learner.clone(),
        loops.counts.clone(),
        loops.abort.clone(),
        settings.flush.clone(),
    )
    .broadcast();
    let own = scoring.threshold.is_none();
    let versions = report(versions.concat(learned), in_force, own);
    let changes = versions
        .map(|v| Change::Version(Box::new(v)))
        .concat(thresholds);
    let frozen = settings.compare_frozen.then(|| Arc::clone(&initial));
    let routed = score_and_route(rows, changes, (initial, frozen), role.shown);
    match settings.analysts {
        Some(desk) => {
            let cases = routed.anomalies.clone().concat(routed.normal.clone());
            let delay = settings.loop_delay_ms();
            analysts(cases, desk, delay, loops.counts.clone()).connect_loop(handle);
        }
        None => empty(scope).connect_loop(handle),
    }
    routed
}

/// Writes the name of the latest version (by the time it applies from)
/// into `in_force`, when given, and tells the metrics (with its threshold
/// when each version scores with its `own`). Every worker builds the same
/// operator (a worker's graph must match the others'), whether it writes
/// or not.
fn report<'scope>(
    versions: Stream<'scope, u64, Vec<ModelVersion>>,
    in_force: Option<Arc<Mutex<String>>>,
    own: bool,
) -> Stream<'scope, u64, Vec<ModelVersion>> {
    let mut latest = None::<u64>;
    versions.inspect(move |v| {
        let Some(in_force) = &in_force else { return };
        if latest.is_none_or(|l| v.from >= l) {
            latest = Some(v.from);
            *in_force.lock().unwrap_or_else(|e| e.into_inner()) = v.scorer.model_version.clone();
            crate::metrics::worker::emit(ModelInForce {
                version: &v.scorer.model_version,
                first: false,
                unix_seconds: crate::clock::now_millis() as f64 / 1e3,
            });
            if own {
                crate::metrics::worker::emit(ThresholdInForce(v.scorer.policy.threshold));
            }
        }
    })
}
