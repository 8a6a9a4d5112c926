//! `fraudflow bench`: the pipeline's speed and memory, end to end, with one
//! command: the backtest of a full-size generated month at each worker
//! count, and the live HTTP path at a fixed rate; with `--peer flink`, the
//! same file through Apache Flink afterwards, and the ratio. With
//! `--scaling`, the backtest and the features at each worker count up to
//! the cores, with speedup, parallel efficiency and each worker's busy
//! time.
//!
//! Every measured run is a child process of this one (this executable
//! again, with `backtest ...` or `run ...`), one after another, so that each
//! run's peak memory is its own (`wait4`'s maximum resident set of that
//! child; see `fraudflow::bench::child`) and no run shares the cores with
//! another. The input is generated once and the models trained once; every
//! run reuses them.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context};
use fraudflow::bench::live::{self, LiveSettings};
use fraudflow::bench::peer::{self, PeerSettings};
use fraudflow::bench::scaling::{worker_counts, Scaling, ScalingRow};
use fraudflow::bench::{child, load_average, BacktestFigures, BenchReport, ChildRun, Machine};
use fraudflow::bench::{FeaturesFigures, InputFigures, PeerComparison};
use fraudflow::pipeline::busy::{self, WORKER_BUSY};

mod print;

/// How long one backtest, training or generating child may run.
const CHILD_LIMIT: Duration = Duration::from_secs(3_600);

/// Measures the pipeline: `backtest` of a generated file at each `-w` of
/// --workers, then `run` over HTTP at --rate events a second for
/// --seconds; prints events/s, latency percentiles and peak memory of
/// each, each run a child process of this one.
#[derive(clap::Args)]
pub struct Args {
    /// Rows of the generated input (PaySim's 6,362,620 by default).
    #[arg(long, default_value_t = 6_362_620)]
    rows: u64,
    /// Seed of the generated input.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Reads this PaySim file instead of generating one.
    #[arg(long, conflicts_with = "rows")]
    input: Option<PathBuf>,
    /// Scores with this bundle instead of training one on the input.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Worker counts of the backtests, in turn (e.g. 1,2) [default: 1,2;
    /// with --scaling 1, 2, 4, ... up to the cores].
    #[arg(long, value_delimiter = ',')]
    workers: Vec<usize>,
    /// Measures scaling: the backtest and the features at each of
    /// --workers, each worker's busy time, and no live run.
    #[arg(long)]
    scaling: bool,
    /// Sweeps of --scaling over the worker counts, one after another: an
    /// odd number, at most 99; each count shows its median round, and
    /// every round's figures are printed.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Events a second posted to the live server.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds of live traffic; 0 leaves the live run out.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events a request, as JSON lines (as `fraudflow loadgen --batch`).
    #[arg(long, default_value_t = 50)]
    batch: u64,
    /// Worker threads of the live server.
    #[arg(long, default_value_t = 2)]
    live_workers: usize,
    /// The live server's dataflow file (an HTTP source).
    #[arg(long, default_value = "dataflows/local.toml")]
    dataflow: PathBuf,
    /// Where the input, models, and every run's outputs and logs go.
    #[arg(long, default_value = "out/bench")]
    dir: PathBuf,
    /// Also writes every figure to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Runs this peer on the same input afterwards: `flink`.
    #[arg(long, value_parser = ["flink"])]
    peer: Option<String>,
    /// The Flink peer's folder (holding run_bench.sh).
    #[arg(long, default_value = "../shared/peers/flink")]
    peer_dir: PathBuf,
    /// The python of a virtual environment with apache-flink installed.
    #[arg(long, default_value = "python3")]
    peer_python: PathBuf,
    /// Flink's parallelism; fraudflow's comparison runs use as many workers.
    #[arg(long, default_value_t = 2)]
    peer_parallelism: usize,
    /// Seconds the peer's script may wait for a quiet machine.
    #[arg(long, default_value_t = 120)]
    quiet_wait: u64,
}

