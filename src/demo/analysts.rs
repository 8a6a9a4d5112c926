//! Simulated analysts for a live run: they read the alerts as the run
//! writes them (tailing its JSON-lines files, as an analyst's queue would),
//! look each up in the truth, and send the label to `POST /feedback` after
//! a delay; fraud the run missed comes back later as a chargeback, read
//! from the normal-traffic files. The labels are what the online model
//! learns from.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::traffic::Truth;
use super::DemoError;

/// How the analysts work.
#[derive(Clone, Debug)]
pub struct Analysts {
    /// From an alert being written to its label being sent.
    pub delay: Duration,
    /// Labels a second, at most, alerts and chargebacks together; the
    /// rest wait in the queue.
    pub capacity: f64,
    /// From a missed fraud being written to its chargeback.
    pub chargeback_delay: Duration,
}

/// What the analysts did, read by the status line.
#[derive(Debug, Default)]
pub struct Labelled {
    /// Alerts read from the run's files.
    pub alerts_read: AtomicU64,
    /// Labels sent and taken (202), by kind.
    pub fraud: AtomicU64,
    pub legit: AtomicU64,
    pub chargebacks: AtomicU64,
    /// Labels the server refused (anything but 202).
    pub refused: AtomicU64,
    /// Set to stop.
    pub stop: AtomicBool,
}

/// The part of an output line the analysts read.
#[derive(Deserialize)]
struct Line {
    event_id: String,
}

/// A label waiting to be sent.
struct Pending {
    due: Instant,
    id: String,
    fraud: bool,
    chargeback: bool,
}

/// Works the queue of the run writing into `dir` until `labelled.stop` is
/// set and every due label is sent.
pub fn work(
    url: &str,
    dir: &Path,
    how: &Analysts,
    truth: &Truth,
    labelled: &Labelled,
) -> Result<(), DemoError> {
    let agent = super::agent();
    let (mut alerts, mut normal) = (Tail::new(dir, "alerts-"), Tail::new(dir, "normal-"));
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let started = Instant::now();
    loop {
        let stopping = labelled.stop.load(Ordering::Relaxed);
        let now = Instant::now();
        for id in alerts.lines()? {
            labelled.alerts_read.fetch_add(1, Ordering::Relaxed);
            if let Some((fraud, _)) = truth.of(&id) {
                queue.push_back(Pending {
                    due: now + how.delay,
                    id,
                    fraud,
                    chargeback: false,
                });
            }
        }
        for id in normal.lines()? {
            if let Some((true, _)) = truth.of(&id) {
                let due = now + how.chargeback_delay;
                queue.push_back(Pending {
                    due,
                    id,
                    fraud: true,
                    chargeback: true,
                });
            }
        }
        let sent = labelled.fraud.load(Ordering::Relaxed)
            + labelled.legit.load(Ordering::Relaxed)
            + labelled.chargebacks.load(Ordering::Relaxed)
            + labelled.refused.load(Ordering::Relaxed);
        let allowed = (started.elapsed().as_secs_f64() * how.capacity) as u64;
        // Stopping, the analysts clear their queue whatever its pace.
        let mut budget = if stopping {
            u64::MAX
        } else {
            allowed.saturating_sub(sent)
        };
        queue.make_contiguous().sort_by_key(|p| p.due);
        while budget > 0 && queue.front().is_some_and(|p| p.due <= now || stopping) {
            let Some(p) = queue.pop_front() else { break };
            send(&agent, url, &p, labelled)?;
            budget -= 1;
        }
        if stopping {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends one label.
fn send(agent: &ureq::Agent, url: &str, p: &Pending, labelled: &Labelled) -> Result<(), DemoError> {
    let label = if p.fraud {
        "true_positive"
    } else {
        "false_positive"
    };
    let analyst = if p.chargeback {
        "chargebacks"
    } else {
        "demo-analyst"
    };
    let body = serde_json::json!({
        "transaction_id": p.id,
        "label": label,
        "analyst_id": analyst,
    });
    let reply = agent
        .post(format!("{url}/feedback"))
        .content_type("application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| DemoError::Http(format!("POST {url}/feedback: {e}")))?;
    let counter = match (reply.status().as_u16(), p.chargeback, p.fraud) {
        (202, true, _) => &labelled.chargebacks,
        (202, false, true) => &labelled.fraud,
        (202, false, false) => &labelled.legit,
        _ => &labelled.refused,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The JSON-lines files of a live run's sink in `dir` whose names start
/// with `prefix`, in the order they were written (their names sort so).
pub fn files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, DemoError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DemoError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Follows the JSON-lines files of one prefix in a directory as they
/// grow and rotate, handing back each complete new line's `event_id`.
pub struct Tail {
    dir: PathBuf,
    prefix: &'static str,
    /// Bytes read of each file, and a line begun but not ended.
    read: HashMap<PathBuf, (u64, Vec<u8>)>,
}

impl Tail {
    pub fn new(dir: &Path, prefix: &'static str) -> Tail {
        Tail {
            dir: dir.to_path_buf(),
            prefix,
            read: HashMap::new(),
        }
    }

    /// The ids of the lines written since the last call.
    pub fn lines(&mut self) -> Result<Vec<String>, DemoError> {
        Ok(self
            .fresh()?
            .iter()
            .filter_map(|l| serde_json::from_slice::<Line>(l).ok())
            .map(|l| l.event_id)
            .collect())
    }

    /// The lines written since the last call, as JSON values (a line that
    /// is not JSON as a string).
    pub fn values(&mut self) -> Result<Vec<serde_json::Value>, DemoError> {
        Ok(self
            .fresh()?
            .iter()
            .map(|l| {
                serde_json::from_slice(l).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(l).into_owned())
                })
            })
            .collect())
    }

    /// The complete lines written since the last call.
    fn fresh(&mut self) -> Result<Vec<Vec<u8>>, DemoError> {
        let files = files(&self.dir, self.prefix)?;
        let mut lines = Vec::new();
        for path in files {
            let (offset, partial) = self.read.entry(path.clone()).or_default();
            let mut file = std::fs::File::open(&path).map_err(|e| DemoError::io(&path, e))?;
            file.seek(SeekFrom::Start(*offset))
                .map_err(|e| DemoError::io(&path, e))?;
            let mut bytes = std::mem::take(partial);
            let n = file
                .read_to_end(&mut bytes)
                .map_err(|e| DemoError::io(&path, e))?;
            *offset += n as u64;
            let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            *partial = bytes.split_off(end);
            lines.extend(
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_hands_back_each_complete_line_once_across_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("alerts-0-000001.jsonl");
        std::fs::write(&a, "{\"event_id\":\"e1\"}\n{\"event_id\":\"e2\"").expect("write");
        std::fs::write(
            dir.path().join("normal-0-000001.jsonl"),
            "{\"event_id\":\"n\"}\n",
        )
        .expect("write");
        let mut tail = Tail::new(dir.path(), "alerts-");
        assert_eq!(tail.lines().expect("read"), vec!["e1"]);
        // The line begun is finished, and a second file appears.
        std::fs::write(&a, "{\"event_id\":\"e1\"}\n{\"event_id\":\"e2\"}\n").expect("write");
        std::fs::write(
            dir.path().join("alerts-0-000002.jsonl"),
            "{\"event_id\":\"e3\"}\n",
        )
        .expect("write");
        assert_eq!(tail.lines().expect("read"), vec!["e2", "e3"]);
        assert!(tail.lines().expect("read").is_empty());
    }
}
