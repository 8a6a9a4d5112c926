//! Live events as JSON, one object a line (schemas/event_v1.json).

use serde_json::{Map, Value};
use thiserror::Error;

use crate::clock::parse_millis;
use crate::event::{Event, EventId, Label};
use crate::excerpt::Quote;
use crate::paysim::{AccountId, NonFinite, TxnType};

/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Why a JSON event was rejected; `code()` is what the dead letter carries
/// and what the schema documents under `x-dead-letter-codes`. Every value
/// named is a bounded [`Quote`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EventError {
    #[error("payload of {bytes} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")]
    Oversize { bytes: usize },
    #[error("not UTF-8: byte {at} of the line starts {bytes}, which no UTF-8 text holds")]
    InvalidUtf8 {
        /// 1-based position of the first bad byte.
        at: usize,
        /// The bad bytes, escaped.
        bytes: Quote,
    },
    #[error("{reason}")]
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
    NegativeAmount { value: Quote },
    #[error("field {field}: {value} is negative")]
    NegativeBalance { field: &'static str, value: Quote },
    #[error("field {field}: {value} {problem}")]
    NotFinite {
        field: &'static str,
        value: Quote,
        problem: NonFinite,
    },
    #[error("field type: {value} is not one of CASH_IN, CASH_OUT (or CASH-OUT), DEBIT, PAYMENT, TRANSFER")]
    UnknownType { value: Quote },
    #[error("field timestamp: {value} {problem}")]
    BadTimestamp { value: Quote, problem: TimeProblem },
    #[error("field {field}: {value} is empty")]
    Empty { field: &'static str, value: Quote },
}

/// Why a timestamp is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TimeProblem {
    #[error("is not an ISO-8601 time with a UTC offset, such as 2024-03-01T12:00:00Z")]
    NotIso,
    #[error("is before 1970")]
    Before1970,
    #[error(
        "is a date and time with an offset, but beyond the last one representable (9999-12-30)"
    )]
    OutOfRange,
}

impl EventError {
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Oversize { .. } => "oversize_payload",
            EventError::InvalidUtf8 { .. } => "invalid_utf8",
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

/// The UTF-8 byte-order mark, which some editors put at the start of a
/// file: allowed there (and at the start of an HTTP body), nowhere else.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `input` without a leading byte-order mark.
pub fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(BOM).unwrap_or(input)
}

/// Checks what comes before JSON: the size, UTF-8 (never replaced: a line
/// that is not UTF-8 is refused, so no value is silently changed), and a
/// byte-order mark out of place.
fn payload_text(payload: &[u8]) -> Result<&str, EventError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(EventError::Oversize {
            bytes: payload.len(),
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        let at = e.valid_up_to();
        let len = e.error_len().unwrap_or(payload.len() - at);
        EventError::InvalidUtf8 {
            at: at + 1,
            bytes: Quote::new(&payload[at..at + len]),
        }
    })?;
    if payload.trim_ascii_start().starts_with(BOM) {
        return Err(EventError::Malformed {
            reason: "a byte-order mark (U+FEFF) starts the line: one is allowed only at the \
                     start of a file or body"
                .to_string(),
        });
    }
    Ok(text)
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
pub fn parse_event(payload: impl AsRef<[u8]>, seq: u64) -> Result<Event, EventError> {
    let text = payload_text(payload.as_ref())?;
    event(&parse_object(text)?, seq)
}

/// A parsed event object, with the top-level fields whose number was beyond
/// f64's range.
///
/// serde_json refuses such a number (1e400) for the whole line, which made
/// it `malformed_json` where the same number written as a string ("1e400")
/// was `not_finite` for its field. [`parse_object`] sets these numbers aside
/// by field, so both forms get the same code and message.
struct Object {
    map: Map<String, Value>,
    /// (field, number as written), for numbers directly under a field of
    /// the top-level object; the last of a field written twice wins, as in
    /// the map.
    huge: Vec<(String, String)>,
}

/// What a field of an [`Object`] holds.
enum Field<'a> {
    /// Absent or null.
    Absent,
    /// A number beyond f64's range, as written.
    Huge(&'a str),
    Value(&'a Value),
}

impl Object {
    fn field(&self, name: &str) -> Field<'_> {
        if let Some((_, text)) = self.huge.iter().find(|(k, _)| k == name) {
            return Field::Huge(text);
        }
        match self.map.get(name) {
            None | Some(Value::Null) => Field::Absent,
            Some(v) => Field::Value(v),
        }
    }
}

