use linfa::ParamGuard;

use super::error::IsolationForestError;

/// The most trees a forest may have: a hundred times the paper's 100, and
/// a bound on the time and memory of fitting and scoring.
pub const MAX_TREES: usize = 10_000;

/// The most rows a tree may be grown from: 256 is the paper's, and a tree
/// of this many rows already has 2^16 leaves at most.
pub const MAX_SAMPLE_SIZE: usize = 65_536;

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
        if !(1..=MAX_TREES).contains(&p.n_trees) {
            return Err(IsolationForestError::Trees(p.n_trees));
        }
        if !(2..=MAX_SAMPLE_SIZE).contains(&p.sample_size) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_the_limits_are_refused_by_value() {
        // Regression: 100000000 trees were accepted, and ran for hours.
        let err = |p: IsolationForestParams| p.check_ref().unwrap_err().to_string();
        assert_eq!(
            err(IsolationForestParams::default().n_trees(100_000_000)),
            "n_trees must be in 1..=10000, got 100000000"
        );
        assert_eq!(
            err(IsolationForestParams::default().sample_size(MAX_SAMPLE_SIZE + 1)),
            "sample_size must be in 2..=65536, got 65537"
        );
        let most = IsolationForestParams::default()
            .n_trees(MAX_TREES)
            .sample_size(MAX_SAMPLE_SIZE);
        assert!(most.check_ref().is_ok());
    }
}
