//! The dataflow: `fraudflow features` across worker and process counts,
//! velocity against from-scratch recomputation, dead letters.

use std::collections::HashMap;
use std::path::Path;

use fraudflow::generate::{Generator, GeneratorParams, Rng};
use fraudflow::paysim::{AccountId, AccountKind, Transaction, TxnType};

use crate::common::{fraudflow, run_two_processes, shared_slice, write_rows};

/// The rows of a features CSV: header, then one map per row.
fn read_features(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn features(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "features",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = fraudflow(&args);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "features {extra:?} failed: {stderr}");
    stderr
}

#[test]
fn slice_features_match_hand_checked_rows_and_the_original_velocity() {
    let Some(slice) = shared_slice() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("features.csv");
    features(&slice, &out, &["-w", "2", "--quiet"]);
    let rows = read_features(&out);
    assert_eq!(rows.len(), 41_370);

    // Row 3: 1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0
    let r = &rows[2];
    let f = |k: &str| r[k].parse::<f64>().unwrap();
    assert_eq!(
        (
            r["event_id"].as_str(),
            r["step"].as_str(),
            r["label"].as_str()
        ),
        ("3", "1", "1")
    );
    assert_eq!(f("amount"), 181.0);
    assert_eq!(f("amount_ratio"), 181.0 / 182.0);
    assert_eq!(f("balance_diff_orig"), 0.0);
    assert_eq!(
        (f("is_transfer"), f("is_cashout"), f("hour_of_day")),
        (1.0, 0.0, 1.0)
    );
    assert_eq!(
        (f("error_balance_orig"), f("error_balance_dest")),
        (0.0, 181.0)
    );
    assert_eq!(
        (
            f("orig_drained"),
            f("dest_balances_zero"),
            f("orig_balance_zero")
        ),
        (1.0, 1.0, 0.0)
    );
    // Row 4: 1,CASH_OUT,181.0,C840083671,181.0,0.0,C38997010,21182.0,0.0,1,0
    let r = &rows[3];
    assert_eq!(r["is_cashout"], "1.0");
    assert_eq!(
        r["error_balance_dest"].parse::<f64>().unwrap(),
        21_182.0 + 181.0
    );

    // Velocity: the original definition, a running count within account
    // and step in file order.
    let text = std::fs::read_to_string(&slice).unwrap();
    let mut orig = HashMap::new();
    let mut dest = HashMap::new();
    for (line, row) in text.lines().skip(1).zip(&rows) {
        let f: Vec<&str> = line.split(',').collect();
        let o = orig
            .entry((f[3], f[0]))
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let d = dest
            .entry((f[6], f[0]))
            .and_modify(|n| *n += 1)
            .or_insert(1);
        assert_eq!(
            row["txn_velocity_1h"].parse::<f64>().unwrap(),
            f64::from(*o),
            "{line}"
        );
        assert_eq!(
            row["dest_txn_velocity_1h"].parse::<f64>().unwrap(),
            f64::from(*d),
            "{line}"
        );
    }
    assert!(
        dest.values().any(|&n| n > 20),
        "the slice has busy destinations"
    );
}

#[test]
fn output_is_identical_for_any_worker_and_process_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("generated.csv");
    write_rows(
        &input,
        Generator::new(GeneratorParams::new(40_000, 9).check().unwrap()),
    );
    let reference = dir.path().join("w1.csv");
    features(&input, &reference, &["-w", "1", "--quiet"]);
    let expected = std::fs::read(&reference).unwrap();
    assert_eq!(read_features(&reference).len(), 40_000);
    for (workers, contract) in [("2", "v2"), ("4", "v2")] {
        let out = dir.path().join(format!("w{workers}.csv"));
        features(
            &input,
            &out,
            &["-w", workers, "--contract", contract, "--quiet"],
        );
        assert!(
            std::fs::read(&out).unwrap() == expected,
            "-w {workers} differs from -w 1"
        );
    }

    // Two processes on 127.0.0.1, two workers each; process 0 writes.
    let out = dir.path().join("n2.csv");
    let (input, out_arg) = (input.to_str().unwrap(), out.to_str().unwrap());
    run_two_processes(
        dir.path(),
        &["features", "--input", input, "--out", out_arg],
        "2",
    );
    assert!(
        std::fs::read(&out).unwrap() == expected,
        "two processes differ from -w 1"
    );
}

