//! A backtest's evaluation records, kept on disk one file a worker a day.
//!
//! The report needs every scored event's [`Record`]: its ranking over the
//! whole run, and each day's figures at the budget. Kept in memory until
//! the run ended, they made a backtest's memory grow with its input (72
//! bytes an event, and more while the report sorted them): 25 million rows
//! took gigabytes. So each worker appends its records, 57 bytes each (89
//! with the HTML report's fields, [`PageFields`]), to one file for each
//! day of event time in a directory beside the outputs
//! ([`SpillDir`]), closing a day's file once its input has passed that
//! day; the report reads them back one day at a time ([`SpillDir::days`],
//! [`read_day`]), each day's records sorted by `seq` (input order), and
//! ranks the whole run through sorted runs on disk
//! ([`super::runs`]). Memory then holds a day's records, not the file's
//! (112 bytes a record in memory, whether or not it carries the page's
//! fields).
//!
//! A day's files can come in any number and order (a worker's, or pieces
//! another process sent): reading sorts by `seq`, so the report is the
//! same for any number of workers and processes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{PageFields, Record};
use crate::ensemble::Components;

/// Bytes of one record on disk.
pub const RECORD_BYTES: usize = 57;
/// Bytes of one record with the HTML report's fields ([`PageFields`]):
/// three models' scores and when it was read.
pub const PAGE_RECORD_BYTES: usize = RECORD_BYTES + 32;

/// A writer's files open at once, at most: records that come late for a
/// day closed already reopen its file, and a run over years of event time
/// must not run out of file handles.
const MAX_OPEN: usize = 4;

/// Why kept records could not be written or read back.
#[derive(Debug, Error)]
pub enum SpillError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{} is not a directory this program made (a {kind}): remove it, or give another --out",
        path.display()
    )]
    NotOurs { path: PathBuf, kind: &'static str },
    #[error(
        "{} is in use by another backtest writing to the same --out: give each run its own",
        path.display()
    )]
    Busy { path: PathBuf },
    #[error(
        "{}: its {len} bytes end inside a record (at byte {at}): the file was cut short, or \
         written by something else",
        path.display()
    )]
    Torn { path: PathBuf, len: u64, at: u64 },
    #[error(
        "{} no longer holds the {pairs} scores written to it: it was cut short or changed while \
         the run went on",
        path.display()
    )]
    Changed { path: PathBuf, pairs: u64 },
}

/// Names `path` in an I/O error.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpillError + '_ {
    move |cause| SpillError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The directory a process's workers keep their records in: created
/// empty, locked while in use, and removed (with whatever it holds) when
/// dropped.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
    /// The directory itself, locked: a second run using it would empty it
    /// under the first.
    _lock: File,
    /// Entries a run that was killed had left in it, removed.
    leftover: usize,
}

