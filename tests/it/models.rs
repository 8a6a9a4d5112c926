//! Training and the backtest, end to end: the bundle and what it refuses,
//! alerts identical for any worker and process count, the alert schema,
//! quality on generated data and on the genuine slice.

use std::path::Path;

use serde_json::Value;

use crate::common::{
    backtest, fraudflow, generated, json, run_ok, run_two_processes, s, shared_slice,
};

#[test]
fn train_then_backtest_gives_identical_alerts_for_any_worker_and_process_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 200_000, 3);
    let models = dir.path().join("models");
    let printed = run_ok(&[
        "train",
        "--input",
        s(&input),
        "--out",
        s(&models),
        "-w",
        "2",
        "--quiet",
    ]);
    assert!(printed.contains("ensemble"), "{printed}");

    // The bundle and one metrics file per model.
    let bundle = json(&models.join("bundle.json"));
    assert_eq!(bundle["format"], 1);
    assert_eq!(bundle["contract"], "v2");
    assert_eq!(bundle["features"].as_array().unwrap().len(), 13);
    assert_eq!(bundle["fingerprint"]["events"], 200_000);
    let split = &bundle["split"];
    let rows = ["train_rows", "validation_rows", "test_rows"].map(|k| split[k].as_u64().unwrap());
    assert_eq!(rows.iter().sum::<u64>(), 200_000);
    // 70/15/15 by row count, cut at step boundaries.
    assert!(
        (0.65..0.75).contains(&(rows[0] as f64 / 200_000.0)),
        "{split}"
    );
    assert!(split["train_last_step"].as_u64() < split["validation_last_step"].as_u64());
    for model in [
        "isolation_forest",
        "autoencoder",
        "logistic",
        "ensemble",
        "ensemble_parity",
    ] {
        let m = json(&models.join("metrics").join(format!("{model}.json")));
        assert_eq!(m["model"], model);
        assert!(m["metrics"]["pr_auc"].as_f64().is_some(), "{m}");
        assert!(m["metrics"]["at_threshold"]["recall"].as_f64().is_some());
    }
    let ensemble = bundle["metrics"]["ensemble"]["pr_auc"].as_f64().unwrap();
    assert!(
        ensemble >= 0.8,
        "ensemble PR-AUC on the test split: {ensemble}"
    );

    let backtest = |name: &str, timely: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "backtest",
            "--input",
            s(&input),
            "--models",
            s(&models),
            "--out",
            s(&out),
            "--scores",
            "--quiet",
        ];
        args.extend_from_slice(timely);
        let printed = run_ok(&args);
        (out, printed)
    };
    let (w1, printed) = backtest("w1", &["-w", "1"]);
    for figure in ["PR-AUC", "recall", "fraud amount caught", "p99", "events/s"] {
        assert!(
            printed.contains(figure),
            "{figure} missing from:\n{printed}"
        );
    }
    let alerts = std::fs::read(w1.join("alerts.jsonl")).unwrap();
    let scores = std::fs::read(w1.join("scores.csv")).unwrap();
    let report = json(&w1.join("report.json"));
    let alert_lines = alerts
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(alert_lines > 0);
    assert_eq!(report["alerts"].as_u64(), Some(alert_lines as u64));
    assert_eq!(report["events_in"], 200_000);
    assert_eq!(
        report["alerts"].as_u64().unwrap() + report["normal"].as_u64().unwrap(),
        report["scored"].as_u64().unwrap()
    );
    assert_eq!(
        scores
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        200_001
    );
    // The backtest's test split is the one training measured.
    assert_eq!(
        report["quality_test_split"]["pr_auc"],
        bundle["metrics"]["ensemble"]["pr_auc"]
    );

    let (w2, _) = backtest("w2", &["-w", "2"]);
    assert!(
        std::fs::read(w2.join("alerts.jsonl")).unwrap() == alerts,
        "-w 2 differs"
    );
    assert!(
        std::fs::read(w2.join("scores.csv")).unwrap() == scores,
        "-w 2 differs"
    );

    // Two processes on 127.0.0.1; process 0 writes.
    let n2 = dir.path().join("n2");
    run_two_processes(
        dir.path(),
        &[
            "backtest",
            "--input",
            s(&input),
            "--models",
            s(&models),
            "--out",
            s(&n2),
        ],
        "1",
    );
    assert!(
        std::fs::read(n2.join("alerts.jsonl")).unwrap() == alerts,
        "-n 2 differs"
    );
}

