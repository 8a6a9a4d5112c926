use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::error::{NonFinite, ReadError, RowError, RowErrorKind, StepProblem, MAX_STEP};
use super::record::{AccountId, Transaction, TxnType};
use super::HEADER;
use crate::excerpt::Quote;

/// How a [`PaysimReader`] reads.
#[derive(Clone, Copy, Debug)]
pub struct ReaderOptions {
    /// Size of the read buffer in bytes.
    pub buffer_bytes: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            buffer_bytes: 1 << 18,
        }
    }
}

/// Streams typed [`Transaction`]s out of a PaySim CSV file without loading it.
///
/// The header is checked when the reader is made. Each row then comes out as
/// `Ok(transaction)` or, for a bad row, `Err(ReadError::Row(..))` naming the
/// line and the reason; reading goes on after a bad row, so the caller decides
/// whether to skip it or stop. Java-style numbers (`1.916920493E7`), labels
/// written `0.0`/`1.0`, CRLF line ends and a missing final newline are all
/// accepted.
///
/// # Examples
///
/// ```
/// use fraudflow::paysim::{PaysimReader, TxnType};
///
/// let data = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud\r\n\
///             1,TRANSFER,1.916920493E7,C1,1.916920493E7,0.0,C2,0.0,0.0,1.0,0\r\n\
///             1,PAYMENT,-5,C3,0,0,M4,0,0,0,0";
/// let mut reader = PaysimReader::new(data.as_bytes()).unwrap();
/// let first = reader.next().unwrap().unwrap();
/// assert_eq!(first.kind, TxnType::Transfer);
/// assert_eq!(first.amount, 19_169_204.93);
/// assert!(first.is_fraud);
/// let bad = reader.next().unwrap().unwrap_err();
/// assert_eq!(bad.to_string(), "line 3: column amount: \"-5\" is negative");
/// assert!(reader.next().is_none());
/// ```
pub struct PaysimReader<R> {
    input: R,
    /// The last line read, its line end removed.
    line: Vec<u8>,
    /// Its 1-based line number in the file.
    line_no: u64,
}

impl PaysimReader<BufReader<File>> {
    /// Opens a file and checks its header.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.display().to_string(),
            source,
        })?;
        PaysimReader::new(file)
    }
}

impl<R: Read> PaysimReader<BufReader<R>> {
    /// Wraps any byte source and checks its header.
    pub fn new(inner: R) -> Result<Self, ReadError> {
        Self::with_options(inner, ReaderOptions::default())
    }

    pub fn with_options(inner: R, options: ReaderOptions) -> Result<Self, ReadError> {
        let input = BufReader::with_capacity(options.buffer_bytes, inner);
        let mut reader = PaysimReader::headless(input, 1);
        if !reader.read_line()? {
            return Err(ReadError::Empty {
                expected: HEADER.join(","),
            });
        }
        check_header(&reader.line)?;
        Ok(reader)
    }
}

impl<R: BufRead> PaysimReader<R> {
    /// Reads rows from a source positioned at the start of line
    /// `first_line` of a PaySim file, after the header: how each worker
    /// reads its own share of a file (a byte slice reads without a copy).
    ///
    /// One line is one row, whatever it holds. PaySim's fields hold no
    /// commas or quotes, so a row is split at every comma and a field
    /// written in double quotes (as R saves them) is unquoted; a stray `"`
    /// cannot join the lines after it into one record, as a CSV quoting
    /// rule would (a whole block of rows lost as one dead letter).
    pub fn headless(input: R, first_line: u64) -> Self {
        PaysimReader {
            input,
            line: Vec::with_capacity(256),
            line_no: first_line.saturating_sub(1),
        }
    }

    /// Reads the next line into `self.line`; false at the end.
    fn read_line(&mut self) -> Result<bool, ReadError> {
        self.line.clear();
        let line = self.line_no + 1;
        let read = self
            .input
            .read_until(b'\n', &mut self.line)
            .map_err(|source| ReadError::Io { line, source })?;
        if read == 0 {
            return Ok(false);
        }
        self.line_no = line;
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(true)
    }

