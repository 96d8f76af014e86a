//! `sync.py`: follows yuchaoshui/notes `Python异步并发/sync.py`, function by
//! function and in the same order: `urls`, `results`, `parse(url,
//! response)`, `fetch(url)`, the main block's `for target in urls:
//! fetch(target)` and `print(results)`.
//!
//! Why this exists: it is the ladder's first rung and its yardstick. Each
//! `fetch` waits for its whole answer before the next one starts, so N URLs
//! from a server that takes `delay` seconds per answer take at least
//! N × delay: the program spends nearly all of that time asleep in
//! `connect` and `recv`. Every later stage is measured against this one.
//!
//! Renames and additions, and why:
//! - `fetch`'s socket lines (connect, send the GET, `recv(4096)` until
//!   `b''`) are `common::blocking_request`, shared with `process` and
//!   `thread`, whose originals repeat them word for word; it adds a
//!   deadline (`--timeout`) and a response size cap;
//! - `results` is `common::RESULTS` (one home for how it is printed);
//! - a fetch that raised is this URL's outcome, an `error:` line on
//!   stderr, and the run goes on (in Python it would end the program).
//!
//! ```text
//! cargo run --release --example sync -- --urls 10 --delay 1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Duration;

use pyfiber::PyResult;

/// `def parse(url, response)`: the title, appended to `results`.
fn parse(url: &str, response: &[u8]) {
    common::RESULTS.append(url, common::parse(response));
}

/// `def fetch(url)`: one blocking GET, then `parse`.
fn fetch(target: &common::Target, timeout: Duration) -> PyResult<()> {
    let response = common::blocking_request(target, timeout)?;
    parse(&target.url, &response);
    Ok(())
}

fn main() -> ExitCode {
    let stage = common::Stage::start("sync", common::parse_args(), common::Concurrency::AtMost(1));
    for target in &stage.targets {
        if let Err(e) = fetch(target, stage.timeout()) {
            common::RESULTS.append(&target.url, Err(e.line()));
        }
    }
    common::RESULTS.print();
    stage.finish()
}
