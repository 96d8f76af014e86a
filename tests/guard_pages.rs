//! Every fiber stack ends in a guard page, including the ones whose guard
//! was installed with its whole batch (`stack_pool::batch`, one
//! `process_madvise` for 64 stacks): a body that recurses without end must
//! fault on its own guard, not run on into the stack below it, which
//! belongs to another, suspended, generator.
//!
//! The overflow happens in a child process (this test binary, run again
//! with `PYFIBER_GUARD_CHILD=K`): it suspends K generators, so the next
//! stack carved is the K-th of its batch, then recurses in a new one,
//! printing each depth to stderr as it goes. The parent checks the child
//! died of a memory fault and how deep it got: about one stack's worth of
//! frames. Without the guard the recursion would write through the
//! neighbour's frames and go on for at least another stack's worth.

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use pyfiber::stack_pool::STACK_SIZE;
use pyfiber::{Generator, Value};

const CHILD: &str = "PYFIBER_GUARD_CHILD";
/// Bytes of each recursion level's own array (its frame is a little more).
const FRAME: usize = 1024;

// Recursing without end is the point: it must end in the guard's fault.
#[allow(unconditional_recursion)]
fn deep(depth: u64) -> u64 {
    let frame = [depth as u8; FRAME];
    black_box(&frame);
    eprintln!("depth {depth} at {:p}", &frame);
    deep(depth + 1) + u64::from(black_box(frame)[0])
}

/// The child's side; does nothing in a normal test run.
#[test]
fn overflow_child() {
    let Ok(k) = std::env::var(CHILD) else {
        return;
    };
    let k: usize = k.parse().expect("a count");
    let mut live = Vec::new();
    for _ in 0..k {
        let g = Generator::new(|co| {
            co.yield_(Value::None)?;
            Ok(Value::None)
        });
        g.next().expect("suspends");
        live.push(g);
    }
    let g = Generator::new(|_co| Ok(Value::Int(deep(0) as i64)));
    let _ = g.next();
    panic!("the recursion returned: no stack overflow");
}

#[test]
fn a_fiber_overflowing_its_stack_faults_on_its_own_guard_page() {
    let me = std::env::current_exe().expect("this test binary");
    // The 2nd, 3rd, last and next-to-last stacks of the first batch, and
    // the first two of the second one: each has a suspended neighbour
    // below it (or the previous batch) that a missing guard would expose.
    for k in [1usize, 2, 62, 63, 64, 65] {
        let out = Command::new(&me)
            .args([
                "--exact",
                "overflow_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, k.to_string())
            .output()
            .expect("the child runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let signal = out.status.signal();
        assert!(
            signal == Some(11) || signal == Some(7),
            "stack {k}: the child should die of SIGSEGV (or SIGBUS), got {:?}\n{}",
            out.status,
            stderr.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
        // How far down the recursion got: the span between the first and
        // the deepest level's frame, whatever a level's size is in this
        // build. One stack holds at most STACK_SIZE; running on through
        // the neighbour below would take at least one more.
        let at = |l: &str| -> Option<(usize, usize)> {
            let (d, a) = l.strip_prefix("depth ")?.split_once(" at 0x")?;
            Some((d.parse().ok()?, usize::from_str_radix(a.trim(), 16).ok()?))
        };
        let levels: Vec<(usize, usize)> = stderr.lines().filter_map(at).collect();
        let first = levels.iter().find(|(d, _)| *d == 0).map(|(_, a)| *a);
        let deepest = levels.iter().max_by_key(|(d, _)| *d).copied();
        let (Some(first), Some((depth, last))) = (first, deepest) else {
            panic!("stack {k}: the child printed no depths:\n{stderr}");
        };
        let span = first - last;
        assert!(
            span <= STACK_SIZE,
            "stack {k}: {depth} levels spanned {span} bytes, more than one {STACK_SIZE}-byte stack: no guard stopped it"
        );
        assert!(
            span >= STACK_SIZE / 2,
            "stack {k}: faulted after {depth} levels, {span} bytes: not an overflow of this stack"
        );
    }
}
