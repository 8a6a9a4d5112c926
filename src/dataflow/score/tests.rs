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
        route(scorer, row, components[0], None, scorer.policy.threshold, 0)
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
