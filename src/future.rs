//! `Future`: a result that is not there yet, and who to tell when it is.
//!
//! Why this exists: in the generator stage a coroutine cannot block on a
//! socket, so it creates a `Future`, arranges for a selector callback to
//! `set_result` on it, and yields it. The `Task` driving the coroutine adds
//! its `step` as the future's done callback; `set_result` runs that callback,
//! and `step` sends the result back into the coroutine. The selector callback
//! no longer needs to know any business logic: it only sets a value.
//!
//! ```
//! use pyfiber::{Future, Value};
//! use std::{cell::RefCell, rc::Rc};
//!
//! let seen = Rc::new(RefCell::new(Value::None));
//! let f = Future::new();
//! let s = seen.clone();
//! f.add_done_callback(Box::new(move |f: &Future| *s.borrow_mut() = f.result()));
//! f.set_result(b"HTTP/1.0 200 OK".as_slice().into());
//! assert_eq!(seen.borrow().as_bytes(), Some(&b"HTTP/1.0 200 OK"[..]));
//! ```

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use crate::exception::{Exception, PyResult};
use crate::generator::{Co, Generator};
use crate::trace;
use crate::value::{Object, Value};

/// A done callback: `fn(future)`, boxed (see [`Future::add_done_callback`]).
pub type DoneCallback = Box<dyn FnOnce(&Future)>;

struct Inner {
    id: u64,
    done: Cell<bool>,
    result: RefCell<Value>,
    exception: RefCell<Option<Exception>>,
    callbacks: RefCell<VecDeque<DoneCallback>>,
}

/// The tutorials' `Future` (and the core of `asyncio.Future`): `result`,
/// `add_done_callback`, `set_result`; plus `set_exception`, so a timeout can
/// be raised inside the waiting coroutine.
///
/// A shared handle: cloning it is passing the same Python object around.
#[derive(Clone)]
pub struct Future(Rc<Inner>);

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
}

impl Default for Future {
    fn default() -> Self {
        Future::new()
    }
}

impl Future {
    /// `Future()`: pending, no result, no callbacks.
    pub fn new() -> Future {
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        Future(Rc::new(Inner {
            id,
            done: Cell::new(false),
            result: RefCell::new(Value::None),
            exception: RefCell::new(None),
            callbacks: RefCell::new(VecDeque::new()),
        }))
    }

    /// A number naming this future in traces (`Future-3`), counted per thread.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// `future.result`: the value set, or `None` while pending.
    pub fn result(&self) -> Value {
        self.0.result.borrow().clone()
    }

    /// `future.exception()`: the exception set, if any.
    pub fn exception(&self) -> Option<Exception> {
        self.0.exception.borrow().clone()
    }

    /// `future.done()`.
    pub fn done(&self) -> bool {
        self.0.done.get()
    }

    /// `future.add_done_callback(fn)`: `fn(future)` runs when the result is
    /// set. On a future that is already done it runs at once (asyncio
    /// schedules it; the tutorials' Future would never run it).
    ///
    /// The callback comes boxed (`f.add_done_callback(Box::new(|f| ...))`):
    /// a generic function is known to a debugger only by its instances'
    /// names, and `break pyfiber::future::Future::add_done_callback` must
    /// work as typed.
    #[inline(never)]
    pub fn add_done_callback(&self, callback: DoneCallback) {
        if self.done() {
            callback(self);
        } else {
            self.0.callbacks.borrow_mut().push_back(callback);
        }
    }

