//! Throughput of reading the Kaggle PaySim format into typed records and of
//! generating PaySim rows to a file, on one core.
//!
//! `cargo bench --bench throughput` prints rows per second for both. Set
//! `FRAUDFLOW_BENCH_ROWS` to change the size (default 2,000,000 rows) or
//! `FRAUDFLOW_BENCH_FILE` to read an existing PaySim file instead.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use fraudflow::generate::{Generator, GeneratorParams};
use fraudflow::paysim::{PaysimReader, PaysimWriter};

const RUNS: usize = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::var("FRAUDFLOW_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir()?;
    let generated = dir.path().join("paysim.csv");

    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let started = Instant::now();
        let params = GeneratorParams::new(rows, 7).check()?;
        let mut writer = PaysimWriter::new(BufWriter::new(File::create(&generated)?))?;
        for row in Generator::new(params) {
            writer.write(&row)?;
        }
        writer.finish()?.flush()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "generate: {rows} rows to a file, best of {RUNS}: {best:.3} s, {:.0} rows/s",
        rows as f64 / best
    );

    let input = std::env::var_os("FRAUDFLOW_BENCH_FILE").map_or(generated, PathBuf::from);
    let bytes = std::fs::metadata(&input)?.len();
    let mut best = f64::MAX;
    let mut read = 0u64;
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut total = 0.0;
        read = 0;
        for row in PaysimReader::open(&input)? {
            let row = row?;
            total += row.amount;
            read += 1;
        }
        black_box(total);
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "read: {read} rows ({:.0} MB) into typed records, best of {RUNS}: {best:.3} s, {:.0} rows/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        read as f64 / best,
        bytes as f64 / 1e6 / best
    );
    Ok(())
}
