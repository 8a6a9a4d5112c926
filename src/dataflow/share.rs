//! Each worker's share of an input file: a byte range cut at line starts.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes `[start, end)` of a file, and the line number at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub start: u64,
    pub end: u64,
    pub first_line: u64,
}

/// Splits the data lines of `path` (everything after the first `skip_lines`
/// lines) into `peers` ranges cut at line starts, and returns range `index`.
/// Every line belongs to exactly one share; the line numbers are counted, so
/// they agree whatever the number of peers.
pub fn share(path: &Path, skip_lines: u64, index: usize, peers: usize) -> io::Result<Share> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let data_start = skip(&mut file, skip_lines)?;
    let cut =
        |i: usize| data_start + ((size - data_start) as u128 * i as u128 / peers as u128) as u64;
    let start = align(&mut file, cut(index), data_start, size)?;
    let end = align(&mut file, cut(index + 1), data_start, size)?;
    let first_line = 1 + count_newlines(&mut file, start)?;
    Ok(Share {
        start,
        end,
        first_line,
    })
}

/// Offset just past the first `lines` newlines.
fn skip(file: &mut File, lines: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut seen, mut offset) = (0, 0u64);
    while seen < lines {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(offset);
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == lines {
                    return Ok(offset + i as u64 + 1);
                }
            }
        }
        offset += n as u64;
    }
    Ok(offset)
}

/// The first line start at or after `pos`.
fn align(file: &mut File, pos: u64, data_start: u64, size: u64) -> io::Result<u64> {
    if pos <= data_start || pos >= size {
        return Ok(pos.clamp(data_start, size));
    }
    file.seek(SeekFrom::Start(pos - 1))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut offset = pos - 1;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(size);
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(offset + i as u64 + 1);
        }
        offset += n as u64;
    }
}

fn count_newlines(file: &mut File, upto: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut left, mut count) = (upto, 0u64);
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        count += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        left -= n as u64;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn shares_cover_every_line_once_with_the_right_numbers() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let text: String = std::iter::once("header\n".to_string())
            .chain((1..=97).map(|i| format!("line {}{}\n", i + 1, "x".repeat(i % 13))))
            .collect();
        f.write_all(text.as_bytes()).unwrap();
        for peers in [1, 2, 3, 7, 200] {
            let mut lines = Vec::new();
            for index in 0..peers {
                let s = share(f.path(), 1, index, peers).unwrap();
                let chunk = &text[s.start as usize..s.end as usize];
                for (k, line) in chunk.lines().enumerate() {
                    lines.push((s.first_line + k as u64, line.to_string()));
                }
            }
            assert_eq!(lines.len(), 97, "peers {peers}");
            for (number, line) in lines {
                assert!(
                    line.starts_with(&format!("line {number}")),
                    "{peers}: {number} {line}"
                );
            }
        }
    }
}
