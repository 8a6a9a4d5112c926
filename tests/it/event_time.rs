//! Event time in input order (`src/sources/order.rs`): out-of-order input
//! beyond the lateness bound gives the same features for any worker and
//! process count, equal to a plain recomputation; an absurd timestamp is a
//! dead letter that changes nothing else.

use std::collections::HashMap;
use std::path::Path;

use fraudflow::dataflow::json_event::paysim_event;
use fraudflow::event::STEP_MS;
use fraudflow::generate::Rng;
use fraudflow::paysim::{AccountId, AccountKind, Transaction, TxnType};

use crate::common::{fraudflow, run_two_processes, s, write_rows};

/// Lateness, window and limits of these tests, in steps (hours).
const LATENESS: u64 = 1;
const WINDOW: u64 = 3;
const FUTURE: u64 = 20;
const PAST: u64 = 10;

/// Flags giving the bounds above (in seconds), and blocks small enough that
/// every worker gets many.
fn time_flags() -> Vec<String> {
    [
        ("--lateness", LATENESS),
        ("--window", WINDOW),
        ("--future-limit", FUTURE),
        ("--past-limit", PAST),
    ]
    .iter()
    .flat_map(|(flag, steps)| [flag.to_string(), (steps * 3_600).to_string()])
    .chain(["--block-bytes".to_string(), "1500".to_string()])
    .collect()
}

/// Seeded rows whose steps drift forward, often several steps behind the
/// latest (beyond the lateness), now and then far ahead or far behind
/// (beyond the limits).
fn rows(seed: u64, n: u32) -> Vec<Transaction> {
    let mut rng = Rng::seed_from(seed);
    let account = |kind, n: u64| AccountId::new(kind, n).unwrap();
    (0..n)
        .map(|i| {
            let base = 100 + i / 20;
            let step = match rng.below(40) {
                0 => base + 50,
                1 => base - 40,
                _ => base - rng.below(7) as u32,
            };
            Transaction {
                step,
                kind: TxnType::ALL[rng.below(5) as usize],
                amount: 10.0 + rng.below(1000) as f64,
                name_orig: account(AccountKind::Customer, rng.below(15)),
                old_balance_orig: 0.0,
                new_balance_orig: 0.0,
                name_dest: account(AccountKind::Customer, 100 + rng.below(8)),
                old_balance_dest: 0.0,
                new_balance_dest: 0.0,
                is_fraud: false,
                is_flagged_fraud: false,
            }
        })
        .collect()
}

/// What the definition says of each row: `None` for a dead letter, else
/// the time it is placed at and whether it is late.
/// (The frontier moves past the past limit only once a second event
/// confirms the jump: see `sources::order`.)
fn placements(times: &[u64]) -> Vec<Option<(u64, bool)>> {
    let (mut latest, mut candidate): (Option<u64>, Option<u64>) = (None, None);
    let past = PAST * STEP_MS;
    times
        .iter()
        .map(|&t| {
            if let Some(l) = latest {
                if t > l + FUTURE * STEP_MS || t + past < l {
                    return None;
                }
            }
            let floor = latest.map_or(0, |l| l.saturating_sub(LATENESS * STEP_MS));
            let near = matches!(latest, Some(l) if t <= l + past);
            let confirms = matches!(candidate, Some(c) if t + past >= c);
            if near || confirms {
                latest = Some(latest.map_or(t, |l| l.max(t)));
                if confirms {
                    candidate = None;
                }
            } else {
                candidate = Some(t);
            }
            Some((t.max(floor), t < floor))
        })
        .collect()
}

/// Velocity of each placed row by the definition: rows of the same account
/// placed in the window, earlier or at the same time and not after it.
fn velocities(
    rows: &[Transaction],
    placed: &[Option<(u64, bool)>],
    pick: fn(&Transaction) -> AccountId,
) -> Vec<Option<u64>> {
    (0..rows.len())
        .map(|i| {
            let (me, _) = placed[i]?;
            let count = (0..rows.len())
                .filter(|&j| {
                    let Some((other, _)) = placed[j] else {
                        return false;
                    };
                    pick(&rows[j]) == pick(&rows[i])
                        && other + WINDOW * STEP_MS > me
                        && (other < me || (other == me && j <= i))
                })
                .count();
            Some(count as u64)
        })
        .collect()
}

/// Runs `features`; its stderr summary.
fn features(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["features", "--input", s(input), "--out", s(out)];
    let flags = time_flags();
    args.extend(flags.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let run = fraudflow(&args);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "features {extra:?}: {stderr}");
    stderr
}

