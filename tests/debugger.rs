//! Stepping through yield/send in a debugger, kept working by tests.
//!
//! The first use pyfiber is built for is putting a breakpoint in a generator
//! body and seeing the chain the tutorials draw by hand: body → send →
//! Task.step → Future.set_result → selector callback → event_loop → main. These
//! tests drive rust-gdb in batch mode over the debug build of the ladder's
//! `generator` and `yield_from` examples and assert:
//! - one `bt` shows that whole chain, across the fiber boundary;
//! - `next` over `co.yield_(f)` lands on the line after it, once the loop has
//!   resumed the task;
//! - the gdb helper (`tools/gdb/pyfiber.py`) prints the chain with each
//!   frame's role, and the tasks with their generator chains.
//!
//! Breakpoint lines are found by searching the example's source for the code
//! they sit on, so editing an example does not silently break the tests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{examples_dir, root};

/// The 1-based line of `file` (under examples/) that contains `needle`;
/// exactly one line must.
fn line_of(file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(root().join("examples").join(file)).expect("example source");
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{file}: expected exactly one line containing {needle:?}, found {hits:?}"
    );
    hits[0]
}

/// Runs rust-gdb in batch mode on an example with the given commands;
/// returns everything it and the program printed.
fn gdb(example: &str, args: &str, commands: &[String]) -> String {
    let binary = examples_dir().join(example);
    let mut cmd = Command::new("rust-gdb");
    cmd.args(["-q", "-nx", "-batch"])
        .args(["-ex", "set pagination off", "-ex", "set confirm off"])
        .args(["-ex", &format!("set args {args}")]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    cmd.args(["-ex", "kill"]).arg(&binary);
    cmd.current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect(
        "rust-gdb must be on PATH (it ships with rustup; gdb itself comes from the gdb package)",
    );
    // Bounded: gdb on a debug build takes a few seconds.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait for gdb").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rust-gdb did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("gdb output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Breakpoint 1"),
        "gdb never hit the breakpoint:\n{text}"
    );
    text
}

/// Asserts that `patterns` occur in `text` in this order (each found after
/// the previous one), naming the first one missing.
fn assert_in_order(text: &str, patterns: &[&str]) {
    let mut from = 0;
    for p in patterns {
        match text[from..].find(p) {
            Some(i) => from += i + p.len(),
            None => panic!("{p:?} missing (after the earlier ones) in:\n{text}"),
        }
    }
}

