//! Live events as JSON, one object a line (schemas/event_v1.json).

use serde_json::{Map, Value};
use thiserror::Error;

use crate::clock::parse_millis;
use crate::event::{Event, EventId, Label};
use crate::paysim::{AccountId, TxnType};

/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Why a JSON event was rejected; `code()` is what the dead letter carries
/// and what the schema documents under `x-dead-letter-codes`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EventError {
    #[error("payload of {bytes} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")]
    Oversize { bytes: usize },
    #[error("not a JSON object: {reason}")]
    Malformed { reason: String },
    #[error("field {field} is missing")]
    Missing { field: &'static str },
    #[error("field {field}: expected {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("field amount: {value} is negative")]
    NegativeAmount { value: f64 },
    #[error("field {field}: {value} is negative")]
    NegativeBalance { field: &'static str, value: f64 },
    #[error("field {field}: {value:?} is not a finite number")]
    NotFinite { field: &'static str, value: String },
    #[error("field type: {value:?} is not one of CASH_IN, CASH_OUT (or CASH-OUT), DEBIT, PAYMENT, TRANSFER")]
    UnknownType { value: String },
    #[error(
        "field timestamp: {value:?} is not an ISO-8601 time with a UTC offset, at or after 1970"
    )]
    BadTimestamp { value: String },
    #[error("field {field}: {value:?} is empty")]
    Empty { field: &'static str, value: String },
}

impl EventError {
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Oversize { .. } => "oversize_payload",
            EventError::Malformed { .. } => "malformed_json",
            EventError::Missing { .. } => "missing_field",
            EventError::WrongType { .. } => "wrong_type",
            EventError::NegativeAmount { .. } => "negative_amount",
            EventError::NegativeBalance { .. } => "negative_balance",
            EventError::NotFinite { .. } => "not_finite",
            EventError::UnknownType { .. } => "unknown_type",
            EventError::BadTimestamp { .. } => "bad_timestamp",
            EventError::Empty { .. } => "empty_field",
        }
    }
}

/// Parses one event. `seq` is its input order. Leakage fields (`is_fraud`,
/// `isFraud`, `isFlaggedFraud`, `label`) become the event's label and never
/// its features.
///
/// ```
/// use fraudflow::dataflow::json_event::parse_event;
///
/// let e = parse_event(r#"{"event_id":"e1","timestamp":"2024-03-01T12:00:00Z","user_id":"u1",
///     "type":"CASH-OUT","amount":10.5,"old_balance_orig":20,"new_balance_orig":9.5,"is_fraud":1}"#, 7).unwrap();
/// assert_eq!((e.seq, e.hour_of_day, e.amount), (7, 12, 10.5));
/// assert!(e.label.unwrap().is_fraud);
/// let bad = parse_event(r#"{"event_id":"e2"}"#, 8).unwrap_err();
/// assert_eq!(bad.code(), "missing_field");
/// ```
pub fn parse_event(payload: &str, seq: u64) -> Result<Event, EventError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(EventError::Oversize {
            bytes: payload.len(),
        });
    }
    let value: Value = serde_json::from_str(payload).map_err(|e| EventError::Malformed {
        reason: e.to_string(),
    })?;
    let Value::Object(obj) = value else {
        return Err(EventError::Malformed {
            reason: format!("found {}", kind_of(&value)),
        });
    };
    let event_id = string(&obj, "event_id")?;
    let timestamp = string(&obj, "timestamp")?;
    let ms = parse_millis(&timestamp)
        .filter(|&s| s >= 0)
        .ok_or(EventError::BadTimestamp { value: timestamp })?;
    let user = string(&obj, "user_id")?;
    let kind_text = string(&obj, "type")?;
    let kind = TxnType::from_bytes(kind_text.as_bytes())
        .ok_or(EventError::UnknownType { value: kind_text })?;
    let amount = number(&obj, "amount")?.ok_or(EventError::Missing { field: "amount" })?;
    if amount < 0.0 {
        return Err(EventError::NegativeAmount { value: amount });
    }
    let balance = |field| -> Result<Option<f64>, EventError> {
        match number(&obj, field)? {
            Some(v) if v < 0.0 => Err(EventError::NegativeBalance { field, value: v }),
            other => Ok(other),
        }
    };
    let old_balance_orig = balance("old_balance_orig")?.ok_or(EventError::Missing {
        field: "old_balance_orig",
    })?;
    let new_balance_orig = balance("new_balance_orig")?.ok_or(EventError::Missing {
        field: "new_balance_orig",
    })?;
    let dest = match obj.get("dest_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(AccountId::from_name(&string(&obj, "dest_id")?)),
    };
    let ms = ms as u64;
    Ok(Event {
        id: EventId::Named(event_id.into_boxed_str()),
        seq,
        time_ms: ms,
        hour_of_day: (ms / crate::event::STEP_MS % 24) as u8,
        step: None,
        kind,
        amount,
        orig: AccountId::from_name(&user),
        old_balance_orig,
        new_balance_orig,
        dest,
        old_balance_dest: balance("old_balance_dest")?.unwrap_or(0.0),
        new_balance_dest: balance("new_balance_dest")?.unwrap_or(0.0),
        label: label(&obj)?,
        received_us: 0,
    })
}

