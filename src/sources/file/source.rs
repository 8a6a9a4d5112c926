//! The file source operator: the workers of a process read the file once,
//! together ([`shared`](super::shared)), following the input-order frontier
//! and the epochs through every block; each parses and sends its own
//! blocks, each event at the epoch of its place (`epochs`).
//!
//! Why it sends a block's runs a few at a time: every operator after the
//! source keeps a buffer for each logical time until it is done. The source
//! keeps at most [`MAX_TIMES_IN_FLIGHT`] of its epochs unfinished, and moves
//! its capability up after every run, so that what it sent can finish while
//! it sends more: memory stays that of the events, not of the gaps between
//! their times.

use std::collections::VecDeque;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use super::prescan::Line;
use super::shared::{ScanShare, Scanned};
use super::{parse_lines, FileSource};
use crate::dataflow::dead_letter::DeadLetter;
use crate::event::Event;
use crate::pipeline::PipelineError;
use crate::sources::order::{time_dead_letter, TimeLimits};
use crate::sources::{Parsed, Runs, SourceContext, SourceCounts};

/// Blocks of its own a source may always have unfinished downstream,
/// however far ahead in event time that takes it: with fewer, a worker
/// that finished its block waits for the others' instead of parsing its
/// next, and workers beyond the blocks that `max_ahead` spans sit idle.
pub const OWN_BLOCKS_IN_FLIGHT: usize = 4;

/// Most epochs of one source sent and not yet finished downstream,
/// beyond those at or after its own capability (which cannot finish yet).
pub const MAX_TIMES_IN_FLIGHT: usize = 1_024;

/// A run of records of one epoch, waiting to be sent, and the earliest
/// epoch any record after it may go out at.
struct Pending {
    time: u64,
    run: Vec<Parsed>,
    floor_after: u64,
}

/// One worker's reading of the file.
struct Reader {
    settings: FileSource,
    /// The reader this process's workers share.
    share: ScanShare,
    /// This worker's next block, and the blocks between its own (every
    /// worker's of the run, in turn).
    next: u64,
    peers: u64,
    /// The first worker of this process and how many it has: its blocks
    /// are the ones the shared reader keeps.
    local: std::ops::Range<u64>,
    pending: VecDeque<Pending>,
    in_flight: VecDeque<u64>,
    /// The latest epoch of each of this worker's blocks not yet finished
    /// downstream.
    own_blocks: VecDeque<u64>,
    label: String,
}

/// Reads this worker's blocks of the file (for PaySim, its header was
/// checked before the dataflow started). The source waits while the end of
/// the dataflow lags more than `max_ahead` behind it and it has
/// [`OWN_BLOCKS_IN_FLIGHT`] blocks of its own unfinished (memory is then
/// bounded by the larger of the two, never by the file); a read error ends
/// the run, naming the file.
pub fn file_source<'scope>(
    scope: Scope<'scope, u64>,
    settings: FileSource,
    context: SourceContext,
) -> Stream<'scope, u64, Vec<Parsed>> {
    let SourceContext {
        counts,
        done,
        abort,
        workers_per_process,
        file_share,
    } = context;
    let place = Place::of(scope.index(), scope.peers(), workers_per_process);
    source::<_, CapacityContainerBuilder<Vec<Parsed>>, _, _>(
        scope,
        "FileSource",
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(cap);
            let mut reader = Reader::new(settings, file_share, place);
            move |output| {
                let Some(current) = cap.as_mut() else { return };
                if !reader.pending.is_empty() {
                    reader.send_pending(current, &done, |cap, time, run| {
                        output.session(&cap.delayed(&time)).give_container(run)
                    });
                    return activator.activate();
                }
                if reader.must_wait(current.time(), &done) {
                    return activator.activate_after(Duration::from_millis(1));
                }
                match reader.read_own_block(current, &counts) {
                    Ok(true) => activator.activate(),
                    Ok(false) => cap = None,
                    // A source that cannot read holds its capability (the
                    // run must not look complete) and ends the run.
                    Err(err) => abort.fail(err),
                }
            }
        },
    )
}

impl Reader {
    fn new(settings: FileSource, share: ScanShare, place: Place) -> Reader {
        Reader {
            label: settings.path.display().to_string(),
            settings,
            share,
            next: place.next,
            peers: place.peers,
            local: place.local,
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            own_blocks: VecDeque::new(),
        }
    }

    /// Whether to wait before reading another block: the dataflow's end
    /// (`done`) lags more than `max_ahead` behind `time`, and this worker
    /// has its most blocks unfinished.
    fn must_wait(&mut self, time: &u64, done: &ProbeHandle<u64>) -> bool {
        while self.own_blocks.front().is_some_and(|t| !done.less_equal(t)) {
            self.own_blocks.pop_front();
        }
        let behind = done.less_than(&time.saturating_sub(self.settings.max_ahead_ms));
        behind && self.own_blocks.len() >= OWN_BLOCKS_IN_FLIGHT
    }

    /// Reads and parses this worker's next block, moving `current` up to
    /// the block's first epoch; `false` past the end of the file.
    fn read_own_block(
        &mut self,
        current: &mut Capability<u64>,
        counts: &SourceCounts,
    ) -> Result<bool, PipelineError> {
        let Some(block) = self.next_own_block()? else {
            return Ok(false);
        };
        let floor = block.epoch_before;
        self.parse_own_block(block, counts);
        if floor > *current.time() {
            current.downgrade(&floor);
        }
        Ok(true)
    }

