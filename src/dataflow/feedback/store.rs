//! The learner's versions on disk: each promoted update (and each
//! rollback) written atomically, with its metadata, as
//! `MODELS/online/BUNDLE+online.N.json`; on start, the newest one made
//! from the bundle being loaded takes its place, so a restart goes on from
//! where the last run got to and applies no update twice.
//!
//! Only the online model changes, so only it is kept, beside what names the
//! version: the forest and the autoencoder stay the bundle's.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::atomic::{AtomicFile, OutputError};
use crate::models::online_logistic::OnlineLogistic;

/// The format of a stored version.
pub const FORMAT: u32 = 1;

/// The directory under the models directory.
pub const DIR: &str = "online";

/// One version the learner sent out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredVersion {
    pub format: u32,
    /// `BUNDLE+online.N`.
    pub version: String,
    /// The bundle it was made from, and its number among that bundle's.
    pub bundle: String,
    pub number: u64,
    /// The version it replaced.
    pub parent: String,
    /// Event time (ms) from which it scored.
    pub from_ms: u64,
    /// Examples the online model had learned from, over all its updates.
    pub examples_seen: u64,
    pub gate: GateResult,
    pub logistic: OnlineLogistic,
}

/// What the promotion gate found.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// PR-AUC on the holdout of this version and of the one it replaced;
    /// `None` when the holdout lacked a class (the gate let it through).
    pub pr_auc: Option<f64>,
    pub parent_pr_auc: Option<f64>,
    pub holdout: usize,
    /// Whether this version is a rollback to the one before its parent.
    pub rollback: bool,
}

/// Why a version could not be kept or read.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: not a stored version: {cause}", path.display())]
    Bad {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{}: {problem}", path.display())]
    Refused { path: PathBuf, problem: String },
}

/// Writes `v` into `models/online/`, whole or not at all.
pub fn save(models: &Path, v: &StoredVersion) -> Result<PathBuf, StoreError> {
    let dir = models.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|cause| StoreError::Io {
        path: dir.clone(),
        cause,
    })?;
    let path = dir.join(format!("{}.json", v.version));
    let mut file = AtomicFile::create(&path)?;
    let io = |cause| StoreError::Io {
        path: path.clone(),
        cause,
    };
    serde_json::to_writer_pretty(file.writer(), v).map_err(|e| io(e.into()))?;
    file.writer().write_all(b"\n").map_err(io)?;
    file.commit()?;
    Ok(path)
}

/// The newest stored version made from `bundle` (the highest number), if
/// any; a file that does not read, or whose model fails its checks or has
/// another width, is refused by name.
pub fn newest(
    models: &Path,
    bundle: &str,
    n_features: usize,
) -> Result<Option<StoredVersion>, StoreError> {
    let dir = models.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => return Err(StoreError::Io { path: dir, cause }),
    };
    let prefix = format!("{bundle}+online.");
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let number = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = number.filter(|n| best.as_ref().is_none_or(|b| *n > b.0)) {
            best = Some((n, entry.path()));
        }
    }
    let Some((_, path)) = best else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|cause| StoreError::Io {
        path: path.clone(),
        cause,
    })?;
    let v: StoredVersion = serde_json::from_str(&text).map_err(|cause| StoreError::Bad {
        path: path.clone(),
        cause,
    })?;
    let refuse = |problem: String| StoreError::Refused {
        path: path.clone(),
        problem,
    };
    if v.format != FORMAT || v.bundle != bundle {
        return Err(refuse(format!(
            "format {} of bundle {:?}; expected format {FORMAT} of {bundle:?}",
            v.format, v.bundle
        )));
    }
    v.logistic.check().map_err(|e| refuse(e.to_string()))?;
    if v.logistic.n_features() != n_features {
        return Err(refuse(format!(
            "a model of {} features; the bundle has {n_features}",
            v.logistic.n_features()
        )));
    }
    Ok(Some(v))
}
