//! A run's files, committed together: every file is written and synced
//! under a temporary name beside its final one, and only when all of them
//! are finished does any take its final name.
//!
//! Why: a run writes several files (alerts, dead letters, a report; a
//! bundle and its metrics; a feature table and its dead letters). Renaming
//! each as soon as it was done left, after a later failure, one run's
//! alerts beside an earlier run's report. Renames cannot all happen at
//! once, so a manifest marks a complete set: the old one is removed before
//! the first rename and the new one, naming every file with its size and
//! the run's id, is written after the last. A reader may trust the files a
//! manifest names, at the sizes it gives; without a manifest, a directory
//! holds no complete set.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::stale::{remove_stale, temp_name};
use super::target::{classify, make_parent, OutputError, Target};
use super::{forget_pending, pending};

/// The manifest layout this build writes.
pub const MANIFEST_FORMAT: u32 = 1;

/// One output of a group.
struct Entry {
    /// As the command named it: what messages and the manifest say.
    shown: PathBuf,
    /// Where it is renamed to; `None` for a stream written in place.
    at: Option<PathBuf>,
    /// The temporary file, until renamed or removed.
    tmp: Option<PathBuf>,
    /// Its size once written and synced.
    bytes: Option<u64>,
}

type Entries = Arc<Mutex<Vec<Entry>>>;

fn lock(entries: &Entries) -> MutexGuard<'_, Vec<Entry>> {
    entries.lock().unwrap_or_else(|e| e.into_inner())
}

/// The outputs of one run, committed together by [`OutputGroup::commit`];
/// dropped uncommitted, it removes every temporary file.
///
/// ```
/// use std::io::Write;
/// use fraudflow::atomic::OutputGroup;
/// let dir = tempfile::tempdir().unwrap();
/// let group = OutputGroup::new().with_manifest(dir.path().join("run.manifest.json"));
/// let mut a = group.create(&dir.path().join("a.txt")).unwrap();
/// let mut b = group.create(&dir.path().join("b.txt")).unwrap();
/// a.write_all(b"first").unwrap();
/// b.write_all(b"second").unwrap();
/// a.finish().unwrap();
/// b.finish().unwrap();
/// assert!(!dir.path().join("a.txt").exists());
/// group.commit().unwrap();
/// assert_eq!(std::fs::read(dir.path().join("b.txt")).unwrap(), b"second");
/// let manifest = std::fs::read_to_string(dir.path().join("run.manifest.json")).unwrap();
/// assert!(manifest.contains("\"a.txt\""));
/// ```
#[derive(Default)]
pub struct OutputGroup {
    entries: Entries,
    manifest: Option<PathBuf>,
    /// Files this group may write; one the last manifest names but this
    /// run does not write is removed at the commit.
    optional: Vec<PathBuf>,
    committed: bool,
}

/// The manifest of a committed group.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Names the run: its start time and process.
    pub run: String,
    pub created_at: String,
    /// Every file of the run, by name relative to the manifest's directory
    /// (or absolute when elsewhere), with its size in bytes.
    pub files: Vec<ManifestFile>,
}

/// One file a manifest names.
#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub bytes: u64,
}

impl OutputGroup {
    pub fn new() -> OutputGroup {
        OutputGroup::default()
    }

    /// Writes a manifest at `path` once every file is in place.
    pub fn with_manifest(mut self, path: impl Into<PathBuf>) -> OutputGroup {
        self.manifest = Some(path.into());
        self
    }

    /// A file this kind of run writes only sometimes (`scores.csv`): when
    /// this run does not, and the last manifest named it, it is removed, so
    /// no earlier run's file stays beside this run's.
    pub fn sometimes(mut self, path: impl Into<PathBuf>) -> OutputGroup {
        self.optional.push(path.into());
        self
    }

    /// Opens `path` for this group: a regular file (or none yet) is written
    /// under a temporary name beside it; standard output, a FIFO or a
    /// device is written where it is.
    pub fn create(&self, path: &Path) -> Result<OutputFile, OutputError> {
        let (dest, at, tmp) = match classify(path)? {
            Target::Stdout => (Dest::Stdout(io::stdout()), None, None),
            Target::Direct => {
                let file = File::options()
                    .write(true)
                    .open(path)
                    .map_err(|e| OutputError::io(path, e))?;
                (Dest::File(file), None, None)
            }
            Target::Staged { at } => {
                let (file, tmp) = stage(path, &at)?;
                (Dest::File(file), Some(at), Some(tmp))
            }
        };
        let mut entries = lock(&self.entries);
        entries.push(Entry {
            shown: path.to_path_buf(),
            at,
            tmp: tmp.clone(),
            bytes: None,
        });
        Ok(OutputFile {
            dest,
            entries: Arc::clone(&self.entries),
            index: entries.len() - 1,
            shown: path.to_path_buf(),
            tmp,
            finished: false,
        })
    }