    /// This worker's next block, read and scanned (by whichever worker of
    /// this process got there first); `None` past the end of the file.
    fn next_own_block(&mut self) -> Result<Option<Scanned>, PipelineError> {
        let (peers, local) = (self.peers, self.local.clone());
        let mine = |block: u64| local.contains(&(block % peers));
        let block = self.share.take(&self.settings, self.next, mine);
        let block = block.map_err(|e| PipelineError::io(&self.settings.path, e))?;
        self.next += peers;
        Ok(block)
    }

    /// Parses this worker's block into runs waiting to be sent, each event
    /// judged against the frontier before its own line and sent at the
    /// epoch of its place; moves the frontier and the epochs past the block.
    fn parse_own_block(&mut self, block: Scanned, counts: &SourceCounts) {
        let (format, limits) = (self.settings.format, self.settings.limits);
        let (lines, buf, label) = (&block.lines, &block.buf, self.label.as_str());
        let epochs = &block.epochs;
        let end_floor = block.floor_after;
        let first = block.info.first_line;
        let header = format.header_lines();
        let received = crate::clock::now_micros();
        let pending = &mut self.pending;
        let mut runs = Runs::default();
        let ranges = lines.iter().map(|l| l.bytes.clone());
        parse_lines(format, buf, ranges, first, label, counts, |mut parsed| {
            let seq = match &parsed {
                Ok(e) => e.seq,
                Err(d) => d.seq,
            };
            let at = ((seq + header).saturating_sub(first) as usize).min(lines.len().max(1) - 1);
            let line = lines.get(at);
            if let (Ok(e), Some(line)) = (parsed.as_mut(), line) {
                e.received_us = received;
                if let Some(letter) = judge(e, line, &limits, buf, label, first + at as u64) {
                    counts.demote();
                    parsed = Err(letter);
                }
            }
            let floor = line.map_or(end_floor, |l| l.before.floor(&limits));
            let epoch = |place| epochs.of(place);
            runs.place(parsed, floor, counts, epoch, |time, run| {
                let run = std::mem::take(run);
                pending.push_back(Pending {
                    time,
                    run,
                    floor_after: epochs.of(floor),
                });
            });
        });
        runs.flush(|time, run| {
            let run = std::mem::take(run);
            pending.push_back(Pending {
                time,
                run,
                floor_after: epochs.of(end_floor),
            });
        });
        let latest = self.pending.iter().map(|p| p.time).max();
        self.own_blocks.extend(latest);
    }

    /// Sends waiting runs in order while fewer than [`MAX_TIMES_IN_FLIGHT`]
    /// of this source's times are unfinished, moving the capability up
    /// behind each.
    fn send_pending(
        &mut self,
        cap: &mut Capability<u64>,
        done: &ProbeHandle<u64>,
        mut send: impl FnMut(&Capability<u64>, u64, &mut Vec<Parsed>),
    ) {
        while let Some(next) = self.pending.front_mut() {
            while self.in_flight.front().is_some_and(|t| !done.less_equal(t)) {
                self.in_flight.pop_front();
            }
            let finishable = self.in_flight.front().is_some_and(|t| t < cap.time());
            if self.in_flight.len() >= MAX_TIMES_IN_FLIGHT && finishable {
                return;
            }
            send(cap, next.time, &mut next.run);
            if self.in_flight.back() != Some(&next.time) {
                self.in_flight.push_back(next.time);
            }
            if next.floor_after > *cap.time() {
                cap.downgrade(&next.floor_after);
            }
            self.pending.pop_front();
        }
    }
}

/// Where a worker's blocks lie among the run's: its first, the blocks
/// between its own, and the workers of its process.
struct Place {
    next: u64,
    peers: u64,
    local: std::ops::Range<u64>,
}

impl Place {
    /// Worker `index` of `peers`, with `workers_per_process` in each
    /// process: timely numbers the workers of process p from p × workers.
    fn of(index: usize, peers: usize, workers_per_process: usize) -> Place {
        let (index, peers) = (index as u64, peers.max(1) as u64);
        let per = (workers_per_process.max(1) as u64).min(peers);
        let first = index - index % per;
        Place {
            next: index,
            peers,
            local: first..first + per,
        }
    }
}

/// The dead letter of an event whose time the frontier refuses, or that the
/// scan of its line read otherwise than the full parse did (a JSON line
/// with its `timestamp` key twice: which one counts would be a guess, and
/// the epochs were drawn from the scan's).
fn judge(
    e: &Event,
    line: &Line,
    limits: &TimeLimits,
    buf: &[u8],
    label: &str,
    line_no: u64,
) -> Option<Box<DeadLetter>> {
    let raw = || crate::excerpt::raw(&buf[line.bytes.clone()]);
    let source = || format!("{label}:{line_no}");
    if line.time != Some(e.time_ms) {
        return Some(Box::new(DeadLetter {
            code: "bad_timestamp".to_string(),
            stage: "source".to_string(),
            message: "the line's time cannot be read one way only (is its timestamp given twice?)"
                .to_string(),
            raw: raw(),
            source: source(),
            seq: e.seq,
            received_at: crate::clock::now_rfc3339(),
        }));
    }
    let verdict = line.before.judge(e.time_ms, None, limits);
    verdict
        .code()
        .map(|_| Box::new(time_dead_letter(e, verdict, limits, raw(), source())))
}
