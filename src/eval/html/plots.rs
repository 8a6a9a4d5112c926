//! The report's plots, each drawn by plotters' SVG backend into a string
//! that the page holds inline. Data marks (lines, bars, points) take their
//! colour from [`PALETTE`] and nothing else does, so a check of the page
//! can tell marks from the frame, the grid and the text.

use plotters::chart::MeshStyle;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::shape::{LogBin, PrPoint};
use super::HtmlError;

/// Plot width and height in pixels; the page scales them to its width.
const WIDTH: u32 = 960;
const HEIGHT: u32 = 420;

pub const BLUE: RGBColor = RGBColor(0x25, 0x63, 0xEB);
pub const RED: RGBColor = RGBColor(0xDC, 0x26, 0x26);
pub const GREEN: RGBColor = RGBColor(0x16, 0xA3, 0x4A);
pub const ORANGE: RGBColor = RGBColor(0xEA, 0x58, 0x0C);
pub const PURPLE: RGBColor = RGBColor(0x93, 0x33, 0xEA);
pub const TEAL: RGBColor = RGBColor(0x0D, 0x94, 0x88);
pub const LIGHT_BLUE: RGBColor = RGBColor(0x93, 0xC5, 0xFD);
pub const LIGHT_GREEN: RGBColor = RGBColor(0x86, 0xEF, 0xAC);

/// Every colour a data mark is drawn in.
pub const PALETTE: [RGBColor; 8] = [
    BLUE,
    RED,
    GREEN,
    ORANGE,
    PURPLE,
    TEAL,
    LIGHT_BLUE,
    LIGHT_GREEN,
];

/// The frame, grid and text colours: none of them in [`PALETTE`].
const AXIS: RGBColor = RGBColor(0x4B, 0x55, 0x63);
const GRID: RGBColor = RGBColor(0xE5, 0xE7, 0xEB);
const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawError = DrawingAreaErrorKind<std::io::Error>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One plot as an SVG document: `draw` draws onto a white area of the
/// plot's size.
fn svg<F>(plot: &'static str, draw: F) -> Result<String, HtmlError>
where
    F: FnOnce(&Area) -> Result<(), DrawError>,
{
    let failed = |e: DrawError| HtmlError::Plot {
        plot,
        message: e.to_string(),
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        draw(&root).map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(out)
}

/// A chart builder with the report's margins and label areas.
fn builder<'a, 'b>(root: &'a Area<'b>, y_labels_px: u32) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.margin(16)
        .margin_right(28)
        .x_label_area_size(52)
        .y_label_area_size(y_labels_px);
    b
}

/// The report's grid, axes and labels on any chart.
fn style_mesh<X: Ranged, Y: Ranged>(m: &mut MeshStyle<'_, '_, X, Y, SVGBackend<'_>>) {
    m.axis_style(AXIS)
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .label_style((FONT, 15).into_font().color(&AXIS))
        .axis_desc_style((FONT, 16).into_font().color(&AXIS));
}

/// A number for an axis: short, grouped by thousands as k and M.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        // Thresholds lie far below 0.1: two significant digits.
        let digits = (1 - a.log10().floor() as i32).clamp(2, 12) as usize;
        format!("{v:.digits$}")
    }
}

