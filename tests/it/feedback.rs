//! The feedback loop: the join against a plain recomputation, and the
//! backtest with simulated analysts (their counts recomputed from the
//! alerts, and the same output for any number of workers and processes).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::mpsc;

use fraudflow::dataflow::feedback::join::feedback_join;
use fraudflow::dataflow::feedback::{Example, Feedback, FeedbackSummary, Kept, Tallied};
use fraudflow::dataflow::FeatureRow;
use fraudflow::event::EventId;
use fraudflow::features::FeatureVec;
use fraudflow::paysim::{AccountId, AccountKind};
use serde_json::Value;
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::ToStream;

use crate::common::{backtest, generated, json, run_ok, run_two_processes, train};

const RETENTION: u64 = 1_000;

fn row(id: u64, place: u64) -> FeatureRow {
    FeatureRow {
        id: EventId::Row(id),
        seq: id,
        time_ms: place,
        place_ms: place,
        step: None,
        account: AccountId::new(AccountKind::Customer, id).unwrap(),
        received_us: 0,
        label: None,
        values: FeatureVec::from_slice(&[id as f64, place as f64 / 7.0]),
    }
}

/// Runs the join on `workers` workers, every input given at logical time 0
/// (each record at its own place): the examples in order, and the counts.
fn join(
    workers: usize,
    rows: Vec<FeatureRow>,
    labels: Vec<Feedback>,
) -> (Vec<Example>, FeedbackSummary) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let first = worker.index() == 0;
        let tx = tx.lock().unwrap().clone();
        let (rows, labels) = if first {
            (rows.clone(), labels.clone())
        } else {
            (Vec::new(), Vec::new())
        };
        worker.dataflow::<u64, _, _>(|scope| {
            let rows = rows.to_stream(scope);
            let labels = labels.to_stream(scope);
            feedback_join(rows, labels, RETENTION).capture_into(tx);
        });
        while worker.step() {}
    })
    .unwrap();
    guards.join().into_iter().for_each(|r| r.unwrap());
    let (mut examples, mut total) = (Vec::new(), FeedbackSummary::default());
    let mut shards = 0;
    for tallied in rx.extract().into_iter().flat_map(|(_, e)| e) {
        match tallied {
            Tallied::Example(e) => examples.push(e),
            Tallied::Counts(c) => {
                total.add(&c);
                shards += 1;
            }
        }
    }
    assert_eq!(shards, workers, "every shard sends its counts once");
    examples.sort();
    (examples, total)
}

/// The join written out plainly: a label meets the features of its
/// transaction when their two stretches of `RETENTION` overlap, at the
/// later of their times; meetings are then taken by time and order of
/// receipt, and a transaction labelled again within the retention after
/// its last label counts a duplicate (a relabel when the class differs).
fn oracle(rows: &[FeatureRow], labels: &[Feedback]) -> (Vec<Example>, FeedbackSummary) {
    let mut examples = Vec::new();
    let mut summary = FeedbackSummary {
        received: labels.len() as u64,
        ..FeedbackSummary::default()
    };
    for l in labels {
        let met: Vec<&FeatureRow> = rows
            .iter()
            .filter(|r| {
                r.id == l.id && r.place_ms < l.time + RETENTION && l.time < r.place_ms + RETENTION
            })
            .collect();
        summary.unmatched += u64::from(met.is_empty());
        for r in met {
            examples.push(Example {
                time: r.place_ms.max(l.time),
                seq: l.seq,
                id: l.id.clone(),
                is_fraud: l.is_fraud,
                values: Kept(r.values),
            });
        }
    }
    examples.sort_by_key(|e| (e.time, e.seq));
    let mut last: HashMap<EventId, (bool, u64)> = HashMap::new();
    for e in &examples {
        summary.matched += 1;
        if let Some((before, until)) = last.get(&e.id) {
            if *until >= e.time {
                summary.duplicate += 1;
                summary.relabel += u64::from(*before != e.is_fraud);
            }
        }
        last.insert(e.id.clone(), (e.is_fraud, e.time + RETENTION));
    }
    examples.sort();
    (examples, summary)
}

