//! `socket_server_async`: the echo server on the crate's selector loop, in
//! the two styles the tutorials compare (twin of
//! `examples/python/socket_server_async.py`).
//!
//! Why this exists: `socket_server_sync` serves one client at a time because
//! every call blocks. Here nothing blocks: the sockets are non-blocking, one
//! loop (`pyfiber::event_loop`) waits in `selector.select()` for whichever
//! socket is ready, and each connection's state lives either in the
//! callbacks registered for it or in a suspended coroutine. Ten thousand idle
//! clients cost ten thousand registrations, not ten thousand threads.
//!
//! * `--style callbacks`: the tutorials' callbacks `on_accept`, `on_read`
//!   and `on_write`. A connection's registration switches between
//!   `EVENT_READ` and `EVENT_WRITE` with `selector.modify`, and what it still
//!   has to send travels in the next callback.
//! * `--style coroutines`: one generator coroutine per connection (`handle`),
//!   driven by the tutorials' `Future` and `Task`. It reads like the blocking
//!   server's loop; where that one would block, this one does `yield from` a
//!   future that a selector callback settles (here `co.yield_from_future`).
//!
//! Both print yuchaoshui/notes `Python异步并发/socket_server_async.py`'s
//! lines (`accepted <conn> from <addr>`, `echoing <bytes> to <conn>` with
//! the connection's repr), and `closing <addr>` where the original prints
//! the connection (printed as the connection ends, when a reset socket no
//! longer knows its peer). When `accept()`
//! fails for lack of file descriptors (`EMFILE`), the server says so, stops
//! accepting for [`ACCEPT_RETRY_DELAY`] (as asyncio does; the waiting
//! clients stay in the listen backlog) and goes on serving the connections
//! it has.
//!
//! ```text
//! cargo run --example socket_server_async -- [--port 8888] [--style callbacks|coroutines]
//!     [--quiet] [--max-fds N]
//! ```

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use pyfiber::event_loop::{self, callback, Callback};
use pyfiber::exception::BlockingIOError;
use pyfiber::net::{raise_nofile_limit, Socket};
use pyfiber::value::bytes_repr;
use pyfiber::{Co, Exception, Future, Generator, PyResult, Task, Value, EVENT_READ, EVENT_WRITE};

/// `print(...)` of the server's progress lines. A closed stdout (the reader
/// of a pipe gone, as in `socket_server_async | head -1`) ends the server
/// with a clear message and exit status 1, where `println!` panicked
/// ("failed printing to stdout", exit 101) and Python raises
/// `BrokenPipeError`.
macro_rules! say {
    ($($arg:tt)*) => {
        say_line(format_args!($($arg)*))
    };
}

fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        eprintln!("socket_server_async: cannot print to stdout ({e}); stopping");
        std::process::exit(1);
    }
}

