//! `fraudflow run` over HTTP, end to end: garbage bodies, late events, a
//! quiet period, model versions switched and refused, SIGTERM; one process
//! and two. Every event posted is written once: as an alert, as normal
//! traffic or as a dead letter.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fraudflow::dataflow::json_event::paysim_event;
use fraudflow::generate::{Generator, GeneratorParams};
use serde_json::Value;

use crate::common::{free_port, generated, s, train};

/// A running `fraudflow run`, killed if the test fails first.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// The test's dataflow file. `lateness_ms` is 5 s: the tests stamp events
/// with the clock when they build a request, and a loaded machine may take
/// over a second to deliver it; a shorter lateness would then turn events
/// meant to be on time into late ones.
pub(crate) fn dataflow_file(dir: &Path, port: u16, models: &Path, out: &Path) -> PathBuf {
    let path = dir.join("local.toml");
    let text = format!(
        "[source.http]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = 262144\ntick_ms = 5\nlateness_ms = 5000\n\
         stall_timeout_seconds = 10\n\
         [models]\ndir = {:?}\npoll_seconds = 0\n[sinks]\ndir = {:?}\nflush_ms = 50\n",
        s(models),
        s(out)
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn start(file: &Path, extra: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_fraudflow"))
        .arg("run")
        .arg(file)
        .args(extra)
        .arg("--quiet")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child)
}

pub(crate) fn get(url: &str) -> Value {
    let mut reply = ureq::get(url).call().unwrap();
    serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap()
}

/// Posts `body`; the status and the JSON answer.
pub(crate) fn post(url: &str, body: &str) -> (u16, Value) {
    try_post(url, body).unwrap()
}

/// [`post`], `Err` when no server answers.
fn try_post(url: &str, body: &str) -> Result<(u16, Value), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut reply = agent.post(url).send(body.as_bytes())?;
    let status = reply.status().as_u16();
    let text = reply.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

pub(crate) fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ureq::get(&format!("{base}/ready")).call().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{base} never became ready");
}

/// Posts `n` generated events stamped `time_ms`, in requests of 500 (under
/// the test's body limit); all must be accepted.
pub(crate) fn post_events(url: &str, n: u64, seed: u64, time_ms: u64) {
    let body = events(n, seed, time_ms);
    let lines: Vec<&str> = body.lines().collect();
    // Each request after the first is behind the frontier the one before
    // moved past their shared stamp: placed 1 ms later, counted late.
    for chunk in lines.chunks(500) {
        let (status, answer) = post(url, &(chunk.join("\n") + "\n"));
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["accepted"].as_u64(), Some(chunk.len() as u64));
    }
}

/// `n` generated events stamped `time_ms`, as JSON lines.
pub(crate) fn events(n: u64, seed: u64, time_ms: u64) -> String {
    let rows = Generator::new(GeneratorParams::new(n, seed).check().unwrap());
    rows.enumerate()
        .map(|(i, t)| paysim_event(&t, &format!("s{seed}-{i}"), time_ms).to_string() + "\n")
        .collect()
}

pub(crate) fn written(health: &Value) -> u64 {
    ["alerts", "normal", "dead_letters"]
        .iter()
        .map(|k| health[k].as_u64().unwrap())
        .sum()
}