    /// Renames every file into place, then writes the manifest; fails,
    /// renaming nothing, unless every file was finished.
    pub fn commit(mut self) -> Result<(), OutputError> {
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.iter().find(|e| e.bytes.is_none()) {
            let cause = io::Error::other("the run ended before this output was complete");
            return Err(OutputError::io(&e.shown, cause));
        }
        if !entries.iter().any(|e| e.at.is_some()) {
            // Only streams (or nothing, on a process that owns no outputs):
            // no file to rename, and no manifest of another run to touch.
            drop(entries);
            self.committed = true;
            return Ok(());
        }
        let last = self.manifest.as_deref().and_then(read_manifest);
        if let Some(manifest) = &self.manifest {
            remove_if_present(manifest)?;
        }
        self.retire(&entries, last.as_ref())?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for e in entries.iter_mut() {
            let (Some(tmp), Some(at)) = (&e.tmp, &e.at) else {
                continue;
            };
            fs::rename(tmp, at).map_err(|cause| OutputError::io(&e.shown, cause))?;
            forget_pending(tmp);
            e.tmp = None;
            let dir = parent(at).to_path_buf();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in &dirs {
            sync_dir(dir);
        }
        let files = self.listed(&entries);
        drop(entries);
        self.committed = true;
        match &self.manifest {
            Some(path) if !files.is_empty() => write_manifest(path, files),
            _ => Ok(()),
        }
    }

    /// Removes the optional files the last manifest named that this run
    /// does not write.
    fn retire(&self, entries: &[Entry], last: Option<&Manifest>) -> Result<(), OutputError> {
        let Some(last) = last else { return Ok(()) };
        for path in &self.optional {
            let name = self.name_of(path);
            let written = entries.iter().any(|e| e.shown == *path);
            if !written && last.files.iter().any(|f| f.name == name) {
                remove_if_present(path)?;
            }
        }
        Ok(())
    }

    /// The files the manifest names: those renamed into place.
    fn listed(&self, entries: &[Entry]) -> Vec<ManifestFile> {
        entries
            .iter()
            .filter(|e| e.at.is_some())
            .map(|e| ManifestFile {
                name: self.name_of(&e.shown),
                bytes: e.bytes.unwrap_or(0),
            })
            .collect()
    }

    /// `path` relative to the manifest's directory when inside it.
    fn name_of(&self, path: &Path) -> String {
        let dir = self.manifest.as_deref().map(parent);
        dir.and_then(|d| path.strip_prefix(d).ok())
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for OutputGroup {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for e in lock(&self.entries).iter_mut() {
            if let Some(tmp) = e.tmp.take() {
                let _ = fs::remove_file(&tmp);
                forget_pending(&tmp);
            }
        }
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates the temporary file of the output `shown`, to be renamed onto
/// `at`, after removing stale ones of killed runs beside it.
fn stage(shown: &Path, at: &Path) -> Result<(File, PathBuf), OutputError> {
    make_parent(at).map_err(|e| match e {
        OutputError::NotADirectory { blocker, kind, .. } => OutputError::NotADirectory {
            path: shown.to_path_buf(),
            blocker,
            kind,
        },
        other => other,
    })?;
    let name = at.file_name().unwrap_or(at.as_os_str());
    let dir = parent(at);
    remove_stale(dir, name);
    let tmp = dir.join(temp_name(name));
    // Created and listed under one lock: a process removing its temporary
    // files as it ends (`remove_pending`, from another thread) finds each
    // one listed, and no new one comes after.
    let mut pending = pending();
    if super::ending() {
        let cause = io::Error::other("the process is ending (stopped, or its run failed)");
        return Err(OutputError::io(shown, cause));
    }
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|cause| OutputError::io(shown, cause))?;
    pending.push(tmp.clone());
    Ok((file, tmp))
}

fn remove_if_present(path: &Path) -> Result<(), OutputError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(OutputError::io(path, e)),
        _ => {
            sync_dir(parent(path));
            Ok(())
        }
    }
}

/// Makes renames and removals in `dir` durable; best effort (some file
/// systems refuse to sync a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn read_manifest(path: &Path) -> Option<Manifest> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn write_manifest(path: &Path, files: Vec<ManifestFile>) -> Result<(), OutputError> {
    let created_at = crate::clock::now_rfc3339();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        run: format!(
            "{}-{}",
            created_at.replace([':', '-'], ""),
            std::process::id()
        ),
        created_at,
        files,
    };
    let mut text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| OutputError::io(path, io::Error::other(e)))?;
    text.push(b'\n');
    let group = OutputGroup::new();
    let mut file = group.create(path)?;
    file.write_all(&text)
        .map_err(|cause| OutputError::io(path, cause))?;
    file.finish()
        .map_err(|cause| OutputError::io(path, cause))?;
    group.commit()
}

