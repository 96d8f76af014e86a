//! `socket_client`: the echo servers' client, interactive or as a load test
//! (twin of `examples/python/socket_client.py`).
//!
//! Why this exists: the echo servers need someone to talk to them, and the
//! claim that the selector loop holds thousands of clients needs a client
//! that opens thousands of connections.
//!
//! * Interactive, as yuchaoshui/notes `Python异步并发/socket_client.py`: a
//!   `>` prompt (`input('>')`); each line typed is sent without its newline,
//!   the echo is read back and printed as Python prints bytes (`b'hello'`).
//!   An empty line or EOF quits. (Additions: `--host`/`--port`, the
//!   original's `127.0.0.1:8888` by default; the echo is read until all of
//!   it came back, where the original trusts one `recv(8192)`.) A server that is not there,
//!   or that goes away, gets one clear line on stderr and exit status 1.
//! * `--bench CONNECTIONS,MESSAGES`: CONNECTIONS non-blocking connections on
//!   the crate's selector loop, each sending MESSAGES distinct messages one
//!   after the other and checking that every echo comes back intact. Every
//!   connection ends with exactly one outcome; the last line gives the round
//!   trips per second.
//!
//! ```text
//! cargo run --example socket_client -- [--host 127.0.0.1] [--port 8888]
//! cargo run --release --example socket_client -- --bench 1000,100
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use pyfiber::event_loop::{self, callback, TimerHandle};
use pyfiber::exception::BlockingIOError;
use pyfiber::net::{raise_nofile_limit, Socket};
use pyfiber::value::bytes_repr;
use pyfiber::{Exception, EVENT_READ, EVENT_WRITE};

/// `--bench CONNECTIONS,MESSAGES`, checked as the Python twin's
/// `parse_bench` checks it.
#[derive(Clone, Copy, Debug)]
struct BenchSize {
    connections: usize,
    messages: usize,
}

fn parse_bench(text: &str) -> Result<BenchSize, String> {
    let bad = || format!("'{text}' is not CONNECTIONS,MESSAGES (e.g. 1000,100)");
    let (c, m) = text.split_once(',').ok_or_else(bad)?;
    let connections: usize = c.trim().parse().map_err(|_| bad())?;
    let messages: usize = m.trim().parse().map_err(|_| bad())?;
    if connections < 1 || messages < 1 {
        return Err(format!(
            "'{text}': CONNECTIONS and MESSAGES must both be at least 1"
        ));
    }
    Ok(BenchSize {
        connections,
        messages,
    })
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if t > 0.0 && t.is_finite() => Ok(t),
        _ => Err(format!("'{text}' is not a positive number of seconds")),
    }
}

/// The command line, as the Python twin's argparse declares it.
#[derive(Parser)]
#[command(about = "Client of the echo servers.")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 8888, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Load test instead of the prompt.
    #[arg(long, value_name = "CONNECTIONS,MESSAGES", value_parser = parse_bench)]
    bench: Option<BenchSize>,
    /// Give up a load test after this many seconds.
    #[arg(long, default_value = "60", value_parser = parse_timeout)]
    timeout: f64,
}

// -------------------------------------------------------------- interactive

/// `input(prompt)`: the line without its newline, or `None` at EOF.
fn input(prompt: &str, stdin: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    print!("{prompt}");
    io::stdout().flush()?;
    let mut line = Vec::new();
    if stdin.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(line))
}

/// Why an interactive session ended early.
enum Lost {
    /// `recv` returned `b''` before the whole echo came back.
    Closed,
    /// A socket call raised.
    Error(Exception),
}

/// `sock.sendall(data)`, then `recv` until as many bytes came back.
fn round_trip(sock: &Socket, data: &[u8]) -> Result<Vec<u8>, Lost> {
    sock.sendall(data).map_err(Lost::Error)?;
    let mut echo = Vec::with_capacity(data.len());
    while echo.len() < data.len() {
        let chunk = sock.recv(4096).map_err(Lost::Error)?;
        if chunk.is_empty() {
            return Err(Lost::Closed);
        }
        echo.extend_from_slice(&chunk);
    }
    Ok(echo)
}