/// Waits until the server has written `n` events; its health then.
pub(crate) fn wait_written(base: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = get(&format!("{base}/health"));
        if written(&health) >= n || Instant::now() > deadline {
            return health;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM.
pub(crate) fn terminate(run: &Running) {
    let pid = libc::pid_t::try_from(run.0.id()).unwrap();
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

/// Sends SIGTERM and waits for the exit: its status and stderr.
pub(crate) fn sigterm(run: &mut Running) -> (std::process::ExitStatus, String) {
    terminate(run);
    wait_exit(run, "no exit after SIGTERM")
}

/// Waits up to 30 s for `run` to exit: its status and stderr. Past that,
/// sends SIGTERM and fails the test, saying `what`.
pub(crate) fn wait_exit(run: &mut Running, what: &str) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            terminate(run);
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = run.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
    }
    (status, stderr)
}

/// Lines of every file of `prefix` in `dir`.
pub(crate) fn lines(dir: &Path, prefix: &str) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

#[test]
fn run_serves_garbage_late_events_a_quiet_period_and_model_reloads_then_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 30_000, 11);
    let (models, other) = (dir.path().join("models"), dir.path().join("other"));
    train(&input, &models, &[]);
    train(&input, &other, &["--seed", "3", "--budget", "0.05"]);
    let out = dir.path().join("out");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut run = start(
        &dataflow_file(dir.path(), port, &models, &out),
        &["-w", "2"],
    );
    wait_ready(&base);
    let events_url = format!("{base}/events");
    let now = fraudflow::clock::now_millis;

    post_events(&events_url, 2_000, 1, now());
    // Garbage among good lines: every line is taken, the bad ones named.
    let garbage = format!("not json\n{}{{\"event_id\":\"x\"}}\n", events(3, 2, now()));
    let (status, answer) = post(&events_url, &garbage);
    assert_eq!(status, 400);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["dead_letters"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(answer["errors"][0]["code"], "malformed_json");
    assert_eq!(answer["errors"][1]["line"], 5);
    assert!(answer["errors"][1]["message"]
        .as_str()
        .unwrap()
        .contains("field timestamp"));
    let no_amount = events(1, 3, now()).replace("\"amount\":", "\"amount_\":");
    let (status, answer) = post(&events_url, &no_amount);
    assert_eq!(status, 400);
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("field amount"));
    let (status, answer) = post(&events_url, &" ".repeat(270_000));
    assert_eq!(status, 413, "{answer}");
    // An hour behind the frontier: placed at it, counted, scored.
    let (status, _) = post(&events_url, &events(5, 4, now() - 3_600_000));
    assert_eq!(status, 202);
    let health = wait_written(&base, 2_011);
    assert_eq!(written(&health), 2_011, "{health}");
    // 1,500 of the first 2,000 (see post_events) and the 5 an hour behind.
    assert_eq!(health["late"].as_u64(), Some(1_505), "{health}");
    let latency = &health["latency_us"];
    assert!(
        latency["max"].as_u64().unwrap() < 500_000,
        "late events waited: {health}"
    );
    assert_eq!(health["dead_letters"].as_u64(), Some(3), "{health}");

    // Absurd stamps are dead letters at the source: nothing else is late.
    let frontier = health["frontier_ms"].as_u64().unwrap();
    let absurd: Vec<String> = events(2, 6, now())
        .lines()
        .zip(["9999-12-30T00:00:00Z", "1970-01-01T00:00:00Z"])
        .map(|(line, stamp)| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v["timestamp"] = stamp.into();
            v.to_string() + "\n"
        })
        .collect();
    let (status, answer) = post(&events_url, &absurd.concat());
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(2)));
    post_events(&events_url, 100, 7, now());
    let health = wait_written(&base, 2_113);
    assert_eq!(
        (health["dead_letters"].as_u64(), health["late"].as_u64()),
        (Some(5), Some(1_505)),
        "{health}"
    );
    assert!(health["frontier_ms"].as_u64().unwrap() < frontier + 3_600_000);

    // Quiet: the frontier still follows the clock, lateness_ms (5 s) behind,
    // once the clock is that far past the last event.
    let before = health["frontier_ms"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = get(&format!("{base}/health"))["frontier_ms"]
            .as_u64()
            .unwrap();
        if after >= before + 200 || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(after >= before + 200, "frontier {before} -> {after}");
    assert!(after <= now(), "frontier {after} ahead of the clock");

    // A new bundle switches the version; a broken one is refused.
    let version = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("bundle.json")).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["version"].clone()
    };
    std::fs::copy(other.join("bundle.json"), models.join("bundle.json")).unwrap();
    let (status, answer) = post(&format!("{base}/models/reload"), "");
    assert_eq!(
        (status, &answer["model_version"]),
        (200, &version(&other)),
        "{answer}"
    );
    post_events(&events_url, 2_000, 5, now());
    std::fs::write(
        models.join("bundle.json"),
        "{\"format\": 1, \"contract\": \"v1\"}",
    )
    .unwrap();
    let (status, answer) = post(&format!("{base}/models/reload"), "");
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("v1"), "{answer}");
    assert_eq!(
        get(&format!("{base}/health"))["model_version"],
        version(&other)
    );
    wait_written(&base, 4_113);

    let (status, stderr) = sigterm(&mut run);
    assert!(status.success(), "{stderr}");
    let (alerts, normal, dead) = (
        lines(&out, "alerts"),
        lines(&out, "normal"),
        lines(&out, "dead_letters"),
    );
    assert_eq!(alerts.len() + normal.len() + dead.len(), 4_113);
    let codes: Vec<&str> = dead.iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| c.starts_with("time_too_far"))
            .count(),
        2,
        "{codes:?}"
    );
    assert_eq!(dead.len(), 5);
    let after_switch = |a: &&Value| a["event_id"].as_str().unwrap().starts_with("s5-");
    assert!(alerts
        .iter()
        .filter(after_switch)
        .all(|a| a["model_version"] == version(&other)));
    assert!(alerts
        .iter()
        .filter(|a| !after_switch(a))
        .all(|a| a["model_version"] != version(&other)));
    assert!(
        alerts.iter().any(|a| after_switch(&a)),
        "the new version alerted on nothing"
    );
}

