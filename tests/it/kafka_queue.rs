//! The Kafka source's consumer queue, below the dataflow, against
//! librdkafka's mock cluster: the source waits for librdkafka's callback
//! only when its queue is empty, since the callback fires only when the
//! queue turns from empty to non-empty.

use std::time::{Duration, Instant};

use fraudflow::sources::kafka::link::Polled;
use fraudflow::sources::kafka::{Guarantee, KafkaInput, KafkaSettings, Link, SinkTopics};
use fraudflow::sources::order::TimeLimits;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "raw-events";

fn settings(brokers: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.to_string(),
        topic: TOPIC.to_string(),
        group: "queue-test".to_string(),
        guarantee: Guarantee::AtLeastOnce,
        idle: Duration::from_millis(200),
        commit_every: Duration::from_millis(50),
        fetch_wait: Duration::from_millis(20),
        max_batch: 4096,
        limits: TimeLimits::with_lateness(0),
        restore_ms: None,
        sinks: SinkTopics {
            anomalies: "anomalies".to_string(),
            metrics: "metrics".to_string(),
            dead_letter: "dead-letter".to_string(),
        },
        stall_after: Duration::from_secs(60),
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What [`drain`] found.
#[derive(Default)]
struct Drained {
    read: usize,
    ended: bool,
    served: usize,
}

/// Polls as the source does until the queue says it is empty.
fn drain(link: &Link) -> Drained {
    let mut found = Drained::default();
    loop {
        match link.poll() {
            Polled::Next(Ok(_)) => found.read += 1,
            Polled::Next(Err(KafkaError::PartitionEOF(_))) => found.ended = true,
            Polled::Next(Err(_)) => {}
            Polled::Served => found.served += 1,
            Polled::Empty => return found,
        }
    }
}

/// The stall seen live: the reader drained, an event librdkafka serves
/// itself (here an asynchronous commit's result; statistics come every
/// second) reached the empty queue and fired the callback, messages
/// arrived behind it before the reader ran; the reader's poll served the
/// event and answered "nothing", and the reader waited for a callback that
/// never came again (the queue never turned empty), reading nothing more.
#[test]
fn messages_waiting_behind_an_event_librdkafka_served_itself_are_read() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let input = KafkaInput::new(settings(&brokers), 0, 1);
    let link = Link::new(&input, 0).unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    link.consumer.incremental_assign(&list).unwrap();
    let mut ended = false;
    wait_for("the empty partition's end", || {
        ended |= drain(&link).ended;
        ended
    });

    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .unwrap();
    link.consumer.commit(&commit, CommitMode::Async).unwrap();
    wait_for("the commit's result in the queue", || link.queued() > 0);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for i in 0..10 {
        let payload = format!("message {i}");
        producer
            .send(
                BaseRecord::<(), _>::to(TOPIC)
                    .partition(0)
                    .payload(&payload),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    wait_for("the messages behind it", || link.queued() > 10);

    let found = drain(&link);
    assert_eq!(
        found.read, 10,
        "every message behind the served event is read"
    );
    assert!(
        found.served > 0,
        "the commit's result, served by librdkafka"
    );
}
