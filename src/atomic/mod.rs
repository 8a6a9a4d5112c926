//! Outputs that appear whole or not at all, and never in place of an
//! input or a device.
//!
//! Every command opens its outputs here, so one set of rules holds for all:
//!
//! - before work starts, [`OutputPlan::check`] refuses an output that is an
//!   input or another output (by canonical path and file identity), a
//!   directory, a socket, or a path under a file ([`target`]);
//! - a regular file is written under a temporary name beside its final one
//!   and synced; standard output (`-`), a FIFO or a device is written where
//!   it is, never replaced;
//! - a run's files are renamed into place together, after all of them are
//!   complete, and a manifest written last names the set ([`group`]);
//! - temporary files of killed runs are removed by the next run writing
//!   into the same directory ([`stale`]).

pub mod group;
mod stale;
pub mod target;
mod unbuffered;

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

pub use group::{Manifest, ManifestFile, OutputFile, OutputGroup};
pub use target::{classify, is_stdout, make_dir, OutputError, OutputPlan, Target};
use unbuffered::Unbuffered;

/// The temporary files of this process not yet renamed or removed.
fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

fn forget_pending(tmp: &Path) {
    pending().retain(|p| p != tmp);
}

/// Set by [`remove_pending`]: the process is about to exit, and creates
/// no temporary file any more.
static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn ending() -> bool {
    ENDING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Removals of a scratch directory tried by [`remove_pending`].
const REMOVAL_TRIES: usize = 8;

/// The scratch directories of this process not yet removed.
fn pending_dirs() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Has [`remove_pending`] remove `dir` (and all it holds) unless
/// [`forget_dir`] is called first: a scratch directory that its owner
/// removes when dropped, which a process exiting at once would skip.
pub fn remove_dir_on_exit(dir: &Path) {
    pending_dirs().push(dir.to_path_buf());
}

/// `dir` was removed by its owner.
pub fn forget_dir(dir: &Path) {
    pending_dirs().retain(|p| p != dir);
}

/// Removes every temporary file and scratch directory of this process that
/// is still pending: for a process about to exit without running its
/// destructors (a failed run of several processes, see
/// `pipeline::harness`).
pub fn remove_pending() {
    let mut files = pending();
    ENDING.store(true, std::sync::atomic::Ordering::SeqCst);
    for tmp in files.drain(..) {
        let _ = std::fs::remove_file(tmp);
    }
    drop(files);
    for dir in pending_dirs().drain(..) {
        // Workers still running may create a file in it while its entries
        // are removed, which fails the removal: tried again, a few times.
        for _ in 0..REMOVAL_TRIES {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => continue,
                _ => break,
            }
        }
    }
}

