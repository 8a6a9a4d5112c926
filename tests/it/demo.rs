//! `fraudflow demo` and `fraudflow readiness`: a whole live session on this
//! machine, started by the command itself, with nothing lost, the report
//! written, and the gates judged (and failed on purpose).

use std::path::Path;

use serde_json::Value;

use crate::common::{fraudflow, s, stdout_json};

/// Lines of every file of one prefix in the run's output directory.
fn lines(dir: &Path, prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the run's outputs") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.starts_with(prefix) && name.ends_with(".jsonl") {
            let text = std::fs::read_to_string(&path).expect("an output file");
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("JSON")),
            );
        }
    }
    out
}

/// `fraudflow demo` for 6 s at 1,000 payments a second, into `out`, with
/// `extra` flags; its stdout and stderr, once it succeeded.
fn demo(out: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "demo",
        "--seconds",
        "6",
        "--rate",
        "1000",
        "--train-rows",
        "50000",
        "--listen",
        "127.0.0.1:0",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let run = fraudflow(&args);
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "demo failed:\n{stderr}");
    (String::from_utf8_lossy(&run.stdout).to_string(), stderr)
}

/// Every payment of a 6,000-event session came out once: 6 malformed as
/// dead letters, the rest alerts or normal traffic; the last scrape
/// counted them all. The alerts.
fn every_event_once(out: &Path, stdout: &str) -> Vec<Value> {
    assert!(
        stdout.contains("demo: 6,000 events in")
            && stdout.contains("(5,994 valid + 6 dead letters)"),
        "{stdout}"
    );
    let live = out.join("live");
    let (alerts, normal) = (lines(&live, "alerts-"), lines(&live, "normal-"));
    let dead = lines(&live, "dead_letters-");
    assert_eq!(
        alerts.len() + normal.len(),
        5_994,
        "every valid event routed once"
    );
    assert_eq!(dead.len(), 6, "{dead:?}");
    let mut ids: Vec<&str> = alerts
        .iter()
        .chain(&normal)
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5_994, "no event routed twice");
    let metrics = std::fs::read_to_string(out.join("metrics.txt")).unwrap();
    let routed: f64 = fraudflow::demo::watch::totals(&metrics)["stream_events_in_total"];
    assert_eq!(routed, 6_000.0, "the last scrape counts every event in");
    alerts
}

#[test]
fn the_demo_plays_a_session_loses_nothing_and_says_where_everything_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let (stdout, stderr) = demo(&out, &[]);
    every_event_once(&out, &stdout);
    for (file, what) in [
        ("report.html", "the report"),
        ("metrics.txt", "the last GET /metrics"),
        ("models/bundle.json", "the bundle"),
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
        assert!(stderr.contains(what), "{stderr}");
    }
}

#[test]
fn the_demo_through_kafka_loses_nothing_and_its_labels_reach_the_learner() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = crate::kafka_tansu::Tansu::start("memory://tansu/", dir.path());
    let out = dir.path().join("demo");
    let (stdout, stderr) = demo(&out, &["--brokers", &tansu.brokers]);
    assert!(stderr.contains("through Kafka at"), "{stderr}");
    let alerts = every_event_once(&out, &stdout);
    assert!(!alerts.is_empty(), "{stdout}");
    // The analysts labelled alerts through POST /feedback, which a Kafka
    // run publishes on the feedback topic and reads back into the
    // learner: labels were received and matched their transactions.
    let counts: Vec<u64> = stdout
        .split("labels: ")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .unwrap_or_default()
        .split(", ")
        .map(|c| {
            c.split(' ')
                .next()
                .unwrap_or("")
                .replace(',', "")
                .parse()
                .unwrap_or(0)
        })
        .collect();
    // "labels: N received, M matched".
    assert!(
        counts.len() == 2 && counts.iter().all(|&n| n > 0),
        "{stdout}"
    );
    assert!(out.join("report.html").is_file());
}

fn readiness(out: &Path, extra: &[&str]) -> (std::process::Output, Value) {
    let mut args = vec!["readiness", "--seconds", "8", "--out", s(out)];
    args.extend_from_slice(extra);
    let run = fraudflow(&args);
    let report = stdout_json(&run);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("readiness.json")).unwrap())
            .unwrap();
    assert_eq!(report, written, "the report printed is the one written");
    (run, report)
}

#[test]
fn readiness_passes_on_a_fresh_run_and_fails_naming_the_gate_broken() {
    let dir = tempfile::tempdir().unwrap();
    let (run, report) = readiness(&dir.path().join("ok"), &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["ready"], true);
    let names: Vec<&str> = report["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, fraudflow::demo::readiness::GATES);

    // No run answers within a microsecond: the latency gate fails, alone.
    let models = dir.path().join("ok").join("models");
    let (run, report) = readiness(
        &dir.path().join("slow"),
        &["--models", s(&models), "--latency-slo-ms", "0.001"],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{report:#}\n{stderr}");
    assert_eq!(report["ready"], false);
    assert_eq!(
        report["failed"],
        serde_json::json!(["latency_slo"]),
        "{report:#}"
    );
    assert!(stderr.contains("not ready: failed latency_slo"), "{stderr}");
}
