//! Files that appear whole or not at all: written beside their final name,
//! synced, then renamed into place. A failed run leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

/// A temporary file beside `path`, removed on drop unless committed.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.txt");
/// let (guard, mut file) = fraudflow::atomic::AtomicPath::create(&path).unwrap();
/// file.write_all(b"whole").unwrap();
/// assert!(!path.exists());
/// guard.commit(file).unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"whole");
/// ```
pub struct AtomicPath {
    path: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl AtomicPath {
    /// Creates the directory if needed and the temporary file.
    pub fn create(path: &Path) -> io::Result<(AtomicPath, File)> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file name", path.display()),
            )
        })?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp)?;
        pending().push(tmp.clone());
        Ok((
            AtomicPath {
                path: path.to_path_buf(),
                tmp,
                committed: false,
            },
            file,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs `file` and renames it into place.
    pub fn commit(mut self, file: File) -> io::Result<()> {
        file.sync_all()?;
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        forget_pending(&self.tmp);
        Ok(())
    }
}

impl Drop for AtomicPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
            forget_pending(&self.tmp);
        }
    }
}

/// The temporary files of this process not yet committed or dropped.
fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

fn forget_pending(tmp: &Path) {
    pending().retain(|p| p != tmp);
}

/// Removes every temporary file of this process that is still pending: for
/// a process about to exit without running its destructors (a failed run
/// of several processes, see `pipeline::harness`).
pub fn remove_pending() {
    for tmp in pending().drain(..) {
        let _ = fs::remove_file(tmp);
    }
}

