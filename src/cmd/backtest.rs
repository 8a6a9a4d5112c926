//! `fraudflow backtest`: replay a PaySim file through the dataflow that
//! serves live traffic (source, features, score, route, sinks) and report
//! quality, latency and throughput.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use fraudflow::atomic::{AtomicFile, JsonLines};
use fraudflow::bundle::{fingerprint_file, Bundle};
use fraudflow::dataflow::dead_letter::DeadLetter;
use fraudflow::dataflow::file_features;
use fraudflow::dataflow::score::{score_and_route, Outcome, Scorer};
use fraudflow::dataflow::sink::{on_owner, OrderedSink};
use fraudflow::dataflow::source::SourceCounts;
use fraudflow::ensemble::{Policy, Weights};
use fraudflow::generate::{GeneratorParams, STEPS};
use fraudflow::metrics::{at_budget, at_threshold, average_precision, roc_auc, AtThreshold};
use serde::Serialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use super::timely_args::TimelyArgs;
use super::train::{train_bundle, TrainingArgs};
use super::{grouped, SourceArgs};

/// Rows of the Kaggle PaySim file: the default generated input.
const PAYSIM_ROWS: u64 = 6_362_620;

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
    /// Where alerts.jsonl, report.json and dead_letters.jsonl go.
    #[arg(long, default_value = "out/backtest")]
    out: PathBuf,
    /// Also write scores.csv: every event's id, label and scores.
    #[arg(long)]
    scores: bool,
    /// Rows to generate when no --input is given.
    #[arg(long, default_value_t = PAYSIM_ROWS)]
    rows: u64,
    /// Seed of the generated input.
    #[arg(long, default_value_t = 1)]
    generate_seed: u64,
    /// Score with the original weights 0.4/0.3/0.3 (IF/AE/LR) and the
    /// threshold training chose for them at the same budget.
    #[arg(long, conflicts_with = "weights")]
    parity: bool,
    /// Override the weights: IF,AE,LR.
    #[arg(long)]
    weights: Option<Weights>,
    /// Override the threshold.
    #[arg(long)]
    threshold: Option<f64>,
    #[command(flatten)]
    training: TrainingArgs,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    timely: TimelyArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// What the evaluation keeps of each event: small, since every event's
/// record travels to worker 0.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    seq: u64,
    step: u32,
    score: f64,
    is_fraud: Option<bool>,
    amount: f64,
    latency_us: u64,
}

/// Worker 0's view of the run: every event's record, the outputs.
struct Collector {
    records: Vec<Record>,
    normal: u64,
    alerts_file: JsonLines,
    dead_file: JsonLines,
    /// With --scores, every outcome, to write in input order at the end.
    outcomes: Option<Vec<Outcome>>,
}

impl Collector {
    /// `expected` events: reserved up front, since growing a vector of
    /// millions of records copies it again and again (address space costs
    /// nothing until it is touched).
    fn create(out: &Path, scores: bool, expected: usize) -> Result<Collector, String> {
        Ok(Collector {
            records: Vec::with_capacity(expected),
            normal: 0,
            alerts_file: JsonLines::create(&out.join("alerts.jsonl"))?,
            dead_file: JsonLines::create(&out.join("dead_letters.jsonl"))?,
            outcomes: scores.then(Vec::new),
        })
    }

    fn keep(&mut self, outcomes: &[Outcome]) {
        self.records.extend(outcomes.iter().map(Record::of));
        if let Some(all) = self.outcomes.as_mut() {
            all.extend_from_slice(outcomes);
        }
    }

    fn anomalies(&mut self, outcomes: &mut [Outcome]) {
        self.keep(outcomes);
        for alert in outcomes.iter().filter_map(|o| o.alert.as_ref()) {
            self.alerts_file.push(alert);
        }
    }

    fn normal(&mut self, outcomes: &mut [Outcome]) {
        self.keep(outcomes);
        self.normal += outcomes.len() as u64;
    }

    /// Normal traffic when no scores file is asked for: its records only.
    fn normal_records(&mut self, records: &mut [Record]) {
        self.records.extend_from_slice(records);
        self.normal += records.len() as u64;
    }

    fn dead(&mut self, letters: &mut [Box<DeadLetter>]) {
        letters.iter().for_each(|d| self.dead_file.push(d));
    }

