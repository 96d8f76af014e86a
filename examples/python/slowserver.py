"""slowserver.py: the tutorials' "every request waits 1 s" server, stdlib only.

Why this exists: the Python twins of the ladder's stages need something slow
to fetch from, with no network and no setup, as the Rust examples have the
crate's embedded server. This one serves the same subset of the site the
stages fetch: `/s?wd=N` answers, after `delay` seconds, a page titled
`N - pyfiber search`; anything else is a 404. HTTP/1.0: the connection closes
after each answer, with Content-Length set.

It is a ThreadingHTTPServer, so each connection sleeps on its own thread: the
simplest thing that can wait for many clients at once, not a fast one. For
the benchmarks, point the twins at the Rust `slow_server` with `--url`.

    python3 slowserver.py --port 5000 --delay 1     # standalone
    server = slowserver.start(delay=1.0)            # in a background thread
    server.url('/s?wd=3')
"""

import argparse
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEARCH = re.compile(r'^/s\?wd=([^&#]*)$')


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, closed after the answer.
    protocol_version = 'HTTP/1.0'
    server_version = 'slowserver'

    def do_GET(self):
        time.sleep(self.server.delay)
        m = SEARCH.match(self.path)
        if m:
            status, title = 200, '{} - pyfiber search'.format(m.group(1))
        else:
            status, title = 404, '404 Not Found'
        body = ('<!DOCTYPE html>\n<html><head><title>{0}</title></head>'
                '<body><h1>{0}</h1></body></html>\n').format(title).encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # quiet: the stages print their own lines


class SlowServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many clients connect at once; the default backlog of 5 would drop them.
    request_queue_size = 4096

    def __init__(self, port, delay):
        super().__init__(('127.0.0.1', port), Handler)
        self.delay = delay

    @property
    def port(self):
        return self.server_address[1]

    def url(self, path):
        return 'http://127.0.0.1:{}{}'.format(self.port, path)


def start(delay=1.0, port=0):
    """Starts the server on a daemon thread; returns once it listens."""
    server = SlowServer(port, delay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=5000, help='0 = any free port')
    parser.add_argument('--delay', type=float, default=1.0, help='seconds before each answer')
    args = parser.parse_args()
    server = SlowServer(args.port, args.delay)
    print('serving on http://127.0.0.1:{} (delay {} s)'.format(server.port, args.delay), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
