//! `fraudflow replay`: publishes a PaySim or JSON-lines file to a Kafka
//! topic as JSON events keyed by account, for demos and load tests (the
//! work is `fraudflow::kafka::replay`).

use std::path::PathBuf;
use std::process::ExitCode;

use fraudflow::kafka::replay::{replay, ReplayError, ReplaySettings};

use super::grouped;

/// Publishes a PaySim CSV (each row as the JSON event the backtest would
/// read, named by its row number, stamped with its step) or a JSON-lines
/// file (each line as it is) to a topic, keyed by account, with the event
/// time as the message timestamp. Creates the topic when it is missing.
/// Exits 2 when any message was refused or not acknowledged.
#[derive(clap::Args)]
pub struct Args {
    /// The file: .csv (PaySim) or .jsonl (JSON events, one a line).
    #[arg(long)]
    input: PathBuf,
    /// The brokers, host:port[,host:port...].
    #[arg(long)]
    brokers: String,
    /// Events a second; 0 publishes as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The topic.
    #[arg(long, default_value = "raw-events")]
    topic: String,
    /// Seconds the broker has to acknowledge a message (and to answer
    /// each admin request).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    if args.timeout == 0 {
        anyhow::bail!("--timeout must be at least 1 second");
    }
    let mut settings =
        ReplaySettings::new(&args.input, &args.brokers, &args.topic, Some(args.rate))?;
    settings.timeout = std::time::Duration::from_secs(args.timeout);
    settings.quiet = quiet;
    let report = replay(&settings).map_err(|err| match err {
        // A bad PaySim header is the data's fault: exit 1, as elsewhere.
        ReplayError::Paysim { path, cause } => {
            anyhow::Error::new(cause).context(path.display().to_string())
        }
        // A Kafka error's message holds its causes: printed once.
        other => anyhow::anyhow!("{other}"),
    })?;
    if report.bad_rows > 0 {
        outln!(
            "replay: {} PaySim rows did not parse and were published as they are",
            grouped(report.bad_rows)
        );
    }
    if let Some(why) = &report.first_failure {
        eprintln!("fraudflow: replay: the first failed message: {why}");
    }
    if report.numbered_from > 1 && !quiet {
        // Worth saying only when the topic held messages already.
        eprintln!(
            "replay: the topic held {} messages; these are numbered on from {}",
            grouped(report.numbered_from - 1),
            grouped(report.numbered_from)
        );
    }
    let seconds = report.elapsed.as_secs_f64();
    outln!(
        "replay: {} events published to {} ({} failed) in {seconds:.2} s, {:.0} ev/s",
        grouped(report.delivered),
        settings.topic,
        grouped(report.failed),
        report.delivered as f64 / seconds.max(1e-9)
    );
    Ok(if report.failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