#[test]
fn the_feedback_join_meets_labels_as_a_plain_recomputation_says() {
    let mut state = 7u64;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    for round in 0..4 {
        let rows: Vec<FeatureRow> = (1..=60).map(|id| row(id, 1_000 + next(5_000))).collect();
        // Labels of known transactions and of a few never seen, early,
        // late and at the edges of the retention; some labelled twice.
        let labels: Vec<Feedback> = (0..120)
            .map(|seq| {
                let id = 1 + next(70);
                let base = rows
                    .iter()
                    .find(|r| r.seq == id)
                    .map_or(3_000, |r| r.place_ms);
                let offset = [0, 1, 999, 1_000, 1_500][next(5) as usize];
                let time = if next(2) == 0 {
                    base + offset
                } else {
                    base.saturating_sub(offset)
                };
                Feedback {
                    id: EventId::Row(id),
                    is_fraud: next(3) == 0,
                    seq,
                    time,
                }
            })
            .collect();
        let expected = oracle(&rows, &labels);
        assert!(expected.1.unmatched > 0 && expected.1.duplicate > 0 && expected.1.relabel > 0);
        for workers in [1, 3] {
            let found = join(workers, rows.clone(), labels.clone());
            assert_eq!(found.1, expected.1, "round {round}, {workers} workers");
            assert_eq!(found.0, expected.0, "round {round}, {workers} workers");
        }
    }
}

/// Alerts by hour of event time (PaySim: the step), in input order.
fn alerts_by_hour(alerts: &str) -> BTreeMap<u64, Vec<Value>> {
    let mut by_hour: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in alerts.lines() {
        let alert: Value = serde_json::from_str(line).unwrap();
        by_hour
            .entry(alert["step"].as_u64().unwrap())
            .or_default()
            .push(alert);
    }
    for list in by_hour.values_mut() {
        list.sort_by_key(|a| a["seq"].as_u64());
    }
    by_hour
}

