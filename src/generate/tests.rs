use super::*;

#[test]
fn exact_row_count_for_any_size() {
    for rows in [0, 1, 7, 743, 744, 5_000] {
        let params = GeneratorParams::new(rows, 3).check().unwrap();
        assert_eq!(Generator::new(params).count() as u64, rows);
    }
}

/// Class 9 "limits that are not there": a step's rows were all made
/// before the first was written, so `--steps 1` held the whole file in
/// memory. Only the step's fraud rows are held now.
#[test]
fn a_step_holds_only_its_fraud_rows() {
    let mut p = GeneratorParams::new(100_000, 4);
    p.steps = 1;
    let params = p.check().unwrap();
    let fraud = Generator::new(params).filter(|t| t.is_fraud).count();
    let mut g = Generator::new(params);
    g.next();
    let held: usize = g.fraud.iter().map(|(_, f)| f.len()).sum::<usize>() + g.group.len();
    assert!(held <= fraud, "{held} rows held, {fraud} fraud rows");
    assert_eq!(g.genuine + fraud, 100_000);
}

/// After the drift every takeover leaves its victim a balance, keeps
/// the mules' books straight and reuses mules; before it, nothing
/// changes (the same rows as without the option).
#[test]
fn fraud_changes_tactics_from_the_drift_step_on() {
    let mut params = GeneratorParams::new(200_000, 3);
    let plain: Vec<Transaction> = Generator::new(params.check().unwrap()).collect();
    params.drift_at = Some(400);
    let drifted: Vec<Transaction> = Generator::new(params.check().unwrap()).collect();
    let before = |rows: &[Transaction]| -> Vec<Transaction> {
        rows.iter().filter(|t| t.step < 400).cloned().collect()
    };
    assert_eq!(before(&plain), before(&drifted));
    let after: Vec<&Transaction> = drifted
        .iter()
        .filter(|t| t.step >= 400 && t.is_fraud)
        .collect();
    let transfers: Vec<&&Transaction> = after
        .iter()
        .filter(|t| t.kind == TxnType::Transfer)
        .collect();
    assert!(transfers.len() > 20, "{} transfers", transfers.len());
    for t in &transfers {
        assert!(t.new_balance_orig > 0.0, "drained: {t:?}");
        assert!(
            (t.new_balance_dest - t.old_balance_dest - t.amount).abs() < 0.02,
            "{t:?}"
        );
    }
    let mules: std::collections::HashSet<_> = transfers.iter().map(|t| t.name_dest).collect();
    assert!(mules.len() < transfers.len(), "mules are reused");
    // A pool, not one account (the first version named one mule for all).
    assert!(
        mules.len() > 5 && mules.len() as u64 <= MULE_POOL,
        "{mules:?}"
    );
    // Each takeover's money goes to one mule, which cashes it out.
    for pair in after.chunks(2) {
        assert_eq!(pair[1].kind, TxnType::CashOut, "{pair:?}");
        assert_eq!(pair[1].name_orig, pair[0].name_dest, "{pair:?}");
    }
    for takeover in transfers.chunk_by(|a, b| a.name_orig == b.name_orig) {
        assert!(takeover
            .iter()
            .all(|t| t.name_dest == takeover[0].name_dest));
    }
    assert!(plain
        .iter()
        .filter(|t| t.step >= 400 && t.is_fraud && t.kind == TxnType::Transfer)
        .any(|t| t.new_balance_orig == 0.0));
}

#[test]
fn bad_params_name_the_value() {
    let mut p = GeneratorParams::new(10, 1);
    p.fraud_rate = 0.9;
    assert_eq!(
        p.check().unwrap_err().to_string(),
        "fraud rate must be within [0, 0.5], got 0.9"
    );
    p.fraud_rate = 0.0;
    p.steps = 0;
    assert_eq!(p.check().unwrap_err(), ParamError::Steps(0));
}

#[test]
fn fraud_drains_through_chunks_and_mules() {
    let mut params = GeneratorParams::new(200_000, 11);
    params.fraud_rate = 0.01;
    let fraud: Vec<Transaction> = Generator::new(params.check().unwrap())
        .filter(|t| t.is_fraud)
        .collect();
    assert!(fraud.len() > 1_500);
    for t in &fraud {
        assert!(t.kind.can_be_fraud());
        assert!(t.amount <= TRANSFER_LIMIT);
        if t.is_flagged_fraud {
            assert_eq!(t.old_balance_orig, t.new_balance_orig);
        } else {
            assert_eq!(cents(t.old_balance_orig - t.amount), t.new_balance_orig);
        }
    }
    for pair in fraud.windows(2) {
        if pair[0].kind == TxnType::Transfer && pair[1].kind == TxnType::CashOut {
            assert_eq!(pair[0].amount, pair[1].amount);
            assert_ne!(pair[0].name_dest, pair[1].name_orig);
        }
    }
}
