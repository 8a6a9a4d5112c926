//! Training through the pipeline: the feature table comes from the same
//! graph that serves (so no second implementation of any feature exists),
//! then the models are fitted and the bundle written.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use thiserror::Error;

use super::{run, Outputs, PipelineError, PipelineSettings, RunSummary, Stage, StageOutputs};
use crate::bundle::{
    fingerprint_bytes, fingerprint_file, Bundle, BundleError, Fingerprint, BUNDLE_FORMAT,
};
use crate::dataflow::FeatureRow;
use crate::features::Contract;
use crate::sinks::{BoxSink, Sink};
use crate::sources::SourceSettings;
use crate::train::{train, Table, TrainError, TrainParams, Trained};

#[derive(Debug, Error)]
pub enum TrainingError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("training reads a file; this pipeline's source is not one")]
    NotAFile,
    /// Training made a bundle that loading would refuse: said as such, not
    /// as a fault of a bundle file that was never written.
    #[error("training made models that cannot score every event finitely, so nothing was written into {}: {problem}", out.display())]
    Unusable {
        out: PathBuf,
        problem: Box<BundleError>,
    },
}

impl TrainingError {
    /// Whether the training data is at fault (exit 1) rather than a flag,
    /// a file or the system (exit 2).
    pub fn is_data_error(&self) -> bool {
        match self {
            TrainingError::Pipeline(e) => e.is_data_error(),
            TrainingError::Train(e) => e.is_data_error(),
            TrainingError::Bundle(_) | TrainingError::NotAFile | TrainingError::Unusable { .. } => {
                false
            }
        }
    }
}

/// Training's table as a sink: rows arrive in input order on worker 0.
struct TableSink(Arc<Mutex<Table>>);

impl Sink<FeatureRow> for TableSink {
    fn write(&mut self, rows: &mut [FeatureRow]) -> Result<(), PipelineError> {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter()
            .try_for_each(|r| table.push(r))
            .map_err(|e| PipelineError::component("training table", e))
    }

    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).len() as u64)
    }
}

/// Runs the pipeline to its features and gathers them, in input order.
/// Returns the table (on the process of worker 0; empty elsewhere) and the
/// run's counts.
pub fn feature_table(
    mut settings: PipelineSettings,
    dead_letters: Option<BoxSink<Box<crate::dataflow::dead_letter::DeadLetter>>>,
) -> Result<(Table, RunSummary), PipelineError> {
    settings.stage = Stage::Rows;
    let contract = settings.features.contract;
    let table = Arc::new(Mutex::new(Table::new(contract)));
    let outputs = settings.cluster.owns_outputs().then(|| Outputs {
        dead_letters: dead_letters.unwrap_or_else(|| Box::new(Discard)),
        stage: StageOutputs::Rows(Box::new(TableSink(Arc::clone(&table)))),
    });
    let summary = run(settings, outputs)?;
    let table = std::mem::replace(
        &mut *table.lock().unwrap_or_else(|e| e.into_inner()),
        Table::new(contract),
    );
    Ok((table, summary))
}

/// A sink that keeps nothing but the count.
pub struct Discard;

impl<D> Sink<D> for Discard {
    fn write(&mut self, _: &mut [D]) -> Result<(), PipelineError> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        Ok(0)
    }
}

/// Featurizes the settings' file with the pipeline, fits the ensemble and
/// writes the bundle into `out`; `say` hears each stage as it starts.
/// Only the process of worker 0 trains; others return `None`.
pub fn train_bundle(
    settings: PipelineSettings,
    params: &TrainParams,
    out: &Path,
    mut say: impl FnMut(&str),
) -> Result<Option<Bundle>, TrainingError> {
    let SourceSettings::File(file) = &settings.source else {
        return Err(TrainingError::NotAFile);
    };
    let path = file.path.clone();
    let owner = settings.cluster.owns_outputs();
    let started = Instant::now();
    let (table, summary) = feature_table(settings, None)?;
    if !owner {
        return Ok(None);
    }
    say(&format!(
        "{} events: {} labelled rows, {} dead letters, {:.1} s",
        summary.events_in,
        table.len(),
        summary.dead,
        started.elapsed().as_secs_f64()
    ));
    let fingerprint = fingerprint_file(&path, table.len() as u64)?;
    let trained = train(&table, params, |stage| say(&format!("fitting: {stage}")))?;
    let bundle = assemble(trained, table.contract, fingerprint, params, started);
    bundle
        .check(Path::new("the trained bundle"))
        .map_err(|problem| TrainingError::Unusable {
            out: out.to_path_buf(),
            problem: Box::new(problem),
        })?;
    let written = bundle.save(out)?;
    say(&format!(
        "wrote {} (version {}) in {:.1} s",
        written.display(),
        bundle.version,
        bundle.training_seconds
    ));
    Ok(Some(bundle))
}

/// The bundle of what training made, named by its time, its training file
/// and its fitted models.
fn assemble(
    trained: Trained,
    contract: Contract,
    fingerprint: Fingerprint,
    params: &TrainParams,
    started: Instant,
) -> Bundle {
    let now = crate::clock::now_rfc3339();
    // Two bundles fitted differently on the same file in the same second
    // must not share a version, or a reload would take one for the other.
    let fitted = serde_json::to_vec(&(&trained.models, &trained.policy)).unwrap_or_default();
    let version = format!(
        "{}-{}-{}",
        now.replace([':', '-'], ""),
        &fingerprint.hash[..8],
        &fingerprint_bytes(&fitted)[..8]
    );
    Bundle {
        format: BUNDLE_FORMAT,
        version,
        created_at: now,
        contract,
        features: contract.names().iter().map(|s| s.to_string()).collect(),
        fingerprint,
        split: trained.split,
        budget: params.budget,
        policy: trained.policy,
        parity: trained.parity,
        models: trained.models,
        metrics: trained.metrics,
        training_seconds: started.elapsed().as_secs_f64(),
    }
}
