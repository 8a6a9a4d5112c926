//! The adaptive threshold in a backtest: its changes against a plain
//! recomputation from every event's score and hour, every alert routed at
//! the threshold in force, and the same output for any number of workers
//! and processes, with the feedback loop closed too.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::common::{backtest, finish, generated, json, run_ok, run_two_processes, spawn, train};

const HOUR: u64 = 3_600_000;
const MIN_SAMPLES: usize = 300;

/// Every event's place (its step's hour: the generated file is in order)
/// and score, by event id (the data row's number).
fn placed_scores(input: &Path, out: &Path) -> Vec<(u64, f64)> {
    let csv = std::fs::read_to_string(input).unwrap();
    let steps: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let scores = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    scores
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let row: usize = f[0].parse().unwrap();
            (steps[row - 1] * HOUR, f[5].parse().unwrap())
        })
        .collect()
}

/// The changes recomputed plainly: each hour up to the last event's (later
/// changes would apply to no event, and the run ends before them), the
/// score that alerts on the budget share of the last day's scores, given
/// when it moves.
fn recomputed(scores: &[(u64, f64)], budget: f64) -> Vec<(u64, f64, u64)> {
    let last = scores.iter().map(|s| s.0).max().unwrap();
    let (mut out, mut tick) = (Vec::new(), 0);
    while tick <= last {
        let mut window: Vec<f64> = scores
            .iter()
            .filter(|(place, _)| *place < tick && *place + 24 * HOUR >= tick)
            .map(|s| s.1)
            .collect();
        if window.len() >= MIN_SAMPLES {
            window.sort_by(|a, b| b.total_cmp(a));
            let k = (window.len() as f64 * budget).ceil() as usize;
            let threshold = window[k.max(1) - 1];
            if out.last().map(|c: &(u64, f64, u64)| c.1) != Some(threshold) {
                out.push((tick + HOUR, threshold, window.len() as u64));
            }
        }
        tick += HOUR;
    }
    out
}

/// The threshold in force at `time`: the last change at or before it, else
/// the bundle's.
fn in_force(changes: &[(u64, f64, u64)], time: u64, bundle: f64) -> f64 {
    changes
        .iter()
        .take_while(|c| c.0 <= time)
        .last()
        .map_or(bundle, |c| c.1)
}

#[test]
fn the_threshold_follows_the_budget_quantile_a_plain_recomputation_finds() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 60_000, 5);
    let models = dir.path().join("models");
    train(&input, &models, &["-w", "2"]);
    let min = MIN_SAMPLES.to_string();
    let flags = ["--adaptive-threshold", "--threshold-min-samples", &min];
    let out = dir.path().join("w1");
    let mut args = backtest(&input, &models, &out, &flags);
    args.extend_from_slice(&["--scores", "-w", "1"]);
    run_ok(&args);
    let report = json(&out.join("report.json"));
    let budget = report["budget"].as_f64().unwrap();
    let bundle = report["policy"]["threshold"].as_f64().unwrap();
    let scores = placed_scores(&input, &out);
    let expected = recomputed(&scores, budget);
    let got: Vec<(u64, f64, u64)> = report["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = |k: &str| c[k].as_u64().unwrap();
            (f("from"), c["threshold"].as_f64().unwrap(), f("samples"))
        })
        .collect();
    assert!(expected.len() > 20, "too few changes to mean anything");
    assert_eq!(got, expected);

    // Every event is routed at the threshold in force at its hour: the
    // alerts are exactly the events at or above it, and say so.
    let alerts = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    let alerted: HashMap<String, Value> = alerts
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|a| (a["event_id"].as_str().unwrap().to_string(), a))
        .collect();
    let mut expected_alerts = 0;
    for (row, (place, score)) in scores.iter().enumerate() {
        let threshold = in_force(&expected, *place, bundle);
        if *score >= threshold {
            expected_alerts += 1;
            let alert = &alerted[&(row + 1).to_string()];
            assert_eq!(alert["threshold"].as_f64().unwrap(), threshold);
        }
    }
    assert_eq!(alerted.len(), expected_alerts);
    // The budget holds: within a fifth of its share of the events.
    let share = alerted.len() as f64 / scores.len() as f64;
    assert!((share / budget - 1.0).abs() < 0.2, "alerted {share}");
    on_any_cluster(dir.path(), &input, &models, &flags, &alerts);
}

/// With the feedback loop closed too, the same alerts and thresholds for
/// one worker, four, and two processes.
fn on_any_cluster(dir: &Path, input: &Path, models: &Path, flags: &[&str], alone: &str) {
    let mut with_feedback = flags.to_vec();
    with_feedback.extend_from_slice(&["--feedback", "--learn-batch", "8"]);
    let run = |name: &str, flags: &[&str], timely: &[&str]| {
        let out = dir.join(name);
        let mut args = backtest(input, models, &out, flags);
        args.extend_from_slice(timely);
        run_ok(&args);
        out
    };
    let w4 = run("w4", flags, &["-w", "4"]);
    let read = |out: &Path| std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    assert!(read(&w4) == alone, "alerts differ at -w 4");
    let learning = run("learning", &with_feedback, &["-w", "1"]);
    let alerts = read(&learning);
    let thresholds = json(&learning.join("report.json"))["thresholds"].clone();
    assert!(alerts != alone, "the online versions changed no alert");
    let two = dir.join("two");
    let mut args = backtest(input, models, &two, &with_feedback);
    args.retain(|a| *a != "--quiet");
    run_two_processes(dir, &args, "2");
    let w4 = run("learning-w4", &with_feedback, &["-w", "4"]);
    for other in [&two, &w4] {
        assert!(
            read(other) == alerts,
            "alerts differ in {}",
            other.display()
        );
        let report = json(&other.join("report.json"));
        assert_eq!(report["thresholds"], thresholds);
    }
}

