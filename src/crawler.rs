//! `crawler`: the "500 Lines or Less" web crawler (A. Jesse Jiryu Davis and
//! Guido van Rossum, "A Web Crawler With asyncio Coroutines") on pyfiber's
//! generator runtime.
//!
//! Why this exists: it is the real program the whole ladder leads to. The
//! earlier stages fetch a fixed list of URLs; this one discovers its work as
//! it goes, so it needs what they did not: a queue with `join()`, a fixed
//! pool of `max_tasks` worker coroutines, `seen_urls` so no URL is fetched
//! twice, redirects followed by hand, retries, a timeout, and a report.
//!
//! Everything runs on the pieces the tutorials build: each worker is a
//! [`Generator`] driven by a [`Task`]; `fetch` and the socket coroutines
//! under it (`connect`, `send_all`, `read`, `read_all`) are plain functions
//! called on the worker's own fiber (same-fiber `yield from`), each waiting
//! by yielding a [`Future`] that a selector callback or a timer settles.
//!
//! ```python
//! @asyncio.coroutine
//! def work(self):
//!     while True:
//!         url, max_redirect = yield from self.q.get()
//!         yield from self.fetch(url, max_redirect)
//!         self.q.task_done()
//!
//! @asyncio.coroutine
//! def crawl(self):
//!     workers = [asyncio.Task(self.work()) for _ in range(self.max_tasks)]
//!     yield from self.q.join()
//!     for w in workers:
//!         w.cancel()
//! ```
//!
//! Where this differs from the chapter (each on purpose, and mirrored by the
//! Python twin `examples/python/crawl.py`):
//! - every URL in `seen_urls` ends in exactly one [`FetchStatistic`]: a
//!   body that cannot be decoded is an error instead of a dead worker (in
//!   the chapter a dead worker hangs `q.join()`); a redirect past
//!   `max_redirect` is, as in the chapter, a plain redirect line and a
//!   logged `redirect limit reached` (its target is never seen, so it has
//!   no line);
//! - a redirect's target must pass [`Crawler::url_allowed`] like any link;
//! - roots are normalised (`http://` added, parsed, fragment dropped), so
//!   `host` and `http://host/#top` are one root;
//! - each request has a deadline ([`CrawlerOptions::timeout`]) and a body
//!   limit ([`CrawlerOptions::max_body`]);
//! - lenient host matching joins the last two labels with a dot (the chapter
//!   joins them with nothing, so `ab.c` and `a.bc` matched).

pub mod pool;
pub mod queue;
pub mod report;

/// `LOGGER.log(level, msg, *args)`: the arguments are evaluated only when
/// the level is on (0 error, 1 warning, 2 info, 3 debug).
macro_rules! log {
    ($crawler:expr, $level:expr, $($arg:tt)*) => {
        if $crawler.logs($level) {
            $crawler.emit_log($level, format_args!($($arg)*));
        }
    };
}

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::event_loop::{callback, get_event_loop, TimerHandle};
use crate::exception::{BlockingIOError, Exception, OsError, PyResult};
use crate::future::Future;
use crate::generator::{Co, Generator};
use crate::net::{self, Response, ResponseReader, Socket};
use crate::selector::{EVENT_READ, EVENT_WRITE};
use crate::task::Task;
use crate::value::{str_repr, Value};

pub use pool::ConnectionPool;
pub use queue::Queue;
pub use report::{report, report_json, url_report, Stats};

/// The statuses the crawler follows by hand (`is_redirect(response)` in the
/// chapter, plus 308).
pub const REDIRECT_STATUSES: [u16; 6] = [300, 301, 302, 303, 307, 308];

/// The media types whose links are followed (the chapter's
/// `content_type in ('text/html', 'application/xml')`).
pub const LINK_CONTENT_TYPES: [&str; 2] = ["text/html", "application/xml"];

/// `is_redirect(response)`.
pub fn is_redirect(status: u16) -> bool {
    REDIRECT_STATUSES.contains(&status)
}