    /// Commits the files; returns the records and counts.
    fn finish(self, out: &Path) -> Result<Collected, String> {
        let alerts = self.alerts_file.commit()?;
        let dead = self.dead_file.commit()?;
        if let Some(mut all) = self.outcomes {
            all.sort_by_key(|o| o.seq);
            write_scores(&out.join("scores.csv"), &all).map_err(|e| format!("scores.csv: {e}"))?;
        }
        Ok(Collected {
            records: self.records,
            alerts,
            normal: self.normal,
            dead,
        })
    }
}

impl Record {
    fn of(o: &Outcome) -> Record {
        Record {
            seq: o.seq,
            step: o.step.unwrap_or(0),
            score: o.score,
            is_fraud: o.is_fraud,
            amount: o.amount,
            latency_us: o.latency_us,
        }
    }
}

struct Collected {
    records: Vec<Record>,
    alerts: u64,
    normal: u64,
    dead: u64,
}

fn write_scores(path: &Path, all: &[Outcome]) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    let w = file.writer();
    w.write_all(b"event_id,is_fraud,isolation_forest,autoencoder,logistic,score,alert\n")?;
    for o in all {
        let label = match o.is_fraud {
            Some(true) => "1",
            Some(false) => "0",
            None => "",
        };
        let c = o.components;
        writeln!(
            w,
            "{},{label},{},{},{},{},{}",
            o.id,
            c.isolation_forest,
            c.autoencoder,
            c.logistic,
            o.score,
            u8::from(o.alert.is_some())
        )?;
    }
    file.commit()
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    if let Some(t) = args.threshold.filter(|t| !t.is_finite()) {
        anyhow::bail!("--threshold must be a finite number, got {t}");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let say = |what: String| {
        if !quiet {
            eprintln!("backtest: {what}");
        }
    };
    let input_path = match &args.input {
        Some(path) => path.clone(),
        None => {
            let path = args.out.join(format!(
                "paysim-generated-{}-seed{}.csv",
                args.rows, args.generate_seed
            ));
            say(format!(
                "generating {} rows into {}",
                grouped(args.rows),
                path.display()
            ));
            let mut params = GeneratorParams::new(args.rows, args.generate_seed);
            params.steps = STEPS;
            let bar = fraudflow::progress::bar(args.rows, "rows", quiet);
            super::generate::write_file(params.check()?, &path, &bar)?;
            bar.finish_and_clear();
            path
        }
    };
    // A loaded bundle must have been made for this contract, so the input is
    // read with the training contract either way.
    let input = args.source.input(&input_path, args.training.contract)?;
    // The test split means something only on the file the models learned
    // from: the same hash.
    let (bundle, input_hash) = match &args.models {
        Some(dir) => (
            Bundle::load(dir, Some(args.training.contract))?,
            fingerprint_file(&input_path, 0)?.hash,
        ),
        None => {
            let dir = args.out.join("models");
            let bundle = train_bundle(input.clone(), &args.training, &args.timely, &dir, quiet)?;
            let hash = bundle.fingerprint.hash.clone();
            (bundle, hash)
        }
    };
    let contract = bundle.contract;
    let same_file = input_hash == bundle.fingerprint.hash;
    let (policy, policy_source) = choose_policy(&args, &bundle);
    let scorer = Arc::new(Scorer {
        models: bundle.models.clone(),
        policy,
        contract,
        model_version: bundle.version.clone(),
    });

    say(format!(
        "replaying {} with bundle {} ({contract}) on {} workers",
        input_path.display(),
        bundle.version,
        args.timely.workers
    ));
    let config = args.timely.config()?;
    let (out, scores) = (args.out.clone(), args.scores);
    // A PaySim row takes 70 to 90 bytes: this over-reserves a little.
    let expected = (std::fs::metadata(&input_path)?.len() / 60) as usize;
    let started = Instant::now();
    let guards = timely::execute(config, move |worker| {
        let counts = Rc::new(SourceCounts::default());
        let collector = if worker.index() == 0 {
            Some(Collector::create(&out, scores, expected)?)
        } else {
            None
        };
        let collector = Rc::new(RefCell::new(collector));
        let done = ProbeHandle::new();
        let scorer = Arc::clone(&scorer);
        worker.dataflow::<u64, _, _>(|scope| {
            let (rows, dead) = file_features(scope, &input, Rc::clone(&counts), done.clone());
            let (anomalies, normal) = score_and_route(rows, scorer);
            anomalies.probe_with(&done).ordered_sink(
                |o: &Outcome| o.seq,
                on_owner(&collector, Collector::anomalies),
                "AnomalySink",
            );
            if scores {
                normal.probe_with(&done).ordered_sink(
                    |o: &Outcome| o.seq,
                    on_owner(&collector, Collector::normal),
                    "NormalSink",
                );
            } else {
                // Only counts and records: no order needed until the report,
                // which sorts them.
                let mut write = on_owner(&collector, Collector::normal_records);
                normal.map(|o| Record::of(&o)).probe_with(&done).sink(
                    Exchange::new(|_: &Record| 0),
                    "NormalSink",
                    move |(input, _)| input.for_each(|_, records| write(records)),
                );
            }
            #[allow(clippy::borrowed_box)] // the stream's records are boxes
            dead.ordered_sink(
                |d: &Box<DeadLetter>| d.as_ref().seq,
                on_owner(&collector, Collector::dead),
                "DeadLetterSink",
            );
        });
        while worker.step_or_park(None) {}
        let collected = match collector.borrow_mut().take() {
            Some(c) => Some(c.finish(&out)?),
            None => None,
        };
        Ok::<_, String>((collected, counts.events_in.get(), counts.late.get()))
    })
    .map_err(|e| anyhow!("starting the workers: {e}"))?;
    let (mut collected, mut read, mut late) = (None, 0, 0);
    for result in guards.join() {
        let (c, r, l) = result
            .map_err(|e| anyhow!("a worker failed: {e}"))?
            .map_err(|e| anyhow!("a worker failed: {e}"))?;
        read += r;
        late += l;
        collected = collected.or(c);
    }
    let seconds = started.elapsed().as_secs_f64();
    let Some(mut collected) = collected else {
        // Worker 0 lives in process 0: the others have nothing to report.
        say(format!("{} events read by this process", grouped(read)));
        return Ok(ExitCode::SUCCESS);
    };
    // Input order: sums over the records come out the same for any number
    // of workers.
    collected.records.sort_unstable_by_key(|r| r.seq);
    let test_after = same_file.then_some(bundle.split.validation_last_step);
    let report = Report::new(
        &collected,
        &bundle,
        &policy,
        policy_source,
        &input_path,
        &input_hash,
        test_after,
        late,
        seconds,
        args.timely.workers * args.timely.processes,
    );
    let path = args.out.join("report.json");
    let mut file =
        AtomicFile::create(&path).with_context(|| format!("writing {}", path.display()))?;
    serde_json::to_writer_pretty(file.writer(), &report)?;
    file.writer().write_all(b"\n")?;
    file.commit()
        .with_context(|| format!("writing {}", path.display()))?;
    report.print(&args.out);
    Ok(ExitCode::SUCCESS)
}

