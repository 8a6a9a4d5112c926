//! `fraudflow bench` on a tiny input: every figure is printed and written
//! as JSON, the figures agree with each other, and a failing child is
//! named with the end of its standard error. No figure is held to a speed:
//! speed is what the command prints, not what a test asserts.

use std::path::Path;

use serde_json::Value;

use crate::common::fraudflow;

const ROWS: u64 = 20_000;
const RATE: u64 = 500;
const SECONDS: u64 = 2;

fn f64_of(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Percentiles in order, and a peak memory for the run.
fn check_latency_and_run(figures: &Value, what: &str) {
    let l = &figures["latency_us"];
    let p = |k: &str| f64_of(&l[k], &format!("{what} latency {k}"));
    assert!(
        p("p50") <= p("p95") && p("p95") <= p("p99") && p("p99") <= p("max"),
        "{what}: percentiles out of order: {l}"
    );
    let peak = f64_of(&figures["run"]["peak_rss_kib"], &format!("{what} peak RSS"));
    assert!(peak > 0.0, "{what}: no peak memory: {figures}");
    assert!(f64_of(&figures["run"]["wall_s"], what) > 0.0);
    assert!(f64_of(&figures["run"]["cpu_s"], &format!("{what} CPU")) > 0.0);
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn bench_prints_and_writes_consistent_figures_for_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let work = dir.path().join("work");
    let (rows, rate, seconds) = (ROWS.to_string(), RATE.to_string(), SECONDS.to_string());
    let args = [
        "--rows",
        &rows,
        "--workers",
        "1,2",
        "--rate",
        &rate,
        "--seconds",
        &seconds,
    ];
    let (stdout, r) = bench(&args, &work, &json);
    assert_eq!(r["input"]["rows"], ROWS);
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(f64_of(&r["training"]["wall_s"], "training") > 0.0);

    let backtests = r["backtest"].as_array().unwrap();
    assert_eq!(backtests.len(), 2);
    for (b, workers) in backtests.iter().zip([1, 2]) {
        assert_eq!(b["workers"], workers);
        assert_eq!(b["events"], ROWS, "every row is an event: {b}");
        let eps = f64_of(&b["events_per_second"], "events/s");
        assert!(
            close(eps, ROWS as f64 / f64_of(&b["seconds"], "seconds")),
            "{b}"
        );
        check_latency_and_run(b, &format!("backtest -w {workers}"));
        let line = format!("backtest -w {workers}: 20,000 events in ");
        assert!(stdout.contains(&line), "no `{line}` in\n{stdout}");
        assert!(stdout.contains(&format!("{eps:.0} events/s")), "{stdout}");
    }

    check_live(&r["live"], &stdout);
    for line in [
        "machine: ",
        "input: 20,000 rows generated",
        "training: wall ",
    ] {
        assert!(stdout.contains(line), "no `{line}` in\n{stdout}");
    }
    assert_eq!(stdout.matches("peak RSS ").count(), 5, "{stdout}");
}

#[test]
fn bench_names_the_child_that_failed_and_quotes_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let missing = dir.path().join("no-models-here");
    let out = fraudflow(&[
        "bench",
        "--rows",
        "1000",
        "--workers",
        "1",
        "--seconds",
        "0",
        "--models",
        path(&missing),
        "--dir",
        path(&work),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("backtest-w1 failed (exit status: 2); the end of its standard error"),
        "{stderr}"
    );
    // The child's own message, naming the directory it could not use.
    assert!(stderr.contains("no-models-here"), "{stderr}");
}

/// The live run's figures: every event sent, the rate it kept, latency.
fn check_live(live: &Value, stdout: &str) {
    assert_eq!(live["rate"], RATE);
    assert_eq!(live["sent"], RATE * SECONDS);
    let eps = f64_of(&live["events_per_second"], "live events/s");
    assert!(close(
        eps,
        (RATE * SECONDS) as f64 / f64_of(&live["seconds"], "seconds")
    ));
    assert!(live["latency_events"].as_u64().unwrap() > 0, "{live}");
    check_latency_and_run(live, "live");
    let line = "live -w 2 at 500 events/s: sent 1,000 events in ";
    assert!(stdout.contains(line), "no `{line}` in\n{stdout}");
}

/// Runs `fraudflow bench ARGS --dir WORK --json JSON`, which must succeed:
/// its standard output and the JSON.
fn bench(args: &[&str], work: &Path, json: &Path) -> (String, Value) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend(["--dir", path(work), "--json", path(json)]);
    let out = fraudflow(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (stdout, r)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `--scaling`: the backtest and the features at each count, speedup and
/// efficiency against the first, and each backtest worker's busy time,
/// which is some of the worker's time and never more; over three rounds,
/// each count shows its median rounds.
#[test]
fn bench_scaling_measures_every_count_and_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("scaling.json");
    let work = dir.path().join("work");
    let rows = ROWS.to_string();
    let args = [
        "--scaling",
        "--rows",
        &rows,
        "--workers",
        "1,2",
        "--rounds",
        "3",
    ];
    let (stdout, r) = bench(&args, &work, &json);
    let rounds = r["scaling"]["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "one a worker count: {r}");
    for (i, rates) in rounds.iter().enumerate() {
        for what in ["backtest", "features"] {
            let mut each: Vec<f64> = rates[what]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| f64_of(v, "rate"))
                .collect();
            assert_eq!(each.len(), 3, "{rates}");
            each.sort_by(f64::total_cmp);
            let shown = &r["scaling"]["rows"][i][what]["events_per_second"];
            assert_eq!(f64_of(shown, "shown"), each[1], "{rates}");
        }
    }
    assert!(stdout.contains("median features round"), "{stdout}");
    // An even number of rounds has no middle one: refused before any run.
    let even = fraudflow(&["bench", "--scaling", "--rounds", "2", "--dir", path(&work)]);
    assert_eq!(even.status.code(), Some(2));
    let said = String::from_utf8_lossy(&even.stderr);
    assert!(said.contains("--rounds must be odd"), "{said}");
    assert!(r["live"].is_null(), "no live run with --scaling: {r}");
    let scaling = r["scaling"]["rows"].as_array().unwrap();
    assert_eq!(scaling.len(), 2);
    for (row, workers) in scaling.iter().zip([1u64, 2]) {
        assert_eq!(row["backtest"]["workers"], workers);
        assert_eq!(row["features"]["workers"], workers);
        assert_eq!(row["backtest"]["events"], ROWS);
        let busy = row["busy"].as_array().unwrap();
        let indices: Vec<u64> = busy.iter().map(|w| w["worker"].as_u64().unwrap()).collect();
        assert_eq!(indices, (0..workers).collect::<Vec<_>>());
        for w in busy {
            let (b, wall) = (f64_of(&w["busy_s"], "busy"), f64_of(&w["wall_s"], "wall"));
            assert!(b > 0.0 && b <= wall, "{w}");
        }
    }
    let speedup = |i: usize| {
        let eps = |row: &Value| f64_of(&row["backtest"]["events_per_second"], "events/s");
        eps(&scaling[i]) / eps(&scaling[0])
    };
    let line = format!("{:>7}  ", 2);
    let two = stdout
        .lines()
        .find(|l| l.starts_with(&line))
        .unwrap_or_default();
    assert!(two.contains(&format!("{:.2}x", speedup(1))), "{stdout}");
    assert!(stdout.contains("scaling on "), "{stdout}");
    assert!(stdout.contains("backtest -w 2 busy: worker 0 "), "{stdout}");
    assert!(
        stdout.contains("no worker more than 10 % busier than the mean: "),
        "{stdout}"
    );
}
