//! A PaySim generator of our own, written from the published facts about
//! the real data (see `calibration` and `docs/generator.md`).
//!
//! Each step (hour) has a genuine volume that swings with the hour of day and
//! a fraud volume that does not. Genuine rows follow PaySim's balance rules
//! and quirks: merchants have no balances, origins are often short of the
//! amount (the balance is floored at zero), and TRANSFER / CASH_OUT
//! destinations are busy accounts that receive many transactions an hour.
//! Fraud is an account takeover: the victim's balance is TRANSFERred to a
//! fresh mule in chunks of at most 10,000,000, and a different account
//! CASH_OUTs each chunk at once; the old rule flags some large transfers on
//! watched accounts, and a flagged transfer moves no money.

mod calibration;
pub(crate) mod rng;
mod volume;

use thiserror::Error;

pub use calibration::{FRAUD_RATE, STEPS};
pub use rng::Rng;

use crate::paysim::{AccountId, AccountKind, Transaction, TxnType};
use calibration::*;
use volume::Volume;

/// Empty steps in a row that are walked, drawing from the random stream as
/// every step once did; a longer empty stretch is jumped without a draw, so
/// the walk costs at most a day per row. Walking all of them made `--rows
/// 10 --steps 4294967295` take minutes; walking up to a day keeps the bytes
/// of every file without a longer empty stretch (at least about 60 rows
/// over the default 743 steps).
const MAX_WALKED_EMPTY_STEPS: u32 = 24;

/// Mule accounts the fraudsters reuse after the drift, and the float each
/// keeps (times its number in the pool).
const MULE_POOL: u64 = 50;
const MULE_FLOAT: f64 = 1_500.0;

/// Settings of a generated file, checked by [`GeneratorParams::check`].
#[derive(Clone, Copy, Debug)]
pub struct GeneratorParams {
    /// Rows to write, exactly.
    pub rows: u64,
    pub seed: u64,
    /// Hours to spread the rows over.
    pub steps: u32,
    /// Share of rows that are fraud.
    pub fraud_rate: f64,
    /// From this step on, fraudsters change tactics (see
    /// [`Generator::drifted_takeover`]); `None`: they never do.
    pub drift_at: Option<u32>,
}

impl GeneratorParams {
    pub fn new(rows: u64, seed: u64) -> GeneratorParams {
        GeneratorParams {
            rows,
            seed,
            steps: STEPS,
            fraud_rate: FRAUD_RATE,
            drift_at: None,
        }
    }

    pub fn check(self) -> Result<CheckedParams, ParamError> {
        if self.steps == 0 {
            return Err(ParamError::Steps(self.steps));
        }
        if !(0.0..=0.5).contains(&self.fraud_rate) {
            return Err(ParamError::FraudRate(self.fraud_rate));
        }
        Ok(CheckedParams(self))
    }
}

/// Parameters that passed [`GeneratorParams::check`].
#[derive(Clone, Copy, Debug)]
pub struct CheckedParams(GeneratorParams);

#[derive(Debug, Error, PartialEq)]
pub enum ParamError {
    #[error("steps must be at least 1, got {0}")]
    Steps(u32),
    #[error("fraud rate must be within [0, 0.5], got {0}")]
    FraudRate(f64),
}

/// Yields the rows of a generated PaySim file, step by step, in file order.
///
/// # Examples
///
/// ```
/// use fraudflow::generate::{Generator, GeneratorParams};
///
/// let params = GeneratorParams::new(1_000, 42).check().unwrap();
/// let rows: Vec<_> = Generator::new(params).collect();
/// assert_eq!(rows.len(), 1_000);
/// assert!(rows.windows(2).all(|w| w[0].step <= w[1].step));
/// let again: Vec<_> = Generator::new(params).collect();
/// assert_eq!(rows, again);
/// ```
pub struct Generator {
    params: GeneratorParams,
    rng: Rng,
    type_cdf: [f64; 5],
    volume: Volume,
    step: u32,
    rows_done: u64,
    fraud_rows: u64,
    dest_balances: Vec<f64>,
    dest_salt: u64,
    /// This step's fraud groups, each with the number of genuine rows
    /// before it, in order.
    fraud: std::collections::VecDeque<(usize, Vec<Transaction>)>,
    /// The rows of the fraud group being written.
    group: std::vec::IntoIter<Transaction>,
    /// Genuine rows of this step, and how many are written: they are drawn
    /// one by one as they are written, so memory does not grow with the
    /// rows of a step (`--steps 1` once held the whole file).
    genuine: usize,
    genuine_done: usize,
    window: (usize, usize),
}

