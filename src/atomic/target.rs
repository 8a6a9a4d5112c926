//! What an output path names, and whether writing it is safe, decided
//! before any work starts.
//!
//! Why: a rename into place replaces whatever the final name held. Aimed at
//! the input, it destroys the input; aimed at `/dev/full` or a FIFO, it
//! replaces the device or the pipe with a regular file. So every output is
//! classified first (a file to stage and rename, standard output, or a
//! device or FIFO written where it is), and a command's outputs are
//! compared with its inputs and with each other by canonical path and by
//! file identity (device and inode), which sees through symbolic links,
//! hard links and `..`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why an output cannot be written, each naming the path at fault.
#[derive(Debug, Error)]
pub enum OutputError {
    /// A directory on the way to the output is a file.
    #[error("cannot create output {}: {} is a {kind}, not a directory", path.display(), blocker.display())]
    NotADirectory {
        path: PathBuf,
        blocker: PathBuf,
        /// What the blocker is: `file`, `character device`, `FIFO`, ...
        kind: &'static str,
    },
    /// The output names a directory where a file is written.
    #[error("cannot write output {}: it is a directory; name a file", path.display())]
    IsADirectory { path: PathBuf },
    /// A socket or another file that cannot be written as a stream.
    #[error("cannot write output {}: it is a {kind}; name a file, a FIFO or a device", path.display())]
    Unwritable { path: PathBuf, kind: &'static str },
    /// The directory that would hold the output cannot be made.
    #[error("cannot create output {}: cannot create directory {}: {cause}", path.display(), dir.display())]
    CreateDir {
        path: PathBuf,
        dir: PathBuf,
        cause: io::Error,
    },
    /// An output is one of the inputs.
    #[error("{output_role} {} is the same file as {input_role} {}: writing it would destroy the input; name another output", output.display(), input.display())]
    NamesInput {
        output_role: String,
        output: PathBuf,
        input_role: String,
        input: PathBuf,
    },
    /// Two outputs are one file: one would overwrite the other.
    #[error("{first_role} {} and {second_role} {} are the same file; name two different files", first.display(), second.display())]
    SameFile {
        first_role: String,
        first: PathBuf,
        second_role: String,
        second: PathBuf,
    },
    /// Standard output takes a single stream, not a directory of files.
    #[error("{other_role} {} lies in {}, which {role} empties and removes; put it elsewhere", other.display(), dir.display())]
    InScratch {
        role: String,
        dir: PathBuf,
        other_role: String,
        other: PathBuf,
    },
    #[error("{role}: standard output cannot hold a directory of files; name a directory")]
    StdoutDirectory { role: String },
    /// Opening, writing, syncing or renaming failed.
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
}

impl OutputError {
    /// An I/O failure on the output `path`.
    pub fn io(path: &Path, cause: io::Error) -> OutputError {
        OutputError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// What an output path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A regular file, or nothing yet: written beside `at` and renamed onto
    /// it (`at` is a symbolic link's target, so the link stays a link).
    Staged { at: PathBuf },
    /// The process's standard output: `-` or `/dev/stdout`.
    Stdout,
    /// A FIFO or a device: opened and written where it is, never replaced.
    Direct,
}

/// Whether `path` names standard output.
pub fn is_stdout(path: &Path) -> bool {
    ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|name| path == Path::new(name))
}

/// The first existing ancestor of `path` (its parent, or above) when that
/// is not a directory, and what it is: what makes creating `path` fail
/// with "File exists" or "Not a directory".
fn blocking_file(path: &Path) -> Option<(PathBuf, &'static str)> {
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        match fs::metadata(d) {
            Ok(m) => return (!m.is_dir()).then(|| (d.to_path_buf(), kind_of(&m))),
            Err(_) => dir = d.parent(),
        }
    }
    None
}

/// What a file that is not a directory is, for messages.
#[cfg(unix)]
fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_char_device() => "character device",
        _ if t.is_block_device() => "block device",
        _ if t.is_fifo() => "FIFO",
        _ if t.is_socket() => "socket",
        _ => "file",
    }
}

#[cfg(not(unix))]
fn kind_of(_meta: &fs::Metadata) -> &'static str {
    "file"
}

/// A path under `blocker` cannot be created.
fn blocked(path: &Path, (blocker, kind): (PathBuf, &'static str)) -> OutputError {
    OutputError::NotADirectory {
        path: path.to_path_buf(),
        blocker,
        kind,
    }
}

/// Classifies the output `path` (see [`Target`]); refuses a directory, a
/// socket, and a path under a file.
pub fn classify(path: &Path) -> Result<Target, OutputError> {
    if is_stdout(path) {
        return Ok(Target::Stdout);
    }
    if let Some(found) = blocking_file(path) {
        return Err(blocked(path, found));
    }
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if path.file_name().is_none() {
                return Err(OutputError::IsADirectory {
                    path: path.to_path_buf(),
                });
            }
            return Ok(Target::Staged {
                at: path.to_path_buf(),
            });
        }
        Err(cause) => return Err(OutputError::io(path, cause)),
    };
    let kind = meta.file_type();
    if kind.is_file() {
        let at = fs::canonicalize(path).map_err(|e| OutputError::io(path, e))?;
        return Ok(Target::Staged { at });
    }
    if kind.is_dir() {
        return Err(OutputError::IsADirectory {
            path: path.to_path_buf(),
        });
    }
    special(path, kind)
}

