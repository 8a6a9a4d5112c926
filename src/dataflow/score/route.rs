//! Routing one scored event: its outcome, its alert when the score reaches
//! the threshold in force, or a dead letter when no finite score exists.

use super::{Alert, Outcome, Scorer, UNSCORABLE};
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::FeatureRow;
use crate::ensemble::Components;

/// The first of an event's features and scores that is not finite, by
/// name and value (an autoencoder score not computed, NaN, is not looked at).
fn not_finite(
    scorer: &Scorer,
    row: &FeatureRow,
    c: &Components,
    score: f64,
    lazy: bool,
) -> Option<String> {
    // Checked before anything is formatted: this runs for every event.
    let names = scorer.contract.names();
    if let Some((j, v)) = row.values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let name = names.get(j).copied().unwrap_or("?");
        return Some(format!("feature {name} is {v}"));
    }
    [
        ("isolation_forest", c.isolation_forest),
        ("autoencoder", c.autoencoder),
        ("logistic", c.logistic),
        ("ensemble", score),
    ]
    .into_iter()
    .filter(|(model, _)| !(lazy && *model == "autoencoder"))
    .find(|(_, v)| !v.is_finite())
    .map(|(model, v)| format!("{model} score is {v}"))
}

/// The dead letter of an event that could not be scored finitely.
fn unscorable(scorer: &Scorer, row: &FeatureRow, why: String) -> Box<DeadLetter> {
    let names = scorer.contract.names();
    let features: serde_json::Map<String, serde_json::Value> = row
        .values
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let name = names.get(j).copied().unwrap_or("?").to_string();
            // JSON has no NaN or infinity: such a value is written as text.
            let value = serde_json::Number::from_f64(*v)
                .map_or_else(|| v.to_string().into(), serde_json::Value::Number);
            (name, value)
        })
        .collect();
    let raw = serde_json::json!({ "event_id": row.id.to_string(), "features": features });
    Box::new(DeadLetter {
        code: UNSCORABLE.to_string(),
        stage: "score".to_string(),
        message: format!(
            "event {} has no finite score under model version {}: {why}",
            row.id, scorer.model_version
        ),
        raw: raw.to_string(),
        source: format!("event:{}", row.id),
        seq: row.seq,
        received_at: crate::clock::now_rfc3339(),
    })
}

/// The outcome of `row` scored by `scorer`, alerting at `threshold`.
/// `lazy`: the autoencoder was not run (it has no weight): an alert runs it
/// for its own scores, other events hold NaN for it.
pub(super) fn route(
    scorer: &Scorer,
    row: FeatureRow,
    (mut components, lazy): (Components, bool),
    frozen: Option<f64>,
    threshold: f64,
    now: u64,
) -> Result<Outcome, Box<DeadLetter>> {
    let score = scorer.policy.weights.combine(&components);
    if lazy {
        components.autoencoder = if score >= threshold {
            scorer.models.autoencoder.score(&row.values)
        } else {
            f64::NAN
        };
    }
    let unread = lazy && score < threshold;
    if let Some(why) = not_finite(scorer, &row, &components, score, unread) {
        return Err(unscorable(scorer, &row, why));
    }
    let is_fraud = row.label.map(|l| l.is_fraud);
    let amount = row.values.first().copied().unwrap_or(0.0);
    let alert = (score >= threshold).then(|| {
        Box::new(Alert {
            event_id: row.id.to_string(),
            seq: row.seq,
            event_time: crate::clock::format_millis(row.time_ms as i64),
            step: row.step,
            amount,
            score,
            threshold,
            scores: components,
            reasons: scorer.models.reasons(scorer.contract, &row.values),
            model_version: scorer.model_version.clone(),
            contract: scorer.contract,
            is_fraud,
        })
    });
    Ok(Outcome {
        alert,
        id: row.id,
        seq: row.seq,
        time_ms: row.time_ms,
        place_ms: row.place_ms,
        step: row.step,
        account: row.account,
        is_fraud,
        amount,
        components,
        score,
        frozen,
        threshold,
        latency_us: now.saturating_sub(row.received_us),
        received_us: row.received_us,
    })
}