/// `crawl.py`'s `fix_url(url)`: a root without a scheme gets `http://`.
pub fn fix_url(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// `lenient_host(host)`: the last two labels of a host name, which is what
/// lenient mode compares (`www.example.com` and `example.com` agree).
pub fn lenient_host(host: &str) -> String {
    let labels: Vec<&str> = host.split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

/// The chapter's `re.match(r'\A[\d\.]*\Z', host)`: an IPv4 literal (or an
/// IPv6 one in brackets, which the chapter never met). IP literals are
/// matched exactly, never by the `www.` or last-two-labels rules.
fn is_ip_literal(host: &str) -> bool {
    host.chars().all(|c| c.is_ascii_digit() || c == '.') || host.starts_with('[')
}

/// The `(scheme, host)` of a URL, as `urllib.parse.urlparse(url)` then
/// `splitport(parts.netloc)` give them (the port is dropped), lower-cased.
/// `None` for a URL that cannot be parsed.
fn scheme_and_host(url: &str) -> Option<(String, Option<String>)> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str().map(str::to_ascii_lowercase);
    Some((parsed.scheme().to_string(), host))
}

/// The crawler's settings: `Crawler(roots, exclude=None, strict=True,
/// max_redirect=10, max_tries=4, max_tasks=10)` plus what the chapter left to
/// aiohttp (timeout, body limit) and to `logging` (the level).
#[derive(Clone, Debug)]
pub struct CrawlerOptions {
    /// `--exclude REGEX`: URLs matching it (`re.search`) are not crawled.
    pub exclude: Option<String>,
    /// `--strict` (true, the default) or `--lenient` host matching.
    pub strict: bool,
    /// `--max_redirect`: how many redirects one chain may follow.
    pub max_redirect: usize,
    /// `--max_tries`: how many times a request is tried on connection errors.
    pub max_tries: usize,
    /// `--max_tasks`: how many worker coroutines fetch at once.
    pub max_tasks: usize,
    /// `--max_pool`: the most connections open at once ([`ConnectionPool`]);
    /// workers past it wait for a place before they connect. `None` (the
    /// default) is `max_tasks`, so no worker waits: the chapter's `Crawler`
    /// pairs them so (`max_tasks=10, max_pool=10`).
    pub max_pool: Option<usize>,
    /// Deadline of one request, from `connect` to the last byte.
    pub timeout: Duration,
    /// Largest response accepted, head and body; a larger one is an error.
    pub max_body: usize,
    /// The chapter's `-v`/`-q` level: 0 errors only, 1 warnings, 2 info
    /// (the CLI's default), 3 debug. Logged to stderr as `LEVEL:crawling:...`.
    pub log_level: u8,
    /// Print a progress line (`\r`-rewritten) on stdout while crawling; the
    /// example turns it on only when stdout is a terminal.
    pub progress: bool,
    /// `--max_pages`: the most URLs one crawl queues (roots included); past
    /// it links are counted, not followed (scrapy's CLOSESPIDER_PAGECOUNT).
    /// With [`max_depth`](Self::max_depth) it ends a crawl of an endless
    /// link space.
    pub max_pages: usize,
    /// `--max_depth`: links are followed this many hops from a root, no
    /// further (wget -r's `--level`, scrapy's DEPTH_LIMIT); a redirect
    /// keeps its page's depth.
    pub max_depth: usize,
    /// Set from another thread (a SIGINT/SIGTERM handler) to interrupt the
    /// crawl, as Ctrl-C raises KeyboardInterrupt in `crawl.py`: the loop is
    /// stopped within [`INTERRUPT_POLL`] and [`Crawler::run`] returns
    /// `KeyboardInterrupt`; what was done so far stays in
    /// [`Crawler::done`].
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// How often a crawl with [`CrawlerOptions::interrupt`] looks at the flag.
pub const INTERRUPT_POLL: Duration = Duration::from_millis(50);

impl Default for CrawlerOptions {
    /// The chapter's defaults (`max_tasks` is `crawl.py`'s 100), a 10 s
    /// timeout, a 16 MiB limit, and quiet logging.
    fn default() -> Self {
        CrawlerOptions {
            exclude: None,
            strict: true,
            max_redirect: 10,
            max_tries: 4,
            max_tasks: 100,
            max_pool: None,
            timeout: Duration::from_secs(10),
            max_body: 16 << 20,
            log_level: 0,
            progress: false,
            max_pages: 100_000,
            max_depth: 16,
            interrupt: None,
        }
    }
}

/// `FetchStatistic`, the chapter's namedtuple: the one outcome of one URL.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchStatistic {
    /// The URL fetched.
    pub url: String,
    /// Where a redirect pointed (joined onto `url`).
    pub next_url: Option<String>,
    /// The HTTP status, if a response came.
    pub status: Option<u16>,
    /// What went wrong, if anything.
    pub exception: Option<Exception>,
    /// Body bytes read.
    pub size: usize,
    /// The media type of a 200 response (`None` otherwise, as in the chapter).
    pub content_type: Option<String>,
    /// The charset of a 200 response (`utf-8` when none is given).
    pub encoding: Option<String>,
    /// Allowed links found on the page.
    pub num_urls: usize,
    /// Of those, links not seen before.
    pub num_new_urls: usize,
}

/// Which of the report's four line forms a [`FetchStatistic`] takes
/// (`url_report` in `reporting.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// `url error <exception>`.
    Error,
    /// `url status redirect next_url`.
    Redirect,
    /// `url 200 text/html charset size new/total`.
    Html,
    /// Anything else that answered: other types, other statuses.
    Other,
}

