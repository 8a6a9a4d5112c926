//! The learner's versions on disk: each promoted update (and each
//! rollback) written atomically, with its metadata, as
//! `MODELS/online/BUNDLE+online.N.json`; on start, the newest one made
//! from the bundle being loaded takes its place, so a restart goes on from
//! where the last run got to and applies no update twice.
//!
//! Only the online model changes, so only it is kept, beside what names the
//! version: the forest and the autoencoder stay the bundle's.
//!
//! With each version goes what the learner carries on to the next one
//! ([`Carried`]: the replay buffer, the holdout, and where a restart reads
//! the feedback topic again, see [`super::ledger`]). Between versions the
//! learner keeps the same, with the batch it is filling, in
//! `MODELS/online/BUNDLE.learner.json`, naming the version it goes on
//! from; a restart takes that file when it names the newest version, and
//! the newest version's own otherwise (it was written first, so a crash
//! between the two leaves the file naming the version before).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ledger::PartitionResume;
use super::Example;
use crate::atomic::{AtomicFile, OutputError};
use crate::event::EventId;
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
    /// What the learner carried on from it (absent in versions kept before
    /// it was: nothing carried).
    #[serde(default)]
    pub carried: Carried,
}

/// What the learner carries from one version to the next, beside the
/// model: kept so that a restart learns as the run it follows would have.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carried {
    /// Where a restart reads each partition of the feedback topic again.
    pub labels: Vec<PartitionResume>,
    /// The examples of the batch being filled, and when it is due.
    pub batch: Vec<Example>,
    pub deadline: Option<u64>,
    /// The fraud examples fitted again with each batch.
    pub replay: Vec<Example>,
    /// The holdout the gate judges on, oldest first.
    pub holdout: Vec<HeldOut>,
}

/// A holdout example: its transaction, class and features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOut {
    pub id: EventId,
    pub is_fraud: bool,
    pub values: Vec<f64>,
}

/// The learner's state between versions: `MODELS/online/BUNDLE.learner.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerState {
    pub format: u32,
    /// The version in force it goes on from (the bundle's name before the
    /// first).
    pub version: String,
    pub carried: Carried,
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
    write(models, &format!("{}.json", v.version), v)
}

/// Writes the learner's state for `bundle` into `models/online/`, whole or
/// not at all.
pub fn save_state(models: &Path, bundle: &str, s: &LearnerState) -> Result<PathBuf, StoreError> {
    write(models, &state_name(bundle), s)
}

fn state_name(bundle: &str) -> String {
    format!("{bundle}.learner.json")
}

/// Writes `v` as JSON to `models/online/name`, whole or not at all.
fn write(models: &Path, name: &str, v: &impl Serialize) -> Result<PathBuf, StoreError> {
    let dir = models.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|cause| StoreError::Io {
        path: dir.clone(),
        cause,
    })?;
    let path = dir.join(name);
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
    read(&path, bundle, n_features).map(Some)
}

/// The version `name` kept for `bundle` (the one the newest was fitted
/// from, say), refused by name as [`newest`] refuses.
pub fn named(
    models: &Path,
    bundle: &str,
    name: &str,
    n_features: usize,
) -> Result<StoredVersion, StoreError> {
    read(
        &models.join(DIR).join(format!("{name}.json")),
        bundle,
        n_features,
    )
}

/// The version kept at `path`, checked: made from `bundle`, a model that
/// passes its checks, of `n_features`.
fn read(path: &Path, bundle: &str, n_features: usize) -> Result<StoredVersion, StoreError> {
    let path = path.to_path_buf();
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
    // The name is what numbering goes on from: a file whose contents name
    // another version (one copied over another by hand) would have the
    // next update overwrite a version kept before.
    let named = format!("{bundle}+online.{}", v.number);
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if v.version != named || stem.as_deref() != Some(named.as_str()) {
        return Err(refuse(format!(
            "holds version {:?}, number {}; a kept version's file is named after it, \
             as {named}.json",
            v.version, v.number
        )));
    }
    v.logistic.check().map_err(|e| refuse(e.to_string()))?;
    if v.logistic.n_features() != n_features {
        return Err(refuse(format!(
            "a model of {} features; the bundle has {n_features}",
            v.logistic.n_features()
        )));
    }
    Ok(v)
}

