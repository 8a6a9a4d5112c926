//! The ranking figures of a whole run from its labelled scores kept on
//! disk, in sorted runs.
//!
//! PR-AUC, ROC-AUC and the alerts at the budget rank every labelled score
//! of a run. [`super::ranking`] sorts them in memory; a backtest of 25
//! million rows would hold them all. [`RankRuns`] holds at most a set
//! number of pairs (score, label): when full it sorts them, highest first
//! in f64's total order as those functions do, and writes them out as a
//! run of 9 bytes a pair. At the end one pass merges the runs and walks
//! the ranking from the top, tied scores taken together, and a second
//! plain pass counts the alerts at the threshold the budget found. The
//! figures are those of the in-memory functions, bit for bit: the tests
//! compare them on scores with ties, NaN and signed zeros.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::ranking::AtThreshold;
use super::spill::{io, SpillError};

/// Pairs held in memory before a run is written: 16 MiB.
const LIMIT: usize = 1 << 20;
/// Runs merged at once; more are merged in rounds first.
const FAN_IN: usize = 64;
/// Bytes of a pair on disk: the score's bits and the label.
const PAIR_BYTES: usize = 9;

/// What [`super::ranking`]'s functions give for the same pairs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranked {
    pub pr_auc: Option<f64>,
    pub roc_auc: Option<f64>,
    pub at_budget: Option<AtThreshold>,
}

/// Labelled scores, held in memory up to a limit and in sorted runs on
/// disk past it.
///
/// ```
/// use fraudflow::eval::ranking::{at_budget, average_precision, roc_auc};
/// use fraudflow::eval::runs::RankRuns;
/// let dir = std::env::temp_dir().join(format!("runs-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9];
/// let labels = [false, false, true, true, true, false];
/// let mut runs = RankRuns::new(&dir, "doc").with_limit(2);
/// for (s, l) in scores.iter().zip(labels) {
///     runs.push(*s, l).unwrap();
/// }
/// let ranked = runs.rank(0.34).unwrap();
/// assert_eq!(ranked.pr_auc, average_precision(&scores, &labels));
/// assert_eq!(ranked.roc_auc, roc_auc(&scores, &labels));
/// assert_eq!(ranked.at_budget, at_budget(&scores, &labels, 0.34));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug)]
pub struct RankRuns {
    dir: PathBuf,
    prefix: String,
    limit: usize,
    buffer: Vec<(f64, bool)>,
    /// Each run written, and its pairs.
    runs: Vec<(PathBuf, u64)>,
    n: u64,
    positives: u64,
}

impl RankRuns {
    /// Runs written into `dir`, named `PREFIX-N.run` (and removed once
    /// ranked).
    pub fn new(dir: &Path, prefix: &str) -> RankRuns {
        RankRuns {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            limit: LIMIT,
            buffer: Vec::new(),
            runs: Vec::new(),
            n: 0,
            positives: 0,
        }
    }

    /// Every pair in memory: no run is ever written.
    pub fn in_memory() -> RankRuns {
        RankRuns::new(Path::new(""), "").with_limit(usize::MAX)
    }

    /// At most `limit` (at least 1) pairs in memory.
    pub fn with_limit(mut self, limit: usize) -> RankRuns {
        self.limit = limit.max(1);
        self
    }

    pub fn push(&mut self, score: f64, label: bool) -> Result<(), SpillError> {
        self.buffer.push((score, label));
        self.n += 1;
        self.positives += u64::from(label);
        if self.buffer.len() >= self.limit {
            let pairs = std::mem::take(&mut self.buffer);
            self.write_run(pairs)?;
        }
        Ok(())
    }

    /// Writes `pairs`, sorted highest first, as a new run.
    fn write_run(&mut self, mut pairs: Vec<(f64, bool)>) -> Result<(), SpillError> {
        pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let (path, n) = (self.next_run(), pairs.len() as u64);
        let file = File::create(&path).map_err(io(&path))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        for (s, l) in pairs {
            out.write_all(&encode(s, l)).map_err(io(&path))?;
        }
        out.flush().map_err(io(&path))?;
        self.runs.push((path, n));
        Ok(())
    }

    fn next_run(&self) -> PathBuf {
        let n = self.runs.len();
        self.dir.join(format!("{}-{n}.run", self.prefix))
    }

