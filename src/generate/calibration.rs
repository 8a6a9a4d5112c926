//! The figures the generator is calibrated to, each with its source.
//!
//! "FACTS" is `shared/paysim/FACTS.md` (published whole-file figures of the
//! Kaggle PaySim release and the first 41,370 rows); "simulator" is the
//! open-source PaySim's parameter files as quoted there.

use crate::paysim::TxnType;

/// Whole-file type shares (FACTS: CASH_OUT 35.17 %, PAYMENT 33.81 %, CASH_IN
/// 21.99 %, TRANSFER 8.38 %, DEBIT 0.65 %), in `TxnType::ALL` order.
pub const TYPE_SHARE: [f64; 5] = [0.2199, 0.3517, 0.0065, 0.3381, 0.0838];

/// Gamma (shape, scale) of genuine amounts per type, fitted to the p10, p50,
/// p90 and p99 of each type in the slice (FACTS' per-type table). Their
/// mixture has p50 76,265 and p99 1,573,695 against the whole file's 74,872
/// and 1,615,979.
pub const AMOUNT_GAMMA: [(f64, f64); 5] = [
    (1.40, 129_778.0),
    (1.50, 127_208.0),
    (1.45, 2_523.0),
    (1.20, 7_989.0),
    (1.00, 739_922.0),
];

/// Share of genuine rows whose origin starts at a zero balance (FACTS' slice
/// table, "oldbalanceOrg = 0").
pub const ZERO_ORIGIN_SHARE: [f64; 5] = [0.01, 0.56, 0.06, 0.25, 0.45];

/// Log-normal (median, sigma) of an origin's balance as a multiple of the
/// amount, when it is not zero. For TRANSFER and CASH_OUT about four in five
/// are short of the amount, which with the zero balances above gives the
/// about 91 % of genuine rows with a non-zero errorBalanceOrig (FACTS).
pub const ORIGIN_RATIO: [(f64, f64); 5] =
    [(3.0, 1.5), (0.37, 1.2), (4.0, 1.2), (2.7, 1.5), (0.37, 1.2)];

/// Fraud rate of the whole file: 8,213 of 6,362,620 rows (FACTS).
pub const FRAUD_RATE: f64 = 8_213.0 / 6_362_620.0;

/// Steps in the Kaggle file: one month of hours (FACTS).
pub const STEPS: u32 = 743;

/// Log-normal of the balance a fraudster drains: median at the fraud amount
/// median 441,423 and sigma from its p90 of 4,525,901 (FACTS).
pub const VICTIM_BALANCE: (f64, f64) = (441_423.0, 1.816);

/// Balances above the transfer limit exceed it by an exponential share of it
/// with this mean: the real file has few multi-chunk takeovers (287 fraud
/// rows of exactly 10,000,000, and 97.8 % of fraud amounts equal to the
/// opening balance), fewer than the log-normal's tail would give.
pub const VICTIM_EXCESS_MEAN: f64 = 0.5;

/// The transfer limit the Kaggle data behaves as if it had (FACTS).
pub const TRANSFER_LIMIT: f64 = 10_000_000.0;

/// Share of victims whose account is watched by the old rule, and the rule's
/// threshold: a watched account's TRANSFER above it is flagged
/// (isFlaggedFraud = 1) and moves no money. FACTS: 16 flagged rows in the
/// file, all TRANSFER fraud, amounts from 353,874.22 up.
pub const FLAG_WATCHED_SHARE: f64 = 0.006;
pub const FLAG_THRESHOLD: f64 = 200_000.0;

/// Relative volume of genuine transactions by hour of day (step mod 24),
/// shaped after the slice's first steps (2,708, 1,014, 552, 565, 665, 1,660,
/// 6,837, 21,097 rows for hours 1 to 8); fraud does not follow it. In
/// thousandths (0.35, 0.13, 0.05, ...): whole numbers, so that the volume up
/// to any step is exact and found without walking the steps before it.
pub const HOURLY_WEIGHT: [u64; 24] = [
    350, 130, 50, 26, 27, 32, 79, 320, 750, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
    1000, 900, 750, 600, 500, 450,
];

/// Genuine TRANSFER and CASH_OUT rows go to a window of busy destinations,
/// skewed so that a few receive hundreds of transactions an hour; the window
/// holds this many rows' worth of destinations (FACTS: a genuine destination
/// receives 5.2 transactions in a step on average).
pub const ROWS_PER_BUSY_DESTINATION: f64 = 3.0;

/// Log-normal (median, sigma) of a destination account's opening balance.
pub const DEST_BALANCE: (f64, f64) = (1_000_000.0, 1.5);

/// Account numbers look like Java's positive ints, as in the file.
pub const ACCOUNT_NUMBERS: (u64, u64) = (10_000_000, 2_147_483_647);

/// Genuine type shares: the whole-file shares less the fraud rows, which
/// are split between TRANSFER and CASH_OUT (FACTS: 4,097 and 4,116).
pub fn genuine_type_cdf() -> [f64; 5] {
    let mut share = TYPE_SHARE;
    share[TxnType::Transfer.index()] -= FRAUD_RATE / 2.0;
    share[TxnType::CashOut.index()] -= FRAUD_RATE / 2.0;
    let total: f64 = share.iter().sum();
    let mut acc = 0.0;
    share.map(|s| {
        acc += s / total;
        acc
    })
}
