//! One pass over a PaySim file: every good row to a callback, bad rows
//! counted and kept as examples, progress on stderr.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::paysim::{PaysimReader, ReadError, RowError, Transaction};
use crate::progress;

/// How many bad rows are kept to show; all are counted.
pub const BAD_ROW_EXAMPLES: usize = 20;

#[derive(Clone, Copy, Debug, Default)]
pub struct ScanOptions {
    /// Stop at the first bad row instead of skipping it.
    pub strict: bool,
    /// No progress bar.
    pub quiet: bool,
}

/// What a scan saw apart from the good rows.
#[derive(Debug, Default, Serialize)]
pub struct BadRows {
    pub count: u64,
    pub by_code: BTreeMap<&'static str, u64>,
    pub examples: Vec<BadRowExample>,
}

#[derive(Debug, Serialize)]
pub struct BadRowExample {
    pub line: u64,
    pub code: &'static str,
    pub reason: String,
}

impl BadRows {
    fn add(&mut self, err: RowError) {
        self.count += 1;
        *self.by_code.entry(err.kind.code()).or_default() += 1;
        if self.examples.len() < BAD_ROW_EXAMPLES {
            self.examples.push(BadRowExample {
                line: err.line,
                code: err.kind.code(),
                reason: err.kind.to_string(),
            });
        }
    }
}

/// Reads `path`, handing each good row to `on_row`; bad rows are skipped and
/// collected unless `strict`, where the first one is the error.
pub fn scan_file(
    path: &Path,
    options: ScanOptions,
    on_row: impl FnMut(&Transaction),
) -> Result<BadRows, ReadError> {
    let open_error = |source| ReadError::Open {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let size = file.metadata().map_err(open_error)?.len();
    let bar = progress::bar(size, "bytes", options.quiet);
    bar.set_message(path.display().to_string());
    let result = scan(bar.wrap_read(file), options, on_row);
    bar.finish_and_clear();
    result
}

/// [`scan_file`] over any byte source.
pub fn scan(
    input: impl Read,
    options: ScanOptions,
    mut on_row: impl FnMut(&Transaction),
) -> Result<BadRows, ReadError> {
    let mut bad = BadRows::default();
    for row in PaysimReader::new(input)? {
        match row {
            Ok(t) => on_row(&t),
            Err(ReadError::Row(err)) if !options.strict => bad.add(err),
            Err(err) => return Err(err),
        }
    }
    Ok(bad)
}
