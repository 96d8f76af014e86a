# Fixture in the shape of denglj/aiotutorial part_1/blocking.py, written for
# pyfiber's tests (not a copy): ten blocking GETs of example.com on a pool of
# 10 threads; prints the count, then the elapsed seconds.
import socket
import time
from concurrent import futures


def blocking_way():
    sock = socket.socket()
    sock.connect(('example.com', 80))
    sock.send(b'GET / HTTP/1.0\r\nHost: example.com\r\n\r\n')
    response = b''
    chunk = sock.recv(4096)
    while chunk:
        response += chunk
        chunk = sock.recv(4096)
    return response


def thread_way():
    with futures.ThreadPoolExecutor(10) as executor:
        pending = [executor.submit(blocking_way) for _ in range(10)]
    return len([f.result() for f in pending])


if __name__ == '__main__':
    start = time.time()
    print(thread_way())
    print(time.time() - start)
