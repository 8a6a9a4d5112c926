//! Outputs aimed where they should not be (regressions for issue 10,
//! faults 2, 3, 6 and 11): an output that is an input or another output is
//! refused before work starts; a device or a FIFO is written, never
//! replaced; a run's files take their final names together or not at all;
//! a killed run's temporary files are cleaned by the next; a path under a
//! file says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{
    backtest, finish, fraudflow, generated, json, run_ok, s, spawn, train, two_hosts,
};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with status 2 and a message containing `want`.
fn refused(out: &Output, want: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(want), "wanted {want:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every entry of `dir` (recursively), with its bytes; directories as
/// `None`.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                all.push((path, None));
            } else if meta.is_file() {
                let bytes = fs::read(&path).unwrap();
                all.push((path, Some(bytes)));
            } else {
                all.push((path, None));
            }
        }
    }
    all.sort();
    all
}

/// Temporary files of ours left in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn an_output_naming_the_input_is_refused_before_work_starts() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 2_000, 3);
    let hard = dir.path().join("hard.csv");
    fs::hard_link(&input, &hard).unwrap();
    let soft = dir.path().join("soft.csv");
    std::os::unix::fs::symlink(&input, &soft).unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let dotted = dir.path().join("sub/../").join(input.file_name().unwrap());
    let before = snapshot(dir.path());
    let other = dir.path().join("features.csv");
    let cases: Vec<Vec<&str>> = vec![
        vec!["--out", s(&input)],
        vec!["--out", s(&dotted)],
        vec!["--out", s(&hard)],
        vec!["--out", s(&soft)],
        vec!["--out", s(&other), "--dead-letter", s(&input)],
        vec!["--out", s(&other), "--dead-letter", s(&hard)],
    ];
    for case in cases {
        let mut args = vec!["features", "--input", s(&input), "--quiet"];
        args.extend(&case);
        let out = fraudflow(&args);
        refused(&out, "would destroy the input");
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{case:?} changed the directory"
        );
    }
}

#[test]
fn two_outputs_naming_one_file_are_refused_before_work_starts() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 2_000, 3);
    let table = dir.path().join("t.csv");
    let before = snapshot(dir.path());
    let manifest = dir.path().join("t.manifest.json");
    for dead in [&table, &manifest] {
        let args = [
            "features",
            "--input",
            s(&input),
            "--out",
            s(&table),
            "--dead-letter",
            s(dead),
        ];
        refused(&fraudflow(&args), "are the same file");
        assert_eq!(snapshot(dir.path()), before);
    }
    // A character device may take several streams: /dev/null discards.
    let args = [
        "features",
        "--input",
        s(&input),
        "--out",
        "/dev/null",
        "--dead-letter",
        "/dev/null",
        "--quiet",
    ];
    let out = fraudflow(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn an_output_directory_holding_the_input_under_an_output_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generated(dir.path(), 2_000, 3);
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("models/metrics")).unwrap();
    let models = out.join("models");
    // The input sits where an output of the run would be written; the
    // check comes before the models are even read.
    let nowhere = dir.path().join("no-models");
    let cases: Vec<(PathBuf, Vec<String>)> = vec![
        (
            out.join("alerts.jsonl"),
            vec!["--models".into(), s(&nowhere).into()],
        ),
        (
            out.join("report.json"),
            vec!["--models".into(), s(&nowhere).into()],
        ),
        (models.join("bundle.json"), vec![]),
        (models.join("metrics/ensemble.json"), vec![]),
    ];
    for (input, extra) in cases {
        fs::copy(&csv, &input).unwrap();
        let before = snapshot(dir.path());
        let mut args = vec!["backtest", "--input", s(&input), "--out", s(&out), "-q"];
        args.extend(extra.iter().map(String::as_str));
        refused(&fraudflow(&args), "would destroy the input");
        assert_eq!(snapshot(dir.path()), before, "backtest of {input:?}");
        let args = ["train", "--input", s(&input), "--out", s(&models), "-q"];
        if input.starts_with(&models) {
            refused(&fraudflow(&args), "would destroy the input");
            assert_eq!(snapshot(dir.path()), before, "train of {input:?}");
        }
        fs::remove_file(&input).unwrap();
    }
}

