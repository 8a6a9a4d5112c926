//! Large outputs written in whole aligned blocks that bypass the page cache.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::group::OutputFile;

/// Alignment of unbuffered writes: a multiple of any disk's logical block.
const ALIGN: usize = 4096;
/// Bytes gathered before each unbuffered write.
pub(crate) const BLOCK: usize = 4 << 20;

/// A file written in whole aligned blocks that bypass the page cache
/// (`O_DIRECT` on Linux), so the kernel does not copy every byte: for a
/// large output that copy costs more CPU than the formatting that made it.
/// Where the file system refuses, the bytes go through the page cache as
/// usual.
pub(crate) struct Unbuffered {
    /// The file opened for unbuffered writes, if the system allows it.
    direct: Option<File>,
    /// The same file, opened as usual: the fallback, and what is synced.
    plain: BufWriter<OutputFile>,
    block: Vec<u8>,
    /// Where the aligned region of `block` starts.
    start: usize,
    held: usize,
    /// Bytes written unbuffered, padding included.
    written: u64,
}

impl Unbuffered {
    /// Bypasses the page cache for a staged (regular) file only: a stream
    /// written in place (a FIFO, a device) goes through as usual.
    pub(crate) fn open(plain: OutputFile) -> Unbuffered {
        let direct = plain.staged().and_then(|p| Self::open_direct(p).ok());
        let block = if direct.is_some() {
            vec![0; BLOCK + ALIGN]
        } else {
            Vec::new()
        };
        let start = block.as_ptr().align_offset(ALIGN).min(ALIGN);
        Unbuffered {
            direct,
            plain: BufWriter::with_capacity(1 << 20, plain),
            block,
            start,
            held: 0,
            written: 0,
        }
    }

    #[cfg(target_os = "linux")]
    fn open_direct(path: &Path) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
    }

    #[cfg(not(target_os = "linux"))]
    fn open_direct(_path: &Path) -> io::Result<File> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub(crate) fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.direct.is_none() {
            return self.plain.write_all(bytes);
        }
        while !bytes.is_empty() {
            let n = (BLOCK - self.held).min(bytes.len());
            let at = self.start + self.held;
            self.block[at..at + n].copy_from_slice(&bytes[..n]);
            self.held += n;
            bytes = &bytes[n..];
            if self.held == BLOCK {
                self.flush_block(BLOCK)?;
            }
        }
        Ok(())
    }

    /// Writes the first `len` (aligned) bytes of the block.
    fn flush_block(&mut self, len: usize) -> io::Result<()> {
        let Some(direct) = self.direct.as_mut() else {
            return Ok(());
        };
        let data = &self.block[self.start..self.start + len];
        match direct.write_all(data) {
            Ok(()) => {
                self.written += len as u64;
                self.held = 0;
                Ok(())
            }
            // Opened, but refused at the first write: write as usual.
            Err(e) if self.written == 0 && e.kind() == io::ErrorKind::InvalidInput => {
                self.direct = None;
                let held = self.start..self.start + self.held;
                self.plain.write_all(&self.block[held])?;
                self.held = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes what is held (padded to the alignment, then cut back) and
    /// returns the file, to finish.
    pub(crate) fn finish(mut self) -> io::Result<OutputFile> {
        if self.direct.is_some() && self.held > 0 {
            let held = self.held;
            let padded = held.next_multiple_of(ALIGN);
            self.block[self.start + held..self.start + padded].fill(0);
            self.flush_block(padded)?;
            if let Some(direct) = &self.direct {
                direct.set_len(self.written - (padded - held) as u64)?;
            }
        }
        self.plain
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}
