//! `debug`: the pyfiber view of where the program stands.
//!
//! Why this exists: a debugger shows Rust frames, but a learner thinks in the
//! tutorials' terms: which Task is running, which generator it is in, which
//! sub-generator that one delegates to (`gi_yieldfrom`), and which Future
//! each waiting task is parked on. [`describe`] answers that in those terms.
//! A panicking task prints it. The gdb helper's `pyfiber tasks`
//! (`tools/gdb/pyfiber.py`) prints the same text read from the stopped
//! program's memory (through `task::LIVE_AT`), since a call into the
//! program cannot restore the registers with gdb 13 on a CPU with AMX;
//! keep the two alike.

use std::fmt::Write;

use crate::future::{short_repr, Future};
use crate::generator::{Generator, YieldFrom};
use crate::task::Task;

fn describe_future(f: &Future) -> String {
    if f.done() {
        match f.exception() {
            Some(e) => format!("Future-{} (done: {})", f.id(), e.line()),
            None => format!("Future-{} (done: {})", f.id(), short_repr(&f.result())),
        }
    } else {
        format!("Future-{} (pending)", f.id())
    }
}

/// The delegation chain from `g` down, one generator per line, as
/// `gi_yieldfrom` links them (shown for running generators too).
fn describe_chain(out: &mut String, g: &Generator, indent: usize) {
    let _ = writeln!(out, "{:indent$}{} [{}]", "", g.name(), g.state());
    match g.delegating_to() {
        Some(YieldFrom::Generator(sub)) => {
            let _ = write!(out, "{:indent$}  yield from → ", "");
            let mut rest = String::new();
            describe_chain(&mut rest, &sub, indent + 2);
            out.push_str(rest.trim_start());
        }
        Some(YieldFrom::Iterator(name)) => {
            let _ = writeln!(out, "{:indent$}  yield from → <{name} object>", "");
        }
        Some(YieldFrom::Object(obj)) => {
            let _ = writeln!(
                out,
                "{:indent$}  yield from → <{} object>",
                "",
                obj.type_name()
            );
        }
        None => {}
    }
}

/// The tasks of this thread in the tutorials' terms: the task being stepped
/// now (with the future whose result it was sent), then every live task with
/// its generator chain and the future it waits on.
pub fn describe() -> String {
    let mut out = String::new();
    let stepping = Task::stepping();
    match stepping.last() {
        Some((task, future)) => {
            let _ = writeln!(out, "current: Task-{} (in Task.step)", task.id());
            let _ = writeln!(out, "  resumed by {}", describe_future(future));
            describe_chain(&mut out, task.coro(), 2);
        }
        None => out.push_str("current: no Task is stepping (the loop or main is running)\n"),
    }
    let tasks = Task::all();
    let _ = writeln!(out, "tasks: {}", tasks.len());
    for task in tasks {
        let state = if task.done() {
            "done".to_string()
        } else {
            match task.waiting_on() {
                Some(f) => format!("waiting on {}", describe_future(&f)),
                None => "running".to_string(),
            }
        };
        let _ = writeln!(out, "  Task-{} {}: {state}", task.id(), task.coro().name());
        if !task.done() {
            describe_chain(&mut out, task.coro(), 4);
        }
    }
    out
}

/// Prints [`describe`] to stderr. Kept as a plain, non-generic function so a
/// debugger can call it: `call pyfiber::debug::dump()`.
#[inline(never)]
pub fn dump() {
    eprint!("{}", describe());
}
