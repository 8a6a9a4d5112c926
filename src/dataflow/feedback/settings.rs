//! The feedback loop's settings, checked before a run starts: each refusal
//! names the setting and its value.

use thiserror::Error;

use crate::event::STEP_MS;
use crate::models::online_logistic::OnlineLogisticParams;

/// A setting of the feedback loop that cannot work.
#[derive(Debug, Error, PartialEq)]
pub enum FeedbackSettingsError {
    #[error("feedback retention must be at least 1 ms, got {0} ms")]
    Retention(u64),
    #[error("the learner's batch size must be in 1..={MAX_BATCH}, got {0}")]
    BatchSize(usize),
    #[error("the learner's maximum wait must be at least 1 ms, got {0} ms")]
    MaxWait(u64),
    #[error("the promotion margin must be in [0, 1] (PR-AUC), got {0}")]
    Margin(f64),
    #[error("the holdout must keep 1..={MAX_HOLDOUT} examples, got {0}")]
    Holdout(usize),
    #[error("one example in N goes to the holdout: N must be 0 (none) or at least 2, got {0}")]
    HoldoutEvery(u64),
    #[error(
        "the analysts' delay ({delay_ms} ms) must be longer than the source's allowed lateness \
         ({lateness_ms} ms): a label cannot come back before every event it could change is placed"
    )]
    AnalystDelay { delay_ms: u64, lateness_ms: u64 },
    #[error("the analysts' capacity must be at least 1 label an hour, got {0}")]
    Capacity(u64),
    #[error(
        "the chargeback delay ({chargeback_ms} ms) must be at least the analysts' delay \
         ({delay_ms} ms)"
    )]
    Chargeback { chargeback_ms: u64, delay_ms: u64 },
    #[error(
        "feedback retention ({retention_ms} ms) must be longer than the chargeback delay \
         ({chargeback_ms} ms), or no chargeback would find its transaction"
    )]
    RetentionShort {
        retention_ms: u64,
        chargeback_ms: u64,
    },
    #[error(
        "one transaction in N is presumed legitimate after the chargeback delay: N must be 0 \
         (none) or at least 2, got {0}"
    )]
    PresumeEvery(u64),
    #[error(
        "presuming transactions legitimate ({every}) needs chargebacks: a transaction is \
         presumed legitimate when its chargeback delay passes without one"
    )]
    PresumeWithoutChargebacks { every: u64 },
    #[error("the learner replays at most {MAX_BATCH} fraud examples, got {0}")]
    Replay(usize),
    #[error("the learner's model parameters: {0}")]
    Params(String),
}

/// The largest mini-batch.
pub const MAX_BATCH: usize = 100_000;
/// The largest holdout.
pub const MAX_HOLDOUT: usize = 1_000_000;

/// The feedback loop of a scored run.
#[derive(Clone, Debug)]
pub struct FeedbackSettings {
    /// How long a scored transaction's features are kept for its label, and
    /// how long a label waits for a transaction not seen yet (ms of event
    /// time).
    pub retention_ms: u64,
    pub learner: LearnerSettings,
    /// Simulated analysts and chargebacks (backtests); `None` when labels
    /// come from outside.
    pub analysts: Option<AnalystSettings>,
    /// Set by `POST /flush`: the learner fits what it has buffered.
    pub flush: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Also score every event with the models given at the start, frozen
    /// (`Outcome::frozen`): what a backtest's report compares against.
    pub compare_frozen: bool,
}

/// How the online model learns from labelled examples.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnerSettings {
    /// Examples per `partial_fit`.
    pub batch_size: usize,
    /// The longest an example waits for its batch to fill (ms of event
    /// time): then the batch is fitted as it is.
    pub max_wait_ms: u64,
    /// An update is promoted unless its PR-AUC on the holdout is worse
    /// than the current version's by more than this.
    pub margin: f64,
    /// The most recent labelled examples kept as the holdout.
    pub holdout: usize,
    /// One labelled transaction in this many (by its id) goes to the
    /// holdout rather than to training; 0: none, and every update passes.
    pub holdout_every: u64,
    /// The online model's parameters for each `partial_fit` (its learning
    /// rate and, when set, the weight of a fraud example).
    pub params: OnlineLogisticParams,
    /// The most recent fraud examples learned from that are fitted again
    /// with each batch; 0: none.
    pub replay_positives: usize,
    /// The models directory whose `online/` keeps every version sent
    /// (see [`super::store`]); `None`: versions are not kept.
    pub store: Option<std::path::PathBuf>,
    /// Where each version sent is also announced (a Kafka run's
    /// `model-updates` topic).
    pub announce: Announce,
    /// What a live run's learner goes on from, and the ledger of the
    /// labels read from the feedback topic.
    pub resume: Resume,
}

