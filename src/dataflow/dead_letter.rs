//! What the dead-letter sink receives: the payload that failed, and why.
//!
//! Every source (the CSV and JSON-lines files, HTTP) makes its dead letters
//! with [`DeadLetter::parse`], so that each quotes its payload the same
//! bounded way ([`crate::excerpt::raw`]): a 10 MB row or a binary file must
//! not become a 10 MB record, nor raw bytes in a JSON file.
//!
//! The limits count what is written, JSON's escapes included, so a parse
//! dead letter is at most [`crate::excerpt::RAW_LIMIT`] bytes of `raw`,
//! [`crate::excerpt::MESSAGE_LIMIT`] of `message`, its `source` and
//! [`FIXED_BYTES`] for the rest, whatever the line held.

use serde::{Deserialize, Serialize};

/// Most bytes of a parse dead letter's line besides `raw`, `message` and
/// `source` as written: the keys and punctuation (80), a code (at most
/// 20), the stage (6), `seq` (at most 20 digits), `received_at` (20) and
/// the line end make 147.
pub const FIXED_BYTES: usize = 160;

/// One rejected payload (schemas/dlq_v1.json).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stable error code, e.g. `not_a_number`, `malformed_json`.
    pub code: String,
    /// The stage that rejected it: `parse`, or `score` (code `unscorable`).
    pub stage: String,
    /// What was wrong, naming the bad value; from the parse stage cut at
    /// [`crate::excerpt::MESSAGE_LIMIT`] bytes as written.
    pub message: String,
    /// The payload as received, cut at [`crate::excerpt::RAW_LIMIT`] bytes
    /// as written in JSON, with its full length noted; invalid UTF-8 bytes
    /// written `\xNN`.
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
            message: crate::excerpt::message(&message),
            raw: crate::excerpt::raw(raw),
            source,
            seq,
            received_at: crate::clock::now_rfc3339(),
        }
    }
}
