"""socket_server_sync.py: a blocking echo server, one client at a time.

Every call blocks: accept() waits for a client, recv() waits for its bytes,
sendall() waits until the kernel has taken them. While one client is being
served, nobody else is: the next client waits in the listen backlog until the
current one closes. This is the server-side twin of sync.py, and the problem
socket_server_async.py solves.

    python3 examples/python/socket_server_sync.py [--port 8888]
"""

import argparse
import socket
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(
        description='Blocking echo server: serves one client at a time.')
    parser.add_argument('--port', type=int, default=8888,
                        help='port to listen on, on 127.0.0.1 (0 = any free port)')
    parser.add_argument('--quiet', action='store_true',
                        help="don't print a line per connection and per echo")
    args = parser.parse_args()
    if not 0 <= args.port <= 65535:
        parser.error(f'--port {args.port} is not a port (0..65535)')
    return args


def serve(conn, addr, quiet):
    """Echo what the client sends until it closes its side."""
    try:
        while True:
            data = conn.recv(4096)
            if not data:
                break
            if not quiet:
                print('echoing', repr(data), 'to', conn)
            conn.sendall(data)
    except OSError as e:
        print(f'error on {addr}: {type(e).__name__}: {e}', file=sys.stderr)
    finally:
        if not quiet:
            print('closing', addr)
        conn.close()


def main():
    args = parse_args()
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
    port = sock.getsockname()[1]
    # Not the original's 'Running on http://localhost:8888/': TCP, not HTTP.
    print(f'Running on localhost:{port} (TCP echo, not HTTP: try nc localhost {port})')
    while True:
        try:
            conn, addr = sock.accept()
        except OSError as e:
            # EMFILE and friends: this client is lost, the server lives on.
            print(f'accept failed: {e}', file=sys.stderr)
            time.sleep(0.1)
            continue
        if not args.quiet:
            print('accepted', conn, 'from', addr)
        serve(conn, addr, args.quiet)


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        pass
