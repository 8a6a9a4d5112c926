use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The five kinds of PaySim transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxnType {
    CashIn,
    CashOut,
    Debit,
    Payment,
    Transfer,
}

impl TxnType {
    /// Every type, in the order reports list them.
    pub const ALL: [TxnType; 5] = [
        TxnType::CashIn,
        TxnType::CashOut,
        TxnType::Debit,
        TxnType::Payment,
        TxnType::Transfer,
    ];

    /// The spelling used in the PaySim file.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnType::CashIn => "CASH_IN",
            TxnType::CashOut => "CASH_OUT",
            TxnType::Debit => "DEBIT",
            TxnType::Payment => "PAYMENT",
            TxnType::Transfer => "TRANSFER",
        }
    }

    /// Position in [`TxnType::ALL`], for per-type tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses the file's spelling; the hyphenated forms (`CASH-OUT`) of live
    /// events are accepted too.
    pub fn from_bytes(raw: &[u8]) -> Option<TxnType> {
        match raw {
            b"CASH_IN" | b"CASH-IN" => Some(TxnType::CashIn),
            b"CASH_OUT" | b"CASH-OUT" => Some(TxnType::CashOut),
            b"DEBIT" => Some(TxnType::Debit),
            b"PAYMENT" => Some(TxnType::Payment),
            b"TRANSFER" => Some(TxnType::Transfer),
            _ => None,
        }
    }

    /// The only types PaySim's fraudsters use.
    pub fn can_be_fraud(self) -> bool {
        matches!(self, TxnType::Transfer | TxnType::CashOut)
    }
}

impl fmt::Display for TxnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an account is a customer (`C…`) or a merchant (`M…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    Customer,
    Merchant,
}

/// A PaySim account name such as `C1231006815`, packed into one `u64` so that
/// it is cheap to hash, compare and exchange between workers.
///
/// Layout: bit 63 is the kind (1 = merchant), bits 58..63 the number of
/// digits (so leading zeros survive a round trip), bits 0..58 the number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(u64);

const KIND_BIT: u64 = 1 << 63;
const LEN_SHIFT: u32 = 58;
const NUMBER_MASK: u64 = (1 << LEN_SHIFT) - 1;
/// 17 digits always fit below 2^58.
pub const MAX_DIGITS: usize = 17;

impl AccountId {
    /// Builds an id from its parts; `None` when the number has more digits
    /// than fit.
    pub fn new(kind: AccountKind, number: u64) -> Option<AccountId> {
        let digits = decimal_digits(number);
        if digits > MAX_DIGITS {
            return None;
        }
        Some(Self::pack(kind, number, digits))
    }

    fn pack(kind: AccountKind, number: u64, digits: usize) -> AccountId {
        let kind_bit = if kind == AccountKind::Merchant {
            KIND_BIT
        } else {
            0
        };
        AccountId(kind_bit | ((digits as u64) << LEN_SHIFT) | number)
    }

    /// Parses `C` or `M` followed by 1 to 17 digits.
    pub fn from_bytes(raw: &[u8]) -> Option<AccountId> {
        AccountId::parse(raw).ok()
    }

    /// Parses `C` or `M` followed by 1 to 17 digits, or says what is wrong.
    ///
    /// ```
    /// use fraudflow::paysim::{AccountError, AccountId};
    ///
    /// assert_eq!(AccountId::parse(b"M42").unwrap().to_string(), "M42");
    /// let long = format!("C{}", "9".repeat(40));
    /// assert_eq!(AccountId::parse(long.as_bytes()), Err(AccountError::TooLong { digits: 40 }));
    /// ```
    pub fn parse(raw: &[u8]) -> Result<AccountId, AccountError> {
        let (&first, digits) = raw.split_first().ok_or(AccountError::Empty)?;
        let kind = match first {
            b'C' => AccountKind::Customer,
            b'M' => AccountKind::Merchant,
            _ => return Err(AccountError::Kind),
        };
        if digits.is_empty() {
            return Err(AccountError::NoDigits);
        }
        if let Some(at) = digits.iter().position(|d| !d.is_ascii_digit()) {
            return Err(AccountError::NotDigit { at: at + 2 });
        }
        if digits.len() > MAX_DIGITS {
            return Err(AccountError::TooLong {
                digits: digits.len(),
            });
        }
        let number = digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        Ok(Self::pack(kind, number, digits.len()))
    }

    /// Any account name: PaySim's form is parsed; any other name is hashed
    /// (FNV-1a, stable across runs and machines) into an id that prints as
    /// `#` and hex digits.
    pub fn from_name(name: &str) -> AccountId {
        if let Some(id) = AccountId::from_bytes(name.as_bytes()) {
            return id;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in name.as_bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Zero digits marks a hashed name: no parsed name has zero digits.
        AccountId(hash & NUMBER_MASK)
    }

    fn is_hashed(self) -> bool {
        self.digits() == 0
    }

    pub fn kind(self) -> AccountKind {
        if self.0 & KIND_BIT != 0 {
            AccountKind::Merchant
        } else {
            AccountKind::Customer
        }
    }

    pub fn number(self) -> u64 {
        self.0 & NUMBER_MASK
    }

    fn digits(self) -> usize {
        ((self.0 & !KIND_BIT) >> LEN_SHIFT) as usize
    }

    /// The packed form, stable across runs: use it as a sharding key.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Appends the account's name (`C1231006815`) to `out`.
    pub fn write_to(self, out: &mut Vec<u8>) {
        if self.is_hashed() {
            out.extend_from_slice(format!("#{:x}", self.number()).as_bytes());
            return;
        }
        out.push(match self.kind() {
            AccountKind::Customer => b'C',
            AccountKind::Merchant => b'M',
        });
        let mut buf = itoa::Buffer::new();
        let text = buf.format(self.number());
        out.extend(std::iter::repeat_n(
            b'0',
            self.digits().saturating_sub(text.len()),
        ));
        out.extend_from_slice(text.as_bytes());
    }
}

fn decimal_digits(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(18);
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({self})")
    }
}

