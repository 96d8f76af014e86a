//! `yield_from.py`: the generator stage, cut into sub-generators composed
//! with `yield from`.
//!
//! Why this exists: in `generator.rs`, `fetch` does everything itself, and
//! the register / yield / unregister dance is written out at every wait.
//! `yield from` (PEP 380) lets that dance live in small sub-generators,
//! `connect`, `read` and `read_all`, which `fetch` delegates to as if they
//! were plain calls: every future a sub-generator yields goes straight up to
//! the `Task`, every result the `Task` sends goes straight down, and the
//! sub-generator's `return` value is the value of the `yield from`. The
//! `Future` itself is yield-from-able (`Future.__iter__`: yield self, then
//! return the result), so the innermost wait is `chunk = yield from f`.
//!
//! Two ways to delegate, same output, same trace:
//! - by default, on the same fiber: a stackful coroutine can suspend from any
//!   depth of ordinary calls, so `yield from connect(sock, address)` is just
//!   `connect(co, &sock, address)?`, and the delegation chain is the call
//!   stack (constant cost per resume, whatever the depth);
//! - `--literal`: each sub-generator is a generator object with its own
//!   fiber, and `co.yield_from(&generator)` runs PEP 380's expansion,
//!   forwarding each send and throw one level down, as CPython does; the
//!   innermost `yield from f` goes through `Future::__iter__`.
//!
//! ```text
//! cargo run --release --example yield_from -- --urls 10 --delay 1 [--literal] [--trace]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;
use pyfiber::event_loop::{self, callback, get_event_loop};
use pyfiber::net::Socket;
use pyfiber::{Co, Exception, Future, Generator, PyResult, Task, Value, EVENT_READ, EVENT_WRITE};

/// The common flags, plus how to delegate.
#[derive(Parser, Debug)]
#[command(about = "yield_from.py: fetch with connect/read/read_all composed by `yield from`")]
struct Cli {
    #[command(flatten)]
    common: common::Args,
    /// Make each sub-generator a generator object of its own and delegate
    /// with PEP 380's expansion (`co.yield_from`), as CPython does, instead
    /// of calling it on the same fiber.
    #[arg(long)]
    literal: bool,
}

thread_local! {
    /// `urls_todo = {...}`: the URLs whose fetch has not finished.
    static URLS_TODO: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    /// `stopped = False`: set by the last fetch to finish; ends `loop()`.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
    /// `--literal`: delegate through generator objects.
    static LITERAL: Cell<bool> = const { Cell::new(false) };
}

/// `result = yield from sub(...)`, where `sub` is a generator function
/// whose body is `body`. With `--literal`, `sub(...)` makes a generator
/// object and this fiber forwards to it (PEP 380); by default the body runs
/// right here, on this fiber, as a plain call.
fn yield_from(
    co: &Co<'_>,
    name: &str,
    body: impl FnOnce(&Co<'_>) -> PyResult<Value> + 'static,
) -> PyResult<Value> {
    if LITERAL.with(Cell::get) {
        co.yield_from(&Generator::named(name, body))
    } else {
        co.yield_from_fn(body)
    }
}

/// `result = yield from f` for a `Future` `f`: with `--literal`, through the
/// generator `f.__iter__()`; by default, yielding `f` from this fiber.
fn yield_from_future(co: &Co<'_>, f: &Future) -> PyResult<Value> {
    if LITERAL.with(Cell::get) {
        co.yield_from(&f.__iter__())
    } else {
        co.yield_from_future(f)
    }
}

/// `def connect(sock, address)`: the connection's sub-coroutine — register
/// for writability, wait, unregister.
fn connect(co: &Co<'_>, sock: &Rc<Socket>, address: SocketAddr) -> PyResult<Value> {
    let selector = event_loop::selector();
    let f = Future::new();
    sock.setblocking(false)?;
    match sock.connect(address) {
        Ok(()) | Err(Exception::BlockingIOError(_)) => {}
        Err(e) => return Err(e),
    }
    let connected = f.clone();
    selector.register(
        sock.fileno(),
        EVENT_WRITE,
        callback(move || on_connected(&connected)),
    )?;
    let waited = yield_from_future(co, &f); // yield from f
    selector.unregister(sock.fileno())?;
    waited?;
    // Writable means the connect finished, not that it worked: SO_ERROR
    // says which (ConnectionRefusedError, ...).
    sock.take_error()?;
    Ok(Value::None)
}

/// `def read(sock)`: one `recv(4096)` as a sub-coroutine; returns the chunk.
fn read(co: &Co<'_>, sock: &Rc<Socket>) -> PyResult<Value> {
    let selector = event_loop::selector();
    let f = Future::new();
    let (readable, s) = (f.clone(), sock.clone());
    selector.register(
        sock.fileno(),
        EVENT_READ,
        callback(move || on_readable(&readable, &s)),
    )?;
    let chunk = yield_from_future(co, &f); // chunk = yield from f
    selector.unregister(sock.fileno())?;
    chunk
}

/// `def read_all(sock)`: `read` until `b''`; returns the whole response.
fn read_all(co: &Co<'_>, sock: &Rc<Socket>) -> PyResult<Value> {
    let mut response: Vec<u8> = Vec::new();
    let read_one = |co: &Co<'_>| {
        let sock = sock.clone();
        yield_from(co, "read", move |co| read(co, &sock))
    };
    let mut chunk = read_one(co)?; // chunk = yield from read(sock)
    while let Some(bytes) = chunk.as_bytes().filter(|b| !b.is_empty()) {
        common::append_chunk(&mut response, bytes)?;
        chunk = read_one(co)?;
    }
    Ok(Value::from(response))
}

