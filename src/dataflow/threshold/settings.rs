//! The adaptive threshold's settings, checked before a run starts: each
//! refusal names the setting and its value.

use thiserror::Error;

use crate::event::STEP_MS;

/// A setting of the adaptive threshold that cannot work.
#[derive(Debug, Error, PartialEq)]
pub enum ThresholdSettingsError {
    #[error("the adaptive threshold's budget must be in (0, 1], got {0}")]
    Budget(f64),
    #[error("the adaptive threshold's interval must be at least 1 ms, got {0} ms")]
    Every(u64),
    #[error(
        "the adaptive threshold's window ({window_ms} ms) must be a whole number (at least 1) \
         of its interval ({every_ms} ms)"
    )]
    Window { window_ms: u64, every_ms: u64 },
    #[error(
        "the adaptive threshold's floor ({floor}) and ceiling ({ceiling}) must lie in [0, 1], \
         the floor not above the ceiling"
    )]
    Bounds { floor: f64, ceiling: f64 },
    #[error(
        "the adaptive threshold's interval ({every_ms} ms) must be longer than the source's \
         allowed lateness ({lateness_ms} ms): a change cannot apply before every score it \
         is found on is placed"
    )]
    Lateness { every_ms: u64, lateness_ms: u64 },
}

/// How the alert threshold follows the scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdSettings {
    /// The share of events to alert on (the bundle's budget by default).
    pub budget: f64,
    /// The scores a tick looks back on (ms of event time).
    pub window_ms: u64,
    /// Ticks are this far apart, and a change applies this long after the
    /// tick that found it (ms of event time).
    pub every_ms: u64,
    /// The threshold never goes below `floor` nor above `ceiling`.
    pub floor: f64,
    pub ceiling: f64,
    /// Fewer scores in the window than this: the threshold stays.
    pub min_samples: usize,
}

impl ThresholdSettings {
    /// The defaults for a bundle's `budget`: a day's window, a change an
    /// hour at most, at least 1,000 scores, and no bounds but the score's
    /// own range (a bundle's trained threshold may be far below 0.01: set
    /// the floor and the ceiling around it).
    ///
    /// ```
    /// use fraudflow::dataflow::threshold::ThresholdSettings;
    /// let s = ThresholdSettings::for_budget(0.005);
    /// assert_eq!((s.window_ms, s.every_ms, s.min_samples), (86_400_000, 3_600_000, 1_000));
    /// assert_eq!(s.check(120_000), Ok(()));
    /// ```
    pub fn for_budget(budget: f64) -> ThresholdSettings {
        ThresholdSettings {
            budget,
            window_ms: 24 * STEP_MS,
            every_ms: STEP_MS,
            floor: 0.0,
            ceiling: 1.0,
            min_samples: 1_000,
        }
    }

    /// Checks every setting; `lateness_ms` is the source's allowed
    /// lateness.
    pub fn check(&self, lateness_ms: u64) -> Result<(), ThresholdSettingsError> {
        use ThresholdSettingsError as E;
        if !(self.budget > 0.0 && self.budget <= 1.0) {
            return Err(E::Budget(self.budget));
        }
        if self.every_ms == 0 {
            return Err(E::Every(0));
        }
        if self.window_ms == 0 || !self.window_ms.is_multiple_of(self.every_ms) {
            return Err(E::Window {
                window_ms: self.window_ms,
                every_ms: self.every_ms,
            });
        }
        let unit = 0.0..=1.0;
        let (floor, ceiling) = (self.floor, self.ceiling);
        if !(unit.contains(&floor) && unit.contains(&ceiling) && floor <= ceiling) {
            return Err(E::Bounds { floor, ceiling });
        }
        if self.every_ms <= lateness_ms {
            return Err(E::Lateness {
                every_ms: self.every_ms,
                lateness_ms,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_setting_is_named_with_its_value() {
        use ThresholdSettingsError as E;
        let ok = ThresholdSettings::for_budget(0.005);
        let with = |f: &dyn Fn(&mut ThresholdSettings)| {
            let mut s = ok;
            f(&mut s);
            s.check(1_000)
        };
        assert_eq!(with(&|s| s.budget = 0.0), Err(E::Budget(0.0)));
        assert!(with(&|s| s.budget = f64::NAN).is_err());
        assert_eq!(with(&|s| s.every_ms = 0), Err(E::Every(0)));
        let window = with(&|s| s.window_ms = STEP_MS + 1).unwrap_err();
        assert!(window.to_string().contains("3600001 ms"), "{window}");
        assert!(with(&|s| s.window_ms = 0).is_err());
        let bounds = with(&|s| {
            s.floor = 0.995;
            s.ceiling = 0.99
        });
        assert_eq!(
            bounds.unwrap_err(),
            E::Bounds {
                floor: 0.995,
                ceiling: 0.99
            }
        );
        assert!(with(&|s| s.ceiling = 1.5).is_err());
        assert!(with(&|s| s.floor = f64::NAN).is_err());
        let late = with(&|s| {
            s.every_ms = 1_000;
            s.window_ms = 1_000
        });
        assert_eq!(
            late,
            Err(E::Lateness {
                every_ms: 1_000,
                lateness_ms: 1_000
            })
        );
    }
}
