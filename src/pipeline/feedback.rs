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

use std::sync::{Arc, Mutex};

use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Concat, ConnectLoop, Feedback as _, Inspect};
use timely::dataflow::{Scope, Stream};

use crate::dataflow::feedback::analysts::analysts;
use crate::dataflow::feedback::join::feedback_join;
use crate::dataflow::feedback::learner::learn;
use crate::dataflow::feedback::live::label_source;
use crate::dataflow::feedback::{Counts, Feedback};
use crate::dataflow::score::{score_and_route, ModelVersion, Routed};
use crate::dataflow::FeatureRow;
use crate::pipeline::{Abort, ScoringSettings};

/// Scores and routes `rows` with the run's `versions` and, when the
/// settings close the feedback loop, the learner's; `first` says whether
/// this worker is its process's first, which takes the live labels and
/// reports the version in force.
pub fn score<'scope>(
    scope: Scope<'scope, u64>,
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
    versions: Stream<'scope, u64, Vec<ModelVersion>>,
    scoring: &ScoringSettings,
    counts: Counts,
    first: bool,
    abort: &Abort,
) -> Routed<'scope> {
    let initial = Arc::clone(&scoring.initial);
    let in_force = scoring.in_force.clone().filter(|_| first);
    let Some(settings) = &scoring.feedback else {
        return score_and_route(rows, report(versions, in_force), initial, None);
    };
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
        counts.clone(),
        abort.clone(),
        settings.flush.clone(),
    )
    .broadcast();
    let versions = report(versions.concat(learned), in_force);
    let frozen = settings.compare_frozen.then(|| Arc::clone(&initial));
    let routed = score_and_route(rows, versions, initial, frozen);
    match settings.analysts {
        Some(desk) => {
            let cases = routed.anomalies.clone().concat(routed.normal.clone());
            analysts(cases, desk, settings.loop_delay_ms(), counts).connect_loop(handle);
        }
        None => empty(scope).connect_loop(handle),
    }
    routed
}

/// Writes the name of the latest version (by the time it applies from)
/// into `in_force`, when given. Every worker builds the same operator (a
/// worker's graph must match the others'), whether it writes or not.
fn report<'scope>(
    versions: Stream<'scope, u64, Vec<ModelVersion>>,
    in_force: Option<Arc<Mutex<String>>>,
) -> Stream<'scope, u64, Vec<ModelVersion>> {
    let mut latest = None::<u64>;
    versions.inspect(move |v| {
        let Some(in_force) = &in_force else { return };
        if latest.is_none_or(|l| v.from >= l) {
            latest = Some(v.from);
            *in_force.lock().unwrap_or_else(|e| e.into_inner()) = v.scorer.model_version.clone();
        }
    })
}
