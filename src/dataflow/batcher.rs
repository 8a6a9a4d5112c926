//! The batcher of a sliding-window arrangement.
//!
//! A windowed collection holds each record from its time `t` until
//! `t + window`: every update `(d, t, r)` comes with its retraction
//! `(d, t + window, -r)`. Differential's default `MergeBatcher` would take
//! both from the dataflow, sort small chunks as they arrive, merge them up
//! a geometric ladder, and at every extraction merge the whole ladder and
//! set aside the retractions not yet due, to be merged again next time.
//!
//! Here the batcher is given only the entering updates and makes the
//! retractions itself. Updates wait, unsorted, in one vector; when the
//! frontier passes them they are sorted once, and their retractions join
//! one queue in the order they fall due (each extraction's are due after
//! all held before: they are a window after times the frontier had not yet
//! passed). Retractions that fall due are sorted as a run, which costs
//! little when they share a time (PaySim's steps: already in order), and
//! merged with whatever enters then. Half the updates cross the dataflow,
//! and nothing is kept per distinct time: sparse time (every update its own
//! time) costs what dense time does.

use std::cell::Cell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::Rc;

use differential_dataflow::batcher::merge::Sealer;
use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::consolidation::consolidate_updates;
use timely::progress::frontier::{Antichain, AntichainRef};

/// An update of a windowed collection: data, time, count.
pub type Update<D> = (D, u64, isize);

/// Batches a windowed collection from its entering updates alone: each
/// `(d, t, r)` inserted is in the collection from `t` and leaves it at
/// `t + window`, as `(d, t + window, -r)`. Batches are sealed by `S`.
///
/// ```
/// use differential_dataflow::batcher::{Batcher, Extract};
/// use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
/// use differential_dataflow::trace::implementations::ValBuilder;
/// use fraudflow::dataflow::batcher::WindowBatcher;
/// use timely::progress::Antichain;
///
/// let mut batcher = WindowBatcher::<(u64, u64), ValBuilder<u64, u64, u64, isize>>::new(10);
/// batcher.insert(&mut vec![((7, 1), 0, 1), ((3, 2), 0, 1)]);
/// let (batch, lower) = batcher.extract(Antichain::from_elem(5).borrow());
/// assert_eq!(batch.map(|b| b.len()), Some(2));
/// // Both leave at 10: the batcher holds that time.
/// assert_eq!(lower.to_owned(), Antichain::from_elem(10));
/// ```
pub struct WindowBatcher<D, S> {
    window: u64,
    /// Entering updates not yet extracted, unsorted.
    entering: Vec<Update<D>>,
    /// Retractions of extracted updates, consolidated, in the order they
    /// fall due (by time, then data).
    leaving: VecDeque<Update<D>>,
    /// The least time of a held update, after the last extraction.
    lower: Antichain<u64>,
    /// Where to say how many updates it holds, after each extraction.
    held: Option<Rc<Cell<usize>>>,
    sealer: PhantomData<S>,
}

impl<D: Ord + Clone, S> WindowBatcher<D, S> {
    /// Queues the retractions of `entered` (consolidated) a window after
    /// each one's time, keeping the queue in the order they fall due.
    fn queue_retractions(&mut self, entered: &[Update<D>]) {
        let window = self.window;
        let mut retractions: Vec<Update<D>> = entered
            .iter()
            .map(|(d, t, r)| (d.clone(), t.saturating_add(window), -r))
            .collect();
        // `entered` is consolidated, so in (data, time) order, and adding
        // the window keeps times in order: sorting by time alone, stably,
        // gives (time, data) order comparing only times.
        retractions.sort_by_key(|u| u.1);
        let in_order = match (self.leaving.back(), retractions.first()) {
            (Some(last), Some(first)) => (last.1, &last.0) <= (first.1, &first.0),
            _ => true,
        };
        self.leaving.extend(retractions);
        if !in_order {
            // Not met by a source whose updates never come before the
            // frontier; kept right should one.
            let queue = self.leaving.make_contiguous();
            queue.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        }
    }
}

impl<D, S> WindowBatcher<D, S> {
    /// A batcher whose records stay `window` (at least 1) units of time.
    pub fn new(window: u64) -> Self {
        WindowBatcher {
            window: window.max(1),
            entering: Vec::new(),
            leaving: VecDeque::new(),
            lower: Antichain::new(),
            held: None,
            sealer: PhantomData,
        }
    }

