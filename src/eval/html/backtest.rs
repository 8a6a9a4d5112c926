//! A backtest's page (`backtest --html FILE`), filled from what the run
//! already measured: its report (`report.json`), its records read back
//! (every event's scores and the time it was routed), and its alerts'
//! reasons.

use std::collections::BTreeMap;
use std::path::Path;

use super::scores::{ScoreFigures, ScoreTally};
use super::shape::Throughput;
use super::{grouped, HtmlReport, Period, Periods, PrecisionRecall, ScoredEvent};
use crate::dataflow::score::Outcome;
use crate::eval::learning::{DayQuality, LearningDay};
use crate::eval::recovery::{Caught, Recovery, Window};
use crate::eval::report::Report;
use crate::eval::spill::SpillError;
use crate::eval::tally::Latencies;
use crate::eval::{Day, Quality, Record};

/// Intervals the run's throughput is shown in.
const THROUGHPUT_BINS: usize = 80;

/// An alert's first reason: the feature that pushed its score most, or
/// `none` (as the alerts metric names it).
pub fn first_reason(o: &Outcome) -> String {
    let first = o.alert.as_deref().and_then(|a| a.reasons.first());
    first.map_or_else(|| "none".to_string(), |r| r.feature.clone())
}

/// What the page takes from the run's records, gathered as the report
/// reads them back a day at a time: the labelled events' scores (in runs
/// on disk, see [`super::scores`]) and the times events were routed.
#[derive(Debug)]
pub struct PageTally {
    scores: ScoreTally,
    throughput: Option<Throughput>,
}

impl PageTally {
    /// Runs written into `dir`; `span_us`: when the run read its first
    /// event and routed its last (µs since the Unix epoch), if it scored
    /// any.
    pub fn new(dir: &Path, span_us: Option<(u64, u64)>) -> PageTally {
        PageTally {
            scores: ScoreTally::new(dir, "page"),
            throughput: span_us.map(|(from, to)| Throughput::new(from, to, THROUGHPUT_BINS)),
        }
    }

    /// Takes `r`'s scores and time, if it carries the page's fields.
    pub fn add(&mut self, r: &Record) -> Result<(), SpillError> {
        let (Some(page), Some(done)) = (r.page, r.done_us()) else {
            return Ok(());
        };
        if let Some(t) = self.throughput.as_mut() {
            t.add(done);
        }
        let Some(fraud) = r.is_fraud else {
            return Ok(());
        };
        let c = page.components;
        self.scores.add(&ScoredEvent {
            fraud,
            ensemble: r.score,
            forest: c.isolation_forest,
            autoencoder: c.autoencoder,
            logistic: c.logistic,
        })
    }

    /// The figures of the records added, and the throughput over the run.
    pub fn finish(self) -> Result<(ScoreFigures, Vec<(f64, f64)>), SpillError> {
        let throughput = self.throughput.map_or_else(Vec::new, Throughput::points);
        Ok((self.scores.finish()?, throughput))
    }
}

/// What a backtest's page shows besides its report.
#[derive(Debug)]
pub struct Gathered {
    pub scores: ScoreFigures,
    pub throughput: Vec<(f64, f64)>,
    pub latency: Latencies,
    /// Alerts by first reason.
    pub reasons: BTreeMap<String, u64>,
}

/// The page of a backtest: `report` as it is written, and what was
/// gathered besides.
pub fn page(report: &Report, g: Gathered) -> HtmlReport {
    HtmlReport {
        title: "fraudflow backtest".to_string(),
        facts: facts(report),
        threshold: report.versions.first().map_or(0.5, |v| v.policy.threshold),
        scores: g.scores,
        periods: periods(&report.per_day, report.learning.as_deref()),
        latency: g.latency,
        throughput: g.throughput,
        reasons: g.reasons.into_iter().collect(),
    }
}

/// Days of event time, with the learning table's online and frozen
/// figures where the run had feedback.
pub fn periods(days: &[Day], learning: Option<&[LearningDay]>) -> Periods {
    let at = |q: &Option<DayQuality>| {
        q.map(|q| PrecisionRecall {
            precision: q.precision,
            recall: q.recall,
        })
    };
    let rows = days
        .iter()
        .map(|d| {
            let learned = learning.and_then(|l| l.iter().find(|l| l.day == d.day));
            Period {
                label: d.day.to_string(),
                events: d.events,
                alerts: d.alerts,
                fraud: d.fraud,
                fraud_caught: d.fraud_caught,
                online: learned.and_then(|l| at(&l.online)),
                frozen: learned.and_then(|l| at(&l.frozen)),
                threshold: Some((d.threshold_low, d.threshold_high)),
            }
        })
        .collect();
    Periods {
        unit: "day".to_string(),
        rows,
    }
}