pub fn run(mut args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    if args.workers.is_empty() {
        args.workers = match args.scaling {
            true => worker_counts(Machine::this().cores),
            false => vec![1, 2],
        };
    }
    check(&args)?;
    let exe = std::env::current_exe().context("finding this executable")?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let machine = Machine::this();
    let say = |what: &str| {
        if !quiet {
            eprintln!("bench: {what}");
        }
    };
    let (input, input_figures) = input(&args, &exe, &say)?;
    let (models, training) = models(&args, &exe, &input, &say)?;
    let (backtest, scaling) = backtests(&args, &exe, (&input, &models), &say)?;
    let live = (args.seconds > 0 && !args.scaling)
        .then(|| live_run(&args, &exe, &models, &say))
        .transpose()?;
    let peer = match args.peer {
        Some(_) => Some(peer_run(&args, &exe, &input, &backtest, &say)?),
        None => None,
    };
    let report = BenchReport {
        machine,
        input: input_figures,
        training,
        backtest,
        live,
        peer,
        scaling,
    };
    print::report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The backtest at each of --workers; with --scaling, the features too,
/// and each backtest's busy time per worker.
fn backtests(
    args: &Args,
    exe: &Path,
    (input, models): (&Path, &Path),
    say: &dyn Fn(&str),
) -> anyhow::Result<(Vec<BacktestFigures>, Option<Scaling>)> {
    if args.scaling {
        return sweeps(args, exe, (input, models), say);
    }
    let backtest = args
        .workers
        .iter()
        .map(|&w| backtest_run(args, exe, (input, models), w, None, say))
        .collect::<anyhow::Result<_>>()?;
    Ok((backtest, None))
}

/// `--rounds` sweeps of the backtest and the features over the worker
/// counts; the backtests reported are the median rounds'.
fn sweeps(
    args: &Args,
    exe: &Path,
    (input, models): (&Path, &Path),
    say: &dyn Fn(&str),
) -> anyhow::Result<(Vec<BacktestFigures>, Option<Scaling>)> {
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            say(&format!("round {round} of {}", args.rounds));
        }
        let mut rows = Vec::new();
        for &w in &args.workers {
            let busy_file = args.dir.join(format!("busy-w{w}.jsonl"));
            // Only this round's backtest may be read as its busy times.
            match std::fs::remove_file(&busy_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", busy_file.display()));
                }
                _ => {}
            }
            let b = backtest_run(args, exe, (input, models), w, Some(&busy_file), say)?;
            rows.push(ScalingRow {
                features: features_run(args, exe, input, w, b.events, say)?,
                busy: busy::read(&busy_file)?,
                backtest: b,
            });
        }
        rounds.push(rows);
    }
    let scaling = Scaling::of_rounds(rounds);
    let backtest = scaling.rows.iter().map(|r| r.backtest.clone()).collect();
    Ok((backtest, Some(scaling)))
}

fn check(args: &Args) -> anyhow::Result<()> {
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    if args.workers.contains(&0) {
        bail!(
            "--workers must list worker counts of at least 1, got {:?}",
            args.workers
        );
    }
    if args.seconds > 0 && (args.rate == 0 || args.batch == 0 || args.live_workers == 0) {
        bail!("--rate, --batch and --live-workers must be at least 1 for the live run");
    }
    // Odd, so that each count has a middle round to show.
    if args.rounds.is_multiple_of(2) || args.rounds > 99 || (args.rounds > 1 && !args.scaling) {
        bail!(
            "--rounds must be odd, at most 99, and above 1 only with --scaling, got {}",
            args.rounds
        );
    }
    if args.peer.is_some() && args.peer_parallelism == 0 {
        bail!("--peer-parallelism must be at least 1");
    }
    Ok(())
}

/// Runs `fraudflow ARGS...` as the child `name`, to its end.
fn fraudflow(
    exe: &Path,
    dir: &Path,
    name: &str,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    say: &dyn Fn(&str),
) -> anyhow::Result<(child::Finished, ChildRun)> {
    fraudflow_timed(exe, dir, name, args, None, say)
}

