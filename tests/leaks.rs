//! No leaks (issue 7, part 3a): after 10,000 URLs fetched through pyfiber's
//! generator runtime (Tasks, Futures, the selector loop, one fiber per
//! coroutine), the process has exactly the open file descriptors it had
//! before, every fiber stack is back in the pool, and the loop holds no
//! registration, timer or callback. A second, smaller run mixes in faults
//! (timeouts, resets, refused and closed connections, garbage, bodies over
//! the limit, retries), so that the error paths are checked for leaks too.
//!
//! The fetching is the library's crawler (`Crawler::run`: `max_tasks`
//! worker Tasks over one queue, each fetch a plain same-fiber call) on this
//! test's thread. The server is the `slow_server` example in a CHILD
//! process: in this process it would hold one socket per client socket, and
//! its sockets would be counted with ours.
//!
//! The two tests run one at a time (a lock): `/proc/self/fd` counts the
//! whole process. Stacks and the loop are per thread, so each test starts
//! with its own.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyfiber::crawler::{Crawler, CrawlerOptions};
use pyfiber::event_loop::{self, callback, get_event_loop, TimerHandle};
use pyfiber::exception::BlockingIOError;
use pyfiber::net::{self, Socket};
use pyfiber::{
    stack_pool, Co, Exception, Future, Generator, PyResult, Task, Value, EVENT_READ, EVENT_WRITE,
};

mod support;

/// One test at a time: the descriptor count is the whole process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `body` alone, on a thread of its own that has ended (and closed its
/// loop's descriptors, which are thread-locals) before the next test starts.
fn alone(body: impl FnOnce() + Send + 'static) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(panic) = std::thread::spawn(body).join() {
        std::panic::resume_unwind(panic);
    }
}

