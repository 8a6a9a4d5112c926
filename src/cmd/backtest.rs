//! `fraudflow backtest`: replay a PaySim file through the dataflow that
//! serves live traffic (source, features, score, route, sinks) and report
//! quality, latency and throughput.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use fraudflow::atomic::{make_dir, OutputFile, OutputGroup, OutputPlan};
use fraudflow::bundle::{fingerprint_file, Bundle};
use fraudflow::dataflow::score::{ModelVersion, Scorer};
use fraudflow::dataflow::sink::Text;
use fraudflow::ensemble::{check_threshold, Weights};
use fraudflow::eval::html::backtest::{self, PageTally};
use fraudflow::eval::kept::{Keep, KeptShare};
use fraudflow::eval::report::{Evaluation, ReportContext};
use fraudflow::eval::spill::{read_day, SpillDir};
use fraudflow::eval::versions::{check_switches, parse_switch, VersionSpec};
use fraudflow::generate::{write_file, GeneratorParams, STEPS};
use fraudflow::pipeline::training::train_bundle;
use fraudflow::pipeline::{
    Cluster, Outputs, PipelineSettings, RunSummary, ScoringSettings, Stage, StageOutputs,
    VersionFeed,
};
use fraudflow::serve::reload::PolicyChoice;
use fraudflow::settings::DataflowFile;
use fraudflow::sinks::file::{Header, JsonLinesSink, TextFile};
use fraudflow::sinks::BoxSink;

use super::feedback_args::FeedbackArgs;
use super::kept_metrics::{metrics_file, KeptMetrics};
use super::threshold_args::ThresholdArgs;
use super::timely_args::TimelyArgs;
use super::train::{given, TrainingArgs};
use super::{grouped, on_cluster, SourceArgs};

/// Rows of the Kaggle PaySim file: the default generated input.
const PAYSIM_ROWS: u64 = 6_362_620;

/// The files of a backtest in --out; `scores.csv` only with --scores.
const ALERTS: &str = "alerts.jsonl";
const DEAD_LETTERS: &str = "dead_letters.jsonl";
const REPORT: &str = "report.json";
const SCORES: &str = "scores.csv";
/// Names the files of the last complete run, written after them.
const MANIFEST: &str = "backtest.manifest.json";

/// Replays a file through the live dataflow with a model bundle: writes
/// alerts.jsonl and report.json into --out and prints a summary. With no
/// --models it trains on the input first; with no --input it generates a
/// PaySim-sized file.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// PaySim CSV (or JSON events) to replay; default: a generated file of
    /// --rows rows, written into --out.
    #[arg(long)]
    input: Option<PathBuf>,
    /// A models directory (or bundle.json) from `fraudflow train`; default:
    /// train on the input first, into OUT/models.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Where alerts.jsonl, report.json and dead_letters.jsonl go, together
    /// with backtest.manifest.json naming them [default: out/backtest].
    #[arg(long)]
    out: Option<PathBuf>,
    /// A dataflow file (e.g. dataflows/backtest.toml) for the input, models,
    /// output, features and workers; flags given override it.
    #[arg(long)]
    dataflow: Option<PathBuf>,
    /// Also write scores.csv: every event's id, label and scores.
    #[arg(long)]
    scores: bool,
    /// Rows to generate when no --input is given [default: 6362620].
    #[arg(long)]
    rows: Option<u64>,
    /// Seed of the generated input [default: 1].
    #[arg(long)]
    generate_seed: Option<u64>,
    /// Score with the original weights 0.4/0.3/0.3 (IF/AE/LR) and the
    /// threshold training chose for them at the same budget.
    #[arg(long, conflicts_with = "weights")]
    parity: bool,
    /// Override the weights: IF,AE,LR.
    #[arg(long)]
    weights: Option<Weights>,
    /// Override the threshold: a number in [0, 1], the range of the
    /// ensemble score.
    #[arg(long, value_parser = parse_threshold, allow_negative_numbers = true)]
    threshold: Option<f64>,
    /// From step STEP on (event hour STEP), score with the bundle in DIR:
    /// `STEP=DIR`, repeatable, one bundle a step. Events before keep the
    /// version before.
    #[arg(long = "switch-models", value_name = "STEP=DIR", value_parser = parse_switch)]
    switches: Vec<(u32, PathBuf)>,
    /// Keep the run's Prometheus metrics (those `fraudflow run` serves on
    /// `GET /metrics`) and write them to FILE at the end, in the text
    /// format; process P of several writes FILE.pP. Off by default; see
    /// docs/operations.md for what they cost.
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE (no network needed
    /// to open it): key figures and plots of quality, latency and
    /// throughput; see docs/report.md. Named in backtest.manifest.json.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    #[command(flatten)]
    training: TrainingArgs,
    #[command(flatten)]
    feedback: FeedbackArgs,
    #[command(flatten)]
    adaptive: ThresholdArgs,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    timely: TimelyArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    let t = s
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{s:?} is not a number"))?;
    check_threshold(t).map_err(|e| e.to_string())
}

