//! Topic bootstrap: the topics fraudflow reads and writes, created when
//! missing, so that a first run against an empty cluster needs no manual
//! step and every process of a run sees the same partition counts.
//!
//! Several processes start at once and may race to create the same topic;
//! the loser's "already exists" is what it wanted, so it counts as success.
//! A topic that exists is left as it is: its partition count is the
//! broker's, whatever the settings say (see [`partition_count`]).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;

use super::{client_config, KafkaError};

/// A topic to create when missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    /// Partitions for a new topic: the most workers that can read it.
    pub partitions: i32,
    /// Replicas of each partition for a new topic.
    pub replication: i32,
}

impl TopicSpec {
    /// A topic of `partitions` partitions, one replica each (a single
    /// broker on 127.0.0.1; raise `replication` on a real cluster).
    pub fn new(name: &str, partitions: i32) -> TopicSpec {
        TopicSpec {
            name: name.to_string(),
            partitions,
            replication: 1,
        }
    }
}

/// The original system's topics and their partition counts: the live
/// input, the three outputs, analysts' labels, and model versions (one
/// partition, so every reader sees versions in order).
///
/// ```
/// let topics = fraudflow::kafka::topics::default_topics();
/// let raw = topics.iter().find(|t| t.name == "raw-events").unwrap();
/// assert_eq!((raw.partitions, raw.replication), (8, 1));
/// assert_eq!(topics.len(), 6);
/// ```
pub fn default_topics() -> Vec<TopicSpec> {
    [
        ("raw-events", 8),
        ("anomalies", 4),
        ("feedback", 2),
        ("metrics", 4),
        ("dead-letter", 2),
        ("model-updates", 1),
    ]
    .into_iter()
    .map(|(name, partitions)| TopicSpec::new(name, partitions))
    .collect()
}

/// The default spec of topic `name`; a topic not among
/// [`default_topics`] gets the input topic's partition count.
///
/// ```
/// use fraudflow::kafka::topics::default_spec;
/// assert_eq!(default_spec("metrics").partitions, 4);
/// assert_eq!(default_spec("my-events").partitions, 8);
/// ```
pub fn default_spec(name: &str) -> TopicSpec {
    let topics = default_topics();
    let partitions = topics
        .iter()
        .find(|t| t.name == name)
        .or_else(|| topics.iter().find(|t| t.name == "raw-events"))
        .map_or(1, |t| t.partitions);
    TopicSpec::new(name, partitions)
}

/// Creates each topic of `specs` that the cluster at `brokers` lacks and
/// returns the names of those it created; a topic created meanwhile by
/// another process counts as present. `timeout` bounds each request.
pub fn ensure_topics(
    brokers: &str,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    check_specs(specs)?;
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .map_err(|e| KafkaError::client(format!("connecting to {brokers}"), e))?;
    let existing = topic_partitions(admin.inner(), timeout)
        .map_err(|e| KafkaError::client(format!("listing the topics on {brokers}"), e))?;
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| !existing.contains_key(&s.name))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let results = create(&admin, &missing, brokers, timeout)?;
    created(results, brokers)
}

/// Rejects a spec no broker would accept, naming it, before connecting.
fn check_specs(specs: &[TopicSpec]) -> Result<(), KafkaError> {
    for spec in specs {
        let name_ok = !spec.name.is_empty()
            && spec.name.len() <= 249
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(KafkaError::Other(format!(
                "topic name {:?}: expected 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'",
                spec.name
            )));
        }
        if spec.partitions < 1 || spec.replication < 1 {
            return Err(KafkaError::Other(format!(
                "topic {}: {} partitions and {} replicas, expected at least 1 of each",
                spec.name, spec.partitions, spec.replication
            )));
        }
    }
    Ok(())
}

/// Sends one CreateTopics request for `specs` and waits for its answer.
fn create(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[&TopicSpec],
    brokers: &str,
    timeout: Duration,
) -> Result<Vec<TopicResult>, KafkaError> {
    let names = specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>();
    let what = format!("creating topics {} on {brokers}", names.join(", "));
    let topics: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    // rdkafka's admin calls are futures, answered by its own thread: a
    // runtime on this thread only waits for them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| KafkaError::Other(format!("{what}: starting a runtime: {e}")))?;
    // librdkafka times the request out itself; this is a backstop.
    let answer = runtime.block_on(async {
        tokio::time::timeout(
            timeout + Duration::from_secs(5),
            admin.create_topics(&topics, &options),
        )
        .await
    });
    match answer {
        Ok(result) => result.map_err(|e| KafkaError::client(what, e)),
        Err(_) => Err(KafkaError::Other(format!(
            "{what}: no answer within {} s",
            timeout.as_secs_f64() + 5.0
        ))),
    }
}

/// The names created, from one answer per topic: "already exists" means
/// another process won the race, and is fine.
fn created(results: Vec<TopicResult>, brokers: &str) -> Result<Vec<String>, KafkaError> {
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::client(
                    format!("creating topic {name} on {brokers}"),
                    RdError::AdminOp(code),
                ))
            }
        }
    }
    Ok(created)
}

/// The partition count of `topic` as the cluster's metadata has it, or
/// `None` when the topic does not exist. Asks for every topic's metadata,
/// so that the question itself never creates the topic on a broker that
/// creates topics on first mention. `client` is any client's: a consumer's
/// `client()`, an admin client's `inner()`.
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, KafkaError> {
    let existing = topic_partitions(client, timeout)
        .map_err(|e| KafkaError::client(format!("reading the metadata of topic {topic}"), e))?;
    Ok(existing.get(topic).copied())
}

/// Every topic the cluster knows, with its partition count, in one
/// metadata request that creates nothing.
pub fn cluster_topics<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<HashMap<String, i32>, KafkaError> {
    topic_partitions(client, timeout)
        .map_err(|e| KafkaError::client("reading the cluster's topics", e))
}

/// Every topic the cluster knows, with its partition count.
fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<HashMap<String, i32>, RdError> {
    let metadata = client.fetch_metadata(None, timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| {
            t.error().map(RDKafkaErrorCode::from) != Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        })
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_race_is_not_an_error_and_creates_nothing() {
        let results = vec![
            Ok("a".to_string()),
            Err(("b".to_string(), RDKafkaErrorCode::TopicAlreadyExists)),
        ];
        assert_eq!(created(results, "h:1").unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn any_other_refusal_names_the_topic_and_the_brokers() {
        let results = vec![
            Ok("a".to_string()),
            Err(("b".to_string(), RDKafkaErrorCode::InvalidReplicationFactor)),
        ];
        let err = created(results, "h:1").unwrap_err().to_string();
        assert!(err.contains("topic b on h:1"), "{err}");
    }

    #[test]
    fn bad_specs_are_refused_before_connecting_naming_the_value() {
        let bad = [
            TopicSpec::new("raw events", 8),
            TopicSpec::new("", 8),
            TopicSpec::new("raw-events", 0),
        ];
        for spec in bad {
            let err = check_specs(std::slice::from_ref(&spec)).unwrap_err();
            assert!(err.to_string().contains(&spec.name), "{err}");
        }
        assert!(check_specs(&default_topics()).is_ok());
    }
}
