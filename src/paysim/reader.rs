use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::{ReadError, RowError, RowErrorKind};
use super::record::{AccountId, Transaction, TxnType};
use super::HEADER;

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
/// assert_eq!(bad.to_string(), "line 3: column amount: -5 is negative");
/// assert!(reader.next().is_none());
/// ```
pub struct PaysimReader<R> {
    csv: csv::Reader<R>,
    record: csv::ByteRecord,
    /// Lines before the first one this reader sees.
    line_offset: u64,
}

impl PaysimReader<File> {
    /// Opens a file and checks its header.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.display().to_string(),
            source,
        })?;
        PaysimReader::new(file)
    }
}

impl<R: Read> PaysimReader<R> {
    /// Wraps any byte source and checks its header.
    pub fn new(inner: R) -> Result<Self, ReadError> {
        Self::with_options(inner, ReaderOptions::default())
    }

    pub fn with_options(inner: R, options: ReaderOptions) -> Result<Self, ReadError> {
        let mut reader = Self::headless(inner, 1, options);
        let mut header = csv::ByteRecord::new();
        let found_any = reader
            .csv
            .read_byte_record(&mut header)
            .map_err(|source| ReadError::Io { line: 1, source })?;
        if !found_any {
            return Err(ReadError::Empty {
                expected: HEADER.join(","),
            });
        }
        check_header(&header)?;
        Ok(reader)
    }

    /// Reads rows from a source positioned at the start of line
    /// `first_line` of a PaySim file, after the header: how each worker
    /// reads its own share of a file.
    pub fn headless(inner: R, first_line: u64, options: ReaderOptions) -> Self {
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            // With CRLF as terminator csv-core ends a record at `\r` and
            // counts the line at `\n`, so line numbers would lag by one;
            // splitting at `\n` alone keeps them right, and fields are
            // trimmed, which removes the `\r`.
            .terminator(csv::Terminator::Any(b'\n'))
            .buffer_capacity(options.buffer_bytes)
            .from_reader(inner);
        PaysimReader {
            csv,
            record: csv::ByteRecord::with_capacity(128, 11),
            line_offset: first_line.saturating_sub(1),
        }
    }

    /// The last record as text, fields joined by commas: the raw payload
    /// a dead letter carries.
    pub fn last_raw(&self) -> String {
        let fields: Vec<String> = self
            .record
            .iter()
            .map(|f| String::from_utf8_lossy(f.trim_ascii()).into_owned())
            .collect();
        fields.join(",")
    }

    /// The line the last record started on.
    pub fn line(&self) -> u64 {
        self.line_offset + self.record.position().map_or(1, |p| p.line())
    }
}

impl<R: Read> Iterator for PaysimReader<R> {
    type Item = Result<Transaction, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.csv.read_byte_record(&mut self.record) {
                // A blank line of a CRLF file (`\r` alone) holds no data.
                Ok(true) if self.record.len() == 1 && trim(&self.record[0]).is_empty() => continue,
                Ok(true) => {
                    let line = self.line();
                    return Some(
                        parse_record(&self.record).map_err(|kind| RowError { line, kind }.into()),
                    );
                }
                Ok(false) => return None,
                Err(source) => {
                    let line = source
                        .position()
                        .map_or(self.line(), |p| self.line_offset + p.line());
                    return Some(Err(ReadError::Io { line, source }));
                }
            }
        }
    }
}

fn check_header(header: &csv::ByteRecord) -> Result<(), ReadError> {
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 {
                f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
            } else {
                f
            };
            String::from_utf8_lossy(f).trim().to_string()
        })
        .collect();
    if names.iter().map(String::as_str).eq(HEADER) {
        return Ok(());
    }
    let missing: Vec<&str> = HEADER
        .iter()
        .copied()
        .filter(|h| !names.iter().any(|n| n == h))
        .collect();
    let unexpected: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !HEADER.contains(n))
        .collect();
    let mut detail = String::new();
    if !missing.is_empty() {
        detail.push_str(&format!("; missing: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        detail.push_str(&format!("; unexpected: {}", unexpected.join(", ")));
    }
    if missing.is_empty() && unexpected.is_empty() {
        detail.push_str("; the columns are out of order");
    }
    Err(ReadError::Header {
        expected: HEADER.join(","),
        found: names.join(","),
        detail,
    })
}

/// Turns one CSV record into a transaction, or says why not.
pub(crate) fn parse_record(rec: &csv::ByteRecord) -> Result<Transaction, RowErrorKind> {
    if rec.len() != HEADER.len() {
        return Err(RowErrorKind::FieldCount { found: rec.len() });
    }
    let field = |i: usize| trim(&rec[i]);
    let kind = TxnType::from_bytes(field(1)).ok_or_else(|| RowErrorKind::UnknownType {
        value: lossy(field(1)),
    })?;
    let amount = number(field(2), HEADER[2])?;
    if amount < 0.0 {
        return Err(RowErrorKind::NegativeAmount { value: amount });
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

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn number(raw: &[u8], column: &'static str) -> Result<f64, RowErrorKind> {
    let parsed = fast_decimal(raw).or_else(|| std::str::from_utf8(raw).ok()?.parse::<f64>().ok());
    match parsed {
        Some(v) if v.is_finite() => Ok(v),
        Some(_) => Err(RowErrorKind::NotFinite {
            column,
            value: lossy(raw),
        }),
        None => Err(RowErrorKind::NotANumber {
            column,
            value: lossy(raw),
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
        let sign = match raw.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let start = i;
        let mut e: i32 = 0;
        while let Some(&d) = raw.get(i).filter(|d| d.is_ascii_digit()) {
            e = e * 10 + i32::from(d - b'0');
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        if i == start {
            return None;
        }
        exp10 += sign * e;
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

fn balance(raw: &[u8], column: &'static str) -> Result<f64, RowErrorKind> {
    let value = number(raw, column)?;
    if value < 0.0 {
        return Err(RowErrorKind::NegativeBalance { column, value });
    }
    Ok(value)
}

/// A step field: digits, or a whole number written as a decimal (`1.0`).
pub(crate) fn step(raw: &[u8]) -> Result<u32, RowErrorKind> {
    let bad = || RowErrorKind::BadStep { value: lossy(raw) };
    if !raw.is_empty() && raw.len() <= 9 && raw.iter().all(u8::is_ascii_digit) {
        return Ok(raw.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')));
    }
    // Re-saved copies write steps as `1.0`.
    let v = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(bad)?;
    if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
        Ok(v as u32)
    } else {
        Err(bad())
    }
}

fn account(raw: &[u8], column: &'static str) -> Result<AccountId, RowErrorKind> {
    AccountId::from_bytes(raw).ok_or_else(|| RowErrorKind::BadAccount {
        column,
        value: lossy(raw),
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
                value: lossy(raw),
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
                "line 6: column amount: \"NaN\" is not finite",
                "line 7: column isFraud: \"2\" is not a label (0, 1, 0.0 or 1.0)",
                "line 8: column step: \"x\" is not a whole number of hours",
                "line 9: column nameOrig: \"X1\" is not an account name (C or M then digits)",
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