/// Where a generated input goes.
fn generated_path(args: &Args) -> PathBuf {
    let (rows, seed) = generated_rows(args);
    args.out()
        .join(format!("paysim-generated-{rows}-seed{seed}.csv"))
}

/// The rows and seed of a generated input.
fn generated_rows(args: &Args) -> (u64, u64) {
    (
        args.rows.unwrap_or(PAYSIM_ROWS),
        args.generate_seed.unwrap_or(1),
    )
}

/// The input file: the one given, or a generated one written into --out.
fn input_file(args: &Args, quiet: bool) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.input {
        return Ok(path.clone());
    }
    let (rows, seed) = generated_rows(args);
    let path = generated_path(args);
    if !quiet {
        eprintln!(
            "backtest: generating {} rows into {}",
            grouped(rows),
            path.display()
        );
    }
    let mut params = GeneratorParams::new(rows, seed);
    params.steps = STEPS;
    let bar = fraudflow::progress::bar(rows, "rows", quiet);
    write_file(params.check()?, &path, &bar)?;
    bar.finish_and_clear();
    Ok(path)
}

/// The bundle given, or one trained on the input first (into OUT/models),
/// and the input's hash.
fn bundle_for(
    args: &Args,
    settings: &PipelineSettings,
    input: &Path,
    quiet: bool,
) -> anyhow::Result<(Bundle, String)> {
    if let Some(dir) = &args.models {
        let bundle = Bundle::load(dir, Some(args.training.contract()))?;
        return Ok((bundle, fingerprint_file(input, 0)?.hash));
    }
    if settings.cluster.processes() > 1 {
        anyhow::bail!(
            "with several processes, give --models: every process must load the same bundle"
        );
    }
    let say = |what: &str| {
        if !quiet {
            eprintln!("train: {what}");
        }
    };
    let params = args.training.params()?;
    let bundle = train_bundle(settings.clone(), &params, &args.out().join("models"), say)?
        .context("training returned no bundle")?;
    // The split was chosen from the data: say which steps it took.
    super::train::print_split(&bundle.split);
    let hash = bundle.fingerprint.hash.clone();
    Ok((bundle, hash))
}

/// The scorer of a bundle under the flags' policy.
fn scorer(args: &Args, bundle: &Bundle) -> (Scorer, &'static str) {
    let choice = PolicyChoice {
        parity: args.parity,
        weights: args.weights,
        threshold: args.threshold,
    };
    (choice.scorer(bundle), choice.source())
}

/// What the workers kept for the report, and the files written after the
/// run (opened before it, in the run's group).
struct Gathered {
    kept: KeptShare,
    report: OutputFile,
    html: Option<OutputFile>,
    /// Where this process's workers keep their records.
    spill: Arc<SpillDir>,
}

