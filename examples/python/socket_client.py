"""socket_client.py: the echo servers' client, interactive or as a load test.

Interactive: a `> ` prompt; each line typed is sent (with its newline), the
echo is read back in full and printed as Python prints bytes. An empty line
or EOF quits.

    python3 examples/python/socket_client.py [--host 127.0.0.1] [--port 8888]

Load test: CONNECTIONS non-blocking connections on one selector loop, each
sending MESSAGES distinct messages one after the other and checking that
every echo comes back intact; prints the round trips per second.

    python3 examples/python/socket_client.py --bench 1000,100
"""

import argparse
import os
import resource
import selectors
import socket
import sys
import time

from selectors import EVENT_READ, EVENT_WRITE


def parse_bench(text):
    parts = text.split(',')
    try:
        if len(parts) != 2:
            raise ValueError
        connections, messages = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not CONNECTIONS,MESSAGES (e.g. 1000,100)") from None
    if connections < 1 or messages < 1:
        raise argparse.ArgumentTypeError(
            f"'{text}': CONNECTIONS and MESSAGES must both be at least 1")
    return connections, messages


def parse_args():
    parser = argparse.ArgumentParser(description='Client of the echo servers.')
    parser.add_argument('--host', default='127.0.0.1', help='server address')
    parser.add_argument('--port', type=int, default=8888, help='server port')
    parser.add_argument('--bench', type=parse_bench, metavar='CONNECTIONS,MESSAGES',
                        help='load test instead of the prompt')
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='give up a load test after this many seconds')
    args = parser.parse_args()
    if not 0 < args.port <= 65535:
        parser.error(f'--port {args.port} is not a port (1..65535)')
    if not args.timeout > 0:
        parser.error(f'--timeout {args.timeout} must be positive')
    return args


# -------------------------------------------------------------- interactive

def interactive(host, port):
    sock = socket.socket()
    try:
        sock.connect((host, port))
    except OSError as e:
        print(f'could not connect to {host}:{port}: {e}', file=sys.stderr)
        return 1
    with sock:
        while True:
            try:
                line = input('>')
            except EOFError:
                break
            if not line:
                break
            data = line.encode()
            echo = b''
            try:
                sock.sendall(data)
                while len(echo) < len(data):
                    chunk = sock.recv(4096)
                    if not chunk:
                        print(f'server {host}:{port} closed the connection', file=sys.stderr)
                        return 1
                    echo += chunk
            except OSError as e:
                print(f'lost the connection to {host}:{port}: {e}', file=sys.stderr)
                return 1
            print(repr(echo))
    return 0


# ---------------------------------------------------------------- load test

def message(i, j):
    """The j-th message of connection i: distinct across the whole run."""
    return f'connection {i} message {j}\n'.encode()


class Connection:
    """One load-test connection: its socket, where it is, what it expects."""

    def __init__(self, bench, i):
        self.bench = bench
        self.i = i
        self.j = 0
        self.done = False
        self.out = b''
        self.received = b''
        self.sock = socket.socket()
        self.sock.setblocking(False)
        try:
            self.sock.connect((bench.host, bench.port))
        except BlockingIOError:
            pass
        except OSError as e:
            selector.register(self.sock, EVENT_WRITE, lambda: None)
            self.finish(f'connect failed: {e}')
            return
        selector.register(self.sock, EVENT_WRITE, self.on_connected)

    def on_connected(self):
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.finish(f'connect failed: {OSError(err, os.strerror(err))}')
            return
        selector.modify(self.sock, EVENT_READ, self.on_readable)
        self.send_next()

    def send_next(self):
        self.out = message(self.i, self.j)
        self.received = b''
        self.write()

    def write(self):
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self.finish(f'send failed: {e}')
            return
        self.out = self.out[sent:]
        if self.out:
            selector.modify(self.sock, EVENT_READ | EVENT_WRITE, self.on_ready)

    def on_ready(self):
        # Both directions are watched while a message is half sent.
        if self.out:
            self.write()
        if self.done:
            return
        if not self.out:
            selector.modify(self.sock, EVENT_READ, self.on_readable)
        self.on_readable()

    def on_readable(self):
        try:
            chunk = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            self.finish(f'recv failed after {self.j} echoes: {e}')
            return
        if not chunk:
            self.finish(f'server closed the connection after {self.j} echoes')
            return
        self.received += chunk
        expected = message(self.i, self.j)
        if len(self.received) < len(expected):
            return
        if self.received != expected:
            self.finish(f'echo {self.j} is {self.received!r}, expected {expected!r}')
            return
        self.bench.round_trips += 1
        if self.j == 0:
            self.bench.on_first_echo(self)
        self.j += 1
        if self.j == self.bench.messages:
            self.finish(None)
        else:
            self.send_next()

    def finish(self, error):
        self.done = True
        selector.unregister(self.sock)
        self.sock.close()
        self.bench.on_outcome(self, error)


class Bench:
    """Opens the connections (at most MAX_CONNECTING not yet echoed once, so
    the server's listen backlog never overflows) and collects one outcome per
    connection."""

    MAX_CONNECTING = 500

    def __init__(self, host, port, connections, messages):
        self.host, self.port = host, port
        self.connections, self.messages = connections, messages
        self.started = 0
        self.connecting = 0
        self.filling = False
        self.round_trips = 0
        self.outcomes = {}

    def fill(self):
        # A connect refused at once records its outcome, which calls fill()
        # again: the loop below already goes on, so don't recurse.
        if self.filling:
            return
        self.filling = True
        while self.started < self.connections and self.connecting < self.MAX_CONNECTING:
            self.connecting += 1
            i = self.started
            self.started += 1
            Connection(self, i)
        self.filling = False

    def on_first_echo(self, conn):
        self.connecting -= 1
        self.fill()

    def on_outcome(self, conn, error):
        if conn.j == 0:
            self.connecting -= 1
        self.outcomes[conn.i] = error
        self.fill()

    def run(self, timeout):
        deadline = time.monotonic() + timeout
        start = time.perf_counter()
        self.fill()
        while len(self.outcomes) < self.connections:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, mask in selector.select(left):
                key.data()
        elapsed = time.perf_counter() - start
        for i in range(self.connections):
            if i not in self.outcomes:
                self.outcomes[i] = f'timed out after {timeout} s'
        return elapsed


selector = selectors.DefaultSelector()


def bench(host, port, connections, messages, timeout):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f'bench: {connections} connections x {messages} messages to {host}:{port}')
    run = Bench(host, port, connections, messages)
    elapsed = run.run(timeout)
    failed = {i: e for i, e in sorted(run.outcomes.items()) if e is not None}
    for i, e in list(failed.items())[:10]:
        print(f'connection {i}: {e}')
    if len(failed) > 10:
        print(f'... and {len(failed) - 10} more failed connections')
    ok = connections - len(failed)
    print(f'{ok} ok, {len(failed)} failed: {run.round_trips} round trips in {elapsed:.3f} s'
          f' = {run.round_trips / elapsed:.0f} round trips/s')
    return 1 if failed else 0


def main():
    args = parse_args()
    if args.bench:
        connections, messages = args.bench
        return bench(args.host, args.port, connections, messages, args.timeout)
    return interactive(args.host, args.port)


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