fn choose_policy(args: &Args, bundle: &Bundle) -> (Policy, &'static str) {
    let (mut policy, mut source) = if args.parity {
        (
            bundle.parity,
            "parity: original weights, threshold for the budget",
        )
    } else {
        (bundle.policy, "trained")
    };
    if let Some(w) = args.weights {
        policy.weights = w;
        source = "overridden";
    }
    if let Some(t) = args.threshold {
        policy.threshold = t;
        source = "overridden";
    }
    (policy, source)
}

/// Quality of the routing over a set of events.
#[derive(Debug, Serialize)]
struct Quality {
    events: u64,
    fraud: u64,
    pr_auc: Option<f64>,
    roc_auc: Option<f64>,
    at_threshold: AtThreshold,
    /// The same share of these events as the training budget, ranked.
    at_budget: Option<AtThreshold>,
    fraud_amount: f64,
    fraud_amount_caught: f64,
}

impl Quality {
    fn of(records: &[&Record], threshold: f64, budget: f64) -> Option<Quality> {
        let labelled: Vec<&&Record> = records.iter().filter(|r| r.is_fraud.is_some()).collect();
        if labelled.is_empty() {
            return None;
        }
        let scores: Vec<f64> = labelled.iter().map(|r| r.score).collect();
        let labels: Vec<bool> = labelled.iter().map(|r| r.is_fraud == Some(true)).collect();
        let fraud = labelled.iter().filter(|r| r.is_fraud == Some(true));
        Some(Quality {
            events: labelled.len() as u64,
            fraud: labels.iter().filter(|&&l| l).count() as u64,
            pr_auc: average_precision(&scores, &labels),
            roc_auc: roc_auc(&scores, &labels),
            at_threshold: at_threshold(&scores, &labels, threshold),
            at_budget: at_budget(&scores, &labels, budget),
            fraud_amount: fraud.clone().map(|r| r.amount).sum(),
            fraud_amount_caught: fraud
                .filter(|r| r.score >= threshold)
                .map(|r| r.amount)
                .sum(),
        })
    }
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    input: String,
    input_hash: String,
    bundle_version: String,
    contract: fraudflow::features::Contract,
    policy: Policy,
    policy_source: &'static str,
    budget: f64,
    events_in: u64,
    scored: u64,
    alerts: u64,
    normal: u64,
    dead_letters: u64,
    late: u64,
    /// Over every labelled event replayed (training rows included when the
    /// models learned from this file).
    quality_all: Option<Quality>,
    /// Over the steps after the bundle's validation split, when the input
    /// is the file it was trained on: the honest figure.
    test_split_after_step: Option<u32>,
    quality_test_split: Option<Quality>,
    /// Microseconds from the source reading an event to its routing.
    latency_us: Option<Latency>,
    seconds: f64,
    events_per_second: f64,
    workers: usize,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn new(
        c: &Collected,
        bundle: &Bundle,
        policy: &Policy,
        policy_source: &'static str,
        input: &Path,
        input_hash: &str,
        test_after: Option<u32>,
        late: u64,
        seconds: f64,
        workers: usize,
    ) -> Report {
        let all: Vec<&Record> = c.records.iter().collect();
        let test: Vec<&Record> = match test_after {
            Some(step) => c.records.iter().filter(|r| r.step > step).collect(),
            None => Vec::new(),
        };
        let mut latencies: Vec<u64> = c.records.iter().map(|r| r.latency_us).collect();
        latencies.sort_unstable();
        let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        let events_in = c.records.len() as u64 + c.dead;
        Report {
            input: input.display().to_string(),
            input_hash: input_hash.to_string(),
            bundle_version: bundle.version.clone(),
            contract: bundle.contract,
            policy: *policy,
            policy_source,
            budget: bundle.budget,
            events_in,
            scored: c.records.len() as u64,
            alerts: c.alerts,
            normal: c.normal,
            dead_letters: c.dead,
            late,
            quality_all: Quality::of(&all, policy.threshold, bundle.budget),
            test_split_after_step: test_after,
            quality_test_split: Quality::of(&test, policy.threshold, bundle.budget),
            latency_us: (!latencies.is_empty()).then(|| Latency {
                p50: pick(0.50),
                p95: pick(0.95),
                p99: pick(0.99),
                max: latencies[latencies.len() - 1],
            }),
            seconds,
            events_per_second: events_in as f64 / seconds.max(1e-9),
            workers,
        }
    }

