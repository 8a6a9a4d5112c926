//! Sinks that write in a stable order whatever the number of workers.

use std::collections::BTreeMap;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::ExchangeData;

/// Gathers a stream on worker 0 and hands `write` each time's records,
/// sorted by `seq`, once the frontier has passed that time: the output is
/// the same bytes for any number of workers and processes. `write` may take
/// the records' contents (they are dropped after it).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use fraudflow::dataflow::sink::OrderedSink;
/// use timely::dataflow::operators::ToStream;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::example(move |scope| {
///     let write = move |xs: &mut [u64]| out.lock().unwrap().extend_from_slice(xs);
///     vec![3u64, 1, 2].to_stream(scope).ordered_sink(|x| *x, write, "Sorted");
/// });
/// assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
/// ```
pub trait OrderedSink<D> {
    fn ordered_sink<S, W>(self, seq: S, write: W, name: &str)
    where
        S: Fn(&D) -> u64 + 'static,
        W: FnMut(&mut [D]) + 'static;
}

impl<D: ExchangeData + Clone> OrderedSink<D> for Stream<'_, u64, Vec<D>> {
    fn ordered_sink<S, W>(self, seq: S, mut write: W, name: &str)
    where
        S: Fn(&D) -> u64 + 'static,
        W: FnMut(&mut [D]) + 'static,
    {
        let mut stash: BTreeMap<u64, Vec<D>> = BTreeMap::new();
        self.sink(Exchange::new(|_: &D| 0), name, move |(input, frontier)| {
            input.for_each(|cap, data| {
                if let Some(&time) = cap.least() {
                    stash.entry(time).or_default().append(data);
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let mut records = entry.remove();
                records.sort_by_key(|d| seq(d));
                write(&mut records);
            }
        });
    }
}

/// A sink's writer for state that only worker 0 owns (`None` elsewhere):
/// hands each batch to `f` where the state exists.
pub fn on_owner<T, D>(
    owner: &std::rc::Rc<std::cell::RefCell<Option<T>>>,
    f: impl Fn(&mut T, &mut [D]),
) -> impl FnMut(&mut [D]) {
    let owner = std::rc::Rc::clone(owner);
    move |batch| {
        if let Some(state) = owner.borrow_mut().as_mut() {
            f(state, batch)
        }
    }
}
