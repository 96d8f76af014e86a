//! `net`: the socket calls and HTTP chores of the tutorials, as small
//! synchronous building blocks.
//!
//! Why this exists: every stage of the ladder — `sync.py`, `no_blocking.py`,
//! the callback loop, the generator `fetch`, the 500 Lines crawler — makes the
//! same handful of calls: `socket.socket()`, `setblocking(False)`, a
//! `connect` that raises `BlockingIOError`, `send`, `recv(4096)` until `b''`,
//! then "split the response, find the links, join them onto the page's URL".
//! Those calls live here, once, as plain functions that raise
//! [`Exception`](crate::Exception)s the way Python raises them; the stages
//! (written elsewhere) call them from selector callbacks and generator bodies.
//! Nothing in this module waits on anything but the socket it is handed.
//!
//! | here | Python |
//! |---|---|
//! | [`Socket`] | `socket.socket` (AF_INET, SOCK_STREAM) |
//! | [`raise_nofile_limit`] | `resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))` |
//! | [`reserve_fds`] | (none: grows the descriptor table in one step, for a process with threads) |
//! | [`http_get_request`] | `'GET {} HTTP/1.0\r\nHost: {}\r\n\r\n'.format(url, host)` |
//! | [`Response`], [`ResponseReader`], [`is_complete`] | `http.client.HTTPResponse` (status, reason, headers, body; chunked decoding; `100 Continue` skipped; obs-fold; parsed in one pass as it arrives) |
//! | [`MAX_LINE`] | `http.client._MAXLINE` (65,536; past it, `LineTooLong`) |
//! | [`fetch_blocking`] | `sync.py`'s `blocking_request()` |
//! | [`title`] | `re.search(r'<title>(.*?)</title>', html, re.I \| re.S)` |
//! | [`parse_links`], [`join_links`] | the crawler's `re.findall(href) + urljoin + urldefrag` |
//! | [`urljoin`], [`urldefrag`], [`split_http_url`] | `urllib.parse.urljoin`, `urldefrag`, `urlparse` |
//! | [`decode_body`] | `body.decode(charset)` (Python's utf-8/ascii/latin-1, then WHATWG labels via encoding_rs: gbk, windows-1252, utf-16, ...) |

mod charset;
mod html;
mod http;
mod socket;

pub use charset::decode_body;
pub use html::{
    find_hrefs, join_links, parse_links, parse_links_with, split_http_url, title, urldefrag,
    urljoin, HrefQuotes, HREF_PATTERN, HREF_PATTERN_QUOTE_OPTIONAL,
};
pub use http::{
    fetch_blocking, http_get_request, is_complete, HttpVersion, Response, ResponseReader, MAX_LINE,
};
pub(crate) use socket::generation as socket_generation;
pub use socket::{nofile_limit, raise_nofile_limit, reserve_fds, Socket, RLIM_INFINITY};