    /// The same batcher, saying in `held` after each extraction how many
    /// records it holds: those in the window (their retractions not yet
    /// due) and those not yet extracted. That is the window's size, for a
    /// gauge of the arrangement's state, read without walking the trace.
    pub fn reporting(mut self, held: Rc<Cell<usize>>) -> Self {
        self.held = Some(held);
        self
    }
}

impl<D, S> Batcher<Vec<Update<D>>> for WindowBatcher<D, S>
where
    D: Ord + Clone,
    S: Sealer<Vec<Update<D>>>,
{
    fn insert(&mut self, container: &mut Vec<Update<D>>) {
        self.entering.append(container);
    }
}

impl<D, S> Extract for WindowBatcher<D, S>
where
    D: Ord + Clone,
    S: Sealer<Vec<Update<D>>>,
{
    type Time = u64;
    type Output = S::Output;

    fn extract<'a>(
        &'a mut self,
        upper: AntichainRef<'_, u64>,
    ) -> (Option<S::Output>, AntichainRef<'a, u64>) {
        // Times are totally ordered: `upper` has at most one element, and
        // an update is ready when its time is below it (all are when it is
        // empty).
        let bound = upper.iter().next().copied();
        let ready = |time: u64| bound.is_none_or(|b| time < b);
        // The ready updates, in their order, at their final size: all of
        // them (the common case) without a copy; the rest stay in place.
        let count = self.entering.iter().filter(|u| ready(u.1)).count();
        let mut entered = if count == self.entering.len() {
            std::mem::take(&mut self.entering)
        } else {
            let mut entered = Vec::with_capacity(count);
            entered.extend(self.entering.extract_if(.., |u| ready(u.1)));
            entered
        };
        consolidate_updates(&mut entered);
        self.queue_retractions(&entered);
        let due = self.leaving.iter().take_while(|u| ready(u.1)).count();
        let mut left: Vec<_> = self.leaving.drain(..due).collect();
        consolidate_updates(&mut left);
        let updates = merge(entered, left);

        self.lower.clear();
        let waiting = self.entering.iter().map(|u| u.1).min();
        if let Some(least) = waiting
            .into_iter()
            .chain(self.leaving.front().map(|u| u.1))
            .min()
        {
            self.lower.insert(least);
        }
        if let Some(held) = &self.held {
            held.set(self.entering.len() + self.leaving.len());
        }
        let batch = if updates.is_empty() {
            None
        } else {
            S::seal(&mut vec![updates])
        };
        (batch, self.lower.borrow())
    }
}

