//! A real Prometheus server (Debian's `prometheus` package, which `.ci/run`
//! installs) scrapes two `fraudflow run` processes under traffic: one over
//! HTTP with feedback, so that an update is promoted, and one reading
//! Kafka from tansu, so that the brokers' figures exist. Then:
//! `promtool` passes the infra's config and rules; every target is up;
//! every expression of the Grafana dashboard and of the alert rules
//! evaluates through Prometheus's HTTP API and returns data; and a burst
//! of garbage events makes the dead-letter alert fire.
//!
//! The rules are loaded as written in `infra/prometheus/alerts.yml`, but
//! with each `for:` cut to a second, so that the test need not wait the
//! minutes an operator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, s};
use crate::kafka_tansu::Tansu;
use crate::live::{dataflow_file, get, post, post_events, sigterm, wait_ready, wait_written};

/// The repository's infra directory.
fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra")
}

/// A Debian binary of the prometheus package, or a panic saying how to
/// install it.
fn debian_binary(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "this test needs {name}, from Debian's prometheus package: apt-get install prometheus \
         (.ci/run installs it)"
    );
    path
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn promtool(args: &[&str]) {
    let out = Command::new(debian_binary("promtool"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The alert rules with every `for:` cut to one second.
fn hurried_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(infra().join("prometheus/alerts.yml")).unwrap();
    let hurried: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 1s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect();
    let path = dir.join("alerts.yml");
    std::fs::write(&path, hurried.join("\n") + "\n").unwrap();
    path
}

/// Prometheus on 127.0.0.1, scraping `targets` every second.
fn start_prometheus(dir: &Path, targets: &[String]) -> (Killed, String) {
    let port = free_port();
    let rules = hurried_rules(dir);
    let listed: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\n\
         scrape_configs:\n  - job_name: fraudflow\n    static_configs:\n      - targets: [{}]\n",
        s(&rules),
        listed.join(", ")
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(debian_binary("prometheus"))
        .arg(format!("--config.file={}", s(&config_path)))
        .arg(format!("--storage.tsdb.path={}", s(&dir.join("tsdb"))))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{base}/-/ready")).call().is_err() {
        assert!(Instant::now() < deadline, "prometheus never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Killed(child), base)
}

/// Prometheus's answer to `GET base + path` with `query` (URL-encoded).
fn api(base: &str, path: &str, query: Option<&str>) -> Value {
    let mut request = ureq::get(&format!("{base}{path}"));
    if let Some(q) = query {
        request = request.query("query", q);
    }
    let agent_reply = request.config().http_status_as_error(false).build().call();
    let mut reply = agent_reply.unwrap();
    serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap()
}

/// An instant query: its result, or the error Prometheus gave.
fn query(base: &str, expr: &str) -> Result<Vec<Value>, String> {
    let answer = api(base, "/api/v1/query", Some(expr));
    match answer["status"].as_str() {
        Some("success") => Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()),
        _ => Err(answer.to_string()),
    }
}

/// Every `expr` of the dashboard's panels (rows' panels too), with
/// Grafana's `$__rate_interval` as one minute.
fn dashboard_exprs() -> Vec<String> {
    let path = infra().join("grafana/dashboards/fraudflow.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fn walk(panel: &Value, out: &mut Vec<String>) {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.replace("$__rate_interval", "1m"));
            }
        }
        for p in panel["panels"].as_array().into_iter().flatten() {
            walk(p, out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    assert!(
        out.len() >= 20,
        "the dashboard has {} expressions",
        out.len()
    );
    out
}

/// An alert's quantity: its expression without the trailing comparison
/// with a number (the convention alerts.yml keeps: `QUANTITY OP NUMBER`).
fn quantity(expr: &str) -> String {
    let expr = expr.trim();
    let number_at = expr
        .rfind(|c: char| !(c.is_ascii_digit() || ".e+-".contains(c)))
        .map_or(0, |i| i + 1);
    let head = expr[..number_at].trim_end();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some(q) = head.strip_suffix(op) {
            return q.trim_end().to_string();
        }
    }
    panic!("the alert expression {expr:?} does not end in a comparison with a number");
}

/// The loaded rules: (name, query, is an alert).
fn rules(base: &str) -> Vec<(String, String, bool)> {
    let answer = api(base, "/api/v1/rules", None);
    let mut out = Vec::new();
    for group in answer["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            out.push((
                rule["name"].as_str().unwrap().to_string(),
                rule["query"].as_str().unwrap().to_string(),
                rule["type"] == "alerting",
            ));
        }
    }
    out
}