#[test]
fn run_as_two_processes_serves_on_each_port_and_both_drain_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (models, out, port) = two_process_setup(dir.path());
    let file = dataflow_file(dir.path(), port, &models, &out);
    let hosts = dir.path().join("hosts");
    let process = |p: &str| start(&file, &["-w", "1", "-n", "2", "-p", p, "-h", s(&hosts)]);
    let bases = [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{}", port + 1),
    ];
    // Alone, process 0 serves but takes nothing: should process 1 never
    // come, what it took would be lost when it gives up.
    let mut first = process("0");
    let alone = format!("{}/events", bases[0]);
    let body = events(3, 20, fraudflow::clock::now_millis());
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, answer) = loop {
        if let Ok(answer) = try_post(&alone, &body) {
            break answer;
        }
        assert!(Instant::now() < deadline, "process 0 never served");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not all connected"),
        "{answer}"
    );
    // Stopped while it waits, it ends at once (not after --connect-timeout).
    terminate(&first);
    let (status, stderr) = wait_exit(&mut first, "process 0 waited on after SIGTERM");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("nothing was taken"), "{stderr}");
    let mut first = process("0");
    let mut second = process("1");
    for (i, base) in bases.iter().enumerate() {
        wait_ready(base);
        let url = format!("{base}/events");
        post_events(&url, 1_000, 20 + i as u64, fraudflow::clock::now_millis());
    }
    // Process 0 writes every process's events.
    assert_eq!(written(&wait_written(&bases[0], 2_000)), 2_000);
    // Each process stops on its own signal; the run ends when all have.
    for run in [&second, &first] {
        terminate(run);
    }
    for run in [&mut second, &mut first] {
        let (status, stderr) = sigterm(run);
        assert!(status.success(), "{stderr}");
    }
    assert_eq!(
        lines(&out, "alerts").len() + lines(&out, "normal").len(),
        2_000
    );
}

/// A trained bundle, an output directory, a free port and a hostfile of two
/// processes (`DIR/hosts`) for a two-process live test in `dir`.
pub(crate) fn two_process_setup(dir: &Path) -> (PathBuf, PathBuf, u16) {
    let input = generated(dir, 20_000, 12);
    let models = dir.join("models");
    train(&input, &models, &[]);
    let peers = format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port());
    std::fs::write(dir.join("hosts"), peers).unwrap();
    // Process 1 listens on the port + 1: both must be free.
    (models, dir.join("out"), crate::common::free_port_pair())
}