/// The run's outputs, checked against its inputs and each other before
/// any work, and the group that commits them together.
fn output_group(args: &Args) -> anyhow::Result<OutputGroup> {
    let out = args.out();
    make_dir("--out", out)?;
    let mut plan = match &args.input {
        Some(input) => OutputPlan::default().input("--input", input),
        None => OutputPlan::default().output("the generated input", generated_path(args)),
    };
    plan = match &args.models {
        Some(models) => plan.input("--models", Bundle::file_in(models)),
        None => Bundle::outputs(&out.join("models"), plan),
    };
    for (_, dir) in &args.switches {
        plan = plan.input("--switch-models", Bundle::file_in(dir));
    }
    if let Some(dataflow) = &args.dataflow {
        plan = plan.input("--dataflow", dataflow);
    }
    let scores = args.scores.then_some(SCORES);
    for name in [ALERTS, DEAD_LETTERS, REPORT, MANIFEST]
        .into_iter()
        .chain(scores)
    {
        plan = plan.output("backtest output", out.join(name));
    }
    if let Some(html) = &args.html {
        plan = plan.output("--html", html);
    }
    if let Some(metrics) = &args.metrics {
        plan = plan.output("--metrics", metrics_file(metrics, args.timely.process));
    }
    // Emptied at the start and removed at the end: see `keeping`.
    let records = spill_dir(args, args.timely.process);
    plan = plan.scratch_dir("a backtest, for its evaluation records,", records);
    plan.check()?;
    Ok(OutputGroup::new()
        .with_manifest(out.join(MANIFEST))
        .sometimes(out.join(SCORES)))
}

/// The run's files, and where its workers merge what they keep of every
/// event. `frozen`: scores.csv has the frozen models' column.
fn outputs(
    args: &Args,
    group: &OutputGroup,
    frozen: bool,
    spill: Arc<SpillDir>,
) -> anyhow::Result<(Outputs, Gathered)> {
    let out = args.out();
    let alerts = TextFile::create(group, &out.join(ALERTS), Header::default())?;
    let scores: Option<BoxSink<Text>> = match args.scores {
        true => Some(Box::new(TextFile::scores(
            group,
            &out.join(SCORES),
            frozen,
        )?)),
        false => None,
    };
    let dead = JsonLinesSink::create(group, &out.join(DEAD_LETTERS), |d| Some(d))?;
    let kept = KeptShare::default();
    let outputs = Outputs {
        dead_letters: Box::new(dead),
        stage: StageOutputs::Evaluated {
            alerts: Box::new(alerts),
            scores,
            kept: kept.clone(),
        },
    };
    let report = group.create(&out.join(REPORT))?;
    let html = args
        .html
        .as_ref()
        .map(|path| group.create(path))
        .transpose()?;
    let gathered = Gathered {
        kept,
        report,
        html,
        spill,
    };
    Ok((outputs, gathered))
}

impl Args {
    fn out(&self) -> &Path {
        self.out.as_deref().unwrap_or(Path::new("out/backtest"))
    }

    /// These flags, with what they leave unset taken from --dataflow.
    fn with_dataflow(mut self) -> anyhow::Result<Args> {
        let Some(path) = &self.dataflow else {
            return Ok(self);
        };
        let file = DataflowFile::load(path)?;
        let Some(source) = &file.source.file else {
            anyhow::bail!("{}: a backtest reads [source.file]", path.display());
        };
        self.input = self.input.or(Some(source.path.clone()));
        self.models = self.models.or(Some(file.models.dir.clone()));
        self.out = self.out.or(file.sinks.dir.clone());
        self.training.contract = self.training.contract.or(Some(file.features.contract));
        self.source = self.source.or_file(source, &file.features);
        self.timely.workers = self.timely.workers.or(Some(file.cluster.workers));
        if let Some(t) = file.models.threshold {
            check_threshold(t).with_context(|| format!("{}: models.threshold", path.display()))?;
        }
        self.threshold = self.threshold.or(file.models.threshold);
        self.parity |= file.models.parity;
        Ok(self)
    }
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let args = args.with_dataflow()?;
    let cluster = args.timely.cluster()?;
    on_cluster(&cluster, || backtest(&args, cluster.clone(), quiet))
}

