//! `ConnectionPool`: the cap on the crawler's connections open at once
//! (`--max_pool`).
//!
//! Why this exists: in the chapter's first crawler (and in asyncio's
//! `examples/crawl.py`, where it comes from) `--max_pool` limits the
//! `ConnectionPool`, the keep-alive connections held for reuse, separately
//! from `--max_tasks`, the coroutines fetching at once. This crawler speaks
//! HTTP/1.0 and keeps no connection after its response, so what is left of
//! the pool is its limit, applied to every connection open: a worker
//! `reserve()`s a place before it connects and gives it back when the
//! socket closes ([`Reservation`]'s drop is the chapter's `unreserve`).
//! With `max_pool` below `max_tasks`, the extra workers wait here, in line,
//! the way asyncio's `Semaphore.acquire()` waits.
//!
//! As in [`Queue`](super::Queue), a waiter is woken on the loop's next turn
//! (`call_soon`), never from inside the coroutine that gave its place back.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::event_loop::get_event_loop;
use crate::exception::{Exception, PyResult};
use crate::future::Future;
use crate::generator::Co;
use crate::value::Value;

struct Inner {
    /// `max_pool`: the most connections open at once.
    max_pool: usize,
    /// Places taken: connections open, plus places handed to a waiter that
    /// has not resumed yet.
    taken: Cell<usize>,
    /// The most places ever taken at once.
    peak: Cell<usize>,
    /// One future per coroutine waiting for a place, first come first served.
    waiters: RefCell<VecDeque<Future>>,
}

/// The crawler's connection cap: at most `max_pool` places, each held by one
/// open connection. A shared handle: clones are the same pool.
#[derive(Clone)]
pub struct ConnectionPool(Rc<Inner>);

/// One place in a [`ConnectionPool`], held while a connection is open;
/// dropping it is `unreserve()`: the place goes to the first waiter, or back
/// to the pool.
pub struct Reservation(Rc<Inner>);

impl ConnectionPool {
    /// `ConnectionPool(max_pool)`. Raises `ValueError` for 0, which would
    /// let no connection open and no crawl end.
    pub fn new(max_pool: usize) -> PyResult<ConnectionPool> {
        if max_pool == 0 {
            return Err(Exception::ValueError("max_pool must be at least 1".into()));
        }
        Ok(ConnectionPool(Rc::new(Inner {
            max_pool,
            taken: Cell::new(0),
            peak: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
        })))
    }

    /// `pool.max_pool`.
    pub fn max_pool(&self) -> usize {
        self.0.max_pool
    }

    /// Places taken now (connections open, or about to be).
    pub fn in_use(&self) -> usize {
        self.0.taken.get()
    }

    /// The most places taken at once so far: never more than `max_pool`.
    pub fn peak(&self) -> usize {
        self.0.peak.get()
    }

    /// `yield from pool.reserve()`: a place for one connection. While all
    /// `max_pool` are taken the coroutine yields a future, settled when a
    /// place is given back to it. A coroutine that had to wait is served
    /// before one arriving later. If an exception is thrown in while it
    /// waits (`GeneratorExit` when its worker is closed), it leaves the line,
    /// and a place already handed to it goes on to the next.
    pub fn reserve(&self, co: &Co<'_>) -> PyResult<Reservation> {
        let inner = &self.0;
        if inner.taken.get() < inner.max_pool && inner.waiters.borrow().is_empty() {
            inner.take();
            return Ok(Reservation(inner.clone()));
        }
        let waiter = Future::new();
        inner.waiters.borrow_mut().push_back(waiter.clone());
        match co.yield_from_future(&waiter) {
            // The place was handed over by `give_back`: `taken` counts it.
            Ok(_) => Ok(Reservation(inner.clone())),
            Err(e) => {
                let was_waiting = {
                    let mut waiters = inner.waiters.borrow_mut();
                    let before = waiters.len();
                    waiters.retain(|w| !w.is(&waiter));
                    waiters.len() < before
                };
                if !was_waiting {
                    // Handed a place before the exception came: pass it on.
                    inner.give_back();
                }
                Err(e)
            }
        }
    }
}

impl Inner {
    fn take(&self) {
        let taken = self.taken.get() + 1;
        self.taken.set(taken);
        self.peak.set(self.peak.get().max(taken));
    }

    /// `unreserve()`: the place goes straight to the first waiter (it stays
    /// taken), or, with nobody waiting, back to the pool.
    fn give_back(&self) {
        let next = self.waiters.borrow_mut().pop_front();
        match next {
            Some(waiter) => {
                get_event_loop().call_soon(move || waiter.set_result(Value::None));
            }
            None => self.taken.set(self.taken.get() - 1),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Generator, Task};

    #[test]
    fn zero_is_refused() {
        let e = ConnectionPool::new(0).err().unwrap();
        assert_eq!(e.line(), "ValueError: max_pool must be at least 1");
    }

    /// Five coroutines, two places: never more than two hold one, all five
    /// get theirs, and the pool is empty at the end.
    #[test]
    fn the_cap_holds_and_every_waiter_is_served() {
        let pool = ConnectionPool::new(2).unwrap();
        let served = Rc::new(Cell::new(0));
        let tasks: Vec<Task> = (0..5)
            .map(|_| {
                let (pool, served) = (pool.clone(), served.clone());
                Task::new(Generator::new(move |co| {
                    let place = pool.reserve(co)?;
                    assert!(pool.in_use() <= 2);
                    // Hold the place across a turn of the loop, as a
                    // connection does across its waits.
                    let f = Future::new();
                    let later = f.clone();
                    get_event_loop().call_soon(move || later.set_result(Value::None));
                    co.yield_from_future(&f)?;
                    drop(place);
                    served.set(served.get() + 1);
                    Ok(Value::None)
                }))
            })
            .collect();
        get_event_loop().run_loop().unwrap();
        assert!(tasks.iter().all(Task::done));
        assert_eq!(served.get(), 5);
        assert_eq!(pool.peak(), 2);
        assert_eq!(pool.in_use(), 0);
    }

    /// A waiter closed while in line leaves it: the place it was about to
    /// get goes to the next one, none is lost.
    #[test]
    fn a_closed_waiter_passes_its_place_on() {
        let pool = ConnectionPool::new(1).unwrap();
        let held = pool.clone();
        let holder = Task::new(Generator::new(move |co| {
            let place = held.reserve(co)?;
            let f = Future::new();
            let later = f.clone();
            get_event_loop().call_soon(move || later.set_result(Value::None));
            co.yield_from_future(&f)?;
            drop(place);
            Ok(Value::None)
        }));
        let waiting = pool.clone();
        let gen = Generator::new(move |co| {
            let _place = waiting.reserve(co)?;
            Ok(Value::None)
        });
        let quitter = Task::new(gen.clone());
        let last = pool.clone();
        let patient = Task::new(Generator::new(move |co| {
            let _place = last.reserve(co)?;
            Ok(Value::None)
        }));
        gen.close().unwrap();
        get_event_loop().run_loop().unwrap();
        assert!(holder.done() && patient.done());
        assert!(
            !quitter.done(),
            "closed from outside, its task never resumes"
        );
        assert!(!gen.gi_suspended());
        assert_eq!(pool.in_use(), 0);
    }
}
