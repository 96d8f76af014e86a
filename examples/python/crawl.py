"""crawl.py: the 500 Lines crawler on asyncio, stdlib only (twin of examples/crawl.rs).

Why this exists: the Rust `crawl` example runs the chapter "A Web Crawler With
asyncio Coroutines" (A. Jesse Jiryu Davis and Guido van Rossum) on pyfiber's
generator coroutines. This file is the same program on today's asyncio, with
the same flags, the same rules and the same report, so the two can be run
side by side (`cargo run --release --example crawl -- --python`) and their
reports compared. The chapter used aiohttp; here a tiny HTTP/1.0 client over
asyncio streams does the fetching, so nothing outside the standard library is
needed.

    python3 crawl.py http://127.0.0.1:5000/ --max_tasks 100
    python3 crawl.py                       # starts its own slow tree site

Where it differs from the chapter, it differs as the Rust crawler does (see
src/crawler.rs): every URL ends in exactly one outcome, redirect targets must
be allowed, roots are normalised, requests have a timeout and a body limit,
lenient hosts compare the last two labels joined by a dot.
"""

import argparse
import asyncio
import json
import re
import resource
import signal
import sys
import time
import urllib.parse
from collections import namedtuple

REDIRECT_STATUSES = (300, 301, 302, 303, 307, 308)
LINK_CONTENT_TYPES = ('text/html', 'application/xml')
HREF = re.compile(r'''(?i)href=["']([^\s"'<>]+)''')
LEVELS = ['ERROR', 'WARNING', 'INFO', 'DEBUG']

FetchStatistic = namedtuple('FetchStatistic', [
    'url', 'next_url', 'status', 'exception', 'size', 'content_type',
    'encoding', 'num_urls', 'num_new_urls'])


def stat_for(url, **fields):
    base = dict(url=url, next_url=None, status=None, exception=None, size=0,
                content_type=None, encoding=None, num_urls=0, num_new_urls=0)
    base.update(fields)
    return FetchStatistic(**base)


def exc_line(exc):
    """The last line of a traceback: `Name: message`."""
    text = str(exc)
    return '{}: {}'.format(type(exc).__name__, text) if text else type(exc).__name__


class RemoteDisconnected(ConnectionResetError):
    """http.client's name for a connection closed before any response."""


class BadResponse(ValueError):
    """Bytes that are not an HTTP response."""


class ResponseTooLarge(Exception):
    pass


class InvalidRedirect(Exception):
    pass


Response = namedtuple('Response', ['status', 'reason', 'headers', 'body'])


def fix_url(url):
    if '://' not in url:
        url = 'http://' + url
    return url


def normalise_root(root):
    """What the Rust crawler does to a root: http:// added, scheme and host
    lower-cased, an empty path made '/', the fragment dropped."""
    parts = urllib.parse.urlsplit(fix_url(root.strip()))
    if parts.scheme.lower() not in ('http', 'https'):
        raise ValueError('root {!r} is not an http or https URL'.format(root))
    if not parts.hostname:
        raise ValueError('root {!r} has no host'.format(root))
    netloc = parts.netloc.lower()
    default = ':80' if parts.scheme.lower() == 'http' else ':443'
    if netloc.endswith(default):
        netloc = netloc[:-len(default)]
    return urllib.parse.urlunsplit(
        (parts.scheme.lower(), netloc, parts.path or '/', parts.query, ''))


def lenient_host(host):
    return '.'.join(host.split('.')[-2:])


def is_ip_literal(host):
    return re.match(r'\A[\d\.]*\Z', host) is not None or host.startswith('[')


def parse_response(raw):
    """Status line, headers and body of an HTTP/1.x response read to EOF."""
    head, sep, body = raw.partition(b'\r\n\r\n')
    if not sep:
        raise BadResponse('invalid HTTP response: incomplete head ({} bytes)'.format(len(raw)))
    lines = head.decode('iso-8859-1').split('\r\n')
    m = re.match(r'HTTP/1\.[01] (\d{3})(?: (.*))?$', lines[0])
    if not m:
        raise BadResponse('invalid HTTP response: bad status line {!r}'.format(lines[0][:40]))
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(':')
        if not colon:
            raise BadResponse('invalid HTTP response: bad header line {!r}'.format(line[:40]))
        headers.append((name.strip().lower(), value.strip()))
    hdrs = dict(headers)
    length = hdrs.get('content-length')
    if length is not None:
        n = int(length)
        if len(body) < n:
            raise BadResponse('invalid HTTP response: body cut short ({} of {} bytes)'
                              .format(len(body), n))
        body = body[:n]
    return Response(int(m.group(1)), m.group(2) or '', hdrs, body)