/// Refuses flags that this combination would silently ignore, and bad
/// values, before any work starts.
fn check_flags(args: &Args) -> anyhow::Result<()> {
    check_switches(&args.switches).context("--switch-models")?;
    if args.models.is_none() {
        // Training flags past their limits are refused before a file is
        // generated or read.
        args.training.params()?;
    }
    if let Some(models) = &args.models {
        let ignored = args.training.training_only();
        let budget = if ignored.contains(&"--budget") {
            ", or move its threshold with --threshold"
        } else {
            ""
        };
        refuse(
            &ignored,
            &format!(
                "backtest trains, but the bundle in {} is given (--models): it was trained with \
                 its own; train another with `fraudflow train`{budget}",
                models.display()
            ),
        )?;
    }
    if args.input.is_some() {
        let generator = [
            ("--rows", args.rows.is_some()),
            ("--generate-seed", args.generate_seed.is_some()),
        ];
        refuse(
            &given(&generator),
            "backtest generates its input, but --input is given",
        )?;
    }
    Ok(())
}

/// Refuses `flags` (those given that a combination ignores), if any:
/// "FLAGS apply only when WHEN".
fn refuse(flags: &[&str], when: &str) -> anyhow::Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    let verb = if flags.len() == 1 { "applies" } else { "apply" };
    anyhow::bail!("{} {verb} only when {when}", flags.join(", "))
}

