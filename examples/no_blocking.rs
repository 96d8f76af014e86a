//! `no_blocking.py`: follows yuchaoshui/notes `Python异步并发/no_blocking.py`,
//! function by function and in the same order: `parse(url, response)`,
//! `fetch(url)` with its two retry loops, the main block and
//! `print(results)`.
//!
//! Why this exists: it is the rung that shows a non-blocking socket is not
//! enough. `setblocking(False)` makes `connect`, `send` and `recv` return at
//! once, raising `BlockingIOError` when they would have waited; but the
//! program has nothing else to do, so it catches the error and tries again,
//! in a busy loop, until that one URL is done, then starts the next. It
//! takes as long as `sync` (N × delay) while burning a CPU core. The
//! `callback` stage fixes it by letting the OS say when a socket is ready.
//!
//! Additions, and why: the `--timeout` check inside each retry loop (the
//! original spins for ever on a server that never answers), a response size
//! cap, and only `BlockingIOError` is retried (the original's
//! `except OSError: pass` would also spin on a refused connection); a
//! fetch that raised is an `error:` line on stderr and the run goes on.
//!
//! ```text
//! cargo run --release --example no_blocking -- --urls 10 --delay 1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use pyfiber::exception::BlockingIOError;
use pyfiber::net::Socket;
use pyfiber::PyResult;

/// `def parse(url, response)`: the title, appended to `results`.
fn parse(url: &str, response: &[u8]) {
    common::RESULTS.append(url, common::parse(response));
}

/// `def fetch(url)`: every wait is a retry loop around `BlockingIOError`.
fn fetch(target: &common::Target, timeout: Duration) -> PyResult<()> {
    let deadline = Instant::now() + timeout;
    let check = || {
        if Instant::now() >= deadline {
            Err(common::timed_out())
        } else {
            Ok(())
        }
    };
    common::mark(&target.url, common::Mark::Started);
    let sock = Socket::new()?;
    // Every later call on this socket returns at once.
    sock.setblocking(false)?;
    match sock.connect(target.addr) {
        // "Operation now in progress": the connect goes on without us.
        Ok(()) => {}
        Err(e) if e.is_instance(&BlockingIOError) => {}
        Err(e) => return Err(e),
    }
    let get = target.request();
    // We cannot know when the connection is made: keep trying to send.
    loop {
        match sock.send(get.as_bytes()) {
            Ok(_) => {
                common::mark(&target.url, common::Mark::Connected);
                break;
            }
            Err(e) if e.is_instance(&BlockingIOError) => check()?,
            Err(e) => return Err(e),
        }
    }
    let mut response = Vec::new();
    // We cannot know when the answer comes: keep trying to receive.
    loop {
        match sock.recv(4096) {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => {
                common::mark(&target.url, common::Mark::FirstByte);
                common::append_chunk(&mut response, &chunk)?
            }
            Err(e) if e.is_instance(&BlockingIOError) => check()?,
            Err(e) => return Err(e),
        }
    }
    parse(&target.url, &response);
    Ok(())
}

fn main() -> ExitCode {
    let stage = common::Stage::start(
        "no_blocking",
        common::parse_args(),
        common::Concurrency::AtMost(1),
    );
    for target in &stage.targets {
        if let Err(e) = fetch(target, stage.timeout()) {
            common::RESULTS.append(&target.url, Err(e.line()));
        }
    }
    common::RESULTS.print();
    stage.finish()
}
