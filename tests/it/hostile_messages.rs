//! Messages that say what is actually wrong (issue 10, class 11): a figure
//! that is not the one read, an OS error printed twice, a flag blamed that
//! was never given. Regressions named after the fault they pin.

use std::path::Path;

use fraudflow::dataflow::json_event::parse_event;
use fraudflow::paysim::{PaysimReader, HEADER};
use serde_json::Value;

use crate::common::{fraudflow, generated, s, stdout_json};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `validate --strict` on a file whose line `bad_at` (1 is the header) is
/// bad: its JSON report and exit code.
fn validate_strict(dir: &Path, rows: u64, bad_at: usize) -> (Value, Option<i32>, usize) {
    let good = std::fs::read_to_string(generated(dir, rows, 2)).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(bad_at - 1, "1,TRANSFER,not-a-number,C1,0,0,C2,0,0,0,0");
    let path = dir.join(format!("bad-at-{bad_at}.csv"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    // The good rows before the bad line, counted from the file itself.
    let before = lines[1..bad_at - 1].len();
    let out = fraudflow(&["validate", "--strict", "--json", "-q", s(&path)]);
    (stdout_json(&out), out.status.code(), before)
}

#[test]
fn validate_strict_reports_the_rows_read_before_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    for bad_at in [2, 51, 150] {
        let (report, code, before) = validate_strict(dir.path(), 200, bad_at);
        assert_eq!(code, Some(1), "{report}");
        assert_eq!(report["valid"], false);
        assert_eq!(report["rows"], before as u64, "bad line {bad_at}: {report}");
        assert_eq!(report["bad_rows"], 1, "{report}");
        let message = report["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("line {bad_at}:")), "{message}");
    }
}

#[test]
fn an_os_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexist.csv");
    let out_csv = dir.path().join("out.csv");
    let runs: [Vec<&str>; 4] = [
        vec!["validate", s(&missing)],
        vec!["eda", s(&missing)],
        vec!["validate", "--strict", s(&missing)],
        // A directory opens, then fails to read: the Io error's class.
        vec!["validate", s(dir.path())],
    ];
    for args in runs {
        let out = fraudflow(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.matches("os error").count(), 1, "{args:?}: {err}");
    }
    let out = fraudflow(&["features", "--input", s(&missing), "--out", s(&out_csv)]);
    assert_eq!(
        stderr(&out).matches("os error").count(),
        1,
        "{}",
        stderr(&out)
    );
}

/// `features` on a small file with the timely flags `flags`: exit code and
/// stderr.
fn features_with(dir: &Path, flags: &[&str]) -> (Option<i32>, String) {
    let input = generated(dir, 50, 1);
    let out = dir.join("features.csv");
    let mut args = vec!["features", "-q", "--input", s(&input), "--out", s(&out)];
    args.extend_from_slice(flags);
    let run = fraudflow(&args);
    (run.status.code(), stderr(&run))
}

#[test]
fn n_zero_says_n_must_be_at_least_one_not_that_p_is_too_big() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = features_with(dir.path(), &["-n", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("-n must be at least 1, got 0"), "{err}");
    assert!(!err.contains("-p"), "-p was not given: {err}");
    let (code, err) = features_with(dir.path(), &["-n", "2", "-p", "2"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("got -p 2 with -n 2"), "{err}");
    let (code, err) = features_with(dir.path(), &["-w", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("-w must be at least 1, got 0"), "{err}");
}

#[test]
fn a_hostfile_is_checked_against_n_even_with_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let names = ["localhost:2101", "localhost:2102", "localhost:2103"];
    std::fs::write(&hosts, names.join("\n")).unwrap();
    let (code, err) = features_with(dir.path(), &["-n", "1", "-h", s(&hosts)]);
    assert_eq!(code, Some(2), "{err}");
    let expected = format!("names {} processes, but -n is 1", names.len());
    assert!(err.contains(&expected), "{err}");
    std::fs::write(&hosts, names[0]).unwrap();
    let (code, err) = features_with(dir.path(), &["-n", "1", "-h", s(&hosts)]);
    assert_eq!(code, Some(0), "one host for one process runs: {err}");
    // Each line is host:port, named by its number when it is not, before
    // anything starts (timely named neither; another process's bad line
    // was found only by never reaching it).
    for (bad, line) in [
        ("bogus", 1),
        (":2102", 1),
        ("localhost:99999", 2),
        ("h:0", 2),
    ] {
        let text = if line == 1 {
            format!("{bad}\n\nlocalhost:2102\n")
        } else {
            format!("localhost:2101\n\n{bad}\n")
        };
        std::fs::write(&hosts, text).unwrap();
        let (code, err) = features_with(dir.path(), &["-n", "2", "-p", "0", "-h", s(&hosts)]);
        assert_eq!(code, Some(2), "{err}");
        let number = if line == 1 { 1 } else { 3 };
        let expected = format!("line {number}: {bad:?} is not host:port");
        assert!(err.contains(&expected), "{bad}: {err}");
    }
}

/// An event whose `field` is written `value` (raw JSON text).
fn event_with(field: &str, value: &str) -> String {
    let mut fields = vec![
        ("event_id", "\"e1\"".to_string()),
        ("timestamp", "\"2024-03-01T12:00:00Z\"".to_string()),
        ("user_id", "\"u1\"".to_string()),
        ("type", "\"TRANSFER\"".to_string()),
        ("amount", "5".to_string()),
        ("old_balance_orig", "5".to_string()),
        ("new_balance_orig", "0".to_string()),
    ];
    match fields.iter_mut().find(|(k, _)| *k == field) {
        Some(slot) => slot.1 = value.to_string(),
        None => fields.push((field, value.to_string())),
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

const NUMERIC: [&str; 5] = [
    "amount",
    "old_balance_orig",
    "new_balance_orig",
    "old_balance_dest",
    "new_balance_dest",
];

#[test]
fn a_number_beyond_f64_gets_the_code_and_message_of_its_string_form() {
    for field in NUMERIC {
        for huge in [
            "1e400",
            "-1e400",
            "1E+400",
            "-123.5e999",
            "1".repeat(400).as_str(),
        ] {
            let number = parse_event(event_with(field, huge), 1).unwrap_err();
            let string = parse_event(event_with(field, &format!("\"{huge}\"")), 1).unwrap_err();
            assert_eq!(number.code(), "not_finite", "{field}: {huge}: {number}");
            assert_eq!(number, string, "{field}: {huge}");
        }
    }
}

#[test]
fn a_number_below_f64_reads_as_its_string_form_and_as_the_csv_reader_reads_it() {
    for field in NUMERIC {
        for tiny in ["1e-400", "-1e-400", "4.9e-325"] {
            let number = parse_event(event_with(field, tiny), 1).unwrap();
            let string = parse_event(event_with(field, &format!("\"{tiny}\"")), 1).unwrap();
            let expected: f64 = tiny.parse().unwrap();
            let got = |e: &fraudflow::event::Event| match field {
                "amount" => e.amount,
                "old_balance_orig" => e.old_balance_orig,
                "new_balance_orig" => e.new_balance_orig,
                "old_balance_dest" => e.old_balance_dest,
                _ => e.new_balance_dest,
            };
            assert_eq!(
                got(&number).to_bits(),
                expected.to_bits(),
                "{field}: {tiny}"
            );
            assert_eq!(
                got(&string).to_bits(),
                expected.to_bits(),
                "{field}: {tiny}"
            );
        }
    }
    let csv = format!(
        "{}\n1,TRANSFER,1e-400,C1,5,0,C2,0,0,0,0\n",
        HEADER.join(",")
    );
    let row = PaysimReader::new(csv.as_bytes()).unwrap().next().unwrap();
    assert_eq!(
        row.unwrap().amount.to_bits(),
        "1e-400".parse::<f64>().unwrap().to_bits()
    );
}

#[test]
fn a_number_beyond_f64_elsewhere_is_judged_as_its_field_would_be() {
    let code = |line: &str| parse_event(line, 1).map_err(|e| e.code());
    // A string field or a label holding a number: the type is wrong.
    assert_eq!(
        code(&event_with("event_id", "1e400")).err(),
        Some("wrong_type")
    );
    assert_eq!(
        code(&event_with("is_fraud", "-1e400")).err(),
        Some("wrong_type")
    );
    assert_eq!(
        code(&event_with("dest_id", "1e400")).err(),
        Some("wrong_type")
    );
    // A field the event does not read is ignored, whatever it holds.
    assert!(code(&event_with("note", "1e400")).is_ok());
    assert!(code(&event_with("note", "{\"deep\":[1e400]}")).is_ok());
    // Written twice, the last one counts, as for any field.
    let twice =
        event_with("amount", "1e400").replace("\"amount\":1e400", "\"amount\":1e400,\"amount\":7");
    assert_eq!(parse_event(&twice, 1).unwrap().amount, 7.0);
    let twice = event_with("amount", "7").replace("\"amount\":7", "\"amount\":7,\"amount\":1e400");
    assert_eq!(code(&twice).err(), Some("not_finite"));
    // Still not JSON: cut short, or a number JSON does not allow.
    for bad in [
        "{\"amount\":1e400,",
        "{\"amount\":01e400}",
        "{\"amount\":1.e400}",
    ] {
        assert_eq!(code(bad).err(), Some("malformed_json"), "{bad}");
    }
}
