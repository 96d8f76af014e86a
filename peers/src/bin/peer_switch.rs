//! `peer_switch`: the switch floor and generator-rs, for `examples/bench.rs`.
//!
//! Prints `op median_ns` lines (thread CPU time, medians of samples), the
//! same method as bench's own rows:
//! - `raw_switch`: `coroutine.resume(x)` into `loop { x = yielder.suspend(x) }`
//!   on a corosensei `DefaultStack`: what any send on a corosensei fiber
//!   costs at least.
//! - `generator_rs_send`: generator-rs, `Gn::new_scoped` + `send` into the
//!   same loop.
//! - `generator_rs_create_exhaust`: create, start and exhaust a one-yield
//!   generator-rs generator (it maps a fresh stack each time).
//! - `raw_create_exhaust`: the same with a fresh corosensei coroutine on one
//!   reused stack (`with_stack`, two resumes, `into_stack`): the floor under
//!   pyfiber's create + exhaust with a pooled stack.
//! - `raw_create_exhaust_boxed`: the same, in the shape a generator object
//!   has: the body a function of its own, boxed as a `dyn FnOnce` (a
//!   generator type cannot name every body's type), and each resume made
//!   from a function of its own (a `next` method). The floor of the first
//!   row is for a body that inlines into the fiber's entry and cannot
//!   unwind; this one is the floor under pyfiber's `Generator::new` and
//!   `Iterator::next` (NOTES, "The afternoon of 3 December").
//! - `raw_reused_fiber`: the same one-yield body run by one fiber that
//!   never finishes (it loops, taking the next body): what creating would
//!   cost if a pool kept started fibers instead of stacks.
//!
//! ```text
//! target/release/peer_switch [--quick]
//! ```

use std::hint::black_box;

use corosensei::{stack::DefaultStack, Coroutine, CoroutineResult, Yielder};
use generator::Gn;
use pyfiber_peers::median_ns;

/// The one-yield body as a function of its own, as a generator's body is.
#[inline(never)]
fn one_yield(y: &Yielder<(), u64>) -> u64 {
    y.suspend(1);
    0
}

/// A body behind a box, as one generator type holds every body.
type BoxedBody = Box<dyn FnOnce(&Yielder<(), u64>) -> u64>;
/// The raw rows' fiber: no input, yields and returns a `u64`.
type RawFiber = Coroutine<(), u64, u64, DefaultStack>;

/// One resume from a function of its own, as a generator's `next` makes it.
#[inline(never)]
fn next(co: &mut RawFiber) -> u64 {
    match co.resume(()) {
        CoroutineResult::Yield(v) => v,
        CoroutineResult::Return(r) => r,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (samples, sample_ns) = if quick {
        (5, 2_000_000)
    } else {
        (21, 20_000_000)
    };

    let mut co: Coroutine<u64, u64, (), DefaultStack> =
        Coroutine::with_stack(DefaultStack::new(256 * 1024).expect("stack"), |y, mut x| {
            loop {
                x = y.suspend(black_box(x));
            }
        });
    let mut i = 0u64;
    let raw = median_ns(samples, sample_ns, || {
        i += 1;
        black_box(co.resume(i));
    });
    println!("raw_switch {raw}");

    let mut g = Gn::<u64>::new_scoped(|mut s| {
        let mut x = 0u64;
        loop {
            x = s.yield_(black_box(x)).unwrap_or(0);
        }
    });
    g.resume(); // to the first yield, like next(g)
    let mut i = 0u64;
    let send = median_ns(samples, sample_ns, || {
        i += 1;
        black_box(g.send(i));
    });
    println!("generator_rs_send {send}");

    let create = median_ns(samples, sample_ns / 4, || {
        let g = Gn::<()>::new_scoped(|mut s| {
            s.yield_(1u64);
            generator::done!();
        });
        for v in g {
            black_box(v);
        }
    });
    println!("generator_rs_create_exhaust {create}");

    let mut stack = Some(DefaultStack::new(256 * 1024).expect("stack"));
    let raw_create = median_ns(samples, sample_ns, || {
        let mut co: RawFiber = Coroutine::with_stack(stack.take().expect("the stack"), |y, ()| {
            y.suspend(1);
            0
        });
        black_box(co.resume(()));
        black_box(co.resume(()));
        stack = Some(co.into_stack());
    });
    println!("raw_create_exhaust {raw_create}");

    let raw_boxed = median_ns(samples, sample_ns, || {
        let body: BoxedBody = Box::new(one_yield);
        let mut co: RawFiber =
            Coroutine::with_stack(stack.take().expect("the stack"), |y, ()| body(y));
        black_box(next(&mut co));
        black_box(next(&mut co));
        stack = Some(co.into_stack());
    });
    println!("raw_create_exhaust_boxed {raw_boxed}");

    // 0 starts a body (it yields 1 once), 2 says it finished.
    let mut warm: Coroutine<u64, u64, (), DefaultStack> =
        Coroutine::with_stack(DefaultStack::new(256 * 1024).expect("stack"), |y, _| loop {
            black_box(y.suspend(1));
            y.suspend(2);
        });
    let reused = median_ns(samples, sample_ns, || {
        black_box(warm.resume(0));
        black_box(warm.resume(0));
    });
    println!("raw_reused_fiber {reused}");
}
