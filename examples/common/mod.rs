//! What every stage of the ladder shares, so each example file holds only
//! the part its Python original is about.
//!
//! Why this exists: the originals' files differ in one thing, how they wait
//! for the network; the rest (which URLs, the slow local server, `parse`,
//! `results` and how it is printed) is the same in all of them. This module
//! is that rest, once, for the Rust stages; its twin is
//! `examples/python/common.py`. An example includes it with
//!
//! ```text
//! #[path = "common/mod.rs"]
//! mod common;
//! ```
//!
//! and then:
//!
//! ```text
//! let stage = common::Stage::start("generator", common::parse_args(), common::Concurrency::All);
//! for target in &stage.targets { ... common::RESULTS.append(&target.url, common::parse(&response)) ... }
//! common::RESULTS.print();   // print(results)
//! stage.finish()             // the --format forcemain line, the --json line; the exit code
//! ```
//!
//! What is printed is `--format`'s choice:
//! - `original` (the default): what the originals print. `results` is one
//!   Python list repr of `(url, title)` tuples, printed by
//!   [`Results::print`]; process.py prints each tuple on its own line as it
//!   completes ([`print_result`]). A URL that failed (the originals would
//!   crash) is an `error: <url> <Name: message>` line on stderr instead.
//! - `lines`: one `result: <url> <title>` or `error: <url> <Name: message>`
//!   line per URL, on stdout, as each one finishes.
//! - `forcemain`: `lines`, then forcemain's (seed 004) last line,
//!   `Request Times: N, Total Cost: S seconds`.
//!
//! `--json` adds one JSON line at the end in every format. [`Stage::finish`]
//! checks that the run produced exactly one outcome per URL.

// Each example uses part of this module; what one of them leaves unused is
// not dead code.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use pyfiber::exception::{BlockingIOError, Except};
use pyfiber::net::{self, Socket};
use pyfiber::server::{self, ServerConfig, ServerHandle};
pub use pyfiber::timeline::Mark;
use pyfiber::timeline::Recorder;
use pyfiber::value::str_repr;
use pyfiber::{trace, Exception, OsError, PyResult};

/// The flags every fetch example takes (the Python twins take the same).
///
/// An example with flags of its own flattens this into its own parser:
/// `#[command(flatten)] common: common::Args`.
//
// `about = None`: a flattened struct's doc comment would otherwise become the
// `--help` text of the example that flattens it, in place of its own.
// `allow_negative_numbers`: `--urls -1` reaches the range check below (clap
// would take `-1` for a flag and say "unexpected argument").
#[derive(clap::Args, Debug, Clone)]
#[command(about = None, long_about = None)]
pub struct Args {
    /// How many URLs to fetch: `/s?wd=0` ... `/s?wd=N-1`.
    #[arg(long = "urls", value_name = "N", default_value_t = 10,
          allow_negative_numbers = true, value_parser = parse_urls)]
    pub urls: usize,
    /// Seconds the embedded server waits before each answer.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub delay: f64,
    /// Fetch from another server instead of starting the embedded one: `{}`
    /// is replaced by 0..N-1, e.g. 'http://127.0.0.1:5000/s?wd={}'.
    #[arg(long, value_name = "TEMPLATE")]
    pub url: Option<String>,
    /// Print every step of the machinery (register, select, set_result,
    /// Task.step, ...), in the line format the Python twins print.
    #[arg(long)]
    pub trace: bool,
    /// End with one JSON line: {"stage", "requests", "ok", "errors",
    /// "seconds", "timeline"}; the timeline has each request's started,
    /// connected, first_byte and finished seconds.
    #[arg(long)]
    pub json: bool,
    /// What to print: the original's output (`print(results)`), one line
    /// per URL, or those lines and forcemain's `Request Times` line.
    #[arg(long, value_enum, value_name = "FORM", default_value_t = Format::Original)]
    pub format: Format,
    /// Seconds one request may take before it fails with TimeoutError.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub timeout: f64,
    /// Draw the run into FILE, an SVG: one bar per request (started →
    /// finished); with --trace, the traced run as a sequence diagram instead
    /// (lanes for the loop/selector, the selector callback, the Future,
    /// Task.step and the generator; best with 2 or 3 URLs).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
}

