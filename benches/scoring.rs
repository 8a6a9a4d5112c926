//! Time to score one event with each model of the ensemble, on one core.
//!
//! `cargo bench --bench scoring` fits each model on generated 13-feature
//! rows (the FEATURES_V2 width), then times scoring 200,000 rows, best of
//! three, and prints nanoseconds per row for each model and their sum.

use std::hint::black_box;
use std::time::Instant;

use fraudflow::generate::Rng;
use fraudflow::models::autoencoder::AutoencoderParams;
use fraudflow::models::isolation_forest::IsolationForestParams;
use fraudflow::models::online_logistic::OnlineLogisticParams;
use linfa::prelude::*;
use ndarray::{Array1, Array2};

const FEATURES: usize = 13;
const ROWS: usize = 200_000;

fn best_ns_per_row(rows: &[Vec<f64>], score: impl Fn(&[f64]) -> f64) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let total: f64 = rows.iter().map(|r| score(black_box(r))).sum();
        black_box(total);
        best = best.min(started.elapsed().as_nanos() as f64 / rows.len() as f64);
    }
    best
}

fn main() {
    let mut rng = Rng::seed_from(1);
    let x = Array2::from_shape_fn((20_000, FEATURES), |(_, j)| rng.normal() * (j + 1) as f64);
    let y: Array1<bool> = (0..x.nrows()).map(|i| i % 50 == 0).collect();
    let forest = IsolationForestParams::default()
        .fit(&DatasetBase::from(x.clone()))
        .expect("forest fits");
    let autoencoder = AutoencoderParams::default()
        .fit(&DatasetBase::from(x.clone()))
        .expect("autoencoder fits");
    let logistic = OnlineLogisticParams::default()
        .fit(&DatasetBase::new(x, y))
        .expect("logistic fits");

    let rows: Vec<Vec<f64>> = (0..ROWS)
        .map(|_| {
            (0..FEATURES)
                .map(|j| rng.normal() * (j + 1) as f64)
                .collect()
        })
        .collect();
    let f = best_ns_per_row(&rows, |r| forest.score(r));
    let a = best_ns_per_row(&rows, |r| autoencoder.score(r));
    let l = best_ns_per_row(&rows, |r| logistic.probability(r));
    println!("isolation forest (100 trees, 256 samples): {f:.0} ns/row");
    println!("autoencoder ({FEATURES} -> 8 -> {FEATURES}): {a:.0} ns/row");
    println!("logistic regression: {l:.0} ns/row");
    println!(
        "sum of the three: {:.0} ns/row (target for the ensemble: 1000)",
        f + a + l
    );
}
