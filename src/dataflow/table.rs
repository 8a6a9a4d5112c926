//! The feature table's CSV form: what `fraudflow features` writes and
//! training reads.

use super::FeatureRow;
use crate::event::EventId;
use crate::features::Contract;
use crate::paysim::write_java_double;

/// The header line: `event_id,step,label`, then the contract's features.
pub fn header(contract: Contract) -> String {
    format!("event_id,step,label,{}\n", contract.names().join(","))
}

/// Writes `text` as one CSV field (RFC 4180): in double quotes, with its
/// quotes doubled, when it holds a comma, a quote or a line end. A live
/// event's id is the sender's text: unquoted, `a,b` or a newline would
/// break the row.
///
/// ```
/// let mut out = Vec::new();
/// fraudflow::dataflow::table::csv_field("a\nb,\"c\"", &mut out);
/// assert_eq!(out, b"\"a\nb,\"\"c\"\"\"");
/// out.clear();
/// fraudflow::dataflow::table::csv_field("plain-1", &mut out);
/// assert_eq!(out, b"plain-1");
/// ```
pub fn csv_field(text: &str, out: &mut Vec<u8>) {
    if !text
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    for b in text.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends one row as a CSV line; a live event's id is quoted as
/// [`csv_field`] says. Numbers are the shortest form that reads
/// back to the same double (ryu's), integral ones as `N.0`.
///
/// ```
/// use fraudflow::dataflow::{table, FeatureRow};
/// use fraudflow::event::{EventId, Label};
/// use fraudflow::features::{Contract, Velocities};
/// # use fraudflow::{event::Event, paysim::PaysimReader};
/// # let data = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud\n\
/// #             1,TRANSFER,181.0,C1,181.0,0.0,C2,0.0,0.0,1,0\n";
/// # let t = PaysimReader::new(data.as_bytes()).unwrap().next().unwrap().unwrap();
/// # let event = Event::from_paysim(3, &t);
/// let values = Contract::V1.compute(&event, Velocities { orig: 1, dest: 0 });
/// let row = FeatureRow { account: fraudflow::paysim::AccountId::from_name("C1"), id: EventId::Row(3), seq: 3, time_ms: 3_600_000, place_ms: 3_600_000, step: Some(1), received_us: 0, label: Some(Label { is_fraud: true, is_flagged_fraud: false }), values };
/// let mut line = Vec::new();
/// table::write_row(&row, &mut line);
/// assert_eq!(String::from_utf8(line).unwrap(), "3,1,1,181.0,0.9945054945054945,0.0,1.0,0.0,1.0,1.0\n");
/// ```
pub fn write_row(row: &FeatureRow, line: &mut Vec<u8>) {
    match &row.id {
        EventId::Row(n) => line.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        EventId::Named(name) => csv_field(name, line),
    }
    line.push(b',');
    if let Some(step) = row.step {
        line.extend_from_slice(itoa::Buffer::new().format(step).as_bytes());
    }
    line.push(b',');
    if let Some(label) = row.label {
        line.push(if label.is_fraud { b'1' } else { b'0' });
    }
    let mut buf = ryu::Buffer::new();
    for &v in row.values.iter() {
        line.push(b',');
        if v.fract() == 0.0 && v.abs() < 1e15 {
            line.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
            line.extend_from_slice(b".0");
        } else if v.is_finite() {
            line.extend_from_slice(buf.format_finite(v).as_bytes());
        } else {
            write_java_double(v, line);
        }
    }
    line.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::sink::Lines;
    use crate::features::FeatureVec;

    fn row(seq: u64) -> FeatureRow {
        let values = FeatureVec::from_slice(&[seq as f64 / 3.0, 1.0]);
        FeatureRow {
            account: crate::paysim::AccountId::from_name("C1"),
            id: EventId::Row(seq),
            seq,
            time_ms: 0,
            place_ms: 0,
            step: Some(1),
            received_us: 0,
            label: None,
            values,
        }
    }

    #[test]
    fn rows_formatted_on_two_workers_merge_to_the_table_in_seq_order() {
        // Gaps (dead letters) and rows out of order, as two workers' are.
        let seqs = [9u64, 2, 3, 14, 1, 5, 6, 10, 11, 12];
        let (mut a, mut b): (Vec<FeatureRow>, Vec<FeatureRow>) =
            seqs.iter().map(|&s| row(s)).partition(|r| r.seq % 3 == 0);
        let blocks = [&mut a, &mut b].map(|rows| Lines::format(rows, |r| r.seq, write_row));
        let text = Lines::merge(blocks.to_vec());
        let mut sorted = seqs;
        sorted.sort();
        let mut expected = Vec::new();
        sorted
            .iter()
            .for_each(|&s| write_row(&row(s), &mut expected));
        assert_eq!(text.lines, seqs.len() as u64);
        assert_eq!(String::from_utf8(text.bytes), String::from_utf8(expected));
    }
}
