//! The adaptive threshold's flags.

use fraudflow::dataflow::threshold::{ThresholdChange, ThresholdSettings};

use super::feedback_args::parse_duration;

/// Lets the alert threshold follow the scores (docs/feedback.md).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ThresholdArgs {
    /// Alert on the bundle's budget share of recent scores: the threshold
    /// follows a quantile of the last --threshold-window of scores, found
    /// every --threshold-every, within a floor and a ceiling.
    #[arg(long)]
    pub adaptive_threshold: bool,
    /// The scores each change looks back on, in event time [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "adaptive_threshold")]
    pub threshold_window: Option<u64>,
    /// How often the threshold may change, and how long after the scores
    /// it is found on it applies [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "adaptive_threshold")]
    pub threshold_every: Option<u64>,
    /// The lowest the threshold goes [default: 0].
    #[arg(long, value_name = "SCORE", requires = "adaptive_threshold")]
    pub threshold_floor: Option<f64>,
    /// The highest the threshold goes [default: 1].
    #[arg(long, value_name = "SCORE", requires = "adaptive_threshold")]
    pub threshold_ceiling: Option<f64>,
    /// Scores the window must hold before the threshold moves
    /// [default: 1000].
    #[arg(long, value_name = "N", requires = "adaptive_threshold")]
    pub threshold_min_samples: Option<usize>,
}

impl ThresholdArgs {
    /// The settings for a bundle's `budget`; `None` without
    /// --adaptive-threshold. Checked when the pipeline starts, against the
    /// source's lateness.
    pub fn settings(&self, budget: f64) -> Option<ThresholdSettings> {
        if !self.adaptive_threshold {
            return None;
        }
        let d = ThresholdSettings::for_budget(budget);
        Some(ThresholdSettings {
            budget,
            window_ms: self.threshold_window.unwrap_or(d.window_ms),
            every_ms: self.threshold_every.unwrap_or(d.every_ms),
            floor: self.threshold_floor.unwrap_or(d.floor),
            ceiling: self.threshold_ceiling.unwrap_or(d.ceiling),
            min_samples: self.threshold_min_samples.unwrap_or(d.min_samples),
        })
    }
}

/// The threshold's changes, for people: how many, and their range.
pub fn print_thresholds(changes: &[ThresholdChange]) {
    let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
        outln!("adaptive threshold: no change (too few scores in any window)");
        return;
    };
    let (low, high) = changes.iter().fold((f64::MAX, f64::MIN), |(l, h), c| {
        (l.min(c.threshold), h.max(c.threshold))
    });
    outln!(
        "adaptive threshold: {} changes from {} on, between {low:.6} and {high:.6}; last {:.6} from {}",
        changes.len(),
        fraudflow::clock::format_millis(first.from as i64),
        last.threshold,
        fraudflow::clock::format_millis(last.from as i64),
    );
}
