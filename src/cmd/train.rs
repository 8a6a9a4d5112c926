//! `fraudflow train`: featurize with the dataflow, split by step, fit the
//! ensemble, choose its weights and threshold, write the bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use fraudflow::atomic::{make_dir, OutputPlan};
use fraudflow::bundle::Bundle;
use fraudflow::features::Contract;
use fraudflow::pipeline::training::train_bundle;
use fraudflow::pipeline::{Cluster, Stage};
use fraudflow::train::TrainParams;

use super::timely_args::TimelyArgs;
use super::{file_pipeline, grouped, on_cluster, SourceArgs};

/// Trains the ensemble on a PaySim file (or JSON events with labels):
/// features from the dataflow that serves, a chronological 70/15/15 split
/// by step, the three models, weights and threshold for the alert budget.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// The training data: a PaySim CSV file, or labelled JSON events.
    #[arg(long)]
    pub input: PathBuf,
    /// The models directory: `bundle.json`, `metrics/<model>.json` and
    /// `bundle.manifest.json` naming them, written together.
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
    /// Feature contract [default: v2].
    #[arg(long, value_enum)]
    pub contract: Option<Contract>,
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
    /// The contract given, or v2.
    pub fn contract(&self) -> Contract {
        self.contract.unwrap_or(Contract::V2)
    }

    /// Checked before any worker starts.
    pub fn params(&self) -> anyhow::Result<TrainParams> {
        if !(self.budget > 0.0 && self.budget <= 1.0) {
            anyhow::bail!("--budget must be in (0, 1], got {}", self.budget);
        }
        Ok(TrainParams {
            budget: self.budget,
            seed: self.seed,
            split: self.split,
            trees: self.trees,
            positive_weight: (self.positive_weight > 0.0).then_some(self.positive_weight),
            ..TrainParams::default()
        })
    }
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let cluster = args.timely.cluster()?;
    let bundle = on_cluster(&cluster, || train(&args, &cluster, quiet))?;
    if let Some(bundle) = bundle {
        print_metrics(&bundle);
    }
    Ok(ExitCode::SUCCESS)
}

fn train(args: &Args, cluster: &Cluster, quiet: bool) -> anyhow::Result<Option<Bundle>> {
    // The bundle's files are checked against the input before any work.
    make_dir("--out", &args.out)?;
    Bundle::outputs(
        &args.out,
        OutputPlan::default().input("--input", &args.input),
    )
    .check()?;
    let contract = args.training.contract();
    let settings = file_pipeline(&args.input, &args.source, contract, cluster, Stage::Rows)?;
    let say = |what: &str| {
        if !quiet {
            eprintln!("train: {what}");
        }
    };
    say(&format!(
        "featurizing {} ({}, {} workers)",
        args.input.display(),
        args.training.contract(),
        args.timely.workers()
    ));
    let params = args.training.params()?;
    Ok(train_bundle(settings, &params, &args.out, say)?)
}

/// The split, the policy and the test-split metrics, one line a model, on
/// standard output.
pub fn print_metrics(bundle: &Bundle) {
    let s = &bundle.split;
    outln!(
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
    outln!(
        "ensemble: weights IF {:.2} / AE {:.2} / LR {:.2}, threshold {:.6} for a {:.2} % budget",
        w.isolation_forest,
        w.autoencoder,
        w.logistic,
        bundle.policy.threshold,
        bundle.budget * 100.0
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    outln!(
        "{:<16} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "test split",
        "PR-AUC",
        "ROC-AUC",
        "P@thresh",
        "R@thresh",
        "P@budget",
        "R@budget"
    );
    for (model, m) in &bundle.metrics {
        outln!(
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
