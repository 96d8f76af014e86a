//! `process.py`: the blocking requests, on a pool of `cpu_count` processes.
//!
//! Why this exists: the first idea for "do several at once": run the same
//! blocking code in several processes. The tutorial uses
//! `ProcessPoolExecutor(max_workers=cpu_count())`: submit every request,
//! then collect the futures' results in submission order. With P processes,
//! N URLs take about ⌈N / P⌉ × delay, plus starting the processes; every
//! waiting request costs a whole process, and when there are more processes
//! than cores, the OS switches between them.
//!
//! Rust has no `ProcessPoolExecutor`, so this example is its own pool: it
//! re-executes itself (`std::env::current_exe()`) with a hidden `--worker`
//! flag, `cpu_count` times. A worker reads one job per line on stdin
//! (`index<TAB>url`), runs `blocking_request`, and writes
//! `index<TAB>ok<TAB>title` or `index<TAB>err<TAB>Name: message` on stdout.
//! The parent hands a new job to whichever worker answers, as the executor
//! does, and prints the results in submission order.
//!
//! ```text
//! cargo run --release --example process -- --urls 10 --delay 1
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
#[command(about = "process.py: fetch with a pool of cpu_count worker processes")]
struct Cli {
    #[command(flatten)]
    common: common::Args,
    /// Run as a pool worker: jobs on stdin, results on stdout.
    #[arg(long, hide = true)]
    worker: bool,
}

/// Keeps a title or an error line on one line of the pipe.
fn one_line(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// A worker process's whole life: `index<TAB>url` in, one result line out,
/// until stdin closes.
fn worker(timeout: Duration) -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Some((index, url)) = line.split_once('\t') else {
            continue;
        };
        let outcome = match common::Target::parse(url) {
            Ok(target) => common::outcome_of(common::blocking_request(&target, timeout)),
            Err(e) => Err(e.line()),
        };
        let reply = match outcome {
            Ok(title) => format!("{index}\tok\t{}\n", one_line(&title)),
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
                    let outcome = if kind == "ok" {
                        Ok(text.to_string())
                    } else {
                        Err(text.to_string())
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
    let max_workers = common::cpu_count();
    let stage = common::Stage::start(
        "process",
        cli.common,
        common::Concurrency::AtMost(max_workers),
    );
    let urls: Vec<String> = stage.targets.iter().map(|t| t.url.clone()).collect();
    let mut executor = match ProcessPoolExecutor::new(max_workers, stage.timeout()) {
        Ok(e) => e,
        Err(e) => common::fail(format!("cannot start the worker processes: {e}")),
    };
    // Submit: each worker gets one job, and a new one each time it answers.
    let mut next_job = 0;
    for w in 0..max_workers.min(urls.len()) {
        if let Err(e) = executor.give(w, next_job, &urls[next_job]) {
            common::fail(format!("worker {w} is gone: {e}"));
        }
        next_job += 1;
    }
    // [f.result() for f in results]: print in submission order, each as
    // soon as it and every earlier one are in.
    let mut results: Vec<Option<common::Outcome>> = vec![None; urls.len()];
    let mut next_print = 0;
    while next_print < urls.len() {
        let Ok((w, index, outcome)) = executor.results.recv() else {
            break; // every worker is gone
        };
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(outcome);
        }
        if next_job < urls.len() && executor.give(w, next_job, &urls[next_job]).is_ok() {
            next_job += 1;
        }
        while let Some(Some(outcome)) = results.get_mut(next_print).map(Option::take) {
            common::report_outcome(&urls[next_print], outcome);
            next_print += 1;
        }
    }
    // Whatever a dead worker never answered is still an outcome.
    for (url, outcome) in urls.iter().zip(results).skip(next_print) {
        let outcome =
            outcome.unwrap_or_else(|| Err("RuntimeError: a worker process died".to_string()));
        common::report_outcome(url, outcome);
    }
    executor.shutdown();
    stage.finish()
}
