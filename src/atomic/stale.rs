//! Temporary files of runs that were killed (`kill -9`, a power cut): no
//! destructor removed them, and a large run leaves a large one. Their names
//! follow a pattern only we use, `.NAME.fraudflow-PID.tmp`, so the next run
//! that writes into the same directory finds them and removes those whose
//! process is no longer running, saying so on stderr.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

/// The temporary name of `file_name` for this process.
pub(crate) fn temp_name(file_name: &OsStr) -> String {
    format!(
        ".{}.fraudflow-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    )
}

/// The process that made the temporary file `name`, if `name` is one of
/// ours: the pattern of [`temp_name`], or the one of earlier builds
/// (`.NAME.PID.tmp`) for the output `file_name` being written now.
fn owner(name: &str, file_name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    if let Some((_, pid)) = inner.rsplit_once(".fraudflow-") {
        return pid.parse().ok();
    }
    inner
        .strip_prefix(file_name)?
        .strip_prefix('.')?
        .parse()
        .ok()
}

/// Whether process `pid` may still be running (and so still writing).
#[cfg(target_os = "linux")]
fn running(pid: u32) -> bool {
    pid == 0 || Path::new("/proc").join(pid.to_string()).exists()
}

/// Elsewhere there is no cheap way to tell: leave every file alone.
#[cfg(not(target_os = "linux"))]
fn running(_pid: u32) -> bool {
    true
}

/// Removes from `dir` the temporary files of processes no longer running,
/// before this process writes `file_name` there. Returns how many went.
pub(crate) fn remove_stale(dir: &Path, file_name: &OsStr) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let file_name = file_name.to_string_lossy();
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner(&name.to_string_lossy(), &file_name) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if pid == me || !is_file || running(pid) {
            continue;
        }
        let path = entry.path();
        if fs::remove_file(&path).is_ok() {
            removed += 1;
            eprintln!(
                "fraudflow: removed {}: a temporary file left by process {pid}, which is no longer running",
                path.display()
            );
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_are_taken_for_temporary_files() {
        assert_eq!(owner(".alerts.jsonl.fraudflow-42.tmp", "x"), Some(42));
        assert_eq!(owner(".alerts.jsonl.42.tmp", "alerts.jsonl"), Some(42));
        assert_eq!(owner(".alerts.jsonl.42.tmp", "report.json"), None);
        assert_eq!(owner("alerts.jsonl.fraudflow-42.tmp", "x"), None);
        assert_eq!(owner(".notes.fraudflow-x.tmp", "x"), None);
    }

    #[test]
    fn a_dead_process_s_temporary_file_goes_and_a_live_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited: its id is free (until reused, which
        // `running` then sees).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!(".a.csv.fraudflow-{dead}.tmp"));
        let live = dir.path().join(format!(".a.csv.fraudflow-{}.tmp", 1));
        let mine = dir.path().join(temp_name(OsStr::new("a.csv")));
        let other = dir.path().join(".notes.tmp");
        for p in [&stale, &live, &mine, &other] {
            fs::write(p, "x").unwrap();
        }
        if running(dead) {
            return; // reused already: nothing to tell
        }
        assert_eq!(remove_stale(dir.path(), OsStr::new("a.csv")), 1);
        assert!(!stale.exists());
        assert!(live.exists() && mine.exists() && other.exists());
    }
}
