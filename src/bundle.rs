//! The model artifact bundle: every model, the ensemble policy, the feature
//! contract it was made for, the fingerprint of its training data and the
//! metrics it reached, in one JSON file written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::atomic::{OutputError, OutputGroup, OutputPlan};
use crate::ensemble::{Models, ModelsError, Policy, PolicyError};
use crate::features::Contract;

/// The bundle layout this build reads and writes.
pub const BUNDLE_FORMAT: u32 = 1;

/// The bundle's file name inside a models directory.
pub const BUNDLE_FILE: &str = "bundle.json";

/// The manifest of a models directory: names the bundle and its metrics
/// as one training run wrote them (see `crate::atomic::group`).
pub const BUNDLE_MANIFEST: &str = "bundle.manifest.json";

#[derive(Debug, Error)]
pub enum BundleError {
    // The underlying errors are part of each message, and so not also
    // given as a source: printed as a chain, a message would repeat.
    #[error("{path}: {problem}")]
    Io {
        path: PathBuf,
        problem: std::io::Error,
    },
    #[error("{path}: not a model bundle: {problem}")]
    Json {
        path: PathBuf,
        problem: serde_json::Error,
    },
    #[error("{path}: bundle format {found}, but this build reads format {BUNDLE_FORMAT}; train again with this build")]
    Format { path: PathBuf, found: u32 },
    #[error("{path}: the models were trained for feature contract {found}, but this run computes {expected}; train with --contract {expected} or run with --contract {found}")]
    Contract {
        path: PathBuf,
        found: Contract,
        expected: Contract,
    },
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{path}: models.{problem}")]
    Models { path: PathBuf, problem: ModelsError },
    #[error("{path}: {which}: {problem}")]
    Policy {
        path: PathBuf,
        /// `policy` or `parity`.
        which: &'static str,
        problem: PolicyError,
    },
}

/// Which data a bundle was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The training file's name (not its directory).
    pub file: String,
    pub bytes: u64,
    /// A 64-bit hash of the file's bytes, in hex.
    pub hash: String,
    /// Events that reached training (dead letters excluded).
    pub events: u64,
}

/// The chronological split: steps up to `train_last_step` train, up to
/// `validation_last_step` choose the weights and threshold, the rest test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub train_last_step: u32,
    pub validation_last_step: u32,
    pub train_rows: u64,
    pub validation_rows: u64,
    pub test_rows: u64,
    pub train_fraud: u64,
    pub validation_fraud: u64,
    pub test_fraud: u64,
}

/// One model's quality on the test split: the threshold chosen on the
/// validation split for the budget, and the budget share of the test split.
pub use crate::eval::Ranking as ModelMetrics;

/// Everything the dataflow needs to score, and what it was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: u32,
    /// Names this bundle: its creation time and training fingerprint.
    pub version: String,
    pub created_at: String,
    pub contract: Contract,
    pub features: Vec<String>,
    pub fingerprint: Fingerprint,
    pub split: SplitSummary,
    /// Share of traffic the threshold alerts on.
    pub budget: f64,
    /// The weights and threshold chosen on the validation split.
    pub policy: Policy,
    /// The original weights (0.4/0.3/0.3), with a threshold chosen for the
    /// same budget: for parity.
    pub parity: Policy,
    pub models: Models,
    /// Test-split metrics by model: `isolation_forest`, `autoencoder`,
    /// `logistic`, `ensemble` and `ensemble_parity`.
    pub metrics: BTreeMap<String, ModelMetrics>,
    pub training_seconds: f64,
}

/// The fields read before the rest, so that a bundle of another format or
/// contract is refused by name rather than by a parse error.
#[derive(Deserialize)]
struct Header {
    format: u32,
    contract: Contract,
}

impl Bundle {
    /// What [`Bundle::save`] writes into `dir`, added to `plan`: checked
    /// against the inputs before training starts.
    pub fn outputs(dir: &Path, plan: OutputPlan) -> OutputPlan {
        plan.output("models directory file", dir.join(BUNDLE_FILE))
            .output("models directory file", dir.join(BUNDLE_MANIFEST))
            .output_dir("models metrics directory", dir.join("metrics"))
    }

