//! The feedback loop's flags, shared by the commands that score.

use fraudflow::dataflow::feedback::{AnalystSettings, FeedbackSettings, LearnerSettings};

use super::grouped;

/// Closes the feedback loop in a backtest: simulated analysts label alerts
/// (and chargebacks reveal missed fraud), the labels join the features of
/// their transactions, and the online model learns from them as the replay
/// goes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FeedbackArgs {
    /// Learn online from simulated analysts' labels during the replay.
    #[arg(long)]
    pub feedback: bool,
    /// From an alert to its label, in event time (e.g. 1h, 30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "feedback")]
    pub analyst_delay: Option<u64>,
    /// Alerts the analysts label per hour of alerts; the rest wait for a
    /// chargeback [default: 100].
    #[arg(long, value_name = "N", requires = "feedback")]
    pub analyst_capacity: Option<u64>,
    /// From a missed fraud to its chargeback, in event time [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "feedback")]
    pub chargeback_delay: Option<u64>,
    /// No chargebacks: only the analysts' labels.
    #[arg(long, requires = "feedback", conflicts_with = "chargeback_delay")]
    pub no_chargebacks: bool,
    /// Presume one transaction in N legitimate (by its id) when its
    /// chargeback delay passes with no label, and learn from it: the
    /// learner then sees the day's traffic, not only alerts and missed
    /// fraud; 0: none [default: 0].
    #[arg(
        long,
        value_name = "N",
        requires = "feedback",
        conflicts_with = "no_chargebacks"
    )]
    pub presume_legit: Option<u64>,
    /// How long features wait for a label, and labels for their
    /// transaction [default: 48h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "feedback")]
    pub feedback_retention: Option<u64>,
    /// Labelled examples per update of the online model [default: 64].
    #[arg(long, value_name = "N", requires = "feedback")]
    pub learn_batch: Option<usize>,
    /// The longest a labelled example waits for its batch [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "feedback")]
    pub learn_wait: Option<u64>,
    /// An update is promoted unless its PR-AUC on the holdout falls by more
    /// than this [default: 0.02].
    #[arg(long, value_name = "PR-AUC", requires = "feedback")]
    pub promotion_margin: Option<f64>,
    /// The online model's learning rate for each update, before its decay
    /// with the examples seen [default: 0.05].
    #[arg(long, value_name = "RATE", requires = "feedback")]
    pub learn_rate: Option<f64>,
    /// Weight of a fraud example in each update, at most 1e6 [default: the
    /// model's own, 1 for a bundle trained with the default
    /// --positive-weight].
    #[arg(long, value_name = "WEIGHT", requires = "feedback")]
    pub learn_positive_weight: Option<f64>,
    /// The most recent fraud examples learned from that are fitted again
    /// with each update (a missed fraud comes back once, as a chargeback);
    /// it raises the online scores, so pair it with --adaptive-threshold;
    /// 0: none [default: 0].
    #[arg(long, value_name = "N", requires = "feedback")]
    pub learn_replay: Option<usize>,
    /// The step at which fraud changed its pattern (the generator's
    /// --drift-at): report.json's `recovery` then says how fast recall came
    /// back, against the week before (docs/drift.md, scenario (b)).
    #[arg(long, value_name = "STEP")]
    pub drift_at: Option<u32>,
}

impl FeedbackArgs {
    /// The loop's settings, checked (against the source's lateness too
    /// when the pipeline starts); `None` without --feedback.
    pub fn settings(&self) -> anyhow::Result<Option<FeedbackSettings>> {
        if !self.feedback {
            return Ok(None);
        }
        let desk = AnalystSettings::default();
        let analysts = AnalystSettings {
            delay_ms: self.analyst_delay.unwrap_or(desk.delay_ms),
            per_hour: self.analyst_capacity.unwrap_or(desk.per_hour),
            chargeback_ms: if self.no_chargebacks {
                None
            } else {
                self.chargeback_delay.or(desk.chargeback_ms)
            },
            presume_legit_every: self.presume_legit.unwrap_or(desk.presume_legit_every),
        };
        let learning = LearnerSettings::default();
        let params = LearnerSettings::params_with(self.learn_rate, self.learn_positive_weight);
        let settings = FeedbackSettings {
            retention_ms: self
                .feedback_retention
                .unwrap_or(FeedbackSettings::DEFAULT_RETENTION_MS),
            learner: LearnerSettings {
                batch_size: self.learn_batch.unwrap_or(learning.batch_size),
                max_wait_ms: self.learn_wait.unwrap_or(learning.max_wait_ms),
                margin: self.promotion_margin.unwrap_or(learning.margin),
                params,
                replay_positives: self.learn_replay.unwrap_or(learning.replay_positives),
                ..learning
            },
            analysts: Some(analysts),
            flush: None,
            compare_frozen: true,
        };
        settings.check(0)?;
        Ok(Some(settings))
    }
}

