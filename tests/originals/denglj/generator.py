# Fixture in the shape of denglj/aiotutorial part_1/generator.py, written for
# pyfiber's tests (not a copy): Crawler.fetch on generators over
# ('example.com', 80), urls_todo, loop(); prints the elapsed seconds.
import socket
import time
from selectors import DefaultSelector, EVENT_WRITE, EVENT_READ

selector = DefaultSelector()
stopped = False
urls_todo = {'/'} | {'/{}'.format(i) for i in range(1, 10)}


class Future:
    def __init__(self):
        self.result = None
        self._callbacks = []

    def add_done_callback(self, fn):
        self._callbacks.append(fn)

    def set_result(self, result):
        self.result = result
        for fn in self._callbacks:
            fn(self)


class Crawler:
    def __init__(self, url):
        self.url = url
        self.response = b''

    def fetch(self):
        global stopped
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(('example.com', 80))
        except BlockingIOError:
            pass
        f = Future()
        selector.register(sock.fileno(), EVENT_WRITE, lambda: f.set_result(None))
        yield f
        selector.unregister(sock.fileno())
        sock.send('GET {} HTTP/1.0\r\nHost: example.com\r\n\r\n'.format(self.url).encode('ascii'))
        while True:
            f = Future()
            selector.register(sock.fileno(), EVENT_READ, lambda: f.set_result(sock.recv(4096)))
            chunk = yield f
            selector.unregister(sock.fileno())
            if chunk:
                self.response += chunk
            else:
                urls_todo.remove(self.url)
                if not urls_todo:
                    stopped = True
                break


class Task:
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


def loop():
    while not stopped:
        for event_key, event_mask in selector.select():
            event_key.data()


if __name__ == '__main__':
    start = time.time()
    for url in list(urls_todo):
        Task(Crawler(url).fetch())
    loop()
    print(time.time() - start)
