//! `callback.py`: follows yuchaoshui/notes `Python异步并发/callback.py`,
//! function by function and in the same order: `class Spider` (`results`,
//! `__init__`, `parse`, `fetch`, `connected`, `read_response`),
//! `event_loop()`, the main block.
//!
//! Why this exists: `no_blocking` proved that a non-blocking socket alone
//! buys nothing: the program still waits for each URL in turn, spinning.
//! Here the waiting is handed to the OS. Every socket is started at once and
//! registered with the selector together with the method to call when it is
//! ready (`connected` when it can be written, `read_response` when it can be
//! read); `event_loop()` sleeps in `select()` until some socket is ready and
//! calls its callback. All N requests wait on the server *at the same time*,
//! so N URLs take about one delay instead of N.
//!
//! The price is the shape of the code: one download is cut into
//! `fetch` → `connected` → `read_response`, its state lives in the `Spider`
//! between calls, and an error has to be routed by hand. The generator stage
//! puts the download back into one function.
//!
//! Renames and additions, and why:
//! - a callback is called as `callback(key.fd)`: `key.fd` is all the
//!   original's callbacks use of the key (and Rust cannot name a key type
//!   that holds its own callback type);
//! - `handler` wraps a method for the selector so that an error it raises
//!   becomes that URL's outcome ([`Spider::failed`]): in Python it would end
//!   the whole program;
//! - `--timeout`: each Spider gets a timer on the library loop
//!   (`call_later`); `event_loop()` passes the next timer's deadline to
//!   `select` and runs the due timers after the callbacks;
//! - `sock.take_error()` after the connect (writable does not mean
//!   connected) and a response size cap.
//! - `run_callbacks`: the inner `for` of the original's loop, a function
//!   of its own because `serve_started` (which lets the first Spiders be
//!   served while main starts the rest) runs it too.
//!
//! ```text
//! cargo run --release --example callback -- --urls 10 --delay 1 [--trace]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::rc::{Rc, Weak};
use std::time::Duration;

use pyfiber::event_loop::{get_event_loop, TimerHandle};
use pyfiber::exception::BlockingIOError;
use pyfiber::net::Socket;
use pyfiber::selector::{DefaultSelector, SelectorKey};
use pyfiber::{Exception, PyResult, EVENT_READ, EVENT_WRITE};

/// What the selector keeps for each fd: the callback, called as
/// `callback(key.fd)`.
type Callback = Rc<dyn Fn(RawFd)>;

thread_local! {
    /// `selector = DefaultSelector()`.
    static SELECTOR: Rc<DefaultSelector<Callback>> =
        Rc::new(DefaultSelector::new().expect("cannot create the selector"));
    /// `stopped = False`.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
    /// `urls = [...]`: the URLs not done yet (main fills it from `--urls`).
    static URLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// `global selector`.
fn selector() -> Rc<DefaultSelector<Callback>> {
    SELECTOR.with(Rc::clone)
}

/// `urls.remove(self.url)`, then `stopped = True if not urls else False`.
fn remove_url(url: &str) {
    URLS.with(|urls| {
        let mut urls = urls.borrow_mut();
        if let Some(i) = urls.iter().position(|u| u == url) {
            urls.remove(i);
        }
        STOPPED.with(|stopped| stopped.set(urls.is_empty()));
    });
}

/// `class Spider`: one URL's download, spread over three callbacks.
struct Spider {
    /// `self.url`.
    url: String,
    /// `self.hostname`, `self.port`, `self.path`, `self.query`.
    target: common::Target,
    /// `self.response = b''`.
    response: RefCell<Vec<u8>>,
    /// `self.buffersize = 4096`.
    buffersize: usize,
    /// `self.sock = socket.socket()`.
    sock: Socket,
    /// Not in the original: whether this URL has its outcome, and its
    /// `--timeout` timer.
    done: Cell<bool>,
    timer: RefCell<Option<TimerHandle>>,
}

impl Spider {
    /// `results = []`: a class attribute, one list for every Spider.
    fn results() -> &'static common::Results {
        &common::RESULTS
    }

    /// `Spider(url)`: `__init__`.
    fn new(target: common::Target) -> PyResult<Rc<Spider>> {
        Ok(Rc::new(Spider {
            url: target.url.clone(),
            target,
            response: RefCell::new(Vec::new()),
            buffersize: 4096,
            sock: Socket::new()?,
            done: Cell::new(false),
            timer: RefCell::new(None),
        }))
    }

    /// `def parse(self)`: the title, appended to `Spider.results`.
    fn parse(&self) {
        self.finished();
        let title = common::parse(&self.response.borrow());
        Self::results().append(&self.url, title);
    }

    /// `def fetch(self)`: start connecting, register `connected`, return at
    /// once.
    fn fetch(self: &Rc<Self>) -> PyResult<()> {
        common::mark(&self.url, common::Mark::Started);
        self.sock.setblocking(false)?;
        match self.sock.connect(self.target.addr) {
            Ok(()) => {}
            Err(e) if e.is_instance(&BlockingIOError) => {}
            Err(e) => return Err(e),
        }
        selector().register(
            self.sock.fileno(),
            EVENT_WRITE,
            handler(self, Spider::connected),
        )?;
        Ok(())
    }

    /// `def connected(self, key)`: the socket is writable; send the request
    /// and register `read_response`.
    fn connected(self: &Rc<Self>, key_fd: RawFd) -> PyResult<()> {
        selector().unregister(key_fd)?;
        // Writable means the connect finished, not that it worked.
        self.sock.take_error()?;
        common::mark(&self.url, common::Mark::Connected);
        let get = self.target.request();
        self.sock.sendall(get.as_bytes())?;
        selector().register(key_fd, EVENT_READ, handler(self, Spider::read_response))?;
        Ok(())
    }

    /// `def read_response(self, key)`: one `recv`; at `b''` the response is
    /// whole.
    fn read_response(self: &Rc<Self>, key_fd: RawFd) -> PyResult<()> {
        let chunk = self.sock.recv(self.buffersize)?;
        if !chunk.is_empty() {
            common::mark(&self.url, common::Mark::FirstByte);
            common::append_chunk(&mut self.response.borrow_mut(), &chunk)?;
        } else {
            selector().unregister(key_fd)?;
            remove_url(&self.url);
            self.parse();
        }
        Ok(())
    }

    /// Not in the original: a fetch that raised (or ran out of time). Its
    /// error is its outcome; its socket leaves the selector, and the URL
    /// leaves `urls` as a finished one does.
    fn failed(&self, e: Exception) {
        if self.done.get() {
            return;
        }
        self.finished();
        let _ = selector().unregister(self.sock.fileno());
        Self::results().append(&self.url, Err(e.line()));
        remove_url(&self.url);
    }

    /// Marks the outcome as given and cancels the `--timeout` timer.
    fn finished(&self) {
        self.done.set(true);
        if let Some(timer) = self.timer.borrow_mut().take() {
            timer.cancel();
        }
    }
}

