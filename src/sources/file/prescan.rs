//! The event times of a block, read cheaply, so that every worker can follow
//! the input-order [`Frontier`] over the whole file.
//!
//! Why: workers parse their own blocks only, but which events are late, and
//! where they go, must not depend on how blocks were shared out
//! (`sources::order`). Each process reads every block's bytes once
//! anyway, to count its lines (`shared`); reading each line's time as well
//! (a PaySim row's first field, a JSON event's `timestamp`) is cheap beside
//! a full parse, and lets each worker know the frontier at the start of
//! each of its own blocks exactly as any other worker would. A line whose time cannot be read does
//! not move the frontier (its full parse makes it a dead letter).

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

use super::epochs::Epochs;
use super::InputFormat;
use crate::event::STEP_MS;
use crate::sources::order::{Frontier, TimeLimits, Verdict};

/// A line of a block: where its bytes are, the frontier before it and the
/// time read from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub bytes: Range<usize>,
    pub before: Frontier,
    pub time: Option<u64>,
}

/// What every worker follows over the whole input: the frontier and the
/// epochs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub frontier: Frontier,
    pub epochs: Epochs,
}

/// Moves `progress` over the lines of `buf` in order; when `lines` is
/// given, records each line (blank ones too, so that a line's index is its
/// offset from the block's first line). Returns the number of line ends in
/// `buf`, by which the next block's first line is numbered.
///
/// Each line is noted in the epochs at the place its event would take: its
/// time when the frontier accepts it (or the floor, when that is later),
/// else the floor. The full parse may yet make the line a dead letter, at
/// the floor: an epoch that is no later.
pub fn scan(
    format: InputFormat,
    buf: &[u8],
    limits: &TimeLimits,
    progress: &mut Progress,
    mut lines: Option<&mut Vec<Line>>,
) -> u64 {
    let mut count = 0;
    for bytes in line_ranges(buf) {
        count += 1;
        let time = line_time(format, &buf[bytes.clone()]);
        let Progress { frontier, epochs } = progress;
        if let Some(lines) = lines.as_deref_mut() {
            lines.push(Line {
                bytes,
                before: *frontier,
                time,
            });
        }
        let floor = frontier.floor(limits);
        let place = match time {
            Some(t) if frontier.admit(t, limits) == Verdict::Accept => t.max(floor),
            _ => floor,
        };
        epochs.note(place);
    }
    // Every line but a last one without its line end ended in one.
    count - u64::from(buf.last().is_some_and(|&b| b != b'\n'))
}

/// Where each line of `buf` lies, without its line end: a last line
/// without one counts, an empty `buf` has none.
pub fn line_ranges(buf: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= buf.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i);
        let line = start..end;
        start = end + 1;
        Some(line)
    })
}

/// The event time of one line, in ms, if it can be read.
pub fn line_time(format: InputFormat, line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    match format {
        InputFormat::PaysimCsv => {
            let field = line.split(|&b| b == b',').next()?;
            let field = field
                .strip_prefix(b"\"")
                .and_then(|f| f.strip_suffix(b"\""))
                .unwrap_or(field);
            let step = crate::paysim::step_of(field).ok()?;
            Some(u64::from(step) * STEP_MS)
        }
        InputFormat::JsonLines => {
            let stamp: Stamp = serde_json::from_slice(line).ok()?;
            let ms = crate::clock::parse_millis(&stamp.timestamp?).filter(|&ms| ms >= 0)?;
            Some(ms as u64)
        }
    }
}

/// Just the time of a JSON event; every other field is skipped.
#[derive(Deserialize)]
struct Stamp<'a> {
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TimeLimits = TimeLimits {
        lateness_ms: 0,
        future_ms: 10 * STEP_MS,
        past_ms: 10 * STEP_MS,
    };

    #[test]
    fn times_are_read_as_the_full_parsers_read_them() {
        let csv = InputFormat::PaysimCsv;
        assert_eq!(line_time(csv, b"3,PAYMENT,1.0"), Some(3 * STEP_MS));
        assert_eq!(line_time(csv, b"\"4\",PAYMENT\r"), Some(4 * STEP_MS));
        assert_eq!(line_time(csv, b"5.0,x"), Some(5 * STEP_MS));
        assert_eq!(line_time(csv, b"x,PAYMENT"), None);
        assert_eq!(line_time(csv, b""), None);
        let json = InputFormat::JsonLines;
        let line =
            br#"{"event_id":"e","timestamp":"1970-01-01T00:00:01.5Z","x":[1,{"timestamp":2}]}"#;
        assert_eq!(line_time(json, line), Some(1_500));
        assert_eq!(
            line_time(
                json,
                b"\xEF\xBB\xBF{\"timestamp\":\"1970-01-01T00:00:02Z\"}"
            ),
            Some(2_000)
        );
        assert_eq!(
            line_time(json, br#"{"timestamp":"1969-12-31T23:59:59Z"}"#),
            None
        );
        assert_eq!(line_time(json, br#"{"timestamp":7}"#), None);
        assert_eq!(line_time(json, b"not json"), None);
    }

    #[test]
    fn the_frontier_before_each_line_is_recorded_and_blank_lines_kept() {
        let buf = b"2,a\n\n1,b\n100,c\n3,d";
        let (mut progress, mut lines) = (Progress::default(), Vec::new());
        let ends = scan(
            InputFormat::PaysimCsv,
            buf,
            &LIMITS,
            &mut progress,
            Some(&mut lines),
        );
        assert_eq!(ends, 4);
        let frontier = progress.frontier;
        let before: Vec<_> = lines.iter().map(|l| l.before.latest()).collect();
        // 2 is only a candidate until 1 confirms it; 100 is too far ahead
        // and does not move the frontier.
        let one = Some(STEP_MS);
        assert_eq!(before, [None, None, None, one, one]);
        assert_eq!(frontier.latest(), Some(3 * STEP_MS));
        let texts: Vec<_> = lines.iter().map(|l| &buf[l.bytes.clone()]).collect();
        assert_eq!(texts, [&b"2,a"[..], b"", b"1,b", b"100,c", b"3,d"]);
    }

    #[test]
    fn line_ends_are_counted_as_the_lines_are_found() {
        let mut progress = Progress::default();
        for (buf, ends, lines) in [
            (&b""[..], 0, 0),
            (b"\n", 1, 1),
            (b"\n\n", 2, 2),
            (b"1,a", 0, 1),
            (b"1,a\n", 1, 1),
            (b"1,a\n\n2,b", 2, 3),
        ] {
            let mut found = Vec::new();
            let counted = scan(
                InputFormat::PaysimCsv,
                buf,
                &LIMITS,
                &mut progress,
                Some(&mut found),
            );
            let plain = buf.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(
                (counted, plain, found.len()),
                (ends, ends, lines),
                "{buf:?}"
            );
            assert_eq!(line_ranges(buf).count(), lines);
        }
    }
}
