//! One reading of the file for all the workers of a process.
//!
//! Why: before a worker parses one of its blocks it must know the
//! input-order frontier and the epochs at that block's start, which depend
//! on every line before it ([`prescan`]). Each worker used to read and scan
//! the whole file for that: on a 1,000,000-row file the copy out of the
//! page cache and the scan were some 4 % of one worker's time, spent again
//! by every worker, so at `-w 16` a worker would spend about two thirds as
//! long on the others' blocks as on its own, capping the speedup near 9.
//! Now the workers of a process share one reader: a worker that wants a
//! block not read yet reads and scans every block up to it, keeping each
//! block of this process's other workers, with its lines and the progress
//! after it, for its owner to take. Each process reads the file once, in
//! order, so every worker sees exactly what it saw when it scanned alone.
//!
//! Memory: a block waits here only until its owner takes it, and a worker
//! reads ahead only as far as its own flow control lets it
//! (`OWN_BLOCKS_IN_FLIGHT` and `max_ahead`), so what waits is bounded by
//! the workers' blocks in flight, not by the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};

use super::blocks::Blocks;
use super::epochs::{Epochs, EPOCH_EVENTS};
use super::prescan::{self, Line, Progress};
use super::FileSource;

/// Where a block sits in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// 0 for the first block after the header.
    pub index: u64,
    /// 1-based line number of the block's first line.
    pub first_line: u64,
}

/// A block read for its owner, with what its scan found.
#[derive(Debug)]
pub struct Scanned {
    pub info: BlockInfo,
    pub buf: Vec<u8>,
    /// Each line's bytes, the frontier before it and its time.
    pub lines: Vec<Line>,
    /// The epoch of the frontier's floor before the block: the earliest
    /// logical time any of its records may go out at.
    pub epoch_before: u64,
    /// The frontier's floor after the block.
    pub floor_after: u64,
    /// The epochs after the block (exact for every place in it).
    pub epochs: Epochs,
}

/// The reader the workers of one process share; clones share it. Made
/// fresh for each run.
#[derive(Clone, Default)]
pub struct ScanShare(Arc<Mutex<Option<Shared>>>);

struct Shared {
    settings: FileSource,
    blocks: Blocks<File>,
    /// The line number of the next block's first line.
    next_line: u64,
    /// The lines of the last block of this process's workers: room for the
    /// next one's, reserved up front (blocks of a file hold about as many).
    last_lines: usize,
    progress: Progress,
    /// The bytes of blocks no worker of this process owns.
    scratch: Vec<u8>,
    /// Blocks of this process's workers read ahead, by index.
    ready: BTreeMap<u64, Scanned>,
    /// The file has no more blocks.
    ended: bool,
    /// The read error that ended the reading, for every worker to see.
    failed: Option<(io::ErrorKind, String)>,
}

impl ScanShare {
    /// Block `index`, once read (`None` past the end of the file):
    /// whichever worker asks first reads every block up to it, keeping
    /// those for which `mine` holds (the blocks of this process's workers).
    /// Each index may be taken once; a worker asks for its own in order.
    pub fn take(
        &self,
        settings: &FileSource,
        index: u64,
        mine: impl Fn(u64) -> bool,
    ) -> io::Result<Option<Scanned>> {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Shared::open(settings.clone())?);
        }
        let Some(shared) = guard.as_mut() else {
            return Ok(None);
        };
        loop {
            if let Some((kind, message)) = &shared.failed {
                return Err(io::Error::new(*kind, message.clone()));
            }
            if let Some(block) = shared.ready.remove(&index) {
                return Ok(Some(block));
            }
            if shared.ended {
                return Ok(None);
            }
            if let Err(e) = shared.read_next(&mine) {
                shared.failed = Some((e.kind(), e.to_string()));
            }
        }
    }
}

impl Shared {
    fn open(settings: FileSource) -> io::Result<Shared> {
        let header = settings.format.header_lines();
        let blocks = Blocks::open(&settings.path, header, settings.block_bytes)?;
        let epochs = match settings.epoch_span_ms {
            Some(span) => Epochs::with_span(EPOCH_EVENTS, span, settings.limits.lateness_ms),
            None => Epochs::default(),
        };
        Ok(Shared {
            settings,
            blocks,
            next_line: 1 + header,
            last_lines: 0,
            progress: Progress {
                epochs,
                ..Progress::default()
            },
            scratch: Vec::new(),
            ready: BTreeMap::new(),
            ended: false,
            failed: None,
        })
    }

