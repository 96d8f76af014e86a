# Fixture in the shape of yuchaoshui/notes Python异步并发/callback.py, written
# for pyfiber's tests (not a copy): one selector, a Spider per URL, its steps
# as callbacks, and event_loop().
from selectors import DefaultSelector, EVENT_WRITE, EVENT_READ
from urllib.parse import urlparse
import re
import socket


selector = DefaultSelector()
stopped = False
urls = [f'http://www.baidu.com/s?wd={i}' for i in range(10)]


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
        self.sock.setblocking(False)
        try:
            self.sock.connect((self.hostname, self.port))
        except BlockingIOError:
            pass
        selector.register(self.sock.fileno(), EVENT_WRITE, self.connected)

    def connected(self, key):
        selector.unregister(key.fd)
        request = (f'GET {self.path}?{self.query} HTTP/1.1\r\n'
                   f'Connection: close\r\nHost: {self.hostname}\r\n\r\n')
        self.sock.send(request.encode())
        selector.register(key.fd, EVENT_READ, self.read_response)

    def read_response(self, key):
        global stopped
        chunk = self.sock.recv(4096)
        if chunk:
            self.response += chunk
        else:
            selector.unregister(key.fd)
            urls.remove(self.url)
            stopped = not urls
            self.parse()


def event_loop():
    while not stopped:
        for key, mask in selector.select():
            key.data(key)


if __name__ == '__main__':
    for target in urls[:]:
        Spider(target).fetch()
    event_loop()
    print(Spider.results)
