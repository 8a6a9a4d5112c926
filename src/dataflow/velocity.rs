//! Velocity: how many transactions of the same account fall in the window
//! ending at each event, as a windowed differential arrangement.

use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::trace::TraceReader;
use differential_dataflow::Hashable;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::InputCapability;
use timely::dataflow::operators::{Capability, Exchange};
use timely::dataflow::Stream;
use timely::progress::frontier::{AntichainRef, MutableAntichain};
use timely::progress::Antichain;
use timely::ExchangeData;

use super::batcher;
use crate::metrics::events::{state_gauge, State};

/// The windowed collection's batcher: `((account, seq), time, diff)`.
type WindowBatcher = batcher::WindowBatcher<(u64, u64), ValBuilder<u64, u64, u64, isize>>;

/// Where a record sits for a velocity count: its account (none when the
/// record has no such account), its place in event time (its window ends
/// there) and its input order, which breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VelocityKey {
    pub account: Option<u64>,
    pub seq: u64,
    pub time: u64,
}

/// Counts, for every record, the records of the same account whose time is
/// in the window `(t - window, t]` and that come at or before it: all of
/// those at earlier times, whatever their arrival order, and those at the
/// same time up to it in input order. A record without an account gets 0.
///
/// A record's time is its own ([`VelocityKey::time`]), which may be later
/// than the logical time it travels at: a source may send many times at one
/// logical time (`sources::file::epochs`), as long as no record travels at
/// a logical time after that of a record placed later.
///
/// Each keyed record enters a collection `(account, seq)` at its own time
/// and leaves it `window` later; the collection is arranged by account, so
/// each worker holds a shard and the window's retractions keep it bounded.
/// Records are exchanged by the same hash and read the arrangement once its
/// frontier has passed their logical time (so every record placed at or
/// before theirs is in), each as of its own time. All queries of one
/// account at one logical time are answered by one merged walk over that
/// account's changes, so a hot key costs O(1) per event, not O(window).
///
/// # Examples
///
/// ```
/// use fraudflow::dataflow::velocity::{Velocity, VelocityKey};
/// use timely::dataflow::operators::{Capture, ToStream};
/// use timely::dataflow::operators::capture::Extract;
///
/// // (account, seq, time, count), all sent at logical time 0: account 7 at
/// // times 0, 0, 5 and 4_000 (by then the others have left its window of
/// // 3,600), account 8 once.
/// let rx = timely::example(|scope| {
///     vec![(7u64, 1u64, 0u64, 0u64), (8, 2, 0, 0), (7, 3, 5, 0), (7, 4, 0, 0), (7, 5, 4_000, 0)]
///         .to_stream(scope)
///         .velocity(
///             3_600,
///             |r| VelocityKey { account: Some(r.0), seq: r.1, time: r.2 },
///             |r, n| r.3 = n,
///             "Velocity",
///         )
///         .capture()
/// });
/// let mut counts: Vec<_> = rx.extract().into_iter().flat_map(|(_, rows)| rows).collect();
/// counts.sort();
/// assert_eq!(counts, [(7, 1, 0, 1), (7, 3, 5, 3), (7, 4, 0, 2), (7, 5, 4_000, 1), (8, 2, 0, 1)]);
/// ```
pub trait Velocity<'scope, D> {
    fn velocity<K, S>(self, window: u64, key: K, set: S, name: &str) -> Stream<'scope, u64, Vec<D>>
    where
        K: Fn(&D) -> VelocityKey + Clone + 'static,
        S: Fn(&mut D, u64) + 'static;
}

