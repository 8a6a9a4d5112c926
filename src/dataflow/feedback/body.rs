//! The body of `POST /feedback` (schemas/feedback_v1.json): an analyst's
//! label for one transaction. Each refusal names the field at fault.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Longest `transaction_id` and `analyst_id`, in characters (as the
/// schema's `maxLength` counts).
pub const MAX_ID_CHARS: usize = 256;
/// Longest `notes`, in characters.
pub const MAX_NOTES_CHARS: usize = 4_096;

/// The fields a body may have; any other is skipped unread.
const FIELDS: [&str; 5] = [
    "transaction_id",
    "anomaly_id",
    "label",
    "analyst_id",
    "notes",
];

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
    let Known(fields) =
        serde_json::from_slice(bytes).map_err(|e| FeedbackBodyError::NotAnObject(e.to_string()))?;
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
        text(&fields, "analyst_id", MAX_ID_CHARS)?.ok_or_else(|| bad("analyst_id", "missing"))?;
    let notes = text(&fields, "notes", MAX_NOTES_CHARS)?;
    Ok(FeedbackBody {
        transaction_id,
        is_fraud,
        analyst_id,
        notes,
    })
}

/// A body's known fields, the last of each name kept (as a JSON object's
/// duplicate keys are usually read); any other field is skipped without
/// being read into a value, so it may hold any JSON at all, a number past
/// f64's range included.
struct Known(Map<String, Value>);

impl<'de> Deserialize<'de> for Known {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Known, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Known;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Known, A::Error> {
                let mut known = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if FIELDS.contains(&key.as_str()) {
                        known.insert(key, map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Known(known))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// `transaction_id`, or its synonym `anomaly_id`; both may be given only
/// when they agree.
fn transaction_id(fields: &Map<String, Value>) -> Result<String, FeedbackBodyError> {
    let id = text(fields, "transaction_id", MAX_ID_CHARS)?;
    let synonym = text(fields, "anomaly_id", MAX_ID_CHARS)?;
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
/// most `max` characters.
fn text(
    fields: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, FeedbackBodyError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(bad(field, "empty")),
        Some(Value::String(s)) if s.chars().count() > max => Err(bad(
            field,
            format!(
                "{} characters, over the {max}-character limit",
                s.chars().count()
            ),
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
        let long = "x".repeat(MAX_NOTES_CHARS + 1);
        let body = format!(
            r#"{{"transaction_id":"t","label":"fraud","analyst_id":"a","notes":"{long}"}}"#
        );
        assert_eq!(field_of(&body), "notes");
    }

    #[test]
    fn lengths_are_counted_in_characters_and_unknown_fields_are_not_read() {
        let body = |id: &str, extra: &str| {
            format!(r#"{{"transaction_id":"{id}","label":"fraud","analyst_id":"a"{extra}}}"#)
        };
        // Two bytes each: 256 of them are within the schema's maxLength.
        let id = "é".repeat(MAX_ID_CHARS);
        assert_eq!(
            parse_feedback(body(&id, "").as_bytes())
                .unwrap()
                .transaction_id,
            id
        );
        let err = parse_feedback(body(&format!("{id}é"), "").as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "transaction_id: 257 characters, over the 256-character limit"
        );
        let odd = r#","x":1e999,"y":[{"z":-1e400}],"label2":null,"transaction_id":"last""#;
        let got = parse_feedback(body("first", odd).as_bytes()).unwrap();
        assert_eq!(
            got.transaction_id, "last",
            "the last of a duplicate key wins"
        );
        // A known field that cannot be read at all is the body's fault.
        assert_eq!(field_of(&body("t", r#","notes":1e999"#)), "body");
    }

    #[test]
    fn the_original_anomaly_id_is_a_synonym() {
        let both = r#"{"transaction_id":"t","anomaly_id":"t","label":"legit","analyst_id":"a"}"#;
        assert_eq!(parse_feedback(both.as_bytes()).unwrap().transaction_id, "t");
    }
}
