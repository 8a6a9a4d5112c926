//! Exactly once against librdkafka's mock cluster, on 127.0.0.1 in this
//! process: what the mock can show of it, and the crash test it cannot
//! (see docs/kafka.md, "What the tests hold").

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::common::{generated, train};
use crate::kafka_live::{dataflow_file, mock, names, publish, read_in, rows, sigterm, start};

/// Exactly once is not yet shown to hold: against librdkafka's mock
/// cluster, the offsets the transactions carry are not found committed
/// afterwards (a restart reads the first part again, and a committed
/// reader sees its outputs twice), and tansu 0.6 refuses EndTxn. Kept, and
/// ignored, until a broker that does transactions is in the tests.
#[test]
#[ignore = "exactly once unverified: the mock cluster keeps no transactional offsets, tansu has no EndTxn"]
fn exactly_once_a_restart_after_sigkill_writes_each_output_once_for_committed_readers() {
    let (outputs, n) = exactly_once_in_halves(20_000, true);
    let names = names(&outputs);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), n, "events lost");
    assert_eq!(names.len(), n, "duplicates a committed reader sees");
}

/// Exactly once against the mock cluster, as far as it can show it: the
/// transactions run (begun, offsets sent, committed, the last at SIGTERM)
/// and every event comes out once for a committed reader, published
/// before the run and while it runs. The mock neither keeps transactional
/// offsets nor fences an older epoch nor hides aborted writes, so what a
/// crash does in this mode is not shown (see docs/kafka.md).
#[test]
fn exactly_once_mode_writes_each_event_once_for_a_committed_reader() {
    let (outputs, n) = exactly_once_in_halves(6_000, false);
    let names = names(&outputs);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!((names.len(), unique.len()), (n, n));
}

/// An exactly-once run on the mock cluster: half of `count` generated rows
/// published, the run started, a part of them read back by a committed
/// reader, the rest published; with `kill`, the run killed there and
/// started again. What a committed reader then sees, and how many events
/// there were.
fn exactly_once_in_halves(count: u64, kill: bool) -> (BTreeMap<String, Vec<Value>>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), count, 12);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let all = rows(&input);
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    let split = all.len() / 2;
    publish(&brokers, &all[..split], 1, &[]);
    let eos = "guarantee = \"exactly-once\"";
    let file = dataflow_file(dir.path(), &brokers, &models, eos);
    let mut run = start(&file, "2");
    let committed =
        |limit, want: usize| read_in("read_committed", &brokers, limit, move |d, _| d >= want);
    committed(Duration::from_secs(60), split / 3);
    publish(&brokers, &all[split..], split + 1, &[]);
    if kill {
        run.0.kill().unwrap();
        run.0.wait().unwrap();
        run = start(&file, "2");
    }
    let outputs = committed(Duration::from_secs(90), all.len());
    sigterm(&mut run);
    (outputs, all.len())
}
