//! `trace`: one printed line per step of the machinery.
//!
//! Why this exists: the tutorials explain the Future → Task.step → generator
//! chain by narrating it. With `--trace`, the examples print that narration
//! as it happens (selector register/unregister, `select` returning,
//! `set_result`, `Task.step`, `send`, `yield`), in a line format the Python
//! twins print too, so the two runs can be diffed once fd numbers and ports
//! are normalised.
//!
//! Tracing is per thread: the embedded server runs on its own thread and
//! stays quiet while the client thread traces.
//!
//! The lines can also be kept ([`record`], [`take_recorded`]), for
//! [`crate::chain`] to draw the run as a sequence diagram.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Write;
use std::time::Instant;

/// What [`record`] keeps: when recording started, and each line with its
/// seconds since then.
type Record = (Instant, Vec<(f64, String)>);

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static RECORDED: RefCell<Option<Record>> = const { RefCell::new(None) };
}

/// Starts (or stops) keeping, on the current thread, every line traced
/// from now on, besides printing it, with the seconds since recording
/// started.
pub fn record(on: bool) {
    RECORDED.with(|r| {
        let mut r = r.borrow_mut();
        match (on, r.is_some()) {
            (true, false) => *r = Some((Instant::now(), Vec::new())),
            (false, _) => *r = None,
            (true, true) => {}
        }
    });
}

/// The lines kept since [`record`] was turned on (without the `trace: `
/// prefix), each with its seconds since then, emptying the record;
/// recording goes on.
pub fn take_recorded() -> Vec<(f64, String)> {
    RECORDED.with(|r| {
        r.borrow_mut()
            .as_mut()
            .map(|(_, lines)| std::mem::take(lines))
            .unwrap_or_default()
    })
}

/// Turns tracing on or off for the current thread.
pub fn set_enabled(on: bool) {
    ENABLED.with(|e| e.set(on));
}

/// Whether the current thread traces.
pub fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// Prints `trace: <line>` to stdout when tracing is on.
///
/// If stdout cannot be written (its reader has gone, as when `| head` has
/// its lines), tracing stops on this thread instead of panicking as
/// `println!` would: nobody can read the trace any more, and what happens
/// next is for the program's own output to decide (the examples end at
/// their next write, as coreutils tools do).
pub fn emit(line: fmt::Arguments<'_>) {
    if enabled() {
        let line = line.to_string();
        if writeln!(std::io::stdout().lock(), "trace: {line}").is_err() {
            set_enabled(false);
        }
        RECORDED.with(|r| {
            if let Some((since, lines)) = r.borrow_mut().as_mut() {
                lines.push((since.elapsed().as_secs_f64(), line));
            }
        });
    }
}
