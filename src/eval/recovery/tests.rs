use super::*;
use crate::generate::rng::Rng;

/// Frauds among the top `ceil(budget · n)` scores (ties at the last one
/// included), counted directly.
fn caught_directly(rs: &[(f64, bool)], budget: f64) -> u64 {
    if rs.is_empty() {
        return 0;
    }
    let mut sorted: Vec<f64> = rs.iter().map(|(s, _)| *s).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let k = ((rs.len() as f64 * budget).ceil() as usize).max(1);
    let cut = sorted[k - 1];
    rs.iter().filter(|(s, f)| *s >= cut && *f).count() as u64
}

fn records(seed: u64) -> Vec<Record> {
    let mut rng = Rng::seed_from(seed);
    (0..40_000u64)
        .map(|i| {
            let hour = rng.below(30 * 24);
            let fraud = rng.chance(0.01);
            // Before hour 400 frauds score high; after it, less often.
            let lift = if fraud && (hour < 400 || rng.chance(0.5)) {
                0.5
            } else {
                0.0
            };
            Record {
                seq: i,
                time_ms: hour * 3_600_000 + rng.below(3_600_000),
                score: rng.uniform() * 0.5 + lift,
                is_fraud: if i % 11 == 0 { None } else { Some(fraud) },
                amount: 1.0,
                latency_us: 0,
                frozen: Some(rng.uniform()),
                threshold: 0.5,
                page: None,
            }
        })
        .collect()
}

/// The labelled records of hours `[from, to)` whose hour satisfies `keep`,
/// as (online, frozen, fraud).
fn of_hours(rs: &[Record], from: u32, to: u32) -> Vec<(f64, f64, bool)> {
    rs.iter()
        .filter(|r| r.is_fraud.is_some() && (from..to).contains(&r.hour()))
        .map(|r| (r.score, r.frozen.unwrap(), r.is_fraud == Some(true)))
        .collect()
}

#[test]
fn the_level_before_sums_seven_days_and_each_window_is_one_day() {
    let rs = records(3);
    let budget = 0.02;
    let rec = recovery(&rs, budget, 400);
    // Day 16 holds hour 400: the level before is days 9..=15.
    let (mut fraud, mut online, mut frozen, mut events) = (0, 0, 0, 0);
    for day in 9..16 {
        let d = of_hours(&rs, day * 24, day * 24 + 24);
        events += d.len() as u64;
        fraud += d.iter().filter(|x| x.2).count() as u64;
        let on: Vec<(f64, bool)> = d.iter().map(|x| (x.0, x.2)).collect();
        let fr: Vec<(f64, bool)> = d.iter().map(|x| (x.1, x.2)).collect();
        online += caught_directly(&on, budget);
        frozen += caught_directly(&fr, budget);
    }
    assert_eq!((rec.before.from_hour, rec.before.to_hour), (216, 384));
    assert_eq!((rec.before.events, rec.before.fraud), (events, fraud));
    assert_eq!(rec.before.online, Caught::of(online, fraud));
    assert_eq!(rec.before.frozen, Some(Caught::of(frozen, fraud)));
    for (k, w) in rec.after.iter().enumerate() {
        let from = 400 + 24 * k as u32;
        let d = of_hours(&rs, from, from + 24);
        let on: Vec<(f64, bool)> = d.iter().map(|x| (x.0, x.2)).collect();
        let n = d.iter().filter(|x| x.2).count() as u64;
        assert_eq!(
            (w.from_hour, w.to_hour, w.events),
            (from, from + 24, d.len() as u64)
        );
        assert_eq!(w.online, Caught::of(caught_directly(&on, budget), n));
    }
    let target = 0.9 * (online as f64 / fraud as f64);
    assert_eq!(rec.target_recall, Some(target));
    assert_eq!(rec.met, Some(rec.after[1].online.recall.unwrap() >= target));
    // Half the frauds after hour 400 lose their lift: the level drops.
    assert!(
        rec.after[1].online.recall < rec.before.online.recall,
        "{rec:?}"
    );
}

#[test]
fn a_change_in_the_first_week_looks_back_to_day_zero() {
    let rs = records(5);
    let rec = recovery(&rs, 0.05, 30);
    assert_eq!((rec.before.from_hour, rec.before.to_hour), (0, 24));
    let rec = recovery(&rs, 0.05, 10);
    assert_eq!((rec.before.from_hour, rec.before.to_hour), (0, 0));
    assert_eq!(
        (rec.before.fraud, rec.target_recall, rec.met),
        (0, None, None)
    );
}

#[test]
fn a_change_past_the_data_judges_empty_windows_without_overflow() {
    let rec = recovery(&records(5), 0.05, u32::MAX - 10);
    assert_eq!(rec.after[2].from_hour, u32::MAX);
    assert!(rec.after.iter().all(|w| w.events == 0));
    assert_eq!((rec.met, rec.verdict()), (None, "not judged (no fraud)"));
}

#[test]
fn records_without_frozen_scores_have_no_frozen_figures() {
    let mut rs = records(9);
    for r in &mut rs {
        r.frozen = None;
    }
    let rec = recovery(&rs, 0.05, 400);
    assert_eq!(rec.before.frozen, None);
    assert!(rec.after.iter().all(|w| w.frozen.is_none()));
}