fn interactive(host: &str, port: u16) -> ExitCode {
    let connected = Socket::new().and_then(|sock| sock.connect((host, port)).map(|()| sock));
    let sock = match connected {
        Ok(sock) => sock,
        Err(e) => {
            eprintln!("could not connect to {host}:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdin = io::stdin().lock();
    loop {
        let line = match input(">", &mut stdin) {
            Ok(Some(line)) if !line.is_empty() => line,
            Ok(_) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot read the next line: {e}");
                return ExitCode::FAILURE;
            }
        };
        // client.send(data.encode()): the line as typed, without its newline.
        let data = line;
        match round_trip(&sock, &data) {
            Ok(echo) => println!("{}", bytes_repr(&echo)),
            Err(Lost::Closed) => {
                eprintln!("server {host}:{port} closed the connection");
                return ExitCode::FAILURE;
            }
            Err(Lost::Error(e)) => {
                eprintln!("lost the connection to {host}:{port}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

// ---------------------------------------------------------------- load test

/// The `j`-th message of connection `i`: distinct across the whole run.
fn message(i: usize, j: usize) -> Vec<u8> {
    format!("connection {i} message {j}\n").into_bytes()
}

/// The run: how far it got, and one outcome per connection (`None` = ok).
struct Bench {
    host: String,
    port: u16,
    size: BenchSize,
    /// Connections opened so far.
    started: Cell<usize>,
    /// Opened connections whose first echo has not come back yet.
    connecting: Cell<usize>,
    /// Whether `fill` is running.
    filling: Cell<bool>,
    round_trips: Cell<u64>,
    outcomes: RefCell<BTreeMap<usize, Option<String>>>,
    /// The `--timeout` timer, cancelled when the last outcome is in.
    deadline: RefCell<Option<TimerHandle>>,
}

/// One load-test connection: its socket, which message it is on, what is
/// still to send and what came back so far.
struct BenchConn {
    bench: Rc<Bench>,
    sock: Socket,
    i: usize,
    j: Cell<usize>,
    out: RefCell<Vec<u8>>,
    received: RefCell<Vec<u8>>,
    done: Cell<bool>,
}

impl Bench {
    /// Connections not yet echoed once, at most: the server's listen backlog
    /// must not overflow (an overflowing backlog drops SYNs, and the kernel
    /// retries them only after a second).
    const MAX_CONNECTING: usize = 500;

    fn fill(self: &Rc<Self>) {
        // A connect refused at once records its outcome, which calls `fill`
        // again: the loop below already goes on, so don't recurse.
        if self.filling.replace(true) {
            return;
        }
        while self.started.get() < self.size.connections
            && self.connecting.get() < Self::MAX_CONNECTING
        {
            self.connecting.set(self.connecting.get() + 1);
            let i = self.started.get();
            self.started.set(i + 1);
            BenchConn::start(self, i);
        }
        self.filling.set(false);
    }

    fn on_first_echo(self: &Rc<Self>) {
        self.connecting.set(self.connecting.get() - 1);
        self.fill();
    }

    fn on_outcome(self: &Rc<Self>, conn: &BenchConn, error: Option<String>) {
        self.record(conn.i, error, conn.j.get() == 0);
    }

    /// Connection `i`'s one outcome; `connecting` says whether it had not
    /// been echoed once yet. The last outcome ends the run.
    fn record(self: &Rc<Self>, i: usize, error: Option<String>, connecting: bool) {
        if connecting {
            self.connecting.set(self.connecting.get() - 1);
        }
        let all_in = {
            let mut outcomes = self.outcomes.borrow_mut();
            outcomes.insert(i, error);
            outcomes.len() == self.size.connections
        };
        if all_in {
            if let Some(timer) = self.deadline.borrow_mut().take() {
                timer.cancel();
            }
            event_loop::stop();
        } else {
            self.fill();
        }
    }
}

impl BenchConn {
    /// `sock = socket.socket(); sock.setblocking(False); sock.connect(...)`
    /// and wait for it to be writable.
    fn start(bench: &Rc<Bench>, i: usize) {
        let sock = match Socket::new().and_then(|s| s.setblocking(false).map(|()| s)) {
            Ok(sock) => sock,
            Err(e) => return bench.record(i, Some(format!("socket() failed: {e}")), true),
        };
        let conn = Rc::new(BenchConn {
            bench: bench.clone(),
            sock,
            i,
            j: Cell::new(0),
            out: RefCell::new(Vec::new()),
            received: RefCell::new(Vec::new()),
            done: Cell::new(false),
        });
        match conn.sock.connect((bench.host.as_str(), bench.port)) {
            Ok(()) => {}
            Err(e) if e.is_instance(&BlockingIOError) => {}
            Err(e) => {
                conn.done.set(true);
                return bench.on_outcome(&conn, Some(format!("connect failed: {e}")));
            }
        }
        let c = conn.clone();
        let registered = event_loop::selector().register(
            conn.sock.fileno(),
            EVENT_WRITE,
            callback(move || c.on_connected()),
        );
        if let Err(e) = registered {
            conn.done.set(true);
            bench.on_outcome(&conn, Some(format!("register failed: {e}")));
        }
    }

    /// `on_connected`: the connect finished; did it work?
    fn on_connected(self: &Rc<Self>) {
        if let Err(e) = self.sock.take_error() {
            return self.finish(Some(format!("connect failed: {e}")));
        }
        if let Err(e) = self.watch(EVENT_READ) {
            return self.finish(Some(format!("modify failed: {e}")));
        }
        self.send_next();
    }

    /// Re-register for `events`; while a message is half sent both
    /// directions are watched.
    fn watch(self: &Rc<Self>, events: u32) -> pyfiber::PyResult<()> {
        let c = self.clone();
        let cb = if events == EVENT_READ {
            callback(move || c.on_readable())
        } else {
            callback(move || c.on_ready())
        };
        event_loop::selector()
            .modify(self.sock.fileno(), events, cb)
            .map(drop)
    }

    fn send_next(self: &Rc<Self>) {
        *self.out.borrow_mut() = message(self.i, self.j.get());
        self.received.borrow_mut().clear();
        self.write();
    }

    /// Send what is left of the message; watch for writability if the
    /// kernel did not take it all.
    fn write(self: &Rc<Self>) {
        let sent = {
            let out = self.out.borrow();
            match self.sock.send(&out) {
                Ok(n) => n,
                Err(e) if e.is_instance(&BlockingIOError) => 0,
                Err(e) => {
                    drop(out);
                    return self.finish(Some(format!("send failed: {e}")));
                }
            }
        };
        let left = {
            let mut out = self.out.borrow_mut();
            out.drain(..sent);
            out.len()
        };
        if left > 0 {
            if let Err(e) = self.watch(EVENT_READ | EVENT_WRITE) {
                self.finish(Some(format!("modify failed: {e}")));
            }
        }
    }

    fn on_ready(self: &Rc<Self>) {
        if !self.out.borrow().is_empty() {
            self.write();
        }
        if self.done.get() {
            return;
        }
        if self.out.borrow().is_empty() {
            if let Err(e) = self.watch(EVENT_READ) {
                return self.finish(Some(format!("modify failed: {e}")));
            }
        }
        self.on_readable();
    }

    /// `on_readable`: take what came; once the whole echo is in, check it
    /// and send the next message.
    fn on_readable(self: &Rc<Self>) {
        let j = self.j.get();
        let chunk = match self.sock.recv(4096) {
            Ok(chunk) => chunk,
            Err(e) if e.is_instance(&BlockingIOError) => return,
            Err(e) => return self.finish(Some(format!("recv failed after {j} echoes: {e}"))),
        };
        if chunk.is_empty() {
            return self.finish(Some(format!(
                "server closed the connection after {j} echoes"
            )));
        }
        let expected = message(self.i, j);
        let verdict = {
            let mut received = self.received.borrow_mut();
            received.extend_from_slice(&chunk);
            if received.len() < expected.len() {
                return;
            }
            (*received != expected).then(|| {
                format!(
                    "echo {j} is {}, expected {}",
                    bytes_repr(&received),
                    bytes_repr(&expected)
                )
            })
        };
        if let Some(error) = verdict {
            return self.finish(Some(error));
        }
        let bench = &self.bench;
        bench.round_trips.set(bench.round_trips.get() + 1);
        if j == 0 {
            bench.on_first_echo();
        }
        self.j.set(j + 1);
        if j + 1 == bench.size.messages {
            self.finish(None);
        } else {
            self.send_next();
        }
    }

    /// The connection's one outcome: unregister, close (when the last
    /// callback holding it is gone) and report.
    fn finish(self: &Rc<Self>, error: Option<String>) {
        self.done.set(true);
        let _ = event_loop::selector().unregister(self.sock.fileno());
        self.bench.on_outcome(self, error);
    }
}

fn bench(host: &str, port: u16, size: BenchSize, timeout: f64) -> ExitCode {
    if let Err(e) = raise_nofile_limit() {
        eprintln!("cannot raise the open-file limit: {e}");
    }
    println!(
        "bench: {} connections x {} messages to {host}:{port}",
        size.connections, size.messages
    );
    let run = Rc::new(Bench {
        host: host.to_string(),
        port,
        size,
        started: Cell::new(0),
        connecting: Cell::new(0),
        filling: Cell::new(false),
        round_trips: Cell::new(0),
        outcomes: RefCell::new(BTreeMap::new()),
        deadline: RefCell::new(None),
    });
    let lp = event_loop::get_event_loop();
    let timer = lp.call_later(Duration::from_secs_f64(timeout), event_loop::stop);
    *run.deadline.borrow_mut() = Some(timer);
    let start = Instant::now();
    run.fill();
    let looped = if run.outcomes.borrow().len() < size.connections {
        lp.run_loop()
    } else {
        Ok(())
    };
    let elapsed = start.elapsed().as_secs_f64();
    if let Err(e) = looped {
        eprintln!("the loop failed: {}", e.line());
    }
    let mut outcomes = run.outcomes.borrow_mut();
    for i in 0..size.connections {
        outcomes
            .entry(i)
            .or_insert_with(|| Some(format!("timed out after {timeout} s")));
    }
    let failed: Vec<(usize, &String)> = outcomes
        .iter()
        .filter_map(|(i, e)| e.as_ref().map(|e| (*i, e)))
        .collect();
    for (i, e) in failed.iter().take(10) {
        println!("connection {i}: {e}");
    }
    if failed.len() > 10 {
        println!("... and {} more failed connections", failed.len() - 10);
    }
    let round_trips = run.round_trips.get();
    println!(
        "{} ok, {} failed: {round_trips} round trips in {elapsed:.3} s = {:.0} round trips/s",
        size.connections - failed.len(),
        failed.len(),
        round_trips as f64 / elapsed
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.bench {
        Some(size) => bench(&args.host, args.port, size, args.timeout),
        None => interactive(&args.host, args.port),
    }
}
