//! `fraudflow train`: featurize with the dataflow, split by step, fit the
//! ensemble, choose its weights and threshold, write the bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use fraudflow::atomic::{make_dir, OutputPlan};
use fraudflow::bundle::{Bundle, SplitSummary};
use fraudflow::features::Contract;
use fraudflow::pipeline::training::train_bundle;
use fraudflow::pipeline::{Cluster, Stage};
use fraudflow::train::{TrainError, TrainParams};

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
    /// validation split to flag this share of it [default: 0.005].
    #[arg(long, allow_negative_numbers = true)]
    pub budget: Option<f64>,
    /// The split as LAST_TRAIN_STEP,LAST_VALIDATION_STEP (e.g. `6,7`: steps
    /// 1-6 train, 7 validates, 8 on test). Default: the first steps by which
    /// 70 % and 85 % of the rows are reached, moved earlier where needed so
    /// that validation and test each keep a step with events.
    #[arg(long, value_parser = parse_split)]
    pub split: Option<(u32, u32)>,
    /// Seed for every model's randomness [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Weight of a fraud example in the logistic loss, at most 1e6 (more
    /// carries the weights past what a bundle may hold); 0 balances the
    /// classes of the training split [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub positive_weight: Option<f64>,
    /// Trees in the isolation forest, 1 to 10000 [default: 100].
    #[arg(long)]
    pub trees: Option<usize>,
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
        let defaults = TrainParams::default();
        let budget = self.budget.unwrap_or(defaults.budget);
        if !(budget > 0.0 && budget <= 1.0) {
            anyhow::bail!("--budget must be in (0, 1], got {budget}");
        }
        let positive_weight = self.positive_weight.unwrap_or(1.0);
        let params = TrainParams {
            budget,
            seed: self.seed.unwrap_or(defaults.seed),
            split: self.split,
            trees: self.trees.unwrap_or(defaults.trees),
            positive_weight: (positive_weight != 0.0).then_some(positive_weight),
            ..defaults
        };
        // Every flag against its limit before any worker starts: the
        // library's error names the value and the limit, this the flag.
        params.check().map_err(|e| match &e {
            TrainError::Setting { setting, .. } => {
                let mut flag = format!("--{}", setting.replace('_', "-"));
                if *setting == "positive_weight" {
                    flag.push_str(" (or 0, to balance the classes)");
                }
                anyhow::Error::new(e).context(flag)
            }
            _ => anyhow::Error::new(e),
        })?;
        Ok(params)
    }

    /// The flags given that only training reads: a backtest with a bundle
    /// given (`--models`) does not train, so it refuses them rather than
    /// ignore them.
    pub fn training_only(&self) -> Vec<&'static str> {
        given(&[
            ("--budget", self.budget.is_some()),
            ("--split", self.split.is_some()),
            ("--seed", self.seed.is_some()),
            ("--positive-weight", self.positive_weight.is_some()),
            ("--trees", self.trees.is_some()),
        ])
    }
}

/// The flags among `flags` (name, whether given) that were given.
pub fn given(flags: &[(&'static str, bool)]) -> Vec<&'static str> {
    flags
        .iter()
        .filter_map(|&(flag, given)| given.then_some(flag))
        .collect()
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
    // The flags first: a refused one leaves no --out directory behind.
    let params = args.training.params()?;
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
    Ok(train_bundle(settings, &params, &args.out, say)?)
}

/// The steps the split chose, and what each part holds, on standard
/// output.
pub fn print_split(s: &SplitSummary) {
    outln!(
        "split: train steps ..={} ({} rows, {} fraud), validation steps {}..={} ({} rows, {} fraud), test steps {}.. ({} rows, {} fraud)",
        s.train_last_step,
        grouped(s.train_rows),
        s.train_fraud,
        s.train_last_step + 1,
        s.validation_last_step,
        grouped(s.validation_rows),
        s.validation_fraud,
        s.validation_last_step + 1,
        grouped(s.test_rows),
        s.test_fraud
    );
}

/// The split, the policy and the test-split metrics, one line a model, on
/// standard output.
pub fn print_metrics(bundle: &Bundle) {
    print_split(&bundle.split);
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
