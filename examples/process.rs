//! `process.py`: follows yuchaoshui/notes `Python异步并发/process.py`,
//! function by function and in the same order: `parse(url, response)`
//! (which prints `(url, title)`), `fetch(url)`, `process_way()` with
//! `ProcessPoolExecutor(workers)` (`workers = 10`), the main block.
//!
//! Why this exists: the first idea for "do several at once": run the same
//! blocking code in several processes. With P processes, N URLs take about
//! ⌈N / P⌉ × delay, plus starting the processes: with the original's 10
//! workers, 10 URLs take one delay; but every waiting request costs a whole
//! process, and when there are more processes than cores, the OS switches
//! between them. Each tuple is printed as its fetch completes.
//!
//! Renames and additions, and why:
//! - `--workers N` (default 10, the original's) or `--workers cpu`
//!   (forcemain's `cpu_count()`);
//! - Rust has no `ProcessPoolExecutor`, so this example is its own pool: it
//!   re-executes itself (`std::env::current_exe()`) with a hidden `--worker`
//!   flag, once per worker. A worker reads one job per line on stdin
//!   (`index<TAB>url`), runs `fetch`, and writes its outcome on stdout
//!   (`index<TAB>ok<TAB>title`, `index<TAB>none<TAB>` for a page without a
//!   title, `index<TAB>err<TAB>Name: message`). The parent hands a new job
//!   to whichever worker answers, as the executor does;
//! - the original's children print `(url, title)` themselves; here the
//!   parent prints what its workers send, as they send it (the same
//!   completion order, one stdout, and the run can count its outcomes);
//! - `fetch`'s socket lines are `common::blocking_request` (shared with
//!   sync and thread; deadline and size cap added), and a fetch that raised
//!   is an `error:` line on stderr.
//!
//! ```text
//! cargo run --release --example process -- --urls 10 --delay 1 [--workers cpu]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "process.py: fetch on a pool of worker processes")]
struct Cli {
    #[command(flatten)]
    common: common::Args,
    /// Pool size: a number (the original's is 10), or `cpu` for
    /// `cpu_count()`, as forcemain's version has it.
    #[arg(long, value_name = "N|cpu", default_value = "10")]
    workers: common::Workers,
    /// Run as a pool worker: jobs on stdin, outcomes on stdout.
    #[arg(long, hide = true)]
    worker: bool,
}

/// `def parse(url, response)`: the title. The original prints
/// `(url, title)` here; the worker sends it to the parent, which prints it.
fn parse(response: &[u8]) -> common::Outcome {
    common::parse(response)
}

/// `def fetch(url)`: one blocking GET, then `parse`.
fn fetch(url: &str, timeout: Duration) -> common::Outcome {
    let target = common::Target::parse(url).map_err(|e| e.line())?;
    let response = common::blocking_request(&target, timeout).map_err(|e| e.line())?;
    parse(&response)
}

/// Keeps a title or an error line on one line of the pipe.
fn one_line(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// A worker process's whole life: `index<TAB>url` in, one outcome line out,
/// until stdin closes.
fn worker(timeout: Duration) -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Some((index, url)) = line.split_once('\t') else {
            continue;
        };
        let reply = match fetch(url, timeout) {
            Ok(Some(title)) => format!("{index}\tok\t{}\n", one_line(&title)),
            Ok(None) => format!("{index}\tnone\t\n"),
            Err(line) => format!("{index}\terr\t{}\n", one_line(&line)),
        };
        if stdout
            .write_all(reply.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break; // the parent is gone
        }
    }
    ExitCode::SUCCESS
}

/// `def process_way()`: submit every URL to the pool; print each outcome
/// as it arrives; leave the `with` block (which waits for the workers).
fn process_way(urls: &[String], workers: usize, timeout: Duration) {
    let mut executor = match ProcessPoolExecutor::new(workers.min(urls.len()), timeout) {
        Ok(e) => e,
        Err(e) => common::fail(format!("cannot start the worker processes: {e}")),
    };
    // Each worker gets one job, and a new one each time it answers.
    let mut next_job = 0;
    for w in 0..executor.workers.len() {
        if let Err(e) = executor.give(w, next_job, &urls[next_job]) {
            common::fail(format!("worker {w} is gone: {e}"));
        }
        next_job += 1;
    }
    let mut done = vec![false; urls.len()];
    let mut answered = 0;
    while answered < urls.len() {
        let Ok((w, index, outcome)) = executor.results.recv() else {
            break; // every worker is gone
        };
        // An index out of range, or answered twice, is not an outcome.
        if done.get(index).is_none_or(|d| *d) {
            continue;
        }
        done[index] = true;
        answered += 1;
        common::print_result(&urls[index], outcome);
        if next_job < urls.len() && executor.give(w, next_job, &urls[next_job]).is_ok() {
            next_job += 1;
        }
    }
    // Whatever a dead worker never answered is still an outcome.
    for (url, _) in urls.iter().zip(&done).filter(|(_, d)| !**d) {
        common::print_result(url, Err("RuntimeError: a worker process died".to_string()));
    }
    executor.shutdown();
}

/// One worker process, and the pipe to give it jobs.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// `ProcessPoolExecutor(max_workers)`: the worker processes, and one thread
/// per worker turning its stdout lines into `(worker, index, outcome)`
/// messages.
struct ProcessPoolExecutor {
    workers: Vec<Worker>,
    results: mpsc::Receiver<(usize, usize, common::Outcome)>,
}

impl ProcessPoolExecutor {
    fn new(max_workers: usize, timeout: Duration) -> std::io::Result<ProcessPoolExecutor> {
        let exe = std::env::current_exe()?;
        let (tx, results) = mpsc::channel();
        let mut workers = Vec::with_capacity(max_workers);
        for w in 0..max_workers {
            let mut child = Command::new(&exe)
                .arg("--worker")
                .arg("--timeout")
                .arg(timeout.as_secs_f64().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let stdout = child.stdout.take().expect("piped");
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut parts = line.splitn(3, '\t');
                    let (Some(index), Some(kind), Some(text)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let Ok(index) = index.parse() else { continue };
                    let outcome = match kind {
                        "ok" => Ok(Some(text.to_string())),
                        "none" => Ok(None),
                        _ => Err(text.to_string()),
                    };
                    if tx.send((w, index, outcome)).is_err() {
                        break;
                    }
                }
            });
            let stdin = child.stdin.take();
            workers.push(Worker { child, stdin });
        }
        Ok(ProcessPoolExecutor { workers, results })
    }

    /// Hands job `index` to worker `w`.
    fn give(&mut self, w: usize, index: usize, url: &str) -> std::io::Result<()> {
        // The timeline's `started` is the hand-off; the worker's connect and
        // first byte happen in another process and are not recorded.
        common::mark(url, common::Mark::Started);
        let stdin = self.workers[w].stdin.as_mut().expect("open until shutdown");
        stdin.write_all(format!("{index}\t{url}\n").as_bytes())?;
        stdin.flush()
    }

    /// `executor.shutdown(wait=True)`: close the job pipes, wait for the
    /// workers to exit.
    fn shutdown(mut self) {
        for worker in &mut self.workers {
            worker.stdin.take();
        }
        for worker in &mut self.workers {
            let _ = worker.child.wait();
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.worker {
        return worker(Duration::from_secs_f64(cli.common.timeout));
    }
    let workers = cli.workers.0;
    let stage = common::Stage::start("process", cli.common, common::Concurrency::AtMost(workers));
    let urls: Vec<String> = stage.targets.iter().map(|t| t.url.clone()).collect();
    process_way(&urls, workers, stage.timeout());
    stage.finish()
}