    fn print(&self, out: &Path) {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        println!(
            "events {} = {} scored ({} alerts, {} normal) + {} dead letters; {} late",
            grouped(self.events_in),
            grouped(self.scored),
            grouped(self.alerts),
            grouped(self.normal),
            grouped(self.dead_letters),
            grouped(self.late)
        );
        let w = self.policy.weights;
        println!(
            "policy ({}): weights IF {:.2} / AE {:.2} / LR {:.2}, threshold {:.6}",
            self.policy_source,
            w.isolation_forest,
            w.autoencoder,
            w.logistic,
            self.policy.threshold
        );
        let quality = [
            ("all events", &self.quality_all),
            ("test split", &self.quality_test_split),
        ];
        for (name, q) in quality {
            let Some(q) = q else { continue };
            println!(
                "{name}: {} events, {} fraud; PR-AUC {}, ROC-AUC {}",
                grouped(q.events),
                grouped(q.fraud),
                opt(q.pr_auc),
                opt(q.roc_auc)
            );
            println!(
                "  at the threshold: {} alerts, precision {}, recall {}",
                grouped(q.at_threshold.alerts),
                opt(q.at_threshold.precision),
                opt(q.at_threshold.recall)
            );
            if let Some(b) = q.at_budget {
                println!(
                    "  at the {:.2} % budget: {} alerts, precision {}, recall {}",
                    self.budget * 100.0,
                    grouped(b.alerts),
                    opt(b.precision),
                    opt(b.recall)
                );
            }
            println!(
                "  fraud amount caught: {:.2} of {:.2} ({:.1} %)",
                q.fraud_amount_caught,
                q.fraud_amount,
                100.0 * q.fraud_amount_caught / q.fraud_amount.max(f64::MIN_POSITIVE)
            );
        }
        if let Some(l) = &self.latency_us {
            println!(
                "latency (read to routed): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50 as f64 / 1e3,
                l.p95 as f64 / 1e3,
                l.p99 as f64 / 1e3,
                l.max as f64 / 1e3
            );
        }
        println!(
            "throughput: {} events in {:.2} s on {} workers: {:.0} events/s",
            grouped(self.events_in),
            self.seconds,
            self.workers,
            self.events_per_second
        );
        println!("wrote {}/alerts.jsonl and report.json", out.display());
    }
}