/// How long to stop accepting after `accept()` ran out of descriptors
/// (asyncio's `ACCEPT_RETRY_DELAY` is 1 s; a tenth keeps the tests short).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// `accept()` errnos that mean "out of resources", not "this client failed":
/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`.
const OUT_OF_RESOURCES: [i32; 4] = [24, 23, 105, 12];

/// The two ways of writing the server.
#[derive(Clone, Copy, ValueEnum)]
enum Style {
    /// on_accept / on_read / on_write, switching the registration.
    Callbacks,
    /// One generator coroutine per connection, driven by Future and Task.
    Coroutines,
}

/// The command line, as the Python twin's argparse declares it.
#[derive(Parser)]
#[command(about = "Echo server on a selector loop, with callbacks or coroutines.")]
struct Args {
    /// Port to listen on, on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8888)]
    port: u16,
    /// callbacks (on_accept/on_read/on_write) or one coroutine per connection.
    #[arg(long, value_enum, default_value_t = Style::Callbacks)]
    style: Style,
    /// Don't print a line per connection and per echo.
    #[arg(long)]
    quiet: bool,
    /// Set the open-file soft limit to N (default: raise it to the hard limit).
    #[arg(long, value_name = "N")]
    max_fds: Option<u64>,
}

/// What both styles share: the listening socket and the module globals of
/// the Python twin (`quiet`, `open_connections`).
struct Server {
    sock: Socket,
    quiet: bool,
    /// Connections accepted and not yet closed.
    open_connections: Cell<usize>,
    /// Whether `accept()` has failed for lack of resources since the last
    /// success: the failure is logged once, not every retry.
    accept_paused: Cell<bool>,
}

/// Python's `print(addr)` of an `(host, port)` tuple: `('127.0.0.1', 8888)`.
fn py_addr(addr: SocketAddr) -> String {
    format!("('{}', {})", addr.ip(), addr.port())
}

fn out_of_resources(e: &Exception) -> bool {
    e.os_error()
        .and_then(|os| os.errno)
        .is_some_and(|errno| OUT_OF_RESOURCES.contains(&errno))
}

fn log_error(addr: &str, e: &Exception) {
    eprintln!("error on {addr}: {}", e.line());
}

impl Server {
    /// `accept()` ran out of descriptors: say so, once per episode.
    fn log_accept_paused(&self, e: &Exception) {
        if !self.accept_paused.replace(true) {
            eprintln!(
                "accept failed: {e} ({} connections open); retrying every {} s",
                self.open_connections.get(),
                ACCEPT_RETRY_DELAY.as_secs_f64()
            );
        }
    }

    fn accepted(&self, conn: &Socket, addr: &str) {
        if self.accept_paused.replace(false) {
            eprintln!(
                "accepting again ({} connections open)",
                self.open_connections.get()
            );
        }
        self.open_connections.set(self.open_connections.get() + 1);
        if !self.quiet {
            say!("accepted {conn:?} from {addr}");
        }
    }

    fn closed(&self, addr: &str) {
        if !self.quiet {
            say!("closing {addr}");
        }
        self.open_connections.set(self.open_connections.get() - 1);
    }
}

// ---------------------------------------------------------------- callbacks

/// One connection of the callback style: what every callback registered for
/// it needs. The socket closes when the last callback holding it is gone.
struct Conn {
    sock: Socket,
    addr: String,
    server: Rc<Server>,
}

/// `on_accept(sock)`: accept every pending client (until `BlockingIOError`)
/// and register each for reading.
fn on_accept(server: &Rc<Server>) {
    let selector = event_loop::selector();
    loop {
        let (sock, addr) = match server.sock.accept() {
            Ok(pair) => pair,
            Err(e) if e.is_instance(&BlockingIOError) => return,
            Err(e) if out_of_resources(&e) => {
                // The pending clients stay in the backlog; stop listening for
                // them for a while instead of spinning on a socket that
                // stays readable.
                server.log_accept_paused(&e);
                let _ = selector.unregister(server.sock.fileno());
                let server = server.clone();
                event_loop::get_event_loop().call_later(ACCEPT_RETRY_DELAY, move || {
                    serve_callbacks(&server);
                });
                return;
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                return;
            }
        };
        let addr = py_addr(addr);
        server.accepted(&sock, &addr);
        let conn = Rc::new(Conn {
            sock,
            addr,
            server: server.clone(),
        });
        let registered = conn.sock.setblocking(false).and_then(|()| {
            let c = conn.clone();
            selector.register(
                conn.sock.fileno(),
                EVENT_READ,
                callback(move || on_read(&c)),
            )
        });
        if let Err(e) = registered {
            close_connection(&conn, Some(e));
        }
    }
}

/// `on_read(conn)`: the socket is readable; echo what came, or close on EOF.
fn on_read(conn: &Rc<Conn>) {
    let data = match conn.sock.recv(4096) {
        Ok(data) => data,
        Err(e) if e.is_instance(&BlockingIOError) => return,
        Err(e) => return close_connection(conn, Some(e)),
    };
    if data.is_empty() {
        return close_connection(conn, None);
    }
    if !conn.server.quiet {
        say!("echoing {} to {:?}", bytes_repr(&data), conn.sock);
    }
    // Now wait until the echo can be written, and carry the data there.
    let data: Rc<[u8]> = data.into();
    switch_to_write(conn, data, 0);
}

/// `on_write(conn, data)`: the socket is writable; send what is left, then
/// go back to reading.
fn on_write(conn: &Rc<Conn>, data: &Rc<[u8]>, offset: usize) {
    let sent = match conn.sock.send(&data[offset..]) {
        Ok(n) => n,
        Err(e) if e.is_instance(&BlockingIOError) => return,
        Err(e) => return close_connection(conn, Some(e)),
    };
    if offset + sent < data.len() {
        switch_to_write(conn, data.clone(), offset + sent);
    } else {
        let c = conn.clone();
        let modified = event_loop::selector().modify(
            conn.sock.fileno(),
            EVENT_READ,
            callback(move || on_read(&c)),
        );
        if let Err(e) = modified {
            close_connection(conn, Some(e));
        }
    }
}

/// `selector.modify(conn, EVENT_WRITE, lambda: on_write(conn, data[offset:]))`.
fn switch_to_write(conn: &Rc<Conn>, data: Rc<[u8]>, offset: usize) {
    let c = conn.clone();
    let modified = event_loop::selector().modify(
        conn.sock.fileno(),
        EVENT_WRITE,
        callback(move || on_write(&c, &data, offset)),
    );
    if let Err(e) = modified {
        close_connection(conn, Some(e));
    }
}

/// `close_connection(conn, error)`: log, unregister; the socket is closed
/// when the callback running now, the last holder of `conn`, returns.
fn close_connection(conn: &Rc<Conn>, error: Option<Exception>) {
    if let Some(e) = error {
        log_error(&conn.addr, &e);
    }
    conn.server.closed(&conn.addr);
    let _ = event_loop::selector().unregister(conn.sock.fileno());
}

/// `selector.register(sock, EVENT_READ, on_accept)`.
fn serve_callbacks(server: &Rc<Server>) {
    let s = server.clone();
    if let Err(e) = event_loop::selector().register(
        server.sock.fileno(),
        EVENT_READ,
        callback(move || on_accept(&s)),
    ) {
        eprintln!("cannot watch the listening socket: {e}");
        event_loop::stop();
    }
}

// --------------------------------------------------------------- coroutines

/// `yield from wait_for(sock, events)`: suspend this coroutine until `sock`
/// is ready. The selector callback only settles the future; the Task that
/// waits on it resumes the coroutine. The accept loop waits this way: while
/// it sleeps after `EMFILE`, the listening socket must not be watched.
fn wait_for(co: &Co, sock: &Socket, events: u32) -> PyResult<()> {
    let selector = event_loop::selector();
    let f = Future::new();
    let settle = f.clone();
    selector.register(
        sock.fileno(),
        events,
        callback(move || settle.set_result(Value::None)),
    )?;
    let woke = co.yield_from_future(&f);
    selector.unregister(sock.fileno())?;
    woke.map(drop)
}

/// `yield from sleep(delay)`: a future settled by a timer.
fn sleep(co: &Co, delay: Duration) -> PyResult<()> {
    let f = Future::new();
    let settle = f.clone();
    event_loop::get_event_loop().call_later(delay, move || settle.set_result(Value::None));
    co.yield_from_future(&f).map(drop)
}

/// `conn, addr = yield from sock_accept(sock)`.
fn sock_accept(co: &Co, sock: &Socket) -> PyResult<(Socket, SocketAddr)> {
    loop {
        match sock.accept() {
            Err(e) if e.is_instance(&BlockingIOError) => wait_for(co, sock, EVENT_READ)?,
            other => return other,
        }
    }
}

/// A connection's socket, registered with the selector once for as long as
/// it is open (asyncio's transports keep their reader registered the same
/// way). The selector callback settles whichever future the coroutine waits
/// on now; switching between reading and writing is a `modify`. Registering
/// and unregistering around every wait, as `wait_for` does, would cost two
/// `epoll_ctl` calls per echo.
struct Watched {
    sock: Socket,
    /// What the registration asks for now.
    events: Cell<u32>,
    /// The future the coroutine is waiting on, if it is waiting.
    waiter: Rc<RefCell<Option<Future>>>,
    /// The selector callback: settle the waiter.
    wake: Callback,
}

impl Watched {
    /// `selector.register(sock, EVENT_READ, self.wake)`.
    fn new(sock: Socket) -> PyResult<Watched> {
        let waiter: Rc<RefCell<Option<Future>>> = Rc::default();
        let w = waiter.clone();
        let wake = callback(move || {
            let f = w.borrow_mut().take();
            if let Some(f) = f {
                f.set_result(Value::None);
            }
        });
        event_loop::selector().register(sock.fileno(), EVENT_READ, wake.clone())?;
        Ok(Watched {
            sock,
            events: Cell::new(EVENT_READ),
            waiter,
            wake,
        })
    }

    /// `yield from conn.wait_for(events)`: suspend until the socket is
    /// ready for `events`.
    fn wait_for(&self, co: &Co, events: u32) -> PyResult<()> {
        if self.events.get() != events {
            event_loop::selector().modify(self.sock.fileno(), events, self.wake.clone())?;
            self.events.set(events);
        }
        let f = Future::new();
        *self.waiter.borrow_mut() = Some(f.clone());
        co.yield_from_future(&f).map(drop)
    }
}

impl Drop for Watched {
    /// `conn.close()`: unregister first, as Python's docs ask, then the
    /// socket closes.
    fn drop(&mut self) {
        let _ = event_loop::selector().unregister(self.sock.fileno());
    }
}

/// `data = yield from sock_recv(conn, bufsize)`: wait until readable, then
/// `recv`, as the tutorials' `fetch` does.
fn sock_recv(co: &Co, conn: &Watched, bufsize: usize) -> PyResult<Vec<u8>> {
    loop {
        conn.wait_for(co, EVENT_READ)?;
        match conn.sock.recv(bufsize) {
            Err(e) if e.is_instance(&BlockingIOError) => continue,
            other => return other,
        }
    }
}

/// `yield from sock_sendall(conn, data)`: send at once, and wait only for
/// what the kernel would not take.
fn sock_sendall(co: &Co, conn: &Watched, data: &[u8]) -> PyResult<()> {
    let mut rest = data;
    while !rest.is_empty() {
        match conn.sock.send(rest) {
            Ok(sent) => rest = &rest[sent..],
            Err(e) if e.is_instance(&BlockingIOError) => conn.wait_for(co, EVENT_WRITE)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `handle(conn, addr)`: one connection, written as if it were blocking.
fn handle(co: &Co, conn: Socket, addr: String, server: Rc<Server>) -> PyResult<Value> {
    let echoed = Watched::new(conn).and_then(|conn| loop {
        let data = sock_recv(co, &conn, 4096)?;
        if data.is_empty() {
            return Ok(());
        }
        if !server.quiet {
            say!("echoing {} to {:?}", bytes_repr(&data), conn.sock);
        }
        sock_sendall(co, &conn, &data)?;
    });
    // try: ... except OSError as e: log ... finally: closing, conn.close()
    // (the connection was closed when `conn` went out of scope above).
    let outcome = match echoed {
        Err(e) if e.is_os_error() => {
            log_error(&addr, &e);
            Ok(Value::None)
        }
        other => other.map(|()| Value::None),
    };
    server.closed(&addr);
    outcome
}

/// `server(sock)`: the accept loop, itself a coroutine; one `Task(handle(...))`
/// per client.
fn server(co: &Co, server: Rc<Server>) -> PyResult<Value> {
    loop {
        let (conn, addr) = match sock_accept(co, &server.sock) {
            Ok(pair) => pair,
            Err(e) if out_of_resources(&e) => {
                server.log_accept_paused(&e);
                sleep(co, ACCEPT_RETRY_DELAY)?;
                continue;
            }
            Err(e) if e.is_os_error() => {
                eprintln!("accept failed: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let addr = py_addr(addr);
        server.accepted(&conn, &addr);
        if let Err(e) = conn.setblocking(false) {
            log_error(&addr, &e);
            server.closed(&addr);
            continue;
        }
        let s = server.clone();
        Task::new(Generator::named("handle", move |co| {
            handle(co, conn, addr, s)
        }));
    }
}

/// `Task(server(sock))`.
fn serve_coroutines(srv: &Rc<Server>) -> Task {
    let s = srv.clone();
    Task::new(Generator::named("server", move |co| server(co, s)))
}

// --------------------------------------------------------------------- main

/// `resource.setrlimit(RLIMIT_NOFILE, ...)`: the hard limit by default (ten
/// thousand clients need ten thousand descriptors), or `--max-fds`.
fn set_fd_limit(max_fds: Option<u64>) -> Result<(), String> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let Some(n) = max_fds else {
        return raise_nofile_limit()
            .map(drop)
            .map_err(|e| format!("cannot raise the open-file limit: {e}"));
    };
    if n < 16 {
        return Err(format!("--max-fds {n} is too low (at least 16)"));
    }
    let lim = getrlimit(Resource::Nofile);
    if let Some(hard) = lim.maximum {
        if n > hard {
            return Err(format!("--max-fds {n} is above the hard limit {hard}"));
        }
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(n),
            maximum: lim.maximum,
        },
    )
    .map_err(|e| format!("cannot set the open-file limit to {n}: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = set_fd_limit(args.max_fds) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let sock = match Socket::listen_on(("127.0.0.1", args.port), 4096)
        .and_then(|sock| sock.setblocking(false).map(|()| sock))
    {
        Ok(sock) => sock,
        Err(e) => {
            eprintln!("could not listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    let port = sock.getsockname().map(|a| a.port()).unwrap_or(args.port);
    let server = Rc::new(Server {
        sock,
        quiet: args.quiet,
        open_connections: Cell::new(0),
        accept_paused: Cell::new(false),
    });
    // Not the original's `Running on http://localhost:8888/`: this is TCP,
    // not HTTP, and curl at that URL fails with "Received HTTP/0.9".
    say!("Running on localhost:{port} (TCP echo, not HTTP: try nc localhost {port})");
    // The accept loop's task is kept here, as a Python program keeps it in
    // a variable.
    let _accept_task = match args.style {
        Style::Callbacks => {
            serve_callbacks(&server);
            None
        }
        Style::Coroutines => Some(serve_coroutines(&server)),
    };
    match event_loop::run_loop() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("the loop failed: {}", e.line());
            ExitCode::FAILURE
        }
    }
}
