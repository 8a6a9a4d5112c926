//! Input that is meant to hurt, end to end: limits that hold (worker counts,
//! dead letters cut to size, binary files quoted escaped), messages that say
//! what is actually wrong, and the encodings the readers must take or refuse
//! (a byte-order mark, invalid UTF-8). Regressions named after the fault
//! class they pin.

use std::path::Path;

use fraudflow::dataflow::json_event::{parse_event, paysim_event};
use fraudflow::excerpt::RAW_LIMIT;
use fraudflow::paysim::{PaysimReader, Transaction, HEADER};
use fraudflow::settings::limits::{cores, max_workers};
use serde_json::Value;

use crate::common::{finish, fraudflow, generated, s, shared_slice, spawn, stdout_json, two_hosts};

/// Runs `features` on `input`; its exit code, stderr and dead letters.
fn features(input: &Path, extra: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let out = input.with_extension("features.csv");
    let mut args = vec!["features", "--input", s(input), "--out", s(&out)];
    args.extend_from_slice(extra);
    let run = fraudflow(&args);
    let dead = std::fs::read_to_string(input.with_extension("features.dead-letter.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    (run.status.code(), stderr, dead)
}

fn row(step: &str, orig: &str) -> String {
    format!("{step},TRANSFER,181.0,{orig},181.0,0.0,C553264065,0.0,0.0,1,0")
}

fn event(id: &str) -> String {
    let t = Transaction {
        step: 1,
        kind: fraudflow::paysim::TxnType::Transfer,
        amount: 181.0,
        name_orig: "C1".parse().unwrap(),
        old_balance_orig: 181.0,
        new_balance_orig: 0.0,
        name_dest: "C2".parse().unwrap(),
        old_balance_dest: 0.0,
        new_balance_dest: 0.0,
        is_fraud: false,
        is_flagged_fraud: false,
    };
    paysim_event(&t, id, 3_600_000).to_string()
}

#[test]
fn a_worker_count_far_beyond_the_cores_is_refused_before_work_starts() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 200, 1);
    let limit = max_workers(cores());
    let over = (limit + 1).to_string();
    for flags in [vec!["-w", "1000"], vec!["-w", over.as_str()]] {
        let (code, stderr, _) = features(&input, &flags);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{} workers is far beyond the {} cores",
                flags[1],
                cores()
            )) && stderr.contains(&format!("at most {limit}")),
            "{stderr}"
        );
    }
    // Processes: too many in all, or too many workers on this machine.
    let (code, stderr, _) = features(&input, &["-n", "1000"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("1000 processes is beyond the limit"),
        "{stderr}"
    );
    let local = (limit / 2 + 1).to_string();
    let (code, stderr, _) = features(&input, &["-w", "2", "-n", &local]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("on this machine (no hostfile)"), "{stderr}");
    // A dataflow file says workers too: refused the same way, by line.
    let file = dir.path().join("big.toml");
    let text = format!(
        "[source.file]\npath = {:?}\n[models]\ndir = {:?}\n[sinks]\ndir = {:?}\n[cluster]\nworkers = 1000\n",
        s(&input),
        s(dir.path()),
        s(dir.path())
    );
    std::fs::write(&file, text).unwrap();
    let run = fraudflow(&["backtest", "--dataflow", s(&file), "--quiet"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(":8: key cluster.workers: 1000 workers is far beyond"),
        "{stderr}"
    );
}

#[test]
fn a_huge_csv_row_becomes_a_short_dead_letter_and_a_short_eda_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("huge.csv");
    let huge = row("1", &format!("C{}", "1".repeat(10 << 20)));
    let body = format!(
        "{}\n{}\n{huge}\r\n{}\n",
        HEADER.join(","),
        row("1", "C1"),
        row("2", "C2")
    );
    std::fs::write(&input, body).unwrap();

    let (code, stderr, dead) = features(&input, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(dead.len(), 1);
    let raw = dead[0]["raw"].as_str().unwrap();
    assert!(raw.len() <= RAW_LIMIT, "{}", raw.len());
    assert!(raw.starts_with("1,TRANSFER,181.0,C111"), "{raw:.80}");
    assert!(
        raw.ends_with(&format!("... ({} bytes in all)", huge.len())),
        "{}",
        &raw[raw.len() - 60..]
    );
    let message = dead[0]["message"].as_str().unwrap();
    assert!(message.len() < 300, "{message:.400}");
    assert!(
        message.contains(&format!("{} digits does not fit", 10 << 20)),
        "{message}"
    );

    let eda = fraudflow(&["eda", "--quiet", s(&input)]);
    assert!(eda.status.success());
    assert!(
        eda.stdout.len() < 4_000,
        "eda printed {} bytes",
        eda.stdout.len()
    );
    let text = String::from_utf8(eda.stdout).unwrap();
    assert!(
        text.contains(&format!("({} bytes)", (10 << 20) + 1)),
        "{text}"
    );
}

#[test]
fn a_binary_file_is_quoted_escaped_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    // As a PaySim file: a wrong header, named in a short, printable message.
    let csv = dir.path().join("binary.csv");
    std::fs::write(&csv, &binary).unwrap();
    let run = fraudflow(&["validate", "--quiet", s(&csv)]);
    assert_eq!(run.status.code(), Some(1));
    let text = String::from_utf8(run.stdout).expect("validate prints text");
    assert!(text.len() < 4_000, "validate printed {} bytes", text.len());
    assert!(
        text.contains("wrong header") && text.contains("\\x"),
        "{text}"
    );
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );

    // As JSON lines: every line a dead letter, its raw escaped and bounded.
    let jsonl = dir.path().join("binary.jsonl");
    std::fs::write(&jsonl, &binary).unwrap();
    let (code, stderr, dead) = features(&jsonl, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines = binary
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty());
    assert_eq!(dead.len(), lines.count());
    for d in &dead {
        let raw = d["raw"].as_str().unwrap();
        assert!(
            raw.len() <= RAW_LIMIT && !raw.contains('\u{fffd}'),
            "{raw:.200}"
        );
    }
    assert!(dead
        .iter()
        .any(|d| d["raw"].as_str().unwrap().contains("\\xFA")));
}

