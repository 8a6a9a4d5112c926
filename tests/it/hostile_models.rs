//! Hostile numbers and bundles: amounts and balances near the top of f64's
//! range must not hang a command or vanish from its counts; a bundle that
//! cannot score finitely, or whose policy is off, is refused at load; flags
//! that a combination would ignore are refused; the default split works on
//! the genuine slice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fraudflow::bundle::Bundle;
use fraudflow::ensemble::Components;
use fraudflow::event::Event;
use fraudflow::features::{Contract, Velocities};
use fraudflow::generate::Rng;
use fraudflow::paysim::PaysimReader;
use serde_json::Value;

use crate::common::{backtest, fraudflow, generated, json, s, shared_slice, train};
use crate::hostile_reports::failed_with;

/// The hostile rows: each an amount or balances past f32's range, up to
/// f64's largest value, written as Java prints doubles.
const HOSTILE: [(&str, &str, &str, &str); 4] = [
    // (amount, oldbalanceOrg, newbalanceOrig, newbalanceDest)
    ("1.0E39", "1.0E39", "0.0", "0.0"),
    ("1.0E300", "0.0", "1.0E300", "1.0E300"),
    ("1.0E30", "1.7976931348623157E308", "0.0", "0.0"),
    (
        "1.7976931348623157E308",
        "0.0",
        "1.7976931348623157E308",
        "1.7976931348623157E308",
    ),
];

/// Runs `fraudflow ARGS`, failing the test if it has not ended within
/// `limit` (the fault this file pins is a hang).
fn within(limit: Duration, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_fraudflow"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match receiver.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // Ends the hung command (ours, by its id) before failing.
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("fraudflow {args:?} still running after {limit:?}");
        }
    }
}

/// `fraudflow backtest` of `input` with no bundle (so it trains first) into
/// `out`, within `limit`; its standard output.
fn train_and_replay(input: &Path, out: &Path, limit: Duration) -> String {
    let args = ["backtest", "--input", s(input), "--out", s(out), "--quiet"];
    ok(&within(limit, &args))
}

/// A generated file of `rows` and a bundle trained on it, in `dir`.
fn trained(dir: &Path, rows: u64, seed: u64) -> (PathBuf, PathBuf) {
    let input = generated(dir, rows, seed);
    let models = dir.join("models");
    train(&input, &models, &[]);
    (input, models)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A generated file with the hostile rows in place of rows spread over it;
/// returns the file and the hostile rows' ids (1-based data row numbers).
fn hostile_file(dir: &Path, rows: u64) -> (PathBuf, Vec<u64>) {
    let input = generated(dir, rows, 21);
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut ids = Vec::new();
    for (i, (amount, old, new, dest_new)) in HOSTILE.iter().enumerate() {
        let row = (i + 1) * lines.len() / (HOSTILE.len() + 1);
        let step = lines[row].split(',').next().unwrap().to_string();
        lines[row] =
            format!("{step},TRANSFER,{amount},C9{i}0001,{old},{new},C9{i}0002,0.0,{dest_new},0,0");
        ids.push(row as u64);
    }
    let path = dir.join("hostile.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, ids)
}

/// Ids of the alerts and of the dead letters (with their codes) of a
/// backtest's output.
fn routed(out: &Path) -> (HashSet<String>, Vec<(String, String, String)>) {
    let alerts = std::fs::read_to_string(out.join("alerts.jsonl")).unwrap();
    let alerted = alerts
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].to_string())
        .map(|id| id.trim_matches('"').to_string())
        .collect();
    let dead = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
    let dead = dead
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (field("source"), field("code"), field("stage"))
        })
        .collect();
    (alerted, dead)
}

