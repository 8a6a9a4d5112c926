use super::*;

fn alert(step: Option<u32>, is_fraud: Option<bool>) -> Alert {
    Alert {
        event_id: "e1".into(),
        seq: 7,
        event_time: "2024-03-01T12:00:00Z".into(),
        step,
        amount: 5.0,
        score: 0.9,
        threshold: 0.5,
        scores: Components::default(),
        reasons: Vec::new(),
        model_version: "v".into(),
        contract: Contract::V2,
        is_fraud,
    }
}

#[test]
fn an_alert_without_step_or_label_crosses_processes_and_leaves_them_out_of_json() {
    for a in [
        alert(None, None),
        alert(Some(3), None),
        alert(None, Some(true)),
    ] {
        let wire = bincode::serialize(&a).unwrap();
        assert_eq!(bincode::deserialize::<Alert>(&wire).unwrap(), a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json.contains("\"step\""), a.step.is_some(), "{json}");
        assert_eq!(json.contains("is_fraud"), a.is_fraud.is_some(), "{json}");
        assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), a);
    }
}

/// Three small models fitted on seven features, for the V1 contract.
fn scorer(weights: crate::ensemble::Weights) -> Scorer {
    use crate::models::autoencoder::AutoencoderParams;
    use crate::models::isolation_forest::IsolationForestParams;
    use crate::models::online_logistic::OnlineLogisticParams;
    use linfa::prelude::*;
    let x = ndarray::Array2::from_shape_fn((60, 7), |(i, j)| ((i * 7 + j) % 11) as f64);
    let y: ndarray::Array1<bool> = (0..60).map(|i| i % 6 == 0).collect();
    let models = Models {
        isolation_forest: IsolationForestParams::default()
            .n_trees(5)
            .fit(&DatasetBase::from(x.clone()))
            .unwrap(),
        autoencoder: AutoencoderParams::default()
            .epochs(1)
            .fit(&DatasetBase::from(x.clone()))
            .unwrap(),
        logistic: OnlineLogisticParams::default()
            .fit(&DatasetBase::new(x, y))
            .unwrap(),
    };
    Scorer {
        models,
        policy: Policy {
            weights,
            threshold: 0.5,
        },
        contract: Contract::V1,
        model_version: "test".into(),
    }
}

fn row(values: &[f64]) -> FeatureRow {
    FeatureRow {
        account: crate::paysim::AccountId::from_name("C1"),
        id: crate::event::EventId::Row(42),
        seq: 42,
        time_ms: 0,
        place_ms: 0,
        step: Some(0),
        received_us: 0,
        label: None,
        values: crate::features::FeatureVec::from_slice(values),
    }
}

#[test]
fn an_event_without_a_finite_score_is_a_dead_letter_not_a_lost_event() {
    let good = scorer(crate::ensemble::Weights::ORIGINAL);
    let extreme = [1e39, f64::MAX, -f64::MAX, 1.0, 0.0, 23.0, 1e300];
    let scored = |scorer: &Scorer, values: &[f64]| {
        let row = row(values);
        let mut components = Vec::new();
        scorer
            .models
            .components_many(&[&row.values[..]], &mut components);
        route(
            scorer,
            row,
            (components[0], false),
            None,
            scorer.policy.threshold,
            0,
        )
    };
    let outcome = scored(&good, &extreme).unwrap();
    assert!((0.0..=1.0).contains(&outcome.score), "{outcome:?}");

    // A NaN feature (no parser lets one through) or weights that no
    // load would accept: the event is a dead letter, named.
    let mut nan = extreme;
    nan[2] = f64::NAN;
    let dead = scored(&good, &nan).unwrap_err();
    assert_eq!(
        (dead.code.as_str(), dead.stage.as_str()),
        (UNSCORABLE, "score")
    );
    assert_eq!((dead.seq, dead.source.as_str()), (42, "event:42"));
    assert!(
        dead.message.contains("feature balance_diff_orig is NaN"),
        "{}",
        dead.message
    );
    assert!(
        dead.raw.contains("\"balance_diff_orig\":\"NaN\""),
        "{}",
        dead.raw
    );
    let bad = scorer(crate::ensemble::Weights {
        isolation_forest: f64::INFINITY,
        autoencoder: 0.0,
        logistic: 0.0,
    });
    let dead = scored(&bad, &[1.0; 7]).unwrap_err();
    assert!(
        dead.message.contains("ensemble score is"),
        "{}",
        dead.message
    );
}

/// Scores `rows` in one group as the operator does, with `shown`.
fn routed(scorer: &Arc<Scorer>, rows: &[FeatureRow], shown: Shown) -> Vec<Outcome> {
    let version = Version::of(Arc::clone(scorer), None);
    let (mut out, mut components) = (Vec::new(), Vec::new());
    let thresholds = BTreeMap::new();
    let groups = vec![(version, rows.to_vec())];
    score_groups(groups, None, (&thresholds, shown), &mut components, |o| {
        out.push(o.unwrap())
    });
    out
}

#[test]
fn an_unweighted_autoencoder_runs_for_alerts_only_and_changes_no_score() {
    let weights = crate::ensemble::Weights {
        isolation_forest: 0.5,
        autoencoder: 0.0,
        logistic: 0.5,
    };
    let mut scorer = scorer(weights);
    let rows: Vec<FeatureRow> = (0..40)
        .map(|i| {
            row(&[
                (i % 11) as f64,
                (i * 3 % 7) as f64,
                1.0,
                0.0,
                2.0,
                5.0,
                (i % 4) as f64,
            ])
        })
        .collect();
    // A threshold between the rows' scores: some alert, some do not.
    let every = routed(&Arc::new(scorer.clone()), &rows, Shown::Every);
    let mut scores: Vec<f64> = every.iter().map(|o| o.score).collect();
    scores.sort_by(f64::total_cmp);
    scorer.policy.threshold = scores[scores.len() / 2];
    let scorer = Arc::new(scorer);
    let every = routed(&scorer, &rows, Shown::Every);
    let alerts = routed(&scorer, &rows, Shown::Alerts);
    let alerted = every.iter().filter(|o| o.alert.is_some()).count();
    assert!(alerted > 5 && alerted < 35, "{alerted} alerts");
    for ((e, a), row) in every.iter().zip(&alerts).zip(&rows) {
        assert_eq!(e.score.to_bits(), a.score.to_bits());
        assert_eq!(e.alert, a.alert, "an alert shows its autoencoder score");
        let own = scorer.models.autoencoder.score(&row.values);
        assert_eq!(e.components.autoencoder, own);
        match &a.alert {
            Some(alert) => assert_eq!(alert.scores.autoencoder, own),
            None => assert!(a.components.autoencoder.is_nan()),
        }
        let forest_and_logistic =
            |o: &Outcome| (o.components.isolation_forest, o.components.logistic);
        assert_eq!(forest_and_logistic(e), forest_and_logistic(a));
    }
    // With weight on the autoencoder, every event gets it either way.
    let mut weighted = (*scorer).clone();
    weighted.policy.weights = crate::ensemble::Weights::ORIGINAL;
    let weighted = Arc::new(weighted);
    let both = [Shown::Every, Shown::Alerts].map(|s| routed(&weighted, &rows, s));
    let shown = |o: &Outcome| (o.components, o.score, o.alert.clone());
    let shown: Vec<Vec<_>> = both.iter().map(|b| b.iter().map(shown).collect()).collect();
    assert_eq!(shown[0], shown[1]);
}
