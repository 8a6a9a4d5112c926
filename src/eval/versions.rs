//! Which model version scored which events: a backtest that switches
//! bundles (`--switch-models STEP=DIR`) reports each version's steps,
//! threshold and events, derived from the switch steps and each event's
//! step alone, as the dataflow chooses the version.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Record;
use crate::ensemble::Policy;

/// Why switches (`STEP=DIR`) are refused.
#[derive(Debug, Error, PartialEq)]
pub enum SwitchError {
    #[error("expected STEP=DIR, got {0:?}")]
    Form(String),
    #[error("{step:?} in {given:?} is not a step number")]
    Step { step: String, given: String },
    #[error("{0:?} names no DIR: expected STEP=DIR")]
    NoDir(String),
    #[error("{step}={} and {step}={}: step {step} is given twice, and one step takes one bundle", first.display(), second.display())]
    Twice {
        step: u32,
        first: PathBuf,
        second: PathBuf,
    },
}

/// `STEP=DIR`: from step STEP on, the bundle in DIR scores.
///
/// ```
/// use fraudflow::eval::versions::parse_switch;
/// assert_eq!(parse_switch("5=models").unwrap(), (5, "models".into()));
/// assert!(parse_switch("5=").is_err());
/// assert!(parse_switch("x=models").is_err());
/// ```
pub fn parse_switch(s: &str) -> Result<(u32, PathBuf), SwitchError> {
    let (step, dir) = s
        .split_once('=')
        .ok_or_else(|| SwitchError::Form(s.into()))?;
    let step = step.trim().parse::<u32>().map_err(|_| SwitchError::Step {
        step: step.into(),
        given: s.into(),
    })?;
    if dir.is_empty() {
        return Err(SwitchError::NoDir(s.into()));
    }
    Ok((step, PathBuf::from(dir)))
}

/// Refuses two switches at one step, whether to one bundle or two: which
/// would score it? Order does not matter otherwise: each applies from its
/// step.
pub fn check_switches(switches: &[(u32, PathBuf)]) -> Result<(), SwitchError> {
    let mut seen: std::collections::BTreeMap<u32, &Path> = Default::default();
    for (step, dir) in switches {
        if let Some(first) = seen.insert(*step, dir) {
            return Err(SwitchError::Twice {
                step: *step,
                first: first.to_path_buf(),
                second: dir.clone(),
            });
        }
    }
    Ok(())
}

/// One version of a run: the bundle, the steps it scored and what it made
/// of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionShare {
    pub bundle_version: String,
    /// The models directory (or bundle file) it was loaded from.
    pub models: String,
    /// The first step it scores (event hour).
    pub from_step: u32,
    /// The first step the next version scores; `None`: to the end. Equal to
    /// `from_step` when a later switch at the same step took over at once.
    pub until_step: Option<u32>,
    pub policy: Policy,
    /// Events it scored.
    pub events: u64,
    /// Of those, events alerted (at the threshold in force for each).
    pub alerts: u64,
    /// Of those, events in the test split (after the bundle's validation
    /// steps), when the input is the bundle's training file.
    pub test_events: Option<u64>,
}

impl VersionShare {
    /// Its steps for people: `steps 0..=399`, `steps 400..`, or `no steps`
    /// when a switch at the same step took over at once.
    pub fn steps(&self) -> String {
        match self.until_step {
            Some(until) if until <= self.from_step => "no steps".to_string(),
            Some(until) => format!("steps {}..={}", self.from_step, until - 1),
            None => format!("steps {}..", self.from_step),
        }
    }
}

/// A version before its figures: where it applies from and its policy.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionSpec {
    pub bundle_version: String,
    pub models: String,
    pub from_step: u32,
    pub policy: Policy,
}

/// Which of `specs` (sorted by `from_step`, the first from step 0) scores
/// an event of `hour`: the last whose step is not after it, as the dataflow
/// takes the last version whose time is not after the event's.
pub fn version_of(specs: &[VersionSpec], hour: u32) -> usize {
    specs
        .partition_point(|s| s.from_step <= hour)
        .saturating_sub(1)
}

/// Each version's steps, events, alerts and test events; `test_after` is
/// the last validation step when the input is the training file.
///
/// ```
/// use fraudflow::ensemble::{Policy, Weights};
/// use fraudflow::eval::versions::{shares, VersionSpec};
/// use fraudflow::eval::Record;
/// let spec = |name: &str, from_step, threshold| VersionSpec {
///     bundle_version: name.into(),
///     models: name.into(),
///     from_step,
///     policy: Policy { weights: Weights::ORIGINAL, threshold },
/// };
/// // Each record carries the threshold that routed it: its version's.
/// let r = |hour: u64, score, threshold| Record { seq: 0, time_ms: hour * 3_600_000, score, is_fraud: None, amount: 1.0, latency_us: 0, frozen: None, threshold, page: None };
/// let records = [r(1, 0.9, 0.5), r(2, 0.6, 0.7), r(5, 0.6, 0.7)];
/// let out = shares(&[spec("a", 0, 0.5), spec("b", 2, 0.7)], &records, None);
/// assert_eq!((out[0].events, out[0].alerts, out[0].until_step), (1, 1, Some(2)));
/// assert_eq!((out[1].events, out[1].alerts, out[1].until_step), (2, 0, None));
/// ```
pub fn shares(
    specs: &[VersionSpec],
    records: &[Record],
    test_after: Option<u32>,
) -> Vec<VersionShare> {
    let mut out: Vec<VersionShare> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| VersionShare {
            bundle_version: s.bundle_version.clone(),
            models: s.models.clone(),
            from_step: s.from_step,
            until_step: specs.get(i + 1).map(|next| next.from_step),
            policy: s.policy,
            events: 0,
            alerts: 0,
            test_events: test_after.map(|_| 0),
        })
        .collect();
    for r in records {
        let hour = r.hour();
        let Some(v) = out.get_mut(version_of(specs, hour)) else {
            continue;
        };
        v.events += 1;
        v.alerts += u64::from(r.score >= r.threshold);
        if let (Some(n), Some(last)) = (v.test_events.as_mut(), test_after) {
            *n += u64::from(hour > last);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::Weights;

    fn spec(from_step: u32, threshold: f64) -> VersionSpec {
        VersionSpec {
            bundle_version: format!("v{from_step}"),
            models: String::new(),
            from_step,
            policy: Policy {
                weights: Weights::ORIGINAL,
                threshold,
            },
        }
    }

    #[test]
    fn a_switch_at_step_0_takes_every_event_from_the_first_version() {
        let specs = [spec(0, 0.5), spec(0, 0.9)];
        let records: Vec<Record> = (0..10u64)
            .map(|h| Record {
                seq: h,
                time_ms: h * crate::event::STEP_MS,
                score: h as f64 / 10.0,
                is_fraud: Some(false),
                amount: 1.0,
                latency_us: 0,
                frozen: None,
                threshold: 0.9,
                page: None,
            })
            .collect();
        let out = shares(&specs, &records, Some(6));
        assert_eq!((out[0].events, out[0].until_step), (0, Some(0)));
        assert_eq!(out[0].steps(), "no steps");
        assert_eq!(out[1].steps(), "steps 0..");
        assert_eq!(out[1].events, 10);
        // Recomputed plainly: scores 0.9 alone reach 0.9; hours 7-9 test.
        let alerts = records.iter().filter(|r| r.score >= 0.9).count() as u64;
        assert_eq!(out[1].alerts, alerts);
        assert_eq!(out[1].test_events, Some(3));
    }
}