impl SpillDir {
    /// An empty directory at `path`: one left there by a run that was
    /// killed is emptied first; one in use by a run still going is
    /// refused.
    ///
    /// ```
    /// use fraudflow::eval::{spill::{read_day, SpillDir}, Record};
    /// let root = std::env::temp_dir().join(format!("spill-doc-{}", std::process::id()));
    /// let dir = SpillDir::create(&root).unwrap();
    /// let r = |seq, hour: u64| Record { seq, time_ms: hour * 3_600_000, score: 0.5, is_fraud: Some(seq == 2), amount: 1.0, latency_us: 7, frozen: None, threshold: 0.5, page: None };
    /// let (mut a, mut b) = (dir.writer("w0"), dir.writer("w1"));
    /// a.add(&r(3, 1)).unwrap();
    /// b.add(&r(1, 2)).unwrap();
    /// b.add(&r(2, 30)).unwrap();
    /// a.finish().unwrap();
    /// b.finish().unwrap();
    /// let days = dir.days().unwrap();
    /// assert_eq!(days.keys().copied().collect::<Vec<_>>(), [0, 1]);
    /// let day0 = read_day(&days[&0]).unwrap();
    /// assert_eq!(day0, [r(1, 2), r(3, 1)]);
    /// drop(dir);
    /// assert!(!root.exists());
    /// ```
    pub fn create(path: &Path) -> Result<SpillDir, SpillError> {
        // Only a real directory: emptying a symbolic link's target would
        // remove files outside the output directory.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.is_dir() => {
                let kind = if meta.file_type().is_symlink() {
                    "symbolic link"
                } else {
                    "file"
                };
                return Err(SpillError::NotOurs {
                    path: path.to_path_buf(),
                    kind,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(path).map_err(io(path))?;
            }
            Err(e) => return Err(io(path)(e)),
        }
        let lock = File::open(path).map_err(io(path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpillError::Busy {
                    path: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(path)(e)),
        }
        let leftover = empty(path)?;
        crate::atomic::remove_dir_on_exit(path);
        Ok(SpillDir {
            path: path.to_path_buf(),
            _lock: lock,
            leftover,
        })
    }

    /// How many entries a run that was killed had left in the directory
    /// (removed).
    pub fn leftover(&self) -> usize {
        self.leftover
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A writer of files named `NAME-dDAY.rec`: each writer its own name.
    pub fn writer(&self, name: &str) -> DayWriter {
        DayWriter {
            dir: self.path.clone(),
            name: name.to_string(),
            open: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    /// Every day with records, in day order, and its files.
    pub fn days(&self) -> Result<BTreeMap<u32, Vec<PathBuf>>, SpillError> {
        let mut days: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.path).map_err(io(&self.path))? {
            let path = entry.map_err(io(&self.path))?.path();
            if let Some(day) = day_of_file(&path) {
                days.entry(day).or_default().push(path);
            }
        }
        Ok(days)
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        // Nothing to do about a failure here: the directory's name says
        // what it is, and the next run in this --out empties it.
        let _ = std::fs::remove_dir_all(&self.path);
        crate::atomic::forget_dir(&self.path);
    }
}

/// Removes every entry of `dir` (not following symbolic links); returns
/// how many there were.
fn empty(dir: &Path) -> Result<usize, SpillError> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let removal = match entry.file_type().map_err(io(&path))?.is_dir() {
            true => std::fs::remove_dir_all(&path),
            false => std::fs::remove_file(&path),
        };
        removal.map_err(io(&path))?;
        removed += 1;
    }
    Ok(removed)
}

/// The day a record file holds, from its name; `None` for another file.
fn day_of_file(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?.strip_suffix(".rec")?;
    name.rsplit_once("-d")?.1.parse().ok()
}

/// The records of one day's `files`, sorted by `seq`.
pub fn read_day(files: &[PathBuf]) -> Result<Vec<Record>, SpillError> {
    let mut total = 0;
    for path in files {
        total += std::fs::metadata(path).map_err(io(path))?.len();
    }
    let mut records = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(io(path))?;
        // A run's records are all of one length: room for the day's at
        // once (the most memory the report holds), not twice that.
        if let (0, Some(&flags)) = (records.capacity(), bytes.first()) {
            let n = total / record_len(flags) as u64;
            records.reserve_exact(usize::try_from(n).unwrap_or(0));
        }
        let mut at = 0;
        while let Some(&flags) = bytes.get(at) {
            let Some(b) = bytes.get(at..at + record_len(flags)) else {
                return Err(SpillError::Torn {
                    path: path.clone(),
                    len: bytes.len() as u64,
                    at: at as u64,
                });
            };
            records.push(decode(b));
            at += b.len();
        }
    }
    records.sort_unstable_by_key(|r| r.seq);
    Ok(records)
}

/// Files' records read back in pieces of at most `max`: what a process
/// other than worker 0's sends, one piece at a time, so that neither side
/// holds more.
#[derive(Debug)]
pub struct Pieces {
    files: std::collections::VecDeque<PathBuf>,
    current: Option<(PathBuf, BufReader<File>)>,
    max: usize,
}

impl Pieces {
    pub fn new(files: impl IntoIterator<Item = PathBuf>, max: usize) -> Pieces {
        Pieces {
            files: files.into_iter().collect(),
            current: None,
            max: max.max(1),
        }
    }

    /// The next piece; `None` once every file is read.
    pub fn next_piece(&mut self) -> Result<Option<Vec<Record>>, SpillError> {
        loop {
            let Some((path, reader)) = self.current.as_mut() else {
                let Some(path) = self.files.pop_front() else {
                    return Ok(None);
                };
                let file = File::open(&path).map_err(io(&path))?;
                self.current = Some((path, BufReader::with_capacity(1 << 16, file)));
                continue;
            };
            let mut piece = Vec::new();
            let mut b = [0u8; PAGE_RECORD_BYTES];
            while piece.len() < self.max {
                match read_record(reader, &mut b) {
                    Ok(Some(len)) => piece.push(decode(&b[..len])),
                    Ok(None) => break,
                    Err(e) => return Err(io(path)(e)),
                }
            }
            if piece.len() < self.max {
                self.current = None;
            }
            if !piece.is_empty() {
                return Ok(Some(piece));
            }
        }
    }
}

