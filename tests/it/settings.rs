//! The dataflow files: each parses, a bad one is refused before anything
//! starts (naming the file, the key and the line), every key is documented
//! in dataflows/README.md as in the code, and a backtest takes its settings
//! from a file with flags overriding it.

use std::collections::BTreeMap;
use std::path::Path;

use fraudflow::settings::DataflowFile;

use crate::common::{fraudflow, generated, json, run_ok, s, train};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn every_dataflow_file_parses_and_has_its_source() {
    let local = DataflowFile::load(&repo("dataflows/local.toml")).unwrap();
    assert!(local.source.http.is_some() && local.source.file.is_none());
    let backtest = DataflowFile::load(&repo("dataflows/backtest.toml")).unwrap();
    assert!(backtest.source.file.is_some());
    let live = DataflowFile::load(&repo("dataflows/live.toml")).unwrap();
    assert!(live.source.kafka.is_some());
    for file in [&local, &backtest, &live] {
        assert!(!file.description.is_empty());
    }
}

const GOOD: &str = "[source.http]\nlisten = \"127.0.0.1:1\"\n\n[models]\ndir = \"models\"\n\n[sinks]\ndir = \"out\"\n";

/// `fraudflow run` of `text` as a file: its exit status and stderr, and
/// whether it created the sinks' directory (it must not: refused before
/// anything starts).
fn refused(dir: &Path, text: &str) -> String {
    let path = dir.join("bad.toml");
    let out = format!("{:?}", s(&dir.join("out")));
    std::fs::write(&path, text.replace("\"out\"", &out)).unwrap();
    let out = fraudflow(&["run", s(&path)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.join("out").exists(), "something started");
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn bad_files_are_refused_naming_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(DataflowFile::parse(Path::new("good.toml"), GOOD).is_ok());
    let unknown = refused(
        dir.path(),
        &GOOD.replace("dir = \"out\"", "dir = \"out\"\nflush_msec = 5"),
    );
    assert!(
        unknown.contains("bad.toml:9: key sinks.flush_msec: unknown field `flush_msec`"),
        "{unknown}"
    );
    let wrong_type = refused(
        dir.path(),
        &format!("{GOOD}\n[cluster]\nworkers = \"two\"\n"),
    );
    assert!(
        wrong_type.contains("bad.toml:11: key cluster.workers: invalid type: string \"two\""),
        "{wrong_type}"
    );
    let missing = refused(
        dir.path(),
        &GOOD.replace("dir = \"models\"", "poll_seconds = 1"),
    );
    assert!(
        missing.contains("bad.toml:4: key models.dir: missing field `dir`"),
        "{missing}"
    );
    let range = refused(
        dir.path(),
        &GOOD.replace("[models]", "tick_ms = 0\n\n[models]"),
    );
    assert!(
        range.contains("bad.toml:4: key source.http.tick_ms: must be at least 1"),
        "{range}"
    );
    // The ensemble scores in [0, 1]: a threshold outside alerts on all or none.
    for threshold in ["-5.0", "1.5", "1e308"] {
        let text = GOOD.replace(
            "dir = \"models\"",
            &format!("dir = \"models\"\nthreshold = {threshold}"),
        );
        let outside = refused(dir.path(), &text);
        assert!(
            outside.contains("key models.threshold: the threshold must be a number in [0, 1]"),
            "{outside}"
        );
    }
    let address = refused(dir.path(), &GOOD.replace("127.0.0.1:1", "localhost"));
    assert!(
        address.contains("bad.toml:2: key source.http.listen"),
        "{address}"
    );
    let two = refused(
        dir.path(),
        &format!("[source.file]\npath = \"x.csv\"\n{GOOD}"),
    );
    assert!(two.contains("give exactly one of [source.file]"), "{two}");
    let none = refused(dir.path(), "[models]\ndir = \"m\"\n[sinks]\ndir = \"o\"\n");
    assert!(
        none.contains("bad.toml:1: key source: missing field `source`"),
        "{none}"
    );
}

/// `(table, key) -> doc` of every field of the settings structs, from the
/// source: a struct's table is named by its doc line `` `[table]` ``, the
/// top-level struct's is empty.
fn documented_in_code() -> BTreeMap<(String, String), String> {
    let text = ["src/settings/mod.rs", "src/settings/kafka.rs"]
        .map(|f| std::fs::read_to_string(repo(f)).unwrap())
        .join("\n");
    let (mut table, mut doc, mut in_struct) = (None::<String>, Vec::new(), false);
    let mut keys = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
            continue;
        }
        if line.starts_with("pub struct ") {
            let first = doc.first().cloned().unwrap_or_default();
            table = match first.split('`').nth(1) {
                Some(t) if t.starts_with('[') => Some(t.trim_matches(['[', ']']).to_string()),
                _ if line.starts_with("pub struct DataflowFile") => Some(String::new()),
                _ => None,
            };
            in_struct = true;
        } else if line == "}" {
            in_struct = false;
        } else if let (true, Some(t), Some(field)) = (in_struct, &table, line.strip_prefix("pub "))
        {
            let name = field.split(':').next().unwrap().to_string();
            keys.insert((t.clone(), name), doc.join(" "));
        }
        if !line.starts_with("#[") {
            doc.clear();
        }
    }
    keys
}

/// `(table, key) -> meaning` of every row of dataflows/README.md's tables.
fn documented_in_readme() -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(repo("dataflows/README.md")).unwrap();
    let mut table = None::<String>;
    let mut keys = BTreeMap::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            table = Some(if h == "top level" {
                String::new()
            } else {
                h.trim_matches(['`', '[', ']']).to_string()
            });
        } else if let (Some(t), Some(row)) = (&table, line.strip_prefix("| `")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let key = cells[0].trim_end_matches('`').to_string();
            let meaning = cells.last().unwrap().trim_end_matches(" |").to_string();
            keys.insert((t.clone(), key), meaning);
        }
    }
    keys
}

#[test]
fn every_key_is_documented_as_in_the_code() {
    let code = documented_in_code();
    let readme = documented_in_readme();
    assert!(code.len() > 20, "{code:?}");
    let code_keys: Vec<_> = code.keys().collect();
    let readme_keys: Vec<_> = readme.keys().collect();
    assert_eq!(
        code_keys, readme_keys,
        "the README's keys differ from the code's"
    );
    for (key, doc) in &code {
        assert_eq!(&readme[key], doc, "{key:?}: the README says otherwise");
    }
}

#[test]
fn a_backtest_reads_a_dataflow_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 9);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let file = dir.path().join("bt.toml");
    let text = format!(
        "description = \"test\"\n[source.file]\npath = {:?}\n[models]\ndir = {:?}\n[sinks]\ndir = {:?}\n[cluster]\nworkers = 2\n",
        s(&input),
        s(&models),
        s(&dir.path().join("from-file"))
    );
    std::fs::write(&file, text).unwrap();
    run_ok(&["backtest", "--dataflow", s(&file), "--quiet"]);
    let report = json(&dir.path().join("from-file/report.json"));
    assert_eq!(
        (report["events_in"].as_u64(), report["workers"].as_u64()),
        (Some(20_000), Some(2))
    );
    let other = dir.path().join("from-flag");
    run_ok(&[
        "backtest",
        "--dataflow",
        s(&file),
        "--out",
        s(&other),
        "-w",
        "1",
        "--quiet",
    ]);
    assert_eq!(json(&other.join("report.json"))["workers"], 1);
    let first = std::fs::read(dir.path().join("from-file/alerts.jsonl")).unwrap();
    assert_eq!(first, std::fs::read(other.join("alerts.jsonl")).unwrap());
}
