//! The report a risk lead opens: one self-contained HTML page (no network,
//! no script, no external file) with the run's key figures and its plots
//! drawn in Rust as inline SVG.
//!
//! Why one plain input struct: the backtest (`backtest --html FILE`) and the
//! live demo gather their figures in different ways, and both fill
//! [`HtmlReport`]; everything the page shows is shaped from it here, so the
//! two pages read the same way and the shaping is tested once.

pub mod backtest;
mod page;
pub mod plots;
pub mod scores;
mod sections;
pub mod shape;

use thiserror::Error;

use crate::eval::tally::Latencies;
pub use scores::ScoreFigures;

/// Points drawn of each precision-recall curve, at most (about).
pub const CURVE_POINTS: usize = 400;
/// Bins of the score distribution over [0, 1].
pub const SCORE_BINS: usize = 50;

/// The ids of the page's plot sections (`<section id=...>`), in page
/// order: what a check of the rendered page looks for.
pub const PLOTS: [&str; 8] = [
    "pr-curve",
    "score-distribution",
    "alerts-per-period",
    "quality-per-period",
    "threshold-per-period",
    "latency",
    "throughput",
    "reasons",
];

/// Everything the page shows. Empty vectors are fine: each plot then says
/// "no data" instead of drawing an empty frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HtmlReport {
    /// The page's heading, e.g. "fraudflow backtest" or "fraudflow demo".
    pub title: String,
    /// Key figures, shown in order as a table at the top: (name, value),
    /// already formatted for people.
    pub facts: Vec<(String, String)>,
    /// The alert threshold on the ensemble score (a vertical line on the
    /// score distribution).
    pub threshold: f64,
    /// The labelled events' scores: each model's precision-recall curve
    /// over every one, and the ensemble's score by class (see
    /// [`scores::ScoreTally`]).
    pub scores: ScoreFigures,
    /// Figures per period of event time (days in a backtest).
    pub periods: Periods,
    /// The events' latencies in microseconds (source read to routed).
    pub latency: Latencies,
    /// Throughput over the run: (seconds since the start, events per
    /// second over the interval ending then), in time order.
    pub throughput: Vec<(f64, f64)>,
    /// Alerts by reason (the feature that pushed the score most): (reason,
    /// alerts), in any order; the page shows the largest.
    pub reasons: Vec<(String, u64)>,
}

/// One labelled event's scores, each in [0, 1], higher meaning more likely
/// fraud.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScoredEvent {
    pub fraud: bool,
    /// The ensemble's score: the one the threshold applies to.
    pub ensemble: f64,
    pub forest: f64,
    pub autoencoder: f64,
    pub logistic: f64,
}

/// Figures per period of event time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Periods {
    /// The period's unit, for axis labels: "day", "10 s".
    pub unit: String,
    /// The periods, in time order.
    pub rows: Vec<Period>,
}

/// One period. Precision and recall at the threshold are computed from the
/// counts: precision = caught / alerts, recall = caught / fraud.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Period {
    /// The period's name on the axis: "3" (day 3), "12:00:10".
    pub label: String,
    pub events: u64,
    /// Alerts raised (each alerted event labelled, as in a backtest).
    pub alerts: u64,
    /// Fraud events, and those among them that raised an alert.
    pub fraud: u64,
    pub fraud_caught: u64,
    /// With online learning: the learning model's figures (a backtest
    /// with `--feedback`: at the budget, from report.json's `learning`).
    pub online: Option<PrecisionRecall>,
    /// The frozen models' figures, measured the same way as `online`.
    pub frozen: Option<PrecisionRecall>,
    /// The lowest and the highest alert threshold of the period's events.
    pub threshold: Option<(f64, f64)>,
}

/// Precision and recall; each `None` where undefined (no alerts, no fraud).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PrecisionRecall {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// Why a page could not be drawn.
#[derive(Debug, Error)]
pub enum HtmlError {
    /// A plot failed to draw (the SVG backend reports a message).
    #[error("drawing the plot {plot:?}: {message}")]
    Plot { plot: &'static str, message: String },
    /// A number the page must place is not finite.
    #[error("{what} is {value}, not a finite number")]
    NotFinite { what: &'static str, value: f64 },
}

/// The page of `report`: a complete HTML document.
///
/// ```
/// use fraudflow::eval::html::{render, HtmlReport};
/// let page = render(&HtmlReport { title: "a <test>".into(), ..HtmlReport::default() }).unwrap();
/// assert!(page.contains("<h1>a &lt;test&gt;</h1>"));
/// assert!(page.contains("No data"));
/// ```
pub fn render(report: &HtmlReport) -> Result<String, HtmlError> {
    page::render(report)
}

pub use crate::progress::grouped;

/// `text` made safe as HTML text or a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
