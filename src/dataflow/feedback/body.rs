//! The body of `POST /feedback` (schemas/feedback_v1.json): an analyst's
//! label for one transaction. Each refusal names the field at fault.

use serde_json::{Map, Value};
use thiserror::Error;

/// Longest `transaction_id` and `analyst_id`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest `notes`, in bytes.
pub const MAX_NOTES_BYTES: usize = 4_096;

/// A label an analyst sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackBody {
    pub transaction_id: String,
    pub is_fraud: bool,
    pub analyst_id: String,
    pub notes: Option<String>,
}

/// Why a body was refused, naming the field.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FeedbackBodyError {
    #[error("the body is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl FeedbackBodyError {
    /// The field at fault (`body` for the whole of it).
    pub fn field(&self) -> &'static str {
        match self {
            FeedbackBodyError::NotAnObject(_) => "body",
            FeedbackBodyError::Field { field, .. } => field,
        }
    }
}

fn bad(field: &'static str, problem: impl Into<String>) -> FeedbackBodyError {
    FeedbackBodyError::Field {
        field,
        problem: problem.into(),
    }
}

/// Reads a body: `transaction_id` (or the original's `anomaly_id`),
/// `label` (`true_positive` or `fraud`; `false_positive` or `legit`),
/// `analyst_id`, optional `notes`; other fields are ignored.
///
/// ```
/// use fraudflow::dataflow::feedback::body::parse_feedback;
///
/// let body = br#"{"anomaly_id":"evt-7","label":"false_positive","analyst_id":"ana"}"#;
/// let label = parse_feedback(body).unwrap();
/// assert_eq!((label.transaction_id.as_str(), label.is_fraud), ("evt-7", false));
/// let err = parse_feedback(br#"{"transaction_id":"evt-7","label":"maybe","analyst_id":"ana"}"#);
/// assert_eq!(err.unwrap_err().field(), "label");
/// ```
pub fn parse_feedback(bytes: &[u8]) -> Result<FeedbackBody, FeedbackBodyError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| FeedbackBodyError::NotAnObject(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(FeedbackBodyError::NotAnObject(
            "a JSON value other than an object".into(),
        ));
    };
    let transaction_id = transaction_id(&fields)?;
    let label = text(&fields, "label", 32)?.ok_or_else(|| bad("label", "missing"))?;
    let is_fraud = match label.as_str() {
        "true_positive" | "fraud" => true,
        "false_positive" | "legit" => false,
        other => {
            return Err(bad(
                "label",
                format!("{other:?} is not one of true_positive, false_positive, fraud, legit"),
            ))
        }
    };
    let analyst_id =
        text(&fields, "analyst_id", MAX_ID_BYTES)?.ok_or_else(|| bad("analyst_id", "missing"))?;
    let notes = text(&fields, "notes", MAX_NOTES_BYTES)?;
    Ok(FeedbackBody {
        transaction_id,
        is_fraud,
        analyst_id,
        notes,
    })
}

/// `transaction_id`, or its synonym `anomaly_id`; both may be given only
/// when they agree.
fn transaction_id(fields: &Map<String, Value>) -> Result<String, FeedbackBodyError> {
    let id = text(fields, "transaction_id", MAX_ID_BYTES)?;
    let synonym = text(fields, "anomaly_id", MAX_ID_BYTES)?;
    match (id, synonym) {
        (Some(a), Some(b)) if a != b => Err(bad(
            "transaction_id",
            format!("{a:?} and anomaly_id {b:?} name different transactions"),
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(bad("transaction_id", "missing (or give anomaly_id)")),
    }
}

/// A string field that, when present and not null, is non-blank and at
/// most `max` bytes.
fn text(
    fields: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, FeedbackBodyError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(bad(field, "empty")),
        Some(Value::String(s)) if s.len() > max => Err(bad(
            field,
            format!("{} bytes, over the {max}-byte limit", s.len()),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(field, format!("expected a string, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> &'static str {
        parse_feedback(body.as_bytes()).unwrap_err().field()
    }

    #[test]
    fn every_label_spelling_reads_as_its_class() {
        for (label, fraud) in [
            ("true_positive", true),
            ("fraud", true),
            ("false_positive", false),
            ("legit", false),
        ] {
            let body = format!(
                r#"{{"transaction_id":"t1","label":"{label}","analyst_id":"a","notes":"n"}}"#
            );
            let got = parse_feedback(body.as_bytes()).unwrap();
            assert_eq!(got.is_fraud, fraud, "{label}");
            assert_eq!(got.notes.as_deref(), Some("n"));
        }
    }

    #[test]
    fn each_bad_body_names_its_field() {
        assert_eq!(field_of("not json"), "body");
        assert_eq!(field_of("[1]"), "body");
        assert_eq!(
            field_of(r#"{"label":"fraud","analyst_id":"a"}"#),
            "transaction_id"
        );
        assert_eq!(
            field_of(r#"{"transaction_id":"t","anomaly_id":"u","label":"fraud","analyst_id":"a"}"#),
            "transaction_id"
        );
        assert_eq!(
            field_of(r#"{"transaction_id":7,"label":"fraud","analyst_id":"a"}"#),
            "transaction_id"
        );
        assert_eq!(
            field_of(r#"{"transaction_id":"t","analyst_id":"a"}"#),
            "label"
        );
        assert_eq!(
            field_of(r#"{"transaction_id":"t","label":"Fraud","analyst_id":"a"}"#),
            "label"
        );
        assert_eq!(
            field_of(r#"{"transaction_id":"t","label":"fraud"}"#),
            "analyst_id"
        );
        assert_eq!(
            field_of(r#"{"transaction_id":"t","label":"fraud","analyst_id":" "}"#),
            "analyst_id"
        );
        let long = "x".repeat(MAX_NOTES_BYTES + 1);
        let body = format!(
            r#"{{"transaction_id":"t","label":"fraud","analyst_id":"a","notes":"{long}"}}"#
        );
        assert_eq!(field_of(&body), "notes");
    }

    #[test]
    fn the_original_anomaly_id_is_a_synonym() {
        let both = r#"{"transaction_id":"t","anomaly_id":"t","label":"legit","analyst_id":"a"}"#;
        assert_eq!(parse_feedback(both.as_bytes()).unwrap().transaction_id, "t");
    }
}
