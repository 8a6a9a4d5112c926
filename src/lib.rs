//! fraudflow: real-time fraud detection on timely dataflow.
//!
//! This crate holds the pieces the `fraudflow` binary is made of: the PaySim
//! reader and writer ([`paysim`]), the data checks ([`validate`]), the
//! exploratory figures ([`eda`]), and our own PaySim generator ([`generate`]).

pub mod alloc;
pub mod atomic;
pub mod bench;
pub mod bundle;
pub mod clock;
pub mod dataflow;
pub mod demo;
pub mod eda;
pub mod ensemble;
pub mod eval;
pub mod event;
pub mod excerpt;
pub mod features;
pub mod generate;
pub mod kafka;
pub mod metrics;
pub mod models;
pub mod paysim;
pub mod pipeline;
pub mod progress;
pub mod scan;
pub mod serve;
pub mod settings;
pub mod sinks;
pub mod sources;
pub mod train;
pub mod validate;
