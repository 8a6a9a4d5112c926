//! `fraudflow eda FILE`: the figures of a PaySim file.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use fraudflow::eda::{Eda, EdaReport};
use fraudflow::paysim::ReadError;
use fraudflow::scan::{scan_file, ScanOptions};

use super::{grouped, money};

/// Rows, fraud, class imbalance, per-type volume and fraud, amount quantiles
/// and steps of a PaySim file.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: super::FileArgs,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let report = profile(&args.input.file, args.input.scan_options(quiet))?;
    if args.input.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the file once and gathers its figures; says on stderr how fast.
pub fn profile(file: &std::path::Path, options: ScanOptions) -> anyhow::Result<EdaReport> {
    profile_counted(file, options).map_err(|stopped| stopped.error.into())
}

/// A read that stopped on an error after `rows` good rows.
pub struct Stopped {
    pub error: ReadError,
    pub rows: u64,
}

/// [`profile`], saying on an error how many good rows came before it.
pub fn profile_counted(file: &std::path::Path, options: ScanOptions) -> Result<EdaReport, Stopped> {
    let started = Instant::now();
    let mut eda = Eda::default();
    let bad = match scan_file(file, options, |t| eda.add(t)) {
        Ok(bad) => bad,
        Err(error) => {
            return Err(Stopped {
                error,
                rows: eda.rows(),
            })
        }
    };
    let report = eda.finish(bad);
    if !options.quiet {
        let secs = started.elapsed().as_secs_f64();
        let total = report.rows + report.bad_rows.count;
        eprintln!(
            "read {} rows in {secs:.2} s ({:.0} rows/s)",
            grouped(total),
            total as f64 / secs.max(1e-9)
        );
    }
    Ok(report)
}

/// The report as text: counts, then types, then amounts and steps.
pub fn render(r: &EdaReport) -> String {
    let mut s = counts(r);
    types(&mut s, r);
    amounts_and_steps(&mut s, r);
    s
}

/// Rows, bad rows, fraud and flags.
fn counts(r: &EdaReport) -> String {
    let mut s = String::new();
    let pct = |x: f64| format!("{:.4} %", 100.0 * x);
    let _ = writeln!(s, "rows                {}", grouped(r.rows));
    if r.bad_rows.count > 0 {
        let _ = writeln!(s, "bad rows (skipped)  {}", grouped(r.bad_rows.count));
        for e in &r.bad_rows.examples {
            let _ = writeln!(s, "  line {}: {}", e.line, e.reason);
        }
    }
    let _ = writeln!(
        s,
        "fraud               {} ({})",
        grouped(r.fraud),
        pct(r.fraud_rate)
    );
    if let Some(ratio) = r.legit_per_fraud {
        let _ = writeln!(s, "class imbalance     1 fraud per {ratio:.1} genuine");
    }
    let _ = writeln!(
        s,
        "fraud draining      {} of fraud rows end the origin at 0",
        pct(r.fraud_drains_origin_share)
    );
    let _ = writeln!(
        s,
        "flagged             {} ({} of them fraud)",
        grouped(r.flagged),
        grouped(r.flagged_fraud)
    );
    let _ = writeln!(
        s,
        "fraud in other types {}",
        grouped(r.fraud_in_unexpected_types)
    );
    s
}

/// The table of transaction types.
fn types(s: &mut String, r: &EdaReport) {
    let _ = writeln!(
        s,
        "\n{:<10} {:>12} {:>9} {:>8} {:>10}",
        "type", "rows", "share", "fraud", "fraud rate"
    );
    for t in &r.by_type {
        let _ = writeln!(
            s,
            "{:<10} {:>12} {:>9} {:>8} {:>10}",
            t.kind.as_str(),
            grouped(t.rows),
            format!("{:.2} %", 100.0 * t.share),
            grouped(t.fraud),
            format!("{:.3} %", 100.0 * t.fraud_rate)
        );
    }
}

/// Amount percentiles and the steps' spread.
fn amounts_and_steps(s: &mut String, r: &EdaReport) {
    let a = &r.amount;
    let _ = writeln!(
        s,
        "\namount  p50 {}  p95 {}  p99 {}  max {}",
        money(a.p50),
        money(a.p95),
        money(a.p99),
        money(a.max)
    );
    let st = &r.steps;
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), grouped);
    let _ = writeln!(
        s,
        "steps   {}..{} ({} distinct); rows per step min {} mean {} max {}",
        st.first.map_or_else(|| "-".to_string(), |v| v.to_string()),
        st.last.map_or_else(|| "-".to_string(), |v| v.to_string()),
        st.distinct,
        opt(st.rows_min),
        st.rows_mean
            .map_or_else(|| "-".to_string(), |v| format!("{v:.1}")),
        opt(st.rows_max),
    );
    let first: Vec<String> = st
        .rows_per_step
        .iter()
        .take(12)
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let more = if st.rows_per_step.len() > 12 {
        " ..."
    } else {
        ""
    };
    let _ = writeln!(s, "        rows per step {}{more}", first.join(" "));
}