/// A share for an axis, as a percentage.
fn percent(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

/// One model's precision-recall curve for [`pr_curves`].
pub struct Curve {
    pub colour: RGBColor,
    pub width: u32,
    pub points: Vec<PrPoint>,
}

/// Precision against recall, a line per model, in the order given (later
/// lines on top). Each starts at recall 0 with its first point's
/// precision, as precision-recall plots do.
pub fn pr_curves(curves: &[Curve]) -> Result<String, HtmlError> {
    svg("precision-recall curve", |root| {
        let mut chart = builder(root, 72).build_cartesian_2d(0f64..1.0, 0f64..1.02)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("recall: share of fraud alerted")
            .y_desc("precision: share of alerts that are fraud")
            .x_label_formatter(&|v| percent(*v))
            .y_label_formatter(&|v| percent(*v));
        style_mesh(&mut mesh);
        mesh.draw()?;
        for c in curves {
            let start = c.points.first().map(|p| (0.0, p.precision));
            let line = start
                .into_iter()
                .chain(c.points.iter().map(|p| (p.recall, p.precision)));
            chart.draw_series(LineSeries::new(line, c.colour.stroke_width(c.width)))?;
        }
        Ok(())
    })
}

/// Counts of events per score bin for each class, on a log axis, and the
/// threshold.
pub fn score_distribution(
    legit: &[u64],
    fraud: &[u64],
    threshold: f64,
) -> Result<String, HtmlError> {
    let top = legit.iter().chain(fraud).copied().max().unwrap_or(1).max(1) as f64;
    svg("score distribution", |root| {
        let y = (0.7f64..top * 2.5).log_scale();
        let mut chart = builder(root, 72).build_cartesian_2d(0f64..1.0, y)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("ensemble score")
            .y_desc("events (log scale)")
            .y_label_formatter(&|v| short(*v));
        style_mesh(&mut mesh);
        mesh.draw()?;
        for (counts, colour) in [(legit, BLUE), (fraud, RED)] {
            let width = 1.0 / counts.len().max(1) as f64;
            let bars = counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| {
                    let x = i as f64 * width;
                    Rectangle::new(
                        [(x, 0.7), (x + width, *c as f64)],
                        colour.mix(0.55).filled(),
                    )
                });
            chart.draw_series(bars)?;
        }
        let line = [(threshold, 0.7), (threshold, top * 2.5)];
        chart.draw_series(LineSeries::new(line, ORANGE.stroke_width(3)))?;
        Ok(())
    })
}

/// A series for [`per_period`]: its colour, width, whether its points
/// are joined, and the values by period (a gap where `None`).
pub struct Line {
    pub colour: RGBColor,
    pub width: u32,
    pub join: bool,
    pub values: Vec<Option<f64>>,
}

/// A plot over periods: bars side by side, then lines over them.
pub struct PerPeriod<'a> {
    pub plot: &'static str,
    /// The periods' names on the x axis, and the axes' titles.
    pub labels: &'a [String],
    pub x_desc: String,
    pub y_desc: &'a str,
    /// Values are shares, shown as percentages from 0 to 100 %.
    pub shares: bool,
    pub bars: &'a [Line],
    pub lines: &'a [Line],
}

/// Bars per period (side by side), with lines over them.
pub fn per_period(p: &PerPeriod) -> Result<String, HtmlError> {
    let n = p.labels.len().max(1);
    let all = p
        .bars
        .iter()
        .chain(p.lines)
        .flat_map(|l| l.values.iter().flatten());
    let top = match p.shares {
        true => 1.05,
        false => all.fold(0f64, |m, v| m.max(*v)).max(1.0) * 1.1,
    };
    let label = |v: &f64| {
        let i = v.round();
        let on_one = (v - i).abs() < 1e-6 && i >= 0.0;
        let name = on_one.then(|| p.labels.get(i as usize)).flatten();
        name.cloned().unwrap_or_default()
    };
    let y_label = |v: &f64| if p.shares { percent(*v) } else { short(*v) };
    svg(p.plot, |root| {
        let x = -0.5f64..n as f64 - 0.5;
        let mut chart = builder(root, 72).build_cartesian_2d(x, 0f64..top)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_labels(n.min(16))
            .x_label_formatter(&label)
            .disable_x_mesh();
        mesh.x_desc(p.x_desc.as_str())
            .y_desc(p.y_desc)
            .y_label_formatter(&y_label);
        style_mesh(&mut mesh);
        mesh.draw()?;
        draw_bars(&mut chart, p.bars)?;
        p.lines.iter().try_for_each(|l| draw_line(&mut chart, l))
    })
}

/// Bars side by side within each period's slot.
fn draw_bars<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, bars: &[Line]) -> Result<(), DrawError> {
    let width = 0.8 / bars.len().max(1) as f64;
    for (k, b) in bars.iter().enumerate() {
        let rects = b.values.iter().enumerate().filter_map(|(i, v)| {
            let x = i as f64 - 0.4 + k as f64 * width;
            v.filter(|v| *v > 0.0)
                .map(|v| Rectangle::new([(x, 0.0), (x + width, v)], b.colour.filled()))
        });
        chart.draw_series(rects)?;
    }
    Ok(())
}

/// A line's dots, and when joined its runs of defined values: a `None`
/// breaks the line.
fn draw_line<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, l: &Line) -> Result<(), DrawError> {
    let points = l
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| v.map(|v| (i as f64, v)));
    let points: Vec<Option<(f64, f64)>> = points.collect();
    if l.join {
        for run in points.split(Option::is_none).filter(|r| r.len() > 1) {
            let run = run.iter().flatten().copied();
            chart.draw_series(LineSeries::new(run, l.colour.stroke_width(l.width)))?;
        }
    }
    let dots = points.into_iter().flatten();
    let size = l.width + 2;
    chart.draw_series(dots.map(|p| Circle::new(p, size, l.colour.filled())))?;
    Ok(())
}