def content_type_of(response):
    """`cgi.parse_header(content_type)` and `pdict.get('charset', 'utf-8')`."""
    value = response.headers.get('content-type')
    if value is None:
        return '', 'utf-8'
    mime, _, params = value.partition(';')
    charset = 'utf-8'
    for param in params.split(';'):
        key, eq, val = param.partition('=')
        if eq and key.strip().lower() == 'charset' and val.strip().strip('"'):
            charset = val.strip().strip('"')
            break
    return mime.strip().lower(), charset


class Crawler:
    def __init__(self, roots, exclude=None, strict=True, max_redirect=10,
                 max_tries=4, max_tasks=100, timeout=10.0, max_body=16 << 20,
                 log_level=0, max_pages=100_000, max_depth=16, max_pool=None):
        if not roots:
            raise ValueError('no root URLs to crawl')
        if max_tasks < 1:
            raise ValueError('max_tasks must be at least 1')
        if max_tries < 1:
            raise ValueError('max_tries must be at least 1')
        # --max_pool: the most connections open at once (pyfiber's
        # ConnectionPool); None is max_tasks, as the chapter's Crawler pairs
        # them (max_tasks=10, max_pool=10). A place is taken before the
        # connect and given back once the socket is closed.
        self.max_pool = max_tasks if max_pool is None else max_pool
        if self.max_pool < 1:
            raise ValueError('max_pool must be at least 1')
        self.pool = asyncio.Semaphore(self.max_pool)
        try:
            self.exclude = re.compile(exclude) if exclude else None
        except re.error as e:
            raise ValueError('--exclude {!r} is not a valid regex: {}'.format(exclude, e))
        self.roots = []
        for root in roots:
            url = normalise_root(root)
            if url not in self.roots:
                self.roots.append(url)
        self.strict = strict
        self.max_redirect = max_redirect
        self.max_tries = max_tries
        self.max_tasks = max_tasks
        self.timeout = timeout
        self.max_body = max_body
        self.log_level = log_level
        self.max_pages = max_pages
        self.max_depth = max_depth
        self.depth = {}
        self.limited = 0
        self.q = asyncio.Queue()
        self.seen_urls = set()
        self.done = []
        self.root_domains = set()
        for root in self.roots:
            host = urllib.parse.urlsplit(root).hostname
            if is_ip_literal(host) or strict:
                self.root_domains.add(host)
            else:
                self.root_domains.add(lenient_host(host))
        for root in self.roots:
            self.add_url(root)
        self.t0 = time.time()
        self.t1 = None

    def log(self, level, msg, *args):
        if level <= self.log_level:
            print('{}:crawling:{}'.format(LEVELS[min(level, 3)], msg % args), file=sys.stderr)

    def host_okay(self, host):
        host = host.lower()
        if host in self.root_domains:
            return True
        if is_ip_literal(host):
            return False
        if self.strict:
            host = host[4:] if host.startswith('www.') else 'www.' + host
            return host in self.root_domains
        return lenient_host(host) in self.root_domains

    def url_allowed(self, url):
        if self.exclude and self.exclude.search(url):
            return False
        try:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname
        except ValueError:
            return False
        if parts.scheme not in ('http', 'https') or not host:
            self.log(3, 'skipping non-http scheme in %r', url)
            return False
        if not self.host_okay(host):
            self.log(3, 'skipping non-root host in %r', url)
            return False
        return True

    def add_url(self, url, max_redirect=None, depth=0):
        if max_redirect is None:
            max_redirect = self.max_redirect
        if len(self.seen_urls) >= self.max_pages:
            # --max_pages: counted, not followed.
            self.limited += 1
            self.log(1, 'max_pages %r reached: not queueing %r', self.max_pages, url)
            return
        self.depth[url] = depth
        self.log(3, 'adding %r %r', url, max_redirect)
        self.seen_urls.add(url)
        self.q.put_nowait((url, max_redirect))

    def record_statistic(self, stat):
        self.done.append(stat)

    async def fetch_once(self, host, port, target):
        """One HTTP/1.0 GET over asyncio streams, read to EOF."""
        reader, writer = await asyncio.open_connection(host, port)
        try:
            host_header = host if port == 80 else '{}:{}'.format(host, port)
            writer.write('GET {} HTTP/1.0\r\nHost: {}\r\n\r\n'
                         .format(target, host_header).encode('ascii'))
            await writer.drain()
            chunks = []
            size = 0
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_body:
                    raise ResponseTooLarge(
                        'response exceeds the limit of {} bytes'.format(self.max_body))
            if not chunks:
                raise RemoteDisconnected('Remote end closed connection without response')
            return parse_response(b''.join(chunks))
        finally:
            writer.close()

    async def fetch(self, url, max_redirect):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != 'http':
            self.log(0, 'cannot fetch %r: only http:// URLs can be fetched', url)
            self.record_statistic(stat_for(url, exception=ValueError(
                'only http:// URLs can be fetched, not {!r}'.format(url))))
            return
        host, port = parts.hostname, parts.port or 80
        target = parts.path or '/'
        if parts.query:
            target += '?' + parts.query
        tries = 0
        exception = None
        response = None
        while tries < self.max_tries:
            try:
                # A place in the pool first; the deadline starts after it,
                # at the connect (waiting in line is not the request's time).
                async with self.pool:
                    response = await asyncio.wait_for(
                        self.fetch_once(host, port, target), self.timeout)
                if tries > 1:
                    self.log(2, 'try %r for %r success', tries, url)
                break
            except (OSError, asyncio.TimeoutError, BadResponse, ResponseTooLarge,
                    ValueError) as e:
                if isinstance(e, asyncio.TimeoutError):
                    e = TimeoutError('timed out after {:.3f} s'.format(self.timeout))
                self.log(2, 'try %r for %r raised %s', tries, url, exc_line(e))
                exception = e
                if isinstance(e, ResponseTooLarge):
                    break  # the same next time: not retried
            tries += 1
        if response is None:
            self.log(0, '%r failed after %r tries', url, self.max_tries)
            self.record_statistic(stat_for(url, exception=exception))
            return
        if response.status in REDIRECT_STATUSES:
            self.follow_redirect(url, response, max_redirect)
        else:
            stat, links = self.parse_links(url, response)
            self.record_statistic(stat)
            depth = self.depth.get(url, 0)
            new = [link for link in links if link not in self.seen_urls]
            if depth >= self.max_depth:
                self.limited += len(new)  # --max_depth: not followed
            else:
                for link in new:
                    self.add_url(link, depth=depth + 1)

    def follow_redirect(self, url, response, max_redirect):
        fields = dict(status=response.status, size=len(response.body))
        location = response.headers.get('location')
        if location is None:
            self.record_statistic(stat_for(url, exception=InvalidRedirect(
                '{} response has no Location header'.format(response.status)), **fields))
            return
        next_url, _frag = urllib.parse.urldefrag(urllib.parse.urljoin(url, location))
        fields['next_url'] = next_url
        if next_url in self.seen_urls:
            self.record_statistic(stat_for(url, **fields))
        elif not self.url_allowed(next_url):
            self.log(2, 'not following redirect to %r from %r', next_url, url)
            self.record_statistic(stat_for(url, **fields))
        elif max_redirect > 0:
            self.log(2, 'redirect to %r from %r', next_url, url)
            self.record_statistic(stat_for(url, **fields))
            self.add_url(next_url, max_redirect - 1, depth=self.depth.get(url, 0))
        else:
            self.log(0, 'redirect limit reached for %r from %r', next_url, url)
            self.record_statistic(stat_for(url, **fields))

    def parse_links(self, url, response):
        links = []
        fields = dict(status=response.status, size=len(response.body))
        if response.status == 200:
            content_type, encoding = content_type_of(response)
            fields['content_type'] = content_type or None
            fields['encoding'] = encoding
            if content_type in LINK_CONTENT_TYPES:
                try:
                    text = response.body.decode(encoding)
                except (UnicodeDecodeError, LookupError) as e:
                    self.log(0, '%r: %s', url, exc_line(e))
                    return stat_for(url, exception=e, **fields), []
                found = []
                for href in HREF.findall(text):
                    try:
                        joined = urllib.parse.urljoin(url, href)
                    except ValueError:
                        continue
                    defragmented, _frag = urllib.parse.urldefrag(joined)
                    if defragmented not in found:
                        found.append(defragmented)
                if found:
                    self.log(2, 'got %r distinct urls from %r', len(found), url)
                links = [link for link in found if self.url_allowed(link)]
        fields['num_urls'] = len(links)
        fields['num_new_urls'] = len([link for link in links if link not in self.seen_urls])
        return stat_for(url, **fields), links

    async def work(self):
        while True:
            url, max_redirect = await self.q.get()
            assert url in self.seen_urls
            await self.fetch(url, max_redirect)
            self.q.task_done()

    async def crawl(self):
        self.t0 = time.time()
        workers = [asyncio.create_task(self.work()) for _ in range(self.max_tasks)]
        await self.q.join()
        self.t1 = time.time()
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def check_outcomes(self):
        urls = [stat.url for stat in self.done]
        if len(urls) != len(set(urls)) or set(urls) != self.seen_urls:
            raise RuntimeError('outcomes do not match seen_urls')