/// `class Crawler`: one URL and its response.
struct Crawler {
    target: common::Target,
    response: RefCell<Vec<u8>>,
}

impl Crawler {
    fn new(target: common::Target) -> Rc<Crawler> {
        Rc::new(Crawler {
            target,
            response: RefCell::new(Vec::new()),
        })
    }

    /// `def fetch(self)`: the delegating generator; it reads like
    /// `blocking_request`, with `yield from` at each wait.
    fn fetch(&self, co: &Co<'_>) -> PyResult<Value> {
        // try:
        let outcome = self.download(co);
        common::report_response(&self.target.url, outcome);
        // finally: urls_todo.remove(self.url); if not urls_todo: stopped = True
        URLS_TODO.with(|todo| {
            let mut todo = todo.borrow_mut();
            todo.remove(&self.target.url);
            if todo.is_empty() {
                STOPPED.with(|s| s.set(true));
            }
        });
        Ok(Value::None)
    }

    /// The seed's `fetch` proper: `yield from connect(...)`, send the
    /// request, `self.response = yield from read_all(sock)`.
    fn download(&self, co: &Co<'_>) -> PyResult<Vec<u8>> {
        let sock = Rc::new(Socket::new()?);
        let address = self.target.addr;
        // yield from connect(sock, (host, port))
        let s = sock.clone();
        yield_from(co, "connect", move |co| connect(co, &s, address))?;
        let get = self.target.request();
        sock.sendall(get.as_bytes())?;
        // self.response = yield from read_all(sock)
        let s = sock.clone();
        let response = yield_from(co, "read_all", move |co| read_all(co, &s))?;
        *self.response.borrow_mut() = response.as_bytes().unwrap_or_default().to_vec();
        Ok(self.response.take())
    }
}

/// `def on_connected()`: the selector callback for writability; it only sets
/// the future's result.
fn on_connected(f: &Future) {
    f.set_result(Value::None);
}

/// `def on_readable()`: `f.set_result(sock.recv(4096))`, or fails the future
/// with the error `recv` raised.
fn on_readable(f: &Future, sock: &Socket) {
    match sock.recv(4096) {
        Ok(chunk) => f.set_result(chunk),
        Err(e) => f.set_exception(e),
    }
}

/// `def loop()`: `while not stopped`, one turn of the library loop (select,
/// the ready fds' callbacks, the due `--timeout` timers).
fn loop_() -> PyResult<()> {
    let event_loop = get_event_loop();
    while !STOPPED.with(Cell::get) {
        if !event_loop.has_work() {
            break;
        }
        event_loop.run_once()?;
    }
    Ok(())
}

/// With `--literal`, a fetch at its deepest wait holds four suspended
/// generators (`fetch` → `read_all` → `read` → `Future.__iter__`), each on a
/// fiber stack of two memory mappings, and Linux caps a process at
/// `vm.max_map_count` mappings. A run that cannot fit is refused before it
/// starts, rather than failing URLs with `MemoryError` halfway.
fn check_literal_fits(urls: usize) {
    const PER_URL: usize = 4 * 2;
    const SLACK: usize = 2000; // the process's own mappings: code, heap, threads
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    if let Some(max) = max_map_count {
        let needed = urls * PER_URL + SLACK;
        if needed > max {
            common::fail(format!(
                "--literal with --urls {urls} needs about {needed} memory mappings \
                 (4 suspended generators per URL, 2 mappings per fiber stack, + {SLACK}), \
                 but vm.max_map_count is {max}; use at most {} URLs, drop --literal \
                 (one fiber per fetch), or raise it: sysctl -w vm.max_map_count=262144",
                (max.saturating_sub(SLACK)) / PER_URL
            ));
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    LITERAL.with(|l| l.set(cli.literal));
    if cli.literal {
        check_literal_fits(cli.common.urls);
    }
    let stage = common::Stage::start("yield_from", cli.common, common::Concurrency::All);
    URLS_TODO.with(|todo| {
        todo.borrow_mut()
            .extend(stage.targets.iter().map(|t| t.url.clone()))
    });
    let event_loop = get_event_loop();
    for target in &stage.targets {
        let crawler = Crawler::new(target.clone());
        // Task(crawler.fetch()): the generator object runs Crawler::fetch.
        let task = Task::new(Generator::named("fetch", move |co| crawler.fetch(co)));
        // --timeout: fail the future the task waits on; the TimeoutError is
        // thrown in at the innermost `yield from` and unwinds through every
        // sub-generator, as in Python.
        let waiting = task.clone();
        let timer = event_loop.call_later(stage.timeout(), move || {
            if let Some(f) = waiting.waiting_on() {
                f.set_exception(common::timed_out());
            }
        });
        task.add_done_callback(move |_| timer.cancel());
    }
    if let Err(e) = loop_() {
        eprintln!("error: the loop failed: {}", e.line());
    }
    stage.finish()
}
