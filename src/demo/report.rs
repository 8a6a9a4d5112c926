//! The demo's HTML report ([`crate::eval::html`]), made of what the run
//! wrote (every alert and normal line, with its scores) scored against the
//! truth of the payments sent, and of what the session read while it
//! played (throughput, latencies, model versions, labels).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{DemoError, Seen};
use crate::ensemble::Components;
use crate::eval::html::{HtmlReport, Period, Periods, ScoreFigures, ScoredEvent};

/// Seconds of event time a period of the report spans.
const PERIOD_SECONDS: i64 = 10;

/// One alert or normal line, as far as the report reads it.
#[derive(Deserialize)]
struct Line {
    event_id: String,
    event_time: String,
    score: f64,
    scores: Components,
    #[serde(default)]
    reasons: Vec<ReasonName>,
    threshold: Option<f64>,
}

#[derive(Deserialize)]
struct ReasonName {
    feature: String,
}

/// Writes the report of a session whose run wrote into `live`, scoring
/// with the bundle in `models`.
pub fn write(path: &Path, seen: &Seen, live: &Path, models: &Path) -> Result<(), DemoError> {
    let report = gather(seen, live, models)?;
    let page = crate::eval::html::render(&report)
        .map_err(|e| DemoError::Setting(format!("the report: {e}")))?;
    std::fs::write(path, page).map_err(|e| DemoError::io(path, e))
}

/// The report's figures.
pub fn gather(seen: &Seen, live: &Path, models: &Path) -> Result<HtmlReport, DemoError> {
    let bundle = crate::bundle::Bundle::load(models, None)
        .map_err(|e| DemoError::Setting(format!("the report's bundle: {e}")))?;
    let mut threshold = None;
    let mut events: Vec<Scored> = Vec::new();
    let mut reasons: HashMap<String, u64> = HashMap::new();
    for (prefix, alert) in [("alerts-", true), ("normal-", false)] {
        for line in read_lines(live, prefix)? {
            if alert {
                threshold = threshold.or(line.threshold);
                if let Some(r) = line.reasons.first() {
                    *reasons.entry(r.feature.clone()).or_default() += 1;
                }
            }
            let Some((fraud, _)) = seen.truth.of(&line.event_id) else {
                continue;
            };
            let at = crate::clock::parse_millis(&line.event_time).unwrap_or_default();
            events.push((at, alert, scored(fraud, &line), line.threshold));
        }
    }
    let threshold = threshold.unwrap_or(bundle.policy.threshold);
    let scored: Vec<ScoredEvent> = events.iter().map(|e| e.2).collect();
    let scores = ScoreFigures::of(&scored)
        .map_err(|e| DemoError::Setting(format!("the report's scores: {e}")))?;
    Ok(HtmlReport {
        title: "fraudflow demo".into(),
        facts: facts(seen, &bundle.version, &events),
        threshold,
        periods: periods(&mut events),
        scores,
        latency: seen.latency_us.iter().copied().collect(),
        throughput: throughput(&seen.statuses),
        reasons: reasons.into_iter().collect(),
    })
}

/// The key figures at the top of the page.
fn facts(seen: &Seen, bundle: &str, events: &[Scored]) -> Vec<(String, String)> {
    let first = seen.statuses.first().cloned().unwrap_or_default();
    let last = seen.statuses.last().cloned().unwrap_or_default();
    let fraud = events.iter().filter(|e| e.2.fraud).count();
    let caught = events.iter().filter(|e| e.2.fraud && e.1).count();
    let alerts = events.iter().filter(|e| e.1).count();
    let share = |n: usize, d: usize| match d {
        0 => "-".to_string(),
        d => format!("{:.1} %", 100.0 * n as f64 / d as f64),
    };
    let g = |n: u64| crate::progress::grouped(n);
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1e3);
    let mut facts = vec![
        ("Played".to_string(), format!("{:.0} s", seen.seconds)),
        ("Events in".into(), g(last.events_in)),
        ("Alerts".into(), g(last.alerts)),
        ("Dead letters".into(), g(last.dead_letters)),
        (
            "Fraud caught".into(),
            format!(
                "{} of {} ({})",
                g(caught as u64),
                g(fraud as u64),
                share(caught, fraud)
            ),
        ),
        ("Precision at the threshold".into(), share(caught, alerts)),
        (
            "Labels received / matched".into(),
            format!("{} / {}", g(last.labels), g(last.matched)),
        ),
        ("Model at the start".into(), first.model_version.clone()),
        ("Model at the end".into(), last.model_version.clone()),
        (
            "Updates promoted / rolled back".into(),
            format!("{} / {}", last.promoted, last.rolled_back),
        ),
        ("Bundle".into(), bundle.to_string()),
    ];
    if let Some(l) = &last.latency_us {
        let spread = format!("p50 {}, p99 {}, max {}", ms(l.p50), ms(l.p99), ms(l.max));
        facts.push(("Latency, receipt to written".into(), spread));
    }
    facts
}