/// `--format`: which output form a stage prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// What the original prints: `print(results)`, a list repr of
    /// `(url, title)` tuples (process.py: one tuple per line).
    Original,
    /// `result: <url> <title>` / `error: <url> <Name: message>`, one per URL.
    Lines,
    /// `lines`, then `Request Times: N, Total Cost: S seconds` (forcemain's
    /// seed 004).
    Forcemain,
}

/// The run's `--format`, set by [`Stage::start`] (and by a process
/// worker, which prints nothing itself).
static FORMAT: OnceLock<Format> = OnceLock::new();

fn format() -> Format {
    *FORMAT.get().unwrap_or(&Format::Original)
}

/// The most URLs `--trace --svg` draws: one row per traced step, about
/// twenty steps per URL.
pub const MAX_CHAIN_URLS: usize = 10;

/// `--urls N`: a whole number, at least 1 (the range message for `-1` too).
pub fn parse_urls(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("--urls is too large: {n}")),
        Ok(n) => Err(format!("--urls must be at least 1, got {n}")),
        Err(_) => Err(format!("--urls must be a whole number, got {s:?}")),
    }
}

/// A parser with only the common flags.
#[derive(Parser, Debug)]
#[command(about = "Fetch N URLs from the slow server; print each title and the total time.")]
struct CommonCli {
    #[command(flatten)]
    args: Args,
}

/// Parses the command line of an example that has only the common flags.
pub fn parse_args() -> Args {
    CommonCli::parse().args
}

/// Prints `error: <message>` on stderr and exits with status 2, the way
/// `argparse` rejects bad input: before anything has started.
pub fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2);
}

/// One URL to fetch, split the way the tutorials' code needs it:
/// `sock.connect((host, port))` and `'GET {path} HTTP/1.0\r\nHost: {host}'`.
#[derive(Clone, Debug)]
pub struct Target {
    /// The whole URL, as printed in `result:` lines.
    pub url: String,
    /// The host part, for the `Host:` header.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The request target: path and query.
    pub path: String,
    /// `(host, port)` resolved once, before the clock starts.
    pub addr: SocketAddr,
}

impl Target {
    /// Splits and resolves `url` (only `http://`).
    pub fn parse(url: &str) -> PyResult<Target> {
        let (host, port, path) = net::split_http_url(url)?;
        // The resolver's message ("Name or service not known") does not say
        // which name: this one does.
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| {
                Exception::OSError(OsError::msg(format!("cannot resolve host {host:?}: {e}")))
            })?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| {
                Exception::OSError(OsError::msg(format!("{host} has no IPv4 address")))
            })?;
        Ok(Target {
            url: url.to_string(),
            host,
            port,
            path,
            addr,
        })
    }

    /// The tutorials' request:
    /// `'GET {0} HTTP/1.0\r\nHost: {1}\r\n\r\n'.format(path, host)`.
    pub fn request(&self) -> String {
        format!("GET {} HTTP/1.0\r\nHost: {}\r\n\r\n", self.path, self.host)
    }
}

/// How many requests a stage has in flight at once: it decides how many
/// open files the run needs.
#[derive(Clone, Copy, Debug)]
pub enum Concurrency {
    /// Every URL at once (the event-loop stages).
    All,
    /// At most this many (1 for `sync`, the pool size for `thread`/`process`).
    AtMost(usize),
}

/// Descriptors a process needs besides its sockets: stdio, the selector, the
/// server's listener and loop, pipes to children.
const FD_SLACK: u64 = 64;