/// The latency histogram on a log axis in milliseconds, with the median
/// and the 99th percentile marked.
pub fn latency(bins: &[LogBin], p50_ms: f64, p99_ms: f64) -> Result<String, HtmlError> {
    let lo = bins.first().map_or(0.001, |b| b.lo / 1e3);
    let hi = bins.last().map_or(1.0, |b| b.hi / 1e3).max(lo * 1.01);
    let top = bins.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64 * 1.1;
    svg("latency histogram", |root| {
        let x = (lo..hi).log_scale().with_key_points(log_ticks(lo, hi));
        let mut chart = builder(root, 72).build_cartesian_2d(x, 0f64..top)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("latency, read to routed (ms, log scale)")
            .y_desc("events")
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v));
        style_mesh(&mut mesh);
        mesh.draw()?;
        let rects = bins.iter().filter(|b| b.count > 0).map(|b| {
            let area = [(b.lo / 1e3, 0.0), (b.hi / 1e3, b.count as f64)];
            Rectangle::new(area, TEAL.mix(0.8).filled())
        });
        chart.draw_series(rects)?;
        for (at, colour) in [(p50_ms, ORANGE), (p99_ms, RED)] {
            let line = [(at, 0.0), (at, top)];
            chart.draw_series(LineSeries::new(line, colour.stroke_width(3)))?;
        }
        Ok(())
    })
}

/// Ticks of a log axis from `lo` to `hi`: 1, 2 and 5 times each power of
/// ten in range, or only the powers over more than four decades.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let steps: &[f64] = if hi / lo > 1e4 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let mut ticks = Vec::new();
    let mut power = 10f64.powf(lo.log10().floor());
    while power <= hi {
        let inside = steps
            .iter()
            .map(|s| s * power)
            .filter(|t| (lo..=hi).contains(t));
        ticks.extend(inside);
        power *= 10.0;
    }
    ticks
}

/// Events per second over the run.
pub fn throughput(points: &[(f64, f64)]) -> Result<String, HtmlError> {
    let end = points.iter().map(|p| p.0).fold(0f64, f64::max).max(1e-3);
    let top = points.iter().map(|p| p.1).fold(0f64, f64::max).max(1.0) * 1.1;
    svg("throughput", |root| {
        let mut chart = builder(root, 72).build_cartesian_2d(0f64..end, 0f64..top)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("seconds since the first event was read")
            .y_desc("events per second")
            .y_label_formatter(&|v| short(*v));
        style_mesh(&mut mesh);
        mesh.draw()?;
        let line: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
            .chain(points.iter().copied())
            .collect();
        chart.draw_series(AreaSeries::new(line.clone(), 0.0, BLUE.mix(0.15)))?;
        chart.draw_series(LineSeries::new(line, BLUE.stroke_width(3)))?;
        Ok(())
    })
}

/// Alerts per reason as horizontal bars, the first at the top.
pub fn reasons(top: &[(String, u64)]) -> Result<String, HtmlError> {
    let k = top.len().max(1);
    let most = top.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64 * 1.1;
    // Row i from the top sits at y = k - 1 - i.
    let name = |v: &f64| {
        let row = v.round();
        if (v - row).abs() > 1e-6 || !(0.0..k as f64).contains(&row) {
            return String::new();
        }
        top.get(k - 1 - row as usize)
            .map(|r| r.0.clone())
            .unwrap_or_default()
    };
    svg("alert reasons", |root| {
        let y = -0.5f64..k as f64 - 0.5;
        let mut chart = builder(root, 250).build_cartesian_2d(0f64..most, y)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("alerts")
            .y_labels(k)
            .y_label_formatter(&name)
            .x_label_formatter(&|v| short(*v))
            .disable_y_mesh();
        style_mesh(&mut mesh);
        mesh.draw()?;
        let bars = top.iter().enumerate().map(|(i, (_, count))| {
            let y = (k - 1 - i) as f64;
            Rectangle::new([(0.0, y - 0.36), (*count as f64, y + 0.36)], BLUE.filled())
        });
        chart.draw_series(bars)?;
        Ok(())
    })
}
