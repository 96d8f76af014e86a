"""callback.py: one thread, non-blocking sockets, a selector and callbacks.

Twin of examples/callback.rs (the 500 Lines crawler's callback version):
fetch starts the connect and registers `connected`; `connected` sends the
request and registers `read_response`; loop() sleeps in select() and runs
whichever callback is ready. --timeout: loop() also wakes for the nearest
deadline and ends the fetches past it with TimeoutError.

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
urls_todo = set()
stopped = False
deadlines = collections.deque()  # (when, fetcher), oldest first


class Fetcher:
    def __init__(self, target):
        self.target = target
        self.url = target.url
        self.response = b''
        self.sock = None
        self.done = False

    def fetch(self):
        try:
            self.sock = socket.socket()
            self.sock.setblocking(False)
            try:
                self.sock.connect(self.target.addr)
            except BlockingIOError:
                pass
            selector.register(self.sock.fileno(), EVENT_WRITE, self.connected)
        except OSError as e:
            self.finish(e)

    def connected(self, key, mask):
        try:
            selector.unregister(key.fd)
            # Writable means the connect finished, not that it worked.
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            request = self.target.request()
            self.sock.sendall(request.encode('ascii'))
            selector.register(key.fd, EVENT_READ, self.read_response)
        except OSError as e:
            self.finish(e)

    def read_response(self, key, mask):
        try:
            chunk = self.sock.recv(4096)
        except OSError as e:
            self.finish(e)
            return
        if chunk:
            self.response += chunk
        else:
            self.finish(self.response)

    def finish(self, outcome):
        global stopped
        if self.done:
            return
        self.done = True
        if self.sock is not None:
            if self.sock.fileno() in selector.get_map():
                selector.unregister(self.sock.fileno())
            self.sock.close()
        common.report_response(self.url, outcome)
        urls_todo.remove(self.url)
        if not urls_todo:
            stopped = True


def loop():
    while not stopped:
        while deadlines and deadlines[0][1].done:
            deadlines.popleft()
        if not selector.get_map() and not deadlines:
            break  # nothing left to wait for
        timeout = max(0.0, deadlines[0][0] - time.monotonic()) if deadlines else None
        events = selector.select(timeout)
        for event_key, event_mask in events:
            now = selector.get_map().get(event_key.fd)
            if now is not None and now.data == event_key.data:
                callback = event_key.data
                callback(event_key, event_mask)
        now = time.monotonic()
        while deadlines and deadlines[0][0] <= now:
            _, fetcher = deadlines.popleft()
            fetcher.finish(common.timed_out())


def main():
    args = common.make_parser(__doc__.splitlines()[0]).parse_args()
    stage = common.Stage('callback', args, common.ALL)
    urls_todo.update(t.url for t in stage.targets)
    for target in stage.targets:
        fetcher = Fetcher(target)
        deadlines.append((time.monotonic() + args.timeout, fetcher))
        fetcher.fetch()
    loop()
    return stage.finish()


if __name__ == '__main__':
    sys.exit(main())