#[test]
fn messages_name_what_is_actually_wrong_with_a_row() {
    let cases = [
        (
            row("1000000000000", "C1"),
            "column step: \"1000000000000\" is beyond the largest step 4294967295",
        ),
        (row("-3", "C1"), "column step: \"-3\" is negative"),
        (
            row("1.5", "C1"),
            "column step: \"1.5\" is not a whole number of hours",
        ),
        (
            row("1e999", "C1"),
            "column step: \"1e999\" is beyond the largest 64-bit float",
        ),
        (
            row("1", &format!("C{}", "4".repeat(40))),
            "an account number of 40 digits does not fit: at most 17 digits",
        ),
        (row("1", "C12a"), "\"C12a\": byte 4 is not a digit"),
        (row("1", "M"), "\"M\": no digits follow the C or M"),
        (
            row("1", "X1"),
            "an account name starts with C (customer) or M (merchant)",
        ),
        (
            row("1", "C1").replace("181.0,C1", "inf,C1"),
            "column amount: \"inf\" is infinite",
        ),
        (
            row("1", "C1").replace("181.0,C1", "NaN,C1"),
            "column amount: \"NaN\" is NaN",
        ),
        (
            row("1", "C1").replace("181.0,C1", "-1e300,C1"),
            "column amount: \"-1e300\" is negative",
        ),
    ];
    let body: Vec<String> = std::iter::once(HEADER.join(","))
        .chain(cases.iter().map(|(r, _)| r.clone()))
        .collect();
    let body = body.join("\n");
    let reader = PaysimReader::new(body.as_bytes()).unwrap();
    let errors: Vec<String> = reader.map(|r| r.unwrap_err().to_string()).collect();
    assert_eq!(errors.len(), cases.len());
    for ((_, want), got) in cases.iter().zip(&errors) {
        assert!(got.contains(want), "{got}\n  wanted: {want}");
    }
}

#[test]
fn json_messages_name_what_is_actually_wrong_with_an_event() {
    let with = |from: &str, to: &str| event("e1").replacen(from, to, 1);
    let cases = [
        (
            "[1, 2]".to_string(),
            "expected a JSON object, found an array",
        ),
        ("{\"event_id\":".to_string(), "not JSON: EOF while parsing"),
        (
            format!("\u{feff}{}", event("e1")),
            "a byte-order mark (U+FEFF) starts the line",
        ),
        (
            with("1970-01-01T01:00:00Z", "1969-12-31T23:00:00Z"),
            "field timestamp: \"1969-12-31T23:00:00Z\" is before 1970",
        ),
        (
            with("1970-01-01T01:00:00Z", "soon"),
            "field timestamp: \"soon\" is not an ISO-8601 time",
        ),
        (
            with("\"is_fraud\":0", "\"is_fraud\":\"maybe\""),
            "found the string \"maybe\"",
        ),
        (
            with("\"amount\":181.0", "\"amount\":\"1e999\""),
            "field amount: \"1e999\" is beyond the largest 64-bit float",
        ),
        (
            with("\"amount\":181.0", "\"amount\":-1e300"),
            "field amount: \"-1e+300\" is negative",
        ),
        (
            with(
                "\"amount\":181.0",
                &format!("\"amount\":\"{}\"", "x".repeat(60_000)),
            ),
            "field amount: expected a number, found the string \"xxxx",
        ),
    ];
    for (payload, want) in &cases {
        let err = parse_event(payload, 1).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(want), "{err:.400}\n  wanted: {want}");
        assert!(err.len() < 300, "{err:.400}");
    }
}