/// A duration of event time in milliseconds, written as jiff reads it:
/// `1h`, `30m`, `90s`, `1h 30m`, `PT1H`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let d: jiff::SignedDuration = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a duration such as 1h or 30m: {e}"))?;
    u64::try_from(d.as_millis()).map_err(|_| {
        format!("{s:?} is not a duration of at least zero and under 584 million years")
    })
}

/// The feedback loop's line of the summary.
pub fn print_summary(f: &fraudflow::dataflow::feedback::FeedbackSummary) {
    outln!(
        "feedback: {} labels ({} by analysts, {} chargebacks, {} presumed legitimate, {} alerts \
         over capacity); {} matched, {} unmatched, {} duplicates; {} updates: {} promoted, {} refused, {} rolled back",
        grouped(f.received),
        grouped(f.analyst_labels),
        grouped(f.chargebacks),
        grouped(f.presumed_legit),
        grouped(f.over_capacity),
        grouped(f.matched),
        grouped(f.unmatched),
        grouped(f.duplicate),
        grouped(f.updates),
        grouped(f.promoted),
        grouped(f.refused),
        grouped(f.rolled_back)
    );
}

/// Each day: the online and the frozen models at the budget, and the
/// learner's updates.
pub fn print_learning(days: &[fraudflow::eval::learning::LearningDay], budget: f64) {
    outln!(
        "per day, at the {:.2} % budget (online | frozen): precision, recall, PR-AUC; updates",
        budget * 100.0
    );
    let figures = |q: Option<fraudflow::eval::learning::DayQuality>| {
        q.map_or_else(
            || "      -      -      -".to_string(),
            |q| {
                format!(
                    "{:>6} {:>6} {:>6}",
                    f(q.precision),
                    f(q.recall),
                    f(q.pr_auc)
                )
            },
        )
    };
    for d in days {
        outln!(
            "  day {:>3}: {:>7} events {:>5} fraud | {} | {} | {} fitted, {} promoted, {} refused, {} rolled back",
            d.day,
            grouped(d.events),
            grouped(d.fraud),
            figures(d.online),
            figures(d.frozen),
            d.updates,
            d.promoted,
            d.refused,
            d.rolled_back
        );
    }
}

/// Recall before the change of pattern and in the days after it.
pub fn print_recovery(r: &fraudflow::eval::recovery::Recovery) {
    outln!(
        "recovery after the change at hour {} (frauds caught at the budget, online | frozen):",
        r.drift_hour
    );
    let caught = |c: Option<fraudflow::eval::recovery::Caught>| {
        c.map_or_else(
            || "-".to_string(),
            |c| format!("{} ({})", c.caught, f(c.recall)),
        )
    };
    let before = std::iter::once(("the week before, day by day", &r.before));
    let after = r.after.iter().map(|w| ("", w));
    for (name, w) in before.chain(after) {
        outln!(
            "  hours {:>4}..{:<4} {:>26}: {:>5} fraud | {} | {}",
            w.from_hour,
            w.to_hour,
            name,
            grouped(w.fraud),
            caught(Some(w.online)),
            caught(w.frozen)
        );
    }
    outln!(
        "  target: hours {}..{} at {} of the level before ({}): {}",
        r.after[1].from_hour,
        r.after[1].to_hour,
        fraudflow::eval::recovery::RECOVERY_SHARE,
        f(r.target_recall),
        r.verdict()
    );
}

fn f(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_as_milliseconds() {
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1h 30m"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
    }
}
