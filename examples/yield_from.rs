//! `yield_from.py`: follows yuchaoshui/notes `Python异步并发/yield_from.py`,
//! function by function and in the same order: `Future` (with `__iter__`),
//! `connect`, `read`, `read_all` (each with its nested selector callback),
//! `class Spider` (`results`, `__init__`, `parse`, `fetch`), `Task` and its
//! `step`, `event_loop()`, the main block.
//!
//! Why this exists: in `generator.rs`, `fetch` does everything itself, and
//! the register / yield / unregister dance is written out at every wait.
//! `yield from` (PEP 380) lets that dance live in small sub-generators,
//! `connect`, `read` and `read_all`, which `fetch` delegates to as if they
//! were plain calls: every future a sub-generator yields goes straight up to
//! the `Task`, every result the `Task` sends goes straight down, and the
//! sub-generator's `return` value is the value of the `yield from`. The
//! `Future` itself is yield-from-able (`Future.__iter__`: yield self, then
//! return the result), so the innermost wait is `chunk = yield from future`.
//!
//! Two ways to delegate, same output, same trace:
//! - by default, on the same fiber: a stackful coroutine can suspend from any
//!   depth of ordinary calls, so `yield from connect(sock, address)` is just
//!   `connect(co, &sock, address)?`, and the delegation chain is the call
//!   stack (constant cost per resume, whatever the depth);
//! - `--literal`: each sub-generator is a generator object with its own
//!   fiber, and `co.yield_from(&generator)` runs PEP 380's expansion,
//!   forwarding each send and throw one level down, as CPython does; the
//!   innermost `yield from future` goes through `Future::__iter__`.
//!
//! Renames and additions, and why:
//! - `Future` and `Task` are the library's ([`pyfiber::Future`],
//!   [`pyfiber::Task`]): `Task::step` is where every generator stage's task
//!   resumes its generator, so it has one home; they add `set_exception`
//!   and a task's done callback;
//! - `yield_from` / `yield_from_future` pick the way to delegate (above);
//! - `selector` is the library loop's, so that its `call_later` timers can
//!   bound each fetch (`--timeout`); `event_loop()` passes the next timer's
//!   deadline to `select` and runs the due timers after the callbacks;
//! - what a real run needs: `sock.take_error()` after the connect, a
//!   response size cap, each `unregister` running even when the wait
//!   raised, and `failed` in main (a fetch that raised gets its error line
//!   and leaves `urls`; in Python the exception would end the program).
//!
//! ```text
//! cargo run --release --example yield_from -- --urls 10 --delay 1 [--literal] [--trace]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use pyfiber::event_loop::{callback, get_event_loop};
use pyfiber::net::Socket;
use pyfiber::stack_pool;
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
    /// `stopped = False`: set when the last URL is done; ends `event_loop()`.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
    /// `urls = [...]`: the URLs not done yet (main fills it from `--urls`).
    static URLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// `--literal`: delegate through generator objects.
    static LITERAL: Cell<bool> = const { Cell::new(false) };
}

/// `buffersize = 4096`.
const BUFFERSIZE: usize = 4096;

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
    let selector = pyfiber::event_loop::selector();
    let future = Future::new();
    sock.setblocking(false)?;
    match sock.connect(address) {
        Err(e) if !e.is_instance(&pyfiber::exception::BlockingIOError) => return Err(e),
        _ => {} // connected, or BlockingIOError: in progress
    }

    fn on_connected(future: &Future) {
        future.set_result(Value::None);
    }

    let f = future.clone();
    selector.register(
        sock.fileno(),
        EVENT_WRITE,
        callback(move || on_connected(&f)),
    )?;
    let connected = yield_from_future(co, &future); // yield from future
    selector.unregister(sock.fileno())?;
    connected?;
    // Writable means the connect finished, not that it worked: SO_ERROR
    // says which (ConnectionRefusedError, ...).
    sock.take_error()?;
    Ok(Value::None)
}

