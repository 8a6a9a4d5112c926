//! Hostile reports: a backtest's summary and `report.json` must say which
//! bundle scored which steps, refuse switches that contradict each other,
//! and stay true when fraud amounts sum past f64's range; a command's exit
//! status must say whether the data (1) or a flag or the system (2) is at
//! fault.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{backtest, fraudflow, generated, json, run_ok, s, train};

/// Each alert's event id and model version, from `alerts.jsonl`.
fn alerts(out: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(out.join("alerts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (field("event_id"), field("model_version"))
        })
        .collect()
}

/// The step of each data row of a PaySim file, in order.
fn steps(input: &Path) -> Vec<u32> {
    std::fs::read_to_string(input)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// A generated file and two bundles trained on it with different budgets
/// (so different thresholds): the file, its steps, the bundles' directories
/// and their `bundle.json`.
struct TwoBundles {
    input: PathBuf,
    steps: Vec<u32>,
    dirs: [PathBuf; 2],
    bundles: [Value; 2],
}

fn two_bundles(dir: &Path, seed: u64) -> TwoBundles {
    let input = generated(dir, 40_000, seed);
    let (a, b) = (dir.join("a"), dir.join("b"));
    train(&input, &a, &[]);
    train(&input, &b, &["--budget", "0.05", "--seed", "3"]);
    let bundle = |d: &Path| json(&d.join("bundle.json"));
    let bundles = [bundle(&a), bundle(&b)];
    assert_ne!(
        bundles[0]["policy"], bundles[1]["policy"],
        "the versions must differ"
    );
    TwoBundles {
        steps: steps(&input),
        input,
        dirs: [a, b],
        bundles,
    }
}

#[test]
fn a_switch_at_step_0_is_reported_as_the_version_that_scored_everything() {
    let dir = tempfile::tempdir().unwrap();
    let TwoBundles {
        input,
        steps: _,
        dirs: [a, b],
        bundles: [bundle_a, bundle_b],
    } = two_bundles(dir.path(), 41);
    // Regression: a switch at step 0 scored everything, yet the summary and
    // report named the first bundle and its threshold.
    let out = dir.path().join("at0");
    let switch = format!("0={}", s(&b));
    let printed = run_ok(&backtest(&input, &a, &out, &["--switch-models", &switch]));
    let report = json(&out.join("report.json"));
    assert_eq!(report["bundle_version"], bundle_b["version"], "{report}");
    assert_eq!(report["policy"], bundle_b["policy"]);
    let versions = report["versions"].as_array().unwrap();
    assert_eq!(versions[0]["bundle_version"], bundle_a["version"]);
    assert_eq!(versions[0]["events"], 0);
    assert_eq!(versions[1]["events"], report["scored"]);
    assert_eq!(versions[1]["policy"], bundle_b["policy"]);
    // The quality at the threshold is at the threshold that scored.
    assert_eq!(
        report["quality_all"]["at_threshold"]["alerts"],
        report["alerts"]
    );
    let threshold_b = format!(
        "threshold {:.6}",
        bundle_b["policy"]["threshold"].as_f64().unwrap()
    );
    let line_b = printed
        .lines()
        .find(|l| l.contains(bundle_b["version"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(line_b.contains(&threshold_b), "{printed}");
    let line_a = printed
        .lines()
        .find(|l| l.contains(bundle_a["version"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        line_a.contains("no steps") && line_a.contains("scored 0 events"),
        "{printed}"
    );
}

#[test]
fn switched_versions_are_reported_with_their_steps_thresholds_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let TwoBundles {
        input,
        steps,
        dirs: [a, b],
        bundles: [bundle_a, _],
    } = two_bundles(dir.path(), 45);
    // A switch midway: each version's events and alerts, recomputed from
    // the input's steps and from the versions the alerts name.
    let middle = steps[steps.len() / 2];
    let out = dir.path().join("mid");
    let switch = format!("{middle}={}", s(&b));
    run_ok(&backtest(&input, &a, &out, &["--switch-models", &switch]));
    let report = json(&out.join("report.json"));
    assert!(
        report["bundle_version"].is_null() && report["policy"].is_null(),
        "{report}"
    );
    let versions = report["versions"].as_array().unwrap();
    let before = steps.iter().filter(|&&st| st < middle).count() as u64;
    assert_eq!(report["dead_letters"], 0);
    assert_eq!(versions[0]["events"].as_u64(), Some(before));
    assert_eq!(
        versions[1]["events"].as_u64(),
        Some(steps.len() as u64 - before)
    );
    assert_eq!(versions[0]["until_step"], middle);
    assert_eq!(versions[1]["from_step"], middle);
    let mut by_version: HashMap<String, u64> = HashMap::new();
    for (_, version) in alerts(&out) {
        *by_version.entry(version).or_default() += 1;
    }
    for v in versions {
        let named = by_version.get(v["bundle_version"].as_str().unwrap());
        assert_eq!(
            v["alerts"].as_u64(),
            Some(named.copied().unwrap_or(0)),
            "{v}"
        );
        // The input is the bundles' training file: the test split is known.
        let last = bundle_a["split"]["validation_last_step"].as_u64().unwrap() as u32;
        let (from, until) = (
            v["from_step"].as_u64().unwrap() as u32,
            v["until_step"].as_u64(),
        );
        let test = steps
            .iter()
            .filter(|&&st| st > last && st >= from && until.is_none_or(|u| u64::from(st) < u))
            .count() as u64;
        assert_eq!(v["test_events"].as_u64(), Some(test), "{v}");
    }
    assert_eq!(
        report["quality_all"]["at_threshold"]["alerts"],
        report["alerts"]
    );
}

#[test]
fn contradictory_switches_are_refused_as_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 2_000, 42);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let out = dir.path().join("bt");
    let cases = [
        // Regression: the same step twice was taken silently.
        (
            format!("5={}", s(&a)),
            format!("5={}", s(&b)),
            "step 5 is given twice",
        ),
        (
            format!("5={}", s(&a)),
            format!("5={}", s(&a)),
            "step 5 is given twice",
        ),
        (format!("5={}", s(&a)), "6=".to_string(), "names no DIR"),
    ];
    for (first, second, wanted) in cases {
        let args = backtest(
            &input,
            &a,
            &out,
            &["--switch-models", &first, "--switch-models", &second],
        );
        let done = fraudflow(&args);
        let err = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(2), "{err}");
        assert!(err.contains(wanted), "{first} {second}: {err}");
        // Refused before the missing bundles were read.
        assert!(!err.contains("bundle.json"), "{err}");
    }
}

/// A generated file whose rows `every`-th rows are frauds of f64's largest
/// amount; its data rows' amounts and labels.
fn huge_frauds(dir: &Path, every: usize) -> (PathBuf, Vec<(f64, bool)>) {
    let input = generated(dir, 40_000, 43);
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (i, line) in lines.iter_mut().enumerate().skip(1) {
        if i % every == 0 {
            let step = line.split(',').next().unwrap().to_string();
            *line = format!(
                "{step},TRANSFER,1.7976931348623157E308,C8{i},1.7976931348623157E308,0.0,C7{i},0.0,0.0,1,0"
            );
        }
    }
    let rows = lines[1..]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].parse().unwrap(), f[9] == "1")
        })
        .collect();
    let path = dir.join("huge-frauds.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, rows)
}