#[test]
fn a_device_or_fifo_is_written_in_place_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let full = fraudflow(&["generate", "--rows", "50000", "--out", "/dev/full", "-q"]);
    refused(&full, "/dev/full: No space left on device");
    let meta = fs::metadata("/dev/full").unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &meta.file_type()
    ));

    let plain = fraudflow(&["generate", "--rows", "5000", "--seed", "4", "-q"]);
    assert!(plain.status.success());
    for out in ["-", "/dev/stdout"] {
        let got = fraudflow(&[
            "generate", "--rows", "5000", "--seed", "4", "--out", out, "-q",
        ]);
        assert!(got.status.success(), "{}", stderr(&got));
        assert!(got.stdout == plain.stdout, "--out {out}: other bytes");
    }

    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    let wrote = fraudflow(&[
        "generate",
        "--rows",
        "5000",
        "--seed",
        "4",
        "--out",
        s(&fifo),
        "-q",
    ]);
    assert!(wrote.status.success(), "{}", stderr(&wrote));
    assert!(
        reader.join().unwrap() == plain.stdout,
        "the FIFO got other bytes"
    );
    let meta = fs::metadata(&fifo).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));

    // The feature table on standard output is the table written to a file.
    let input = dir.path().join("in.csv");
    fs::write(&input, &plain.stdout).unwrap();
    let table = dir.path().join("t.csv");
    let args = ["features", "--input", s(&input), "--out", s(&table), "-q"];
    assert!(fraudflow(&args).status.success());
    let streamed = fraudflow(&to_stdout(&input));
    assert!(streamed.status.success(), "{}", stderr(&streamed));
    assert!(streamed.stdout == fs::read(&table).unwrap(), "other rows");
}

/// `features` of `input` with the table on standard output.
fn to_stdout(input: &Path) -> Vec<&str> {
    let out = ["--out", "-", "--dead-letter", "/dev/null", "-q"];
    [["features", "--input", s(input)].as_slice(), &out].concat()
}

#[test]
fn a_feature_table_on_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let mut child = spawn(&to_stdout(&input), None);
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).trim().is_empty(), "{}", stderr(&out));
}

#[test]
fn a_socket_a_directory_or_a_stream_without_a_dead_letter_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let out = fraudflow(&["generate", "--rows", "10", "--out", s(&socket)]);
    refused(&out, "it is a socket");
    let out = fraudflow(&["generate", "--rows", "10", "--out", s(dir.path())]);
    refused(&out, "it is a directory");
    let input = generated(dir.path(), 100, 1);
    let out = fraudflow(&["features", "--input", s(&input), "--out", "-"]);
    refused(&out, "name --dead-letter");
    let out = fraudflow(&["backtest", "--input", s(&input), "--out", "-"]);
    refused(&out, "standard output cannot hold a directory");
    let out = fraudflow(&["backtest", "--input", s(&input), "--out", "/dev/null"]);
    refused(&out, "/dev/null is a character device, not a directory");
}

#[test]
fn a_parent_that_is_a_file_is_named_as_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let file = dir.path().join("plain");
    fs::write(&file, "").unwrap();
    let under = file.join("x.csv");
    let says = format!("{} is a file, not a directory", s(&file));
    let out = fraudflow(&["features", "--input", s(&input), "--out", s(&under)]);
    refused(&out, &format!("cannot create output {}: {says}", s(&under)));
    let out = fraudflow(&["generate", "--rows", "10", "--out", s(&under)]);
    refused(&out, &format!("cannot create output {}: {says}", s(&under)));
    let models = dir.path().join("models");
    let out = fraudflow(&["train", "--input", s(&input), "--out", s(&file.join("m"))]);
    refused(&out, &says);
    train(&input, &models, &[]);
    refused(&fraudflow(&backtest(&input, &models, &file, &[])), &says);
    let flow = dir.path().join("live.toml");
    let text = format!(
        "[source.http]\nlisten = \"127.0.0.1:0\"\n\n[models]\ndir = \"{}\"\n\n[sinks]\ndir = \"{}\"\n",
        s(&models),
        s(&under)
    );
    fs::write(&flow, text).unwrap();
    refused(&fraudflow(&["run", s(&flow), "-q"]), &says);
}