fn backtest(args: &Args, cluster: Cluster, quiet: bool) -> anyhow::Result<ExitCode> {
    check_flags(args)?;
    let group = output_group(args)?;
    let input_path = input_file(args, quiet)?;
    // A loaded bundle must have been made for this contract, so the input is
    // read with the training contract either way.
    let mut settings = PipelineSettings {
        cluster,
        source: args.source.source(&input_path)?,
        features: args.source.features(args.training.contract())?,
        stage: Stage::Rows,
    };
    let (bundle, input_hash) = bundle_for(args, &settings, &input_path, quiet)?;
    let (specs, versions) = versions(args, &bundle)?;
    let (initial, policy_source) = scorer(args, &bundle);
    let keeping = keeping(args, settings.cluster.process)?;
    let spill = Arc::clone(&keeping.1);
    let (stage, frozen) = stage(args, keeping, initial, versions, bundle.budget)?;
    settings.stage = stage;
    if !quiet {
        eprintln!(
            "backtest: replaying {} with bundle {} ({}) on {} workers",
            input_path.display(),
            bundle.version,
            bundle.contract,
            args.timely.workers()
        );
    }
    let opened = if settings.cluster.owns_outputs() {
        Some(outputs(args, &group, frozen, spill)?)
    } else {
        None
    };
    let (outputs, gathered) = opened.unzip();
    let summary = KeptMetrics::run(args.metrics.as_deref(), settings, outputs)?;
    let Some(gathered) = gathered else {
        // Worker 0 lives in process 0: the others have nothing to report.
        if !quiet {
            eprintln!("{} events read by this process", grouped(summary.events_in));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let context = ReportContext {
        versions: &specs,
        policy_source,
        input: &input_path,
        input_hash: &input_hash,
        test_after: (input_hash == bundle.fingerprint.hash)
            .then_some(bundle.split.validation_last_step),
        workers: args.timely.workers() * args.timely.processes,
        feedback: args.feedback.feedback,
        adaptive: args.adaptive.adaptive_threshold,
        drift_at: args.feedback.drift_at,
    };
    report(args, (group, gathered), &summary, &bundle, context)?;
    Ok(ExitCode::SUCCESS)
}

/// What the workers keep of each event besides its record, and where
/// this process keeps the records until the report (see
/// `fraudflow::eval::spill`).
fn keeping(args: &Args, process: usize) -> anyhow::Result<(Keep, Arc<SpillDir>)> {
    let keep = Keep {
        page: args.html.is_some(),
    };
    let spill = SpillDir::create(&spill_dir(args, process))?;
    if spill.leftover() > 0 {
        eprintln!(
            "backtest: emptied {}, which a run that was stopped left behind ({} entries)",
            spill.path().display(),
            spill.leftover()
        );
    }
    Ok((keep, Arc::new(spill)))
}

/// Where process `process` keeps its records until the report.
fn spill_dir(args: &Args, process: usize) -> PathBuf {
    args.out().join(format!(".evaluation-p{process}"))
}

/// The stage a backtest ends in, keeping `keep` of each event (the
/// page's per-model curves need every event's components), and whether scores.csv has the frozen
/// models' column (a feedback loop comparing against them).
fn stage(
    args: &Args,
    (keep, spill): (Keep, Arc<SpillDir>),
    initial: Scorer,
    versions: Vec<ModelVersion>,
    budget: f64,
) -> anyhow::Result<(Stage, bool)> {
    let feedback = args.feedback.settings()?;
    let frozen = feedback.as_ref().is_some_and(|f| f.compare_frozen);
    let stage = Stage::Evaluated {
        scoring: ScoringSettings {
            initial: Arc::new(initial),
            versions: VersionFeed::Fixed(versions),
            feedback: feedback.map(Box::new),
            labels: None,
            in_force: None,
            threshold: args.adaptive.settings(budget),
        },
        keep,
        scores: args.scores,
        spill,
    };
    Ok((stage, frozen))
}

/// Every version that scores, in step order, the bundle given first (from
/// step 0), and the switches' scorers for the dataflow.
fn versions(args: &Args, bundle: &Bundle) -> anyhow::Result<(Vec<VersionSpec>, Vec<ModelVersion>)> {
    let spec = |bundle: &Bundle, models: String, from_step: u32, scorer: &Scorer| VersionSpec {
        bundle_version: bundle.version.clone(),
        models,
        from_step,
        policy: scorer.policy,
    };
    let given = args
        .models
        .as_ref()
        .map_or_else(|| args.out().join("models"), PathBuf::clone);
    let mut specs = vec![spec(
        bundle,
        given.display().to_string(),
        0,
        &scorer(args, bundle).0,
    )];
    let mut switches: Vec<&(u32, PathBuf)> = args.switches.iter().collect();
    switches.sort_by_key(|(step, _)| *step);
    let mut versions = Vec::new();
    for (step, dir) in switches {
        let other = Bundle::load(dir, Some(bundle.contract))?;
        let scorer = scorer(args, &other).0;
        specs.push(spec(&other, dir.display().to_string(), *step, &scorer));
        versions.push(ModelVersion {
            from: u64::from(*step) * fraudflow::event::STEP_MS,
            scorer,
        });
    }
    Ok((specs, versions))
}

/// Writes report.json (and the HTML page) from what the workers kept,
/// reading their records back one day at a time, commits the run's files
/// together and prints the summary. The counts of events read are every
/// process's, from what each kept.
fn report(
    args: &Args,
    (group, gathered): (OutputGroup, Gathered),
    summary: &RunSummary,
    bundle: &Bundle,
    context: ReportContext,
) -> anyhow::Result<()> {
    let spill = &gathered.spill;
    let kept = gathered.kept.take();
    let summary = RunSummary {
        events_in: kept.events_in,
        late: kept.late,
        normal_written: kept.normal,
        ..summary.clone()
    };
    let mut evaluation = Evaluation::new(context, bundle.budget, spill.path());
    let mut page = gathered
        .html
        .is_some()
        .then(|| PageTally::new(spill.path(), kept.span_us));
    for files in spill.days()?.values() {
        let day = read_day(files)?;
        evaluation.add_day(&day)?;
        if let Some(page) = page.as_mut() {
            day.iter().try_for_each(|r| page.add(r))?;
        }
    }
    let (report, latency) = evaluation.report(&summary, bundle)?;
    super::backtest_summary::write_report(gathered.report, &report)?;
    if let (Some(file), Some(page)) = (gathered.html, page) {
        let (scores, throughput) = page.finish()?;
        let html = backtest::Gathered {
            scores,
            throughput,
            latency,
            reasons: kept.reasons,
        };
        super::backtest_summary::write_html(file, html, &report)?;
    }
    // Every file is complete: they take their names together.
    group.commit()?;
    super::backtest_summary::print_report(&report, args.out());
    if let Some(path) = &args.html {
        outln!("wrote the HTML report {}", path.display());
    }
    Ok(())
}
