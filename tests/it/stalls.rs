//! A run over a file that stops moving ends with an error instead of
//! hanging: a process of several stopped (SIGSTOP, as a frozen node) leaves
//! no TCP reset for the others to see, only silence.

use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::{backtest, finish, generated, s, spawn, train, two_hosts};

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