/// A destination for the versions the learner sends, besides the store:
/// told each one with its metadata, it must not block. Not a setting, so
/// any two compare equal.
#[derive(Clone, Default)]
pub struct Announce(pub Option<std::sync::Arc<AnnounceFn>>);

/// What an [`Announce`] calls with each version.
pub type AnnounceFn = dyn Fn(&super::store::StoredVersion) + Send + Sync;

impl std::fmt::Debug for Announce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = if self.0.is_some() { "on" } else { "off" };
        write!(f, "Announce({on})")
    }
}

impl PartialEq for Announce {
    fn eq(&self, _: &Announce) -> bool {
        true
    }
}

/// Where a live run's learner goes on from (see [`super::store::Carried`])
/// and the ledger it closes the topic's labels in (see [`super::ledger`]).
/// Not a setting, so any two compare equal.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    pub carried: Option<std::sync::Arc<super::store::Carried>>,
    /// The version the one in force was fitted from, which the next gate
    /// checks it against (none after a rollback).
    pub parent: Option<std::sync::Arc<crate::dataflow::score::Scorer>>,
    pub ledger: Option<std::sync::Arc<super::ledger::Ledger>>,
}

impl PartialEq for Resume {
    fn eq(&self, _: &Resume) -> bool {
        true
    }
}

/// Analysts simulated in a backtest: they label alerted transactions with
/// their true class after a delay, up to a number an hour, and
/// chargebacks reveal missed fraud later.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnalystSettings {
    /// From an alert to its label (ms of event time).
    pub delay_ms: u64,
    /// Labels an hour of alerts: the first alerts of each hour (in event
    /// time, then input order) are labelled, the rest never.
    pub per_hour: u64,
    /// From a missed fraud to its chargeback (ms); `None`: no chargebacks.
    pub chargeback_ms: Option<u64>,
    /// One transaction in this many (by its id) that no analyst labelled
    /// and no chargeback named by the chargeback delay is presumed
    /// legitimate then, and labelled so; 0: none. Without it the learner
    /// sees only alerts and missed fraud, never the traffic it ranks them
    /// against.
    pub presume_legit_every: u64,
}

impl Default for LearnerSettings {
    fn default() -> Self {
        LearnerSettings {
            batch_size: 64,
            max_wait_ms: STEP_MS,
            margin: 0.02,
            holdout: 2_000,
            holdout_every: 5,
            params: OnlineLogisticParams::default(),
            replay_positives: 0,
            store: None,
            announce: Announce::default(),
            resume: Resume::default(),
        }
    }
}

impl Default for AnalystSettings {
    fn default() -> Self {
        AnalystSettings {
            delay_ms: STEP_MS,
            per_hour: 100,
            chargeback_ms: Some(24 * STEP_MS),
            presume_legit_every: 0,
        }
    }
}

impl FeedbackSettings {
    /// Two days: the default chargebacks (a day) find their transaction.
    pub const DEFAULT_RETENTION_MS: u64 = 48 * STEP_MS;

    /// Checks every setting; `lateness_ms` is the source's allowed
    /// lateness (0 for a live source).
    pub fn check(&self, lateness_ms: u64) -> Result<(), FeedbackSettingsError> {
        use FeedbackSettingsError as E;
        if self.retention_ms == 0 {
            return Err(E::Retention(0));
        }
        self.learner.check()?;
        if let Some(a) = &self.analysts {
            if a.delay_ms <= lateness_ms {
                return Err(E::AnalystDelay {
                    delay_ms: a.delay_ms,
                    lateness_ms,
                });
            }
            if a.per_hour == 0 {
                return Err(E::Capacity(0));
            }
            if a.presume_legit_every == 1 {
                return Err(E::PresumeEvery(1));
            }
            if a.presume_legit_every > 0 && a.chargeback_ms.is_none() {
                return Err(E::PresumeWithoutChargebacks {
                    every: a.presume_legit_every,
                });
            }
            if let Some(chargeback_ms) = a.chargeback_ms {
                if chargeback_ms < a.delay_ms {
                    return Err(E::Chargeback {
                        chargeback_ms,
                        delay_ms: a.delay_ms,
                    });
                }
                if self.retention_ms <= chargeback_ms {
                    return Err(E::RetentionShort {
                        retention_ms: self.retention_ms,
                        chargeback_ms,
                    });
                }
            }
        }
        Ok(())
    }

