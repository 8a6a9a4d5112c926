use std::sync::{Arc, Mutex};

use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::Probe;

use super::*;

fn line(x: &u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{x}\n").as_bytes());
}

fn block(seqs: &[u64]) -> Lines {
    Lines::format(&mut seqs.to_vec(), |x| *x, line)
}

fn text(seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    seqs.into_iter().for_each(|s| line(&s, &mut out));
    out
}

#[test]
fn no_blocks_and_empty_blocks_merge_to_no_text() {
    assert_eq!(Lines::merge(Vec::new()), Text::default());
    let empties = vec![Lines::default(), block(&[]), Lines::default()];
    assert_eq!(Lines::merge(empties), Text::default());
}

#[test]
fn a_lone_block_is_moved_not_copied() {
    let lone = block(&[5, 1, 3]);
    let at = lone.bytes.as_ptr();
    let merged = Lines::merge(vec![Lines::default(), lone]);
    assert_eq!(merged.bytes.as_ptr(), at);
    assert_eq!((merged.lines, merged.bytes), (3, text([1, 3, 5])));
}

#[test]
fn records_without_a_line_take_no_place() {
    let mut xs: Vec<u64> = (0..10).rev().collect();
    let odd = Lines::format(
        &mut xs,
        |x| *x,
        |x, out| {
            if x % 2 == 1 {
                line(x, out)
            }
        },
    );
    assert_eq!(odd.seqs, [1, 3, 5, 7, 9]);
    let even = block(&[0, 2, 4, 6, 8]);
    let merged = Lines::merge(vec![odd, even]);
    assert_eq!((merged.lines, merged.bytes), (10, text(0..10)));
}

#[test]
fn equal_seqs_keep_their_blocks_order_and_end() {
    let a = Lines::format(&mut [(1u64, b'a'), (2, b'a')], |x| x.0, |x, o| o.push(x.1));
    let b = Lines::format(&mut [(1u64, b'b'), (2, b'b')], |x| x.0, |x, o| o.push(x.1));
    assert_eq!(Lines::merge(vec![a, b]).bytes, b"abab");
}

/// Seeded oracle: seqs dealt at random to blocks, as workers' containers
/// would be, merge to the text of every seq in order.
#[test]
fn random_blocks_merge_to_the_sorted_text() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..200 {
        let blocks = 1 + (next() % 8) as usize;
        let mut dealt = vec![Vec::new(); blocks];
        let n = next() % 300;
        // Runs of consecutive seqs go to one block, as one worker's would.
        let mut seq = 0;
        while seq < n {
            let run = 1 + next() % 5;
            let to = next() as usize % blocks;
            dealt[to].extend(seq..(seq + run).min(n));
            seq += run;
        }
        let merged = Lines::merge(dealt.iter().map(|d| block(d)).collect());
        assert_eq!(merged.lines, n, "round {round}");
        assert_eq!(merged.bytes, text(0..n), "round {round}");
    }
}

/// Each time's lines are written once the frontier passes it, times in
/// order, and a time's blocks from every worker are merged.
#[test]
fn ordered_lines_write_each_time_once_complete_in_order() {
    let written = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&written);
    timely::execute(timely::Config::process(2), move |worker| {
        let out = Arc::clone(&out);
        let index = worker.index() as u64;
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<u64>();
            let lines = stream.format_lines(|x| *x, line, "Format");
            let probe = lines.clone().probe().0;
            lines.ordered_lines(move |t| out.lock().unwrap().push(t), "Write");
            (input, probe)
        });
        // Time 1 has seqs below time 0's: times first, then seqs.
        input.send(100 + index);
        input.advance_to(1);
        input.send(102 + index);
        input.send(index);
        input.advance_to(2);
        input.send(200 + index);
        input.close();
        worker.step_while(|| !probe.done());
    })
    .unwrap();
    let texts = written.lock().unwrap().clone();
    let bytes: Vec<u8> = texts.iter().flat_map(|t| t.bytes.clone()).collect();
    assert_eq!(bytes, text([100, 101, 0, 1, 102, 103, 200, 201]));
    assert_eq!(texts.iter().map(|t| t.lines).sum::<u64>(), 8);
}