#[test]
fn a_backtest_with_feedback_learns_counts_every_label_and_is_the_same_on_any_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 60_000, 11);
    let models = dir.path().join("models");
    train(&input, &models, &["-w", "2"]);
    let capacity = 3u64;
    let cap = capacity.to_string();
    let flags = [
        "--feedback",
        "--analyst-capacity",
        &cap,
        "--learn-batch",
        "8",
        // The replay is learner state too: it must not depend on the
        // cluster either.
        "--learn-replay",
        "4",
        "--drift-at",
        "200",
        "--presume-legit",
        "7",
    ];
    let run = |name: &str, timely: &[&str]| {
        let out = dir.path().join(name);
        let mut args = backtest(&input, &models, &out, &flags);
        args.extend_from_slice(timely);
        run_ok(&args);
        out
    };
    let w1 = run("w1", &["-w", "1", "--scores"]);
    let report = json(&w1.join("report.json"));
    let f = &report["feedback"];
    let count = |k: &str| f[k].as_u64().unwrap();

    // The analysts' desk recomputed from the alerts: the first `capacity`
    // alerts of each hour are labelled, the fraud among the rest and all
    // fraud without an alert come back as chargebacks.
    let alerts = std::fs::read_to_string(w1.join("alerts.jsonl")).unwrap();
    let (mut labelled, mut over, mut labelled_fraud) = (0, 0, 0);
    let mut labelled_ids = std::collections::HashSet::new();
    for list in alerts_by_hour(&alerts).values() {
        let first = list.len().min(capacity as usize);
        labelled += first as u64;
        over += (list.len() - first) as u64;
        labelled_ids.extend(list[..first].iter().map(|a| a["event_id"].to_string()));
        labelled_fraud += list[..first]
            .iter()
            .filter(|a| a["is_fraud"] == true)
            .count() as u64;
    }
    let fraud = report["quality_all"]["fraud"].as_u64().unwrap();
    assert_eq!(report["late"], 0);
    assert!(
        over > 0,
        "the capacity must bind for this test to mean anything"
    );
    assert_eq!(count("analyst_labels"), labelled, "{f}");
    assert_eq!(count("over_capacity"), over, "{f}");
    assert_eq!(count("chargebacks"), fraud - labelled_fraud, "{f}");
    let presumed = presumed_legit(&w1.join("scores.csv"), &labelled_ids, 7);
    assert!(
        presumed > 0,
        "no transaction to presume legitimate: the test means nothing"
    );
    assert_eq!(count("presumed_legit"), presumed, "{f}");
    assert_eq!(
        count("received"),
        labelled + fraud - labelled_fraud + presumed,
        "{f}"
    );
    // Every label finds its transaction within the two days kept.
    assert_eq!(count("matched"), count("received"), "{f}");
    assert_eq!(count("unmatched"), 0);
    assert_eq!(count("duplicate"), 0);
    assert_eq!(
        count("promoted") + count("refused"),
        count("updates"),
        "{f}"
    );
    // One labelled transaction in five goes to the holdout, not to
    // training.
    assert!(count("examples") < count("matched"), "{f}");
    assert!(count("promoted") > 0, "{f}");
    // Later alerts were scored by the versions the learner promoted.
    assert!(
        alerts.contains("+online."),
        "no alert scored by a learned version"
    );
    let without = dir.path().join("frozen");
    run_ok(&backtest(&input, &models, &without, &["--scores"]));
    let frozen = std::fs::read_to_string(without.join("alerts.jsonl")).unwrap();
    assert!(!frozen.contains("+online."));
    let frozen_report = json(&without.join("report.json"));
    assert!(frozen_report.get("feedback").is_none());
    assert!(frozen_report.get("learning").is_none());
    the_frozen_column_is_the_frozen_run(&w1, &without);
    the_days_add_up_to_the_totals(&report);
    the_week_before_the_drift_is_its_days(&report, 200);

    let w4 = run("w4", &["-w", "4"]);
    let two = dir.path().join("two");
    let mut args = backtest(&input, &models, &two, &flags);
    args.retain(|a| *a != "--quiet");
    run_two_processes(dir.path(), &args, "2");
    for other in [&w4, &two] {
        let same = std::fs::read_to_string(other.join("alerts.jsonl")).unwrap();
        assert!(same == alerts, "alerts differ in {}", other.display());
        assert_eq!(json(&other.join("report.json"))["feedback"], *f);
    }
}

/// The legitimate transactions that one in `every` samples and no analyst
/// labelled (`labelled`: the labelled alerts' ids, quoted), from the
/// scores file.
fn presumed_legit(scores: &Path, labelled: &std::collections::HashSet<String>, every: u64) -> u64 {
    use fraudflow::dataflow::feedback::analysts::presumed;
    let text = std::fs::read_to_string(scores).unwrap();
    let mut n = 0;
    for line in text.lines().skip(1) {
        let mut cols = line.split(',');
        let (id, is_fraud) = (cols.next().unwrap(), cols.next().unwrap());
        let row = EventId::Row(id.parse().unwrap());
        let quoted = format!("{id:?}");
        n += u64::from(is_fraud == "0" && presumed(&row, every) && !labelled.contains(&quoted));
    }
    n
}

/// `recovery`'s level before a drift at `step` is the learning table's
/// seven days before the drift's day, summed.
fn the_week_before_the_drift_is_its_days(report: &Value, step: u64) {
    let before = &report["recovery"]["before"];
    let days: Vec<&Value> = report["learning"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| (step / 24 - 7..step / 24).contains(&d["day"].as_u64().unwrap()))
        .collect();
    let sum = |f: &dyn Fn(&Value) -> u64| days.iter().map(|d| f(d)).sum::<u64>();
    let caught = |model: &'static str| {
        move |d: &Value| {
            let recall = d[model]["recall"].as_f64().unwrap_or(0.0);
            (recall * d["fraud"].as_f64().unwrap()).round() as u64
        }
    };
    assert_eq!(
        before["fraud"].as_u64(),
        Some(sum(&|d| d["fraud"].as_u64().unwrap()))
    );
    assert!(before["fraud"].as_u64() > Some(0), "{before}");
    assert_eq!(
        before["online"]["caught"].as_u64(),
        Some(sum(&caught("online")))
    );
    assert_eq!(
        before["frozen"]["caught"].as_u64(),
        Some(sum(&caught("frozen")))
    );
    assert_eq!(report["recovery"]["after"][1]["from_hour"], step + 24);
}

