"""socket_server_async.py: the echo server on a selector loop, in two styles.

socket_server_sync.py serves one client at a time because every call blocks.
Here nothing blocks: the sockets are non-blocking, one loop waits in
selector.select() for whichever socket is ready, and each connection's state
lives either in the callbacks registered for it or in a suspended generator.

    --style callbacks   the tutorials' callbacks: on_accept, on_read and
                        on_write, switching a connection's registration
                        between EVENT_READ and EVENT_WRITE with modify()
    --style coroutines  one generator coroutine per connection, driven by the
                        tutorials' Future and Task: handle() reads like the
                        blocking server's loop, with `yield from` where it
                        would have blocked

Both print the same lines as the blocking server, plus `closing ...`.
When accept() fails for lack of file descriptors (EMFILE), the server says
so, stops accepting for ACCEPT_RETRY_DELAY seconds (as asyncio does) and
keeps serving the connections it has.

    python3 examples/python/socket_server_async.py [--port 8888] [--style callbacks|coroutines]
"""

import argparse
import errno
import functools
import heapq
import itertools
import resource
import selectors
import socket
import sys
import time

from selectors import EVENT_READ, EVENT_WRITE

selector = selectors.DefaultSelector()
# How long to stop accepting after accept() ran out of descriptors.
ACCEPT_RETRY_DELAY = 0.1
# accept() errors that mean "out of resources", not "this client failed".
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

quiet = False
# Connections accepted and not yet closed.
open_connections = 0
# Whether accept() has failed for lack of resources since the last success:
# the failure is logged once, not every ACCEPT_RETRY_DELAY.
accept_paused = False

# The loop's timers: (when, seq, callback).
timers = []
timer_seq = itertools.count()


def call_later(delay, callback):
    """loop.call_later(): run callback once delay seconds have passed."""
    heapq.heappush(timers, (time.monotonic() + delay, next(timer_seq), callback))


def loop():
    """The tutorials' loop(), plus timers: wait for a ready socket or the
    next timer, then run what is due."""
    while True:
        timeout = None
        if timers:
            timeout = max(0.0, timers[0][0] - time.monotonic())
        events = selector.select(timeout)
        for event_key, event_mask in events:
            callback = event_key.data
            callback()
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, callback = heapq.heappop(timers)
            callback()


def log_error(addr, e):
    print(f'error on {addr}: {type(e).__name__}: {e}', file=sys.stderr)


def log_accept_paused(e):
    global accept_paused
    if not accept_paused:
        print(f'accept failed: {e} ({open_connections} connections open); '
              f'retrying every {ACCEPT_RETRY_DELAY} s', file=sys.stderr)
    accept_paused = True


def count_accepted(conn, addr):
    global open_connections, accept_paused
    if accept_paused:
        print(f'accepting again ({open_connections} connections open)', file=sys.stderr)
    accept_paused = False
    open_connections += 1
    if not quiet:
        print('accepted', conn, 'from', addr)


# ---------------------------------------------------------------- callbacks

def on_accept(sock):
    while True:
        try:
            conn, addr = sock.accept()
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno in OUT_OF_RESOURCES:
                # The pending clients stay in the backlog; stop listening for
                # them for a while instead of spinning on a socket that stays
                # readable.
                log_accept_paused(e)
                selector.unregister(sock)
                call_later(ACCEPT_RETRY_DELAY, functools.partial(
                    selector.register, sock, EVENT_READ, functools.partial(on_accept, sock)))
            else:
                print(f'accept failed: {e}', file=sys.stderr)
            return
        count_accepted(conn, addr)
        conn.setblocking(False)
        selector.register(conn, EVENT_READ, functools.partial(on_read, conn, addr))


def on_read(conn, addr):
    try:
        data = conn.recv(4096)
    except BlockingIOError:
        return
    except OSError as e:
        close_connection(conn, addr, e)
        return
    if not data:
        close_connection(conn, addr)
        return
    if not quiet:
        print('echoing', repr(data), 'to', conn)
    selector.modify(conn, EVENT_WRITE, functools.partial(on_write, conn, addr, data))


def on_write(conn, addr, data):
    try:
        sent = conn.send(data)
    except BlockingIOError:
        return
    except OSError as e:
        close_connection(conn, addr, e)
        return
    if sent < len(data):
        selector.modify(conn, EVENT_WRITE, functools.partial(on_write, conn, addr, data[sent:]))
    else:
        selector.modify(conn, EVENT_READ, functools.partial(on_read, conn, addr))


def close_connection(conn, addr, error=None):
    global open_connections
    if error is not None:
        log_error(addr, error)
    if not quiet:
        print('closing', addr)
    selector.unregister(conn)
    conn.close()
    open_connections -= 1


def serve_callbacks(sock):
    selector.register(sock, EVENT_READ, functools.partial(on_accept, sock))


# --------------------------------------------------------------- coroutines

class Future:
    """The tutorials' Future: a result to come, and who to tell."""

    def __init__(self):
        self.result = None
        self._callbacks = []

    def add_done_callback(self, fn):
        self._callbacks.append(fn)

    def set_result(self, result):
        self.result = result
        for fn in self._callbacks:
            fn(self)

    def __iter__(self):
        yield self
        return self.result


