//! Where tansu, the Kafka-protocol broker the end-to-end tests and the
//! Kafka bench start, is installed (shared with `benches/kafka`).

use std::path::{Path, PathBuf};

/// How to get tansu, for the message when it is missing.
pub const INSTALL: &str = "install it with `cargo install tansu --features \"dynostore libsql\"` \
     (about 14 minutes), or point $TANSU at the binary";

/// The tansu binary: `$TANSU`, `~/.cargo/bin/tansu`, or `tansu` on `PATH`.
pub fn find() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("TANSU")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/tansu"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
    candidates.into_iter().find(|c| c.is_file())
}
