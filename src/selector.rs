//! `DefaultSelector`: Python's `selectors.DefaultSelector`, over `polling`.
//!
//! Why this exists: every stage from `callback` on hands the waiting to the
//! OS. The program says "tell me when this socket can be written" by
//! registering the socket's fd with a piece of data (in the tutorials, the
//! callback to run), and `select()` blocks until some registered fd is ready,
//! returning the keys of the ready ones.
//!
//! ```
//! use pyfiber::selector::{DefaultSelector, EVENT_READ};
//! use std::os::fd::AsRawFd;
//! use std::time::Duration;
//!
//! let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
//! let selector = DefaultSelector::new().unwrap();
//! selector.register(a.as_raw_fd(), EVENT_READ, "on_readable").unwrap();
//! assert!(selector.select(Some(Duration::ZERO)).unwrap().is_empty());
//! std::io::Write::write_all(&mut b, b"ping").unwrap();
//! let ready = selector.select(None).unwrap();
//! assert_eq!(ready[0].0.data, "on_readable");
//! assert_eq!(ready[0].1, EVENT_READ);
//! ```
//!
//! Like Python's selectors (and unlike `polling`'s default one-shot mode),
//! registrations are level-triggered and persistent: a readable socket is
//! reported by every `select()` until it is read or unregistered.
//!
//! One thing is done lazily, since Python's selectors are only observed
//! through `select()`'s results: `unregister` forgets the key at once but
//! leaves the fd in the kernel's epoll set until the next `select()`. A
//! `register` of the same fd before then (the tutorials' `fetch` unregisters
//! and re-registers at every wait) becomes one `epoll_ctl(MOD)` instead of a
//! `DEL` and an `ADD`; otherwise `select()` does the `DEL` before it waits,
//! so no event of an unregistered fd is ever seen. Measured: 6 → 4
//! `epoll_ctl` per fetch in the generator stage (NOTES, "5,000 URLs beside
//! tokio"). The one difference it could make: an fd unregistered, then
//! closed while another process still holds the same socket (a `fork` in
//! between), stays in the epoll set; close fds you fork with after the next
//! `select()`, or keep them registered.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use polling::{Event, PollMode, Poller};

use crate::exception::{Exception, PyResult};
use crate::trace;

/// `selectors.EVENT_READ`.
pub const EVENT_READ: u32 = 1;
/// `selectors.EVENT_WRITE`.
pub const EVENT_WRITE: u32 = 2;

/// `selectors.SelectorKey`: what was registered for one fd.
#[derive(Clone, Debug)]
pub struct SelectorKey<D> {
    /// `key.fd`.
    pub fd: RawFd,
    /// `key.events`: `EVENT_READ`, `EVENT_WRITE` or both.
    pub events: u32,
    /// `key.data`: in the tutorials, the callback to run when ready.
    pub data: D,
}

/// `selectors.DefaultSelector` (epoll on Linux), holding `D` per fd.
pub struct DefaultSelector<D> {
    poller: Poller,
    keys: RefCell<HashMap<RawFd, SelectorKey<D>>>,
    /// Unregistered fds still in the epoll set until the next `select()`.
    unregistered: RefCell<HashSet<RawFd>>,
    ready: RefCell<Vec<Event>>,
}

fn interest(fd: RawFd, events: u32) -> Event {
    Event {
        key: fd as usize,
        readable: events & EVENT_READ != 0,
        writable: events & EVENT_WRITE != 0,
    }
}

fn check_events(events: u32) -> PyResult<()> {
    if events == 0 || events & !(EVENT_READ | EVENT_WRITE) != 0 {
        return Err(Exception::ValueError(format!("Invalid events: {events}")));
    }
    Ok(())
}

fn not_registered(fd: RawFd) -> Exception {
    Exception::KeyError(format!("{fd} is not registered"))
}

/// The names of an event mask, as the traces print them.
pub fn events_name(events: u32) -> &'static str {
    match events {
        EVENT_READ => "EVENT_READ",
        EVENT_WRITE => "EVENT_WRITE",
        3 => "EVENT_READ|EVENT_WRITE",
        _ => "0",
    }
}

impl<D: Clone> DefaultSelector<D> {
    /// `selectors.DefaultSelector()`.
    pub fn new() -> PyResult<Self> {
        Ok(DefaultSelector {
            poller: Poller::new()?,
            keys: RefCell::new(HashMap::new()),
            unregistered: RefCell::new(HashSet::new()),
            ready: RefCell::new(Vec::new()),
        })
    }

