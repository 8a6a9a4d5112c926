use std::io::{self, Write};

use super::record::Transaction;
use super::HEADER;

/// Writes transactions in the Kaggle PaySim format, numbers printed the way
/// Java prints doubles (`9839.64`, `0.0`, `1.916920493E7`).
///
/// # Examples
///
/// ```
/// use fraudflow::paysim::{PaysimReader, PaysimWriter};
///
/// let text = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud\n\
///             1,TRANSFER,1.916920493E7,C1,1.916920493E7,0.0,C2,0.0,0.0,1,0\n";
/// let rows: Vec<_> = PaysimReader::new(text.as_bytes()).unwrap().map(Result::unwrap).collect();
/// let mut out = Vec::new();
/// let mut writer = PaysimWriter::new(&mut out).unwrap();
/// for row in &rows {
///     writer.write(row).unwrap();
/// }
/// writer.finish().unwrap();
/// assert_eq!(String::from_utf8(out).unwrap(), text);
/// ```
pub struct PaysimWriter<W: Write> {
    out: io::BufWriter<W>,
    line: Vec<u8>,
}

impl<W: Write> PaysimWriter<W> {
    /// Writes the header.
    pub fn new(inner: W) -> io::Result<Self> {
        let mut out = io::BufWriter::with_capacity(1 << 20, inner);
        out.write_all(HEADER.join(",").as_bytes())?;
        out.write_all(b"\n")?;
        Ok(PaysimWriter {
            out,
            line: Vec::with_capacity(160),
        })
    }

    pub fn write(&mut self, t: &Transaction) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(itoa::Buffer::new().format(t.step).as_bytes());
        line.push(b',');
        line.extend_from_slice(t.kind.as_str().as_bytes());
        line.push(b',');
        write_java_double(t.amount, line);
        line.push(b',');
        t.name_orig.write_to(line);
        for v in [t.old_balance_orig, t.new_balance_orig] {
            line.push(b',');
            write_java_double(v, line);
        }
        line.push(b',');
        t.name_dest.write_to(line);
        for v in [t.old_balance_dest, t.new_balance_dest] {
            line.push(b',');
            write_java_double(v, line);
        }
        line.extend_from_slice(if t.is_fraud { b",1" } else { b",0" });
        line.extend_from_slice(if t.is_flagged_fraud { b",1\n" } else { b",0\n" });
        self.out.write_all(line)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}

/// Appends `v` as Java's `Double.toString` prints it: plain decimals with at
/// least one fractional digit for magnitudes in [1e-3, 1e7), otherwise
/// `d.dddE±n`; the shortest digits that read back to the same double.
///
/// ```
/// let mut out = Vec::new();
/// for v in [9839.64, 0.0, 19_169_204.93, 1e7, 181.0, 0.000_5] {
///     fraudflow::paysim::write_java_double(v, &mut out);
///     out.push(b' ');
/// }
/// assert_eq!(String::from_utf8(out).unwrap(), "9839.64 0.0 1.916920493E7 1.0E7 181.0 5.0E-4 ");
/// ```
pub fn write_java_double(v: f64, out: &mut Vec<u8>) {
    if !v.is_finite() {
        out.extend_from_slice(if v.is_nan() {
            b"NaN"
        } else if v > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    // Integral values (flags, counts, most balances) need no shortest-digit
    // search: below 1e7 Java prints them as the integer and `.0`.
    if v.fract() == 0.0 && v.abs() < 1e7 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        out.extend_from_slice(b".0");
        return;
    }
    if v < 0.0 {
        out.push(b'-');
    }
    let mut buf = ryu::Buffer::new();
    let (digits, point) = shortest_digits(buf.format_finite(v.abs()));
    let digits = &digits.0[..digits.1];
    let sci = point - 1;
    if (-3..7).contains(&sci) {
        if point <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-point) as usize));
            out.extend_from_slice(digits);
        } else if point as usize >= digits.len() {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', point as usize - digits.len()));
            out.extend_from_slice(b".0");
        } else {
            let (int, frac) = digits.split_at(point as usize);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        }
    } else {
        out.push(digits[0]);
        out.push(b'.');
        out.extend_from_slice(if digits.len() > 1 { &digits[1..] } else { b"0" });
        out.push(b'E');
        out.extend_from_slice(itoa::Buffer::new().format(sci).as_bytes());
    }
}

/// Splits ryu's output into significant digits (no leading or trailing
/// zeros) and the position of the decimal point: value = 0.DIGITS × 10^point.
fn shortest_digits(text: &str) -> (([u8; 32], usize), i32) {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = [0u8; 32];
    let mut len = 0;
    let mut point = int.len() as i32 + exp;
    for &d in int.as_bytes().iter().chain(frac.as_bytes()) {
        if len == 0 && d == b'0' {
            point -= 1;
            continue;
        }
        if len < digits.len() {
            digits[len] = d;
            len += 1;
        }
    }
    while len > 1 && digits[len - 1] == b'0' {
        len -= 1;
    }
    ((digits, len), point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn java(v: f64) -> String {
        let mut out = Vec::new();
        write_java_double(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn matches_java_double_to_string() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (9_999_999.99, "9999999.99"),
            (10_000_000.0, "1.0E7"),
            (92_445_516.64, "9.244551664E7"),
            (1.5e16, "1.5E16"),
            (123_456.0, "123456.0"),
            (-2.5, "-2.5"),
            (1e-10, "1.0E-10"),
        ];
        for (v, want) in cases {
            assert_eq!(java(v), want, "{v}");
        }
    }

    #[test]
    fn java_form_reads_back_to_the_same_double() {
        let mut x = 0.37_f64;
        for _ in 0..10_000 {
            x = (x * 7919.123).fract() * 10f64.powi((x * 1000.0) as i32 % 20 - 6);
            let text = java(x);
            assert_eq!(text.parse::<f64>().unwrap(), x, "{text}");
        }
    }
}