    /// `future.set_result(result)`: stores the result and runs every done
    /// callback (in the tutorials, `Task.step`).
    ///
    /// A second `set_result` is ignored: asyncio would raise
    /// `InvalidStateError`, but here the late caller is a selector callback
    /// racing a timeout that already settled the future, and ignoring it is
    /// what keeps the coroutine from being resumed twice.
    ///
    /// Not generic, so that `break pyfiber::future::Future::set_result`
    /// works as typed in a debugger; callers convert with `.into()`.
    #[inline(never)]
    pub fn set_result(&self, result: Value) {
        if self.done() {
            trace::emit(format_args!(
                "set_result Future-{} ignored: already done",
                self.0.id
            ));
            return;
        }
        if trace::enabled() {
            trace::emit(format_args!(
                "set_result Future-{} {}",
                self.0.id,
                short_repr(&result)
            ));
        }
        *self.0.result.borrow_mut() = result;
        self.settle();
    }

    /// `future.set_exception(exc)`: settles the future with an exception; the
    /// waiting Task throws it into its coroutine.
    pub fn set_exception(&self, exc: Exception) {
        if self.done() {
            return;
        }
        trace::emit(format_args!(
            "set_exception Future-{} {}",
            self.0.id,
            exc.line()
        ));
        *self.0.exception.borrow_mut() = Some(exc);
        self.settle();
    }

    fn settle(&self) {
        self.0.done.set(true);
        // One callback at a time, so that if one panics (a task's body
        // panicking inside its step) the rest are still here, and run on the
        // loop's next turn: they belong to other tasks, which must not lose
        // their wake-up.
        let rest_on_panic = SettleWatch(self);
        loop {
            let next = self.0.callbacks.borrow_mut().pop_front();
            match next {
                Some(callback) => callback(self),
                None => break,
            }
        }
        std::mem::forget(rest_on_panic);
    }

    fn run_remaining_callbacks(&self) {
        self.settle();
    }

    /// The outcome: the result, or the exception that was set.
    pub fn outcome(&self) -> PyResult<Value> {
        match self.exception() {
            Some(e) => Err(e),
            None => Ok(self.result()),
        }
    }

    /// `Future.__iter__`, the generator that makes `yield from future` work:
    /// it yields the future itself (so the Task can wait on it) and returns
    /// the result once the Task sends it back in.
    ///
    /// This is the literal PEP 380 way; [`Co::yield_from_future`] does the
    /// same on the caller's own fiber.
    pub fn __iter__(&self) -> Generator {
        let future = self.clone();
        Generator::named("__iter__", move |co| {
            co.yield_(future.clone().into())?;
            future.outcome()
        })
    }

    /// `f1 is f2`.
    pub fn is(&self, other: &Future) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// A short `repr()` for traces: long bytes are cut, so one line stays one line.
pub(crate) fn short_repr(v: &Value) -> String {
    let r = v.repr();
    if r.len() > 60 {
        let mut cut = 57;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        format!(
            "{}... ({} bytes)",
            &r[..cut],
            v.as_bytes().map_or(r.len(), <[u8]>::len)
        )
    } else {
        r
    }
}

/// Reached only while a done callback unwinds (`settle` forgets it
/// otherwise): hands the callbacks not yet run to the loop's next turn.
struct SettleWatch<'a>(&'a Future);

impl Drop for SettleWatch<'_> {
    fn drop(&mut self) {
        if !self.0 .0.callbacks.borrow().is_empty() {
            let future = self.0.clone();
            crate::event_loop::get_event_loop().call_soon(move || future.run_remaining_callbacks());
        }
    }
}

impl Co<'_> {
    /// `result = yield from future` on this generator's own fiber: yields the
    /// future to the Task and returns what the Task sends back once the
    /// future is done (or raises what the future was failed with).
    pub fn yield_from_future(&self, future: &Future) -> PyResult<Value> {
        self.yield_(future.clone().into())?;
        future.outcome()
    }
}

impl fmt::Debug for Future {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.done() { "finished" } else { "pending" };
        write!(f, "<Future-{} {state}>", self.0.id)
    }
}

impl Object for Future {
    fn type_name(&self) -> &str {
        "Future"
    }
    fn repr(&self) -> String {
        format!("{self:?}")
    }
}

impl From<Future> for Value {
    fn from(f: Future) -> Value {
        Value::object(f)
    }
}
