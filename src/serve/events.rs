//! `POST /events`: one JSON event, or JSON lines (schemas/event_v1.json).
//! Every line becomes an event or a dead letter, handed to the dataflow
//! either way: nothing is dropped. The answer is 202 when all were events,
//! 400 naming each bad line's field and code otherwise, 413 for a body over
//! the limit (read no further, so nothing of it is taken), 408 for a body
//! that does not arrive in time, and 503 while the pipeline stops or when
//! too many events already wait (nothing of the request is taken then).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{BodyRefused, ServeState};
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::json_event::{parse_event, strip_bom};
use crate::sources::live::Refused;
use crate::sources::Parsed;

/// The answer to events or labels sent before a run of several processes
/// takes them (`LiveInput::taking`).
pub const STARTING: &str = "the run is starting: its processes have not all connected yet, \
                            and nothing is taken before they have; retry (GET /ready answers \
                            200 once events are taken)";

/// Bad lines described in one answer, at most.
const ERRORS_SHOWN: usize = 20;

pub async fn post_events(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if state.input.is_closed() {
        let error = "the pipeline is stopping: no events are taken";
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
    }
    let bytes = match super::read_body(&headers, body, state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(BodyRefused::TooLarge) => {
            let error = format!(
                "the body is over the {}-byte limit; send fewer events a request",
                state.max_body_bytes
            );
            return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": error }));
        }
        Err(BodyRefused::TooSlow) => {
            let error = "the body did not arrive in time";
            return reply(StatusCode::REQUEST_TIMEOUT, json!({ "error": error }));
        }
    };
    let received = crate::clock::now_micros();
    let lines = split(strip_bom(&bytes));
    if lines.is_empty() {
        let error = "no events: send one JSON object, or JSON lines";
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    let seqs = state.input.sequence(lines.len() as u64);
    let (parsed, errors) = parse_lines(lines, seqs, received);
    let total = parsed.len() as u64;
    let bad = parsed.iter().filter(|p| p.is_err()).count() as u64;
    if let Err(refused) = state.input.push(parsed) {
        let error = match refused {
            Refused::Full(waiting) => {
                format!("{waiting} events are waiting to be scored: retry shortly")
            }
            Refused::Closed => "the pipeline is stopping: no events are taken".to_string(),
            Refused::Starting => STARTING.to_string(),
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": error })),
        )
            .into_response();
    }
    state.events_in.fetch_add(total, Ordering::Relaxed);
    state.rejected.fetch_add(bad, Ordering::Relaxed);
    let accepted = total - bad;
    if bad == 0 {
        return (StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response();
    }
    let body: Value = json!({
        "accepted": accepted,
        "dead_letters": bad,
        "errors": errors,
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The body's events with their 1-based line numbers (a byte-order mark
/// at its start already removed): the whole body when it is one JSON value (a pretty-printed object spans lines), else each
/// non-blank line.
fn split(body: &[u8]) -> Vec<(u64, &[u8])> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Vec::new();
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok() {
        return vec![(1, trimmed)];
    }
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .collect()
}

/// Every line as an event or a dead letter (invalid UTF-8, a byte-order
/// mark out of place, an oversize line: each refused with its code, never
/// repaired), and the first [`ERRORS_SHOWN`] errors for the answer.
fn parse_lines(
    lines: Vec<(u64, &[u8])>,
    seqs: impl Iterator<Item = u64>,
    received: u64,
) -> (Vec<Parsed>, Vec<Value>) {
    let mut errors = Vec::new();
    let mut parsed: Vec<Parsed> = Vec::with_capacity(lines.len());
    for ((line, raw), seq) in lines.into_iter().zip(seqs) {
        parsed.push(match parse_event(raw, seq) {
            Ok(mut event) => {
                event.received_us = received;
                Ok(event)
            }
            Err(err) => {
                let (code, message) = (err.code(), err.to_string());
                if errors.len() < ERRORS_SHOWN {
                    errors.push(json!({"line": line, "code": code, "message": message}));
                }
                let source = format!("http:{line}");
                Err(Box::new(DeadLetter::parse(code, message, raw, source, seq)))
            }
        });
    }
    (parsed, errors)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::{parse_lines, split, strip_bom};

    fn event(id: &str) -> String {
        format!(
            "{{\"event_id\":\"{id}\",\"timestamp\":\"2024-03-01T12:00:00Z\",\"user_id\":\"u1\",\
             \"type\":\"PAYMENT\",\"amount\":5,\"old_balance_orig\":5,\"new_balance_orig\":0}}"
        )
    }

    #[test]
    fn a_body_with_a_bom_keeps_its_first_event() {
        for body in [
            format!("\u{feff}{}", event("e1")),
            format!("\u{feff}{}\n{}\n", event("e1"), event("e2")),
        ] {
            let lines = split(strip_bom(body.as_bytes()));
            let n = lines.len();
            let (parsed, errors) = parse_lines(lines, 0.., 7);
            assert_eq!(parsed.len(), n);
            assert!(errors.is_empty(), "{errors:?}");
            assert!(parsed
                .iter()
                .all(|p| p.as_ref().is_ok_and(|e| e.received_us == 7)));
        }
    }

    #[test]
    fn invalid_utf8_in_a_body_is_a_dead_letter_never_replaced() {
        let mut second = event("e@2").into_bytes();
        let at = second.iter().position(|&b| b == b'@').unwrap();
        second[at] = 0xFF;
        let mut body = event("e1").into_bytes();
        body.push(b'\n');
        body.extend_from_slice(&second);
        let (parsed, errors) = parse_lines(split(strip_bom(&body)), 10.., 0);
        assert!(parsed[0].is_ok());
        let dead = parsed[1].as_ref().unwrap_err();
        assert_eq!((dead.code.as_str(), dead.seq), ("invalid_utf8", 11));
        assert!(dead.raw.contains("\\xFF"), "{}", dead.raw);
        assert_eq!(errors[0]["code"], "invalid_utf8");
        assert_eq!(errors[0]["line"], 2);
    }

    #[test]
    fn a_pretty_printed_object_is_one_event_and_lines_are_many() {
        assert_eq!(split(b"{\n \"a\": 1\n}\n").len(), 1);
        let lines = split(b"{\"a\":1}\r\n\n{\"b\":2}\nnot json\n");
        let numbers: Vec<u64> = lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 3, 4]);
        assert_eq!(lines[0].1, b"{\"a\":1}");
        assert!(split(b" \n ").is_empty());
    }
}
