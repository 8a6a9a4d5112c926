//! The original system's readiness gates, judged against a live run after
//! a session has played through it: traffic in, alerts out, labels back,
//! the online model updated and promoted, within the latency objective,
//! with the model's quality figures and every metric the dashboard reads.
//!
//! Each gate is judged from what an operator can see (the run's HTTP API,
//! its output files, the bundle on disk), never from inside the dataflow,
//! so a gate that passes here passes for the run as deployed.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use super::Seen;
use crate::bundle::Bundle;

/// The dashboard whose metrics must all be served.
pub const DASHBOARD: &str = include_str!("../../infra/grafana/dashboards/fraudflow.json");
/// The alert schema whose required fields every alert line must carry.
const ALERT_SCHEMA: &str = include_str!("../../schemas/alert_v1.json");

/// Families only a Kafka run has.
const KAFKA_ONLY: [&str; 3] = [
    "fraudflow_kafka_consumer_lag",
    "fraudflow_kafka_up",
    "fraudflow_feedback_outbox_labels",
];

/// The gates in the order they are judged, as named in the report.
pub const GATES: [&str; 6] = [
    "anomaly_path",
    "feedback_path",
    "online_update",
    "latency_slo",
    "quality_fields",
    "metrics_exposed",
];

/// One gate's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub name: &'static str,
    pub passed: bool,
    /// What was seen, in a sentence, with the figures judged.
    pub detail: String,
}

/// Every gate's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The gates that failed, by name.
    pub failed: Vec<&'static str>,
    pub gates: Vec<Gate>,
}

/// What the gates are judged against.
#[derive(Clone, Debug)]
pub struct Objectives {
    /// Receipt to written, p99, at most this many milliseconds.
    pub latency_p99_ms: f64,
}

/// Judges every gate.
pub fn judge(
    seen: &Seen,
    outputs: &Path,
    bundle: &Bundle,
    objectives: &Objectives,
    kafka: bool,
) -> Readiness {
    let gates = vec![
        anomaly_path(seen, outputs),
        feedback_path(seen),
        online_update(seen),
        latency_slo(seen, objectives),
        quality_fields(bundle),
        metrics_exposed(&seen.metrics, kafka),
    ];
    let failed: Vec<&'static str> = gates.iter().filter(|g| !g.passed).map(|g| g.name).collect();
    Readiness {
        ready: failed.is_empty(),
        failed,
        gates,
    }
}

fn gate(name: &'static str, passed: bool, detail: String) -> Gate {
    Gate {
        name,
        passed,
        detail,
    }
}

/// Alerts were routed, and every alert line written carries the alert
/// schema's required fields.
fn anomaly_path(seen: &Seen, outputs: &Path) -> Gate {
    let alerts = seen.statuses.last().map_or(0, |s| s.alerts);
    let (lines, bad) = match alert_lines(outputs) {
        Ok(found) => found,
        Err(e) => return gate("anomaly_path", false, format!("reading the alerts: {e}")),
    };
    let passed = alerts > 0 && lines > 0 && bad.is_none();
    let detail = match bad {
        Some(problem) => problem,
        None => {
            format!("{alerts} alerts routed; {lines} alert lines, each with the schema's fields")
        }
    };
    gate("anomaly_path", passed, detail)
}

/// Alert lines in `dir`, and the first one that lacks a required field.
fn alert_lines(dir: &Path) -> Result<(u64, Option<String>), super::DemoError> {
    let schema: serde_json::Value = serde_json::from_str(ALERT_SCHEMA)
        .map_err(|e| super::DemoError::Setting(format!("schemas/alert_v1.json: {e}")))?;
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    let mut tail = super::analysts::Tail::new(dir, "alerts-");
    let lines = tail.values()?;

    for (i, line) in lines.iter().enumerate() {
        if let Some(field) = required.iter().find(|f| line.get(**f).is_none()) {
            let problem = format!("alert line {} has no {field}", i + 1);
            return Ok((lines.len() as u64, Some(problem)));
        }
    }
    Ok((lines.len() as u64, None))
}

/// Labels were sent and taken, and met their transactions' features.
fn feedback_path(seen: &Seen) -> Gate {
    use std::sync::atomic::Ordering::Relaxed;
    let l = &seen.labelled;
    let taken = l.fraud.load(Relaxed) + l.legit.load(Relaxed) + l.chargebacks.load(Relaxed);
    let refused = l.refused.load(Relaxed);
    let matched = seen.statuses.last().map_or(0, |s| s.matched);
    gate(
        "feedback_path",
        taken > 0 && refused == 0 && matched > 0,
        format!(
            "{taken} labels taken, {refused} refused; {matched} met their transaction's features"
        ),
    )
}

