//! The parser and the schemas agree both ways: payloads generated from
//! schemas/event_v1.json parse, and each violation it documents lands in the
//! dead-letter output with its code, in the shape of schemas/dlq_v1.json;
//! a live run writes normal traffic and alerts in the shapes of
//! schemas/metrics_v1.json and schemas/alert_v1.json.

use std::path::Path;

use fraudflow::dataflow::json_event::{parse_event, paysim_event};
use serde_json::{Map, Value};

use crate::common::fraudflow;

fn schema(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Valid payloads made from the schema: the required fields alone, every
/// field, then each example of each field and each `type` in turn.
fn generated_payloads(schema: &Value) -> Vec<String> {
    let props = schema["properties"].as_object().unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let first = |name: &str| props[name]["examples"][0].clone();
    let minimal: Map<String, Value> = required
        .iter()
        .map(|&n| (n.to_string(), first(n)))
        .collect();
    let full: Map<String, Value> = props.keys().map(|n| (n.clone(), first(n))).collect();
    let mut payloads = vec![Value::Object(minimal), Value::Object(full.clone())];
    for (name, prop) in props {
        for example in prop["examples"].as_array().unwrap() {
            let mut p = full.clone();
            p.insert(name.clone(), example.clone());
            payloads.push(Value::Object(p));
        }
    }
    for kind in props["type"]["enum"].as_array().unwrap() {
        let mut p = full.clone();
        p.insert("type".to_string(), kind.clone());
        payloads.push(Value::Object(p));
    }
    for label in schema["$defs"]["label"]["enum"].as_array().unwrap() {
        let mut p = full.clone();
        p.insert("label".to_string(), label.clone());
        payloads.push(Value::Object(p));
    }
    payloads.iter().map(|p| p.to_string()).collect()
}

/// Each documented violation, as the line to send, with its code: `raw`
/// is the line as text, `raw_hex` as bytes (for lines that are not UTF-8),
/// `payload` a padded event of a given size.
fn violations(schema: &Value) -> Vec<(Vec<u8>, String)> {
    schema["x-dead-letter-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let code = v["code"].as_str().unwrap().to_string();
            let line = if let Some(raw) = v.get("raw") {
                raw.as_str().unwrap().as_bytes().to_vec()
            } else if let Some(hex) = v.get("raw_hex") {
                let hex = hex.as_str().unwrap();
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect()
            } else {
                let spec = &v["payload"];
                let pad = spec["repeat"]
                    .as_str()
                    .unwrap()
                    .repeat(spec["bytes"].as_u64().unwrap() as usize);
                format!("{{\"event_id\":\"big\",\"pad\":\"{pad}\"}}").into_bytes()
            };
            (line, code)
        })
        .collect()
}

#[test]
fn payloads_generated_from_the_event_schema_parse() {
    let schema = schema("event_v1.json");
    let payloads = generated_payloads(&schema);
    assert!(payloads.len() > 20);
    for (i, p) in payloads.iter().enumerate() {
        let event = parse_event(p, i as u64).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(event.amount >= 0.0);
    }
}

#[test]
fn every_documented_violation_has_its_code() {
    let schema = schema("event_v1.json");
    let cases = violations(&schema);
    let codes: std::collections::BTreeSet<&str> = cases.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(codes.len(), 11, "one case at least per code: {codes:?}");
    for (line, code) in &cases {
        let text = String::from_utf8_lossy(line);
        let err = parse_event(line, 0).expect_err(&text);
        assert_eq!(err.code(), code, "{text:.200}");
    }
}

/// Through the dataflow: a mixed file, counted and routed.
#[test]
fn violations_land_in_the_dead_letter_file_in_its_schema() {
    let event_schema = schema("event_v1.json");
    let dlq_schema = schema("dlq_v1.json");
    let valid = generated_payloads(&event_schema);
    let bad = violations(&event_schema);
    let mut lines = Vec::new();
    let mut want_codes = Vec::new();
    for (i, v) in valid.iter().enumerate() {
        lines.push(v.clone().into_bytes());
        if let Some((line, code)) = bad.get(i) {
            lines.push(line.clone());
            want_codes.push(code.clone());
        }
    }
    assert_eq!(want_codes.len(), bad.len());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines.join(&b"\n"[..])).unwrap();
    let out = dir.path().join("features.csv");
    let run = fraudflow(&[
        "features",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-w",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let summary = format!(
        "{} events in = {} valid + {} dead letters",
        lines.len(),
        valid.len(),
        bad.len()
    );
    assert!(stderr.contains(&summary), "{stderr}");

    let features = std::fs::read_to_string(&out).unwrap();
    assert_eq!(features.lines().count(), valid.len() + 1);
    // In input order (one epoch holds them all): the minimal payload, with
    // no label, then the full one, labelled 0.
    let mut rows = features.lines().skip(1);
    for want in ["evt-000001,,,", "evt-000001,,0,"] {
        let row = rows.next().unwrap();
        assert!(row.starts_with(want), "{want}: {features:.300}");
    }

    let dead = std::fs::read_to_string(dir.path().join("features.dead-letter.jsonl")).unwrap();
    let props = dlq_schema["properties"].as_object().unwrap();
    let mut got_codes = Vec::new();
    for line in dead.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        for required in dlq_schema["required"].as_array().unwrap() {
            assert!(obj.contains_key(required.as_str().unwrap()), "{line:.200}");
        }
        for (key, value) in obj {
            let prop = props
                .get(key)
                .unwrap_or_else(|| panic!("{key} is not in dlq_v1.json"));
            match prop.get("type").and_then(Value::as_str) {
                Some("string") => assert!(value.is_string(), "{key}"),
                Some("integer") => assert!(value.is_u64(), "{key}"),
                _ => assert!(prop["enum"].as_array().unwrap().contains(value), "{key}"),
            }
        }
        assert!(v["raw"].as_str().unwrap().len() <= 4_096);
        got_codes.push(v["code"].as_str().unwrap().to_string());
    }
    assert_eq!(got_codes, want_codes);
}

