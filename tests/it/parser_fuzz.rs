//! The parsers under hostile input, by property: whatever the bytes,
//! `parse_block` (what the file source runs on each block, for PaySim CSV
//! and JSON lines) does not panic, and every line that is not blank ends as
//! exactly one event or one dead letter, at its own line number, with a
//! bounded dead letter. Blank lines (nothing but ASCII white space) are
//! skipped by design in both formats; the oracle counts them out explicitly.
//!
//! The input mixes good rows (which must parse, to the value written) with
//! random bytes, long lines, byte-order marks, invalid UTF-8, huge numbers,
//! quotes, CRLF and NULs. 64 cases a run by default, so the suite stays
//! quick; `FRAUDFLOW_FUZZ_CASES` sets the count (`.ci/run` runs a longer,
//! bounded pass).

use fraudflow::dataflow::json_event::paysim_event;
use fraudflow::excerpt::RAW_LIMIT;
use fraudflow::paysim::{AccountId, Transaction, TxnType};
use fraudflow::sources::file::{parse_block, InputFormat};
use fraudflow::sources::{Parsed, SourceCounts};
use proptest::prelude::*;
use proptest::sample::Index;

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Longest message a dead letter may carry: values in it are quoted short.
const MESSAGE_LIMIT: usize = 512;

/// What a line must become.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// An event, with this amount.
    Event(f64),
    /// An event on line 1 of a JSON-lines file (a byte-order mark is
    /// allowed there), a `malformed_json` dead letter anywhere else.
    EventOnFirstLine(f64),
    /// A dead letter, with this code when given.
    Dead(Option<&'static str>),
    /// Anything, as long as it is one event or one dead letter.
    Either,
}

#[derive(Clone, Debug)]
struct Line {
    bytes: Vec<u8>,
    want: Want,
}

fn line(bytes: impl Into<Vec<u8>>, want: Want) -> Line {
    Line {
        bytes: bytes.into(),
        want,
    }
}

