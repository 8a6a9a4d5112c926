//! What every process of a run must be started with alike, checked before
//! the dataflow is built.
//!
//! Why: timely joins any processes that name each other in their host
//! lists, and nothing else tells them apart. Processes that read different
//! files, score with different models or cut the file into blocks of
//! another size run to the end and write a mixed, or lossy, output with
//! exit status 0; processes whose settings change the graph's shape (the
//! contract, the feedback loop) wait on each other for ever. So, before
//! anything else, each worker sends every worker the settings it was given,
//! named, in a small dataflow of its own, and compares them with its own:
//! the first that differs ends the run, named with both values. Until every
//! worker's settings are in, the run's connect deadline still holds, so a
//! peer that never answers (something else listening at its address) ends
//! the run too.

use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Inspect, Probe};
use timely::worker::Worker;

use super::{PipelineError, PipelineSettings, ScoringSettings, Stage};
use crate::pipeline::versions::VersionFeed;
use crate::sources::SourceSettings;

/// Named settings, in a fixed order.
pub type Terms = Vec<(String, String)>;

/// Bytes hashed at each end of an input file: enough to tell files apart
/// that differ anywhere a person would notice, cheap for any size (the
/// length is compared too).
const SAMPLE: u64 = 1 << 16;

/// The settings every process of a run must share, named.
pub fn terms(settings: &PipelineSettings) -> Result<Terms, PipelineError> {
    let mut terms = vec![
        term("workers per process (-w)", settings.cluster.workers),
        term("processes (-n)", settings.cluster.processes()),
        term("host list", settings.cluster.addresses.join(", ")),
        term("feature contract", settings.features.contract),
        term("velocity window (ms)", settings.features.window_ms),
    ];
    match &settings.source {
        SourceSettings::File(f) => terms.extend([
            term("input", sampled(&f.path)?),
            term("input format", format!("{:?}", f.format)),
            term("time limits", format!("{:?}", f.limits)),
            term("block bytes", f.block_bytes),
            term("max ahead (ms)", f.max_ahead_ms),
            term("epoch span (ms)", format!("{:?}", f.epoch_span_ms)),
        ]),
        SourceSettings::Live(input) => terms.extend([
            term("source", "HTTP"),
            term("time limits", format!("{:?}", input.limits())),
        ]),
        SourceSettings::Kafka(input) => terms.extend([
            term("source", "Kafka"),
            term("time limits", format!("{:?}", input.settings.limits)),
        ]),
    }
    terms.push(term("stage", stage(&settings.stage)));
    // Metrics add operators to the graph (`pipeline::observe`).
    let metrics = crate::metrics::installed().is_some();
    terms.push(term("metrics (--metrics, [metrics])", metrics));
    if let Some(scoring) = settings.stage.scoring() {
        terms.extend(scoring_terms(scoring));
    }
    Ok(terms)
}

fn term(name: &str, value: impl ToString) -> (String, String) {
    (name.to_string(), value.to_string())
}

fn stage(stage: &Stage) -> String {
    match stage {
        Stage::CsvTable => "features, as a CSV table".into(),
        Stage::Rows => "features, as rows".into(),
        Stage::Scored { .. } => "scored and routed".into(),
        Stage::Evaluated { keep, scores, .. } => {
            format!("evaluated (scores {scores}, page {})", keep.page)
        }
    }
}

fn scoring_terms(scoring: &ScoringSettings) -> Terms {
    let switches = match &scoring.versions {
        VersionFeed::Fixed(versions) => versions
            .iter()
            .map(|v| {
                let (name, policy) = (&v.scorer.model_version, &v.scorer.policy);
                format!("{name} ({policy:?}) from {} ms", v.from)
            })
            .collect::<Vec<_>>()
            .join(", "),
        VersionFeed::Live(_) => "reloaded while running".into(),
    };
    let feedback = scoring.feedback.as_ref().map(|f| {
        let l = &f.learner;
        format!(
            "retention {} ms; batch {}, wait {} ms, margin {}, holdout {} (1 in {}), \
             replay {}, {:?}; analysts {:?}; frozen compared {}",
            f.retention_ms,
            l.batch_size,
            l.max_wait_ms,
            l.margin,
            l.holdout,
            l.holdout_every,
            l.replay_positives,
            l.params,
            f.analysts,
            f.compare_frozen
        )
    });
    vec![
        term("models", &scoring.initial.model_version),
        // The weights and threshold: --threshold, --weights, --parity.
        term("policy", format!("{:?}", scoring.initial.policy)),
        term("model switches", switches),
        term("feedback loop", feedback.unwrap_or_else(|| "off".into())),
        term("adaptive threshold", format!("{:?}", scoring.threshold)),
    ]
}

