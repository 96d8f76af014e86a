"""async_await.py: native coroutines, `async def` and `await`, over asyncio streams.

Twin of examples/async_await.rs. Compared with yield_from.py nothing here
registers a socket, makes a Future or steps a Task: asyncio.open_connection's
streams register and unregister the socket when a read or a write would
block, loop.create_task and asyncio.gather wrap the Task and Future, and
asyncio.run is the loop. Standard library only (the seeds use aiohttp).

--trace prints the selector's register/modify/unregister/select lines, as the
Rust example does (asyncio's loop takes any selector). asyncio registers its
own self-pipe too, the trick pyfiber::aio copies for wake-ups from other
threads.

    python3 examples/python/async_await.py --urls 10 --delay 1
"""

import asyncio
import selectors
import sys

import common
from common import trace


class TracingSelector(selectors.DefaultSelector):
    """The selector asyncio's loop runs on, printing pyfiber's trace lines."""

    NAMES = common.TracingSelector.NAMES

    def register(self, fileobj, events, data=None):
        key = super().register(fileobj, events, data)
        trace('register fd={} {}'.format(key.fd, self.NAMES[events]))
        return key

    def unregister(self, fileobj):
        key = super().unregister(fileobj)
        trace('unregister fd={}'.format(key.fd))
        return key

    def modify(self, fileobj, events, data=None):
        key = super().modify(fileobj, events, data)
        trace('modify fd={} {}'.format(key.fd, self.NAMES[events]))
        return key

    def select(self, timeout=None):
        events = super().select(timeout)
        trace('select -> [{}]'.format(', '.join('fd={}'.format(key.fd) for key, _ in events)))
        return events


async def fetch(target):
    """One GET over asyncio streams; returns (url, title). Each `await` is
    where the generator stages had a `yield` (and the register/unregister
    around it)."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(target.request().encode('ascii'))
        await writer.drain()
        response = await reader.read()  # until EOF: HTTP/1.0, the server closes
    finally:
        writer.close()
    return target.url, common.title_of(response)


async def fetch_with_timeout(target, timeout):
    try:
        return await asyncio.wait_for(fetch(target), timeout)
    except TimeoutError:
        # The same `TimeoutError: timed out` line as the other stages
        # (asyncio's own has no message).
        raise common.timed_out() from None


async def main(stage):
    loop = asyncio.get_running_loop()
    tasks = []
    for i, target in enumerate(stage.targets):
        # Not in the original: let the loop run (and serve) the tasks made so
        # far after every common.START_BATCH; see common.START_BATCH.
        if i and i % common.START_BATCH == 0:
            await asyncio.sleep(0)
        tasks.append(loop.create_task(fetch_with_timeout(target, stage.args.timeout)))
    return await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == '__main__':
    stage = common.Stage('async_await', common.make_parser(__doc__).parse_args(), common.ALL)
    try:
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(TracingSelector())) as runner:
            outcomes = runner.run(main(stage))
    except Exception as e:  # the loop itself failed: every URL gets that as its outcome
        print('error: the loop failed: {}'.format(common.line(e)), file=sys.stderr)
        outcomes = [e] * len(stage.targets)
    # One line per URL, in the order given (gather keeps it).
    for target, outcome in zip(stage.targets, outcomes):
        common.report(target.url, outcome if isinstance(outcome, BaseException) else outcome[1])
    sys.exit(stage.finish())