#[test]
fn validate_counts_every_row_behind_an_earlier_step() {
    let Some(slice) = shared_slice() else { return };
    let text = std::fs::read_to_string(&slice).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // The last 2,000 rows (step 9) moved to the front: the rows after them
    // are all behind, though only one row steps down.
    let tail = lines.split_off(lines.len() - 2_000);
    lines.splice(1..1, tail);
    let steps: Vec<u32> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let mut behind = 0u64;
    let mut max = 0u32;
    for &step in &steps {
        behind += u64::from(step < max);
        max = max.max(step);
    }
    assert!(behind > 30_000);
    let dir = tempfile::tempdir().unwrap();
    let moved = dir.path().join("moved.csv");
    std::fs::write(&moved, lines.join("\n") + "\n").unwrap();
    let out = fraudflow(&["validate", "--json", "--quiet", s(&moved)]);
    let report = stdout_json(&out);
    let warnings = report["warnings"].as_array().unwrap();
    let order = warnings
        .iter()
        .find(|w| w["check"] == "step_order")
        .unwrap();
    let message = order["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{behind} rows have a step below")),
        "{message}"
    );
    let eda = stdout_json(&fraudflow(&["eda", "--json", "--quiet", s(&moved)]));
    assert_eq!(eda["steps"]["out_of_order_rows"].as_u64(), Some(behind));
}

#[test]
fn a_json_lines_file_with_a_bom_keeps_its_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bom.jsonl");
    let body = format!("\u{feff}{}\r\n{}\r\n", event("e1"), event("e2"));
    std::fs::write(&input, body).unwrap();
    let (code, stderr, dead) = features(&input, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(dead.is_empty(), "{dead:?}");
    assert!(
        stderr.contains("2 events in = 2 valid + 0 dead letters"),
        "{stderr}"
    );
}

#[test]
fn invalid_utf8_in_a_json_string_is_a_dead_letter_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("latin1.jsonl");
    let mut bad = event("caf@").into_bytes();
    let at = bad.iter().position(|&b| b == b'@').unwrap();
    bad[at] = 0xE9; // é in Latin-1
    let body = [
        event("e1").as_bytes(),
        b"\n",
        &bad,
        b"\n",
        event("e3").as_bytes(),
    ]
    .concat();
    std::fs::write(&input, body).unwrap();
    let (code, stderr, dead) = features(&input, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(dead.len(), 1, "{stderr}");
    assert_eq!(dead[0]["code"], "invalid_utf8");
    assert_eq!(dead[0]["source"], format!("{}:2", s(&input)));
    assert!(
        dead[0]["raw"].as_str().unwrap().contains("caf\\xE9"),
        "{}",
        dead[0]["raw"]
    );
    let message = dead[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("byte {}", at + 1)) && message.contains("\\xE9"),
        "{message}"
    );
    let table = std::fs::read_to_string(input.with_extension("features.csv")).unwrap();
    assert!(
        !table.contains('\u{fffd}') && !table.contains("caf"),
        "{table:.300}"
    );
}

#[test]
fn line_numbers_stay_right_after_blank_lines_and_stray_quotes() {
    // Found by the property test: the csv crate counted a skipped blank
    // line as the next row's, and a stray quote joined the lines after it.
    let body = format!(
        "{}\n\n{}\r\n \r\n\"{}\n{}\n\n\n{}",
        HEADER.join(","),
        row("1", "C1"),
        row("1", "C2"),
        row("x", "C3"),
        row("2", "C4")
    );
    let reader = PaysimReader::new(body.as_bytes()).unwrap();
    let got: Vec<Result<u32, String>> = reader
        .map(|r| r.map(|t| t.step).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            Ok(1),
            Err("line 5: column step: \"\\\"1\" is not a number".to_string()),
            Err("line 6: column step: \"x\" is not a number".to_string()),
            Ok(2),
        ]
    );
}

