//! Event time in input order: which events are late, where they go, and
//! which are too far from the rest to be believed.
//!
//! Why a rule of its own: the answer of a run must be a function of its
//! input alone. A source that judged lateness by what *its* worker had seen
//! would call an event late or on time depending on how the input was
//! shared among workers, and so give different features for `-w 1` and
//! `-w 3`. Here every judgement is made against the [`Frontier`]: the latest
//! event time in the input *before* the event, in input order (the file's
//! line order, or the order a server took events in). Every worker can
//! follow that frontier over the whole input, so they all agree.
//!
//! Why limits: one event stamped 9999-12-31 would otherwise become the
//! frontier and make every later event late; one stamped 1970 in a stream
//! of today's would count in windows it has no business in. An event more
//! than [`TimeLimits::future_ms`] after the frontier, or more than
//! [`TimeLimits::past_ms`] before it, goes to the dead-letter sink with its
//! own code and leaves the frontier where it was.
//!
//! ```
//! use fraudflow::sources::order::{Frontier, TimeLimits, Verdict};
//!
//! let limits = TimeLimits { lateness_ms: 10, future_ms: 1_000, past_ms: 500 };
//! let mut f = Frontier::default();
//! assert_eq!(f.admit(100, &limits), Verdict::Accept); // a candidate
//! assert_eq!(f.admit(100, &limits), Verdict::Accept); // confirmed
//! assert_eq!(f.floor(&limits), 90);
//! assert_eq!(f.admit(5_000, &limits), Verdict::TooFarAhead { by_ms: 4_900 });
//! assert_eq!(f.admit(80, &limits), Verdict::Accept); // late: placed at 90
//! assert_eq!(f.latest(), Some(100));
//! ```

use crate::dataflow::dead_letter::DeadLetter;
use crate::event::Event;

/// Seconds in a day, for the defaults below.
const DAY: u64 = 86_400;

/// Default of [`TimeLimits::future_ms`], in seconds: a year.
pub const DEFAULT_FUTURE_LIMIT: u64 = 365 * DAY;

/// Default of [`TimeLimits::future_ms`] for a live source, in seconds:
/// five minutes of clock skew. An accepted event in the future becomes the
/// frontier, and every event after it would be late until the clock caught
/// up, so live allows little.
pub const DEFAULT_LIVE_FUTURE_LIMIT: u64 = 300;

/// Default of [`TimeLimits::past_ms`], in seconds: thirty days.
pub const DEFAULT_PAST_LIMIT: u64 = 30 * DAY;

/// How far from the frontier an event may be stamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeLimits {
    /// Milliseconds an event may be stamped behind the frontier and still be
    /// placed at its own time; older ones are placed at `frontier -
    /// lateness_ms`, counted as late and scored.
    pub lateness_ms: u64,
    /// Milliseconds an event may be stamped after the frontier; later ones
    /// are dead letters (`time_too_far_ahead`).
    pub future_ms: u64,
    /// Milliseconds an event may be stamped before the frontier; earlier
    /// ones are dead letters (`time_too_far_behind`).
    pub past_ms: u64,
}

impl TimeLimits {
    /// The given lateness with the default limits.
    pub fn with_lateness(lateness_ms: u64) -> TimeLimits {
        TimeLimits {
            lateness_ms,
            future_ms: DEFAULT_FUTURE_LIMIT * 1_000,
            past_ms: DEFAULT_PAST_LIMIT * 1_000,
        }
    }
}

/// What becomes of an event stamped at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Scored: at its own time, or at the floor when it is behind it.
    Accept,
    /// Stamped further after the frontier than the limit allows.
    TooFarAhead { by_ms: u64 },
    /// Stamped further before the frontier than the limit allows.
    TooFarBehind { by_ms: u64 },
}

impl Verdict {
    /// The dead-letter code of a refused event.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Verdict::Accept => None,
            Verdict::TooFarAhead { .. } => Some("time_too_far_ahead"),
            Verdict::TooFarBehind { .. } => Some("time_too_far_behind"),
        }
    }
}

/// The latest event time accepted so far, in input order.
///
/// One event alone never moves it further than the past limit: such a jump
/// (or the very first event) is only a *candidate* until a later event
/// comes no more than the past limit before it. Otherwise one event stamped
/// months ahead, accepted because nothing came before it or because it was
/// within the future limit, would make every event after it too far behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    latest: Option<u64>,
    candidate: Option<u64>,
}

impl Frontier {
    /// The latest accepted time, if any event was accepted.
    pub fn latest(&self) -> Option<u64> {
        self.latest
    }

    /// The earliest time an event may be placed at now: the frontier less
    /// the lateness (0 before the first event).
    pub fn floor(&self, limits: &TimeLimits) -> u64 {
        self.latest
            .map_or(0, |t| t.saturating_sub(limits.lateness_ms))
    }

