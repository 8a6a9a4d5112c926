//! Sinks that keep what they are given in memory, for the command that ran
//! the pipeline to read afterwards (training's table, evaluation records).

use std::sync::{Arc, Mutex};

use super::Sink;
use crate::pipeline::PipelineError;

/// Collects every record given; clones share the same records (so the
/// command keeps one clone and hands others to the pipeline), and each
/// counts what it was given itself.
#[derive(Debug)]
pub struct Collect<D> {
    all: Arc<Mutex<Vec<D>>>,
    given: u64,
}

impl<D> Default for Collect<D> {
    fn default() -> Self {
        Collect::with_capacity(0)
    }
}

impl<D> Clone for Collect<D> {
    fn clone(&self) -> Self {
        Collect {
            all: Arc::clone(&self.all),
            given: 0,
        }
    }
}

impl<D> Collect<D> {
    /// Room for `n` records up front: growing a vector of millions copies
    /// it again and again.
    pub fn with_capacity(n: usize) -> Self {
        Collect {
            all: Arc::new(Mutex::new(Vec::with_capacity(n))),
            given: 0,
        }
    }

    /// The records collected so far by every clone, leaving none.
    pub fn take(&self) -> Vec<D> {
        std::mem::take(&mut *self.all.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push_all(&mut self, batch: impl ExactSizeIterator<Item = D>) {
        self.given += batch.len() as u64;
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch);
    }
}

impl<D: Clone + Send> Sink<D> for Collect<D> {
    fn write(&mut self, batch: &mut [D]) -> Result<(), PipelineError> {
        self.push_all(batch.iter().cloned());
        Ok(())
    }

    /// How many records this clone was given.
    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        Ok(self.given)
    }
}

/// A [`Collect`] of what `map` makes of each record.
pub struct CollectMap<D, T> {
    pub into: Collect<T>,
    pub map: fn(&D) -> T,
}

impl<D, T: Send> Sink<D> for CollectMap<D, T> {
    fn write(&mut self, batch: &mut [D]) -> Result<(), PipelineError> {
        let map = self.map;
        self.into.push_all(batch.iter().map(map));
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        Ok(self.into.given)
    }
}