/// The files a manifest names, with their sizes, are what is on disk.
fn assert_manifest_true(out: &Path, names: &[&str]) {
    let manifest = json(&out.join("backtest.manifest.json"));
    let files = manifest["files"].as_array().unwrap();
    let listed: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names);
    for f in files {
        let path = out.join(f["name"].as_str().unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            f["bytes"].as_u64().unwrap()
        );
    }
}

#[test]
fn a_failed_run_leaves_the_last_complete_set_whole() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let out = dir.path().join("bt");
    let first = spawn(&backtest(&input, &models, &out, &["--scores"]), None);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_manifest_true(
        &out,
        // In the order they were opened: scores.csv is written as the
        // run goes, so it is opened with the alerts.
        &[
            "alerts.jsonl",
            "scores.csv",
            "dead_letters.jsonl",
            "report.json",
        ],
    );
    let before = snapshot(&out);
    // A full disk in the middle of the run: every event an alert, the
    // alerts outgrow the limit. Then at its end: no alert at all, so the
    // alerts and dead letters are complete (and empty) and only the report
    // outgrows the limit.
    for (threshold, limit_kb) in [("0", 256), ("1", 1)] {
        let args = backtest(&input, &models, &out, &["--threshold", threshold]);
        let failed = spawn(&args, Some(limit_kb)).wait_with_output().unwrap();
        refused(&failed, "File too large");
        assert_eq!(snapshot(&out), before, "a failed run changed the outputs");
        assert!(temporaries(&out).is_empty());
    }
    // A later run without --scores replaces the set whole: the earlier
    // run's scores.csv goes with its manifest.
    let second = spawn(&backtest(&input, &models, &out, &[]), None);
    let second = second.wait_with_output().unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(!out.join("scores.csv").exists());
    assert_manifest_true(&out, &["alerts.jsonl", "dead_letters.jsonl", "report.json"]);
}

/// A small file and models trained on it, and a file large enough that a
/// backtest of it is still going when the test stops it.
fn small_large_and_models(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let small = generated(dir, 20_000, 2);
    let large = generated(dir, 300_000, 5);
    let models = dir.join("models");
    train(&small, &models, &[]);
    (small, large, models)
}

/// A backtest of `input` into `out`, once it has its temporary files and
/// is still going.
fn going(input: &Path, models: &Path, out: &Path) -> std::process::Child {
    let mut child = spawn(&backtest(input, models, out, &["--threshold", "0"]), None);
    let started = Instant::now();
    while temporaries(out).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no temporary file"
        );
        assert!(child.try_wait().unwrap().is_none(), "ended too soon");
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

#[test]
fn a_killed_backtest_leaves_no_mixed_set_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (small, large, models) = small_large_and_models(dir.path());
    let out = dir.path().join("bt");
    let first = spawn(&backtest(&small, &models, &out, &[]), None);
    assert!(first.wait_with_output().unwrap().status.success());
    let before = snapshot(&out);
    let mut child = going(&large, &models, &out);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = temporaries(&out);
    assert!(!left.is_empty());
    // Nothing under a final name changed: no mix of the two runs. (The
    // killed run's evaluation records are left in `.evaluation-p0`.)
    let records = out.join(".evaluation-p0");
    assert!(records.is_dir());
    let finals: Vec<_> = snapshot(&out)
        .into_iter()
        .filter(|(p, _)| !p.file_name().unwrap().to_string_lossy().ends_with(".tmp"))
        .filter(|(p, _)| !p.starts_with(&records))
        .collect();
    assert_eq!(finals, before);
    let next = spawn(&backtest(&small, &models, &out, &[]), None);
    let next = next.wait_with_output().unwrap();
    assert!(next.status.success(), "{}", stderr(&next));
    let err = stderr(&next);
    for name in &left {
        assert!(err.contains(name.as_str()), "{name} not named in: {err}");
    }
    assert!(err.contains("which is no longer running"), "{err}");
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
    assert!(!records.exists(), "the killed run's records are removed");
    assert_manifest_true(&out, &["alerts.jsonl", "dead_letters.jsonl", "report.json"]);
}

