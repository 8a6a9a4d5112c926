//! The rows of a mini-batch: the batch, then the replayed fraud examples,
//! and what the replay keeps of each batch.

use std::collections::VecDeque;

use ndarray::{Array1, Array2};

use super::Example;

/// The batch, then the replayed fraud examples it does not hold (a
/// transaction in both is fitted with the batch's label).
pub(super) fn with_replay<'a>(
    batch: &'a [Example],
    replay: &'a VecDeque<Example>,
) -> Vec<&'a Example> {
    let fresh = replay.iter().filter(|r| batch.iter().all(|b| b.id != r.id));
    batch.iter().chain(fresh).collect()
}

/// The rows' features (the first `width` values of each) and labels.
pub(super) fn design(rows: &[&Example], width: usize) -> (Array2<f64>, Array1<bool>) {
    let mut x = Array2::zeros((rows.len(), width));
    for (i, e) in rows.iter().enumerate() {
        for (j, v) in e.values.0.iter().take(width).enumerate() {
            x[[i, j]] = *v;
        }
    }
    (x, rows.iter().map(|e| e.is_fraud).collect())
}

/// Keeps the batch's fraud examples as the most recent in `replay`, at
/// most `keep` of them: a missed fraud comes back once, as a chargeback,
/// and is the example that says most about a new pattern, so it is fitted
/// again with the batches after it until newer frauds push it out. A
/// transaction the batch labels legitimate leaves the replay.
pub(super) fn remember(replay: &mut VecDeque<Example>, batch: &[Example], keep: usize) {
    for e in batch {
        replay.retain(|r| r.id != e.id);
        if e.is_fraud && keep > 0 {
            replay.push_back(e.clone());
        }
    }
    while replay.len() > keep {
        replay.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::feedback::Kept;
    use crate::event::EventId;
    use crate::features::FeatureVec;

    fn example(id: u64, is_fraud: bool, value: f64) -> Example {
        Example {
            time: id,
            seq: id,
            id: EventId::Row(id),
            is_fraud,
            values: Kept(FeatureVec::from_slice(&[value, -value])),
        }
    }

    fn ids(rows: &[&Example]) -> Vec<(u64, bool)> {
        let id = |e: &Example| match e.id {
            EventId::Row(n) => n,
            EventId::Named(_) => u64::MAX,
        };
        rows.iter().map(|e| (id(e), e.is_fraud)).collect()
    }

    #[test]
    fn the_replay_keeps_the_latest_frauds_and_adds_them_after_the_batch() {
        let mut replay = VecDeque::new();
        let first = [
            example(1, true, 1.0),
            example(2, false, 2.0),
            example(3, true, 3.0),
        ];
        remember(&mut replay, &first, 2);
        let second = [example(4, true, 4.0), example(3, false, 3.0)];
        // 3 is in the batch: fitted once, with the batch's label.
        let rows = with_replay(&second, &replay);
        assert_eq!(ids(&rows), [(4, true), (3, false), (1, true)]);
        let (x, y) = design(&rows, 2);
        assert_eq!(x, ndarray::array![[4.0, -4.0], [3.0, -3.0], [1.0, -1.0]]);
        assert_eq!(y, ndarray::array![true, false, true]);
        // Relabelled legitimate, 3 leaves; 4 is the newest; the oldest goes.
        remember(&mut replay, &second, 2);
        let kept: Vec<&Example> = replay.iter().collect();
        assert_eq!(ids(&kept), [(1, true), (4, true)]);
        remember(&mut replay, &[example(5, true, 5.0)], 2);
        let kept: Vec<&Example> = replay.iter().collect();
        assert_eq!(ids(&kept), [(4, true), (5, true)]);
        // None kept: the batch alone.
        remember(&mut replay, &[example(6, true, 6.0)], 0);
        assert!(replay.is_empty());
    }
}
