//! The event loop: the tutorials' `loop()`, plus timers.
//!
//! Why this exists: after the coroutines have registered their sockets and
//! yielded, nothing runs until the OS says a socket is ready. The loop is the
//! one place that waits: it blocks in `selector.select()`, and for each ready
//! fd calls the callback registered as the key's data (`on_connected`,
//! `on_readable`), which sets a future's result, which steps a task, which
//! resumes a coroutine. Then it waits again, until `stopped`.
//!
//! ```python
//! def loop():
//!     while not stopped:
//!         events = selector.select()
//!         for event_key, event_mask in events:
//!             callback = event_key.data
//!             callback()
//! ```
//!
//! Python's tutorials keep `selector` and `stopped` as module globals; here
//! they belong to a per-thread loop reached with [`get_event_loop`] (as
//! asyncio's `get_event_loop()`), so the embedded server can run its own loop
//! on another thread. Timers (`call_later`) let a fetch give up after a
//! timeout; `call_soon` queues a callback for the next turn.
//!
//! ```
//! use pyfiber::event_loop::get_event_loop;
//! use std::{cell::Cell, rc::Rc, time::Duration};
//!
//! let lp = get_event_loop();
//! let fired = Rc::new(Cell::new(false));
//! let f = fired.clone();
//! lp.call_later(Duration::from_millis(5), move || f.set(true));
//! lp.run_loop().unwrap(); // returns when nothing is left to wait for
//! assert!(fired.get());
//! ```

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::exception::{Exception, PyResult};
use crate::selector::{DefaultSelector, SelectorKey};
use crate::task::Task;
use crate::value::Value;

/// What a selector key carries in the loop: the callback to run when the fd
/// is ready (`event_key.data` in the tutorials). It may run many times, once
/// per `select()` that reports the fd.
pub type Callback = Rc<dyn Fn()>;

/// Wraps a closure as a selector [`Callback`].
pub fn callback(f: impl Fn() + 'static) -> Callback {
    Rc::new(f)
}

struct Timer {
    when: Instant,
    seq: u64,
    callback: Box<dyn FnOnce()>,
    cancelled: Rc<Cell<bool>>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.when, self.seq).cmp(&(other.when, other.seq))
    }
}

/// `asyncio.TimerHandle`: lets a scheduled callback be cancelled.
#[derive(Clone)]
pub struct TimerHandle {
    cancelled: Rc<Cell<bool>>,
}

impl TimerHandle {
    /// `handle.cancel()`: the callback will not run.
    pub fn cancel(&self) {
        self.cancelled.set(true);
    }

    /// `handle.cancelled()`.
    pub fn cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

/// A selector loop with timers: the tutorials' `loop()` and its globals
/// (`selector`, `stopped`), and the scheduling half of asyncio's loop.
pub struct EventLoop {
    selector: Rc<DefaultSelector<Callback>>,
    timers: RefCell<BinaryHeap<Reverse<Timer>>>,
    ready: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    stopped: Cell<bool>,
    next_seq: Cell<u64>,
}

thread_local! {
    static LOOP: Rc<EventLoop> = Rc::new(EventLoop::new().expect("cannot create the selector"));
}

/// `asyncio.get_event_loop()`: this thread's loop.
pub fn get_event_loop() -> Rc<EventLoop> {
    LOOP.with(Rc::clone)
}

/// The tutorials' global `selector`: this thread's loop's selector.
pub fn selector() -> Rc<DefaultSelector<Callback>> {
    get_event_loop().selector.clone()
}

/// The tutorials' `stopped = True`: ends this thread's `run_loop`.
pub fn stop() {
    get_event_loop().stop();
}

/// The tutorials' `loop()` on this thread's loop.
pub fn run_loop() -> PyResult<()> {
    get_event_loop().run_loop()
}

impl EventLoop {
    /// A new loop with its own selector. Most code uses [`get_event_loop`].
    pub fn new() -> PyResult<EventLoop> {
        Ok(EventLoop {
            selector: Rc::new(DefaultSelector::new()?),
            timers: RefCell::new(BinaryHeap::new()),
            ready: RefCell::new(VecDeque::new()),
            stopped: Cell::new(false),
            next_seq: Cell::new(0),
        })
    }

    /// The loop's selector (`selector` in the tutorials).
    pub fn selector(&self) -> &Rc<DefaultSelector<Callback>> {
        &self.selector
    }

    /// `stopped = True`: `run_loop` returns after the current turn.
    pub fn stop(&self) {
        self.stopped.set(true);
    }

    /// Whether `stop` was called and `run_loop` has not yet returned.
    pub fn stopped(&self) -> bool {
        self.stopped.get()
    }

    /// `loop.call_soon(callback)`: runs `callback` on the next turn.
    pub fn call_soon(&self, callback: impl FnOnce() + 'static) {
        self.ready.borrow_mut().push_back(Box::new(callback));
    }

