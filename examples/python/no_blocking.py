"""no_blocking.py: non-blocking sockets, and nothing to do while waiting.

Twin of examples/no_blocking.rs: setblocking(False), then busy polling on
send and recv (BlockingIOError caught and retried), one URL after another.
As slow as sync.py, and it keeps a CPU core busy.

    python3 examples/python/no_blocking.py --urls 10 --delay 1
"""

import socket
import sys
import time

import common


def unblocking_request(target, timeout):
    deadline = time.monotonic() + timeout

    def check():
        if time.monotonic() >= deadline:
            raise common.timed_out()

    sock = socket.socket()
    try:
        sock.setblocking(False)
        try:
            sock.connect(target.addr)
        except BlockingIOError:
            pass
        request = target.request().encode('ascii')
        # We cannot know when the connection is made: keep trying to send.
        while True:
            try:
                sock.send(request)
                break
            except BlockingIOError:
                check()
        response = b''
        # We cannot know when the answer comes: keep trying to receive.
        while True:
            try:
                chunk = sock.recv(4096)
            except BlockingIOError:
                check()
                continue
            if not chunk:
                break
            response += chunk
        return response
    finally:
        sock.close()


def main():
    args = common.make_parser(__doc__.splitlines()[0]).parse_args()
    stage = common.Stage('no_blocking', args, 1)
    for target in stage.targets:
        try:
            response = unblocking_request(target, args.timeout)
        except OSError as e:
            response = e
        common.report_response(target.url, response)
    return stage.finish()


if __name__ == '__main__':
    sys.exit(main())
