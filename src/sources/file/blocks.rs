//! A file cut into blocks at line ends, so that workers can take turns:
//! worker `i` of `n` parses blocks `i`, `i + n`, ... and only counts the
//! lines of the others (each process reads them once, for all its workers:
//! `shared`). Every worker moves through the file, and so through event
//! time, together; the cuts and line numbers do not depend on `n`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Room reserved past a block's size for the rest of its last line.
const TAIL_ROOM: usize = 4_096;
/// Most room reserved up front for a block: a huge `block_bytes` grows
/// the buffer as the data comes, never allocating what the file lacks.
const MOST_RESERVED: usize = 1 << 26;

/// Sequential blocks of whole lines.
pub struct Blocks<R> {
    input: R,
    block_bytes: usize,
    next_line: u64,
    index: u64,
}

/// Where a block sits in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// 0 for the first block after the skipped lines.
    pub index: u64,
    /// 1-based line number of the block's first line.
    pub first_line: u64,
    /// The block's line ends: its lines, but for a last one without.
    pub line_ends: u64,
}

impl Blocks<BufReader<File>> {
    /// Opens `path` and skips its first `skip_lines` lines (the header).
    pub fn open(path: &Path, skip_lines: u64, block_bytes: usize) -> io::Result<Self> {
        Blocks::new(
            BufReader::with_capacity(1 << 20, File::open(path)?),
            skip_lines,
            block_bytes,
        )
    }
}

impl<R: BufRead> Blocks<R> {
    pub fn new(mut input: R, skip_lines: u64, block_bytes: usize) -> io::Result<Self> {
        let mut line = Vec::new();
        for _ in 0..skip_lines {
            line.clear();
            input.read_until(b'\n', &mut line)?;
        }
        Ok(Blocks {
            input,
            block_bytes: block_bytes.max(1),
            next_line: 1 + skip_lines,
            index: 0,
        })
    }

    /// Reads the next block into `buf`: about `block_bytes`, extended to the
    /// end of its last line. `None` at the end of the file.
    pub fn next_block(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<BlockInfo>> {
        buf.clear();
        // Room for the block and its last line's tail at once: grown a
        // doubling at a time, the buffer was copied some 14 times a block
        // and its new pages zeroed as it went.
        buf.reserve(self.block_bytes.min(MOST_RESERVED) + TAIL_ROOM);
        (&mut self.input)
            .take(self.block_bytes as u64)
            .read_to_end(buf)?;
        if buf.is_empty() {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            self.input.read_until(b'\n', buf)?;
        }
        let line_ends = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let info = BlockInfo {
            index: self.index,
            first_line: self.next_line,
            line_ends,
        };
        self.index += 1;
        self.next_line += line_ends;
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_line_once_with_the_right_numbers() {
        let text: String = std::iter::once("header\n".to_string())
            .chain((2..=98).map(|i| format!("line {i}{}\n", "x".repeat(i % 13))))
            .chain(std::iter::once("line 99 without newline".to_string()))
            .collect();
        // The last: a size no memory holds, reserved only up to a limit.
        for block_bytes in [1, 7, 64, 10_000, usize::MAX] {
            let mut blocks = Blocks::new(text.as_bytes(), 1, block_bytes).unwrap();
            let (mut buf, mut seen) = (Vec::new(), Vec::new());
            while let Some(info) = blocks.next_block(&mut buf).unwrap() {
                let ends = buf.iter().filter(|&&b| b == b'\n').count() as u64;
                assert_eq!(info.line_ends, ends);
                for (k, line) in String::from_utf8(buf.clone()).unwrap().lines().enumerate() {
                    seen.push((info.first_line + k as u64, line.to_string()));
                }
            }
            assert_eq!(seen.len(), 98, "block size {block_bytes}");
            for (number, line) in seen {
                assert!(
                    line.starts_with(&format!("line {number}")),
                    "{block_bytes}: {number} {line}"
                );
            }
        }
    }
}
