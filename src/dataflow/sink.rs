//! Sinks that write in a stable order whatever the number of workers.
//!
//! An output file is one sequence of lines in input order (`seq`), however
//! many workers and processes made them. Gathering every record on one
//! worker and formatting it there makes that worker the pipeline's funnel:
//! a record per event crosses to it, and it alone turns millions of
//! records into text while the others wait. So each worker formats the
//! records it made, sorted by `seq`, into [`Lines`]: one block per
//! container, with each line's `seq` and end. Only the blocks travel to the
//! writer, which merges each time's blocks by `seq` once the frontier has
//! passed it ([`Lines::merge`]): a stretch of one block that no other block
//! interleaves is copied as one slice, so with one worker a block is
//! written as it came, and with several the writer copies bytes but never
//! formats. The text is the same bytes for any number of workers and
//! processes.
//!
//! Every output of one line per event goes this way: the feature table, a
//! backtest's alerts and scores, and a live run's alerts and normal
//! traffic (whose workers also time each outcome as they format it, with
//! [`FormatLines::format_lines_then`]).
//!
//! [`OrderedSink`] is the plain form, for streams of few records (dead
//! letters) or of records no text is made of (training's feature rows):
//! the records themselves travel to worker 0 and are written in `seq`
//! order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
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
        on_worker_0_by_time(self, name, move |mut records| {
            records.sort_by_key(|d| seq(d));
            write(&mut records);
        });
    }
}

/// Gathers a stream on worker 0 and hands `complete` each time's records,
/// times in order, once the frontier has passed that time.
fn on_worker_0_by_time<D: ExchangeData>(
    stream: Stream<'_, u64, Vec<D>>,
    name: &str,
    mut complete: impl FnMut(Vec<D>) + 'static,
) {
    let mut stash: BTreeMap<u64, Vec<D>> = BTreeMap::new();
    stream.sink(Exchange::new(|_: &D| 0), name, move |(input, frontier)| {
        input.for_each(|cap, data| {
            if let Some(&time) = cap.least() {
                stash.entry(time).or_default().append(data);
            }
        });
        while let Some(entry) = stash.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            complete(entry.remove());
        }
    });
}

/// Lines formatted on one worker, in `seq` order: each line's `seq` and
/// where it ends in `bytes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lines {
    seqs: Vec<u64>,
    ends: Vec<usize>,
    bytes: Vec<u8>,
}

/// Text ready to write: whole lines, in `seq` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    pub lines: u64,
    pub bytes: Vec<u8>,
}

impl Lines {
    /// Sorts `records` by `seq` and appends what `format` makes of each: a
    /// line, or nothing (a record with no line takes no place).
    ///
    /// ```
    /// use fraudflow::dataflow::sink::Lines;
    /// let mut xs = vec![(4u64, "d"), (1, ""), (2, "b")];
    /// let lines = Lines::format(&mut xs, |x| x.0, |x, out| {
    ///     if !x.1.is_empty() {
    ///         out.extend_from_slice(x.1.as_bytes());
    ///         out.push(b'\n');
    ///     }
    /// });
    /// assert_eq!(lines.len(), 2);
    /// assert_eq!(Lines::merge(vec![lines]).bytes, b"b\nd\n");
    /// ```
    pub fn format<D>(
        records: &mut [D],
        seq: impl Fn(&D) -> u64,
        mut format: impl FnMut(&D, &mut Vec<u8>),
    ) -> Lines {
        records.sort_unstable_by_key(|d| seq(d));
        let mut lines = Lines::default();
        for d in records.iter() {
            let before = lines.bytes.len();
            format(d, &mut lines.bytes);
            if lines.bytes.len() > before {
                lines.seqs.push(seq(d));
                lines.ends.push(lines.bytes.len());
            }
        }
        lines
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// The bytes of lines `from..to`.
    fn slice(&self, from: usize, to: usize) -> &[u8] {
        let start = from.checked_sub(1).map_or(0, |i| self.ends[i]);
        &self.bytes[start..self.ends[to - 1]]
    }

    /// The lines of `blocks` (each in `seq` order) as one text in `seq`
    /// order. Each turn copies the block with the least next `seq` up to
    /// the next `seq` of any other: a block no other interleaves is one
    /// copy, and a lone block is moved, not copied. Lines of equal `seq`
    /// (which the pipeline never makes) keep their blocks' order.
    ///
    /// ```
    /// use fraudflow::dataflow::sink::Lines;
    /// let block = |xs: &[u64]| {
    ///     let mut xs = xs.to_vec();
    ///     Lines::format(&mut xs, |x| *x, |x, out| out.extend_from_slice(format!("{x}\n").as_bytes()))
    /// };
    /// let text = Lines::merge(vec![block(&[1, 2, 7]), block(&[3, 4]), block(&[5])]);
    /// assert_eq!((text.lines, text.bytes), (6, b"1\n2\n3\n4\n5\n7\n".to_vec()));
    /// ```
    pub fn merge(mut blocks: Vec<Lines>) -> Text {
        blocks.retain(|b| !b.is_empty());
        let lines = blocks.iter().map(|b| b.len() as u64).sum();
        if blocks.len() <= 1 {
            let bytes = blocks.pop().map(|b| b.bytes).unwrap_or_default();
            return Text { lines, bytes };
        }
        let mut bytes = Vec::with_capacity(blocks.iter().map(|b| b.bytes.len()).sum());
        // (next seq, block): the block with the least next seq on top.
        let mut next: BinaryHeap<Reverse<(u64, usize)>> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| Reverse((b.seqs[0], i)))
            .collect();
        let mut at = vec![0; blocks.len()];
        while let Some(Reverse((_, i))) = next.pop() {
            let block = &blocks[i];
            let bound = next.peek().map_or(u64::MAX, |Reverse((s, _))| *s);
            let from = at[i];
            // At least the line popped, whose seq is at most the bound.
            let run = block.seqs[from + 1..].partition_point(|&s| s < bound);
            let to = from + 1 + run;
            bytes.extend_from_slice(block.slice(from, to));
            at[i] = to;
            if let Some(&s) = block.seqs.get(to) {
                next.push(Reverse((s, i)));
            }
        }
        Text { lines, bytes }
    }
}