# --- The report (reporting.py) ---------------------------------------------

class Stats:
    def __init__(self):
        self.stats = {}

    def add(self, key, count=1):
        self.stats[key] = self.stats.get(key, 0) + count

    def report(self, file=None):
        for key, count in sorted(self.stats.items()):
            print('%10d' % count, key, file=file)


def outcome(stat):
    if stat.exception is not None:
        return 'error'
    if stat.next_url:
        return 'redirect'
    if stat.content_type == 'text/html':
        return 'html'
    return 'other'


def url_report(stat, stats, file=None):
    kind = outcome(stat)
    if kind == 'error':
        stats.add('fail')
        stats.add('fail_' + type(stat.exception).__name__)
        print(stat.url, 'error', exc_line(stat.exception), file=file)
    elif kind == 'redirect':
        stats.add('redirect')
        print(stat.url, stat.status, 'redirect', stat.next_url, file=file)
    elif kind == 'html':
        stats.add('html')
        stats.add('html_bytes', stat.size)
        print(stat.url, stat.status, stat.content_type, stat.encoding, stat.size,
              '%d/%d' % (stat.num_new_urls, stat.num_urls), file=file)
    else:
        if stat.status == 200:
            stats.add('other')
            stats.add('other_bytes', stat.size)
        else:
            stats.add('error')
            stats.add('error_bytes', stat.size)
            stats.add('status_%s' % stat.status)
        print(stat.url, stat.status, stat.content_type, stat.encoding, stat.size, file=file)