/// Each hostile event was alerted or dead-lettered as unscorable, and the
/// report's counts add up.
fn assert_every_event_counted(out: &Path, events: u64, hostile: &[String]) {
    let report = json(&out.join("report.json"));
    assert_eq!(report["events_in"], events);
    let scored = report["scored"].as_u64().unwrap();
    let dead = report["dead_letters"].as_u64().unwrap();
    assert_eq!(scored + dead, events, "{report}");
    assert_eq!(
        report["alerts"].as_u64().unwrap() + report["normal"].as_u64().unwrap(),
        scored
    );
    assert!(report["quality_all"]["pr_auc"].is_number(), "{report}");
    let (alerted, dead) = routed(out);
    for id in hostile {
        let unscorable = dead.iter().any(|(source, code, stage)| {
            source.ends_with(&format!(":{id}")) && code == "unscorable" && stage == "score"
        });
        assert!(
            alerted.contains(id) || unscorable,
            "event {id} neither alerted nor dead-lettered as unscorable"
        );
    }
}

#[test]
fn amounts_past_f32s_range_neither_hang_train_and_backtest_nor_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let (input, ids) = hostile_file(dir.path(), 60_000);
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let limit = Duration::from_secs(300);

    // backtest without --models trains on the file first, then replays it.
    let out = dir.path().join("bt");
    let printed = train_and_replay(&input, &out, limit);
    assert!(printed.contains("split: train steps"), "{printed}");
    assert_every_event_counted(&out, 60_000, &ids);

    // train alone ends too, with finite metrics, and its bundle loads.
    let models = dir.path().join("models");
    ok(&within(
        limit,
        &[
            "train",
            "--input",
            s(&input),
            "--out",
            s(&models),
            "--quiet",
        ],
    ));
    let bundle = json(&models.join("bundle.json"));
    for (model, m) in bundle["metrics"].as_object().unwrap() {
        assert!(m["pr_auc"].is_number(), "{model}: {m}");
    }
    let again = dir.path().join("bt2");
    ok(&within(
        limit,
        &backtest(&input, &models, &again, &["--scores"]),
    ));
    assert_every_event_counted(&again, 60_000, &ids);
    // Every score written is a finite number.
    let scores = std::fs::read_to_string(again.join("scores.csv")).unwrap();
    for line in scores.lines().skip(1) {
        for field in line.split(',').skip(2) {
            if let Ok(v) = field.parse::<f64>() {
                assert!(v.is_finite(), "{line}");
            }
        }
    }
}

#[test]
fn a_json_event_with_a_huge_amount_is_alerted_or_dead_lettered_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (_, models) = trained(dir.path(), 40_000, 22);
    let mut lines = Vec::new();
    let mut hostile = Vec::new();
    for i in 0..200 {
        let (amount, old, new, dest_new) = if i % 50 == 7 {
            hostile.push(format!("e{i}"));
            let a = [1e39, 1e300, 1e30, f64::MAX][i / 50];
            (a, f64::MAX, 0.0, a)
        } else {
            (1_000.0 + i as f64, 5_000.0, 4_000.0 - i as f64, 1_000.0)
        };
        lines.push(
            serde_json::json!({
                "event_id": format!("e{i}"),
                "timestamp": format!("2026-11-28T12:{:02}:00Z", i % 60),
                "user_id": format!("C{}", 1000 + i),
                "type": "TRANSFER",
                "amount": amount,
                "old_balance_orig": old,
                "new_balance_orig": new,
                "dest_id": format!("C{}", 9000 + i),
                "old_balance_dest": 0.0,
                "new_balance_dest": dest_new,
                "is_fraud": i % 3 == 0,
            })
            .to_string(),
        );
    }
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("bt");
    ok(&within(
        Duration::from_secs(120),
        &backtest(&events, &models, &out, &[]),
    ));
    assert_every_event_counted(&out, 200, &hostile);
}

