//! Exploratory figures of a PaySim file: volume, fraud, types, amounts and
//! steps, gathered in one streaming pass.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::paysim::{Transaction, TxnType};
use crate::scan::BadRows;

/// Gathers the figures row by row; [`Eda::finish`] turns them into a report.
///
/// # Examples
///
/// ```
/// use fraudflow::eda::Eda;
/// use fraudflow::scan::{scan, ScanOptions};
///
/// let data = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud\n\
///             1,TRANSFER,181.0,C1,181.0,0.0,C2,0.0,0.0,1,0\n\
///             2,PAYMENT,10.0,C3,20.0,10.0,M4,0.0,0.0,0,0\n";
/// let mut eda = Eda::default();
/// let bad = scan(data.as_bytes(), ScanOptions::default(), |t| eda.add(t)).unwrap();
/// let report = eda.finish(bad);
/// assert_eq!((report.rows, report.fraud), (2, 1));
/// assert_eq!(report.fraud_drains_origin_share, 1.0);
/// ```
#[derive(Default)]
pub struct Eda {
    amounts: Vec<f64>,
    fraud: u64,
    fraud_drains_origin: u64,
    fraud_amount_is_balance: u64,
    flagged: u64,
    flagged_fraud: u64,
    by_type: [TypeCount; 5],
    rows_per_step: BTreeMap<u32, u64>,
    /// The largest step of the rows so far.
    max_step: u32,
    steps_out_of_order: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct TypeCount {
    rows: u64,
    fraud: u64,
    flagged: u64,
}

impl Eda {
    pub fn add(&mut self, t: &Transaction) {
        self.amounts.push(t.amount);
        let count = &mut self.by_type[t.kind.index()];
        count.rows += 1;
        if t.is_fraud {
            count.fraud += 1;
            self.fraud += 1;
            self.fraud_drains_origin += u64::from(t.drains_origin());
            self.fraud_amount_is_balance += u64::from(t.amount == t.old_balance_orig);
        }
        if t.is_flagged_fraud {
            count.flagged += 1;
            self.flagged += 1;
            self.flagged_fraud += u64::from(t.is_fraud);
        }
        // Out of order against every row before, not just the one before:
        // a block of early rows after a late one is out of order row by
        // row, though only its first row steps down.
        if t.step < self.max_step {
            self.steps_out_of_order += 1;
        }
        self.max_step = self.max_step.max(t.step);
        *self.rows_per_step.entry(t.step).or_default() += 1;
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.amounts.len() as u64
    }

    pub fn finish(mut self, bad_rows: BadRows) -> EdaReport {
        self.amounts.sort_unstable_by(f64::total_cmp);
        let rows = self.amounts.len() as u64;
        let by_type = TxnType::ALL
            .iter()
            .zip(self.by_type)
            .map(|(&kind, c)| TypeReport {
                kind,
                rows: c.rows,
                share: share(c.rows, rows),
                fraud: c.fraud,
                fraud_rate: share(c.fraud, c.rows),
                flagged: c.flagged,
            })
            .collect::<Vec<_>>();
        let fraud_in_unexpected_types = by_type
            .iter()
            .filter(|t| !t.kind.can_be_fraud())
            .map(|t| t.fraud)
            .sum();
        EdaReport {
            rows,
            bad_rows,
            fraud: self.fraud,
            fraud_rate: share(self.fraud, rows),
            legit_per_fraud: if self.fraud == 0 {
                None
            } else {
                Some((rows - self.fraud) as f64 / self.fraud as f64)
            },
            by_type,
            fraud_in_unexpected_types,
            fraud_drains_origin_share: share(self.fraud_drains_origin, self.fraud),
            fraud_amount_is_balance_share: share(self.fraud_amount_is_balance, self.fraud),
            flagged: self.flagged,
            flagged_fraud: self.flagged_fraud,
            amount: AmountReport {
                p50: quantile(&self.amounts, 0.50),
                p95: quantile(&self.amounts, 0.95),
                p99: quantile(&self.amounts, 0.99),
                max: self.amounts.last().copied(),
            },
            steps: steps(rows, self.rows_per_step, self.steps_out_of_order),
        }
    }
}

/// `part` of `whole`, 0 of nothing.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The steps' spread, from the rows of each step.
fn steps(rows: u64, rows_per_step: BTreeMap<u32, u64>, out_of_order_rows: u64) -> StepReport {
    let counts: Vec<u64> = rows_per_step.values().copied().collect();
    StepReport {
        first: rows_per_step.keys().next().copied(),
        last: rows_per_step.keys().next_back().copied(),
        distinct: counts.len() as u64,
        out_of_order_rows,
        rows_min: counts.iter().copied().min(),
        rows_mean: if counts.is_empty() {
            None
        } else {
            Some(rows as f64 / counts.len() as f64)
        },
        rows_max: counts.iter().copied().max(),
        rows_per_step,
    }
}

/// Quantile by linear interpolation between the closest ranks (numpy's and
/// pandas' default), of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q * last as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(last);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

#[derive(Debug, Serialize)]
pub struct EdaReport {
    pub rows: u64,
    pub bad_rows: BadRows,
    pub fraud: u64,
    pub fraud_rate: f64,
    /// Class imbalance: genuine rows per fraud row.
    pub legit_per_fraud: Option<f64>,
    pub by_type: Vec<TypeReport>,
    /// Fraud in types other than TRANSFER and CASH_OUT: PaySim has none.
    pub fraud_in_unexpected_types: u64,
    /// Fraud rows whose origin ends at a zero balance.
    pub fraud_drains_origin_share: f64,
    /// Fraud rows whose amount equals the origin's opening balance.
    pub fraud_amount_is_balance_share: f64,
    pub flagged: u64,
    pub flagged_fraud: u64,
    pub amount: AmountReport,
    pub steps: StepReport,
}

#[derive(Debug, Serialize)]
pub struct TypeReport {
    #[serde(rename = "type")]
    pub kind: TxnType,
    pub rows: u64,
    pub share: f64,
    pub fraud: u64,
    pub fraud_rate: f64,
    pub flagged: u64,
}

#[derive(Debug, Serialize)]
pub struct AmountReport {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub first: Option<u32>,
    pub last: Option<u32>,
    pub distinct: u64,
    /// Rows whose step is smaller than that of some row before them.
    pub out_of_order_rows: u64,
    pub rows_min: Option<u64>,
    pub rows_mean: Option<f64>,
    pub rows_max: Option<u64>,
    pub rows_per_step: BTreeMap<u32, u64>,
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&xs, 0.5), Some(2.5));
        assert_eq!(quantile(&xs, 0.99), Some(3.9699999999999998));
        assert_eq!(quantile(&xs, 1.0), Some(4.0));
        assert_eq!(quantile(&[7.0], 0.5), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