/// What the learner of `bundle` goes on from, `newest` being its newest
/// kept version: the state file when it names that version (or the bundle,
/// when none is kept), else what the version carried; a state file that
/// does not read is refused by name.
pub fn carried(
    models: &Path,
    bundle: &str,
    newest: Option<&StoredVersion>,
) -> Result<Carried, StoreError> {
    let path = models.join(DIR).join(state_name(bundle));
    let from_version = || newest.map(|v| v.carried.clone()).unwrap_or_default();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(from_version()),
        Err(cause) => return Err(StoreError::Io { path, cause }),
    };
    let state: LearnerState = serde_json::from_str(&text).map_err(|cause| StoreError::Bad {
        path: path.clone(),
        cause,
    })?;
    if state.format != FORMAT {
        return Err(StoreError::Refused {
            path,
            problem: format!("format {}; expected {FORMAT}", state.format),
        });
    }
    let in_force = newest.map_or(bundle, |v| &v.version);
    Ok(if state.version == in_force {
        state.carried
    } else {
        from_version()
    })
}

#[cfg(test)]
mod tests {
    use linfa::prelude::*;
    use ndarray::array;

    use super::*;
    use crate::models::online_logistic::OnlineLogisticParams;

    /// Version `number` of bundle `b`, carrying `end` as the topic's end.
    fn version(number: u64, end: i64) -> StoredVersion {
        let data = DatasetBase::new(array![[0.0, 1.0], [1.0, 0.0]], array![true, false]);
        let logistic = OnlineLogisticParams::default().check().unwrap();
        StoredVersion {
            format: FORMAT,
            version: format!("b+online.{number}"),
            bundle: "b".to_string(),
            number,
            parent: "b".to_string(),
            from_ms: 0,
            examples_seen: 2,
            gate: GateResult {
                pr_auc: None,
                parent_pr_auc: None,
                holdout: 0,
                rollback: false,
            },
            logistic: logistic.fit(&data).unwrap(),
            carried: carrying(end),
        }
    }

    fn carrying(end: i64) -> Carried {
        Carried {
            labels: vec![PartitionResume {
                partition: 0,
                end,
                again: vec![end - 1],
            }],
            ..Carried::default()
        }
    }

    #[test]
    fn a_restart_takes_the_state_file_only_when_it_names_the_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path();
        // Nothing kept: nothing carried.
        assert_eq!(carried(models, "b", None).unwrap(), Carried::default());
        let (one, two) = (version(1, 5), version(2, 8));
        save(models, &one).unwrap();
        save(models, &two).unwrap();
        let newest = newest(models, "b", 2).unwrap().unwrap();
        assert_eq!(newest, two);
        assert_eq!(named(models, "b", "b+online.1", 2).unwrap(), one);
        // No state file: the newest version's.
        assert_eq!(carried(models, "b", Some(&newest)).unwrap(), carrying(8));
        let state = |version: &str, end| LearnerState {
            format: FORMAT,
            version: version.to_string(),
            carried: carrying(end),
        };
        // Written after version 2: it goes on from there.
        save_state(models, "b", &state("b+online.2", 9)).unwrap();
        assert_eq!(carried(models, "b", Some(&newest)).unwrap(), carrying(9));
        // Left from before version 2 (a crash between the two writes).
        save_state(models, "b", &state("b+online.1", 6)).unwrap();
        assert_eq!(carried(models, "b", Some(&newest)).unwrap(), carrying(8));
        // Before any version: the bundle's own name.
        save_state(models, "b", &state("b", 3)).unwrap();
        assert_eq!(carried(models, "b", None).unwrap(), carrying(3));
        // A state file that does not read stops the start, by name.
        let path = models.join(DIR).join("b.learner.json");
        std::fs::write(&path, "{").unwrap();
        let err = carried(models, "b", Some(&newest)).unwrap_err().to_string();
        assert!(err.contains("b.learner.json"), "{err}");
    }

    #[test]
    fn a_kept_file_whose_contents_name_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path();
        save(models, &version(1, 5)).unwrap();
        save(models, &version(2, 8)).unwrap();
        // Version 2 copied over as number 3 by hand; then a file whose
        // number disagrees with its name.
        let copied = models.join(DIR).join("b+online.3.json");
        std::fs::copy(models.join(DIR).join("b+online.2.json"), &copied).unwrap();
        let err = newest(models, "b", 2).unwrap_err().to_string();
        assert!(
            err.contains("b+online.3.json") && err.contains("\"b+online.2\""),
            "{err}"
        );
        let mut three = version(3, 8);
        three.number = 2;
        std::fs::write(&copied, serde_json::to_string(&three).unwrap()).unwrap();
        let err = newest(models, "b", 2).unwrap_err().to_string();
        assert!(err.contains("number 2"), "{err}");
        save(models, &version(3, 8)).unwrap();
        assert_eq!(newest(models, "b", 2).unwrap().unwrap(), version(3, 8));
    }
}
