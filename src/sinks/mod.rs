//! Where the pipeline's outputs go. Every sink is opened before any worker
//! starts (so a bad path fails before work begins), then owned by worker 0,
//! which hands it each batch in input order and finishes it at the end.

pub mod file;
pub mod kafka;

use crate::pipeline::PipelineError;

/// An output of the pipeline.
pub trait Sink<D>: Send {
    /// Writes one batch, in input order. An error ends the run.
    fn write(&mut self, batch: &mut [D]) -> Result<(), PipelineError>;
    /// Makes the output final; returns how many records it holds.
    fn finish(self: Box<Self>) -> Result<u64, PipelineError>;
}

/// A boxed sink.
pub type BoxSink<D> = Box<dyn Sink<D>>;
