# Fixture in the shape of yuchaoshui/notes Python异步并发/generator.py, written
# for pyfiber's tests (not a copy): Future, Spider.fetch as a generator with
# nested on_connected/on_readable, Task.step, event_loop().
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
        self.sock.setblocking(False)
        try:
            self.sock.connect((self.hostname, self.port))
        except BlockingIOError:
            pass
        future = Future()

        def on_connected():
            future.set_result()

        selector.register(self.sock.fileno(), EVENT_WRITE, on_connected)
        yield future
        selector.unregister(self.sock.fileno())
        request = (f'GET {self.path}?{self.query} HTTP/1.1\r\n'
                   f'Connection: close\r\nHost: {self.hostname}\r\n\r\n')
        self.sock.send(request.encode())
        while True:
            future = Future()

            def on_readable():
                future.set_result(self.sock.recv(4096))

            selector.register(self.sock.fileno(), EVENT_READ, on_readable)
            chunk = yield future
            selector.unregister(self.sock.fileno())
            if chunk:
                self.response += chunk
            else:
                urls.remove(self.url)
                stopped = not urls
                self.parse()
                break


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
