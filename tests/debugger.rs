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
//! Breakpoints name `examples/FILE:LINE`: a bare `generator.rs:LINE` would
//! also break at that line of `src/generator.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pyfiber::{Exception, Future, Generator, Task, Value};

mod support;
use support::{examples_dir, root};

/// Whether this test binary, and the examples it builds, are a debug build
/// (`cargo test`) or a release one (`cargo test --release`, which .ci/run
/// runs too): a few claims hold only in a debug build, and the release
/// tests say which instead.
const DEBUG: bool = cfg!(debug_assertions);

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
    let out = gdb_on(&examples_dir().join(example), &[], args, commands);
    assert!(
        out.contains("Breakpoint 1"),
        "gdb never hit the breakpoint:\n{out}"
    );
    out
}

/// Runs rust-gdb in batch mode on `binary` with `options` first (as typed
/// before `--args`), then the commands; returns everything it and the
/// program printed.
fn gdb_on(binary: &Path, options: &[&str], args: &str, commands: &[String]) -> String {
    let mut cmd = Command::new("rust-gdb");
    cmd.args(["-q", "-nx", "-batch"])
        .args(options)
        .args(["-ex", "set pagination off", "-ex", "set confirm off"])
        .args(["-ex", &format!("set args {args}")]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    cmd.args(["-ex", "kill"]).arg(binary);
    run_gdb(cmd)
}

/// Runs a prepared rust-gdb command line, bounded in time, from the
/// repository root; returns everything it and the program printed.
fn run_gdb(mut cmd: Command) -> String {
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
    assert!(!text.contains("internal-error"), "gdb crashed:\n{text}");
    text
}

/// What gdb prints when a command a learner typed did not work.
const GDB_ERRORS: &[&str] = &[
    "not defined",
    "No symbol",
    "Python Exception",
    "No registers",
    "Undefined command",
    "internal-error",
    "Traceback",
    "<unreadable",
];

/// Fails on the first gdb error in `out`, naming it.
fn assert_no_gdb_error(out: &str) {
    for e in GDB_ERRORS {
        assert!(!out.contains(e), "gdb said {e:?}:\n{out}");
    }
}

/// The helper, as `-x` loads it.
fn helper() -> String {
    root().join("tools/gdb/pyfiber.py").display().to_string()
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
        "--urls 1 --delay 0.05 --timeout 600",
        &[
            format!("break examples/generator.rs:{line}"),
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
        "--urls 1 --delay 0.05 --timeout 600",
        &[
            format!("break examples/generator.rs:{line}"),
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
    if !DEBUG {
        // A release build inlines Co::yield_ and corosensei's switch into
        // the body: there is no call for `next` to step over, and gdb
        // follows the switch into corosensei (NOTES, "Release builds").
        eprintln!("next across a yield: a debug-build claim; nothing to check in release");
        return;
    }
    let yield_line = line_of(
        "generator.rs",
        "let chunk = co.yield_(future.into()); // chunk = yield future",
    );
    let after = yield_line + 1;
    let out = gdb(
        "generator",
        "--urls 1 --delay 0.05 --timeout 600",
        &[
            format!("break examples/generator.rs:{yield_line}"),
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
        "--urls 1 --delay 0.05 --timeout 600",
        &[
            format!("break examples/yield_from.rs:{line}"),
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
        "--urls 1 --delay 0.05 --literal --timeout 600",
        &[
            format!("source {}", helper.display()),
            format!("break examples/yield_from.rs:{read_line}"),
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

/// README.md's "Debugging a generator" block, run as written: its `cargo`
/// line, then its `rust-gdb ... --args ...` line with its `(gdb)` lines as
/// commands (batch mode adds only `-q -nx -batch`). Any gdb error fails it,
/// and the first stop must show the chain the README names.
#[test]
fn the_readme_block_runs_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("## Debugging a generator")
        .nth(1)
        .expect("README.md has a \"Debugging a generator\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section has a ```sh block");
    let (mut cargo, mut rust_gdb, mut commands) = (None, None, Vec::new());
    for line in block.lines() {
        if let Some(c) = line.strip_prefix("(gdb) ") {
            commands.push(c.to_string());
        } else if line.starts_with("cargo ") {
            cargo = Some(line);
        } else if line.starts_with("rust-gdb ") {
            rust_gdb = Some(line);
        } else {
            assert!(line.trim().is_empty(), "README block: what is {line:?}?");
        }
    }
    let cargo: Vec<&str> = cargo.expect("a cargo line").split_whitespace().collect();
    let status = Command::new(env!("CARGO"))
        .args(&cargo[1..])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "README's {cargo:?} failed");
    let words: Vec<&str> = rust_gdb
        .expect("a rust-gdb line")
        .split_whitespace()
        .collect();
    assert!(words.contains(&"--args"), "{words:?}");
    let mut cmd = Command::new(words[0]);
    cmd.args(["-q", "-nx", "-batch"]);
    let at = words.iter().position(|w| *w == "--args").unwrap();
    cmd.args(&words[1..at]);
    for c in &commands {
        cmd.args(["-ex", c]);
    }
    cmd.args(&words[at..]);
    let out = run_gdb(cmd);
    assert_no_gdb_error(&out);
    assert_in_order(
        &out,
        &[
            "pyfiber gdb helper loaded",
            "Breakpoint 1, generator::Spider::parse",
            // pyfiber bt: body → send → Task.step → set_result → selector
            // callback → loop → main
            "generator::Spider::parse",
            "<- generator body",
            "generator::Spider::fetch",
            "<- generator body",
            "----- fiber boundary",
            "pyfiber::generator::Generator::send",
            "<- send",
            "pyfiber::task::Task::step",
            "<- Task.step",
            "pyfiber::future::Future::set_result",
            "<- Future.set_result",
            "on_readable",
            "<- selector callback",
            "generator::event_loop",
            "<- loop()",
            "generator::main",
            "<- main",
        ],
    );
    // pyfiber tasks (the program prints it on its stderr).
    assert_in_order(
        &out,
        &[
            "current: Task-1 (in Task.step)",
            "fetch [GEN_RUNNING]",
            "tasks: 1",
        ],
    );
}

/// The library's eight functions a learner names, and what the debuggee
/// below calls each one for.
const PLAIN_NAMES: &[&str] = &[
    "pyfiber::generator::Generator::send",
    "pyfiber::generator::Generator::throw",
    "pyfiber::generator::Generator::close",
    "pyfiber::generator::Co::yield_",
    "pyfiber::generator::Co::yield_from",
    "pyfiber::task::Task::step",
    "pyfiber::future::Future::set_result",
    "pyfiber::future::Future::add_done_callback",
];

/// Python's repr() of the values `debuggee` prints, computed by CPython.
fn python_reprs() -> Vec<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "for v in (None, 42, ('a', 1), b'HTTP/1.0 200 OK\\r\\n', \"it's\", [1.5, True], (7,)):\n    print(repr(v))",
        )
        .output()
        .expect("python3 on PATH");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Where the gdb tests stop the debuggee: its arguments are the values to
/// print. Not inlined, so the breakpoint has a frame.
#[inline(never)]
fn stop_here(values: &[&dyn std::any::Any]) {
    std::hint::black_box(values);
}

/// A generic function with two instances: `pyfiber break` must find both.
#[inline(never)]
fn convert<T: Into<Value>>(t: T) -> Value {
    t.into()
}

/// The program the plain-name and pretty-printer tests debug (this test
/// binary, run with `--exact debuggee`). On its own it checks that each of
/// the eight functions does what the gdb test counts it for, and that the
/// values it stops with have the reprs Python gives them.
#[test]
fn debuggee() {
    // Task(coro) steps once (Task::step, send, yield_, add_done_callback);
    // the coroutine yields `waiting` and is resumed by its set_result.
    let waiting = Future::new();
    let w = waiting.clone();
    let task = Task::new(Generator::named("fetch", move |co| {
        let chunk = co.yield_(w.clone().into())?; // chunk = yield f
        Ok(chunk)
    }));
    // yield from, then close() through the delegator.
    let sub = || {
        Generator::named("sub", |co| {
            co.yield_(1.into())?;
            co.yield_(2.into())?;
            Ok(Value::None)
        })
    };
    let outer = Generator::named("outer", move |co| co.yield_from(&sub()));
    assert_eq!(outer.send(Value::None), Ok(Value::Int(1)));
    assert_eq!(outer.close(), Ok(Value::None));
    // throw() into a suspended generator.
    let thrown = sub();
    assert_eq!(thrown.send(Value::None), Ok(Value::Int(1)));
    let boom = Exception::ValueError("boom".into());
    assert_eq!(thrown.throw(boom.clone()), Err(boom.clone()));
    // What the pretty-printer test prints.
    let none = Value::None;
    let int = convert(42);
    let pair = Value::Tuple(vec!["a".into(), 1.into()].into());
    let bytes = convert(b"HTTP/1.0 200 OK\r\n".as_slice());
    let text = Value::from("it's");
    let list = Value::from(vec![Value::Float(1.5), Value::Bool(true)]);
    let single = Value::Tuple(vec![7.into()].into());
    let stop = Exception::StopIteration(Value::Int(42));
    let done = Future::new();
    done.set_result("chunk".into());
    let suspended = sub();
    assert_eq!(suspended.send(Value::None), Ok(Value::Int(1)));
    let reprs: Vec<String> = [&none, &int, &pair, &bytes, &text, &list, &single]
        .iter()
        .map(|v| v.repr())
        .collect();
    assert_eq!(
        reprs,
        [
            "None",
            "42",
            "('a', 1)",
            "b'HTTP/1.0 200 OK\\r\\n'",
            "\"it's\"",
            "[1.5, True]",
            "(7,)"
        ]
    );
    assert_eq!(
        format!("{waiting:?}"),
        format!("<Future-{} pending>", waiting.id())
    );
    // What gi_frame says, for the printer test to hold gdb's view against
    // (written to the real stdout: the test harness captures `println!`).
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
        "gi_frame: suspended={} task={}",
        suspended.gi_frame().expect("suspended"),
        task.coro().gi_frame().expect("suspended")
    );
    stop_here(&[
        &none, &int, &pair, &bytes, &text, &list, &single, &stop, &boom, &waiting, &done,
        &suspended, &task,
    ]);
    // The task finishes when its future does.
    waiting.set_result("chunk".into());
    assert_eq!(task.result(), Some(Ok(Value::from("chunk"))));
}

/// `(gdb) break NAME` for the eight plain names, as typed, on the debuggee:
/// each is accepted, and each is hit (gdb counts the hits; `ignore` keeps
/// it from stopping there).
#[test]
fn the_eight_plain_names_set_and_hit() {
    let me = std::env::current_exe().expect("this test binary");
    let mut commands: Vec<String> = Vec::new();
    for (i, name) in PLAIN_NAMES.iter().enumerate() {
        commands.push(format!("break {name}"));
        commands.push(format!("ignore {} 100000", i + 1));
    }
    commands.push("break debugger::stop_here".into());
    commands.push("run".into());
    commands.push("info breakpoints".into());
    let out = gdb_on(&me, &[], "--exact debuggee --test-threads=1", &commands);
    assert_no_gdb_error(&out);
    assert!(out.contains("debugger::stop_here"), "{out}");
    let table = out
        .split("Num     Type")
        .nth(1)
        .expect("info breakpoints printed its table");
    for (i, name) in PLAIN_NAMES.iter().enumerate() {
        // Row N, then its "already hit" line, before row N+1.
        let row = table
            .split(&format!("\n{}       breakpoint", i + 1))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for breakpoint {} ({name}):\n{table}", i + 1));
        let row = row
            .split(&format!("\n{}       breakpoint", i + 2))
            .next()
            .unwrap();
        assert!(
            row.contains(name),
            "breakpoint {} is not {name}:\n{row}",
            i + 1
        );
        assert!(
            row.contains("breakpoint already hit"),
            "{name} was set but never hit:\n{row}"
        );
    }
}

/// `print` shows Python's repr() (compared with CPython's own) for values,
/// and the tutorials' reprs for an exception, futures, a generator and a
/// task; `pyfiber break` sets every instance of a generic function.
#[test]
fn print_shows_what_python_would() {
    if !DEBUG {
        // `debug = 1` in release: line tables and function names, no
        // variables to print (NOTES, "Release builds").
        eprintln!("print: a debug-build claim; a release build has no variables");
        return;
    }
    let me = std::env::current_exe().expect("this test binary");
    let names = [
        "none",
        "int",
        "pair",
        "bytes",
        "text",
        "list",
        "single",
        "stop",
        "boom",
        "waiting",
        "done",
        "suspended",
        "task",
    ];
    let mut commands = vec![
        format!("source {}", helper()),
        "break debugger::stop_here".to_string(),
        "pyfiber break convert".to_string(),
        "run".to_string(),
    ];
    // The breakpoints on `convert` stop twice before stop_here.
    commands.push("continue".into());
    commands.push("continue".into());
    commands.push("up".into());
    for n in names {
        commands.push(format!("echo {n} = \\n"));
        commands.push(format!("output {n}"));
        commands.push("echo \\n".into());
    }
    let out = gdb_on(&me, &[], "--exact debuggee --test-threads=1", &commands);
    assert_no_gdb_error(&out);
    // pyfiber break convert: one breakpoint, both instances.
    assert!(out.contains("(2 locations)"), "{out}");
    let printed = |name: &str| -> String {
        let tag = format!("{name} = \n");
        let at = out
            .rfind(&tag)
            .unwrap_or_else(|| panic!("{name} not printed:\n{out}"));
        out[at + tag.len()..]
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let python = python_reprs();
    for (name, repr) in names.iter().zip(&python) {
        assert_eq!(&printed(name), repr, "print {name}");
    }
    assert_eq!(printed("stop"), "StopIteration(42)");
    assert_eq!(printed("boom"), "ValueError('boom')");
    assert!(
        printed("waiting").starts_with("<Future-") && printed("waiting").ends_with(" pending>"),
        "{}",
        printed("waiting")
    );
    assert!(
        printed("done").ends_with(" finished result='chunk'>"),
        "{}",
        printed("done")
    );
    // The lines gi_frame gives in the program itself, which the printers
    // must agree with (`suspended at` a pending yield's file:line).
    let frames = out
        .lines()
        .find_map(|l| l.strip_prefix("gi_frame: "))
        .unwrap_or_else(|| panic!("the debuggee printed no gi_frame line:\n{out}"));
    let (sub_at, task_at) = frames
        .strip_prefix("suspended=")
        .and_then(|r| r.split_once(" task="))
        .unwrap_or_else(|| panic!("{frames}"));
    assert!(sub_at.starts_with("tests/debugger.rs:"), "{sub_at}");
    let g = printed("suspended");
    assert!(
        g.starts_with("<generator object sub at 0x")
            && g.ends_with(&format!(" GEN_SUSPENDED at line {sub_at}>")),
        "{g}"
    );
    let t = printed("task");
    assert!(
        t.starts_with("<Task-")
            && t.contains(" pending coro=fetch, waiting on Future-")
            && t.ends_with(&format!(", suspended at {task_at}>")),
        "{t}"
    );
}

/// `pyfiber step` from a stop in Task::step lands in the body in one
/// command: on its first line on the first send, then on the line after
/// the pending yield; `print chunk` there shows the bytes; `pyfiber finish`
/// runs to the next yield and shows what it yielded and the sender.
#[test]
fn pyfiber_step_and_finish_walk_the_body() {
    if !DEBUG {
        return pyfiber_step_in_a_release_build();
    }
    let first = line_of("generator.rs", "move |co| spider.fetch(co)");
    let connected = line_of("generator.rs", "let connected = co.yield_(future.into());");
    let after_connected = next_code_line("generator.rs", connected);
    let chunk = line_of("generator.rs", "let chunk = co.yield_(future.into());");
    let after_chunk = next_code_line("generator.rs", chunk);
    let out = gdb(
        "generator",
        "--urls 1 --delay 0.05 --timeout 600",
        &[
            format!("source {}", helper()),
            "break pyfiber::task::Task::step".into(),
            "run".into(), // Task(coro): the first step
            "pyfiber step".into(),
            "continue".into(), // on_connected → set_result → Task.step
            "pyfiber step".into(),
            "continue".into(), // on_readable → set_result → Task.step
            "pyfiber step".into(),
            "print chunk".into(),
            "pyfiber finish".into(),
            "print *self".into(),
        ],
    );
    assert_no_gdb_error(&out);
    assert_in_order(
        &out,
        &[
            "#0  generator::main::{closure#",
            &format!("examples/generator.rs:{first}"),
            "#0  generator::Spider::fetch",
            &format!("examples/generator.rs:{after_connected}"),
            "#0  generator::Spider::fetch",
            &format!("examples/generator.rs:{after_chunk}"),
            "= Ok(b'HTTP/1.0 200 OK\\r\\n",
            // the next `chunk = yield future`, after the loop went round
            "yielded <Future-",
            &format!("pending>  (at examples/generator.rs:{chunk})"),
            "the sender stands at:",
            "pyfiber::task::Task::step",
            "= <Task-1 pending coro=fetch, running (in Task.step)>",
        ],
    );
}

/// A release build: `pyfiber step` from a stop in Task::step still lands in
/// the body on the line after a yield (the first send's start is inlined
/// away, so from `Task(coro)` it runs on to the resumption after the first
/// yield).
fn pyfiber_step_in_a_release_build() {
    let connected = line_of("generator.rs", "let connected = co.yield_(future.into());");
    let after_connected = next_code_line("generator.rs", connected);
    let chunk = line_of("generator.rs", "let chunk = co.yield_(future.into());");
    let after_chunk = next_code_line("generator.rs", chunk);
    let out = gdb(
        "generator",
        "--urls 1 --delay 0.05 --timeout 600",
        &[
            format!("source {}", helper()),
            "break pyfiber::task::Task::step".into(),
            "run".into(),
            "pyfiber step".into(),
            "continue".into(),
            "pyfiber step".into(),
        ],
    );
    assert_no_gdb_error(&out);
    let stops: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("#0  generator::Spider::fetch"))
        .collect();
    assert_eq!(
        stops.len(),
        2,
        "two `pyfiber step`s, two stops in fetch:\n{out}"
    );
    for stop in stops {
        assert!(
            stop.ends_with(&format!("examples/generator.rs:{after_connected}"))
                || stop.ends_with(&format!("examples/generator.rs:{after_chunk}")),
            "not on a line after a yield: {stop}\n{out}"
        );
    }
}

/// Plain `step` at a yield goes straight into Co::yield_ (the skip rules
/// keep it out of core's `into`), and `finish` out of a function returning
/// a PyResult<Value> does not crash gdb 13 (the helper turns off printing
/// the returned value, which is where gdb 13.1 fails).
#[test]
fn step_skips_the_library_and_finish_does_not_crash() {
    let chunk = line_of("generator.rs", "let chunk = co.yield_(future.into());");
    let out = gdb(
        "generator",
        "--urls 1 --delay 0.05 --timeout 600",
        &[
            format!("source {}", helper()),
            format!("break examples/generator.rs:{chunk}"),
            "run".into(),
            "step".into(),
            "bt 1".into(),
            "step".into(),
            "finish".into(),
            "bt 1".into(),
        ],
    );
    assert_no_gdb_error(&out);
    if !DEBUG {
        // Release: `step` reaches Co::yield_ (inlined, so gdb names it
        // without arguments), and `finish` cannot leave an inlined frame
        // across the switch: it stops in corosensei (NOTES, "Release
        // builds"). gdb does not crash either way.
        assert!(
            out.contains("pyfiber::generator::Co::yield_ () at src/generator.rs:"),
            "{out}"
        );
        return;
    }
    assert_in_order(
        &out,
        &[
            "#0  pyfiber::generator::Co::yield_",
            "Value returned is $1 = <not displayed>",
            "#0  0x",
            "in generator::Spider::fetch",
            &format!("examples/generator.rs:{chunk}"),
        ],
    );
}

/// The first line after `line` (1-based) in `file` that holds code.
fn next_code_line(file: &str, line: usize) -> usize {
    let text = std::fs::read_to_string(root().join("examples").join(file)).expect("example source");
    text.lines()
        .enumerate()
        .skip(line)
        .find(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with("//"))
        .map(|(i, _)| i + 1)
        .expect("code after the line")
}

/// Where Debian's lldb keeps its Python module (its own `lldb -P` points at
/// a directory that does not exist, and rust-lldb then fails with `No
/// module named 'lldb.embedded_interpreter'`): the PYTHONPATH to run it with.
fn lldb_python_path() -> Option<std::path::PathBuf> {
    let mut found = None;
    for llvm in std::fs::read_dir("/usr/lib").ok()?.flatten() {
        if !llvm.file_name().to_string_lossy().starts_with("llvm-") {
            continue;
        }
        let Ok(libs) = std::fs::read_dir(llvm.path().join("lib")) else {
            continue;
        };
        for py in libs.flatten() {
            let dir = py.path().join("dist-packages");
            if py.file_name().to_string_lossy().starts_with("python3")
                && dir.join("lldb/embedded_interpreter.py").exists()
            {
                found = Some(dir);
            }
        }
    }
    found
}

/// rust-lldb: the eight plain names set and hit, and `frame variable` of a
/// Value shows Python's repr() (tools/lldb/pyfiber.py). lldb 14 parses a
/// name ending in `throw` as C++'s keyword and resolves nothing, so that one
/// is set by a regular expression on the symbol,
/// `breakpoint set -r pyfiber::generator::Generator::throw`.
///
/// `.ci/run` installs lldb where the package exists and sets
/// PYFIBER_REQUIRE_LLDB; without lldb (and without that variable) this
/// prints why it did nothing, and `.ci/run` says the lldb test was skipped.
#[test]
fn rust_lldb_sets_the_plain_names_and_shows_values() {
    let have_lldb = Command::new("lldb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_lldb {
        assert!(
            std::env::var_os("PYFIBER_REQUIRE_LLDB").is_none(),
            "PYFIBER_REQUIRE_LLDB is set but lldb is not on PATH"
        );
        eprintln!("rust_lldb test: lldb is not installed; nothing checked");
        return;
    }
    let me = std::env::current_exe().expect("this test binary");
    let mut cmd = Command::new("rust-lldb");
    if let Some(dir) = lldb_python_path() {
        cmd.env("PYTHONPATH", dir);
    }
    cmd.arg("-b").args([
        "-o",
        &format!(
            "command script import {}",
            root().join("tools/lldb/pyfiber.py").display()
        ),
    ]);
    for (i, name) in PLAIN_NAMES.iter().enumerate() {
        let set = match name.strip_suffix("::throw") {
            Some(_) => format!("breakpoint set -r {name}"),
            None => format!("breakpoint set -n {name}"),
        };
        cmd.args(["-o", &set]);
        cmd.args(["-o", &format!("breakpoint modify -i 100000 {}", i + 1)]);
    }
    cmd.args(["-o", "breakpoint set -n debugger::stop_here"])
        .args(["-o", "run"])
        .args(["-o", "breakpoint list"])
        .args(["-o", "up"])
        .args(["-o", "frame variable none int pair bytes text list single"])
        .args(["-o", "kill"])
        .arg(&me)
        .args(["--", "--exact", "debuggee", "--test-threads=1"]);
    let out = run_gdb(cmd);
    assert!(!out.contains("Traceback"), "{out}");
    assert!(out.contains("pyfiber lldb helper loaded"), "{out}");
    let list = out
        .split("(lldb) breakpoint list")
        .nth(1)
        .expect("breakpoint list ran");
    for (i, name) in PLAIN_NAMES.iter().enumerate() {
        let row = list
            .split(&format!("\n{}: ", i + 1))
            .nth(1)
            .unwrap_or_else(|| panic!("no breakpoint {} ({name}):\n{list}", i + 1));
        // The breakpoint's own line (its locations follow, each with a count).
        let row = row.lines().next().unwrap();
        let short = name.rsplit("::").next().unwrap();
        assert!(
            row.contains(short),
            "breakpoint {} is not {name}:\n{row}",
            i + 1
        );
        assert!(
            !row.contains("hit count = 0") && row.contains("hit count = "),
            "{name} was set but never hit under lldb:\n{row}"
        );
    }
    if !DEBUG {
        return; // no variables in a release build (`debug = 1`)
    }
    let names = ["none", "int", "pair", "bytes", "text", "list", "single"];
    for (name, repr) in names.iter().zip(python_reprs()) {
        let want = format!("(pyfiber::value::Value) {name} = {repr}");
        assert!(out.contains(&want), "lldb: want {want:?} in:\n{out}");
    }
}

/// The innermost `fn` of `path` (under the repository root) whose body
/// holds line `line` (1-based), by its name: found by matching braces from
/// each `fn NAME`, which is enough for this crate's rustfmt'd code.
fn enclosing_fn(path: &str, line: usize) -> Option<String> {
    let text = std::fs::read_to_string(root().join(path)).ok()?;
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of_byte = |b: usize| starts.partition_point(|&s| s <= b);
    let fn_re = regex::Regex::new(r"\bfn\s+(\w+)").unwrap();
    let mut best: Option<(usize, String)> = None;
    for m in fn_re.captures_iter(&text) {
        let whole = m.get(0).unwrap();
        let first = line_of_byte(whole.start());
        let decl = &text[starts[first - 1]..whole.start()];
        if decl.trim_start().starts_with("//") {
            continue; // in a comment
        }
        // The body: from the first `{` after the name (a `;` first means
        // a declaration without one), to its matching `}`.
        let rest = &text[whole.end()..];
        let Some(open) = rest.find(['{', ';']) else {
            continue;
        };
        if rest.as_bytes()[open] == b';' {
            continue;
        }
        let mut depth = 0;
        let mut end = None;
        for (i, c) in rest[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(whole.end() + open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let last = line_of_byte(end?);
        if (first..=last).contains(&line) && best.as_ref().is_none_or(|(f, _)| first >= *f) {
            best = Some((first, m[1].to_string()));
        }
    }
    best.map(|(_, name)| name)
}

/// Every `FILE.rs:N` that NOTES.md's "Stepping through yield/send" quotes
/// still points at what it describes. Three forms, and nothing else:
/// - prose, "`FILE.rs:N` (`CODE`)": line N holds CODE;
/// - a frame, as gdb or `pyfiber bt` prints it (`#N  FUNCTION ... at
///   FILE.rs:N`, `hit Breakpoint 1, FUNCTION (...) at FILE.rs:N`): the
///   innermost `fn` around line N is FUNCTION's;
/// - `pyfiber finish`'s "yielded ... (at FILE.rs:N)": line N yields.
#[test]
fn the_notes_line_references_still_point_where_they_say() {
    let notes = std::fs::read_to_string(root().join("NOTES.md")).expect("NOTES.md");
    let start = notes
        .find("## Stepping through yield/send")
        .expect("NOTES.md has the section");
    let section = &notes[start..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    let lines: Vec<&str> = section.lines().collect();
    let source_line = |path: &str, n: usize| -> String {
        let text = std::fs::read_to_string(root().join(path))
            .unwrap_or_else(|_| panic!("NOTES quotes {path}, which does not exist"));
        text.lines()
            .nth(n - 1)
            .unwrap_or_else(|| panic!("NOTES quotes {path}:{n}, past its end"))
            .to_string()
    };
    let reference = regex::Regex::new(r"((?:examples|src)/[\w/]+\.rs):(\d+)").unwrap();
    let prose =
        regex::Regex::new(r"`((?:examples|src)/[\w/]+\.rs):(\d+)`\s*\(`([^`]+)`\)").unwrap();
    let frame =
        regex::Regex::new(r"(?:hit Breakpoint \d+, |#\d+\s+(?:0x[0-9a-f]+ in )?)(\S+).* at $")
            .unwrap();
    let mut prose_spans = Vec::new();
    let mut checked = 0;
    for m in prose.captures_iter(section) {
        let (path, n, code) = (&m[1], m[2].parse::<usize>().unwrap(), &m[3]);
        let at = source_line(path, n);
        assert!(
            at.contains(code),
            "NOTES says {path}:{n} is `{code}`, but that line is now {at:?}"
        );
        prose_spans.push(m.get(0).unwrap().range());
        checked += 1;
    }
    let mut offset = 0;
    for line in &lines {
        for m in reference.captures_iter(line) {
            let whole = m.get(0).unwrap();
            let abs = offset + whole.start();
            if prose_spans.iter().any(|r| r.contains(&abs)) {
                continue;
            }
            let (path, n) = (&m[1], m[2].parse::<usize>().unwrap());
            let before = &line[..whole.start()];
            if before.trim_end().ends_with("yielded") || before.contains("yielded ") {
                let at = source_line(path, n);
                assert!(
                    at.contains("co.yield_("),
                    "NOTES says {path}:{n} yields, but that line is now {at:?}"
                );
            } else if let Some(f) = frame.captures(before) {
                let name = f[1]
                    .split("::")
                    .filter(|seg| !seg.starts_with('{'))
                    .last()
                    .unwrap()
                    .to_string();
                let got = enclosing_fn(path, n);
                assert_eq!(
                    got.as_deref(),
                    Some(name.as_str()),
                    "NOTES puts {path}:{n} in `{}`, but that line is now in {got:?}: {:?}",
                    &f[1],
                    source_line(path, n)
                );
            } else {
                panic!("NOTES quotes {path}:{n} in a form this test cannot check: {line:?}");
            }
            checked += 1;
        }
        offset += line.len() + 1;
    }
    assert!(checked >= 10, "only {checked} references checked");
}
