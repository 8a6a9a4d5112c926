//! The report of a backtest (`report.json`): counts, quality over every
//! labelled event and over the test split, each model version's share,
//! figures per day, latency and throughput.

use std::path::Path;

use serde::Serialize;

use super::learning::{learning_days, with_updates, LearningDay};
use super::recovery;
use super::runs::RankRuns;
use super::spill::SpillError;
use super::tally::{Latencies, QualityTally};
use super::versions::{shares, VersionShare, VersionSpec};
use super::{per_day, Day, Latency, Quality, Record};
use crate::bundle::Bundle;
use crate::ensemble::Policy;
use crate::pipeline::RunSummary;

#[derive(Debug, Serialize)]
pub struct Report {
    pub input: String,
    pub input_hash: String,
    /// The version that scored every event, and its policy; `None` (null)
    /// when several did: `versions` then says which scored what.
    pub bundle_version: Option<String>,
    pub contract: crate::features::Contract,
    pub policy: Option<Policy>,
    pub policy_source: &'static str,
    /// The budget of the bundle given (`--models`, or trained first).
    pub budget: f64,
    /// Every version, in step order: its steps, threshold and events.
    pub versions: Vec<VersionShare>,
    pub events_in: u64,
    pub scored: u64,
    pub alerts: u64,
    pub normal: u64,
    pub dead_letters: u64,
    pub late: u64,
    /// Over every labelled event replayed (training rows included when the
    /// models learned from this file), each at its version's threshold.
    pub quality_all: Option<Quality>,
    /// Over the steps after the bundle's validation split, when the input
    /// is the file it was trained on: the honest figure.
    pub test_split_after_step: Option<u32>,
    pub quality_test_split: Option<Quality>,
    /// Every day of event time replayed.
    pub per_day: Vec<Day>,
    /// Microseconds from the source reading an event to its routing.
    pub latency_us: Option<Latency>,
    pub seconds: f64,
    pub events_per_second: f64,
    pub workers: usize,
    /// What the feedback loop did, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<crate::dataflow::feedback::FeedbackSummary>,
    /// The adaptive threshold's changes, each from its event time on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<crate::dataflow::threshold::ThresholdChange>>,
    /// With feedback: each day, the online and the frozen models at the
    /// budget, and the learner's updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning: Option<Vec<super::learning::LearningDay>>,
    /// With a change of pattern at a known step: recall before it and in
    /// the three days after, online and frozen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<super::recovery::Recovery>,
}

/// What the report says of the run besides its records.
pub struct ReportContext<'a> {
    /// The versions, sorted by their first step, the bundle given first
    /// (from step 0).
    pub versions: &'a [VersionSpec],
    pub policy_source: &'static str,
    pub input: &'a Path,
    pub input_hash: &'a str,
    /// The bundle's last validation step, when the input is its training
    /// file: the events after it are the honest test split.
    pub test_after: Option<u32>,
    pub workers: usize,
    /// Whether the feedback loop ran.
    pub feedback: bool,
    /// Whether the threshold adapted.
    pub adaptive: bool,
    /// The step at which fraud changed its pattern, when known.
    pub drift_at: Option<u32>,
}

/// The report's figures taken one day at a time: the records of each day
/// of event time, in day order, each day's sorted by `seq` (as
/// [`super::spill`] reads them back). Memory holds what a day (and the
/// drift's ten days, with `drift_at`) needs, not the run: see
/// [`super::tally`].
pub struct Evaluation<'a> {
    c: ReportContext<'a>,
    budget: f64,
    versions: Vec<VersionShare>,
    per_day: Vec<Day>,
    learning: Vec<LearningDay>,
    /// The labelled records the drift's figures judge.
    around_drift: Vec<Record>,
    all: QualityTally,
    test: Option<QualityTally>,
    latencies: Latencies,
    scored: u64,
}

impl<'a> Evaluation<'a> {
    /// Ranks at `budget`, through runs written into `dir`.
    pub fn new(c: ReportContext<'a>, budget: f64, dir: &Path) -> Evaluation<'a> {
        Evaluation {
            versions: shares(c.versions, &[], c.test_after),
            budget,
            per_day: Vec::new(),
            learning: Vec::new(),
            around_drift: Vec::new(),
            all: QualityTally::new(RankRuns::new(dir, "all")),
            test: c
                .test_after
                .map(|_| QualityTally::new(RankRuns::new(dir, "test"))),
            latencies: Latencies::default(),
            scored: 0,
            c,
        }
    }

    /// Adds one day's records (sorted by `seq`), after the days before it.
    pub fn add_day(&mut self, records: &[Record]) -> Result<(), SpillError> {
        let part = shares(self.c.versions, records, self.c.test_after);
        for (total, part) in self.versions.iter_mut().zip(part) {
            total.events += part.events;
            total.alerts += part.alerts;
            if let (Some(t), Some(p)) = (total.test_events.as_mut(), part.test_events) {
                *t += p;
            }
        }
        self.per_day.extend(per_day(records, |r| r.threshold));
        if self.c.feedback {
            self.learning
                .extend(learning_days(records, self.budget, &[]));
        }
        if let Some(step) = self.c.drift_at {
            let hours = recovery::hours_judged(step);
            let judged = |r: &&Record| r.is_fraud.is_some() && hours.contains(&r.hour());
            self.around_drift.extend(records.iter().filter(judged));
        }
        for r in records {
            self.all.add(r)?;
            if let (Some(test), Some(step)) = (self.test.as_mut(), self.c.test_after) {
                if r.hour() > step {
                    test.add(r)?;
                }
            }
            self.latencies.add(r.latency_us);
        }
        self.scored += records.len() as u64;
        Ok(())
    }

    /// The report of the days added, and their latencies.
    pub fn report(
        self,
        summary: &RunSummary,
        bundle: &Bundle,
    ) -> Result<(Report, Latencies), SpillError> {
        let c = self.c;
        let scoring: Vec<&VersionShare> = self.versions.iter().filter(|v| v.events > 0).collect();
        let only = match scoring[..] {
            [one] => Some(one),
            [] => self.versions.first(),
            _ => None,
        };
        let quality_test_split = match self.test {
            Some(test) => test.finish(self.budget)?,
            None => None,
        };
        let report = Report {
            input: c.input.display().to_string(),
            input_hash: c.input_hash.to_string(),
            bundle_version: only.map(|v| v.bundle_version.clone()),
            contract: bundle.contract,
            policy: only.map(|v| v.policy),
            policy_source: c.policy_source,
            budget: bundle.budget,
            events_in: summary.events_in,
            scored: self.scored,
            alerts: summary.written,
            normal: summary.normal_written,
            dead_letters: summary.dead_written,
            late: summary.late,
            quality_all: self.all.finish(self.budget)?,
            test_split_after_step: c.test_after,
            quality_test_split,
            per_day: self.per_day,
            latency_us: self.latencies.latency(),
            seconds: summary.seconds,
            events_per_second: summary.events_in as f64 / summary.seconds.max(1e-9),
            workers: c.workers,
            feedback: c.feedback.then(|| summary.feedback.clone()),
            thresholds: c.adaptive.then(|| summary.thresholds.clone()),
            learning: c
                .feedback
                .then(|| with_updates(self.learning, &summary.feedback.per_day)),
            recovery: c
                .drift_at
                .map(|step| recovery::recovery(&self.around_drift, self.budget, step)),
            versions: self.versions,
        };
        Ok((report, self.latencies))
    }
}
