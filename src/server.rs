//! The embedded slow server: the tutorials' "自建一个简单服务" (a local
//! service that answers every request only after a delay).
//!
//! Why this exists: every stage of the ladder fetches URLs from
//! `127.0.0.1:5000`, a server the tutorials' author ran by hand, which waits
//! one second before each answer. Sync code then takes N seconds for N URLs
//! while the event-loop stages take about one. pyfiber ships that server so
//! the examples and tests run anywhere, and it is built on the crate's own
//! loop: a non-blocking listening socket and one per connection, registered
//! with the [`selector`](crate::selector) with callbacks, and each delay a
//! [`call_later`](crate::EventLoop::call_later) timer, never a sleep. That is
//! why one thread can keep ten thousand slow requests in flight.
//!
//! ```
//! use pyfiber::server::{spawn, ServerConfig};
//! use std::io::{Read, Write};
//! use std::time::Duration;
//!
//! let server = spawn(ServerConfig { port: 0, delay: Duration::from_millis(10), ..Default::default() }).unwrap();
//! let mut conn = std::net::TcpStream::connect(server.addr()).unwrap();
//! conn.write_all(b"GET /s?wd=7 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
//! let mut answer = String::new();
//! conn.read_to_string(&mut answer).unwrap();
//! assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"));
//! assert!(answer.contains("<title>7 - pyfiber search</title>"));
//! assert_eq!(server.stop().requests, 1);
//! ```
//!
//! The site map, the fault paths and the measured figures are in NOTES.md
//! ("The slow server").

mod site;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::event_loop::{self, callback, get_event_loop, EventLoop, TimerHandle};
use crate::exception::{Exception, OsError, PyResult};
use crate::selector::{EVENT_READ, EVENT_WRITE};

use site::{Reply, Site};

pub use site::OFFHOST_LINKS;

/// Size of `/fault/huge`'s body: 100 MiB, generated as the socket drains.
pub const HUGE_BODY_LEN: u64 = 100 * 1024 * 1024;

/// How long `/fault/long-header`'s unending header line is: 1 MiB.
pub const LONG_HEADER_LEN: u64 = 1024 * 1024;

/// `/fault/trickle` writes one byte of its response per this interval.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(100);

/// A request head larger than this is refused with 431 and the connection
/// closed.
pub const MAX_HEAD: usize = 64 * 1024;

/// The listen backlog asked for. Linux caps it at `net.core.somaxconn`
/// (4096 on recent kernels).
pub const BACKLOG: i32 = 8192;

/// How long a client may take to send its whole request head (nginx's
/// `client_header_timeout`, 60 s there): past it the server answers 408 and
/// closes, so slow-loris clients cannot hold the descriptors for good.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a response may make no progress because the client does not
/// read (nginx's `send_timeout`, 60 s): past it the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the accept loop rests after `EMFILE`/`ENFILE` (out of fds)
/// before it tries again, so that it does not spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A misbehaviour the server can put on a request: the `/fault/NAME` paths,
/// or, through [`ServerConfig::fault`], every request. Each is something a
/// real server or network does to a crawler's `fetch`. (No Python
/// counterpart: the tutorials' server always behaved; the 500 Lines
/// crawler's `max_tries` and error handling exist for servers that don't.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `reset-headers`: part of the response head, then a TCP reset
    /// (`ConnectionResetError` for the client).
    ResetHeaders,
    /// `reset-body`: the head with `Content-Length: 1000`, part of the body,
    /// then a TCP reset.
    ResetBody,
    /// `stall`: never answers; holds the connection until the client goes.
    Stall,
    /// `garbage`: bytes that are not HTTP, then a normal close.
    Garbage,
    /// `huge`: a [`HUGE_BODY_LEN`] (100 MiB) body with `Content-Length`,
    /// streamed.
    Huge,
    /// `not-utf8`: `200 text/html; charset=utf-8` whose body is not UTF-8.
    NotUtf8,
    /// `trickle`: a valid response, one byte per [`TRICKLE_INTERVAL`]
    /// (slow loris in reverse).
    Trickle,
    /// `close`: closed right after the request is read, no byte sent.
    Close,
    /// `continue`: an interim `100 Continue` head, then the real answer, a
    /// page titled `continue` linking to `/1` (http.client and curl skip
    /// the interim).
    Continue,
    /// `fold`: a header continued on the next line (obsolete line folding,
    /// which http.client accepts), then a page titled `fold`.
    Fold,
    /// `long-header`: a head whose one header line runs for
    /// [`LONG_HEADER_LEN`] (1 MiB) bytes and never ends (http.client:
    /// `LineTooLong` at 64 KiB).
    LongHeader,
    /// `gzip`: a page titled `gzip` linking to `/1`, sent with
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `gbk`: a page titled `中文 gbk` linking to `/1`, encoded in GBK and
    /// declared `charset=gbk`.
    Gbk,
}

