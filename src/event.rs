//! The typed event that flows through the dataflow, whatever its source.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::paysim::{AccountId, Transaction, TxnType};

/// Milliseconds in one PaySim step (an hour): event time is kept in
/// milliseconds since the Unix epoch.
pub const STEP_MS: u64 = 3_600_000;

/// Where an event came from, and so how it is named in outputs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventId {
    /// A PaySim row, by its 1-based data row number: stable across runs.
    Row(u64),
    /// A live event's own `event_id` (boxed: rare, and it keeps every
    /// event small to move).
    Named(Box<str>),
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventId::Row(n) => write!(f, "{n}"),
            EventId::Named(s) => f.write_str(s),
        }
    }
}

/// The ground truth, split off at parse time. It travels beside the event
/// for evaluation and never reaches features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub is_fraud: bool,
    pub is_flagged_fraud: bool,
}

/// One parsed transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    /// Input order: breaks ties between events of the same time.
    pub seq: u64,
    /// Event time, milliseconds since the Unix epoch (PaySim: step hours).
    pub time_ms: u64,
    /// Where the source placed the event in event time (ms): its own time,
    /// or the frontier's floor when it came later than that. Windows and
    /// model versions go by this; the dataflow's logical time may be
    /// coarser (see `sources::file::epochs`).
    pub place_ms: u64,
    /// Hour of day, 0..24 (PaySim: step mod 24).
    pub hour_of_day: u8,
    /// PaySim step, when the event came from PaySim.
    pub step: Option<u32>,
    pub kind: TxnType,
    pub amount: f64,
    pub orig: AccountId,
    pub old_balance_orig: f64,
    pub new_balance_orig: f64,
    pub dest: Option<AccountId>,
    pub old_balance_dest: f64,
    pub new_balance_dest: f64,
    pub label: Option<Label>,
    /// When this process read the event, in microseconds since the Unix
    /// epoch (0 until a source stamps it): latency is measured from here.
    pub received_us: u64,
}

impl Event {
    /// A PaySim row as an event: its row number names it and orders it.
    pub fn from_paysim(row: u64, t: &Transaction) -> Event {
        Event {
            id: EventId::Row(row),
            seq: row,
            time_ms: u64::from(t.step) * STEP_MS,
            place_ms: u64::from(t.step) * STEP_MS,
            hour_of_day: (t.step % 24) as u8,
            step: Some(t.step),
            kind: t.kind,
            amount: t.amount,
            orig: t.name_orig,
            old_balance_orig: t.old_balance_orig,
            new_balance_orig: t.new_balance_orig,
            dest: Some(t.name_dest),
            old_balance_dest: t.old_balance_dest,
            new_balance_dest: t.new_balance_dest,
            label: Some(Label {
                is_fraud: t.is_fraud,
                is_flagged_fraud: t.is_flagged_fraud,
            }),
            received_us: 0,
        }
    }
}
