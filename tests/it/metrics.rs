//! `backtest --metrics`: the metrics a run keeps agree with its report,
//! its alerts and its dead letters, recounted from those files.

use std::collections::BTreeMap;
use std::io::Write;

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

#[test]
fn a_backtest_s_metrics_agree_with_its_report_alerts_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let clean = generated(dir.path(), 20_000, 31);
    let models = dir.path().join("models");
    train(&clean, &models, &[]);
    // Rows no parser takes, of two kinds, among the good ones.
    let input = dir.path().join("input.csv");
    let mut text = std::fs::read_to_string(&clean).unwrap();
    text.push_str("1,CASH_OUT,abc,C1,1,0,M2,0,0,0,0\n1,PAYMENT\n1,PAYMENT,1,C1\n");
    std::fs::File::create(&input)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
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
    let mut codes: BTreeMap<String, f64> = BTreeMap::new();
    for line in std::fs::read_to_string(out.join("dead_letters.jsonl"))
        .unwrap()
        .lines()
    {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        *codes
            .entry(d["code"].as_str().unwrap().to_string())
            .or_default() += 1.0;
    }
    let mut counted = by_label(&m, "fraudflow_dead_letters_total", "code");
    counted.retain(|_, v| *v > 0.0);
    assert_eq!(counted, codes);
    let mut reasons: BTreeMap<String, f64> = BTreeMap::new();
    for line in std::fs::read_to_string(out.join("alerts.jsonl"))
        .unwrap()
        .lines()
    {
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        let first = a["reasons"][0]["feature"].as_str().unwrap_or("none");
        *reasons.entry(first.to_string()).or_default() += 1.0;
    }
    let mut counted = by_label(&m, "fraudflow_alerts_total", "reason");
    counted.retain(|_, v| *v > 0.0);
    assert_eq!(counted, reasons);
    // Every scored event's latency was observed at each stage.
    let counts = by_label(&m, "fraudflow_latency_seconds_count", "stage");
    for stage in ["parse", "features", "route"] {
        assert_eq!(counts[stage], figure("scored"), "{stage}");
    }
}
