//! The report of a backtest (`report.json`): counts, quality over every
//! labelled event and over the test split, each model version's share,
//! figures per day, latency and throughput.

use std::path::Path;

use serde::Serialize;

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

impl Report {
    /// The report of `records` (in input order), scored by `c.versions`.
    pub fn new(
        records: &[Record],
        summary: &RunSummary,
        bundle: &Bundle,
        c: ReportContext,
    ) -> Report {
        let versions = shares(c.versions, records, c.test_after);
        // The threshold that routed each event: its version's, or the
        // adaptive threshold's.
        let threshold = |r: &Record| r.threshold;
        let test = c
            .test_after
            .map(|step| records.iter().filter(move |r| r.hour() > step));
        let scoring: Vec<&VersionShare> = versions.iter().filter(|v| v.events > 0).collect();
        let only = match scoring[..] {
            [one] => Some(one),
            [] => versions.first(),
            _ => None,
        };
        Report {
            input: c.input.display().to_string(),
            input_hash: c.input_hash.to_string(),
            bundle_version: only.map(|v| v.bundle_version.clone()),
            contract: bundle.contract,
            policy: only.map(|v| v.policy),
            policy_source: c.policy_source,
            budget: bundle.budget,
            events_in: summary.events_in,
            scored: records.len() as u64,
            alerts: summary.written,
            normal: summary.normal_written,
            dead_letters: summary.dead_written,
            late: summary.late,
            quality_all: Quality::of(records, threshold, bundle.budget),
            test_split_after_step: c.test_after,
            quality_test_split: test.and_then(|t| Quality::of(t, threshold, bundle.budget)),
            per_day: per_day(records, threshold),
            latency_us: Latency::of(records.iter().map(|r| r.latency_us).collect()),
            seconds: summary.seconds,
            events_per_second: summary.events_in as f64 / summary.seconds.max(1e-9),
            workers: c.workers,
            feedback: c.feedback.then(|| summary.feedback.clone()),
            thresholds: c.adaptive.then(|| summary.thresholds.clone()),
            learning: c.feedback.then(|| {
                super::learning::learning_days(records, bundle.budget, &summary.feedback.per_day)
            }),
            recovery: c
                .drift_at
                .map(|step| super::recovery::recovery(records, bundle.budget, step)),
            versions,
        }
    }
}