/// Reads one record into `b`: its length, or `None` at the end of the
/// file.
fn read_record(
    reader: &mut BufReader<File>,
    b: &mut [u8; PAGE_RECORD_BYTES],
) -> std::io::Result<Option<usize>> {
    let mut filled = 0;
    let mut len = RECORD_BYTES;
    while filled < len {
        match reader.read(&mut b[filled..len]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        len = record_len(b[0]);
    }
    Ok(Some(len))
}

/// One writer's day files: records go to their day's file (by event
/// time), at most [`MAX_OPEN`] files open at once.
#[derive(Debug)]
pub struct DayWriter {
    dir: PathBuf,
    name: String,
    open: BTreeMap<u32, (PathBuf, BufWriter<File>)>,
    /// Every day written, and its file.
    written: BTreeMap<u32, PathBuf>,
}

impl DayWriter {
    pub fn add(&mut self, r: &Record) -> Result<(), SpillError> {
        let day = r.hour() / 24;
        if !self.open.contains_key(&day) {
            self.open_day(day)?;
        }
        match self.open.get_mut(&day) {
            Some((path, file)) => {
                let (b, len) = encode(r);
                file.write_all(&b[..len]).map_err(io(path))
            }
            None => Ok(()),
        }
    }

    /// Opens `day`'s file to append to, closing the earliest day's first
    /// when [`MAX_OPEN`] are open (the input has most likely passed it).
    fn open_day(&mut self, day: u32) -> Result<(), SpillError> {
        if self.open.len() >= MAX_OPEN {
            if let Some(first) = self.open.keys().next().copied() {
                self.close(first)?;
            }
        }
        let path = self.dir.join(format!("{}-d{day}.rec", self.name));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.written.insert(day, path.clone());
        let file = BufWriter::with_capacity(1 << 16, file);
        self.open.insert(day, (path, file));
        Ok(())
    }

    /// Writes out and closes the files of days before `day`.
    pub fn close_before(&mut self, day: u32) -> Result<(), SpillError> {
        let before: Vec<u32> = self.open.range(..day).map(|(d, _)| *d).collect();
        before.into_iter().try_for_each(|d| self.close(d))
    }

    fn close(&mut self, day: u32) -> Result<(), SpillError> {
        match self.open.remove(&day) {
            Some((path, mut file)) => file.flush().map_err(io(&path)),
            None => Ok(()),
        }
    }

    /// Writes out every file; returns them, by day.
    pub fn finish(mut self) -> Result<BTreeMap<u32, PathBuf>, SpillError> {
        self.close_before(u32::MAX)?;
        self.close(u32::MAX)?;
        Ok(std::mem::take(&mut self.written))
    }
}

const FRAUD_KNOWN: u8 = 1;
const FRAUD: u8 = 2;
const FROZEN: u8 = 4;
/// The record carries [`PageFields`] ([`PAGE_RECORD_BYTES`] long).
const PAGE: u8 = 8;

/// A record's length on disk, from its first byte (its flags).
fn record_len(flags: u8) -> usize {
    match flags & PAGE != 0 {
        true => PAGE_RECORD_BYTES,
        false => RECORD_BYTES,
    }
}

/// A record as [`RECORD_BYTES`] bytes, or [`PAGE_RECORD_BYTES`] with its
/// page's fields: its flags, then its words (little-endian). Returns the
/// buffer and the length used.
fn encode(r: &Record) -> ([u8; PAGE_RECORD_BYTES], usize) {
    let mut b = [0u8; PAGE_RECORD_BYTES];
    let fraud = match r.is_fraud {
        None => 0,
        Some(false) => FRAUD_KNOWN,
        Some(true) => FRAUD_KNOWN | FRAUD,
    };
    let frozen = if r.frozen.is_some() { FROZEN } else { 0 };
    let page = if r.page.is_some() { PAGE } else { 0 };
    b[0] = fraud | frozen | page;
    let words = [
        r.seq,
        r.time_ms,
        r.score.to_bits(),
        r.amount.to_bits(),
        r.latency_us,
        r.frozen.map_or(0, f64::to_bits),
        r.threshold.to_bits(),
    ];
    let page_words = r.page.map(|p| {
        let c = p.components;
        let scores = [c.isolation_forest, c.autoencoder, c.logistic].map(f64::to_bits);
        [scores[0], scores[1], scores[2], p.received_us]
    });
    let all = words.iter().chain(page_words.iter().flatten());
    for (chunk, w) in b[1..].chunks_exact_mut(8).zip(all) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    (b, record_len(b[0]))
}

/// The record made by [`encode`]: `b` holds exactly its bytes.
fn decode(b: &[u8]) -> Record {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[1 + 8 * i..9 + 8 * i]);
        u64::from_le_bytes(w)
    };
    let flags = b[0];
    let f = |i| f64::from_bits(word(i));
    Record {
        seq: word(0),
        time_ms: word(1),
        score: f(2),
        amount: f(3),
        latency_us: word(4),
        frozen: (flags & FROZEN != 0).then(|| f(5)),
        threshold: f(6),
        is_fraud: (flags & FRAUD_KNOWN != 0).then_some(flags & FRAUD != 0),
        page: (flags & PAGE != 0).then(|| PageFields {
            components: Components {
                isolation_forest: f(7),
                autoencoder: f(8),
                logistic: f(9),
            },
            received_us: word(10),
        }),
    }
}

#[cfg(test)]
mod tests;
