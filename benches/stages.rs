//! Time per event of each stage the dataflow runs, with criterion's
//! statistics over repeated samples: parsing (PaySim CSV and JSON events),
//! featurizing, each model's score and the whole ensemble, one event at a
//! time and in batches as the dataflow hands them over.
//!
//! `cargo bench --bench stages` (add a name to run a part, e.g.
//! `cargo bench --bench stages -- score/`). Why a bench per stage besides
//! `fraudflow bench`: the end-to-end figures say how fast the pipeline is,
//! these say where its time goes, and they move with a change to one stage
//! only. The velocity arrangement has no stage of its own here: it only
//! exists inside a running dataflow, so `fraudflow features` and
//! `fraudflow bench` measure it. Everything is generated with fixed seeds
//! (our own PaySim generator, the models fitted on its features), and the
//! sample counts are kept small so the whole bench takes a few minutes on
//! two cores.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fraudflow::dataflow::json_event::{parse_event, paysim_event};
use fraudflow::ensemble::{Components, Models, Weights};
use fraudflow::event::Event;
use fraudflow::features::{Contract, FeatureVec, Velocities};
use fraudflow::generate::{Generator, GeneratorParams};
use fraudflow::models::autoencoder::AutoencoderParams;
use fraudflow::models::isolation_forest::IsolationForestParams;
use fraudflow::models::online_logistic::OnlineLogisticParams;
use fraudflow::paysim::{PaysimWriter, Transaction};
use fraudflow::sources::file::{parse_block, InputFormat};
use fraudflow::sources::SourceCounts;
use linfa::prelude::*;
use ndarray::{Array1, Array2};

/// Rows in a parsing block: about the 1 MiB a file source's worker takes
/// at a time (PaySim rows are ~80 bytes).
const BLOCK_ROWS: usize = 12_000;
/// Rows the score operator scores together in the benches below: the
/// dataflow's batches are of this order (see benches/scoring.rs).
const BATCH: usize = 1_024;
/// Generated rows the models are fitted on.
const FIT_ROWS: usize = 20_000;

/// The generated transactions every group reads.
fn transactions(n: usize) -> Vec<Transaction> {
    let params = GeneratorParams::new(n as u64, 1)
        .check()
        .expect("fixed generator settings are valid");
    Generator::new(params).collect()
}

/// Events as the file source makes them, with the FEATURES_V2 vectors the
/// featurizer gives them at velocity 1 (the arrangement is not run here).
fn events_and_features(rows: &[Transaction]) -> (Vec<Event>, Vec<FeatureVec>) {
    let events: Vec<Event> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| Event::from_paysim(i as u64 + 1, t))
        .collect();
    let one = Velocities { orig: 1, dest: 1 };
    let features = events
        .iter()
        .map(|e| Contract::V2.compute(e, one))
        .collect();
    (events, features)
}

fn parsing(c: &mut Criterion) {
    let rows = transactions(BLOCK_ROWS);
    let mut writer = PaysimWriter::new(Vec::new()).expect("writing to memory");
    for t in &rows {
        writer.write(t).expect("writing to memory");
    }
    let csv = writer.finish().expect("writing to memory");
    // The source hands the rows after the header to the reader.
    let body_at = csv.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    let csv_block = &csv[body_at..];
    let json: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| paysim_event(t, &format!("e{i}"), 3_600_000 * u64::from(t.step)).to_string())
        .collect();
    let json_block = json.join("\n").into_bytes();

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(BLOCK_ROWS as u64));
    for (name, format, block) in [
        ("paysim_csv_block", InputFormat::PaysimCsv, csv_block),
        ("json_lines_block", InputFormat::JsonLines, &json_block[..]),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let counts = SourceCounts::default();
                let mut valid = 0u64;
                parse_block(format, black_box(block), 2, "bench", &counts, |p| {
                    valid += u64::from(p.is_ok());
                });
                assert_eq!(valid, BLOCK_ROWS as u64, "every generated row parses");
                valid
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("json_event", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % json.len();
            parse_event(black_box(json[i].as_bytes()), 1).is_ok()
        })
    });
    g.finish();
}

