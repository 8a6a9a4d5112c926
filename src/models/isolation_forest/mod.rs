//! Isolation forest (Liu, Ting and Zhou, ICDM 2008): anomalies are isolated
//! by fewer random splits than normal points. Trained on legitimate rows.
//!
//! The score is the original system's: a sigmoid of the negative decision
//! function, where the decision function is the negated mean-path score
//! `-2^(-E[h(x)] / c(ψ))` less the offset that puts the `contamination`
//! share of the training rows below zero (scikit-learn's convention).
//!
//! # Examples
//!
//! ```
//! use fraudflow::models::isolation_forest::IsolationForestParams;
//! use linfa::prelude::*;
//! use ndarray::{array, Array2};
//!
//! // A tight cluster around the origin, and one far point to score.
//! let train = Array2::from_shape_fn((500, 2), |(i, j)| ((i * 7 + j * 3) % 10) as f64 / 10.0);
//! let forest = IsolationForestParams::default().seed(7).fit(&DatasetBase::from(train)).unwrap();
//! let scores = forest.predict(&array![[0.5, 0.5], [25.0, -40.0]]);
//! assert!(scores[1] > scores[0]);
//! assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
//! ```

mod error;
mod hyperparams;
mod stored;

use std::collections::HashSet;

use linfa::prelude::*;
use ndarray::{Array1, ArrayBase, Data, Ix2};
use serde::{Deserialize, Serialize};

pub use error::IsolationForestError;
pub use hyperparams::{IsolationForestParams, IsolationForestValidParams};
pub use hyperparams::{MAX_SAMPLE_SIZE, MAX_TREES};
use stored::StoredForest;
pub use stored::StoredForestError;

use crate::eda::quantile;
use crate::generate::Rng;

/// Most training rows scored to place the decision offset.
const OFFSET_ROWS: usize = 65_536;

const LEAF: u32 = u32::MAX;

/// One node of a tree, in preorder: a split's left child follows it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    /// Split feature, or `LEAF`.
    feature: u32,
    /// Split value (rows below go left); for a leaf, the path-length
    /// correction `c(size)` of the rows that reached it.
    value: f64,
    /// Index of the right child.
    right: u32,
}

/// A tree compiled for scoring: a complete binary tree of `depth` levels
/// (heap order: the children of `i` are `2i + 1` and `2i + 2`), whose early
/// leaves became chains of always-left nodes, and whose `2^depth` slots hold
/// the path length `depth(leaf) + c(size)`. Scoring a row takes exactly
/// `depth` steps and no data-dependent branch.
#[derive(Clone, Debug, PartialEq)]
struct CompiledTree {
    /// (threshold, feature) of each inner node, together: one cache line
    /// per step; then one unused slot.
    nodes: Vec<(f32, u32)>,
    paths: Vec<f64>,
}

/// Widest row batch scoring takes: a power of two, so that a feature index
/// is masked rather than checked.
const FEATURE_SLOTS: usize = 16;

/// Trees walked side by side: their steps are independent, so the
/// processor overlaps their loads.
const LANES: usize = 16;

/// A fitted isolation forest. It is stored as its preorder trees and
/// compiled again on loading, after every tree is checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredForest", into = "StoredForest")]
pub struct IsolationForest {
    trees: Vec<Vec<Node>>,
    compiled: Vec<CompiledTree>,
    depth: usize,
    n_features: usize,
    /// `c(ψ)`: the mean path length of an unsuccessful search in a tree of
    /// ψ samples, which normalises depths.
    normaliser: f64,
    offset: f64,
}

impl<T> Fit<ndarray::Array2<f64>, T, IsolationForestError> for IsolationForestValidParams {
    type Object = IsolationForest;

