//! Progress on stderr for long work: shown only on a terminal and never with
//! `--quiet`, so scripts and CI logs stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` units (bytes or rows), hidden unless stderr is a
/// terminal and `quiet` is off.
pub fn bar(total: u64, unit: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
    let template = match unit {
        "bytes" => "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        _ => "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
