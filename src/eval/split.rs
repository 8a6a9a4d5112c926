//! The chronological split, defined once: by the hour of event time (a
//! PaySim step is one hour), so a PaySim file and the same events as JSON
//! lines split alike. A random split would leak the future.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::event::STEP_MS;

/// The split's unit for an event at `time_ms`: whole hours since the epoch,
/// which is the step of a PaySim row (its time is step hours).
pub fn hour_of(time_ms: u64) -> u32 {
    u32::try_from(time_ms / STEP_MS).unwrap_or(u32::MAX)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("no events to split")]
    Empty,
    #[error("the events fall in {hours} distinct hour(s) (steps) {list}; a chronological split into training, validation and test needs at least 3")]
    TooFewHours { hours: usize, list: String },
    #[error("the {part} split (steps {first}..={last}) is empty; choose other steps with --split")]
    EmptyPart {
        part: &'static str,
        first: u32,
        last: u32,
    },
    #[error(
        "--split {train},{validation}: the training steps must end before the validation steps do"
    )]
    Order { train: u32, validation: u32 },
}

/// Row indices of each part, in the order given.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
    pub train_last: u32,
    pub validation_last: u32,
}

/// The shares of the rows that the default split trains on, then trains
/// and validates on.
pub const DEFAULT_SHARES: (f64, f64) = (0.70, 0.85);

/// The default cuts: the first hours at which the running count of rows
/// reaches 70 % and 85 %, moved earlier where needed so that validation and
/// test each keep at least one hour that has events (on a short file the
/// largest hour would otherwise swallow both cuts).
fn default_cuts(hours: &[u32]) -> Result<(u32, u32), SplitError> {
    let mut per_hour: BTreeMap<u32, usize> = BTreeMap::new();
    for &h in hours {
        *per_hour.entry(h).or_default() += 1;
    }
    let present: Vec<u32> = per_hour.keys().copied().collect();
    if present.len() < 3 {
        let list: Vec<String> = present.iter().map(u32::to_string).collect();
        return Err(SplitError::TooFewHours {
            hours: present.len(),
            list: list.join(", "),
        });
    }
    let n = hours.len() as f64;
    let mut running = 0usize;
    let cumulative: Vec<f64> = per_hour
        .values()
        .map(|&count| {
            running += count;
            running as f64 / n
        })
        .collect();
    let reaching = |share: f64| cumulative.iter().position(|&c| c >= share);
    let last = present.len() - 1;
    let t = reaching(DEFAULT_SHARES.0).unwrap_or(last).min(last - 2);
    let v = reaching(DEFAULT_SHARES.1)
        .unwrap_or(last)
        .clamp(t + 1, last - 1);
    Ok((present[t], present[v]))
}