/// In the style of differential's `reduce_reference.rs`: seeded random
/// streams with many events per account, arriving out of order within the
/// lateness bound, against a plain recomputation of the definition.
#[test]
fn velocity_equals_a_from_scratch_count_on_random_streams() {
    const STEP: u64 = 3_600;
    const WINDOW_STEPS: u32 = 3;
    for seed in 1..=3u64 {
        let mut rng = Rng::seed_from(seed);
        let account = |kind, n: u64| AccountId::new(kind, n).unwrap();
        let rows: Vec<Transaction> = (0..1_500u32)
            .map(|i| {
                // Time drifts forward; each event may be up to two steps
                // behind the latest, within the lateness given below.
                let step = (1 + i / 50).saturating_sub(rng.below(3) as u32).max(1);
                Transaction {
                    step,
                    kind: TxnType::ALL[rng.below(5) as usize],
                    amount: 10.0 + rng.below(1000) as f64,
                    name_orig: account(AccountKind::Customer, rng.below(12)),
                    old_balance_orig: 0.0,
                    new_balance_orig: 0.0,
                    name_dest: account(AccountKind::Customer, 100 + rng.below(6)),
                    old_balance_dest: 0.0,
                    new_balance_dest: 0.0,
                    is_fraud: false,
                    is_flagged_fraud: false,
                }
            })
            .collect();
        let expected = |pick: fn(&Transaction) -> AccountId| -> Vec<u64> {
            (0..rows.len())
                .map(|i| {
                    let me = &rows[i];
                    (0..rows.len())
                        .filter(|&j| {
                            let other = &rows[j];
                            pick(other) == pick(me)
                                && other.step + WINDOW_STEPS > me.step
                                && (other.step < me.step || (other.step == me.step && j <= i))
                        })
                        .count() as u64
                })
                .collect()
        };
        let want_orig = expected(|t| t.name_orig);
        let want_dest = expected(|t| t.name_dest);

        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("random.csv");
        write_rows(&input, rows.iter().copied());
        for workers in ["1", "3"] {
            let out = dir.path().join(format!("random-w{workers}.csv"));
            let window = (u64::from(WINDOW_STEPS) * STEP).to_string();
            let lateness = (3 * STEP).to_string();
            let stderr = features(
                &input,
                &out,
                &["-w", workers, "--window", &window, "--lateness", &lateness],
            );
            assert!(stderr.contains("(0 late)"), "{stderr}");
            let got = read_features(&out);
            assert_eq!(got.len(), rows.len());
            for row in &got {
                let i = row["event_id"].parse::<usize>().unwrap() - 1;
                let orig = row["txn_velocity_1h"].parse::<f64>().unwrap() as u64;
                let dest = row["dest_txn_velocity_1h"].parse::<f64>().unwrap() as u64;
                assert_eq!(
                    (orig, dest),
                    (want_orig[i], want_dest[i]),
                    "seed {seed} -w {workers} row {}",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn events_in_equal_valid_plus_dead_letters_on_a_corrupted_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.csv");
    write_rows(
        &input,
        Generator::new(GeneratorParams::new(5_000, 4).check().unwrap()),
    );
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let corrupt = |line: &str, i: usize, value: &str| {
        let mut f: Vec<&str> = line.split(',').collect();
        f[i] = value;
        f.join(",")
    };
    lines[100] = corrupt(&lines[100], 2, "12,5");
    lines[200] = corrupt(&lines[200], 2, "-3.0");
    lines[300] = corrupt(&lines[300], 1, "REFUND");
    lines[400] = corrupt(&lines[400], 2, "NaN");
    lines[500] = corrupt(&lines[500], 3, "user-9");
    std::fs::write(&input, lines.join("\r\n")).unwrap();

    let out = dir.path().join("features.csv");
    let stderr = features(&input, &out, &["-w", "2"]);
    assert!(
        stderr.contains("5,000 events in = 4,995 valid + 5 dead letters"),
        "{stderr}"
    );
    assert_eq!(read_features(&out).len(), 4_995);
    let dead = std::fs::read_to_string(dir.path().join("features.dead-letter.jsonl")).unwrap();
    let codes: Vec<(String, String)> = dead
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["stage"], "parse");
            assert!(!v["raw"].as_str().unwrap().is_empty());
            (
                v["code"].as_str().unwrap().to_string(),
                v["source"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let want = [
        ("field_count", "101"),
        ("negative_amount", "201"),
        ("unknown_type", "301"),
        ("not_finite", "401"),
        ("bad_account", "501"),
    ];
    assert_eq!(codes, want.map(|(c, l)| (c.to_string(), l.to_string())));
}

/// The Parquet table holds the same values as the CSV one, and its columns
/// have the types pandas and polars expect.
#[test]
fn parquet_table_matches_the_csv_table() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("generated.csv");
    write_rows(
        &input,
        Generator::new(GeneratorParams::new(150_000, 21).check().unwrap()),
    );
    let csv = dir.path().join("features.csv");
    let table = dir.path().join("features.parquet");
    features(&input, &csv, &["-w", "2", "--quiet"]);
    features(&input, &table, &["-w", "2", "--quiet"]);

    let expected = read_features(&csv);
    let reader = SerializedFileReader::new(std::fs::File::open(&table).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = schema
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let csv_header = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(names.join(","), csv_header);
    assert!(
        reader.metadata().num_row_groups() > 1,
        "written in row groups as rows arrive"
    );
    let mut count = 0;
    for (row, want) in reader.get_row_iter(None).unwrap().zip(&expected) {
        let row = row.unwrap();
        assert_eq!(row.get_string(0).unwrap(), &want["event_id"]);
        assert_eq!(row.get_long(1).unwrap().to_string(), want["step"]);
        assert_eq!(row.get_int(2).unwrap().to_string(), want["label"]);
        for (i, name) in names.iter().enumerate().skip(3) {
            assert_eq!(
                row.get_double(i).unwrap(),
                want[name].parse::<f64>().unwrap(),
                "{name}"
            );
        }
        count += 1;
    }
    assert_eq!(count, 150_000);
}