impl Outcome {
    /// The word used in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Error => "error",
            Outcome::Redirect => "redirect",
            Outcome::Html => "html",
            Outcome::Other => "other",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FetchStatistic {
    /// A statistic for `url` with nothing known yet.
    fn new(url: &str) -> FetchStatistic {
        FetchStatistic {
            url: url.to_string(),
            next_url: None,
            status: None,
            exception: None,
            size: 0,
            content_type: None,
            encoding: None,
            num_urls: 0,
            num_new_urls: 0,
        }
    }

    /// The report form, decided in `url_report`'s order: an exception, then
    /// a redirect, then `text/html`, then the rest.
    pub fn outcome(&self) -> Outcome {
        if self.exception.is_some() {
            Outcome::Error
        } else if self.next_url.is_some() {
            Outcome::Redirect
        } else if self.content_type.as_deref() == Some("text/html") {
            Outcome::Html
        } else {
            Outcome::Other
        }
    }
}

/// One item of the queue: `(url, max_redirect)`, the redirects still allowed
/// on the chain that led to `url`.
pub type WorkItem = (String, usize);

/// The chapter's `Crawler`: roots, the host rules, `q`, `seen_urls`, `done`,
/// and the coroutines `crawl`, `work` and `fetch`.
///
/// Single-threaded and shared through `Rc`: every worker coroutine holds it.
pub struct Crawler {
    /// `self.roots`: normalised, in the order given, duplicates removed.
    pub roots: Vec<String>,
    exclude: Option<Regex>,
    /// `self.strict`.
    pub strict: bool,
    /// `self.max_redirect`.
    pub max_redirect: usize,
    /// `self.max_tries`.
    pub max_tries: usize,
    /// `self.max_tasks`.
    pub max_tasks: usize,
    /// `self.pool`: the cap on connections open at once.
    pub pool: ConnectionPool,
    timeout: Duration,
    max_body: usize,
    log_level: u8,
    progress: bool,
    /// `self.q`.
    pub q: Queue<WorkItem>,
    seen_urls: RefCell<HashSet<String>>,
    done: RefCell<Vec<FetchStatistic>>,
    root_domains: HashSet<String>,
    t0: Cell<Instant>,
    t1: Cell<Option<Instant>>,
    /// Requests under way, for the progress line.
    active: Cell<usize>,
    last_progress: Cell<Option<Instant>>,
    max_pages: usize,
    max_depth: usize,
    /// Hops from a root of every queued URL.
    depth: RefCell<HashMap<String, usize>>,
    /// Links not followed because of `max_pages` or `max_depth`.
    limited: Cell<usize>,
    interrupt: Option<Arc<AtomicBool>>,
    interrupted: Cell<bool>,
}

/// `TimeoutError: timed out after ...`: what a request past its deadline
/// raises in the waiting coroutine.
fn timeout_error(timeout: Duration, waiting_for: &str) -> Exception {
    Exception::TimeoutError(OsError::msg(format!(
        "timed out after {:.3} s waiting to {waiting_for}",
        timeout.as_secs_f64()
    )))
}

/// What one request's coroutines share: the socket, its deadline, and
/// whether the socket is in the selector.
///
/// The socket is registered on its first wait, switched between
/// `EVENT_WRITE` and `EVENT_READ` with `modify` on later ones (as asyncio's
/// `add_writer`/`add_reader` do), and unregistered when the request ends,
/// however it ends: two `epoll_ctl` calls per request instead of two per
/// wait. No stale callback can run in between, because a settled future
/// resumes its coroutine at once (`set_result` → `Task.step` → `send`), and
/// the coroutine re-arms the socket before it yields again.
struct Connection {
    sock: Rc<Socket>,
    deadline: Instant,
    timeout: Duration,
    registered: Cell<bool>,
}

impl Connection {
    /// `selector.register(fd, events, callback)`, or `modify` once registered.
    fn arm(&self, events: u32, on_ready: crate::event_loop::Callback) -> PyResult<()> {
        let event_loop = get_event_loop();
        let selector = event_loop.selector();
        if self.registered.get() {
            selector.modify(self.sock.fileno(), events, on_ready)?;
        } else {
            selector.register(self.sock.fileno(), events, on_ready)?;
            self.registered.set(true);
        }
        Ok(())
    }

    /// `selector.unregister(fd)`, if registered.
    fn disarm(&self) {
        if self.registered.replace(false) {
            let _ = get_event_loop().selector().unregister(self.sock.fileno());
        }
    }

    /// Waits for `future`, which the callback armed on this socket settles:
    /// a timer fails it with `TimeoutError` at the request's deadline. On
    /// any failure the socket leaves the selector at once (and is closed
    /// when the `Connection` drops), so a timed-out socket leaves nothing
    /// behind.
    fn wait(&self, co: &Co<'_>, future: &Future, waiting_for: &'static str) -> PyResult<Value> {
        let event_loop = get_event_loop();
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let on_timeout = future.clone();
        let timeout = self.timeout;
        let timer = event_loop.call_later(remaining, move || {
            on_timeout.set_exception(timeout_error(timeout, waiting_for));
        });
        let result = co.yield_from_future(future);
        timer.cancel();
        if result.is_err() {
            self.disarm();
        }
        result
    }

    /// `yield from connect(sock, address)`: a non-blocking `connect` that
    /// raises `BlockingIOError`, then a wait for the socket to be writable,
    /// then `SO_ERROR` to learn how it went.
    fn connect(co: &Co<'_>, host: &str, port: u16, timeout: Duration) -> PyResult<Connection> {
        // socket.socket(type=SOCK_STREAM | SOCK_NONBLOCK): one system call
        // fewer than the seed's socket() + setblocking(False), which stays
        // and finds the flag set.
        let sock = Rc::new(Socket::new_nonblocking()?);
        sock.setblocking(false)?;
        match sock.connect((host, port)) {
            Ok(()) => {}
            Err(e) if e.is_instance(&BlockingIOError) => {}
            Err(e) => return Err(e),
        }
        let conn = Connection {
            sock,
            deadline: Instant::now() + timeout,
            timeout,
            registered: Cell::new(false),
        };
        let f = Future::new();
        let on_connected = f.clone();
        conn.arm(
            EVENT_WRITE,
            callback(move || on_connected.set_result(Value::None)),
        )?;
        conn.wait(co, &f, "connect")?;
        conn.sock.take_error()?;
        Ok(conn)
    }

