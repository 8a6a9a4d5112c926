//! Every metric family, declared once: name, help, labels, and the label
//! values registered before the first event.

use std::ops::Range;

use prometheus::{
    CounterVec, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// The stages an event's latency is measured at, from its receipt: parsed,
/// featurized, and routed (scored and sent to alerts or normal traffic:
/// the end to end figure).
pub const STAGES: [&str; 3] = ["parse", "features", "route"];

/// Latency buckets, in seconds: 0.5 ms to 60 s (a live run is milliseconds;
/// a backtest's events wait behind the file's reading).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Every dead-letter code a source or the score stage gives, registered at
/// 0 before the first (a code not listed is counted from its first).
pub const DEAD_LETTER_CODES: [&str; 19] = [
    // JSON events (HTTP, Kafka, JSON-lines files)
    "oversize_payload",
    "invalid_utf8",
    "malformed_json",
    "missing_field",
    "wrong_type",
    "negative_amount",
    "negative_balance",
    "not_finite",
    "unknown_type",
    "bad_timestamp",
    "empty_field",
    // PaySim CSV rows
    "field_count",
    "not_a_number",
    "bad_step",
    "bad_account",
    "bad_label",
    // event time beyond the live limits
    "time_too_far_ahead",
    "time_too_far_behind",
    // the score stage
    "unscorable",
];

/// The alert reasons' label: the feature that pushed the score most, or
/// `none` for an alert without reasons.
pub const NO_REASON: &str = "none";

/// The families. Counters of the original system keep their names; ours
/// begin `fraudflow_`.
pub struct Families {
    // The original system's, per worker.
    pub events_in: IntCounterVec,
    pub events_valid: IntCounterVec,
    pub events_anomaly: IntCounterVec,
    pub events_normal: IntCounterVec,
    pub events_dlq: IntCounterVec,
    pub latency_ms_total: CounterVec,
    pub last_latency_ms: GaugeVec,
    // The original system's feedback and learner figures, per process.
    pub feedback_requests: IntCounter,
    pub feedback_published: IntCounter,
    pub feedback_publish_errors: IntCounter,
    pub online_received: IntCounter,
    pub online_accepted: IntCounter,
    pub online_skipped: IntCounter,
    pub online_updates: IntCounter,
    pub online_buffer: IntGauge,
    pub online_last_batch: IntGauge,
    pub online_update_count: IntGauge,
    pub promotion_pass: IntCounter,
    pub promotion_fail: IntCounter,
    pub promotion_rollback: IntCounter,
    // Beyond them.
    pub latency: HistogramVec,
    pub dead_letters: IntCounterVec,
    pub alerts: IntCounterVec,
    pub late: IntCounterVec,
    pub feedback_duplicate: IntCounter,
    pub feedback_unreadable: IntCounter,
    pub velocity_state: IntGaugeVec,
    pub join_state: IntGaugeVec,
    pub model_info: IntGaugeVec,
    /// The version `model_info` shows, to take its series away once
    /// another is in force.
    pub in_force: std::sync::Mutex<Option<String>>,
    pub model_promoted: Gauge,
    pub model_versions: IntCounter,
    pub threshold: Gauge,
    pub frontier: GaugeVec,
    pub frontier_delay: GaugeVec,
    pub workers: IntGauge,
    /// A Kafka run's alone: elsewhere they would only read as trouble.
    pub kafka: Option<KafkaFamilies>,
}

/// The families of a Kafka run.
pub struct KafkaFamilies {
    pub lag: IntGaugeVec,
    pub up: IntGauge,
    pub outbox: IntGauge,
}

impl KafkaFamilies {
    fn register(r: &Registry) -> prometheus::Result<KafkaFamilies> {
        Ok(KafkaFamilies {
            lag: add(r, IntGaugeVec::new(
                Opts::new("fraudflow_kafka_consumer_lag", "Messages of a raw-events partition not yet read (librdkafka's consumer lag)."),
                &["partition"],
            ))?,
            up: gauge(r, "fraudflow_kafka_up", "1 when the brokers answer, 0 while /health reports a problem.")?,
            outbox: gauge(r, "fraudflow_feedback_outbox_labels", "Labels in the outbox, waiting for the broker.")?,
        })
    }
}

/// Registers a family and hands it back.
fn add<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> prometheus::Result<M> {
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counters(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    add(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn worker_counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounterVec> {
    counters(r, name, help, &["worker"])
}

fn float_gauges(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<GaugeVec> {
    add(r, GaugeVec::new(Opts::new(name, help), labels))
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    add(r, IntCounter::new(name, help))
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    add(r, IntGauge::new(name, help))
}

fn worker_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
    add(r, IntGaugeVec::new(Opts::new(name, help), &["worker"]))
}

impl Families {
    /// Registers every family in `registry`, with the series of `workers`
    /// (global indices) at 0; `kafka`: a Kafka run's too.
    pub fn register(
        registry: &Registry,
        workers: Range<usize>,
        kafka: bool,
    ) -> prometheus::Result<Families> {
        let r = registry;
        let families = Families {
            events_in: worker_counter(r, "stream_events_in_total", "Events the source read.")?,
            events_valid: worker_counter(r, "stream_events_valid_total", "Events parsed.")?,
            events_anomaly: worker_counter(r, "stream_events_anomaly_total", "Events routed to alerts.")?,
            events_normal: worker_counter(r, "stream_events_normal_total", "Events routed to normal traffic.")?,
            events_dlq: worker_counter(r, "stream_events_dlq_total", "Events sent to the dead letters.")?,
            latency_ms_total: add(r, CounterVec::new(Opts::new("stream_process_latency_ms_total", "Milliseconds from receipt to routing, summed over routed events."), &["worker"]))?,
            last_latency_ms: float_gauges(r, "stream_last_process_latency_ms", "Milliseconds from receipt to routing of the last routed event.", &["worker"])?,
            feedback_requests: counter(r, "feedback_requests_total", "POST /feedback requests.")?,
            feedback_published: counter(r, "feedback_published_total", "Labels kept: sent to the feedback topic, or handed to the dataflow without Kafka.")?,
            feedback_publish_errors: counter(r, "feedback_publish_errors_total", "Labels that could not be published at once: kept in the outbox, or refused.")?,
            online_received: counter(r, "online_feedback_received_total", "Labels that reached the feedback join.")?,
            online_accepted: counter(r, "online_feedback_accepted_total", "Labels that met their transaction's features.")?,
            online_skipped: counter(r, "online_feedback_skipped_total", "Labels whose transaction was not seen within the retention.")?,
            online_updates: counter(r, "online_updates_total", "Mini-batches the learner fitted.")?,
            online_buffer: gauge(r, "online_updater_buffer_size", "Labelled examples waiting for the learner's next fit.")?,
            online_last_batch: gauge(r, "online_last_update_batch_size", "Examples in the learner's last fit.")?,
            online_update_count: gauge(r, "online_update_count", "The online model's version number: N of BUNDLE+online.N (rollbacks number on too; 0 for a bundle).")?,
            promotion_pass: counter(r, "promotion_pass_total", "Updates the promotion gate passed.")?,
            promotion_fail: counter(r, "promotion_fail_total", "Updates the promotion gate refused.")?,
            promotion_rollback: counter(r, "promotion_rollback_total", "Promoted versions rolled back to their parent.")?,
            latency: add(r, HistogramVec::new(
                HistogramOpts::new("fraudflow_latency_seconds", "Seconds from an event's receipt until it leaves a stage (route: end to end).")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["stage", "worker"],
            ))?,
            dead_letters: counters(r, "fraudflow_dead_letters_total", "Dead letters by error code.", &["code", "worker"])?,
            alerts: counters(r, "fraudflow_alerts_total", "Alerts by their first reason: the feature that pushed the score most.", &["reason", "worker"])?,
            late: worker_counter(r, "fraudflow_late_events_total", "Events that came behind the frontier, placed at it and scored.")?,
            feedback_duplicate: counter(r, "fraudflow_feedback_duplicate_total", "Labels of a transaction labelled before (the last wins).")?,
            feedback_unreadable: counter(r, "fraudflow_feedback_unreadable_total", "Messages on the feedback topic that are not labels: skipped, each time read.")?,
            velocity_state: worker_gauge(r, "fraudflow_velocity_state_records", "Records held in the velocity windows.")?,
            join_state: worker_gauge(r, "fraudflow_feedback_join_state_records", "Scored transactions' features and labels held for the feedback join.")?,
            model_info: add(r, IntGaugeVec::new(Opts::new("fraudflow_model_info", "1 for the model version scoring now."), &["version"]))?,
            in_force: std::sync::Mutex::new(None),
            model_promoted: add(r, Gauge::new("fraudflow_model_promoted_timestamp_seconds", "When the version scoring now came into force (Unix seconds; the start for the first)."))?,
            model_versions: counter(r, "fraudflow_model_versions_total", "Model versions that came into force after the first.")?,
            threshold: add(r, Gauge::new("fraudflow_alert_threshold", "The alert threshold in force."))?,
            frontier: float_gauges(r, "fraudflow_frontier_ms", "The worker's event-time frontier (what its dataflow has finished), Unix ms; 0 before the first event.", &["worker"])?,
            frontier_delay: float_gauges(r, "fraudflow_frontier_delay_seconds", "How far the worker's event-time frontier is behind the clock (0 before the first event).", &["worker"])?,
            workers: gauge(r, "fraudflow_workers", "Worker threads in this process.")?,
            kafka: if kafka { Some(KafkaFamilies::register(r)?) } else { None },
        };
        families.preset(workers);
        Ok(families)
    }

    /// Creates every known series at 0.
    fn preset(&self, workers: Range<usize>) {
        self.workers.set(workers.len() as i64);
        for w in workers {
            let w = w.to_string();
            let one = [w.as_str()];
            for c in [
                &self.events_in,
                &self.events_valid,
                &self.events_anomaly,
                &self.events_normal,
                &self.events_dlq,
                &self.late,
            ] {
                c.with_label_values(&one);
            }
            self.latency_ms_total.with_label_values(&one);
            self.last_latency_ms.with_label_values(&one);
            self.velocity_state.with_label_values(&one);
            self.frontier.with_label_values(&one);
            self.frontier_delay.with_label_values(&one);
            self.join_state.with_label_values(&one);
            for stage in STAGES {
                self.latency.with_label_values(&[stage, &w]);
            }
            for code in DEAD_LETTER_CODES {
                self.dead_letters.with_label_values(&[code, &w]);
            }
            for reason in crate::features::FEATURES_V2.iter().chain([&NO_REASON]) {
                self.alerts.with_label_values(&[*reason, w.as_str()]);
            }
        }
    }
}
