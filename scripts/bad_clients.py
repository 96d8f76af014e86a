"""Loopback attacks on a slow_server binary, for the figures of NOTES.md ("Bad
clients against the slow server"). Usage: python3 scripts/bad_clients.py BINARY
cpu|flaky|huge|loris [N]; SRVARGS="--head-timeout 300" passes flags to the server.
Only 127.0.0.1; every mode is bounded (a fixed count of clients and bytes)."""
# Loopback attacks on a slow_server binary; prints figures for NOTES.
import os, socket, subprocess, sys, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],)*2)
binary, mode = sys.argv[1], sys.argv[2]
port = 5400 + os.getpid() % 500
srv = subprocess.Popen([binary, '--port', str(port), '--delay', '0.01', '--duration', '600'] + os.environ.get('SRVARGS','').split(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
srv.stdout.readline()
def stat():
    f = open(f'/proc/{srv.pid}/stat').read().rsplit(')',1)[1].split()
    global user
    user = int(f[11]) / os.sysconf('SC_CLK_TCK')
    cpu = (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
    rss = int(open(f'/proc/{srv.pid}/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6
    return cpu, rss
def conn():
    s = socket.create_connection(('127.0.0.1', port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); return s
cpu0, rss0 = stat(); user0 = user
t0 = time.time()
if mode == 'cpu':   # 100 clients, each sends a 30 KB header value in 1-byte writes, round robin
    n, length = 100, int(sys.argv[3]) if len(sys.argv) > 3 else 30000
    cs = [conn() for _ in range(n)]
    for c in cs: c.sendall(b'GET /s?wd=1 HTTP/1.0\r\nX-Long: ')
    sent = 0
    for i in range(length):
        for c in cs: c.send(b'v'); sent += 1
    for c in cs: c.sendall(b'\r\n\r\n')
    for c in cs: c.settimeout(60); assert c.recv(100).startswith(b'HTTP/1.0 200')
    cpu, rss = stat()
    print(f'{mode}: {sent} attacker bytes, server CPU {cpu-cpu0:.2f} s = {(cpu-cpu0)/sent*1e6:.2f} us/byte (user {user-user0:.2f} s = {(user-user0)/sent*1e6:.2f} us/byte), wall {time.time()-t0:.1f} s')
elif mode == 'flaky':  # 5000 requests, each a distinct /flaky path with a 60 KB name
    for i in range(5000):
        c = conn(); c.sendall(b'GET /flaky/1/' + str(i).encode() + b'n'*60000 + b' HTTP/1.0\r\n\r\n'); c.recv(10); c.close()
    time.sleep(0.3)
    cpu, rss = stat()
    print(f'{mode}: RSS {rss0:.1f} MB -> {rss:.1f} MB after 5000 distinct 60 KB /flaky paths')
elif mode == 'huge':   # N clients ask for /fault/huge and never read
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    cs = []
    for i in range(n):
        c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(('127.0.0.1', port)); c.sendall(b'GET /fault/huge HTTP/1.0\r\n\r\n'); cs.append(c)
    time.sleep(3)
    cpu, rss = stat()
    print(f'{mode}: {n} non-reading clients of /fault/huge: RSS {rss0:.1f} MB -> {rss:.1f} MB')
elif mode == 'loris':  # N clients send one header byte a second; are they still held at 12 s?
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    cs = [conn() for _ in range(n)]
    for c in cs: c.sendall(b'GET / HTTP/1.0\r\nX-A: ')
    alive = n
    for sec in range(12):
        time.sleep(1)
        alive = 0
        for c in cs:
            try: c.send(b'a'); alive += 1
            except OSError: pass
    got = 0
    for c in cs:
        c.setblocking(False)
        try: got += c.recv(100).startswith(b'HTTP/1.0 408')
        except OSError: pass
    print(f'{mode}: {n} slow-loris clients, after 12 s: {alive} still accepted bytes, {got} got 408')
srv.terminate(); srv.wait()
