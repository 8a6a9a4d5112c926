//! `POST /events`: one JSON event, or JSON lines (schemas/event_v1.json).
//! Every line becomes an event or a dead letter, handed to the dataflow
//! either way: nothing is dropped. The answer is 202 when all were events,
//! 400 naming each bad line's field and code otherwise, 413 for a body over
//! the limit (read no further, so nothing of it is taken), 408 for a body
//! that does not arrive in time, and 503 while the pipeline stops or when
//! too many events already wait (nothing of the request is taken then).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ServeState;
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::json_event::parse_event;
use crate::sources::Parsed;

/// Bad lines described in one answer, at most.
const ERRORS_SHOWN: usize = 20;

pub async fn post_events(State(state): State<Arc<ServeState>>, body: Body) -> Response {
    if state.input.is_closed() {
        let error = "the pipeline is stopping: no events are taken";
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
    }
    let read = tokio::time::timeout(super::BODY_TIMEOUT, to_bytes(body, state.max_body_bytes));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            let error = format!(
                "the body is over the {}-byte limit; send fewer events a request",
                state.max_body_bytes
            );
            return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": error }));
        }
        Err(_) => {
            let error = "the body did not arrive in time";
            return reply(StatusCode::REQUEST_TIMEOUT, json!({ "error": error }));
        }
    };
    let received = crate::clock::now_micros();
    let lines = split(&bytes);
    if lines.is_empty() {
        let error = "no events: send one JSON object, or JSON lines";
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    let seqs: Vec<u64> = state.input.sequence(lines.len() as u64).collect();
    let mut errors = Vec::new();
    let mut parsed: Vec<Parsed> = Vec::with_capacity(lines.len());
    for ((line, raw), seq) in lines.into_iter().zip(seqs) {
        let result = std::str::from_utf8(raw)
            .map_err(|e| ("malformed_json", format!("not UTF-8: {e}")))
            .and_then(|text| parse_event(text, seq).map_err(|e| (e.code(), e.to_string())));
        parsed.push(match result {
            Ok(mut event) => {
                event.received_us = received;
                Ok(event)
            }
            Err((code, message)) => {
                if errors.len() < ERRORS_SHOWN {
                    errors.push(json!({"line": line, "code": code, "message": message}));
                }
                Err(Box::new(dead_letter(code, message, raw, line, seq)))
            }
        });
    }
    let total = parsed.len() as u64;
    let bad = parsed.iter().filter(|p| p.is_err()).count() as u64;
    if let Err(waiting) = state.input.push(parsed) {
        let error = format!("{waiting} events are waiting to be scored: retry shortly");
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

/// The body's events with their 1-based line numbers: the whole body when
/// it is one JSON value (a pretty-printed object spans lines), else each
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

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn dead_letter(code: &str, message: String, raw: &[u8], line: u64, seq: u64) -> DeadLetter {
    const KEEP: usize = 4_096;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(KEEP)]).into_owned();
    DeadLetter {
        code: code.to_string(),
        stage: "parse".to_string(),
        message,
        raw: text,
        source: format!("http:{line}"),
        seq,
        received_at: crate::clock::now_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::split;

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
