//! `generator.py`: follows yuchaoshui/notes `Python异步并发/generator.py`,
//! function by function and in the same order: `Future`, `class Spider`
//! (`results`, `__init__`, `parse`, `fetch` with its nested `on_connected`
//! and `on_readable`), `Task` and its `step`, `event_loop()`, the main block.
//!
//! Why this exists: the callback stage is fast but its logic is cut into
//! pieces (`connected`, `read_response`) that share state by hand. Here one
//! download is one function again, `Spider.fetch`, written top to bottom like
//! sync's `fetch`; where it would block, it creates a `Future`, registers a
//! selector callback that only calls `future.set_result(...)`, and *yields
//! the future*. The `Task` driving the generator adds its `step` as the
//! future's done callback, so when the socket is ready the chain runs by
//! itself:
//!
//! ```text
//! event_loop() ── select ──▶ on_readable() ── set_result(chunk) ──▶ Task.step ── send(chunk) ──▶ fetch resumes
//! ```
//!
//! Renames and additions, and why:
//! - `Future` and `Task` are the library's ([`pyfiber::Future`],
//!   [`pyfiber::Task`]): `Task::step` is where every generator stage's task
//!   resumes its generator, so it has one home. They add what the original
//!   lacks: `set_exception` (a failed `recv`, a timeout), and a task's done
//!   callback.
//! - `selector` is the library loop's selector, so that its `call_later`
//!   timers can bound each fetch (`--timeout`); `event_loop()` passes the
//!   next timer's deadline to `select` and runs the due timers after the
//!   callbacks.
//! - `Spider::fetch` is the generator function's body; main's
//!   `Generator::named("fetch", ...)` is Python's call `spider.fetch()`,
//!   which makes the generator object. `on_connected`/`on_readable` are fn
//!   items nested in `fetch`, called by the closures registered with the
//!   selector, so a debugger shows them by name.
//! - What a real run needs and the original has not: `sock.take_error()`
//!   after the connect (writable does not mean connected), a response size
//!   cap, each `unregister` running even when the `yield` raised, and
//!   `failed` in main: a fetch that raised gets its error line and leaves
//!   `urls` as a finished one does (in Python the exception would end the
//!   whole program).
//!
//! ```text
//! cargo run --release --example generator -- --urls 10 --delay 1 [--trace]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use pyfiber::event_loop::{callback, get_event_loop};
use pyfiber::net::Socket;
use pyfiber::{Co, Exception, Future, Generator, PyResult, Task, Value, EVENT_READ, EVENT_WRITE};

thread_local! {
    /// `stopped = False`: set when the last URL is done; ends `event_loop()`.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
    /// `urls = [...]`: the URLs not done yet (main fills it from `--urls`).
    static URLS: RefCell<common::UrlList> = const { RefCell::new(common::UrlList::new()) };
}

/// `urls.remove(url)`, then `stopped = True if not urls else False`.
fn remove_url(url: &str) {
    URLS.with(|urls| {
        let mut urls = urls.borrow_mut();
        if let Some(i) = urls.iter().position(|u| u == url) {
            urls.remove(i);
        }
        STOPPED.with(|stopped| stopped.set(urls.is_empty()));
    });
}