/// Where an [`OutputFile`]'s bytes go.
enum Dest {
    File(File),
    Stdout(io::Stdout),
}

/// One file of an [`OutputGroup`]: written, then [`OutputFile::finish`]ed
/// (flushed and synced); the group renames it. Dropped unfinished, its
/// temporary file goes at once.
pub struct OutputFile {
    dest: Dest,
    entries: Entries,
    index: usize,
    shown: PathBuf,
    tmp: Option<PathBuf>,
    finished: bool,
}

impl OutputFile {
    /// The path as the command named it.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// The temporary file being written, for a regular file.
    pub(crate) fn staged(&self) -> Option<&Path> {
        self.tmp.as_deref()
    }

    /// Flushes and syncs; the file is then ready for the group's commit.
    /// Returns its size (0 for a stream written in place).
    pub fn finish(mut self) -> io::Result<u64> {
        let bytes = match &mut self.dest {
            Dest::Stdout(out) => out.flush().map(|()| 0)?,
            Dest::File(file) => {
                file.flush()?;
                match &self.tmp {
                    Some(_) => {
                        file.sync_all()?;
                        file.metadata()?.len()
                    }
                    None => 0,
                }
            }
        };
        lock(&self.entries)[self.index].bytes = Some(bytes);
        self.finished = true;
        Ok(bytes)
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.dest {
            Dest::File(f) => f.write(buf),
            Dest::Stdout(s) => s.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.dest {
            Dest::File(f) => f.write_all(buf),
            Dest::Stdout(s) => s.lock().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.dest {
            Dest::File(f) => f.flush(),
            Dest::Stdout(s) => s.flush(),
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(&tmp);
            forget_pending(&tmp);
            lock(&self.entries)[self.index].tmp = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn run(dir: &Path, files: &[(&str, &str)], fail: bool) -> Result<(), OutputError> {
        let group = OutputGroup::new()
            .with_manifest(dir.join("run.manifest.json"))
            .sometimes(dir.join("extra.csv"));
        let mut opened = Vec::new();
        for (name, text) in files {
            let mut f = group.create(&dir.join(name))?;
            f.write_all(text.as_bytes()).unwrap();
            opened.push(f);
        }
        // A failure after every file is written: the last is never finished.
        if fail {
            opened.pop();
        }
        for f in opened {
            f.finish().unwrap();
        }
        group.commit()
    }

    #[test]
    fn a_failed_group_leaves_the_earlier_set_whole_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = [("a.csv", "a1"), ("b.json", "b1"), ("extra.csv", "e1")];
        run(dir.path(), &first, false).unwrap();
        let before = names(dir.path());
        let e = run(dir.path(), &[("a.csv", "a2"), ("b.json", "b2")], true).unwrap_err();
        assert!(e.to_string().contains("b.json"), "{e}");
        assert_eq!(names(dir.path()), before);
        for (name, text) in first {
            assert_eq!(fs::read_to_string(dir.path().join(name)).unwrap(), text);
        }
        // The next complete run replaces the set, and the file it does not
        // write goes with the manifest that named it.
        run(dir.path(), &[("a.csv", "a3"), ("b.json", "b33")], false).unwrap();
        assert_eq!(names(dir.path()), ["a.csv", "b.json", "run.manifest.json"]);
        let m = read_manifest(&dir.path().join("run.manifest.json")).unwrap();
        let listed: Vec<(String, u64)> = m.files.into_iter().map(|f| (f.name, f.bytes)).collect();
        assert_eq!(listed, [("a.csv".into(), 2), ("b.json".into(), 3)]);
    }
}