/// Every alert has the fields schemas/alert_v1.json requires, of its types.
#[test]
fn alerts_follow_their_schema_and_carry_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 60_000, 5);
    let out = dir.path().join("bt");
    run_ok(&[
        "backtest",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--quiet",
    ]);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/alert_v1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let props = schema["properties"].as_object().unwrap();
    let text = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    assert!(!text.is_empty());
    // Trained in the same run or loaded from the bundle it wrote: the same
    // alerts, so the bundle keeps every number exactly.
    let again = dir.path().join("again");
    run_ok(&[
        "backtest",
        "--input",
        s(&input),
        "--models",
        s(&out.join("models")),
        "--out",
        s(&again),
        "--quiet",
    ]);
    assert!(std::fs::read_to_string(again.join("alerts.jsonl")).unwrap() == text);
    for line in text.lines() {
        let alert: Value = serde_json::from_str(line).unwrap();
        for field in schema["required"].as_array().unwrap() {
            let field = field.as_str().unwrap();
            assert!(alert.get(field).is_some(), "{field} missing from {line}");
        }
        for (name, value) in alert.as_object().unwrap() {
            let prop = props
                .get(name)
                .unwrap_or_else(|| panic!("{name} is not in the schema"));
            let kind = match value {
                Value::String(_) => "string",
                Value::Number(n) if n.is_u64() => "integer",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
                Value::Null => "null",
            };
            if let Some(choices) = prop["enum"].as_array() {
                assert!(
                    choices.contains(value),
                    "{name} is {value}, not one of {choices:?}"
                );
                continue;
            }
            let allowed = &prop["type"];
            let ok = allowed == kind
                || (kind == "integer" && allowed == "number")
                || allowed
                    .as_array()
                    .is_some_and(|a| a.iter().any(|t| t == kind));
            assert!(ok, "{name} is {kind}, the schema says {allowed}");
        }
        let score = alert["score"].as_f64().unwrap();
        assert!(score >= alert["threshold"].as_f64().unwrap());
        let reasons = alert["reasons"].as_array().unwrap();
        assert!((1..=3).contains(&reasons.len()), "{line}");
    }
}

#[test]
fn a_bundle_refuses_another_contract_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 60_000, 6);
    let models = dir.path().join("v1");
    run_ok(&[
        "train",
        "--input",
        s(&input),
        "--out",
        s(&models),
        "--contract",
        "v1",
        "--quiet",
    ]);
    assert_eq!(
        json(&models.join("bundle.json"))["features"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    let out = fraudflow(&backtest(&input, &models, &dir.path().join("bt"), &[]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("feature contract v1") && err.contains("computes v2"),
        "{err}"
    );
    // With the contract it was made for, it runs.
    run_ok(&backtest(
        &input,
        &models,
        &dir.path().join("bt"),
        &["--contract", "v1"],
    ));

    // Parity: the original weights, with the threshold chosen for them.
    let parity = dir.path().join("parity");
    run_ok(&backtest(
        &input,
        &models,
        &parity,
        &["--contract", "v1", "--parity"],
    ));
    let report = json(&parity.join("report.json"));
    let bundle = json(&models.join("bundle.json"));
    assert_eq!(report["policy"], bundle["parity"]);
    assert_eq!(report["policy"]["weights"]["isolation_forest"], 0.4);
    let out = fraudflow(&backtest(
        &input,
        &models,
        &parity,
        &["--contract", "v1", "--weights", "0.4,x,0.3"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"x\""));

    // A bundle whose models do not fit its contract is refused too.
    let bundle = models.join("bundle.json");
    let text = std::fs::read_to_string(&bundle).unwrap();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    value["models"]["logistic"]["weights"]["data"] = serde_json::json!([1.0]);
    value["models"]["logistic"]["weights"]["dim"] = serde_json::json!([1]);
    std::fs::write(&bundle, value.to_string()).unwrap();
    let out = fraudflow(&backtest(
        &input,
        &models,
        &dir.path().join("bt"),
        &["--contract", "v1"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("logistic"));
}

/// The slice's steps 1-6 train, 7 validates, 8-9 test: small (16 fraud
/// rows in the test), so the floor is loose.
#[test]
fn training_on_the_slice_steps_1_to_7_ranks_steps_8_and_9() {
    let Some(slice) = shared_slice() else { return };
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let printed = run_ok(&[
        "train",
        "--input",
        s(&slice),
        "--out",
        s(&models),
        "--split",
        "6,7",
        "--quiet",
    ]);
    let bundle = json(&models.join("bundle.json"));
    assert_eq!(bundle["split"]["train_last_step"], 6);
    assert_eq!(bundle["split"]["validation_last_step"], 7);
    assert_eq!(bundle["fingerprint"]["events"], 41_370);
    let test_fraud = bundle["split"]["test_fraud"].as_u64().unwrap();
    assert!(test_fraud > 0, "{printed}");
    let roc = bundle["metrics"]["ensemble"]["roc_auc"].as_f64().unwrap();
    assert!(roc > 0.8, "ensemble ROC-AUC on steps 8-9: {roc}\n{printed}");
}

/// Nothing lost: bad rows go to the dead-letter file, and events in =
/// scored + dead letters.
#[test]
fn backtest_counts_every_event_with_bad_rows_in_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 60_000, 8);
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for at in [100, 2_000, 30_000] {
        lines[at] = lines[at].replacen(',', ",NOT_A_TYPE_", 1);
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("bt");
    run_ok(&[
        "backtest",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--quiet",
    ]);
    let report = json(&out.join("report.json"));
    assert_eq!(report["events_in"], 60_000);
    assert_eq!(report["dead_letters"], 3);
    assert_eq!(report["scored"], 59_997);
    let dead = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 3);
    assert!(dead.contains(&format!("{}:101", input.display())), "{dead}");
}