/// A running stage: its flags, its URLs, the server it started (if any),
/// and the clock.
pub struct Stage {
    /// The Python file this stage mirrors, without `.py` (`"generator"`).
    pub name: &'static str,
    /// The flags.
    pub args: Args,
    /// The URLs, in order: `/s?wd=0` first.
    pub targets: Vec<Target>,
    /// The embedded server, when `--url` was not given. Dropping it stops it.
    pub server: Option<ServerHandle>,
    start: Instant,
}

/// The run's per-request instants, and which request each URL is (its
/// first occurrence): set by [`Stage::start`], so the clock is the stage's.
static TIMELINE: OnceLock<(Recorder, HashMap<String, usize>)> = OnceLock::new();

/// `time.time()` at one of a request's moments (started, connected, first
/// byte) for the `"timeline"` of the `--json` line and `--svg`; the outcome
/// (in [`Results::append`] / [`print_result`]) marks when it finished. A
/// no-op where no stage runs (a process worker).
pub fn mark(url: &str, mark: Mark) {
    if let Some((recorder, index)) = TIMELINE.get() {
        if let Some(&i) = index.get(url) {
            recorder.mark(i, mark);
        }
    }
}

/// Marks `url`'s outcome: finished now, with a result or an error.
fn mark_finished(url: &str, ok: bool) {
    if let Some((recorder, index)) = TIMELINE.get() {
        if let Some(&i) = index.get(url) {
            recorder.finish(i, ok);
        }
    }
}

static OK: AtomicUsize = AtomicUsize::new(0);
static ERRORS: AtomicUsize = AtomicUsize::new(0);

/// Where output lines go when stdout is a pipe or a file: a buffer, as
/// Python's `print` buffers then, so 10,000 result lines are not 10,000
/// `write` calls. On a terminal (and under `--trace`, whose lines the
/// library prints straight to stdout) every line goes out at once.
static OUT: Mutex<Out> = Mutex::new(Out {
    writer: None,
    pending: false,
});

/// The buffer behind [`say`], and whether it holds lines nobody has
/// written out yet (what wakes [`flusher`]).
struct Out {
    writer: Option<BufWriter<Stdout>>,
    pending: bool,
}

/// Rung by [`say`] when the buffer goes from empty to holding a line.
static PENDING: Condvar = Condvar::new();

/// How long a line may wait in the buffer. A reader at the other end of a
/// pipe (`sync --urls 1000000 | head`) sees each line within this, while a
/// burst of lines still leaves in a few large writes: what the buffer is
/// for. (Python's `print` to a pipe waits until 8 KiB have gathered.)
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

fn out() -> std::sync::MutexGuard<'static, Out> {
    OUT.lock().unwrap_or_else(|e| e.into_inner())
}

/// `print(line)`: one output line, buffered when stdout is not a terminal,
/// and written out by [`flusher`] at most [`FLUSH_EVERY`] later. A closed
/// pipe ends the process ([`broken_pipe`]).
pub fn say(line: std::fmt::Arguments<'_>) {
    static TERMINAL: OnceLock<bool> = OnceLock::new();
    if trace::enabled() || *TERMINAL.get_or_init(|| std::io::stdout().is_terminal()) {
        flush();
        let written = writeln!(std::io::stdout().lock(), "{line}");
        exit_if_broken_pipe(written);
        return;
    }
    let written = {
        let mut out = out();
        let written = match out.writer.as_mut() {
            Some(writer) => writeln!(writer, "{line}"),
            None => writeln!(
                out.writer
                    .insert(BufWriter::with_capacity(1 << 16, std::io::stdout())),
                "{line}"
            ),
        };
        if !out.pending {
            out.pending = true;
            static FLUSHER: std::sync::Once = std::sync::Once::new();
            FLUSHER.call_once(|| {
                std::thread::spawn(flusher);
            });
            PENDING.notify_one();
        }
        written
    };
    exit_if_broken_pipe(written);
}

