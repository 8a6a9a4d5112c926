//! What a running pipeline tells Prometheus, in one place.
//!
//! Why one module: a metric emitted ad hoc wherever something happens
//! drifts in name, label and meaning, and nobody can say what a dashboard
//! may rely on. Here every metric is declared once ([`Families`]), and the
//! code elsewhere only emits typed events ([`events`]): each event says
//! what happened, and its `emit` alone decides which metrics move.
//!
//! Two kinds of event:
//! - *worker events*, from the dataflow's operators on a worker's thread:
//!   they land in that worker's handles ([`worker`]), labelled
//!   `worker="N"` (the global worker index). On the hot path they are
//!   thread-local counter adds, flushed to the registry at most every
//!   [`worker::FLUSH_EVERY`] and when the worker finishes;
//! - *process events*, from the HTTP server, the label publisher and a
//!   scrape: they land in the process's [`Metrics`] directly.
//!
//! Every counter is registered, with every label value known beforehand
//! (workers, dead-letter codes, alert reasons, latency stages), before the
//! first event: a fresh process exposes 0, not nothing, so `rate()` panels
//! and alerts have a series from the first scrape. Counters only ever go
//! up, across model updates too (a version changes gauges only).
//!
//! The names the original system exposed are kept with their meaning (see
//! `docs/operations.md`); what fraudflow adds is prefixed `fraudflow_`.
//!
//! ```
//! use fraudflow::metrics::{events::FeedbackRequest, Metrics};
//!
//! let metrics = Metrics::new(2);
//! let before = metrics.encode();
//! assert!(before.contains("feedback_requests_total 0"));
//! assert!(before.contains("stream_events_in_total{worker=\"1\"} 0"));
//! metrics.emit(FeedbackRequest);
//! assert!(metrics.encode().contains("feedback_requests_total 1"));
//! ```

pub mod events;
mod families;
#[cfg(test)]
mod tests;
pub mod worker;

use std::sync::{Arc, OnceLock};

use prometheus::{Encoder, TextEncoder};

pub use families::{Families, KafkaFamilies, DEAD_LETTER_CODES, LATENCY_BUCKETS, STAGES};

/// One process's metrics: the registry and every family in it.
pub struct Metrics {
    registry: prometheus::Registry,
    pub families: Families,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A process event: what the server, the publisher or a scrape saw.
pub trait ProcessEvent {
    fn emit(self, metrics: &Metrics);
}

impl Metrics {
    /// Every family registered, with series for global workers
    /// `0..workers` (the workers of all processes: each process exposes
    /// the series of its own, see [`Metrics::for_process`]).
    pub fn new(workers: usize) -> Arc<Metrics> {
        Metrics::for_process(Exposed {
            process: 0,
            workers,
            kafka: false,
        })
    }

    /// The metrics of one process: see [`Exposed`].
    pub fn for_process(exposed: Exposed) -> Arc<Metrics> {
        let Exposed {
            process,
            workers,
            kafka,
        } = exposed;
        let registry = prometheus::Registry::new();
        let first = process.saturating_mul(workers);
        let families = Families::register(&registry, first..first.saturating_add(workers), kafka)
            // The names and labels are fixed above: only a bug of ours
            // (two families of one name) can fail here.
            .unwrap_or_else(|e| panic!("registering the metrics: {e}"));
        Arc::new(Metrics { registry, families })
    }

    /// Applies a process event.
    pub fn emit(&self, event: impl ProcessEvent) {
        event.emit(self);
    }

    /// The text exposition format, as `GET /metrics` serves it.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Text encoding of gathered families only fails on a write error,
        // which a Vec never gives.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Which process exposes its metrics: process `process` of a run with
/// `workers` threads a process (its workers are `process * workers ..`),
/// and whether the run reads Kafka (which adds the brokers' figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exposed {
    pub process: usize,
    pub workers: usize,
    pub kafka: bool,
}

/// This process's metrics, once a command has turned them on.
static PROCESS: OnceLock<Arc<Metrics>> = OnceLock::new();

/// Turns metrics on for this process (the first call wins: one registry a
/// process, as one `GET /metrics`), and returns them.
pub fn install(exposed: Exposed) -> Arc<Metrics> {
    Arc::clone(PROCESS.get_or_init(|| Metrics::for_process(exposed)))
}

/// This process's metrics, when a command turned them on.
pub fn installed() -> Option<&'static Arc<Metrics>> {
    PROCESS.get()
}

/// Applies a process event to this process's metrics, when they are on.
pub fn emit(event: impl ProcessEvent) {
    if let Some(m) = installed() {
        m.emit(event);
    }
}
