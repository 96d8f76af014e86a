"""yield_from.py: the generator stage cut into sub-generators composed with `yield from`.

Twin of examples/yield_from.rs, which follows yuchaoshui/notes
Python异步并发/yield_from.py: connect, read and read_all are generators;
Spider.fetch delegates to them with `yield from`, and Future is
yield-from-able (Future.__iter__); event_loop() is written out. Python's `yield from` is always PEP 380's expansion, so
`--literal` (which picks that form in the Rust example) changes nothing here.

    python3 examples/python/yield_from.py --urls 10 --delay 1 --trace
"""

import itertools
import os
import socket
import sys
from selectors import EVENT_READ, EVENT_WRITE

import common
from common import short_repr, trace

loop = common.EventLoop()
selector = loop.selector
stopped = False
urls = []


class Future:
    """The tutorials' Future: a result, and who to tell when it is there."""

    _ids = itertools.count(1)

    def __init__(self):
        self.id = next(Future._ids)
        self.result = None
        self.exception = None
        self._done = False
        self._callbacks = []

    def add_done_callback(self, fn):
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def set_result(self, result):
        if self._done:
            trace('set_result Future-{} ignored: already done'.format(self.id))
            return
        trace('set_result Future-{} {}'.format(self.id, short_repr(result)))
        self.result = result
        self._settle()

    def set_exception(self, exc):
        # Not in the seed: lets a timeout raise inside the waiting coroutine.
        if self._done:
            return
        trace('set_exception Future-{} {}'.format(self.id, common.line(exc)))
        self.exception = exc
        self._settle()

    def _settle(self):
        self._done = True
        while self._callbacks:
            fn = self._callbacks.pop(0)
            fn(self)  # Task.step

    def __iter__(self):
        # `yield from f`: yield the future itself to the Task, and return
        # its result once the Task sends it back in.
        yield self
        if self.exception is not None:
            raise self.exception
        return self.result


class Task(Future):
    """The tutorials' Task. As in asyncio, a Task is itself a Future: it
    settles with the coroutine's return value."""

    _ids = itertools.count(1)

    def __init__(self, coro):
        super().__init__()
        self.task_id = next(Task._ids)
        self.coro = coro
        self.waiting_on = None
        f = Future()
        self.step(f)

    def step(self, future):
        self.waiting_on = None
        try:
            if future.exception is not None:
                trace('Task-{}.step throw {}'.format(self.task_id, common.line(future.exception)))
                next_future = self.coro.throw(future.exception)
            else:
                trace('Task-{}.step send {}'.format(self.task_id, short_repr(future.result)))
                next_future = self.coro.send(future.result)
        except StopIteration as e:
            trace('Task-{} done: StopIteration({})'.format(self.task_id, short_repr(e.value)))
            self.set_result(e.value)
            return
        except Exception as e:
            trace('Task-{} done: {}'.format(self.task_id, common.line(e)))
            self.set_exception(e)
            return
        trace('Task-{} yielded Future-{}'.format(self.task_id, next_future.id))
        self.waiting_on = next_future
        next_future.add_done_callback(self.step)


def connect(sock, address):
    future = Future()
    sock.setblocking(False)
    try:
        sock.connect(address)
    except BlockingIOError:
        pass

    def on_connected():
        future.set_result(None)

    selector.register(sock.fileno(), EVENT_WRITE, on_connected)
    try:
        yield from future
    finally:
        selector.unregister(sock.fileno())
    # Writable means the connect finished, not that it worked.
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def read(sock):
    future = Future()

    def on_readable():
        try:
            future.set_result(sock.recv(4096))
        except OSError as e:
            future.set_exception(e)

    selector.register(sock.fileno(), EVENT_READ, on_readable)
    try:
        chunk = yield from future
    finally:
        selector.unregister(sock.fileno())
    return chunk


def read_all(sock):
    response = []
    chunk = yield from read(sock)
    while chunk:
        response.append(chunk)
        chunk = yield from read(sock)
    return b''.join(response)


class Spider:
    """yield_from.py's Spider: one URL, its socket, its response."""

    def __init__(self, target):
        self.target = target
        self.url = target.url
        self.response = b''
        self.sock = socket.socket()

    def parse(self):
        try:
            title = common.title_of(self.response)
        except (ValueError, LookupError) as e:
            title = e
        common.report(self.url, title)

    def fetch(self):
        yield from connect(self.sock, self.target.addr)
        get = self.target.request()
        self.sock.sendall(get.encode('ascii'))
        self.response = yield from read_all(self.sock)
        remove_url(self.url)
        self.parse()


def remove_url(url):
    global stopped
    urls.remove(url)
    stopped = not urls


def event_loop():
    while not stopped:
        timeout = loop.select_timeout()
        if not selector.get_map() and timeout is None:
            break  # nothing left that could wake select(): it would wait forever
        for key, mask in selector.select(timeout):
            if loop.still_registered(key):
                callback = key.data
                callback()
        loop.run_due_timers()


def failed(spider, e):
    """Not in the original: a fetch that raised is its URL's outcome."""
    spider.sock.close()
    common.report(spider.url, e)
    remove_url(spider.url)


def watch(task, spider, timeout):
    """Not in the original: --timeout, and a task that raised is failed()."""
    def on_timeout():
        if task.waiting_on is not None:
            task.waiting_on.set_exception(common.timed_out())

    timer = loop.call_later(timeout, on_timeout)

    def done(task):
        timer.cancel()
        if task.exception is not None:
            failed(spider, task.exception)
        else:
            spider.sock.close()

    task.add_done_callback(done)


def main():
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument('--literal', action='store_true',
                        help="accepted for the Rust example's sake; Python's yield from is always literal")
    args = parser.parse_args()
    stage = common.Stage('yield_from', args, common.ALL)
    urls.extend(t.url for t in stage.targets)
    for i, target in enumerate(stage.targets):
        if i and i % common.START_BATCH == 0:
            common.serve_started(selector, loop)
        spider = Spider(target)
        task = Task(spider.fetch())
        watch(task, spider, args.timeout)
    event_loop()
    return stage.finish()


if __name__ == '__main__':
    sys.exit(main())
