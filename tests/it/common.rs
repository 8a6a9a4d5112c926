//! What the integration tests share: running the binary, finding the
//! genuine PaySim slice.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn fraudflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fraudflow"))
        .args(args)
        .output()
        .expect("the fraudflow binary runs")
}

pub fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The genuine slice, or `None` (a printed skip) when allowed to be missing.
pub fn shared_slice() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/paysim/paysim_first_41370_rows.csv");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("FRAUDFLOW_ALLOW_MISSING_SHARED").as_deref() == Ok("1") {
        eprintln!("skipped: needs {} (absent)", path.display());
        return None;
    }
    panic!(
        "this test needs the PaySim slice at {}: put the shared/ folder beside the checkout, \
         or set FRAUDFLOW_ALLOW_MISSING_SHARED=1 to skip it",
        path.display()
    );
}