impl<'scope, D: ExchangeData + Clone> Velocity<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn velocity<K, S>(self, window: u64, key: K, set: S, name: &str) -> Stream<'scope, u64, Vec<D>>
    where
        K: Fn(&D) -> VelocityKey + Clone + 'static,
        S: Fn(&mut D, u64) + 'static,
    {
        // Records go to their account's shard once; there they both enter
        // the window's arrangement and ask it for their counts.
        let sharded = shard(self, key.clone());
        // Each keyed record enters the collection at its time; the batcher
        // retracts it a window later. Already sharded by the account's hash,
        // as the queries are.
        let entering = entries(sharded.clone(), key.clone(), name);
        let held = state_gauge(State::Velocity);
        let arranged = arrange_core::<_, _, WindowBatcher, ValSpine<u64, u64, u64, isize>>(
            entering,
            Pipeline,
            &format!("{name}Window"),
            move |_, _| WindowBatcher::new(window).reporting(Rc::clone(&held)),
        );
        let mut trace = arranged.trace;

        sharded.binary_frontier::<_, CapacityContainerBuilder<Vec<D>>, _, _, _, _>(
            arranged.stream,
            Pipeline,
            Pipeline,
            name,
            move |_, _| {
                let mut pending = Pending::default();
                let mut compaction = Antichain::from_elem(0u64);
                move |(queries, query_frontier), (batches, arranged_frontier), output| {
                    queries.for_each(|cap, data| pending.push(cap, data, &key));
                    // The trace is shared; the batches only tell us progress.
                    batches.for_each(|_, _| {});

                    let ready = pending.take_ready(arranged_frontier);
                    if !ready.is_empty() {
                        let spans = trace
                            .spans_through(Antichain::new().borrow())
                            .unwrap_or_default();
                        let batches: Vec<_> = spans.into_iter().filter_map(|s| s.inner).collect();
                        for (cap, mut records) in ready {
                            let (mut cursor, storage) = cursor_list(batches.clone());
                            answer(&mut cursor, &storage, &mut records, &key, &set);
                            output.session(&cap).give_container(&mut records);
                        }
                    }

                    let lower = pending.compaction(query_frontier.frontier());
                    if lower != compaction {
                        compaction = lower;
                        trace.set_logical_compaction(compaction.borrow());
                        trace.set_physical_compaction(compaction.borrow());
                    }
                }
            },
        )
    }
}

/// Each record on its account's shard (one without an account on its
/// `seq`'s).
fn shard<'scope, D, K>(stream: Stream<'scope, u64, Vec<D>>, key: K) -> Stream<'scope, u64, Vec<D>>
where
    D: ExchangeData + Clone,
    K: Fn(&D) -> VelocityKey + 'static,
{
    stream.exchange(move |d: &D| {
        let k = key(d);
        k.account.map_or(k.seq, |a| a.hashed())
    })
}

/// Each keyed record as an update entering the window at its own time:
/// never before the logical time it travels at, as differential requires.
fn entries<'scope, D, K>(
    records: Stream<'scope, u64, Vec<D>>,
    key: K,
    name: &str,
) -> Stream<'scope, u64, Vec<batcher::Update<(u64, u64)>>>
where
    D: ExchangeData,
    K: Fn(&D) -> VelocityKey + 'static,
{
    records.unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
        Pipeline,
        &format!("{name}Enter"),
        |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(&at) = cap.least() else { return };
                    output
                        .session(&cap)
                        .give_iterator(data.iter().filter_map(|d| {
                            let k = key(d);
                            let time = k.time.max(at);
                            k.account.map(|account| ((account, k.seq), time, 1isize))
                        }));
                });
            }
        },
    )
}

/// Records waiting for the arrangement, by logical time, each time with the
/// least of its records' own times.
struct Pending<D> {
    by_time: BTreeMap<u64, (Capability<u64>, Vec<D>, u64)>,
}

impl<D> Default for Pending<D> {
    fn default() -> Self {
        Pending {
            by_time: BTreeMap::new(),
        }
    }
}