/// The thread that writes out what [`say`] buffered: it sleeps until a
/// line is pending, lets more gather for [`FLUSH_EVERY`], then writes them
/// all at once. It is the one place lines leave the buffer while a stage
/// runs, whatever the stage is waiting in (a blocking `recv`, `select`, a
/// worker pool), so no loop has to remember to flush before it blocks.
fn flusher() {
    let mut out = out();
    loop {
        while !out.pending {
            out = PENDING.wait(out).unwrap_or_else(|e| e.into_inner());
        }
        drop(out);
        std::thread::sleep(FLUSH_EVERY);
        out = self::out();
        out.pending = false;
        if let Some(writer) = out.writer.as_mut() {
            exit_if_broken_pipe(writer.flush());
        }
    }
}

/// Ends the process when stdout's reader has gone (`| head` has the lines
/// it wanted): at once and quietly, killed by SIGPIPE as coreutils tools
/// are (the shell reports 141), not with a panic or an error message.
/// Rust ignores SIGPIPE so that a write to a closed socket is an error to
/// handle; on stdout there is nothing left to do but stop.
fn exit_if_broken_pipe(written: std::io::Result<()>) {
    if matches!(&written, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
        let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
        std::process::exit(128 + signal_hook::consts::SIGPIPE);
    }
}

/// Ctrl-C (SIGINT) or SIGTERM while a stage runs: what it has printed so
/// far is written out before the process ends, as Python flushes
/// `sys.stdout` on its way out of a KeyboardInterrupt, and the exit status
/// is the shell's 128 + signal (130 for Ctrl-C). Without this, the lines
/// [`say`] buffered for a pipe or a file would die with the process.
fn flush_on_interrupt() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return; // no handler: the default (die at once) stays
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            flush();
            std::process::exit(128 + signal);
        }
    });
}

/// Writes out what [`say`] buffered.
pub fn flush() {
    let mut out = out();
    out.pending = false;
    if let Some(writer) = out.writer.as_mut() {
        exit_if_broken_pipe(writer.flush());
    }
}

impl Stage {
    /// Checks the flags, raises the open-file limit and checks the run fits
    /// in it, starts the embedded server unless `--url` was given, turns
    /// tracing on for this thread if asked, and starts the clock (the
    /// tutorials' `start = time.time()`). Bad input exits here with a
    /// message, before any request is made.
    pub fn start(name: &'static str, args: Args, concurrency: Concurrency) -> Stage {
        if args.urls == 0 {
            fail("--urls must be at least 1");
        }
        if !(args.delay.is_finite() && (0.0..=3600.0).contains(&args.delay)) {
            fail(format!(
                "--delay must be between 0 and 3600 seconds, got {}",
                args.delay
            ));
        }
        if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 86400.0) {
            fail(format!(
                "--timeout must be more than 0 and at most 86400 seconds, got {}",
                args.timeout
            ));
        }
        if args.svg.is_some() && args.trace && args.urls > MAX_CHAIN_URLS {
            fail(format!(
                "--trace --svg draws one row per step of every URL: use --urls {MAX_CHAIN_URLS} or fewer (2 or 3 read best), got {}",
                args.urls
            ));
        }
        flush_on_interrupt();
        let urls: Vec<String> = match &args.url {
            Some(template) => {
                if !template.contains("{}") {
                    fail(format!(
                        "--url {template:?} has no {{}} to replace with 0..N-1 \
                         (e.g. 'http://127.0.0.1:5000/s?wd={{}}')"
                    ));
                }
                (0..args.urls)
                    .map(|i| template.replace("{}", &i.to_string()))
                    .collect()
            }
            None => Vec::new(),
        };
        // Check the URLs before starting anything.
        let mut targets = Vec::with_capacity(args.urls);
        for url in &urls {
            match Target::parse(url) {
                Ok(t) => targets.push(t),
                Err(e) => fail(format!("--url: {}", e.line())),
            }
        }

        check_open_files(&args, concurrency);

