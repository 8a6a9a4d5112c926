//! A local, append-only outbox: messages accepted while the broker cannot
//! take them, kept on disk (each append synced before it is
//! acknowledged) until they are published, in order.
//!
//! Why: `POST /feedback` answers 202 only once a label is durable. When the
//! broker is down the label goes here; a publisher drains the outbox, oldest
//! first, when the broker returns, and while anything waits here new
//! messages queue behind it, so the topic sees them in the order they were
//! accepted. A crash between publishing and dropping published lines
//! publishes them again: at least once, which the feedback join tolerates
//! (a duplicate label is counted, the last one wins).
//!
//! The file holds one message a line. A line cut short by a crash (no
//! newline at the end) was never acknowledged, and is dropped on open. An
//! append that fails part-way (a full disk) is refused, and the file is
//! written again whole before anything is appended after it: otherwise the
//! next message would continue the torn line, and be lost with it.
//!
//! One run at a time keeps an outbox: a second, on the same models
//! directory, is refused (a lock beside the file, `PATH.lock`). Its rewrite
//! would replace the file under the first run's appends.
//!
//! ```
//! use fraudflow::kafka::outbox::Outbox;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("feedback.outbox");
//! let outbox = Outbox::open(&path).unwrap();
//! outbox.append(b"{\"label\":\"fraud\"}").unwrap();
//! outbox.append(b"{\"label\":\"legit\"}").unwrap();
//! // Another run may not keep it meanwhile.
//! assert!(Outbox::open(&path).unwrap_err().to_string().contains("another run"));
//! // A restart finds both, in order.
//! drop(outbox);
//! let again = Outbox::open(&path).unwrap();
//! assert_eq!(again.pending().len(), 2);
//! again.drop_first(1).unwrap();
//! drop(again);
//! assert_eq!(Outbox::open(&path).unwrap().pending(), vec![b"{\"label\":\"legit\"}".to_vec()]);
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::atomic::{AtomicFile, OutputError};

/// The outbox could not keep or drop a message.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("outbox: {0}")]
    Output(#[from] OutputError),
    #[error("outbox {path}: a message may not hold a newline")]
    Newline { path: PathBuf },
    #[error(
        "outbox {path}: another run keeps it (its lock {lock} is held): one run at a time \
         on a models directory"
    )]
    Locked { path: PathBuf, lock: PathBuf },
}

/// Messages waiting for the broker, in the order they were accepted.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    state: Mutex<State>,
    /// How many messages wait, readable without the lock (which an append
    /// holds through its fsync): for `/metrics`.
    waiting: AtomicUsize,
    /// Held while this outbox is open: no other run keeps the file.
    _lock: File,
}

#[derive(Debug)]
struct State {
    file: File,
    pending: Vec<Vec<u8>>,
    /// An append failed part-way: the file must be written whole again
    /// before the next one.
    torn: bool,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`, with what a previous run
    /// left in it.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        let io = |source| OutboxError::Io {
            path: path.to_path_buf(),
            source,
        };
        let lock = lock_beside(path)?;
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let pending: Vec<Vec<u8>> = text[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let mut state = State {
            file: open_append(path).map_err(io)?,
            pending: Vec::new(),
            torn: false,
        };
        // Rewritten whole: a torn last line is gone from the file too.
        rewrite(path, &mut state, pending)?;
        Ok(Outbox {
            path: path.to_path_buf(),
            waiting: AtomicUsize::new(state.pending.len()),
            state: Mutex::new(state),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `message` and syncs it to disk before returning.
    pub fn append(&self, message: &[u8]) -> Result<(), OutboxError> {
        if message.contains(&b'\n') {
            return Err(OutboxError::Newline {
                path: self.path.clone(),
            });
        }
        let mut state = self.lock();
        if state.torn {
            let pending = state.pending.clone();
            rewrite(&self.path, &mut state, pending)?;
            state.torn = false;
        }
        let mut line = Vec::with_capacity(message.len() + 1);
        line.extend_from_slice(message);
        line.push(b'\n');
        let written = state
            .file
            .write_all(&line)
            .and_then(|()| state.file.sync_data());
        if let Err(source) = written {
            state.torn = true;
            return Err(OutboxError::Io {
                path: self.path.clone(),
                source,
            });
        }
        state.pending.push(message.to_vec());
        self.waiting.store(state.pending.len(), Ordering::Relaxed);
        Ok(())
    }

    /// The waiting messages, oldest first.
    pub fn pending(&self) -> Vec<Vec<u8>> {
        self.lock().pending.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many messages wait, without waiting for an append or a
    /// rewrite under way.
    pub fn len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Drops the `n` oldest messages (they were published): the file is
    /// rewritten atomically without them.
    pub fn drop_first(&self, n: usize) -> Result<(), OutboxError> {
        // Held throughout: an append meanwhile must not be lost.
        let mut state = self.lock();
        let rest = state.pending[n.min(state.pending.len())..].to_vec();
        rewrite(&self.path, &mut state, rest)?;
        self.waiting.store(state.pending.len(), Ordering::Relaxed);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Replaces the file at `path` and the pending list with `messages`,
/// whole or not at all ([`AtomicFile`]: synced, then renamed over it).
fn rewrite(path: &Path, state: &mut State, messages: Vec<Vec<u8>>) -> Result<(), OutboxError> {
    let mut file = AtomicFile::create(path)?;
    let io = |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    };
    for m in &messages {
        file.writer().write_all(m).map_err(io)?;
        file.writer().write_all(b"\n").map_err(io)?;
    }
    file.commit()?;
    state.file = open_append(path).map_err(io)?;
    state.pending = messages;
    Ok(())
}

/// Takes the lock beside `path` (`PATH.lock`), or says which run has it.
fn lock_beside(path: &Path) -> Result<File, OutboxError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = PathBuf::from(name);
    let io = |source| OutboxError::Io {
        path: lock.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OutboxError::Locked {
            path: path.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_was_never_acknowledged_and_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        std::fs::write(&path, b"one\ntwo\nthr").unwrap();
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.pending(), vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(outbox.len(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        outbox.append(b"three").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\nthree\n");
    }

    #[test]
    fn appends_after_a_drop_keep_their_order_and_a_newline_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let outbox = Outbox::open(&path).unwrap();
        for m in ["a", "b", "c"] {
            outbox.append(m.as_bytes()).unwrap();
        }
        assert_eq!(outbox.len(), 3);
        outbox.drop_first(2).unwrap();
        outbox.append(b"d").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"c\nd\n");
        assert_eq!(outbox.len(), 2);
        outbox.drop_first(5).unwrap();
        assert!(outbox.is_empty());
        assert_eq!(outbox.len(), 0);
        assert!(matches!(
            outbox.append(b"x\ny"),
            Err(OutboxError::Newline { .. })
        ));
        drop(outbox);
        assert!(Outbox::open(&path).unwrap().is_empty());
    }

    /// A write that fails part-way (simulated: a torn line left in the
    /// file) is refused, and the next append writes the file whole first,
    /// so the next message does not continue the torn line.
    #[test]
    fn an_append_after_a_failed_one_does_not_continue_its_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let outbox = Outbox::open(&path).unwrap();
        outbox.append(b"one").unwrap();
        // What a full disk leaves: part of a line, and the append refused.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"tw")
            .unwrap();
        outbox.lock().torn = true;
        outbox.append(b"three").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\nthree\n");
        drop(outbox);
        let again = Outbox::open(&path).unwrap();
        assert_eq!(again.pending(), vec![b"one".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn an_outbox_that_cannot_be_written_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let err = Outbox::open(&dir.path().join("missing").join("o")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