/// A PaySim row as a JSON event (schemas/event_v1.json) named `event_id`
/// and stamped `time_ms`: what `loadgen` sends, and how tests write the
/// same events in both formats.
///
/// ```
/// use fraudflow::dataflow::json_event::{paysim_event, parse_event};
/// use fraudflow::paysim::{AccountId, Transaction, TxnType};
/// let t = Transaction {
///     step: 1, kind: TxnType::Transfer, amount: 181.0,
///     name_orig: AccountId::from_name("C1305486145"), old_balance_orig: 181.0, new_balance_orig: 0.0,
///     name_dest: AccountId::from_name("C553264065"), old_balance_dest: 0.0, new_balance_dest: 0.0,
///     is_fraud: true, is_flagged_fraud: false,
/// };
/// let e = parse_event(&paysim_event(&t, "e1", 3_600_000).to_string(), 1).unwrap();
/// assert_eq!((e.time_ms, e.amount, e.orig), (3_600_000, 181.0, t.name_orig));
/// assert!(e.label.unwrap().is_fraud);
/// ```
pub fn paysim_event(t: &crate::paysim::Transaction, event_id: &str, time_ms: u64) -> Value {
    serde_json::json!({
        "event_id": event_id,
        "timestamp": crate::clock::format_millis(time_ms as i64),
        "user_id": t.name_orig.to_string(),
        "dest_id": t.name_dest.to_string(),
        "type": t.kind.as_str(),
        "amount": t.amount,
        "old_balance_orig": t.old_balance_orig,
        "new_balance_orig": t.new_balance_orig,
        "old_balance_dest": t.old_balance_dest,
        "new_balance_dest": t.new_balance_dest,
        "is_fraud": u8::from(t.is_fraud),
    })
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
    .to_string()
}

fn string(obj: &Map<String, Value>, field: &'static str) -> Result<String, EventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(EventError::Missing { field }),
        Some(Value::String(s)) if s.trim().is_empty() => Err(EventError::Empty {
            field,
            value: s.clone(),
        }),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(EventError::WrongType {
            field,
            expected: "a string",
            found: kind_of(other),
        }),
    }
}

/// A number, or a string holding one (producers often quote decimals).
fn number(obj: &Map<String, Value>, field: &'static str) -> Result<Option<f64>, EventError> {
    let value = match obj.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| EventError::NotFinite {
            field,
            value: n.to_string(),
        })?,
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| EventError::WrongType {
            field,
            expected: "a number",
            found: format!("the string {s:?}"),
        })?,
        Some(other) => {
            return Err(EventError::WrongType {
                field,
                expected: "a number",
                found: kind_of(other),
            })
        }
    };
    if value.is_finite() {
        Ok(Some(value))
    } else {
        Err(EventError::NotFinite {
            field,
            value: value.to_string(),
        })
    }
}

/// The ground truth, if the payload carries any of the leakage fields.
fn label(obj: &Map<String, Value>) -> Result<Option<Label>, EventError> {
    let flag = |field: &'static str| -> Result<Option<bool>, EventError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_f64() == Some(1.0) => Ok(Some(true)),
            Some(Value::String(s)) if matches!(s.as_str(), "fraud" | "true_positive") => {
                Ok(Some(true))
            }
            Some(Value::String(s)) if matches!(s.as_str(), "legit" | "false_positive") => {
                Ok(Some(false))
            }
            Some(other) => Err(EventError::WrongType {
                field,
                expected: "a label",
                found: kind_of(other),
            }),
        }
    };
    let fraud = [flag("is_fraud")?, flag("isFraud")?, flag("label")?]
        .into_iter()
        .flatten()
        .next();
    let flagged = flag("isFlaggedFraud")?;
    Ok(fraud.map(|is_fraud| Label {
        is_fraud,
        is_flagged_fraud: flagged.unwrap_or(false),
    }))
}
