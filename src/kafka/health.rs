//! Broker trouble as health, not a crash.
//!
//! Why: a broker that is down at start, or goes away while the pipeline
//! runs, is a fault of the system, not of the data: the process stays up,
//! retries with backoff, and says what is wrong on `/health` until it is
//! put right. Each part of the process (the metadata watcher, the sources'
//! consumers, the sinks' producers, commits) reports under its own name
//! and clears its own report once it works again.
//!
//! ```
//! use fraudflow::kafka::health::Health;
//!
//! let health = Health::default();
//! health.report("commit", "offset commit failed: broker down");
//! assert_eq!(health.problems(), ["commit: offset commit failed: broker down"]);
//! health.clear("commit");
//! assert!(health.is_ok());
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What is wrong now, by part, and how often anything went wrong.
#[derive(Debug, Default)]
pub struct Health {
    problems: Mutex<BTreeMap<String, (String, Instant)>>,
    reports: AtomicU64,
    /// Each input partition's consumer lag, as librdkafka last reported.
    lags: Mutex<BTreeMap<i32, i64>>,
}

impl Health {
    /// `part` does not work, for the reason `message`.
    pub fn report(&self, part: &str, message: impl Into<String>) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        let mut problems = self.lock();
        let since = problems.get(part).map_or_else(Instant::now, |p| p.1);
        problems.insert(part.to_string(), (message.into(), since));
    }

    /// `part` works again.
    pub fn clear(&self, part: &str) {
        self.lock().remove(part);
    }

    /// Whether nothing is wrong now.
    pub fn is_ok(&self) -> bool {
        self.lock().is_empty()
    }

    /// What is wrong now, one line a part: `part: message`.
    pub fn problems(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(part, (message, _))| format!("{part}: {message}"))
            .collect()
    }

    /// Seconds the oldest problem has lasted (0 when none).
    pub fn seconds_unhealthy(&self) -> f64 {
        self.lock()
            .values()
            .map(|(_, since)| since.elapsed().as_secs_f64())
            .fold(0.0, f64::max)
    }

    /// Problems reported since the start, however short.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// Partition `partition` of the input topic is `lag` messages behind
    /// its end.
    pub fn set_lag(&self, partition: i32, lag: i64) {
        let mut lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
        lags.insert(partition, lag);
    }

    /// Each partition's last reported lag, by partition.
    pub fn lags(&self) -> Vec<(i32, i64)> {
        let lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
        lags.iter().map(|(p, l)| (*p, *l)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (String, Instant)>> {
        self.problems.lock().unwrap_or_else(|e| e.into_inner())
    }
}
