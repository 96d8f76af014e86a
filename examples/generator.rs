//! `generator.py`: coroutines on generators, driven by `Future` and
//! `Task.step`.
//!
//! Why this exists: the callback stage is fast but its logic is cut into
//! pieces (`connected`, `read_response`) that share state by hand. Here the
//! whole download is one function again, `Crawler.fetch`, written top to
//! bottom like `sync`'s `blocking_request`; where it would block, it creates
//! a `Future`, registers a selector callback that only calls
//! `future.set_result(...)`, and *yields the future*. The `Task` driving the
//! generator adds its `step` as the future's done callback, so when the
//! socket is ready the chain runs by itself:
//!
//! ```text
//! loop() ── select ──▶ on_readable() ── set_result(chunk) ──▶ Task.step ── send(chunk) ──▶ fetch resumes
//! ```
//!
//! `Future`, `Task` and the loop are the library's ([`pyfiber::Future`],
//! [`pyfiber::Task`], [`pyfiber::event_loop`]); `fetch` is the seed's. Run
//! with `--trace` to see every link of the chain.
//!
//! ```text
//! cargo run --release --example generator -- --urls 10 --delay 1 --trace
//! ```

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::process::ExitCode;
use std::rc::Rc;

use pyfiber::event_loop::{self, callback, get_event_loop};
use pyfiber::net::Socket;
use pyfiber::{Co, Exception, Future, Generator, PyResult, Task, Value, EVENT_READ, EVENT_WRITE};

thread_local! {
    /// `urls_todo = {...}`: the URLs whose fetch has not finished.
    static URLS_TODO: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
    /// `stopped = False`: set by the last fetch to finish; ends `loop()`.
    static STOPPED: Cell<bool> = const { Cell::new(false) };
}

/// `class Crawler`: one URL and the response gathered for it.
struct Crawler {
    target: common::Target,
    /// `self.response = b''`
    response: RefCell<Vec<u8>>,
}

impl Crawler {
    /// `Crawler(url)`.
    fn new(target: common::Target) -> Rc<Crawler> {
        Rc::new(Crawler {
            target,
            response: RefCell::new(Vec::new()),
        })
    }

    /// `def fetch(self)`: the coroutine's body. `Task(crawler.fetch())` in
    /// `main` makes the generator object that runs it on its own fiber.
    ///
    /// The seed's body is [`Crawler::download`]; around it, what a real run
    /// needs: a failed connect or a timeout ends this URL with an `error:`
    /// line (the seed would crash or hang), and the URL leaves `urls_todo`
    /// whatever happened.
    fn fetch(&self, co: &Co<'_>) -> PyResult<Value> {
        // try:
        let outcome = self.download(co);
        // print("result:", self.response)  (or the error)
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

    /// The seed's `fetch` proper: connect, send the request, read until
    /// `b''`, yielding a future at each wait. Each `selector.unregister` runs
    /// even when the `yield` raised (the seed has no `try/finally`; the twin
    /// has one).
    fn download(&self, co: &Co<'_>) -> PyResult<Vec<u8>> {
        let selector = event_loop::selector();
        let sock = Rc::new(Socket::new()?);
        sock.setblocking(false)?;
        match sock.connect(self.target.addr) {
            Ok(()) | Err(Exception::BlockingIOError(_)) => {}
            Err(e) => return Err(e),
        }
        let f = Future::new();
        let connected = f.clone();
        selector.register(
            sock.fileno(),
            EVENT_WRITE,
            callback(move || on_connected(&connected)),
        )?;
        let sent = co.yield_(f); // yield f
        selector.unregister(sock.fileno())?;
        sent?;
        // Writable means the connect finished, not that it worked: SO_ERROR
        // says which (ConnectionRefusedError, ...).
        sock.take_error()?;
        let get = self.target.request();
        // A request this small always fits the send buffer.
        sock.sendall(get.as_bytes())?;

        loop {
            let f = Future::new();
            let (readable, s) = (f.clone(), sock.clone());
            selector.register(
                sock.fileno(),
                EVENT_READ,
                callback(move || on_readable(&readable, &s)),
            )?;
            let chunk = co.yield_(f); // chunk = yield f
            selector.unregister(sock.fileno())?;
            let chunk = chunk?;
            match chunk.as_bytes() {
                Some(bytes) if !bytes.is_empty() => {
                    common::append_chunk(&mut self.response.borrow_mut(), bytes)?
                }
                _ => break,
            }
        }
        Ok(self.response.take())
    }
}

/// `def on_connected()`: the selector callback for writability. It only sets
/// the future's result; `Task.step`, the future's done callback, does the rest.
fn on_connected(f: &Future) {
    f.set_result(Value::None);
}

/// `def on_readable()`: `f.set_result(sock.recv(4096))`. An error from
/// `recv` (a reset, ...) fails the future instead, and `Task.step` throws it
/// into `fetch` at its `yield`.
fn on_readable(f: &Future, sock: &Socket) {
    match sock.recv(4096) {
        Ok(chunk) => f.set_result(chunk),
        Err(e) => f.set_exception(e),
    }
}

/// `def loop()`: `while not stopped`, wait in `select` and run the callback
/// of each ready fd. One turn of the library loop is exactly that (plus the
/// `--timeout` timers); it is written out in `event_loop::EventLoop::run_once`.
fn loop_() -> PyResult<()> {
    let event_loop = get_event_loop();
    while !STOPPED.with(Cell::get) {
        if !event_loop.has_work() {
            // Nothing registered and no timer: select() would wait forever.
            break;
        }
        event_loop.run_once()?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let stage = common::Stage::start("generator", common::parse_args(), common::Concurrency::All);
    URLS_TODO.with(|todo| {
        let mut todo = todo.borrow_mut();
        todo.extend(stage.targets.iter().map(|t| t.url.clone()));
        if todo.len() != stage.targets.len() {
            common::fail("the URLs must differ: urls_todo is a set");
        }
    });
    let event_loop = get_event_loop();
    for target in &stage.targets {
        let crawler = Crawler::new(target.clone());
        // Task(crawler.fetch()): calling the generator function makes the
        // generator object; the Task runs it to its first `yield`.
        let task = Task::new(Generator::named("fetch", move |co| crawler.fetch(co)));
        // --timeout: when it runs out, fail the future the task is waiting
        // on; Task.step throws the TimeoutError into fetch at its `yield`.
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