fn scored(fraud: bool, line: &Line) -> ScoredEvent {
    ScoredEvent {
        fraud,
        ensemble: line.score,
        forest: line.scores.isolation_forest,
        autoencoder: line.scores.autoencoder,
        logistic: line.scores.logistic,
    }
}

/// An event as the report reads it: its time (ms), whether it alerted, its
/// scores, and the threshold that routed it.
type Scored = (i64, bool, ScoredEvent, Option<f64>);

/// Events, alerts, fraud and fraud caught per ten seconds of event time,
/// and the lowest and highest threshold that routed them.
fn periods(events: &mut [Scored]) -> Periods {
    events.sort_by_key(|e| e.0);
    let first = events.first().map_or(0, |e| e.0);
    let mut rows: Vec<Period> = Vec::new();
    for (at, alert, s, threshold) in events.iter() {
        let k = ((at - first) / 1_000 / PERIOD_SECONDS) as usize;
        while rows.len() <= k {
            let start = rows.len() as i64 * PERIOD_SECONDS;
            rows.push(Period {
                label: format!("{start} s"),
                ..Period::default()
            });
        }
        let p = &mut rows[k];
        p.events += 1;
        p.alerts += u64::from(*alert);
        p.fraud += u64::from(s.fraud);
        p.fraud_caught += u64::from(s.fraud && *alert);
        if let Some(t) = *threshold {
            let (low, high) = p.threshold.unwrap_or((t, t));
            p.threshold = Some((low.min(t), high.max(t)));
        }
    }
    Periods {
        unit: format!("{PERIOD_SECONDS} s"),
        rows,
    }
}

/// Events a second between consecutive reads of the run.
fn throughput(statuses: &[super::watch::Status]) -> Vec<(f64, f64)> {
    statuses
        .windows(2)
        .filter(|w| w[1].at > w[0].at)
        .map(|w| {
            let events = w[1].events_in.saturating_sub(w[0].events_in) as f64;
            (w[1].at, events / (w[1].at - w[0].at))
        })
        .collect()
}

/// Every line of the files of one prefix in `dir`, in file order.
fn read_lines(dir: &Path, prefix: &str) -> Result<Vec<Line>, DemoError> {
    let files = super::analysts::files(dir, prefix)?;
    let mut lines = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| DemoError::io(&path, e))?;
        for (i, l) in text.lines().enumerate() {
            let line = serde_json::from_str(l).map_err(|e| {
                DemoError::Setting(format!("{} line {}: {e}", path.display(), i + 1))
            })?;
            lines.push(line);
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::watch::Status;

    fn event(at: i64, alert: bool, fraud: bool) -> Scored {
        let s = ScoredEvent {
            fraud,
            ..ScoredEvent::default()
        };
        (at, alert, s, Some(0.25 + at as f64 / 1e5))
    }

    #[test]
    fn periods_count_events_alerts_and_caught_fraud_per_ten_seconds() {
        let mut events = vec![
            event(25_000, true, true),
            event(1_000, false, false),
            event(9_999, true, false),
            event(11_000, false, true),
        ];
        let p = periods(&mut events);
        let counts: Vec<_> = p
            .rows
            .iter()
            .map(|r| {
                (
                    r.label.as_str(),
                    r.events,
                    r.alerts,
                    r.fraud,
                    r.fraud_caught,
                )
            })
            .collect();
        // Times are from the first event (1 s): 0, 8.999, 10 and 24 s.
        assert_eq!(
            counts,
            vec![
                ("0 s", 2, 1, 0, 0),
                ("10 s", 1, 0, 1, 0),
                ("20 s", 1, 1, 1, 1)
            ]
        );
        let t = |at: i64| 0.25 + at as f64 / 1e5;
        let thresholds: Vec<_> = p.rows.iter().map(|r| r.threshold).collect();
        assert_eq!(
            thresholds,
            [
                Some((t(1_000), t(9_999))),
                Some((t(11_000), t(11_000))),
                Some((t(25_000), t(25_000)))
            ]
        );
    }

    #[test]
    fn throughput_is_events_over_seconds_between_reads() {
        let s = |at: f64, events_in: u64| Status {
            at,
            events_in,
            ..Status::default()
        };
        let t = throughput(&[s(0.0, 0), s(2.0, 3_000), s(2.0, 3_000), s(3.0, 3_500)]);
        assert_eq!(t, vec![(2.0, 1_500.0), (3.0, 500.0)]);
    }
}