/// [`fraudflow`], writing its workers' busy times to `busy` when given
/// (see `fraudflow::pipeline::busy`).
fn fraudflow_timed(
    exe: &Path,
    dir: &Path,
    name: &str,
    args: &[&dyn AsRef<std::ffi::OsStr>],
    busy: Option<&Path>,
    say: &dyn Fn(&str),
) -> anyhow::Result<(child::Finished, ChildRun)> {
    let mut command = Command::new(exe);
    command.arg("--quiet").args(args.iter().map(|a| a.as_ref()));
    if let Some(path) = busy {
        command.env(WORKER_BUSY, path);
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    say(&format!("{name}: fraudflow {}", shown.join(" ")));
    let load = load_average();
    let finished = child::spawn(command, dir, name)?.wait(CHILD_LIMIT)?;
    let run = ChildRun::of(&finished, load);
    Ok((finished, run))
}

/// The input: the file given, or one generated into the bench folder.
fn input(args: &Args, exe: &Path, say: &dyn Fn(&str)) -> anyhow::Result<(PathBuf, InputFigures)> {
    if let Some(path) = &args.input {
        let figures = InputFigures {
            path: path.display().to_string(),
            rows: None,
            seed: None,
            generated: None,
        };
        return Ok((path.clone(), figures));
    }
    let path = args.dir.join("paysim.csv");
    let (rows, seed) = (args.rows.to_string(), args.seed.to_string());
    let (_, run) = fraudflow(
        exe,
        &args.dir,
        "generate",
        &[
            &"generate",
            &"--rows",
            &rows,
            &"--seed",
            &seed,
            &"--out",
            &path,
        ],
        say,
    )?;
    let figures = InputFigures {
        path: path.display().to_string(),
        rows: Some(args.rows),
        seed: Some(args.seed),
        generated: Some(run),
    };
    Ok((path, figures))
}

/// The models: the bundle given, or one trained on the input (with the
/// most workers of --workers).
fn models(
    args: &Args,
    exe: &Path,
    input: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<(PathBuf, Option<ChildRun>)> {
    if let Some(dir) = &args.models {
        return Ok((dir.clone(), None));
    }
    let dir = args.dir.join("models");
    let w = args.workers.iter().max().copied().unwrap_or(1).to_string();
    let (_, run) = fraudflow(
        exe,
        &args.dir,
        "train",
        &[&"train", &"--input", &input, &"--out", &dir, &"-w", &w],
        say,
    )?;
    Ok((dir, Some(run)))
}

/// The backtest of `input` with `models` at `workers`, each worker's busy
/// time written to `busy` when given.
fn backtest_run(
    args: &Args,
    exe: &Path,
    (input, models): (&Path, &Path),
    workers: usize,
    busy: Option<&Path>,
    say: &dyn Fn(&str),
) -> anyhow::Result<BacktestFigures> {
    let out = args.dir.join(format!("backtest-w{workers}"));
    let w = workers.to_string();
    let (_, run) = fraudflow_timed(
        exe,
        &args.dir,
        &format!("backtest-w{workers}"),
        &[
            &"backtest",
            &"--input",
            &input,
            &"--models",
            &models,
            &"--out",
            &out,
            &"-w",
            &w,
        ],
        busy,
        say,
    )?;
    Ok(BacktestFigures::read(&out, workers, run)?)
}

/// `features` of `input` at `workers` (its `events`, as the backtest read
/// them): events a second from process start to exit.
fn features_run(
    args: &Args,
    exe: &Path,
    input: &Path,
    workers: usize,
    events: u64,
    say: &dyn Fn(&str),
) -> anyhow::Result<FeaturesFigures> {
    let table = args.dir.join(format!("features-w{workers}.csv"));
    let w = workers.to_string();
    let (_, run) = fraudflow(
        exe,
        &args.dir,
        &format!("features-w{workers}"),
        &[&"features", &"--input", &input, &"--out", &table, &"-w", &w],
        say,
    )?;
    // The table is as large as the input and nothing reads it.
    let _ = std::fs::remove_file(&table);
    Ok(FeaturesFigures::new(workers, events, run))
}

fn live_run(
    args: &Args,
    exe: &Path,
    models: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<fraudflow::bench::LiveFigures> {
    let out = args.dir.join("live");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let settings = LiveSettings {
        exe: exe.to_path_buf(),
        dataflow: args.dataflow.clone(),
        models: models.to_path_buf(),
        out,
        port: live::free_port()?,
        workers: args.live_workers,
        rate: args.rate,
        seconds: args.seconds,
        batch: args.batch,
    };
    say(&format!(
        "live: fraudflow run {} --listen 127.0.0.1:{} -w {}, {} events/s for {} s",
        args.dataflow.display(),
        settings.port,
        args.live_workers,
        args.rate,
        args.seconds
    ));
    Ok(live::measure(&settings)?)
}

/// fraudflow's `features` on the input at the peer's parallelism (the
/// peer's job is features, one logistic score and routing: closer to
/// `features` than to the whole backtest), then the peer.
fn peer_run(
    args: &Args,
    exe: &Path,
    input: &Path,
    backtest: &[BacktestFigures],
    say: &dyn Fn(&str),
) -> anyhow::Result<PeerComparison> {
    let p = args.peer_parallelism;
    let events = backtest.first().map_or(0, |b| b.events);
    let features = features_run(args, exe, input, p, events, say)?;
    let settings = PeerSettings {
        dir: absolute(&args.peer_dir)?,
        // A bare name (python3) is looked up on PATH; a path is made
        // absolute, as the script runs in another folder.
        python: if args.peer_python.components().count() > 1 {
            absolute(&args.peer_python)?
        } else {
            args.peer_python.clone()
        },
        parallelism: p,
        quiet_wait_s: args.quiet_wait,
    };
    say(&format!(
        "peer: {}/run_bench.sh {} flink {p} (PY={})",
        args.peer_dir.display(),
        input.display(),
        args.peer_python.display()
    ));
    let flink = peer::run_flink(&settings, &absolute(input)?, &absolute(&args.dir)?)?;
    let backtest = backtest.iter().find(|b| b.workers == p).cloned();
    Ok(PeerComparison::new(flink, features, backtest))
}

/// `path` made absolute: the peer's script runs in another folder.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
