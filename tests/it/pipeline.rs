//! The one pipeline and its harness: a failure anywhere ends the run
//! promptly with a clear message (regressions named after the hangs they
//! pin), model versions switched at a logical time, and one evaluation for
//! PaySim and JSON-lines input.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use fraudflow::dataflow::json_event::paysim_event;
use fraudflow::paysim::PaysimReader;
use serde_json::Value;

use crate::common::{
    backtest, finish, free_port, generated, json, run_ok, run_two_processes, s, shared_slice,
    spawn, train, two_hosts,
};

/// Far more than any of these runs needs: a run still going then is hung.
/// Runs `args` at `-w 2`, then as two processes of two workers; returns
/// the three outputs (one process, then processes 0 and 1).
fn one_and_two_processes(dir: &Path, args: &[&str], limit_file_kb: Option<u64>) -> [Output; 3] {
    let mut one = args.to_vec();
    one.extend(["-w", "2"]);
    let single = finish(spawn(&one, limit_file_kb), "the run at -w 2");
    let hosts = two_hosts(dir);
    let with = |p: &'static str| {
        let mut v = args.to_vec();
        v.extend(["-w", "2", "-n", "2", "-p", p, "-h", s(&hosts)]);
        spawn(&v, limit_file_kb)
    };
    let (second, first) = (with("1"), with("0"));
    let first = finish(first, "process 0 of 2");
    let second = finish(second, "process 1 of 2");
    [single, first, second]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every run failed with status 2, and the one owning the outputs (or all,
/// for a failure every process sees) named `cause`.
fn assert_failed(outs: &[Output; 3], cause: &str) {
    for out in outs {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
        assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    }
    assert!(stderr(&outs[0]).contains(cause), "{}", stderr(&outs[0]));
    assert!(stderr(&outs[1]).contains(cause), "{}", stderr(&outs[1]));
}

/// No output under a final name, and no temporary file left.
fn assert_nothing_written(dir: &Path, keep: &[&str]) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Two processes of one run, started with `first` and `second`.
fn two_unlike(dir: &Path, first: &[&str], second: &[&str]) -> [Output; 2] {
    let hosts = two_hosts(dir);
    let with = |p: &'static str, args: &[&str]| {
        let mut v = args.to_vec();
        v.extend(["-w", "2", "-n", "2", "-p", p, "-h", s(&hosts)]);
        spawn(&v, None)
    };
    let (second, first) = (with("1", second), with("0", first));
    [finish(first, "process 0"), finish(second, "process 1")]
}

/// Processes started with other settings (a graph of another shape, which
/// used to wait for ever; blocks of another size, which lost and doubled
/// events; another file, which mixed two) end at once, one of them naming
/// the setting with both values, and write nothing.
#[test]
fn processes_started_with_other_settings_end_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let other = generated(dir.path(), 20_000, 3);
    let out = dir.path().join("o.csv");
    let args = |input: &Path| ["features", "--input", s(input), "--out", s(&out)].map(String::from);
    let (mine, theirs) = (args(&input), args(&other));
    let mine: Vec<&str> = mine.iter().map(String::as_str).collect();
    let theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    let with = |extra: &[&'static str]| [&mine[..], extra].concat();
    for (second, named) in [
        (with(&["--contract", "v1"]), "another feature contract: v"),
        (with(&["--block-bytes", "100000"]), "another block bytes: "),
        (theirs.clone(), "another input: "),
    ] {
        let outs = two_unlike(dir.path(), &mine, &second);
        for out in &outs {
            assert_eq!(out.status.code(), Some(2), "{second:?}: {}", stderr(out));
            assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
        }
        assert!(
            outs.iter().any(|o| stderr(o).contains(named)),
            "{second:?}: {} / {}",
            stderr(&outs[0]),
            stderr(&outs[1])
        );
        let inputs = ["generated-20000-2.csv", "generated-20000-3.csv", "hosts"];
        assert_nothing_written(dir.path(), &inputs);
    }
    // Another threshold scores the same models differently: refused too.
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let out = dir.path().join("bt");
    let bt = backtest(&input, &models, &out, &[]);
    let other = [&bt[..], &["--threshold", "0.99"]].concat();
    let outs = two_unlike(dir.path(), &bt, &other);
    assert!(
        outs.iter().any(|o| stderr(o).contains("another policy: ")),
        "{} / {}",
        stderr(&outs[0]),
        stderr(&outs[1])
    );
    assert!(outs.iter().all(|o| o.status.code() == Some(2)));
    assert!(!out.join("alerts.jsonl").exists());
}

