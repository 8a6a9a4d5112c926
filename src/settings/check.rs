//! Checks a parsed dataflow file beyond its types, and finds the line of a
//! key so that every refusal names where to look.

use std::path::Path;

use super::{DataflowFile, SettingsError};

/// The 1-based line holding byte `offset` of `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// The 1-based line where `key` is set inside the table `[table]` (or the
/// table's header when the key is absent; 0 when neither is found).
///
/// ```
/// let text = "[source.http]\nlisten = \"x\"\n\n[sinks]\n flush_ms = 0\n";
/// assert_eq!(fraudflow::settings::line_of(text, "sinks", "flush_ms"), 5);
/// assert_eq!(fraudflow::settings::line_of(text, "sinks", "dir"), 4);
/// ```
pub fn line_of(text: &str, table: &str, key: &str) -> usize {
    let mut in_table = false;
    let mut header = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[') {
            in_table = name.trim_end_matches(']').trim() == table;
            if in_table {
                header = i + 1;
            }
            continue;
        }
        let set = line
            .split_once('=')
            .is_some_and(|(k, _)| k.trim().trim_matches('"') == key);
        if in_table && set {
            return i + 1;
        }
    }
    header
}

/// The table a line belongs to: the nearest `[header]` at or above it
/// (empty at the top level).
fn table_at(text: &str, line: usize) -> String {
    text.lines()
        .take(line)
        .filter_map(|l| l.trim().strip_prefix('['))
        .map(|h| h.trim_end_matches(']').trim().to_string())
        .last()
        .unwrap_or_default()
}

/// toml's message, prefixed with the full name of the key it is about: the
/// one set on the offending line, or the missing one its table lacks (line
/// 0: the top-level table).
///
/// ```
/// let text = "[sinks]\ndir = \"o\"\nflush_ms = \"soon\"\n";
/// let m = fraudflow::settings::message("invalid type: string \"soon\", expected u64", text, 3);
/// assert_eq!(m, "key sinks.flush_ms: invalid type: string \"soon\", expected u64");
/// let m = fraudflow::settings::message("missing field `dir`", "[models]\n", 1);
/// assert_eq!(m, "key models.dir: missing field `dir`");
/// ```
pub fn message(message: &str, text: &str, line: usize) -> String {
    let message = message.trim();
    let table = table_at(text, line);
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let set = line
        .checked_sub(1)
        .and_then(|l| text.lines().nth(l))
        .filter(|l| !l.trim_start().starts_with('['))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches('"'));
    match missing.or(set) {
        Some(key) if table.is_empty() => format!("key {key}: {message}"),
        Some(key) => format!("key {table}.{key}: {message}"),
        None => message.to_string(),
    }
}

/// One refused value.
struct Problem {
    table: &'static str,
    key: &'static str,
    problem: String,
}

fn positive(table: &'static str, key: &'static str, value: u64) -> Option<Problem> {
    (value == 0).then(|| Problem {
        table,
        key,
        problem: "must be at least 1".to_string(),
    })
}

/// Ranges and combinations the types cannot say.
pub fn check(file: &DataflowFile, path: &Path, text: &str) -> Result<(), SettingsError> {
    let s = &file.source;
    let given = [s.file.is_some(), s.http.is_some(), s.kafka.is_some()];
    let mut problems = Vec::new();
    if given.iter().filter(|&&g| g).count() != 1 {
        problems.push(Problem {
            table: "source",
            key: "source",
            problem: "give exactly one of [source.file], [source.http] or [source.kafka]"
                .to_string(),
        });
    }
    problems.extend(file_and_http_problems(s));
    if let Some(k) = &s.kafka {
        problems.extend(kafka_problems(k));
    }
    problems.extend(sinks_problems(file));
    problems.extend(feedback_problems(file));
    problems.extend(threshold_problems(file));
    let f = &file.features;
    problems.extend(positive("features", "window_seconds", f.window_seconds));
    problems.extend(positive("cluster", "workers", file.cluster.workers as u64));
    if let Err(err) = super::limits::check_workers(file.cluster.workers) {
        problems.push(Problem {
            table: "cluster",
            key: "workers",
            problem: err.to_string(),
        });
    }
    problems.extend(positive(
        "cluster",
        "connect_timeout_seconds",
        file.cluster.connect_timeout_seconds,
    ));
    if let Some(Err(err)) = file.models.threshold.map(crate::ensemble::check_threshold) {
        problems.push(Problem {
            table: "models",
            key: "threshold",
            problem: err.to_string(),
        });
    }
    match problems.into_iter().next() {
        None => Ok(()),
        Some(p) => Err(SettingsError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, p.table, p.key),
            key: if p.key == p.table {
                p.table.to_string()
            } else {
                format!("{}.{}", p.table, p.key)
            },
            problem: p.problem,
        }),
    }
}

