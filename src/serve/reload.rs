//! New model versions for a live run, from the models directory: polled
//! every few seconds and on `POST /models/reload`. A bundle that fails to
//! load, or was made for another feature contract, is refused with its
//! reason and the version in force keeps scoring.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::ServeState;
use crate::bundle::{Bundle, BundleError};
use crate::dataflow::score::Scorer;
use crate::ensemble::{Policy, Weights};
use crate::features::Contract;
use crate::pipeline::LiveVersions;

/// How a bundle's policy is chosen: the trained one or parity, and
/// optional weights and threshold over it.
#[derive(Clone, Copy, Debug)]
pub struct PolicyChoice {
    pub parity: bool,
    pub weights: Option<Weights>,
    pub threshold: Option<f64>,
}

impl PolicyChoice {
    pub fn of(&self, bundle: &Bundle) -> Policy {
        let mut policy = if self.parity {
            bundle.parity
        } else {
            bundle.policy
        };
        if let Some(w) = self.weights {
            policy.weights = w;
        }
        if let Some(t) = self.threshold {
            policy.threshold = t;
        }
        policy
    }

    /// Where the policy came from, for reports.
    pub fn source(&self) -> &'static str {
        match self {
            PolicyChoice {
                weights: None,
                threshold: None,
                parity: true,
            } => "parity: original weights, threshold for the budget",
            PolicyChoice {
                weights: None,
                threshold: None,
                parity: false,
            } => "trained",
            _ => "overridden",
        }
    }

    /// The scorer of `bundle` under this choice.
    pub fn scorer(&self, bundle: &Bundle) -> Scorer {
        Scorer {
            models: bundle.models.clone(),
            policy: self.of(bundle),
            contract: bundle.contract,
            model_version: bundle.version.clone(),
        }
    }
}

/// Watches one models directory and hands new versions to the dataflow.
pub struct ModelReloader {
    dir: PathBuf,
    contract: Contract,
    choice: PolicyChoice,
    versions: Arc<LiveVersions>,
    /// The version in force, and the bundle file's stamp when it was read.
    current: Mutex<(String, Option<(SystemTime, u64)>)>,
    pub refused: AtomicU64,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged(String),
    Switched(String),
}

impl ModelReloader {
    pub fn new(
        dir: PathBuf,
        contract: Contract,
        choice: PolicyChoice,
        versions: Arc<LiveVersions>,
        version: String,
    ) -> ModelReloader {
        let stamp = stamp(&dir);
        ModelReloader {
            dir,
            contract,
            choice,
            versions,
            current: Mutex::new((version, stamp)),
            refused: AtomicU64::new(0),
        }
    }

    /// Loads the bundle when its file changed (or always, with `force`);
    /// a new version goes to the dataflow.
    pub fn reload(&self, force: bool) -> Result<Reloaded, BundleError> {
        let now = stamp(&self.dir);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if !force && now == current.1 {
            return Ok(Reloaded::Unchanged(current.0.clone()));
        }
        current.1 = now;
        let bundle = Bundle::load(&self.dir, Some(self.contract)).inspect_err(|_| {
            self.refused.fetch_add(1, Ordering::Relaxed);
        })?;
        if bundle.version == current.0 {
            return Ok(Reloaded::Unchanged(bundle.version));
        }
        current.0 = bundle.version.clone();
        self.versions.push(self.choice.scorer(&bundle));
        Ok(Reloaded::Switched(bundle.version))
    }

    pub fn version(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Polls every `every` on a thread of its own, saying on stderr what it
    /// switched to or refused, until `state`'s input closes.
    pub fn poll(state: Arc<ServeState>, every: Duration) {
        let Some(reloader) = state.models.clone() else {
            return;
        };
        std::thread::spawn(move || {
            let mut last_error = String::new();
            while !state.input.is_closed() {
                std::thread::sleep(every);
                match reloader.reload(false) {
                    Ok(Reloaded::Switched(v)) => {
                        eprintln!("fraudflow: scoring with model version {v}");
                        *state
                            .model_version
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = v;
                    }
                    Ok(Reloaded::Unchanged(_)) => {}
                    Err(e) if e.to_string() != last_error => {
                        eprintln!(
                            "fraudflow: refused a new bundle, still scoring with {}: {e}",
                            reloader.version()
                        );
                        last_error = e.to_string();
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

/// The bundle file's modification time and length, if it exists.
fn stamp(dir: &std::path::Path) -> Option<(SystemTime, u64)> {
    let path = if dir.is_dir() {
        dir.join(crate::bundle::BUNDLE_FILE)
    } else {
        dir.to_path_buf()
    };
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

pub async fn post_reload(State(state): State<Arc<ServeState>>) -> Response {
    let Some(reloader) = state.models.clone() else {
        let error = "model versions are reloaded by process 0: send this there";
        return (StatusCode::CONFLICT, Json(json!({ "error": error }))).into_response();
    };
    let result = tokio::task::spawn_blocking(move || reloader.reload(true)).await;
    match result {
        Ok(Ok(Reloaded::Switched(v))) => {
            *state
                .model_version
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = v.clone();
            (
                StatusCode::OK,
                Json(json!({"model_version": v, "switched": true})),
            )
                .into_response()
        }
        Ok(Ok(Reloaded::Unchanged(v))) => (
            StatusCode::OK,
            Json(json!({"model_version": v, "switched": false})),
        )
            .into_response(),
        Ok(Err(e)) => {
            let current = state
                .model_version
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let body = json!({"error": e.to_string(), "model_version": current, "switched": false});
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
