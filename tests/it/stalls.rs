//! A run that stops moving ends with an error instead of hanging: a
//! process of several stopped (SIGSTOP, as a frozen node) leaves no TCP
//! reset for the others to see, only silence. Over a file and live; a live
//! run that is only idle goes on.

use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::{backtest, finish, generated, s, spawn, train, two_hosts};
use crate::live::{get, post_events, wait_exit, wait_ready, wait_written, written, Running};

/// Whether process `p` has written evaluation records: it is connected
/// and running.
fn has_records(out: &Path, p: usize) -> bool {
    fs::read_dir(out.join(format!(".evaluation-p{p}"))).is_ok_and(|d| d.count() > 0)
}

fn signal(child: &Child, number: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, number) }, 0);
}

/// Resumes and kills a stopped process should the test fail before it
/// does so itself: a stopped process would outlive the test.
struct Resume(Option<libc::pid_t>);

impl Drop for Resume {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn a_cluster_backtest_whose_peer_is_stopped_ends_on_a_stall_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 300_000, 5);
    let models = dir.path().join("models");
    train(&generated(dir.path(), 20_000, 2), &models, &[]);
    let out = dir.path().join("bt");
    let hosts = two_hosts(dir.path());
    let process = |p: &'static str| {
        let mut args = backtest(&input, &models, &out, &["--stall-timeout", "2"]);
        args.extend(["-n", "2", "-p", p, "-h", s(&hosts)]);
        spawn(&args, None)
    };
    let stopped = process("1");
    let waiting = process("0");
    let started = Instant::now();
    while !has_records(&out, 1) {
        assert!(started.elapsed() < Duration::from_secs(60), "no records");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut resume = Resume(libc::pid_t::try_from(stopped.id()).ok());
    signal(&stopped, libc::SIGSTOP);
    let at = Instant::now();
    let first = finish(waiting, "process 0, its peer stopped");
    let waited = at.elapsed();
    signal(&stopped, libc::SIGCONT);
    resume.0 = None;
    let second = finish(stopped, "process 1, stopped and resumed");

    let err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(2), "{err}");
    assert!(err.contains("the run made no progress for "), "{err}");
    assert!(
        waited >= Duration::from_millis(1_500),
        "ended after {waited:?}"
    );
    assert!(waited < Duration::from_secs(30), "ended after {waited:?}");
    // Resumed, the stopped process finds its peer gone, or its own watch
    // past its time, and ends too.
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    let said = ["lost the connection", "the run made no progress for "];
    assert!(said.iter().any(|m| err.contains(m)), "{err}");
    // Neither left records or a temporary output behind.
    let left: Vec<_> = fs::read_dir(&out)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Two processes serving over HTTP, a stall timeout of 2 s.
#[test]
fn a_live_run_idle_past_its_stall_timeout_goes_on_and_one_whose_peer_is_stopped_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (models, out, port) = crate::live::two_process_setup(dir.path());
    let file = crate::live::dataflow_file(dir.path(), port, &models, &out);
    let text = fs::read_to_string(&file).unwrap();
    let text = text.replace("stall_timeout_seconds = 10", "stall_timeout_seconds = 2");
    assert!(text.contains("stall_timeout_seconds = 2"), "{text}");
    fs::write(&file, text).unwrap();
    let hosts = dir.path().join("hosts");
    let process =
        |p: &str| crate::live::start(&file, &["-w", "2", "-n", "2", "-p", p, "-h", s(&hosts)]);
    let (mut first, mut second) = (process("0"), process("1"));
    let bases = [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{}", port + 1),
    ];
    let post = |base: &str, n: u64, seed: u64| {
        post_events(
            &format!("{base}/events"),
            n,
            seed,
            fraudflow::clock::now_millis(),
        );
    };
    for (i, base) in bases.iter().enumerate() {
        wait_ready(base);
        post(base, 300, 40 + i as u64);
    }
    assert_eq!(written(&wait_written(&bases[0], 600)), 600);
    // Idle for longer than the stall timeout: both serve on and score
    // what comes.
    std::thread::sleep(Duration::from_secs(5));
    for base in &bases {
        assert_eq!(get(&format!("{base}/health"))["status"], "serving");
    }
    post(&bases[1], 100, 50);
    assert_eq!(written(&wait_written(&bases[0], 700)), 700);

    let more = || post(&bases[0], 100, 51);
    stop_one_and_see_the_other_end(&mut first, &mut second, more, Duration::from_millis(1_500));
}

/// Stops `stopped` (SIGSTOP), then gives `waiting` more events (`more`):
/// `waiting` must end on a stall, no sooner than `least` after the stop,
/// and `stopped`, resumed, must end too.
fn stop_one_and_see_the_other_end(
    waiting: &mut Running,
    stopped: &mut Running,
    more: impl FnOnce(),
    least: Duration,
) {
    let mut resume = Resume(libc::pid_t::try_from(stopped.0.id()).ok());
    signal(&stopped.0, libc::SIGSTOP);
    let at = Instant::now();
    more();
    let (status, err) = wait_exit(waiting, "the process whose peer was stopped did not end");
    let waited = at.elapsed();
    signal(&stopped.0, libc::SIGCONT);
    resume.0 = None;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("the run made no progress for "), "{err}");
    assert!(waited >= least, "ended after {waited:?}");
    let (status, err) = wait_exit(stopped, "the stopped process, resumed, did not end");
    assert_eq!(status.code(), Some(2), "{err}");
    let said = ["lost the connection", "the run made no progress for "];
    assert!(said.iter().any(|m| err.contains(m)), "{err}");
}

/// The same from Kafka (librdkafka's mock cluster).
#[test]
fn a_kafka_run_whose_peer_is_stopped_ends_on_a_stall_after_it_idled_past_the_timeout() {
    use crate::kafka_live::{dataflow_file, listen, mock, publish, read_outputs, rows};
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 4_000, 14);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let all = rows(&input);
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    let file = dataflow_file(dir.path(), &brokers, &models, "");
    let port = crate::common::free_port_pair();
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace(&listen(&file), &format!("127.0.0.1:{port}"))
        .replace("stall_timeout_seconds = 10", "stall_timeout_seconds = 2");
    fs::write(&file, text).unwrap();
    let hosts = two_hosts(dir.path());
    let process =
        |p: &str| crate::live::start(&file, &["-w", "1", "-n", "2", "-p", p, "-h", s(&hosts)]);
    let (mut first, mut second) = (process("0"), process("1"));
    let half = all.len() / 2;
    let sent = publish(&brokers, &all[..half], 1, &[]);
    read_outputs(&brokers, sent as usize, Duration::from_secs(60));
    // Idle past the stall timeout: the run goes on, and scores what comes
    // next.
    std::thread::sleep(Duration::from_secs(4));
    for run in [&mut first, &mut second] {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "a run ended while idle"
        );
    }
    let sent = sent + publish(&brokers, &all[half..half + 100], half + 1, &[]);
    read_outputs(&brokers, sent as usize, Duration::from_secs(60));

    let rest = || {
        publish(&brokers, &all[half + 100..], half + 101, &[]);
    };
    stop_one_and_see_the_other_end(&mut first, &mut second, rest, Duration::from_millis(1_500));
}