/// `len(os.listdir('/proc/self/fd'))`. (The listing's own descriptor is
/// counted every time, so it cancels out.)
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The slow server in a child process; it stops when its stdin closes
/// (`--stop-on-eof`), and is killed if the test fails first.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl ServerProcess {
    fn start(delay: f64, pages: usize) -> ServerProcess {
        let mut child = Command::new(support::example_path("slow_server"))
            .args(["--port", "0", "--stop-on-eof", "--fanout", "10"])
            .args(["--delay", &delay.to_string(), "--pages", &pages.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start slow_server");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        // "Running on http://127.0.0.1:PORT/ (delay S s)"
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("slow_server's first line");
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        ServerProcess {
            child,
            stdin,
            stdout,
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Closes its stdin and returns what it printed last (`served N
    /// requests, peak concurrency P`).
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        let _ = self.child.wait();
        rest.trim().to_string()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the process holds when no coroutine runs: descriptors, stacks, and
/// whether the loop still has anything to wait for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Holdings {
    fds: usize,
    stacks: stack_pool::StackStats,
    loop_has_work: bool,
}

fn holdings() -> Holdings {
    Holdings {
        fds: open_fds(),
        stacks: stack_pool::stats(),
        loop_has_work: get_event_loop().has_work(),
    }
}

/// The most descriptors and fiber stacks in use seen during a run.
#[derive(Clone, Copy, Debug, Default)]
struct Peak {
    fds: usize,
    stacks_in_use: usize,
}

/// Samples [`Peak`] every 5 ms of the loop's time while a run goes on, from
/// a timer that re-arms itself: the peak shows the run really held many
/// sockets and fibers at once (so "back to the count before" is not
/// vacuous).
struct Sampler {
    peak: Rc<Cell<Peak>>,
    timer: Rc<RefCell<Option<TimerHandle>>>,
}

impl Sampler {
    fn start() -> Sampler {
        let sampler = Sampler {
            peak: Default::default(),
            timer: Default::default(),
        };
        arm(sampler.peak.clone(), sampler.timer.clone());
        sampler
    }

    /// Cancels the pending timer; returns the peak.
    fn stop(self) -> Peak {
        if let Some(timer) = self.timer.borrow_mut().take() {
            timer.cancel();
        }
        self.peak.get()
    }
}

fn arm(peak: Rc<Cell<Peak>>, slot: Rc<RefCell<Option<TimerHandle>>>) {
    let next = slot.clone();
    let timer = get_event_loop().call_later(Duration::from_millis(5), move || {
        let p = peak.get();
        peak.set(Peak {
            fds: p.fds.max(open_fds()),
            stacks_in_use: p.stacks_in_use.max(stack_pool::stats().in_use),
        });
        arm(peak, next);
    });
    *slot.borrow_mut() = Some(timer);
}

/// Runs a crawl on this thread and returns it, with the peak descriptor
/// count seen meanwhile and the seconds it took.
fn crawl(roots: &[String], options: CrawlerOptions) -> (Rc<Crawler>, Peak, f64) {
    let started = Instant::now();
    let crawler = Crawler::new(roots, options).expect("Crawler::new");
    let sampler = Sampler::start();
    crawler.run().expect("the crawl failed");
    let peak = sampler.stop();
    crawler
        .check_outcomes()
        .expect("one outcome per URL in seen_urls");
    (crawler, peak, started.elapsed().as_secs_f64())
}

/// Prepares this thread: the loop (its epoll descriptor) exists before the
/// "before" count, as it outlives any one run.
fn warm_up() {
    pyfiber::net::raise_nofile_limit().expect("raise the open-file limit");
    let _ = get_event_loop().selector();
}

/// Asserts nothing leaked, and prints the figures NOTES.md quotes.
fn assert_back_to(before: Holdings, peak: Peak, what: &str) {
    let after = holdings();
    println!(
        "{what}: fds before {}, peak {}, after {}; stacks in use peak {}; stacks before {:?}, after {:?}",
        before.fds, peak.fds, after.fds, peak.stacks_in_use, before.stacks, after.stacks
    );
    assert_eq!(
        after.fds, before.fds,
        "{what}: open descriptors {} before, {} after",
        before.fds, after.fds
    );
    assert_eq!(
        after.stacks.in_use, before.stacks.in_use,
        "{what}: fiber stacks in use before {:?}, after {:?}",
        before.stacks, after.stacks
    );
    assert_eq!(
        after.stacks.mapped, after.stacks.pooled,
        "{what}: every mapped stack must be in the pool: {:?}",
        after.stacks
    );
    assert!(
        !after.loop_has_work,
        "{what}: the loop still has a registration, timer or callback"
    );
}

#[test]
fn ten_thousand_urls_leave_no_descriptor_and_no_stack_behind() {
    alone(ten_thousand_urls);
}

fn ten_thousand_urls() {
    const PAGES: usize = 10_000;
    const MAX_TASKS: usize = 500;
    // The tree site: / links /1../10, /1 links /11../20, ... up to /9999.
    let server = ServerProcess::start(0.0, PAGES);
    warm_up();
    let before = holdings();
    assert!(!before.loop_has_work);

    let options = CrawlerOptions {
        max_tasks: MAX_TASKS,
        timeout: Duration::from_secs(30),
        ..CrawlerOptions::default()
    };
    let (crawler, peak, seconds) = crawl(&[server.url("/")], options);
    let done = crawler.done();
    assert_eq!(done.len(), PAGES, "every page fetched once");
    let failed: Vec<_> = done.iter().filter(|s| s.status != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "failed fetches: {:?}",
        &failed[..failed.len().min(5)]
    );
    // The run held many sockets at once: the workers fetched concurrently.
    assert!(
        peak.fds > before.fds + 10,
        "peak {} descriptors vs {} before: the crawl never held sockets?",
        peak.fds,
        before.fds
    );
    // While the Crawler is alive its workers are done, so their stacks are back.
    assert_eq!(stack_pool::stats().in_use, before.stacks.in_use);
    drop(crawler);
    println!("10,000 URLs in {seconds:.2} s with {MAX_TASKS} tasks");
    assert_back_to(before, peak, "10,000 URLs, crawler");
    let served = server.stop();
    assert!(
        served.contains(&format!("served {PAGES} requests")),
        "{served}"
    );
}

#[test]
fn faults_leave_no_descriptor_and_no_stack_behind() {
    alone(faults);
}

fn faults() {
    let server = ServerProcess::start(0.05, 1);
    warm_up();
    // A port with no listener: connection refused.
    let refused_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let before = holdings();

    const EACH: usize = 20;
    let mut roots = Vec::new();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut add = |paths: Vec<String>, outcome: &'static str| {
        *expected.entry(outcome).or_default() += paths.len();
        roots.extend(paths);
    };
    let each = |f: &dyn Fn(usize) -> String| (0..EACH).map(f).collect::<Vec<_>>();
    add(each(&|i| server.url(&format!("/s?wd={i}"))), "200");
    add(each(&|i| server.url(&format!("/flaky/1/f{i}"))), "200");
    add(
        each(&|i| server.url(&format!("/fault/stall?{i}"))),
        "TimeoutError",
    );
    add(
        each(&|i| server.url(&format!("/fault/trickle?{i}"))),
        "TimeoutError",
    );
    add(
        each(&|i| server.url(&format!("/fault/reset-headers?{i}"))),
        "ConnectionResetError",
    );
    add(
        each(&|i| server.url(&format!("/fault/reset-body?{i}"))),
        "ConnectionResetError",
    );
    add(
        each(&|i| server.url(&format!("/fault/close?{i}"))),
        "RemoteDisconnected",
    );
    add(
        each(&|i| server.url(&format!("/fault/garbage?{i}"))),
        "ValueError",
    );
    add(
        each(&|i| server.url(&format!("/fault/not-utf8?{i}"))),
        "UnicodeDecodeError",
    );
    add(
        (0..5)
            .map(|i| server.url(&format!("/fault/huge?{i}")))
            .collect(),
        "ResponseTooLarge",
    );
    add(
        each(&|i| format!("http://127.0.0.1:{refused_port}/?{i}")),
        "ConnectionRefusedError",
    );
    add(
        vec![
            server.url("/redirect-loop/a"),
            server.url("/redirect-loop/b"),
        ],
        "302",
    );

    let options = CrawlerOptions {
        max_tasks: 100,
        max_tries: 2,
        timeout: Duration::from_millis(500),
        // Reached within the first chunks of /fault/huge, long before the timeout.
        max_body: 64 << 10,
        ..CrawlerOptions::default()
    };
    let (crawler, peak, seconds) = crawl(&roots, options);
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    let done = crawler.done();
    for stat in &done {
        let outcome = match (&stat.exception, stat.status) {
            (Some(e), _) => e.name(),
            (None, Some(200)) => "200",
            (None, Some(302)) => "302",
            (None, other) => panic!("{}: unexpected status {other:?}", stat.url),
        };
        *got.entry(outcome).or_default() += 1;
    }
    assert_eq!(got, expected, "outcomes by kind");
    assert_eq!(done.len(), roots.len());
    drop(crawler);
    println!("{} URLs with faults in {seconds:.2} s", roots.len());
    assert_back_to(before, peak, "faults");
    server.stop();
}

/// `yield from read_all(sock)` as its own generator object (a fiber of its
/// own, PEP 380's literal delegation): `recv(4096)` until `b''`, each wait
/// a `Future` set by the selector callback and waited on through
/// `Future.__iter__` (one more generator per wait).
fn read_all(sock: Rc<Socket>) -> Generator {
    Generator::named("read_all", move |co| {
        let selector = event_loop::selector();
        let mut response = Vec::new();
        loop {
            let f = Future::new();
            let on_readable = {
                let (f, sock) = (f.clone(), sock.clone());
                move || match sock.recv(4096) {
                    Ok(chunk) => f.set_result(chunk.into()),
                    Err(e) => f.set_exception(e),
                }
            };
            selector.register(sock.fileno(), EVENT_READ, callback(on_readable))?;
            let chunk = co.yield_from(&f.__iter__());
            selector.unregister(sock.fileno())?;
            match chunk?.as_bytes() {
                Some(bytes) if !bytes.is_empty() => response.extend_from_slice(bytes),
                _ => return Ok(Value::from(response)),
            }
        }
    })
}

/// The generator stage's `fetch` (examples/generator.rs, yield_from.rs):
/// connect without blocking, wait for `EVENT_WRITE` on a `Future`, send the
/// GET, `yield from read_all(sock)`; returns the status.
fn fetch(co: &Co<'_>, addr: SocketAddr, path: &str) -> PyResult<u16> {
    let selector = event_loop::selector();
    let sock = Rc::new(Socket::new()?);
    sock.setblocking(false)?;
    match sock.connect(addr) {
        Ok(()) => {}
        Err(e) if e.is_instance(&BlockingIOError) => {}
        Err(e) => return Err(e),
    }
    let f = Future::new();
    let on_connected = {
        let f = f.clone();
        move || f.set_result(Value::None)
    };
    selector.register(sock.fileno(), EVENT_WRITE, callback(on_connected))?;
    let connected = co.yield_from_future(&f);
    selector.unregister(sock.fileno())?;
    connected?;
    sock.take_error()?;
    sock.sendall(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let raw = co.yield_from(&read_all(sock))?;
    Ok(net::Response::parse(raw.as_bytes().unwrap_or_default())?.status)
}

/// 10,000 URLs the generator stage's way: one `Task` per URL, each with
/// its own fiber, plus one per `yield from read_all` and per `yield from
/// future`, in rounds of 2,500 at once (about 5,000 suspended fibers, more
/// than the pool keeps, so stacks are unmapped as well as pooled), each
/// Task with a `call_later` deadline cancelled when it ends, as in
/// examples/generator.rs.
#[test]
fn ten_thousand_generator_fetches_leave_no_descriptor_and_no_stack_behind() {
    alone(ten_thousand_generator_fetches);
}

fn ten_thousand_generator_fetches() {
    const URLS: usize = 10_000;
    const AT_ONCE: usize = 2_500;
    // Every fetch waits 0.2 s in read_all: the fibers are all suspended then.
    let server = ServerProcess::start(0.2, 1);
    let addr: SocketAddr = ([127, 0, 0, 1], server.port).into();
    warm_up();
    let before = holdings();
    let started = Instant::now();
    let statuses: Rc<RefCell<BTreeMap<u16, usize>>> = Default::default();
    let errors: Rc<RefCell<Vec<String>>> = Default::default();
    let event_loop = get_event_loop();
    let sampler = Sampler::start();
    for round in 0..URLS / AT_ONCE {
        for i in round * AT_ONCE..(round + 1) * AT_ONCE {
            let (statuses, errors) = (statuses.clone(), errors.clone());
            let task = Task::new(Generator::named("fetch", move |co| {
                match fetch(co, addr, &format!("/s?wd={i}")) {
                    Ok(status) => *statuses.borrow_mut().entry(status).or_default() += 1,
                    Err(e) => errors.borrow_mut().push(e.line()),
                }
                Ok(Value::None)
            }));
            let waiting = task.clone();
            let timer = event_loop.call_later(Duration::from_secs(60), move || {
                if let Some(f) = waiting.waiting_on() {
                    f.set_exception(Exception::TimeoutError(pyfiber::OsError::msg("timed out")));
                }
            });
            task.add_done_callback(move |_| timer.cancel());
        }
        // Until this round's tasks are done (the sampler's timer always
        // waits, so run_loop would not return by itself).
        while statuses.borrow().values().sum::<usize>() + errors.borrow().len()
            < (round + 1) * AT_ONCE
        {
            event_loop.run_once().expect("the loop failed");
        }
    }
    let peak = sampler.stop();
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        errors.borrow().is_empty(),
        "errors: {:?}",
        &errors.borrow()[..5.min(errors.borrow().len())]
    );
    assert_eq!(*statuses.borrow(), BTreeMap::from([(200, URLS)]));
    // Thousands of fibers and sockets were alive at once.
    assert!(peak.stacks_in_use > stack_pool::POOL_CAPACITY, "{peak:?}");
    assert!(peak.fds > before.fds + AT_ONCE / 2, "{peak:?}");
    assert_eq!(pyfiber::task::unfinished_tasks(), 0);
    println!("10,000 generator fetches in {seconds:.2} s, {AT_ONCE} at once");
    assert_back_to(before, peak, "10,000 URLs, a Task per URL");
    server.stop();
}