/// A buffered [`AtomicPath`].
pub struct AtomicFile {
    guard: AtomicPath,
    out: BufWriter<File>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let (guard, file) = AtomicPath::create(path)?;
        Ok(AtomicFile {
            guard,
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.out
    }

    /// Flushes, syncs and renames into place.
    pub fn commit(self) -> io::Result<()> {
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        self.guard.commit(file)
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

/// An [`AtomicFile`] written by a thread of its own: the caller hands over
/// buffers and goes on. The kernel's copy into the page cache and the final
/// sync then run beside the dataflow's workers, in the time they wait on
/// each other, instead of on one of them. At most `depth` buffers wait.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.csv");
/// let mut file = fraudflow::atomic::BackgroundFile::create(&path, 4).unwrap();
/// file.write(b"a,b\n".to_vec()).unwrap();
/// file.write(b"1,2\n".to_vec()).unwrap();
/// assert!(!path.exists());
/// file.commit().unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"a,b\n1,2\n");
/// ```
pub struct BackgroundFile {
    path: PathBuf,
    sender: mpsc::SyncSender<Chunk>,
    /// Whether the file was committed, or the write error that stopped it.
    thread: thread::JoinHandle<io::Result<bool>>,
}

enum Chunk {
    Bytes(Vec<u8>),
    /// Everything is written: sync and rename. A writer that stops before
    /// this leaves no file.
    Commit,
}

impl BackgroundFile {
    /// Creates the temporary file (errors come back here) and the thread.
    pub fn create(path: &Path, depth: usize) -> io::Result<BackgroundFile> {
        let (guard, file) = AtomicPath::create(path)?;
        let mut out = Unbuffered::open(&guard.tmp, file);
        let (sender, receiver) = mpsc::sync_channel(depth);
        let thread = thread::Builder::new()
            .name("fraudflow:writer".to_string())
            .spawn(move || {
                for chunk in receiver {
                    match chunk {
                        Chunk::Bytes(bytes) => out.write_all(&bytes)?,
                        Chunk::Commit => return guard.commit(out.finish()?).map(|()| true),
                    }
                }
                Ok(false)
            })?;
        Ok(BackgroundFile {
            path: path.to_path_buf(),
            sender,
            thread,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `bytes`, waiting while `depth` buffers are queued. An error
    /// means the thread has stopped; [`BackgroundFile::commit`] says why.
    pub fn write(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.sender
            .send(Chunk::Bytes(bytes))
            .map_err(|_| io::Error::other("the writer thread has stopped"))
    }

    /// Waits for every queued buffer, then syncs and renames into place;
    /// or returns the first write error.
    pub fn commit(self) -> io::Result<()> {
        // A failed send means the thread has already stopped, on the error
        // that `join` returns.
        let _ = self.sender.send(Chunk::Commit);
        match Self::join(self.thread)? {
            true => Ok(()),
            false => Err(io::Error::other("the writer stopped before the end")),
        }
    }

    /// Stops the thread without committing (no file is left) and returns
    /// the write error it had stopped on, if any.
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

/// Alignment of unbuffered writes: a multiple of any disk's logical block.
const ALIGN: usize = 4096;
/// Bytes gathered before each unbuffered write.
const BLOCK: usize = 4 << 20;

/// A file written in whole aligned blocks that bypass the page cache
/// (`O_DIRECT` on Linux), so the kernel does not copy every byte: for a
/// large output that copy costs more CPU than the formatting that made it.
/// Where the file system refuses, the bytes go through the page cache as
/// usual.
struct Unbuffered {
    /// The file opened for unbuffered writes, if the system allows it.
    direct: Option<File>,
    /// The same file, opened as usual: the fallback, and what is synced.
    plain: BufWriter<File>,
    block: Vec<u8>,
    /// Where the aligned region of `block` starts.
    start: usize,
    held: usize,
    /// Bytes written unbuffered, padding included.
    written: u64,
}

impl Unbuffered {
    fn open(path: &Path, plain: File) -> Unbuffered {
        let direct = Self::open_direct(path).ok();
        let block = if direct.is_some() {
            vec![0; BLOCK + ALIGN]
        } else {
            Vec::new()
        };
        let start = block.as_ptr().align_offset(ALIGN).min(ALIGN);
        Unbuffered {
            direct,
            plain: BufWriter::with_capacity(1 << 20, plain),
            block,
            start,
            held: 0,
            written: 0,
        }
    }

    #[cfg(target_os = "linux")]
    fn open_direct(path: &Path) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
    }

    #[cfg(not(target_os = "linux"))]
    fn open_direct(_path: &Path) -> io::Result<File> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.direct.is_none() {
            return self.plain.write_all(bytes);
        }
        while !bytes.is_empty() {
            let n = (BLOCK - self.held).min(bytes.len());
            let at = self.start + self.held;
            self.block[at..at + n].copy_from_slice(&bytes[..n]);
            self.held += n;
            bytes = &bytes[n..];
            if self.held == BLOCK {
                self.flush_block(BLOCK)?;
            }
        }
        Ok(())
    }

    /// Writes the first `len` (aligned) bytes of the block.
    fn flush_block(&mut self, len: usize) -> io::Result<()> {
        let Some(direct) = self.direct.as_mut() else {
            return Ok(());
        };
        let data = &self.block[self.start..self.start + len];
        match direct.write_all(data) {
            Ok(()) => {
                self.written += len as u64;
                self.held = 0;
                Ok(())
            }
            // Opened, but refused at the first write: write as usual.
            Err(e) if self.written == 0 && e.kind() == io::ErrorKind::InvalidInput => {
                self.direct = None;
                let held = self.start..self.start + self.held;
                self.plain.write_all(&self.block[held])?;
                self.held = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes what is held (padded to the alignment, then cut back) and
    /// returns the file to sync.
    fn finish(mut self) -> io::Result<File> {
        if self.direct.is_some() && self.held > 0 {
            let held = self.held;
            let padded = held.next_multiple_of(ALIGN);
            self.block[self.start + held..self.start + padded].fill(0);
            self.flush_block(padded)?;
            if let Some(direct) = &self.direct {
                direct.set_len(self.written - (padded - held) as u64)?;
            }
        }
        self.plain
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}

/// A JSON-lines file written atomically by a sink: the first write error is
/// kept and reported when the file is committed, so an operator never
/// panics on I/O.
pub struct JsonLines {
    file: AtomicFile,
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
    pub fn create(path: &Path) -> Result<JsonLines, WriteError> {
        Ok(JsonLines {
            file: AtomicFile::create(path).map_err(|cause| WriteError {
                path: path.to_path_buf(),
                cause,
            })?,
            lines: 0,
            error: None,
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
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
        let out = self.file.writer();
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

    /// Renames the file into place, or names the first error.
    pub fn commit(self) -> Result<u64, WriteError> {
        let path = self.file.path().to_path_buf();
        if let Some(cause) = self.error {
            return Err(WriteError { path, cause });
        }
        self.file
            .commit()
            .map_err(|cause| WriteError { path, cause })
            .map(|()| self.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_background_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut file = BackgroundFile::create(&path, 2).unwrap();
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
        let mut file = BackgroundFile::create(&path, 4).unwrap();
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
        file.commit().unwrap();
        let got = fs::read(&path).unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes differ");
    }

    #[test]
    fn a_committed_background_file_holds_every_buffer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut file = BackgroundFile::create(&path, 1).unwrap();
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let line = format!("{i}\n").into_bytes();
            expected.extend_from_slice(&line);
            file.write(line).unwrap();
        }
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), expected);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
