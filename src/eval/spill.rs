//! A backtest's evaluation records, kept on disk one file a worker a day.
//!
//! The report needs every scored event's [`Record`]: its ranking over the
//! whole run, and each day's figures at the budget. Kept in memory until
//! the run ended, they made a backtest's memory grow with its input (72
//! bytes an event, and more while the report sorted them): 25 million rows
//! took gigabytes. So each worker appends its records, 57 bytes each, to
//! one file for each day of event time in a directory beside the outputs
//! ([`SpillDir`]), closing a day's file once its input has passed that
//! day; the report reads them back one day at a time ([`SpillDir::days`],
//! [`read_day`]), each day's records sorted by `seq` (input order), and
//! ranks the whole run through sorted runs on disk
//! ([`super::runs`]). Memory then holds a day's records, not the file's.
//!
//! A day's files can come in any number and order (a worker's, or pieces
//! another process sent): reading sorts by `seq`, so the report is the
//! same for any number of workers and processes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Record;

/// Bytes of one record on disk.
pub const RECORD_BYTES: usize = 57;

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
        "{}: {len} bytes is not a whole number of {RECORD_BYTES}-byte records: the file was \
         cut short, or written by something else",
        path.display()
    )]
    Torn { path: PathBuf, len: u64 },
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
    /// let r = |seq, hour: u64| Record { seq, time_ms: hour * 3_600_000, score: 0.5, is_fraud: Some(seq == 2), amount: 1.0, latency_us: 7, frozen: None, threshold: 0.5 };
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
    let mut records = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(io(path))?;
        if bytes.len() % RECORD_BYTES != 0 {
            let len = bytes.len() as u64;
            return Err(SpillError::Torn {
                path: path.clone(),
                len,
            });
        }
        records.extend(bytes.chunks_exact(RECORD_BYTES).map(decode));
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
            let mut b = [0u8; RECORD_BYTES];
            while piece.len() < self.max {
                match read_record(reader, &mut b) {
                    Ok(true) => piece.push(decode(&b)),
                    Ok(false) => break,
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

/// Reads one record into `b`: `false` at the end of the file.
fn read_record(reader: &mut BufReader<File>, b: &mut [u8; RECORD_BYTES]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < RECORD_BYTES {
        match reader.read(&mut b[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
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
            Some((path, file)) => file.write_all(&encode(r)).map_err(io(path)),
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

/// A record as [`RECORD_BYTES`] bytes (little-endian).
fn encode(r: &Record) -> [u8; RECORD_BYTES] {
    let mut b = [0u8; RECORD_BYTES];
    let words = [
        r.seq,
        r.time_ms,
        r.score.to_bits(),
        r.amount.to_bits(),
        r.latency_us,
        r.frozen.map_or(0, f64::to_bits),
        r.threshold.to_bits(),
    ];
    for (chunk, w) in b.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    let fraud = match r.is_fraud {
        None => 0,
        Some(false) => FRAUD_KNOWN,
        Some(true) => FRAUD_KNOWN | FRAUD,
    };
    b[56] = fraud | if r.frozen.is_some() { FROZEN } else { 0 };
    b
}

/// The record of [`RECORD_BYTES`] bytes made by [`encode`].
fn decode(b: &[u8]) -> Record {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[8 * i..8 * i + 8]);
        u64::from_le_bytes(w)
    };
    let flags = b[56];
    Record {
        seq: word(0),
        time_ms: word(1),
        score: f64::from_bits(word(2)),
        amount: f64::from_bits(word(3)),
        latency_us: word(4),
        frozen: (flags & FROZEN != 0).then(|| f64::from_bits(word(5))),
        threshold: f64::from_bits(word(6)),
        is_fraud: (flags & FRAUD_KNOWN != 0).then_some(flags & FRAUD != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, hour: u64) -> Record {
        Record {
            seq,
            time_ms: hour * crate::event::STEP_MS + seq % 1000,
            score: seq as f64 / 7.0,
            is_fraud: [None, Some(false), Some(true)][(seq % 3) as usize],
            amount: -(seq as f64) * 1.5,
            latency_us: seq * 11,
            frozen: seq.is_multiple_of(2).then_some(f64::NAN),
            threshold: 0.25,
        }
    }

    #[test]
    fn every_field_comes_back_bit_for_bit() {
        for seq in 0..12 {
            let r = record(seq, seq * 5);
            let back = decode(&encode(&r));
            assert_eq!(back.frozen.map(f64::to_bits), r.frozen.map(f64::to_bits));
            assert_eq!(
                Record {
                    frozen: None,
                    ..back
                },
                Record { frozen: None, ..r }
            );
        }
        let extreme = Record {
            seq: u64::MAX,
            time_ms: u64::MAX,
            score: -0.0,
            latency_us: u64::MAX,
            frozen: Some(f64::INFINITY),
            ..record(1, 0)
        };
        assert_eq!(decode(&encode(&extreme)), extreme);
    }

    #[test]
    fn late_records_reopen_a_closed_day_and_many_days_stay_within_the_open_limit() {
        let root = tempfile::tempdir().unwrap();
        let dir = SpillDir::create(&root.path().join("s")).unwrap();
        let mut w = dir.writer("w3");
        let mut want: Vec<Record> = Vec::new();
        // Forty days, each day's records split in two visits, the second
        // after later days were written and its file closed.
        for seq in 0..400u64 {
            let hour = (seq % 40) * 24 + (seq / 40) % 24;
            let r = record(seq, hour);
            w.add(&r).unwrap();
            want.push(r);
            assert!(w.open.len() <= MAX_OPEN);
            if seq % 40 == 39 {
                w.close_before(u32::MAX).unwrap();
            }
        }
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 40);
        let days = dir.days().unwrap();
        let mut got = Vec::new();
        for (day, files) in &days {
            let rs = read_day(files).unwrap();
            assert!(rs.iter().all(|r| r.hour() / 24 == *day));
            assert!(rs.windows(2).all(|p| p[0].seq < p[1].seq));
            got.extend(rs);
        }
        got.sort_by_key(|r| r.seq);
        let bits = |rs: &[Record]| -> Vec<(u64, Option<u64>)> {
            rs.iter()
                .map(|r| (r.seq, r.frozen.map(f64::to_bits)))
                .collect()
        };
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn a_torn_file_is_refused_by_name_and_a_killed_runs_directory_is_emptied() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("s");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("w0-d0.rec"), [0u8; 10]).unwrap();
        let dir = SpillDir::create(&path).unwrap();
        assert!(dir.days().unwrap().is_empty());
        std::fs::write(path.join("w0-d0.rec"), [0u8; RECORD_BYTES + 3]).unwrap();
        let err = read_day(&dir.days().unwrap()[&0]).unwrap_err().to_string();
        assert!(
            err.contains("w0-d0.rec") && err.contains("60 bytes"),
            "{err}"
        );
        // A second run in the same directory is refused while this one
        // holds it, and takes it once this one is done.
        let busy = SpillDir::create(&path).unwrap_err();
        assert!(matches!(busy, SpillError::Busy { .. }), "{busy}");
        drop(dir);
        assert!(!path.exists());
        drop(SpillDir::create(&path).unwrap());
    }

    #[test]
    fn a_symbolic_link_or_a_file_in_its_place_is_refused_and_its_target_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::create_dir_all(victim.join("sub")).unwrap();
        std::fs::write(victim.join("a.txt"), "keep").unwrap();
        let link = root.path().join("s");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = SpillDir::create(&link).unwrap_err();
        assert!(
            matches!(
                err,
                SpillError::NotOurs {
                    kind: "symbolic link",
                    ..
                }
            ),
            "{err}"
        );
        drop(err);
        assert!(victim.join("a.txt").exists() && victim.join("sub").is_dir());
        assert!(link.exists(), "the link itself is left for its owner");
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = SpillDir::create(&file).unwrap_err().to_string();
        assert!(
            err.contains("(a file)") && err.contains("remove it"),
            "{err}"
        );
        // Inside a real directory, a link is removed, never followed.
        let real = root.path().join("r");
        std::fs::create_dir_all(&real).unwrap();
        std::os::unix::fs::symlink(&victim, real.join("in")).unwrap();
        let dir = SpillDir::create(&real).unwrap();
        assert_eq!(dir.leftover(), 1);
        assert!(victim.join("a.txt").exists());
    }

    #[test]
    fn pieces_read_every_record_back_in_pieces_of_at_most_the_limit() {
        let root = tempfile::tempdir().unwrap();
        let dir = SpillDir::create(&root.path().join("s")).unwrap();
        let mut w = dir.writer("w1");
        for seq in 0..50u64 {
            w.add(&record(seq, seq % 3 * 24)).unwrap();
        }
        let files = w.finish().unwrap();
        std::fs::write(dir.path().join("empty-d9.rec"), []).unwrap();
        let mut all = files.into_values().collect::<Vec<_>>();
        all.insert(1, dir.path().join("empty-d9.rec"));
        let mut pieces = Pieces::new(all, 7);
        let mut seqs = Vec::new();
        while let Some(piece) = pieces.next_piece().unwrap() {
            assert!(!piece.is_empty() && piece.len() <= 7);
            seqs.extend(piece.iter().map(|r| r.seq));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..50).collect::<Vec<_>>());
        std::fs::write(dir.path().join("torn-d0.rec"), [1u8; RECORD_BYTES + 1]).unwrap();
        let mut torn = Pieces::new([dir.path().join("torn-d0.rec")], 7);
        assert!(torn.next_piece().is_err());
    }
}
