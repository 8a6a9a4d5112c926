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
    /// Bytes taken from the input so far.
    taken: u64,
    /// The length of a regular file when it was opened: reading must get
    /// that far.
    length: Option<u64>,
}

impl Blocks<File> {
    /// Opens `path` and skips its first `skip_lines` lines (the header). A
    /// regular file that ends before the length it had when opened (cut
    /// short while read) is an error at its end, not a shorter input.
    pub fn open(path: &Path, skip_lines: u64, block_bytes: usize) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let length = meta.is_file().then_some(meta.len());
        let mut blocks = Blocks::new(file, 0, block_bytes)?;
        blocks.length = length;
        for _ in 0..skip_lines {
            blocks.skip_line()?;
        }
        Ok(blocks)
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
            taken: 0,
            length: None,
        };
        for _ in 0..skip_lines {
            blocks.skip_line()?;
        }
        Ok(blocks)
    }

    /// Reads the next block into `buf`: about `block_bytes`, extended to the
    /// end of its last line (the first line end at index `block_bytes - 1`
    /// or later).
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
        self.taken += read as u64;
        self.drained = read < want;
        match self.length {
            Some(length) if self.drained && self.taken < length => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended after {} of the {length} bytes it held when the run \
                     started: it was cut short while being read",
                    self.taken
                ),
            )),
            _ => Ok(()),
        }
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

    /// The blocks as the reader before this one cut them: through a
    /// `BufReader`, `take(block_bytes).read_to_end`, then `read_until` the
    /// end of the last line.
    fn cut_as_before(text: &[u8], skip: u64, block_bytes: usize) -> Vec<Vec<u8>> {
        use std::io::BufRead;
        let mut input = io::BufReader::with_capacity(1 << 20, text);
        let mut line = Vec::new();
        for _ in 0..skip {
            input.read_until(b'\n', &mut line).unwrap();
        }
        let mut blocks = Vec::new();
        loop {
            let mut buf = Vec::new();
            (&mut input)
                .take(block_bytes as u64)
                .read_to_end(&mut buf)
                .unwrap();
            if buf.is_empty() {
                return blocks;
            }
            if buf.last() != Some(&b'\n') {
                input.read_until(b'\n', &mut buf).unwrap();
            }
            blocks.push(buf);
        }
    }

    /// A reader that hands out at most `most` bytes a read.
    struct Trickle<'a> {
        text: &'a [u8],
        most: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.most.min(buf.len()).min(self.text.len());
            buf[..n].copy_from_slice(&self.text[..n]);
            self.text = &self.text[n..];
            Ok(n)
        }
    }

    #[test]
    fn blocks_are_cut_where_the_reader_before_cut_them() {
        // Several reads' worth, lines of every length up to past a read
        // (10,000 bytes), blank ones, and a last line without its end.
        let mut text = b"header\n".to_vec();
        for i in 0..400usize {
            let len = [0, 1, 9, 80, 700, 4_095, 10_000][i % 7] * usize::from(i % 5 != 3);
            text.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
            text.push(b'\n');
        }
        text.extend_from_slice(b"last without an end");
        // The last size: one no memory holds, reserved only up to a limit.
        let sizes = [
            1,
            2,
            7,
            64,
            4_095,
            4_096,
            4_097,
            10_000,
            1 << 20,
            usize::MAX,
        ];
        for block_bytes in sizes {
            let want = cut_as_before(&text, 1, block_bytes);
            for most in [1, 7, 5_000, usize::MAX] {
                let input = Trickle { text: &text, most };
                let mut blocks = Blocks::new(input, 1, block_bytes).unwrap();
                let (mut buf, mut got) = (Vec::new(), Vec::new());
                while let Some(index) = blocks.next_block(&mut buf).unwrap() {
                    assert_eq!(index, got.len() as u64);
                    got.push(buf.clone());
                }
                assert!(got == want, "block size {block_bytes}, reads of {most}");
            }
        }
    }

    #[test]
    fn a_file_cut_short_while_read_is_an_error_and_one_that_grew_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let rows: String = (0..2_000).map(|i| format!("{i},row\n")).collect();
        std::fs::write(&path, format!("header\n{rows}")).unwrap();
        let mut blocks = Blocks::open(&path, 1, 1_000).unwrap();
        let mut buf = Vec::new();
        assert_eq!(blocks.next_block(&mut buf).unwrap(), Some(0));
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(6_000).unwrap();
        let err = loop {
            match blocks.next_block(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the cut went unseen"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let length = 7 + rows.len();
        assert!(
            err.to_string()
                .contains(&format!("after 6000 of the {length} bytes")),
            "{err}"
        );
        // Appended to while read: every byte is read, the new ones too.
        std::fs::write(&path, format!("header\n{rows}")).unwrap();
        let mut blocks = Blocks::open(&path, 1, 1_000).unwrap();
        assert_eq!(blocks.next_block(&mut buf).unwrap(), Some(0));
        let mut whole = buf.clone();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"2000,row\n").unwrap();
        while blocks.next_block(&mut buf).unwrap().is_some() {
            whole.extend_from_slice(&buf);
        }
        assert_eq!(whole, format!("{rows}2000,row\n").as_bytes());
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