impl FromStr for AccountId {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::parse(s.as_bytes())
    }
}

/// Why a name is not a PaySim account name (`C` or `M`, then 1 to 17
/// digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum AccountError {
    #[error("an account name is C or M then digits, and this one is empty")]
    Empty,
    #[error("an account name starts with C (customer) or M (merchant)")]
    Kind,
    #[error("no digits follow the C or M")]
    NoDigits,
    #[error("byte {at} is not a digit")]
    NotDigit {
        /// 1-based position of the first non-digit, in bytes.
        at: usize,
    },
    #[error("an account number of {digits} digits does not fit: at most {MAX_DIGITS} digits fit in an account id")]
    TooLong { digits: usize },
}

/// One row of the PaySim log, typed.
///
/// `is_fraud` and `is_flagged_fraud` are leakage: they travel beside the
/// transaction for evaluation and must never reach a model's features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transaction {
    /// Hour of the simulation, from 1.
    pub step: u32,
    pub kind: TxnType,
    pub amount: f64,
    pub name_orig: AccountId,
    pub old_balance_orig: f64,
    pub new_balance_orig: f64,
    pub name_dest: AccountId,
    pub old_balance_dest: f64,
    pub new_balance_dest: f64,
    pub is_fraud: bool,
    pub is_flagged_fraud: bool,
}

impl Transaction {
    /// `newbalanceOrig + amount - oldbalanceOrg`: zero when the origin's
    /// balance moved by exactly the amount.
    pub fn error_balance_orig(&self) -> f64 {
        self.new_balance_orig + self.amount - self.old_balance_orig
    }

    /// `oldbalanceDest + amount - newbalanceDest`.
    pub fn error_balance_dest(&self) -> f64 {
        self.old_balance_dest + self.amount - self.new_balance_dest
    }

    /// The origin account ends at zero: the mark of PaySim's fraudsters.
    pub fn drains_origin(&self) -> bool {
        self.new_balance_orig == 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_round_trip_with_leading_zeros() {
        for name in [
            "C1231006815",
            "M1979787155",
            "C0",
            "C007",
            "M12345678901234567",
        ] {
            let id: AccountId = name.parse().unwrap();
            assert_eq!(id.to_string(), name);
        }
    }

    #[test]
    fn account_names_that_are_not_paysim_are_rejected() {
        for name in [
            "",
            "C",
            "X123",
            "C12a",
            "c123",
            "C123456789012345678",
            "C-1",
        ] {
            assert!(AccountId::from_bytes(name.as_bytes()).is_none(), "{name}");
        }
    }

    #[test]
    fn other_names_hash_stably() {
        let a = AccountId::from_name("user_42");
        assert_eq!(a, AccountId::from_name("user_42"));
        assert_ne!(a, AccountId::from_name("user_43"));
        assert_eq!(AccountId::from_name("C123").to_string(), "C123");
        assert!(a.to_string().starts_with('#'));
    }

    #[test]
    fn customer_and_merchant_with_same_number_differ() {
        let c: AccountId = "C42".parse().unwrap();
        let m: AccountId = "M42".parse().unwrap();
        assert_ne!(c, m);
        assert_eq!(c.kind(), AccountKind::Customer);
        assert_eq!(m.kind(), AccountKind::Merchant);
        assert_eq!(c.number(), m.number());
    }

    #[test]
    fn types_parse_both_spellings() {
        assert_eq!(TxnType::from_bytes(b"CASH-OUT"), Some(TxnType::CashOut));
        assert_eq!(TxnType::from_bytes(b"CASH_OUT"), Some(TxnType::CashOut));
        assert_eq!(TxnType::from_bytes(b"cash_out"), None);
        for t in TxnType::ALL {
            assert_eq!(TxnType::from_bytes(t.as_str().as_bytes()), Some(t));
            assert_eq!(TxnType::ALL[t.index()], t);
        }
    }
}
