//! The `fraudflow` command line.
//!
//! Exit codes: 0 success; 1 the data is at fault (an invalid file, a wrong
//! header, a bad row under `--strict`); 2 usage or system errors (bad flags,
//! a missing file, a failed write).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fraudflow",
    version,
    about = "Real-time fraud detection on timely dataflow"
)]
struct Cli {
    /// No progress bars or summaries on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Demo(cmd::demo::Args),
    Validate(cmd::validate::Args),
    Eda(cmd::eda::Args),
    Generate(cmd::generate::Args),
    Features(cmd::features::Args),
    Train(cmd::train::Args),
    Backtest(Box<cmd::backtest::Args>),
    Run(cmd::run::Args),
    Loadgen(cmd::loadgen::Args),
    Readiness(cmd::readiness::Args),
    Replay(cmd::replay::Args),
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    fraudflow::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let batch = matches!(
        cli.command,
        Command::Generate(_) | Command::Features(_) | Command::Train(_) | Command::Backtest(_)
    );
    if batch {
        if let Err(err) = cmd::stopped::clean_up_when_stopped() {
            eprintln!("fraudflow: SIGTERM and Ctrl-C will not remove temporary outputs: {err:#}");
        }
    }
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args, cli.quiet),
        Command::Validate(args) => cmd::validate::run(args, cli.quiet),
        Command::Eda(args) => cmd::eda::run(args, cli.quiet),
        Command::Generate(args) => cmd::generate::run(args, cli.quiet),
        Command::Features(args) => cmd::features::run(args, cli.quiet),
        Command::Train(args) => cmd::train::run(args, cli.quiet),
        Command::Backtest(args) => cmd::backtest::run(*args, cli.quiet),
        Command::Run(args) => cmd::run::run(args, cli.quiet),
        Command::Loadgen(args) => cmd::loadgen::run(args, cli.quiet),
        Command::Readiness(args) => cmd::readiness::run(args, cli.quiet),
        Command::Replay(args) => cmd::replay::run(args, cli.quiet),
        Command::Bench(args) => cmd::bench::run(args, cli.quiet),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fraudflow: {err:#}");
            ExitCode::from(cmd::exit_code(&err))
        }
    }
}

// The dataflow allocates and frees many short-lived batches; mimalloc keeps
// them off the kernel's page-fault path that glibc's allocator takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
