//! `backtest --html`: the page opens in a real headless browser (Debian's
//! chromium, which `.ci/run` installs), its screenshot is a real picture,
//! every plot's SVG is there with marks drawn in it, and no script fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use fraudflow::eval::html::PLOTS;

use crate::common::{json, run_ok, s};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Where the injected check writes its findings.
const CHECK_ID: &str = "render-check";

fn chromium() -> &'static Path {
    let path = Path::new(CHROMIUM);
    assert!(
        path.exists(),
        "this test opens the report in headless chromium at {CHROMIUM}, which is missing: \
         .ci/run installs it (apt-get install chromium)"
    );
    path
}

/// Runs headless chromium with a fresh profile under `dir` and `args`,
/// killed after two minutes; returns its standard output. Its output goes
/// to files, not pipes: a dumped DOM can pass a pipe's buffer, and chromium
/// would wait on it while this waits on chromium.
fn browse(dir: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let (stdout, stderr) = (temp_file(dir), temp_file(dir));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdout(stdout.reopen().unwrap())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium {args:?} ran past two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let errors = std::fs::read_to_string(stderr.path()).unwrap_or_default();
    assert!(status.success(), "chromium {args:?} failed: {errors}");
    std::fs::read_to_string(stdout.path()).unwrap()
}

fn temp_file(dir: &Path) -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new_in(dir).unwrap()
}

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// The findings the injected script wrote into the dumped DOM.
fn findings(dom: &str) -> Value {
    let open = format!("<pre id=\"{CHECK_ID}\">");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("the check wrote nothing; the DOM:\n{dom}"))
        + open.len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `page` with an error collector first in its head and, on load, a check
/// of every plot: its SVG, and the marks in it (elements drawn in a data
/// colour with a non-empty bounding box).
fn instrumented(page: &str) -> String {
    let palette: Vec<String> = fraudflow::eval::html::plots::PALETTE
        .iter()
        .map(|c| format!("\"#{:02x}{:02x}{:02x}\"", c.0, c.1, c.2))
        .collect();
    let script = format!(
        r#"<script>
window.__errors = [];
window.onerror = function (message) {{ window.__errors.push(String(message)); }};
window.addEventListener("load", function () {{
  var palette = [{palette}];
  var plots = [];
  document.querySelectorAll("section.plot").forEach(function (section) {{
    var svg = section.querySelector("svg"), marks = 0;
    if (svg) svg.querySelectorAll("*").forEach(function (el) {{
      var colour = ((el.getAttribute("fill") || "") + " " + (el.getAttribute("stroke") || "")).toLowerCase();
      if (!palette.some(function (p) {{ return colour.indexOf(p) >= 0; }})) return;
      var box = el.getBBox();
      if (box.width > 0 || box.height > 0) marks += 1;
    }});
    plots.push({{ id: section.id, svg: !!svg, marks: marks }});
  }});
  var pre = document.createElement("pre");
  pre.id = "{CHECK_ID}";
  pre.textContent = JSON.stringify({{ errors: window.__errors, plots: plots }});
  document.body.appendChild(pre);
}});
</script>"#,
        palette = palette.join(",")
    );
    let head = page.find("<head>").expect("the page has a head") + "<head>".len();
    format!("{}\n{script}{}", &page[..head], &page[head..])
}

/// A page showing `png` (as a data URL) that, on load, reports its size and
/// how many colours a grid of its pixels holds.
fn picture_check(png: &[u8]) -> String {
    format!(
        r#"<!DOCTYPE html><html><head><script>
window.addEventListener("load", function () {{
  var img = document.getElementById("shot"), c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  var g = c.getContext("2d"); g.drawImage(img, 0, 0);
  var seen = {{}}, data = g.getImageData(0, 0, c.width, c.height).data;
  for (var i = 0; i < data.length; i += 4 * 97) seen[data[i] + "," + data[i + 1] + "," + data[i + 2]] = 1;
  var pre = document.createElement("pre"); pre.id = "{CHECK_ID}";
  pre.textContent = JSON.stringify({{ width: c.width, height: c.height, colours: Object.keys(seen).length }});
  document.body.appendChild(pre);
}});
</script></head><body><img id="shot" src="data:image/png;base64,{}"></body></html>"#,
        base64(png)
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            let c = ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char;
            out.push(if k <= chunk.len() { c } else { '=' });
        }
    }
    out
}

