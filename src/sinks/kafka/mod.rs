//! The Kafka sinks: alerts to `anomalies`, normal traffic to `metrics`,
//! dead letters to `dead-letter`, each keyed by account (dead letters by
//! where they came from) so that one account's outputs stay in order.
//!
//! Why one operator per worker for all three: a worker writes the outputs
//! of exactly the events its own source read (see
//! [`crate::sources::kafka::link`]), so it alone decides when the offsets
//! of its partitions may be committed:
//!
//! - **At least once**: each time's records are sent once the frontier has
//!   passed it, in time then input order; the operator holds a capability
//!   for every time with a message not yet acknowledged, and commits, every
//!   `commit_ms`, each partition's offsets up to the earliest time still
//!   unsent or unacknowledged.
//! - **Exactly once**: a transactional producer per worker; every
//!   `commit_ms` the offsets placed before the frontier go into the open
//!   transaction with every output sent before it, and the transaction is
//!   committed; any failure ends the run, and the restart reads again from
//!   the last committed offsets (readers use `read_committed`).
//!
//! Events read again after a restart to rebuild the velocity state are
//! written nowhere ([`crate::sources::kafka::seq`]).

pub mod confirm;
mod writer;

use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::Stream;

use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::score::Outcome;
use crate::kafka::KafkaError;
use crate::pipeline::Abort;
use crate::sources::kafka::{KafkaInput, Link};

/// An output on its way to a topic.
#[derive(Clone, Debug)]
pub enum Outbound {
    Alert(Outcome),
    Normal(Outcome),
    Dead(Box<DeadLetter>),
}

impl Outbound {
    /// Input order: sends of one time go in it.
    pub fn seq(&self) -> u64 {
        match self {
            Outbound::Alert(o) | Outbound::Normal(o) => o.seq,
            Outbound::Dead(d) => d.seq,
        }
    }

    /// The message key, into `out`: the account, or for a dead letter
    /// where it came from (the payload may name no account).
    pub fn key(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Outbound::Alert(o) | Outbound::Normal(o) => o.account.write_to(out),
            Outbound::Dead(d) => out.extend_from_slice(d.source.as_bytes()),
        }
    }

    /// The message value, JSON as in the schemas (no line end).
    pub fn payload(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.clear();
        match self {
            Outbound::Alert(o) => crate::sinks::file::live::outcome_line(o, true, out)?,
            Outbound::Normal(o) => crate::sinks::file::live::outcome_line(o, false, out)?,
            Outbound::Dead(d) => {
                serde_json::to_writer(&mut *out, d.as_ref())?;
            }
        }
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        Ok(())
    }
}

/// Writes `outputs` to their topics from this worker, committing through
/// `link`; the stream returned carries nothing, but its frontier passes a
/// time only once everything before it is delivered (committed, exactly
/// once).
pub fn kafka_sink<'scope>(
    outputs: Stream<'scope, u64, Vec<Outbound>>,
    input: Arc<KafkaInput>,
    link: Rc<Link>,
    abort: Abort,
) -> Result<Stream<'scope, u64, Vec<()>>, KafkaError> {
    writer::build(outputs, input, link, abort)
}
