//! `POST /feedback`: an analyst's label for one transaction
//! (schemas/feedback_v1.json), handed to the dataflow, where it joins the
//! transaction's features and the online model learns from it: straight
//! (HTTP runs), or in a Kafka run through the `feedback` topic, or the
//! outbox when the broker cannot take it (`crate::kafka::publish`).
//!
//! Answers: 202 once the label is durable (`kept`: `dataflow`, `published`
//! or `outbox`); 422 naming the field of a
//! bad body; 413 for a body over the limit; 408 for one that does not
//! arrive in time; 401 when an API token is configured and the request's
//! `Authorization: Bearer` token is missing or wrong (compared in constant
//! time); 503 when the label cannot be kept at all (no `[feedback]` in the
//! dataflow, the run stopping, or too many labels waiting).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{BodyRefused, ServeState};
use crate::dataflow::feedback::body::{parse_feedback, FeedbackBody, MAX_NOTES_CHARS};
use crate::event::EventId;
use crate::kafka::publish::{Kept, Publisher};
use crate::metrics::{
    self,
    events::{FeedbackRequest, LabelKept},
};

/// Largest body of one label: the notes and ids, with room for fields the
/// original sent that are ignored.
pub const MAX_FEEDBACK_BYTES: usize = 4 * MAX_NOTES_CHARS;

pub async fn post_feedback(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    metrics::emit(FeedbackRequest);
    if let Some(refused) = authorize(&state, &headers) {
        return refused;
    }
    let Some(labels) = &state.labels else {
        let error = "this dataflow learns from no feedback: add a [feedback] table to its file";
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
    };
    let bytes = match super::read_body(&headers, body, MAX_FEEDBACK_BYTES).await {
        Ok(bytes) => bytes,
        Err(BodyRefused::TooLarge) => {
            let error = format!("the body is over the {MAX_FEEDBACK_BYTES}-byte limit");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": error }));
        }
        Err(BodyRefused::TooSlow) => {
            let error = "the body did not arrive in time";
            return reply(StatusCode::REQUEST_TIMEOUT, json!({ "error": error }));
        }
    };
    let label = match parse_feedback(&bytes) {
        Ok(label) => label,
        Err(e) => {
            let body = json!({ "error": e.to_string(), "field": e.field() });
            return reply(StatusCode::UNPROCESSABLE_ENTITY, body);
        }
    };
    if let Some(publisher) = &state.publisher {
        return publish(Arc::clone(publisher), label).await;
    }
    if !state.input.taking() {
        let error = super::events::STARTING;
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
    }
    let id = EventId::Named(label.transaction_id.clone().into_boxed_str());
    let pushed = labels.push(id, label.is_fraud);
    metrics::emit(match pushed {
        Ok(()) => LabelKept::Published(1),
        Err(_) => LabelKept::Refused,
    });
    match pushed {
        Ok(()) => accepted(&label, "dataflow"),
        Err(0) => {
            let error = "the pipeline is stopping: no feedback is taken";
            reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }))
        }
        Err(waiting) => {
            let error = format!("{waiting} labels are waiting for the dataflow: retry shortly");
            reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }))
        }
    }
}

fn accepted(label: &FeedbackBody, kept: &str) -> Response {
    let body = json!({
        "accepted": true,
        "transaction_id": label.transaction_id,
        "label": if label.is_fraud { "fraud" } else { "legit" },
        "kept": kept,
    });
    reply(StatusCode::ACCEPTED, body)
}

/// A Kafka run: the label, as schemas/feedback_v1.json has it, to the
/// `feedback` topic keyed by its transaction, or to the outbox; 202 once
/// it is durable in either, 503 when neither could keep it.
async fn publish(publisher: Arc<Publisher>, label: FeedbackBody) -> Response {
    let payload = json!({
        "transaction_id": label.transaction_id,
        "label": if label.is_fraud { "fraud" } else { "legit" },
        "analyst_id": label.analyst_id,
        "notes": label.notes,
    })
    .to_string();
    let key = label.transaction_id.clone();
    let kept = tokio::task::spawn_blocking(move || publisher.accept(&key, payload.as_bytes()));
    let kept = kept.await;
    metrics::emit(match &kept {
        Ok(Ok(Kept::Published)) => LabelKept::Published(1),
        Ok(Ok(Kept::Outbox)) => LabelKept::InOutbox,
        _ => LabelKept::Refused,
    });
    match kept {
        Ok(Ok(Kept::Published)) => accepted(&label, "published"),
        Ok(Ok(Kept::Outbox)) => accepted(&label, "outbox"),
        Ok(Err(e)) => {
            let error = format!("the label could not be kept: {e}");
            reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }))
        }
        Err(e) => {
            let error = format!("the label could not be kept: {e}");
            reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }))
        }
    }
}

/// `POST /flush`: the learner fits the labels it has buffered now, rather
/// than when its batch fills or its wait ends; when none are yet (labels
/// just sent may still be on their way through the join), as soon as some
/// are. 202 when asked; 401 as for
/// feedback; 503 without `[feedback]` or on a process other than 0, where
/// no learner runs.
pub async fn post_flush(State(state): State<Arc<ServeState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = authorize(&state, &headers) {
        return refused;
    }
    let Some(flush) = &state.flush else {
        let error = "this dataflow learns from no feedback: add a [feedback] table to its file";
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
    };
    if state.process != 0 {
        let error = "the learner runs in process 0: POST /flush there";
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": error }));
    }
    flush.store(true, std::sync::atomic::Ordering::Relaxed);
    state.input.wake();
    reply(StatusCode::ACCEPTED, json!({ "flush": "requested" }))
}

/// `None` when no token is configured or the request carries it; else the
/// 401 answer.
pub fn authorize(state: &ServeState, headers: &HeaderMap) -> Option<Response> {
    let token = state.api_token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let good = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())));
    if good {
        return None;
    }
    let error = match given {
        None => "an API token is required: send Authorization: Bearer TOKEN",
        Some(_) => "the API token is wrong",
    };
    let mut answer = reply(StatusCode::UNAUTHORIZED, json!({ "error": error }));
    answer.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(answer)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}