/// Parses a JSON object. Only when serde_json refuses the text is it
/// scanned for numbers beyond f64's range: those are replaced by `null`
/// (padded to their length, so an error's column stays true) and parsed
/// again; any other fault is reported as it is.
fn parse_object(text: &str) -> Result<Object, EventError> {
    let malformed = |e: serde_json::Error| EventError::Malformed {
        reason: format!("not JSON: {e}"),
    };
    let (value, huge) = match serde_json::from_str::<Value>(text) {
        Ok(value) => (value, Vec::new()),
        Err(e) => {
            let (text, huge) = set_aside_huge(text).ok_or_else(|| malformed(e))?;
            (serde_json::from_str(&text).map_err(malformed)?, huge)
        }
    };
    match value {
        Value::Object(map) => Ok(Object { map, huge }),
        other => Err(EventError::Malformed {
            reason: format!("expected a JSON object, found {}", describe(&other)),
        }),
    }
}

/// `text` with each JSON number beyond f64's range (1e400, -1e400) written
/// `null` and spaces, and the top-level fields they were the values of;
/// `None` when it has none.
fn set_aside_huge(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut huge = Vec::new();
    let (mut depth, mut key, mut found, mut i) = (0usize, None::<String>, false, 0);
    while i < bytes.len() {
        let end = match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i);
                let after = bytes[end..].iter().find(|b| !b.is_ascii_whitespace());
                if depth == 1 && after == Some(&b':') {
                    key = serde_json::from_str::<String>(&text[i..end]).ok();
                    huge.retain(|(k, _)| Some(k) != key.as_ref());
                }
                end
            }
            b'-' | b'0'..=b'9' => {
                let end = i + bytes[i..]
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                let token = &text[i..end];
                if is_json_number(token) && token.parse::<f64>().is_ok_and(f64::is_infinite) {
                    out[i..end].fill(b' ');
                    out[i..i + 4].copy_from_slice(b"null");
                    found = true;
                    if let (1, Some(k)) = (depth, &key) {
                        huge.push((k.clone(), token.to_string()));
                    }
                }
                end
            }
            open @ (b'{' | b'[' | b'}' | b']') => {
                depth = if matches!(open, b'{' | b'[') {
                    depth + 1
                } else {
                    depth.saturating_sub(1)
                };
                i + 1
            }
            _ => i + 1,
        };
        i = end;
    }
    // Only ASCII digits were replaced by ASCII: still UTF-8.
    let out = String::from_utf8(out).ok()?;
    found.then_some((out, huge))
}

/// The index just past the string that starts with the quote at `start`
/// (the end of `bytes` when it is not closed).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// True when `token` is a number as JSON writes one:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(token: &str) -> bool {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let s = token.strip_prefix('-').unwrap_or(token);
    let int = digits(s);
    if int == 0 || (int > 1 && s.starts_with('0')) {
        return false;
    }
    let mut s = &s[int..];
    if let Some(frac) = s.strip_prefix('.') {
        let n = digits(frac);
        if n == 0 {
            return false;
        }
        s = &frac[n..];
    }
    if let Some(exp) = s.strip_prefix(['e', 'E']) {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        let n = digits(exp);
        return n > 0 && n == exp.len();
    }
    s.is_empty()
}

/// The object's `timestamp` in milliseconds since the epoch, which may
/// not be before it.
fn event_time(obj: &Object) -> Result<u64, EventError> {
    let timestamp = string(obj, "timestamp")?;
    let bad_time = |problem| EventError::BadTimestamp {
        value: Quote::of(&timestamp),
        problem,
    };
    let ms = parse_millis(&timestamp).ok_or_else(|| {
        bad_time(if crate::clock::is_beyond_range(&timestamp) {
            TimeProblem::OutOfRange
        } else {
            TimeProblem::NotIso
        })
    })?;
    u64::try_from(ms).map_err(|_| bad_time(TimeProblem::Before1970))
}

