//! Two processes of one timely cluster on two "hosts": two network
//! namespaces the test makes on this machine, joined by a veth pair whose
//! two ends hold 10.213.0.1/24 and 10.213.0.2/24. Those addresses exist
//! only inside the namespaces, which have no other interface than their
//! loopback and no route but the /24, so the processes can reach nothing
//! else. The hostfile names the two addresses, and the backtest's alerts
//! must be the single-process run's, byte for byte.
//!
//! Making namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip`
//! (iproute2; `.ci/run` installs it). Without them the test fails, saying
//! what is missing: it never passes without having run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{backtest, generated, run_ok, s, train};

/// timely's port on each namespaced host.
const PORT: u16 = 2101;
/// The longest the two processes may take together.
const DEADLINE: Duration = Duration::from_secs(300);

/// Two namespaces and the veth pair between them, deleted on drop (the
/// pair goes with its namespaces), even when the test fails half-way.
struct Namespaces {
    names: [String; 2],
}

impl Namespaces {
    /// Names unique to this run (process id and clock), so that what a
    /// crashed earlier run left behind is in no one's way.
    fn new() -> Namespaces {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let id = format!("{}-{nanos}", std::process::id());
        let spaces = Namespaces {
            names: [format!("fraudflow-{id}-a"), format!("fraudflow-{id}-b")],
        };
        for name in &spaces.names {
            ip(&["netns", "add", name]);
        }
        // veth names are at most 15 bytes; each end is made inside its own
        // namespace, so it never appears in this machine's.
        let tag = std::process::id() % 1_000_000;
        let ends = [format!("ffv{tag}a"), format!("ffv{tag}b")];
        ip(&[
            "link",
            "add",
            &ends[0],
            "netns",
            &spaces.names[0],
            "type",
            "veth",
            "peer",
            "name",
            &ends[1],
            "netns",
            &spaces.names[1],
        ]);
        for (i, (name, end)) in spaces.names.iter().zip(&ends).enumerate() {
            ip(&["-n", name, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                name,
                "addr",
                "add",
                &format!("{}/24", address(i)),
                "dev",
                end,
            ]);
            ip(&["-n", name, "link", "set", end, "up"]);
        }
        spaces
    }

    /// Bytes the veth end in namespace `i` sent, from its counters.
    fn sent_bytes(&self, i: usize) -> u64 {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.names[i],
                "-s",
                "-j",
                "link",
                "show",
                "type",
                "veth",
            ])
            .output()
            .unwrap();
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        links[0]["stats64"]["tx"]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("no counters in {links}"))
    }

    /// The IPv4 routes of namespace `i` (its main table), one a line.
    fn routes(&self, i: usize) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.names[i], "-4", "route", "show"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// The address of host `i` (0 or 1).
fn address(i: usize) -> String {
    format!("10.213.0.{}", i + 1)
}

/// Runs `ip ARGS`, failing the test with what is missing when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "this test needs the `ip` command (iproute2; `apt-get install iproute2`, as \
             .ci/run does) to make network namespaces: {e}"
        )
    });
    assert!(
        out.status.success(),
        "`ip {}` failed: {}\nthis test makes network namespaces, which needs root \
         (CAP_SYS_ADMIN and CAP_NET_ADMIN) and a kernel with network namespaces and veth",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A process killed on drop, so that a failing test leaves none behind
/// (a namespace lives on while a process is in it).
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fraudflow ARGS` inside namespace `ns`, its standard error in
/// `stderr`.
fn start_in(ns: &str, args: &[&str], stderr: PathBuf) -> Running {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_fraudflow")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Running { child, stderr }
}

/// Waits for both, asserting that each succeeded before `DEADLINE`.
fn wait_both(mut processes: [Running; 2]) {
    let start = Instant::now();
    for (i, p) in processes.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                break status;
            }
            let log = std::fs::read_to_string(&p.stderr).unwrap_or_default();
            assert!(start.elapsed() < DEADLINE, "process {i} hangs:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = std::fs::read_to_string(&p.stderr).unwrap_or_default();
        assert!(status.success(), "process {i} ended {status}:\n{log}");
    }
}

#[test]
fn two_processes_in_two_network_namespaces_alert_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 40_000, 17);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let alone = dir.path().join("alone");
    run_ok(&backtest(&input, &models, &alone, &["-w", "2"]));
    let alerts = std::fs::read(alone.join("alerts.jsonl")).unwrap();
    let count = alerts.iter().filter(|&&b| b == b'\n').count();
    eprintln!("one process: {count} alerts");
    assert!(count > 10, "too few alerts to compare: {count}");

    let spaces = Namespaces::new();
    for i in 0..2 {
        let routes = spaces.routes(i);
        assert_eq!(routes.lines().count(), 1, "only the /24:\n{routes}");
        assert!(routes.starts_with("10.213.0.0/24 dev ffv"), "{routes}");
    }
    let hosts = dir.path().join("hosts");
    let lines: Vec<String> = (0..2).map(|i| format!("{}:{PORT}\n", address(i))).collect();
    std::fs::write(&hosts, lines.concat()).unwrap();
    let two = dir.path().join("two");
    let processes = [0usize, 1].map(|i| {
        let p = i.to_string();
        let mut args = backtest(&input, &models, &two, &["-w", "2", "-n", "2", "-p", &p]);
        args.extend_from_slice(&["-h", s(&hosts), "--connect-timeout", "60"]);
        let stderr = dir.path().join(format!("stderr-{i}"));
        start_in(&spaces.names[i], &args, stderr)
    });
    wait_both(processes);

    // The cluster's exchanges crossed the pair, both ways.
    for i in 0..2 {
        let sent = spaces.sent_bytes(i);
        eprintln!("host {i} ({}) sent {sent} bytes over the veth", address(i));
        assert!(sent > 100_000, "host {i} sent {sent} bytes");
    }
    let together = std::fs::read(two.join("alerts.jsonl")).unwrap();
    assert!(
        together == alerts,
        "the alerts of two namespaced processes differ from one process's"
    );
    deleted_on_drop(spaces);
}

/// Dropping the guard deletes both namespaces.
fn deleted_on_drop(spaces: Namespaces) {
    let names = spaces.names.clone();
    drop(spaces);
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for name in &names {
        assert!(!list.contains(name.as_str()), "{name} is left:\n{list}");
    }
}
