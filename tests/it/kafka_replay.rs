//! `fraudflow replay` and topic bootstrap against librdkafka's mock
//! cluster (in this process, on 127.0.0.1): what lands on the topic is
//! checked against a plain recomputation from the input file: event ids and
//! times as the backtest has them, keys, partitions by Java's murmur2,
//! timestamps, and JSON lines byte for byte.
//!
//! The mock broker does not implement CreateTopics, so topics are made
//! with the mock's own call, and a test holds `ensure_topics` to a clear
//! error there; creating topics is left to the tests against a real broker.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use fraudflow::kafka::topics::{default_topics, ensure_topics, partition_count};
use fraudflow::paysim::PaysimReader;
use fraudflow::sources::kafka::seq::ORDER_HEADER;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message, Offset, Timestamp, TopicPartitionList};
use serde_json::Value;

use crate::common::{fraudflow, generated, s};

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of one broker holding `topics`.
fn cluster(topics: &[(&str, i32)]) -> Cluster {
    let cluster = MockCluster::new(1).unwrap();
    for (name, partitions) in topics {
        cluster.create_topic(name, *partitions, 1).unwrap();
    }
    assert!(cluster.bootstrap_servers().starts_with("127.0.0.1:"));
    cluster
}

/// One consumed message: partition, key, payload, timestamp, and its
/// place in the input order (the `fraudflow-order` header).
struct Got {
    partition: i32,
    key: Option<String>,
    payload: Vec<u8>,
    timestamp: Timestamp,
    order: Option<u64>,
}

/// Reads `topic` (of `partitions` partitions) from the start until `n`
/// messages came, and then a moment more to catch any extra.
fn consume(brokers: &str, topic: &str, partitions: i32, n: usize) -> Vec<Got> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-replay-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_until = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
        if got.len() >= n && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(500));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = message.unwrap();
        got.push(Got {
            partition: m.partition(),
            key: m.key().map(|k| String::from_utf8(k.to_vec()).unwrap()),
            payload: m.payload().unwrap_or_default().to_vec(),
            timestamp: m.timestamp(),
            order: m.headers().and_then(|h| {
                let h = h.iter().find(|h| h.key == ORDER_HEADER)?;
                std::str::from_utf8(h.value?).ok()?.parse().ok()
            }),
        });
    }
    got
}

/// Java's murmur2 (Kafka's default partitioner for keyed messages).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

fn java_partition(key: &str, partitions: i32) -> i32 {
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions as u32) as i32
}

#[test]
fn murmur2_matches_javas_known_values() {
    // From Kafka's own Utils test: murmur2 of these strings, as i32.
    let cases = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
    ];
    for (text, want) in cases {
        assert_eq!(murmur2(text.as_bytes()) as i32, want, "{text}");
    }
}

/// `fraudflow replay --input INPUT --brokers BROKERS EXTRA`: its stdout
/// and stderr, after asserting that it succeeded, or failed.
fn replay(input: &Path, brokers: &str, extra: &[&str], ok: bool) -> (String, String) {
    let mut args = vec!["replay", "--input", s(input), "--brokers", brokers];
    args.extend_from_slice(extra);
    let out = fraudflow(&args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.success(), ok, "{args:?}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Each data row's event id, account and event time, read plainly.
fn expected_rows(path: &Path) -> BTreeMap<String, (String, i64)> {
    let mut reader = PaysimReader::open(path).unwrap();
    let mut rows = BTreeMap::new();
    while let Some(row) = reader.next() {
        let t = row.unwrap();
        let id = (reader.line() - 1).to_string();
        rows.insert(id, (t.name_orig.to_string(), i64::from(t.step) * 3_600_000));
    }
    rows
}

#[test]
fn replay_publishes_paysim_rows_as_the_backtest_names_and_times_them_keyed_by_account() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 3_000, 11);
    let want = expected_rows(&input);
    let cluster = cluster(&[("raw-events", 8)]);
    let brokers = cluster.bootstrap_servers();
    let (stdout, _) = replay(&input, &brokers, &["-q"], true);
    let line = "replay: 3,000 events published to raw-events (0 failed) in ";
    assert!(stdout.lines().last().unwrap().starts_with(line), "{stdout}");

    let got = consume(&brokers, "raw-events", 8, want.len());
    assert_eq!(got.len(), want.len());
    let mut seen = BTreeMap::new();
    let mut last_row_of: HashMap<(i32, String), u64> = HashMap::new();
    for m in &got {
        let event: Value = serde_json::from_slice(&m.payload).unwrap();
        let id = event["event_id"].as_str().unwrap().to_string();
        let (user, time_ms) = &want[&id];
        let key = m.key.as_deref().unwrap();
        assert_eq!(
            (key, event["user_id"].as_str().unwrap()),
            (user.as_str(), user.as_str())
        );
        assert_eq!(m.timestamp, Timestamp::CreateTime(*time_ms), "{id}");
        assert_eq!(
            fraudflow::clock::parse_millis(event["timestamp"].as_str().unwrap()),
            Some(*time_ms)
        );
        assert_eq!(m.partition, java_partition(key, 8), "{key}");
        // One account's events keep file order in their partition.
        let row: u64 = id.parse().unwrap();
        let last = last_row_of.insert((m.partition, key.to_string()), row);
        assert!(
            last.is_none_or(|l| l < row),
            "{key}: row {row} after {last:?}"
        );
        assert!(seen.insert(id, ()).is_none(), "published twice");
    }
    assert_eq!(seen.len(), want.len());
    let used: std::collections::BTreeSet<i32> = got.iter().map(|m| m.partition).collect();
    assert!(used.len() > 1, "every account in one partition: {used:?}");
}

