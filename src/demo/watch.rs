//! What a live run says about itself, read the way an operator reads it:
//! `GET /health` for the counts, the model version and the latency, and
//! `GET /metrics` for the online model's updates. One [`Status`] a read;
//! the status line and the report's throughput plot are made of them.

use std::collections::HashMap;

use serde::Deserialize;

use super::DemoError;
use crate::eval::Latency;

/// One read of a live run.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Seconds since the session started.
    pub at: f64,
    pub events_in: u64,
    pub alerts: u64,
    pub normal: u64,
    pub dead_letters: u64,
    pub late: u64,
    pub model_version: String,
    /// Receipt to written, over the run's most recent events.
    pub latency_us: Option<Latency>,
    /// Online updates the learner promoted, and rolled back.
    pub promoted: u64,
    pub rolled_back: u64,
    /// Labels the run took, and how many matched a scored transaction.
    pub labels: u64,
    pub matched: u64,
}

impl Status {
    /// Events written, to any output.
    pub fn routed(&self) -> u64 {
        self.alerts + self.normal + self.dead_letters
    }

    /// The status line: events/s over `since`, alerts, dead letters, the
    /// model version, latency p99 and updates promoted and rolled back.
    pub fn line(&self, since: &Status) -> String {
        let seconds = (self.at - since.at).max(1e-9);
        let rate = self.events_in.saturating_sub(since.events_in) as f64 / seconds;
        let p99 = self
            .latency_us
            .as_ref()
            .map_or("-".to_string(), |l| format!("{:.1} ms", l.p99 as f64 / 1e3));
        format!(
            "{:>5.0} s  {:>7.0} ev/s  {} events  {} alerts  {} dead letters  p99 {}  \
             model {}  labels {}  updates: {} promoted, {} rolled back",
            self.at,
            rate,
            self.events_in,
            self.alerts,
            self.dead_letters,
            p99,
            self.model_version,
            self.labels,
            self.promoted,
            self.rolled_back
        )
    }
}

#[derive(Deserialize)]
struct Health {
    /// Events taken over HTTP.
    events_in: u64,
    /// A Kafka run's source.
    kafka: Option<KafkaHealth>,
    alerts: u64,
    normal: u64,
    dead_letters: u64,
    late: u64,
    model_version: String,
    latency_us: Option<Latency>,
}

#[derive(Deserialize)]
struct KafkaHealth {
    /// Events read from the input topic (not those read again on a
    /// restart to rebuild state).
    read: u64,
}

/// Reads `/health` and `/metrics` of the run at `url`.
pub fn read(agent: &ureq::Agent, url: &str, at: f64) -> Result<Status, DemoError> {
    let health: Health = serde_json::from_str(&get(agent, &format!("{url}/health"))?)
        .map_err(|e| DemoError::Http(format!("{url}/health: {e}")))?;
    let metrics = totals(&get(agent, &format!("{url}/metrics"))?);
    let sum = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as u64;
    Ok(Status {
        at,
        events_in: health.events_in + health.kafka.map_or(0, |k| k.read),
        alerts: health.alerts,
        normal: health.normal,
        dead_letters: health.dead_letters,
        late: health.late,
        model_version: health.model_version,
        latency_us: health.latency_us,
        promoted: sum("promotion_pass_total"),
        rolled_back: sum("promotion_rollback_total"),
        labels: sum("online_feedback_received_total"),
        matched: sum("online_feedback_accepted_total"),
    })
}

/// A GET's body, as text.
pub fn get(agent: &ureq::Agent, url: &str) -> Result<String, DemoError> {
    agent
        .get(url)
        .call()
        .map_err(|e| DemoError::Http(format!("GET {url}: {e}")))?
        .body_mut()
        .read_to_string()
        .map_err(|e| DemoError::Http(format!("GET {url}: {e}")))
}

/// Each metric's value summed over its series, from Prometheus's text
/// format (comments and unparsable lines are skipped).
pub fn totals(text: &str) -> HashMap<String, f64> {
    let mut sums = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        *sums.entry(name.to_string()).or_insert(0.0) += value;
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_series_of_a_metric() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total{worker=\"0\"} 2\n\
                    a_total{worker=\"1\"} 3.5\nb 7\nbroken line\n";
        let t = totals(text);
        assert_eq!(t["a_total"], 5.5);
        assert_eq!(t["b"], 7.0);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn the_status_line_gives_the_rate_over_the_interval() {
        let before = Status {
            at: 1.0,
            events_in: 100,
            ..Status::default()
        };
        let now = Status {
            at: 3.0,
            events_in: 4_100,
            alerts: 7,
            model_version: "v1".into(),
            ..Status::default()
        };
        let line = now.line(&before);
        assert!(line.contains(" 2000 ev/s"), "{line}");
        assert!(
            line.contains("7 alerts") && line.contains("model v1"),
            "{line}"
        );
    }
}
