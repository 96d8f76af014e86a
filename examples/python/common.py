"""common.py: what every Python twin of the ladder shares (twin of examples/common/mod.rs).

Why this exists: the originals' files differ in one thing, how they wait for
the network; the rest (which URLs, the slow server, `results` and how it is
printed, the flags) is the same in all of them, and lives here once.
`--format original` (the default) prints what the originals print,
`print(results)` (process: one `(url, title)` per line as each completes),
with errors on stderr; `lines` one `result:`/`error:` line per URL;
`forcemain` those and `Request Times: N, Total Cost: S seconds`. It also holds `EventLoop`, the twin of pyfiber's event_loop module
(a selector, `call_later` timers and `run_once`), and the `--trace` helpers,
which print the same lines as the Rust library, so the two traces can be
diffed.

    stage = common.Stage('generator', common.make_parser(__doc__).parse_args(), common.ALL)
    for target in stage.targets: ... common.report(target.url, title_or_exception)
    sys.exit(stage.finish())   # print(results), then --json
"""

import argparse
import heapq
import itertools
import os
import re
import resource
import selectors
import socket
import sys
import threading
import time
import urllib.parse

ALL = None  # concurrency: every URL at once (the event-loop stages)
# Not in the originals: how many fetches an event-loop stage starts before it
# gives the loop one turn that does not wait (pyfiber's common::START_BATCH).
# A request's --timeout counts from its own start; the originals start every
# fetch before the loop serves any, so with thousands of URLs the first ones
# timed out waiting for the others' connects. After each batch the started
# ones are served, as `await asyncio.sleep(0)` between create_task calls does.
START_BATCH = 64
FD_SLACK = 64

_trace = False
_ok = 0
_errors = 0
_format = 'original'
results = []


def make_parser(description):
    """The flags every stage takes (the Rust examples take the same)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--urls', type=int, default=10, metavar='N',
                        help='how many URLs to fetch: /s?wd=0 ... /s?wd=N-1')
    parser.add_argument('--delay', type=float, default=1.0, metavar='S',
                        help='seconds the local server waits before each answer')
    parser.add_argument('--url', metavar='TEMPLATE',
                        help="fetch from another server: {} is replaced by 0..N-1, "
                             "e.g. 'http://127.0.0.1:5000/s?wd={}'")
    parser.add_argument('--trace', action='store_true', help='print every step of the machinery')
    parser.add_argument('--json', action='store_true', help='end with one JSON line')
    parser.add_argument('--timeout', type=float, default=10.0, metavar='S',
                        help='seconds one request may take before TimeoutError')
    parser.add_argument('--format', choices=['original', 'lines', 'forcemain'], default='original',
                        help="what to print: the original's print(results), one line per URL, "
                             "or those lines and the Request Times line")
    return parser


def workers_arg(value):
    """--workers N|cpu: the originals' workers = 10, or forcemain's cpu_count()."""
    if value == 'cpu':
        return cpu_count()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 1024:
        raise argparse.ArgumentTypeError(
            'expected a number of workers from 1 to 1024, or cpu, got {!r}'.format(value))
    return n


def fail(message):
    """Prints `error: message` on stderr and exits 2, before anything started."""
    print('error: {}'.format(message), file=sys.stderr)
    sys.exit(2)


def line(exc):
    """The last line of a traceback: `Name: message`, or `Name` alone."""
    msg = str(exc)
    name = type(exc).__name__
    return '{}: {}'.format(name, msg) if msg else name


FLUSH_EVERY = 0.05  # seconds a line may wait in stdout's buffer (pyfiber's common::FLUSH_EVERY)
_pending = threading.Event()
_flusher = None


def say(text):
    """print(text): buffered when stdout is a pipe or a file, as print is,
    and written out by _flush_soon at most FLUSH_EVERY later, so a reader
    at the other end (`| head`) sees each line promptly while a burst still
    leaves in a few large writes. A closed pipe ends the process quietly."""
    global _flusher
    try:
        print(text)
    except BrokenPipeError:
        _broken_pipe()
    if not _pending.is_set():
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_soon, daemon=True)
            _flusher.start()
        _pending.set()


def _flush_soon():
    """The thread that writes out what say() buffered: it sleeps until a line
    is pending, lets more gather for FLUSH_EVERY, then flushes them all."""
    while True:
        _pending.wait()
        time.sleep(FLUSH_EVERY)
        _pending.clear()
        flush()


def flush():
    """sys.stdout.flush(), ending the process if the reader has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _broken_pipe()


def _broken_pipe():
    """stdout's reader has gone (`| head` has what it wanted): stop now and
    quietly, with the status a shell shows for a tool killed by SIGPIPE
    (141), and no BrokenPipeError traceback, neither now nor at exit when
    Python would flush stdout again (os._exit skips that). Python ignores
    SIGPIPE so that sockets raise BrokenPipeError instead, and only the main
    thread may change that, so the status is an exit code, not the signal."""
    os._exit(128 + 13)  # 13: SIGPIPE


def trace(text):
    """Prints `trace: text` when --trace is on."""
    if _trace:
        say('trace: ' + text)