/// Writes `bundle.json` of `models` with `edit` applied into `to`.
fn edited(models: &Path, to: &Path, edit: impl Fn(&mut Value)) -> PathBuf {
    let mut value = json(&models.join("bundle.json"));
    edit(&mut value);
    std::fs::create_dir_all(to).unwrap();
    std::fs::write(to.join("bundle.json"), value.to_string()).unwrap();
    to.to_path_buf()
}

fn refused(input: &Path, models: &Path, out: &Path, extra: &[&str]) -> String {
    let out = fraudflow(&backtest(input, models, out, extra));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bundles edited to fault, by name: the edit, and the words their refusal
/// must say.
fn bad_bundles() -> [(&'static str, Edit, &'static [&'static str]); 8] {
    [
        (
            "logistic",
            |v| v["models"]["logistic"]["weights"]["data"][0] = 1e300.into(),
            &["logistic", "weights[0]", "overflow"],
        ),
        (
            "autoencoder",
            |v| v["models"]["autoencoder"]["w1"]["data"][3] = 1e300.into(),
            &["autoencoder", "w1[0]", "overflow"],
        ),
        (
            "forest",
            |v| {
                let tree = v["models"]["isolation_forest"]["trees"][0]
                    .as_array_mut()
                    .unwrap();
                let leaf = tree.iter_mut().find(|n| n["feature"] == u32::MAX).unwrap();
                leaf["value"] = 1e300.into();
            },
            &["isolation_forest: tree 0: leaf"],
        ),
        (
            "huge-policy",
            |v| v["policy"]["weights"]["isolation_forest"] = 1e308.into(),
            &["policy: weights", "sum to 1"],
        ),
        (
            "negative-policy",
            |v| v["parity"]["weights"]["logistic"] = (-0.3).into(),
            &["parity: weights must be finite and non-negative"],
        ),
        ("budget", |v| v["budget"] = 2.0.into(), &["budget 2"]),
        // Regression: a threshold below the score's range alerted on every
        // event, one above it on none.
        (
            "low-threshold",
            |v| v["policy"]["threshold"] = (-5.0).into(),
            &[
                "policy: the threshold must be a number in [0, 1]",
                "got -5.0",
            ],
        ),
        (
            "high-threshold",
            |v| v["parity"]["threshold"] = 1e308.into(),
            &[
                "parity: the threshold must be a number in [0, 1]",
                "got 1e308",
            ],
        ),
    ]
}

type Edit = fn(&mut Value);

#[test]
fn a_bundle_that_cannot_score_finitely_or_whose_policy_is_off_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = trained(dir.path(), 40_000, 23);
    let out = dir.path().join("bt");
    for (i, (name, edit, wanted)) in bad_bundles().into_iter().enumerate() {
        // Directories named apart from the messages' words.
        let bad = edited(&models, &dir.path().join(format!("bad{i}")), edit);
        let err = refused(&input, &bad, &out, &[]);
        assert!(err.contains(s(&bad.join("bundle.json"))), "{name}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{name}: {w:?} not in {err}");
        }
        // Said once: an error printed as a chain must not repeat itself.
        assert_eq!(err.matches(wanted[0]).count(), 1, "{name}: {err}");
    }
    // The same bundle, unedited, loads and runs.
    ok(&fraudflow(&backtest(&input, &models, &out, &[])));
}

#[test]
fn training_flags_with_a_given_bundle_are_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (input, models) = trained(dir.path(), 40_000, 24);
    let out = dir.path().join("bt");
    for flags in [
        &["--budget", "2"][..],
        &["--budget", "0.01"],
        &["--seed", "3"],
        &["--split", "5,6"],
        &["--trees", "10"],
        &["--positive-weight", "2"],
    ] {
        let err = refused(&input, &models, &out, flags);
        assert!(
            err.contains(flags[0]) && err.contains("--models"),
            "{flags:?}: {err}"
        );
    }
    let err = refused(&input, &models, &out, &["--rows", "10"]);
    assert!(err.contains("--rows") && err.contains("--input"), "{err}");
    thresholds_out_of_range_are_refused(&input, &models, &out);
    // Huge weights on the flag are normalised, not zeroed by an overflowing
    // sum.
    ok(&fraudflow(&backtest(
        &input,
        &models,
        &out,
        &["--weights", "1e308,1e308,1e308"],
    )));
    let w = &json(&out.join("report.json"))["policy"]["weights"];
    for k in ["isolation_forest", "autoencoder", "logistic"] {
        assert!((w[k].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12, "{w}");
    }
    // A bad budget is named even without a bundle to conflict with.
    let err = fraudflow(&[
        "backtest",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--budget",
        "2",
    ]);
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("--budget must be in (0, 1], got 2"));
}

