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

/// Thousands separators for people: 6362620 -> 6,362,620.
///
/// ```
/// assert_eq!(fraudflow::progress::grouped(1234567), "1,234,567");
/// assert_eq!(fraudflow::progress::grouped(999), "999");
/// ```
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
