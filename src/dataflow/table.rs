//! The feature table's CSV form: what `fraudflow features` writes and
//! training reads.

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

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

/// Consecutive rows (by `seq`) of the feature table, already formatted:
/// what travels to the writer instead of a line per row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvRun {
    /// The `seq` of the first row.
    pub first: u64,
    /// How many rows, of `seq` `first`, `first + 1`, ...
    pub rows: u64,
    /// Their CSV lines.
    pub bytes: Vec<u8>,
}

/// Formats each worker's rows into runs of consecutive `seq`s. No other
/// row can fall inside a run, so runs sorted by `first` and written in turn
/// give the rows in `seq` order, whatever the number of workers: the writer
/// orders a few runs per container instead of every row, and no row needs
/// an allocation of its own.
pub fn csv_runs<'scope>(
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
) -> Stream<'scope, u64, Vec<CsvRun>> {
    rows.unary::<CapacityContainerBuilder<Vec<CsvRun>>, _, _, _>(Pipeline, "CsvRuns", |_, _| {
        move |input, output| {
            input.for_each(|cap, data| {
                data.sort_unstable_by_key(|r| r.seq);
                let mut session = output.session(&cap);
                let mut run = CsvRun::default();
                for (i, row) in data.iter().enumerate() {
                    if run.rows > 0 && row.seq != run.first + run.rows {
                        session.give(std::mem::take(&mut run));
                    }
                    if run.rows == 0 {
                        run.first = row.seq;
                        // Room for the rest of the container, at most.
                        run.bytes.reserve(160 * (data.len() - i));
                    }
                    write_row(row, &mut run.bytes);
                    run.rows += 1;
                }
                if run.rows > 0 {
                    session.give(run);
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::{Capture, ToStream};

    use super::*;
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
    fn runs_in_order_of_first_seq_give_every_row_in_seq_order() {
        // Gaps (dead letters) and rows out of order, as two workers' would be.
        let seqs = [9u64, 2, 3, 14, 1, 5, 6, 10, 11, 12];
        let captured = timely::example(move |scope| {
            csv_runs(seqs.map(row).to_vec().to_stream(scope)).capture()
        });
        let mut runs: Vec<CsvRun> = captured
            .try_iter()
            .flat_map(|event| match event {
                timely::dataflow::operators::capture::Event::Messages(_, runs) => runs,
                timely::dataflow::operators::capture::Event::Progress(_) => Vec::new(),
            })
            .collect();
        for run in &runs {
            assert!(run.rows > 0);
        }
        runs.sort_by_key(|r| r.first);
        let firsts: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.rows)).collect();
        assert_eq!(firsts, [(1, 3), (5, 2), (9, 4), (14, 1)]);

        let written: Vec<u8> = runs.into_iter().flat_map(|r| r.bytes).collect();
        let mut sorted = seqs;
        sorted.sort();
        let mut expected = Vec::new();
        sorted
            .iter()
            .for_each(|&s| write_row(&row(s), &mut expected));
        assert_eq!(String::from_utf8(written), String::from_utf8(expected));
    }
}
