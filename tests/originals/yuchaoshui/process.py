# Fixture in the shape of yuchaoshui/notes Python异步并发/process.py, written
# for pyfiber's tests (not a copy): the blocking fetch on 10 processes, each
# printing its (url, title).
from concurrent import futures
from urllib.parse import urlparse
import re
import socket


urls = [f'http://www.baidu.com/s?wd={i}' for i in range(10)]


def parse(url, response):
    text = response.decode('utf8', errors='ignore')
    found = re.search(r'<title>(.*)</title>', text)
    print((url, found.group(1) if found else ''))


def fetch(url):
    parts = urlparse(url)
    host = parts.hostname
    port = parts.port or 80
    sock = socket.socket()
    sock.connect((host, port))
    request = (f'GET {parts.path or "/"}?{parts.query} HTTP/1.1\r\n'
               f'Connection: close\r\nHost: {host}\r\n\r\n')
    sock.send(request.encode('utf8'))
    response = b''
    chunk = sock.recv(4096)
    while chunk:
        response += chunk
        chunk = sock.recv(4096)
    parse(url, response)


def process_way():
    workers = 10
    with futures.ProcessPoolExecutor(workers) as executor:
        for target in urls:
            executor.submit(fetch, target)


if __name__ == '__main__':
    process_way()
