//! Bounded, printable quotations of bytes that came from outside.
//!
//! Input is hostile by default: a row of 10 MB, a binary file given as CSV,
//! a line that is not UTF-8. Whatever quotes such input, a dead letter's
//! `raw` or a message naming a bad value, must stay small and must not carry
//! raw bytes to a terminal or a JSON file, so every quotation is made here,
//! in one way: valid UTF-8 is kept (cut only at a character boundary),
//! invalid bytes are written `\xNN`, and a cut says how long the original
//! was.

use std::fmt;

/// Most bytes of a dead letter's `raw` (schemas/dlq_v1.json) as written in
/// JSON, escapes and the note of a cut included: a control byte that JSON
/// writes `\u0001` counts six, so a line of them makes no bigger a dead
/// letter than any other.
pub const RAW_LIMIT: usize = 4_096;

/// Most bytes of a parse dead letter's `message` as written in JSON.
pub const MESSAGE_LIMIT: usize = 1_024;

/// Most bytes of the text of a value quoted inside a message.
pub const VALUE_LIMIT: usize = 64;

/// How characters are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    /// As they are: a dead letter's field, which JSON escapes, so its limit
    /// counts the bytes JSON writes.
    Verbatim,
    /// Control and quote characters escaped as Rust's `{:?}` does: a value
    /// inside a message, meant for a terminal.
    Escaped,
}

impl Style {
    /// What `piece`, as this style wrote it, costs against a limit.
    fn cost(self, piece: &str) -> usize {
        match self {
            Style::Verbatim => piece.chars().map(json_len).sum(),
            Style::Escaped => piece.len(),
        }
    }
}

