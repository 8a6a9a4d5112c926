use super::*;
use crate::generate::rng::Rng;

/// The changes a plain recomputation finds: at every tick from 0 past the
/// last place, the budget's score over the window, held within the bounds,
/// given when it differs from the last one given.
fn oracle(scores: &[(u64, f64)], s: &ThresholdSettings) -> Vec<(u64, ThresholdChange)> {
    let end = scores.iter().map(|p| p.0).max().unwrap_or(0) + s.window_ms + s.every_ms;
    let mut out: Vec<(u64, ThresholdChange)> = Vec::new();
    let mut tick = 0;
    while tick <= end {
        let window: Vec<f64> = scores
            .iter()
            .filter(|(place, _)| *place < tick && *place + s.window_ms >= tick)
            .map(|p| p.1)
            .collect();
        if window.len() >= s.min_samples.max(1) {
            let mut sorted = window.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let k = ((window.len() as f64 * s.budget).ceil() as usize).max(1);
            let quantile = sorted[k - 1];
            let threshold = quantile.max(s.floor).min(s.ceiling);
            if out.last().map(|c| c.1.threshold) != Some(threshold) {
                let change = ThresholdChange {
                    from: tick + s.every_ms,
                    threshold,
                    samples: window.len() as u64,
                    quantile,
                };
                out.push((tick, change));
            }
        }
        tick += s.every_ms;
    }
    out
}

fn settings() -> ThresholdSettings {
    ThresholdSettings {
        budget: 0.1,
        window_ms: 40,
        every_ms: 10,
        floor: 0.05,
        ceiling: 0.95,
        min_samples: 5,
    }
}

/// Scores in runs with gaps, some above the ceiling and some below the
/// floor, added in place order but advanced in uneven steps.
fn scores(rng: &mut Rng) -> Vec<(u64, f64)> {
    let mut place = 0;
    let mut out = Vec::new();
    for _ in 0..300 {
        place += match rng.below(20) {
            0 => 100 + rng.below(500), // a gap wider than the window
            n => n % 4,
        };
        let score = match rng.below(10) {
            0 => 0.99,
            1 => 0.01,
            _ => rng.uniform(),
        };
        out.push((place, score));
    }
    out
}

#[test]
fn the_tracker_gives_the_changes_a_plain_recomputation_finds() {
    let mut rng = Rng::seed_from(3);
    for round in 0..20 {
        let mut s = settings();
        s.min_samples = round % 7;
        s.budget = [0.1, 0.5, 1.0, 0.02][round % 4];
        let scores = scores(&mut rng);
        let mut tracker = Tracker::new(s);
        let mut got = Vec::new();
        let mut i = 0;
        // The frontier moves on in random steps; every score placed
        // before it is in before the tracker advances to it.
        let mut complete = 0;
        let last = scores.last().unwrap().0 + s.window_ms + s.every_ms;
        loop {
            while i < scores.len() && scores[i].0 < complete {
                tracker.add(scores[i].0, scores[i].1);
                i += 1;
            }
            tracker.advance(complete, |tick, change| got.push((tick, change)));
            assert!(tracker.next_tick() > complete);
            if complete == last {
                break;
            }
            complete = (complete + 1 + rng.below(30)).min(last);
        }
        assert_eq!(got, oracle(&scores, &s), "round {round}");
        assert!(
            got.len() > 3,
            "round {round}: too few changes to mean anything"
        );
    }
}

#[test]
fn the_threshold_stays_within_its_bounds_and_waits_for_enough_scores() {
    let s = ThresholdSettings {
        min_samples: 3,
        ..settings()
    };
    let mut tracker = Tracker::new(s);
    for place in [1, 2] {
        tracker.add(place, 0.999);
    }
    let mut got = Vec::new();
    tracker.advance(10, |tick, c| got.push((tick, c)));
    assert!(got.is_empty(), "two scores are fewer than three");
    tracker.add(12, 0.999);
    tracker.advance(20, |tick, c| got.push((tick, c)));
    assert_eq!(got.len(), 1);
    let (tick, change) = got[0];
    assert_eq!((tick, change.from, change.samples), (20, 30, 3));
    assert_eq!((change.quantile, change.threshold), (0.999, 0.95));
}