/// The learner promoted an update, and the version scoring changed.
fn online_update(seen: &Seen) -> Gate {
    let (Some(first), Some(last)) = (seen.statuses.first(), seen.statuses.last()) else {
        return gate("online_update", false, "the run was never read".into());
    };
    let changed = first.model_version != last.model_version;
    gate(
        "online_update",
        last.promoted > 0 && changed,
        format!(
            "{} updates promoted, {} rolled back; version {} at the start, {} at the end",
            last.promoted, last.rolled_back, first.model_version, last.model_version
        ),
    )
}

/// Receipt to written, p99, within the objective.
fn latency_slo(seen: &Seen, objectives: &Objectives) -> Gate {
    let limit = objectives.latency_p99_ms;
    match seen.statuses.last().and_then(|s| s.latency_us) {
        Some(l) => {
            let p99 = l.p99 as f64 / 1e3;
            gate(
                "latency_slo",
                p99 <= limit,
                format!(
                    "p99 {p99:.2} ms (p50 {:.2} ms) against {limit} ms",
                    l.p50 as f64 / 1e3
                ),
            )
        }
        None => gate("latency_slo", false, "the run reported no latency".into()),
    }
}

/// The bundle's test-split figures for every model: PR-AUC, ROC-AUC, and
/// precision and recall at the threshold and at the budget, all finite.
fn quality_fields(bundle: &Bundle) -> Gate {
    let mut missing = Vec::new();
    for model in ["isolation_forest", "autoencoder", "logistic", "ensemble"] {
        let Some(m) = bundle.metrics.get(model) else {
            missing.push(format!("{model}: no metrics"));
            continue;
        };
        let value = serde_json::to_value(m).unwrap_or_default();
        for field in ["pr_auc", "roc_auc", "at_threshold", "at_budget"] {
            if value.get(field).is_none_or(serde_json::Value::is_null) {
                missing.push(format!("{model}.{field}"));
            }
        }
    }
    let passed = missing.is_empty();
    let detail = match passed {
        true => format!(
            "bundle {}: every model's quality figures present",
            bundle.version
        ),
        false => format!("bundle {}: missing {}", bundle.version, missing.join(", ")),
    };
    gate("quality_fields", passed, detail)
}

/// Every metric the dashboard reads is served, with at least one series
/// (a Kafka run's own families are not asked of an HTTP run).
fn metrics_exposed(metrics: &str, kafka: bool) -> Gate {
    let served = super::watch::totals(metrics);
    let wanted: BTreeSet<String> = dashboard_metrics()
        .into_iter()
        .filter(|m| kafka || !KAFKA_ONLY.contains(&m.as_str()))
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|m| !served.contains_key(m.as_str()) && !histogram_served(&served, m))
        .collect();
    gate(
        "metrics_exposed",
        !wanted.is_empty() && missing.is_empty(),
        match missing.is_empty() {
            true => format!(
                "all {} metrics the dashboard reads are served",
                wanted.len()
            ),
            false => format!("not served: {}", join(&missing)),
        },
    )
}

fn histogram_served(served: &std::collections::HashMap<String, f64>, name: &str) -> bool {
    served.contains_key(&format!("{name}_count"))
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The metric families the dashboard's queries read (a histogram's series
/// by its family's name; recording rules, with a colon, left out).
pub fn dashboard_metrics() -> BTreeSet<String> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap_or_default();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    exprs
        .iter()
        .flat_map(|e| names_in(e))
        .filter(|name| !name.contains(':'))
        .collect()
}

