//! What the dead-letter sink receives: the payload that failed, and why.

use serde::{Deserialize, Serialize};

/// One rejected payload (schemas/dlq_v1.json).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stable error code, e.g. `not_a_number`, `malformed_json`.
    pub code: String,
    /// The stage that rejected it: `parse`, or `score` (code `unscorable`).
    pub stage: String,
    /// What was wrong, naming the bad value.
    pub message: String,
    /// The payload as received.
    pub raw: String,
    /// Where it came from: `FILE:LINE`.
    pub source: String,
    /// Input order, for a stable order in the sink.
    pub seq: u64,
    /// When it was rejected, ISO-8601 UTC.
    pub received_at: String,
}
