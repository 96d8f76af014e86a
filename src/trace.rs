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

use std::cell::Cell;
use std::fmt;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
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
pub fn emit(line: fmt::Arguments<'_>) {
    if enabled() {
        println!("trace: {line}");
    }
}