/// The event an object describes.
fn event(obj: &Object, seq: u64) -> Result<Event, EventError> {
    let event_id = string(obj, "event_id")?;
    let ms = event_time(obj)?;
    let user = string(obj, "user_id")?;
    let kind_text = string(obj, "type")?;
    let kind =
        TxnType::from_bytes(kind_text.as_bytes()).ok_or_else(|| EventError::UnknownType {
            value: Quote::of(&kind_text),
        })?;
    let (amount, amount_text) =
        number(obj, "amount")?.ok_or(EventError::Missing { field: "amount" })?;
    if amount < 0.0 {
        return Err(EventError::NegativeAmount { value: amount_text });
    }
    let balance = |field| -> Result<Option<f64>, EventError> {
        match number(obj, field)? {
            Some((v, value)) if v < 0.0 => Err(EventError::NegativeBalance { field, value }),
            other => Ok(other.map(|(v, _)| v)),
        }
    };
    let old_balance_orig = balance("old_balance_orig")?.ok_or(EventError::Missing {
        field: "old_balance_orig",
    })?;
    let new_balance_orig = balance("new_balance_orig")?.ok_or(EventError::Missing {
        field: "new_balance_orig",
    })?;
    let dest = match obj.field("dest_id") {
        Field::Absent => None,
        _ => Some(AccountId::from_name(&string(obj, "dest_id")?)),
    };
    Ok(Event {
        id: EventId::Named(event_id.into_boxed_str()),
        seq,
        time_ms: ms,
        place_ms: ms,
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
        label: label(obj)?,
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

/// A JSON value for a message: its kind, and a short quote of a string.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {}", Quote::of(&n.to_string())),
        Value::String(s) => format!("the string {}", Quote::of(s)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn string(obj: &Object, field: &'static str) -> Result<String, EventError> {
    match obj.field(field) {
        Field::Absent => Err(EventError::Missing { field }),
        Field::Huge(text) => Err(EventError::WrongType {
            field,
            expected: "a string",
            found: format!("the number {}", Quote::of(text)),
        }),
        Field::Value(Value::String(s)) if s.trim().is_empty() => Err(EventError::Empty {
            field,
            value: Quote::of(s),
        }),
        Field::Value(Value::String(s)) => Ok(s.clone()),
        Field::Value(other) => Err(EventError::WrongType {
            field,
            expected: "a string",
            found: describe(other),
        }),
    }
}

/// A number, or a string holding one (producers often quote decimals),
/// with its text as written for messages. A number beyond f64's range is
/// `not_finite` in both forms; one too small for an f64 (1e-400) is 0 in
/// both, as Rust's and serde_json's parsers round it.
fn number(obj: &Object, field: &'static str) -> Result<Option<(f64, Quote)>, EventError> {
    let (value, text) = match obj.field(field) {
        Field::Absent => return Ok(None),
        Field::Huge(text) => (text.parse::<f64>().unwrap_or(f64::NAN), text.to_string()),
        // Without serde_json's arbitrary precision every number is an f64,
        // an i64 or a u64; JSON itself has no NaN and no infinity.
        Field::Value(Value::Number(n)) => (n.as_f64().unwrap_or(f64::NAN), n.to_string()),
        Field::Value(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(v) => (v, s.clone()),
            Err(_) => {
                return Err(EventError::WrongType {
                    field,
                    expected: "a number",
                    found: format!("the string {}", Quote::of(s)),
                })
            }
        },
        Field::Value(other) => {
            return Err(EventError::WrongType {
                field,
                expected: "a number",
                found: describe(other),
            })
        }
    };
    if value.is_finite() {
        Ok(Some((value, Quote::of(&text))))
    } else {
        Err(EventError::NotFinite {
            field,
            value: Quote::of(&text),
            problem: NonFinite::of(text.as_bytes(), value),
        })
    }
}

/// What a label field may hold.
const LABEL: &str =
    "a label (0, 1, true, false, \"fraud\", \"legit\", \"true_positive\" or \"false_positive\")";

/// The ground truth, if the payload carries any of the leakage fields.
fn label(obj: &Object) -> Result<Option<Label>, EventError> {
    let flag = |field: &'static str| -> Result<Option<bool>, EventError> {
        let value = match obj.field(field) {
            Field::Absent => return Ok(None),
            Field::Huge(text) => {
                return Err(EventError::WrongType {
                    field,
                    expected: LABEL,
                    found: format!("the number {}", Quote::of(text)),
                })
            }
            Field::Value(value) => value,
        };
        match value {
            Value::Bool(b) => Ok(Some(*b)),
            Value::Number(n) if n.as_f64() == Some(0.0) => Ok(Some(false)),
            Value::Number(n) if n.as_f64() == Some(1.0) => Ok(Some(true)),
            Value::String(s) if matches!(s.as_str(), "fraud" | "true_positive") => Ok(Some(true)),
            Value::String(s) if matches!(s.as_str(), "legit" | "false_positive") => Ok(Some(false)),
            other => Err(EventError::WrongType {
                field,
                expected: LABEL,
                found: describe(other),
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