#[cfg(unix)]
fn special(path: &Path, kind: fs::FileType) -> Result<Target, OutputError> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
        return Ok(Target::Direct);
    }
    let kind = if kind.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(OutputError::Unwritable {
        path: path.to_path_buf(),
        kind,
    })
}

#[cfg(not(unix))]
fn special(path: &Path, _kind: fs::FileType) -> Result<Target, OutputError> {
    Err(OutputError::Unwritable {
        path: path.to_path_buf(),
        kind: "special file",
    })
}

/// Creates the directory that will hold the file `path`, naming what is
/// wrong when it cannot be made.
pub fn make_parent(path: &Path) -> Result<(), OutputError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|cause| match blocking_file(path) {
        Some(found) => blocked(path, found),
        None => OutputError::CreateDir {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            cause,
        },
    })
}

/// Creates the output directory `dir` (a run's files go into it), naming
/// what is wrong when it cannot be made: a file in its place or above it.
pub fn make_dir(role: &str, dir: &Path) -> Result<(), OutputError> {
    if is_stdout(dir) {
        return Err(OutputError::StdoutDirectory { role: role.into() });
    }
    // A file named like the directory blocks it just as a parent would.
    make_parent(&dir.join("x")).map_err(|e| match e {
        OutputError::NotADirectory { blocker, kind, .. } => blocked(dir, (blocker, kind)),
        OutputError::CreateDir { cause, .. } => OutputError::CreateDir {
            path: dir.to_path_buf(),
            dir: dir.to_path_buf(),
            cause,
        },
        other => other,
    })
}

/// A path made absolute with its symbolic links resolved as far as it
/// exists; the rest, not yet created, appended as written.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut base = absolute.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut found) = fs::canonicalize(&base) {
            found.extend(rest.iter().rev());
            return found;
        }
        match (base.file_name(), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                base = parent.to_path_buf();
            }
            _ => return absolute,
        }
    }
}

/// What makes two paths the same file.
struct Identity {
    path: PathBuf,
    /// Device and inode, when the file exists.
    inode: Option<(u64, u64)>,
    /// A character device (`/dev/null`, a terminal): any number of streams
    /// may share one without harm.
    shareable: bool,
}

impl Identity {
    fn of(path: &Path) -> Identity {
        let (path, meta) = if is_stdout(path) {
            (PathBuf::from("/dev/stdout"), fs::metadata("/dev/stdout"))
        } else {
            (resolved(path), fs::metadata(path))
        };
        let meta = meta.ok();
        Identity {
            inode: meta.as_ref().and_then(inode),
            shareable: meta.as_ref().is_some_and(is_char_device),
            path,
        }
    }

    fn same(&self, other: &Identity) -> bool {
        if self.shareable || other.shareable {
            return false;
        }
        self.path == other.path || (self.inode.is_some() && self.inode == other.inode)
    }
}

#[cfg(unix)]
fn inode(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn inode(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(unix)]
fn is_char_device(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device()
}

#[cfg(not(unix))]
fn is_char_device(_meta: &fs::Metadata) -> bool {
    false
}

/// A command's inputs and outputs, each with the flag (or role) that named
/// it, checked together before any work starts.
///
/// ```
/// use fraudflow::atomic::OutputPlan;
/// let dir = tempfile::tempdir().unwrap();
/// let input = dir.path().join("in.csv");
/// std::fs::write(&input, "x").unwrap();
/// let same = dir.path().join(".").join("in.csv");
/// let plan = OutputPlan::default().input("--input", &input).output("--out", &same);
/// assert!(plan.check().unwrap_err().to_string().contains("would destroy the input"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct OutputPlan {
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<(String, PathBuf)>,
    dirs: Vec<(String, PathBuf)>,
    scratch: Vec<(String, PathBuf)>,
}

impl OutputPlan {
    /// A file the command reads.
    pub fn input(mut self, role: &str, path: impl AsRef<Path>) -> OutputPlan {
        self.inputs.push((role.into(), path.as_ref().to_path_buf()));
        self
    }

    /// A file the command writes.
    pub fn output(mut self, role: &str, path: impl AsRef<Path>) -> OutputPlan {
        self.outputs
            .push((role.into(), path.as_ref().to_path_buf()));
        self
    }

    /// A directory any file of which the command may replace (the models'
    /// `metrics/`): no input may lie in it.
    pub fn output_dir(mut self, role: &str, path: impl AsRef<Path>) -> OutputPlan {
        self.dirs.push((role.into(), path.as_ref().to_path_buf()));
        self
    }