impl Fault {
    /// Every fault, in the order NOTES.md lists them.
    pub const ALL: [Fault; 13] = [
        Fault::ResetHeaders,
        Fault::ResetBody,
        Fault::Stall,
        Fault::Garbage,
        Fault::Huge,
        Fault::NotUtf8,
        Fault::Trickle,
        Fault::Close,
        Fault::Continue,
        Fault::Fold,
        Fault::LongHeader,
        Fault::Gzip,
        Fault::Gbk,
    ];

    /// The fault's name, as in its path `/fault/NAME` and `--fault NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ResetHeaders => "reset-headers",
            Fault::ResetBody => "reset-body",
            Fault::Stall => "stall",
            Fault::Garbage => "garbage",
            Fault::Huge => "huge",
            Fault::NotUtf8 => "not-utf8",
            Fault::Trickle => "trickle",
            Fault::Close => "close",
            Fault::Continue => "continue",
            Fault::Fold => "fold",
            Fault::LongHeader => "long-header",
            Fault::Gzip => "gzip",
            Fault::Gbk => "gbk",
        }
    }

    /// The path that shows this fault: `/fault/NAME`.
    pub fn path(self) -> String {
        format!("/fault/{}", self.name())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = Exception;

    /// Parses a fault name (`reset-headers`, `stall`, ...); anything else is
    /// a `ValueError` listing the valid names.
    fn from_str(s: &str) -> PyResult<Fault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                Exception::ValueError(format!(
                    "unknown fault mode {s:?}; expected one of: {}",
                    names.join(", ")
                ))
            })
    }
}

/// How to run the server: the tutorials' `host = "127.0.0.1"`, `port = 5000`
/// and the one-second wait of each answer, plus the shape of the site (a
/// tree of `pages` pages, `fanout` links each, for the crawler). The default
/// port is 0 (any free port), so embedded servers never collide; the
/// `slow_server` example defaults to 5000 like the tutorials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick one (see [`ServerHandle::port`]).
    pub port: u16,
    /// How long every answer waits (default 1 s), by a timer on the loop.
    pub delay: Duration,
    /// Pages in the tree: `/` is page 0, `/N` for `1 <= N < pages` (default
    /// 1111: 1 + 10 + 100 + 1000, four levels).
    pub pages: usize,
    /// Links per tree page (default 10).
    pub fanout: usize,
    /// A fault put on every request, whatever its path (default none).
    pub fault: Option<Fault>,
    /// How long the whole request head may take from accept (default
    /// [`HEAD_TIMEOUT`], 10 s); then 408 and close.
    pub head_timeout: Duration,
    /// How long writing an answer may go without a byte accepted by the
    /// client's socket (default [`WRITE_TIMEOUT`], 60 s); then the
    /// connection is closed. `/fault/trickle` and `/fault/stall` are slow
    /// on purpose and are not cut by it.
    pub write_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            port: 0,
            delay: Duration::from_secs(1),
            pages: 1111,
            fanout: 10,
            fault: None,
            head_timeout: HEAD_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// What the server has done so far (no Python counterpart; the figures