/// The part of the output that `bt` printed: the `#N` lines.
fn backtrace(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_breakpoint_in_fetch_shows_the_whole_chain_in_one_bt() {
    // After `chunk = yield f` returned: the loop saw the socket readable,
    // on_readable set the future's result, Task.step sent it in.
    let line = line_of("generator.rs", "common::append_chunk(&mut self.response");
    let out = gdb(
        "generator",
        "--urls 1 --delay 0.05",
        &[
            format!("break generator.rs:{line}"),
            "run".into(),
            "bt".into(),
        ],
    );
    let bt = backtrace(&out);
    assert_in_order(
        &bt,
        &[
            "generator::Spider::fetch",  // the body, on the fiber
            "generator::main::{closure", // Task(spider.fetch())'s generator
            "<signal handler called>",   // corosensei's fiber boundary
            "pyfiber::generator::Generator::send",
            "pyfiber::task::Task::step",
            "pyfiber::future::Future::set_result",
            "generator::{impl#0}::fetch::on_readable", // the selector callback
            "generator::event_loop",
            "generator::main",
        ],
    );
}

#[test]
fn the_first_resume_comes_from_on_connected() {
    let line = line_of("generator.rs", "self.sock.take_error()?;");
    let out = gdb(
        "generator",
        "--urls 1 --delay 0.05",
        &[
            format!("break generator.rs:{line}"),
            "run".into(),
            "bt".into(),
        ],
    );
    assert_in_order(
        &backtrace(&out),
        &[
            "generator::Spider::fetch",
            "<signal handler called>",
            "pyfiber::task::Task::step",
            "pyfiber::future::Future::set_result",
            "generator::{impl#0}::fetch::on_connected",
            "generator::event_loop",
            "generator::main",
        ],
    );
}

#[test]
fn next_over_the_yield_lands_on_the_line_after_it() {
    let yield_line = line_of(
        "generator.rs",
        "let chunk = co.yield_(future); // chunk = yield future",
    );
    let after = yield_line + 1;
    let out = gdb(
        "generator",
        "--urls 1 --delay 0.05",
        &[
            format!("break generator.rs:{yield_line}"),
            "run".into(),
            "next".into(),
            "bt 1".into(),
        ],
    );
    // gdb's `next` steps over the whole suspension: the fiber switches out,
    // the loop selects, on_readable sets the result, Task.step switches back
    // in, and gdb stops on the next line of the same frame.
    let frame = backtrace(&out);
    assert!(
        frame.contains("generator::Spider::fetch")
            && frame.contains(&format!("examples/generator.rs:{after}")),
        "`next` did not stop on line {after} of fetch:\n{out}"
    );
}

#[test]
fn same_fiber_delegation_is_the_call_stack() {
    // yield_from.rs by default: read → read_all → fetch are plain calls on
    // one fiber, so the delegation chain is right there in the backtrace.
    let line = line_of(
        "yield_from.rs",
        "let chunk = yield_from_future(co, &future); // chunk = yield from future",
    );
    let out = gdb(
        "yield_from",
        "--urls 1 --delay 0.05",
        &[
            format!("break yield_from.rs:{line}"),
            "run".into(),
            "bt".into(),
        ],
    );
    assert_in_order(
        &backtrace(&out),
        &[
            "yield_from::read",
            "yield_from::read_all",
            "yield_from::Spider::fetch",
            "<signal handler called>",
            "pyfiber::task::Task::step",
            "yield_from::main",
        ],
    );
}

#[test]
fn the_gdb_helper_prints_the_chain_and_the_tasks() {
    // --literal: each sub-generator has its own fiber, so gi_yieldfrom links
    // fetch → read_all → read → __iter__, and `pyfiber tasks` shows it.
    let read_line = line_of(
        "yield_from.rs",
        "let chunk = yield_from_future(co, &future); // chunk = yield from future",
    ) + 1;
    let helper = root().join("tools/gdb/pyfiber.py");
    let out = gdb(
        "yield_from",
        "--urls 1 --delay 0.05 --literal",
        &[
            format!("source {}", helper.display()),
            format!("break yield_from.rs:{read_line}"),
            "run".into(),
            "pyfiber bt".into(),
            "pyfiber tasks".into(),
        ],
    );
    assert!(out.contains("pyfiber gdb helper loaded"), "{out}");
    assert_in_order(
        &out,
        &[
            "yield_from::read",
            "<- generator body",
            "----- fiber boundary",
            // read_all and fetch are suspended in `yield from`: the send
            // passes through them to read without waking their fibers.
            "pyfiber::generator::Generator::forward",
            "<- yield from: the send goes straight on to the sub-generator",
            "pyfiber::generator::Generator::forward",
            "pyfiber::generator::Generator::send",
            "<- send: resumes the generator's fiber",
            "pyfiber::task::Task::step",
            "<- Task.step",
            "pyfiber::future::Future::set_result",
            "yield_from::read::on_readable",
            "yield_from::event_loop",
            "yield_from::main",
            "<- main",
        ],
    );
    assert_in_order(
        &out,
        &[
            "current: Task-1 (in Task.step)",
            "resumed by Future-",
            "(done: b'HTTP/1.0 200 OK",
            "fetch [GEN_RUNNING]",
            "yield from → read_all [GEN_RUNNING]",
            "yield from → read [GEN_RUNNING]",
            "tasks: 1",
            "Task-1 fetch: running",
        ],
    );
}
