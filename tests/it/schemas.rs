//! The parser and the schemas agree both ways: payloads generated from
//! schemas/event_v1.json parse, and each violation it documents lands in the
//! dead-letter output with its code, in the shape of schemas/dlq_v1.json.

use std::path::Path;

use fraudflow::dataflow::json_event::parse_event;
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