    /// Reads and scans the next block, keeping it when it is `mine`.
    fn read_next(&mut self, mine: &impl Fn(u64) -> bool) -> io::Result<()> {
        let (format, limits) = (self.settings.format, self.settings.limits);
        let floor_before = self.progress.frontier.floor(&limits);
        // Epoch starts before the floor serve no place from here on.
        self.progress.epochs.prune(floor_before);
        let epoch_before = self.progress.epochs.of(floor_before);
        let mut buf = std::mem::take(&mut self.scratch);
        let Some(index) = self.blocks.next_block(&mut buf)? else {
            self.scratch = buf;
            self.ended = true;
            return Ok(());
        };
        let info = BlockInfo {
            index,
            first_line: self.next_line,
        };
        if !mine(index) {
            self.next_line += prescan::scan(format, &buf, &limits, &mut self.progress, None);
            self.scratch = buf;
            return Ok(());
        }
        let mut lines = Vec::with_capacity(self.last_lines + self.last_lines / 8);
        let progress = &mut self.progress;
        self.next_line += prescan::scan(format, &buf, &limits, progress, Some(&mut lines));
        self.last_lines = lines.len();
        let block = Scanned {
            info,
            buf,
            lines,
            epoch_before,
            floor_after: self.progress.frontier.floor(&limits),
            epochs: self.progress.epochs.clone(),
        };
        self.ready.insert(info.index, block);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::STEP_MS;
    use crate::sources::file::InputFormat;
    use crate::sources::order::TimeLimits;

    /// A PaySim-like file whose steps wander (late rows, a jump ahead, an
    /// unreadable step), cut into many small blocks.
    fn input(dir: &std::path::Path) -> FileSource {
        let path = dir.join("in.csv");
        let mut text = String::from("step,type\n");
        for i in 0..400u64 {
            let step = match i % 37 {
                5 => i / 9,        // behind
                11 => i / 4 + 500, // far ahead
                17 => 0,           // very late
                _ => i / 4 + 1,
            };
            if i % 53 == 7 {
                text.push_str("x,PAYMENT\n");
            } else {
                text.push_str(&format!("{step},PAYMENT,{i}\n"));
            }
        }
        std::fs::write(&path, text).unwrap();
        FileSource {
            path,
            format: InputFormat::PaysimCsv,
            limits: TimeLimits::with_lateness(2 * STEP_MS),
            block_bytes: 64,
            max_ahead_ms: 0,
            epoch_span_ms: Some(3 * STEP_MS),
            stall_after: std::time::Duration::from_secs(60),
        }
    }

    /// What a worker scanning the whole file alone finds for each block:
    /// the lines, the epoch of the floor before, the floor after, and the
    /// epoch of every line's place.
    fn alone(settings: &FileSource) -> Vec<(Vec<Line>, u64, u64, Vec<u64>)> {
        let share = ScanShare::default();
        let (mut out, mut index) = (Vec::new(), 0);
        // Each block's first line, numbered by the plain rule: its text is
        // that line of the file.
        let text = std::fs::read_to_string(&settings.path).unwrap();
        let file_lines: Vec<&str> = text.split('\n').collect();
        let mut first_line = 2;
        while let Some(b) = share.take(settings, index, |_| true).unwrap() {
            assert_eq!(b.info.index, index);
            assert_eq!(b.info.first_line, first_line, "block {index}");
            let block_text = std::str::from_utf8(&b.buf).unwrap();
            let first_text = block_text.split('\n').next().unwrap();
            assert_eq!(first_text, file_lines[first_line as usize - 1]);
            first_line += b.buf.iter().filter(|&&c| c == b'\n').count() as u64;
            out.push(summary(&b, settings));
            index += 1;
        }
        assert_eq!(first_line as usize, file_lines.len());
        out
    }

    fn summary(b: &Scanned, settings: &FileSource) -> (Vec<Line>, u64, u64, Vec<u64>) {
        let limits = &settings.limits;
        let places = b.lines.iter().map(|l| {
            let floor = l.before.floor(limits);
            b.epochs.of(l.time.map_or(floor, |t| t.max(floor)))
        });
        let places = places.collect();
        (b.lines.clone(), b.epoch_before, b.floor_after, places)
    }

    #[test]
    fn workers_taking_blocks_in_any_order_see_what_a_lone_scan_sees() {
        let dir = tempfile::tempdir().unwrap();
        let settings = input(dir.path());
        let whole = alone(&settings);
        assert!(whole.len() > 50, "{} blocks", whole.len());
        let mut reference = Vec::new();
        // The same by the plain rule: one Progress over every block in turn.
        let mut blocks = Blocks::open(&settings.path, 1, settings.block_bytes).unwrap();
        let mut progress = Progress {
            epochs: Epochs::with_span(EPOCH_EVENTS, 3 * STEP_MS, 2 * STEP_MS),
            ..Progress::default()
        };
        let mut buf = Vec::new();
        while blocks.next_block(&mut buf).unwrap().is_some() {
            let floor = progress.frontier.floor(&settings.limits);
            let before = progress.epochs.of(floor);
            let mut lines = Vec::new();
            prescan::scan(
                settings.format,
                &buf,
                &settings.limits,
                &mut progress,
                Some(&mut lines),
            );
            reference.push((lines, before, progress.frontier.floor(&settings.limits)));
        }
        let firsts: Vec<_> = whole
            .iter()
            .map(|(l, b, a, _)| (l.clone(), *b, *a))
            .collect();
        assert_eq!(firsts, reference);
        // Three processes of two workers; this is the second (workers 2
        // and 3), whose workers ask in turns, the later one first.
        let (peers, local) = (6u64, 2..4u64);
        let share = ScanShare::default();
        let mine = |b: u64| local.contains(&(b % peers));
        let mut next = [3u64, 2];
        let mut seen = 0;
        for round in 0.. {
            let worker = round % 2;
            let Some(b) = share.take(&settings, next[worker], mine).unwrap() else {
                assert!(next[worker] >= whole.len() as u64);
                if next.iter().all(|n| *n >= whole.len() as u64) {
                    break;
                }
                next[worker] = u64::MAX / 2;
                continue;
            };
            assert_eq!(b.info.index, next[worker]);
            assert_eq!(summary(&b, &settings), whole[b.info.index as usize]);
            next[worker] += peers;
            seen += 1;
        }
        let theirs = (0..whole.len() as u64).filter(|b| mine(*b)).count();
        assert_eq!(seen, theirs);
        // Blocks of other processes were not kept.
        let guard = share.0.lock().unwrap();
        assert!(guard.as_ref().unwrap().ready.is_empty());
    }

    #[test]
    fn a_file_that_cannot_be_opened_fails_every_worker() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = input(dir.path());
        settings.path = dir.path().join("gone.csv");
        let share = ScanShare::default();
        for index in [0, 1] {
            let err = share.take(&settings, index, |_| true).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
        }
    }
}