/// `[source.file]`'s and `[source.http]`'s ranges, and the address.
fn file_and_http_problems(s: &super::SourceTable) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(f) = &s.file {
        problems.extend(positive("source.file", "block_bytes", f.block_bytes as u64));
        problems.extend(positive(
            "source.file",
            "stall_timeout_seconds",
            f.stall_timeout_seconds,
        ));
    }
    if let Some(h) = &s.http {
        problems.extend(positive("source.http", "tick_ms", h.tick_ms));
        problems.extend(positive(
            "source.http",
            "stall_timeout_seconds",
            h.stall_timeout_seconds,
        ));
        problems.extend(positive(
            "source.http",
            "max_body_bytes",
            h.max_body_bytes as u64,
        ));
        if h.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(Problem {
                table: "source.http",
                key: "listen",
                problem: format!("{:?} is not an address such as 127.0.0.1:8080", h.listen),
            });
        }
    }
    problems
}

/// `[feedback]`'s ranges, each named by its key.
fn feedback_problems(file: &DataflowFile) -> Option<Problem> {
    use crate::dataflow::feedback::FeedbackSettingsError as E;
    let table = file.feedback.as_ref()?;
    let err = table.settings().check(0).err()?;
    let key = match err {
        E::Retention(_) => "retention_seconds",
        E::BatchSize(_) => "batch_size",
        E::MaxWait(_) => "max_wait_seconds",
        E::Margin(_) => "promotion_margin",
        E::Holdout(_) => "holdout",
        E::HoldoutEvery(_) => "holdout_every",
        E::Replay(_) => "replay_positives",
        E::Params(ref m) if m.starts_with("learning_rate") => "learning_rate",
        E::Params(ref m) if m.starts_with("positive_weight") => "positive_weight",
        _ => "feedback",
    };
    Some(Problem {
        table: "feedback",
        key,
        problem: err.to_string(),
    })
}

/// `[adaptive_threshold]`'s ranges (the lateness is checked when the run
/// starts, against the source's).
fn threshold_problems(file: &DataflowFile) -> Option<Problem> {
    use crate::dataflow::threshold::ThresholdSettingsError as E;
    let table = file.adaptive_threshold.as_ref()?;
    // The bundle's budget is not known here; a given one is checked.
    let err = table.settings(0.005).check(0).err()?;
    let key = match err {
        E::Budget(_) => "budget",
        E::Every(_) => "every_seconds",
        E::Window { .. } => "window_seconds",
        E::Bounds { .. } => "floor",
        E::Lateness { .. } => "every_seconds",
    };
    Some(Problem {
        table: "adaptive_threshold",
        key,
        problem: err.to_string(),
    })
}

/// `[source.kafka]`'s ranges.
fn kafka_problems(k: &super::KafkaTable) -> Vec<Problem> {
    let mut problems: Vec<Problem> = [
        positive("source.kafka", "idle_ms", k.idle_ms),
        positive("source.kafka", "commit_ms", k.commit_ms),
        positive("source.kafka", "fetch_wait_ms", k.fetch_wait_ms),
        positive("source.kafka", "max_batch", k.max_batch as u64),
        positive(
            "source.kafka",
            "stall_timeout_seconds",
            k.stall_timeout_seconds,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (key, text) in [
        ("brokers", &k.brokers),
        ("topic", &k.topic),
        ("group", &k.group),
    ] {
        if text.trim().is_empty() {
            problems.push(Problem {
                table: "source.kafka",
                key,
                problem: "must not be empty".to_string(),
            });
        }
    }
    if k.listen.parse::<std::net::SocketAddr>().is_err() {
        problems.push(Problem {
            table: "source.kafka",
            key: "listen",
            problem: format!("{:?} is not an address such as 127.0.0.1:8080", k.listen),
        });
    }
    let p = &k.partitions;
    for (key, n) in [
        ("raw_events", p.raw_events),
        ("anomalies", p.anomalies),
        ("feedback", p.feedback),
        ("metrics", p.metrics),
        ("dead_letter", p.dead_letter),
        ("model_updates", p.model_updates),
    ] {
        if !(1..=100_000).contains(&n) {
            problems.push(Problem {
                table: "source.kafka.partitions",
                key,
                problem: format!("{n} partitions: must be 1 to 100000"),
            });
        }
    }
    problems
}

/// Files or topics: the sinks must fit the source.
fn sinks_problems(file: &DataflowFile) -> Vec<Problem> {
    let mut problems: Vec<Problem> = [
        positive("sinks", "flush_ms", file.sinks.flush_ms),
        positive("sinks", "rotate_bytes", file.sinks.rotate_bytes),
    ]
    .into_iter()
    .flatten()
    .collect();
    let kafka_in = file.source.kafka.is_some();
    let problem = match (&file.sinks.kafka, &file.sinks.dir) {
        (Some(_), _) if !kafka_in => Some(("kafka", "[sinks.kafka] needs [source.kafka]")),
        (None, _) if kafka_in => Some(("kafka", "[source.kafka] writes to [sinks.kafka]: add it")),
        (None, None) => Some((
            "dir",
            "missing field `dir` (a directory for the output files)",
        )),
        _ => None,
    };
    if let Some((key, problem)) = problem {
        problems.push(Problem {
            table: "sinks",
            key,
            problem: problem.to_string(),
        });
    }
    problems
}
