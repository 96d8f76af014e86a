//! `async_await.py`: native coroutines — `async fn` and `.await` over the
//! same selector the generator stages drive by hand.
//!
//! Why this exists: it is the last rung of the ladder. Compared with
//! `yield_from`, nothing here registers a socket, creates a `Future` or
//! steps a `Task`: `fetch` reads like `sync`'s `blocking_request`, top to
//! bottom, and every place it would block is an `.await`. What the earlier
//! stages wrote in each `fetch` now lives once in [`pyfiber::aio`] (seed
//! 002's list of what changed with asyncio):
//!
//! - no `yield` / `yield from`, but `async`/`.await`;
//! - no hand-made `loop()`, but `aio::run` (`loop.run_until_complete`);
//! - no explicit `selector.register`/`unregister`: the streams of
//!   `aio::open_connection` do it when a read or write would block;
//! - no explicit `Future` and `Task`: `aio::spawn` (`loop.create_task`) and
//!   `aio::gather` wrap them, and a `Waker` plays `Task.step`.
//!
//! The Python twin is `examples/python/async_await.py` (asyncio streams,
//! standard library only).
//!
//! ```text
//! cargo run --release --example async_await -- --urls 10 --delay 1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use pyfiber::{aio, Exception, PyResult};

/// `async def fetch(url)`: one GET over asyncio-style streams, returning
/// `(url, title)`. Each `.await` is where the generator stages had a
/// `yield` (and the register/unregister around it).
async fn fetch(target: common::Target) -> PyResult<(String, String)> {
    // reader, writer = await asyncio.open_connection(host, port)
    let (mut reader, mut writer) = aio::open_connection(&target.host, target.port).await?;
    // writer.write(get.encode('ascii')); await writer.drain()
    writer.write(target.request().as_bytes());
    writer.drain().await?;
    // response = await reader.read()   -- until EOF: HTTP/1.0, the server closes;
    // read in pieces (`reader.read(4096)`) so that a response past
    // common::MAX_RESPONSE stops at the limit instead of filling memory.
    let mut response = Vec::new();
    loop {
        let chunk = reader.read(4096).await?;
        if chunk.is_empty() {
            break;
        }
        common::append_chunk(&mut response, &chunk)?;
    }
    writer.close();
    let title = common::title_of(&response)?;
    Ok((target.url, title))
}

fn main() -> ExitCode {
    let stage = common::Stage::start(
        "async_await",
        common::parse_args(),
        common::Concurrency::All,
    );
    let timeout = stage.timeout();
    let targets = stage.targets.clone();

    // loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    let outcomes = aio::run(async move {
        // tasks = [loop.create_task(asyncio.wait_for(fetch(url), timeout)) for url in urls]
        let tasks: Vec<_> = targets
            .into_iter()
            .map(|target| {
                aio::spawn(async move {
                    aio::wait_for(fetch(target), timeout)
                        .await
                        // The same `TimeoutError: timed out` line as the
                        // other stages (asyncio's own has no message).
                        .map_err(|e| match e {
                            Exception::TimeoutError(_) => common::timed_out(),
                            e => e,
                        })
                })
            })
            .collect();
        Ok(aio::gather_return_exceptions(tasks).await)
    });

    // One line per URL, in the order given (gather keeps it).
    match outcomes {
        Ok(outcomes) => {
            for (target, outcome) in stage.targets.iter().zip(outcomes) {
                common::report(&target.url, outcome.map(|(_url, title)| title));
            }
        }
        Err(e) => {
            // The loop itself failed: every URL gets that as its outcome.
            eprintln!("error: the loop failed: {}", e.line());
            for target in &stage.targets {
                common::report(&target.url, Err(e.clone()));
            }
        }
    }
    stage.finish()
}
