//! End-to-end tests of the `fraudflow` binary: one test binary, a module per
//! area.
//!
//! Tests that read the genuine PaySim slice find it at `../shared/paysim/`;
//! they fail with a clear message when it is absent, unless
//! `FRAUDFLOW_ALLOW_MISSING_SHARED=1`, which turns them into a printed skip.

mod bench;
mod common;
mod demo;
mod event_time;
mod features;
mod feedback;
mod hostile_input;
mod hostile_messages;
mod hostile_models;
mod hostile_outputs;
mod hostile_reports;
mod html_report;
mod infra;
mod kafka_exactly_once;
mod kafka_labels;
mod kafka_live;
mod kafka_queue;
mod kafka_replay;
mod kafka_tansu;
mod live;
mod live_feedback;
mod metrics;
mod models;
mod netns;
mod output;
mod parser_fuzz;
mod paysim;
mod pipeline;
mod prometheus;
mod schemas;
mod settings;
mod stalls;
mod tansu_bin;
mod threshold;
