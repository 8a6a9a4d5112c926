//! JSON-lines files for a live run: written by a thread of their own,
//! flushed at least every `flush` interval, and rotated by size
//! (`PREFIX-P-000001.jsonl`, `PREFIX-P-000002.jsonl`, ..., `P` the process).
//! A live run has no end to wait for, so lines reach the file as they come
//! rather than appearing whole at the end.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// A size-rotated JSON-lines file fed over a channel.
pub struct RotatingLines {
    sender: Option<mpsc::SyncSender<Vec<u8>>>,
    thread: Option<thread::JoinHandle<io::Result<u64>>>,
    dir: PathBuf,
}

/// Where and how a rotating file writes.
#[derive(Clone, Debug)]
pub struct Rotation {
    pub dir: PathBuf,
    /// File names begin with this, then the process, then a counter.
    pub prefix: String,
    pub process: usize,
    /// A file is closed and the next begun past this many bytes.
    pub max_bytes: u64,
    /// What is written reaches the file at least this often.
    pub flush: Duration,
}

impl Rotation {
    fn path(&self, n: u64) -> PathBuf {
        self.dir
            .join(format!("{}-{}-{n:06}.jsonl", self.prefix, self.process))
    }

    /// The counter after the highest an earlier run left in the directory
    /// (files removed below it leave gaps that are never reused).
    fn first_free(&self) -> u64 {
        let start = format!("{}-{}-", self.prefix, self.process);
        let highest = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix(&start)?.strip_suffix(".jsonl")?;
                n.parse::<u64>().ok()
            })
            .max();
        highest.map_or(1, |n| n + 1)
    }
}

struct Writer {
    rotation: Rotation,
    next: u64,
    out: BufWriter<File>,
    bytes: u64,
    lines: u64,
}

impl Writer {
    fn open(rotation: Rotation) -> io::Result<Writer> {
        std::fs::create_dir_all(&rotation.dir)?;
        let next = rotation.first_free();
        let out = Self::create(&rotation.path(next))?;
        Ok(Writer {
            rotation,
            next: next + 1,
            out,
            bytes: 0,
            lines: 0,
        })
    }

    fn create(path: &Path) -> io::Result<BufWriter<File>> {
        let file = OpenOptions::new().create_new(true).write(true).open(path)?;
        Ok(BufWriter::with_capacity(1 << 16, file))
    }

    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.bytes > 0 && self.bytes + lines.len() as u64 > self.rotation.max_bytes {
            self.out.flush()?;
            self.out = Self::create(&self.rotation.path(self.next))?;
            self.next += 1;
            self.bytes = 0;
        }
        self.out.write_all(lines)?;
        self.bytes += lines.len() as u64;
        self.lines += lines.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(())
    }
}

impl RotatingLines {
    /// Creates the first file (errors come back here) and the thread.
    pub fn create(rotation: Rotation) -> io::Result<RotatingLines> {
        let dir = rotation.dir.clone();
        let flush = rotation.flush;
        let mut writer = Writer::open(rotation)?;
        let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(1024);
        let thread = thread::Builder::new()
            .name("fraudflow:lines".into())
            .spawn(move || {
                let mut flushed = Instant::now();
                loop {
                    let wait = flush.saturating_sub(flushed.elapsed());
                    match receiver.recv_timeout(wait) {
                        Ok(lines) => writer.write(&lines)?,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if flushed.elapsed() >= flush {
                        writer.out.flush()?;
                        flushed = Instant::now();
                    }
                }
                writer.out.flush()?;
                writer.out.get_ref().sync_all()?;
                Ok(writer.lines)
            })?;
        Ok(RotatingLines {
            sender: Some(sender),
            thread: Some(thread),
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues whole lines. An error is the one the writer thread stopped
    /// on.
    pub fn write(&mut self, lines: Vec<u8>) -> io::Result<()> {
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        if sender.send(lines).is_err() {
            return Err(self.stop().err().unwrap_or_else(stopped));
        }
        Ok(())
    }

    /// Flushes and closes; returns the lines written, or the first error.
    pub fn close(mut self) -> io::Result<u64> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<u64> {
        self.sender.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
            None => Err(stopped()),
        }
    }
}

impl Drop for RotatingLines {
    /// What was queued reaches the file even when the run failed.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn stopped() -> io::Error {
    io::Error::other("the writer thread has stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(dir: &Path, max_bytes: u64) -> Rotation {
        Rotation {
            dir: dir.to_path_buf(),
            prefix: "alerts".into(),
            process: 0,
            max_bytes,
            flush: Duration::from_millis(20),
        }
    }

    #[test]
    fn files_rotate_by_size_and_keep_every_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = RotatingLines::create(rotation(dir.path(), 100)).unwrap();
        for i in 0..50 {
            lines
                .write(format!("{{\"n\":{i:04}}}\n").into_bytes())
                .unwrap();
        }
        assert_eq!(lines.close().unwrap(), 50);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        // 11 bytes a line, at most 100 bytes a file: 9 lines a file.
        assert_eq!(names.len(), 6);
        let all: String = names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let expected: String = (0..50).map(|i| format!("{{\"n\":{i:04}}}\n")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn lines_reach_the_file_within_the_flush_interval_and_runs_do_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = RotatingLines::create(rotation(dir.path(), 1 << 20)).unwrap();
        first.write(b"{\"a\":1}\n".to_vec()).unwrap();
        let path = dir.path().join("alerts-0-000001.jsonl");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read(&path).unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n");
        first.close().unwrap();
        // A gap left by a removed file is not reused.
        std::fs::rename(&path, dir.path().join("alerts-0-000007.jsonl")).unwrap();
        let second = RotatingLines::create(rotation(dir.path(), 1 << 20)).unwrap();
        second.close().unwrap();
        assert!(dir.path().join("alerts-0-000008.jsonl").exists());
    }
}
