//! The ledger against a plain recomputation: seeded random runs of a
//! reader, a dataflow and a learner, each stopped at a random point, each
//! restarted from the state the one before kept.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::generate::Rng;

const RETENTION: u64 = 10;

/// What happened to the labels, worked out without the ledger.
#[derive(Default)]
struct Truth {
    /// Labels whose effect is kept: taken, or past their wait.
    closed: BTreeSet<(i32, i64)>,
}

/// One run: reads from where `resume` says, up to a random point of each
/// partition; places some of what it handed over, the learner takes some
/// and handles times up to a random frontier. Checks every label the
/// reader met against `truth`, and returns the state the run keeps.
fn run(
    rng: &mut Rng,
    logs: &[Vec<bool>],
    resume: &[PartitionResume],
    truth: &mut Truth,
    read_all: bool,
) -> Vec<PartitionResume> {
    let ledger = Ledger::new(resume, RETENTION);
    let handed = read(rng, &ledger, logs, truth, read_all);
    learn(rng, &ledger, handed, truth);
    ledger.resume()
}

/// The reader: each partition from where the ledger says, up to a random
/// point (the end with `read_all`). Every label it skips must be closed,
/// every label it hands over open. What it handed over.
fn read(
    rng: &mut Rng,
    ledger: &Ledger,
    logs: &[Vec<bool>],
    truth: &Truth,
    read_all: bool,
) -> Vec<TopicPlace> {
    let mut handed = Vec::new();
    for (p, log) in logs.iter().enumerate() {
        let p = p as i32;
        let from = ledger.start(p).unwrap_or(0);
        for o in 0..from {
            if log[o as usize] {
                assert!(truth.closed.contains(&(p, o)), "{p}/{o} skipped but open");
            }
        }
        let len = log.len() as i64;
        let upto = if read_all {
            len
        } else {
            from + rng.below((len - from + 1) as u64) as i64
        };
        for o in from..upto {
            if !log[o as usize] {
                continue; // not a label: the reader skips it
            }
            let place = TopicPlace {
                partition: p,
                offset: o,
            };
            let closed = truth.closed.contains(&(p, o));
            assert_eq!(ledger.admit(place), !closed, "{p}/{o}: closed {closed}");
            if !closed {
                handed.push(place);
            }
        }
    }
    handed
}

/// What happens after the reader: some of what it handed over is placed,
/// the learner takes some of that and handles times up to a random
/// frontier.
fn learn(rng: &mut Rng, ledger: &Ledger, handed: Vec<TopicPlace>, truth: &mut Truth) {
    let mut placed: BTreeMap<u64, (TopicPlace, u64)> = BTreeMap::new();
    for (seq, place) in handed.into_iter().enumerate() {
        if rng.chance(0.8) {
            let time = rng.below(20);
            ledger.placed(place, seq as u64, time);
            placed.insert(seq as u64, (place, time));
        }
    }
    for (&seq, (place, _)) in &placed {
        if rng.chance(0.3) {
            ledger.taken(seq);
            truth.closed.insert((place.partition, place.offset));
        }
    }
    let mut frontier = 0;
    for _ in 0..3 {
        frontier = frontier.max(rng.below(40));
        ledger.expire(frontier);
    }
    // Past its wait: placed at `t`, the join may match it through
    // `t + RETENTION`, so it is closed once every time to there is handled.
    for (place, time) in placed.values() {
        if time + RETENTION < frontier {
            truth.closed.insert((place.partition, place.offset));
        }
    }
}

#[test]
fn a_restart_hands_over_every_open_label_and_no_closed_one() {
    for seed in 0..200 {
        let mut rng = Rng::seed_from(seed);
        let logs: Vec<Vec<bool>> = (0..3)
            .map(|_| (0..rng.below(30)).map(|_| rng.chance(0.8)).collect())
            .collect();
        let mut truth = Truth::default();
        let mut resume = Vec::new();
        for _ in 0..4 {
            resume = run(&mut rng, &logs, &resume, &mut truth, false);
        }
        // A last run reads everything: each label is closed or handed over.
        run(&mut rng, &logs, &resume, &mut truth, true);
    }
}

#[test]
fn a_label_stays_open_through_the_last_time_it_can_meet_its_transaction() {
    let ledger = Ledger::new(&[], RETENTION);
    let at = |offset| TopicPlace {
        partition: 0,
        offset,
    };
    for o in 0..3 {
        assert!(ledger.admit(at(o)));
    }
    ledger.placed(at(0), 7, 5);
    ledger.placed(at(1), 8, 5);
    ledger.taken(8);
    // Handed over, never placed: open whatever the learner does.
    assert!(!ledger.expire(5 + RETENTION));
    let open = |again: Vec<i64>| {
        vec![PartitionResume {
            partition: 0,
            end: 3,
            again,
        }]
    };
    assert_eq!(ledger.resume(), open(vec![0, 2]));
    assert!(ledger.expire(5 + RETENTION + 1));
    assert_eq!(ledger.resume(), open(vec![2]));
    assert_eq!(ledger.start(0), Some(2));
    assert_eq!(ledger.start(1), None);
    // A restart: the open label again, the rest skipped, new ones taken.
    let restarted = Ledger::new(&ledger.resume(), RETENTION);
    let admitted: Vec<bool> = (0..4).map(|o| restarted.admit(at(o))).collect();
    assert_eq!(admitted, [false, false, true, true]);
}

#[test]
fn the_offsets_to_commit_are_those_of_the_last_state_kept() {
    let ledger = Ledger::new(&[], RETENTION);
    assert_eq!(ledger.kept_since(0), None);
    let resume = [
        PartitionResume {
            partition: 0,
            end: 9,
            again: vec![4, 6],
        },
        PartitionResume {
            partition: 2,
            end: 3,
            again: vec![],
        },
    ];
    ledger.kept(&resume);
    assert_eq!(ledger.kept_since(0), Some((1, vec![(0, 4), (2, 3)])));
    assert_eq!(ledger.kept_since(1), None);
}
