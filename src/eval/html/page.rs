//! The page around the plots: the style sheet, the key-figures table, and
//! one titled section per plot with a caption saying how to read it. All
//! text from the report is escaped here; the plots' SVG comes escaped from
//! plotters.

use super::plots::{self, Curve, Line};
use super::shape::{self, PrPoint};
use super::{escape, HtmlError, HtmlReport, ScoredEvent};
use crate::eval::ranking::average_precision;

/// Points drawn of each precision-recall curve, at most (about).
const CURVE_POINTS: usize = 400;
/// Bins of the score distribution over [0, 1].
const SCORE_BINS: usize = 50;
/// Bins of the latency histogram.
const LATENCY_BINS: usize = 40;
/// Reasons shown.
const TOP_REASONS: usize = 12;

/// The style sheet: inline, so the page opens with no network.
const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;background:#f3f4f6;color:#111827;\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
header{background:#111827;color:#f9fafb;padding:28px 40px}\
header h1{margin:0;font-size:1.7rem;font-weight:600}\
header p{margin:4px 0 0;color:#9ca3af}\
main{max-width:1040px;margin:0 auto;padding:8px 24px 40px}\
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);\
padding:20px 24px;margin:20px 0}\
h2{font-size:1.2rem;margin:0 0 2px;font-weight:600}\
p.caption{color:#4b5563;margin:0 0 12px}\
table.facts{border-collapse:collapse;width:100%}\
table.facts th,table.facts td{padding:7px 10px;border-bottom:1px solid #e5e7eb;text-align:left}\
table.facts th{color:#4b5563;font-weight:500;width:38%}\
table.facts td{font-variant-numeric:tabular-nums;font-weight:600}\
svg{display:block;width:100%;height:auto}\
p.nodata{margin:0;padding:36px;text-align:center;color:#6b7280;background:#f9fafb;\
border:1px dashed #d1d5db;border-radius:8px}\
footer{color:#6b7280;font-size:.85rem;text-align:center;padding:0 0 32px}";

/// One section of the page: a plot, or a note saying why there is none.
struct Section {
    id: &'static str,
    title: &'static str,
    caption: String,
    /// The plot's SVG; `Err` holds the "no data" note.
    svg: Result<String, &'static str>,
}

impl Section {
    fn html(&self) -> String {
        let body = match &self.svg {
            Ok(svg) => svg.clone(),
            Err(note) => format!("<p class=\"nodata\">No data: {}</p>", escape(note)),
        };
        format!(
            "<section class=\"card plot\" id=\"{}\">\n<h2>{}</h2>\n<p class=\"caption\">{}</p>\n{body}\n</section>\n",
            self.id,
            escape(self.title),
            escape(&self.caption)
        )
    }
}

/// The whole page.
pub fn render(report: &HtmlReport) -> Result<String, HtmlError> {
    if !report.threshold.is_finite() {
        return Err(HtmlError::NotFinite {
            what: "the threshold",
            value: report.threshold,
        });
    }
    let sections = [
        pr_section(&report.scores)?,
        score_section(&report.scores, report.threshold)?,
        alerts_section(report)?,
        quality_section(report)?,
        latency_section(&report.latency_us)?,
        throughput_section(&report.throughput)?,
        reasons_section(&report.reasons)?,
    ];
    let title = escape(&report.title);
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>{title}</h1><p>Fraud detection report</p></header>\n<main>\n"
    );
    page += &facts(&report.facts);
    for s in &sections {
        page += &s.html();
    }
    page += "</main>\n<footer>Written by fraudflow. This page is self-contained: \
             it needs no network and runs no script.</footer>\n</body>\n</html>\n";
    Ok(page)
}

/// The key-figures table.
fn facts(facts: &[(String, String)]) -> String {
    let mut out = String::from(
        "<section class=\"card\" id=\"facts\">\n<h2>Key figures</h2>\n<table class=\"facts\">\n",
    );
    for (name, value) in facts {
        out += &format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            escape(name),
            escape(value)
        );
    }
    if facts.is_empty() {
        out += "<tr><td>No figures given.</td></tr>\n";
    }
    out + "</table>\n</section>\n"
}

/// One model's curve over every event, thinned for drawing, and its
/// average precision.
fn curve(scores: &[ScoredEvent], pick: fn(&ScoredEvent) -> f64) -> (Vec<PrPoint>, Option<f64>) {
    let pairs: Vec<(f64, bool)> = scores.iter().map(|e| (pick(e), e.fraud)).collect();
    let values: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let labels: Vec<bool> = pairs.iter().map(|p| p.1).collect();
    let full = shape::pr_curve(&pairs);
    (
        shape::thin(&full, CURVE_POINTS),
        average_precision(&values, &labels),
    )
}

fn pr_section(scores: &[ScoredEvent]) -> Result<Section, HtmlError> {
    let models: [(&str, fn(&ScoredEvent) -> f64, _, u32); 4] = [
        ("isolation forest", |e| e.forest, plots::GREEN, 2),
        ("autoencoder", |e| e.autoencoder, plots::ORANGE, 2),
        ("logistic regression", |e| e.logistic, plots::PURPLE, 2),
        ("ensemble", |e| e.ensemble, plots::BLUE, 4),
    ];
    let mut curves = Vec::new();
    for (name, pick, colour, width) in models {
        let (points, ap) = curve(scores, pick);
        if let Some(ap) = ap.filter(|_| !points.is_empty()) {
            let name = format!("{name} (PR-AUC {ap:.3})");
            curves.push(Curve {
                name,
                colour,
                width,
                points,
            });
        }
    }
    let svg = match curves.is_empty() {
        true => Err("no labelled fraud among the events, so no curve can be drawn"),
        false => Ok(plots::pr_curves(&curves)?),
    };
    Ok(Section {
        id: "pr-curve",
        title: "Precision and recall, per model",
        caption: format!(
            "Each line moves the alert threshold from the highest score down over all {} labelled \
             events: further right catches more fraud, higher wastes fewer alerts. The closer a \
             line runs to the top right corner, the better; PR-AUC is the area under it.",
            scores.len()
        ),
        svg,
    })
}

fn score_section(scores: &[ScoredEvent], threshold: f64) -> Result<Section, HtmlError> {
    let of = |fraud: bool| -> Vec<f64> {
        let class = scores.iter().filter(|e| e.fraud == fraud);
        class.map(|e| e.ensemble).collect()
    };
    let (legit, fraud) = (of(false), of(true));
    let svg = match scores.is_empty() {
        true => Err("no labelled events"),
        false => Ok(plots::score_distribution(
            &shape::histogram(&legit, 0.0, 1.0, SCORE_BINS),
            &shape::histogram(&fraud, 0.0, 1.0, SCORE_BINS),
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
            legit.len(),
            fraud.len()
        ),
        svg,
    })
}

fn alerts_section(report: &HtmlReport) -> Result<Section, HtmlError> {
    let rows = &report.periods.rows;
    let labels: Vec<String> = rows.iter().map(|p| p.label.clone()).collect();
    let series = |name: &str, colour, f: fn(&super::Period) -> u64| Line {
        name: name.to_string(),
        colour,
        values: rows.iter().map(|p| Some(f(p) as f64)).collect(),
    };
    let bars = [
        series("alerts", plots::BLUE, |p| p.alerts),
        series("fraud caught", plots::RED, |p| p.fraud_caught),
    ];
    let lines = [series("all fraud", plots::ORANGE, |p| p.fraud)];
    let unit = &report.periods.unit;
    let svg = match rows.is_empty() {
        true => Err("no periods"),
        false => Ok(plots::per_period(
            "alerts per period",
            "events",
            &labels,
            &bars,
            &lines,
        )?),
    };
    Ok(Section {
        id: "alerts-per-period",
        title: "Alerts and fraud caught",
        caption: format!(
            "Per {unit} of event time: alerts raised (blue), fraud among them (red), and all \
             fraud (orange dots). The gap between the red bar and the orange dot is fraud missed \
             that {unit}."
        ),
        svg,
    })
}

/// The precision and recall lines per period: online against frozen when
/// the run learned, else at the threshold. The caption's reading follows.
fn quality_lines(report: &HtmlReport) -> (Vec<Line>, &'static str) {
    let rows = &report.periods.rows;
    let line = |name: &str, colour, values: Vec<Option<f64>>| Line {
        name: name.to_string(),
        colour,
        values,
    };
    let learned = rows
        .iter()
        .any(|p| p.online.is_some() || p.frozen.is_some());
    if !learned {
        let at: Vec<_> = rows.iter().map(|p| p.at_threshold()).collect();
        let lines = vec![
            line(
                "precision",
                plots::BLUE,
                at.iter().map(|q| q.precision).collect(),
            ),
            line(
                "recall",
                plots::GREEN,
                at.iter().map(|q| q.recall).collect(),
            ),
        ];
        return (
            lines,
            "at the alert threshold: precision is the share of alerts that were \
                        fraud, recall the share of fraud alerted",
        );
    }
    let pick = |f: fn(&super::Period) -> Option<super::PrecisionRecall>,
                g: fn(&super::PrecisionRecall) -> Option<f64>| {
        rows.iter()
            .map(|p| f(p).as_ref().and_then(g))
            .collect::<Vec<_>>()
    };
    let lines = vec![
        line(
            "precision, learning",
            plots::BLUE,
            pick(|p| p.online, |q| q.precision),
        ),
        line(
            "recall, learning",
            plots::GREEN,
            pick(|p| p.online, |q| q.recall),
        ),
        line(
            "precision, frozen",
            plots::LIGHT_BLUE,
            pick(|p| p.frozen, |q| q.precision),
        ),
        line(
            "recall, frozen",
            plots::LIGHT_GREEN,
            pick(|p| p.frozen, |q| q.recall),
        ),
    ];
    (
        lines,
        "with online learning (dark) and with the models frozen at the start (light), \
             each alerting on the budget's share of that period's events: where the dark lines \
             run above the light ones, learning from analysts' labels paid",
    )
}

fn quality_section(report: &HtmlReport) -> Result<Section, HtmlError> {
    let rows = &report.periods.rows;
    let labels: Vec<String> = rows.iter().map(|p| p.label.clone()).collect();
    let (lines, reading) = quality_lines(report);
    let drawn = lines.iter().any(|l| l.values.iter().any(Option::is_some));
    let svg = match drawn {
        false => Err("no period with alerts or fraud"),
        true => Ok(plots::per_period(
            "precision and recall per period",
            "share",
            &labels,
            &[],
            &lines,
        )?),
    };
    Ok(Section {
        id: "quality-per-period",
        title: "Precision and recall over time",
        caption: format!(
            "Per {} of event time, {reading}. A gap means the figure is undefined that {0} (no \
             alerts, or no fraud).",
            report.periods.unit
        ),
        svg,
    })
}

fn latency_section(latency_us: &[u64]) -> Result<Section, HtmlError> {
    let svg = match crate::eval::Latency::of(latency_us.to_vec()) {
        None => Err("no event latencies"),
        Some(l) => Ok(plots::latency(
            &shape::log_histogram(latency_us, LATENCY_BINS),
            l.p50 as f64 / 1e3,
            l.p99 as f64 / 1e3,
        )?),
    };
    Ok(Section {
        id: "latency",
        title: "Latency",
        caption: format!(
            "How long each of {} events took from being read to being routed, in bands of equal \
             ratio (log scale). Half the events took less than the p50 line, 99 in 100 less than \
             the p99 line.",
            latency_us.len()
        ),
        svg,
    })
}

fn throughput_section(points: &[(f64, f64)]) -> Result<Section, HtmlError> {
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
        svg,
    })
}

fn reasons_section(reasons: &[(String, u64)]) -> Result<Section, HtmlError> {
    let (top, rest) = shape::top_reasons(reasons, TOP_REASONS);
    let others = match rest {
        0 => String::new(),
        n => format!(" The other reasons had {n} alerts in all."),
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
        svg,
    })
}
