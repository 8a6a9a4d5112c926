//! A worker's own metric handles, on its thread.
//!
//! Why thread-local: the dataflow's operators run on their worker's thread
//! and see events by the batch, millions a second in a backtest. A shared
//! atomic per event would have every worker contend for the same cache
//! lines; here an operator adds to counters of its own thread
//! (`prometheus::local`), and the worker flushes them into the registry
//! every [`FLUSH_EVERY`] as it steps (an idle worker steps at least every
//! 50 ms), and once more as it finishes.
//!
//! Figures a worker already keeps in cells of its own (the sources'
//! counts, the feedback loop's summary, the state held in a window) are
//! not counted twice: a *watch* reads them at each flush and moves the
//! registry's series by what changed.
//!
//! ```
//! use fraudflow::metrics::{worker, Metrics};
//!
//! let metrics = Metrics::new(1);
//! worker::install(std::sync::Arc::clone(&metrics), 0);
//! let seen = std::rc::Rc::new(std::cell::Cell::new(0u64));
//! let read = std::rc::Rc::clone(&seen);
//! let mut before = 0;
//! worker::watch(move |f, w| {
//!     let now = read.get();
//!     f.events_in.with_label_values(&[w]).inc_by(now - before);
//!     before = now;
//! });
//! seen.set(5);
//! worker::uninstall(); // flushes
//! assert!(metrics.encode().contains("stream_events_in_total{worker=\"0\"} 5"));
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::core::{AtomicF64, AtomicU64, GenericCounter};
use prometheus::local::{LocalCounter, LocalHistogram, LocalIntCounter};
use prometheus::Gauge;

use super::families::{Families, STAGES};
use super::Metrics;

/// Longest a worker keeps its figures before the registry sees them.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// What reads a worker's own cells into the registry at each flush: the
/// families and the worker's label.
pub type Watch = Box<dyn FnMut(&Families, &str)>;

/// A worker event: what an operator saw, applied to its worker's handles.
pub trait WorkerEvent {
    fn emit(self, to: &mut WorkerMetrics);
}

/// One worker's handles.
pub struct WorkerMetrics {
    metrics: Arc<Metrics>,
    /// The global worker index, as the `worker` label.
    pub worker: String,
    pub anomaly: LocalIntCounter,
    pub normal: LocalIntCounter,
    pub dlq: LocalIntCounter,
    pub latency_ms_total: LocalCounter,
    pub last_latency_ms: Gauge,
    /// Latency at each of [`STAGES`], in their order.
    pub stages: Vec<LocalHistogram>,
    dead_letters: HashMap<String, LocalIntCounter>,
    alerts: HashMap<String, LocalIntCounter>,
    watches: Vec<Watch>,
    flushed: Instant,
}

fn local_int(c: GenericCounter<AtomicU64>) -> LocalIntCounter {
    c.local()
}

fn local_float(c: GenericCounter<AtomicF64>) -> LocalCounter {
    c.local()
}

impl WorkerMetrics {
    fn new(metrics: Arc<Metrics>, worker: usize) -> WorkerMetrics {
        let w = worker.to_string();
        let f = &metrics.families;
        let one = [w.as_str()];
        WorkerMetrics {
            anomaly: local_int(f.events_anomaly.with_label_values(&one)),
            normal: local_int(f.events_normal.with_label_values(&one)),
            dlq: local_int(f.events_dlq.with_label_values(&one)),
            latency_ms_total: local_float(f.latency_ms_total.with_label_values(&one)),
            last_latency_ms: f.last_latency_ms.with_label_values(&one),
            stages: STAGES
                .iter()
                .map(|s| f.latency.with_label_values(&[*s, w.as_str()]).local())
                .collect(),
            dead_letters: HashMap::new(),
            alerts: HashMap::new(),
            watches: Vec::new(),
            flushed: Instant::now(),
            worker: w,
            metrics,
        }
    }

    /// This worker's dead-letter counter for `code`.
    pub fn dead_letters(&mut self, code: &str) -> &mut LocalIntCounter {
        let family = &self.metrics.families.dead_letters;
        labelled(&mut self.dead_letters, family, code, &self.worker)
    }

    /// This worker's alert counter for the reason `reason`.
    pub fn alerts(&mut self, reason: &str) -> &mut LocalIntCounter {
        let family = &self.metrics.families.alerts;
        labelled(&mut self.alerts, family, reason, &self.worker)
    }

    /// The process's metrics (for the figures a worker sets outright).
    pub fn process(&self) -> &Metrics {
        &self.metrics
    }

    /// Moves everything this worker holds into the registry.
    fn flush(&mut self) {
        self.anomaly.flush();
        self.normal.flush();
        self.dlq.flush();
        self.latency_ms_total.flush();
        self.stages.iter().for_each(LocalHistogram::flush);
        self.dead_letters.values_mut().for_each(|c| c.flush());
        self.alerts.values_mut().for_each(|c| c.flush());
        let (families, worker) = (&self.metrics.families, self.worker.as_str());
        for watch in &mut self.watches {
            watch(families, worker);
        }
        self.flushed = Instant::now();
    }
}

/// The worker's local counter of `family{label, worker}`, made on first
/// use (known labels exist in the registry from the start already).
fn labelled<'a>(
    kept: &'a mut HashMap<String, LocalIntCounter>,
    family: &prometheus::IntCounterVec,
    label: &str,
    worker: &str,
) -> &'a mut LocalIntCounter {
    if !kept.contains_key(label) {
        let counter = family.with_label_values(&[label, worker]).local();
        kept.insert(label.to_string(), counter);
    }
    kept.get_mut(label)
        .unwrap_or_else(|| unreachable!("inserted above"))
}

thread_local! {
    static WORKER: RefCell<Option<WorkerMetrics>> = const { RefCell::new(None) };
}

/// Gives this thread (worker `worker`, the global index) handles into
/// `metrics`, replacing any it had.
pub fn install(metrics: Arc<Metrics>, worker: usize) {
    WORKER.with(|w| *w.borrow_mut() = Some(WorkerMetrics::new(metrics, worker)));
}

/// Flushes this thread's handles and drops them.
pub fn uninstall() {
    WORKER.with(|w| {
        if let Some(mut m) = w.borrow_mut().take() {
            m.flush();
        }
    });
}

/// Whether this thread has handles: operators that only feed metrics are
/// built only then.
pub fn is_on() -> bool {
    WORKER.with(|w| w.borrow().is_some())
}

/// Runs `f` on this thread's handles, when it has them.
fn with(f: impl FnOnce(&mut WorkerMetrics)) {
    WORKER.with(|w| {
        if let Some(m) = w.borrow_mut().as_mut() {
            f(m);
        }
    });
}

/// Applies a worker event to this thread's handles (nothing without).
pub fn emit(event: impl WorkerEvent) {
    with(|m| event.emit(m));
}

/// Adds a watch, run at each flush (never without handles).
pub fn watch(watch: impl FnMut(&Families, &str) + 'static) {
    with(|m| m.watches.push(Box::new(watch)));
}

/// Called as the worker steps: flushes when [`FLUSH_EVERY`] has passed.
pub fn tick() {
    with(|m| {
        if m.flushed.elapsed() >= FLUSH_EVERY {
            m.flush();
        }
    });
}

/// Flushes now.
pub fn flush() {
    with(WorkerMetrics::flush);
}
