//! The page's data shaping against plain recomputations, and the page's
//! behaviour on empty and hostile input.

use super::backtest::periods;
use super::shape::{histogram, log_histogram, pr_curve, thin, throughput, top_reasons, PrPoint};
use super::*;
use crate::eval::learning::{DayQuality, LearningDay};
use crate::eval::Day;

/// A tiny hand-made set with ties across classes and uneven classes, so
/// that precision and recall differ at every point.
const PAIRS: [(f64, bool); 9] = [
    (0.95, true),
    (0.80, false),
    (0.80, true),
    (0.60, false),
    (0.55, true),
    (0.30, false),
    (0.30, false),
    (0.10, true),
    (0.05, false),
];

#[test]
fn pr_curve_matches_a_plain_recomputation() {
    let curve = pr_curve(&PAIRS);
    let mut thresholds: Vec<f64> = PAIRS.iter().map(|p| p.0).collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    assert_eq!(curve.len(), thresholds.len());
    for (point, t) in curve.iter().zip(&thresholds) {
        let alerted = PAIRS.iter().filter(|p| p.0 >= *t);
        let alerts = alerted.clone().count() as f64;
        let caught = alerted.filter(|p| p.1).count() as f64;
        assert_eq!(point.threshold, *t);
        assert_eq!(point.precision, caught / alerts, "precision at {t}");
        assert_eq!(point.recall, caught / 4.0, "recall at {t}");
    }
    // By hand: at 0.80 three alerts, two of them fraud, of four frauds.
    assert_eq!((curve[1].precision, curve[1].recall), (2.0 / 3.0, 0.5));
}

#[test]
fn pr_curve_is_empty_without_fraud_and_ranks_nan_last() {
    assert!(pr_curve(&[]).is_empty());
    assert!(pr_curve(&[(0.9, false), (0.1, false)]).is_empty());
    let curve = pr_curve(&[(f64::NAN, true), (0.2, false), (f64::NAN, false)]);
    assert_eq!(curve.len(), 2);
    assert_eq!((curve[0].precision, curve[0].recall), (0.0, 0.0));
    assert_eq!((curve[1].precision, curve[1].recall), (1.0 / 3.0, 1.0));
}

#[test]
fn thinning_keeps_the_ends_and_bounds_the_points() {
    let curve: Vec<PrPoint> = (0..10_000)
        .map(|i| PrPoint {
            threshold: 1.0 - i as f64 / 10_000.0,
            recall: i as f64 / 9_999.0,
            // A zigzag: precision moves by a lot at every point.
            precision: if i % 2 == 0 { 0.9 } else { 0.1 },
        })
        .collect();
    let thinned = thin(&curve, 100);
    assert!(thinned.len() <= 102, "{} points", thinned.len());
    assert_eq!(thinned.first(), curve.first());
    assert_eq!(thinned.last(), curve.last());
    let small = &curve[..50];
    assert_eq!(thin(small, 100), small);
}

#[test]
fn histogram_bins_count_by_hand() {
    let values = [0.0, 0.19, 0.2, 0.5, 0.61, 0.99, 1.0, -3.0, 7.0, f64::NAN];
    // Bins of 0.2: [0, 0.2) holds 0, 0.19 and -3 (below); the last holds
    // 0.99, 1.0 and 7 (above); NaN is left out.
    assert_eq!(histogram(&values, 0.0, 1.0, 5), [3, 1, 1, 1, 3]);
    assert!(histogram(&values, 1.0, 1.0, 5).is_empty());
    assert!(histogram(&values, 0.0, 1.0, 0).is_empty());
    assert_eq!(histogram(&[], 0.0, 1.0, 2), [0, 0]);
}

#[test]
fn log_histogram_bins_grow_by_ratio() {
    let values = [0, 1, 9, 10, 11, 99, 1000];
    let bins = log_histogram(&values, 3);
    assert_eq!(bins.len(), 3);
    // Edges 1, 10, 100 and 1000, each a hair up (the top just past the
    // largest value): 0 counts as 1, and 10 falls in the first bin.
    assert_eq!(bins.iter().map(|b| b.count).collect::<Vec<_>>(), [4, 2, 1]);
    assert!((bins[1].lo - 10.0).abs() < 1e-3 && (bins[1].hi - 100.0).abs() < 1e-2);
    // Each value in the bin whose [lo, hi) holds it.
    for v in values {
        let x = v.max(1) as f64;
        let holding = bins.iter().filter(|b| b.lo <= x && x < b.hi).count();
        assert_eq!(holding, 1, "{v}");
    }
    assert!(log_histogram(&[], 3).is_empty());
    let one = log_histogram(&[5, 5], 4);
    assert_eq!(one.iter().map(|b| b.count).sum::<u64>(), 2);
}