fn featurizing(c: &mut Criterion) {
    let (events, _) = events_and_features(&transactions(BATCH));
    let one = Velocities { orig: 1, dest: 1 };
    let mut g = c.benchmark_group("featurize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("v2_event", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % events.len();
            Contract::V2.compute(black_box(&events[i]), one)
        })
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("v2_batch", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(BATCH),
            |out: &mut Vec<FeatureVec>| {
                out.extend(
                    events
                        .iter()
                        .map(|e| Contract::V2.compute(black_box(e), one)),
                );
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The three models, fitted the way training fits them (the forest and
/// the autoencoder on legitimate rows, the logistic model on all), with
/// their default parameters, on generated FEATURES_V2 rows.
fn fitted(features: &[FeatureVec], labels: &[bool]) -> Models {
    let width = Contract::V2.names().len();
    let matrix = |keep: &dyn Fn(usize) -> bool| {
        let rows: Vec<f64> = (0..features.len())
            .filter(|&i| keep(i))
            .flat_map(|i| features[i].iter().copied())
            .collect();
        Array2::from_shape_vec((rows.len() / width, width), rows).expect("rows of one width")
    };
    let legit = matrix(&|i| !labels[i]);
    let all = matrix(&|_| true);
    let y: Array1<bool> = labels.iter().copied().collect();
    Models {
        isolation_forest: IsolationForestParams::default()
            .fit(&DatasetBase::from(legit.clone()))
            .expect("the forest fits"),
        autoencoder: AutoencoderParams::default()
            .fit(&DatasetBase::from(legit))
            .expect("the autoencoder fits"),
        logistic: OnlineLogisticParams::default()
            .fit(&DatasetBase::new(all, y))
            .expect("the logistic model fits"),
    }
}

fn scoring(c: &mut Criterion) {
    let rows = transactions(FIT_ROWS);
    let labels: Vec<bool> = rows.iter().map(|t| t.is_fraud).collect();
    let (_, features) = events_and_features(&rows);
    let models = fitted(&features, &labels);
    let batch: Vec<&[f64]> = features[..BATCH].iter().map(|f| &f[..]).collect();
    let weights = Weights::ORIGINAL;
    let next = |i: &mut usize| {
        *i = (*i + 1) % batch.len();
        batch[*i]
    };

    let mut g = c.benchmark_group("score");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("isolation_forest_event", |b| {
        b.iter(|| models.isolation_forest.score(black_box(next(&mut i))))
    });
    g.bench_function("autoencoder_event", |b| {
        b.iter(|| models.autoencoder.score(black_box(next(&mut i))))
    });
    g.bench_function("logistic_event", |b| {
        b.iter(|| models.logistic.probability(black_box(next(&mut i))))
    });
    let mut one = Vec::with_capacity(1);
    g.bench_function("ensemble_event", |b| {
        b.iter(|| {
            models.components_many(&[black_box(next(&mut i))], &mut one);
            weights.combine(&one[0])
        })
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut forest = Vec::with_capacity(BATCH);
    g.bench_function("isolation_forest_batch", |b| {
        b.iter(|| {
            models
                .isolation_forest
                .score_many(black_box(&batch), &mut forest)
        })
    });
    let mut components: Vec<Components> = Vec::with_capacity(BATCH);
    g.bench_function("ensemble_batch", |b| {
        b.iter(|| {
            models.components_many(black_box(&batch), &mut components);
            components.iter().map(|c| weights.combine(c)).sum::<f64>()
        })
    });
    g.finish();
}

fn settings() -> Criterion {
    // Small samples: the whole bench runs in a few minutes on two cores;
    // the spread criterion prints says whether that was enough.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = stages;
    config = settings();
    targets = parsing, featurizing, scoring
}
criterion_main!(stages);
