//! Kafka throughput and latency of `fraudflow run`, against brokers on
//! 127.0.0.1 that the bench starts itself: tansu, a Kafka-protocol broker
//! (found at `$TANSU`, `~/.cargo/bin/tansu` or on `PATH`), and librdkafka's
//! mock cluster in this process, the only broker here that commits
//! transactions (tansu 0.6 refuses EndTxn), so exactly once is measured on
//! it alone.
//!
//! `cargo bench --bench kafka` prints, for each broker:
//! - **the broker's ceiling**: the events published to an 8-partition
//!   topic as fast as it takes them, then read back by one consumer, no
//!   fraudflow between; "produce then consume" is the events over the two
//!   times added;
//! - **throughput**: `fraudflow run -w 2` started on that topic, the
//!   sustained rate from the first output read back to the last, every
//!   event read back once from the output topics, and that rate as a share
//!   of the ceiling;
//! - **latency** at a steady rate: events stamped with the time they are
//!   published, the time until their alert is read back from the
//!   anomalies topic (an upper bound on its delivery: the reader waits
//!   up to 5 ms a fetch), p50/p99/max, and the same to any output; the
//!   first second is left out as warm-up.
//!
//! Throughput and latency are measured at least once, and exactly once
//! where the broker does transactions. Everything (broker, fraudflow, the
//! bench's publisher and reader) shares this machine's cores: the figures
//! are of the whole on one machine, as a single-host demo would run it.
//!
//! Environment: `FRAUDFLOW_BENCH_EVENTS` (throughput events, default
//! 300,000; at most 50,000 on the mock cluster, whose reads slow with the
//! length of its log), `FRAUDFLOW_BENCH_RATE` (latency events/s, 20,000),
//! `FRAUDFLOW_BENCH_SECONDS` (latency seconds, 10),
//! `FRAUDFLOW_BENCH_WORKERS` (2), `FRAUDFLOW_BENCH_ONLY` (`tansu` or
//! `mock`), `FRAUDFLOW_BENCH_BROKERS` (measure a running broker instead),
//! `FRAUDFLOW_BENCH_SOURCE_KEYS` (more `[source.kafka]` keys for the runs,
//! one a line, e.g. `idle_ms = 0`).

mod broker;
mod io;
mod phases;
#[path = "../../tests/it/tansu_bin.rs"]
mod tansu_bin;

use std::path::{Path, PathBuf};
use std::process::Command;

use broker::Broker;

type Error = Box<dyn std::error::Error>;

/// What to measure, from the environment.
pub struct Config {
    pub events: usize,
    pub rate: u64,
    pub seconds: u64,
    pub workers: usize,
    pub dir: PathBuf,
    pub models: PathBuf,
}

fn env_or(name: &str, default: u64) -> Result<u64, Error> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{name}={v:?}: expected a whole number above 0").into()),
        Err(_) => Ok(default),
    }
}

/// Trains the models the runs score with, on 50,000 generated rows.
fn train(dir: &Path) -> Result<PathBuf, Error> {
    use fraudflow::generate::{Generator, GeneratorParams};
    use fraudflow::paysim::PaysimWriter;
    let input = dir.join("train.csv");
    let mut writer = PaysimWriter::new(std::io::BufWriter::new(std::fs::File::create(&input)?))?;
    for row in Generator::new(GeneratorParams::new(50_000, 11).check()?) {
        writer.write(&row)?;
    }
    std::io::Write::flush(&mut writer.finish()?)?;
    let models = dir.join("models");
    let status = Command::new(env!("CARGO_BIN_EXE_fraudflow"))
        .args(["train", "--quiet", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&models)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("fraudflow train failed: {status}").into());
    }
    Ok(models)
}

fn brokers() -> Result<Vec<Broker>, Error> {
    if let Ok(given) = std::env::var("FRAUDFLOW_BENCH_BROKERS") {
        return Ok(vec![Broker::Given(given)]);
    }
    let only = std::env::var("FRAUDFLOW_BENCH_ONLY").unwrap_or_default();
    let mut out = Vec::new();
    if only.is_empty() || only == "tansu" {
        out.push(Broker::tansu()?);
    }
    if only.is_empty() || only == "mock" {
        out.push(Broker::mock()?);
    }
    if out.is_empty() {
        return Err(format!("FRAUDFLOW_BENCH_ONLY={only:?}: expected tansu or mock").into());
    }
    Ok(out)
}

fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = Config {
        events: env_or("FRAUDFLOW_BENCH_EVENTS", 300_000)? as usize,
        rate: env_or("FRAUDFLOW_BENCH_RATE", 20_000)?,
        seconds: env_or("FRAUDFLOW_BENCH_SECONDS", 10)?,
        workers: env_or("FRAUDFLOW_BENCH_WORKERS", 2)? as usize,
        models: train(dir.path())?,
        dir: dir.path().to_path_buf(),
    };
    println!(
        "kafka bench: {cores} cores, fraudflow -w {}, {} events for throughput, \
         {} ev/s for {} s for latency",
        config.workers, config.events, config.rate, config.seconds
    );
    for (i, broker) in brokers()?.iter().enumerate() {
        let guarantees: &[&str] = if broker.does_transactions() {
            &["at-least-once", "exactly-once"]
        } else {
            println!(
                "{}: exactly once not measured: this broker has no transactions",
                broker.name()
            );
            &["at-least-once"]
        };
        phases::latency_floor(&config, broker, &format!("b{i}f"))?;
        for (j, guarantee) in guarantees.iter().enumerate() {
            phases::throughput(&config, broker, &format!("b{i}t{j}"), guarantee)?;
            phases::latency(&config, broker, &format!("b{i}l{j}"), guarantee)?;
        }
    }
    Ok(())
}
