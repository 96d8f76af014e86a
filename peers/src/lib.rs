//! What pyfiber's benchmarks measure it against, kept out of the crate's own
//! build so plain `cargo test` never compiles tokio or generator-rs.
//!
//! - `peer_switch`: the floor under `Generator::send` (a raw corosensei
//!   resume/suspend with a `u64`) and the other stackful generator crate
//!   (generator-rs), timed the way `examples/bench.rs` times pyfiber, so
//!   `bench` can print their rows beside its own and CPython's.
//! - `tokio_client`: the 5,000-URL fetch as a Rust user would write it
//!   (a tokio current-thread runtime over raw TCP).
//! - `compare`: starts the slow server in its own process and runs the
//!   generator example, the tokio client and the Python twin (or the two
//!   crawlers) against it, in turns, in one run.
//!
//! ```text
//! cargo build --release -p pyfiber-peers
//! ```

use rustix::time::{clock_gettime, ClockId};

/// This thread's CPU time in ns (Python: `time.thread_time_ns()`).
pub fn cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Median CPU ns per call of `op` over `samples` samples of at least
/// `sample_ns` each: the same method as `examples/bench.rs`.
pub fn median_ns(samples: usize, sample_ns: u64, mut op: impl FnMut()) -> f64 {
    let mut iters: u64 = 1;
    loop {
        let t = cpu_ns();
        for _ in 0..iters {
            op();
        }
        if cpu_ns() - t >= sample_ns / 4 {
            break;
        }
        iters *= 2;
    }
    iters *= 4;
    let mut per_op: Vec<f64> = (0..samples)
        .map(|_| {
            let t = cpu_ns();
            for _ in 0..iters {
                op();
            }
            (cpu_ns() - t) as f64 / iters as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op[per_op.len() / 2]
}

/// The median of `xs` (the middle one; the mean of the two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