#[test]
fn period_precision_and_recall_use_the_right_denominators() {
    let p = Period {
        alerts: 8,
        fraud: 5,
        fraud_caught: 4,
        ..Period::default()
    };
    let pr = p.at_threshold();
    assert_eq!((pr.precision, pr.recall), (Some(0.5), Some(0.8)));
    let quiet = Period::default().at_threshold();
    assert_eq!((quiet.precision, quiet.recall), (None, None));
}

#[test]
fn periods_take_each_days_learning_figures() {
    let day = |day, alerts| Day {
        day,
        events: 10,
        alerts,
        fraud: 2,
        fraud_caught: 1,
        fraud_amount: None,
        fraud_amount_caught: None,
        threshold_low: 0.25,
        threshold_high: 0.5,
    };
    let quality = |precision| DayQuality {
        pr_auc: None,
        alerts: 1,
        precision: Some(precision),
        recall: Some(1.0 - precision),
    };
    let learned = LearningDay {
        day: 3,
        events: 10,
        fraud: 2,
        online: Some(quality(0.9)),
        frozen: Some(quality(0.2)),
        updates: 1,
        promoted: 1,
        refused: 0,
        rolled_back: 0,
    };
    let p = periods(&[day(2, 4), day(3, 5)], Some(&[learned]));
    assert_eq!(p.unit, "day");
    assert_eq!((p.rows[0].label.as_str(), p.rows[0].alerts), ("2", 4));
    assert_eq!((p.rows[0].online, p.rows[0].frozen), (None, None));
    assert_eq!(p.rows[1].threshold, Some((0.25, 0.5)));
    let (online, frozen) = (p.rows[1].online.unwrap(), p.rows[1].frozen.unwrap());
    assert_eq!(
        (online.precision, online.recall),
        (Some(0.9), Some(0.9 - 0.8))
    );
    assert_eq!(frozen.precision, Some(0.2));
    assert!(periods(&[], None).rows.is_empty());
}

#[test]
fn top_reasons_sum_names_and_keep_the_largest() {
    let r = |name: &str, n| (name.to_string(), n);
    let reasons = [
        r("amount", 3),
        r("velocity", 5),
        r("amount", 4),
        r("zero", 0),
        r("age", 1),
    ];
    let (top, rest) = top_reasons(&reasons, 2);
    assert_eq!(top, [r("amount", 7), r("velocity", 5)]);
    assert_eq!(rest, 1);
    assert_eq!(top_reasons(&[], 3), (vec![], 0));
}

#[test]
fn throughput_counts_events_per_interval() {
    // 1 s in 4 intervals of 0.25 s: 3, 0, 1 and 2 events.
    let done = [
        1_000_000, 1_100_000, 1_200_000, 1_600_000, 1_900_000, 2_000_000,
    ];
    let t = throughput(&done, 1_000_000, 4);
    let rates: Vec<f64> = t.iter().map(|p| p.1).collect();
    assert_eq!(rates, [12.0, 0.0, 4.0, 8.0]);
    assert_eq!(t.last().map(|p| p.0), Some(1.0));
    assert!(throughput(&[], 0, 4).is_empty());
}

/// A report with something in every plot.
fn full() -> HtmlReport {
    let events: Vec<ScoredEvent> = PAIRS
        .iter()
        .map(|&(s, fraud)| ScoredEvent {
            fraud,
            ensemble: s,
            forest: 1.0 - s,
            autoencoder: s * s,
            logistic: s.sqrt(),
        })
        .collect();
    let scores = ScoreFigures::of(&events).unwrap();
    let period = |label: &str| Period {
        label: label.into(),
        events: 100,
        alerts: 5,
        fraud: 3,
        fraud_caught: 2,
        online: None,
        frozen: None,
        threshold: Some((0.4, 0.5)),
    };
    HtmlReport {
        title: "fraudflow <test>".into(),
        facts: vec![("Events & more".into(), "1,000 <b>".into())],
        threshold: 0.5,
        scores,
        periods: Periods {
            unit: "day".into(),
            rows: vec![period("0"), period("1")],
        },
        latency: [120, 800, 950, 2_000, 15_000].into_iter().collect(),
        throughput: vec![(0.5, 1000.0), (1.0, 1500.0)],
        reasons: vec![
            ("<script>alert(1)</script>".into(), 4),
            ("amount".into(), 2),
        ],
    }
}

