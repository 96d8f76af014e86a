"""callback.py: one thread, non-blocking sockets, a selector and callbacks.

Twin of examples/callback.rs, which follows yuchaoshui/notes
Python异步并发/callback.py: Spider.fetch starts the connect and registers
`connected`; `connected` sends the request and registers `read_response`;
at b'' read_response unregisters, removes its URL from `urls` and calls
parse; event_loop() sleeps in select() and runs whichever callback is
ready. --timeout: event_loop() also wakes for the nearest deadline and ends
the fetches past it with TimeoutError (Spider.failed).

    python3 examples/python/callback.py --urls 10 --delay 1 [--trace]
"""

import collections
import os
import socket
import sys
import time
from selectors import EVENT_READ, EVENT_WRITE

import common

selector = common.TracingSelector()
urls = []
stopped = False
deadlines = collections.deque()  # (when, spider), oldest first


def remove_url(url):
    global stopped
    urls.remove(url)
    stopped = not urls


class Spider:
    def __init__(self, target):
        self.target = target
        self.url = target.url
        self.response = b''
        self.sock = socket.socket()
        self.done = False  # not in the original: whether the URL has its outcome

    def parse(self):
        self.done = True
        try:
            title = common.title_of(self.response)
        except (ValueError, LookupError) as e:
            title = e
        common.report(self.url, title)

    def fetch(self):
        try:
            self.sock.setblocking(False)
            try:
                self.sock.connect(self.target.addr)
            except BlockingIOError:
                pass
            selector.register(self.sock.fileno(), EVENT_WRITE, self.connected)
        except OSError as e:
            self.failed(e)

    def connected(self, key):
        try:
            selector.unregister(key.fd)
            # Writable means the connect finished, not that it worked.
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            get = self.target.request()
            self.sock.sendall(get.encode('ascii'))
            selector.register(key.fd, EVENT_READ, self.read_response)
        except OSError as e:
            self.failed(e)

    def read_response(self, key):
        try:
            chunk = self.sock.recv(4096)
        except OSError as e:
            self.failed(e)
            return
        if chunk:
            self.response += chunk
        else:
            selector.unregister(key.fd)
            self.sock.close()
            remove_url(self.url)
            self.parse()

    def failed(self, e):
        """Not in the original: a fetch that raised (or ran out of time)."""
        if self.done:
            return
        self.done = True
        if self.sock.fileno() in selector.get_map():
            selector.unregister(self.sock.fileno())
        self.sock.close()
        common.report(self.url, e)
        remove_url(self.url)


def event_loop():
    while not stopped:
        while deadlines and deadlines[0][1].done:
            deadlines.popleft()
        if not selector.get_map() and not deadlines:
            break  # nothing left to wait for
        timeout = max(0.0, deadlines[0][0] - time.monotonic()) if deadlines else None
        turn(timeout)


def turn(timeout):
    """One turn of event_loop(): select(), the ready callbacks, the deadlines passed."""
    for key, mask in selector.select(timeout):
        now = selector.get_map().get(key.fd)
        if now is not None and now.data == key.data:
            callback = key.data
            callback(key)
    now = time.monotonic()
    while deadlines and deadlines[0][0] <= now:
        _, spider = deadlines.popleft()
        spider.failed(common.timed_out())


def main():
    args = common.make_parser(__doc__.splitlines()[0]).parse_args()
    stage = common.Stage('callback', args, common.ALL)
    urls.extend(t.url for t in stage.targets)
    for i, target in enumerate(stage.targets):
        if i and i % common.START_BATCH == 0:
            turn(0)  # not in the original: serve the started ones (common.START_BATCH)
        spider = Spider(target)
        deadlines.append((time.monotonic() + args.timeout, spider))
        spider.fetch()
    event_loop()
    return stage.finish()


if __name__ == '__main__':
    sys.exit(main())
