//! `Queue`: the crawler's work queue, `asyncio.Queue` built on our `Future`.
//!
//! Why this exists: the 500 Lines crawler does not spawn a coroutine per URL.
//! It starts `max_tasks` workers that loop on `url = yield from q.get()`, and
//! the main coroutine waits on `yield from q.join()` until every URL that was
//! ever put has been matched by a `q.task_done()`. That join is what lets the
//! crawler know it is finished even though workers keep discovering new URLs
//! while others are still fetching.
//!
//! Nothing here is new machinery: a waiting `get()` or `join()` is a coroutine
//! yielding a fresh [`Future`], and a `put_nowait()` or the last `task_done()`
//! settles it. As in asyncio, the waiter is woken on the loop's next turn
//! (`call_soon`), not from inside the coroutine that put the item, so one
//! fiber never resumes another in the middle of its own work.
//!
//! `shutdown()` is Python 3.13's `Queue.shutdown()`: it is how the crawler
//! stops its idle workers once `join()` returns (the chapter cancels them).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::event_loop::get_event_loop;
use crate::exception::{Exception, PyResult};
use crate::future::Future;
use crate::generator::Co;
use crate::value::Value;

/// The name of the exception `get()` raises once the queue is shut down and
/// empty: `asyncio.QueueShutDown`.
pub const QUEUE_SHUT_DOWN: &str = "QueueShutDown";
/// The name of the exception `get_nowait()` raises on an empty queue:
/// `asyncio.QueueEmpty`.
pub const QUEUE_EMPTY: &str = "QueueEmpty";

struct Inner<T> {
    /// `_queue`: the items, first in first out.
    items: RefCell<VecDeque<T>>,
    /// `_getters`: one future per coroutine waiting in `get()`.
    getters: RefCell<VecDeque<Future>>,
    /// One future per coroutine waiting in `join()` (asyncio's `_finished`
    /// event, whose waiters are futures too).
    joiners: RefCell<Vec<Future>>,
    /// `_unfinished_tasks`: puts not yet matched by a `task_done()`.
    unfinished_tasks: Cell<usize>,
    /// `_is_shutdown`.
    is_shutdown: Cell<bool>,
}

/// `asyncio.Queue` (unbounded): `put_nowait`, `get`, `task_done`, `join`,
/// `qsize`, `shutdown`.
///
/// A shared handle: clones are the same queue, as Python names are.
///
/// ```
/// use pyfiber::crawler::Queue;
/// use pyfiber::{get_event_loop, Generator, Task, Value};
///
/// let q: Queue<&str> = Queue::new();
/// let consumer = q.clone();
/// // async def work(): while True: item = await q.get(); ...; q.task_done()
/// let worker = Task::new(Generator::new(move |co| loop {
///     let _item = match consumer.get(co) {
///         Ok(item) => item,
///         Err(e) if Queue::<&str>::is_shut_down(&e) => return Ok(Value::None),
///         Err(e) => return Err(e),
///     };
///     consumer.task_done()?;
/// }));
/// let main_q = q.clone();
/// let main = Task::new(Generator::new(move |co| {
///     main_q.put_nowait("a")?;
///     main_q.put_nowait("b")?;
///     main_q.join(co)?; // returns once both were task_done()
///     main_q.shutdown();
///     Ok(Value::None)
/// }));
/// get_event_loop().run_until_complete(&main).unwrap();
/// get_event_loop().run_until_complete(&worker).unwrap();
/// assert_eq!(q.qsize(), 0);
/// ```
pub struct Queue<T>(Rc<Inner<T>>);

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue(self.0.clone())
    }
}

impl<T: 'static> Default for Queue<T> {
    fn default() -> Self {
        Queue::new()
    }
}

/// Settles `future` on the loop's next turn: asyncio runs a future's done
/// callbacks through `call_soon`, so the woken coroutine resumes from the
/// loop, not from inside whoever woke it.
fn wake_soon(future: Future) {
    get_event_loop().call_soon(move || future.set_result(Value::None));
}