def short_repr(value):
    """repr() cut to one line, as pyfiber's traces cut it."""
    r = repr(value)
    if len(r) > 60:
        n = len(value) if isinstance(value, (bytes, bytearray)) else len(r)
        return '{}... ({} bytes)'.format(r[:57], n)
    return r


def timed_out():
    """What a socket with settimeout raises when the wait runs out."""
    return TimeoutError('timed out')


class Target:
    """One URL, split the way the tutorials' code needs it."""

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != 'http' or not parts.hostname:
            raise ValueError('only http:// URLs can be fetched, not {!r}'.format(url))
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = (parts.path or '/') + ('?' + parts.query if parts.query else '')
        infos = socket.getaddrinfo(self.host, self.port, socket.AF_INET, socket.SOCK_STREAM)
        self.addr = infos[0][4]

    def request(self):
        return 'GET {0} HTTP/1.0\r\nHost: {1}\r\n\r\n'.format(self.path, self.host)


class Stage:
    """A running stage: flags, URLs, the server it started, the clock."""

    def __init__(self, name, args, concurrency=ALL):
        global _trace
        self.name = name
        self.args = args
        if args.urls < 1:
            fail('--urls must be at least 1')
        if not (0 <= args.delay <= 3600):
            fail('--delay must be between 0 and 3600 seconds, got {}'.format(args.delay))
        if not (0 < args.timeout <= 86400):
            fail('--timeout must be more than 0 and at most 86400 seconds, got {}'.format(args.timeout))
        urls = []
        if args.url is not None:
            if '{}' not in args.url:
                fail("--url {!r} has no {{}} to replace with 0..N-1 "
                     "(e.g. 'http://127.0.0.1:5000/s?wd={{}}')".format(args.url))
            urls = [args.url.replace('{}', str(i)) for i in range(args.urls)]
        self.targets = []
        for url in urls:
            try:
                self.targets.append(Target(url))
            except (ValueError, OSError) as e:
                fail('--url: ' + line(e))
        check_open_files(args, concurrency)
        self.server = None
        if args.url is None:
            import slowserver
            self.server = slowserver.start(delay=args.delay)
            self.targets = [Target(self.server.url('/s?wd={}'.format(i))) for i in range(args.urls)]
        _trace = args.trace
        global _format
        _format = args.format
        self.start = time.time()

    def finish(self):
        """print(results) (process printed each already), or the Request Times line; --json; the exit code."""
        global _trace
        seconds = time.time() - self.start
        _trace = False
        n = len(self.targets)
        if _format == 'original' and self.name != 'process':
            say(repr(results))
        if _format == 'forcemain':
            say('Request Times: {}, Total Cost: {:.6f} seconds'.format(n, seconds))
        if self.args.json:
            say('{{"stage": "{}", "requests": {}, "ok": {}, "errors": {}, "seconds": {:.6f}}}'.format(
                self.name, n, _ok, _errors, seconds))
        flush()
        if _ok + _errors != n:
            print('error: {} URLs but {} outcomes ({} results, {} errors)'.format(
                n, _ok + _errors, _ok, _errors), file=sys.stderr)
            return 1
        return 1 if _errors else 0