/// Bytes JSON (serde_json) writes for `ch` inside a string.
fn json_len(ch: char) -> usize {
    match ch {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

/// The first bytes of `raw` written in `style`, costing at most `limit`
/// (see [`Style::cost`]); true when all of `raw` fitted. Only the part kept
/// is walked, so a 10 MB input costs no more than a short one.
fn take(raw: &[u8], limit: usize, style: Style) -> (String, bool) {
    use fmt::Write as _;
    let mut out = String::new();
    let mut cost = 0;
    for chunk in raw.utf8_chunks() {
        for ch in chunk.valid().chars() {
            let before = out.len();
            match style {
                Style::Verbatim => out.push(ch),
                Style::Escaped if ch == '\'' => out.push(ch),
                Style::Escaped => out.extend(ch.escape_debug()),
            }
            cost += style.cost(&out[before..]);
            if cost > limit {
                out.truncate(before);
                return (out, false);
            }
        }
        for byte in chunk.invalid() {
            let before = out.len();
            let _ = write!(out, "\\x{byte:02X}");
            cost += style.cost(&out[before..]);
            if cost > limit {
                out.truncate(before);
                return (out, false);
            }
        }
    }
    (out, true)
}

/// What a dead letter keeps of a rejected payload: all of it when it fits in
/// [`RAW_LIMIT`] bytes as JSON writes it, else its beginning and its full
/// length. Invalid UTF-8 bytes are written `\xNN`.
///
/// ```
/// use fraudflow::excerpt::{raw, RAW_LIMIT};
///
/// assert_eq!(raw(b"1,PAYMENT,x"), "1,PAYMENT,x");
/// assert_eq!(raw(b"a\xFFb"), "a\\xFFb");
/// let big = raw(&vec![b'9'; 10_000_000]);
/// assert!(big.len() <= RAW_LIMIT && big.ends_with("(10000000 bytes in all)"));
/// // JSON writes each control byte as six: 682 of them fit.
/// let control = raw(&[1u8; 5_000]);
/// assert!(serde_json::to_string(&control).unwrap().len() - 2 <= RAW_LIMIT);
/// ```
pub fn raw(payload: &[u8]) -> String {
    cut(payload, RAW_LIMIT)
}

/// A dead letter's message, cut as [`raw`] cuts a payload but at
/// [`MESSAGE_LIMIT`] bytes as JSON writes it.
pub fn message(text: &str) -> String {
    cut(text.as_bytes(), MESSAGE_LIMIT)
}

fn cut(payload: &[u8], limit: usize) -> String {
    let (text, whole) = take(payload, limit, Style::Verbatim);
    if whole {
        return text;
    }
    let note = cut_note(payload.len());
    let (mut text, _) = take(payload, limit - note.len(), Style::Verbatim);
    text.push_str(&note);
    text
}

fn cut_note(len: usize) -> String {
    format!("... ({len} bytes in all)")
}

/// A value quoted in an error message: at most [`VALUE_LIMIT`] bytes of it,
/// escaped, in double quotes, with the full length after a cut. Its
/// `Display` is what messages print.
///
/// ```
/// use fraudflow::excerpt::Quote;
///
/// assert_eq!(Quote::new(b"REFUND").to_string(), "\"REFUND\"");
/// assert_eq!(Quote::new(b"a\"b\n\xFF").to_string(), r#""a\"b\n\xFF""#);
/// let long = Quote::new(&vec![b'7'; 1_000]).to_string();
/// assert!(long.len() < 100 && long.ends_with("...\" (1000 bytes)"), "{long}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    text: String,
    /// Bytes of the whole value.
    len: usize,
    whole: bool,
}

impl Quote {
    /// Quotes raw bytes.
    pub fn new(value: &[u8]) -> Quote {
        Quote::with_limit(value, VALUE_LIMIT)
    }

    /// Quotes raw bytes, keeping up to `limit` bytes of text: for a value
    /// longer than most by nature, such as a file's header line.
    pub fn with_limit(value: &[u8], limit: usize) -> Quote {
        let (text, whole) = take(value, limit, Style::Escaped);
        Quote {
            text,
            len: value.len(),
            whole,
        }
    }

    /// Quotes a string.
    pub fn of(value: &str) -> Quote {
        Quote::new(value.as_bytes())
    }

    /// The length in bytes of the whole value quoted.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a quotation of nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.whole {
            write!(f, "\"{}\"", self.text)
        } else {
            write!(f, "\"{}...\" ({} bytes)", self.text, self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_falls_on_a_character_boundary_and_stays_under_the_limit() {
        // Three-byte characters never line up with the limit.
        let text = "€".repeat(5_000);
        let kept = raw(text.as_bytes());
        assert!(kept.len() <= RAW_LIMIT, "{}", kept.len());
        let body = kept.strip_suffix("... (15000 bytes in all)").unwrap();
        assert!(body.chars().all(|c| c == '€'));
        assert_eq!(body.len(), (RAW_LIMIT - 24) / 3 * 3);
        let exact = "x".repeat(RAW_LIMIT);
        assert_eq!(raw(exact.as_bytes()), exact);
    }

    /// Bytes serde_json writes for `text` inside a string.
    fn written(text: &str) -> usize {
        serde_json::to_string(text).unwrap().len() - 2
    }

    /// Class 9 "limits that are not there": the cut counted the text, not
    /// what JSON writes, so 4,096 control bytes made a `raw` of 24,576.
    #[test]
    fn raw_is_cut_at_the_limit_as_json_writes_it() {
        let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let payloads: [Vec<u8>; 6] = [
            vec![1; 10_000],
            vec![b'"'; 10_000],
            b"\\\n\t\x7f".repeat(3_000),
            binary,
            vec![b'x'; RAW_LIMIT],
            vec![0; RAW_LIMIT / 6],
        ];
        for payload in payloads {
            let kept = raw(&payload);
            assert!(written(&kept) <= RAW_LIMIT, "{}", written(&kept));
            let whole = String::from_utf8(payload.clone()).map(|t| written(&t) <= RAW_LIMIT);
            if whole == Ok(true) {
                assert_eq!(kept.as_bytes(), payload);
            } else {
                let note = format!("... ({} bytes in all)", payload.len());
                assert!(kept.ends_with(&note), "{kept:.100}");
            }
        }
        let long = "é\u{1}".repeat(1_000);
        assert!(written(&message(&long)) <= MESSAGE_LIMIT);
    }

    #[test]
    fn invalid_bytes_are_escaped_and_count_against_the_limit() {
        let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let kept = raw(&binary);
        assert!(kept.len() <= RAW_LIMIT);
        assert!(kept.contains("\\x80\\x81"), "{kept:.400}");
        assert!(kept.ends_with("(100000 bytes in all)"));
        let q = Quote::new(&binary).to_string();
        assert!(q.starts_with(r#""\0\u{1}\u{2}"#), "{q}");
        assert!(q.len() <= VALUE_LIMIT + 20, "{q}");
    }
}
