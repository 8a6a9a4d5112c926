//! The page around the plots: the style sheet, the key-figures table, and
//! one titled section per plot with a caption saying how to read it and a
//! legend. All text from the report is escaped here; the plots' SVG comes
//! escaped from plotters.

use plotters::style::RGBColor;

use super::sections;
use super::{escape, HtmlError, HtmlReport};

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
p.caption{color:#4b5563;margin:0 0 10px}\
ul.legend{list-style:none;margin:0 0 6px;padding:0;display:flex;flex-wrap:wrap;gap:4px 20px;\
font-size:.9rem;color:#374151}\
ul.legend span{display:inline-block;width:22px;height:5px;border-radius:2px;\
vertical-align:middle;margin-right:7px}\
table.facts{border-collapse:collapse;width:100%}\
table.facts th,table.facts td{padding:7px 10px;border-bottom:1px solid #e5e7eb;text-align:left}\
table.facts th{color:#4b5563;font-weight:500;width:38%}\
table.facts td{font-variant-numeric:tabular-nums;font-weight:600}\
svg{display:block;width:100%;height:auto}\
p.nodata{margin:0;padding:36px;text-align:center;color:#6b7280;background:#f9fafb;\
border:1px dashed #d1d5db;border-radius:8px}\
footer{color:#6b7280;font-size:.85rem;text-align:center;padding:0 0 32px}";

/// One section of the page: a plot, or a note saying why there is none.
pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub caption: String,
    /// What each colour of the plot stands for, in order.
    pub legend: Vec<(String, RGBColor)>,
    /// The plot's SVG; `Err` holds the "no data" note.
    pub svg: Result<String, &'static str>,
}

impl Section {
    fn html(&self) -> String {
        let body = match &self.svg {
            Ok(svg) => format!("{}{svg}", legend(&self.legend)),
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

/// The legend above a plot: a swatch and a name per colour.
fn legend(items: &[(String, RGBColor)]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"legend\">");
    for (name, c) in items {
        out += &format!(
            "<li><span style=\"background:#{:02x}{:02x}{:02x}\"></span>{}</li>",
            c.0,
            c.1,
            c.2,
            escape(name)
        );
    }
    out + "</ul>\n"
}

/// The whole page.
pub fn render(report: &HtmlReport) -> Result<String, HtmlError> {
    if !report.threshold.is_finite() {
        return Err(HtmlError::NotFinite {
            what: "the threshold",
            value: report.threshold,
        });
    }
    let sections = sections::all(report)?;
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