/// `class Spider`: one URL, its socket and the response read so far.
struct Spider {
    /// `self.url`.
    url: String,
    /// `self.hostname`, `self.port`, `self.path`, `self.query`: the URL
    /// split (and resolved) once.
    target: common::Target,
    /// `self.response = b''`.
    response: RefCell<Vec<u8>>,
    /// `self.sock = socket.socket()`.
    sock: Rc<Socket>,
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
            sock: Rc::new(Socket::new_nonblocking()?), // SOCK_NONBLOCK: fetch's setblocking(False) finds it set
        }))
    }

    /// `def parse(self)`: the title of the response, appended to
    /// `Spider.results` (a response that is not valid HTTP, or not in its
    /// charset, is appended as an error).
    fn parse(&self) {
        let title = common::parse(&self.response.borrow());
        Self::results().append(&self.url, title);
    }

    /// `def fetch(self)`: the generator function's body. `Task(spider.fetch())`
    /// in main makes the generator object that runs it on its own fiber; it
    /// runs only when the `Task` sends into it.
    fn fetch(&self, co: &Co<'_>) -> PyResult<Value> {
        let selector = pyfiber::event_loop::selector();
        const BUFFERSIZE: usize = 4096;
        common::mark(&self.url, common::Mark::Started);
        self.sock.setblocking(false)?;
        match self.sock.connect(self.target.addr) {
            Err(e) if !e.is_instance(&pyfiber::exception::BlockingIOError) => return Err(e),
            _ => {} // connected, or BlockingIOError: in progress
        }
        let future = Future::new();

        fn on_connected(future: &Future) {
            future.set_result(Value::None);
        }

        let f = future.clone();
        selector.register(
            self.sock.fileno(),
            EVENT_WRITE,
            callback(move || on_connected(&f)),
        )?;
        let connected = co.yield_(future.into()); // yield future

        selector.unregister(self.sock.fileno())?;
        connected?;
        // Writable means the connect finished, not that it worked.
        self.sock.take_error()?;
        common::mark(&self.url, common::Mark::Connected);
        let get = self.target.request();
        self.sock.sendall(get.as_bytes())?;

        loop {
            let future = Future::new();

            fn on_readable(future: &Future, sock: &Socket) {
                match sock.recv(BUFFERSIZE) {
                    Ok(chunk) => future.set_result(chunk.into()),
                    // A reset: Task.step throws it into fetch at its yield.
                    Err(e) => future.set_exception(e),
                }
            }

            let (f, sock) = (future.clone(), self.sock.clone());
            selector.register(
                self.sock.fileno(),
                EVENT_READ,
                callback(move || on_readable(&f, &sock)),
            )?;
            let chunk = co.yield_(future.into()); // chunk = yield future
            selector.unregister(self.sock.fileno())?;
            let chunk = chunk?;
            let chunk = chunk.as_bytes().unwrap_or_default();
            if !chunk.is_empty() {
                common::mark(&self.url, common::Mark::FirstByte);
                common::append_chunk(&mut self.response.borrow_mut(), chunk)?;
            } else {
                remove_url(&self.url);
                self.parse();
                break;
            }
        }
        Ok(Value::None)
    }
}

/// `def event_loop()`: while not `stopped`, wait in `select` and call the
/// callback each ready key carries.
fn event_loop() -> PyResult<()> {
    let selector = pyfiber::event_loop::selector();
    // Not in the original: the loop's timers, for --timeout.
    let timers = get_event_loop();
    while !STOPPED.with(Cell::get) {
        let timeout = timers.select_timeout();
        if selector.is_empty() && timeout.is_none() {
            break; // nothing left that could wake select(): it would wait forever
        }
        let events = selector.select(timeout)?;
        for (key, _mask) in events {
            // (A callback earlier in this batch may have unregistered it.)
            if timers.still_registered(&key) {
                let callback = key.data;
                callback();
            }
        }
        timers.run_due_timers();
    }
    Ok(())
}

fn main() -> ExitCode {
    let stage = common::Stage::start("generator", common::parse_args(), common::Concurrency::All);
    URLS.with(|urls| urls.replace(stage.targets.iter().map(|t| t.url.clone()).collect()));
    for (i, target) in stage.targets.iter().enumerate() {
        if i > 0 && i % common::START_BATCH == 0 {
            common::serve_started();
        }
        let Ok(spider) = Spider::new(target.clone()).map_err(|e| failed(&target.url, e)) else {
            continue;
        };
        let url = spider.url.clone();
        // Task(spider.fetch())
        let task = Task::new(Generator::named("fetch", move |co| spider.fetch(co)));
        watch(&task, &url, stage.timeout());
    }
    if let Err(e) = event_loop() {
        eprintln!("error: the loop failed: {}", e.line());
    }
    Spider::results().print();
    stage.finish()
}

/// Not in the original: a fetch that raised. Its error is its outcome, and
/// it leaves `urls` as a finished fetch does, so `stopped` still comes.
fn failed(url: &str, e: Exception) {
    Spider::results().append(url, Err(e.line()));
    remove_url(url);
}

/// Not in the original: `--timeout` fails the future the task waits on once
/// it runs out (`Task.step` throws the `TimeoutError` into `fetch` at its
/// `yield`), and a task that ends with an exception is [`failed`].
fn watch(task: &Task, url: &str, timeout: Duration) {
    let waiting = task.clone();
    let timer = get_event_loop().call_later(timeout, move || {
        if let Some(f) = waiting.waiting_on() {
            f.set_exception(common::timed_out());
        }
    });
    let url = url.to_string();
    task.add_done_callback(move |done| {
        timer.cancel();
        if let Some(e) = done.exception() {
            failed(&url, e);
        }
    });
}
