//! What can end a run of the dataflow, each naming the file, setting or
//! thread at fault.

use std::path::PathBuf;

use thiserror::Error;

/// Why a run of the pipeline failed.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// Reading an input or writing an output failed.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// An output that cannot be opened or written (see `crate::atomic`).
    #[error(transparent)]
    Output(#[from] crate::atomic::OutputError),
    /// A setting that cannot work, named with its value.
    #[error("{setting}: {problem}")]
    Setting {
        setting: &'static str,
        problem: String,
    },
    /// A command's setup failed before the workers started, as it said;
    /// `data` keeps whether the data was at fault (exit 1), which the
    /// message alone no longer tells.
    #[error("{message}")]
    Setup { message: String, data: bool },
    /// timely could not start the workers (e.g. a port in use).
    #[error("starting the workers: {0}")]
    Start(String),
    /// A worker thread panicked: a bug, reported with where it happened.
    #[error("worker thread {thread} panicked: {message}")]
    Panic { thread: String, message: String },
    /// Another process of the run went away before the run ended.
    #[error(
        "lost the connection to another process of this run (it failed or was stopped): {message}"
    )]
    PeerLost { message: String },
    /// The end of a run over a file, or a live run's heartbeat, stood
    /// still for the source's stall timeout (see
    /// [`crate::pipeline::stall`]).
    #[error(
        "the run made no progress for {seconds} s while this process waited (over a file: its end \
         stood still; live: another process stopped stepping): with several processes, another may \
         be stopped or cut off from this one (--stall-timeout, or \
         stall_timeout_seconds in the dataflow file's [source.file], [source.http] or [source.kafka], \
         sets the wait)"
    )]
    Stalled { seconds: u64 },
    /// Another process of the run was started with other settings.
    #[error(
        "process {other} of this run was started with another {name}: {theirs} \
         (this process, {process}: {ours}); start every process of a run with the same \
         settings, input and models"
    )]
    Mismatch {
        other: usize,
        name: String,
        theirs: String,
        process: usize,
        ours: String,
    },
    /// Another worker failed first; this one stopped because of it.
    #[error("stopped because another worker failed")]
    Aborted,
    /// A failure of a component, with its own typed error.
    #[error("{what}: {cause}")]
    Component {
        what: &'static str,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The exit status of a failed command: 1 when the data is at fault, else
/// 2 (the README's exit codes), with one process or several.
pub fn exit_status(data_at_fault: bool) -> u8 {
    if data_at_fault {
        1
    } else {
        2
    }
}

impl PipelineError {
    /// An I/O failure on `path`.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> PipelineError {
        PipelineError::Io {
            path: path.into(),
            cause,
        }
    }

    /// Whether the data read is at fault (exit 1) rather than a setting or
    /// the system (exit 2): a component's error that says so, such as a bad
    /// row under `--strict` or an unlabelled training event.
    pub fn is_data_error(&self) -> bool {
        let cause = match self {
            PipelineError::Component { cause, .. } => cause,
            PipelineError::Setup { data, .. } => return *data,
            _ => return false,
        };
        if let Some(e) = cause.downcast_ref::<crate::paysim::ReadError>() {
            return e.is_data_error();
        }
        cause
            .downcast_ref::<crate::train::TrainError>()
            .is_some_and(crate::train::TrainError::is_data_error)
    }

    /// A component's own error, under its name.
    pub fn component(
        what: &'static str,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> PipelineError {
        PipelineError::Component {
            what,
            cause: Box::new(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paysim::ReadError;

    /// The exit status of a run of several processes follows this, where
    /// a run of one follows `cmd::exit_code`: the two must agree.
    #[test]
    fn the_data_is_at_fault_however_the_error_reached_the_run() {
        let empty = || ReadError::Empty {
            expected: "step,type".into(),
        };
        let missing = || ReadError::Open {
            path: "/nope.csv".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(PipelineError::component("input", empty()).is_data_error());
        assert!(!PipelineError::component("input", missing()).is_data_error());
        let setup = |data| PipelineError::Setup {
            message: "input: the file is empty".into(),
            data,
        };
        assert!(setup(true).is_data_error());
        assert!(!setup(false).is_data_error());
        let setting = PipelineError::Setting {
            setting: "window",
            problem: "0 is not allowed".into(),
        };
        assert!(!setting.is_data_error());
        assert!(!PipelineError::Aborted.is_data_error());
    }
}
