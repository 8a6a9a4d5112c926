//! A file cut into blocks at line ends, so that workers can take turns:
//! worker `i` of `n` parses blocks `i`, `i + n`, ... and only counts the
//! lines of the others (each process reads them once, for all its workers:
//! `shared`). Every worker moves through the file, and so through event
//! time, together; the cuts do not depend on `n`.
//!
//! The file is read straight into the block's buffer, without a reader's
//! buffer in between: each byte is copied once out of the page cache, and
//! only the few bytes read past a block's last line move, to start the next
//! block. Lines are counted by the scan that follows ([`super::prescan`]).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Bytes read at a time past a block's size, looking for its last line end.
const TAIL_ROOM: usize = 4_096;
/// Most room reserved up front for a block: a huge `block_bytes` grows
/// the buffer as the data comes, never allocating what the file lacks.
const MOST_RESERVED: usize = 1 << 26;

/// Sequential blocks of whole lines.
pub struct Blocks<R> {
    input: R,
    block_bytes: usize,
    /// Bytes read past the last block's end: the start of the next one.
    carry: Vec<u8>,
    /// The input has no more bytes.
    drained: bool,
    index: u64,
}

impl Blocks<File> {
    /// Opens `path` and skips its first `skip_lines` lines (the header).
    pub fn open(path: &Path, skip_lines: u64, block_bytes: usize) -> io::Result<Self> {
        Blocks::new(File::open(path)?, skip_lines, block_bytes)
    }
}

impl<R: Read> Blocks<R> {
    pub fn new(input: R, skip_lines: u64, block_bytes: usize) -> io::Result<Self> {
        let mut blocks = Blocks {
            input,
            block_bytes: block_bytes.max(1),
            carry: Vec::new(),
            drained: false,
            index: 0,
        };
        for _ in 0..skip_lines {
            blocks.skip_line()?;
        }
        Ok(blocks)
    }

    /// Reads the next block into `buf`: about `block_bytes`, extended to the
    /// end of its last line (the first line end at or past `block_bytes`).
    /// Its index (0 for the first block after the skipped lines), or `None`
    /// at the end of the file.
    pub fn next_block(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<u64>> {
        buf.clear();
        // Room for the block and its last line's tail at once: grown a
        // doubling at a time, the buffer was copied some 14 times a block
        // and its new pages zeroed as it went.
        buf.reserve(self.block_bytes.min(MOST_RESERVED) + TAIL_ROOM);
        buf.append(&mut self.carry);
        if buf.len() < self.block_bytes {
            let want = (self.block_bytes - buf.len()).saturating_add(TAIL_ROOM);
            self.read(buf, want)?;
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let mut from = (self.block_bytes - 1).min(buf.len());
        let cut = loop {
            if let Some(at) = memchr::memchr(b'\n', &buf[from..]) {
                break from + at + 1;
            }
            if self.drained {
                break buf.len();
            }
            from = buf.len();
            self.read(buf, TAIL_ROOM)?;
        };
        self.carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        let index = self.index;
        self.index += 1;
        Ok(Some(index))
    }

    /// Appends up to `want` bytes of the input to `buf`; fewer only at its
    /// end.
    fn read(&mut self, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
        if self.drained {
            return Ok(());
        }
        let read = (&mut self.input).take(want as u64).read_to_end(buf)?;
        self.drained = read < want;
        Ok(())
    }

    /// Drops the input's next line, line end and all.
    fn skip_line(&mut self) -> io::Result<()> {
        let mut from = 0;
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.carry[from..]) {
                self.carry.drain(..from + at + 1);
                return Ok(());
            }
            if self.drained {
                self.carry.clear();
                return Ok(());
            }
            from = self.carry.len();
            let mut carry = std::mem::take(&mut self.carry);
            self.read(&mut carry, TAIL_ROOM)?;
            self.carry = carry;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_line_once_cut_where_the_rule_says() {
        let text: String = std::iter::once("header\n".to_string())
            .chain((2..=98).map(|i| format!("line {i}{}\n", "x".repeat(i % 13))))
            .chain(std::iter::once("line 99 without newline".to_string()))
            .collect();
        let body = &text.as_bytes()["header\n".len()..];
        // The last: a size no memory holds, reserved only up to a limit.
        for block_bytes in [1, 7, 64, 4_095, 4_097, 10_000, usize::MAX] {
            let mut blocks = Blocks::new(text.as_bytes(), 1, block_bytes).unwrap();
            let (mut buf, mut seen, mut at, mut expected_index) = (Vec::new(), Vec::new(), 0, 0);
            while let Some(index) = blocks.next_block(&mut buf).unwrap() {
                assert_eq!(index, expected_index);
                expected_index += 1;
                // The plain rule: the first line end at or past the size.
                let rest = &body[at..];
                let cut = rest
                    .iter()
                    .enumerate()
                    .skip(block_bytes.min(rest.len()).saturating_sub(1))
                    .find(|(_, &b)| b == b'\n')
                    .map_or(rest.len(), |(i, _)| i + 1);
                assert_eq!(buf, &rest[..cut], "block {index} of {block_bytes}");
                at += cut;
                seen.extend(
                    String::from_utf8(buf.clone())
                        .unwrap()
                        .lines()
                        .map(String::from),
                );
            }
            assert_eq!(at, body.len());
            assert_eq!(seen.len(), 98, "block size {block_bytes}");
            for (k, line) in seen.iter().enumerate() {
                assert!(
                    line.starts_with(&format!("line {}", k + 2)),
                    "{block_bytes}: {line}"
                );
            }
        }
    }

    #[test]
    fn skipped_lines_longer_than_a_read_and_a_file_of_header_only() {
        let long = "h".repeat(3 * TAIL_ROOM + 5);
        let text = format!("{long}\n{long}\nrow 1\nrow 2");
        let mut blocks = Blocks::new(text.as_bytes(), 2, 3).unwrap();
        let mut buf = Vec::new();
        assert_eq!(blocks.next_block(&mut buf).unwrap(), Some(0));
        assert_eq!(buf, b"row 1\n");
        assert_eq!(blocks.next_block(&mut buf).unwrap(), Some(1));
        assert_eq!(buf, b"row 2");
        assert_eq!(blocks.next_block(&mut buf).unwrap(), None);
        for text in ["header\n", "header", ""] {
            let mut blocks = Blocks::new(text.as_bytes(), 1, 64).unwrap();
            assert_eq!(blocks.next_block(&mut buf).unwrap(), None, "{text:?}");
        }
    }
}
