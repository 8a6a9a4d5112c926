//! What the bench does to the brokers: publish events (as fast as they are
//! taken, or paced), read a topic back, run `fraudflow run` on a topic, and
//! read its outputs as they come, noting when each arrived.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fraudflow::clock::now_micros;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::broker::Topics;
use crate::Config;

type Error = Box<dyn std::error::Error>;

/// A producer as `fraudflow replay` makes one, with room for a whole
/// preload in its queue.
pub fn producer(brokers: &str) -> Result<BaseProducer, Error> {
    Ok(fraudflow::kafka::producer_config(brokers)
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .create()?)
}

/// Sends one message, waiting for room while the queue is full.
pub fn send(producer: &BaseProducer, topic: &str, key: &str, payload: &str) -> Result<(), Error> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("sending to {topic}: {e}").into()),
        }
    }
}

/// Publishes `events` (key, payload) to `topic` as fast as the broker
/// takes them; the time until the last is acknowledged.
pub fn publish(brokers: &str, topic: &str, events: &[(String, String)]) -> Result<Duration, Error> {
    let producer = producer(brokers)?;
    let started = Instant::now();
    for (key, payload) in events {
        send(&producer, topic, key, payload)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(started.elapsed())
}

/// A consumer reading `partitions` of each topic from the beginning.
pub fn reader(brokers: &str, topics: &[(&str, i32)]) -> Result<BaseConsumer, Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "fraudflow-bench-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("log_level", "3")
        .create()?;
    let mut list = TopicPartitionList::new();
    for &(topic, partitions) in topics {
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

/// Reads `n` messages of `topic`'s 8 partitions from the beginning; the
/// time it took.
pub fn read_back(brokers: &str, topic: &str, n: usize) -> Result<Duration, Error> {
    let started = Instant::now();
    let consumer = reader(brokers, &[(topic, 8)])?;
    let mut seen = 0;
    let deadline = started + Duration::from_secs(300);
    while seen < n {
        if Instant::now() > deadline {
            return Err(format!("read {seen} of {n} messages of {topic} in 300 s").into());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => return Err(format!("reading {topic}: {e}").into()),
            None => {}
        }
    }
    Ok(started.elapsed())
}

/// A running `fraudflow run`, killed when dropped.
pub struct Fraudflow {
    child: Child,
    pub listen: String,
}

impl Drop for Fraudflow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fraudflow {
    /// Starts `fraudflow run` with the configured workers and models on
    /// `topics` (made already), with `guarantee`, and otherwise the keys of
    /// `dataflows/live.toml`.
    pub fn start(
        config: &Config,
        brokers: &str,
        topics: &Topics,
        guarantee: &str,
    ) -> Result<Fraudflow, Error> {
        let (dir, models) = (&config.dir, &config.models);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        // More keys of [source.kafka] to try, one a line, e.g. "idle_ms = 50".
        let keys = std::env::var("FRAUDFLOW_BENCH_SOURCE_KEYS").unwrap_or_default();
        let text = format!(
            "[source.kafka]\nbrokers = {brokers:?}\ntopic = {:?}\ngroup = {:?}\n\
             guarantee = {guarantee:?}\nlisten = {listen:?}\ncreate_topics = false\n{keys}\n\
             [models]\ndir = {models:?}\npoll_seconds = 0\n\
             [sinks.kafka]\nanomalies = {:?}\nmetrics = {:?}\ndead_letter = {:?}\n",
            topics.input, topics.input, topics.anomalies, topics.metrics, topics.dead_letter
        );
        let file: PathBuf = dir.join(format!("{}.toml", topics.input));
        std::fs::write(&file, text)?;
        let child = Command::new(env!("CARGO_BIN_EXE_fraudflow"))
            .arg("run")
            .arg(&file)
            .args(["-w", &config.workers.to_string(), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Fraudflow { child, listen })
    }

    /// Waits until the run says it is ready (its source has started).
    pub fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://{}/ready", self.listen);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("fraudflow run exited at start: {status}").into());
            }
            if ureq::get(&url).call().is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("fraudflow run was not ready in 60 s".into())
    }

    /// The run's `/health`.
    pub fn health(&self) -> Result<serde_json::Value, Error> {
        let mut reply = ureq::get(&format!("http://{}/health", self.listen)).call()?;
        Ok(serde_json::from_str(&reply.body_mut().read_to_string()?)?)
    }

    /// Fails if the run has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("fraudflow run exited: {status}").into()),
            None => Ok(()),
        }
    }
}

/// An output read back: whether it was an alert, the event it names (the
/// number after its id's prefix; none for a dead letter) and when it was
/// read, in microseconds since the epoch.
pub struct Seen {
    pub alert: bool,
    pub event: Option<usize>,
    pub at_us: u64,
}

#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    event_id: Option<&'a str>,
}

/// What [`watch`] gives back: the thread, and a way to stop it early.
pub type Watcher = (JoinHandle<(Vec<Seen>, usize)>, mpsc::Sender<()>);

/// [`watch`]es the outputs, the alerts from `anomalies`.
pub fn watch_outputs(
    brokers: &str,
    topics: &Topics,
    n: usize,
    limit: Duration,
) -> Result<Watcher, Error> {
    watch(brokers, &topics.outputs(), &topics.anomalies, n, limit)
}

/// Reads `topics` (name, partitions) in a thread of its own until `n`
/// distinct events have come out (or `limit` passes, or `stop` is sent);
/// what it saw (alerts: those from `alert_topic`), and how many messages
/// named an event already seen.
pub fn watch(
    brokers: &str,
    topics: &[(&str, i32)],
    alert_topic: &str,
    n: usize,
    limit: Duration,
) -> Result<Watcher, Error> {
    let consumer = reader(brokers, topics)?;
    let anomalies = alert_topic.to_string();
    let (stop, stopped) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let (mut seen, mut names, mut again) = (Vec::with_capacity(n), HashSet::new(), 0);
        let deadline = Instant::now() + limit;
        while names.len() < n && Instant::now() < deadline && stopped.try_recv().is_err() {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let at_us = now_micros();
            let named: Option<Named> = m.payload().and_then(|p| serde_json::from_slice(p).ok());
            let id = named.and_then(|n| n.event_id).map(str::to_string);
            let id = id.unwrap_or_else(|| format!("dead-{}-{}", m.partition(), m.offset()));
            let event = id.get(1..).and_then(|i| i.parse().ok());
            if !names.insert(id) {
                again += 1;
            }
            let alert = m.topic() == anomalies;
            seen.push(Seen {
                alert,
                event,
                at_us,
            });
        }
        (seen, again)
    });
    Ok((handle, stop))
}