    /// `selector.register(fileobj, events, data)`. Registering an fd twice is
    /// `KeyError: '5 (FD 5) is already registered'`, as in Python.
    pub fn register(
        &self,
        fileobj: impl AsRawFd,
        events: u32,
        data: D,
    ) -> PyResult<SelectorKey<D>> {
        let fd = fileobj.as_raw_fd();
        check_events(events)?;
        if self.keys.borrow().contains_key(&fd) {
            return Err(Exception::KeyError(format!(
                "{fd} (FD {fd}) is already registered"
            )));
        }
        if self.unregistered.borrow_mut().remove(&fd) {
            // Unregistered since the last select(): still in the epoll set
            // (or gone, if it was closed and this is a new socket with the
            // same number: then MOD fails with ENOENT and it is added).
            match self
                .poller
                .modify_with_mode(fd, interest(fd, events), PollMode::Level)
            {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.poller
                        .add_with_mode(fd, interest(fd, events), PollMode::Level)?
                }
                r => r?,
            }
        } else {
            self.poller
                .add_with_mode(fd, interest(fd, events), PollMode::Level)?;
        }
        let key = SelectorKey { fd, events, data };
        self.keys.borrow_mut().insert(fd, key.clone());
        trace::emit(format_args!("register fd={fd} {}", events_name(events)));
        Ok(key)
    }

    /// `selector.unregister(fileobj)`: stops watching the fd and returns its
    /// key. Call it before closing the socket, as Python's docs say.
    pub fn unregister(&self, fileobj: impl AsRawFd) -> PyResult<SelectorKey<D>> {
        let fd = fileobj.as_raw_fd();
        let key = self
            .keys
            .borrow_mut()
            .remove(&fd)
            .ok_or_else(|| not_registered(fd))?;
        // Out of the epoll set at the next select(), unless registered again
        // before it (see the module docs).
        self.unregistered.borrow_mut().insert(fd);
        trace::emit(format_args!("unregister fd={fd}"));
        Ok(key)
    }

    /// `selector.modify(fileobj, events, data)`: changes what an fd waits for.
    pub fn modify(&self, fileobj: impl AsRawFd, events: u32, data: D) -> PyResult<SelectorKey<D>> {
        let fd = fileobj.as_raw_fd();
        check_events(events)?;
        if !self.keys.borrow().contains_key(&fd) {
            return Err(not_registered(fd));
        }
        self.poller
            .modify_with_mode(fd, interest(fd, events), PollMode::Level)?;
        let key = SelectorKey { fd, events, data };
        self.keys.borrow_mut().insert(fd, key.clone());
        trace::emit(format_args!("modify fd={fd} {}", events_name(events)));
        Ok(key)
    }

    /// `selector.select(timeout)`: blocks until a registered fd is ready or
    /// `timeout` passes (`None` waits forever), and returns `(key, events)`
    /// for each ready fd.
    pub fn select(&self, timeout: Option<Duration>) -> PyResult<Vec<(SelectorKey<D>, u32)>> {
        for fd in self.unregistered.borrow_mut().drain() {
            // The fd may be closed by now (epoll then forgot it by itself):
            // the key is gone either way, as in Python.
            let _ = self.poller.delete(fd);
        }
        let mut ready = self.ready.borrow_mut();
        ready.clear();
        match self.poller.wait(&mut ready, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        let keys = self.keys.borrow();
        let mut out = Vec::with_capacity(ready.len());
        for ev in ready.iter() {
            let fd = ev.key as RawFd;
            if let Some(key) = keys.get(&fd) {
                let mut events = 0;
                if ev.readable {
                    events |= EVENT_READ;
                }
                if ev.writable {
                    events |= EVENT_WRITE;
                }
                // Report only what was asked for, as Python does.
                let events = events & key.events;
                if events != 0 {
                    out.push((key.clone(), events));
                }
            }
        }
        if trace::enabled() {
            let fds: Vec<String> = out.iter().map(|(k, _)| format!("fd={}", k.fd)).collect();
            trace::emit(format_args!("select -> [{}]", fds.join(", ")));
        }
        Ok(out)
    }

    /// `selector.get_key(fileobj)`.
    pub fn get_key(&self, fileobj: impl AsRawFd) -> PyResult<SelectorKey<D>> {
        let fd = fileobj.as_raw_fd();
        self.keys
            .borrow()
            .get(&fd)
            .cloned()
            .ok_or_else(|| not_registered(fd))
    }

    /// `len(selector.get_map())`: how many fds are registered.
    pub fn len(&self) -> usize {
        self.keys.borrow().len()
    }

    /// `not selector.get_map()`.
    pub fn is_empty(&self) -> bool {
        self.keys.borrow().is_empty()
    }
}