def elapsed(crawler):
    return (crawler.t1 or time.time()) - crawler.t0


def report(crawler, file=None):
    dt = elapsed(crawler)
    speed = len(crawler.done) / dt / crawler.max_tasks if dt and crawler.max_tasks else 0
    stats = Stats()
    print('*** Report ***', file=file)
    for stat in sorted(crawler.done, key=lambda s: s.url):
        url_report(stat, stats, file=file)
    print('Finished', len(crawler.done), 'urls in %.3f secs' % dt,
          '(max_tasks=%d)' % crawler.max_tasks, '(%.3f urls/sec/task)' % speed, file=file)
    stats.report(file=file)
    print('Todo:', crawler.q.qsize(), file=file)
    print('Done:', len(crawler.done), file=file)
    print('Date:', time.ctime(), 'local time', file=file)


def report_json(crawler, file=None):
    stats = Stats()
    urls = []

    class Sink:
        def write(self, _):
            pass

    for stat in sorted(crawler.done, key=lambda s: s.url):
        url_report(stat, stats, file=Sink())
        urls.append(dict(
            url=stat.url, outcome=outcome(stat), status=stat.status, next_url=stat.next_url,
            exception=exc_line(stat.exception) if stat.exception is not None else None,
            size=stat.size, content_type=stat.content_type, encoding=stat.encoding,
            num_urls=stat.num_urls, num_new_urls=stat.num_new_urls))
    print(json.dumps(dict(
        roots=crawler.roots, max_tasks=crawler.max_tasks, elapsed=elapsed(crawler),
        urls=urls, stats=dict(sorted(stats.stats.items())), todo=crawler.q.qsize(),
        done=len(crawler.done), date=time.ctime() + ' local time'), indent=2),
        file=file)


# --- A slow tree site, for a crawl with no roots --------------------------

async def start_tree_site(delay, pages, fanout):
    """The embedded server's tree site, on asyncio: page N links to its
    children N*fanout+1 .. N*fanout+fanout below `pages`; every answer waits
    `delay` seconds."""

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b'\r\n\r\n')
            target = head.split(b' ')[1].decode('ascii', 'replace')
            await asyncio.sleep(delay)
            n = 0 if target == '/' else int(target[1:]) if target[1:].isdigit() else -1
            if 0 <= n < pages:
                links = ''.join('<a href="/{0}">page {0}</a>\n'.format(c)
                                for c in range(n * fanout + 1, n * fanout + fanout + 1)
                                if c < pages)
                status, body = '200 OK', '<title>page {}</title>\n{}'.format(n, links)
            else:
                status, body = '404 Not Found', '<title>404 Not Found</title>\n'
            data = body.encode()
            writer.write('HTTP/1.0 {}\r\nContent-Type: text/html; charset=utf-8\r\n'
                         'Content-Length: {}\r\n\r\n'.format(status, len(data)).encode() + data)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, '127.0.0.1', 0, backlog=8192)


