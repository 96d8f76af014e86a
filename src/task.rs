//! `Task`: drives one coroutine from future to future.
//!
//! Why this exists: a coroutine that yields a `Future` needs someone to
//! resume it when that future is done. `Task.step` is that someone: it sends
//! the finished future's result into the coroutine, takes the next future the
//! coroutine yields, and registers itself as that future's done callback.
//! Nobody calls `step` in a loop; each `set_result` calls the next `step`.
//!
//! ```text
//! selector callback ──set_result──▶ Future ──done callback──▶ Task.step
//!        ▲                                                      │ send(result)
//!        └──── registered by the coroutine before it yields ◀───┘
//! ```
//!
//! ```
//! use pyfiber::{Future, Generator, Task, Value};
//!
//! let f = Future::new();
//! let waiting = f.clone();
//! // def coro(): chunk = yield from f; return chunk
//! let task = Task::new(Generator::new(move |co| co.yield_from_future(&waiting)));
//! assert!(!task.done());
//! f.set_result("chunk"); // a selector callback would do this
//! assert_eq!(task.result(), Some(Ok(Value::from("chunk"))));
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use crate::exception::{Exception, PyResult};
use crate::future::{short_repr, Future};
use crate::generator::Generator;
use crate::trace;
use crate::value::Value;

struct Inner {
    id: u64,
    coro: Generator,
    /// The coroutine's return value or exception, once it has finished.
    outcome: RefCell<Option<PyResult<Value>>>,
    /// Settled when the coroutine finishes, so others can wait on the task.
    finished: Future,
    /// Whether anyone looked at a failed task's exception.
    retrieved: Cell<bool>,
}

/// The tutorials' `Task` (the generator-era core of `asyncio.Task`).
///
/// A shared handle; the futures the coroutine waits on hold it through
/// their done callbacks, so a task lives as long as it has something to
/// wait for.
#[derive(Clone)]
pub struct Task(Rc<Inner>);

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    static UNFINISHED: Cell<usize> = const { Cell::new(0) };
}

/// How many tasks on this thread have started and not finished.
pub fn unfinished_tasks() -> usize {
    UNFINISHED.with(Cell::get)
}

impl Task {
    /// `Task(coro)`: wraps the coroutine and steps it once at once, with a
    /// fresh future whose result is `None`; this runs the coroutine to its
    /// first `yield`.
    pub fn new(coro: Generator) -> Task {
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        UNFINISHED.with(|n| n.set(n.get() + 1));
        let task = Task(Rc::new(Inner {
            id,
            coro,
            outcome: RefCell::new(None),
            finished: Future::new(),
            retrieved: Cell::new(false),
        }));
        let f = Future::new();
        task.step(&f);
        task
    }

    /// `Task.step(future)`: where the Task resumes the coroutine.
    ///
    /// Sends `future.result` in (or throws the future's exception in), and
    /// then either registers `step` as the done callback of the next future
    /// the coroutine yields, or, when the coroutine is finished
    /// (`StopIteration`, or an exception), records the outcome. An
    /// exception is surfaced, never swallowed: it is kept as the task's
    /// result and reported on stderr if nobody retrieves it.
    pub fn step(&self, future: &Future) {
        let inner = &self.0;
        let sent = match future.exception() {
            Some(exc) => {
                trace::emit(format_args!("Task-{}.step throw {}", inner.id, exc.line()));
                inner.coro.throw(exc)
            }
            None => {
                let result = future.result();
                if trace::enabled() {
                    trace::emit(format_args!(
                        "Task-{}.step send {}",
                        inner.id,
                        short_repr(&result)
                    ));
                }
                inner.coro.send(result)
            }
        };
        match sent {
            Ok(yielded) => match yielded.downcast::<Future>() {
                Some(next_future) => {
                    trace::emit(format_args!(
                        "Task-{} yielded Future-{}",
                        inner.id,
                        next_future.id()
                    ));
                    let task = self.clone();
                    next_future.add_done_callback(move |f| task.step(f));
                }
                // Python: next_future.add_done_callback fails on a non-Future.
                None => self.finish(Err(Exception::AttributeError(format!(
                    "'{}' object has no attribute 'add_done_callback'",
                    yielded.type_name()
                )))),
            },
            Err(Exception::StopIteration(value)) => self.finish(Ok(value)),
            Err(exc) => self.finish(Err(exc)),
        }
    }

    fn finish(&self, outcome: PyResult<Value>) {
        let inner = &self.0;
        match &outcome {
            Ok(v) => trace::emit(format_args!(
                "Task-{} done: StopIteration({})",
                inner.id,
                short_repr(v)
            )),
            Err(e) => trace::emit(format_args!("Task-{} done: {}", inner.id, e.line())),
        }
        UNFINISHED.with(|n| n.set(n.get() - 1));
        *inner.outcome.borrow_mut() = Some(outcome.clone());
        match outcome {
            Ok(v) => inner.finished.set_result(v),
            Err(e) => inner.finished.set_exception(e),
        }
    }

    /// `task.done()`.
    pub fn done(&self) -> bool {
        self.0.outcome.borrow().is_some()
    }

    /// The coroutine's return value or exception, once it has finished
    /// (`task.result()` in asyncio, which raises the exception).
    pub fn result(&self) -> Option<PyResult<Value>> {
        self.0.retrieved.set(true);
        self.0.outcome.borrow().clone()
    }

    /// `task.add_done_callback(fn)`: runs when the coroutine has finished;
    /// the future passed holds its return value or exception.
    pub fn add_done_callback(&self, callback: impl FnOnce(&Future) + 'static) {
        self.0.retrieved.set(true);
        self.0.finished.add_done_callback(callback);
    }

    /// The coroutine this task drives.
    pub fn coro(&self) -> &Generator {
        &self.0.coro
    }

    /// The number naming this task in traces (`Task-1`).
    pub fn id(&self) -> u64 {
        self.0.id
    }
}

impl Drop for Inner {
    /// asyncio's "Task exception was never retrieved": a failure nobody
    /// looked at is reported rather than lost.
    fn drop(&mut self) {
        if self.outcome.borrow().is_none() {
            // Abandoned while waiting (its future was dropped unsettled).
            UNFINISHED.with(|n| n.set(n.get() - 1));
        }
        if let Some(Err(e)) = &*self.outcome.borrow() {
            if !self.retrieved.get() {
                eprintln!(
                    "Task exception was never retrieved\nTask-{}: {}",
                    self.id,
                    e.line()
                );
            }
        }
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.done() { "finished" } else { "pending" };
        write!(f, "<Task-{} {state} coro={:?}>", self.0.id, self.0.coro)
    }
}