/// A process of a backtest that fails exits at once, without running its
/// destructors (the others must not wait on it): the records it kept for
/// the report go with it all the same.
#[test]
fn a_backtest_process_that_fails_leaves_no_evaluation_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let hosts = two_hosts(dir.path());
    let out = dir.path().join("bt");
    let mut args = backtest(&input, &models, &out, &["-n", "2", "-p", "1"]);
    args.extend(["-h", s(&hosts), "--connect-timeout", "2"]);
    let run = finish(spawn(&args, None), "process 1 alone");
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(out.is_dir());
    assert!(
        !out.join(".evaluation-p1").exists(),
        "the records were left behind"
    );
}

/// Something else listening at process 0's address takes the connection
/// and never speaks: process 1 ends at the connect timeout instead of
/// waiting on it for ever, and leaves nothing behind.
#[test]
fn a_peer_that_never_answers_ends_the_run_at_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 2_000, 2);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hosts = dir.path().join("hosts");
    let first = listener.local_addr().unwrap();
    std::fs::write(&hosts, format!("{first}\n127.0.0.1:{}\n", free_port())).unwrap();
    let out = dir.path().join("o.csv");
    let args = [
        "features",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "-n",
        "2",
        "-p",
        "1",
    ];
    let run = spawn(
        &[&args[..], &["-h", s(&hosts), "--connect-timeout", "3"]].concat(),
        None,
    );
    let started = Instant::now();
    let run = finish(run, "process 1 with a silent peer");
    drop(listener);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("did not all connect and agree"),
        "{}",
        stderr(&run)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_nothing_written(dir.path(), &["generated-2000-2.csv", "hosts"]);
}

#[test]
fn features_with_a_directory_as_input_ends_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("d.jsonl");
    std::fs::create_dir(&input).unwrap();
    let out = dir.path().join("o.csv");
    let outs = one_and_two_processes(
        dir.path(),
        &["features", "--input", s(&input), "--out", s(&out)],
        None,
    );
    assert_failed(&outs, "d.jsonl: a directory, not a file");
    assert!(stderr(&outs[2]).contains("d.jsonl"), "{}", stderr(&outs[2]));
    assert_nothing_written(dir.path(), &["d.jsonl", "hosts"]);
}

#[test]
fn features_with_a_pipe_as_input_ends_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("p.csv");
    let made = std::process::Command::new("mkfifo").arg(&input).status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "mkfifo {}",
        input.display()
    );
    let out = dir.path().join("o.csv");
    let outs = one_and_two_processes(
        dir.path(),
        &["features", "--input", s(&input), "--out", s(&out)],
        None,
    );
    assert_failed(&outs, "p.csv: not a regular file");
    assert_nothing_written(dir.path(), &["p.csv", "hosts"]);
}

#[test]
fn features_with_an_unwritable_output_ends_instead_of_hanging() {
    let Some(slice) = shared_slice() else { return };
    let dir = tempfile::tempdir().unwrap();
    let outs = one_and_two_processes(
        dir.path(),
        &[
            "features",
            "--input",
            s(&slice),
            "--out",
            "/proc/nope/o.csv",
        ],
        None,
    );
    assert_failed(
        &outs,
        "cannot create output /proc/nope/o.csv: cannot create directory /proc/nope: No such file or directory",
    );
    // Process 1 opens no outputs: it learns of the failure from process 0.
    assert!(
        stderr(&outs[2]).contains("lost the connection to another process"),
        "{}",
        stderr(&outs[2])
    );
}

#[test]
fn a_write_error_in_the_middle_of_the_run_ends_it_and_leaves_no_file() {
    let Some(slice) = shared_slice() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("table.csv");
    // 100 KiB: the 4 MiB table fails mid-run, its first block written.
    let outs = one_and_two_processes(
        dir.path(),
        &["features", "--input", s(&slice), "--out", s(&out)],
        Some(100),
    );
    assert_failed(&outs, "table.csv: File too large");
    assert_nothing_written(dir.path(), &["hosts"]);
}

#[test]
fn a_backtest_whose_alerts_cannot_be_written_ends_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 2);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    // The output directory is a file: nothing can be opened in it.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let bt = backtest(&input, &models, &blocked, &["-w", "2"]);
    let out = finish(spawn(&bt, None), "the backtest");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("blocked"), "{}", stderr(&out));
}

/// Alerts of a backtest, by event id, with the version that scored each.
fn alerts(out: &Path) -> Vec<(u64, String, Value)> {
    std::fs::read_to_string(out.join("alerts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let step = v["step"].as_u64().unwrap();
            let version = v["model_version"].as_str().unwrap().to_string();
            v.as_object_mut().unwrap().remove("model_version");
            (step, version, v)
        })
        .collect()
}