fn cases() -> u32 {
    std::env::var("FRAUDFLOW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn row() -> impl Strategy<Value = Transaction> {
    let account = (any::<bool>(), 0u64..100_000_000_000).prop_map(|(merchant, n)| {
        let name = format!("{}{n}", if merchant { 'M' } else { 'C' });
        AccountId::from_name(&name)
    });
    (
        (1u32..=743, 0usize..5, 0u64..1_000_000_000_000),
        (account.clone(), account, 0u64..1_000_000_000, any::<bool>()),
    )
        .prop_map(|((step, kind, cents), (orig, dest, balance, fraud))| {
            let amount = cents as f64 / 100.0;
            Transaction {
                step,
                kind: TxnType::ALL[kind],
                amount,
                name_orig: orig,
                old_balance_orig: balance as f64,
                new_balance_orig: 0.0,
                name_dest: dest,
                old_balance_dest: 0.0,
                new_balance_dest: amount,
                is_fraud: fraud,
                is_flagged_fraud: false,
            }
        })
}

/// Hostile bytes, never a line end: random bytes and the usual suspects.
fn junk() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        Just(b"\0".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\xFF\xFE".to_vec()),
        Just(b"\xC3".to_vec()),
        Just(BOM.to_vec()),
        Just(b"1e999".to_vec()),
        Just("\u{2028}é€".as_bytes().to_vec()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| {
        let mut bytes = pieces.concat();
        bytes
            .iter_mut()
            .filter(|b| **b == b'\n')
            .for_each(|b| *b = b'?');
        bytes
    })
}

fn insert(mut base: Vec<u8>, at: Index, piece: &[u8]) -> Vec<u8> {
    let at = at.index(base.len() + 1);
    base.splice(at..at, piece.iter().copied());
    base
}

fn blank() -> impl Strategy<Value = Line> {
    prop_oneof![Just(""), Just(" "), Just("\r"), Just("\t \r"), Just("\x0c")]
        .prop_map(|b| line(b, Want::Either))
}

fn csv_text(t: &Transaction, step: &str, kind: &str) -> String {
    format!(
        "{step},{kind},{},{},{},{},{},{},{},{},0",
        t.amount,
        t.name_orig,
        t.old_balance_orig,
        t.new_balance_orig,
        t.name_dest,
        t.old_balance_dest,
        t.new_balance_dest,
        u8::from(t.is_fraud)
    )
}

fn csv_line() -> impl Strategy<Value = Line> {
    let plain = |t: &Transaction| csv_text(t, &t.step.to_string(), t.kind.as_str());
    prop_oneof![
        5 => row().prop_map(move |t| line(plain(&t), Want::Event(t.amount))),
        1 => row().prop_map(|t| {
            let quoted = format!("\"{}\"", t.kind.as_str());
            line(csv_text(&t, &t.step.to_string(), &quoted), Want::Event(t.amount))
        }),
        1 => (row(), 18usize..300_000).prop_map(move |(t, digits)| {
            let long = format!(",C{},", "7".repeat(digits));
            let text = plain(&t).replacen(&format!(",{},", t.name_orig), &long, 1);
            line(text, Want::Dead(Some("bad_account")))
        }),
        1 => (row(), 10usize..400).prop_map(|(t, zeros)| {
            let step = format!("1{}", "0".repeat(zeros));
            line(csv_text(&t, &step, t.kind.as_str()), Want::Dead(Some("bad_step")))
        }),
        1 => row().prop_map(move |t| {
            let text = plain(&t);
            let huge = format!("1{}", "0".repeat(400));
            let text = text.replacen(&format!(",{},", t.amount), &format!(",{huge},"), 1);
            line(text, Want::Dead(Some("not_finite")))
        }),
        1 => row().prop_map(move |t| line([BOM, plain(&t).as_bytes()].concat(), Want::Dead(Some("bad_step")))),
        1 => row().prop_map(move |t| {
            let text = plain(&t).replacen(t.kind.as_str(), "PAY\0MENT", 1);
            line(text, Want::Dead(Some("unknown_type")))
        }),
        2 => (row(), any::<Index>(), junk())
            .prop_map(move |(t, at, j)| line(insert(plain(&t).into_bytes(), at, &j), Want::Either)),
        2 => junk().prop_map(|j| line(j, Want::Either)),
        1 => blank(),
    ]
}

fn json_line() -> impl Strategy<Value = Line> {
    let text = |t: &Transaction| paysim_event(t, "e@", 3_600_000 * u64::from(t.step)).to_string();
    let amount = |t: &Transaction| format!("\"amount\":{}", serde_json::json!(t.amount));
    prop_oneof![
        5 => row().prop_map(move |t| line(text(&t), Want::Event(t.amount))),
        1 => row().prop_map(move |t| {
            line([BOM, text(&t).as_bytes()].concat(), Want::EventOnFirstLine(t.amount))
        }),
        1 => (row(), 0x80u8..=0xFF).prop_map(move |(t, byte)| {
            let mut bytes = text(&t).into_bytes();
            let at = bytes.iter().position(|&b| b == b'@').unwrap();
            bytes[at] = byte;
            line(bytes, Want::Dead(Some("invalid_utf8")))
        }),
        1 => row().prop_map(move |t| {
            let huge = text(&t).replacen(&amount(&t), "\"amount\":1e999", 1);
            line(huge, Want::Dead(Some("not_finite")))
        }),
        1 => row().prop_map(move |t| {
            let huge = text(&t).replacen(&amount(&t), "\"amount\":\"1e999\"", 1);
            line(huge, Want::Dead(Some("not_finite")))
        }),
        1 => (row(), 65_537usize..200_000).prop_map(move |(t, pad)| {
            let padded = text(&t).replacen("e@", &"p".repeat(pad), 1);
            line(padded, Want::Dead(Some("oversize_payload")))
        }),
        1 => row().prop_map(move |t| {
            line(text(&t).replacen("e@", "e\0", 1), Want::Dead(Some("malformed_json")))
        }),
        2 => (row(), any::<Index>(), junk())
            .prop_map(move |(t, at, j)| line(insert(text(&t).into_bytes(), at, &j), Want::Either)),
        2 => junk().prop_map(|j| line(j, Want::Either)),
        1 => blank(),
    ]
}

/// Lines, each with its line end (LF or CRLF); the last may have none.
fn input(
    lines: impl Strategy<Value = Line>,
) -> impl Strategy<Value = (Vec<Line>, Vec<bool>, bool)> {
    prop::collection::vec(lines, 0..24).prop_flat_map(|lines| {
        let n = lines.len();
        (
            Just(lines),
            prop::collection::vec(any::<bool>(), n),
            any::<bool>(),
        )
    })
}

fn join(lines: &[Line], crlf: &[bool], last_end: bool) -> Vec<u8> {
    let mut buf = Vec::new();
    for (i, (l, &cr)) in lines.iter().zip(crlf).enumerate() {
        buf.extend_from_slice(&l.bytes);
        if i + 1 < lines.len() || last_end {
            buf.extend_from_slice(if cr { b"\r\n" } else { b"\n" });
        }
    }
    buf
}

/// Runs `parse_block` over the lines and holds every output to its line.
fn check(
    format: InputFormat,
    lines: &[Line],
    crlf: &[bool],
    last_end: bool,
) -> Result<(), TestCaseError> {
    let buf = join(lines, crlf, last_end);
    let first_line = match format {
        InputFormat::PaysimCsv => 2,
        InputFormat::JsonLines => 1,
    };
    let counts = SourceCounts::default();
    let mut out: Vec<Parsed> = Vec::new();
    parse_block(format, &buf, first_line, "fuzz", &counts, |p| out.push(p));

    // Plain recomputation: the segments between line ends, less the blank.
    let mut expected = Vec::new();
    for (k, segment) in buf.split(|&b| b == b'\n').enumerate() {
        let number = first_line + k as u64;
        let segment = segment.strip_suffix(b"\r").unwrap_or(segment);
        let bom_allowed = format == InputFormat::JsonLines && number == 1;
        let segment = if bom_allowed {
            segment.strip_prefix(BOM).unwrap_or(segment)
        } else {
            segment
        };
        if !segment.trim_ascii().is_empty() {
            let want = lines.get(k).map_or(Want::Either, |l| l.want);
            expected.push((number, segment, want));
        }
    }
    prop_assert_eq!(
        out.len(),
        expected.len(),
        "lines in != events + dead letters"
    );
    prop_assert_eq!(counts.events_in.get(), out.len() as u64);
    for (parsed, &(number, segment, want)) in out.iter().zip(&expected) {
        match parsed {
            Ok(event) => {
                let seq = if format == InputFormat::PaysimCsv {
                    number - 1
                } else {
                    number
                };
                prop_assert_eq!(event.seq, seq);
                match want {
                    Want::Event(amount) => prop_assert_eq!(event.amount, amount),
                    Want::EventOnFirstLine(amount) if number == 1 => {
                        prop_assert_eq!(event.amount, amount)
                    }
                    Want::Either => {}
                    other => prop_assert!(false, "line {} parsed, wanted {:?}", number, other),
                }
            }
            Err(dead) => {
                prop_assert_eq!(&dead.source, &format!("fuzz:{number}"));
                // The limit counts what JSON writes, escapes included.
                let written = |text: &str| serde_json::to_string(text).map_or(0, |j| j.len() - 2);
                prop_assert!(
                    written(&dead.raw) <= RAW_LIMIT,
                    "raw of {} bytes as written",
                    written(&dead.raw)
                );
                prop_assert!(
                    dead.message.len() <= MESSAGE_LIMIT,
                    "message {:?}",
                    dead.message
                );
                if let Ok(text) = std::str::from_utf8(segment) {
                    if written(text) <= RAW_LIMIT {
                        prop_assert_eq!(&dead.raw, text);
                    }
                }
                match want {
                    Want::Dead(Some(code)) => {
                        prop_assert_eq!(dead.code.as_str(), code, "{}", dead.message)
                    }
                    Want::EventOnFirstLine(_) if number != 1 => {
                        prop_assert_eq!(dead.code.as_str(), "malformed_json")
                    }
                    Want::Dead(None) | Want::Either => {}
                    other => prop_assert!(
                        false,
                        "line {} refused ({}), wanted {:?}",
                        number,
                        dead.message,
                        other
                    ),
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_csv_line_ends_as_one_event_or_one_dead_letter((lines, crlf, last_end) in input(csv_line())) {
        check(InputFormat::PaysimCsv, &lines, &crlf, last_end)?;
    }

    #[test]
    fn every_json_line_ends_as_one_event_or_one_dead_letter((lines, crlf, last_end) in input(json_line())) {
        check(InputFormat::JsonLines, &lines, &crlf, last_end)?;
    }
}
