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
//! f.set_result("chunk".into()); // a selector callback would do this
//! assert_eq!(task.result(), Some(Ok(Value::from("chunk"))));
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::ptr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicPtr, Ordering};

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
    /// The future the coroutine yielded last and is waiting on (for the
    /// debugger's view; `None` while stepping and once finished).
    waiting_on: RefCell<Option<Future>>,
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
    /// Every live task on this thread, by id (for `debug::describe`).
    static LIVE: RefCell<BTreeMap<u64, Weak<Inner>>> = const { RefCell::new(BTreeMap::new()) };
    /// The tasks whose `step` is on the call stack now, outermost first.
    static STEPPING: RefCell<Vec<(Task, Future)>> = const { RefCell::new(Vec::new()) };
}

/// Where a debugger finds the tasks of the thread that last made one, by
/// reading memory only: `pyfiber tasks` (tools/gdb/pyfiber.py) walks
/// `LIVE` and `STEPPING` through these. Calling [`crate::debug::dump`] in
/// the stopped program instead needs gdb to restore every register after
/// the call, and gdb 13 cannot write the vector registers back on a CPU
/// with AMX (Intel Sapphire Rapids): its XSAVE area is smaller than the
/// kernel's, which refuses it ("Couldn't write extended state status: Bad
/// address"). Addresses only: nothing in Rust reads them.
#[used]
static LIVE_AT: AtomicPtr<RefCell<BTreeMap<u64, Weak<Inner>>>> = AtomicPtr::new(ptr::null_mut());
#[used]
static STEPPING_AT: AtomicPtr<RefCell<Vec<(Task, Future)>>> = AtomicPtr::new(ptr::null_mut());

/// Pops the stepping stack on every way out of `step`, a panic included.
struct SteppingGuard;

impl Drop for SteppingGuard {
    fn drop(&mut self) {
        STEPPING.with(|s| s.borrow_mut().pop());
    }
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
            waiting_on: RefCell::new(None),
        }));
        LIVE.with(|live| {
            LIVE_AT.store(ptr::from_ref(live).cast_mut(), Ordering::Relaxed);
            live.borrow_mut().insert(id, Rc::downgrade(&task.0))
        });
        STEPPING.with(|s| STEPPING_AT.store(ptr::from_ref(s).cast_mut(), Ordering::Relaxed));
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
        inner.waiting_on.borrow_mut().take();
        STEPPING.with(|s| s.borrow_mut().push((self.clone(), future.clone())));
        let _stepping = SteppingGuard;
        let panic_watch = PanicWatch(self);
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
        std::mem::forget(panic_watch);
        match sent {
            Ok(yielded) => match yielded.downcast::<Future>() {
                Some(next_future) => {
                    trace::emit(format_args!(
                        "Task-{} yielded Future-{}",
                        inner.id,
                        next_future.id()
                    ));
                    *inner.waiting_on.borrow_mut() = Some((*next_future).clone());
                    let task = self.clone();
                    next_future.add_done_callback(Box::new(move |f| task.step(f)));
                }
                // Python: next_future.add_done_callback fails on a non-Future.
                None => self.finish(Err(Exception::AttributeError(format!(
                    "'{}' object has no attribute 'add_done_callback'",
                    yielded.type_name()
                )))),
            },
            Err(exc) => match exc.stop_value() {
                Some(value) => self.finish(Ok(value.clone())),
                None => self.finish(Err(exc)),
            },
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
        self.0.finished.add_done_callback(Box::new(callback));
    }

    /// The coroutine this task drives.
    pub fn coro(&self) -> &Generator {
        &self.0.coro
    }

    /// The number naming this task in traces (`Task-1`).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The future the coroutine is waiting on, if it is suspended on one.
    pub fn waiting_on(&self) -> Option<Future> {
        self.0.waiting_on.borrow().clone()
    }

    /// The task whose `step` is running now (the innermost, if steps nest):
    /// `asyncio.current_task()`.
    pub fn current() -> Option<Task> {
        STEPPING.with(|s| s.borrow().last().map(|(task, _)| task.clone()))
    }

    /// The tasks whose `step` is on the call stack, outermost first, each with
    /// the future whose result it is sending in.
    pub fn stepping() -> Vec<(Task, Future)> {
        STEPPING.with(|s| s.borrow().clone())
    }

    /// Every live task on this thread, oldest first: `asyncio.all_tasks()`
    /// (finished ones included while someone still holds them).
    pub fn all() -> Vec<Task> {
        LIVE.with(|live| {
            live.borrow()
                .values()
                .filter_map(Weak::upgrade)
                .map(Task)
                .collect()
        })
    }
}

impl Drop for Inner {
    /// asyncio's "Task exception was never retrieved": a failure nobody
    /// looked at is reported rather than lost.
    fn drop(&mut self) {
        // `try_with`: during thread exit the registry may be gone already.
        let _ = LIVE.try_with(|live| live.borrow_mut().remove(&self.id));
        if self.outcome.borrow().is_none() {
            // Abandoned while waiting (its future was dropped unsettled).
            let _ = UNFINISHED.try_with(|n| n.set(n.get() - 1));
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

/// The panic policy, where a body's panic passes through `step`.
///
/// A panic is not a Python exception: it goes on unwinding, out of the
/// selector callback and out of `run_loop`, to whoever called the loop; that
/// caller decides (by default the program dies, as any Rust panic; with
/// `catch_unwind` around `run_loop` it may call `run_loop` again, and the
/// other tasks carry on). On its way through `step` it leaves the task in
/// order: the generator is closed (`Generator::send` sees to that), the task
/// is finished with `RuntimeError("Task-N panicked")`, a line on stderr says
/// which task it was, and whoever waits on the task is told on the loop's
/// next turn (not now: no code may run while a panic unwinds).
struct PanicWatch<'a>(&'a Task);

impl Drop for PanicWatch<'_> {
    fn drop(&mut self) {
        // Only reached while unwinding: `step` forgets the watch otherwise.
        let task = self.0;
        let inner = &task.0;
        eprintln!(
            "pyfiber: Task-{} ({}) panicked; its generator is closed, the other tasks are untouched",
            inner.id,
            inner.coro.name()
        );
        crate::debug::dump();
        let exc = Exception::RuntimeError(format!("Task-{} panicked", inner.id));
        inner.retrieved.set(true);
        *inner.outcome.borrow_mut() = Some(Err(exc.clone()));
        let _ = UNFINISHED.try_with(|n| n.set(n.get() - 1));
        let finished = inner.finished.clone();
        crate::event_loop::get_event_loop().call_soon(move || finished.set_exception(exc));
    }
}