/// Checks `value` against the parts of JSON Schema our schemas use: type,
/// enum, required, properties, additionalProperties, minimum, maximum,
/// exclusiveMinimum, maxItems, items. `at` names the place for messages.
fn check_against(schema: &Value, value: &Value, at: &str) {
    let ok = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    assert!(ok, "{at}: {value} is not of type {}", schema["type"]);
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        assert!(allowed.contains(value), "{at}: {value} not in {allowed:?}");
    }
    let n = value.as_f64();
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), n) {
        assert!(n >= min, "{at}: {n} < {min}");
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), n) {
        assert!(n <= max, "{at}: {n} > {max}");
    }
    if let (Some(min), Some(n)) = (schema.get("exclusiveMinimum").and_then(Value::as_f64), n) {
        assert!(n > min, "{at}: {n} <= {min}");
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            assert!(items.len() as u64 <= max, "{at}: more than {max} items");
        }
        for (i, item) in items.iter().enumerate() {
            check_against(&schema["items"], item, &format!("{at}[{i}]"));
        }
    }
    let Some(obj) = value.as_object() else { return };
    for required in schema["required"].as_array().into_iter().flatten() {
        let key = required.as_str().unwrap();
        assert!(obj.contains_key(key), "{at}: no {key} in {value}");
    }
    let props = schema["properties"].as_object();
    for (key, v) in obj {
        match props.and_then(|p| p.get(key)) {
            Some(prop) => check_against(prop, v, &format!("{at}.{key}")),
            None => assert!(
                schema["additionalProperties"] != Value::Bool(false),
                "{at}: {key} is not in the schema"
            ),
        }
    }
}

/// Every JSON line of the files named `prefix*` in `dir`.
fn json_lines_of(dir: &Path, prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(prefix)
        {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    out
}

/// A child process, killed if the test fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// Posts `body` (`n` events) to the run at `base` once it listens, waits
/// until it has routed them all, and stops it with SIGTERM, which drains
/// the sinks: every line is whole when it exits.
fn post_and_drain(run: &mut KillOnDrop, base: &str, body: &str, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let written = loop {
        let posted = ureq::post(&format!("{base}/events")).send(body.as_bytes());
        if posted.is_ok() || std::time::Instant::now() > deadline {
            break posted.map(|_| ());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    written.unwrap();
    let health = || -> Value {
        let mut reply = ureq::get(&format!("{base}/health")).call().unwrap();
        serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap()
    };
    let routed = |h: &Value| h["alerts"].as_u64().unwrap() + h["normal"].as_u64().unwrap();
    while routed(&health()) < n && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SIGTERM drains the sinks: every line is whole when it exits.
    let pid = libc::pid_t::try_from(run.0.id()).unwrap();
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(run.0.wait().unwrap().success());
}

/// A live run's outputs in their schemas: normal traffic (the metrics
/// sink) in metrics_v1.json, alerts in alert_v1.json.
#[test]
fn a_live_runs_normal_traffic_and_alerts_are_in_their_schemas() {
    use crate::common::{free_port, generated, s, train};
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 20_000, 5);
    let models = dir.path().join("models");
    train(&input, &models, &[]);
    let (out, port) = (dir.path().join("out"), free_port());
    let flow = dir.path().join("flow.toml");
    let text = format!(
        "[source.http]\nlisten = \"127.0.0.1:{port}\"\nlateness_ms = 5000\n\
         [models]\ndir = {:?}\npoll_seconds = 0\n[sinks]\ndir = {:?}\nflush_ms = 50\n",
        s(&models),
        s(&out)
    );
    std::fs::write(&flow, text).unwrap();
    let mut run = KillOnDrop(crate::common::spawn(&["run", s(&flow), "--quiet"], None));
    let rows = fraudflow::generate::Generator::new(
        fraudflow::generate::GeneratorParams::new(2_000, 9)
            .check()
            .unwrap(),
    );
    let now = fraudflow::clock::now_millis();
    let body: String = rows
        .enumerate()
        .map(|(i, t)| paysim_event(&t, &format!("m{i}"), now).to_string() + "\n")
        .collect();
    post_and_drain(&mut run, &format!("http://127.0.0.1:{port}"), &body, 2_000);
    let (normal, alerts) = (json_lines_of(&out, "normal"), json_lines_of(&out, "alerts"));
    assert_eq!(normal.len() + alerts.len(), 2_000);
    assert!(!normal.is_empty());
    let (metrics_schema, alert_schema) = (schema("metrics_v1.json"), schema("alert_v1.json"));
    for line in &normal {
        check_against(&metrics_schema, line, "normal");
        let time = fraudflow::clock::parse_millis(line["event_time"].as_str().unwrap());
        assert_eq!(time, Some(now as i64), "{line}");
    }
    for line in &alerts {
        check_against(&alert_schema, line, "alert");
    }
}