/// What each expression that should return data returned: the failures.
fn without_data(base: &str, exprs: &[String]) -> Vec<String> {
    exprs
        .iter()
        .filter_map(|e| match query(base, e) {
            Ok(r) if !r.is_empty() => None,
            Ok(_) => Some(format!("{e}: no data")),
            Err(err) => Some(format!("{e}: {err}")),
        })
        .collect()
}

fn run(file: &Path) -> crate::live::Running {
    crate::live::start(file, &["-w", "2"])
}

/// Labels the first `n` alerts the HTTP run wrote, as fraud, until a
/// version learned from them scores.
fn label_alerts(base: &str, out: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut alerts = crate::live::lines(out, "alerts");
    while alerts.len() < n {
        assert!(Instant::now() < deadline, "only {} alerts", alerts.len());
        std::thread::sleep(Duration::from_millis(50));
        alerts = crate::live::lines(out, "alerts");
    }
    for a in alerts.iter().take(n) {
        let body = format!(
            r#"{{"transaction_id":{},"label":"fraud","analyst_id":"ana"}}"#,
            a["event_id"]
        );
        let (status, answer) = post(&format!("{base}/feedback"), &body);
        assert_eq!(status, 202, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(&format!("{base}/health"))["model_version"]
        .as_str()
        .unwrap()
        .contains("+online.")
    {
        assert!(Instant::now() < deadline, "no version was promoted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `check` gives no failures, or panics with the last.
fn eventually(what: &str, limit: Duration, check: impl Fn() -> Vec<String>) {
    let deadline = Instant::now() + limit;
    loop {
        let failures = check();
        if failures.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}, after {limit:?}:\n{}",
            failures.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The two runs under test, their broker, and where they serve.
struct Runs {
    http: crate::live::Running,
    kafka: crate::live::Running,
    tansu: Tansu,
    /// The HTTP run's base URL and output directory; the Kafka run's URL.
    base: String,
    out: PathBuf,
    kafka_base: String,
}

/// An HTTP run with feedback and a Kafka run on tansu, both of two
/// workers, ready.
fn start_runs(dir: &Path) -> Runs {
    let (models, out, port) = crate::live::two_process_setup(dir);
    let file = dataflow_file(dir, port, &models, &out);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("[feedback]\nbatch_size = 2\nmax_wait_seconds = 1\nholdout_every = 0\n");
    std::fs::write(&file, text).unwrap();
    let tansu = Tansu::start("memory://tansu/", dir);
    let kafka_port = free_port();
    let kafka = crate::kafka_tansu::dataflow_file(dir, &tansu.brokers, &models, kafka_port);
    let runs = Runs {
        http: run(&file),
        kafka: run(&kafka),
        tansu,
        base: format!("http://127.0.0.1:{port}"),
        out,
        kafka_base: format!("http://127.0.0.1:{kafka_port}"),
    };
    wait_ready(&runs.base);
    wait_ready(&runs.kafka_base);
    runs
}

/// Events into both runs (a bad one into Kafka's), and labels that
/// promote an update in the HTTP run.
fn traffic(dir: &Path, runs: &Runs) {
    let input = crate::common::generated(dir, 3_000, 21);
    let rows = crate::kafka_live::rows(&input);
    crate::kafka_live::publish(&runs.tansu.brokers, &rows, 1, &[b"not json"]);
    let now = fraudflow::clock::now_millis();
    post_events(&format!("{}/events", runs.base), 2_000, 1, now);
    wait_written(&runs.base, 2_000);
    label_alerts(&runs.base, &runs.out, 2);
}

fn wait_targets_up(prom: &str, targets: usize) {
    eventually("targets not up", Duration::from_secs(30), || {
        let answer = api(prom, "/api/v1/targets", None);
        let active = answer["data"]["activeTargets"].as_array().cloned();
        let active = active.unwrap_or_default();
        let mut failures: Vec<String> = active
            .iter()
            .filter(|t| t["health"] != "up")
            .map(|t| t.to_string())
            .collect();
        if active.len() != targets {
            failures.push(format!("{} targets of {targets}", active.len()));
        }
        failures
    });
}

/// Every rule's expression evaluates without error; the dashboard's, the
/// recordings' and the alerts' quantities return data.
fn every_query_returns_data(prom: &str) {
    let rules = rules(prom);
    assert!(rules.iter().filter(|r| r.2).count() >= 9, "{rules:?}");
    for (name, q, _) in &rules {
        query(prom, q).unwrap_or_else(|e| panic!("rule {name}: {q}: {e}"));
    }
    let mut exprs = dashboard_exprs();
    exprs.extend(
        rules
            .iter()
            .map(|(_, q, alert)| if *alert { quantity(q) } else { q.clone() }),
    );
    eventually("expressions without data", Duration::from_secs(60), || {
        without_data(prom, &exprs)
    });
}

/// Whether the alert `name` is firing now.
fn firing(prom: &str, name: &str) -> bool {
    let answer = api(prom, "/api/v1/alerts", None);
    let alerts = answer["data"]["alerts"].as_array().cloned();
    alerts
        .unwrap_or_default()
        .iter()
        .any(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
}

/// What Prometheus holds of the HTTP run (at `target`) agrees with what
/// was sent to it: every event read and routed, and the promoted update.
fn figures_arrive(prom: &str, target: &str) {
    let sum = |family: &str| {
        let q = format!("sum({family}{{instance=\"{target}\"}})");
        let result = query(prom, &q).unwrap_or_default();
        let value = result
            .first()
            .map(|r| r["value"][1].as_str().unwrap().to_string());
        value.and_then(|v| v.parse::<f64>().ok()).unwrap_or(-1.0)
    };
    eventually("figures not as sent", Duration::from_secs(30), || {
        let routed: f64 = ["anomaly", "normal", "dlq"]
            .map(|k| sum(&format!("stream_events_{k}_total")))
            .iter()
            .sum();
        let got = [
            sum("stream_events_in_total"),
            routed,
            sum("online_feedback_accepted_total"),
        ];
        let promoted = (sum("promotion_pass_total"), sum("online_update_count"));
        match got == [2_000.0, 2_000.0, 2.0] && promoted.0 >= 1.0 && promoted.1 >= 1.0 {
            true => Vec::new(),
            false => vec![format!(
                "in, routed, labels met: {got:?}; promoted: {promoted:?}"
            )],
        }
    });
}

/// A burst of garbage: the dead-letter rate's alert fires, and the dead
/// letters are counted by code.
fn garbage_fires_the_dead_letter_alert(prom: &str, base: &str) {
    assert!(
        !firing(prom, "DeadLetterRateHigh"),
        "DeadLetterRateHigh fired on clean traffic"
    );
    let garbage = "garbage\n".repeat(400);
    for _ in 0..5 {
        post(&format!("{base}/events"), &garbage);
    }
    eventually(
        "DeadLetterRateHigh not firing",
        Duration::from_secs(60),
        || match firing(prom, "DeadLetterRateHigh") {
            true => Vec::new(),
            false => vec![api(prom, "/api/v1/alerts", None).to_string()],
        },
    );
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    // Counted by code, on whichever worker parsed them.
    let malformed: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("fraudflow_dead_letters_total{code=\"malformed_json\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(malformed, 2_000, "{metrics}");
}

#[test]
fn prometheus_scrapes_every_process_and_every_dashboard_and_alert_query_returns_data() {
    promtool(&[
        "check",
        "config",
        s(&infra().join("prometheus/prometheus.yml")),
    ]);
    promtool(&["check", "rules", s(&infra().join("prometheus/alerts.yml"))]);
    let dir = tempfile::tempdir().unwrap();
    let mut runs = start_runs(dir.path());
    let targets = [&runs.base, &runs.kafka_base].map(|b| b.replace("http://", ""));
    let (_prometheus, prom) = start_prometheus(dir.path(), &targets);
    traffic(dir.path(), &runs);
    wait_targets_up(&prom, targets.len());
    every_query_returns_data(&prom);
    figures_arrive(&prom, &targets[0]);
    garbage_fires_the_dead_letter_alert(&prom, &runs.base);
    for run in [&mut runs.http, &mut runs.kafka] {
        let (status, stderr) = sigterm(run);
        assert!(status.success(), "{stderr}");
    }
}
