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
//! Two things are done lazily, since Python's selectors are only observed
//! through `select()`'s results:
//!
//! - `unregister` forgets the key at once but leaves the fd in the kernel's
//!   epoll set until the next `select()`. A `register` of the same fd before
//!   then (the tutorials' `fetch` unregisters and re-registers at every
//!   wait) becomes one `epoll_ctl(MOD)` instead of a `DEL` and an `ADD`;
//!   otherwise `select()` does the `DEL` before it waits, so no event of an
//!   unregistered fd is ever seen. Measured: 6 → 4 `epoll_ctl` per fetch in
//!   the generator stage (NOTES, "5,000 URLs beside tokio").
//! - When the fd is a [`Socket`](crate::net::Socket) known to be the same
//!   one, still open, since its `unregister` (`net::socket::generation`),
//!   a `register` for the events the kernel already has makes no system
//!   call at all (the generator stage's second `recv`: the same socket,
//!   `EVENT_READ` again), and the pending `DEL` of a socket closed since
//!   is skipped (closing removed it from the epoll set; the call would
//!   fail with `EBADF`). Measured: 4 → 2 `epoll_ctl` per fetch, tokio's
//!   count (`strace -c -f`, `generator --urls 5000`).
//!
//! The one difference it could make: an fd unregistered, then closed while
//! another process still holds the same socket (a `fork` in between), stays
//! in the epoll set; close fds you fork with after the next `select()`, or
//! keep them registered.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use polling::{Event, PollMode, Poller};

use crate::exception::{Exception, PyResult};
use crate::net::socket_generation;
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
    /// Indexed by fd: the kernel hands out the lowest free number, so the
    /// fds in use are a dense run of small integers and a `Vec` is the map
    /// (Python's is a dict). Measured against the `HashMap` it replaced
    /// (SipHash of the fd, and a `HashSet` beside it for the pending
    /// unregisters): see NOTES, "5,000 URLs beside tokio".
    slots: RefCell<Vec<Slot<D>>>,
    /// Fds unregistered since the last `select()` (a slot says whether
    /// each still is).
    unregistered: RefCell<Vec<RawFd>>,
    /// The fds registered now.
    registered: std::cell::Cell<usize>,
    ready: RefCell<Vec<Event>>,
}

/// One fd's state.
struct Slot<D> {
    /// Its key while registered.
    key: Option<SelectorKey<D>>,
    /// Unregistered since the last `select()` but still in the epoll set.
    pending: Option<Pending>,
}

/// What the epoll set still holds for an fd unregistered since the last
/// `select()`.
#[derive(Clone, Copy)]
struct Pending {
    /// The events it watches there.
    events: u32,
    /// Which `Socket` had the fd at the `unregister` (`None`: not one we
    /// follow).
    socket: Option<u32>,
}