/// A threshold outside the score's range [0, 1], from the flag or from a
/// dataflow file, is refused naming where it came from; the ends are taken.
fn thresholds_out_of_range_are_refused(input: &Path, models: &Path, out: &Path) {
    // Regression: -5 alerted on every event and 1e308 on none.
    for t in ["inf", "-5", "1e308", "1.0001", "NaN"] {
        let err = refused(input, models, out, &["--threshold", t]);
        assert!(
            err.contains("--threshold") && err.contains("[0, 1]") && err.contains(t),
            "{t}: {err}"
        );
    }
    // So is one from a dataflow file, named by the file, not by the flag.
    let dataflow = out.with_extension("toml");
    std::fs::write(
        &dataflow,
        format!(
            "[source.file]\npath = {:?}\n[models]\ndir = {:?}\nthreshold = -5.0\n\
             [sinks]\ndir = {:?}\n",
            s(input),
            s(models),
            s(out)
        ),
    )
    .unwrap();
    let err = failed_with(2, &["backtest", "--dataflow", s(&dataflow), "--quiet"]);
    assert!(
        err.contains(&format!("{}:5: key models.threshold", s(&dataflow)))
            && err.contains("[0, 1]")
            && !err.contains("--threshold"),
        "{err}"
    );
    // The range's ends are allowed.
    for t in ["0", "1"] {
        ok(&fraudflow(&backtest(
            input,
            models,
            out,
            &["--threshold", t],
        )));
    }
}

/// Oracle: scores recomputed here from a trained bundle's models, for events
/// whose amounts and balances run over f64's range, are all finite, and the
/// reasons behind them too.
#[test]
fn scores_are_finite_for_every_extreme_finite_event() {
    let dir = tempfile::tempdir().unwrap();
    let (_, models) = trained(dir.path(), 40_000, 25);
    let bundle = Bundle::load(&models, Some(Contract::V2)).unwrap();
    let magnitudes = [0.0, 1.0, 1e7, 1e30, 3.5e38, 1e39, 1e300, f64::MAX];
    let mut rng = Rng::seed_from(5);
    let mut pick =
        || magnitudes[rng.below(magnitudes.len() as u64) as usize] * (1.0 - rng.uniform() * 1e-3);
    let header = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud";
    let kinds = ["TRANSFER", "CASH_OUT", "PAYMENT", "CASH_IN", "DEBIT"];
    let mut csv = String::from(header);
    for i in 0..2_000 {
        let values: Vec<String> = (0..5).map(|_| format!("{:E}", pick())).collect();
        csv.push_str(&format!(
            "\n{},{},{},C{i},{},{},C{},{},{},0,0",
            1 + i % 24,
            kinds[i % 5],
            values[0],
            values[1],
            values[2],
            i + 7,
            values[3],
            values[4]
        ));
    }
    let rows: Vec<_> = PaysimReader::new(csv.as_bytes())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 2_000);
    let features: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let e = Event::from_paysim(i as u64 + 1, t);
            Contract::V2.compute(
                &e,
                Velocities {
                    orig: 1 + i as u64 % 3,
                    dest: 1,
                },
            )
        })
        .collect();
    let batch: Vec<&[f64]> = features.iter().map(|f| &f[..]).collect();
    let mut components = Vec::new();
    bundle.models.components_many(&batch, &mut components);
    for (row, c) in batch.iter().zip(&components) {
        assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
        let Components {
            isolation_forest,
            autoencoder,
            logistic,
        } = *c;
        for v in [
            isolation_forest,
            autoencoder,
            logistic,
            bundle.policy.weights.combine(c),
        ] {
            assert!((0.0..=1.0).contains(&v), "{row:?}: {c:?}");
        }
        // One row alone scores as in the batch.
        assert_eq!(bundle.models.isolation_forest.score(row), isolation_forest);
        for reason in bundle.models.reasons(Contract::V2, row) {
            assert!(
                reason.value.is_finite() && reason.push.is_finite(),
                "{reason:?}"
            );
        }
    }
}

