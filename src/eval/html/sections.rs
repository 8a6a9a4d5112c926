//! The page's eight plot sections, each shaped from the report, drawn, and
//! given its title, its caption saying how to read it, and its legend; or,
//! with nothing to draw, a note saying why.

use plotters::style::RGBColor;

use super::page::Section;
use super::plots::{self, Curve, Line, PerPeriod};
use super::scores::MODELS;
use super::shape;
use super::{grouped, HtmlError, HtmlReport, Period, PrecisionRecall, ScoreFigures};
use crate::eval::tally::Latencies;

/// Bins of the latency histogram.
const LATENCY_BINS: usize = 40;
/// Reasons shown.
const TOP_REASONS: usize = 12;

/// Every section, in page order.
pub fn all(report: &HtmlReport) -> Result<[Section; 8], HtmlError> {
    Ok([
        pr_curves(&report.scores)?,
        scores(&report.scores, report.threshold)?,
        alerts(report)?,
        quality(report)?,
        thresholds(report)?,
        latency(&report.latency)?,
        throughput(&report.throughput)?,
        reasons(&report.reasons)?,
    ])
}

/// Each of [`MODELS`]' colour and line width: the ensemble thick and
/// drawn first, so the models drawn over it stay visible where they
/// coincide.
const LOOKS: [(RGBColor, u32); 4] = [
    (plots::BLUE, 6),
    (plots::GREEN, 2),
    (plots::ORANGE, 2),
    (plots::PURPLE, 2),
];

fn pr_curves(figures: &ScoreFigures) -> Result<Section, HtmlError> {
    let (mut curves, mut legend) = (Vec::new(), Vec::new());
    let drawn = MODELS.iter().zip(LOOKS).zip(&figures.curves);
    for ((name, (colour, width)), curve) in drawn {
        let Some(c) = curve.as_ref().filter(|c| !c.points.is_empty()) else {
            continue;
        };
        curves.push(Curve {
            colour,
            width,
            points: c.points.clone(),
        });
        legend.push((format!("{name} (PR-AUC {:.3})", c.pr_auc), colour));
    }
    let svg = match curves.is_empty() {
        true => Err("no labelled fraud among the events, so no curve can be drawn"),
        false => Ok(plots::pr_curves(&curves)?),
    };
    Ok(Section {
        id: "pr-curve",
        title: "Precision and recall, per model",
        caption: format!(
            "Each line moves the alert threshold from the highest score down over all {} \
             labelled events: further right catches more fraud, higher wastes fewer alerts. The \
             closer a line runs to the top right corner, the better; PR-AUC is the area under it.",
            grouped(figures.legit + figures.fraud)
        ),
        legend,
        svg,
    })
}

fn scores(figures: &ScoreFigures, threshold: f64) -> Result<Section, HtmlError> {
    let svg = match figures.legit + figures.fraud {
        0 => Err("no labelled events"),
        _ => Ok(plots::score_distribution(
            &figures.legit_bins,
            &figures.fraud_bins,
            threshold,
        )?),
    };
    Ok(Section {
        id: "score-distribution",
        title: "Ensemble score by class",
        caption: format!(
            "How many legitimate ({}) and fraud ({}) events fell in each score band, on a log \
             scale. Events right of the threshold line raised alerts: blue bars there are false \
             alarms, red bars left of it are missed fraud.",
            grouped(figures.legit),
            grouped(figures.fraud)
        ),
        legend: vec![
            ("legitimate".into(), plots::BLUE),
            ("fraud".into(), plots::RED),
            (format!("threshold {threshold:.3}"), plots::ORANGE),
        ],
        svg,
    })
}

/// A series over periods, counted by `f`.
fn counted(rows: &[Period], colour: RGBColor, join: bool, f: fn(&Period) -> u64) -> Line {
    Line {
        colour,
        width: 3,
        join,
        values: rows.iter().map(|p| Some(f(p) as f64)).collect(),
    }
}