/// Waits until the clock reads `time_ms` or later.
fn sleep_until(time_ms: u64) {
    while fraudflow::clock::now_millis() < time_ms {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A live run over HTTP on two workers: the scores of a first batch set
/// the threshold that routes a second batch, sent after the change's
/// interval.
#[test]
fn a_live_run_routes_later_events_at_the_threshold_earlier_scores_set() {
    use crate::live::{
        dataflow_file, lines, post_events, sigterm, start, wait_ready, wait_written,
    };
    let dir = tempfile::tempdir().unwrap();
    let (models, out, port) = crate::live::two_process_setup(dir.path());
    let file = dataflow_file(dir.path(), port, &models, &out);
    let mut text = std::fs::read_to_string(&file).unwrap();
    // The interval must exceed the file's 5 s lateness.
    text.push_str("[adaptive_threshold]\nwindow_seconds = 6\nevery_seconds = 6\nmin_samples = 50\nbudget = 0.05\n");
    std::fs::write(&file, text).unwrap();
    // A budget of 5 %: some twenty alerts in each batch.
    let budget: f64 = 0.05;
    let base = format!("http://127.0.0.1:{port}");
    let mut run = start(&file, &["-w", "2"]);
    wait_ready(&base);
    let first = fraudflow::clock::now_millis();
    post_events(&format!("{base}/events"), 400, 1, first);
    wait_written(&base, 400);
    // The first tick after the batch finds the change; it applies one
    // interval later, and the second batch is stamped after that.
    let tick = (first / 6_000 + 1) * 6_000;
    sleep_until(tick + 6_000 + 50);
    post_events(
        &format!("{base}/events"),
        400,
        2,
        fraudflow::clock::now_millis(),
    );
    wait_written(&base, 800);
    let (status, stderr) = sigterm(&mut run);
    assert!(status.success(), "{stderr}");

    let scored: Vec<Value> = [lines(&out, "alerts"), lines(&out, "normal")].concat();
    let mut batch: Vec<f64> = scored
        .iter()
        .filter(|e| e["event_id"].as_str().unwrap().starts_with("s1-"))
        .map(|e| e["score"].as_f64().unwrap())
        .collect();
    assert_eq!(batch.len(), 400);
    batch.sort_by(|a, b| b.total_cmp(a));
    let expected = batch[(400.0 * budget).ceil() as usize - 1];
    let second: Vec<&Value> = scored
        .iter()
        .filter(|e| e["event_id"].as_str().unwrap().starts_with("s2-"))
        .collect();
    // The first batch came before any change: the bundle's threshold.
    let bundle = json(&models.join("bundle.json"))["policy"]["threshold"]
        .as_f64()
        .unwrap();
    let early = scored
        .iter()
        .filter(|e| e["event_id"].as_str().unwrap().starts_with("s1-"));
    for a in early.filter(|e| e.get("threshold").is_some()) {
        assert_eq!(a["threshold"].as_f64().unwrap(), bundle, "{a}");
    }
    let alerts: Vec<&Value> = second
        .iter()
        .filter(|e| e.get("threshold").is_some())
        .copied()
        .collect();
    let top: Vec<f64> = second
        .iter()
        .map(|e| e["score"].as_f64().unwrap())
        .filter(|s| *s > 0.001)
        .collect();
    assert!(
        !alerts.is_empty(),
        "the second batch raised no alert: expected {expected}, batch 1 top {:?}, batch 2 {top:?}",
        &batch[..5]
    );
    for a in &alerts {
        assert_eq!(a["threshold"].as_f64().unwrap(), expected, "{a}");
    }
    let over = second
        .iter()
        .filter(|e| e["score"].as_f64().unwrap() >= expected)
        .count();
    assert_eq!(alerts.len(), over);
}

/// Regression: with a loop (the adaptive threshold, the feedback loop), an
/// input whose first line is more than the lateness ahead of the lines
/// after it hung for ever. The first line is only a candidate for the
/// frontier, so the next lines are placed at their own times, far behind
/// it, and their epoch (logical time) was one that what comes back round
/// the loop could never pass. The same events in order give the same
/// figures.
#[test]
fn a_loop_run_whose_first_line_runs_ahead_of_the_next_ends_with_the_in_order_figures() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 4);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    // The first row of step 2 moved to the top: two hours ahead of the
    // rows of step 0 that follow it.
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let ahead = (1..lines.len())
        .find(|&i| lines[i].starts_with("2,"))
        .unwrap();
    let row = lines.remove(ahead);
    lines.insert(1, row);
    let moved = dir.path().join("moved.csv");
    std::fs::write(&moved, lines.join("\n") + "\n").unwrap();
    for flags in [&["--adaptive-threshold"][..], &["--feedback"][..]] {
        let figures = |input: &Path, name: &str| {
            let out = dir.path().join(name);
            let run = finish(spawn(&backtest(input, &models, &out, flags), None), name);
            let err = String::from_utf8_lossy(&run.stderr);
            assert!(run.status.success(), "{name} {flags:?}: {err}");
            let report = json(&out.join("report.json"));
            assert_eq!(report["scored"], 20_000, "{name} {flags:?}");
            ["alerts", "quality_all", "per_day", "thresholds", "learning"]
                .map(|k| report[k].clone())
        };
        let in_order = figures(&input, "in-order");
        assert_eq!(figures(&moved, "moved"), in_order, "{flags:?}");
    }
}