    /// `loop.call_later(delay, callback)`: runs `callback` once `delay` has
    /// passed, unless the returned handle is cancelled first.
    pub fn call_later(&self, delay: Duration, callback: impl FnOnce() + 'static) -> TimerHandle {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let cancelled = Rc::new(Cell::new(false));
        self.timers.borrow_mut().push(Reverse(Timer {
            when: Instant::now() + delay,
            seq,
            callback: Box::new(callback),
            cancelled: cancelled.clone(),
        }));
        TimerHandle { cancelled }
    }

    /// Whether anything could still happen: a registered fd, a pending timer,
    /// or a queued callback. When none is left, the loop would wait forever.
    pub fn has_work(&self) -> bool {
        self.drop_cancelled_timers();
        !self.selector.is_empty()
            || !self.timers.borrow().is_empty()
            || !self.ready.borrow().is_empty()
    }

    fn drop_cancelled_timers(&self) {
        let mut timers = self.timers.borrow_mut();
        while timers.peek().is_some_and(|Reverse(t)| t.cancelled.get()) {
            timers.pop();
        }
    }

    /// The tutorials' `loop()`: turns until `stop()` is called, or until
    /// nothing is left to wait for (no registered fd, timer or callback).
    /// `stopped` is reset on return, so the loop can run again.
    pub fn run_loop(&self) -> PyResult<()> {
        self.run_while(|| true)
    }

    /// `loop.run_until_complete(task)`: turns until the task has finished
    /// and returns its outcome.
    pub fn run_until_complete(&self, task: &Task) -> PyResult<Value> {
        self.run_while(|| !task.done())?;
        match task.result() {
            Some(outcome) => outcome,
            None => Err(Exception::RuntimeError(
                "Event loop stopped before Future completed.".into(),
            )),
        }
    }

    /// Turns while `keep_going` holds, until `stop()` or nothing is left.
    /// `stopped` is reset on every way out, a failed turn included, so the
    /// loop can run again.
    fn run_while(&self, mut keep_going: impl FnMut() -> bool) -> PyResult<()> {
        let mut result = Ok(());
        while result.is_ok() && !self.stopped.get() && keep_going() && self.has_work() {
            result = self.run_once();
        }
        self.stopped.set(false);
        result
    }

    /// One turn: queued callbacks, then `select()` until the next timer is
    /// due, then the ready fds' callbacks, then the due timers.
    pub fn run_once(&self) -> PyResult<()> {
        self.run_ready();
        let timeout = self.select_timeout();
        if !self.selector.is_empty() || timeout.is_some() {
            let events = self.selector.select(timeout)?;
            for (event_key, _event_mask) in events {
                // An earlier callback of this turn may have unregistered the
                // fd (and a new socket may even have reused the number): run
                // the callback only if it is still the one registered.
                if self.still_registered(&event_key) {
                    let callback = event_key.data;
                    callback();
                }
            }
        }
        self.run_due_timers();
        Ok(())
    }

    /// Whether `key`, returned by a `select()` of this turn, is still what
    /// the selector holds for its fd: an earlier callback of the same turn
    /// may have unregistered it, or closed the socket and let a new one
    /// reuse the number.
    pub fn still_registered(&self, key: &SelectorKey<Callback>) -> bool {
        self.selector.with_key(key.fd, |now| {
            now.is_some_and(|now| Rc::ptr_eq(&now.data, &key.data))
        })
    }

    /// Runs the callbacks queued (`call_soon`) before this call; the ones
    /// they queue wait for the next turn. Popped one at a time, so a
    /// panicking callback loses nothing but itself (see `task` for the
    /// panic policy).
    pub fn run_ready(&self) {
        let queued = self.ready.borrow().len();
        for _ in 0..queued {
            let next = self.ready.borrow_mut().pop_front();
            match next {
                Some(callback) => callback(),
                None => break,
            }
        }
    }

    /// How long `select()` may wait this turn: until the next timer is due
    /// (`None`, forever, when there is no timer), or not at all when a
    /// callback is queued or the loop is stopping. A loop written out by
    /// hand (the examples' `event_loop()`) passes it to `selector.select`
    /// so that `call_later` timers still fire on time.
    pub fn select_timeout(&self) -> Option<Duration> {
        if !self.ready.borrow().is_empty() || self.stopped.get() {
            return Some(Duration::ZERO);
        }
        self.drop_cancelled_timers();
        self.timers
            .borrow()
            .peek()
            .map(|Reverse(t)| t.when.saturating_duration_since(Instant::now()))
    }

    /// Runs the timers whose time has come (cancelled ones are skipped):
    /// the end of a turn.
    pub fn run_due_timers(&self) {
        let now = Instant::now();
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.peek() {
                    Some(Reverse(t)) if t.when <= now => timers.pop().map(|Reverse(t)| t),
                    _ => None,
                }
            };
            match due {
                Some(timer) if !timer.cancelled.get() => (timer.callback)(),
                Some(_) => {}
                None => break,
            }
        }
    }
}