/// Runs a small backtest with feedback (so the page sets learning against
/// the frozen models) and returns the page's path.
fn backtest_page(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    let page = dir.join("report.html");
    run_ok(&[
        "backtest",
        "--rows",
        "20000",
        "--feedback",
        "--drift-at",
        "200",
        "--out",
        s(&out),
        "--html",
        s(&page),
        "--quiet",
    ]);
    let manifest = json(&out.join("backtest.manifest.json"));
    let named = manifest["files"].as_array().unwrap().iter();
    let names: Vec<&str> = named.filter_map(|f| f["name"].as_str()).collect();
    assert!(names.contains(&s(&page)), "the manifest names {names:?}");
    page
}

/// The page's key figures give the learner's updates and the recovery
/// after `--drift-at 200` as report.json has them.
fn the_key_figures_name_the_learning_and_the_recovery(html: &str, dir: &Path) {
    let report = json(&dir.join("out").join("report.json"));
    let f = &report["feedback"];
    let updates = format!(
        "{} updates: {} promoted, {} refused, {} rolled back",
        f["updates"], f["promoted"], f["refused"], f["rolled_back"]
    );
    assert!(html.contains(&updates), "no {updates:?} on the page");
    let rec = &report["recovery"];
    for (k, w) in rec["after"].as_array().unwrap().iter().enumerate() {
        let (from, to) = (200 + 24 * k as u64, 224 + 24 * k as u64);
        assert_eq!(
            (w["from_hour"].as_u64(), w["to_hour"].as_u64()),
            (Some(from), Some(to))
        );
        let line = format!("Recall in hours {from}..{to}");
        assert!(html.contains(&line), "no {line:?} on the page");
    }
    let verdict = match rec["met"].as_bool() {
        Some(true) => "<td>met</td>",
        Some(false) => "<td>not met</td>",
        None => "<td>not judged (no fraud)</td>",
    };
    assert!(html.contains(verdict), "no verdict {verdict:?} on the page");
}

#[test]
fn backtest_html_renders_every_plot_in_a_browser() {
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let page = backtest_page(dir.path());
    let html = std::fs::read_to_string(&page).unwrap();
    // Nothing fetched: no link, script, source, reference or import (the
    // SVG's xmlns names a namespace; nothing loads it).
    for fetch in ["<link", "<script", " src=", "href=", "url(", "@import"] {
        assert!(!html.contains(fetch), "the page fetches something: {fetch}");
    }
    the_key_figures_name_the_learning_and_the_recovery(&html, dir.path());

    let shot = dir.path().join("shot.png");
    browse(
        dir.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,6000".to_string(),
            url(&page),
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let picture = dir.path().join("picture.html");
    std::fs::write(&picture, picture_check(&png)).unwrap();
    let seen = findings(&browse(
        dir.path(),
        &["--dump-dom".to_string(), url(&picture)],
    ));
    assert_eq!(
        (seen["width"].as_u64(), seen["height"].as_u64()),
        (Some(1280), Some(6000))
    );
    assert!(
        seen["colours"].as_u64() > Some(8),
        "a flat screenshot: {seen}"
    );

    let checked = dir.path().join("checked.html");
    std::fs::write(&checked, instrumented(&html)).unwrap();
    let dom = browse(dir.path(), &["--dump-dom".to_string(), url(&checked)]);
    let found = findings(&dom);
    assert_eq!(found["errors"], serde_json::json!([]), "script errors");
    let plots = found["plots"].as_array().unwrap();
    assert_eq!(plots.len(), PLOTS.len(), "{} plots: {found}", PLOTS.len());
    for id in PLOTS {
        let plot = plots.iter().find(|p| p["id"] == id);
        let plot = plot.unwrap_or_else(|| panic!("no section {id}: {found}"));
        assert_eq!(plot["svg"], true, "{id} has no SVG: {found}");
        assert!(
            plot["marks"].as_u64() > Some(0),
            "{id} has no marks: {found}"
        );
    }
}