    /// Pairs pushed, and how many of them are labelled `true`.
    pub fn counts(&self) -> (u64, u64) {
        (self.n, self.positives)
    }

    /// Hands `each` every pair pushed, highest score first in f64's total
    /// order (ties in no set order). The runs stay until [`Self::remove`].
    pub fn walk(&mut self, mut each: impl FnMut(f64, bool)) -> Result<(), SpillError> {
        if self.runs.is_empty() {
            self.buffer.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            self.buffer.iter().for_each(|&(s, l)| each(s, l));
            return Ok(());
        }
        let rest = std::mem::take(&mut self.buffer);
        self.write_run(rest)?;
        self.fewer_runs()?;
        merge(&self.runs, |s, l| {
            each(s, l);
            Ok(())
        })
    }

    /// The ranking figures of every pair pushed, alerts at the `budget`
    /// share of them.
    pub fn rank(mut self, budget: f64) -> Result<Ranked, SpillError> {
        let mut walk = Walk::new(self.n, self.positives, budget);
        self.walk(|s, l| walk.push(s, l))?;
        let (pr_auc, roc_auc, kth) = walk.finish();
        let at_budget = match kth {
            Some(t) => Some(self.at_threshold(t)?),
            None => None,
        };
        self.remove()?;
        Ok(Ranked {
            pr_auc,
            roc_auc,
            at_budget,
        })
    }

    /// Removes the runs written.
    pub fn remove(self) -> Result<(), SpillError> {
        for (run, _) in &self.runs {
            std::fs::remove_file(run).map_err(io(run))?;
        }
        Ok(())
    }

    /// Merges runs in rounds of [`FAN_IN`] until at most that many are
    /// left.
    fn fewer_runs(&mut self) -> Result<(), SpillError> {
        while self.runs.len() > FAN_IN {
            let group: Vec<(PathBuf, u64)> = self.runs.drain(..FAN_IN).collect();
            let n = group.iter().map(|r| r.1).sum();
            let path = self
                .dir
                .join(format!("{}-m{}.run", self.prefix, self.runs.len()));
            let file = File::create(&path).map_err(io(&path))?;
            let mut out = BufWriter::with_capacity(1 << 16, file);
            merge(&group, |s, l| {
                out.write_all(&encode(s, l)).map_err(io(&path))
            })?;
            out.flush().map_err(io(&path))?;
            for (run, _) in &group {
                std::fs::remove_file(run).map_err(io(run))?;
            }
            self.runs.push((path, n));
        }
        Ok(())
    }

    /// Alerting on `score >= threshold`, as [`super::ranking::at_threshold`].
    fn at_threshold(&self, threshold: f64) -> Result<AtThreshold, SpillError> {
        let (mut alerts, mut caught) = (0u64, 0u64);
        let mut count = |s: f64, l: bool| {
            if s >= threshold {
                alerts += 1;
                caught += u64::from(l);
            }
        };
        self.buffer.iter().for_each(|&(s, l)| count(s, l));
        for (run, n) in &self.runs {
            let mut reader = Run::open(run, *n)?;
            while let Some((s, l)) = reader.next()? {
                count(s, l);
            }
        }
        Ok(AtThreshold::counted(
            threshold,
            alerts,
            caught,
            self.positives,
        ))
    }
}

fn encode(score: f64, label: bool) -> [u8; PAIR_BYTES] {
    let mut b = [0u8; PAIR_BYTES];
    b[..8].copy_from_slice(&score.to_bits().to_le_bytes());
    b[8] = u8::from(label);
    b
}

/// A run read back in order.
struct Run {
    path: PathBuf,
    reader: BufReader<File>,
    /// Pairs written to it, and those not read yet.
    written: u64,
    left: u64,
}

