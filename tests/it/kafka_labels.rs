//! The `feedback` topic across a crash, against librdkafka's mock cluster:
//! labels read but not yet fitted when the run is SIGKILLed are fitted
//! after the restart, each once (issue 12: "no accepted label is ever
//! lost", "a restart applies no update twice").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fraudflow::paysim::Transaction;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::common::{generated, json, train};
use crate::kafka_live::{
    dataflow_file, listen, mock, post_label, publish, read_outputs, rows, sigterm, start,
};
use crate::live_feedback::post_to;

/// `POST /flush` to the run: its status.
fn flush(file: &Path) -> u16 {
    post_to(&format!("http://{}", listen(file)), "/flush", "", None).0
}

/// The value of the metric `name` on the run's `/metrics` (NaN while it
/// does not answer).
fn metric(file: &Path, name: &str) -> f64 {
    let text = ureq::get(&format!("http://{}/metrics", listen(file)))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Waits up to 60 s for `what` to hold.
fn wait_until(what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !holds() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Posts labels (fraud) for the events named `ids`, each accepted.
fn post_labels(file: &Path, ids: &[&str]) {
    for id in ids {
        let (status, answer) = post_label(file, id);
        assert_eq!(status, 202, "{id}: {answer}");
    }
}

/// The offsets committed under the reader's group, summed over the
/// topic's first `partitions` (none committed: 0).
pub(crate) fn committed(brokers: &str, partitions: i32) -> i64 {
    let group: BaseConsumer = fraudflow::kafka::client_config(brokers)
        .set("group.id", "fraudflow-feedback")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition("feedback", p);
    }
    let Ok(committed) = group.committed_offsets(list, Duration::from_secs(5)) else {
        return -1;
    };
    let offset = |o: Offset| match o {
        Offset::Offset(n) => n,
        _ => 0,
    };
    committed
        .elements()
        .iter()
        .map(|e| offset(e.offset()))
        .sum()
}

const RECEIVED: &str = "online_feedback_received_total";
const BUFFERED: &str = "online_updater_buffer_size";

/// Three sets of labels: A fitted into version 1 before the crash; C taken
/// into the learner's batch (waiting for more), B read from the topic and
/// handed to the dataflow but not yet met by the learner, when the run is
/// SIGKILLed. The restart skips A, goes on with C and the replay buffer
/// (A's frauds) from the learner's kept state and reads B again: version 2
/// is fitted on exactly nine rows, C, B and A replayed.
#[test]
fn labels_not_yet_fitted_when_killed_are_fitted_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 4_000, 13);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let all = rows(&input);
    let cluster = mock();
    cluster.create_topic("feedback", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let file = dataflow_file(dir.path(), &brokers, &models, "");
    let mut text = std::fs::read_to_string(&file).unwrap();
    // A batch that never fills and a wait that never ends: only a flush
    // (or the end of the run) fits. Fraud examples are fitted again with
    // each later batch.
    text.push_str(
        "[feedback]\nbatch_size = 1000\nmax_wait_seconds = 2592000\nholdout_every = 0\n\
         replay_positives = 10\n",
    );
    std::fs::write(&file, text).unwrap();
    let bundle = json(&models.join("bundle.json"))["version"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = |n: u64| {
        models
            .join("online")
            .join(format!("{bundle}+online.{n}.json"))
    };
    let first = killed_with_labels_in_flight(&file, &brokers, &all, &kept);

    let mut run = start(&file, "2");
    // B is read again and placed where the events read again are, then
    // later events move event time past it.
    wait_until("B read again", || metric(&file, RECEIVED) == 3.0);
    publish(&brokers, &all[3700..], 3701, &[]);
    // C from the kept state, B met again.
    wait_until("B and C in the batch", || metric(&file, BUFFERED) == 6.0);
    assert_eq!(flush(&file), 202);
    wait_until("version 2 kept", || kept(2).exists());
    // A message that is not a label (and one without a body) is skipped,
    // counted and said, never taken for a label.
    stray(&brokers, &[b"{\"transaction_id\": 7}", b""]);
    wait_until("the stray messages counted", || {
        metric(&file, "fraudflow_feedback_unreadable_total") == 2.0
    });
    let stderr = sigterm(&mut run);
    assert_eq!(
        stderr.matches("is not a label, skipped").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("transaction_id"), "{stderr}");
    // Only B was read again: A's and C's effects were kept.
    assert!(stderr.contains("feedback: 3 labels, 3 matched"), "{stderr}");
    let second: Value = json(&kept(2));
    assert_eq!(second["parent"], format!("{bundle}+online.1"));
    // Version 1 fitted A's three rows, each as many times (epochs);
    // version 2 nine: C and B, and A's three frauds replayed.
    let seen = |v: &Value| v["examples_seen"].as_u64().unwrap();
    let trained = json(&models.join("bundle.json"))["models"]["logistic"]["seen"]
        .as_u64()
        .unwrap();
    let per_row = (seen(&first) - trained) / 3;
    assert!(per_row > 0 && seen(&first) - trained == per_row * 3);
    assert_eq!(seen(&second) - seen(&first), per_row * 9, "{second}");
    assert!(!kept(3).exists(), "the drain fitted nothing more");
    assert_eq!(committed(&brokers, 2), 9);
}

/// Publishes `payloads` on the feedback topic as they are (an empty one
/// with no body at all).
fn stray(brokers: &str, payloads: &[&[u8]]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = fraudflow::kafka::producer_config(brokers).create().unwrap();
    for payload in payloads {
        let record = BaseRecord::<str, [u8]>::to("feedback").key("stray");
        let record = if payload.is_empty() {
            record
        } else {
            record.payload(payload)
        };
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// The first run, SIGKILLed with label set A fitted into version 1, C in
/// the learner's batch and B in the join; version 1, as kept.
fn killed_with_labels_in_flight(
    file: &Path,
    brokers: &str,
    all: &[Transaction],
    kept: &dyn Fn(u64) -> PathBuf,
) -> Value {
    publish(brokers, &all[..3000], 1, &[]);
    let mut run = start(file, "2");
    read_outputs(brokers, 3000, Duration::from_secs(60));
    // A: later events move event time on, the learner takes them, and a
    // flush fits them into version 1. Each set is in the join before later
    // events come: placed at one time, so that the learner takes it whole.
    post_labels(file, &["2998", "2999", "3000"]);
    wait_until("A in the join", || metric(file, RECEIVED) == 3.0);
    publish(brokers, &all[3000..3500], 3001, &[]);
    assert_eq!(flush(file), 202);
    wait_until("version 1 kept", || kept(1).exists());
    // Its state, with where to read again, is kept and then committed.
    wait_until("A's offsets committed", || committed(brokers, 2) == 3);
    // C: taken into the batch, not fitted.
    post_labels(file, &["3498", "3499", "3500"]);
    wait_until("C in the join", || metric(file, RECEIVED) == 6.0);
    publish(brokers, &all[3500..3700], 3501, &[]);
    wait_until("C in the batch", || metric(file, BUFFERED) == 3.0);
    // B: handed to the dataflow, no later event to meet it at.
    post_labels(file, &["3698", "3699", "3700"]);
    wait_until("B in the join", || metric(file, RECEIVED) == 9.0);
    // Never past a label whose effect is not kept: C's state may be
    // committed, B's offsets are not.
    let at = committed(brokers, 2);
    assert!((3..=6).contains(&at), "committed {at}");
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    assert!(!kept(2).exists());
    json(&kept(1))
}