/// Splits rows by their hours: up to `train_last` train, up to
/// `validation_last` validate, the rest test. `explicit` names the two
/// cuts; by default they are the first hours where 70 % and 85 % of the
/// rows are reached, kept far enough apart that every part has an hour with
/// events whenever the rows fall in three hours or more.
///
/// ```
/// use fraudflow::eval::split::split;
/// let hours: Vec<u32> = (1..=20).collect();
/// let s = split(&hours, None).unwrap();
/// assert_eq!((s.train_last, s.validation_last), (14, 17));
/// assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (14, 3, 3));
/// ```
pub fn split(hours: &[u32], explicit: Option<(u32, u32)>) -> Result<Split, SplitError> {
    let first = *hours.iter().min().ok_or(SplitError::Empty)?;
    let last = *hours.iter().max().ok_or(SplitError::Empty)?;
    let (train_last, validation_last) = match explicit {
        Some((t, v)) if t >= v => {
            return Err(SplitError::Order {
                train: t,
                validation: v,
            })
        }
        Some(cuts) => cuts,
        None => default_cuts(hours)?,
    };
    let mut parts = Split {
        train_last,
        validation_last,
        ..Split::default()
    };
    for (i, &h) in hours.iter().enumerate() {
        if h <= train_last {
            parts.train.push(i)
        } else if h <= validation_last {
            parts.validation.push(i)
        } else {
            parts.test.push(i)
        }
    }
    let ranges = [
        ("training", &parts.train, first, train_last),
        (
            "validation",
            &parts.validation,
            train_last + 1,
            validation_last,
        ),
        (
            "test",
            &parts.test,
            validation_last + 1,
            last.max(validation_last + 1),
        ),
    ];
    for (part, rows, first, last) in ranges {
        if rows.is_empty() {
            return Err(SplitError::EmptyPart { part, first, last });
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_split_is_chronological_at_70_and_85_percent() {
        let hours: Vec<u32> = (1..=100).collect();
        let parts = split(&hours, None).unwrap();
        assert_eq!((parts.train_last, parts.validation_last), (70, 85));
        assert_eq!(parts.train, (0..70).collect::<Vec<_>>());
        assert_eq!(parts.test.first(), Some(&85));
        let parts = split(&hours, Some((50, 60))).unwrap();
        assert_eq!(parts.validation.len(), 10);
        assert_eq!(
            split(&hours, Some((60, 50))),
            Err(SplitError::Order {
                train: 60,
                validation: 50
            })
        );
        assert!(matches!(
            split(&hours, Some((90, 100))),
            Err(SplitError::EmptyPart { part: "test", .. })
        ));
        assert_eq!(split(&[], None), Err(SplitError::Empty));
    }

    /// The default cuts recomputed plainly: for every pair of hours with
    /// events (t < v < the last), the parts each non-empty; among them the
    /// pair whose running shares first reach 70 % and 85 %, or else the
    /// latest pair that still leaves later hours.
    fn oracle(hours: &[u32]) -> Option<(u32, u32)> {
        let mut present: Vec<u32> = hours.to_vec();
        present.sort_unstable();
        present.dedup();
        if present.len() < 3 {
            return None;
        }
        let share = |h: u32| hours.iter().filter(|&&x| x <= h).count() as f64 / hours.len() as f64;
        let k = present.len();
        let first_reaching = |s: f64| present.iter().position(|&h| share(h) >= s).unwrap_or(k - 1);
        let t = first_reaching(0.70).min(k - 3);
        let v = first_reaching(0.85).max(t + 1).min(k - 2);
        Some((present[t], present[v]))
    }

    #[test]
    fn the_default_split_leaves_every_part_an_hour_with_events() {
        // Regression: a file whose largest hour held both the 70 % and the
        // 85 % mark (the genuine slice: steps 1-9, step 8 holding half the
        // rows) left the test split empty.
        let slice_like: Vec<u32> = [
            (1, 27),
            (2, 10),
            (3, 5),
            (4, 6),
            (5, 7),
            (6, 17),
            (7, 68),
            (8, 211),
            (9, 63),
        ]
        .iter()
        .flat_map(|&(h, n)| std::iter::repeat_n(h, n))
        .collect();
        let parts = split(&slice_like, None).unwrap();
        assert_eq!((parts.train_last, parts.validation_last), (7, 8));
        assert!(!parts.test.is_empty());

        let mut rng = crate::generate::Rng::seed_from(17);
        for case in 0..500 {
            let hours_present = 1 + rng.below(12) as u32;
            let gap = 1 + rng.below(50) as u32;
            let rows = 1 + rng.below(300) as usize;
            let hours: Vec<u32> = (0..rows)
                .map(|_| {
                    // Skewed: a few heavy hours, with gaps between hours.
                    let h = rng.below(u64::from(hours_present)) as u32;
                    let h = if rng.below(3) == 0 { h.min(2) } else { h };
                    h * gap
                })
                .collect();
            match (split(&hours, None), oracle(&hours)) {
                (Ok(parts), Some(cuts)) => {
                    assert_eq!(
                        (parts.train_last, parts.validation_last),
                        cuts,
                        "case {case}"
                    );
                    assert!(
                        !parts.train.is_empty()
                            && !parts.validation.is_empty()
                            && !parts.test.is_empty()
                    );
                    assert_eq!(
                        parts.train.len() + parts.validation.len() + parts.test.len(),
                        rows
                    );
                }
                (Err(SplitError::TooFewHours { hours: n, .. }), None) => assert!(n < 3),
                (got, want) => panic!("case {case}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn hours_are_paysim_steps_and_saturate() {
        assert_eq!(hour_of(743 * STEP_MS), 743);
        assert_eq!(hour_of(744 * STEP_MS - 1), 743);
        assert_eq!(hour_of(u64::MAX), u32::MAX);
    }
}