impl Run {
    /// The run at `path`, of `pairs` pairs.
    fn open(path: &Path, pairs: u64) -> Result<Run, SpillError> {
        let file = File::open(path).map_err(io(path))?;
        Ok(Run {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, file),
            written: pairs,
            left: pairs,
        })
    }

    /// The next pair; `None` at the end. A file that does not hold the
    /// pairs written to it, no more and no fewer, is refused by name.
    fn next(&mut self) -> Result<Option<(f64, bool)>, SpillError> {
        let changed = || SpillError::Changed {
            path: self.path.clone(),
            pairs: self.written,
        };
        let mut b = [0u8; PAIR_BYTES];
        if self.left == 0 {
            return match self.reader.read(&mut b).map_err(io(&self.path))? {
                0 => Ok(None),
                _ => Err(changed()),
            };
        }
        match self.reader.read_exact(&mut b) {
            Ok(()) => self.left -= 1,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(changed()),
            Err(e) => return Err(io(&self.path)(e)),
        }
        let mut bits = [0u8; 8];
        bits.copy_from_slice(&b[..8]);
        Ok(Some((f64::from_bits(u64::from_le_bytes(bits)), b[8] != 0)))
    }
}

/// f64's total order as an unsigned key: `key(a) < key(b)` exactly when
/// `a.total_cmp(&b)` is `Less`.
fn key(s: f64) -> u64 {
    let b = s.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

/// Hands `each` the pairs of every run (each sorted highest first), in
/// one order highest first.
fn merge(
    runs: &[(PathBuf, u64)],
    mut each: impl FnMut(f64, bool) -> Result<(), SpillError>,
) -> Result<(), SpillError> {
    let mut readers = runs
        .iter()
        .map(|(p, n)| Run::open(p, *n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut heads = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some((s, l)) = r.next()? {
            heads.push((key(s), i, s.to_bits(), l));
        }
    }
    while let Some((_, i, s, l)) = heads.pop() {
        each(f64::from_bits(s), l)?;
        if let Some((s, l)) = readers[i].next()? {
            heads.push((key(s), i, s.to_bits(), l));
        }
    }
    Ok(())
}

/// The ranking walked from the top, tied scores (equal, or both NaN)
/// taken together, as [`super::ranking`]'s functions walk it.
struct Walk {
    n: u64,
    positives: u64,
    /// The budget's place in the ranking (1-based); 0 for none.
    k: u64,
    at: u64,
    kth: Option<f64>,
    /// The tie being walked: its first score, size and positives.
    tie: Option<(f64, u64, u64)>,
    seen: u64,
    hits: u64,
    ap: f64,
    /// Twice the sum of the positives' ranks from the bottom (mid-ranks
    /// for ties), exact.
    rank2: u128,
}

impl Walk {
    fn new(n: u64, positives: u64, budget: f64) -> Walk {
        // As `threshold_for_budget`: the last event inside the budget.
        let k = if n == 0 || !(budget > 0.0 && budget <= 1.0) {
            0
        } else {
            ((n as f64 * budget).ceil() as u64).clamp(1, n)
        };
        Walk {
            n,
            positives,
            k,
            at: 0,
            kth: None,
            tie: None,
            seen: 0,
            hits: 0,
            ap: 0.0,
            rank2: 0,
        }
    }

    fn push(&mut self, s: f64, label: bool) {
        self.at += 1;
        if self.at == self.k {
            self.kth = Some(s);
        }
        match &mut self.tie {
            Some((first, size, pos)) if s == *first || (s.is_nan() && first.is_nan()) => {
                *size += 1;
                *pos += u64::from(label);
            }
            _ => {
                self.close_tie();
                self.tie = Some((s, 1, u64::from(label)));
            }
        }
    }

    fn close_tie(&mut self) {
        let Some((_, size, pos)) = self.tie.take() else {
            return;
        };
        self.seen += size;
        self.hits += pos;
        let positives = self.positives as f64;
        self.ap += (pos as f64 / positives) * (self.hits as f64 / self.seen as f64);
        // From the bottom, the tie takes ranks below+1 ..= below+size.
        let below = self.n - self.seen;
        self.rank2 += u128::from(2 * below + 1 + size) * u128::from(pos);
    }

    /// PR-AUC, ROC-AUC and the score at the budget's place.
    fn finish(mut self) -> (Option<f64>, Option<f64>, Option<f64>) {
        self.close_tie();
        let positives = self.positives as f64;
        let negatives = self.n as f64 - positives;
        let pr_auc = (self.positives > 0).then_some(self.ap);
        let roc_auc = (self.positives > 0 && negatives > 0.0).then(|| {
            let rank_sum = self.rank2 as f64 / 2.0;
            (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
        });
        (pr_auc, roc_auc, self.kth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::ranking::{at_budget, average_precision, roc_auc};
    use crate::generate::rng::Rng;

    /// Scores with many ties, both zeros, both NaNs and infinities.
    fn pairs(seed: u64, n: usize) -> (Vec<f64>, Vec<bool>) {
        let mut rng = Rng::seed_from(seed);
        let special = [0.0, -0.0, f64::NAN, -f64::NAN, f64::INFINITY, 0.5, 0.25];
        let scores = (0..n)
            .map(|_| match rng.below(10) {
                0..=2 => special[rng.below(special.len() as u64) as usize],
                3..=5 => (rng.below(20) as f64) / 20.0,
                _ => rng.uniform(),
            })
            .collect();
        let labels = (0..n).map(|_| rng.chance(0.2)).collect();
        (scores, labels)
    }

    fn ranked(scores: &[f64], labels: &[bool], limit: usize, budget: f64) -> Ranked {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = RankRuns::new(dir.path(), "t").with_limit(limit);
        for (s, l) in scores.iter().zip(labels) {
            runs.push(*s, *l).unwrap();
        }
        let ranked = runs.rank(budget).unwrap();
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 0, "runs are removed once ranked");
        ranked
    }

    fn bits(v: Option<f64>) -> Option<u64> {
        v.map(f64::to_bits)
    }

    #[test]
    fn the_figures_are_those_of_the_in_memory_functions_bit_for_bit() {
        // In memory, in a few runs, and in more runs than one merge takes.
        for (seed, n, limit) in [(1, 500, 1000), (2, 3000, 700), (3, 20_000, 150), (4, 1, 1)] {
            let (scores, labels) = pairs(seed, n);
            for budget in [0.005, 0.1, 1.0, 0.0, 1.5] {
                let got = ranked(&scores, &labels, limit, budget);
                let what = format!("seed {seed}, n {n}, limit {limit}, budget {budget}");
                assert_eq!(
                    bits(got.pr_auc),
                    bits(average_precision(&scores, &labels)),
                    "{what}"
                );
                assert_eq!(bits(got.roc_auc), bits(roc_auc(&scores, &labels)), "{what}");
                let want = at_budget(&scores, &labels, budget);
                let key = |a: Option<AtThreshold>| {
                    a.map(|a| {
                        (
                            a.threshold.to_bits(),
                            a.alerts,
                            a.caught,
                            bits(a.precision),
                            bits(a.recall),
                        )
                    })
                };
                assert_eq!(key(got.at_budget), key(want), "{what}");
            }
        }
    }

    #[test]
    fn one_class_and_no_pairs_give_what_the_functions_give() {
        for labels in [vec![true; 50], vec![false; 50]] {
            let (scores, _) = pairs(9, 50);
            let got = ranked(&scores, &labels, 7, 0.1);
            assert_eq!(bits(got.pr_auc), bits(average_precision(&scores, &labels)));
            assert_eq!(got.roc_auc, None);
        }
        let got = ranked(&[], &[], 7, 0.1);
        assert_eq!(
            got,
            Ranked {
                pr_auc: None,
                roc_auc: None,
                at_budget: None
            }
        );
    }

    #[test]
    fn the_key_orders_as_total_cmp() {
        let (scores, _) = pairs(5, 400);
        for a in &scores {
            for b in scores.iter().step_by(7) {
                assert_eq!(key(*a).cmp(&key(*b)), a.total_cmp(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn a_run_cut_short_or_grown_on_disk_is_refused_by_name() {
        // Cut mid-pair, cut at a pair's end, and grown by a pair.
        let changes: [fn(&Path); 3] = [
            |p| truncate(p, -4),
            |p| truncate(p, -(PAIR_BYTES as i64)),
            |p| truncate(p, PAIR_BYTES as i64),
        ];
        for change in changes {
            let dir = tempfile::tempdir().unwrap();
            let mut runs = RankRuns::new(dir.path(), "cut").with_limit(10);
            (0..35).for_each(|i| runs.push(f64::from(i) / 35.0, i % 3 == 0).unwrap());
            let first = dir.path().join("cut-1.run");
            change(&first);
            let err = runs.rank(0.1).unwrap_err();
            assert!(
                matches!(&err, SpillError::Changed { path, pairs: 10 } if *path == first),
                "{err}"
            );
        }
    }

    fn truncate(path: &Path, by: i64) {
        let len = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(len.checked_add_signed(by).unwrap()).unwrap();
    }
}