    /// Judges an event stamped `time` without moving the frontier. `clock`,
    /// for live sources, is the wall clock: an event is never too far ahead
    /// of the frontier when it is within the limit of the clock.
    pub fn judge(&self, time: u64, clock: Option<u64>, limits: &TimeLimits) -> Verdict {
        let Some(latest) = self.latest else {
            return match clock {
                Some(now) if time > now.saturating_add(limits.future_ms) => {
                    Verdict::TooFarAhead { by_ms: time - now }
                }
                _ => Verdict::Accept,
            };
        };
        let reference = clock.map_or(latest, |now| now.max(latest));
        if time > reference.saturating_add(limits.future_ms) {
            Verdict::TooFarAhead {
                by_ms: time - reference,
            }
        } else if time.saturating_add(limits.past_ms) < latest {
            Verdict::TooFarBehind {
                by_ms: latest - time,
            }
        } else {
            Verdict::Accept
        }
    }

    /// Judges an event and, when it is accepted, moves the frontier to it.
    pub fn admit(&mut self, time: u64, limits: &TimeLimits) -> Verdict {
        self.admit_at(time, None, limits)
    }

    /// [`admit`](Self::admit) against the wall clock too (live sources).
    pub fn admit_at(&mut self, time: u64, clock: Option<u64>, limits: &TimeLimits) -> Verdict {
        let verdict = self.judge(time, clock, limits);
        if verdict == Verdict::Accept {
            self.follow(time, limits.past_ms);
        }
        verdict
    }

    /// Moves the frontier for an accepted time: to it when it is within the
    /// past limit after the frontier, or when it confirms the candidate (it
    /// is no more than the past limit before it); otherwise the time is the
    /// new candidate.
    fn follow(&mut self, time: u64, past_ms: u64) {
        let near = self
            .latest
            .is_some_and(|l| time <= l.saturating_add(past_ms));
        let confirms = self
            .candidate
            .is_some_and(|c| time.saturating_add(past_ms) >= c);
        if near || confirms {
            self.latest = self.latest.max(Some(time));
            if confirms {
                self.candidate = None;
            }
        } else {
            self.candidate = Some(time);
        }
    }
}

/// A live event judged against its source's frontier of event time (and,
/// ahead, the clock `now`): itself, or the dead letter of its time, the
/// event as JSON for its raw text, named by `source` (built only then).
pub fn admit_live(
    frontier: &mut Frontier,
    event: Event,
    now: u64,
    limits: &TimeLimits,
    source: impl FnOnce(&Event) -> String,
) -> crate::sources::Parsed {
    let verdict = frontier.admit_at(event.time_ms, Some(now), limits);
    if verdict.code().is_none() {
        return Ok(event);
    }
    let raw = crate::excerpt::raw(serde_json::to_string(&event).unwrap_or_default().as_bytes());
    let source = source(&event);
    Err(Box::new(time_dead_letter(
        &event, verdict, limits, raw, source,
    )))
}

/// The dead letter of an event refused for its time: `raw` is the payload
/// as read (a file's line), or the event as JSON when there is none.
pub fn time_dead_letter(
    event: &Event,
    verdict: Verdict,
    limits: &TimeLimits,
    raw: String,
    source: String,
) -> DeadLetter {
    let stamped = crate::clock::format_millis(event.time_ms as i64);
    let message = match verdict {
        Verdict::TooFarAhead { by_ms } => format!(
            "timestamp {stamped} is {} after the latest event time, beyond the future limit of {}",
            span(by_ms),
            span(limits.future_ms)
        ),
        Verdict::TooFarBehind { by_ms } => format!(
            "timestamp {stamped} is {} before the latest event time, beyond the past limit of {}",
            span(by_ms),
            span(limits.past_ms)
        ),
        Verdict::Accept => format!("timestamp {stamped} was accepted"),
    };
    DeadLetter {
        code: verdict.code().unwrap_or("accepted").to_string(),
        stage: "source".to_string(),
        message,
        raw,
        source,
        seq: event.seq,
        received_at: crate::clock::now_rfc3339(),
    }
}