impl Generator {
    pub fn new(params: CheckedParams) -> Generator {
        let params = params.0;
        let mut rng = Rng::seed_from(params.seed);
        let pool = (params.rows / 20).clamp(64, 4_000_000) as usize;
        let dest_balances = (0..pool)
            .map(|_| cents(rng.lognormal(DEST_BALANCE.0, DEST_BALANCE.1)))
            .collect();
        let dest_salt = rng.next_u64();
        Generator {
            params,
            rng,
            type_cdf: genuine_type_cdf(),
            volume: Volume::new(params.rows, params.steps),
            step: 0,
            rows_done: 0,
            fraud_rows: 0,
            dest_balances,
            dest_salt,
            fraud: Default::default(),
            group: Vec::new().into_iter(),
            genuine: 0,
            genuine_done: 0,
            window: (0, 1),
        }
    }

    /// Starts the next step: draws its fraud groups and their places (none
    /// for an empty step that is walked); false when all rows are done.
    fn fill_step(&mut self) -> bool {
        // Once every row is written the steps left are empty: they would
        // only draw numbers nobody uses.
        let Some(busy) = self.volume.next_busy(self.step, self.rows_done) else {
            return false;
        };
        if busy - self.step - 1 > MAX_WALKED_EMPTY_STEPS {
            self.step = busy - 1;
        }
        self.step += 1;
        let rows_by_now = self.volume.rows_by(self.step);
        let rows = rows_by_now - self.rows_done;
        self.rows_done = rows_by_now;

        let fraud = self.fraud_groups(rows);
        let fraud_rows: usize = fraud.iter().map(Vec::len).sum();
        let genuine = rows as usize - fraud_rows;
        let mut positions: Vec<usize> = fraud
            .iter()
            .map(|_| self.rng.below(genuine as u64 + 1) as usize)
            .collect();
        positions.sort_unstable();
        self.fraud = positions.into_iter().zip(fraud).collect();
        self.window = self.busy_window(genuine);
        self.genuine = genuine;
        self.genuine_done = 0;
        true
    }

    /// Fraud keeps pace with the fraud rate over the whole file whatever the
    /// hour; the number of takeovers in a step is random around that pace.
    fn fraud_groups(&mut self, room: u64) -> Vec<Vec<Transaction>> {
        let target = self.params.fraud_rate * self.params.rows as f64 * f64::from(self.step)
            / f64::from(self.params.steps);
        let behind = (target - self.fraud_rows as f64).max(0.0);
        let takeovers = self.rng.poisson(behind / 2.0);
        let mut groups = Vec::new();
        let mut used = 0;
        for _ in 0..takeovers {
            let group = self.takeover();
            if used + group.len() as u64 > room {
                break;
            }
            used += group.len() as u64;
            groups.push(group);
        }
        self.fraud_rows += used;
        groups
    }

    fn takeover(&mut self) -> Vec<Transaction> {
        if self.params.drift_at.is_some_and(|at| self.step >= at) {
            return self.drifted_takeover();
        }
        let victim = self.fresh(AccountKind::Customer);
        let watched = self.rng.chance(FLAG_WATCHED_SHARE);
        let mut balance = self.rng.lognormal(VICTIM_BALANCE.0, VICTIM_BALANCE.1);
        if balance > TRANSFER_LIMIT {
            balance = TRANSFER_LIMIT * (1.0 - VICTIM_EXCESS_MEAN * self.rng.uniform_open().ln());
        }
        let mut balance = cents(balance).max(1.0);
        let mut rows = Vec::new();
        while balance > 0.0 {
            let amount = balance.min(TRANSFER_LIMIT);
            let mule = self.fresh(AccountKind::Customer);
            let flagged = watched && amount > FLAG_THRESHOLD;
            let left = if flagged {
                balance
            } else {
                cents(balance - amount)
            };
            rows.push(self.fraud_row(
                TxnType::Transfer,
                amount,
                victim,
                balance,
                left,
                mule,
                (0.0, 0.0),
                flagged,
            ));
            if flagged {
                break;
            }
            // The account that cashes out is not the mule the money went to:
            // the link is invisible in the data.
            let casher = self.fresh(AccountKind::Customer);
            rows.push(self.cash_out(amount, casher, (amount, 0.0)));
            balance = left;
        }
        rows
    }