/// The number before `word` in a summary: `(1,234 late)`.
fn count_before(summary: &str, word: &str) -> u64 {
    let at = summary
        .find(word)
        .unwrap_or_else(|| panic!("{word} in {summary}"));
    let digits: String = summary[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .collect();
    digits
        .chars()
        .rev()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// Checks a features CSV against the definition: every placed row with its
/// velocities, the late count, and the dead letters with their codes.
fn check_against_definition(rows: &[Transaction], times: &[u64], out: &Path, summary: &str) {
    let placed = placements(times);
    let orig = velocities(rows, &placed, |t| t.name_orig);
    let dest = velocities(rows, &placed, |t| t.name_dest);
    let text = std::fs::read_to_string(out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (id, vo, vd) = (
        column("event_id"),
        column("txn_velocity_1h"),
        column("dest_txn_velocity_1h"),
    );
    let mut seen = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let row: usize = f[id].parse().unwrap();
        let got = (f[vo].parse::<f64>().unwrap(), f[vd].parse::<f64>().unwrap());
        seen.insert(row - 1, got);
    }
    for i in 0..rows.len() {
        let want = orig[i].map(|o| (o as f64, dest[i].unwrap() as f64));
        assert_eq!(seen.get(&i).copied(), want, "row {}", i + 1);
    }
    let late = placed.iter().flatten().filter(|(_, late)| *late).count() as u64;
    let dead = placed.iter().filter(|p| p.is_none()).count() as u64;
    assert_eq!(count_before(summary, "late"), late, "{summary}");
    assert_eq!(count_before(summary, "dead letters"), dead, "{summary}");
    assert!(
        late > 100 && dead > 10,
        "the input exercises the bounds: {late} late, {dead} dead"
    );
}

#[test]
fn out_of_order_input_gives_the_same_answer_for_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(11, 3_000);
    let input = dir.path().join("shuffled.csv");
    write_rows(&input, rows.clone());
    let times: Vec<u64> = rows.iter().map(|t| u64::from(t.step) * STEP_MS).collect();

    let reference = dir.path().join("w1.csv");
    let summary = features(&input, &reference, &["-w", "1"]);
    check_against_definition(&rows, &times, &reference, &summary);
    let expected = std::fs::read(&reference).unwrap();
    let dead = std::fs::read_to_string(dir.path().join("w1.dead-letter.jsonl")).unwrap();
    for code in ["time_too_far_ahead", "time_too_far_behind"] {
        assert!(dead.contains(code), "a dead letter says {code}");
    }

    let w3 = dir.path().join("w3.csv");
    let other = features(&input, &w3, &["-w", "3"]);
    for word in ["late", "dead letters"] {
        assert_eq!(
            count_before(&other, word),
            count_before(&summary, word),
            "{other}"
        );
    }
    assert!(
        std::fs::read(&w3).unwrap() == expected,
        "-w 3 differs from -w 1"
    );

    let n2 = dir.path().join("n2.csv");
    let mut args = vec!["features", "--input", s(&input), "--out", s(&n2)];
    let flags = time_flags();
    args.extend(flags.iter().map(String::as_str));
    run_two_processes(dir.path(), &args, "2");
    assert!(
        std::fs::read(&n2).unwrap() == expected,
        "two processes differ from -w 1"
    );
}

#[test]
fn out_of_order_json_events_give_the_same_answer_for_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(12, 2_000);
    // Milliseconds of jitter on top of the steps: times are all distinct.
    let mut rng = Rng::seed_from(5);
    let times: Vec<u64> = rows
        .iter()
        .map(|t| u64::from(t.step) * STEP_MS + rng.below(STEP_MS))
        .collect();
    let text: String = rows
        .iter()
        .zip(&times)
        .enumerate()
        .map(|(i, (t, &ms))| paysim_event(t, &(i + 1).to_string(), ms).to_string() + "\n")
        .collect();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, text).unwrap();

    let reference = dir.path().join("w1.csv");
    let summary = features(&input, &reference, &["-w", "1"]);
    // Every time distinct: the source sends many of them at one logical
    // time (an epoch), and each window still ends at the event's own time.
    check_against_definition(&rows, &times, &reference, &summary);
    let expected = std::fs::read(&reference).unwrap();
    let late = count_before(&summary, "late");
    for workers in ["2", "3"] {
        let out = dir.path().join(format!("w{workers}.csv"));
        let other = features(&input, &out, &["-w", workers]);
        assert_eq!(count_before(&other, "late"), late, "-w {workers}: {other}");
        assert!(
            std::fs::read(&out).unwrap() == expected,
            "-w {workers} differs from -w 1"
        );
    }
}

