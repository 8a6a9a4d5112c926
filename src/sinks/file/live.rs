//! The sinks of a live run: alerts, normal traffic and dead letters as
//! size-rotated JSON lines, and the counts and latencies the HTTP API
//! reports.
//!
//! Alerts and normal traffic come as text the workers formatted (see
//! [`crate::dataflow::sink`]): each worker formats the outcomes it routed
//! and records their latency in its process's [`LiveStats`] as it does
//! (`crate::pipeline`'s live ends); worker 0 of process 0 writes the merged
//! text here and counts the lines written. Dead letters, few, come whole.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::rotating::{RotatingLines, Rotation};
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::score::{Alert, Outcome};
use crate::dataflow::sink::Text;
use crate::eval::Latency;
use crate::pipeline::PipelineError;
use crate::sinks::Sink;

/// Latencies kept for the percentiles: the most recent this many.
const KEPT: usize = 1 << 16;

/// What a live run has routed, shared with the HTTP API.
///
/// The counts are of lines written: with file outputs, by process 0, for
/// every process (another process's counts stay 0); with Kafka, messages
/// sent by this process's workers.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub alerts: AtomicU64,
    pub normal: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Microseconds from receipt until the outcome left the pipeline, most
    /// recent last: with file outputs, until its line was formatted, on the
    /// worker that formatted it (so each process keeps its own workers'
    /// latencies); with Kafka, until it was sent.
    latencies: Mutex<VecDeque<u64>>,
}

impl LiveStats {
    /// Keeps latencies (µs), dropping the oldest past the most kept.
    pub fn record(&self, latencies: impl Iterator<Item = u64>) {
        let mut kept = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        for l in latencies {
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(l);
        }
    }

    /// Records each outcome's latency, from its receipt until now: one
    /// clock read and one lock for them all.
    pub fn record_since_receipt(&self, outcomes: &[Outcome]) {
        let now = crate::clock::now_micros();
        self.record(outcomes.iter().map(|o| now.saturating_sub(o.received_us)));
    }

    /// Percentiles of the most recent latencies (see [`LiveStats`]).
    pub fn latency(&self) -> Option<Latency> {
        let kept = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        Latency::of(kept.iter().copied().collect())
    }

    /// The most recent latencies, oldest first.
    pub fn recent_latencies(&self) -> Vec<u64> {
        let kept = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().copied().collect()
    }

    /// How many latencies the percentiles are over.
    pub fn latency_count(&self) -> usize {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// One line of normal traffic.
#[derive(Serialize)]
struct NormalLine<'a> {
    event_id: String,
    seq: u64,
    event_time: String,
    score: f64,
    scores: &'a crate::ensemble::Components,
}

/// Alerts or normal traffic, as JSON lines the workers formatted with
/// [`outcome_line`].
pub struct OutcomeLines {
    file: Option<RotatingLines>,
    stats: Arc<LiveStats>,
    alerts: bool,
}

impl OutcomeLines {
    /// `alerts`: the lines are alerts (schemas/alert_v1.json), counted as
    /// such; else normal traffic.
    pub fn create(
        rotation: Rotation,
        stats: Arc<LiveStats>,
        alerts: bool,
    ) -> Result<Self, PipelineError> {
        let dir = rotation.dir.clone();
        let file = RotatingLines::create(rotation).map_err(|e| PipelineError::io(dir, e))?;
        Ok(OutcomeLines {
            file: Some(file),
            stats,
            alerts,
        })
    }
}

/// Appends an outcome as one JSON line: with `alert`, its alert
/// (schemas/alert_v1.json), nothing when it has none; else the short line
/// of normal traffic (schemas/metrics_v1.json).
pub fn outcome_line(o: &Outcome, alert: bool, out: &mut Vec<u8>) -> serde_json::Result<()> {
    if alert {
        if let Some(alert) = o.alert.as_deref() {
            serde_json::to_writer(&mut *out, alert as &Alert)?;
            out.push(b'\n');
        }
        return Ok(());
    }
    let line = NormalLine {
        event_id: o.id.to_string(),
        seq: o.seq,
        event_time: crate::clock::format_millis(o.time_ms as i64),
        score: o.score,
        scores: &o.components,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

impl Sink<Text> for OutcomeLines {
    fn write(&mut self, texts: &mut [Text]) -> Result<(), PipelineError> {
        let count = if self.alerts {
            &self.stats.alerts
        } else {
            &self.stats.normal
        };
        for text in texts.iter_mut().filter(|t| t.lines > 0) {
            let file = self.file.as_mut().ok_or_else(|| closed(self.alerts))?;
            let dir = file.dir().to_path_buf();
            file.write(std::mem::take(&mut text.bytes))
                .map_err(|e| PipelineError::io(dir, e))?;
            count.fetch_add(text.lines, Ordering::Relaxed);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64, PipelineError> {
        let file = self.file.take().ok_or_else(|| closed(self.alerts))?;
        let dir = file.dir().to_path_buf();
        file.close().map_err(|e| PipelineError::io(dir, e))
    }
}

fn closed(alerts: bool) -> PipelineError {
    let what = if alerts { "alerts" } else { "normal traffic" };
    PipelineError::io(what, std::io::Error::other("the file was closed"))
}

/// Dead letters, as JSON lines (schemas/dlq_v1.json).
pub struct DeadLetterLines {
    file: RotatingLines,
    stats: Arc<LiveStats>,
}

impl DeadLetterLines {
    pub fn create(rotation: Rotation, stats: Arc<LiveStats>) -> Result<Self, PipelineError> {
        let dir = rotation.dir.clone();
        let file = RotatingLines::create(rotation).map_err(|e| PipelineError::io(dir, e))?;
        Ok(DeadLetterLines { file, stats })
    }
}

impl Sink<Box<DeadLetter>> for DeadLetterLines {
    fn write(&mut self, batch: &mut [Box<DeadLetter>]) -> Result<(), PipelineError> {
        let mut bytes = Vec::new();
        for d in batch.iter() {
            serde_json::to_writer(&mut bytes, d.as_ref())
                .map_err(|e| PipelineError::component("dead-letter sink", e))?;
            bytes.push(b'\n');
        }
        let dir = self.file.dir().to_path_buf();
        self.file
            .write(bytes)
            .map_err(|e| PipelineError::io(dir, e))?;
        self.stats
            .dead_letters
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        let dir = self.file.dir().to_path_buf();
        self.file.close().map_err(|e| PipelineError::io(dir, e))
    }
}