    /// A directory the command empties while it runs and removes at the
    /// end (a backtest's `.evaluation-pP`): no input or other output may
    /// lie in it.
    ///
    /// ```
    /// use fraudflow::atomic::OutputPlan;
    /// let dir = tempfile::tempdir().unwrap();
    /// let scratch = dir.path().join("out/.scratch");
    /// let plan = OutputPlan::default().scratch_dir("the run", &scratch);
    /// let inside = plan.clone().output("--html", scratch.join("page.html"));
    /// let err = inside.check().unwrap_err().to_string();
    /// assert!(err.contains("--html") && err.contains("empties and removes"), "{err}");
    /// assert!(plan.output("--html", dir.path().join("out/page.html")).check().is_ok());
    /// ```
    pub fn scratch_dir(mut self, role: &str, path: impl AsRef<Path>) -> OutputPlan {
        self.scratch
            .push((role.into(), path.as_ref().to_path_buf()));
        self
    }

    /// Refuses an output that cannot be written as a stream, that is an
    /// input, that is another output, or that lies in a scratch directory.
    pub fn check(&self) -> Result<(), OutputError> {
        self.check_scratch()?;
        let inputs: Vec<Identity> = self.inputs.iter().map(|(_, p)| Identity::of(p)).collect();
        let mut seen: Vec<(usize, Identity)> = Vec::new();
        for (i, (role, path)) in self.outputs.iter().enumerate() {
            classify(path)?;
            let me = Identity::of(path);
            if let Some(k) = inputs.iter().position(|input| me.same(input)) {
                return Err(self.names_input(role, path, k));
            }
            if let Some((j, _)) = seen.iter().find(|(_, other)| me.same(other)) {
                let (first_role, first) = &self.outputs[*j];
                return Err(OutputError::SameFile {
                    first_role: first_role.clone(),
                    first: first.clone(),
                    second_role: role.clone(),
                    second: path.clone(),
                });
            }
            seen.push((i, me));
        }
        for (role, dir) in &self.dirs {
            let dir_path = resolved(dir);
            if let Some(k) = inputs.iter().position(|i| i.path.starts_with(&dir_path)) {
                return Err(self.names_input(role, dir, k));
            }
        }
        Ok(())
    }

    fn check_scratch(&self) -> Result<(), OutputError> {
        for (role, dir) in &self.scratch {
            let dir_path = resolved(dir);
            let others = self.inputs.iter().chain(&self.outputs);
            if let Some((other_role, other)) = others
                .into_iter()
                .find(|(_, p)| resolved(p).starts_with(&dir_path))
            {
                return Err(OutputError::InScratch {
                    role: role.clone(),
                    dir: dir.clone(),
                    other_role: other_role.clone(),
                    other: other.clone(),
                });
            }
        }
        Ok(())
    }

    fn names_input(&self, role: &str, path: &Path, input: usize) -> OutputError {
        let (input_role, input) = &self.inputs[input];
        OutputError::NamesInput {
            output_role: role.into(),
            output: path.to_path_buf(),
            input_role: input_role.clone(),
            input: input.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_under_a_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x");
        fs::write(&file, "").unwrap();
        let out = file.join("deeper").join("y.csv");
        let e = make_parent(&out).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot create output {}: {} is a file, not a directory",
                out.display(),
                file.display()
            )
        );
        assert!(matches!(
            classify(&out),
            Err(OutputError::NotADirectory { .. })
        ));
        let e = make_dir("--out", &file).unwrap_err().to_string();
        let d = file.display();
        assert_eq!(
            e,
            format!("cannot create output {d}: {d} is a file, not a directory")
        );
    }

    #[test]
    fn outputs_are_classified_by_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.csv");
        fs::write(&file, "").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let at = fs::canonicalize(&file).unwrap();
        assert_eq!(classify(&link).unwrap(), Target::Staged { at: at.clone() });
        assert_eq!(classify(&file).unwrap(), Target::Staged { at });
        assert_eq!(classify(Path::new("-")).unwrap(), Target::Stdout);
        assert_eq!(classify(Path::new("/dev/null")).unwrap(), Target::Direct);
        assert!(matches!(
            classify(dir.path()),
            Err(OutputError::IsADirectory { .. })
        ));
        let socket = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let e = classify(&socket).unwrap_err().to_string();
        assert!(e.contains("it is a socket"), "{e}");
    }

    #[test]
    fn links_and_dot_dot_do_not_hide_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        fs::write(&input, "x").unwrap();
        let hard = dir.path().join("hard.csv");
        fs::hard_link(&input, &hard).unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let dotted = sub.join("..").join("in.csv");
        for out in [&hard, &dotted] {
            let plan = OutputPlan::default()
                .input("--input", &input)
                .output("--out", out);
            assert!(
                matches!(plan.check(), Err(OutputError::NamesInput { .. })),
                "{out:?}"
            );
        }
        let nested = OutputPlan::default()
            .input("--input", &input)
            .output_dir("metrics", dir.path());
        assert!(nested.check().is_err());
        let fine = OutputPlan::default()
            .input("--input", &input)
            .output("--out", dir.path().join("new").join("out.csv"))
            .output("--dead-letter", "/dev/null")
            .output("--other", "/dev/null");
        fine.check().unwrap();
    }
}
