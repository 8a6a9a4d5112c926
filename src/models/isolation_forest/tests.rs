//! The isolation forest's unit tests, pinned against plain recomputations.

use super::*;
use ndarray::Array2;

fn cluster_with_outliers(seed: u64) -> (Array2<f64>, Vec<bool>) {
    let mut rng = Rng::seed_from(seed);
    let n = 2_000;
    let mut labels = vec![false; n];
    let x = Array2::from_shape_fn((n, 4), |(i, _)| {
        if i % 100 == 0 {
            labels[i] = true;
            6.0 + rng.normal()
        } else {
            rng.normal()
        }
    });
    (x, labels)
}

#[test]
fn bad_params_name_the_value() {
    let fit = |p: IsolationForestParams| {
        p.fit(&DatasetBase::from(Array2::<f64>::zeros((10, 2))))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        fit(IsolationForestParams::default().n_trees(0)),
        "n_trees must be in 1..=10000, got 0"
    );
    assert_eq!(
        fit(IsolationForestParams::default().sample_size(1)),
        "sample_size must be in 2..=65536, got 1"
    );
    assert_eq!(
        fit(IsolationForestParams::default().contamination(0.7)),
        "contamination must be in (0, 0.5], got 0.7"
    );
    let mut x = Array2::<f64>::zeros((10, 2));
    x[[3, 1]] = f64::NAN;
    let err = IsolationForestParams::default()
        .fit(&DatasetBase::from(x))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the training data has a non-finite value at row 3, column 1"
    );
}

#[test]
fn outliers_score_higher_and_the_same_seed_gives_the_same_forest() {
    let (x, labels) = cluster_with_outliers(3);
    let params = IsolationForestParams::default().seed(11);
    let forest = params.fit(&DatasetBase::from(x.clone())).unwrap();
    assert_eq!(forest, params.fit(&DatasetBase::from(x.clone())).unwrap());
    assert_ne!(
        forest,
        params.seed(12).fit(&DatasetBase::from(x.clone())).unwrap()
    );
    let scores = forest.predict(&x);
    // Every outlier outranks the 95th percentile of the inliers.
    let mut inliers: Vec<f64> = scores
        .iter()
        .zip(&labels)
        .filter(|(_, &l)| !l)
        .map(|(s, _)| *s)
        .collect();
    inliers.sort_unstable_by(f64::total_cmp);
    let p95 = quantile(&inliers, 0.95).unwrap();
    for (s, _) in scores.iter().zip(&labels).filter(|(_, &l)| l) {
        assert!(*s > p95, "outlier {s} vs inlier p95 {p95}");
    }
}

#[test]
fn contamination_sets_the_share_of_training_rows_flagged() {
    let (x, _) = cluster_with_outliers(5);
    for share in [0.01, 0.05, 0.2] {
        let forest = IsolationForestParams::default()
            .contamination(share)
            .fit(&DatasetBase::from(x.clone()))
            .unwrap();
        let flagged = x
            .rows()
            .into_iter()
            .filter(|r| forest.decision(r.as_slice().unwrap()) < 0.0)
            .count();
        let got = flagged as f64 / x.nrows() as f64;
        assert!(
            (got - share).abs() < 0.02,
            "contamination {share}: flagged {got}"
        );
    }
}

#[test]
fn scoring_many_rows_gives_each_row_its_own_score_exactly() {
    let (x, _) = cluster_with_outliers(4);
    let forest = IsolationForestParams::default()
        .seed(2)
        .fit(&DatasetBase::from(x.clone()))
        .unwrap();
    let rows: Vec<Vec<f64>> = x.rows().into_iter().take(37).map(|r| r.to_vec()).collect();
    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let mut many = Vec::new();
    forest.score_many(&refs, &mut many);
    let one: Vec<f64> = refs.iter().map(|r| forest.score(r)).collect();
    assert_eq!(many, one);
}

#[test]
fn compiled_trees_give_the_walked_path_lengths_exactly() {
    let (x, _) = cluster_with_outliers(9);
    for sample_size in [2, 3, 100, 256] {
        let forest = IsolationForestParams::default()
            .n_trees(20)
            .sample_size(sample_size)
            .fit(&DatasetBase::from(x.clone()))
            .unwrap();
        walks_agree(&forest, &x, 7);
    }
}

/// Every `step`-th row of `x` has the same path length in each compiled
/// tree as walking its preorder tree gives.
fn walks_agree(forest: &IsolationForest, x: &Array2<f64>, step: usize) {
    for r in (0..x.nrows()).step_by(step) {
        let row = x.row(r).to_vec();
        for (tree, compiled) in forest.trees.iter().zip(&forest.compiled) {
            assert_eq!(
                compiled.path_length(&row, forest.depth),
                path_length(tree, &row)
            );
        }
    }
}

#[test]
fn values_beyond_f32s_range_split_and_score_finitely() {
    // Training rows spanning the whole of f64: widths overflow, and
    // thresholds beyond f32's range must not become infinite.
    let x = Array2::from_shape_fn((400, 2), |(i, j)| match (i % 4, j) {
        (0, 0) => -f64::MAX,
        (1, 0) => f64::MAX,
        (2, _) => 1e39 * i as f64,
        _ => i as f64,
    });
    let forest = IsolationForestParams::default()
        .n_trees(30)
        .fit(&DatasetBase::from(x.clone()))
        .unwrap();
    for tree in &forest.trees {
        assert!(tree.iter().all(|n| n.value.is_finite()));
    }
    for row in [[1e39, 0.0], [f64::MAX, -f64::MAX], [f64::INFINITY, 1e300]] {
        let s = forest.score(&row);
        assert!(s.is_finite() && (0.0..=1.0).contains(&s), "{row:?}: {s}");
    }
    walks_agree(&forest, &x, 3);
}

#[test]
fn average_path_matches_the_paper() {
    assert_eq!(average_path(1), 0.0);
    assert_eq!(average_path(2), 1.0);
    // c(256) from the paper's formula: 2 H(255) - 2 * 255 / 256.
    let h255: f64 = (1..=255).map(|i| 1.0 / i as f64).sum();
    assert!((average_path(256) - (2.0 * h255 - 2.0 * 255.0 / 256.0)).abs() < 0.01);
}