/// RFC 4180 records of `text`: a line end inside quotes belongs to its
/// field. Each record as its fields, unquoted.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut fields, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            ('\n', false) => {
                fields.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut fields));
            }
            (c, _) => field.push(c),
        }
    }
    records
}

#[test]
fn event_ids_with_commas_quotes_or_line_ends_keep_csv_rows_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["plain", "a\nb", "c,d", "e\"f", "g\r\nh"];
    let text: String = ids.iter().map(|id| event(id) + "\n").collect();
    let input = dir.path().join("ids.jsonl");
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("ids.csv");
    let run = fraudflow(&["features", "--input", s(&input), "--out", s(&out)]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let records = csv_records(&std::fs::read_to_string(&out).unwrap());
    let width = records[0].len();
    assert_eq!(records.len(), 1 + ids.len());
    assert!(records.iter().all(|r| r.len() == width), "{records:?}");
    let mut got: Vec<&str> = records[1..].iter().map(|r| r[0].as_str()).collect();
    let mut want = ids.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// Class 9 "limits that are not there": a dead letter's `raw` was cut at
/// 4,096 bytes of text, but JSON writes a control byte as six and an
/// invalid one as five, so garbage made dead letters about four times its
/// size with no bound per letter. Now each is bounded as written, and each
/// line that is not blank still gives exactly one.
#[test]
fn garbage_json_gives_one_dead_letter_per_line_bounded_as_written() {
    use fraudflow::dataflow::dead_letter::FIXED_BYTES;
    use fraudflow::excerpt::MESSAGE_LIMIT;
    use fraudflow::generate::Rng;

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("garbage.jsonl");
    let mut rng = Rng::seed_from(9);
    let (mut body, mut lines) = (Vec::new(), 0);
    for i in 0..300 {
        let len = rng.below(if i % 3 == 0 { 20_000 } else { 300 }) as usize;
        // Every other line all control bytes, the worst case for JSON.
        let top = if i % 2 == 0 { 0x20 } else { 0x100 };
        let line: Vec<u8> = (0..len)
            .map(|_| rng.below(top) as u8)
            .map(|b| if b == b'\n' { 1 } else { b })
            .collect();
        lines += usize::from(!line.trim_ascii().is_empty());
        body.extend(line);
        body.push(b'\n');
    }
    std::fs::write(&input, &body).unwrap();
    let (_, stderr, dead) = features(&input, &[]);
    assert_eq!(dead.len(), lines, "{stderr}");
    let written =
        std::fs::read_to_string(input.with_extension("features.dead-letter.jsonl")).unwrap();
    for (line, letter) in written.lines().zip(&dead) {
        let source = letter["source"].as_str().unwrap();
        let raw = serde_json::to_string(&letter["raw"]).unwrap();
        assert!(raw.len() - 2 <= RAW_LIMIT, "raw of {} bytes", raw.len() - 2);
        let bound = RAW_LIMIT + MESSAGE_LIMIT + FIXED_BYTES + source.len();
        assert!(line.len() < bound, "{} bytes: {line:.200}", line.len());
    }
}

/// Data at fault exits 1 however many processes read it: an empty file and
/// a file with a wrong header, through `features` as one process, as two,
/// and as one of two whose peer never comes (a failed run of several
/// processes always exited 2).
#[test]
fn a_bad_file_exits_one_with_one_process_or_two() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let wrong = dir.path().join("wrong.csv");
    std::fs::write(&wrong, "step,kind,amount\n1,PAYMENT,9.0\n").unwrap();
    for (input, said) in [(&empty, "the file is empty"), (&wrong, "header")] {
        let out = dir.path().join("f.csv");
        let args = ["features", "--input", s(input), "--out", s(&out), "-q"];
        let (code, stderr, _) = features(input, &["-q"]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        let hosts = two_hosts(dir.path());
        let process = |p: &'static str| {
            let mut v = args.to_vec();
            v.extend(["-n", "2", "-p", p, "-h", s(&hosts)]);
            spawn(&v, None)
        };
        let second = process("1");
        let first = process("0");
        for run in [finish(first, "process 0"), finish(second, "process 1")] {
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains(said), "{stderr}");
        }
        assert!(!out.exists());
        // Alone, its peer never started: it gives up waiting, still 1.
        let mut alone = args.to_vec();
        alone.extend([
            "-n",
            "2",
            "-p",
            "0",
            "-h",
            s(&hosts),
            "--connect-timeout",
            "1",
        ]);
        let run = finish(spawn(&alone, None), "process 0 alone");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(said) && stderr.contains("did not all connect"),
            "{stderr}"
        );
    }
}