    /// The last line read, without its line end: the raw payload a dead
    /// letter quotes.
    pub fn last_line(&self) -> &[u8] {
        &self.line
    }

    /// The line number of the last row.
    pub fn line(&self) -> u64 {
        self.line_no
    }
}

impl<R: BufRead> Iterator for PaysimReader<R> {
    type Item = Result<Transaction, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.read_line() {
                Err(err) => return Some(Err(err)),
                Ok(false) => return None,
                // A blank line holds no data.
                Ok(true) if self.line.trim_ascii().is_empty() => continue,
                Ok(true) => {
                    let line = self.line_no;
                    return Some(parse_row(&self.line, line).map_err(ReadError::from));
                }
            }
        }
    }
}

fn check_header(header: &[u8]) -> Result<(), ReadError> {
    let names: Vec<&[u8]> = header
        .split(|&b| b == b',')
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 {
                f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
            } else {
                f
            };
            unquote(trim(f))
        })
        .collect();
    if names
        .iter()
        .copied()
        .eq(HEADER.iter().map(|h| h.as_bytes()))
    {
        return Ok(());
    }
    let missing: Vec<&str> = HEADER
        .iter()
        .copied()
        .filter(|h| !names.contains(&h.as_bytes()))
        .collect();
    let unexpected: Vec<&[u8]> = names
        .iter()
        .copied()
        .filter(|n| !HEADER.iter().any(|h| h.as_bytes() == *n))
        .collect();
    let mut detail = String::new();
    if !missing.is_empty() {
        detail.push_str(&format!("; missing: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        detail.push_str(&format!("; unexpected: {}", column_list(&unexpected)));
    }
    if missing.is_empty() && unexpected.is_empty() {
        detail.push_str("; the columns are out of order");
    }
    Err(ReadError::Header {
        expected: HEADER.join(","),
        // The header is about 130 bytes: quote all of a plausible one.
        found: Quote::with_limit(&names.join(&b","[..]), 512),
        detail,
    })
}

/// Column names for a message: a plain name as it is, anything else
/// quoted; a few of them, then how many more (a binary file's first line
/// can hold thousands of "columns").
fn column_list(names: &[&[u8]]) -> String {
    const SHOWN: usize = HEADER.len();
    let plain = |n: &[u8]| {
        (1..=crate::excerpt::VALUE_LIMIT).contains(&n.len())
            && n.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let mut list: Vec<String> = names
        .iter()
        .take(SHOWN)
        .map(|&n| match std::str::from_utf8(n) {
            Ok(text) if plain(n) => text.to_string(),
            _ => Quote::new(n).to_string(),
        })
        .collect();
    if names.len() > SHOWN {
        list.push(format!("and {} more", names.len() - SHOWN));
    }
    list.join(", ")
}

/// Turns line `line` of a PaySim file (its bytes without the line end)
/// into a transaction, or says why not: what the reader does with each
/// line, for a caller that has found the lines itself.
///
/// # Examples
///
/// ```
/// use fraudflow::paysim::{parse_row, RowErrorKind, TxnType};
///
/// let row = b"1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0";
/// let t = parse_row(row, 2).unwrap();
/// assert_eq!((t.kind, t.amount, t.is_fraud), (TxnType::Transfer, 181.0, true));
/// let err = parse_row(b"1,TRANSFER,181.0", 9).unwrap_err();
/// assert_eq!(err.line, 9);
/// assert!(matches!(err.kind, RowErrorKind::FieldCount { found: 3 }));
/// ```
pub fn parse_row(bytes: &[u8], line: u64) -> Result<Transaction, RowError> {
    parse_line(bytes).map_err(|kind| RowError { line, kind })
}

/// Turns one line into a transaction, or says why not.
fn parse_line(line: &[u8]) -> Result<Transaction, RowErrorKind> {
    let mut fields: [&[u8]; 11] = [&[]; 11];
    let mut found = 0;
    for (i, f) in line.split(|&b| b == b',').enumerate() {
        if let Some(slot) = fields.get_mut(i) {
            *slot = unquote(trim(f));
        }
        found = i + 1;
    }
    if found != HEADER.len() {
        return Err(RowErrorKind::FieldCount { found });
    }
    let field = |i: usize| fields[i];
    let kind = TxnType::from_bytes(field(1)).ok_or_else(|| RowErrorKind::UnknownType {
        value: Quote::new(field(1)),
    })?;
    let amount = number(field(2), HEADER[2])?;
    if amount < 0.0 {
        return Err(RowErrorKind::NegativeAmount {
            value: Quote::new(field(2)),
        });
    }
    Ok(Transaction {
        step: step(field(0))?,
        kind,
        amount,
        name_orig: account(field(3), HEADER[3])?,
        old_balance_orig: balance(field(4), HEADER[4])?,
        new_balance_orig: balance(field(5), HEADER[5])?,
        name_dest: account(field(6), HEADER[6])?,
        old_balance_dest: balance(field(7), HEADER[7])?,
        new_balance_dest: balance(field(8), HEADER[8])?,
        is_fraud: label(field(9), HEADER[9])?,
        is_flagged_fraud: label(field(10), HEADER[10])?,
    })
}

fn trim(raw: &[u8]) -> &[u8] {
    raw.trim_ascii()
}

/// A field written in double quotes, without them.
fn unquote(raw: &[u8]) -> &[u8] {
    match raw {
        [b'"', inner @ .., b'"'] => inner,
        _ => raw,
    }
}

fn number(raw: &[u8], column: &'static str) -> Result<f64, RowErrorKind> {
    let parsed = fast_decimal(raw).or_else(|| std::str::from_utf8(raw).ok()?.parse::<f64>().ok());
    match parsed {
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(RowErrorKind::NotFinite {
            column,
            value: Quote::new(raw),
            problem: NonFinite::of(raw, v),
        }),
        None => Err(RowErrorKind::NotANumber {
            column,
            value: Quote::new(raw),
        }),
    }
}

/// Exact powers of ten up to the largest a double holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Clinger's fast path for the numbers PaySim is made of (`9839.64`,
/// `1.916920493E7`): a mantissa below 2^53 and a power of ten up to 22 are
/// both exact, so one multiplication or division rounds correctly. Anything
/// else returns `None` and goes to the standard parser.
fn fast_decimal(raw: &[u8]) -> Option<f64> {
    let (negative, raw) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    let mut i = 0;
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut exp10: i32 = 0;
    let mut take_digits = |i: &mut usize, scale: i32| {
        while let Some(&d) = raw.get(*i).filter(|d| d.is_ascii_digit()) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            digits += 1;
            exp10 += scale;
            *i += 1;
        }
    };
    take_digits(&mut i, 0);
    if raw.get(i) == Some(&b'.') {
        i += 1;
        take_digits(&mut i, -1);
    }
    if digits == 0 || digits > 18 || mantissa > 1 << 53 {
        return None;
    }
    if matches!(raw.get(i), Some(b'E' | b'e')) {
        i += 1;
        exp10 += exponent(raw, &mut i)?;
    }
    if i != raw.len() || exp10.unsigned_abs() as usize >= POW10.len() {
        return None;
    }
    let m = mantissa as f64;
    let v = if exp10 < 0 {
        m / POW10[(-exp10) as usize]
    } else {
        m * POW10[exp10 as usize]
    };
    Some(if negative { -v } else { v })
}

/// The signed exponent of at most three digits at `raw[*i..]` (after the
/// `E`), moving `i` past it; `None` without digits or with more.
#[inline]
fn exponent(raw: &[u8], i: &mut usize) -> Option<i32> {
    let sign = match raw.get(*i) {
        Some(b'-') => {
            *i += 1;
            -1
        }
        Some(b'+') => {
            *i += 1;
            1
        }
        _ => 1,
    };
    let start = *i;
    let mut e: i32 = 0;
    while let Some(&d) = raw.get(*i).filter(|d| d.is_ascii_digit()) {
        e = e * 10 + i32::from(d - b'0');
        *i += 1;
        if *i - start > 3 {
            return None;
        }
    }
    (*i > start).then_some(sign * e)
}

fn balance(raw: &[u8], column: &'static str) -> Result<f64, RowErrorKind> {
    let value = number(raw, column)?;
    if value < 0.0 {
        return Err(RowErrorKind::NegativeBalance {
            column,
            value: Quote::new(raw),
        });
    }
    Ok(value)
}

/// A step field: digits, or a whole number written as a decimal (`1.0`).
pub(crate) fn step(raw: &[u8]) -> Result<u32, RowErrorKind> {
    if !raw.is_empty() && raw.len() <= 9 && raw.iter().all(u8::is_ascii_digit) {
        return Ok(raw.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')));
    }
    step_slow(raw).map_err(|problem| RowErrorKind::BadStep {
        value: Quote::new(raw),
        problem,
    })
}

/// Steps the fast path does not take: re-saved copies write `1.0`, and a
/// bad step is told apart by what is wrong with it.
fn step_slow(raw: &[u8]) -> Result<u32, StepProblem> {
    let v = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or(StepProblem::NotANumber)?;
    if !v.is_finite() {
        Err(StepProblem::NotFinite(NonFinite::of(raw, v)))
    } else if v < 0.0 {
        Err(StepProblem::Negative)
    } else if v.fract() != 0.0 {
        Err(StepProblem::Fraction)
    } else if v > f64::from(MAX_STEP) {
        Err(StepProblem::TooLarge)
    } else {
        Ok(v as u32)
    }
}

fn account(raw: &[u8], column: &'static str) -> Result<AccountId, RowErrorKind> {
    AccountId::parse(raw).map_err(|problem| RowErrorKind::BadAccount {
        column,
        value: Quote::new(raw),
        problem,
    })
}

fn label(raw: &[u8], column: &'static str) -> Result<bool, RowErrorKind> {
    match raw {
        b"0" | b"0.0" => Ok(false),
        b"1" | b"1.0" => Ok(true),
        _ => match std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
        {
            Some(0.0) => Ok(false),
            Some(1.0) => Ok(true),
            _ => Err(RowErrorKind::BadLabel {
                column,
                value: Quote::new(raw),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud";

    fn read_all(body: &str) -> Vec<Result<Transaction, String>> {
        PaysimReader::new(body.as_bytes())
            .unwrap()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn accepts_java_plain_and_crlf_forms() {
        let body = format!(
            "{HEAD}\r\n1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0\r\n\
             743.0,TRANSFER,1.916920493E7,C2,19169204.93,0,C3,0,0,1.0,0.0\r\n"
        );
        let rows = read_all(&body);
        assert_eq!(rows.len(), 2);
        let a = rows[0].as_ref().unwrap();
        assert_eq!((a.step, a.kind, a.amount), (1, TxnType::Payment, 9839.64));
        assert_eq!(a.name_dest.to_string(), "M1979787155");
        let b = rows[1].as_ref().unwrap();
        assert_eq!(
            (b.step, b.amount, b.old_balance_orig),
            (743, 19_169_204.93, 19_169_204.93)
        );
        assert!(b.is_fraud && !b.is_flagged_fraud);
    }

    #[test]
    fn fast_decimal_path_agrees_with_the_standard_parser() {
        let cases = [
            "0",
            "0.0",
            "9839.64",
            "1.916920493E7",
            "1.0E7",
            "181.0",
            "-5",
            "123456789.12",
            "0.001",
            "5.0E-4",
            "1e22",
            "9007199254740993",
            "1.23456789012345678901",
            "1e400",
            ".5",
            "5.",
            "1E",
            "1e+3",
        ];
        for text in cases {
            let std = text.parse::<f64>().ok();
            let fast = fast_decimal(text.as_bytes());
            if let Some(fast) = fast {
                assert_eq!(Some(fast), std, "{text}");
            }
        }
        let mut x = 1u64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let text = format!("{}.{:02}", (x >> 20) % 100_000_000_000, x % 100);
            assert_eq!(
                fast_decimal(text.as_bytes()),
                text.parse::<f64>().ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn missing_final_newline_still_yields_last_row() {
        let body = format!("{HEAD}\n1,DEBIT,1,C1,2,1,C2,0,1,0,0");
        assert_eq!(read_all(&body).len(), 1);
        let blank_lines = format!("{HEAD}\r\n\r\n1,DEBIT,1,C1,2,1,C2,0,1,0,0\r\n\r\n\n");
        assert_eq!(read_all(&blank_lines).len(), 1);
    }

    #[test]
    fn bad_rows_carry_line_and_reason_and_reading_goes_on() {
        let body = format!(
            "{HEAD}\n1,DEBIT,1,C1,2,1,C2,0,1,0,0\n1,DEBIT,abc,C1,2,1,C2,0,1,0,0\n1,DEBIT,1,C1\n\
             1,REFUND,1,C1,2,1,C2,0,1,0,0\n1,DEBIT,NaN,C1,2,1,C2,0,1,0,0\n1,DEBIT,1,C1,2,1,C2,0,1,2,0\n\
             x,DEBIT,1,C1,2,1,C2,0,1,0,0\n1,DEBIT,1,X1,2,1,C2,0,1,0,0\n1,DEBIT,1,C1,2,1,C2,0,1,0,0\n"
        );
        let rows = read_all(&body);
        let errors: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(String::as_str)
            .collect();
        assert_eq!(
            errors,
            [
                "line 3: column amount: \"abc\" is not a number",
                "line 4: expected 11 fields, found 4",
                "line 5: column type: \"REFUND\" is not one of CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER",
                "line 6: column amount: \"NaN\" is NaN, not a number",
                "line 7: column isFraud: \"2\" is not a label (0, 1, 0.0 or 1.0)",
                "line 8: column step: \"x\" is not a number",
                "line 9: column nameOrig: \"X1\": an account name starts with C (customer) or M (merchant)",
            ]
        );
        assert_eq!(rows.iter().filter(|r| r.is_ok()).count(), 2);
    }

    #[test]
    fn crlf_line_numbers_do_not_lag_by_one() {
        let body =
            format!("{HEAD}\r\n1,DEBIT,1,C1,2,1,C2,0,1,0,0\r\n1,DEBIT,x,C1,2,1,C2,0,1,0,0\r\n");
        let errors: Vec<String> = read_all(&body)
            .into_iter()
            .filter_map(Result::err)
            .collect();
        assert_eq!(errors, ["line 3: column amount: \"x\" is not a number"]);
    }

    #[test]
    fn wrong_header_names_the_columns() {
        let body = "step,type,amount,nameOrig,oldbalanceOrig,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud\n";
        let err = PaysimReader::new(body.as_bytes())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("found \"{}\"", body.trim_end())),
            "{err}"
        );
        assert!(
            err.contains("missing: oldbalanceOrg, isFlaggedFraud"),
            "{err}"
        );
        assert!(err.contains("unexpected: oldbalanceOrig"), "{err}");
        let empty = PaysimReader::new(&b""[..]).err().unwrap();
        assert!(empty.is_data_error());
        assert!(empty.to_string().contains("empty"));
    }

    #[test]
    fn header_with_bom_and_crlf_is_accepted() {
        let body = format!("\u{feff}{HEAD}\r\n");
        assert_eq!(read_all(&body).len(), 0);
    }
}
