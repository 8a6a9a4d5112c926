//! The session through Kafka (`fraudflow demo --brokers`): the payments go
//! onto the run's input topic instead of `POST /events`, and a mirror
//! copies the output topics into JSON-lines files as they fill, so the
//! analysts read their queue, and the report the outputs, exactly as they
//! do in a session over HTTP. Labels still go to `POST /feedback`, which a
//! Kafka run publishes on its `feedback` topic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::traffic::{play_with, Played, Traffic, Truth};
use super::DemoError;
use crate::kafka::producer::TopicWriter;
use crate::kafka::replay::json_line_message;
use crate::kafka::topics::partition_count;
use crate::kafka::{client_config, KafkaError};

/// How long a message may wait for the broker, and the mirror for the
/// run to make its topics.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a Kafka session's run reads and writes.
#[derive(Clone, Debug)]
pub struct KafkaTopics {
    pub brokers: String,
    /// The run's input topic.
    pub input: String,
    /// Its output topics, each with the file prefix its lines are copied
    /// under (`alerts`, `normal`, `dead_letters`, as a run writing files
    /// names them).
    pub outputs: Vec<(String, &'static str)>,
}

fn kafka(e: KafkaError) -> DemoError {
    DemoError::Kafka(e.to_string())
}

/// Publishes `traffic` to the input topic, each line a message keyed by
/// its account and stamped with its time, as `fraudflow replay` publishes
/// a JSON-lines file but with no place in a file's order (live traffic
/// has none: the run numbers the events as it reads them); fails when the
/// broker refused any.
pub fn play(
    topics: &KafkaTopics,
    traffic: &Traffic,
    truth: &Truth,
    played: &Played,
) -> Result<(), DemoError> {
    let writer = TopicWriter::connect(&topics.brokers, &topics.input, TIMEOUT).map_err(kafka)?;
    let mut sent = 0u64;
    let result = play_with(traffic, truth, played, |body| {
        for line in body.lines() {
            sent += 1;
            writer.send(&json_line_message(line.as_bytes()), None);
        }
        writer.poll(Duration::ZERO);
        Ok(())
    });
    let delivered = writer.finish();
    result?;
    match delivered.first_failure {
        Some(why) if delivered.failed > 0 => Err(DemoError::Kafka(format!(
            "{} of {sent} events not taken by {}: {why}",
            delivered.failed, topics.brokers
        ))),
        _ => Ok(()),
    }
}

/// Copies the output topics, from where they ended when it started, into
/// `PREFIX-kafka.jsonl` files, a message a line.
pub struct Mirror {
    /// Messages copied, every topic together.
    pub copied: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), DemoError>>,
}

impl Mirror {
    /// Waits (up to 30 s) for the run to make the output topics, starts
    /// each partition at its end, and copies from there on a thread.
    pub fn start(topics: &KafkaTopics, dir: &Path) -> Result<Mirror, DemoError> {
        let brokers = &topics.brokers;
        let consumer: BaseConsumer = client_config(brokers)
            .set("group.id", "fraudflow-demo-mirror")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| kafka(KafkaError::client(format!("connecting to {brokers}"), e)))?;
        let mut files = Vec::new();
        let mut list = TopicPartitionList::new();
        for (topic, prefix) in &topics.outputs {
            for p in 0..partitions(&consumer, topic)? {
                let (_, end) = consumer
                    .fetch_watermarks(topic, p, TIMEOUT)
                    .map_err(|e| kafka(KafkaError::client(format!("the end of {topic}"), e)))?;
                let add = list.add_partition_offset(topic, p, Offset::Offset(end));
                add.map_err(|e| kafka(KafkaError::client(topic.clone(), e)))?;
            }
            let path = dir.join(format!("{prefix}-kafka.jsonl"));
            let file = File::create(&path).map_err(|e| DemoError::io(&path, e))?;
            files.push((topic.clone(), path, BufWriter::new(file)));
        }
        let assign = consumer.assign(&list);
        assign.map_err(|e| kafka(KafkaError::client("assigning the output topics", e)))?;
        let (copied, stop) = (Arc::default(), Arc::default());
        let (c, s) = (Arc::clone(&copied), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("fraudflow:demo-mirror".into())
            .spawn(move || copy(&consumer, &mut files, &c, &s))
            .map_err(|e| DemoError::io(dir, e))?;
        Ok(Mirror {
            copied,
            stop,
            thread,
        })
    }

    /// Stops copying; the first error the copy met, if any.
    pub fn stop(self) -> Result<(), DemoError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| DemoError::Panic("the Kafka mirror"))?
    }
}

/// The partition count of `topic`, once the run has made it.
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<i32, DemoError> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = partition_count(consumer.client(), topic, Duration::from_secs(5));
        match found {
            Ok(Some(n)) if n > 0 => return Ok(n),
            Err(e) if Instant::now() > deadline => return Err(kafka(e)),
            _ if Instant::now() > deadline => {
                return Err(DemoError::Kafka(format!(
                    "topic {topic} was not made within {} s",
                    TIMEOUT.as_secs()
                )))
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

type Files = Vec<(String, PathBuf, BufWriter<File>)>;

/// Copies messages into their topic's file until `stop`, flushing
/// whenever the topics have nothing new.
fn copy(
    consumer: &BaseConsumer,
    files: &mut Files,
    copied: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), DemoError> {
    let flush = |files: &mut Files| {
        for (_, path, file) in files.iter_mut() {
            file.flush().map_err(|e| DemoError::io(path, e))?;
        }
        Ok::<(), DemoError>(())
    };
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            flush(files)?;
            continue;
        };
        // Broker trouble is retried by the client; the run reports it.
        let Ok(message) = message else { continue };
        let Some((_, path, file)) = files.iter_mut().find(|(t, ..)| t == message.topic()) else {
            continue;
        };
        let payload = message.payload().unwrap_or_default();
        let line = file.write_all(payload).and_then(|()| file.write_all(b"\n"));
        line.map_err(|e| DemoError::io(path, e))?;
        copied.fetch_add(1, Ordering::Relaxed);
    }
    flush(files)
}
