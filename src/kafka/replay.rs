//! `fraudflow replay`: publishes a PaySim CSV or a JSON-lines file to a
//! topic, for demos, load tests and the end-to-end tests, so that the live
//! pipeline can be fed the very file a backtest reads and its alerts
//! compared with the backtest's.
//!
//! That comparison needs each event to mean the same thing on both paths:
//! a PaySim row is published as the JSON event the file source would have
//! made of it, named by its 1-based data row number and stamped with its
//! step's hour after the Unix epoch ([`paysim_message`]). Every message is
//! keyed by its account (`user_id`), so one account's events stay in one
//! partition, in file order, and carries its event time as the Kafka
//! timestamp. A line of a JSON-lines file is published as it is, garbage
//! included, so that bad input can be replayed too ([`json_line_message`]).
//!
//! Nothing is dropped: messages go through a [`TopicWriter`], which waits
//! out a full queue and counts what the broker refuses, for the report.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::producer::TopicWriter;
use super::KafkaError;
use crate::dataflow::json_event::{paysim_event, strip_bom};
use crate::event::STEP_MS;
use crate::paysim::{PaysimReader, ReadError, Transaction};
use crate::sources::file::InputFormat;

/// What to publish, where, and how fast.
#[derive(Clone, Debug)]
pub struct ReplaySettings {
    /// The input file; its kind by its extension, as the file source has it.
    pub input: PathBuf,
    pub format: InputFormat,
    /// `host:port,...`.
    pub brokers: String,
    pub topic: String,
    /// Events a second; `None` publishes as fast as the broker takes them.
    pub rate: Option<f64>,
    /// How long a message may wait for the broker's acknowledgement, and
    /// each admin request for an answer.
    pub timeout: Duration,
    /// No progress bar.
    pub quiet: bool,
}