/// A published message as the tests compare it: payload, key, timestamp.
type Published = (Vec<u8>, Option<String>, Option<i64>);

/// A JSON-lines file: events, then garbage of every kind; with what each
/// published line should be, key and timestamp.
fn json_lines_case() -> (Vec<u8>, Vec<Published>) {
    let base = 1_764_000_000_000i64;
    let mut file = Vec::new();
    let mut want = Vec::new();
    for i in 0..50i64 {
        let (user, time) = (format!("C{}", i % 7), base + i * 1_250);
        let line = format!(
            r#"{{"event_id":"j{i}","timestamp":"{}","user_id":"{user}","type":"PAYMENT","amount":{i},"old_balance_orig":100,"new_balance_orig":99}}"#,
            fraudflow::clock::format_millis(time)
        );
        file.extend_from_slice(line.as_bytes());
        file.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
        want.push((line.into_bytes(), Some(user), Some(time)));
    }
    // Each with its key and timestamp: a field is used when it is a
    // string in a JSON object, whatever the rest of the line.
    let garbage: [(&[u8], Option<&str>, Option<i64>); 5] = [
        (b"\xff\xfe not even UTF-8 {", None, None),
        (
            br#"{"user_id": 42, "timestamp": "1970-01-01T01:00:00Z"}"#,
            None,
            Some(3_600_000),
        ),
        (
            br#"{"user_id":"C3","timestamp":"yesterday"}"#,
            Some("C3"),
            None,
        ),
        (br#"["C1", "1970-01-01T01:00:00Z"]"#, None, None),
        (br#"{"user_id":"C4","#, None, None),
    ];
    for (line, key, time) in garbage {
        file.extend_from_slice(line);
        file.extend_from_slice(b"\n   \n");
        want.push((line.to_vec(), key.map(str::to_string), time));
    }
    (file, want)
}

#[test]
fn a_file_replayed_after_another_into_one_topic_is_numbered_on_past_it() {
    // Each numbers its rows 1, 2, ...: the second, published into a topic
    // that holds the first, must not reuse the first's numbers (the
    // pipeline orders and names events by them).
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        generated(dir.path(), 1_500, 3),
        generated(dir.path(), 1_000, 4),
    );
    let cluster = cluster(&[("raw-events", 8)]);
    let brokers = cluster.bootstrap_servers();
    replay(&first, &brokers, &["-q"], true);
    let (_, said) = replay(&second, &brokers, &[], true);
    assert!(
        said.contains("the topic held 1,500 messages; these are numbered on from 1,501"),
        "{said}"
    );
    let got = consume(&brokers, "raw-events", 8, 2_500);
    assert_eq!(got.len(), 2_500);
    // A plain recomputation: row r of the first file is r, of the second
    // 1,500 + r; the second file's event ids restart at 1, so a row is
    // told apart by its account too.
    let mut want: HashMap<(String, String), Vec<u64>> = HashMap::new();
    for (file, base) in [(&first, 0), (&second, 1_500)] {
        for (id, (user, _)) in expected_rows(file) {
            let row: u64 = id.parse().unwrap();
            want.entry((id, user)).or_default().push(base + row);
        }
    }
    let mut orders = Vec::new();
    for m in &got {
        let event: Value = serde_json::from_slice(&m.payload).unwrap();
        let id = event["event_id"].as_str().unwrap().to_string();
        let user = event["user_id"].as_str().unwrap().to_string();
        let order = m.order.expect("every replayed message is numbered");
        assert!(want[&(id.clone(), user)].contains(&order), "{id}: {order}");
        orders.push(order);
    }
    orders.sort_unstable();
    assert_eq!(orders, (1..=2_500).collect::<Vec<u64>>());
}

#[test]
fn replay_publishes_json_lines_unchanged_garbage_included() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let (file, want) = json_lines_case();
    std::fs::write(&input, file).unwrap();
    let cluster = cluster(&[("in", 3)]);
    let brokers = cluster.bootstrap_servers();
    let (stdout, _) = replay(&input, &brokers, &["--topic", "in", "-q"], true);
    let line = format!("replay: {} events published to in (0 failed)", want.len());
    assert!(stdout.contains(&line), "{stdout}");

    let got = consume(&brokers, "in", 3, want.len());
    let mut got: Vec<_> = got
        .into_iter()
        .map(|m| {
            let time = match m.timestamp {
                Timestamp::CreateTime(t) => Some(t),
                other => panic!("{other:?}"),
            };
            (m.payload, m.key, time)
        })
        .collect();
    got.sort();
    let mut want = want;
    want.sort();
    assert_eq!(got.len(), want.len());
    let now = fraudflow::clock::now_millis() as i64;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            (&g.0, &g.1),
            (&w.0, &w.1),
            "{}",
            String::from_utf8_lossy(&w.0)
        );
        match w.2 {
            Some(time) => assert_eq!(g.2, Some(time)),
            // Stamped by the producer when sent: within the last minute.
            None => assert!(
                g.2.is_some_and(|t| (now - 60_000..=now).contains(&t)),
                "{:?}",
                g.2
            ),
        }
    }
}

