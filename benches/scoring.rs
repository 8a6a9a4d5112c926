//! Time to score one event with each model of the ensemble, on one core.
//!
//! `cargo bench --bench scoring` fits each model on generated 13-feature
//! rows (the FEATURES_V2 width), then times scoring 200,000 rows, best of
//! three, and prints nanoseconds per row for each model and their sum: one
//! row at a time, then in batches of 1,024 rows as the dataflow's score
//! operator does (the forest walks each tree for 16 rows side by side).

use std::hint::black_box;
use std::time::Instant;

use fraudflow::ensemble::{Models, Weights};
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
        "sum of the three, a row at a time: {:.0} ns/row (target for the ensemble: 1000)",
        f + a + l
    );

    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let batches: Vec<&[&[f64]]> = refs.chunks(1_024).collect();
    let best_batched = |score: &dyn Fn(&[&[f64]]) -> f64| {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let total: f64 = batches.iter().map(|b| score(black_box(b))).sum();
            black_box(total);
            best = best.min(started.elapsed().as_nanos() as f64 / rows.len() as f64);
        }
        best
    };
    let fb = best_batched(&|b| {
        let mut out = Vec::new();
        forest.score_many(b, &mut out);
        out.iter().sum()
    });
    let models = Models {
        isolation_forest: forest,
        autoencoder,
        logistic,
    };
    let weights = Weights::ORIGINAL;
    let eb = best_batched(&|b| {
        let mut out = Vec::new();
        models.components_many(b, &mut out);
        out.iter().map(|c| weights.combine(c)).sum()
    });
    println!("isolation forest, batches of 1,024: {fb:.0} ns/row");
    println!("whole ensemble, batches of 1,024: {eb:.0} ns/row (target: 1000)");
}
