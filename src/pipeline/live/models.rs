//! The bundle that scores first in a live run, where later versions come
//! from (reloads, the learner), and the server state built around them.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::LiveOptions;
use crate::bundle::Bundle;
use crate::dataflow::feedback::ledger::Ledger;
use crate::dataflow::feedback::live::LiveLabels;
use crate::dataflow::feedback::settings::Resume;
use crate::dataflow::feedback::store::{self, StoredVersion};
use crate::dataflow::feedback::FeedbackSettings;
use crate::dataflow::score::Scorer;
use crate::dataflow::threshold::ThresholdSettings;
use crate::kafka::labels::FeedbackTopic;
use crate::kafka::publish::Publisher;
use crate::metrics::Exposed;
use crate::pipeline::{
    Cluster, LiveVersions, PipelineError, PipelineSettings, ScoringSettings, Stage, VersionFeed,
};
use crate::serve::reload::{ModelReloader, PolicyChoice};
use crate::serve::ServeState;
use crate::settings::{DataflowFile, KafkaTable};
use crate::sinks::file::live::LiveStats;
use crate::sources::kafka::KafkaInput;
use crate::sources::live::LiveInput;
use crate::sources::SourceSettings;

/// The bundle that scores first, and where later versions come from.
pub(super) struct Models {
    bundle: Bundle,
    choice: PolicyChoice,
    versions: Arc<LiveVersions>,
    reloader: Option<Arc<ModelReloader>>,
    pub(super) poll: Option<Duration>,
    /// The feedback loop, when the file has `[feedback]`, and the labels
    /// this process's server takes for it.
    pub(super) feedback: Option<FeedbackSettings>,
    labels: Option<Arc<LiveLabels>>,
    /// The adaptive threshold, when the file has `[adaptive_threshold]`.
    threshold: Option<ThresholdSettings>,
    in_force: Arc<Mutex<String>>,
    /// The learner's newest kept version, which scores from the start.
    resumed: Option<StoredVersion>,
    api_token: Option<String>,
}

/// A run's `[feedback]`, if any: the learner keeps its versions beside
/// the bundle, and `POST /flush` can ask it to fit.
fn feedback_settings(file: &DataflowFile, models_dir: &Path) -> Option<FeedbackSettings> {
    file.feedback.as_ref().map(|t| {
        let mut settings = t.settings();
        settings.learner.store = Some(models_dir.to_path_buf());
        settings.flush = Some(Arc::default());
        settings
    })
}

/// With `[feedback]`: the newest version the learner kept of the bundle,
/// which goes on, and the labels this process's server (or the feedback
/// topic's reader) hands to the dataflow. The learner is set to go on from
/// what it carried on from that version (or from its state file), and from
/// the version that one was fitted from (unless a rollback), as the run
/// before would have.
fn resume(
    feedback: Option<&mut FeedbackSettings>,
    (models_dir, bundle, choice): (&Path, &Bundle, &PolicyChoice),
    input: &Arc<LiveInput>,
    cluster: &Cluster,
) -> Result<(Option<StoredVersion>, Option<Arc<LiveLabels>>), PipelineError> {
    let Some(feedback) = feedback else {
        return Ok((None, None));
    };
    let refused = |e| PipelineError::component("the learner's kept versions", e);
    let width = bundle.models.logistic.n_features();
    let newest = store::newest(models_dir, &bundle.version, width).map_err(refused)?;
    let carried = store::carried(models_dir, &bundle.version, newest.as_ref()).map_err(refused)?;
    let ledger = Arc::new(Ledger::new(&carried.labels, feedback.retention_ms));
    let parent = match newest.as_ref().filter(|v| !v.gate.rollback) {
        Some(v) => Some(Arc::new(parent(models_dir, bundle, choice, v)?)),
        None => None,
    };
    feedback.learner.resume = Resume {
        parent,
        carried: Some(Arc::new(carried)),
        ledger: Some(Arc::clone(&ledger)),
    };
    let (process, processes) = (cluster.process, cluster.processes());
    let labels = LiveLabels::new(Arc::clone(input), process, processes, Some(ledger));
    Ok((newest, Some(labels)))
}

/// The scorer of the version `v` was fitted from: the bundle's, or a
/// version kept before it.
fn parent(
    models_dir: &Path,
    bundle: &Bundle,
    choice: &PolicyChoice,
    v: &StoredVersion,
) -> Result<Scorer, PipelineError> {
    let width = bundle.models.logistic.n_features();
    let kept = (v.parent != bundle.version)
        .then(|| store::named(models_dir, &bundle.version, &v.parent, width))
        .transpose()
        .map_err(|e| PipelineError::component("the learner's kept versions", e))?;
    Ok(scorer_with(choice, bundle, kept.as_ref()))
}

/// The bundle's scorer, with the online model of `kept` when given.
fn scorer_with(choice: &PolicyChoice, bundle: &Bundle, kept: Option<&StoredVersion>) -> Scorer {
    let mut scorer = choice.scorer(bundle);
    if let Some(v) = kept {
        scorer.models.logistic = v.logistic.clone();
        scorer.model_version = v.version.clone();
    }
    scorer
}