/// Each process of a backtest keeps its records in `OUT/.evaluation-pP`
/// until the report: a second backtest into the same --out while one runs
/// would empty that directory under it, and is refused instead; one left
/// by a killed run is emptied and used.
#[test]
fn a_backtest_into_an_out_whose_records_another_run_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let out = dir.path().join("bt");
    let held = out.join(".evaluation-p0");
    fs::create_dir_all(&held).unwrap();
    fs::write(held.join("w0-d0.rec"), [7u8; 100]).unwrap();
    // Another run's lock on the directory, as a running backtest holds it.
    let lock = fs::File::open(&held).unwrap();
    lock.try_lock().unwrap();
    let refused_run = fraudflow(&backtest(&input, &models, &out, &[]));
    refused(&refused_run, "is in use by another backtest");
    assert!(stderr(&refused_run).contains(".evaluation-p0"));
    assert!(
        held.join("w0-d0.rec").exists(),
        "the holder's records were left alone"
    );
    drop(lock);
    // Now the directory is a killed run's leftover (its torn file would
    // fail the report): emptied, used, removed.
    run_ok(&backtest(&input, &models, &out, &[]));
    let report = json(&out.join("report.json"));
    assert_eq!(report["scored"], 20_000);
    assert!(!held.exists(), "the records are removed after the report");
}

/// A process of a run of several that fails in the middle (it cannot
/// write its records: a full disk, as a file-size limit makes it) ends the
/// whole run, and neither process leaves its records or a temporary output
/// behind, though a failed run of several processes exits without running
/// destructors. Each process in turn is the one that fails.
#[test]
fn a_cluster_backtest_that_fails_mid_run_leaves_no_records_or_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    // Three tries each: a process's records were left when its own
    // removal raced its workers, one run in four or so.
    for (try_, failing) in ["0", "1", "0", "1", "0", "1"].into_iter().enumerate() {
        let out = dir.path().join(format!("bt{try_}"));
        let page = out.join("page.html");
        let hosts = two_hosts(dir.path());
        let process = |p: &'static str| {
            let mut args = backtest(&input, &models, &out, &["--html", s(&page)]);
            args.extend(["-n", "2", "-p", p, "-h", s(&hosts)]);
            spawn(&args, (p == failing).then_some(8))
        };
        let second = process("1");
        let first = process("0");
        let runs = [finish(first, "process 0"), finish(second, "process 1")];
        for run in &runs {
            assert_eq!(run.status.code(), Some(2), "{}", stderr(run));
        }
        let failed = stderr(&runs[usize::from(failing == "1")]);
        assert!(failed.contains("File too large"), "{failed}");
        let left: Vec<String> = fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()))
            .into_iter()
            .flatten()
            .collect();
        assert!(left.is_empty(), "process {failing} failing left {left:?}");
    }
}

/// SIGTERM or Ctrl-C stops a backtest with its temporary outputs and its
/// evaluation records removed (SIGKILL leaves them for the next run, see
/// above), the last complete set as it was, and the shell's status for
/// the signal.
#[test]
fn a_backtest_stopped_by_sigterm_or_ctrl_c_leaves_only_the_last_complete_set() {
    let dir = tempfile::tempdir().unwrap();
    let (small, large, models) = small_large_and_models(dir.path());
    let out = dir.path().join("bt");
    run_ok(&backtest(&small, &models, &out, &[]));
    let before = snapshot(&out);
    for (signal, number, status) in [("TERM", libc::SIGTERM, 143), ("INT", libc::SIGINT, 130)] {
        let child = going(&large, &models, &out);
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        assert_eq!(unsafe { libc::kill(pid, number) }, 0);
        let stopped = finish(child, "the stopped backtest");
        let err = stderr(&stopped);
        assert_eq!(stopped.status.code(), Some(status), "{err}");
        assert!(err.contains(&format!("stopped by SIG{signal}")), "{err}");
        assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
        assert!(!out.join(".evaluation-p0").exists(), "the records are left");
        assert_eq!(snapshot(&out), before, "SIG{signal} changed the outputs");
    }
}
