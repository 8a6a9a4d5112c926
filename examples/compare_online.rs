//! Compares the two online learners issue 4 names: linfa-ftrl (FTRL-Proximal)
//! and our SGD on class-weighted log loss (`models::online_logistic`).
//!
//! `cargo run --release --example compare_online -- FEATURES.csv` reads a
//! table from `fraudflow features`, splits it by step (first 70 % of steps to
//! train, last 15 % to test), standardises by the training rows, feeds both
//! learners the same 256-row batches in time order (one pass, as online
//! learning sees them), and prints ROC-AUC and PR-AUC on the test steps.

use std::time::Instant;

use fraudflow::eval::ranking::{average_precision, roc_auc};
use fraudflow::models::online_logistic::OnlineLogisticParams;
use linfa::prelude::*;
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2, Axis};

const BATCH: usize = 256;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: compare_online FEATURES.csv")?;
    let text = std::fs::read_to_string(&path)?;
    let mut rows: Vec<(u32, bool, Vec<f64>)> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let values = f[3..]
            .iter()
            .map(|v| v.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()?;
        rows.push((f[1].parse()?, f[2] == "1", values));
    }
    let last_step = rows.iter().map(|r| r.0).max().ok_or("empty table")?;
    let train_end = (f64::from(last_step) * 0.70).round() as u32;
    let test_start = (f64::from(last_step) * 0.85).round() as u32;
    let matrix = |rows: &[&(u32, bool, Vec<f64>)]| {
        let d = rows[0].2.len();
        (
            Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i].2[j]),
            rows.iter().map(|r| r.1).collect::<Array1<bool>>(),
        )
    };
    let train: Vec<_> = rows.iter().filter(|r| r.0 <= train_end).collect();
    let test: Vec<_> = rows.iter().filter(|r| r.0 > test_start).collect();
    let (train_x, train_y) = matrix(&train);
    let (test_x, test_y) = matrix(&test);
    let mean = train_x.mean_axis(Axis(0)).ok_or("no training rows")?;
    let std = train_x
        .std_axis(Axis(0), 0.0)
        .mapv(|s| if s > 1e-12 { s } else { 1.0 });
    let standard = |x: &Array2<f64>| (x - &mean) / &std;
    let (train_z, test_z) = (standard(&train_x), standard(&test_x));
    println!(
        "{path}: train steps 1..={train_end} ({} rows, {} fraud), test steps {}..={last_step} ({} rows, {} fraud)",
        train.len(),
        train_y.iter().filter(|&&y| y).count(),
        test_start + 1,
        test.len(),
        test_y.iter().filter(|&&y| y).count()
    );

    let labels = test_y.to_vec();
    let report = |name: &str, scores: Vec<f64>, secs: f64| {
        println!(
            "{name:<44} ROC-AUC {:.4}  PR-AUC {:.4}  ({secs:.2} s)",
            roc_auc(&scores, &labels).unwrap_or(f64::NAN),
            average_precision(&scores, &labels).unwrap_or(f64::NAN)
        );
    };
    let batches =
        |x: &Array2<f64>, y: &Array1<bool>| -> Vec<DatasetBase<Array2<f64>, Array1<bool>>> {
            (0..x.nrows())
                .step_by(BATCH)
                .map(|s| {
                    let e = (s + BATCH).min(x.nrows());
                    DatasetBase::new(
                        x.slice(ndarray::s![s..e, ..]).to_owned(),
                        y.slice(ndarray::s![s..e]).to_owned(),
                    )
                })
                .collect()
        };
    let train_batches = batches(&train_z, &train_y);

    for epochs in [1, 5] {
        let started = Instant::now();
        let params = OnlineLogisticParams::default().epochs(epochs);
        let mut model = None;
        for batch in &train_batches {
            model = Some(params.fit_with(model, batch)?);
        }
        let model = model.ok_or("no batches")?;
        let scores = test_z
            .rows()
            .into_iter()
            .map(|r| model.probability(&r.to_vec()))
            .collect();
        report(
            &format!("SGD, class-weighted, {epochs} epoch(s) per batch"),
            scores,
            started.elapsed().as_secs_f64(),
        );
    }
    for alpha in [0.005, 0.1] {
        let started = Instant::now();
        let params = Ftrl::params().alpha(alpha).check()?;
        let mut model = None;
        for batch in &train_batches {
            model = Some(params.fit_with(model, batch)?);
        }
        let model = model.ok_or("no batches")?;
        let scores: Vec<f64> = model.predict(&test_z).iter().map(|p| **p as f64).collect();
        report(
            &format!("linfa-ftrl, alpha {alpha}"),
            scores,
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(())
}