    /// `sock.sendall(data)` for a non-blocking socket: `send` what the kernel
    /// takes, and wait for `EVENT_WRITE` whenever its buffer is full.
    fn send_all(&self, co: &Co<'_>, data: &[u8]) -> PyResult<()> {
        let mut rest = data;
        while !rest.is_empty() {
            match self.sock.send(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.is_instance(&BlockingIOError) => {
                    let f = Future::new();
                    let on_writable = f.clone();
                    self.arm(
                        EVENT_WRITE,
                        callback(move || on_writable.set_result(Value::None)),
                    )?;
                    self.wait(co, &f, "send")?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The chapter's `read(sock)`:
    ///
    /// ```python
    /// def read(sock):
    ///     f = Future()
    ///     def on_readable():
    ///         f.set_result(sock.recv(4096))
    ///     selector.register(sock.fileno(), EVENT_READ, on_readable)
    ///     chunk = yield from f
    ///     selector.unregister(sock.fileno())
    ///     return chunk
    /// ```
    ///
    /// A `recv` error (a reset) fails the future instead. Register and
    /// unregister become [`Connection`]'s `arm` (register or modify) and its
    /// drop.
    fn read(&self, co: &Co<'_>) -> PyResult<Vec<u8>> {
        let f = Future::new();
        let on_readable = f.clone();
        let sock = self.sock.clone();
        self.arm(
            EVENT_READ,
            callback(move || match sock.recv(4096) {
                Ok(chunk) => on_readable.set_result(chunk.into()),
                // Readiness that vanished: stay registered and wait again.
                Err(e) if e.is_instance(&BlockingIOError) => {}
                Err(e) => on_readable.set_exception(e),
            }),
        )?;
        let chunk = self.wait(co, &f, "read the response")?;
        Ok(chunk.as_bytes().map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// The chapter's `read_all(sock)` — `read` until `b''` — fed into a
    /// [`ResponseReader`], which also knows when a response with
    /// `Content-Length` is complete and when EOF cut one short.
    fn read_all(&self, co: &Co<'_>, max_body: usize) -> PyResult<Response> {
        let mut reader = ResponseReader::new();
        loop {
            let chunk = self.read(co)?;
            if chunk.is_empty() && reader.buffer().is_empty() {
                // http.client's RemoteDisconnected, a ConnectionResetError.
                return Err(Exception::user(
                    "RemoteDisconnected",
                    "Remote end closed connection without response",
                ));
            }
            if reader.feed(&chunk)? {
                break;
            }
            if reader.buffer().len() > max_body {
                return Err(Exception::user(
                    "ResponseTooLarge",
                    format!("response exceeds the limit of {max_body} bytes"),
                ));
            }
        }
        reader.finish()
    }
}

/// Whether a failed try is worth another: errors of the connection (reset,
/// refused, timeout, a close before the answer) may pass; a response too
/// large for `max_body` or with a line past 64 KiB will be the same next
/// time (http.client raises `LineTooLong` once; trying a 16 MiB header four
/// times cost four times the reading).
fn worth_retrying(e: &Exception) -> bool {
    !matches!(e.name(), "ResponseTooLarge" | "LineTooLong")
}

/// The body with its `Content-Encoding` undone, as aiohttp (the 500 Lines
/// crawler's client) undoes it: `gzip` (`x-gzip`) and `deflate` (zlib, or a
/// raw deflate stream, which some servers send), each through `flate2`; no
/// encoding or `identity` as is. The decoded body may not pass `max_body`
/// (a small gzip can expand a thousandfold). Other encodings (`br`,
/// `zstd`) are left as they are, and their bytes will fail to decode as
/// text; a corrupt stream is aiohttp's `ClientPayloadError`.
fn content_decoded(response: &Response, max_body: usize) -> PyResult<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read;
    let coding = response
        .header("content-encoding")
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let body = response.body.as_slice();
    let mut out = Vec::new();
    let limit = max_body as u64 + 1;
    let read = match coding.as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => {
            let zlib = flate2::read::ZlibDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        _ => return Ok(std::borrow::Cow::Borrowed(body)),
    };
    if read.is_err() {
        return Err(Exception::user(
            "ClientPayloadError",
            format!("Can not decode content-encoding: {coding}"),
        ));
    }
    if out.len() > max_body {
        return Err(Exception::user(
            "ResponseTooLarge",
            format!("response exceeds the limit of {max_body} bytes once decoded ({coding})"),
        ));
    }
    Ok(std::borrow::Cow::Owned(out))
}

impl Drop for Connection {
    /// `selector.unregister(fd)` then `sock.close()`: the order Python's
    /// docs ask for.
    fn drop(&mut self) {
        self.disarm();
    }
}

impl Crawler {
    /// `Crawler(roots, ...)`: normalises the roots and derives the host rules
    /// from them.
    ///
    /// Raises `ValueError` naming what is wrong for: no roots, a root that is
    /// not an http(s) URL with a host, an `exclude` that is not a regex, or a
    /// zero `max_tasks`/`max_pool`/`max_tries`.
    pub fn new(roots: &[impl AsRef<str>], options: CrawlerOptions) -> PyResult<Rc<Crawler>> {
        if roots.is_empty() {
            return Err(Exception::ValueError("no root URLs to crawl".into()));
        }
        if options.max_tasks == 0 {
            return Err(Exception::ValueError("max_tasks must be at least 1".into()));
        }
        if options.max_tries == 0 {
            return Err(Exception::ValueError("max_tries must be at least 1".into()));
        }
        let pool = ConnectionPool::new(options.max_pool.unwrap_or(options.max_tasks))?;
        let exclude = match &options.exclude {
            Some(pattern) => Some(Regex::new(pattern).map_err(|e| {
                Exception::ValueError(format!(
                    "--exclude {} is not a valid regex: {e}",
                    str_repr(pattern)
                ))
            })?),
            None => None,
        };
        let mut normalised: Vec<String> = Vec::new();
        let mut root_domains = HashSet::new();
        for root in roots {
            let root = root.as_ref();
            let fixed = fix_url(root.trim());
            let parsed = url::Url::parse(&fixed).map_err(|e| {
                Exception::ValueError(format!("root {} is not a URL: {e}", str_repr(root)))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(Exception::ValueError(format!(
                    "root {} is not an http or https URL",
                    str_repr(root)
                )));
            }
            let Some(host) = parsed.host_str() else {
                return Err(Exception::ValueError(format!(
                    "root {} has no host",
                    str_repr(root)
                )));
            };
            let host = host.to_ascii_lowercase();
            if is_ip_literal(&host) || options.strict {
                root_domains.insert(host);
            } else {
                root_domains.insert(lenient_host(&host));
            }
            let (url, _fragment) = net::urldefrag(parsed.as_str());
            if !normalised.contains(&url) {
                normalised.push(url);
            }
        }
        let crawler = Rc::new(Crawler {
            roots: normalised,
            exclude,
            strict: options.strict,
            max_redirect: options.max_redirect,
            max_tries: options.max_tries,
            max_tasks: options.max_tasks,
            pool,
            timeout: options.timeout,
            max_body: options.max_body,
            log_level: options.log_level,
            progress: options.progress,
            q: Queue::new(),
            seen_urls: RefCell::new(HashSet::new()),
            done: RefCell::new(Vec::new()),
            root_domains,
            t0: Cell::new(Instant::now()),
            t1: Cell::new(None),
            active: Cell::new(0),
            last_progress: Cell::new(None),
            max_pages: options.max_pages,
            max_depth: options.max_depth,
            depth: RefCell::new(HashMap::new()),
            limited: Cell::new(0),
            interrupt: options.interrupt.clone(),
            interrupted: Cell::new(false),
        });
        for root in crawler.roots.clone() {
            crawler.add_url(&root, crawler.max_redirect);
        }
        Ok(crawler)
    }

    /// Whether `LOGGER.isEnabledFor(level)`.
    fn logs(&self, level: u8) -> bool {
        level <= self.log_level
    }

    /// `LOGGER.log(level, ...)` with `logging.basicConfig`'s format; called
    /// through `log!`, which formats nothing when the level is off.
    fn emit_log(&self, level: u8, args: fmt::Arguments<'_>) {
        let name = ["ERROR", "WARNING", "INFO", "DEBUG"][usize::from(level.min(3))];
        eprintln!("{name}:crawling:{args}");
    }

    /// `host_okay(host)`: is this host one of the roots' (port ignored)?
    /// IP literals must match exactly; strict mode also accepts a root's
    /// host with `www.` added or removed; lenient mode compares the last two
    /// labels.
    pub fn host_okay(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.root_domains.contains(&host) {
            return true;
        }
        if is_ip_literal(&host) {
            return false;
        }
        if self.strict {
            let toggled = match host.strip_prefix("www.") {
                Some(bare) => bare.to_string(),
                None => format!("www.{host}"),
            };
            self.root_domains.contains(&toggled)
        } else {
            self.root_domains.contains(&lenient_host(&host))
        }
    }

    /// `url_allowed(url)`, in the chapter's order: the exclude regex, then
    /// http/https only, then [`Crawler::host_okay`].
    pub fn url_allowed(&self, url: &str) -> bool {
        if self.exclude.as_ref().is_some_and(|re| re.is_match(url)) {
            return false;
        }
        match scheme_and_host(url) {
            Some((scheme, Some(host))) if scheme == "http" || scheme == "https" => {
                if self.host_okay(&host) {
                    true
                } else {
                    log!(self, 3, "skipping non-root host in {}", str_repr(url));
                    false
                }
            }
            _ => {
                log!(self, 3, "skipping non-http scheme in {}", str_repr(url));
                false
            }
        }
    }

    /// `add_url(url, max_redirect)`: marks the URL seen and queues it, at
    /// depth 0 (a root).
    pub fn add_url(&self, url: &str, max_redirect: usize) {
        self.add_url_at(url, max_redirect, 0);
    }

    /// `add_url` at `depth` hops from a root, unless `max_pages` URLs are
    /// queued already (then it is counted in [`Crawler::limited`]).
    fn add_url_at(&self, url: &str, max_redirect: usize, depth: usize) {
        if self.seen_urls.borrow().len() >= self.max_pages {
            self.limited.set(self.limited.get() + 1);
            log!(
                self,
                1,
                "max_pages {} reached: not queueing {}",
                self.max_pages,
                str_repr(url)
            );
            return;
        }
        self.depth.borrow_mut().insert(url.to_string(), depth);
        log!(self, 3, "adding {} {max_redirect}", str_repr(url));
        self.seen_urls.borrow_mut().insert(url.to_string());
        self.q
            .put_nowait((url.to_string(), max_redirect))
            .expect("the queue is shut down only after the crawl");
    }

    /// Links found but not followed because of `max_pages` or `max_depth`.
    pub fn limited(&self) -> usize {
        self.limited.get()
    }

    /// Whether the crawl was interrupted (see [`CrawlerOptions::interrupt`]).
    pub fn interrupted(&self) -> bool {
        self.interrupted.get()
    }

    fn depth_of(&self, url: &str) -> usize {
        self.depth.borrow().get(url).copied().unwrap_or(0)
    }

    /// `self.seen_urls`: every URL ever queued, a copy.
    pub fn seen_urls(&self) -> HashSet<String> {
        self.seen_urls.borrow().clone()
    }

    /// `self.done`: one [`FetchStatistic`] per URL finished, in finishing
    /// order, a copy.
    pub fn done(&self) -> Vec<FetchStatistic> {
        self.done.borrow().clone()
    }

    /// Seconds from the crawl's start to its end (or to now, if it is still
    /// running): `(crawler.t1 or time.time()) - crawler.t0`.
    pub fn elapsed(&self) -> Duration {
        self.t1
            .get()
            .unwrap_or_else(Instant::now)
            .duration_since(self.t0.get())
    }

    /// Checks the crawler's promise: every URL in `seen_urls` has exactly one
    /// outcome in `done`, and nothing else is in `done`. Raises
    /// `RuntimeError` naming the first URL that breaks it.
    pub fn check_outcomes(&self) -> PyResult<()> {
        let seen = self.seen_urls.borrow();
        let done = self.done.borrow();
        let mut counted = HashSet::new();
        for stat in done.iter() {
            if !counted.insert(stat.url.as_str()) {
                return Err(Exception::RuntimeError(format!(
                    "{} has more than one outcome",
                    stat.url
                )));
            }
            if !seen.contains(&stat.url) {
                return Err(Exception::RuntimeError(format!(
                    "{} has an outcome but was never queued",
                    stat.url
                )));
            }
        }
        if let Some(missing) = seen.iter().find(|u| !counted.contains(u.as_str())) {
            return Err(Exception::RuntimeError(format!(
                "{missing} was queued but has no outcome"
            )));
        }
        Ok(())
    }

    /// `record_statistic(fetch_statistic)`; also redraws the progress line.
    fn record_statistic(&self, stat: FetchStatistic) {
        self.done.borrow_mut().push(stat);
        if self.progress {
            self.show_progress(false);
        }
    }

    /// The progress line: rewritten in place (`\r`) at most ten times a
    /// second, and once more, final, when `last` is true.
    fn show_progress(&self, last: bool) {
        let now = Instant::now();
        let due = self
            .last_progress
            .get()
            .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100));
        if !(due || last) {
            return;
        }
        self.last_progress.set(Some(now));
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "\r\x1b[K{} done, {} queued, {} fetching, {:.1} s{}",
            self.done.borrow().len(),
            self.q.qsize(),
            self.active.get(),
            self.elapsed().as_secs_f64(),
            if last { "\n" } else { "" }
        );
        let _ = out.flush();
    }

    /// One request, no retry: connect, send the HTTP/1.0 GET, read the
    /// response to the end. Returns the response, or raises what went wrong
    /// (the socket is closed either way, when `conn` is dropped).
    fn fetch_once(&self, co: &Co<'_>, host: &str, port: u16, target: &str) -> PyResult<Response> {
        // A place in the pool first (`--max_pool`), held until `conn` has
        // closed its socket (locals drop in reverse order). The request's
        // deadline starts after it, at the connect: waiting in line is not
        // the request's time.
        let _place = self.pool.reserve(co)?;
        let conn = Connection::connect(co, host, port, self.timeout)?;
        let host_header = if port == 80 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let request = net::http_get_request(target, &host_header, net::HttpVersion::Http10);
        conn.send_all(co, request.as_bytes())?;
        conn.read_all(co, self.max_body)
    }

    /// `yield from self.fetch(url, max_redirect)`: fetches one URL, retrying
    /// connection errors up to `max_tries` times, then records exactly one
    /// statistic for it and queues the links or the redirect it leads to.
    ///
    /// Only an exception thrown into the worker (`GeneratorExit` when its
    /// generator is closed) escapes; everything else becomes the URL's
    /// outcome.
    pub fn fetch(&self, co: &Co<'_>, url: &str, max_redirect: usize) -> PyResult<()> {
        let (host, port, target) = match net::split_http_url(url) {
            Ok(parts) => parts,
            Err(e) => {
                log!(self, 0, "cannot fetch {}: {}", str_repr(url), e.line());
                let mut stat = FetchStatistic::new(url);
                stat.exception = Some(e);
                self.record_statistic(stat);
                return Ok(());
            }
        };
        let mut tries = 0;
        let mut exception = None;
        let mut response = None;
        while tries < self.max_tries {
            self.active.set(self.active.get() + 1);
            let attempt = self.fetch_once(co, &host, port, &target);
            self.active.set(self.active.get() - 1);
            match attempt {
                Ok(r) => {
                    if tries > 1 {
                        log!(self, 2, "try {tries} for {} success", str_repr(url));
                    }
                    response = Some(r);
                    break;
                }
                Err(e) if !e.is_exception() => return Err(e),
                Err(e) if !worth_retrying(&e) => {
                    log!(
                        self,
                        2,
                        "try {tries} for {} raised {}; not retried",
                        str_repr(url),
                        e.line()
                    );
                    exception = Some(e);
                    tries += 1;
                    break;
                }
                Err(e) => {
                    log!(
                        self,
                        2,
                        "try {tries} for {} raised {}",
                        str_repr(url),
                        e.line()
                    );
                    exception = Some(e);
                }
            }
            tries += 1;
        }
        let Some(response) = response else {
            log!(self, 0, "{} failed after {} tries", str_repr(url), tries);
            let mut stat = FetchStatistic::new(url);
            stat.exception = exception;
            self.record_statistic(stat);
            return Ok(());
        };
        if is_redirect(response.status) {
            self.follow_redirect(url, &response, max_redirect);
        } else {
            let (stat, links) = self.parse_links(url, &response);
            self.record_statistic(stat);
            let new_links: Vec<String> = {
                let seen = self.seen_urls.borrow();
                links.into_iter().filter(|l| !seen.contains(l)).collect()
            };
            let depth = self.depth_of(url);
            if depth >= self.max_depth {
                if !new_links.is_empty() {
                    log!(
                        self,
                        1,
                        "max_depth {} reached at {}: {} links not followed",
                        self.max_depth,
                        str_repr(url),
                        new_links.len()
                    );
                }
                self.limited.set(self.limited.get() + new_links.len());
            } else {
                for link in new_links {
                    self.add_url_at(&link, self.max_redirect, depth + 1);
                }
            }
        }
        Ok(())
    }

    /// The redirect half of `fetch`: records the redirect and queues its
    /// target with one redirect fewer, unless the target was seen already
    /// (chains coalesce), is not allowed, or the chain has no redirect left
    /// (then, as in the chapter, it is only logged: `redirect limit
    /// reached`).
    fn follow_redirect(&self, url: &str, response: &Response, max_redirect: usize) {
        let mut stat = FetchStatistic::new(url);
        stat.status = Some(response.status);
        stat.size = response.body.len();
        let Some(location) = response.header("location") else {
            stat.exception = Some(Exception::user(
                "InvalidRedirect",
                format!("{} response has no Location header", response.status),
            ));
            self.record_statistic(stat);
            return;
        };
        let next_url = match net::urljoin(url, location) {
            Ok(joined) => net::urldefrag(&joined).0,
            Err(e) => {
                stat.exception = Some(Exception::user(
                    "InvalidRedirect",
                    format!("bad Location {}: {e}", str_repr(location)),
                ));
                self.record_statistic(stat);
                return;
            }
        };
        stat.next_url = Some(next_url.clone());
        let seen = self.seen_urls.borrow().contains(&next_url);
        if seen {
            self.record_statistic(stat);
        } else if !self.url_allowed(&next_url) {
            log!(
                self,
                2,
                "not following redirect to {} from {}",
                str_repr(&next_url),
                str_repr(url)
            );
            self.record_statistic(stat);
        } else if max_redirect > 0 {
            log!(
                self,
                2,
                "redirect to {} from {}",
                str_repr(&next_url),
                str_repr(url)
            );
            self.record_statistic(stat);
            self.add_url_at(&next_url, max_redirect - 1, self.depth_of(url));
        } else {
            // crawling.py: LOGGER.error; the statistic is a plain redirect.
            log!(
                self,
                0,
                "redirect limit reached for {} from {}",
                str_repr(&next_url),
                str_repr(url)
            );
            self.record_statistic(stat);
        }
    }

    /// `parse_links(response)`: for a 200 response of `text/html` or
    /// `application/xml`, decodes the body with the charset of its
    /// `Content-Type` (default utf-8), finds the `href`s, joins them onto the
    /// URL, drops fragments and keeps the allowed ones. Returns the URL's
    /// statistic and the links (a body that cannot be decoded makes the
    /// statistic an error).
    pub fn parse_links(&self, url: &str, response: &Response) -> (FetchStatistic, Vec<String>) {
        let mut stat = FetchStatistic::new(url);
        stat.status = Some(response.status);
        stat.size = response.body.len();
        let mut links = Vec::new();
        let body = match content_decoded(response, self.max_body) {
            Ok(body) => body,
            Err(e) => {
                log!(self, 0, "{}: {}", str_repr(url), e.line());
                stat.exception = Some(e);
                return (stat, links);
            }
        };
        stat.size = body.len();
        if response.status == 200 {
            let (content_type, encoding) = response.content_type();
            let content_type = (!content_type.is_empty()).then_some(content_type);
            if content_type
                .as_deref()
                .is_some_and(|ct| LINK_CONTENT_TYPES.contains(&ct))
            {
                // `parse_links` in two halves, so a page without links
                // (the last level's thousand) joins nothing: `url` was
                // fetched, so it is a valid base.
                let found =
                    net::decode_body(&body, &encoding).and_then(|text| {
                        match net::find_hrefs(&text, net::HrefQuotes::Required) {
                            hrefs if hrefs.is_empty() => Ok(Vec::new()),
                            hrefs => net::join_links(url, hrefs),
                        }
                    });
                match found {
                    Ok(found) => {
                        if !found.is_empty() {
                            log!(
                                self,
                                2,
                                "got {} distinct urls from {}",
                                found.len(),
                                str_repr(url)
                            );
                        }
                        links = found.into_iter().filter(|l| self.url_allowed(l)).collect();
                    }
                    Err(e) => {
                        log!(self, 0, "{}: {}", str_repr(url), e.line());
                        stat.exception = Some(e);
                    }
                }
            }
            stat.content_type = content_type;
            stat.encoding = Some(encoding);
        }
        stat.num_urls = links.len();
        let seen = self.seen_urls.borrow();
        stat.num_new_urls = links.iter().filter(|l| !seen.contains(*l)).count();
        (stat, links)
    }

    /// `work()`: one worker coroutine, taking `(url, max_redirect)` from the
    /// queue until it is shut down.
    pub fn work(self: &Rc<Self>) -> Generator {
        let crawler = self.clone();
        Generator::named("work", move |co| loop {
            let (url, max_redirect) = match crawler.q.get(co) {
                Ok(item) => item,
                Err(e) if Queue::<WorkItem>::is_shut_down(&e) => return Ok(Value::None),
                Err(e) => return Err(e),
            };
            debug_assert!(crawler.seen_urls.borrow().contains(&url));
            crawler.fetch(co, &url, max_redirect)?;
            crawler.q.task_done()?;
        })
    }

    /// `crawl()`: starts `max_tasks` workers, waits on `q.join()` until every
    /// queued URL is done, then shuts the queue down and waits for the
    /// workers to return.
    pub fn crawl(self: &Rc<Self>) -> Generator {
        let crawler = self.clone();
        Generator::named("crawl", move |co| {
            crawler.t0.set(Instant::now());
            crawler.t1.set(None);
            let mut workers = Vec::with_capacity(crawler.max_tasks);
            for i in 0..crawler.max_tasks {
                if i > 0 && i % WORKER_BATCH == 0 {
                    let_the_loop_turn(co)?;
                }
                workers.push(Task::new(crawler.work()));
            }
            let watcher = crawler
                .interrupt
                .clone()
                .map(|flag| crawler.watch_interrupt(flag));
            crawler.q.join(co)?;
            if let Some(watcher) = watcher {
                watcher.borrow_mut().cancel();
            }
            crawler.t1.set(Some(Instant::now()));
            crawler.q.shutdown();
            for worker in workers {
                let finished = Future::new();
                let on_done = finished.clone();
                worker.add_done_callback(move |_| on_done.set_result(Value::None));
                if !worker.done() {
                    co.yield_from_future(&finished)?;
                }
                if let Some(Err(e)) = worker.result() {
                    return Err(e);
                }
            }
            if crawler.progress {
                crawler.show_progress(true);
            }
            Ok(Value::None)
        })
    }

    /// Looks at the interrupt flag every [`INTERRUPT_POLL`]; once set, stops
    /// the loop (Ctrl-C stops `run_until_complete` in Python likewise).
    /// Returns the pending timer, for `crawl` to cancel when it ends.
    fn watch_interrupt(self: &Rc<Self>, flag: Arc<AtomicBool>) -> Rc<RefCell<TimerHandle>> {
        fn arm(crawler: Rc<Crawler>, flag: Arc<AtomicBool>, slot: Rc<RefCell<TimerHandle>>) {
            let next = slot.clone();
            let timer = get_event_loop().call_later(INTERRUPT_POLL, move || {
                if flag.load(Ordering::Relaxed) {
                    crawler.interrupted.set(true);
                    get_event_loop().stop();
                } else {
                    arm(crawler, flag, next);
                }
            });
            *slot.borrow_mut() = timer;
        }
        let slot = Rc::new(RefCell::new(
            get_event_loop().call_later(Duration::ZERO, || {}),
        ));
        arm(self.clone(), flag, slot.clone());
        slot
    }

    /// `loop.run_until_complete(crawler.crawl())` on this thread's loop.
    /// Raises `KeyboardInterrupt` when interrupted (see
    /// [`CrawlerOptions::interrupt`]); [`Crawler::done`] then holds what was
    /// done before.
    pub fn run(self: &Rc<Self>) -> PyResult<()> {
        let task = Task::new(self.crawl());
        let result = get_event_loop().run_until_complete(&task);
        if self.interrupted.get() {
            self.t1.set(Some(Instant::now()));
            return Err(Exception::user("KeyboardInterrupt", ""));
        }
        result?;
        Ok(())
    }
}

/// How many workers `crawl()` starts before it lets the loop turn once.
pub const WORKER_BATCH: usize = 64;

/// `await asyncio.sleep(0)`: suspends the calling coroutine until the loop
/// has been round once: a `select()` that does not wait, the callbacks of
/// what is ready, then (as a due timer) this coroutine again.
///
/// `crawl()` does this between batches of [`WORKER_BATCH`] workers. The
/// first worker takes the root and connects; without the turns its
/// request waited for all the other workers to be made (a fresh fiber
/// stack each): 18 ms at `--max_tasks 1000` (`perf record` of the
/// `connect`/`sendto` tracepoints: the root's `connect` at 1.5 ms, its
/// `sendto` at 19.6 ms), and every later level starts that much later.
fn let_the_loop_turn(co: &Co<'_>) -> PyResult<()> {
    let turned = Future::new();
    let f = turned.clone();
    get_event_loop().call_later(Duration::ZERO, move || f.set_result(Value::None));
    co.yield_from_future(&turned).map(drop)
}

impl fmt::Debug for Crawler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crawler")
            .field("roots", &self.roots)
            .field("strict", &self.strict)
            .field("max_redirect", &self.max_redirect)
            .field("max_tries", &self.max_tries)
            .field("max_tasks", &self.max_tasks)
            .field("max_pool", &self.pool.max_pool())
            .field("seen_urls", &self.seen_urls.borrow().len())
            .field("done", &self.done.borrow().len())
            .finish()
    }
}