#[test]
fn a_full_report_draws_every_plot_and_escapes_text() {
    let page = render(&full()).unwrap();
    for id in PLOTS {
        let at = page
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id}"));
        let section = &page[at..at + page[at..].find("</section>").unwrap()];
        assert!(section.contains("<svg"), "{id} has no plot");
        assert!(!section.contains("No data"), "{id}");
    }
    assert!(page.contains("<h1>fraudflow &lt;test&gt;</h1>"));
    assert!(page.contains("<th>Events &amp; more</th><td>1,000 &lt;b&gt;</td>"));
    assert!(!page.contains("<script>") && !page.contains("<b>"));
    assert!(!page.contains("http://") || !page.contains("src=\"http"));
}

#[test]
fn an_empty_report_says_no_data_in_every_section() {
    let page = render(&HtmlReport::default()).unwrap();
    assert!(!page.contains("<svg"));
    assert_eq!(
        page.matches("<p class=\"nodata\">No data").count(),
        PLOTS.len()
    );
    let ids: Vec<&str> = page
        .split("<section class=\"card plot\" id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(ids, PLOTS, "the sections, in page order");
}

#[test]
fn learning_figures_replace_the_threshold_lines() {
    let mut report = full();
    report.periods.rows[1].online = Some(PrecisionRecall {
        precision: Some(0.7),
        recall: Some(0.6),
    });
    let page = render(&report).unwrap();
    assert!(page.contains("recall, frozen") && page.contains("precision, learning"));
    assert!(!render(&full()).unwrap().contains("recall, frozen"));
}

#[test]
fn a_non_finite_threshold_is_refused_by_value() {
    let report = HtmlReport {
        threshold: f64::NAN,
        ..full()
    };
    let e = render(&report).unwrap_err();
    assert!(e.to_string().contains("threshold is NaN"), "{e}");
}

#[test]
fn axis_numbers_keep_two_significant_digits_below_a_tenth() {
    use super::plots::short;
    let cases = [
        (0.0, "0"),
        (0.256, "0.26"),
        (0.0043, "0.0043"),
        (0.04, "0.040"),
        (-0.0043, "-0.0043"),
        (3.5, "3.5"),
        (25_000.0, "25k"),
    ];
    for (v, text) in cases {
        assert_eq!(short(v), text, "{v}");
    }
}

#[test]
fn log_ticks_are_one_two_five_per_decade() {
    use super::plots::log_ticks;
    assert_eq!(log_ticks(15.0, 600.0), [20.0, 50.0, 100.0, 200.0, 500.0]);
    assert_eq!(
        log_ticks(0.5, 2e5),
        [1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0]
    );
    assert!(log_ticks(0.0, 1.0).is_empty() && log_ticks(2.0, 1.0).is_empty());
}

#[test]
fn the_page_tally_takes_the_labelled_records_scores_and_every_routed_time() {
    use super::backtest::PageTally;
    use crate::ensemble::Components;
    use crate::eval::{PageFields, Record};
    let record = |seq: u64| {
        let s = (seq % 10) as f64 / 10.0;
        Record {
            seq,
            time_ms: seq * 1_000,
            score: s,
            is_fraud: [None, Some(false), Some(true), Some(false)][(seq % 4) as usize],
            amount: 1.0,
            latency_us: 50 + seq,
            frozen: None,
            threshold: 0.5,
            // Records without the page's fields are left out.
            page: (!seq.is_multiple_of(9)).then_some(PageFields {
                components: Components {
                    isolation_forest: 1.0 - s,
                    autoencoder: s * s,
                    logistic: s / 2.0,
                },
                received_us: 1_000_000 + 7 * seq,
            }),
        }
    };
    let records: Vec<Record> = (0..500).map(record).collect();
    let with_page = || records.iter().filter(|r| r.page.is_some());
    let done: Vec<u64> = with_page().filter_map(Record::done_us).collect();
    let start = with_page()
        .filter_map(|r| r.page)
        .map(|p| p.received_us)
        .min();
    let span = (start.unwrap(), *done.iter().max().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut tally = PageTally::new(dir.path(), Some(span));
    records.iter().for_each(|r| tally.add(r).unwrap());
    let (figures, points) = tally.finish().unwrap();
    let events: Vec<ScoredEvent> = with_page()
        .filter_map(|r| {
            let (c, fraud) = (r.page?.components, r.is_fraud?);
            Some(ScoredEvent {
                fraud,
                ensemble: r.score,
                forest: c.isolation_forest,
                autoencoder: c.autoencoder,
                logistic: c.logistic,
            })
        })
        .collect();
    assert_eq!(figures, ScoreFigures::of(&events).unwrap());
    assert_eq!(figures.legit + figures.fraud, events.len() as u64);
    assert_eq!(points, throughput(&done, span.0, 80));
    assert_eq!(points.len(), 80);
}