    /// The delay on the loop from scoring back to the join: the analysts'
    /// (every simulated label comes at least that late), else 1 ms.
    pub fn loop_delay_ms(&self) -> u64 {
        self.analysts.map_or(1, |a| a.delay_ms.max(1))
    }
}

impl LearnerSettings {
    /// The default parameters of each `partial_fit` with the learning rate
    /// and the weight of a fraud example given (absent: the defaults).
    pub fn params_with(rate: Option<f64>, positive_weight: Option<f64>) -> OnlineLogisticParams {
        let mut params = OnlineLogisticParams::default();
        if let Some(rate) = rate {
            params = params.learning_rate(rate);
        }
        if let Some(weight) = positive_weight {
            params = params.positive_weight(weight);
        }
        params
    }

    pub fn check(&self) -> Result<(), FeedbackSettingsError> {
        use linfa::ParamGuard;
        use FeedbackSettingsError as E;
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(E::BatchSize(self.batch_size));
        }
        if self.max_wait_ms == 0 {
            return Err(E::MaxWait(0));
        }
        if !(0.0..=1.0).contains(&self.margin) {
            return Err(E::Margin(self.margin));
        }
        if !(1..=MAX_HOLDOUT).contains(&self.holdout) {
            return Err(E::Holdout(self.holdout));
        }
        if self.holdout_every == 1 {
            return Err(E::HoldoutEvery(1));
        }
        if self.replay_positives > MAX_BATCH {
            return Err(E::Replay(self.replay_positives));
        }
        self.params
            .check_ref()
            .map_err(|e| E::Params(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FeedbackSettings {
        FeedbackSettings {
            retention_ms: FeedbackSettings::DEFAULT_RETENTION_MS,
            learner: LearnerSettings::default(),
            analysts: Some(AnalystSettings::default()),
            flush: None,
            compare_frozen: false,
        }
    }

    #[test]
    fn the_defaults_pass() {
        assert_eq!(settings().check(120_000), Ok(()));
        assert_eq!(settings().loop_delay_ms(), STEP_MS);
    }

    #[test]
    fn each_bad_setting_is_named_with_its_value() {
        let mut s = settings();
        s.retention_ms = 0;
        assert_eq!(s.check(0), Err(FeedbackSettingsError::Retention(0)));
        let mut s = settings();
        s.learner.batch_size = 0;
        assert_eq!(s.check(0), Err(FeedbackSettingsError::BatchSize(0)));
        let mut s = settings();
        s.learner.margin = 1.5;
        assert_eq!(s.check(0), Err(FeedbackSettingsError::Margin(1.5)));
        let mut s = settings();
        s.learner.holdout_every = 1;
        assert_eq!(s.check(0), Err(FeedbackSettingsError::HoldoutEvery(1)));
        let late = settings().check(STEP_MS).unwrap_err();
        assert!(late.to_string().contains("3600000 ms"), "{late}");
        let mut s = settings();
        s.retention_ms = 24 * STEP_MS;
        assert!(matches!(
            s.check(0),
            Err(FeedbackSettingsError::RetentionShort { .. })
        ));
        let mut s = settings();
        s.learner.params = OnlineLogisticParams::default().learning_rate(-1.0);
        assert!(s.check(0).unwrap_err().to_string().contains("-1"));
        let mut s = settings();
        s.analysts = Some(AnalystSettings {
            presume_legit_every: 1,
            ..AnalystSettings::default()
        });
        assert_eq!(s.check(0), Err(FeedbackSettingsError::PresumeEvery(1)));
        s.analysts = Some(AnalystSettings {
            presume_legit_every: 100,
            chargeback_ms: None,
            ..AnalystSettings::default()
        });
        let err = s.check(0).unwrap_err().to_string();
        assert!(
            err.contains("(100)") && err.contains("chargebacks"),
            "{err}"
        );
        let mut s = settings();
        s.learner.replay_positives = MAX_BATCH + 1;
        assert_eq!(s.check(0), Err(FeedbackSettingsError::Replay(100_001)));
        let mut s = settings();
        s.learner.params = OnlineLogisticParams::default().positive_weight(0.0);
        let err = s.check(0).unwrap_err().to_string();
        assert!(
            err.contains("positive_weight") && err.contains("got 0"),
            "{err}"
        );
    }
}