/// The metric names a PromQL expression reads: the words with one of our
/// families' prefixes (recording rules' names included), a histogram's
/// series named by its family.
pub fn names_in(expr: &str) -> BTreeSet<String> {
    let prefixes = [
        "stream_",
        "feedback_",
        "online_",
        "promotion_",
        "fraudflow_",
    ];
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| prefixes.iter().any(|p| w.starts_with(p)))
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("expr", Some(e)) => out.push(e.to_string()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::demo::watch::Status;
    use crate::eval::Latency;

    fn seen(first: &str, last: Status) -> Seen {
        let start = Status {
            model_version: first.into(),
            ..Status::default()
        };
        Seen {
            statuses: vec![start, last],
            ..Seen::default()
        }
    }

    fn latency(p99_us: u64) -> Option<Latency> {
        Some(Latency {
            p50: p99_us / 2,
            p95: p99_us,
            p99: p99_us,
            max: p99_us,
        })
    }

    #[test]
    fn an_update_counts_only_when_promoted_and_in_force() {
        let promoted = |n: u64, version: &str| Status {
            promoted: n,
            model_version: version.into(),
            ..Status::default()
        };
        assert!(online_update(&seen("v1", promoted(1, "v1+online.1"))).passed);
        assert!(!online_update(&seen("v1", promoted(0, "v1+online.1"))).passed);
        assert!(!online_update(&seen("v1", promoted(2, "v1"))).passed);
    }

    #[test]
    fn the_latency_gate_holds_p99_to_the_objective_inclusive() {
        let at = |p99_us: u64| Status {
            latency_us: latency(p99_us),
            ..Status::default()
        };
        let slo = Objectives {
            latency_p99_ms: 5.0,
        };
        assert!(latency_slo(&seen("v", at(5_000)), &slo).passed);
        assert!(!latency_slo(&seen("v", at(5_001)), &slo).passed);
        assert!(!latency_slo(&seen("v", Status::default()), &slo).passed);
    }

    #[test]
    fn the_feedback_gate_needs_labels_taken_none_refused_and_some_matched() {
        let s = seen(
            "v",
            Status {
                matched: 3,
                ..Status::default()
            },
        );
        assert!(!feedback_path(&s).passed, "no label sent");
        s.labelled.fraud.store(2, Ordering::Relaxed);
        s.labelled.legit.store(1, Ordering::Relaxed);
        assert!(feedback_path(&s).passed);
        s.labelled.refused.store(1, Ordering::Relaxed);
        assert!(!feedback_path(&s).passed, "a refused label");
        let unmatched = seen("v", Status::default());
        unmatched.labelled.fraud.store(2, Ordering::Relaxed);
        assert!(!feedback_path(&unmatched).passed, "no label matched");
    }

    #[test]
    fn every_dashboard_metric_must_be_served_and_a_missing_one_is_named() {
        let wanted = dashboard_metrics();
        assert!(wanted.contains("stream_events_in_total"), "{wanted:?}");
        assert!(wanted.contains("fraudflow_latency_seconds"), "{wanted:?}");
        assert!(wanted.iter().all(|m| !m.contains(':')));
        let text = |skip: &str| -> String {
            wanted
                .iter()
                .filter(|m| m.as_str() != skip)
                .map(|m| match m.ends_with("_seconds") {
                    true => format!("{m}_count{{stage=\"route\"}} 1\n"),
                    false => format!("{m}{{worker=\"0\"}} 0\n"),
                })
                .collect()
        };
        assert!(metrics_exposed(&text(""), true).passed);
        let gate = metrics_exposed(&text("online_updates_total"), true);
        assert!(!gate.passed);
        assert!(
            gate.detail.contains("online_updates_total"),
            "{}",
            gate.detail
        );
        // An HTTP run is not asked for a Kafka run's families.
        let http = metrics_exposed(&text("fraudflow_kafka_up"), false);
        assert!(http.passed, "{}", http.detail);
        assert!(!metrics_exposed(&text("fraudflow_kafka_up"), true).passed);
    }

    #[test]
    fn alert_lines_must_carry_every_required_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let schema: serde_json::Value = serde_json::from_str(ALERT_SCHEMA).expect("schema");
        let mut line = serde_json::Map::new();
        for field in schema["required"].as_array().expect("required") {
            line.insert(field.as_str().expect("name").into(), 1.into());
        }
        let whole = serde_json::Value::Object(line.clone()).to_string();
        line.remove("model_version");
        let short = serde_json::Value::Object(line).to_string();
        let path = dir.path().join("alerts-0-000001.jsonl");
        std::fs::write(&path, format!("{whole}\n")).expect("write");
        let s = seen(
            "v",
            Status {
                alerts: 1,
                ..Status::default()
            },
        );
        assert!(anomaly_path(&s, dir.path()).passed);
        std::fs::write(&path, format!("{whole}\n{short}\n")).expect("write");
        let gate = anomaly_path(&s, dir.path());
        assert!(
            !gate.passed && gate.detail.contains("line 2 has no model_version"),
            "{}",
            gate.detail
        );
    }
}
