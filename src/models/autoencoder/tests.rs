//! The autoencoder's unit tests, pinned against plain recomputations.

use super::*;

/// Rows where feature 2 is the mean of features 0 and 1, with noise.
fn on_a_plane(seed: u64, n: usize) -> Array2<f64> {
    let mut rng = Rng::seed_from(seed);
    let mut x = Array2::zeros((n, 3));
    for mut row in x.rows_mut() {
        let (a, b) = (rng.uniform(), rng.uniform());
        row.assign(&ndarray::arr1(&[a, b, (a + b) / 2.0 + 0.01 * rng.normal()]));
    }
    x
}

#[test]
fn tanh_by_exp_agrees_with_the_library() {
    for i in -3000..=3000 {
        let x = f64::from(i) / 100.0;
        assert!((tanh(x) - x.tanh()).abs() < 1e-15, "tanh({x})");
    }
    assert_eq!((tanh(-800.0), tanh(800.0)), (-1.0, 1.0));
}

#[test]
fn the_allocation_free_score_is_the_same_number() {
    let x = Array2::from_shape_fn((400, 5), |(i, j)| {
        ((i * 13 + j * 7) % 17) as f64 * (j + 1) as f64
    });
    let model = AutoencoderParams::default()
        .epochs(2)
        .fit(&DatasetBase::from(x.clone()))
        .unwrap();
    for row in x.rows() {
        let row = row.to_vec();
        let slow = model.error(&model.scale(row.iter().copied()));
        assert_eq!(model.error_on_stack(&row), Some(slow));
    }
}

#[test]
fn extreme_finite_rows_score_finitely_and_huge_weights_are_refused() {
    let x = on_a_plane(4, 300);
    let mut model = AutoencoderParams::default()
        .epochs(1)
        .fit(&DatasetBase::from(x))
        .unwrap();
    assert_eq!(model.check(), Ok(()));
    for v in [1e39, -1e300, f64::MAX, f64::INFINITY] {
        let row = [v, 0.5, -v];
        let score = model.score(&row);
        assert!((0.0..=1.0).contains(&score), "{v}: {score}");
        assert!(model.errors(&row).iter().all(|e| e.is_finite()), "{v}");
        // The stack path and the allocating path still agree.
        let slow = model.error(&model.scale(row.iter().copied()));
        assert_eq!(model.error_on_stack(&row), Some(slow));
    }
    model.w1[[2, 1]] = 1e300;
    let err = model.check().unwrap_err();
    assert!(err.to_string().contains("w1[2]"), "{err}");
    model.w1[[2, 1]] = f64::INFINITY;
    assert!(model.check().unwrap_err().to_string().contains("w1[2][1]"));
}

#[test]
fn bad_params_name_the_value() {
    let ds = DatasetBase::from(on_a_plane(1, 50));
    let err = |p: AutoencoderParams| p.fit(&ds).map(|_| ()).unwrap_err().to_string();
    assert_eq!(
        err(AutoencoderParams::default().hidden(0)),
        "hidden must be in 1..=1024, got 0"
    );
    // Regression: no upper bound, so a mistyped size ran for hours.
    assert_eq!(
        err(AutoencoderParams::default().hidden(MAX_HIDDEN + 1)),
        "hidden must be in 1..=1024, got 1025"
    );
    assert_eq!(
        err(AutoencoderParams::default().epochs(MAX_EPOCHS + 1)),
        "epochs must be in 1..=1000, got 1001"
    );
    assert_eq!(
        err(AutoencoderParams::default().validation_share(0.9)),
        "validation_share must be in (0, 0.5], got 0.9"
    );
    assert_eq!(
        err(AutoencoderParams::default().learning_rate(-1.0)),
        "learning_rate must be positive and finite, got -1"
    );
    let few = AutoencoderParams::default()
        .fit(&DatasetBase::from(on_a_plane(1, 5)))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        few.to_string(),
        "cannot fit on 5 rows: at least 10 are needed"
    );
}

#[test]
fn rows_off_the_learned_shape_score_higher_and_the_seed_fixes_the_model() {
    let x = on_a_plane(2, 3_000);
    let params = AutoencoderParams::default();
    let model = params.fit(&DatasetBase::from(x.clone())).unwrap();
    assert_eq!(model, params.fit(&DatasetBase::from(x)).unwrap());
    let test = on_a_plane(3, 500);
    let inliers: Vec<f64> = test
        .rows()
        .into_iter()
        .map(|r| model.score(&r.to_vec()))
        .collect();
    let outliers: Vec<f64> = test
        .rows()
        .into_iter()
        .map(|r| model.score(&[r[0], r[1], 1.0 - (r[0] + r[1]) / 2.0]))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&outliers) > 3.0 * mean(&inliers),
        "{} vs {}",
        mean(&outliers),
        mean(&inliers)
    );
    // About 1 % of held-in rows reach the clipped maximum.
    let clipped = inliers.iter().filter(|&&s| s >= 1.0).count() as f64 / inliers.len() as f64;
    assert!(clipped < 0.05, "{clipped}");
    assert!(inliers
        .iter()
        .chain(&outliers)
        .all(|s| (0.0..=1.0).contains(s)));
}