/// The files a live run wrote, by name, each as its lines; a dead letter's
/// `received_at` (the wall clock when it was refused) left out.
fn written_files(out: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let dead = name.starts_with("dead_letters");
        let lines = text.split_inclusive('\n').map(|line| {
            if !dead {
                return line.to_string();
            }
            let mut dead: Value = serde_json::from_str(line).unwrap();
            dead.as_object_mut().unwrap().remove("received_at");
            dead.to_string() + "\n"
        });
        files.insert(name, lines.collect());
    }
    files
}

/// Runs `fraudflow run -w WORKERS`, posts `requests` in order, checks the
/// counts and latencies it reports once all `total` events are written,
/// and stops it: the files it wrote.
fn live_files(
    dir: &Path,
    models: &Path,
    workers: &str,
    requests: &[String],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let (out, port) = (dir.join(format!("out-{workers}")), free_port());
    let file = dataflow_file(dir, port, models, &out);
    // Small files: rotation must cut them at the same lines too.
    let text = std::fs::read_to_string(&file).unwrap() + "rotate_bytes = 40000\n";
    std::fs::write(&file, text).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut run = start(&file, &["-w", workers]);
    wait_ready(&base);
    let total: usize = requests.iter().map(|r| r.lines().count()).sum();
    for body in requests {
        let (status, answer) = post(&format!("{base}/events"), body);
        assert!(status == 202 || status == 400, "{status}: {answer}");
    }
    let health = wait_written(&base, total as u64);
    assert_eq!(written(&health), total as u64, "{health}");
    // Every outcome was timed as its line was formatted, on whichever
    // worker formatted it.
    let routed = health["alerts"].as_u64().unwrap() + health["normal"].as_u64().unwrap();
    assert_eq!(health["latency_events"].as_u64(), Some(routed), "{health}");
    let (status, stderr) = sigterm(&mut run);
    assert!(status.success(), "{stderr}");
    written_files(&out)
}

#[test]
fn live_files_are_the_same_lines_in_the_same_files_at_one_worker_and_at_three() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 13);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    // Stamped a minute ahead, a second apart, one stamp a request: the
    // clock never overtakes them, so nothing is placed by timing.
    let first = fraudflow::clock::now_millis() + 60_000;
    let mut requests: Vec<String> = (0..6u64)
        .map(|i| events(400, 30 + i, first + i * 1_000))
        .collect();
    let garbage = format!(
        "not json\n{}{{\"event_id\":\"x\"}}\n",
        events(3, 40, first + 6_000)
    );
    // (No dead letter of an event's time: its raw text is the event as
    // received, with the clock's receipt time.)
    requests.push(garbage);
    let one = live_files(dir.path(), &models, "1", &requests);
    let three = live_files(dir.path(), &models, "3", &requests);
    let count = |prefix: &str| one.keys().filter(|k| k.starts_with(prefix)).count();
    assert!(
        count("alerts") >= 1 && count("dead_letters") == 1,
        "{one:?}"
    );
    assert!(count("normal") > 1, "no rotation: {:?}", one.keys());
    let lines = |prefix: &str| -> usize {
        let files = one.iter().filter(|(k, _)| k.starts_with(prefix));
        files.map(|(_, v)| v.len()).sum()
    };
    assert!(lines("alerts") > 0, "no alerts to compare");
    assert_eq!(lines("dead_letters"), 2);
    assert_eq!(
        lines("alerts") + lines("normal") + lines("dead_letters"),
        2_405
    );
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        three.keys().collect::<Vec<_>>()
    );
    for (name, lines) in &one {
        let theirs = &three[name];
        let differ = lines.iter().zip(theirs).position(|(a, b)| a != b);
        if let Some(i) = differ {
            panic!(
                "{name} line {i}: -w 1 wrote\n{}-w 3 wrote\n{}",
                lines[i], theirs[i]
            );
        }
        assert_eq!(lines.len(), theirs.len(), "{name}");
    }
}