        let server = if args.url.is_none() {
            let config = ServerConfig {
                port: 0,
                delay: Duration::from_secs_f64(args.delay),
                ..ServerConfig::default()
            };
            let server = match server::spawn(config) {
                Ok(s) => s,
                Err(e) => fail(format!("cannot start the embedded server: {}", e.line())),
            };
            for i in 0..args.urls {
                let url = server.url(&format!("/s?wd={i}"));
                match Target::parse(&url) {
                    Ok(t) => targets.push(t),
                    Err(e) => fail(e.line()),
                }
            }
            Some(server)
        } else {
            None
        };

        trace::set_enabled(args.trace);
        let _ = FORMAT.set(args.format);
        trace::record(args.svg.is_some() && args.trace);
        let start = Instant::now();
        let index = targets
            .iter()
            .enumerate()
            .rev()
            .map(|(i, t)| (t.url.clone(), i))
            .collect();
        let _ = TIMELINE.set((Recorder::new(targets.len(), start), index));
        Stage {
            name,
            args,
            targets,
            server,
            start,
        }
    }

    /// `--timeout` as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.args.timeout)
    }

    /// Seconds since [`Stage::start`].
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Stops the clock; with `--format forcemain` prints its last line,
    /// `Request Times: N, Total Cost: S seconds`; then the `--json` line.
    ///
    /// Exit status: 0 when every URL got a result, 1 when some got an
    /// `error:` line, and also 1 (with a message) if some URL got no outcome
    /// at all, which would be a bug in the stage.
    pub fn finish(self) -> ExitCode {
        let seconds = self.elapsed();
        let traced = trace::take_recorded();
        trace::set_enabled(false);
        trace::record(false);
        let ok = OK.load(Ordering::SeqCst);
        let errors = ERRORS.load(Ordering::SeqCst);
        let n = self.targets.len();
        if self.args.format == Format::Forcemain {
            say(format_args!(
                "Request Times: {n}, Total Cost: {seconds:.6} seconds"
            ));
        }
        if self.args.json {
            let timeline = TIMELINE
                .get()
                .map_or("[]".to_string(), |(r, _)| r.to_json());
            say(format_args!(
                "{{\"stage\": \"{}\", \"requests\": {n}, \"ok\": {ok}, \"errors\": {errors}, \"seconds\": {seconds:.6}, \"timeline\": {timeline}}}",
                self.name
            ));
        }
        flush();
        if let Some(path) = &self.args.svg {
            let drawn = if self.args.trace {
                draw_chain(self.name, n, &traced, path)
            } else {
                draw_timeline(self.name, seconds, path)
            };
            if let Err(e) = drawn {
                eprintln!("error: --svg {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        if ok + errors != n {
            eprintln!(
                "error: {n} URLs but {} outcomes ({ok} results, {errors} errors)",
                ok + errors
            );
            return ExitCode::FAILURE;
        }
        if errors > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// `--trace --svg FILE`: the traced lines of the run, drawn as the chain
/// (`pyfiber::chain`), written to `path`.
fn draw_chain(
    stage: &str,
    urls: usize,
    traced: &[(f64, String)],
    path: &std::path::Path,
) -> std::io::Result<()> {
    let steps = pyfiber::chain::steps(traced, stage);
    let title = format!(
        "{stage}.py, {urls} URL{}: {} steps of the chain, top to bottom",
        if urls == 1 { "" } else { "s" },
        steps.len()
    );
    std::fs::write(path, pyfiber::chain::svg(&title, &steps)?)?;
    eprintln!("wrote {}: {} steps", path.display(), steps.len());
    Ok(())
}

/// `--svg FILE` without `--trace`: this stage's bar per request.
fn draw_timeline(stage: &str, seconds: f64, path: &std::path::Path) -> std::io::Result<()> {
    let requests = TIMELINE.get().map_or(Vec::new(), |(r, _)| r.requests());
    let picture = pyfiber::timeline::svg(&[pyfiber::timeline::StageTimeline {
        stage: stage.to_string(),
        mirrors: format!("{stage}.py"),
        seconds,
        requests,
    }])?;
    std::fs::write(path, picture)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Raises the soft open-file limit to the hard one (`resource.setrlimit`),
/// then refuses a run that cannot fit: better said now than
/// `Too many open files` halfway through.
fn check_open_files(args: &Args, concurrency: Concurrency) {
    let (soft, hard) = match net::raise_nofile_limit() {
        Ok(l) => l,
        Err(_) => net::nofile_limit(),
    };
    let in_flight = match concurrency {
        Concurrency::All => args.urls,
        Concurrency::AtMost(k) => k.min(args.urls),
    } as u64;
    // The embedded server runs in this process: one socket per client socket.
    let embedded = args.url.is_none();
    let needed = in_flight * if embedded { 2 } else { 1 } + FD_SLACK;
    if needed > soft {
        let server_part = if embedded {
            format!(" + {in_flight} server sockets (the embedded server shares this process)")
        } else {
            String::new()
        };
        let hint = if embedded {
            "; run the server in another process (cargo run --release --example slow_server) and pass --url, or lower --urls"
        } else {
            "; lower --urls or raise the hard limit (ulimit -Hn)"
        };
        fail(format!(
            "--urls {} needs about {needed} open files ({in_flight} client sockets{server_part} + {FD_SLACK}), \
             but the limit is {soft} (hard limit {hard}){hint}",
            args.urls
        ));
    }
    // One step of the descriptor table's growth now, before the clock,
    // instead of one RCU wait per doubling while the sockets are opened
    // (the flusher and signal threads make the process multi-threaded):
    // see `net::reserve_fds`.
    if let Err(e) = net::reserve_fds(needed as usize) {
        eprintln!("warning: cannot reserve {needed} descriptors: {}", e.line());
    }
}

/// One URL's outcome: its title (`None` when the page has no `<title>`),
/// or the exception's line (`Name: message`). It can cross threads and
/// processes (an [`Exception`] may hold a Python object, which stays on its
/// thread, as the runtime is single-threaded).
pub type Outcome = Result<Option<String>, String>;

/// The originals' `parse(url, response)` without the append: the title of
/// a whole response. A response that is not valid HTTP, or whose body is
/// not in its charset, is an error (the originals decode whatever comes
/// with `errors='ignore'`).
pub fn parse(response: &[u8]) -> Outcome {
    title_of(response).map_err(|e| e.line())
}

/// Python's `repr((url, title))`; a missing title is `''`, as the
/// originals' `search.group(1) if search else ''` makes it.
fn tuple_repr(url: &str, title: &Option<String>) -> String {
    let mut out = String::new();
    push_tuple_repr(&mut out, url, title);
    out
}

/// [`tuple_repr`] appended to `out`.
fn push_tuple_repr(out: &mut String, url: &str, title: &Option<String>) {
    out.push('(');
    out.push_str(&str_repr(url));
    out.push_str(", ");
    out.push_str(&str_repr(title.as_deref().unwrap_or("")));
    out.push(')');
}

/// Counts an outcome; in the `lines` forms prints its line at once.
/// Returns the title when the outcome is a result kept for `original`.
fn count(url: &str, outcome: Outcome) -> Option<Option<String>> {
    let original = format() == Format::Original;
    mark_finished(url, outcome.is_ok());
    match outcome {
        Ok(title) => {
            OK.fetch_add(1, Ordering::SeqCst);
            if original {
                return Some(title);
            }
            let title = title.as_deref().unwrap_or("None");
            say(format_args!("result: {url} {title}"));
        }
        Err(line) => {
            ERRORS.fetch_add(1, Ordering::SeqCst);
            if original {
                // Out of the original's way: its stdout stays what it prints.
                flush();
                eprintln!("error: {url} {line}");
            } else {
                say(format_args!("error: {url} {line}"));
            }
        }
    }
    None
}

/// process.py's `print((url, title))`, each as it completes (the other
/// formats: its `result:`/`error:` line).
pub fn print_result(url: &str, outcome: Outcome) {
    if let Some(title) = count(url, outcome) {
        say(format_args!("{}", tuple_repr(url, &title)));
    }
}

/// The originals' `results = []`: the `(url, title)` of every URL, in the
/// order the fetches finished. [`Results::append`] is
/// `results.append((url, title))` (thread.py's, under its `lock`);
/// [`Results::print`] is `print(results)`.
pub struct Results {
    list: Mutex<Vec<(String, Option<String>)>>,
}

/// The one `results` list of a run (`Spider.results`, a class attribute, in
/// the stages with a `Spider`).
pub static RESULTS: Results = Results {
    list: Mutex::new(Vec::new()),
};

impl Results {
    /// `results.append((url, title))`. An error is an outcome too: it is
    /// counted and printed (on stderr in `original`), never appended.
    pub fn append(&self, url: &str, outcome: Outcome) {
        if let Some(title) = count(url, outcome) {
            let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
            list.push((url.to_string(), title));
        }
    }

    /// `print(results)`: the list's Python repr, `[('http://...', 'title'), ...]`
    /// (nothing in the `lines` formats, which printed each as it came).
    pub fn print(&self) {
        if format() != Format::Original {
            return;
        }
        let list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        // One string for the whole list (it is inside the timed part of
        // the run): was a `String` per item, then `join`.
        let mut out = String::with_capacity(list.len() * 64 + 2);
        out.push('[');
        for (i, (u, t)) in list.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_tuple_repr(&mut out, u, t);
        }
        out.push(']');
        say(format_args!("{out}"));
    }
}

/// The title of a whole response: parse it, decode the body by its charset,
/// find `<title>`; `None` when the page has none.
pub fn title_of(raw: &[u8]) -> PyResult<Option<String>> {
    let response = net::Response::parse(raw)?;
    let html = response.text()?;
    Ok(net::title(&html))
}

/// The most bytes one response may have before its fetch gives up with
/// [`too_large`]: 16 MiB, the crawler's `max_body`. Without a cap the
/// tutorials' `response += chunk` holds whatever the server sends (100 MiB
/// for `/fault/huge`, and as many of those as URLs in flight).
pub const MAX_RESPONSE: usize = 16 << 20;

/// `ResponseTooLarge: response exceeds the limit of N bytes`, the error of a
/// response past [`MAX_RESPONSE`] (the crawler raises the same).
pub fn too_large() -> Exception {
    Exception::user(
        "ResponseTooLarge",
        format!("response exceeds the limit of {MAX_RESPONSE} bytes"),
    )
}

/// `response += chunk`, refusing to grow past [`MAX_RESPONSE`].
pub fn append_chunk(response: &mut Vec<u8>, chunk: &[u8]) -> PyResult<()> {
    if response.len() + chunk.len() > MAX_RESPONSE {
        return Err(too_large());
    }
    response.extend_from_slice(chunk);
    Ok(())
}

/// `sock.recv(4096)` on a socket with a timeout: the wait running out is
/// Python's `TimeoutError: timed out`, not the `EAGAIN` the OS reports.
pub fn recv_timed(sock: &Socket) -> PyResult<Vec<u8>> {
    match sock.recv(4096) {
        Err(e) if e.is_instance(&BlockingIOError) => Err(timed_out()),
        other => other,
    }
}

/// `TimeoutError: timed out`, what a socket with `settimeout` raises.
pub fn timed_out() -> Exception {
    Exception::TimeoutError(OsError::msg("timed out"))
}

/// The blocking stages' `blocking_request()` (sync.py, process.py,
/// thread.py): connect, send the GET, `recv(4096)` until `b''`. Every call
/// may block; `sock.settimeout(...)` bounds each one.
///
/// `timeout` is a deadline for the whole request, as in the event-loop
/// stages: before each call the socket's timeout is set to what is left of
/// it. (Python's `settimeout` alone bounds each call, so a server trickling
/// one byte at a time, `/fault/trickle`, would hold the request for as long
/// as it likes.) A response past [`MAX_RESPONSE`] is [`too_large`].
pub fn blocking_request(target: &Target, timeout: Duration) -> PyResult<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    // sock.settimeout(deadline - time.monotonic()), or TimeoutError if none is left.
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(timed_out)
    };
    mark(&target.url, Mark::Started);
    let sock = Socket::new()?;
    let raw = sock.as_socket2();
    // Blocks until the connection is made.
    raw.connect_timeout(&target.addr.into(), remaining()?)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => timed_out(),
            _ => Exception::from(e),
        })?;
    mark(&target.url, Mark::Connected);
    raw.set_write_timeout(Some(remaining()?))?;
    sock.sendall(target.request().as_bytes())
        .except(&BlockingIOError, |_| Err(timed_out()))?;
    let mut response = Vec::new();
    // Blocks until the server answers (or closes).
    loop {
        raw.set_read_timeout(Some(remaining()?))?;
        let chunk = recv_timed(&sock)?;
        if chunk.is_empty() {
            break;
        }
        mark(&target.url, Mark::FirstByte);
        append_chunk(&mut response, &chunk)?;
    }
    Ok(response)
}