fn alerts(report: &HtmlReport) -> Result<Section, HtmlError> {
    let rows = &report.periods.rows;
    let unit = &report.periods.unit;
    let labels: Vec<String> = rows.iter().map(|p| p.label.clone()).collect();
    let bars = [
        counted(rows, plots::BLUE, false, |p| p.alerts),
        counted(rows, plots::RED, false, |p| p.fraud_caught),
    ];
    let lines = [counted(rows, plots::ORANGE, false, |p| p.fraud)];
    let plot = PerPeriod {
        plot: "alerts per period",
        labels: &labels,
        x_desc: unit.clone(),
        y_desc: "events",
        shares: false,
        bars: &bars,
        lines: &lines,
    };
    let svg = match rows.is_empty() {
        true => Err("no periods"),
        false => Ok(plots::per_period(&plot)?),
    };
    Ok(Section {
        id: "alerts-per-period",
        title: "Alerts and fraud caught",
        caption: format!(
            "Per {unit} of event time: alerts raised, the fraud among them, and all the fraud of \
             the {unit}. The gap between a red bar and its orange dot is fraud missed that {unit}."
        ),
        legend: vec![
            ("alerts".into(), plots::BLUE),
            ("fraud caught".into(), plots::RED),
            ("all fraud".into(), plots::ORANGE),
        ],
        svg,
    })
}

/// A line of shares per period.
fn shares(colour: RGBColor, width: u32, values: Vec<Option<f64>>) -> Line {
    Line {
        colour,
        width,
        join: true,
        values,
    }
}

/// Precision and recall per period at the alert threshold (a run that did
/// not learn).
fn threshold_lines(rows: &[Period]) -> (Vec<Line>, Vec<(String, RGBColor)>, String) {
    let at: Vec<PrecisionRecall> = rows.iter().map(Period::at_threshold).collect();
    let lines = vec![
        shares(plots::BLUE, 3, at.iter().map(|q| q.precision).collect()),
        shares(plots::GREEN, 3, at.iter().map(|q| q.recall).collect()),
    ];
    let legend = vec![
        ("precision".into(), plots::BLUE),
        ("recall".into(), plots::GREEN),
    ];
    let reading = "at the alert threshold: precision is the share of alerts that were fraud, \
                   recall the share of fraud alerted";
    (lines, legend, reading.to_string())
}

/// The precision and recall lines per period, with their legend: online
/// against frozen when the run learned (the frozen ones drawn first,
/// wide and light, under the learning ones), else at the threshold. The
/// caption's reading follows.
fn quality_lines(rows: &[Period], unit: &str) -> (Vec<Line>, Vec<(String, RGBColor)>, String) {
    let learned = rows
        .iter()
        .any(|p| p.online.is_some() || p.frozen.is_some());
    if !learned {
        return threshold_lines(rows);
    }
    type Of = fn(&Period) -> Option<PrecisionRecall>;
    type Figure = fn(&PrecisionRecall) -> Option<f64>;
    let pick = |of: Of, figure: Figure| -> Vec<Option<f64>> {
        rows.iter()
            .map(|p| of(p).as_ref().and_then(figure))
            .collect()
    };
    let series: [(&str, Of, Figure, RGBColor, u32); 4] = [
        (
            "precision, frozen",
            |p| p.frozen,
            |q| q.precision,
            plots::LIGHT_BLUE,
            7,
        ),
        (
            "recall, frozen",
            |p| p.frozen,
            |q| q.recall,
            plots::LIGHT_GREEN,
            7,
        ),
        (
            "precision, learning",
            |p| p.online,
            |q| q.precision,
            plots::BLUE,
            2,
        ),
        (
            "recall, learning",
            |p| p.online,
            |q| q.recall,
            plots::GREEN,
            2,
        ),
    ];
    let lines = (series.iter())
        .map(|(_, of, figure, colour, width)| shares(*colour, *width, pick(*of, *figure)))
        .collect();
    let legend = series.iter().map(|s| (s.0.to_string(), s.3)).collect();
    let reading = "with online learning (dark, thin) and with the models frozen at the start \
                   (light, wide), each alerting on the budget's share of the UNIT's events: \
                   where the dark lines run above the light ones, learning from analysts' labels \
                   paid";
    (lines, legend, reading.replace("UNIT", unit))
}

fn quality(report: &HtmlReport) -> Result<Section, HtmlError> {
    let (rows, unit) = (&report.periods.rows, &report.periods.unit);
    let (lines, legend, reading) = quality_lines(rows, unit);
    let plot = ("precision and recall per period", "share", true);
    let svg = lines_per_period(report, plot, &lines, "no period with alerts or fraud")?;
    Ok(Section {
        id: "quality-per-period",
        title: "Precision and recall over time",
        caption: format!(
            "Per {unit} of event time, {reading}. A gap means the figure is undefined that \
             {unit} (no alerts, or no fraud)."
        ),
        legend,
        svg,
    })
}