/// An input file's length and a hash of its first and last [`SAMPLE`]
/// bytes.
fn sampled(path: &Path) -> Result<String, PipelineError> {
    let io = |e| PipelineError::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let length = file.metadata().map_err(io)?.len();
    let mut head = Vec::new();
    (&mut file)
        .take(SAMPLE)
        .read_to_end(&mut head)
        .map_err(io)?;
    file.seek(SeekFrom::Start(length.saturating_sub(SAMPLE)))
        .map_err(io)?;
    let mut tail = Vec::new();
    file.take(SAMPLE).read_to_end(&mut tail).map_err(io)?;
    let hash = crate::bundle::fnv_words(crate::bundle::fnv_words(0, &head), &tail);
    Ok(format!("{length} bytes, sampled hash {hash:016x}"))
}

/// Sends `mine` to every worker of the run and compares what each sent
/// with it, stepping `worker` until all are in: the first difference is
/// the error. When they agree, `agreed` is told (false: this process is
/// ending, and the worker waits for that), and then the worker waits until
/// every worker of the run has got that far: a process that goes on (and
/// takes events) knows that no other can still end as one that never
/// connected (`connect`).
pub fn check(
    worker: &mut Worker,
    process: usize,
    mine: &Terms,
    agreed: impl FnOnce() -> bool,
) -> Result<(), PipelineError> {
    let got: Rc<RefCell<Vec<(usize, Terms)>>> = Rc::default();
    let sink = Rc::clone(&got);
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<(usize, Terms)>();
        let probe = stream
            .broadcast()
            .inspect(move |x| sink.borrow_mut().push(x.clone()))
            .probe()
            .0;
        (input, probe)
    });
    input.send((process, mine.clone()));
    input.close();
    worker.step_while(|| !probe.done());
    let found = got
        .borrow()
        .iter()
        .find_map(|(p, theirs)| first_difference(mine, theirs).map(|d| (*p, d)));
    let Some((other, (name, theirs, ours))) = found else {
        if !agreed() {
            loop {
                std::thread::park();
            }
        }
        barrier(worker);
        return Ok(());
    };
    // The others are a step from finding it too: a moment, still stepping
    // (they may need this worker's last progress), so that their logs name
    // it rather than a connection this one broke.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    Err(PipelineError::Mismatch {
        other,
        name,
        theirs,
        process,
        ours,
    })
}

/// Steps `worker` until every worker of the run has reached its own call.
fn barrier(worker: &mut Worker) {
    let (input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<()>();
        (input, stream.probe().0)
    });
    input.close();
    worker.step_while(|| !probe.done());
}

/// The first term that differs: its name, `theirs` and `mine`.
fn first_difference(mine: &Terms, theirs: &Terms) -> Option<(String, String, String)> {
    let missing = || "(not given)".to_string();
    let names = mine.iter().chain(theirs).map(|(n, _)| n);
    names.into_iter().find_map(|name| {
        let value = |terms: &Terms| {
            terms
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let (a, b) = (value(theirs), value(mine));
        (a != b).then(|| {
            (
                name.clone(),
                a.unwrap_or_else(missing),
                b.unwrap_or_else(missing),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(pairs: &[(&str, &str)]) -> Terms {
        pairs.iter().map(|(n, v)| term(n, v)).collect()
    }

    #[test]
    fn the_first_difference_is_named_with_both_values() {
        let mine = terms(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(first_difference(&mine, &mine.clone()), None);
        let theirs = terms(&[("a", "1"), ("b", "9"), ("c", "8")]);
        assert_eq!(
            first_difference(&mine, &theirs),
            Some(("b".into(), "9".into(), "2".into()))
        );
        let fewer = terms(&[("a", "1"), ("b", "2")]);
        assert_eq!(
            first_difference(&mine, &fewer),
            Some(("c".into(), "(not given)".into(), "3".into()))
        );
    }

    #[test]
    fn files_that_differ_at_either_end_or_in_length_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            sampled(&path).unwrap()
        };
        let same = write("a", &body);
        assert_eq!(write("b", &body), same);
        let mut head = body.clone();
        head[10] ^= 1;
        let mut tail = body.clone();
        *tail.last_mut().unwrap() ^= 1;
        for other in [write("c", &head), write("d", &tail), write("e", &body[1..])] {
            assert_ne!(other, same);
        }
        assert!(sampled(&dir.path().join("none")).is_err());
    }
}
