//! Generated payments played into a live run over `POST /events` (or,
//! through Kafka, onto its input topic: [`super::kafka`]), at a steady
//! rate, with a few malformed ones among them so the dead-letter path is
//! seen working too.
//!
//! Every event sent is remembered with its true class ([`Truth`]): the
//! simulated analysts label alerts from it, and the report scores the run
//! against it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::DemoError;
use crate::dataflow::json_event::paysim_event;
use crate::generate::{Generator, GeneratorParams};

/// What to send, and how fast.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// Events a second.
    pub rate: u64,
    /// Events a request, as JSON lines.
    pub batch: u64,
    /// How long to send for.
    pub seconds: f64,
    /// Seed of the generated payments.
    pub seed: u64,
    /// One malformed event in this many (0: none).
    pub garbage_every: u64,
}

/// The true class of every well-formed event sent, by id, and its amount.
#[derive(Debug, Default)]
pub struct Truth {
    events: Mutex<HashMap<String, (bool, f64)>>,
}

impl Truth {
    /// Whether the event `id` is fraud, and its amount; `None`: never sent.
    pub fn of(&self, id: &str) -> Option<(bool, f64)> {
        self.lock().get(id).copied()
    }

    /// Well-formed events sent.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fraud events sent.
    pub fn fraud(&self) -> usize {
        self.lock().values().filter(|(f, _)| *f).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bool, f64)>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The player's counts, read by the status line while it plays.
#[derive(Debug, Default)]
pub struct Played {
    /// Events sent (well-formed and malformed).
    pub sent: AtomicU64,
    /// Malformed events among them.
    pub garbage: AtomicU64,
    /// Set to stop early.
    pub stop: AtomicBool,
}

/// Rows of the Kaggle PaySim month.
const PAYSIM_MONTH_ROWS: u64 = 6_362_620;

/// The malformed lines sent, in turn: each a different dead-letter code.
const GARBAGE: [&str; 4] = [
    "{\"event_id\":\"bad-{n}\",\"timestamp\":\"yesterday\",\"user_id\":\"C1\",\"type\":\"TRANSFER\",\"amount\":5}",
    "{\"event_id\":\"bad-{n}\",\"timestamp\":\"2026-11-29T00:00:00Z\",\"user_id\":\"C1\",\"type\":\"TRANSFER\",\"amount\":-5}",
    "{\"event_id\":\"bad-{n}\",\"user_id\":\"C1\",\"type\":\"TRANSFER\",\"amount\":5}",
    "this line is not JSON {n}",
];

/// Sends `traffic` to `url` (e.g. `http://127.0.0.1:8080`) until it has
/// sent `rate * seconds` events or `played.stop` is set. A request the
/// server does not take (anything but 202, or 400 for the malformed
/// lines it sent to its dead-letter sink) ends the play with an error.
pub fn play(url: &str, traffic: &Traffic, truth: &Truth, played: &Played) -> Result<(), DemoError> {
    let agent = super::agent();
    play_with(traffic, truth, played, |body| {
        let reply = agent
            .post(format!("{url}/events"))
            .content_type("application/x-ndjson")
            .send(body.as_bytes())
            .map_err(|e| DemoError::Http(format!("POST {url}/events: {e}")))?;
        let status = reply.status().as_u16();
        if status != 202 && status != 400 {
            return Err(DemoError::Http(format!(
                "POST {url}/events answered {status}"
            )));
        }
        Ok(())
    })
}

/// Makes `traffic`'s payments at its rate, a batch of JSON lines at a
/// time, and hands each batch to `send`, until `rate * seconds` events
/// are made, `played.stop` is set or `send` fails.
pub fn play_with(
    traffic: &Traffic,
    truth: &Truth,
    played: &Played,
    mut send: impl FnMut(&str) -> Result<(), DemoError>,
) -> Result<(), DemoError> {
    let total = (traffic.rate as f64 * traffic.seconds).round() as u64;
    // The payments of a PaySim-sized month, from its start: accounts and
    // mules are drawn from a month's pools, so the per-account counts in
    // an hour's window stay like those the models were trained on (a
    // small file's pools, replayed within the hour, reuse every mule).
    let params = GeneratorParams::new(total.max(PAYSIM_MONTH_ROWS), traffic.seed)
        .check()
        .map_err(|e| DemoError::Setting(format!("the generated traffic: {e}")))?;
    let mut rows = Generator::new(params);
    let gap = Duration::from_secs_f64(traffic.batch as f64 / traffic.rate.max(1) as f64);
    let started = Instant::now();
    let mut batches = 0u64;
    while played.sent.load(Ordering::Relaxed) < total && !played.stop.load(Ordering::Relaxed) {
        if let Some(wait) =
            (started + gap.mul_f64(batches as f64)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        let left = total - played.sent.load(Ordering::Relaxed);
        let body = batch(&mut rows, traffic, left.min(traffic.batch), truth, played);
        batches += 1;
        if body.is_empty() {
            break;
        }
        send(&body)?;
    }
    Ok(())
}

/// One request's body of `n` events, stamped now.
fn batch(
    rows: &mut Generator,
    traffic: &Traffic,
    n: u64,
    truth: &Truth,
    played: &Played,
) -> String {
    let now = crate::clock::now_millis();
    let mut body = String::new();
    let mut kept = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let k = played.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if traffic.garbage_every > 0 && k.is_multiple_of(traffic.garbage_every) {
            let shape = GARBAGE[(k / traffic.garbage_every) as usize % GARBAGE.len()];
            body.push_str(&shape.replace("{n}", &k.to_string()));
            played.garbage.fetch_add(1, Ordering::Relaxed);
        } else {
            let Some(row) = rows.next() else { break };
            let id = format!("demo-{}-{k}", traffic.seed);
            body.push_str(&paysim_event(&row, &id, now).to_string());
            kept.push((id, (row.is_fraud, row.amount)));
        }
        body.push('\n');
    }
    truth.lock().extend(kept);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_mixes_garbage_at_the_share_asked_and_remembers_the_rest() {
        let traffic = Traffic {
            rate: 100,
            batch: 10,
            seconds: 1.0,
            seed: 3,
            garbage_every: 4,
        };
        let params = GeneratorParams::new(100, 3).check().expect("params");
        let mut rows = Generator::new(params);
        let (truth, played) = (Truth::default(), Played::default());
        let body = batch(&mut rows, &traffic, 10, &truth, &played);
        assert_eq!(body.lines().count(), 10);
        // Events 4 and 8 of 10 are malformed; the other 8 are remembered.
        assert_eq!(played.garbage.load(Ordering::Relaxed), 2);
        assert_eq!(truth.len(), 8);
        let bad: Vec<&str> = body
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l).map_or(true, |v| {
                    v["event_id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("bad-"))
                })
            })
            .collect();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(truth.of("demo-3-1").is_some() && truth.of("demo-3-4").is_none());
    }
}
