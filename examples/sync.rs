//! `sync.py`: fetch the URLs one after another with blocking sockets.
//!
//! Why this exists: it is the ladder's first rung and its yardstick. Each
//! `blocking_request` waits for its whole answer before the next one starts,
//! so N URLs from a server that takes `delay` seconds per answer take at
//! least N × delay: the program spends nearly all of that time asleep in
//! `connect` and `recv`. Every later stage is measured against this one.
//!
//! ```text
//! cargo run --release --example sync -- --urls 10 --delay 1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

fn main() -> ExitCode {
    let stage = common::Stage::start("sync", common::parse_args(), common::Concurrency::AtMost(1));
    // results = []
    // for url in urls: results.append(blocking_request(url))
    for target in &stage.targets {
        // `blocking_request` lives in common.rs (and common.py): sync, process
        // and thread call the very same function, as the seeds copy it.
        let response = common::blocking_request(target, stage.timeout());
        common::report_response(&target.url, response);
    }
    stage.finish()
}