/// `def read(sock)`: one `recv` as a sub-coroutine; returns the chunk.
fn read(co: &Co<'_>, sock: &Rc<Socket>) -> PyResult<Value> {
    let selector = pyfiber::event_loop::selector();
    let future = Future::new();

    fn on_readable(future: &Future, sock: &Socket) {
        match sock.recv(BUFFERSIZE) {
            Ok(chunk) => future.set_result(chunk.into()),
            // A reset: Task.step throws it in at the innermost `yield from`.
            Err(e) => future.set_exception(e),
        }
    }

    let (f, s) = (future.clone(), sock.clone());
    selector.register(
        sock.fileno(),
        EVENT_READ,
        callback(move || on_readable(&f, &s)),
    )?;
    let chunk = yield_from_future(co, &future); // chunk = yield from future
    selector.unregister(sock.fileno())?;
    chunk
}

/// `def read_all(sock)`: `read` until `b''`; returns the whole response.
/// (`url` is not the original's: it names the request whose first byte the
/// timeline marks.)
fn read_all(co: &Co<'_>, sock: &Rc<Socket>, url: &str) -> PyResult<Value> {
    let mut response: Vec<u8> = Vec::new();
    let read_one = |co: &Co<'_>| {
        let sock = sock.clone();
        yield_from(co, "read", move |co| read(co, &sock))
    };
    let mut chunk = read_one(co)?; // chunk = yield from read(sock)
    common::mark(url, common::Mark::FirstByte);
    while let Some(bytes) = chunk.as_bytes().filter(|b| !b.is_empty()) {
        common::append_chunk(&mut response, bytes)?;
        chunk = read_one(co)?;
    }
    Ok(Value::from(response))
}

/// `class Spider`: one URL, its socket and its response.
struct Spider {
    /// `self.url`.
    url: String,
    /// `self.hostname`, `self.port`, `self.path`, `self.query`.
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
            sock: Rc::new(Socket::new()?),
        }))
    }

    /// `def parse(self)`: the title, appended to `Spider.results`.
    fn parse(&self) {
        let title = common::parse(&self.response.borrow());
        Self::results().append(&self.url, title);
    }

    /// `def fetch(self)`: the delegating generator's body; it reads like
    /// sync's `fetch`, with `yield from` at each wait. `Task(spider.fetch())`
    /// in main makes the generator object that runs it.
    fn fetch(&self, co: &Co<'_>) -> PyResult<Value> {
        common::mark(&self.url, common::Mark::Started);
        let (sock, address) = (self.sock.clone(), self.target.addr);
        yield_from(co, "connect", move |co| connect(co, &sock, address))?;
        common::mark(&self.url, common::Mark::Connected);
        let get = self.target.request();
        self.sock.sendall(get.as_bytes())?;
        let sock = self.sock.clone();
        let url = self.url.clone();
        let response = yield_from(co, "read_all", move |co| read_all(co, &sock, &url))?;
        *self.response.borrow_mut() = response.as_bytes().unwrap_or_default().to_vec();
        remove_url(&self.url);
        self.parse();
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

/// With `--literal`, a fetch at its deepest wait holds four suspended
/// generators (`fetch` → `read_all` → `read` → `Future.__iter__`), each on a
/// fiber stack, and Linux caps a process at `vm.max_map_count` mappings
/// (how many stacks fit in them depends on the kernel:
/// [`pyfiber::stack_pool::max_stacks`]). A run that cannot fit is refused
/// before it starts, rather than failing URLs with `MemoryError` halfway.
fn check_literal_fits(urls: usize) {
    const PER_URL: usize = 4;
    const SLACK: usize = 2000; // the process's own mappings: code, heap, threads
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    if let Some(max) = max_map_count {
        let fit = stack_pool::max_stacks(max.saturating_sub(SLACK)) / PER_URL;
        if urls > fit {
            common::fail(format!(
                "--literal with --urls {urls} needs {} fiber stacks \
                 (4 suspended generators per URL), but with {} and vm.max_map_count \
                 {max} (less {SLACK} for the process's own mappings) at most {fit} URLs fit; \
                 drop --literal (one fiber per fetch), or raise it: \
                 sysctl -w vm.max_map_count=262144",
                urls * PER_URL,
                stack_pool::guard_kind()
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
/// it runs out (the `TimeoutError` is thrown in at the innermost
/// `yield from` and unwinds through every sub-generator, as in Python), and
/// a task that ends with an exception is [`failed`].
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
