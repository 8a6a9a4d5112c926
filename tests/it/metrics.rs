//! `backtest --metrics`: the metrics a run keeps agree with its report,
//! its alerts and its dead letters, recounted from those files; and what
//! the Kafka tests use to check a live run's metrics balance.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::{backtest, generated, json, run_ok, s, train};

/// Each series of `family` in the text format, by its labels, summed over
/// the `worker` label.
fn by_label(text: &str, family: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let key = series
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_string();
        *out.entry(key).or_default() += value.parse::<f64>().unwrap();
    }
    out
}

fn total(text: &str, family: &str) -> f64 {
    by_label(text, family, "worker").values().sum()
}

/// A live run's `/metrics`, as text.
fn scrape(listen: &str) -> String {
    let mut reply = ureq::get(&format!("http://{listen}/metrics"))
        .call()
        .unwrap();
    reply.body_mut().read_to_string().unwrap()
}

/// Waits until the run's metrics balance, events read against events
/// routed and dead letters (summed over workers): the events read again to
/// rebuild state are in neither.
pub(crate) fn balance(listen: &str) {
    let total = |text: &str, family: &str| -> u64 {
        let series = text
            .lines()
            .filter(|l| l.starts_with(&format!("{family}{{")));
        series
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(listen);
        let read = total(&text, "stream_events_in_total");
        let out = ["anomaly", "normal", "dlq"]
            .map(|k| total(&text, &format!("stream_events_{k}_total")))
            .iter()
            .sum::<u64>();
        if read > 0 && read == out {
            return;
        }
        assert!(Instant::now() < deadline, "{read} read, {out} out:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `n` labels have reached a live run's feedback join
/// (`online_feedback_received_total`, which every worker's join adds to).
pub(crate) fn labels_received(listen: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received: f64 = scrape(listen)
            .lines()
            .filter(|l| l.starts_with("online_feedback_received_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if received >= n as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{received} labels of {n} received"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 20,000 generated rows and three no parser takes, and a bundle trained
/// on the rows.
fn input_and_models(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let clean = generated(dir, 20_000, 31);
    let models = dir.join("models");
    train(&clean, &models, &[]);
    // Rows no parser takes, of two kinds, among the good ones.
    let input = dir.join("input.csv");
    let mut text = std::fs::read_to_string(&clean).unwrap();
    text.push_str("1,CASH_OUT,abc,C1,1,0,M2,0,0,0,0\n1,PAYMENT\n1,PAYMENT,1,C1\n");
    std::fs::File::create(&input)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    (input, models)
}

/// The lines of a JSON-lines file counted by the string at `pointer`
/// (`none` where it has none).
fn recount(path: &std::path::Path, pointer: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v
            .pointer(pointer)
            .and_then(|k| k.as_str())
            .unwrap_or("none");
        *out.entry(key.to_string()).or_default() += 1.0;
    }
    out
}

#[test]
fn a_backtest_s_metrics_agree_with_its_report_alerts_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = input_and_models(dir.path());
    let out = dir.path().join("out");
    let metrics_file = dir.path().join("metrics.prom");
    let mut args = backtest(&input, &models, &out, &["-w", "2", "--metrics"]);
    args.push(s(&metrics_file));
    run_ok(&args);
    let m = std::fs::read_to_string(&metrics_file).unwrap();
    let report = json(&out.join("report.json"));
    let figure = |k: &str| report[k].as_f64().unwrap();
    assert_eq!(total(&m, "stream_events_in_total"), figure("events_in"));
    assert_eq!(total(&m, "stream_events_valid_total"), figure("scored"));
    assert_eq!(total(&m, "stream_events_anomaly_total"), figure("alerts"));
    assert_eq!(total(&m, "stream_events_normal_total"), figure("normal"));
    assert_eq!(total(&m, "stream_events_dlq_total"), figure("dead_letters"));
    assert_eq!(figure("dead_letters"), 3.0);
    // Both workers scored: the series are per worker.
    let routed = by_label(&m, "stream_events_normal_total", "worker");
    assert_eq!(routed.keys().collect::<Vec<_>>(), ["0", "1"]);

    // Dead letters by code, and alerts by their first reason, recounted.
    let mut counted = by_label(&m, "fraudflow_dead_letters_total", "code");
    counted.retain(|_, v| *v > 0.0);
    assert_eq!(counted, recount(&out.join("dead_letters.jsonl"), "/code"));
    let mut counted = by_label(&m, "fraudflow_alerts_total", "reason");
    counted.retain(|_, v| *v > 0.0);
    assert_eq!(
        counted,
        recount(&out.join("alerts.jsonl"), "/reasons/0/feature")
    );
    // Every scored event's latency was observed at each stage.
    let counts = by_label(&m, "fraudflow_latency_seconds_count", "stage");
    for stage in ["parse", "features", "route"] {
        assert_eq!(counts[stage], figure("scored"), "{stage}");
    }
}

#[test]
fn each_process_of_a_backtest_writes_its_own_workers_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = input_and_models(dir.path());
    let out = dir.path().join("out");
    let file = dir.path().join("metrics.prom");
    let mut args = backtest(&input, &models, &out, &["--metrics"]);
    args.retain(|a| *a != "--quiet");
    args.push(s(&file));
    crate::common::run_two_processes(dir.path(), &args, "1");
    let report = json(&out.join("report.json"));
    let texts = [file.clone(), dir.path().join("metrics.prom.p1")]
        .map(|f| std::fs::read_to_string(f).unwrap());
    // Process P exposes its own worker, P; together, every event read.
    for (p, text) in texts.iter().enumerate() {
        let workers = by_label(text, "stream_events_in_total", "worker");
        assert_eq!(workers.keys().collect::<Vec<_>>(), [&p.to_string()]);
    }
    // (report.json's `events_in` is process 0's own count: its scored
    // events and dead letters are the whole run's.)
    let read: f64 = texts
        .iter()
        .map(|t| total(t, "stream_events_in_total"))
        .sum();
    let whole = ["scored", "dead_letters"].map(|k| report[k].as_f64().unwrap());
    assert_eq!(read, whole[0] + whole[1]);
}
