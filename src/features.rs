//! The feature contracts: one definition, used by training and serving.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::paysim::TxnType;

/// Which feature set a model was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Contract {
    /// The original contract, kept exactly for parity.
    V1,
    /// V1 plus balance errors, destination velocity and balance flags.
    V2,
}

/// FEATURES_V1, in column order.
pub const FEATURES_V1: [&str; 7] = [
    "amount",
    "amount_ratio",
    "balance_diff_orig",
    "is_transfer",
    "is_cashout",
    "hour_of_day",
    "txn_velocity_1h",
];

/// What FEATURES_V2 adds to V1: what the data says matters.
pub const FEATURES_V2_ADDED: [&str; 6] = [
    "error_balance_orig",
    "error_balance_dest",
    "dest_txn_velocity_1h",
    "orig_drained",
    "dest_balances_zero",
    "orig_balance_zero",
];

/// FEATURES_V2, in column order: V1, then the additions.
pub const FEATURES_V2: [&str; 13] = concat(FEATURES_V1, FEATURES_V2_ADDED);

const fn concat<const A: usize, const B: usize, const C: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; C] {
    assert!(A + B == C);
    let mut out = [""; C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < C {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

impl Contract {
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Contract::V1 => &FEATURES_V1,
            Contract::V2 => &FEATURES_V2,
        }
    }

    /// The feature vector of `event`, given the velocities the dataflow
    /// computed for its origin and destination.
    ///
    /// ```
    /// use fraudflow::event::Event;
    /// use fraudflow::features::{Contract, Velocities};
    /// use fraudflow::paysim::PaysimReader;
    ///
    /// let data = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud\n\
    ///             1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0\n";
    /// let row = PaysimReader::new(data.as_bytes()).unwrap().next().unwrap().unwrap();
    /// let event = Event::from_paysim(1, &row);
    /// let v = Contract::V2.compute(&event, Velocities { orig: 1, dest: 1 });
    /// assert_eq!(&v[..7], &[181.0, 181.0 / 182.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
    /// assert_eq!(&v[7..], &[0.0, 181.0, 1.0, 1.0, 1.0, 0.0]);
    /// ```
    pub fn compute(self, e: &Event, velocity: Velocities) -> FeatureVec {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut v = FeatureVec::default();
        v.extend_from_slice(&[
            e.amount,
            e.amount / (e.old_balance_orig + 1.0),
            e.old_balance_orig - e.new_balance_orig - e.amount,
            flag(e.kind == TxnType::Transfer),
            flag(e.kind == TxnType::CashOut),
            f64::from(e.hour_of_day),
            velocity.orig as f64,
        ]);
        if self == Contract::V2 {
            let has_dest = e.dest.is_some();
            v.extend_from_slice(&[
                e.new_balance_orig + e.amount - e.old_balance_orig,
                if has_dest {
                    e.old_balance_dest + e.amount - e.new_balance_dest
                } else {
                    0.0
                },
                velocity.dest as f64,
                flag(e.old_balance_orig > 0.0 && e.new_balance_orig == 0.0),
                flag(has_dest && e.old_balance_dest == 0.0 && e.new_balance_dest == 0.0),
                flag(e.old_balance_orig == 0.0),
            ]);
        }
        // Sums of finite amounts and balances can pass f64's range (two
        // balances near f64::MAX): saturate, so every feature of a finite
        // event is finite.
        for x in &mut v.values[..usize::from(v.len)] {
            *x = x.clamp(-f64::MAX, f64::MAX);
        }
        v
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Contract::V1 => "v1",
            Contract::V2 => "v2",
        })
    }
}

impl FromStr for Contract {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "V1" => Ok(Contract::V1),
            "v2" | "V2" => Ok(Contract::V2),
            other => Err(format!(
                "unknown feature contract {other:?} (expected v1 or v2)"
            )),
        }
    }
}

/// Most features any contract has.
pub const MAX_FEATURES: usize = FEATURES_V2.len();

/// A feature vector held inline: no allocation per event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureVec {
    values: [f64; MAX_FEATURES],
    len: u8,
}

impl FeatureVec {
    /// A vector of these values; at most `MAX_FEATURES` are kept.
    pub fn from_slice(values: &[f64]) -> FeatureVec {
        let mut v = FeatureVec::default();
        v.extend_from_slice(&values[..values.len().min(MAX_FEATURES)]);
        v
    }

    fn extend_from_slice(&mut self, more: &[f64]) {
        let start = usize::from(self.len);
        self.values[start..start + more.len()].copy_from_slice(more);
        self.len += more.len() as u8;
    }
}

impl std::ops::Deref for FeatureVec {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.values[..usize::from(self.len)]
    }
}

/// Transactions of the same account in the window ending at an event,
/// the event itself included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Velocities {
    pub orig: u64,
    /// Zero when the event names no destination.
    pub dest: u64,
}
