//! The backtest's report as it leaves the run: `report.json`, the HTML
//! page (`--html`) and the summary on standard output.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use fraudflow::atomic::OutputFile;
use fraudflow::eval::html::backtest::{self, Gathered};

use fraudflow::eval::report::Report;
use fraudflow::eval::Quality;

use super::grouped;

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

/// The summary on standard output.
pub fn print_report(report: &Report, out: &Path) {
    outln!(
        "events {} = {} scored ({} alerts, {} normal) + {} dead letters; {} late",
        grouped(report.events_in),
        grouped(report.scored),
        grouped(report.alerts),
        grouped(report.normal),
        grouped(report.dead_letters),
        grouped(report.late)
    );
    print_versions(report);
    if let Some(f) = &report.feedback {
        super::feedback_args::print_summary(f);
    }
    if let Some(changes) = &report.thresholds {
        super::threshold_args::print_thresholds(changes);
    }
    if let Some(days) = &report.learning {
        super::feedback_args::print_learning(days, report.budget);
    }
    if let Some(r) = &report.recovery {
        super::feedback_args::print_recovery(r);
    }
    let quality = [
        ("all events", &report.quality_all),
        ("test split", &report.quality_test_split),
    ];
    for (name, q) in quality {
        if let Some(q) = q {
            print_quality(name, q, report.budget);
        }
    }
    if let Some(l) = &report.latency_us {
        outln!(
            "latency (read to routed): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.p50 as f64 / 1e3,
            l.p95 as f64 / 1e3,
            l.p99 as f64 / 1e3,
            l.max as f64 / 1e3
        );
    }
    outln!(
        "throughput: {} events in {:.2} s on {} workers: {:.0} events/s",
        grouped(report.events_in),
        report.seconds,
        report.workers,
        report.events_per_second
    );
    outln!("wrote {}/alerts.jsonl and report.json", out.display());
}

/// The policy, or with switches each version: its steps, policy and the
/// events it scored.
fn print_versions(report: &Report) {
    if let [only] = &report.versions[..] {
        outln!("policy ({}): {}", report.policy_source, only.policy);
        return;
    }
    outln!("model versions (policy {}):", report.policy_source);
    for v in &report.versions {
        let test = v.test_events.map_or_else(String::new, |n| {
            format!(" ({} in the test split)", grouped(n))
        });
        outln!(
            "  {} ({}): {}, {}; scored {} events{test}, {} alerts",
            v.bundle_version,
            v.models,
            v.steps(),
            v.policy,
            grouped(v.events),
            grouped(v.alerts)
        );
    }
}

/// One part's quality: ranking, at the threshold, at the budget, the fraud
/// amount caught.
fn print_quality(name: &str, q: &Quality, budget: f64) {
    outln!(
        "{name}: {} events, {} fraud; PR-AUC {}, ROC-AUC {}",
        grouped(q.events),
        grouped(q.fraud),
        opt(q.ranking.pr_auc),
        opt(q.ranking.roc_auc)
    );
    outln!(
        "  at the threshold: {} alerts, precision {}, recall {}",
        grouped(q.ranking.at_threshold.alerts),
        opt(q.ranking.at_threshold.precision),
        opt(q.ranking.at_threshold.recall)
    );
    if let Some(b) = q.ranking.at_budget {
        outln!(
            "  at the {:.2} % budget: {} alerts, precision {}, recall {}",
            budget * 100.0,
            grouped(b.alerts),
            opt(b.precision),
            opt(b.recall)
        );
    }
    outln!("  fraud amount caught: {}", q.amount_caught());
}

/// Writes report.json into its file of the run's group.
pub fn write_report(file: OutputFile, report: &Report) -> anyhow::Result<()> {
    write_file(file, |out| {
        serde_json::to_writer_pretty(&mut *out, report)?;
        out.write_all(b"\n")
    })
}

/// Writes the page of the run, from its report and what `--html`
/// gathered, into its file of the run's group.
pub fn write_html(file: OutputFile, gathered: Gathered, report: &Report) -> anyhow::Result<()> {
    let page = backtest::page(report, gathered);
    let text = fraudflow::eval::html::render(&page)
        .with_context(|| format!("drawing {}", file.path().display()))?;
    write_file(file, |out| out.write_all(text.as_bytes()))
}

/// `write`s into `file` and finishes it (synced, ready to take its name
/// with the group), naming the file on failure.
fn write_file(
    file: OutputFile,
    write: impl FnOnce(&mut BufWriter<OutputFile>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let path = file.path().to_path_buf();
    let mut out = BufWriter::new(file);
    write(&mut out)
        .and_then(|()| out.into_inner().map_err(|e| e.into_error()))
        .and_then(|file| file.finish())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