    /// A takeover after the drift: the fraudster no longer drains the
    /// account. They move two to five amounts of 5 to 20 % of the balance
    /// each, under the transfer limit, to one mule drawn from a small pool
    /// that they reuse and whose books add up (the mule's balance grows by
    /// the amount, then the mule's cash-out leaves it where it was), so
    /// neither the victim nor the mule is drained and no balance error
    /// shows. What the original features still see: the victim's velocity
    /// (several transfers in an hour) and the mule's (several transfers in
    /// and cash-outs). The first transfer and its cash-out show neither.
    fn drifted_takeover(&mut self) -> Vec<Transaction> {
        let victim = self.fresh(AccountKind::Customer);
        let mut balance = cents(self.rng.lognormal(VICTIM_BALANCE.0, VICTIM_BALANCE.1)).max(100.0);
        let parts = 2 + self.rng.below(4);
        let which = self.rng.below(MULE_POOL);
        let mule = self.mule_id(which);
        let kept = cents(MULE_FLOAT * (1.0 + which as f64));
        let mut rows = Vec::new();
        for _ in 0..parts {
            let share = 0.05 + 0.15 * self.rng.uniform_open();
            let amount = cents((balance * share).min(TRANSFER_LIMIT)).max(1.0);
            let left = cents(balance - amount);
            let with = cents(kept + amount);
            rows.push(self.fraud_row(
                TxnType::Transfer,
                amount,
                victim,
                balance,
                left,
                mule,
                (kept, with),
                false,
            ));
            rows.push(self.cash_out(amount, mule, (with, kept)));
            balance = left;
        }
        rows
    }

