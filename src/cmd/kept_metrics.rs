//! `backtest --metrics FILE`: the run's Prometheus metrics kept and
//! written at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fraudflow::pipeline::{self, PipelineSettings};

/// `--metrics FILE`: the run's metrics, written there at the end (by
/// process 0; process P of several writes `FILE.pP`, each its own
/// workers' figures).
pub(super) struct KeptMetrics {
    path: PathBuf,
    metrics: Arc<fraudflow::metrics::Metrics>,
}

/// The file process `process` writes `--metrics FILE` to.
pub(super) fn metrics_file(path: &Path, process: usize) -> PathBuf {
    match process {
        0 => path.to_path_buf(),
        p => PathBuf::from(format!("{}.p{p}", path.display())),
    }
}

impl KeptMetrics {
    /// Runs the pipeline, with this process's metrics on and written to
    /// `path` at the end when it is given.
    pub(super) fn run(
        path: Option<&Path>,
        settings: PipelineSettings,
        outputs: Option<pipeline::Outputs>,
    ) -> anyhow::Result<pipeline::RunSummary> {
        let process = settings.cluster.process;
        let kept = path.map(|path| KeptMetrics {
            path: metrics_file(path, process),
            metrics: fraudflow::metrics::install(fraudflow::metrics::Exposed {
                process,
                workers: settings.cluster.workers,
                kafka: false,
            }),
        });
        let summary = pipeline::run(settings, outputs)?;
        kept.map(KeptMetrics::write).transpose()?;
        Ok(summary)
    }

    fn write(self) -> anyhow::Result<()> {
        let mut file = fraudflow::atomic::AtomicFile::create(&self.path)?;
        std::io::Write::write_all(&mut file, self.metrics.encode().as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))?;
        file.commit()?;
        Ok(())
    }
}
