//! `fraudflow replay` and `fraudflow run` against tansu, a real
//! Kafka-protocol broker started by the tests on 127.0.0.1: topics made by
//! fraudflow itself, two processes of two workers, the broker killed and
//! restarted, garbage and a 10 MB message on the input, an output topic
//! deleted. Every input event comes out; duplicates, allowed at least
//! once after a fault, are counted and printed.
//!
//! tansu is found at `$TANSU`, `~/.cargo/bin/tansu` or on `PATH`; without
//! it these tests fail, saying how to install it (`.ci/run` does).
//!
//! What tansu 0.6 does, tried by hand: CreateTopics, DeleteTopics,
//! idempotent producers, 10 MB messages, ListOffsets and offset commits
//! work; commit metadata comes back empty (so a restart finds where its
//! velocity window began from the last committed message); the memory engine's high watermark and
//! offset-by-time are per batch, not per message (the SQLite engine's are
//! right); transactions stop at EndTxn ("not supported by broker"), so
//! exactly-once is tested only against the mock cluster; a write to a
//! deleted topic is acknowledged and dropped.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::{backtest, free_port, generated, run_ok, s, train};
use crate::kafka_live::{name, names, publish, rows, Running};

/// Output topics by name, each message's JSON.
type Outputs = BTreeMap<String, Vec<Value>>;

const OUTPUTS: [&str; 3] = ["anomalies", "metrics", "dead-letter"];

/// A tansu broker on a port of its own, killed when dropped.
pub(crate) struct Tansu {
    child: Option<Child>,
    port: u16,
    storage: String,
    /// Where it runs: a `sqlite://NAME` file is made here.
    dir: PathBuf,
    pub(crate) brokers: String,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tansu binary, or a panic saying how to install it.
fn tansu_binary() -> PathBuf {
    crate::tansu_bin::find().unwrap_or_else(|| {
        panic!(
            "these tests need tansu, a Kafka-protocol broker, and found none at $TANSU, \
             ~/.cargo/bin/tansu or on PATH: {}",
            crate::tansu_bin::INSTALL
        )
    })
}

impl Tansu {
    /// A broker keeping its data in memory (`memory://tansu/`) or in a
    /// SQLite file (`sqlite://NAME`, in `dir`, which survives a restart:
    /// tansu takes the path after `sqlite://` as relative).
    pub(crate) fn start(storage: &str, dir: &Path) -> Tansu {
        let port = free_port();
        let mut tansu = Tansu {
            child: None,
            port,
            storage: storage.to_string(),
            dir: dir.to_path_buf(),
            brokers: format!("127.0.0.1:{port}"),
        };
        tansu.restart();
        tansu
    }

    /// Starts the broker again, on the same port and storage, and waits
    /// until it answers.
    fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_answering();
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_answering(&mut self) {
        let consumer = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("tansu exited at start: {status}");
            }
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "tansu on {} did not answer a metadata request in 30 s",
            self.brokers
        );
    }

    fn client(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "kafka-tansu-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }
}

