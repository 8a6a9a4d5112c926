//! The stored form of a forest: its preorder trees and constants, as a
//! bundle holds them, and the checks a forest read from outside passes
//! before it is compiled for scoring, so that every score it gives is
//! finite.

use serde::{Deserialize, Serialize};

use super::{average_path, compile, single, IsolationForest, Node, LEAF};
use crate::models::ParamsError;

/// What an artifact holds of a forest.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredForest {
    trees: Vec<Vec<Node>>,
    depth: usize,
    n_features: usize,
    normaliser: f64,
    offset: f64,
}

impl From<IsolationForest> for StoredForest {
    fn from(f: IsolationForest) -> StoredForest {
        StoredForest {
            trees: f.trees,
            depth: f.depth,
            n_features: f.n_features,
            normaliser: f.normaliser,
            offset: f.offset,
        }
    }
}

/// Deepest tree a stored forest may hold: 2^20 leaves each.
const MAX_DEPTH: usize = 20;

/// Why a stored forest is refused, naming the model: the message reaches
/// the user through the bundle's parse error, which names no field. The
/// message holds the cause, so it is not also given as `source()` (an
/// error chain would print it twice).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("isolation_forest: {0}")]
pub struct StoredForestError(pub ParamsError);

impl From<ParamsError> for StoredForestError {
    fn from(e: ParamsError) -> Self {
        StoredForestError(e)
    }
}

impl TryFrom<StoredForest> for IsolationForest {
    type Error = StoredForestError;

    fn try_from(s: StoredForest) -> Result<IsolationForest, StoredForestError> {
        check_stored(&s)?;
        let compiled = s.trees.iter().map(|t| compile(t, s.depth)).collect();
        Ok(IsolationForest {
            trees: s.trees,
            compiled,
            depth: s.depth,
            n_features: s.n_features,
            normaliser: s.normaliser,
            offset: s.offset,
        })
    }
}

/// Checks a stored forest's shape, normaliser, offset and every tree.
fn check_stored(s: &StoredForest) -> Result<(), ParamsError> {
    if s.trees.is_empty() || s.depth == 0 || s.depth > MAX_DEPTH || s.n_features == 0 {
        return Err(ParamsError::Structure(format!(
            "a forest of {} trees of depth {} over {} features",
            s.trees.len(),
            s.depth,
            s.n_features
        )));
    }
    crate::models::positive(|| "normaliser".into(), s.normaliser)?;
    crate::models::finite(|| "offset".into(), s.offset)?;
    for (i, tree) in s.trees.iter().enumerate() {
        check_tree(tree, s.depth, s.n_features)
            .map_err(|e| ParamsError::Structure(format!("tree {i}: {e}")))?;
    }
    Ok(())
}

/// Checks that a preorder tree from outside can be compiled: children
/// after their parent and inside the tree, splits above `depth`, known
/// features, split values that single precision holds exactly (as training
/// writes them), and leaf corrections `c(size)` that a tree can have, so
/// that a row's summed path lengths stay finite.
fn check_tree(nodes: &[Node], depth: usize, n_features: usize) -> Result<(), String> {
    let mut stack = vec![(0usize, 0usize)];
    let mut visited = 0usize;
    while let Some((node, level)) = stack.pop() {
        let n = nodes
            .get(node)
            .ok_or_else(|| format!("node {node} is outside its {} nodes", nodes.len()))?;
        visited += 1;
        if visited > nodes.len() {
            return Err("a node is reached twice".to_string());
        }
        if n.feature == LEAF {
            if !(0.0..=average_path(usize::MAX)).contains(&n.value) {
                return Err(format!(
                    "leaf {node} has path correction {:?}, outside [0, {:.2}]",
                    n.value,
                    average_path(usize::MAX)
                ));
            }
            continue;
        }
        if !(n.value.is_finite() && f64::from(single(n.value)) == n.value) {
            return Err(format!(
                "node {node} splits at {:?}, which is not a finite single-precision value",
                n.value
            ));
        }
        if n.feature as usize >= n_features || level >= depth {
            return Err(format!(
                "node {node} splits on feature {} at level {level} (features {n_features}, depth {depth})",
                n.feature
            ));
        }
        if n.right as usize <= node + 1 {
            return Err(format!("node {node} has its right child at {}", n.right));
        }
        stack.push((node + 1, level + 1));
        stack.push((n.right as usize, level + 1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::isolation_forest::IsolationForestParams;
    use linfa::prelude::*;
    use ndarray::Array2;

    #[test]
    fn a_stored_forest_that_cannot_score_finitely_is_refused() {
        let x = Array2::from_shape_fn((100, 2), |(i, j)| (i * (j + 1)) as f64);
        let forest = IsolationForestParams::default()
            .n_trees(3)
            .fit(&DatasetBase::from(x))
            .unwrap();
        let stored = |edit: &dyn Fn(&mut StoredForest)| {
            let mut s = StoredForest::from(forest.clone());
            edit(&mut s);
            IsolationForest::try_from(s)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let leaf = forest.trees[0]
            .iter()
            .position(|n| n.feature == LEAF)
            .unwrap();
        let split = forest.trees[0]
            .iter()
            .position(|n| n.feature != LEAF)
            .unwrap();
        let err = stored(&|s| s.trees[0][leaf].value = 1e300);
        assert!(err.contains(&format!("tree 0: leaf {leaf}")), "{err}");
        let err = stored(&|s| s.trees[0][split].value = 1e39);
        assert!(err.contains("single-precision"), "{err}");
        assert!(stored(&|s| s.offset = f64::NAN).contains("offset"));
        assert!(stored(&|s| s.normaliser = 0.0).contains("normaliser"));
    }
}