/// Every event's `frozen` score in a run with feedback is the score the
/// same bundle gives it without: the report's frozen column is honest.
fn the_frozen_column_is_the_frozen_run(learning: &Path, frozen: &Path) {
    let read = |dir: &Path| std::fs::read_to_string(dir.join("scores.csv")).unwrap();
    let (learning, frozen) = (read(learning), read(frozen));
    let (mut lines, mut changed) = (0, 0);
    for (a, b) in learning.lines().zip(frozen.lines()).skip(1) {
        let a: Vec<&str> = a.split(',').collect();
        let b: Vec<&str> = b.split(',').collect();
        assert_eq!(a[0], b[0], "the same event");
        assert_eq!(a[7], b[5], "frozen score of {}", a[0]);
        lines += 1;
        changed += usize::from(a[5] != b[5]);
    }
    assert_eq!(lines, frozen.lines().count() - 1);
    assert!(learning.lines().next().unwrap().ends_with(",frozen"));
    assert!(changed > 0, "the online versions changed no score");
}

/// The learning table's updates, promotions, refusals and rollbacks add up
/// to the totals, day by day.
fn the_days_add_up_to_the_totals(report: &Value) {
    let days = report["learning"].as_array().unwrap();
    for key in ["updates", "promoted", "refused", "rolled_back"] {
        let sum: u64 = days.iter().map(|d| d[key].as_u64().unwrap()).sum();
        assert_eq!(sum, report["feedback"][key].as_u64().unwrap(), "{key}");
    }
    let events: u64 = days.iter().map(|d| d["events"].as_u64().unwrap()).sum();
    assert_eq!(events, report["quality_all"]["events"].as_u64().unwrap());
    assert!(days
        .iter()
        .all(|d| d["frozen"]["pr_auc"].is_number() || d["fraud"] == 0));
}

#[test]
fn the_feedback_schema_and_the_parser_agree() {
    use fraudflow::dataflow::feedback::body::parse_feedback;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/feedback_v1.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let props = schema["properties"].as_object().unwrap();
    let first = |name: &str| props[name]["examples"][0].clone();
    let mut base = serde_json::Map::new();
    for name in ["transaction_id", "label", "analyst_id"] {
        base.insert(name.to_string(), first(name));
    }
    // Each example of each field, and each label of the enum, parses.
    let mut bodies = Vec::new();
    for (name, prop) in props {
        for example in prop["examples"].as_array().unwrap() {
            let mut body = base.clone();
            if name == "anomaly_id" {
                body.remove("transaction_id");
            }
            body.insert(name.clone(), example.clone());
            bodies.push(Value::Object(body));
        }
    }
    for label in props["label"]["enum"].as_array().unwrap() {
        let mut body = base.clone();
        body.insert("label".to_string(), label.clone());
        let fraud = parse_feedback(Value::Object(body).to_string().as_bytes())
            .unwrap()
            .is_fraud;
        let text = label.as_str().unwrap();
        assert_eq!(fraud, text == "fraud" || text == "true_positive", "{text}");
    }
    for body in bodies {
        parse_feedback(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
    }
    // Each documented refusal names its field.
    let refusals = schema["x-refusals"].as_array().unwrap();
    assert!(refusals.len() >= 8);
    for r in refusals {
        let raw = r["raw"].as_str().unwrap();
        let err = parse_feedback(raw.as_bytes()).unwrap_err();
        assert_eq!(err.field(), r["field"].as_str().unwrap(), "{raw}: {err}");
    }
    assert_eq!(
        schema["x-max-body-bytes"].as_u64(),
        Some(fraudflow::serve::feedback::MAX_FEEDBACK_BYTES as u64)
    );
}
