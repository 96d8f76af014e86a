# Fixture in the shape of yuchaoshui/notes Python异步并发/yield_from.py,
# written for pyfiber's tests (not a copy): connect/read/read_all as
# sub-generators under `yield from`, a yield-from-able Future.
from selectors import DefaultSelector, EVENT_WRITE, EVENT_READ
from urllib.parse import urlparse
import re
import socket


selector = DefaultSelector()
stopped = False
urls = [f'http://www.baidu.com/s?wd={i}' for i in range(10)]


class Future:
    def __init__(self):
        self.result = None
        self.callbacks = []

    def add_done_callback(self, func):
        self.callbacks.append(func)

    def set_result(self, result=None):
        self.result = result
        for func in self.callbacks:
            func(self)

    def __iter__(self):
        yield self
        return self.result


def connect(sock, address):
    future = Future()
    sock.setblocking(False)
    try:
        sock.connect(address)
    except BlockingIOError:
        pass

    def on_connected():
        future.set_result()

    selector.register(sock.fileno(), EVENT_WRITE, on_connected)
    yield from future
    selector.unregister(sock.fileno())


def read(sock):
    future = Future()

    def on_readable():
        future.set_result(sock.recv(4096))

    selector.register(sock.fileno(), EVENT_READ, on_readable)
    chunk = yield from future
    selector.unregister(sock.fileno())
    return chunk


def read_all(sock):
    response = b''
    chunk = yield from read(sock)
    while chunk:
        response += chunk
        chunk = yield from read(sock)
    return response


class Spider:
    results = []

    def __init__(self, url):
        self.url = url
        parts = urlparse(url)
        self.hostname = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or '/'
        self.query = parts.query
        self.response = b''
        self.sock = socket.socket()

    def parse(self):
        text = self.response.decode('utf8', errors='ignore')
        found = re.search(r'<title>(.*)</title>', text)
        self.results.append((self.url, found.group(1) if found else ''))

    def fetch(self):
        global stopped
        yield from connect(self.sock, (self.hostname, self.port))
        request = (f'GET {self.path}?{self.query} HTTP/1.1\r\n'
                   f'Connection: close\r\nHost: {self.hostname}\r\n\r\n')
        self.sock.send(request.encode())
        self.response = yield from read_all(self.sock)
        urls.remove(self.url)
        stopped = not urls
        self.parse()


class Task:
    def __init__(self, coroutine):
        self.coroutine = coroutine
        self.step(Future())

    def step(self, future):
        try:
            next_future = self.coroutine.send(future.result)
        except StopIteration:
            return
        next_future.add_done_callback(self.step)


def event_loop():
    while not stopped:
        for key, mask in selector.select():
            key.data()


if __name__ == '__main__':
    for target in urls[:]:
        Task(Spider(target).fetch())
    event_loop()
    print(Spider.results)