#[test]
fn replay_paces_to_the_rate_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, rate) = (300u64, 1_000u64);
    let input = generated(dir.path(), rows, 3);
    let cluster = cluster(&[("raw-events", 2)]);
    let brokers = cluster.bootstrap_servers();
    let started = Instant::now();
    let rate_arg = rate.to_string();
    replay(&input, &brokers, &["--rate", &rate_arg, "-q"], true);
    let least = Duration::from_secs_f64((rows - 1) as f64 / rate as f64);
    assert!(
        started.elapsed() >= least,
        "{:?} < {least:?}",
        started.elapsed()
    );
}

#[test]
fn a_message_the_producer_refuses_is_counted_and_the_exit_is_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    let big = format!(r#"{{"user_id":"C1","pad":"{}"}}"#, "x".repeat(17 << 20));
    std::fs::write(&input, format!("{{\"user_id\":\"C2\"}}\n{big}\n")).unwrap();
    let cluster = cluster(&[("raw-events", 2)]);
    let brokers = cluster.bootstrap_servers();
    let (stdout, stderr) = replay(&input, &brokers, &[], false);
    assert!(
        stdout.contains("replay: 1 events published to raw-events (1 failed)"),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("{} bytes", big.len())), "{stderr}");
}

#[test]
fn ensure_topics_creates_nothing_when_they_exist_even_from_two_threads_at_once() {
    let specs = default_topics();
    let topics: Vec<(&str, i32)> = specs
        .iter()
        .map(|t| (t.name.as_str(), t.partitions))
        .collect();
    let cluster = cluster(&topics);
    let brokers = cluster.bootstrap_servers();
    let timeout = Duration::from_secs(10);
    assert_eq!(
        ensure_topics(&brokers, &specs, timeout).unwrap(),
        Vec::<String>::new()
    );
    std::thread::scope(|scope| {
        let racers: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| ensure_topics(&brokers, &specs, timeout)))
            .collect();
        for racer in racers {
            assert_eq!(racer.join().unwrap().unwrap(), Vec::<String>::new());
        }
    });
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for spec in &specs {
        let count = partition_count(consumer.client(), &spec.name, timeout).unwrap();
        assert_eq!(count, Some(spec.partitions), "{}", spec.name);
    }
    let absent = partition_count(consumer.client(), "absent", timeout).unwrap();
    assert_eq!(absent, None);
    // Asking did not create it.
    assert_eq!(
        partition_count(consumer.client(), "absent", timeout).unwrap(),
        None
    );
}

#[test]
fn without_create_topics_on_the_broker_the_error_names_the_topic_and_the_brokers() {
    let cluster = cluster(&[("anomalies", 4)]);
    let brokers = cluster.bootstrap_servers();
    let err = ensure_topics(&brokers, &default_topics(), Duration::from_secs(10))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&brokers) && err.contains("raw-events"),
        "{err}"
    );
    // Only the missing ones were asked for.
    assert!(!err.contains("anomalies"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 10, 1);
    let (_, stderr) = replay(&input, &brokers, &[], false);
    assert!(
        stderr.contains("raw-events") && stderr.contains(&brokers),
        "{stderr}"
    );
}
