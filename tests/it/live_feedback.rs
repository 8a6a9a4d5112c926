//! `POST /feedback` in a live run: every status code, labels that change
//! the model version on every process, and a label that comes before its
//! transaction.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::s;
use crate::live::{
    dataflow_file, get, post_events, sigterm, terminate, two_process_setup, wait_ready,
    wait_written, Running,
};

const TOKEN: &str = "s3cret-token";

/// Posts `body` to `base` + `path` with an `Authorization` header when
/// given: the status and the JSON answer.
pub(crate) fn post_to(base: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.post(&format!("{base}{path}"));
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    let mut reply = request.send(body.as_bytes()).unwrap();
    let status = reply.status().as_u16();
    let text = reply.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends a request to `base` + `path` that declares a body far over any
/// limit and sends a few bytes of it: the status line of the answer, which
/// must come at once, not after the body's timeout (30 s).
fn declared_huge(base: &str, path: &str) -> String {
    let mut stream = slow_request(base, path, "{\"transaction_id\"", 99_999_999);
    status_line(&mut stream)
}

fn post_label(base: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    post_to(base, "/feedback", body, token)
}

fn label(id: &str, label: &str) -> String {
    format!(r#"{{"transaction_id":"{id}","label":"{label}","analyst_id":"ana","notes":"seen"}}"#)
}

/// The test's dataflow file with a `[feedback]` table that fits a batch of
/// two labels, keeps no holdout (every update is promoted) and waits at
/// most a second.
fn with_feedback(dir: &Path, port: u16, models: &Path, out: &Path) -> std::path::PathBuf {
    let file = dataflow_file(dir, port, models, out);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("[feedback]\nbatch_size = 2\nmax_wait_seconds = 1\nholdout_every = 0\n");
    std::fs::write(&file, text).unwrap();
    file
}

fn start_with_token(file: &Path, extra: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_fraudflow"))
        .arg("run")
        .arg(file)
        .args(extra)
        .env("FRAUDFLOW_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child)
}

fn wait_for_version(base: &str, part: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let version = get(&format!("{base}/health"))["model_version"]
            .as_str()
            .unwrap()
            .to_string();
        if version.contains(part) {
            return version;
        }
        assert!(Instant::now() < deadline, "{base}: still {version}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn labels_over_http_are_checked_and_change_the_version_on_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let (models, out, port) = two_process_setup(dir.path());
    let file = with_feedback(dir.path(), port, &models, &out);
    let hosts = dir.path().join("hosts");
    let process =
        |p: &str| start_with_token(&file, &["-w", "1", "-n", "2", "-p", p, "-h", s(&hosts)]);
    let (mut second, mut first) = (process("1"), process("0"));
    let bases = [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{}", port + 1),
    ];
    let base = &bases[0];
    wait_ready(base);
    wait_ready(&bases[1]);
    let before = get(&format!("{base}/health"))["model_version"].clone();

    // Every refusal, with nothing taken.
    let good = label("s1-0", "true_positive");
    assert_eq!(post_label(base, &good, None).0, 401);
    assert_eq!(post_label(base, &good, Some("wrong-token")).0, 401);
    for (body, field) in [
        ("{not json", "body"),
        (r#"{"label":"fraud","analyst_id":"a"}"#, "transaction_id"),
        (
            r#"{"transaction_id":"t","label":"maybe","analyst_id":"a"}"#,
            "label",
        ),
        (r#"{"transaction_id":"t","label":"fraud"}"#, "analyst_id"),
    ] {
        let (status, answer) = post_label(base, body, Some(TOKEN));
        assert_eq!(
            (status, answer["field"].as_str()),
            (422, Some(field)),
            "{body}: {answer}"
        );
    }
    let huge = format!(
        r#"{{"transaction_id":"t","label":"fraud","analyst_id":"a","notes":"{}"}}"#,
        "x".repeat(20_000)
    );
    assert_eq!(post_label(base, &huge, Some(TOKEN)).0, 413);
    for path in ["/feedback", "/events"] {
        let status = declared_huge(base, path);
        assert!(status.starts_with("HTTP/1.1 413"), "{path}: {status}");
    }

    // A label before its transaction waits for it.
    let (status, answer) = post_label(base, &label("s1-7", "fraud"), Some(TOKEN));
    assert_eq!(status, 202, "{answer}");
    let now = fraudflow::clock::now_millis();
    post_events(&format!("{base}/events"), 200, 1, now);
    post_events(&format!("{}/events", bases[1]), 200, 2, now);
    wait_written(base, 400);
    // Labels to either process, of transactions on either: the original's
    // anomaly_id too.
    for (i, b) in bases.iter().enumerate() {
        for n in 0..3 {
            let body = label(
                &format!("s{}-{n}", 1 + i),
                if n == 0 { "fraud" } else { "legit" },
            );
            let (status, answer) = post_label(b, &body, Some(TOKEN));
            assert_eq!(status, 202, "{answer}");
        }
    }
    let synonym = r#"{"anomaly_id":"s2-5","label":"false_positive","analyst_id":"ana"}"#;
    assert_eq!(post_label(base, synonym, Some(TOKEN)).0, 202);
    for b in &bases {
        let version = wait_for_version(b, "+online.");
        assert_ne!(Value::String(version), before);
    }
    // SIGTERM to process 1 alone stops the run: process 0 hears of it,
    // stops taking events, drains and ends by itself (it used to wait for
    // a SIGTERM of its own, serving on). A request to process 0 under way
    // then is finished and kept, as on SIGTERM (closing its input under it
    // answered 202 and lost the event).
    let event = crate::live::events(1, 77, fraudflow::clock::now_millis());
    let (head, tail) = event.split_at(20);
    let mut slow = slow_request(base, "/events", head, event.len());
    terminate(&second);
    std::thread::sleep(Duration::from_millis(500));
    let answer = finish_request(&mut slow, tail);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // Process 1 ends once every input of the run has closed, so only
    // after the request above.
    let (status, stderr) = exits_by_itself(&mut second);
    assert!(status.success(), "{stderr}");
    let (status, stderr) = exits_by_itself(&mut first);
    assert!(status.success(), "{stderr}");
    let written = ["alerts", "normal"].map(|p| crate::live::lines(&out, p));
    assert!(
        written.iter().flatten().any(|l| l["event_id"] == "s77-0"),
        "the event answered 202 was not written"
    );
    // Process 0 sums every shard's counts: 8 labels, all met.
    assert!(
        stderr.contains("feedback: 8 labels, 8 matched, 0 unmatched"),
        "{stderr}"
    );
}

/// Opens a request (with the token) to `base` + `path` for a body of
/// `length` bytes and sends its `head` only.
fn slow_request(base: &str, path: &str, head: &str, length: usize) -> std::net::TcpStream {
    use std::io::Write;
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let start = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{head}"
    );
    stream.write_all(start.as_bytes()).unwrap();
    stream
}

/// Sends the rest of a [`slow_request`]'s body: the answer's status line.
fn finish_request(stream: &mut std::net::TcpStream, tail: &str) -> String {
    std::io::Write::write_all(stream, tail.as_bytes()).unwrap();
    status_line(stream)
}

/// The status line of the answer on `stream`, waiting up to 10 s.
fn status_line(stream: &mut std::net::TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = [0u8; 256];
    let n = std::io::Read::read(stream, &mut reply).unwrap_or(0);
    let text = String::from_utf8_lossy(&reply[..n]).into_owned();
    text.lines()
        .next()
        .unwrap_or("no answer in 10 s")
        .to_string()
}

/// Waits, without a signal, for `run` to exit: its status and stderr.
fn exits_by_itself(run: &mut Running) -> (std::process::ExitStatus, String) {
    let what = "still running 30 s after another process of its run was stopped";
    crate::live::wait_exit(run, what)
}

fn post_flush(base: &str, token: Option<&str>) -> u16 {
    post_to(base, "/flush", "", token).0
}

#[test]
fn flush_fits_what_is_buffered_and_a_restart_goes_on_from_the_kept_version() {
    let dir = tempfile::tempdir().unwrap();
    let (models, out, port) = two_process_setup(dir.path());
    let file = dataflow_file(dir.path(), port, &models, &out);
    let mut text = std::fs::read_to_string(&file).unwrap();
    // A batch that never fills and a wait that never ends: only a flush fits.
    text.push_str("[feedback]\nbatch_size = 1000\nmax_wait_seconds = 86400\nholdout_every = 0\n");
    std::fs::write(&file, text).unwrap();
    let bundle = crate::common::json(&models.join("bundle.json"))["version"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("http://127.0.0.1:{port}");
    let session = |seed: u64| {
        let mut run = start_with_token(&file, &["-w", "2"]);
        wait_ready(&base);
        let now = fraudflow::clock::now_millis();
        post_events(&format!("{base}/events"), 100, seed, now);
        wait_written(&base, 100);
        for n in 0..3 {
            let body = label(&format!("s{seed}-{n}"), "fraud");
            assert_eq!(post_label(&base, &body, Some(TOKEN)).0, 202);
        }
        assert_eq!(post_flush(&base, None), 401);
        assert_eq!(post_flush(&base, Some(TOKEN)), 202);
        let version = wait_for_version(&base, &format!("+online.{}", seed));
        let (status, stderr) = sigterm(&mut run);
        assert!(status.success(), "{stderr}");
        version
    };
    assert_eq!(session(1), format!("{bundle}+online.1"));
    let kept = models
        .join("online")
        .join(format!("{bundle}+online.1.json"));
    let first = std::fs::read_to_string(&kept).unwrap();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["parent"], bundle.as_str());
    assert_eq!(v["bundle"], bundle.as_str());
    assert_eq!(v["number"], 1);
    assert_eq!(v["gate"]["rollback"], false);
    assert!(v["examples_seen"].as_u64().unwrap() > 3, "{v}");

    // The restart scores with the kept version from the start, and its
    // next update is number 2: none is applied twice.
    let mut run = start_with_token(&file, &["-w", "2"]);
    wait_ready(&base);
    let health = get(&format!("{base}/health"));
    assert_eq!(health["model_version"], format!("{bundle}+online.1"));
    let (status, stderr) = sigterm(&mut run);
    assert!(status.success(), "{stderr}");
    assert_eq!(session(2), format!("{bundle}+online.2"));
    let second: Value = crate::common::json(
        &models
            .join("online")
            .join(format!("{bundle}+online.2.json")),
    );
    assert_eq!(second["parent"], format!("{bundle}+online.1"));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), first);
}
