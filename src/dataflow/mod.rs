//! The timely dataflow: sources, parse with a dead-letter path, features
//! with velocity as windowed arrangements, and ordered sinks.

pub mod blocks;
pub mod dead_letter;
pub mod json_event;
pub mod parquet_table;
pub mod sink;
pub mod source;
pub mod table;
pub mod velocity;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::Stream;

use crate::event::{Event, EventId, Label};
use crate::features::{Contract, FeatureVec, Velocities};
use velocity::{Velocity, VelocityKey};

/// Default velocity window: one hour, in seconds.
pub const WINDOW_SECONDS: u64 = 3_600;

/// One event's features, with what identifies it and its label for
/// evaluation (never a feature).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    pub id: EventId,
    pub seq: u64,
    pub step: Option<u32>,
    pub label: Option<Label>,
    pub values: FeatureVec,
}

/// Attaches origin (and, for V2, destination) velocity to every event, each
/// computed on the shard that owns the account, then the contract's
/// features.
pub fn featurize<'scope>(
    events: Stream<'scope, u64, Vec<Event>>,
    contract: Contract,
    window: u64,
) -> Stream<'scope, u64, Vec<FeatureRow>> {
    let with_orig = events.map(|e| (e, Velocities::default())).velocity(
        window,
        |(e, _): &(Event, Velocities)| VelocityKey {
            account: Some(e.orig.as_u64()),
            seq: e.seq,
        },
        |(_, v), n| v.orig = n,
        "OrigVelocity",
    );
    let with_both = match contract {
        Contract::V1 => with_orig,
        Contract::V2 => with_orig.velocity(
            window,
            |(e, _): &(Event, Velocities)| VelocityKey {
                account: e.dest.map(|d| d.as_u64()),
                seq: e.seq,
            },
            |(_, v), n| v.dest = n,
            "DestVelocity",
        ),
    };
    with_both.map(move |(e, v)| FeatureRow {
        values: contract.compute(&e, v),
        id: e.id,
        seq: e.seq,
        step: e.step,
        label: e.label,
    })
}
