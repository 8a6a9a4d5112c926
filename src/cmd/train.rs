//! `fraudflow train`: featurize with the dataflow, split by step, fit the
//! ensemble, choose its weights and threshold, write the bundle.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use anyhow::anyhow;
use fraudflow::bundle::{fingerprint_file, Bundle, BUNDLE_FORMAT};
use fraudflow::dataflow::sink::OrderedSink;
use fraudflow::dataflow::source::SourceCounts;
use fraudflow::dataflow::{file_features, FeatureInput, FeatureRow};
use fraudflow::features::Contract;
use fraudflow::train::{train, Table, TrainParams};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use super::timely_args::TimelyArgs;
use super::{grouped, SourceArgs};

/// Trains the ensemble on a PaySim file (or JSON events with labels):
/// features from the dataflow that serves, a chronological 70/15/15 split
/// by step, the three models, weights and threshold for the alert budget.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// The training data: a PaySim CSV file, or labelled JSON events.
    #[arg(long)]
    pub input: PathBuf,
    /// The models directory: `bundle.json` and `metrics/<model>.json`.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    #[command(flatten)]
    pub training: TrainingArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub timely: TimelyArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// What `train` and `backtest` (when it trains first) may be told.
#[derive(clap::Args, Clone, Debug)]
pub struct TrainingArgs {
    /// Feature contract.
    #[arg(long, value_enum, default_value_t = Contract::V2)]
    pub contract: Contract,
    /// Share of traffic to alert on: the threshold is chosen on the
    /// validation split to flag this share of it.
    #[arg(long, default_value_t = TrainParams::default().budget)]
    pub budget: f64,
    /// The split as LAST_TRAIN_STEP,LAST_VALIDATION_STEP (e.g. `6,7`: steps
    /// 1-6 train, 7 validates, 8 on test). Default: the steps holding 70 %
    /// and 85 % of the rows.
    #[arg(long, value_parser = parse_split)]
    pub split: Option<(u32, u32)>,
    /// Seed for every model's randomness.
    #[arg(long, default_value_t = TrainParams::default().seed)]
    pub seed: u64,
    /// Weight of a fraud example in the logistic loss; 0 balances the
    /// classes of the training split.
    #[arg(long, default_value_t = 1.0)]
    pub positive_weight: f64,
    /// Trees in the isolation forest.
    #[arg(long, default_value_t = TrainParams::default().trees)]
    pub trees: usize,
}

fn parse_split(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("expected LAST_TRAIN_STEP,LAST_VALIDATION_STEP, got {s:?}"))?;
    let step = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{v:?} in --split {s:?} is not a step number"))
    };
    Ok((step(a)?, step(b)?))
}

impl TrainingArgs {
    fn params(&self) -> TrainParams {
        TrainParams {
            budget: self.budget,
            seed: self.seed,
            split: self.split,
            trees: self.trees,
            positive_weight: (self.positive_weight > 0.0).then_some(self.positive_weight),
            ..TrainParams::default()
        }
    }
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let input = args.source.input(&args.input, args.training.contract)?;
    let bundle = train_bundle(input, &args.training, &args.timely, &args.out, quiet)?;
    print_metrics(&bundle);
    Ok(ExitCode::SUCCESS)
}

