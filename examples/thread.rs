//! `thread.py`: the blocking requests, on a pool of `cpu_count` threads.
//!
//! Why this exists: if one blocking request leaves the program idle, run
//! several at once, each on its own thread: while one thread sleeps in
//! `recv`, the others wait on their own sockets. The tutorial does it with
//! `ThreadPoolExecutor(max_workers=cpu_count())`: submit every request, then
//! collect the futures' results in submission order. With P threads, N URLs
//! take about ⌈N / P⌉ × delay: better, but bounded by the pool size, and each
//! waiting request costs a whole thread (a stack, a kernel task, context
//! switches). (Python adds the GIL; Rust threads have none, but they wait
//! on the network here, so it would not matter.)
//!
//! ```text
//! cargo run --release --example thread -- --urls 10 --delay 1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One submitted call: the URL, and where to put its result (the
/// executor's `Future`).
type Job = (common::Target, mpsc::Sender<common::Outcome>);

/// `ThreadPoolExecutor(max_workers)`: worker threads taking jobs from one
/// queue.
struct ThreadPoolExecutor {
    queue: Option<mpsc::Sender<Job>>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl ThreadPoolExecutor {
    fn new(max_workers: usize, timeout: Duration) -> ThreadPoolExecutor {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let workers = (0..max_workers)
            .map(|i| {
                let jobs = Arc::clone(&jobs);
                thread::Builder::new()
                    .name(format!("ThreadPoolExecutor-0_{i}"))
                    .spawn(move || loop {
                        let job = jobs.lock().expect("a worker panicked").recv();
                        let Ok((target, result)) = job else {
                            break; // shutdown: the queue is closed
                        };
                        let response = common::blocking_request(&target, timeout);
                        let _ = result.send(common::outcome_of(response));
                    })
                    .expect("cannot start a worker thread")
            })
            .collect();
        ThreadPoolExecutor {
            queue: Some(queue),
            workers,
        }
    }

    /// `executor.submit(blocking_request, url)`: returns the future, here
    /// the receiving end of a one-shot channel.
    fn submit(&self, target: common::Target) -> mpsc::Receiver<common::Outcome> {
        let (result, future) = mpsc::channel();
        self.queue
            .as_ref()
            .expect("submit after shutdown")
            .send((target, result))
            .expect("the workers are gone");
        future
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
    let args = common::parse_args();
    let max_workers = common::cpu_count();
    let stage = common::Stage::start("thread", args, common::Concurrency::AtMost(max_workers));
    // with futures.ThreadPoolExecutor(max_workers=cpu_count()) as executor:
    let executor = ThreadPoolExecutor::new(max_workers, stage.timeout());
    let results: Vec<_> = stage
        .targets
        .iter()
        .map(|target| (target.url.clone(), executor.submit(target.clone())))
        .collect();
    // [f.result() for f in results]: in submission order.
    for (url, future) in results {
        let outcome = future
            .recv()
            .unwrap_or_else(|_| Err("RuntimeError: the worker thread died".to_string()));
        common::report_outcome(&url, outcome);
    }
    executor.shutdown();
    stage.finish()
}