/// the C10K tests and NOTES.md report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests whose head was read and parsed (each got its answer, or its
    /// fault).
    pub requests: u64,
    /// The most connections open at once (a connection counts from accept
    /// to close).
    pub peak_concurrency: usize,
    /// Connections open now (after [`ServerHandle::stop`]: 0).
    pub open_connections: usize,
    /// Connections closed because their request head did not arrive within
    /// [`ServerConfig::head_timeout`].
    pub head_timeouts: u64,
    /// Connections closed because the client stopped reading for
    /// [`ServerConfig::write_timeout`].
    pub write_timeouts: u64,
    /// Bytes of request heads the parser looked at. Each received byte is
    /// looked at a bounded number of times (at most twice: once scanning
    /// for the end of the head, once by `httparse`), however slowly the
    /// head arrives; this counts it, so the tests can check it.
    pub head_bytes_parsed: u64,
}

/// The counters, shared between the server thread (the only writer) and the
/// handle.
#[derive(Default)]
struct SharedStats {
    requests: AtomicU64,
    open: AtomicUsize,
    peak: AtomicUsize,
    head_timeouts: AtomicU64,
    write_timeouts: AtomicU64,
    head_bytes_parsed: AtomicU64,
}

impl SharedStats {
    fn snapshot(&self) -> ServerStats {
        ServerStats {
            requests: self.requests.load(Ordering::Relaxed),
            peak_concurrency: self.peak.load(Ordering::Relaxed),
            open_connections: self.open.load(Ordering::Relaxed),
            head_timeouts: self.head_timeouts.load(Ordering::Relaxed),
            write_timeouts: self.write_timeouts.load(Ordering::Relaxed),
            head_bytes_parsed: self.head_bytes_parsed.load(Ordering::Relaxed),
        }
    }

    fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(open, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running server, as Python's `socketserver` object serving on a
/// background thread: [`addr`](Self::addr) is `server.server_address`,
/// [`stop`](Self::stop) is `server.shutdown()` + `thread.join()`. Dropping
/// it stops the server too.
pub struct ServerHandle {
    addr: SocketAddr,
    stats: Arc<SharedStats>,
    /// Dropping this end wakes the server's loop (it watches the other end
    /// for EOF) and tells it to stop.
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address it listens on (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on (the OS's pick when the config said 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `"http://127.0.0.1:PORT" + path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// The counters now.
    pub fn stats(&self) -> ServerStats {
        self.stats.snapshot()
    }

    /// Stops the server: wakes its loop, which closes every connection and
    /// the listening socket; joins its thread; returns the final counters.
    pub fn stop(mut self) -> ServerStats {
        self.shutdown()
    }

    fn shutdown(&mut self) -> ServerStats {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("slow server: the server thread panicked");
            }
        }
        self.stats.snapshot()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Starts the slow server on a new thread with its own event loop (as
/// `threading.Thread(target=server.serve_forever).start()` would), and
/// returns once it listens on `127.0.0.1:port` (so a client may connect at
/// once). Raises the open-file soft limit to the hard limit first, for the
/// C10K runs. Binding errors (`[Errno 98] Address already in use`) are
/// raised here, as `OSError`s.
pub fn spawn(config: ServerConfig) -> PyResult<ServerHandle> {
    if let Err(e) = crate::net::raise_nofile_limit() {
        eprintln!(
            "slow server: could not raise the open-file limit: {}",
            e.line()
        );
    }
    let listener = listen(config.port).map_err(|e| {
        let exc = Exception::from(e);
        match exc.os_error() {
            Some(os) => Exception::OSError(OsError {
                errno: os.errno,
                strerror: format!(
                    "cannot listen on 127.0.0.1:{}: {}",
                    config.port, os.strerror
                ),
            }),
            None => exc,
        }
    })?;
    let addr = listener
        .local_addr()?
        .as_socket()
        .ok_or_else(|| Exception::OSError(OsError::msg("listener has no internet address")))?;
    let (wake, watched) = UnixStream::pair()?;
    watched.set_nonblocking(true)?;
    let stats = Arc::new(SharedStats::default());
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name(format!("pyfiber-server-{}", addr.port()))
        .spawn(move || serve(listener, watched, config, thread_stats))?;
    Ok(ServerHandle {
        addr,
        stats,
        wake: Some(wake),
        thread: Some(thread),
    })
}

/// `socket()`, `SO_REUSEADDR`, `bind(("127.0.0.1", port))`, `listen(backlog)`,
/// `setblocking(False)`.
fn listen(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The server thread: register the listener and the wake-up socket, run the
/// loop until woken, then close everything.
fn serve(listener: Socket, watched: UnixStream, config: ServerConfig, stats: Arc<SharedStats>) {
    let lp = get_event_loop();
    let server = Rc::new(Server {
        listener_fd: listener.as_raw_fd(),
        listener: RefCell::new(Some(listener)),
        site: Site::new(config.pages, config.fanout, config.fault),
        delay: config.delay,
        head_timeout: config.head_timeout,
        write_timeout: config.write_timeout,
        stats,
        conns: RefCell::new(HashMap::new()),
        next_id: Cell::new(0),
        out_of_fds_logged: Cell::new(false),
        accepting: Cell::new(false),
    });
    let run = || -> PyResult<()> {
        server.start_accepting(&lp)?;
        lp.selector()
            .register(watched.as_raw_fd(), EVENT_READ, callback(event_loop::stop))?;
        lp.run_loop()
    };
    if let Err(e) = run() {
        eprintln!("slow server: the loop failed: {}", e.line());
    }
    let _ = lp.selector().unregister(watched.as_raw_fd());
    server.stop_accepting(&lp);
    drop(server.listener.borrow_mut().take());
    let conns: Vec<Rc<Conn>> = server.conns.borrow().values().cloned().collect();
    for conn in conns {
        conn.close(&server, &lp);
    }
    // Cancelled timers may still hold closed connections (and the server);
    // they go with this thread's loop when the thread ends. No callback or
    // timer holds the loop itself (they look it up with `get_event_loop()`
    // when they run), so nothing keeps the loop, its epoll fd or the
    // server alive past the thread.
}

/// The server's state on its thread.
struct Server {
    /// The listening socket; taken (closed) when the server stops.
    listener: RefCell<Option<Socket>>,
    listener_fd: RawFd,
    site: Site,
    delay: Duration,
    head_timeout: Duration,
    write_timeout: Duration,
    stats: Arc<SharedStats>,
    /// Every open connection, so that stopping can close them all.
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    next_id: Cell<u64>,
    out_of_fds_logged: Cell<bool>,
    accepting: Cell<bool>,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the request head.
    Reading,
    /// Head read; the delay timer runs. Still watching for the client
    /// going away (`stall`: that is the only way out).
    Waiting,
    /// Writing the answer (EVENT_WRITE), or trickling it by timer.
    Writing,
    /// Closed; callbacks still queued do nothing.
    Closed,
}

/// How the answer ends once written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// A normal close (FIN).
    Close,
    /// A reset (RST): `SO_LINGER` zero, then close.
    Reset,
}

/// The bytes still to write.
struct Output {
    buf: Vec<u8>,
    pos: usize,
    /// Filler bytes still to generate once `buf` is written (`huge`).
    stream_left: u64,
    ending: Ending,
}

/// One accepted connection.
struct Conn {
    id: u64,
    sock: RefCell<Option<Socket>>,
    fd: RawFd,
    phase: Cell<Phase>,
    /// Whether the fd is registered with the selector now.
    registered: Cell<bool>,
    head: RefCell<Vec<u8>>,
    /// How far the search for the end of `head` has got.
    scan: Cell<HeadScan>,
    out: RefCell<Output>,
    /// The one timer of the connection: the head timeout while reading, the
    /// delay while waiting, the write watchdog (or the trickle's next byte)
    /// while writing.
    timer: RefCell<Option<TimerHandle>>,
    /// When the client's socket last took a byte of the answer.
    last_write: Cell<Instant>,
}

/// The incremental search for the blank line that ends a request head.
///
/// Why: a client may send its head one byte at a time. Re-parsing the whole
/// buffer on every read (what a plain `httparse::Request::parse` loop does)
/// costs O(n) per byte, O(n²) per head: a 30 KB header sent slowly cost
/// about 7 µs of server CPU per byte. Here each read looks only at the bytes
/// that arrived since the last one (plus the two before, where a line end
/// may have started), and `httparse` runs twice at most: once when the
/// request line is in (so that garbage is refused at once), once on the
/// complete head.
#[derive(Clone, Copy, Debug, Default)]
struct HeadScan {
    /// Bytes of the head already searched without finding its end.
    scanned: usize,
    /// Whether the request line has been checked by `httparse`.
    line_checked: bool,
}

/// Where a head stands after [`HeadScan::advance`].
#[derive(Debug, PartialEq, Eq)]
enum HeadStatus {
    /// More bytes are needed.
    Partial,
    /// The request line is in and is not HTTP: refuse now.
    Malformed(String),
    /// The head ends at this offset (just after its blank line).
    Complete(usize),
}

impl HeadScan {
    /// Looks at the new bytes of `head`; adds to `looked` how many bytes it
    /// examined.
    fn advance(&mut self, head: &[u8], looked: &mut u64) -> HeadStatus {
        let from = self.scanned.saturating_sub(2);
        let window = &head[from..];
        *looked += window.len() as u64;
        self.scanned = head.len();
        // A head ends with an empty line: LF LF or LF CR LF (httparse takes
        // bare LF line ends as well as CRLF).
        let end = window.iter().enumerate().find_map(|(i, &b)| {
            if b != b'\n' {
                return None;
            }
            match window.get(i + 1..) {
                Some([b'\n', ..]) => Some(from + i + 2),
                Some([b'\r', b'\n', ..]) => Some(from + i + 3),
                _ => None,
            }
        });
        if let Some(end) = end {
            return HeadStatus::Complete(end);
        }
        if !self.line_checked && window.contains(&b'\n') {
            self.line_checked = true;
            *looked += head.len() as u64;
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(head) {
                Ok(_) | Err(httparse::Error::TooManyHeaders) => {}
                Err(e) => return HeadStatus::Malformed(e.to_string()),
            }
        }
        HeadStatus::Partial
    }
}

/// How much `/fault/huge` writes at a time.
const STREAM_CHUNK: usize = 64 * 1024;
/// `/fault/huge`'s filler, shared by every connection that streams it, so a
/// client that never reads costs no buffer of its own (15,000 such clients
/// once held 64 KiB each, 970 MB in all).
static FILLER: [u8; STREAM_CHUNK] = [b'x'; STREAM_CHUNK];
/// How much one writable callback writes at most, so that one fast reader
/// of `/fault/huge` cannot hold the loop.
const WRITE_BUDGET: usize = 1024 * 1024;

impl Server {
    fn start_accepting(self: &Rc<Self>, lp: &EventLoop) -> PyResult<()> {
        let server = self.clone();
        lp.selector().register(
            self.listener_fd,
            EVENT_READ,
            callback(move || server.on_acceptable(&get_event_loop())),
        )?;
        self.accepting.set(true);
        Ok(())
    }

    fn stop_accepting(&self, lp: &EventLoop) {
        if self.accepting.replace(false) {
            let _ = lp.selector().unregister(self.listener_fd);
        }
    }

    /// The listener is readable: accept until `WouldBlock`.
    fn on_acceptable(self: &Rc<Self>, lp: &Rc<EventLoop>) {
        loop {
            let accepted = match self.listener.borrow().as_ref() {
                Some(listener) => listener.accept(),
                None => return,
            };
            match accepted {
                Ok((sock, _peer)) => {
                    if let Err(e) = self.on_accepted(lp, sock) {
                        eprintln!("slow server: dropping a connection: {}", e.line());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(24 | 23)) => {
                    // EMFILE / ENFILE: out of descriptors. The pending
                    // connections wait in the backlog; rest a little, serve
                    // the open ones, and try again.
                    if !self.out_of_fds_logged.replace(true) {
                        eprintln!(
                            "slow server: accept: {}; pausing accept for {:?} each time this happens",
                            Exception::from(e).line(),
                            ACCEPT_BACKOFF
                        );
                    }
                    self.stop_accepting(lp);
                    let server = self.clone();
                    lp.call_later(ACCEPT_BACKOFF, move || {
                        if let Err(e) = server.start_accepting(&get_event_loop()) {
                            eprintln!("slow server: cannot accept again: {}", e.line());
                        }
                    });
                    return;
                }
                // ECONNABORTED and the like concern one connection only.
                Err(e) => {
                    eprintln!("slow server: accept: {}", Exception::from(e).line());
                    return;
                }
            }
        }
    }

    fn on_accepted(self: &Rc<Self>, lp: &Rc<EventLoop>, sock: Socket) -> PyResult<()> {
        sock.set_nonblocking(true)?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let conn = Rc::new(Conn {
            id,
            fd: sock.as_raw_fd(),
            sock: RefCell::new(Some(sock)),
            phase: Cell::new(Phase::Reading),
            registered: Cell::new(false),
            head: RefCell::new(Vec::new()),
            scan: Cell::new(HeadScan::default()),
            out: RefCell::new(Output {
                buf: Vec::new(),
                pos: 0,
                stream_left: 0,
                ending: Ending::Close,
            }),
            timer: RefCell::new(None),
            last_write: Cell::new(Instant::now()),
        });
        self.stats.opened();
        // The head timeout counts from accept: the whole head must be in by
        // then, however it trickles.
        let c = conn.clone();
        let server_cb = self.clone();
        let timer = lp.call_later(self.head_timeout, move || {
            c.timer.borrow_mut().take();
            if c.phase.get() == Phase::Reading {
                server_cb
                    .stats
                    .head_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                let detail = format!(
                    "the request head did not arrive within {:?}",
                    server_cb.head_timeout
                );
                c.answer_now(&server_cb, &get_event_loop(), site::error(408, &detail));
            }
        });
        *conn.timer.borrow_mut() = Some(timer);
        self.conns.borrow_mut().insert(id, conn.clone());
        let server = self.clone();
        let c = conn.clone();
        let registered = lp.selector().register(
            conn.fd,
            EVENT_READ,
            callback(move || c.on_event(&server, &get_event_loop())),
        );
        match registered {
            Ok(_) => {
                conn.registered.set(true);
                Ok(())
            }
            Err(e) => {
                conn.close(self, lp);
                Err(e)
            }
        }
    }
}

impl Conn {
    /// The one selector callback of a connection; what readiness means
    /// depends on the phase.
    fn on_event(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>) {
        match self.phase.get() {
            Phase::Reading => self.on_readable(server, lp),
            Phase::Waiting => self.on_readable_while_waiting(server, lp),
            Phase::Writing => self.on_writable(server, lp),
            Phase::Closed => {}
        }
    }

    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.sock.borrow().as_ref() {
            Some(mut sock) => sock.read(buf),
            None => Ok(0),
        }
    }

    fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        match self.sock.borrow().as_ref() {
            Some(mut sock) => sock.write(buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Reading the head: `recv` until it is complete, the client goes, or
    /// it grows past [`MAX_HEAD`]. Each read looks only at its new bytes
    /// (see [`HeadScan`]).
    fn on_readable(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.read_some(&mut chunk) {
                Ok(0) => return self.close(server, lp),
                Ok(n) => self.head.borrow_mut().extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(server, lp),
            }
            let head = self.head.borrow();
            let mut scan = self.scan.get();
            let mut looked = 0;
            let status = scan.advance(&head, &mut looked);
            self.scan.set(scan);
            server
                .stats
                .head_bytes_parsed
                .fetch_add(looked, Ordering::Relaxed);
            let too_big = || format!("request head larger than {MAX_HEAD} bytes");
            let refusal = match status {
                HeadStatus::Partial if head.len() > MAX_HEAD => site::error(431, &too_big()),
                HeadStatus::Partial => continue,
                HeadStatus::Complete(end) if end > MAX_HEAD => site::error(431, &too_big()),
                HeadStatus::Malformed(e) => {
                    site::error(400, &format!("malformed request head: {e}"))
                }
                HeadStatus::Complete(end) => {
                    server
                        .stats
                        .head_bytes_parsed
                        .fetch_add(end as u64, Ordering::Relaxed);
                    let mut headers = [httparse::EMPTY_HEADER; 64];
                    let mut req = httparse::Request::new(&mut headers);
                    match req.parse(&head[..end]) {
                        Ok(httparse::Status::Complete(_)) => {
                            let method = req.method.unwrap_or("GET").to_string();
                            let target = req.path.unwrap_or("/").to_string();
                            drop(head);
                            return self.on_request(server, lp, &method, &target);
                        }
                        Err(httparse::Error::TooManyHeaders) => {
                            site::error(431, "more than 64 request headers")
                        }
                        Err(e) => site::error(400, &format!("malformed request head: {e}")),
                        Ok(httparse::Status::Partial) => {
                            site::error(400, "malformed request head: no blank line ends it")
                        }
                    }
                }
            };
            drop(head);
            return self.answer_now(server, lp, refusal);
        }
    }

    /// A complete request: ask the site, then answer after the delay (or
    /// close at once, for `close` and `flaky`).
    fn on_request(
        self: &Rc<Self>,
        server: &Rc<Server>,
        lp: &Rc<EventLoop>,
        method: &str,
        target: &str,
    ) {
        server.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(timer) = self.timer.borrow_mut().take() {
            timer.cancel(); // the head timeout
        }
        *self.head.borrow_mut() = Vec::new();
        let reply = server.site.route(method, target);
        if reply == Reply::Close {
            return self.close(server, lp);
        }
        self.phase.set(Phase::Waiting);
        if reply == Reply::Stall {
            return;
        }
        let conn = self.clone();
        let server_cb = server.clone();
        let timer = lp.call_later(server.delay, move || {
            conn.timer.borrow_mut().take();
            conn.start_answer(&server_cb, &get_event_loop(), reply);
        });
        *self.timer.borrow_mut() = Some(timer);
    }

    /// While the delay runs, the client may send more (ignored), close its
    /// side (the answer is still sent; `stall` closes) or reset.
    fn on_readable_while_waiting(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.read_some(&mut chunk) {
                Ok(0) => {
                    if self.timer.borrow().is_none() {
                        // Stalled: the client went, so do we.
                        return self.close(server, lp);
                    }
                    // Half-closed: stop watching (EOF stays readable, level
                    // triggered) and answer when the timer fires.
                    self.unregister(lp);
                    return;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(server, lp),
            }
        }
    }

    /// A refusal (400, 431): written at once, no delay, then closed.
    fn answer_now(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>, bytes: Vec<u8>) {
        self.start_answer(server, lp, Reply::Bytes(bytes));
    }

    /// The delay is over: start writing the reply.
    fn start_answer(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>, reply: Reply) {
        if self.phase.get() == Phase::Closed {
            return;
        }
        if let Some(timer) = self.timer.borrow_mut().take() {
            timer.cancel(); // the head timeout, for a refusal
        }
        *self.head.borrow_mut() = Vec::new();
        let (buf, stream_left, trickle, ending) = match reply {
            Reply::Bytes(b) => (b, 0, false, Ending::Close),
            Reply::Stream { head, body_len } => (head, body_len, false, Ending::Close),
            Reply::Trickle(b) => (b, 0, true, Ending::Close),
            Reply::ResetAfter(b) => (b, 0, false, Ending::Reset),
            Reply::Stall | Reply::Close => return self.close(server, lp),
        };
        *self.out.borrow_mut() = Output {
            buf,
            pos: 0,
            stream_left,
            ending,
        };
        self.phase.set(Phase::Writing);
        if trickle {
            self.unregister(lp);
            return self.trickle_one(server, lp);
        }
        // Try at once: on loopback the whole answer usually fits in the send
        // buffer, and no extra turn of the loop is needed.
        self.last_write.set(Instant::now());
        self.on_writable(server, lp);
        if self.phase.get() == Phase::Writing {
            self.watch(lp, EVENT_WRITE, server);
            self.watch_writes(server, lp, server.write_timeout);
        }
    }

    /// The write watchdog (nginx's `send_timeout`): wakes after `after`;
    /// if the client's socket has taken no byte for the whole
    /// [`ServerConfig::write_timeout`], closes, else sleeps again for what
    /// is left. One timer per connection, not one per write.
    fn watch_writes(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>, after: Duration) {
        let conn = self.clone();
        let server_cb = server.clone();
        let timer = lp.call_later(after, move || {
            conn.timer.borrow_mut().take();
            if conn.phase.get() != Phase::Writing {
                return;
            }
            let idle = conn.last_write.get().elapsed();
            let lp = get_event_loop();
            match server_cb.write_timeout.checked_sub(idle) {
                Some(left) if !left.is_zero() => conn.watch_writes(&server_cb, &lp, left),
                _ => {
                    server_cb
                        .stats
                        .write_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    conn.close(&server_cb, &lp);
                }
            }
        });
        *self.timer.borrow_mut() = Some(timer);
    }

    /// Writes what it can; when all is written, closes (or resets).
    fn on_writable(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>) {
        let mut budget = WRITE_BUDGET;
        loop {
            let mut out = self.out.borrow_mut();
            // The head (or whole answer) first, then the shared filler.
            let in_buf = out.pos < out.buf.len();
            let pending: &[u8] = if in_buf {
                &out.buf[out.pos..]
            } else if out.stream_left > 0 {
                &FILLER[..out.stream_left.min(STREAM_CHUNK as u64) as usize]
            } else {
                let ending = out.ending;
                drop(out);
                return self.finish(server, lp, ending);
            };
            if budget == 0 {
                return;
            }
            let pending = &pending[..pending.len().min(budget)];
            match self.write_some(pending) {
                Ok(n) => {
                    if in_buf {
                        out.pos += n;
                    } else {
                        out.stream_left -= n as u64;
                    }
                    budget -= n;
                    self.last_write.set(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    drop(out);
                    return self.close(server, lp);
                }
            }
        }
    }

    /// `trickle`: one byte now, the next one [`TRICKLE_INTERVAL`] later.
    fn trickle_one(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>) {
        if self.phase.get() != Phase::Writing {
            return;
        }
        let mut out = self.out.borrow_mut();
        if out.pos == out.buf.len() {
            drop(out);
            return self.finish(server, lp, Ending::Close);
        }
        match self.write_some(&out.buf[out.pos..out.pos + 1]) {
            Ok(n) => out.pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                drop(out);
                return self.close(server, lp);
            }
        }
        drop(out);
        let conn = self.clone();
        let server_cb = server.clone();
        let timer = lp.call_later(TRICKLE_INTERVAL, move || {
            conn.timer.borrow_mut().take();
            conn.trickle_one(&server_cb, &get_event_loop());
        });
        *self.timer.borrow_mut() = Some(timer);
    }

    /// All written: close with FIN, or with RST for the reset faults.
    fn finish(self: &Rc<Self>, server: &Rc<Server>, lp: &Rc<EventLoop>, ending: Ending) {
        if let Some(sock) = self.sock.borrow().as_ref() {
            match ending {
                Ending::Close => {
                    let _ = sock.shutdown(Shutdown::Write);
                }
                Ending::Reset => {
                    let _ = sock.set_linger(Some(Duration::ZERO));
                }
            }
        }
        self.close(server, lp);
    }

    /// Registers for `events`, or changes what is watched.
    fn watch(self: &Rc<Self>, lp: &Rc<EventLoop>, events: u32, server: &Rc<Server>) {
        let selector = lp.selector();
        let result = if self.registered.get() {
            selector
                .get_key(self.fd)
                .and_then(|key| selector.modify(self.fd, events, key.data))
        } else {
            let server_cb = server.clone();
            let c = self.clone();
            selector.register(
                self.fd,
                events,
                callback(move || c.on_event(&server_cb, &get_event_loop())),
            )
        };
        match result {
            Ok(_) => self.registered.set(true),
            Err(e) => {
                eprintln!("slow server: cannot watch a connection: {}", e.line());
                self.close(server, lp);
            }
        }
    }

    fn unregister(&self, lp: &EventLoop) {
        if self.registered.replace(false) {
            let _ = lp.selector().unregister(self.fd);
        }
    }

    /// Closes the connection (once): stops watching it, cancels its timer,
    /// closes the socket and counts it out.
    fn close(&self, server: &Server, lp: &EventLoop) {
        if self.phase.replace(Phase::Closed) == Phase::Closed {
            return;
        }
        self.unregister(lp);
        if let Some(timer) = self.timer.borrow_mut().take() {
            timer.cancel();
        }
        drop(self.sock.borrow_mut().take());
        server.conns.borrow_mut().remove(&self.id);
        server.stats.closed();
    }
}
