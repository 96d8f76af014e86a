//! `thread.py`: follows yuchaoshui/notes `Python异步并发/thread.py`,
//! function by function and in the same order: `results` and its `lock`,
//! `parse(url, response)`, `fetch(url)`, `thread_way()` with
//! `ThreadPoolExecutor(workers)` (`workers = 10`), the main block and
//! `print(results)`.
//!
//! Why this exists: if one blocking request leaves the program idle, run
//! several at once, each on its own thread: while one thread sleeps in
//! `recv`, the others wait on their own sockets. With P threads, N URLs
//! take about ⌈N / P⌉ × delay: with the original's 10 workers, 10 URLs take
//! one delay; but each waiting request costs a whole thread (a stack, a
//! kernel task, context switches), so the pool size bounds the run.
//! (Python adds the GIL; Rust threads have none, but they wait on the
//! network here, so it would not matter.) `results` fills in the order the
//! fetches complete.
//!
//! Renames and additions, and why:
//! - `--workers N` (default 10, the original's) or `--workers cpu`
//!   (forcemain's `cpu_count()`);
//! - Rust's standard library has no `ThreadPoolExecutor`: the one here is
//!   worker threads taking jobs from one queue, and `with` is `shutdown()`;
//! - `results` is `common::RESULTS`, whose `append` takes the lock;
//! - `fetch`'s socket lines are `common::blocking_request` (shared with
//!   sync and process; deadline and size cap added), and a fetch that
//!   raised is an `error:` line on stderr.
//!
//! ```text
//! cargo run --release --example thread -- --urls 10 --delay 1 [--workers cpu]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use pyfiber::PyResult;

#[derive(Parser, Debug)]
#[command(about = "thread.py: fetch on a pool of worker threads")]
struct Cli {
    #[command(flatten)]
    common: common::Args,
    /// Pool size: a number (the original's is 10), or `cpu` for
    /// `cpu_count()`, as forcemain's version has it.
    #[arg(long, value_name = "N|cpu", default_value = "10")]
    workers: common::Workers,
}

/// `def parse(url, response)`: the title, appended to `results` under the
/// lock.
fn parse(url: &str, response: &[u8]) {
    common::RESULTS.append(url, common::parse(response));
}

/// `def fetch(url)`: one blocking GET, then `parse`.
fn fetch(target: &common::Target, timeout: Duration) -> PyResult<()> {
    let response = common::blocking_request(target, timeout)?;
    parse(&target.url, &response);
    Ok(())
}

/// `def thread_way()`: submit every URL to the pool, and leave the `with`
/// block (which waits for them all).
fn thread_way(targets: &[common::Target], workers: usize, timeout: Duration) {
    let executor = ThreadPoolExecutor::new(workers, timeout);
    for target in targets {
        executor.submit(target.clone());
    }
    executor.shutdown();
}

/// `ThreadPoolExecutor(workers)`: worker threads taking jobs from one queue.
struct ThreadPoolExecutor {
    queue: Option<mpsc::Sender<common::Target>>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl ThreadPoolExecutor {
    fn new(max_workers: usize, timeout: Duration) -> ThreadPoolExecutor {
        let (queue, jobs) = mpsc::channel::<common::Target>();
        let jobs = Arc::new(Mutex::new(jobs));
        let workers = (0..max_workers)
            .map(|i| {
                let jobs = Arc::clone(&jobs);
                thread::Builder::new()
                    .name(format!("ThreadPoolExecutor-0_{i}"))
                    .spawn(move || loop {
                        let job = jobs.lock().expect("a worker panicked").recv();
                        let Ok(target) = job else {
                            break; // shutdown: the queue is closed
                        };
                        if let Err(e) = fetch(&target, timeout) {
                            common::RESULTS.append(&target.url, Err(e.line()));
                        }
                    })
                    .expect("cannot start a worker thread")
            })
            .collect();
        ThreadPoolExecutor {
            queue: Some(queue),
            workers,
        }
    }

    /// `executor.submit(fetch, target)`.
    fn submit(&self, target: common::Target) {
        self.queue
            .as_ref()
            .expect("submit after shutdown")
            .send(target)
            .expect("the workers are gone");
    }

    /// `executor.shutdown(wait=True)`, what leaving the `with` block does.
    fn shutdown(mut self) {
        self.queue.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = cli.workers.0;
    let stage = common::Stage::start("thread", cli.common, common::Concurrency::AtMost(workers));
    thread_way(&stage.targets, workers, stage.timeout());
    common::RESULTS.print();
    stage.finish()
}
