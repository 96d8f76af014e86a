//! `no_blocking.py`: non-blocking sockets, and nothing to do while waiting.
//!
//! Why this exists: it is the rung that shows a non-blocking socket is not
//! enough. `setblocking(False)` makes `connect`, `send` and `recv` return at
//! once, raising `BlockingIOError` when they would have waited; but the
//! program has nothing else to do, so it catches the error and tries again,
//! in a busy loop, until that one URL is done, then starts the next. It
//! takes as long as `sync` (N × delay) while burning a CPU core. The
//! `callback` stage fixes it by letting the OS say when a socket is ready.
//!
//! ```text
//! cargo run --release --example no_blocking -- --urls 10 --delay 1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use pyfiber::net::Socket;
use pyfiber::{Exception, PyResult};

/// `def unblocking_request()`: the seed's function; every wait is a retry
/// loop around `BlockingIOError`. The `--timeout` check inside each loop
/// is this port's addition.
fn unblocking_request(target: &common::Target, timeout: Duration) -> PyResult<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let check = || {
        if Instant::now() >= deadline {
            Err(common::timed_out())
        } else {
            Ok(())
        }
    };
    let sock = Socket::new()?;
    // Every later call on this socket returns at once.
    sock.setblocking(false)?;
    match sock.connect(target.addr) {
        // "Operation now in progress": the connect goes on without us.
        Ok(()) | Err(Exception::BlockingIOError(_)) => {}
        Err(e) => return Err(e),
    }
    let request = target.request();
    // We cannot know when the connection is made: keep trying to send.
    loop {
        match sock.send(request.as_bytes()) {
            Ok(_) => break,
            Err(Exception::BlockingIOError(_)) => check()?,
            Err(e) => return Err(e),
        }
    }
    let mut response = Vec::new();
    // We cannot know when the answer comes: keep trying to receive.
    loop {
        match sock.recv(4096) {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => common::append_chunk(&mut response, &chunk)?,
            Err(Exception::BlockingIOError(_)) => check()?,
            Err(e) => return Err(e),
        }
    }
    Ok(response)
}

fn main() -> ExitCode {
    let stage = common::Stage::start(
        "no_blocking",
        common::parse_args(),
        common::Concurrency::AtMost(1),
    );
    // One URL after another, as in the seed.
    for target in &stage.targets {
        let response = unblocking_request(target, stage.timeout());
        common::report_response(&target.url, response);
    }
    stage.finish()
}