def check_open_files(args, concurrency):
    """resource.setrlimit to the hard limit, then refuse a run that cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    in_flight = args.urls if concurrency is ALL else min(concurrency, args.urls)
    embedded = args.url is None
    needed = in_flight * (2 if embedded else 1) + FD_SLACK
    if soft != resource.RLIM_INFINITY and needed > soft:
        server_part = (' + {} server sockets (the local server shares this process)'.format(in_flight)
                       if embedded else '')
        hint = ('; run the server in another process and pass --url, or lower --urls' if embedded
                else '; lower --urls or raise the hard limit (ulimit -Hn)')
        fail('--urls {} needs about {} open files ({} client sockets{} + {}), '
             'but the limit is {} (hard limit {}){}'.format(
                 args.urls, needed, in_flight, server_part, FD_SLACK, soft, hard, hint))


def report(url, outcome, each=False):
    """results.append((url, title)) and count it; an exception is an outcome too.

    In `original` a result waits for print(results) (or, with `each`, is
    printed at once as process.py prints it) and an error goes to stderr; in
    the other formats each is a `result:`/`error:` line at once.
    """
    global _ok, _errors
    if isinstance(outcome, BaseException):
        _errors += 1
        if _format == 'original':
            flush()
            print('error: {} {}'.format(url, line(outcome)), file=sys.stderr)
        else:
            say('error: {} {}'.format(url, line(outcome)))
    else:
        _ok += 1
        if _format != 'original':
            say('result: {} {}'.format(url, outcome))
        elif each:
            say(repr((url, outcome or '')))
        else:
            results.append((url, outcome or ''))


def report_response(url, response):
    """report() for the raw bytes of a response read to EOF (or the exception)."""
    if not isinstance(response, BaseException):
        try:
            response = title_of(response)
        except (ValueError, LookupError) as e:
            response = e
    report(url, response)


TITLE = re.compile(r'<title[^>]*>(.*?)</title>', re.I | re.S)
STATUS = re.compile(rb'HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r\n')


def title_of(raw):
    """Parse the response, decode the body by its charset, find <title>."""
    head, sep, body = raw.partition(b'\r\n\r\n')
    if not sep or not STATUS.match(head + b'\r\n'):
        raise ValueError('invalid HTTP response: {!r}'.format(raw[:40]))
    charset = 'utf-8'
    for header in head.split(b'\r\n')[1:]:
        name, _, value = header.decode('latin-1').partition(':')
        if name.strip().lower() == 'content-length':
            length = int(value.strip())
            if len(body) < length:
                raise ValueError('invalid HTTP response: body cut short ({} of {} bytes)'.format(
                    len(body), length))
            body = body[:length]
        elif name.strip().lower() == 'content-type':
            m = re.search(r'charset="?([^";]+)', value, re.I)
            if m:
                charset = m.group(1).strip()
    m = TITLE.search(body.decode(charset))
    return m.group(1).strip() if m else None



def blocking_request(target, timeout):
    """sync.py's blocking_request(): connect, send the GET, recv(4096) until b''.

    `timeout` is a deadline for the whole request: before each call the
    socket's timeout is what is left of it (settimeout alone bounds each call,
    so a server trickling a byte at a time could hold the request forever).
    """
    deadline = time.monotonic() + timeout

    def remaining():
        left = deadline - time.monotonic()
        if left <= 0:
            raise timed_out()
        return left

    sock = socket.socket()
    try:
        sock.settimeout(remaining())
        sock.connect(target.addr)  # blocks
        sock.settimeout(remaining())
        sock.sendall(target.request().encode('ascii'))
        response = b''
        sock.settimeout(remaining())
        chunk = sock.recv(4096)  # blocks
        while chunk:
            response += chunk
            sock.settimeout(remaining())
            chunk = sock.recv(4096)  # blocks
        return response
    finally:
        sock.close()


class TracingSelector:
    """selectors.DefaultSelector, printing the lines pyfiber's selector prints."""

    NAMES = {selectors.EVENT_READ: 'EVENT_READ', selectors.EVENT_WRITE: 'EVENT_WRITE',
             selectors.EVENT_READ | selectors.EVENT_WRITE: 'EVENT_READ|EVENT_WRITE'}

    def __init__(self):
        self._selector = selectors.DefaultSelector()

    def register(self, fileobj, events, data=None):
        key = self._selector.register(fileobj, events, data)
        trace('register fd={} {}'.format(key.fd, self.NAMES[events]))
        return key

    def unregister(self, fileobj):
        key = self._selector.unregister(fileobj)
        trace('unregister fd={}'.format(key.fd))
        return key

    def select(self, timeout=None):
        events = self._selector.select(timeout)
        trace('select -> [{}]'.format(', '.join('fd={}'.format(key.fd) for key, _ in events)))
        return events

    def get_map(self):
        return self._selector.get_map()


class TimerHandle:
    def __init__(self, when, seq, callback):
        self.when, self.seq, self.callback = when, seq, callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    def __lt__(self, other):
        return (self.when, self.seq) < (other.when, other.seq)


class EventLoop:
    """The twin of pyfiber's event_loop: the tutorials' selector and loop() turn, plus call_later."""

    def __init__(self):
        self.selector = TracingSelector()
        self._timers = []
        self._seq = itertools.count()

    def call_later(self, delay, callback):
        handle = TimerHandle(time.monotonic() + delay, next(self._seq), callback)
        heapq.heappush(self._timers, handle)
        return handle

    def _drop_cancelled(self):
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)

    def has_work(self):
        self._drop_cancelled()
        return bool(self.selector.get_map()) or bool(self._timers)

    def select_timeout(self):
        """How long select() may wait: until the next timer (None: no timer)."""
        self._drop_cancelled()
        if self._timers:
            return max(0.0, self._timers[0].when - time.monotonic())
        return None

    def still_registered(self, key):
        """Whether a key select() returned is still the one registered
        (an earlier callback of the same turn may have unregistered it)."""
        now = self.selector.get_map().get(key.fd)
        return now is not None and now.data is key.data

    def run_due_timers(self):
        now = time.monotonic()
        while self._timers and self._timers[0].when <= now:
            handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                handle.callback()

    def run_once(self):
        """select() until the next timer is due, run the ready fds' callbacks, then the due timers."""
        timeout = self.select_timeout()
        if self.selector.get_map() or timeout is not None:
            for key, mask in self.selector.select(timeout):
                if self.still_registered(key):
                    callback = key.data
                    callback()
        self.run_due_timers()



def serve_started(selector, loop):
    """Not in the originals: after every START_BATCH fetches started, one
    turn of the generator and yield_from twins' event_loop() that does not
    wait, so the first fetches are served while main connects the rest."""
    for key, mask in selector.select(0):
        if loop.still_registered(key):
            callback = key.data
            callback()
    loop.run_due_timers()


def cpu_count():
    return os.cpu_count() or 1
