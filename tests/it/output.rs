//! Standard output that cannot be written: a closed pipe ends a command
//! quietly, any other write error is an error with status 2, never a panic
//! (regressions for issue 10, fault 7).

use std::fs::File;
use std::process::{Command, Stdio};

use crate::common::{s, shared_slice};

fn fraudflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fraudflow"))
}

#[test]
fn a_full_standard_output_is_an_error_not_a_panic() {
    let Some(slice) = shared_slice() else { return };
    for args in [vec!["eda", "-q"], vec!["validate", "--json", "-q"]] {
        let full = File::options().write(true).open("/dev/full").unwrap();
        let out = fraudflow()
            .args(&args)
            .arg(s(&slice))
            .stdout(Stdio::from(full))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("writing to standard output: No space left"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let Some(slice) = shared_slice() else { return };
    let cases = [
        vec!["eda", "-q", s(&slice)],
        vec!["generate", "--rows", "200000"],
    ];
    for args in cases {
        let mut child = fraudflow()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.trim().is_empty(), "{args:?}: {err}");
    }
}
