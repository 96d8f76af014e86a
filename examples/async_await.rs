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
//! It follows yuchaoshui/notes `Python异步并发/async_await.py` in its
//! names, order and output: `results`, `parse(url, response)`,
//! `async fn fetch(url)` ending in `parse`, the main block gathering every
//! fetch and `print(results)` (in completion order). Renames and
//! additions, and why: the original's HTTP client is aiohttp's
//! `ClientSession.get`; here it is `aio::open_connection` and the GET
//! written out, as the Python twin (`examples/python/async_await.py`,
//! asyncio streams, standard library only) does too; each fetch has a
//! `wait_for` deadline (`--timeout`), and a fetch that raised is an
//! `error:` line on stderr.
//!
//! ```text
//! cargo run --release --example async_await -- --urls 10 --delay 1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Duration;

use pyfiber::exception::TimeoutError;
use pyfiber::{aio, PyResult};

/// `def parse(url, response)`: the title, appended to `results`.
fn parse(url: &str, response: &[u8]) {
    common::RESULTS.append(url, common::parse(response));
}

/// `async def fetch(url)`: one GET over asyncio-style streams, then `parse`.
/// Each `.await` is where the generator stages had a `yield` (and the
/// register/unregister around it).
async fn fetch(target: common::Target) -> PyResult<()> {
    common::mark(&target.url, common::Mark::Started);
    // reader, writer = await asyncio.open_connection(host, port)
    let (mut reader, mut writer) = aio::open_connection(&target.host, target.port).await?;
    common::mark(&target.url, common::Mark::Connected);
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
        common::mark(&target.url, common::Mark::FirstByte);
        common::append_chunk(&mut response, &chunk)?;
    }
    writer.close();
    parse(&target.url, &response);
    Ok(())
}

fn main() -> ExitCode {
    let stage = common::Stage::start(
        "async_await",
        common::parse_args(),
        common::Concurrency::All,
    );
    let timeout = stage.timeout();
    let targets = stage.targets.clone();

    // loop.run_until_complete(asyncio.gather(*tasks))
    let ran = aio::run(async move {
        // tasks = [fetch(target) for target in urls], each with a deadline
        let mut tasks = Vec::with_capacity(targets.len());
        for (i, target) in targets.into_iter().enumerate() {
            // Not in the original: `await asyncio.sleep(0)` after every
            // START_BATCH tasks, so the loop runs the first ones (their
            // wait_for clock starts then, and their connect) and serves
            // them while the rest are made; see common::START_BATCH.
            if i > 0 && i % common::START_BATCH == 0 {
                aio::sleep(Duration::ZERO).await;
            }
            tasks.push(aio::spawn(async move {
                let url = target.url.clone();
                let fetched = aio::wait_for(fetch(target), timeout).await;
                if let Err(e) = fetched {
                    // The same `TimeoutError: timed out` line as the
                    // other stages (asyncio's own has no message).
                    let e = if e.is_instance(&TimeoutError) {
                        common::timed_out()
                    } else {
                        e
                    };
                    common::RESULTS.append(&url, Err(e.line()));
                }
                Ok(())
            }));
        }
        aio::gather_return_exceptions(tasks).await;
        Ok(())
    });
    if let Err(e) = ran {
        // The loop itself failed: stage.finish() says which URLs have no outcome.
        eprintln!("error: the loop failed: {}", e.line());
    }
    common::RESULTS.print();
    stage.finish()
}
