# Fixture in the shape of yuchaoshui/notes Python异步并发/no_blocking.py,
# written for pyfiber's tests (not a copy): non-blocking sockets, retried in
# a busy loop.
from urllib.parse import urlparse
import re
import socket


urls = [f'http://www.baidu.com/s?wd={i}' for i in range(10)]
results = []


def parse(url, response):
    text = response.decode('utf8', errors='ignore')
    found = re.search(r'<title>(.*)</title>', text)
    results.append((url, found.group(1) if found else ''))


def fetch(url):
    parts = urlparse(url)
    host = parts.hostname
    port = parts.port or 80
    sock = socket.socket()
    sock.setblocking(False)
    try:
        sock.connect((host, port))
    except BlockingIOError:
        pass
    request = (f'GET {parts.path or "/"}?{parts.query} HTTP/1.1\r\n'
               f'Connection: close\r\nHost: {host}\r\n\r\n').encode('utf8')
    while True:
        try:
            sock.send(request)
            break
        except OSError:
            pass
    response = b''
    while True:
        try:
            chunk = sock.recv(4096)
            while chunk:
                response += chunk
                chunk = sock.recv(4096)
            break
        except OSError:
            pass
    parse(url, response)


if __name__ == '__main__':
    for target in urls:
        fetch(target)
    print(results)
