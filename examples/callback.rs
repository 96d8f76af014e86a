//! `callback.py`: one thread, non-blocking sockets, a selector and callbacks.
//!
//! Why this exists: `no_blocking` proved that a non-blocking socket alone
//! buys nothing: the program still waits for each URL in turn, spinning.
//! Here the waiting is handed to the OS. Every socket is started at once and
//! registered with the selector together with the function to call when it
//! is ready (`connected` when it can be written, `read_response` when it can
//! be read); `loop()` sleeps in `select()` until some socket is ready and
//! runs its callback. All N requests wait on the server *at the same time*,
//! so N URLs take about one delay instead of N.
//!
//! The price is the shape of the code: one download is cut into
//! `fetch` → `connected` → `read_response`, state lives in the `Fetcher`
//! between calls, and an error has to be routed by hand. The generator stage
//! puts the download back into one function.
//!
//! ```text
//! cargo run --release --example callback -- --urls 10 --delay 1 [--trace]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use pyfiber::net::Socket;
use pyfiber::selector::DefaultSelector;
use pyfiber::{Exception, PyResult, EVENT_READ, EVENT_WRITE};

/// What the selector keeps for each fd: the callback, called as
/// `callback(key.fd, mask)` (the seed's `callback(event_key, event_mask)`).
type Callback = Rc<dyn Fn(RawFd, u32)>;

thread_local! {
    /// `selector = DefaultSelector()`.
    static SELECTOR: Rc<DefaultSelector<Callback>> =
        Rc::new(DefaultSelector::new().expect("cannot create the selector"));
    /// `urls_todo = {...}`.
    static URLS_TODO: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    /// `stopped = False`.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
    /// The `--timeout` deadlines, oldest first: every fetch starts before
    /// the loop and gets the same timeout, so start order is deadline order.
    static DEADLINES: RefCell<VecDeque<(Instant, Rc<Fetcher>)>> = const { RefCell::new(VecDeque::new()) };
}

fn selector() -> Rc<DefaultSelector<Callback>> {
    SELECTOR.with(Rc::clone)
}

/// `class Fetcher`: one URL's download, spread over three callbacks.
struct Fetcher {
    target: common::Target,
    /// `self.response = b''`
    response: RefCell<Vec<u8>>,
    /// `self.sock`
    sock: RefCell<Option<Socket>>,
    /// Whether this fetch has its outcome (a result, an error, a timeout).
    done: Cell<bool>,
}

impl Fetcher {
    fn new(target: common::Target) -> Rc<Fetcher> {
        Rc::new(Fetcher {
            target,
            response: RefCell::new(Vec::new()),
            sock: RefCell::new(None),
            done: Cell::new(false),
        })
    }

    /// `def fetch(self)`: start connecting, register `connected`, return at
    /// once.
    fn fetch(self: &Rc<Self>) {
        let started = (|| -> PyResult<()> {
            let sock = Socket::new()?;
            sock.setblocking(false)?;
            match sock.connect(self.target.addr) {
                Ok(()) | Err(Exception::BlockingIOError(_)) => {}
                Err(e) => return Err(e),
            }
            let this = self.clone();
            selector().register(
                sock.fileno(),
                EVENT_WRITE,
                Rc::new(move |fd, mask| this.connected(fd, mask)),
            )?;
            *self.sock.borrow_mut() = Some(sock);
            Ok(())
        })();
        if let Err(e) = started {
            self.finish(Err(e));
        }
    }

    /// `def connected(self, key, mask)`: the socket is writable; send the
    /// request and register `read_response`.
    fn connected(self: &Rc<Self>, fd: RawFd, _mask: u32) {
        let sent = (|| -> PyResult<()> {
            selector().unregister(fd)?;
            let sock = self.sock.borrow();
            let sock = sock.as_ref().expect("connected before fetch");
            // Writable means the connect finished, not that it worked.
            sock.take_error()?;
            let request = self.target.request();
            sock.sendall(request.as_bytes())?;
            let this = self.clone();
            selector().register(
                fd,
                EVENT_READ,
                Rc::new(move |fd, mask| this.read_response(fd, mask)),
            )?;
            Ok(())
        })();
        if let Err(e) = sent {
            self.finish(Err(e));
        }
    }