/// One buffered output committed alone: a group of one file.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.txt");
/// let mut file = fraudflow::atomic::AtomicFile::create(&path).unwrap();
/// file.write_all(b"whole").unwrap();
/// assert!(!path.exists());
/// file.commit().unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"whole");
/// ```
pub struct AtomicFile {
    group: OutputGroup,
    out: BufWriter<OutputFile>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, OutputError> {
        let group = OutputGroup::new();
        let file = group.create(path)?;
        Ok(AtomicFile {
            group,
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    pub fn path(&self) -> &Path {
        self.out.get_ref().path()
    }

    pub fn writer(&mut self) -> &mut BufWriter<OutputFile> {
        &mut self.out
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(self) -> Result<(), OutputError> {
        let path = self.path().to_path_buf();
        let io = |cause| OutputError::io(&path, cause);
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.finish().map_err(io)?;
        self.group.commit()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// An [`OutputFile`] written by a thread of its own: the caller hands over
/// buffers and goes on. The kernel's copy into the page cache and the final
/// sync then run beside the dataflow's workers, in the time they wait on
/// each other, instead of on one of them. At most `depth` buffers wait.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.csv");
/// let group = fraudflow::atomic::OutputGroup::new();
/// let mut file = fraudflow::atomic::BackgroundFile::create(group.create(&path).unwrap(), 4).unwrap();
/// file.write(b"a,b\n".to_vec()).unwrap();
/// file.write(b"1,2\n".to_vec()).unwrap();
/// file.finish().unwrap();
/// assert!(!path.exists());
/// group.commit().unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"a,b\n1,2\n");
/// ```
pub struct BackgroundFile {
    path: PathBuf,
    sender: mpsc::SyncSender<Chunk>,
    /// Whether the file was finished, or the write error that stopped it.
    thread: thread::JoinHandle<io::Result<bool>>,
}

enum Chunk {
    Bytes(Vec<u8>),
    /// Everything is written: flush and sync. A writer that stops before
    /// this leaves no file.
    Finish,
}

impl BackgroundFile {
    /// Starts the thread that writes `file`.
    pub fn create(file: OutputFile, depth: usize) -> io::Result<BackgroundFile> {
        let path = file.path().to_path_buf();
        let mut out = Unbuffered::open(file);
        let (sender, receiver) = mpsc::sync_channel(depth);
        let thread = thread::Builder::new()
            .name("fraudflow:writer".to_string())
            .spawn(move || {
                for chunk in receiver {
                    match chunk {
                        Chunk::Bytes(bytes) => out.write_all(&bytes)?,
                        Chunk::Finish => return out.finish()?.finish().map(|_| true),
                    }
                }
                Ok(false)
            })?;
        Ok(BackgroundFile {
            path,
            sender,
            thread,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `bytes`, waiting while `depth` buffers are queued. An error
    /// means the thread has stopped; [`BackgroundFile::finish`] says why.
    pub fn write(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.sender
            .send(Chunk::Bytes(bytes))
            .map_err(|_| io::Error::other("the writer thread has stopped"))
    }

    /// Waits for every queued buffer, then flushes and syncs (the group
    /// renames); or returns the first write error.
    pub fn finish(self) -> io::Result<()> {
        // A failed send means the thread has already stopped, on the error
        // that `join` returns.
        let _ = self.sender.send(Chunk::Finish);
        match Self::join(self.thread)? {
            true => Ok(()),
            false => Err(io::Error::other("the writer stopped before the end")),
        }
    }

    /// Stops the thread without finishing (its temporary file goes) and
    /// returns the write error it had stopped on, if any.
    pub fn abandon(self) -> io::Result<()> {
        drop(self.sender);
        Self::join(self.thread).map(|_| ())
    }

    fn join(thread: thread::JoinHandle<io::Result<bool>>) -> io::Result<bool> {
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")))
    }
}

/// A JSON-lines output of a sink: the first write error is kept and
/// reported when the file is finished, so an operator never panics on I/O.
pub struct JsonLines {
    file: BufWriter<OutputFile>,
    lines: u64,
    error: Option<io::Error>,
}

/// A file that could not be written, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {cause}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub cause: io::Error,
}

impl JsonLines {
    pub fn create(group: &OutputGroup, path: &Path) -> Result<JsonLines, OutputError> {
        Ok(JsonLines {
            file: BufWriter::with_capacity(1 << 20, group.create(path)?),
            lines: 0,
            error: None,
        })
    }

    pub fn path(&self) -> &Path {
        self.file.get_ref().path()
    }

    /// The first write error, if one happened: a sink checks after each
    /// batch, to end the run at once.
    pub fn failed(&self) -> Option<WriteError> {
        self.error.as_ref().map(|e| WriteError {
            path: self.path().to_path_buf(),
            cause: io::Error::new(e.kind(), e.to_string()),
        })
    }

    /// Appends one value as a line.
    pub fn push<T: serde::Serialize>(&mut self, value: &T) {
        if self.error.is_some() {
            return;
        }
        let out = &mut self.file;
        let result = serde_json::to_writer(&mut *out, value)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        match result {
            Ok(()) => self.lines += 1,
            Err(e) => self.error = Some(e),
        }
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes and syncs (the group renames), or names the first error.
    pub fn finish(self) -> Result<u64, WriteError> {
        let path = self.path().to_path_buf();
        let error = |cause| WriteError {
            path: path.clone(),
            cause,
        };
        if let Some(cause) = self.error {
            return Err(error(cause));
        }
        let file = self.file.into_inner().map_err(|e| error(e.into_error()))?;
        file.finish().map_err(error).map(|_| self.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use unbuffered::BLOCK;

    #[test]
    fn an_abandoned_background_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut file =
            BackgroundFile::create(OutputGroup::new().create(&path).unwrap(), 2).unwrap();
        for _ in 0..10 {
            file.write(vec![b'x'; 1000]).unwrap();
        }
        file.abandon().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn blocks_and_an_unaligned_tail_come_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let group = OutputGroup::new();
        let mut file = BackgroundFile::create(group.create(&path).unwrap(), 4).unwrap();
        let mut expected = Vec::new();
        // Two whole blocks and a tail that is not a multiple of ALIGN, in
        // pieces that straddle the block boundaries.
        let mut i = 0u32;
        while expected.len() < 2 * BLOCK + 12_345 {
            let piece: Vec<u8> = (0..7_919u32)
                .map(|k| (i.wrapping_mul(31) ^ k) as u8)
                .collect();
            expected.extend_from_slice(&piece);
            file.write(piece).unwrap();
            i += 1;
        }
        file.finish().unwrap();
        group.commit().unwrap();
        let got = fs::read(&path).unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes differ");
    }

    #[test]
    fn a_committed_background_file_holds_every_buffer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let group = OutputGroup::new();
        let mut file = BackgroundFile::create(group.create(&path).unwrap(), 1).unwrap();
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let line = format!("{i}\n").into_bytes();
            expected.extend_from_slice(&line);
            file.write(line).unwrap();
        }
        file.finish().unwrap();
        group.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), expected);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
