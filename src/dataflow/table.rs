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

/// Appends one row as a CSV line. Numbers are the shortest form that reads
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
/// let row = FeatureRow { id: EventId::Row(3), seq: 3, time: 3600, step: Some(1), received_us: 0, label: Some(Label { is_fraud: true, is_flagged_fraud: false }), values };
/// let mut line = Vec::new();
/// table::write_row(&row, &mut line);
/// assert_eq!(String::from_utf8(line).unwrap(), "3,1,1,181.0,0.9945054945054945,0.0,1.0,0.0,1.0,1.0\n");
/// ```
pub fn write_row(row: &FeatureRow, line: &mut Vec<u8>) {
    match &row.id {
        EventId::Row(n) => line.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        EventId::Named(name) => line.extend_from_slice(name.as_bytes()),
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