impl<D> Pending<D> {
    fn push<K: Fn(&D) -> VelocityKey>(
        &mut self,
        cap: InputCapability<u64>,
        data: &mut Vec<D>,
        key: &K,
    ) {
        let Some(cap) = cap.retain_least(0) else {
            return;
        };
        let least = data.iter().map(|d| key(d).time).min();
        let entry = self
            .by_time
            .entry(*cap.time())
            .or_insert_with(|| (cap, Vec::new(), u64::MAX));
        entry.1.append(data);
        entry.2 = entry.2.min(least.unwrap_or(u64::MAX));
    }

    /// The records of every logical time the arrangement has passed.
    fn take_ready(&mut self, arranged: &MutableAntichain<u64>) -> Vec<(Capability<u64>, Vec<D>)> {
        let ready: Vec<u64> = self
            .by_time
            .keys()
            .copied()
            .take_while(|t| !arranged.less_equal(t))
            .collect();
        ready
            .into_iter()
            .filter_map(|t| self.by_time.remove(&t))
            .map(|(cap, records, _)| (cap, records))
            .collect()
    }

    /// Where the trace may be compacted to. Every record still to be
    /// answered is asked as of its own time: no earlier than its logical
    /// time (so than the query frontier, for those still to come), and no
    /// earlier than the least own time of those pending. Just below the
    /// least of those: at that time itself, earlier entries would be
    /// advanced onto it and look like ties.
    fn compaction(&self, queries: AntichainRef<'_, u64>) -> Antichain<u64> {
        let earliest = queries
            .iter()
            .copied()
            .chain(self.by_time.values().map(|p| p.2))
            .min();
        let mut lower = Antichain::new();
        if let Some(t) = earliest {
            lower.insert(t.saturating_sub(1));
        }
        lower
    }
}

/// A cursor over a window's arrangement: accounts to the input order of
/// their entries, at times, with counts.
trait WindowCursor:
    for<'a> Cursor<Key<'a> = &'a u64, Val<'a> = &'a u64, TimeGat<'a> = &'a u64, DiffGat<'a> = &'a isize>
{
}

impl<C> WindowCursor for C where
    C: for<'a> Cursor<
        Key<'a> = &'a u64,
        Val<'a> = &'a u64,
        TimeGat<'a> = &'a u64,
        DiffGat<'a> = &'a isize,
    >
{
}

/// Sets each record's count from the trace, each as of its own time: every
/// entry in the window that entered before that time, and of those that
/// entered at it, the ones at or before the record in input order.
fn answer<C, D, K, S>(cursor: &mut C, storage: &C::Storage, records: &mut [D], key: &K, set: &S)
where
    C: WindowCursor,
    K: Fn(&D) -> VelocityKey,
    S: Fn(&mut D, u64),
{
    // Sorted by account, then time, then input order: each account is one
    // run, in the order its counts grow.
    records.sort_unstable_by_key(|d| {
        let k = key(d);
        (k.account, k.time, k.seq)
    });
    let mut changes: Vec<Change> = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let account = key(&records[i]).account;
        let end = i + records[i..]
            .iter()
            .take_while(|d| key(d).account == account)
            .count();
        let Some(account) = account else {
            records[i..end].iter_mut().for_each(|d| set(d, 0));
            i = end;
            continue;
        };
        let first = key(&records[i]).time;
        let mut count = account_changes(cursor, storage, account, first, &mut changes);
        let mut next = changes.iter().peekable();
        for d in &mut records[i..end] {
            let k = key(d);
            // An entry at the record's own time counts up to it in input
            // order; a retraction at that time always does.
            while let Some(c) = next.next_if(|c| (c.time, c.entry, c.seq) <= (k.time, true, k.seq))
            {
                count += c.diff;
            }
            set(d, count.max(0) as u64);
        }
        i = end;
    }
}

/// A change to an account's window at or after the first time asked about:
/// an entry (`+1`) or a retraction, at a time, of the record `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    time: u64,
    entry: bool,
    seq: u64,
    diff: isize,
}