/// The originals' `urls` list, which each finished fetch `remove`s its URL
/// from. A `VecDeque` is still a list (ordered, `remove` takes out the
/// first equal item), but it moves the shorter side of the gap: answers come
/// back about in the order the requests went out, so the URL removed is
/// near the front, and a `Vec` moved the whole tail after it each time
/// (24 bytes a `String`). Measured at 5,000 URLs: 300 MB of `memmove`,
/// 3.5 % of the generator stage's CPU samples (`perf record`), now none.
pub type UrlList = std::collections::VecDeque<String>;

/// Not in the originals: how many fetches an event-loop stage starts before
/// it gives the loop one turn that does not wait. The originals start every
/// fetch (connect included) before the loop serves any; a request's
/// `--timeout` counts from its own start, and with 19,900 URLs the kernel
/// spends 31 s on the connects, so the first requests used to time out
/// waiting for the others to start. After each batch, the requests already
/// started get their turn (GET sent, answer read), as asyncio code does with
/// `await asyncio.sleep(0)` between `create_task` calls. Ten URLs (the
/// traced runs) fit in one batch: their steps are the originals'.
pub const START_BATCH: usize = 64;

/// Not in the originals: after every [`START_BATCH`] fetches started, one
/// turn of the generator and yield_from stages' `event_loop()` that does
/// not wait (`select(0)`, the ready callbacks, the due timers), so the
/// fetches started first are served while main connects the rest. A failed
/// `select` is left for `event_loop()` to report. (callback's loop passes
/// the fd to its callbacks and has its own.)
pub fn serve_started() {
    let selector = pyfiber::event_loop::selector();
    let timers = pyfiber::get_event_loop();
    let Ok(events) = selector.select(Some(Duration::ZERO)) else {
        return;
    };
    for (key, _mask) in events {
        if timers.still_registered(&key) {
            let callback = key.data;
            callback();
        }
    }
    timers.run_due_timers();
}

/// `os.cpu_count()`: forcemain's pool size (`--workers cpu`).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--workers N|cpu` of the `process` and `thread` stages: the originals'
/// `workers = 10`, or forcemain's `cpu_count()`.
#[derive(Clone, Copy, Debug)]
pub struct Workers(pub usize);

impl std::str::FromStr for Workers {
    type Err = String;
    fn from_str(s: &str) -> Result<Workers, String> {
        if s == "cpu" {
            return Ok(Workers(cpu_count()));
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(Workers(n)),
            _ => Err(format!(
                "expected a number of workers from 1 to 1024, or cpu, got {s:?}"
            )),
        }
    }
}
