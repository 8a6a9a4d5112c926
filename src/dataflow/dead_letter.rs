//! What the dead-letter sink receives: the payload that failed, and why.
//!
//! Every source (the CSV and JSON-lines files, HTTP) makes its dead letters
//! with [`DeadLetter::parse`], so that each quotes its payload the same
//! bounded way ([`crate::excerpt::raw`]): a 10 MB row or a binary file must
//! not become a 10 MB record, nor raw bytes in a JSON file.

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
    /// The payload as received, cut at [`crate::excerpt::RAW_LIMIT`] bytes
    /// with its full length noted; invalid UTF-8 bytes written `\xNN`.
    pub raw: String,
    /// Where it came from: `FILE:LINE`.
    pub source: String,
    /// Input order, for a stable order in the sink.
    pub seq: u64,
    /// When it was rejected, ISO-8601 UTC.
    pub received_at: String,
}

impl DeadLetter {
    /// A payload the parse stage rejected: `raw` is the payload as received
    /// (any bytes, any length), `source` names where it came from.
    ///
    /// ```
    /// use fraudflow::dataflow::dead_letter::DeadLetter;
    ///
    /// let d = DeadLetter::parse("malformed_json", "not JSON".into(), b"\xFF{", "http:1".into(), 4);
    /// assert_eq!((d.raw.as_str(), d.stage.as_str(), d.seq), ("\\xFF{", "parse", 4));
    /// ```
    pub fn parse(code: &str, message: String, raw: &[u8], source: String, seq: u64) -> DeadLetter {
        DeadLetter {
            code: code.to_string(),
            stage: "parse".to_string(),
            message,
            raw: crate::excerpt::raw(raw),
            source,
            seq,
            received_at: crate::clock::now_rfc3339(),
        }
    }
}