impl Models {
    pub(super) fn load(
        options: &LiveOptions,
        file: &DataflowFile,
        input: &Arc<LiveInput>,
        cluster: &Cluster,
    ) -> Result<Models, PipelineError> {
        let models_dir = options.models.clone().unwrap_or(file.models.dir.clone());
        let contract = file.features.contract;
        let bundle = Bundle::load(&models_dir, Some(contract))
            .map_err(|e| PipelineError::component("the model bundle", e))?;
        let choice = PolicyChoice {
            parity: file.models.parity,
            weights: None,
            threshold: file.models.threshold,
        };
        let versions = LiveVersions::new(Arc::clone(input));
        let reloader = cluster.owns_outputs().then(|| {
            Arc::new(ModelReloader::new(
                models_dir.clone(),
                contract,
                choice,
                Arc::clone(&versions),
                bundle.version.clone(),
            ))
        });
        let poll =
            (file.models.poll_seconds > 0).then(|| Duration::from_secs(file.models.poll_seconds));
        let mut feedback = feedback_settings(file, &models_dir);
        let kept = (models_dir.as_path(), &bundle, &choice);
        let (resumed, labels) = resume(feedback.as_mut(), kept, input, cluster)?;
        let name = resumed.as_ref().map_or(&bundle.version, |v| &v.version);
        let threshold = file
            .adaptive_threshold
            .as_ref()
            .map(|t| t.settings(bundle.budget));
        Ok(Models {
            threshold,
            in_force: Arc::new(Mutex::new(name.clone())),
            resumed,
            bundle,
            choice,
            versions,
            reloader,
            poll,
            feedback,
            labels,
            api_token: options.api_token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// A Kafka run with `[feedback]`: labels go to the topic through an
    /// outbox of this process's (`MODELS/online/feedback-pP.outbox`), and
    /// process 0 reads them into the dataflow.
    pub(super) fn feedback_topic(
        &self,
        kafka: &KafkaTable,
        cluster: &Cluster,
    ) -> Result<Option<FeedbackTopic>, PipelineError> {
        let (Some(labels), Some(feedback)) = (&self.labels, &self.feedback) else {
            return Ok(None);
        };
        let dir = feedback
            .learner
            .store
            .clone()
            .unwrap_or_default()
            .join("online");
        crate::atomic::make_dir("the feedback outbox's directory", &dir)?;
        let outbox = dir.join(format!("feedback-p{}.outbox", cluster.process));
        let reader = (cluster.process == 0).then(|| Arc::clone(labels));
        FeedbackTopic::start(&kafka.brokers, &kafka.group, &outbox, reader)
            .map(Some)
            .map_err(|e| PipelineError::component("the feedback topic", e))
    }

    /// The server's state; `body` is the largest request body (HTTP runs)
    /// and a Kafka run's label publisher.
    pub(super) fn state(
        &self,
        input: Arc<LiveInput>,
        kafka: Option<Arc<KafkaInput>>,
        stats: Arc<LiveStats>,
        cluster: &Cluster,
        body: (usize, Option<Arc<Publisher>>),
    ) -> Arc<ServeState> {
        let (max_body_bytes, publisher) = body;
        let is_kafka = kafka.is_some();
        Arc::new(ServeState {
            input,
            kafka,
            stats,
            models: self.reloader.clone(),
            model_version: Arc::clone(&self.in_force),
            labels: self.labels.clone(),
            publisher,
            flush: self.feedback.as_ref().and_then(|f| f.flush.clone()),
            api_token: self.api_token.clone(),
            workers: cluster.workers,
            process: cluster.process,
            processes: cluster.processes(),
            max_body_bytes,
            // On in every live run: each process serves its own.
            metrics: Some(crate::metrics::install(Exposed {
                process: cluster.process,
                workers: cluster.workers,
                kafka: is_kafka,
            })),
            events_in: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// The bundle's scorer, with the learner's newest kept version of its
    /// online model when there is one.
    fn initial(&self) -> Scorer {
        scorer_with(&self.choice, &self.bundle, self.resumed.as_ref())
    }

    /// The pipeline's settings; `stats`: where this process's workers
    /// record what they route (see [`Stage::Scored`]).
    pub(super) fn settings(
        &self,
        source: SourceSettings,
        file: &DataflowFile,
        cluster: Cluster,
        stats: Arc<LiveStats>,
    ) -> PipelineSettings {
        PipelineSettings {
            source,
            features: crate::pipeline::FeatureSettings {
                contract: file.features.contract,
                window_ms: file.features.window_seconds.saturating_mul(1_000),
            },
            stage: Stage::Scored {
                scoring: ScoringSettings {
                    initial: Arc::new(self.initial()),
                    versions: VersionFeed::Live(Arc::clone(&self.versions)),
                    feedback: self.feedback.clone().map(Box::new),
                    labels: self.labels.clone(),
                    in_force: Some(Arc::clone(&self.in_force)),
                    threshold: self.threshold,
                },
                stats,
            },
            cluster,
        }
    }
}
