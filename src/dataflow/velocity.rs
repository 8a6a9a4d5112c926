//! Velocity: how many transactions of the same account fall in the window
//! ending at each event, as a windowed differential arrangement.

use std::collections::BTreeMap;

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::trace::TraceReader;
use differential_dataflow::Hashable;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Exchange};
use timely::dataflow::Stream;
use timely::progress::Antichain;
use timely::ExchangeData;

use super::batcher;

/// The windowed collection's batcher: `((account, seq), time, diff)`.
type WindowBatcher = batcher::WindowBatcher<(u64, u64), ValBuilder<u64, u64, u64, isize>>;

/// Where a record sits for a velocity count: its account (none when the
/// record has no such account) and its input order, which breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VelocityKey {
    pub account: Option<u64>,
    pub seq: u64,
}

/// Counts, for every record, the records of the same account whose time is
/// in the window `(t - window, t]` and that come at or before it: all of
/// those at earlier times, whatever their arrival order, and those at the
/// same time up to it in input order. A record without an account gets 0.
///
/// Each keyed record enters a collection `(account, seq)` at its time and
/// leaves it `window` later; the collection is arranged by account, so each
/// worker holds a shard and the window's retractions keep it bounded. Records
/// are exchanged by the same hash and read the arrangement as of their own
/// time, once its frontier has passed that time. All queries of one account
/// and time are answered by one merged walk over that account's values,
/// sorted by `seq`, so a hot key costs O(1) per event, not O(window).
///
/// # Examples
///
/// ```
/// use fraudflow::dataflow::velocity::{Velocity, VelocityKey};
/// use timely::dataflow::operators::{Capture, ToStream};
/// use timely::dataflow::operators::capture::Extract;
///
/// // (account, seq, count): account 7 three times, account 8 once, all at time 0.
/// let rx = timely::example(|scope| {
///     vec![(7u64, 1u64, 0u64), (8, 2, 0), (7, 3, 0), (7, 4, 0)]
///         .to_stream(scope)
///         .velocity(3_600, |r| VelocityKey { account: Some(r.0), seq: r.1 }, |r, n| r.2 = n, "Velocity")
///         .capture()
/// });
/// let mut counts: Vec<_> = rx.extract().into_iter().flat_map(|(_, rows)| rows).collect();
/// counts.sort();
/// assert_eq!(counts, [(7, 1, 1), (7, 3, 2), (7, 4, 3), (8, 2, 1)]);
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
        let route = key.clone();
        let sharded = self.exchange(move |d: &D| {
            let k = route(d);
            k.account.map_or(k.seq, |a| a.hashed())
        });
        // Each keyed record enters the collection at its time; the batcher
        // retracts it a window later.
        let entry_key = key.clone();
        let entering = sharded
            .clone()
            .unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                Pipeline,
                &format!("{name}Enter"),
                |_, _| {
                    move |input, output| {
                        input.for_each(|cap, data| {
                            let Some(&time) = cap.least() else { return };
                            output
                                .session(&cap)
                                .give_iterator(data.iter().filter_map(|d| {
                                    let k = entry_key(d);
                                    k.account.map(|account| ((account, k.seq), time, 1isize))
                                }));
                        });
                    }
                },
            );
        // Already sharded by the account's hash, as the queries are.
        let arranged = arrange_core::<_, _, WindowBatcher, ValSpine<u64, u64, u64, isize>>(
            entering,
            Pipeline,
            &format!("{name}Window"),
            move |_, _| WindowBatcher::new(window),
        );
        let mut trace = arranged.trace;

        sharded.binary_frontier::<_, CapacityContainerBuilder<Vec<D>>, _, _, _, _>(
            arranged.stream,
            Pipeline,
            Pipeline,
            name,
            move |_, _| {
                let mut pending: BTreeMap<u64, (Capability<u64>, Vec<D>)> = BTreeMap::new();
                let mut compaction = Antichain::from_elem(0u64);
                move |(queries, query_frontier), (batches, arranged_frontier), output| {
                    queries.for_each(|cap, data| {
                        if let Some(cap) = cap.retain_least(0) {
                            pending
                                .entry(*cap.time())
                                .or_insert_with(|| (cap, Vec::new()))
                                .1
                                .append(data);
                        }
                    });
                    // The trace is shared; the batches only tell us progress.
                    batches.for_each(|_, _| {});

                    let ready: Vec<u64> = pending
                        .keys()
                        .copied()
                        .take_while(|t| !arranged_frontier.less_equal(t))
                        .collect();
                    if !ready.is_empty() {
                        let spans = trace
                            .spans_through(Antichain::new().borrow())
                            .unwrap_or_default();
                        let batches: Vec<_> = spans.into_iter().filter_map(|s| s.inner).collect();
                        for time in ready {
                            let Some((cap, mut records)) = pending.remove(&time) else {
                                continue;
                            };
                            let (mut cursor, storage) = cursor_list(batches.clone());
                            answer(&mut cursor, &storage, time, &mut records, &key, &set);
                            output.session(&cap).give_container(&mut records);
                        }
                    }

                    // Every time still to be asked about is at least the
                    // earliest pending or incoming one. Compact to just below
                    // it: at that time itself, earlier entries would be
                    // advanced onto it and look like ties.
                    let mut lower = Antichain::new();
                    let earliest = query_frontier
                        .frontier()
                        .iter()
                        .copied()
                        .chain(pending.keys().copied())
                        .min();
                    if let Some(t) = earliest {
                        lower.insert(t.saturating_sub(1));
                    }
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

/// Sets each record's count from the trace as of `time`: every entry in
/// the window that entered before `time`, and of those that entered at
/// `time`, the ones at or before the record in input order.
fn answer<C, D, K, S>(
    cursor: &mut C,
    storage: &C::Storage,
    time: u64,
    records: &mut [D],
    key: &K,
    set: &S,
) where
    C: for<'a> Cursor<
        Key<'a> = &'a u64,
        Val<'a> = &'a u64,
        TimeGat<'a> = &'a u64,
        DiffGat<'a> = &'a isize,
    >,
    K: Fn(&D) -> VelocityKey,
    S: Fn(&mut D, u64),
{
    // Sorted by account, then input order: each account is one run.
    records.sort_unstable_by_key(|d| {
        let k = key(d);
        (k.account, k.seq)
    });
    let mut entered_now: Vec<u64> = Vec::new();
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
        // One walk over the account's entries: those that entered before
        // `time` and are still in the window count for every record; those
        // that entered at `time` (a +1 at `time`: an entry's retraction is
        // always a window later) count by input order.
        let mut earlier: isize = 0;
        entered_now.clear();
        cursor.seek_key(storage, &account);
        if cursor.get_key(storage) == Some(&account) {
            while let Some(&seq) = cursor.get_val(storage) {
                let (mut weight, mut now) = (0, false);
                cursor.map_times(storage, |t, r| {
                    if *t <= time {
                        weight += *r;
                        now |= *t == time && *r > 0;
                    }
                });
                if now {
                    entered_now.push(seq);
                } else {
                    earlier += weight;
                }
                cursor.step_val(storage);
            }
        }
        let mut ties = 0;
        for d in &mut records[i..end] {
            let seq = key(d).seq;
            while entered_now.get(ties).is_some_and(|&s| s <= seq) {
                ties += 1;
            }
            set(d, (earlier + ties as isize).max(0) as u64);
        }
        i = end;
    }
}