#[test]
fn a_model_switched_mid_run_changes_alerts_exactly_from_its_step_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 120_000, 4);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(&input, &a, &[]);
    train(
        &input,
        &b,
        &["--seed", "7", "--trees", "50", "--budget", "0.02"],
    );
    let version = |dir: &Path| json(&dir.join("bundle.json"))["version"].clone();
    let (version_a, version_b) = (version(&a), version(&b));
    let only = |models: &Path, name: &str| {
        let out = dir.path().join(name);
        run_ok(&backtest(&input, models, &out, &["-w", "2"]));
        alerts(&out)
    };
    let (all_a, all_b) = (only(&a, "only-a"), only(&b, "only-b"));
    assert_ne!(all_a.len(), all_b.len(), "the versions must differ to tell");
    let switch_step = 400u64;
    let switch = format!("{switch_step}={}", s(&b));
    let mut expected: Vec<Value> = all_a
        .iter()
        .filter(|(step, ..)| *step < switch_step)
        .chain(all_b.iter().filter(|(step, ..)| *step >= switch_step))
        .map(|(.., v)| v.clone())
        .collect();
    expected.sort_by_key(|v| v["seq"].as_u64());
    for workers in ["1", "4"] {
        let out = dir.path().join(format!("switched-{workers}"));
        let args = backtest(
            &input,
            &a,
            &out,
            &["-w", workers, "--switch-models", &switch],
        );
        run_ok(&args);
        let got = alerts(&out);
        for (step, v, _) in &got {
            let want = if *step < switch_step {
                &version_a
            } else {
                &version_b
            };
            assert_eq!(v, want.as_str().unwrap(), "step {step}");
        }
        let got: Vec<Value> = got.into_iter().map(|(.., v)| v).collect();
        assert_eq!(got.len(), expected.len(), "-w {workers}");
        assert!(got == expected, "-w {workers}: the alerts differ");
    }
    for step in [310, 350] {
        let switch = format!("{step}={}", s(&b));
        switched_while_learning(&input, &a, &switch, step, [&version_a, &version_b]);
    }
}

/// With the feedback loop on, the switch holds as well: a batch whose wait
/// ends at the switch's very time (PaySim rows sit on the hour, and so do
/// the labels and the batches' deadlines) is fitted onto the new bundle,
/// after it, and never puts the old bundle's update back in force (before
/// the fix, steps 310 and 350 of this file each had alerts scored by it).
fn switched_while_learning(
    input: &Path,
    a: &Path,
    switch: &str,
    switch_step: u64,
    [version_a, version_b]: [&Value; 2],
) {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for workers in ["1", "4"] {
        let out = dir.path().join(format!("learning-{workers}"));
        let flags = ["-w", workers, "--switch-models", switch, "--feedback"];
        let flags = [
            &flags[..],
            &["--learn-batch", "100000", "--learn-wait", "1h"],
        ]
        .concat();
        run_ok(&backtest(input, a, &out, &flags));
        let got = alerts(&out);
        let (mut before, mut after) = (0, 0);
        for (step, v, _) in &got {
            let (base, rest) = v.split_once("+online.").unwrap_or((v.as_str(), ""));
            let want = if *step < switch_step {
                before += usize::from(!rest.is_empty());
                version_a
            } else {
                after += usize::from(!rest.is_empty());
                version_b
            };
            assert_eq!(
                base,
                want.as_str().unwrap(),
                "-w {workers}, step {step}: {v}"
            );
        }
        assert!(
            before > 0 && after > 0,
            "updates on both sides: {before}, {after}"
        );
        runs.push(std::fs::read(out.join("alerts.jsonl")).unwrap());
    }
    assert!(
        runs[0] == runs[1],
        "-w 1 and -w 4 differ with the feedback loop"
    );
}

/// The same events as a PaySim file, written as JSON lines.
fn as_json_lines(csv: &Path, out: &Path) {
    let reader = PaysimReader::open(csv).unwrap();
    let mut text = String::new();
    for (row, t) in reader.enumerate() {
        let t = t.unwrap();
        let time_ms = u64::from(t.step) * 3_600_000;
        text.push_str(&paysim_event(&t, &format!("r{}", row + 1), time_ms).to_string());
        text.push('\n');
    }
    std::fs::write(out, text).unwrap();
}

