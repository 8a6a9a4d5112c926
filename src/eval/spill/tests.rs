//! The record files against plain expectations: every field back bit for
//! bit, late days, torn files, pieces and links.

use super::*;

fn record(seq: u64, hour: u64) -> Record {
    Record {
        seq,
        time_ms: hour * crate::event::STEP_MS + seq % 1000,
        score: seq as f64 / 7.0,
        is_fraud: [None, Some(false), Some(true)][(seq % 3) as usize],
        amount: -(seq as f64) * 1.5,
        latency_us: seq * 11,
        frozen: seq.is_multiple_of(2).then_some(f64::NAN),
        threshold: 0.25,
        // One in four with the page's fields: files mix both lengths.
        page: (seq % 4 == 1).then_some(PageFields {
            components: Components {
                isolation_forest: seq as f64 / 3.0,
                autoencoder: -0.0,
                logistic: f64::INFINITY,
            },
            received_us: u64::MAX - seq,
        }),
    }
}

fn round_trip(r: &Record) -> Record {
    let (b, len) = encode(r);
    assert_eq!(
        len,
        [RECORD_BYTES, PAGE_RECORD_BYTES][usize::from(r.page.is_some())]
    );
    decode(&b[..len])
}

#[test]
fn every_field_comes_back_bit_for_bit() {
    for seq in 0..12 {
        let r = record(seq, seq * 5);
        let back = round_trip(&r);
        assert_eq!(back.frozen.map(f64::to_bits), r.frozen.map(f64::to_bits));
        assert_eq!(
            Record {
                frozen: None,
                ..back
            },
            Record { frozen: None, ..r }
        );
    }
    let extreme = Record {
        seq: u64::MAX,
        time_ms: u64::MAX,
        score: -0.0,
        latency_us: u64::MAX,
        frozen: Some(f64::INFINITY),
        ..record(1, 0)
    };
    assert_eq!(round_trip(&extreme), extreme);
}

#[test]
fn late_records_reopen_a_closed_day_and_many_days_stay_within_the_open_limit() {
    let root = tempfile::tempdir().unwrap();
    let dir = SpillDir::create(&root.path().join("s")).unwrap();
    let mut w = dir.writer("w3");
    let mut want: Vec<Record> = Vec::new();
    // Forty days, each day's records split in two visits, the second
    // after later days were written and its file closed.
    for seq in 0..400u64 {
        let hour = (seq % 40) * 24 + (seq / 40) % 24;
        let r = record(seq, hour);
        w.add(&r).unwrap();
        want.push(r);
        assert!(w.open.len() <= MAX_OPEN);
        if seq % 40 == 39 {
            w.close_before(u32::MAX).unwrap();
        }
    }
    let files = w.finish().unwrap();
    assert_eq!(files.len(), 40);
    let days = dir.days().unwrap();
    let mut got = Vec::new();
    for (day, files) in &days {
        let rs = read_day(files).unwrap();
        assert!(rs.iter().all(|r| r.hour() / 24 == *day));
        assert!(rs.windows(2).all(|p| p[0].seq < p[1].seq));
        got.extend(rs);
    }
    got.sort_by_key(|r| r.seq);
    let bits = |rs: &[Record]| -> Vec<(u64, Option<u64>)> {
        rs.iter()
            .map(|r| (r.seq, r.frozen.map(f64::to_bits)))
            .collect()
    };
    assert_eq!(bits(&got), bits(&want));
}

#[test]
fn a_torn_file_is_refused_by_name_and_a_killed_runs_directory_is_emptied() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("s");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("w0-d0.rec"), [0u8; 10]).unwrap();
    let dir = SpillDir::create(&path).unwrap();
    assert!(dir.days().unwrap().is_empty());
    std::fs::write(path.join("w0-d0.rec"), [0u8; RECORD_BYTES + 3]).unwrap();
    let err = read_day(&dir.days().unwrap()[&0]).unwrap_err().to_string();
    assert!(
        err.contains("w0-d0.rec") && err.contains("60 bytes") && err.contains("at byte 57"),
        "{err}"
    );
    // A record whose flags say it carries the page's fields, cut
    // after the plain record's length.
    let mut page = [0u8; RECORD_BYTES];
    page[0] = PAGE;
    std::fs::write(path.join("w0-d0.rec"), page).unwrap();
    let err = read_day(&dir.days().unwrap()[&0]).unwrap_err().to_string();
    assert!(
        err.contains("57 bytes") && err.contains("at byte 0"),
        "{err}"
    );
    // A second run in the same directory is refused while this one
    // holds it, and takes it once this one is done.
    let busy = SpillDir::create(&path).unwrap_err();
    assert!(matches!(busy, SpillError::Busy { .. }), "{busy}");
    drop(dir);
    assert!(!path.exists());
    drop(SpillDir::create(&path).unwrap());
}

#[test]
fn a_symbolic_link_or_a_file_in_its_place_is_refused_and_its_target_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let victim = root.path().join("victim");
    std::fs::create_dir_all(victim.join("sub")).unwrap();
    std::fs::write(victim.join("a.txt"), "keep").unwrap();
    let link = root.path().join("s");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let err = SpillDir::create(&link).unwrap_err();
    assert!(
        matches!(
            err,
            SpillError::NotOurs {
                kind: "symbolic link",
                ..
            }
        ),
        "{err}"
    );
    drop(err);
    assert!(victim.join("a.txt").exists() && victim.join("sub").is_dir());
    assert!(link.exists(), "the link itself is left for its owner");
    let file = root.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let err = SpillDir::create(&file).unwrap_err().to_string();
    assert!(
        err.contains("(a file)") && err.contains("remove it"),
        "{err}"
    );
    // Inside a real directory, a link is removed, never followed.
    let real = root.path().join("r");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&victim, real.join("in")).unwrap();
    let dir = SpillDir::create(&real).unwrap();
    assert_eq!(dir.leftover(), 1);
    assert!(victim.join("a.txt").exists());
}

#[test]
fn pieces_read_every_record_back_in_pieces_of_at_most_the_limit() {
    let root = tempfile::tempdir().unwrap();
    let dir = SpillDir::create(&root.path().join("s")).unwrap();
    let mut w = dir.writer("w1");
    for seq in 0..50u64 {
        w.add(&record(seq, seq % 3 * 24)).unwrap();
    }
    let files = w.finish().unwrap();
    std::fs::write(dir.path().join("empty-d9.rec"), []).unwrap();
    let mut all = files.into_values().collect::<Vec<_>>();
    all.insert(1, dir.path().join("empty-d9.rec"));
    let mut pieces = Pieces::new(all, 7);
    let mut seqs = Vec::new();
    while let Some(piece) = pieces.next_piece().unwrap() {
        assert!(!piece.is_empty() && piece.len() <= 7);
        seqs.extend(piece.iter().map(|r| r.seq));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    std::fs::write(dir.path().join("torn-d0.rec"), [1u8; RECORD_BYTES + 1]).unwrap();
    let mut torn = Pieces::new([dir.path().join("torn-d0.rec")], 7);
    assert!(torn.next_piece().is_err());
}

#[test]
fn a_record_takes_the_memory_the_module_doc_says() {
    // What a day read back holds per event, page's fields or not.
    assert_eq!(std::mem::size_of::<Record>(), 112);
}
