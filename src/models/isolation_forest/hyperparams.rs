use linfa::ParamGuard;

use super::error::IsolationForestError;

/// Checked parameters of an isolation forest (Liu, Ting and Zhou, ICDM 2008).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IsolationForestValidParams {
    pub(super) n_trees: usize,
    pub(super) sample_size: usize,
    pub(super) contamination: f64,
    pub(super) seed: u64,
}

/// Unchecked parameters: set what differs from the defaults, then `fit`
/// checks them first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IsolationForestParams(IsolationForestValidParams);

impl Default for IsolationForestParams {
    /// 100 trees of 256 samples each, as in the paper; 1 % contamination.
    fn default() -> Self {
        IsolationForestParams(IsolationForestValidParams {
            n_trees: 100,
            sample_size: 256,
            contamination: 0.01,
            seed: 42,
        })
    }
}

impl IsolationForestParams {
    /// Number of trees.
    pub fn n_trees(mut self, n: usize) -> Self {
        self.0.n_trees = n;
        self
    }

    /// Rows drawn (without replacement) to grow each tree.
    pub fn sample_size(mut self, n: usize) -> Self {
        self.0.sample_size = n;
        self
    }

    /// Expected share of anomalies in the training data: sets where the
    /// decision function crosses zero.
    pub fn contamination(mut self, share: f64) -> Self {
        self.0.contamination = share;
        self
    }

    /// Seed of the forest's random draws.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
}

impl ParamGuard for IsolationForestParams {
    type Checked = IsolationForestValidParams;
    type Error = IsolationForestError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if p.n_trees == 0 {
            return Err(IsolationForestError::Trees(p.n_trees));
        }
        if p.sample_size < 2 {
            return Err(IsolationForestError::SampleSize(p.sample_size));
        }
        if !(p.contamination > 0.0 && p.contamination <= 0.5) {
            return Err(IsolationForestError::Contamination(p.contamination));
        }
        Ok(p)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}