# --- The command line (crawl.py) ------------------------------------------

def make_parser():
    p = argparse.ArgumentParser(description='Web crawler (the 500 Lines chapter, stdlib asyncio).')
    p.add_argument('roots', nargs='*', default=[], help='Root URL (may be repeated)')
    p.add_argument('--max_redirect', type=int, metavar='N', default=10,
                   help='Limit redirection chains (for 301, 302 etc.)')
    p.add_argument('--max_tries', type=int, metavar='N', default=4,
                   help='Limit retries on network errors')
    p.add_argument('--max_tasks', type=int, metavar='N', default=100,
                   help='Limit concurrent connections')
    p.add_argument('--max_pool', type=int, metavar='N', default=None,
                   help='Limit connection pool size: the most connections open at once '
                        '(default: the --max_tasks value)')
    p.add_argument('--max_pages', type=int, metavar='N', default=100_000,
                   help='Queue at most N URLs in all')
    p.add_argument('--max_depth', type=int, metavar='N', default=16,
                   help='Follow links at most N hops from a root')
    p.add_argument('--exclude', action='store', metavar='REGEX', help='Exclude matching URLs')
    p.add_argument('--strict', action='store_true', default=True,
                   help='Strict host matching (default)')
    p.add_argument('--lenient', action='store_false', dest='strict', help='Lenient host matching')
    p.add_argument('-v', '--verbose', action='count', dest='level', default=2,
                   help='Verbose logging (repeat for more verbose)')
    p.add_argument('-q', '--quiet', action='store_const', const=0, dest='level',
                   help='Only log errors')
    p.add_argument('--timeout', type=float, metavar='S', default=10.0,
                   help='Seconds one request may take, connect to last byte')
    p.add_argument('--json', action='store_true', help='Print the report as JSON')
    p.add_argument('--delay', type=float, metavar='S', default=1.0,
                   help='No roots: seconds the tree site waits before each answer')
    p.add_argument('--pages', type=int, metavar='N', default=1111, help='No roots: pages')
    p.add_argument('--fanout', type=int, metavar='N', default=10, help='No roots: links per page')
    return p


async def amain(args, holder):
    server = None
    roots = args.roots
    if not roots:
        server = await start_tree_site(args.delay, args.pages, args.fanout)
        port = server.sockets[0].getsockname()[1]
        roots = ['http://127.0.0.1:{}/'.format(port)]
        print('crawling a tree site at {} ({} pages, fanout {}, delay {:.3f} s)'
              .format(roots[0], args.pages, args.fanout, args.delay), file=sys.stderr)
    crawler = Crawler(roots, exclude=args.exclude, strict=args.strict,
                      max_redirect=args.max_redirect, max_tries=args.max_tries,
                      max_tasks=args.max_tasks, timeout=args.timeout, log_level=args.level,
                      max_pages=args.max_pages, max_depth=args.max_depth,
                      max_pool=args.max_pool)
    holder['crawler'] = crawler
    # Ctrl-C and SIGTERM (even where a shell had SIGINT ignored, as for a
    # background job) end the crawl as KeyboardInterrupt ends crawl.py's.
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    crawling = asyncio.create_task(crawler.crawl())
    waiting = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({crawling, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if interrupted.is_set():
            # The tree site's handlers are cancelled on the way out; their
            # "Exception in callback" noise says nothing about the crawl.
            loop.set_exception_handler(lambda loop, context: None)
            raise KeyboardInterrupt
        waiting.cancel()
        await crawling
    finally:
        if server is not None:
            server.close()
    return crawler


def main():
    args = make_parser().parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    holder = {}
    try:
        crawler = asyncio.run(amain(args, holder))
    except ValueError as e:
        print('crawl: {}'.format(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # crawl.py: print('\nInterrupted\n'), then the report all the same.
        sys.stderr.flush()
        print('\nInterrupted\n', file=sys.stderr if args.json else sys.stdout)
        crawler = holder.get('crawler')
        if crawler is not None:
            crawler.t1 = time.time()
            if args.json:
                report_json(crawler)
            else:
                report(crawler)
        sys.stdout.flush()
        return 130
    if args.json:
        report_json(crawler)
    else:
        report(crawler)
    crawler.check_outcomes()
    return 0


if __name__ == '__main__':
    sys.exit(main())