/// Formats each container of a stream into [`Lines`], on the worker that
/// holds it (see the module doc).
pub trait FormatLines<'scope, D> {
    fn format_lines<S, F>(self, seq: S, format: F, name: &str) -> Stream<'scope, u64, Vec<Lines>>
    where
        S: Fn(&D) -> u64 + 'static,
        F: FnMut(&D, &mut Vec<u8>) + 'static;

    /// As [`FormatLines::format_lines`], then hands `then` each container's
    /// records (sorted by `seq`) once their lines are made: what a sink
    /// measures of its records (a live run's latency) is measured there, on
    /// the worker that formatted them, and nothing of it travels.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use fraudflow::dataflow::sink::FormatLines;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let formatted = Arc::new(AtomicUsize::new(0));
    /// let seen = Arc::clone(&formatted);
    /// timely::example(move |scope| {
    ///     let line = |x: &u64, out: &mut Vec<u8>| out.extend_from_slice(format!("{x}\n").as_bytes());
    ///     let count = move |xs: &[u64]| {
    ///         seen.fetch_add(xs.len(), Ordering::Relaxed);
    ///     };
    ///     (0..5u64).to_stream(scope).format_lines_then(|x| *x, line, count, "Format");
    /// });
    /// assert_eq!(formatted.load(Ordering::Relaxed), 5);
    /// ```
    fn format_lines_then<S, F, T>(
        self,
        seq: S,
        format: F,
        then: T,
        name: &str,
    ) -> Stream<'scope, u64, Vec<Lines>>
    where
        S: Fn(&D) -> u64 + 'static,
        F: FnMut(&D, &mut Vec<u8>) + 'static,
        T: FnMut(&[D]) + 'static;
}

impl<'scope, D: Clone + 'static> FormatLines<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn format_lines<S, F>(self, seq: S, format: F, name: &str) -> Stream<'scope, u64, Vec<Lines>>
    where
        S: Fn(&D) -> u64 + 'static,
        F: FnMut(&D, &mut Vec<u8>) + 'static,
    {
        self.format_lines_then(seq, format, |_: &[D]| {}, name)
    }

    fn format_lines_then<S, F, T>(
        self,
        seq: S,
        mut format: F,
        mut then: T,
        name: &str,
    ) -> Stream<'scope, u64, Vec<Lines>>
    where
        S: Fn(&D) -> u64 + 'static,
        F: FnMut(&D, &mut Vec<u8>) + 'static,
        T: FnMut(&[D]) + 'static,
    {
        type Builder = CapacityContainerBuilder<Vec<Lines>>;
        self.unary::<Builder, _, _, _>(Pipeline, name, |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let lines = Lines::format(data, &seq, &mut format);
                    then(data);
                    if !lines.is_empty() {
                        output.session(&cap).give(lines);
                    }
                });
            }
        })
    }
}

/// Writes blocks of lines on worker 0 in `seq` order: each time's blocks,
/// merged, once the frontier has passed that time. The text is the same
/// bytes for any number of workers and processes.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use fraudflow::dataflow::sink::{FormatLines, OrderedLines};
/// use timely::dataflow::operators::ToStream;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute(timely::Config::process(3), move |worker| {
///     let out = Arc::clone(&out);
///     let first = worker.index() as u64 * 10;
///     worker.dataflow::<u64, _, _>(|scope| {
///         (first..first + 10)
///             .to_stream(scope)
///             .format_lines(|x| *x, |x, line| line.extend_from_slice(format!("{x}\n").as_bytes()), "Format")
///             .ordered_lines(move |text| out.lock().unwrap().extend(text.bytes), "Write");
///     });
/// })
/// .unwrap();
/// let expected: String = (0..30).map(|x| format!("{x}\n")).collect();
/// assert_eq!(String::from_utf8(seen.lock().unwrap().clone()).unwrap(), expected);
/// ```
pub trait OrderedLines {
    fn ordered_lines<W: FnMut(Text) + 'static>(self, write: W, name: &str);
}

impl OrderedLines for Stream<'_, u64, Vec<Lines>> {
    fn ordered_lines<W: FnMut(Text) + 'static>(self, mut write: W, name: &str) {
        on_worker_0_by_time(self, name, move |blocks| write(Lines::merge(blocks)));
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

#[cfg(test)]
mod tests;