/// A share as a percentage, or a dash.
fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.1} %", 100.0 * v))
}

/// The key figures of a backtest.
fn facts(r: &Report) -> Vec<(String, String)> {
    let mut facts = vec![
        ("Input".to_string(), r.input.clone()),
        (
            "Model version".to_string(),
            r.bundle_version
                .clone()
                .unwrap_or_else(|| "several (see report.json)".into()),
        ),
        ("Events".to_string(), grouped(r.events_in)),
        (
            "Alert budget".to_string(),
            format!("{:.2} % of events", 100.0 * r.budget),
        ),
        ("Alerts".to_string(), grouped(r.alerts)),
        ("Dead letters".to_string(), grouped(r.dead_letters)),
    ];
    let quality = [
        ("test split", &r.quality_test_split),
        ("all events", &r.quality_all),
    ];
    if let Some((name, q)) = quality.iter().find_map(|(n, q)| q.as_ref().map(|q| (n, q))) {
        facts.extend(quality_facts(name, q));
    }
    if let Some(l) = &r.latency_us {
        let ms = |us: u64| format!("{:.1} ms", us as f64 / 1e3);
        let text = format!("p50 {}, p99 {}, max {}", ms(l.p50), ms(l.p99), ms(l.max));
        facts.push(("Latency, read to routed".to_string(), text));
    }
    let workers = match r.workers {
        1 => "1 worker".to_string(),
        n => format!("{n} workers"),
    };
    let speed = format!(
        "{} events/s ({:.2} s on {workers})",
        grouped(r.events_per_second.round() as u64),
        r.seconds,
    );
    facts.push(("Throughput".to_string(), speed));
    if let Some(f) = &r.feedback {
        let text = format!(
            "{} labels; {} updates: {} promoted, {} refused, {} rolled back",
            grouped(f.received),
            grouped(f.updates),
            grouped(f.promoted),
            grouped(f.refused),
            grouped(f.rolled_back)
        );
        facts.push(("Online learning".to_string(), text));
    }
    if let Some(rec) = &r.recovery {
        facts.extend(recovery_facts(rec));
    }
    facts
}

/// Recall before a change of pattern and in each day after it, online
/// (frozen in brackets), and the verdict.
fn recovery_facts(rec: &Recovery) -> Vec<(String, String)> {
    let caught = |c: &Caught| format!("{} ({})", grouped(c.caught), percent(c.recall));
    let window = |w: &Window| {
        let frozen = w
            .frozen
            .as_ref()
            .map_or(String::new(), |f| format!("; frozen {}", caught(f)));
        format!(
            "{} of {} fraud{frozen}",
            caught(&w.online),
            grouped(w.fraud)
        )
    };
    let mut facts = vec![(
        format!(
            "Recall the week before the change at hour {}",
            rec.drift_hour
        ),
        window(&rec.before),
    )];
    for w in &rec.after {
        facts.push((
            format!("Recall in hours {}..{}", w.from_hour, w.to_hour),
            window(w),
        ));
    }
    facts.push((
        format!(
            "Back to {} % of the level before by 48 h after",
            100.0 * crate::eval::recovery::RECOVERY_SHARE
        ),
        rec.verdict().to_string(),
    ));
    facts
}

/// Quality figures over one part of the events.
fn quality_facts(part: &str, q: &Quality) -> Vec<(String, String)> {
    let t = &q.ranking.at_threshold;
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    vec![
        (
            format!("Fraud ({part})"),
            format!("{} of {} events", grouped(q.fraud), grouped(q.events)),
        ),
        (format!("PR-AUC ({part})"), opt(q.ranking.pr_auc)),
        (
            format!("Precision / recall at the threshold ({part})"),
            format!("{} / {}", percent(t.precision), percent(t.recall)),
        ),
        (format!("Fraud amount caught ({part})"), q.amount_caught()),
    ]
}