impl<D> Default for Slot<D> {
    fn default() -> Self {
        Slot {
            key: None,
            pending: None,
        }
    }
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

/// The fd's place in the slots; a negative fd is Python's `ValueError:
/// Invalid file descriptor: -1`.
fn slot_index(fd: RawFd) -> PyResult<usize> {
    usize::try_from(fd).map_err(|_| Exception::ValueError(format!("Invalid file descriptor: {fd}")))
}

/// The slot of a registered fd; anything else is Python's `KeyError: '3
/// is not registered'`, as `unregister` and `modify` raise it.
fn registered_slot<D>(slots: &mut [Slot<D>], fd: RawFd) -> PyResult<&mut Slot<D>> {
    slot_index(fd)
        .ok()
        .and_then(|i| slots.get_mut(i))
        .filter(|slot| slot.key.is_some())
        .ok_or_else(|| not_registered(fd))
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
            slots: RefCell::new(Vec::new()),
            unregistered: RefCell::new(Vec::new()),
            registered: std::cell::Cell::new(0),
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
        let index = slot_index(fd)?;
        let mut slots = self.slots.borrow_mut();
        if slots.len() <= index {
            slots.resize_with(index + 1, Slot::default);
        }
        let slot = &mut slots[index];
        if slot.key.is_some() {
            return Err(Exception::KeyError(format!(
                "{fd} (FD {fd}) is already registered"
            )));
        }
        match slot.pending {
            // The same socket, still open, back for what the epoll set
            // already watches: nothing to tell the kernel.
            Some(p)
                if p.events == events
                    && p.socket.is_some()
                    && p.socket == socket_generation(fd) => {}
            // A socket closed since (closing took it out of the epoll set):
            // this is a new one with the same number.
            Some(p) if p.socket.is_some() && p.socket != socket_generation(fd) => self
                .poller
                .add_with_mode(fd, interest(fd, events), PollMode::Level)?,
            // Unregistered since the last select(): still in the epoll set
            // (or gone, if it was closed and this is a new fd with the same
            // number: then MOD fails with ENOENT and it is added).
            Some(_) => match self
                .poller
                .modify_with_mode(fd, interest(fd, events), PollMode::Level)
            {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.poller
                        .add_with_mode(fd, interest(fd, events), PollMode::Level)?
                }
                r => r?,
            },
            None => self
                .poller
                .add_with_mode(fd, interest(fd, events), PollMode::Level)?,
        }
        slot.pending = None;
        let key = SelectorKey { fd, events, data };
        slot.key = Some(key.clone());
        self.registered.set(self.registered.get() + 1);
        trace::emit(format_args!("register fd={fd} {}", events_name(events)));
        Ok(key)
    }

    /// `selector.unregister(fileobj)`: stops watching the fd and returns its
    /// key. Call it before closing the socket, as Python's docs say.
    pub fn unregister(&self, fileobj: impl AsRawFd) -> PyResult<SelectorKey<D>> {
        let fd = fileobj.as_raw_fd();
        let mut slots = self.slots.borrow_mut();
        let slot = registered_slot(&mut slots, fd)?;
        let key = slot.key.take().expect("checked above");
        // Out of the epoll set at the next select(), unless registered again
        // before it (see the module docs).
        slot.pending = Some(Pending {
            events: key.events,
            socket: socket_generation(fd),
        });
        self.unregistered.borrow_mut().push(fd);
        self.registered.set(self.registered.get() - 1);
        trace::emit(format_args!("unregister fd={fd}"));
        Ok(key)
    }

    /// `selector.modify(fileobj, events, data)`: changes what an fd waits for.
    pub fn modify(&self, fileobj: impl AsRawFd, events: u32, data: D) -> PyResult<SelectorKey<D>> {
        let fd = fileobj.as_raw_fd();
        check_events(events)?;
        let mut slots = self.slots.borrow_mut();
        let slot = registered_slot(&mut slots, fd)?;
        // As CPython's `EpollSelector.modify`: the kernel is told only when
        // the events change; new data alone is ours to keep. The crawler's
        // second `read` of a response (`EVENT_READ` again, a new callback)
        // was one `epoll_ctl(MOD)` per page.
        if slot.key.as_ref().is_some_and(|key| key.events != events) {
            self.poller
                .modify_with_mode(fd, interest(fd, events), PollMode::Level)?;
        }
        let key = SelectorKey { fd, events, data };
        slot.key = Some(key.clone());
        trace::emit(format_args!("modify fd={fd} {}", events_name(events)));
        Ok(key)
    }

    /// `selector.select(timeout)`: blocks until a registered fd is ready or
    /// `timeout` passes (`None` waits forever), and returns `(key, events)`
    /// for each ready fd.
    pub fn select(&self, timeout: Option<Duration>) -> PyResult<Vec<(SelectorKey<D>, u32)>> {
        {
            let mut slots = self.slots.borrow_mut();
            for fd in self.unregistered.borrow_mut().drain(..) {
                // Registered again since (then it is no longer pending), or
                // pending twice in the list: nothing, or already done.
                let Some(p) = slots.get_mut(fd as usize).and_then(|s| s.pending.take()) else {
                    continue;
                };
                // A socket closed since its unregister left the epoll set
                // when it closed; any other fd may be closed by now too
                // (then the DEL fails, harmlessly): the key is gone either
                // way, as in Python.
                if p.socket.is_none() || p.socket == socket_generation(fd) {
                    let _ = self.poller.delete(fd);
                }
            }
        }
        let mut ready = self.ready.borrow_mut();
        ready.clear();
        match self.poller.wait(&mut ready, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        let slots = self.slots.borrow();
        let mut out = Vec::with_capacity(ready.len());
        for ev in ready.iter() {
            if let Some(key) = slots.get(ev.key).and_then(|s| s.key.as_ref()) {
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
        self.with_key(fd, |key| key.cloned())
            .ok_or_else(|| not_registered(fd))
    }

    /// `f(selector.get_map().get(fd))`: looks at the key registered for `fd`
    /// (if any) without cloning it, as the loops do before each callback
    /// to check it is still the one registered.
    pub fn with_key<R>(&self, fd: RawFd, f: impl FnOnce(Option<&SelectorKey<D>>) -> R) -> R {
        let slots = self.slots.borrow();
        let key = slot_index(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|slot| slot.key.as_ref());
        f(key)
    }

    /// `len(selector.get_map())`: how many fds are registered.
    pub fn len(&self) -> usize {
        self.registered.get()
    }

    /// `not selector.get_map()`.
    pub fn is_empty(&self) -> bool {
        self.registered.get() == 0
    }
}