/// A span of milliseconds in the largest whole unit that fits it.
fn span(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (DAY * 1_000, "d"),
        (3_600_000, "h"),
        (1_000, "s"),
        (1, "ms"),
    ];
    let (size, unit) = UNITS
        .iter()
        .copied()
        .find(|&(size, _)| ms >= size)
        .unwrap_or((1, "ms"));
    if size == 1 || ms.is_multiple_of(size) {
        format!("{} {unit}", ms / size)
    } else {
        format!("{:.1} {unit}", ms as f64 / size as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TimeLimits = TimeLimits {
        lateness_ms: 10,
        future_ms: 1_000,
        past_ms: 500,
    };

    /// The rule written out once more, plainly: the verdicts and floors of
    /// a sequence of times.
    fn oracle(times: &[u64]) -> Vec<(Verdict, u64)> {
        let (mut latest, mut candidate): (Option<u64>, Option<u64>) = (None, None);
        let mut out = Vec::new();
        for &t in times {
            let floor = latest.map_or(0, |l| l.saturating_sub(LIMITS.lateness_ms));
            let verdict = match latest {
                Some(l) if t > l + LIMITS.future_ms => Verdict::TooFarAhead { by_ms: t - l },
                Some(l) if t + LIMITS.past_ms < l => Verdict::TooFarBehind { by_ms: l - t },
                _ => Verdict::Accept,
            };
            if verdict == Verdict::Accept {
                let near = matches!(latest, Some(l) if t <= l + LIMITS.past_ms);
                let confirms = matches!(candidate, Some(c) if t + LIMITS.past_ms >= c);
                if near || confirms {
                    latest = Some(latest.map_or(t, |l| l.max(t)));
                    if confirms {
                        candidate = None;
                    }
                } else {
                    candidate = Some(t);
                }
            }
            out.push((verdict, floor));
        }
        out
    }

    #[test]
    fn verdicts_and_floors_follow_the_input_order_alone() {
        let mut seed = 7u64;
        let times: Vec<u64> = (0..2_000u64)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let jitter = (seed >> 33) % 1_400;
                let wild = if (seed >> 20).is_multiple_of(97) {
                    5_000
                } else {
                    0
                };
                (10_000 + i * 3 + wild).saturating_sub(jitter)
            })
            .collect();
        let mut f = Frontier::default();
        let got: Vec<_> = times
            .iter()
            .map(|&t| {
                let floor = f.floor(&LIMITS);
                (f.admit(t, &LIMITS), floor)
            })
            .collect();
        let want = oracle(&times);
        assert_eq!(got, want);
        for code in ["time_too_far_ahead", "time_too_far_behind"] {
            let n = got.iter().filter(|(v, _)| v.code() == Some(code)).count();
            assert!(n > 0, "the sequence exercises {code}");
        }
    }

    #[test]
    fn a_refused_event_does_not_move_the_frontier() {
        let mut f = Frontier::default();
        f.admit(1_000, &LIMITS);
        f.admit(1_000, &LIMITS);
        assert_eq!(
            f.admit(2_001, &LIMITS),
            Verdict::TooFarAhead { by_ms: 1_001 }
        );
        assert_eq!(f.admit(499, &LIMITS), Verdict::TooFarBehind { by_ms: 501 });
        assert_eq!(f.latest(), Some(1_000));
        // Exactly at the limits is accepted.
        assert_eq!(f.admit(500, &LIMITS), Verdict::Accept);
        assert_eq!(f.admit(2_000, &LIMITS), Verdict::Accept);
        // 2,000 is over the past limit ahead: a candidate, until 1,900 confirms.
        assert_eq!(f.latest(), Some(1_000));
        assert_eq!(f.admit(1_900, &LIMITS), Verdict::Accept);
        assert_eq!(f.latest(), Some(1_900));
    }

    #[test]
    fn one_event_far_ahead_does_not_make_the_rest_too_far_behind() {
        // First, or within the future limit: either way only a candidate.
        for first in [1_000_000u64, 1_000] {
            let mut f = Frontier::default();
            if first == 1_000 {
                f.admit(100, &LIMITS);
                f.admit(100, &LIMITS);
            }
            assert_eq!(f.admit(first, &LIMITS), Verdict::Accept);
            for t in [100, 120, 130] {
                assert_eq!(f.admit(t, &LIMITS), Verdict::Accept, "{first}: {t}");
            }
            assert_eq!(f.latest(), Some(130));
        }
        // Steady progress in big steps (sparse time) moves it every other event.
        let mut f = Frontier::default();
        for (k, t) in (1..=6u64).map(|k| k * 10_000).enumerate() {
            f.admit(
                t,
                &TimeLimits {
                    future_ms: 20_000,
                    ..LIMITS
                },
            );
            let want = if k % 2 == 1 {
                Some(t)
            } else {
                (k > 0).then(|| t - 10_000)
            };
            assert_eq!(f.latest(), want, "{t}");
        }
    }

    #[test]
    fn the_clock_bounds_the_future_of_a_live_source_from_its_first_event() {
        let f = Frontier::default();
        assert_eq!(
            f.judge(10_000, Some(5_000), &LIMITS),
            Verdict::TooFarAhead { by_ms: 5_000 }
        );
        assert_eq!(f.judge(6_000, Some(5_000), &LIMITS), Verdict::Accept);
        let mut g = Frontier::default();
        g.admit(100, &LIMITS);
        g.admit(100, &LIMITS);
        // Far after the frontier, but within the limit of the clock.
        assert_eq!(g.judge(5_900, Some(5_000), &LIMITS), Verdict::Accept);
        // The huge values of a hostile stamp do not overflow.
        assert!(matches!(
            g.judge(u64::MAX, Some(u64::MAX - 1), &LIMITS),
            Verdict::Accept
        ));
        assert!(matches!(
            g.judge(u64::MAX, None, &LIMITS),
            Verdict::TooFarAhead { .. }
        ));
    }

    #[test]
    fn spans_are_said_in_the_largest_unit() {
        assert_eq!(span(0), "0 ms");
        assert_eq!(span(1_500), "1.5 s");
        assert_eq!(span(3_600_000), "1 h");
        assert_eq!(span(365 * DAY * 1_000), "365 d");
    }
}