impl<T: 'static> Queue<T> {
    /// `asyncio.Queue()`: empty, unbounded, nothing unfinished.
    pub fn new() -> Queue<T> {
        Queue(Rc::new(Inner {
            items: RefCell::new(VecDeque::new()),
            getters: RefCell::new(VecDeque::new()),
            joiners: RefCell::new(Vec::new()),
            unfinished_tasks: Cell::new(0),
            is_shutdown: Cell::new(false),
        }))
    }

    /// `q.qsize()`: items waiting to be taken.
    pub fn qsize(&self) -> usize {
        self.0.items.borrow().len()
    }

    /// `q.empty()`.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// `q._unfinished_tasks`: items put and not yet matched by `task_done()`
    /// (taken or not).
    pub fn unfinished_tasks(&self) -> usize {
        self.0.unfinished_tasks.get()
    }

    /// Whether [`Queue::shutdown`] was called.
    pub fn is_shutdown(&self) -> bool {
        self.0.is_shutdown.get()
    }

    /// `q.put_nowait(item)`: appends the item, counts one more unfinished
    /// task, and wakes the first coroutine waiting in `get()`. Raises
    /// `QueueShutDown` after [`Queue::shutdown`].
    pub fn put_nowait(&self, item: T) -> PyResult<()> {
        if self.is_shutdown() {
            return Err(Exception::user(QUEUE_SHUT_DOWN, "put on a shut-down queue"));
        }
        self.0.items.borrow_mut().push_back(item);
        self.0
            .unfinished_tasks
            .set(self.0.unfinished_tasks.get() + 1);
        self.wakeup_next_getter();
        Ok(())
    }

    /// `_wakeup_next(self._getters)`: the first getter still waiting.
    fn wakeup_next_getter(&self) {
        loop {
            let next = self.0.getters.borrow_mut().pop_front();
            match next {
                Some(getter) if getter.done() => continue,
                Some(getter) => {
                    wake_soon(getter);
                    return;
                }
                None => return,
            }
        }
    }

    /// `q.get_nowait()`: the first item, or `QueueEmpty` (`QueueShutDown`
    /// once shut down and empty).
    pub fn get_nowait(&self) -> PyResult<T> {
        if let Some(item) = self.0.items.borrow_mut().pop_front() {
            return Ok(item);
        }
        if self.is_shutdown() {
            Err(Exception::user(QUEUE_SHUT_DOWN, ""))
        } else {
            Err(Exception::user(QUEUE_EMPTY, ""))
        }
    }

    /// `item = yield from q.get()`: the first item; while the queue is empty,
    /// the coroutine yields a future that the next `put_nowait()` settles.
    /// Raises `QueueShutDown` once the queue is shut down and empty.
    ///
    /// As in asyncio, a woken getter may find the item already taken by a
    /// coroutine that did not have to wait; then it waits again.
    pub fn get(&self, co: &Co<'_>) -> PyResult<T> {
        loop {
            match self.get_nowait() {
                Ok(item) => return Ok(item),
                Err(e) if e.name() == QUEUE_EMPTY => {}
                Err(e) => return Err(e),
            }
            let getter = Future::new();
            self.0.getters.borrow_mut().push_back(getter.clone());
            if let Err(e) = co.yield_from_future(&getter) {
                // Thrown in (e.g. GeneratorExit): stop waiting; if we had
                // been woken, pass the wake-up on, as asyncio does.
                self.0.getters.borrow_mut().retain(|g| !g.is(&getter));
                if !self.empty() {
                    self.wakeup_next_getter();
                }
                return Err(e);
            }
        }
    }

    /// `q.task_done()`: one taken item is fully processed. When no unfinished
    /// item is left, every coroutine in `join()` is woken. Raises
    /// `ValueError: task_done() called too many times` when nothing is
    /// unfinished, as asyncio does.
    pub fn task_done(&self) -> PyResult<()> {
        let unfinished = self.0.unfinished_tasks.get();
        if unfinished == 0 {
            return Err(Exception::ValueError(
                "task_done() called too many times".into(),
            ));
        }
        self.0.unfinished_tasks.set(unfinished - 1);
        if unfinished == 1 {
            let joiners = std::mem::take(&mut *self.0.joiners.borrow_mut());
            for joiner in joiners {
                wake_soon(joiner);
            }
        }
        Ok(())
    }

    /// `yield from q.join()`: returns once every item ever put has been
    /// matched by a `task_done()`; at once if none is unfinished.
    pub fn join(&self, co: &Co<'_>) -> PyResult<()> {
        while self.unfinished_tasks() > 0 {
            let joiner = Future::new();
            self.0.joiners.borrow_mut().push(joiner.clone());
            co.yield_from_future(&joiner)?;
        }
        Ok(())
    }

    /// `q.shutdown()` (Python 3.13, `immediate=False`): later puts raise
    /// `QueueShutDown`, and every coroutine waiting in `get()` is woken to
    /// find the queue empty and raise `QueueShutDown` too. Items still queued
    /// can be taken first.
    pub fn shutdown(&self) {
        self.0.is_shutdown.set(true);
        let getters = std::mem::take(&mut *self.0.getters.borrow_mut());
        for getter in getters {
            if !getter.done() {
                wake_soon(getter);
            }
        }
    }

    /// `isinstance(exc, asyncio.QueueShutDown)`.
    pub fn is_shut_down(exc: &Exception) -> bool {
        exc.name() == QUEUE_SHUT_DOWN
    }
}