class Task:
    """The tutorials' Task: sends each future's result into the coroutine."""

    def __init__(self, coro):
        self.coro = coro
        f = Future()
        f.set_result(None)
        self.step(f)

    def step(self, future):
        try:
            next_future = self.coro.send(future.result)
        except StopIteration:
            return
        next_future.add_done_callback(self.step)


def wait_for(sock, events):
    """Suspend until sock is ready for events. The accept loop waits this
    way: while it sleeps after EMFILE, the listening socket must not be
    watched."""
    f = Future()
    selector.register(sock, events, lambda: f.set_result(None))
    yield from f
    selector.unregister(sock)


def sleep(delay):
    f = Future()
    call_later(delay, lambda: f.set_result(None))
    yield from f


def sock_accept(sock):
    while True:
        try:
            return sock.accept()
        except BlockingIOError:
            yield from wait_for(sock, EVENT_READ)


class Watched:
    """A connection's socket, registered with the selector once for as long
    as it is open (asyncio's transports keep their reader registered the
    same way). The selector callback settles whichever future the coroutine
    waits on now; switching between reading and writing is a modify().
    Registering and unregistering around every wait, as wait_for() does,
    would cost two epoll_ctl calls per echo."""

    def __init__(self, sock):
        self.sock = sock
        self.events = EVENT_READ
        self.waiter = None
        selector.register(sock, EVENT_READ, self.wake)

    def wake(self):
        f, self.waiter = self.waiter, None
        if f is not None:
            f.set_result(None)

    def wait_for(self, events):
        """Suspend until the socket is ready for events."""
        if events != self.events:
            selector.modify(self.sock, events, self.wake)
            self.events = events
        self.waiter = Future()
        yield from self.waiter

    def close(self):
        selector.unregister(self.sock)
        self.sock.close()


def sock_recv(conn, bufsize):
    """Wait until readable, then recv(), as the tutorials' fetch does."""
    while True:
        yield from conn.wait_for(EVENT_READ)
        try:
            return conn.sock.recv(bufsize)
        except BlockingIOError:
            pass


def sock_sendall(conn, data):
    """Send at once, and wait only for what the kernel would not take."""
    view = memoryview(data)
    while view:
        try:
            sent = conn.sock.send(view)
        except BlockingIOError:
            yield from conn.wait_for(EVENT_WRITE)
            continue
        view = view[sent:]


def handle(sock, addr):
    """One connection, written as if it were blocking."""
    global open_connections
    conn = Watched(sock)
    try:
        while True:
            data = yield from sock_recv(conn, 4096)
            if not data:
                break
            if not quiet:
                print('echoing', repr(data), 'to', sock)
            yield from sock_sendall(conn, data)
    except OSError as e:
        log_error(addr, e)
    finally:
        if not quiet:
            print('closing', addr)
        conn.close()
        open_connections -= 1


def server(sock):
    while True:
        try:
            conn, addr = yield from sock_accept(sock)
        except OSError as e:
            if e.errno in OUT_OF_RESOURCES:
                log_accept_paused(e)
                yield from sleep(ACCEPT_RETRY_DELAY)
            else:
                print(f'accept failed: {e}', file=sys.stderr)
            continue
        count_accepted(conn, addr)
        conn.setblocking(False)
        Task(handle(conn, addr))


def serve_coroutines(sock):
    Task(server(sock))


# --------------------------------------------------------------------- main

def parse_args():
    parser = argparse.ArgumentParser(
        description='Echo server on a selector loop, with callbacks or coroutines.')
    parser.add_argument('--port', type=int, default=8888,
                        help='port to listen on, on 127.0.0.1 (0 = any free port)')
    parser.add_argument('--style', choices=['callbacks', 'coroutines'], default='callbacks',
                        help='callbacks (on_accept/on_read/on_write) or one coroutine per connection')
    parser.add_argument('--quiet', action='store_true',
                        help="don't print a line per connection and per echo")
    parser.add_argument('--max-fds', type=int, metavar='N',
                        help='set the open-file soft limit to N (default: raise it to the hard limit)')
    args = parser.parse_args()
    if not 0 <= args.port <= 65535:
        parser.error(f'--port {args.port} is not a port (0..65535)')
    return parser, args


def set_fd_limit(parser, max_fds):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max_fds is None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return
    if max_fds < 16:
        parser.error(f'--max-fds {max_fds} is too low (at least 16)')
    if hard != resource.RLIM_INFINITY and max_fds > hard:
        parser.error(f'--max-fds {max_fds} is above the hard limit {hard}')
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, hard))


def main():
    global quiet
    parser, args = parse_args()
    set_fd_limit(parser, args.max_fds)
    quiet = args.quiet
    # print() to a pipe is block-buffered; a log is read line by line.
    sys.stdout.reconfigure(line_buffering=True)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(('127.0.0.1', args.port))
        sock.listen(4096)
    except OSError as e:
        print(f'could not listen on 127.0.0.1:{args.port}: {e}', file=sys.stderr)
        sys.exit(1)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    # Not the original's 'Running on http://localhost:8888/': TCP, not HTTP.
    print(f'Running on localhost:{port} (TCP echo, not HTTP: try nc localhost {port})')
    if args.style == 'callbacks':
        serve_callbacks(sock)
    else:
        serve_coroutines(sock)
    loop()


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        pass