#[test]
fn fraud_amounts_past_f64s_range_give_a_true_share_and_no_nan() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    train(&generated(dir.path(), 40_000, 44), &models, &[]);
    let (input, rows) = huge_frauds(dir.path(), 500);
    for threshold in [None, Some("0")] {
        let out = dir.path().join(format!("bt-{threshold:?}"));
        let extra: Vec<&str> = threshold.iter().flat_map(|t| ["--threshold", t]).collect();
        let printed = run_ok(&backtest(&input, &models, &out, &extra));
        // Regression: "fraud amount caught: inf of inf (NaN %)".
        assert!(
            !printed.contains("NaN") && !printed.contains("inf"),
            "{printed}"
        );
        assert!(printed.contains("past f64's range"), "{printed}");
        let report = json(&out.join("report.json"));
        let q = &report["quality_all"];
        assert!(q["fraud_amount"].is_null(), "{q}");
        // Recomputed plainly, on amounts scaled by f64's largest value.
        let alerted: HashSet<String> = alerts(&out).into_iter().map(|(id, _)| id).collect();
        let dead: HashSet<String> = std::fs::read_to_string(out.join("dead_letters.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["source"].to_string())
            .filter_map(|source| Some(source.trim_matches('"').rsplit_once(':')?.1.to_string()))
            .collect();
        let (mut caught, mut total) = (0.0, 0.0);
        for (i, (amount, fraud)) in rows.iter().enumerate() {
            if *fraud && !dead.contains(&(i + 1).to_string()) {
                total += amount / f64::MAX;
                if alerted.contains(&(i + 1).to_string()) {
                    caught += amount / f64::MAX;
                }
            }
        }
        let share = q["fraud_amount_caught_share"].as_f64().unwrap();
        assert!(
            (share - caught / total).abs() < 1e-9,
            "{share} vs {}",
            caught / total
        );
        if threshold.is_some() {
            // Threshold 0 alerts on every event, so catches every amount.
            assert_eq!(share, 1.0);
            assert!(printed.contains("(100.0 %)"), "{printed}");
        }
    }
}

/// `generated(dir, rows, seed)` with every `isFraud` label set to 0: no
/// split of it has fraud.
fn fraudless(dir: &Path, rows: u64, seed: u64) -> PathBuf {
    let input = generated(dir, rows, seed);
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines = text.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let mut fields: Vec<&str> = line.split(',').collect();
        let n = fields.len();
        fields[n - 2] = "0";
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    let path = dir.join("fraudless.csv");
    std::fs::write(&path, out).unwrap();
    path
}

/// `fraudflow ARGS` failed with `code`; its standard error.
pub fn failed_with(code: i32, args: &[&str]) -> String {
    let out = fraudflow(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    err
}

#[test]
fn training_data_that_cannot_train_exits_1_and_a_bad_split_flag_2() {
    // Regression: "the validation split has no fraud" exited 2, as if a flag
    // or the system were at fault.
    let dir = tempfile::tempdir().unwrap();
    let input = fraudless(dir.path(), 20_000, 31);
    let models = dir.path().join("models");
    let train = |input: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--input", s(input), "--out", s(&models)];
        args.extend_from_slice(extra);
        args.push("--quiet");
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |code, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        failed_with(code, &args)
    };
    let err = run(1, train(&input, &[]));
    assert!(
        err.contains("validation split") && err.contains("no fraud"),
        "{err}"
    );
    // Relatives: events without labels, and events in fewer than three steps.
    let events = dir.path().join("unlabelled.jsonl");
    let event = |i: u32| {
        serde_json::json!({
            "event_id": format!("u{i}"),
            "timestamp": format!("2026-11-28T{:02}:00:00Z", i % 24),
            "user_id": "C1", "type": "PAYMENT", "amount": 10.0,
            "old_balance_orig": 100.0, "new_balance_orig": 90.0, "dest_id": "M1",
            "old_balance_dest": 0.0, "new_balance_dest": 0.0,
        })
        .to_string()
    };
    let lines: Vec<String> = (0..50).map(event).collect();
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let err = run(1, train(&events, &[]));
    assert!(err.contains("has no label"), "{err}");
    let text = std::fs::read_to_string(generated(dir.path(), 2_000, 32)).unwrap();
    let two_steps: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.starts_with("1,") || l.starts_with("2,"))
        .map(|(_, l)| l)
        .collect();
    let short = dir.path().join("two-steps.csv");
    std::fs::write(&short, two_steps.join("\n") + "\n").unwrap();
    let err = run(1, train(&short, &[]));
    assert!(err.contains("at least 3"), "{err}");
    // A split flag at odds with itself is a usage error.
    let err = run(2, train(&input, &["--split", "8,6"]));
    assert!(err.contains("--split 8,6"), "{err}");
}