impl ReplaySettings {
    /// Settings to publish `input` to `topic` on `brokers`, checked: the
    /// file's kind is known and a rate of 0 means no limit.
    ///
    /// ```
    /// use fraudflow::kafka::replay::ReplaySettings;
    /// let s = ReplaySettings::new("month.csv".as_ref(), "127.0.0.1:9092", "raw-events", Some(0)).unwrap();
    /// assert_eq!(s.rate, None);
    /// assert!(ReplaySettings::new("month.txt".as_ref(), "127.0.0.1:9092", "raw-events", None).is_err());
    /// ```
    pub fn new(
        input: &Path,
        brokers: &str,
        topic: &str,
        rate: Option<u64>,
    ) -> Result<ReplaySettings, ReplayError> {
        let format = InputFormat::of(input).ok_or_else(|| ReplayError::Format {
            path: input.to_path_buf(),
        })?;
        if brokers.trim().is_empty() {
            return Err(ReplayError::Setting {
                setting: "brokers",
                problem: "empty: expected host:port[,host:port...]".to_string(),
            });
        }
        Ok(ReplaySettings {
            input: input.to_path_buf(),
            format,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            rate: rate.filter(|&r| r > 0).map(|r| r as f64),
            timeout: Duration::from_secs(30),
            quiet: false,
        })
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages refused, by the producer or the broker, or left without an
    /// acknowledgement at the end.
    pub failed: u64,
    /// PaySim rows that did not parse, published as they are (the live
    /// pipeline makes dead letters of them, as the backtest does).
    pub bad_rows: u64,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    /// The order number (header
    /// [`crate::sources::kafka::seq::ORDER_HEADER`]) of the first message:
    /// one past the messages the topic already held, so that a file
    /// replayed after another into the same topic keeps numbers of its own.
    pub numbered_from: u64,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: expected a .csv (PaySim) or .jsonl (JSON events) file", path.display())]
    Format { path: PathBuf },
    #[error("--{setting}: {problem}")]
    Setting {
        setting: &'static str,
        problem: String,
    },
    /// The cause is in the message, and so not given as `source()` too.
    #[error("cannot read {}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {cause}", path.display())]
    Paysim { path: PathBuf, cause: ReadError },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub payload: Vec<u8>,
    /// The account, `user_id`.
    pub key: Option<String>,
    /// Event time in milliseconds since the Unix epoch; `None` leaves the
    /// producer to stamp the message with the time it sends it.
    pub timestamp_ms: Option<i64>,
}

/// The message of PaySim data row `row` (1-based): the JSON event the file
/// source would make of it, named and timed as the backtest names and
/// times it (`Event::from_paysim`), keyed by its account.
///
/// ```
/// use fraudflow::dataflow::json_event::parse_event;
/// use fraudflow::event::Event;
/// use fraudflow::kafka::replay::paysim_message;
/// use fraudflow::paysim::{AccountId, Transaction, TxnType};
/// let t = Transaction {
///     step: 7, kind: TxnType::Transfer, amount: 181.0,
///     name_orig: AccountId::from_name("C1305486145"), old_balance_orig: 181.0, new_balance_orig: 0.0,
///     name_dest: AccountId::from_name("C553264065"), old_balance_dest: 0.0, new_balance_dest: 0.0,
///     is_fraud: true, is_flagged_fraud: false,
/// };
/// let m = paysim_message(12, &t);
/// let (live, backtest) = (parse_event(&m.payload, 1).unwrap(), Event::from_paysim(12, &t));
/// assert_eq!(live.id.to_string(), backtest.id.to_string());
/// assert_eq!((live.time_ms, live.hour_of_day), (backtest.time_ms, backtest.hour_of_day));
/// assert_eq!(m.timestamp_ms, Some(backtest.time_ms as i64));
/// assert_eq!(m.key.as_deref(), Some("C1305486145"));
/// ```
pub fn paysim_message(row: u64, t: &Transaction) -> Message {
    let time_ms = u64::from(t.step) * STEP_MS;
    Message {
        payload: paysim_event(t, &row.to_string(), time_ms)
            .to_string()
            .into_bytes(),
        key: Some(t.name_orig.to_string()),
        // Kafka reads a timestamp of 0 as "now": step 0 is stamped on send.
        timestamp_ms: Some(time_ms as i64).filter(|&ms| ms > 0),
    }
}

/// The message of one line of a JSON-lines file, its line end removed:
/// the line unchanged; keyed by its `user_id` and stamped with its
/// `timestamp` when it is a JSON object that has them as strings (a
/// timestamp in RFC 3339, after the epoch), else without.
///
/// ```
/// use fraudflow::kafka::replay::json_line_message;
/// let m = json_line_message(br#"{"user_id":"C1","timestamp":"1970-01-01T01:00:00Z"}"#);
/// assert_eq!((m.key.as_deref(), m.timestamp_ms), (Some("C1"), Some(3_600_000)));
/// let garbage = json_line_message(b"\xff{not json");
/// assert_eq!((garbage.payload, garbage.key, garbage.timestamp_ms), (b"\xff{not json".to_vec(), None, None));
/// ```
pub fn json_line_message(line: &[u8]) -> Message {
    #[derive(serde::Deserialize)]
    struct Routing {
        #[serde(default)]
        user_id: Option<serde_json::Value>,
        #[serde(default)]
        timestamp: Option<serde_json::Value>,
    }
    let object = line.trim_ascii_start().starts_with(b"{");
    let routing = object
        .then(|| serde_json::from_slice::<Routing>(line).ok())
        .flatten();
    let text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    let (key, time) = routing.map_or((None, None), |r| (text(r.user_id), text(r.timestamp)));
    Message {
        payload: line.to_vec(),
        key,
        timestamp_ms: time
            .and_then(|t| crate::clock::parse_millis(&t))
            .filter(|&ms| ms > 0),
    }
}

/// A reader that counts the bytes read through it, for the progress bar.
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// The messages of an input file, in file order; a bad PaySim row comes
/// out as its raw line, flagged.
type Messages = Box<dyn Iterator<Item = Result<(Message, bool), ReplayError>>>;

/// Opens `settings.input`: its messages, its size, and a count of the
/// bytes read so far.
fn open(settings: &ReplaySettings) -> Result<(Messages, u64, Rc<Cell<u64>>), ReplayError> {
    let path = settings.input.clone();
    let io = |cause| ReplayError::Io {
        path: settings.input.clone(),
        cause,
    };
    let file = File::open(&path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let read = Rc::new(Cell::new(0));
    let counted = Counted {
        inner: file,
        read: read.clone(),
    };
    let messages: Messages = match settings.format {
        InputFormat::PaysimCsv => {
            let mut reader = PaysimReader::new(counted).map_err(|cause| ReplayError::Paysim {
                path: path.clone(),
                cause,
            })?;
            Box::new(std::iter::from_fn(move || {
                let row = reader.next()?;
                Some(match row {
                    Ok(t) => Ok((paysim_message(reader.line() - 1, &t), false)),
                    Err(ReadError::Row(_)) => Ok((raw_message(reader.last_line()), true)),
                    Err(cause) => Err(ReplayError::Paysim {
                        path: path.clone(),
                        cause,
                    }),
                })
            }))
        }
        InputFormat::JsonLines => Box::new(json_lines(BufReader::new(counted), path)),
    };
    Ok((messages, size, read))
}

/// A line published as it is, with no key and no timestamp.
fn raw_message(line: &[u8]) -> Message {
    Message {
        payload: line.to_vec(),
        key: None,
        timestamp_ms: None,
    }
}

/// The lines of a JSON-lines file as messages, read as the file source
/// reads them: line ends (`\n`, `\r\n`) and a byte-order mark on line 1
/// removed, blank lines skipped.
fn json_lines(
    mut input: impl BufRead + 'static,
    path: PathBuf,
) -> impl Iterator<Item = Result<(Message, bool), ReplayError>> {
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    std::iter::from_fn(move || loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(cause) => {
                return Some(Err(ReplayError::Io {
                    path: path.clone(),
                    cause,
                }))
            }
        }
        line_no += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = if line_no == 1 { strip_bom(line) } else { line };
        if !line.trim_ascii().is_empty() {
            return Some(Ok((json_line_message(line), false)));
        }
    })
}

/// Publishes `settings.input` to `settings.topic`, creating the topic
/// (with its default partition count) when it is missing, and waits for
/// every message to be acknowledged or refused.
pub fn replay(settings: &ReplaySettings) -> Result<ReplayReport, ReplayError> {
    let (messages, size, read) = open(settings)?;
    let writer = TopicWriter::connect(&settings.brokers, &settings.topic, settings.timeout)?;
    let base = writer.end_offsets()?;
    let bar = crate::progress::bar(size, "bytes", settings.quiet);
    bar.set_message(format!("replay to {}", settings.topic));
    let started = Instant::now();
    let mut report = ReplayReport {
        numbered_from: base + 1,
        ..ReplayReport::default()
    };
    for (n, item) in messages.enumerate() {
        let (message, bad) = item?;
        report.bad_rows += u64::from(bad);
        if let Some(rate) = settings.rate {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                writer.poll(wait);
            }
        }
        writer.send(&message, Some(base + n as u64 + 1));
        if n % 256 == 0 {
            writer.poll(Duration::ZERO);
            bar.set_position(read.get());
        }
    }
    let delivered = writer.finish();
    bar.finish_and_clear();
    report.delivered = delivered.delivered;
    report.failed = delivered.failed;
    report.first_failure = delivered.first_failure;
    report.elapsed = started.elapsed();
    Ok(report)
}