    fn fit(
        &self,
        dataset: &DatasetBase<ndarray::Array2<f64>, T>,
    ) -> Result<IsolationForest, IsolationForestError> {
        let x = dataset.records();
        let (rows, n_features) = x.dim();
        if rows < 2 {
            return Err(IsolationForestError::TooFewRows(rows));
        }
        if let Some((row, column)) = super::first_non_finite(x) {
            return Err(IsolationForestError::NotFinite { row, column });
        }
        let psi = self.sample_size.min(rows);
        let max_depth = (psi as f64).log2().ceil() as usize;
        let mut rng = Rng::seed_from(self.seed);
        let trees: Vec<Vec<Node>> = (0..self.n_trees)
            .map(|_| {
                let mut sample = distinct_rows(&mut rng, rows, psi);
                let mut nodes = Vec::with_capacity(2 * psi);
                grow(x, &mut sample, 0, max_depth, &mut rng, &mut nodes);
                nodes
            })
            .collect();
        let compiled = trees
            .iter()
            .map(|t: &Vec<Node>| compile(t, max_depth))
            .collect();
        let mut forest = IsolationForest {
            trees,
            compiled,
            depth: max_depth,
            n_features,
            normaliser: average_path(psi),
            offset: 0.0,
        };
        let scored = distinct_rows(&mut rng, rows, rows.min(OFFSET_ROWS));
        let mut normality: Vec<f64> = scored
            .iter()
            .map(|&r| forest.normality(&row_of(x, r)))
            .collect();
        normality.sort_unstable_by(f64::total_cmp);
        forest.offset = quantile(&normality, self.contamination).unwrap_or(-0.5);
        Ok(forest)
    }
}

impl IsolationForest {
    /// The anomaly score of one row, in (0, 1): higher is more anomalous,
    /// 0.5 at the decision boundary.
    pub fn score(&self, row: &[f64]) -> f64 {
        score_of_decision(self.decision(row))
    }