/// The test's dataflow file: topics made by fraudflow (the default),
/// `/health` on `listen` (process P on its port + P).
pub(crate) fn dataflow_file(dir: &Path, brokers: &str, models: &Path, listen: u16) -> PathBuf {
    let path = dir.join("live.toml");
    let text = format!(
        "[source.kafka]\nbrokers = {brokers:?}\nlisten = \"127.0.0.1:{listen}\"\nidle_ms = 200\n\
         commit_ms = 50\nstall_timeout_seconds = 10\n[models]\ndir = {:?}\npoll_seconds = 0\n[sinks.kafka]\n",
        s(models)
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `fraudflow run FILE ARGS`, its stderr piped.
fn start(file: &Path, args: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_fraudflow"))
        .arg("run")
        .arg(file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running(child)
}

/// SIGTERM to every run, then each must drain and exit 0; their stderr.
fn stop_all(runs: &mut [Running]) -> Vec<String> {
    for run in runs.iter() {
        // SAFETY: a plain signal to a child we started.
        unsafe { libc::kill(run.0.id() as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut errs = Vec::new();
    for run in runs.iter_mut() {
        loop {
            if let Some(status) = run.0.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(run.0.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(status.success(), "run failed ({status}): {err}");
                errs.push(err);
                break;
            }
            assert!(Instant::now() < deadline, "a run did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    errs
}

/// `/health` of the run listening on `port`, or `None` when it does not
/// answer.
fn health(port: u16) -> Option<Value> {
    let mut reply = ureq::get(&format!("http://127.0.0.1:{port}/health"))
        .call()
        .ok()?;
    serde_json::from_str(&reply.body_mut().read_to_string().ok()?).ok()
}

/// Waits up to `limit` for `/health` on `port` to satisfy `want`: the
/// answer that did, or else the last one.
fn health_within(
    port: u16,
    limit: Duration,
    want: impl Fn(&Value) -> bool,
) -> Result<Value, Value> {
    let deadline = Instant::now() + limit;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(h) = health(port) {
            if want(&h) {
                return Ok(h);
            }
            last = h;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

fn wait_health(port: u16, limit: Duration, want: impl Fn(&Value) -> bool) -> Value {
    health_within(port, limit, want).unwrap_or_else(|last| {
        panic!("/health on {port} never as wanted in {limit:?}; last: {last}")
    })
}

fn written(h: &Value) -> u64 {
    ["alerts", "normal", "dead_letters"]
        .iter()
        .map(|k| h[k].as_u64().unwrap_or(0))
        .sum()
}

/// The partitions of `topic` now: 0 when it does not exist.
fn topic_partitions(consumer: &BaseConsumer, topic: &str) -> i32 {
    let Ok(m) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) else {
        return 0;
    };
    let found = m.topics().iter().find(|t| t.name() == topic);
    found.map_or(0, |t| match t.error() {
        Some(_) => 0,
        None => t.partitions().len() as i32,
    })
}

/// The partitions of `topic`, waiting up to 30 s for it to exist.
fn partitions(consumer: &BaseConsumer, topic: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match topic_partitions(consumer, topic) {
            0 => std::thread::sleep(Duration::from_millis(200)),
            n => return n,
        }
    }
    panic!("topic {topic} never appeared");
}

/// Every message on the output topics from their start, read until every
/// input of `want` and `more` others are named, then a moment more for any
/// duplicate, or until `limit` passes.
fn read_outputs(brokers: &str, want: &HashSet<String>, more: usize, limit: Duration) -> Outputs {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-tansu-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "16777216")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for topic in OUTPUTS {
        for p in 0..partitions(&consumer, topic) {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&list).unwrap();
    let mut out = Outputs::new();
    let mut missing = want.clone();
    let mut others = HashSet::new();
    let deadline = Instant::now() + limit;
    let mut quiet_until: Option<Instant> = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
        if missing.is_empty() && others.len() >= more && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(1));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let name = name(m.topic(), &value);
            if !missing.remove(&name) && !want.contains(&name) {
                others.insert(name);
            }
            out.entry(m.topic().to_string()).or_default().push(value);
        }
    }
    out
}

/// Asserts that every name of `want` is among the outputs' and nothing
/// else is; returns how many copies beyond the first there are.
fn every_input_out(outputs: &Outputs, want: &HashSet<String>, what: &str) -> usize {
    let got = names(outputs);
    let distinct: HashSet<String> = got.iter().cloned().collect();
    let missing: Vec<&String> = want.difference(&distinct).take(10).collect();
    let extra: Vec<&String> = distinct.difference(want).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} of {} inputs missing (first {missing:?}), unexpected {extra:?}",
        want.difference(&distinct).count(),
        want.len()
    );
    let duplicates = got.len() - distinct.len();
    eprintln!("{what}: {} inputs out, {duplicates} duplicates", want.len());
    duplicates
}

/// The event ids of the alerts.
fn alert_ids(outputs: &Outputs) -> Vec<String> {
    let mut ids: Vec<String> = outputs
        .get("anomalies")
        .into_iter()
        .flatten()
        .map(|v| v["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The event ids a replay of the PaySim file `input` names: row numbers.
fn row_ids(input: &Path) -> HashSet<String> {
    (1..=rows(input).len()).map(|i| i.to_string()).collect()
}

/// A generated PaySim file of `rows` rows in `dir` and a bundle trained on
/// it.
fn trained(dir: &Path, rows: u64, seed: u64) -> (PathBuf, PathBuf) {
    let input = generated(dir, rows, seed);
    let models = dir.join("models");
    train(&input, &models, &[]);
    (input, models)
}

/// `fraudflow replay` of `input` to raw-events, made when missing.
fn replay(input: &Path, brokers: &str) {
    run_ok(&["replay", "--input", s(input), "--brokers", brokers, "-q"]);
}

#[test]
fn end_to_end_two_processes_of_two_workers_every_event_once_alerts_as_the_backtest() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = trained(dir.path(), 100_000, 21);
    let tansu = Tansu::start("memory://tansu/", dir.path());
    // Replay makes raw-events; the runs make the output topics.
    replay(&input, &tansu.brokers);
    let listen = crate::common::free_port_pair();
    let file = dataflow_file(dir.path(), &tansu.brokers, &models, listen);
    let hosts = dir.path().join("hosts");
    let hostfile = format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port());
    std::fs::write(&hosts, hostfile).unwrap();
    let process = |p: &str| start(&file, &["-w", "2", "-n", "2", "-p", p, "-h", s(&hosts)]);
    let mut runs = [process("1"), process("0")];
    let want = row_ids(&input);
    let outputs = read_outputs(&tansu.brokers, &want, 0, Duration::from_secs(300));
    // Each process read its share of the partitions.
    let read: Vec<u64> = [listen, listen + 1]
        .iter()
        .map(|p| health(*p).map_or(0, |h| h["kafka"]["read"].as_u64().unwrap_or(0)))
        .collect();
    let stderr = stop_all(&mut runs);
    assert!(
        read.iter().all(|r| *r > 0),
        "read by each process: {read:?}"
    );
    let duplicates = every_input_out(&outputs, &want, "two processes");
    assert_eq!(duplicates, 0, "{stderr:?}");
    let out = dir.path().join("bt");
    run_ok(&backtest(&input, &models, &out, &[]));
    let text = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    let alerts = text.lines().map(|l| serde_json::from_str(l).unwrap());
    let expected = alert_ids(&Outputs::from([("anomalies".into(), alerts.collect())]));
    assert!(!expected.is_empty());
    assert_eq!(alert_ids(&outputs), expected);
    eprintln!("end to end: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_broker_killed_and_restarted_mid_stream_loses_nothing_and_health_says_degraded() {
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = trained(dir.path(), 6_000, 11);
    let mut tansu = Tansu::start("sqlite://tansu.db", dir.path());
    let listen = free_port();
    let file = dataflow_file(dir.path(), &tansu.brokers, &models, listen);
    let mut runs = [start(&file, &["-w", "2"])];
    wait_health(listen, Duration::from_secs(60), |h| {
        h["kafka"]["partitions"].as_u64() >= Some(8)
    });
    // Events keep coming for 6 s; the broker goes away in the middle and
    // comes back before replay's 30 s timeout.
    let brokers = tansu.brokers.clone();
    let args = [
        "replay",
        "--input",
        s(&input),
        "--brokers",
        &brokers,
        "--rate",
        "1000",
        "-q",
    ];
    let streaming = crate::common::spawn(&args, None);
    wait_health(listen, Duration::from_secs(60), |h| written(h) >= 1_000);
    tansu.kill();
    let down = wait_health(listen, Duration::from_secs(30), |h| {
        h["status"] == "degraded"
    });
    assert!(
        !down["kafka"]["problems"].as_array().unwrap().is_empty(),
        "{down}"
    );
    eprintln!(
        "broker down: {} written; {}",
        written(&down),
        down["kafka"]["problems"]
    );
    tansu.restart();
    let replayed = streaming.wait_with_output().unwrap();
    let replay_out = String::from_utf8_lossy(&replayed.stdout);
    assert!(replayed.status.success(), "replay: {replay_out}");
    let want = row_ids(&input);
    let outputs = read_outputs(&tansu.brokers, &want, 0, Duration::from_secs(120));
    // Once the broker is back and outputs flow, nothing is wrong.
    let after = health_within(listen, Duration::from_secs(20), |h| {
        h["status"] == "serving"
    });
    let stderr = stop_all(&mut runs);
    eprintln!(
        "{replay_out}{}",
        stderr[0].lines().last().unwrap_or_default()
    );
    every_input_out(&outputs, &want, "broker restart");
    if let Err(last) = after {
        panic!("every event out, but /health is not back to serving 20 s later: {last}");
    }
}

#[test]
fn garbage_and_a_10_mb_message_become_dead_letters_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = trained(dir.path(), 6_000, 11);
    let tansu = Tansu::start("memory://tansu/", dir.path());
    replay(&input, &tansu.brokers);
    let big = vec![b'{'; 10 << 20];
    let garbage: [&[u8]; 3] = [b"not json {", b"\xff\xfe\x00", &big];
    publish(&tansu.brokers, &[], 1, &garbage);
    let listen = free_port();
    let file = dataflow_file(dir.path(), &tansu.brokers, &models, listen);
    let mut runs = [start(&file, &["-w", "2"])];
    let mut want = row_ids(&input);
    let n = want.len() + garbage.len();
    let outputs = read_outputs(
        &tansu.brokers,
        &want,
        garbage.len(),
        Duration::from_secs(120),
    );
    let stderr = stop_all(&mut runs);
    let mut codes: Vec<&str> = outputs
        .get("dead-letter")
        .into_iter()
        .flatten()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        ["invalid_utf8", "malformed_json", "oversize_payload"],
        "{stderr:?}"
    );
    // Dead letters are named by where they came from.
    for d in &outputs["dead-letter"] {
        want.insert(name("dead-letter", d));
    }
    assert_eq!(want.len(), n);
    every_input_out(&outputs, &want, "garbage");
}

/// Deletes `topic` on `brokers` with the admin API.
fn delete_topic(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let deleted = runtime.block_on(admin.delete_topics(&[topic], &options));
    let results = deleted.unwrap_or_else(|e| panic!("DeleteTopics {topic}: {e}"));
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("DeleteTopics {t}: {e}"));
    }
}

/// tansu 0.6 acknowledges writes to a deleted topic and drops them, so
/// acknowledgements alone would let the run commit offsets whose outputs
/// are gone: the watcher's look for the output topics is what holds the
/// commits back and ends the run, naming the topic; the restart makes the
/// topic again and writes what came after the last look that found it.
#[test]
fn an_output_topic_deleted_while_running_loses_nothing_published_after() {
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = trained(dir.path(), 6_000, 11);
    let tansu = Tansu::start("memory://tansu/", dir.path());
    let all = rows(&input);
    let split = all.len() / 2;
    let listen = free_port();
    let file = dataflow_file(dir.path(), &tansu.brokers, &models, listen);
    let mut run = start(&file, &["-w", "2"]);
    wait_health(listen, Duration::from_secs(60), |h| {
        h["kafka"]["partitions"].as_u64() >= Some(8)
    });
    publish(&tansu.brokers, &all[..split], 1, &[]);
    wait_health(listen, Duration::from_secs(60), |h| {
        written(h) >= split as u64
    });
    delete_topic(&tansu.brokers, "metrics");
    publish(&tansu.brokers, &all[split..], split + 1, &[]);
    let after: HashSet<String> = (split + 1..=all.len()).map(|i| i.to_string()).collect();
    // Either the run goes on (the topic made again) or it stops, naming
    // the topic; a restart then delivers what is left.
    let deadline = Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break Some(status);
        }
        if health(listen).is_some_and(|h| written(&h) >= all.len() as u64)
            || Instant::now() > deadline
        {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut runs = [run];
    if let Some(status) = exited {
        let mut err = String::new();
        std::io::Read::read_to_string(runs[0].0.stderr.as_mut().unwrap(), &mut err).unwrap();
        eprintln!("topic deleted: the run stopped ({status}): {err}");
        assert!(!status.success() && err.contains("metrics"), "{err}");
        runs = [start(&file, &["-w", "2"])];
    } else if topic_partitions(&tansu.client(), "metrics") == 0 {
        // What tansu 0.6 does: it acknowledges every write to the deleted
        // topic, so the run goes on, healthy, committing offsets whose
        // outputs no reader will ever see.
        panic!(
            "the run wrote every output and is healthy ({:?}), but topic metrics no longer \
             exists: the normal traffic of the events after the deletion is lost",
            health(listen)
        );
    }
    let outputs = read_outputs(&tansu.brokers, &after, 0, Duration::from_secs(120));
    stop_all(&mut runs);
    let got: HashSet<String> = names(&outputs).into_iter().collect();
    let lost = after.difference(&got).count();
    assert_eq!(lost, 0, "of {} published after the deletion", after.len());
}
