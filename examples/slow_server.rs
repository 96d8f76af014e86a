//! `slow_server`: the tutorials' local slow server on its own.
//!
//! Why this exists: the Python tutorials fetch from a server on
//! `127.0.0.1:5000` that waits one second before each answer. Every pyfiber
//! example starts that server inside itself; this one runs it alone, so the
//! Python twins (or `curl`, or a browser) can be aimed at it, and so a test
//! can hold ten thousand connections against it from another process.
//!
//! ```text
//! cargo run --release --example slow_server -- --port 5000 --delay 1
//! curl http://127.0.0.1:5000/s?wd=1
//! ```
//!
//! A client gets `--head-timeout` seconds (default 10) to send its request
//! head, and an answer that the client stops reading is dropped after
//! `--write-timeout` seconds (default 60) without progress.
//!
//! It prints `Running on http://127.0.0.1:PORT/ (delay S s)` once it listens,
//! and `served N requests, peak concurrency P` when it stops: after
//! `--duration` seconds, on end of standard input with `--stop-on-eof`, or on
//! Ctrl-C / SIGTERM.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use pyfiber::server::{spawn, Fault, ServerConfig};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The tutorials' slow local HTTP server (every answer after a delay).
#[derive(Parser, Debug)]
#[command(name = "slow_server")]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Seconds every answer waits.
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds, allow_negative_numbers = true)]
    delay: f64,
    /// Pages in the linked tree (`/` is page 0, `/N` for 1 <= N < pages).
    #[arg(long, default_value_t = 1111)]
    pages: usize,
    /// Links per tree page.
    #[arg(long, default_value_t = 10)]
    fanout: usize,
    /// A fault for every request: reset-headers, reset-body, stall,
    /// garbage, huge, not-utf8, trickle or close.
    #[arg(long, value_parser = parse_fault)]
    fault: Option<Fault>,
    /// Seconds a client may take to send its whole request head (counted
    /// from accept); then 408 and close. Stops slow-loris clients from
    /// holding every descriptor (nginx: client_header_timeout).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds, allow_negative_numbers = true)]
    head_timeout: f64,
    /// Seconds an answer may go without the client reading a byte of it;
    /// then the connection is closed (nginx: send_timeout).
    #[arg(long, default_value_t = 60.0, value_parser = parse_seconds, allow_negative_numbers = true)]
    write_timeout: f64,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds, allow_negative_numbers = true)]
    duration: Option<f64>,
    /// Stop when standard input reaches end of file (for a parent process).
    #[arg(long)]
    stop_on_eof: bool,
}

/// Seconds as a float: finite and not negative.
fn parse_seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?} seconds: must be finite and not negative"));
    }
    Ok(secs)
}

fn parse_fault(text: &str) -> Result<Fault, String> {
    text.parse::<Fault>().map_err(|e| e.to_string())
}

/// Why the server stopped.
enum Stop {
    Duration,
    Eof,
    Signal(i32),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let delay = Duration::from_secs_f64(args.delay);
    let server = match spawn(ServerConfig {
        port: args.port,
        delay,
        pages: args.pages,
        fanout: args.fanout,
        fault: args.fault,
        head_timeout: Duration::from_secs_f64(args.head_timeout),
        write_timeout: Duration::from_secs_f64(args.write_timeout),
    }) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("slow_server: {}", e.line());
            return ExitCode::FAILURE;
        }
    };
    println!("Running on {} (delay {} s)", server.url("/"), args.delay);
    if let Some(fault) = args.fault {
        println!("every request gets the fault {fault}");
    }
    let _ = std::io::stdout().flush();

    let (tx, rx) = mpsc::channel();
    if args.stop_on_eof {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = tx.send(Stop::Eof);
        });
    }
    match Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let _ = tx.send(Stop::Signal(signal));
                }
            });
        }
        Err(e) => eprintln!("slow_server: cannot catch SIGINT/SIGTERM: {e}"),
    }
    let why = match args.duration {
        Some(secs) => rx
            .recv_timeout(Duration::from_secs_f64(secs))
            .unwrap_or(Stop::Duration),
        None => rx.recv().unwrap_or(Stop::Eof),
    };
    let stats = server.stop();
    match why {
        Stop::Duration => {}
        Stop::Eof => eprintln!("slow_server: stdin closed, stopping"),
        Stop::Signal(n) => eprintln!("slow_server: signal {n}, stopping"),
    }
    println!(
        "served {} requests, peak concurrency {}",
        stats.requests, stats.peak_concurrency
    );
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}
