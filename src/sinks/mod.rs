//! Where the pipeline's outputs go. Every sink is opened before any worker
//! starts (so a bad path fails before work begins), then owned by worker 0,
//! which hands it each batch in input order and finishes it at the end.

pub mod file;
pub mod kafka;
pub mod memory;

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

/// Several sinks given the same batches; finishing returns the first's
/// count.
///
/// ```
/// use fraudflow::sinks::{Fanout, Sink};
/// use fraudflow::sinks::memory::Collect;
///
/// let (a, b) = (Collect::<u64>::default(), Collect::<u64>::default());
/// let mut both: Box<dyn Sink<u64>> = Box::new(Fanout(vec![Box::new(a.clone()), Box::new(b.clone())]));
/// both.write(&mut [1, 2]).unwrap();
/// assert_eq!(both.finish().unwrap(), 2);
/// assert_eq!((a.take(), b.take()), (vec![1, 2], vec![1, 2]));
/// ```
pub struct Fanout<D>(pub Vec<BoxSink<D>>);

impl<D> Sink<D> for Fanout<D> {
    fn write(&mut self, batch: &mut [D]) -> Result<(), PipelineError> {
        self.0.iter_mut().try_for_each(|s| s.write(batch))
    }

    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        let mut first = None;
        for sink in self.0 {
            let n = sink.finish()?;
            first.get_or_insert(n);
        }
        Ok(first.unwrap_or(0))
    }
}