/// Walks `account`'s values once: returns the sum of the changes before
/// `first`, which count for every record asked about, and leaves the rest
/// in `changes`, sorted as the records are.
fn account_changes<C: WindowCursor>(
    cursor: &mut C,
    storage: &C::Storage,
    account: u64,
    first: u64,
    changes: &mut Vec<Change>,
) -> isize {
    changes.clear();
    let mut before = 0;
    cursor.seek_key(storage, &account);
    if cursor.get_key(storage) != Some(&account) {
        return 0;
    }
    while let Some(&seq) = cursor.get_val(storage) {
        cursor.map_times(storage, |&time, &diff| {
            if time < first {
                before += diff;
            } else {
                let entry = diff > 0;
                changes.push(Change {
                    time,
                    entry,
                    seq,
                    diff,
                });
            }
        });
        cursor.step_val(storage);
    }
    // Mostly sorted already (by `seq`, and most at one time): cheap.
    changes.sort_unstable();
    before
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::Inspect;

    use super::*;

    /// `(account, seq, time, count)`, as in the example.
    type Rec = (u64, u64, u64, u64);
    /// The logical time a record's own time is sent at.
    type Epoch = fn(u64) -> u64;

    /// The definition, plainly: records of the same account in the window
    /// ending at the record's time, earlier or at that time and not after
    /// it in input order.
    fn oracle(records: &[Rec], window: u64) -> Vec<Rec> {
        let mut out: Vec<Rec> = records
            .iter()
            .map(|&(a, s, t, _)| {
                let n = records
                    .iter()
                    .filter(|&&(b, s2, t2, _)| {
                        b == a && t2 + window > t && (t2 < t || (t2 == t && s2 <= s))
                    })
                    .count();
                (a, s, t, n as u64)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Sends each record at the logical time `epoch(time)` (which must not
    /// fall as the time grows), in the given order, and collects the counts.
    fn run(records: &[Rec], window: u64, epoch: Epoch) -> Vec<Rec> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        let records = records.to_vec();
        timely::execute_directly(move |worker| {
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Rec>();
                let key = |r: &Rec| VelocityKey {
                    account: Some(r.0),
                    seq: r.1,
                    time: r.2,
                };
                stream
                    .velocity(window, key, |r, n| r.3 = n, "Velocity")
                    .inspect(move |r| sink.lock().unwrap().push(*r));
                input
            });
            // Records of a logical time may come in any order, but no
            // logical time is sent after a later one.
            let mut by_epoch: BTreeMap<u64, Vec<Rec>> = BTreeMap::new();
            for r in records {
                by_epoch.entry(epoch(r.2)).or_default().push(r);
            }
            for (at, rs) in by_epoch {
                input.advance_to(at);
                for r in rs {
                    input.send(r);
                }
                worker.step();
            }
        });
        let mut out = got.lock().unwrap().clone();
        out.sort_unstable();
        out
    }

    fn records(seed: u64, n: u64, spread: u64) -> Vec<Rec> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let mut t = 0;
        (1..=n)
            .map(|seq| {
                t += next() % spread;
                // Now and then at the very same time as the one before.
                let time = if next() % 5 == 0 { t } else { t + next() % 3 };
                (next() % 6, seq, time, 0)
            })
            .collect()
    }

    #[test]
    fn counts_go_by_each_records_own_time_when_many_times_share_a_logical_time() {
        let window = 100;
        for (seed, spread) in [(1, 10), (2, 60), (3, 400)] {
            let records = records(seed, 600, spread);
            let want = oracle(&records, window);
            assert!(want.iter().any(|r| r.3 > 2), "windows overlap: {seed}");
            let coarse: [(&str, Epoch); 3] = [
                ("own time", |t| t),
                ("hundreds", |t| t / 100 * 100),
                ("thousands", |t| t / 1_000 * 1_000),
            ];
            for (name, epoch) in coarse {
                assert_eq!(run(&records, window, epoch), want, "seed {seed}, {name}");
            }
        }
    }
}