    /// Writes `dir/metrics/<model>.json` for each model and the bundle, as
    /// one group: every file complete before any is renamed into place,
    /// the bundle last, then the manifest. A bundle that loading would refuse
    /// is not written.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, BundleError> {
        self.check(&dir.join(BUNDLE_FILE))?;
        let group = OutputGroup::new().with_manifest(dir.join(BUNDLE_MANIFEST));
        let metrics_dir = dir.join("metrics");
        for (model, metrics) in &self.metrics {
            let path = metrics_dir.join(format!("{model}.json"));
            let report = serde_json::json!({
                "model": model,
                "bundle_version": self.version,
                "contract": self.contract,
                "split": "test",
                "budget": self.budget,
                "metrics": metrics,
            });
            write_json(&group, &path, &report)?;
        }
        let path = dir.join(BUNDLE_FILE);
        write_json(&group, &path, self)?;
        group.commit()?;
        Ok(path)
    }

    /// The bundle file of `dir`: `dir/bundle.json`, or `dir` itself when it
    /// is not a directory.
    pub fn file_in(dir: &Path) -> PathBuf {
        if dir.is_dir() {
            dir.join(BUNDLE_FILE)
        } else {
            dir.to_path_buf()
        }
    }

    /// Reads the bundle in `dir` (or the file `dir` names), refusing one of
    /// another format or made for another contract than `expected`.
    pub fn load(dir: &Path, expected: Option<Contract>) -> Result<Bundle, BundleError> {
        let path = Bundle::file_in(dir);
        let text = std::fs::read_to_string(&path).map_err(|problem| BundleError::Io {
            path: path.clone(),
            problem,
        })?;
        let json = |problem| BundleError::Json {
            path: path.clone(),
            problem,
        };
        let header: Header = serde_json::from_str(&text).map_err(json)?;
        if header.format != BUNDLE_FORMAT {
            return Err(BundleError::Format {
                path,
                found: header.format,
            });
        }
        if let Some(expected) = expected.filter(|&e| e != header.contract) {
            return Err(BundleError::Contract {
                path,
                found: header.contract,
                expected,
            });
        }
        let bundle: Bundle = serde_json::from_str(&text).map_err(json)?;
        bundle.check(&path)?;
        Ok(bundle)
    }

    /// Checks what loading and saving both hold a bundle to, naming `path`
    /// and the part at fault: the contract's features, models that score
    /// every event finitely, policies as the flags are checked, a budget
    /// in (0, 1].
    pub fn check(&self, path: &Path) -> Result<(), BundleError> {
        let corrupt = |what: String| BundleError::Corrupt {
            path: path.to_path_buf(),
            what,
        };
        let names = self.contract.names();
        if self
            .features
            .iter()
            .map(String::as_str)
            .ne(names.iter().copied())
        {
            return Err(corrupt(format!(
                "its features {:?} are not contract {}'s {:?}",
                self.features, self.contract, names
            )));
        }
        self.models
            .check(names.len())
            .map_err(|problem| BundleError::Models {
                path: path.to_path_buf(),
                problem,
            })?;
        for (which, policy) in [("policy", self.policy), ("parity", self.parity)] {
            policy.check().map_err(|problem| BundleError::Policy {
                path: path.to_path_buf(),
                which,
                problem,
            })?;
        }
        if !(self.budget > 0.0 && self.budget <= 1.0) {
            return Err(corrupt(format!("budget {} is outside (0, 1]", self.budget)));
        }
        Ok(())
    }
}

fn write_json<T: Serialize>(
    group: &OutputGroup,
    path: &Path,
    value: &T,
) -> Result<(), BundleError> {
    let io = |problem| BundleError::Io {
        path: path.to_path_buf(),
        problem,
    };
    let mut file = std::io::BufWriter::new(group.create(path)?);
    serde_json::to_writer_pretty(&mut file, value).map_err(|problem| BundleError::Json {
        path: path.to_path_buf(),
        problem,
    })?;
    file.write_all(b"\n").map_err(io)?;
    let file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.finish().map(|_| ()).map_err(io)
}

/// The fingerprint of a training file: its size and a 64-bit hash of its
/// bytes (FNV-1a over 8-byte words; to tell files apart, not for security).
/// FNV-1a over 8-byte little-endian words (the last one padded with zeros).
pub(crate) fn fnv_words(mut hash: u64, bytes: &[u8]) -> u64 {
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = (hash ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The same hash as [`fingerprint_file`] of bytes in memory, in hex: names
/// a fitted model in its bundle's version.
///
/// ```
/// use fraudflow::bundle::fingerprint_bytes;
/// assert_eq!(fingerprint_bytes(b"abc").len(), 16);
/// assert_ne!(fingerprint_bytes(b"abc"), fingerprint_bytes(b"abd"));
/// ```
pub fn fingerprint_bytes(bytes: &[u8]) -> String {
    let hash = fnv_words(0xcbf2_9ce4_8422_2325, bytes) ^ bytes.len() as u64;
    format!("{hash:016x}")
}

pub fn fingerprint_file(path: &Path, events: u64) -> Result<Fingerprint, BundleError> {
    use std::io::Read;
    let io = |problem| BundleError::Io {
        path: path.to_path_buf(),
        problem,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        // Whole buffers, whatever sizes the reads return: the hash must not
        // depend on them.
        let mut n = 0;
        while n < buf.len() {
            match file.read(&mut buf[n..]).map_err(io)? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hash = fnv_words(hash, &buf[..n]);
    }
    hash ^= bytes;
    Ok(Fingerprint {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes,
        hash: format!("{hash:016x}"),
        events,
    })
}