/// Not in the original: the selector's data for `method`, called as
/// `callback(key.fd)`; an error it raises is that Spider's outcome.
fn handler(spider: &Rc<Spider>, method: fn(&Rc<Spider>, RawFd) -> PyResult<()>) -> Callback {
    let spider = spider.clone();
    Rc::new(move |key_fd| {
        if let Err(e) = method(&spider, key_fd) {
            spider.failed(e);
        }
    })
}

/// `def event_loop()`: while not `stopped`, sleep in `select()` and call
/// each ready key's callback.
fn event_loop() -> PyResult<()> {
    let selector = selector();
    // Not in the original: the library loop's timers, for --timeout.
    let timers = get_event_loop();
    while !STOPPED.with(Cell::get) {
        let timeout = timers.select_timeout();
        if selector.is_empty() && timeout.is_none() {
            break; // nothing left that could wake select(): it would wait forever
        }
        let events = selector.select(timeout)?;
        run_callbacks(events);
        timers.run_due_timers();
    }
    Ok(())
}

fn main() -> ExitCode {
    let stage = common::Stage::start("callback", common::parse_args(), common::Concurrency::All);
    URLS.with(|urls| urls.replace(stage.targets.iter().map(|t| t.url.clone()).collect()));
    for (i, target) in stage.targets.iter().enumerate() {
        if i > 0 && i % common::START_BATCH == 0 {
            serve_started();
        }
        let spider = match Spider::new(target.clone()) {
            Ok(spider) => spider,
            Err(e) => {
                Spider::results().append(&target.url, Err(e.line()));
                remove_url(&target.url);
                continue;
            }
        };
        watch(&spider, stage.timeout());
        if let Err(e) = spider.fetch() {
            spider.failed(e);
        }
    }
    if let Err(e) = event_loop() {
        eprintln!("error: the loop failed: {}", e.line());
    }
    Spider::results().print();
    stage.finish()
}

/// Not in the original: `--timeout`. The timer holds the Spider weakly, so
/// a finished Spider (and its socket) is freed at once.
fn watch(spider: &Rc<Spider>, timeout: Duration) {
    let weak: Weak<Spider> = Rc::downgrade(spider);
    let timer = get_event_loop().call_later(timeout, move || {
        if let Some(spider) = weak.upgrade() {
            spider.failed(common::timed_out());
        }
    });
    *spider.timer.borrow_mut() = Some(timer);
}

/// Not in the original: after every `common::START_BATCH` Spiders started,
/// one turn of `event_loop()` that does not wait (`select(0)`, the ready
/// callbacks, the due timers), so the Spiders started first are served
/// while main connects the rest. A failed `select` is left for
/// `event_loop()` to report.
fn serve_started() {
    let selector = selector();
    let Ok(events) = selector.select(Some(Duration::ZERO)) else {
        return;
    };
    run_callbacks(events);
    get_event_loop().run_due_timers();
}

/// The body of `event_loop()`'s `for event_key, event_mask in events:`
/// `callback = event_key.data; callback()`, for both loops above.
fn run_callbacks(events: Vec<(SelectorKey<Callback>, u32)>) {
    let selector = selector();
    for (key, _mask) in events {
        // (A callback earlier in this batch may have unregistered it.)
        let still_registered = selector
            .get_key(key.fd)
            .is_ok_and(|now| Rc::ptr_eq(&now.data, &key.data));
        if still_registered {
            let callback = key.data;
            callback(key.fd);
        }
    }
}
