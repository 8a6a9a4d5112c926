//! What the integration tests share: running the binary, finding the
//! genuine PaySim slice.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fraudflow::generate::{Generator, GeneratorParams};
use fraudflow::paysim::{PaysimWriter, Transaction};
use serde_json::Value;

pub fn fraudflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fraudflow"))
        .args(args)
        .output()
        .expect("the fraudflow binary runs")
}

pub fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The genuine slice, or `None` (a printed skip) when allowed to be missing.
pub fn shared_slice() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/paysim/paysim_first_41370_rows.csv");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("FRAUDFLOW_ALLOW_MISSING_SHARED").as_deref() == Ok("1") {
        eprintln!("skipped: needs {} (absent)", path.display());
        return None;
    }
    panic!(
        "this test needs the PaySim slice at {}: put the shared/ folder beside the checkout, \
         or set FRAUDFLOW_ALLOW_MISSING_SHARED=1 to skip it",
        path.display()
    );
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port on 127.0.0.1 that is free with the next one: process P of a
/// run listens on `--listen`'s port + P.
pub fn free_port_pair() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Runs `fraudflow ARGS` as two processes on 127.0.0.1 (`-n 2`, `workers`
/// each, a hostfile in `dir`) and asserts that both succeed.
pub fn run_two_processes(dir: &Path, args: &[&str], workers: &str) {
    let hosts = two_hosts(dir);
    let spawn = |process: &str| {
        Command::new(env!("CARGO_BIN_EXE_fraudflow"))
            .args(args)
            .args(["-w", workers, "-n", "2", "-p", process, "-h"])
            .arg(&hosts)
            .arg("--quiet")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut second = spawn("1");
    let mut first = spawn("0");
    assert!(first.wait().unwrap().success() && second.wait().unwrap().success());
}

/// Writes `dir/hosts`, two processes on free ports of 127.0.0.1: its path.
pub fn two_hosts(dir: &Path) -> PathBuf {
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    hosts
}

/// Spawns `fraudflow ARGS` with its output piped, under a file-size limit
/// when given: SIGXFSZ is ignored, so writes past it fail with EFBIG, a
/// write error in the middle of the run (a full disk).
pub fn spawn(args: &[&str], limit_file_kb: Option<u64>) -> std::process::Child {
    let bin = env!("CARGO_BIN_EXE_fraudflow");
    let mut command = match limit_file_kb {
        Some(kb) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("trap '' XFSZ; ulimit -f {kb}; exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Writes `rows` as a PaySim file at `path`.
pub fn write_rows(path: &Path, rows: impl IntoIterator<Item = Transaction>) {
    let mut writer = PaysimWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for row in rows {
        writer.write(&row).unwrap();
    }
    writer.finish().unwrap();
}

/// A generated PaySim file of `rows` rows in `dir`.
pub fn generated(dir: &Path, rows: u64, seed: u64) -> PathBuf {
    let path = dir.join(format!("generated-{rows}-{seed}.csv"));
    write_rows(
        &path,
        Generator::new(GeneratorParams::new(rows, seed).check().unwrap()),
    );
    path
}

/// Runs `fraudflow ARGS`, asserts it succeeded, returns its standard output.
pub fn run_ok(args: &[&str]) -> String {
    let out = fraudflow(args);
    assert!(
        out.status.success(),
        "fraudflow {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `fraudflow backtest` of `input` with the bundle in `models`, writing to
/// `out`, quietly, with `extra` flags.
pub fn backtest<'a>(
    input: &'a Path,
    models: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "backtest",
        "--input",
        s(input),
        "--models",
        s(models),
        "--out",
        s(out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args
}

/// `fraudflow train` of `input` into `out`, quietly, with `extra` flags.
pub fn train(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["train", "--input", s(input), "--out", s(out), "--quiet"];
    args.extend_from_slice(extra);
    run_ok(&args)
}

pub const DEADLINE: Duration = Duration::from_secs(60);

/// Waits for `child`, killing it and failing the test past the deadline.
pub fn finish(mut child: Child, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("{what} hung: still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