#[test]
fn paysim_and_json_lines_of_the_same_events_give_the_same_split_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generated(dir.path(), 60_000, 5);
    let jsonl = dir.path().join("events.jsonl");
    as_json_lines(&csv, &jsonl);
    let report = |input: &Path, name: &str| {
        let models = dir.path().join(format!("{name}-models"));
        train(input, &models, &[]);
        let out = dir.path().join(name);
        run_ok(&backtest(input, &models, &out, &["-w", "2"]));
        (
            json(&models.join("bundle.json")),
            json(&out.join("report.json")),
        )
    };
    let (csv_bundle, csv_report) = report(&csv, "csv");
    let (json_bundle, json_report) = report(&jsonl, "jsonl");
    assert_eq!(csv_bundle["split"], json_bundle["split"]);
    assert_eq!(csv_bundle["metrics"], json_bundle["metrics"]);
    assert!(csv_report["quality_test_split"].is_object(), "{csv_report}");
    for key in [
        "events_in",
        "alerts",
        "quality_all",
        "test_split_after_step",
        "quality_test_split",
        "per_day",
    ] {
        assert_eq!(csv_report[key], json_report[key], "{key}");
    }
}

/// `args` without `--quiet` (which [`run_two_processes`] adds).
fn loud(mut args: Vec<&str>) -> Vec<&str> {
    args.retain(|a| *a != "--quiet");
    args
}

/// report.json without the figures of the clock and of the cluster's
/// shape.
fn figures(out: &Path) -> Value {
    let mut report = json(&out.join("report.json"));
    for timing in ["seconds", "events_per_second", "workers", "latency_us"] {
        report.as_object_mut().unwrap().remove(timing);
    }
    report
}

/// Every worker formats its own alerts and scores and keeps its own
/// evaluation: the files and the report's figures are the same bytes
/// whatever the workers and processes.
#[test]
fn a_backtest_writes_the_same_files_and_figures_on_any_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 30_000;
    let input = generated(dir.path(), rows, 6);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let run = |name: &str, workers: &str| {
        let out = dir.path().join(name);
        run_ok(&backtest(
            &input,
            &models,
            &out,
            &["--scores", "-w", workers],
        ));
        out
    };
    let one = run("w1", "1");
    let four = run("w4", "4");
    let two = dir.path().join("n2");
    run_two_processes(
        dir.path(),
        &loud(backtest(&input, &models, &two, &["--scores"])),
        "2",
    );
    let read = |out: &Path, file: &str| std::fs::read(out.join(file)).unwrap();
    let lines = |out: &Path, file: &str| read(out, file).iter().filter(|&&b| b == b'\n').count();
    assert!(lines(&one, "alerts.jsonl") > 0, "no alerts to compare");
    assert_eq!(lines(&one, "scores.csv"), rows as usize + 1);
    for out in [&four, &two] {
        for file in ["alerts.jsonl", "scores.csv", "dead_letters.jsonl"] {
            assert!(
                read(&one, file) == read(out, file),
                "{}: {file} differs",
                out.display()
            );
        }
        assert_eq!(figures(&one), figures(out), "{}", out.display());
    }
    // The records each process kept on disk for the report are gone.
    for out in [&one, &four, &two] {
        let left: Vec<String> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".evaluation"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?} left behind", out.display());
    }
}

/// Regression: a backtest of two processes reported only process 0's
/// events read (and so half the throughput).
#[test]
fn a_backtest_of_two_processes_counts_every_process_events_and_draws_one_workers_page() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 20_000;
    let input = generated(dir.path(), rows, 7);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let out = dir.path().join("n2");
    let page = out.join("page.html");
    let args = backtest(&input, &models, &out, &["--html", s(&page)]);
    run_two_processes(dir.path(), &loud(args), "1");
    let report = json(&out.join("report.json"));
    assert_eq!(report["events_in"], rows);
    assert_eq!(report["scored"], rows);
    let routed = report["alerts"].as_u64().unwrap() + report["normal"].as_u64().unwrap();
    assert_eq!(routed, rows);
    // The page's figures of the scores, drawn from records that crossed
    // between processes, are those of one worker's run.
    let one = dir.path().join("w1");
    let one_page = one.join("page.html");
    run_ok(&backtest(
        &input,
        &models,
        &one,
        &["--html", s(&one_page), "-w", "1"],
    ));
    let (two, one) = (read(&page), read(&one_page));
    for id in [
        "pr-curve",
        "score-distribution",
        "alerts-per-period",
        "reasons",
    ] {
        assert_eq!(section(&two, id), section(&one, id), "{id}");
    }
    assert!(section(&two, "pr-curve").contains("PR-AUC"));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The page's section `id`.
fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let at = page.find(&format!("id=\"{id}\"")).unwrap();
    &page[at..at + page[at..].find("</section>").unwrap()]
}
