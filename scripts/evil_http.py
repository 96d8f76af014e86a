"""A loopback server for the crawl figures of NOTES.md: /line sends a 16 MiB header line, /chunks a million 1-byte chunks. Usage: python3 scripts/evil_http.py PORT (stops after 120 s without a connection)."""
import socket, sys, threading
port = int(sys.argv[1])
def serve(c):
    req = c.recv(65536)
    path = req.split(b' ')[1]
    try:
        if path.startswith(b'/line'):
            c.sendall(b'HTTP/1.0 200 OK\r\nX-Long: ')
            blk = b'x' * 65536
            for _ in range(256): c.sendall(blk)
            c.sendall(b'\r\n\r\n')
        else:
            c.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n')
            blk = b'1\r\nx\r\n' * 10000
            for _ in range(100): c.sendall(blk)
            c.sendall(b'0\r\n\r\n')
    except OSError: pass
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', port)); s.listen(16)
s.settimeout(120)
while True:
    try: c, _ = s.accept()
    except socket.timeout: break
    threading.Thread(target=serve, args=(c,), daemon=True).start()