/// The alert threshold per period: one line where it held all along, its
/// lowest and highest values where it moved.
fn thresholds(report: &HtmlReport) -> Result<Section, HtmlError> {
    let (rows, unit) = (&report.periods.rows, &report.periods.unit);
    let low: Vec<Option<f64>> = rows.iter().map(|p| p.threshold.map(|t| t.0)).collect();
    let high: Vec<Option<f64>> = rows.iter().map(|p| p.threshold.map(|t| t.1)).collect();
    let (lines, legend) = if low == high {
        let line = shares(plots::BLUE, 3, low);
        (vec![line], vec![("threshold".to_string(), plots::BLUE)])
    } else {
        let lines = vec![shares(plots::BLUE, 3, low), shares(plots::ORANGE, 3, high)];
        let legend = vec![
            ("lowest".to_string(), plots::BLUE),
            ("highest".to_string(), plots::ORANGE),
        ];
        (lines, legend)
    };
    let plot = ("alert threshold per period", "threshold", false);
    let svg = lines_per_period(report, plot, &lines, "no period with a threshold")?;
    Ok(Section {
        id: "threshold-per-period",
        title: "The alert threshold over time",
        caption: format!(
            "Per {unit} of event time, the score at or above which an event alerted. It holds \
             where training put it unless the threshold adapts to the budget \
             (--adaptive-threshold) or the models change; where it moved within a {unit}, \
             its lowest and highest values that {unit}."
        ),
        legend,
        svg,
    })
}

/// `lines` over the report's periods, drawn as the plot `(name, y axis
/// title, values are shares)`; `empty` when no line has a value.
fn lines_per_period(
    report: &HtmlReport,
    (plot, y_desc, shares): (&'static str, &'static str, bool),
    lines: &[Line],
    empty: &'static str,
) -> Result<Result<String, &'static str>, HtmlError> {
    let labels: Vec<String> = report
        .periods
        .rows
        .iter()
        .map(|p| p.label.clone())
        .collect();
    let plot = PerPeriod {
        plot,
        labels: &labels,
        x_desc: report.periods.unit.clone(),
        y_desc,
        shares,
        bars: &[],
        lines,
    };
    let drawn = lines.iter().any(|l| l.values.iter().any(Option::is_some));
    Ok(match drawn {
        false => Err(empty),
        true => Ok(plots::per_period(&plot)?),
    })
}

fn latency(latencies: &Latencies) -> Result<Section, HtmlError> {
    let percentiles = latencies.latency();
    let svg = match percentiles {
        None => Err("no event latencies"),
        Some(l) => Ok(plots::latency(
            &shape::log_histogram_counted(&latencies.counts(), LATENCY_BINS),
            l.p50 as f64 / 1e3,
            l.p99 as f64 / 1e3,
        )?),
    };
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1e3);
    let legend = percentiles.map_or_else(Vec::new, |l| {
        vec![
            ("events".into(), plots::TEAL),
            (format!("p50 {}", ms(l.p50)), plots::ORANGE),
            (format!("p99 {}", ms(l.p99)), plots::RED),
        ]
    });
    Ok(Section {
        id: "latency",
        title: "Latency",
        caption: format!(
            "How long each of {} events took from being read to being routed, in bands of equal \
             ratio (log scale). Half the events took less than the p50 line, 99 in 100 less than \
             the p99 line.",
            grouped(latencies.count())
        ),
        legend,
        svg,
    })
}

fn throughput(points: &[(f64, f64)]) -> Result<Section, HtmlError> {
    let finite = points.iter().all(|p| p.0.is_finite() && p.1.is_finite());
    let svg = match (points.is_empty(), finite) {
        (true, _) => Err("no throughput samples"),
        (false, false) => Err("the throughput samples are not finite numbers"),
        (false, true) => Ok(plots::throughput(points)?),
    };
    Ok(Section {
        id: "throughput",
        title: "Throughput",
        caption: "Events the pipeline finished per second over the run. A flat line means a \
                  steady pace; dips show pauses (start-up, a slow sink, a stalled source)."
            .to_string(),
        legend: Vec::new(),
        svg,
    })
}

fn reasons(reasons: &[(String, u64)]) -> Result<Section, HtmlError> {
    let (top, rest) = shape::top_reasons(reasons, TOP_REASONS);
    let others = match rest {
        0 => String::new(),
        n => format!(" The other reasons had {} alerts in all.", grouped(n)),
    };
    let svg = match top.is_empty() {
        true => Err("no alerts"),
        false => Ok(plots::reasons(&top)?),
    };
    Ok(Section {
        id: "reasons",
        title: "Top alert reasons",
        caption: format!(
            "Alerts by their first reason: the feature that pushed the score up most. A reason \
             that dominates tells analysts what most alerts will look like.{others}"
        ),
        legend: Vec::new(),
        svg,
    })
}