    /// A fraud cash-out of `amount` by `casher` (its balance before and
    /// after) at an agent drawn from the pool.
    fn cash_out(&mut self, amount: f64, casher: AccountId, (old, new): (f64, f64)) -> Transaction {
        let agent = self.rng.below(self.dest_balances.len() as u64) as usize;
        let dest = self.move_into_dest(agent, amount);
        let agent_id = self.dest_id(agent);
        self.fraud_row(
            TxnType::CashOut,
            amount,
            casher,
            old,
            new,
            agent_id,
            dest,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn fraud_row(
        &self,
        kind: TxnType,
        amount: f64,
        orig: AccountId,
        old_orig: f64,
        new_orig: f64,
        dest: AccountId,
        (old_dest, new_dest): (f64, f64),
        flagged: bool,
    ) -> Transaction {
        Transaction {
            step: self.step,
            kind,
            amount,
            name_orig: orig,
            old_balance_orig: old_orig,
            new_balance_orig: new_orig,
            name_dest: dest,
            old_balance_dest: old_dest,
            new_balance_dest: new_dest,
            is_fraud: true,
            is_flagged_fraud: flagged,
        }
    }

    /// The busy destinations of this step: a window of the pool sized to the
    /// step's volume.
    fn busy_window(&mut self, genuine: usize) -> (usize, usize) {
        let pool = self.dest_balances.len();
        let busy_share =
            TYPE_SHARE[TxnType::Transfer.index()] + TYPE_SHARE[TxnType::CashOut.index()];
        let size = ((genuine as f64 * busy_share / ROWS_PER_BUSY_DESTINATION).ceil() as usize)
            .clamp(1, pool);
        let start = self.rng.below((pool - size + 1) as u64) as usize;
        (start, size)
    }

    fn genuine_row(&mut self, (start, size): (usize, usize)) -> Transaction {
        let u = self.rng.uniform();
        let kind = TxnType::ALL[self.type_cdf.iter().position(|&c| u < c).unwrap_or(4)];
        let i = kind.index();
        let (shape, scale) = AMOUNT_GAMMA[i];
        let amount = cents(self.rng.gamma(shape, scale)).max(0.01);
        let old_orig = if self.rng.chance(ZERO_ORIGIN_SHARE[i]) {
            0.0
        } else {
            cents(amount * self.rng.lognormal(ORIGIN_RATIO[i].0, ORIGIN_RATIO[i].1))
        };
        let new_orig = match kind {
            TxnType::CashIn => cents(old_orig + amount),
            _ => cents((old_orig - amount).max(0.0)),
        };
        let name_orig = self.fresh(AccountKind::Customer);
        let (name_dest, old_dest, new_dest) = match kind {
            TxnType::Payment => (self.fresh(AccountKind::Merchant), 0.0, 0.0),
            TxnType::Transfer | TxnType::CashOut => {
                // Squaring a uniform skews the pick: the first destinations
                // of the window are the hot keys.
                let u = self.rng.uniform();
                let agent = start + ((u * u * size as f64) as usize).min(size - 1);
                let (old, new) = self.move_into_dest(agent, amount);
                (self.dest_id(agent), old, new)
            }
            TxnType::CashIn | TxnType::Debit => {
                let agent = self.rng.below(self.dest_balances.len() as u64) as usize;
                let old = self.dest_balances[agent];
                let new = if kind == TxnType::CashIn {
                    cents((old - amount).max(0.0))
                } else {
                    cents(old + amount)
                };
                self.dest_balances[agent] = new;
                (self.dest_id(agent), old, new)
            }
        };
        Transaction {
            step: self.step,
            kind,
            amount,
            name_orig,
            old_balance_orig: old_orig,
            new_balance_orig: new_orig,
            name_dest,
            old_balance_dest: old_dest,
            new_balance_dest: new_dest,
            is_fraud: false,
            is_flagged_fraud: false,
        }
    }

    fn move_into_dest(&mut self, agent: usize, amount: f64) -> (f64, f64) {
        let old = self.dest_balances[agent];
        let new = cents(old + amount);
        self.dest_balances[agent] = new;
        (old, new)
    }

    /// A pool account's name, derived from its index so none is stored.
    fn dest_id(&self, index: usize) -> AccountId {
        let mut state = self.dest_salt ^ index as u64;
        account(AccountKind::Customer, rng::splitmix64(&mut state))
    }

    /// The name of mule `which` of the drift's pool: hashed like the
    /// destinations' (the account number is the hash's high bits, so a salt
    /// that differs in its low bits alone would name one account), from a
    /// salt of its own so no mule is a pool destination.
    fn mule_id(&self, which: u64) -> AccountId {
        let mut state = self.dest_salt.rotate_left(32) ^ which;
        account(AccountKind::Customer, rng::splitmix64(&mut state))
    }

    fn fresh(&mut self, kind: AccountKind) -> AccountId {
        let bits = self.rng.next_u64();
        account(kind, bits)
    }
}

fn account(kind: AccountKind, bits: u64) -> AccountId {
    let (lo, hi) = ACCOUNT_NUMBERS;
    let number = lo + ((u128::from(bits) * u128::from(hi - lo)) >> 64) as u64;
    // Both bounds have ten digits or fewer, well inside what an id holds.
    AccountId::new(kind, number).unwrap_or_else(|| unreachable!("account number {number} too long"))
}

impl Iterator for Generator {
    type Item = Transaction;

    /// Fraud groups go before the genuine row at their place; genuine rows
    /// are drawn as they are written, in the order they were always drawn.
    fn next(&mut self) -> Option<Transaction> {
        loop {
            if let Some(row) = self.group.next() {
                return Some(row);
            }
            if self
                .fraud
                .front()
                .is_some_and(|(p, _)| *p == self.genuine_done)
            {
                if let Some((_, group)) = self.fraud.pop_front() {
                    self.group = group.into_iter();
                }
                continue;
            }
            if self.genuine_done < self.genuine {
                self.genuine_done += 1;
                return Some(self.genuine_row(self.window));
            }
            if !self.fill_step() {
                return None;
            }
        }
    }
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Writes the generated rows to `path`, advancing `bar` as it goes: a
/// regular file atomically (a temporary file, then a rename), a FIFO or a
/// device where it is (see [`crate::atomic`]).
pub fn write_file(
    params: CheckedParams,
    path: &std::path::Path,
    bar: &indicatif::ProgressBar,
) -> Result<(), crate::atomic::OutputError> {
    let mut file = crate::atomic::AtomicFile::create(path)?;
    write_rows(&mut file, Generator::new(params), bar)
        .map_err(|e| crate::atomic::OutputError::io(path, e))?;
    file.commit()
}

/// Writes `rows` as a PaySim file to `out`.
pub fn write_rows(
    out: impl std::io::Write,
    rows: Generator,
    bar: &indicatif::ProgressBar,
) -> std::io::Result<()> {
    let mut writer = crate::paysim::PaysimWriter::new(out)?;
    for (i, row) in rows.enumerate() {
        writer.write(&row)?;
        if i % 65_536 == 65_535 {
            bar.inc(65_536);
        }
    }
    writer.finish()?.flush()
}

#[cfg(test)]
mod tests;