    /// Negative for anomalies (the `contamination` share of training rows),
    /// positive for normal rows.
    pub fn decision(&self, row: &[f64]) -> f64 {
        self.normality(row) - self.offset
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The scores of many rows at once, into `out`: the same numbers as
    /// [`score`](Self::score), faster. Rows walk each tree side by side, so
    /// a tree is read from memory once for every `LANES` rows rather than
    /// once a row.
    pub fn score_many(&self, rows: &[&[f64]], out: &mut Vec<f64>) {
        out.clear();
        out.resize(rows.len(), 0.0);
        if self.n_features > FEATURE_SLOTS {
            for (total, row) in out.iter_mut().zip(rows) {
                *total = self.score(row);
            }
            return;
        }
        for (group, totals) in rows.chunks(LANES).zip(out.chunks_mut(LANES)) {
            // A short group (sparse time sends rows one or two at a time)
            // would walk every tree for all the lanes: walk them once a row,
            // trees side by side instead. Both sum a row's paths in tree
            // order, so the scores are the same bits.
            if group.len() < LANES / 2 {
                for (total, row) in totals.iter_mut().zip(group) {
                    *total = self.path_total(row);
                }
                continue;
            }
            // Fixed-width copies: a feature index is masked into range
            // rather than checked (fit and load keep it below n_features).
            let mut lanes = [[0.0f64; FEATURE_SLOTS]; LANES];
            for (lane, row) in lanes.iter_mut().zip(group) {
                let n = row.len().min(FEATURE_SLOTS);
                lane[..n].copy_from_slice(&row[..n]);
            }
            for tree in &self.compiled {
                let inner = tree.nodes.len() - 1;
                let nodes = &tree.nodes[..=inner];
                let mut at = [0usize; LANES];
                for _ in 0..self.depth {
                    for (i, lane) in at.iter_mut().zip(&lanes) {
                        let (threshold, feature) = nodes[*i & inner];
                        let value = lane[feature as usize & (FEATURE_SLOTS - 1)];
                        *i = 2 * *i + 1 + usize::from(value >= f64::from(threshold));
                    }
                }
                for (total, i) in totals.iter_mut().zip(&at) {
                    *total += tree.paths[i - inner];
                }
            }
        }
        for total in out.iter_mut() {
            *total = score_of_decision(self.normality_of_total(*total) - self.offset);
        }
    }

    /// `-2^(-E[h(x)] / c(ψ))`: near -1 for anomalies, near -0.5 or above for
    /// normal rows.
    fn normality(&self, row: &[f64]) -> f64 {
        self.normality_of_total(self.path_total(row))
    }

    /// The sum of a row's path lengths over all trees, in tree order.
    fn path_total(&self, row: &[f64]) -> f64 {
        let mut total = 0.0;
        for group in self.compiled.chunks(LANES) {
            let mut at = [0usize; LANES];
            for _ in 0..self.depth {
                for (i, tree) in at.iter_mut().zip(group) {
                    let (threshold, feature) = tree.nodes[*i];
                    *i = 2 * *i + 1 + usize::from(row[feature as usize] >= f64::from(threshold));
                }
            }
            for (i, tree) in at.iter().zip(group) {
                total += tree.paths[i - (tree.nodes.len() - 1)];
            }
        }
        total
    }

    /// Normality from the sum of a row's path lengths over all trees.
    fn normality_of_total(&self, total: f64) -> f64 {
        -(2f64).powf(-(total / self.trees.len() as f64) / self.normaliser)
    }
}

/// The score in (0, 1) of a decision value: higher is more anomalous.
fn score_of_decision(decision: f64) -> f64 {
    1.0 / (1.0 + decision.exp())
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for IsolationForest {
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        for (target, row) in y.iter_mut().zip(x.rows()) {
            *target = match row.as_slice() {
                Some(slice) => self.score(slice),
                None => self.score(&row.to_vec()),
            };
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

fn row_of(x: &ndarray::Array2<f64>, r: usize) -> Vec<f64> {
    x.row(r).to_vec()
}

/// `count` distinct row indices out of `rows`, in a seeded random order.
fn distinct_rows(rng: &mut Rng, rows: usize, count: usize) -> Vec<usize> {
    if count * 2 >= rows {
        // Dense: a partial Fisher-Yates shuffle of all indices.
        let mut all: Vec<usize> = (0..rows).collect();
        for i in 0..count {
            let j = i + rng.below((rows - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(count);
        return all;
    }
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let r = rng.below(rows as u64) as usize;
        if seen.insert(r) {
            out.push(r);
        }
    }
    out
}

/// A random feature that still varies over `sample`, with its least and
/// greatest values there; `None` when none does.
fn varying_feature(
    x: &ndarray::Array2<f64>,
    sample: &[usize],
    rng: &mut Rng,
) -> Option<(usize, f64, f64)> {
    let n_features = x.ncols();
    let start = rng.below(n_features as u64) as usize;
    (0..n_features)
        .map(|k| (start + k) % n_features)
        .find_map(|f| {
            let (lo, hi) =
                sample
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                        let v = x[[r, f]];
                        (lo.min(v), hi.max(v))
                    });
            (lo < hi).then_some((f, lo, hi))
        })
}

/// Moves the rows of `sample` below `threshold` on `feature` to its front,
/// and says how many there are.
fn partition(
    x: &ndarray::Array2<f64>,
    sample: &mut [usize],
    feature: usize,
    threshold: f64,
) -> usize {
    let mut left = 0;
    for i in 0..sample.len() {
        if x[[sample[i], feature]] < threshold {
            sample.swap(i, left);
            left += 1;
        }
    }
    left
}

/// Grows a tree over `sample` in preorder into `nodes`.
fn grow(
    x: &ndarray::Array2<f64>,
    sample: &mut [usize],
    depth: usize,
    max_depth: usize,
    rng: &mut Rng,
    nodes: &mut Vec<Node>,
) {
    let leaf = Node {
        feature: LEAF,
        value: average_path(sample.len()),
        right: 0,
    };
    if depth >= max_depth || sample.len() <= 1 {
        nodes.push(leaf);
        return;
    }
    let Some((feature, lo, hi)) = varying_feature(x, sample, rng) else {
        nodes.push(leaf);
        return;
    };
    // Thresholds are kept at f32 precision (widened back exactly), so a
    // compiled node packs into 8 bytes.
    let threshold = f64::from(single(between(lo, hi, rng.uniform())));
    let left = partition(x, sample, feature, threshold);
    if left == 0 || left == sample.len() {
        nodes.push(leaf);
        return;
    }
    let at = nodes.len();
    nodes.push(Node {
        feature: feature as u32,
        value: threshold,
        right: 0,
    });
    let (l, r) = sample.split_at_mut(left);
    grow(x, l, depth + 1, max_depth, rng, nodes);
    nodes[at].right = nodes.len() as u32;
    grow(x, r, depth + 1, max_depth, rng, nodes);
}

/// The point `u` of the way from `lo` to `hi` (both finite, `u` in [0, 1)):
/// finite even when `hi - lo` is wider than f64 holds.
fn between(lo: f64, hi: f64, u: f64) -> f64 {
    let width = hi - lo;
    if width.is_finite() {
        lo + u * width
    } else {
        lo * (1.0 - u) + hi * u
    }
}

/// A threshold at single precision, saturating at f32's largest finite
/// values: `as f32` alone turns anything beyond them into infinity.
fn single(v: f64) -> f32 {
    v.clamp(-f64::from(f32::MAX), f64::from(f32::MAX)) as f32
}

impl CompiledTree {
    /// One tree's path length; scoring walks several at once instead.
    #[cfg(test)]
    fn path_length(&self, row: &[f64], depth: usize) -> f64 {
        let mut i = 0;
        for _ in 0..depth {
            let (threshold, feature) = self.nodes[i];
            i = 2 * i + 1 + usize::from(row[feature as usize] >= f64::from(threshold));
        }
        self.paths[i - (self.nodes.len() - 1)]
    }
}

/// Lays a preorder tree out as a complete tree of `depth` levels.
fn compile(nodes: &[Node], depth: usize) -> CompiledTree {
    let inner = (1usize << depth) - 1;
    let mut tree = CompiledTree {
        // One slot past the inner nodes, never reached: the table's length
        // is a power of two, so a masked index needs no bounds check.
        nodes: vec![(f32::INFINITY, 0); inner + 1],
        paths: vec![0.0; 1 << depth],
    };
    // (preorder node, heap slot, depth reached)
    let mut stack = vec![(0usize, 0usize, 0usize)];
    while let Some((node, slot, level)) = stack.pop() {
        let n = nodes[node];
        if n.feature == LEAF {
            // Always left from here: x < +inf holds for every finite value.
            let mut slot = slot;
            while slot < inner {
                slot = 2 * slot + 1;
            }
            tree.paths[slot - inner] = level as f64 + n.value;
            continue;
        }
        tree.nodes[slot] = (single(n.value), n.feature);
        stack.push((node + 1, 2 * slot + 1, level + 1));
        stack.push((n.right as usize, 2 * slot + 2, level + 1));
    }
    tree
}

/// The path length by walking the preorder tree: the definition the compiled
/// form must agree with.
#[cfg(test)]
fn path_length(nodes: &[Node], row: &[f64]) -> f64 {
    let (mut i, mut depth) = (0usize, 0.0);
    loop {
        let node = nodes[i];
        if node.feature == LEAF {
            return depth + node.value;
        }
        depth += 1.0;
        i = if row[node.feature as usize] < node.value {
            i + 1
        } else {
            node.right as usize
        };
    }
}

/// `c(n)`: the average path length of an unsuccessful search in a binary
/// search tree of `n` points, the paper's normaliser.
fn average_path(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        n => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

#[cfg(test)]
mod tests;
