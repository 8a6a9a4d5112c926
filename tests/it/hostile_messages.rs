//! Messages that say what is actually wrong (issue 10, class 11): a figure
//! that is not the one read, an OS error printed twice, a flag blamed that
//! was never given. Regressions named after the fault they pin.

use crate::common::{fraudflow, s};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_os_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexist.csv");
    let out_csv = dir.path().join("out.csv");
    let runs: [Vec<&str>; 4] = [
        vec!["validate", s(&missing)],
        vec!["eda", s(&missing)],
        vec!["validate", "--strict", s(&missing)],
        // A directory opens, then fails to read: the Io error's class.
        vec!["validate", s(dir.path())],
    ];
    for args in runs {
        let out = fraudflow(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.matches("os error").count(), 1, "{args:?}: {err}");
    }
    let out = fraudflow(&["features", "--input", s(&missing), "--out", s(&out_csv)]);
    assert_eq!(
        stderr(&out).matches("os error").count(),
        1,
        "{}",
        stderr(&out)
    );
}
