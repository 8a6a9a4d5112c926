//! A batcher for arrangements whose updates come at few distinct, totally
//! ordered times, such as a windowed collection.
//!
//! Differential's default `MergeBatcher` sorts small chunks as they arrive
//! and merges them up a geometric ladder; every extraction merges the whole
//! ladder and sets aside what is not yet ready, to be merged again next
//! time. For a window, half of all updates (the retractions, a window
//! later) are set aside at every extraction. Here updates wait, unsorted,
//! in one bucket per time, and a bucket is sorted once, when the frontier
//! passes its time: each update is sorted once and moved twice.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use differential_dataflow::batcher::merge::Sealer;
use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::consolidation::consolidate_updates;
use differential_dataflow::difference::Semigroup;
use timely::order::TotalOrder;
use timely::progress::frontier::{Antichain, AntichainRef};
use timely::progress::Timestamp;

/// Updates `(data, time, diff)` kept in one unsorted bucket per time and
/// sealed into a batch by `S` once their time is complete.
///
/// ```
/// use differential_dataflow::batcher::{Batcher, Extract};
/// use differential_dataflow::trace::implementations::ValBuilder;
/// use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
/// use fraudflow::dataflow::batcher::BucketBatcher;
/// use timely::progress::Antichain;
///
/// let mut batcher = BucketBatcher::<(u64, u64), u64, isize, ValBuilder<u64, u64, u64, isize>>::default();
/// batcher.insert(&mut vec![((7, 1), 0, 1), ((7, 1), 10, -1), ((3, 2), 0, 1)]);
/// let (batch, lower) = batcher.extract(Antichain::from_elem(5).borrow());
/// assert_eq!(batch.map(|b| b.len()), Some(2));
/// assert_eq!(lower.to_owned(), Antichain::from_elem(10));
/// ```
pub struct BucketBatcher<D, T, R, S> {
    buckets: BTreeMap<T, Vec<(D, T, R)>>,
    /// The least time of a kept update, after the last extraction.
    lower: Antichain<T>,
    sealer: PhantomData<S>,
}

impl<D, T, R, S> Default for BucketBatcher<D, T, R, S> {
    fn default() -> Self {
        BucketBatcher {
            buckets: BTreeMap::new(),
            lower: Antichain::new(),
            sealer: PhantomData,
        }
    }
}

impl<D, T, R, S> BucketBatcher<D, T, R, S> {
    /// The constructor `arrange_named` calls; the batcher keeps no logs.
    pub fn new(_logger: Option<differential_dataflow::logging::Logger>, _operator: usize) -> Self {
        Self::default()
    }
}

impl<D, T, R, S> Batcher<Vec<(D, T, R)>> for BucketBatcher<D, T, R, S>
where
    D: Ord,
    T: Timestamp + TotalOrder,
    R: Semigroup,
    S: Sealer<Vec<(D, T, R)>>,
{
    fn insert(&mut self, container: &mut Vec<(D, T, R)>) {
        let mut updates = container.drain(..).peekable();
        while let Some(first) = updates.next() {
            // Updates of one time come in runs: one lookup a run.
            let bucket = self.buckets.entry(first.1.clone()).or_default();
            let time = first.1.clone();
            bucket.push(first);
            while let Some(next) = updates.next_if(|u| u.1 == time) {
                bucket.push(next);
            }
        }
    }
}

impl<D, T, R, S> Extract for BucketBatcher<D, T, R, S>
where
    D: Ord,
    T: Timestamp + TotalOrder,
    R: Semigroup,
    S: Sealer<Vec<(D, T, R)>>,
{
    type Time = T;
    type Output = S::Output;

    fn extract<'a>(
        &'a mut self,
        upper: AntichainRef<'_, T>,
    ) -> (Option<S::Output>, AntichainRef<'a, T>) {
        // Times are totally ordered: `upper` has at most one element, and
        // an update is ready when its time is below it.
        let kept = match upper.iter().next() {
            Some(bound) => self.buckets.split_off(bound),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut self.buckets, kept);
        let mut updates = Vec::new();
        for (_, mut bucket) in ready {
            if updates.is_empty() {
                updates = bucket;
            } else {
                updates.append(&mut bucket);
            }
        }
        consolidate_updates(&mut updates);
        self.lower.clear();
        if let Some(least) = self.buckets.keys().next() {
            self.lower.insert(least.clone());
        }
        let batch = if updates.is_empty() {
            None
        } else {
            S::seal(&mut vec![updates])
        };
        (batch, self.lower.borrow())
    }
}

#[cfg(test)]
mod tests {
    use differential_dataflow::trace::cursor::Cursor;
    use differential_dataflow::trace::implementations::ValBuilder;
    use differential_dataflow::trace::Navigable;

    use super::*;

    type Update = ((u64, u64), u64, isize);

    fn contents<B: Navigable<Cursor: Cursor<Storage = B>>>(batch: &B) -> Vec<Update>
    where
        B::Cursor: for<'a> Cursor<
            Key<'a> = &'a u64,
            Val<'a> = &'a u64,
            TimeGat<'a> = &'a u64,
            DiffGat<'a> = &'a isize,
        >,
    {
        let mut out = Vec::new();
        let mut cursor = batch.cursor();
        while let Some(&k) = cursor.get_key(batch) {
            while let Some(&v) = cursor.get_val(batch) {
                cursor.map_times(batch, |&t, &r| out.push(((k, v), t, r)));
                cursor.step_val(batch);
            }
            cursor.step_key(batch);
        }
        out
    }

    #[test]
    fn batches_hold_exactly_the_ready_updates_sorted_and_consolidated() {
        let mut batcher =
            BucketBatcher::<(u64, u64), u64, isize, ValBuilder<u64, u64, u64, isize>>::default();
        // Shuffled, with a run of one time split across containers, a pair
        // that cancels and a pair that adds up.
        batcher.insert(&mut vec![((5, 1), 3, 1), ((2, 9), 3, 1), ((2, 9), 3, 1)]);
        batcher.insert(&mut vec![((1, 1), 8, 1), ((4, 4), 3, 1), ((4, 4), 3, -1)]);
        batcher.insert(&mut vec![((9, 0), 1, 1), ((5, 1), 13, -1)]);

        let (batch, lower) = batcher.extract(Antichain::from_elem(4).borrow());
        assert_eq!(lower.to_owned(), Antichain::from_elem(8));
        let batch = batch.expect("updates at 1 and 3 are ready");
        assert_eq!(
            contents(&batch),
            [((2, 9), 3, 2), ((5, 1), 3, 1), ((9, 0), 1, 1)]
        );

        // Nothing between 4 and 8: no batch, the same lower bound.
        let (batch, lower) = batcher.extract(Antichain::from_elem(8).borrow());
        assert!(batch.is_none());
        assert_eq!(lower.to_owned(), Antichain::from_elem(8));

        // The empty frontier releases everything.
        let (batch, lower) = batcher.extract(Antichain::new().borrow());
        assert!(lower.is_empty());
        let batch = batch.expect("the rest");
        assert_eq!(contents(&batch), [((1, 1), 8, 1), ((5, 1), 13, -1)]);
    }
}
