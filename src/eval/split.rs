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

/// The hours at which the running count of rows passes 70 % and 85 %.
fn default_cuts(hours: &[u32], last: u32) -> (u32, u32) {
    let mut per_hour: BTreeMap<u32, usize> = BTreeMap::new();
    for &h in hours {
        *per_hour.entry(h).or_default() += 1;
    }
    let n = hours.len() as f64;
    let (mut seen, mut cuts) = (0usize, Vec::new());
    let mut shares = [0.70, 0.85].into_iter().peekable();
    for (&hour, &count) in &per_hour {
        seen += count;
        // An hour holds one cut at most: the next share moves on.
        if shares.next_if(|&share| seen as f64 >= share * n).is_some() {
            cuts.push(hour);
        }
    }
    let t = cuts.first().copied().unwrap_or(last);
    (t, cuts.get(1).copied().unwrap_or(t))
}

/// Splits rows by their hours: up to `train_last` train, up to
/// `validation_last` validate, the rest test. `explicit` names the two
/// cuts; by default they are where 70 % and 85 % of the rows are passed.
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
        None => default_cuts(hours, last),
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

    #[test]
    fn hours_are_paysim_steps_and_saturate() {
        assert_eq!(hour_of(743 * STEP_MS), 743);
        assert_eq!(hour_of(744 * STEP_MS - 1), 743);
        assert_eq!(hour_of(u64::MAX), u32::MAX);
    }
}