    /// `def read_response(self, key, mask)`: one `recv(4096)`; at `b''` the
    /// response is whole.
    fn read_response(self: &Rc<Self>, _fd: RawFd, _mask: u32) {
        let chunk = self
            .sock
            .borrow()
            .as_ref()
            .expect("read before fetch")
            .recv(4096);
        match chunk {
            Ok(chunk) if !chunk.is_empty() => {
                let appended = common::append_chunk(&mut self.response.borrow_mut(), &chunk);
                if let Err(e) = appended {
                    self.finish(Err(e));
                }
            }
            Ok(_) => {
                let response = self.response.take();
                self.finish(Ok(response));
            }
            Err(e) => self.finish(Err(e)),
        }
    }

    /// The end of one URL, whichever way it ends: unregister and close the
    /// socket, print the outcome, `urls_todo.remove(self.url)`, and set
    /// `stopped` after the last one.
    fn finish(&self, outcome: PyResult<Vec<u8>>) {
        if self.done.replace(true) {
            return;
        }
        if let Some(sock) = self.sock.borrow_mut().take() {
            let _ = selector().unregister(sock.fileno());
        }
        common::report_response(&self.target.url, outcome);
        URLS_TODO.with(|todo| {
            let mut todo = todo.borrow_mut();
            todo.remove(&self.target.url);
            if todo.is_empty() {
                STOPPED.with(|s| s.set(true));
            }
        });
    }
}

/// `def loop()`: `while not stopped`, sleep in `select()` and run each ready
/// fd's callback. The `select` timeout is the nearest `--timeout` deadline;
/// a fetch past it ends with `TimeoutError`.
fn loop_() -> PyResult<()> {
    let selector = selector();
    while !STOPPED.with(Cell::get) {
        let next_deadline = DEADLINES.with(|d| {
            let mut d = d.borrow_mut();
            while d.front().is_some_and(|(_, f)| f.done.get()) {
                d.pop_front();
            }
            d.front().map(|(when, _)| *when)
        });
        if selector.is_empty() && next_deadline.is_none() {
            break; // nothing left to wait for
        }
        let timeout = next_deadline.map(|when| when.saturating_duration_since(Instant::now()));
        let events = selector.select(timeout)?;
        for (event_key, event_mask) in events {
            // An earlier callback of this turn may have unregistered the fd.
            let still_registered = selector
                .get_key(event_key.fd)
                .is_ok_and(|now| Rc::ptr_eq(&now.data, &event_key.data));
            if still_registered {
                let callback = event_key.data;
                callback(event_key.fd, event_mask);
            }
        }
        let now = Instant::now();
        loop {
            let expired = DEADLINES.with(|d| {
                let mut d = d.borrow_mut();
                match d.front() {
                    Some((when, _)) if *when <= now => d.pop_front().map(|(_, f)| f),
                    _ => None,
                }
            });
            match expired {
                Some(fetcher) => fetcher.finish(Err(common::timed_out())),
                None => break,
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let stage = common::Stage::start("callback", common::parse_args(), common::Concurrency::All);
    URLS_TODO.with(|todo| {
        todo.borrow_mut()
            .extend(stage.targets.iter().map(|t| t.url.clone()))
    });
    let timeout: Duration = stage.timeout();
    for target in &stage.targets {
        let fetcher = Fetcher::new(target.clone());
        DEADLINES.with(|d| {
            d.borrow_mut()
                .push_back((Instant::now() + timeout, fetcher.clone()))
        });
        fetcher.fetch();
    }
    if let Err(e) = loop_() {
        eprintln!("error: the loop failed: {}", e.line());
    }
    stage.finish()
}