#[test]
fn the_default_split_works_on_the_genuine_slice_and_says_its_steps() {
    let Some(slice) = shared_slice() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bt");
    let printed = train_and_replay(&slice, &out, Duration::from_secs(400));
    // Steps 1-9, step 8 holding half the rows: 70 % and 85 % are both
    // first reached in step 8 and 9, so the cuts move back to 7 and 8.
    assert!(
        printed.contains("split: train steps ..=7 (") && printed.contains("validation steps 8..=8"),
        "{printed}"
    );
    let bundle = json(&out.join("models").join("bundle.json"));
    let split = &bundle["split"];
    assert_eq!(
        (
            split["train_last_step"].as_u64(),
            split["validation_last_step"].as_u64()
        ),
        (Some(7), Some(8))
    );
    // Recomputed from the slice itself: rows per step.
    let text = std::fs::read_to_string(&slice).unwrap();
    let steps: Vec<u32> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    let count = |f: &dyn Fn(u32) -> bool| steps.iter().filter(|&&s| f(s)).count() as u64;
    assert_eq!(split["train_rows"].as_u64(), Some(count(&|s| s <= 7)));
    assert_eq!(split["validation_rows"].as_u64(), Some(count(&|s| s == 8)));
    assert_eq!(split["test_rows"].as_u64(), Some(count(&|s| s >= 9)));
    let report = json(&out.join("report.json"));
    assert_eq!(report["events_in"], 41_370);
}

#[test]
fn training_flags_past_their_limits_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated(dir.path(), 40_000, 33);
    let models = dir.path().join("models");
    let limit = Duration::from_secs(30);
    // Regression: 100000000 trees were accepted, and ran for hours; 1e308
    // trained, then blamed its own bundle file.
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "--trees",
            "100000000",
            &["--trees", "100000000", "1..=10000"],
        ),
        ("--trees", "0", &["--trees", "1..=10000"]),
        (
            "--positive-weight",
            "1e308",
            &["--positive-weight", "1e308", "1e6"],
        ),
        (
            "--positive-weight",
            "-1",
            &["--positive-weight", "-1", "1e6"],
        ),
    ];
    for (flag, value, wanted) in cases {
        let flag_value = format!("{flag}={value}");
        for command in ["train", "backtest"] {
            let args = [
                command,
                "--input",
                s(&input),
                "--out",
                s(&models),
                &flag_value,
                "--quiet",
            ];
            let out = within(limit, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            for w in wanted {
                assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
            }
            assert!(!err.contains("bundle.json"), "{err}");
            assert!(!models.exists(), "{args:?} made {}", s(&models));
        }
    }
    // The limits are said in --help.
    let help = ok(&fraudflow(&["train", "--help"]));
    assert!(
        help.contains("1 to 10000") && help.contains("at most 1e6"),
        "{help}"
    );
    // At the limit, a fraud weight still trains a bundle that loads.
    train(&input, &models, &["--positive-weight", "1e6"]);
    let out = dir.path().join("bt");
    ok(&fraudflow(&backtest(&input, &models, &out, &[])));
}