#[test]
fn one_absurd_timestamp_is_a_dead_letter_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(13, 1_500);
    let start = 1_700_000_000_000u64;
    let lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let ms = start + i as u64 * 1_000;
            paysim_event(t, &(i + 1).to_string(), ms).to_string()
        })
        .collect();
    let clean = dir.path().join("clean.jsonl");
    std::fs::write(&clean, lines.join("\n") + "\n").unwrap();
    // The same events with two absurd ones among them.
    let mut hostile = lines.clone();
    let absurd = |id: &str, stamp: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        v["event_id"] = id.into();
        v["timestamp"] = stamp.into();
        v.to_string()
    };
    hostile.insert(500, absurd("future", "9999-12-30T00:00:00Z"));
    hostile.insert(1_000, absurd("past", "1970-01-01T00:00:00Z"));
    // Past the last time jiff represents: refused when parsed, and said so.
    hostile.insert(1_200, absurd("end", "9999-12-31T23:59:59Z"));
    let poisoned = dir.path().join("hostile.jsonl");
    std::fs::write(&poisoned, hostile.join("\n") + "\n").unwrap();

    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let clean_summary = fraudflow(&["features", "--input", s(&clean), "--out", s(&a), "-w", "2"]);
    let summary = fraudflow(&[
        "features",
        "--input",
        s(&poisoned),
        "--out",
        s(&b),
        "-w",
        "2",
    ]);
    assert!(clean_summary.status.success() && summary.status.success());
    let summary = String::from_utf8_lossy(&summary.stderr).into_owned();
    assert_eq!(count_before(&summary, "late"), 0, "{summary}");
    assert_eq!(count_before(&summary, "dead letters"), 3, "{summary}");
    // Every other event has the same features (only its line moved).
    let rows_of = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        let mut v: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(rows_of(&a), rows_of(&b));
    let dead = std::fs::read_to_string(dir.path().join("b.dead-letter.jsonl")).unwrap();
    let letters: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let codes: Vec<String> = letters
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["code"].as_str().unwrap(),
                v["source"].as_str().unwrap()
            )
        })
        .collect();
    let message = letters[2]["message"].as_str().unwrap();
    assert!(
        message.contains("beyond the last one representable"),
        "{message}"
    );
    let name = s(&poisoned);
    assert_eq!(
        codes,
        [
            format!("time_too_far_ahead {name}:501"),
            format!("time_too_far_behind {name}:1001"),
            format!("bad_timestamp {name}:1201"),
        ]
    );
}

#[test]
fn a_first_event_far_ahead_does_not_make_the_rest_too_far_behind() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(14, 400);
    let start = 1_709_251_200_000u64; // 2024-03-01
    let mut lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| paysim_event(t, &(i + 2).to_string(), start + i as u64 * 1_000).to_string())
        .collect();
    // Nothing comes before the first event to judge it by: it is scored at
    // its own time, and the frontier waits for a second event to confirm.
    let far = paysim_event(&rows[0], "1", 32_472_144_000_000); // 2999-01-01
    lines.insert(0, far.to_string());
    let input = dir.path().join("first-far.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("f.csv");
    let run = fraudflow(&[
        "features",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "-w",
        "2",
    ]);
    let summary = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{summary}");
    assert_eq!(count_before(&summary, "dead letters"), 0, "{summary}");
    assert_eq!(count_before(&summary, "late"), 0, "{summary}");
    let written = std::fs::read_to_string(&out).unwrap().lines().count() - 1;
    assert_eq!(written, 401);
}

#[test]
fn a_timestamp_given_twice_is_a_dead_letter_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(15, 300);
    let start = 1_709_251_200_000u64; // 2024-03-01
    let mut lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| paysim_event(t, &(i + 1).to_string(), start + i as u64 * 1_000).to_string())
        .collect();
    // Which of the two stamps counts would be a guess; the scan that draws
    // the epochs and the full parse might guess differently.
    let twice = lines[150].replacen(
        "\"timestamp\":",
        "\"timestamp\":\"2030-01-01T00:00:00Z\",\"timestamp\":",
        1,
    );
    assert_ne!(twice, lines[150]);
    lines[150] = twice;
    let input = dir.path().join("twice.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("t.csv");
    let run = fraudflow(&["features", "--input", s(&input), "--out", s(&out)]);
    let summary = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{summary}");
    assert_eq!(count_before(&summary, "dead letters"), 1, "{summary}");
    let dead = std::fs::read_to_string(dir.path().join("t.dead-letter.jsonl")).unwrap();
    let letter: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(
        (letter["code"].as_str(), letter["source"].as_str()),
        (Some("bad_timestamp"), Some(&*format!("{}:151", s(&input))))
    );
    let written = std::fs::read_to_string(&out).unwrap().lines().count() - 1;
    assert_eq!(written, 299);
}