/// Trains and writes the bundle into `out`, saying what it does on stderr.
pub fn train_bundle(
    input: FeatureInput,
    training: &TrainingArgs,
    timely: &TimelyArgs,
    out: &Path,
    quiet: bool,
) -> anyhow::Result<Bundle> {
    let say = |what: &str| {
        if !quiet {
            eprintln!("train: {what}");
        }
    };
    let started = Instant::now();
    say(&format!(
        "featurizing {} ({}, {} workers)",
        input.path.display(),
        input.contract,
        timely.workers
    ));
    let path = input.path.clone();
    let (table, events_in, dead) = feature_table(input, timely)?;
    say(&format!(
        "{} events: {} labelled rows, {} dead letters, {:.1} s",
        grouped(events_in),
        grouped(table.len() as u64),
        grouped(dead),
        started.elapsed().as_secs_f64()
    ));
    let fingerprint = fingerprint_file(&path, table.len() as u64)?;
    let trained = train(&table, &training.params(), |stage| {
        say(&format!("fitting: {stage}"))
    })?;
    let contract = table.contract;
    let now = fraudflow::clock::now_rfc3339();
    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        version: format!("{}-{}", now.replace([':', '-'], ""), &fingerprint.hash[..8]),
        created_at: now,
        contract,
        features: contract.names().iter().map(|s| s.to_string()).collect(),
        fingerprint,
        split: trained.split,
        budget: training.budget,
        policy: trained.policy,
        parity: trained.parity,
        models: trained.models,
        metrics: trained.metrics,
        training_seconds: started.elapsed().as_secs_f64(),
    };
    let written = bundle.save(out)?;
    say(&format!(
        "wrote {} (version {}) in {:.1} s",
        written.display(),
        bundle.version,
        bundle.training_seconds
    ));
    Ok(bundle)
}

/// Runs the featurizing dataflow and gathers its rows, in time order, on
/// worker 0: returns them with the events read and the dead letters.
fn feature_table(input: FeatureInput, timely: &TimelyArgs) -> anyhow::Result<(Table, u64, u64)> {
    let config = timely.config()?;
    let guards = timely::execute(config, move |worker| {
        let counts = Rc::new(SourceCounts::default());
        let table = Rc::new(RefCell::new(Ok(Table::new(input.contract))));
        let done = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let (rows, _dead) = file_features(scope, &input, Rc::clone(&counts), done.clone());
            let sink = Rc::clone(&table);
            rows.probe_with(&done).ordered_sink(
                |r: &FeatureRow| r.seq,
                move |rows| {
                    let mut table = sink.borrow_mut();
                    if let Ok(t) = table.as_mut() {
                        if let Err(e) = rows.iter().try_for_each(|r| t.push(r)) {
                            *table = Err(e);
                        }
                    }
                },
                "TrainingRows",
            );
        });
        while worker.step_or_park(None) {}
        let table = table.replace(Ok(Table::new(input.contract)));
        (
            (worker.index() == 0).then_some(table),
            counts.events_in.get(),
            counts.dead.get(),
        )
    })
    .map_err(|e| anyhow!("starting the workers: {e}"))?;
    let (mut table, mut events_in, mut dead) = (None, 0, 0);
    for result in guards.join() {
        let (t, e, d) = result.map_err(|e| anyhow!("a worker failed: {e}"))?;
        events_in += e;
        dead += d;
        if let Some(t) = t {
            table = Some(t?);
        }
    }
    let table = table.ok_or_else(|| anyhow!("worker 0 returned no table"))?;
    Ok((table, events_in, dead))
}

/// The split, the policy and the test-split metrics, one line a model, on
/// standard output.
pub fn print_metrics(bundle: &Bundle) {
    let s = &bundle.split;
    println!(
        "split: train steps ..={} ({} rows, {} fraud), validation ..={} ({} rows, {} fraud), test ({} rows, {} fraud)",
        s.train_last_step,
        grouped(s.train_rows),
        s.train_fraud,
        s.validation_last_step,
        grouped(s.validation_rows),
        s.validation_fraud,
        grouped(s.test_rows),
        s.test_fraud
    );
    let w = bundle.policy.weights;
    println!(
        "ensemble: weights IF {:.2} / AE {:.2} / LR {:.2}, threshold {:.6} for a {:.2} % budget",
        w.isolation_forest,
        w.autoencoder,
        w.logistic,
        bundle.policy.threshold,
        bundle.budget * 100.0
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    println!(
        "{:<16} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "test split", "PR-AUC", "ROC-AUC", "P@thresh", "R@thresh", "P@budget", "R@budget"
    );
    for (model, m) in &bundle.metrics {
        println!(
            "{:<16} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10}",
            model,
            opt(m.pr_auc),
            opt(m.roc_auc),
            opt(m.at_threshold.precision),
            opt(m.at_threshold.recall),
            opt(m.at_budget.and_then(|b| b.precision)),
            opt(m.at_budget.and_then(|b| b.recall)),
        );
    }
}
