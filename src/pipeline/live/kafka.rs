//! A live run from Kafka: the raw-events topic in, the output topics out,
//! and the watcher that makes missing topics and follows the brokers.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::models::Models;
use super::{listen_addr, Live, LiveOptions};
use crate::kafka::topics::TopicSpec;
use crate::pipeline::{Cluster, PipelineError};
use crate::settings::{DataflowFile, KafkaTable};
use crate::sources::kafka::{KafkaInput, KafkaSettings, SinkTopics};
use crate::sources::order::TimeLimits;
use crate::sources::SourceSettings;

/// A Kafka run: the raw-events topic in, the output topics out.
pub(super) fn prepare(
    options: &LiveOptions,
    file: DataflowFile,
    cluster: Cluster,
    mut kafka: KafkaTable,
) -> Result<Live, PipelineError> {
    // --brokers wins over the file for every client: the source, the
    // sinks, the labels' topic and the versions' announcements.
    if let Some(brokers) = &options.brokers {
        kafka.brokers.clone_from(brokers);
    }
    let settings = kafka_settings(&file, &kafka);
    let input = KafkaInput::new(settings, cluster.process, cluster.processes());
    let mut models = Models::load(options, &file, &input.hub, &cluster)?;
    let stats = Arc::clone(&input.stats);
    let feedback_topic = models.feedback_topic(&kafka, &cluster)?;
    if let Some(f) = models.feedback.as_mut().filter(|_| cluster.process == 0) {
        // The learner runs on process 0: it announces its versions.
        f.learner.announce = crate::kafka::publish::version_announcer(&kafka.brokers)
            .map_err(|e| PipelineError::component("the model-updates topic", e))?;
    }
    let publisher = feedback_topic.as_ref().map(|t| Arc::clone(&t.publisher));
    let state = models.state(
        Arc::clone(&input.hub),
        Some(Arc::clone(&input)),
        stats,
        &cluster,
        (0, publisher),
    );
    let topics = kafka
        .create_topics
        .then(|| topic_specs(&kafka, &input.settings.sinks));
    Ok(Live {
        listen: listen_addr(options.listen, &kafka.listen, &cluster)?,
        settings: models.settings(
            SourceSettings::Kafka(Arc::clone(&input)),
            &file,
            cluster,
            Arc::clone(&input.stats),
        ),
        outputs: None,
        state,
        tick: None,
        poll: models.poll,
        topics,
        feedback_topic,
    })
}

/// The Kafka source's and sinks' settings from the file (its brokers
/// those of the flags).
fn kafka_settings(file: &DataflowFile, kafka: &KafkaTable) -> KafkaSettings {
    let sinks = file.sinks.kafka.clone().unwrap_or_default();
    let window_ms = file.features.window_seconds.saturating_mul(1_000);
    KafkaSettings {
        brokers: kafka.brokers.clone(),
        topic: kafka.topic.clone(),
        group: kafka.group.clone(),
        guarantee: kafka.guarantee,
        idle: Duration::from_millis(kafka.idle_ms),
        commit_every: Duration::from_millis(kafka.commit_ms),
        fetch_wait: Duration::from_millis(kafka.fetch_wait_ms),
        max_batch: kafka.max_batch,
        limits: TimeLimits {
            lateness_ms: 0,
            future_ms: kafka.future_limit_seconds.saturating_mul(1_000),
            past_ms: kafka.past_limit_seconds.saturating_mul(1_000),
        },
        // One window, and the commit interval's worth more of slack.
        restore_ms: kafka
            .restore
            .then(|| window_ms.saturating_add(kafka.commit_ms)),
        sinks: SinkTopics {
            anomalies: sinks.anomalies,
            metrics: sinks.metrics,
            dead_letter: sinks.dead_letter,
        },
        stall_after: Duration::from_secs(kafka.stall_timeout_seconds),
    }
}

/// The topics a Kafka run makes when missing, with the file's counts.
fn topic_specs(kafka: &KafkaTable, sinks: &SinkTopics) -> Vec<TopicSpec> {
    let p = &kafka.partitions;
    let spec = TopicSpec::new;
    vec![
        spec(&kafka.topic, p.raw_events),
        spec(&sinks.anomalies, p.anomalies),
        spec("feedback", p.feedback),
        spec(&sinks.metrics, p.metrics),
        spec(&sinks.dead_letter, p.dead_letter),
        spec("model-updates", p.model_updates),
    ]
}

/// The Kafka watcher: makes the missing topics, then follows the input
/// topic's partitions and the brokers' health.
pub(super) fn start_watcher(
    kafka: &Arc<KafkaInput>,
    topics: Option<Vec<TopicSpec>>,
) -> Result<JoinHandle<()>, PipelineError> {
    let brokers = kafka.settings.brokers.clone();
    let bootstrap: crate::sources::kafka::watcher::Bootstrap = Box::new(move || {
        if let Some(specs) = &topics {
            crate::kafka::topics::ensure_topics(&brokers, specs, Duration::from_secs(10))?;
        }
        Ok(())
    });
    crate::sources::kafka::watcher::start(Arc::clone(kafka), bootstrap)
        .map_err(|e| PipelineError::component("the Kafka watcher", e))
}
