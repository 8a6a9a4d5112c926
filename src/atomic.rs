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
        Ok(())
    }
}

impl Drop for AtomicPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
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
        let mut file = AtomicFile::create(path)?;
        let (sender, receiver) = mpsc::sync_channel(depth);
        let thread = thread::Builder::new()
            .name("fraudflow:writer".to_string())
            .spawn(move || {
                for chunk in receiver {
                    match chunk {
                        Chunk::Bytes(bytes) => file.writer().write_all(&bytes)?,
                        Chunk::Commit => return file.commit().map(|()| true),
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

/// A JSON-lines file written atomically by a sink: the first write error is
/// kept and reported when the file is committed, so an operator never
/// panics on I/O.
pub struct JsonLines {
    file: AtomicFile,
    lines: u64,
    error: Option<String>,
}

impl JsonLines {
    pub fn create(path: &Path) -> Result<JsonLines, String> {
        Ok(JsonLines {
            file: AtomicFile::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
            lines: 0,
            error: None,
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
            Err(e) => self.error = Some(format!("{}: {e}", self.file.path().display())),
        }
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Renames the file into place, or names the first error.
    pub fn commit(self) -> Result<u64, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let path = self.file.path().display().to_string();
        self.file
            .commit()
            .map_err(|e| format!("{path}: {e}"))
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