/// Merges two sorted, consolidated runs; equal `(data, time)` add up, and
/// those that add up to zero go.
fn merge<D: Ord>(a: Vec<Update<D>>, b: Vec<Update<D>>) -> Vec<Update<D>> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => (&x.0, x.1).cmp(&(&y.0, y.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match order {
            std::cmp::Ordering::Less => out.extend(a.next()),
            std::cmp::Ordering::Greater => out.extend(b.next()),
            std::cmp::Ordering::Equal => {
                if let (Some(mut x), Some(y)) = (a.next(), b.next()) {
                    x.2 += y.2;
                    if x.2 != 0 {
                        out.push(x);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use differential_dataflow::trace::cursor::Cursor;
    use differential_dataflow::trace::implementations::ValBuilder;
    use differential_dataflow::trace::Navigable;

    use super::*;

    type Window = WindowBatcher<(u64, u64), ValBuilder<u64, u64, u64, isize>>;

    fn contents<B: Navigable<Cursor: Cursor<Storage = B>>>(batch: &B) -> Vec<Update<(u64, u64)>>
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

    fn extract(batcher: &mut Window, upper: Option<u64>) -> (Vec<Update<(u64, u64)>>, Option<u64>) {
        let upper = upper.map_or_else(Antichain::new, Antichain::from_elem);
        let (batch, lower) = batcher.extract(upper.borrow());
        let lower = lower.iter().next().copied();
        (batch.map(|b| contents(&b)).unwrap_or_default(), lower)
    }

    #[test]
    fn each_update_enters_at_its_time_and_leaves_a_window_later() {
        let mut batcher = Window::new(10);
        // Shuffled, a run of one time split across containers, a pair that
        // cancels and a pair that adds up.
        batcher.insert(&mut vec![((5, 1), 3, 1), ((2, 9), 3, 1), ((2, 9), 3, 1)]);
        batcher.insert(&mut vec![((1, 1), 8, 1), ((4, 4), 3, 1), ((4, 4), 3, -1)]);
        batcher.insert(&mut vec![((9, 0), 1, 1)]);

        assert_eq!(
            extract(&mut batcher, Some(4)),
            (
                vec![((2, 9), 3, 2), ((5, 1), 3, 1), ((9, 0), 1, 1)],
                Some(8)
            )
        );
        // Nothing between 4 and 8: no batch.
        assert_eq!(extract(&mut batcher, Some(8)), (vec![], Some(8)));
        // (9, 0) leaves at 11, and a newcomer enters at 11 with the same
        // data: they cancel.
        batcher.insert(&mut vec![((9, 0), 11, 1), ((6, 6), 12, 1)]);
        assert_eq!(
            extract(&mut batcher, Some(12)),
            (vec![((1, 1), 8, 1)], Some(12))
        );
        // Those of time 3 leave at 13, beside (6, 6) entering at 12.
        assert_eq!(
            extract(&mut batcher, Some(14)),
            (
                vec![((2, 9), 13, -2), ((5, 1), 13, -1), ((6, 6), 12, 1)],
                Some(18)
            )
        );
        // The empty frontier releases everything still held.
        assert_eq!(
            extract(&mut batcher, None),
            (
                vec![((1, 1), 18, -1), ((6, 6), 22, -1), ((9, 0), 21, -1)],
                None
            )
        );
    }

    #[test]
    fn a_window_shorter_than_the_extracted_span_retracts_in_the_same_batch() {
        let mut batcher = Window::new(2);
        batcher.insert(&mut vec![((1, 1), 0, 1), ((2, 2), 1, 1)]);
        assert_eq!(
            extract(&mut batcher, Some(10)),
            (
                vec![
                    ((1, 1), 0, 1),
                    ((1, 1), 2, -1),
                    ((2, 2), 1, 1),
                    ((2, 2), 3, -1)
                ],
                None
            )
        );
    }

    #[test]
    fn retractions_leave_in_order_when_many_times_enter_at_once() {
        // Every update its own time, all extracted together (sparse time
        // sent at one logical time), then released a stretch at a time.
        let mut batcher = Window::new(50);
        let mut updates: Vec<Update<(u64, u64)>> =
            (0..40u64).rev().map(|t| ((t % 7, t), t, 1)).collect();
        batcher.insert(&mut updates);
        let (batch, lower) = batcher.extract(Antichain::from_elem(40).borrow());
        assert_eq!(batch.map(|b| contents(&b).len()), Some(40));
        assert_eq!(lower.to_owned(), Antichain::from_elem(50));
        let mut from = 50;
        for bound in [53u64, 65, 91] {
            let (batch, lower) = batcher.extract(Antichain::from_elem(bound).borrow());
            let got = batch.map(|b| contents(&b)).unwrap_or_default();
            let mut want: Vec<Update<(u64, u64)>> = (0..40u64)
                .filter(|t| (from..bound).contains(&(t + 50)))
                .map(|t| ((t % 7, t), t + 50, -1))
                .collect();
            want.sort();
            assert_eq!(got, want, "released before {bound}");
            let next = (bound < 90).then_some(bound);
            assert_eq!(lower.to_owned(), Antichain::from_iter(next), "{bound}");
            from = bound;
        }
    }

    #[test]
    fn it_reports_the_records_it_holds_after_each_extraction() {
        let held = Rc::new(Cell::new(usize::MAX));
        let mut batcher = Window::new(10).reporting(Rc::clone(&held));
        batcher.insert(&mut vec![((1, 1), 0, 1), ((2, 2), 3, 1), ((3, 3), 12, 1)]);
        // Two in the window (their retractions due at 10 and 13), one not
        // yet extracted; a pair that cancels holds nothing.
        batcher.insert(&mut vec![((4, 4), 1, 1), ((4, 4), 1, -1)]);
        extract(&mut batcher, Some(5));
        assert_eq!(held.get(), 3);
        // At 11 the first has left; the third entered.
        extract(&mut batcher, Some(13));
        assert_eq!(held.get(), 2);
        extract(&mut batcher, None);
        assert_eq!(held.get(), 0);
    }

    #[test]
    fn merging_adds_equal_updates_and_drops_zeros() {
        let a = vec![((1, 0), 5, 1), ((2, 0), 5, 1), ((4, 0), 5, 1)];
        let b = vec![((2, 0), 5, -1), ((3, 0), 5, 2), ((4, 0), 5, 1)];
        let c = vec![((0, 0), 9, 1)];
        assert_eq!(
            merge(merge(a, b), c),
            [
                ((0, 0), 9, 1),
                ((1, 0), 5, 1),
                ((3, 0), 5, 2),
                ((4, 0), 5, 2)
            ]
        );
    }
}
