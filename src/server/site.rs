//! The slow server's site: which bytes answer which request.
//!
//! Why this exists apart from the connection machinery: what the site says
//! (the tutorials' search pages, a tree of linked pages for the crawler, the
//! fault and redirect paths the tests aim at) is plain data, decided by a
//! pure function of the request line. Keeping it here lets the connection
//! code in `server.rs` be only about sockets, timers and the selector, and
//! lets the routing be tested without a socket.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use std::io::Write;

use super::{Fault, HUGE_BODY_LEN, LONG_HEADER_LEN};

/// What the connection does with a parsed request: the site's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// After the delay, write these bytes and close (a normal response, or
    /// `/fault/garbage`'s non-HTTP bytes).
    Bytes(Vec<u8>),
    /// After the delay, write `head` then `body_len` filler bytes generated
    /// as the socket drains (`/fault/huge`: never buffered whole).
    Stream { head: Vec<u8>, body_len: u64 },
    /// After the delay, write these bytes one at a time, one per
    /// [`TRICKLE_INTERVAL`](super::TRICKLE_INTERVAL) (`/fault/trickle`).
    Trickle(Vec<u8>),
    /// After the delay, write these bytes, then reset the connection (RST)
    /// instead of closing it (`/fault/reset-headers`, `/fault/reset-body`).
    ResetAfter(Vec<u8>),
    /// Never answer; hold the connection until the client goes
    /// (`/fault/stall`).
    Stall,
    /// Close at once, without a byte (`/fault/close`, `/flaky/K/NAME`).
    Close,
}

/// The site: a tree of `pages` pages, each linking to `fanout` children,
/// plus the search, fault and test paths.
pub(crate) struct Site {
    pub pages: usize,
    pub fanout: usize,
    pub fault: Option<Fault>,
    /// `/flaky/K/NAME`: how many requests each such path has had.
    flaky: RefCell<FlakyCounts>,
}

/// The most `/flaky/K/NAME` paths whose counts are kept; past it the
/// oldest path is forgotten (and fails K times again if asked again).
pub(crate) const FLAKY_PATHS: usize = 4096;

/// Per-path request counts for `/flaky`, bounded: a path is kept as a
/// 64-bit hash, not as its text (a client once sent 5,000 paths of 60 KB
/// each and the server kept 296 MB of them), and at most [`FLAKY_PATHS`]
/// of them, the oldest forgotten first.
pub(crate) struct FlakyCounts {
    hasher: RandomState,
    counts: HashMap<u64, u64>,
    order: VecDeque<u64>,
}

impl FlakyCounts {
    fn new() -> FlakyCounts {
        FlakyCounts {
            hasher: RandomState::new(),
            counts: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Counts one more request for `path`; returns its count.
    fn hit(&mut self, path: &str) -> u64 {
        let key = self.hasher.hash_one(path);
        if !self.counts.contains_key(&key) {
            if self.order.len() == FLAKY_PATHS {
                if let Some(old) = self.order.pop_front() {
                    self.counts.remove(&old);
                }
            }
            self.order.push_back(key);
        }
        let count = self.counts.entry(key).or_insert(0);
        *count += 1;
        *count
    }

    /// How many paths are remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }
}

/// HTML-escapes text put into a page (`html.escape` with `quote=True`).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// The reason phrase of a status code (`http.HTTPStatus(code).phrase`).
pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        408 => "Request Timeout",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Unknown",
    }
}

/// Content types the site serves.
const HTML: &str = "text/html; charset=utf-8";

/// The response head: HTTP/1.0, `Content-Length` always set, the server
/// closes after the body.
fn head(code: u16, content_type: &str, extra: &[(&str, &str)], content_length: u64) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.0 {code} {}\r\nServer: pyfiber-slow-server\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n",
        reason(code)
    );
    for (name, value) in extra {
        h.push_str(&format!("{name}: {value}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    h.into_bytes()
}

/// A whole response: head and body.
pub(crate) fn response(
    code: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = head(code, content_type, extra, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// An HTML page with a title and some body markup.
fn page(title: &str, body: &str) -> Vec<u8> {
    format!("<html><head><title>{title}</title></head><body>{body}</body></html>\n").into_bytes()
}

/// A plain HTML error answer (400, 404, 405, 431), its title the status.
pub(crate) fn error(code: u16, detail: &str) -> Vec<u8> {
    let title = format!("{code} {}", reason(code));
    let body = page(&title, &format!("<p>{}</p>", escape(detail)));
    let extra: &[(&str, &str)] = if code == 405 {
        &[("Allow", "GET, HEAD")]
    } else {
        &[]
    };
    response(code, HTML, extra, &body)
}

fn redirect(code: u16, location: &str) -> Vec<u8> {
    let title = format!("{code} {}", reason(code));
    let body = page(
        &title,
        &format!("<a href=\"{}\">{}</a>", escape(location), escape(location)),
    );
    response(code, HTML, &[("Location", location)], &body)
}

/// The query string's `name=value` pairs, percent-decoded as
/// `urllib.parse.parse_qsl` decodes them.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A page number as the tree writes it: decimal, no sign, no leading zero.
fn page_number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// The bytes one of the fault modes answers with.
pub(crate) fn fault_reply(fault: Fault) -> Reply {
    match fault {
        Fault::ResetHeaders => Reply::ResetAfter(b"HTTP/1.0 200 OK\r\nContent-Ty".to_vec()),
        Fault::ResetBody => {
            let mut bytes = head(200, HTML, &[], 1000);
            bytes.extend_from_slice(b"<html><head><title>reset-body</title></head><body>");
            bytes.extend_from_slice(&[b'x'; 50]);
            Reply::ResetAfter(bytes)
        }
        Fault::Stall => Reply::Stall,
        Fault::Garbage => {
            Reply::Bytes(b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n<<garbage>>\n".to_vec())
        }
        Fault::Huge => Reply::Stream {
            head: head(200, HTML, &[], HUGE_BODY_LEN),
            body_len: HUGE_BODY_LEN,
        },
        Fault::NotUtf8 => {
            let mut body = b"<html><head><title>not-utf8</title></head><body><p>".to_vec();
            body.extend_from_slice(b"bad bytes: \xff\xfe \xc3\x28 \xe2\x82");
            body.extend_from_slice(b"</p></body></html>\n");
            Reply::Bytes(response(200, HTML, &[], &body))
        }
        // As short as a valid response gets, since each byte costs 100 ms.
        Fault::Trickle => {
            Reply::Trickle(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\ntrickle".to_vec())
        }
        Fault::Close => Reply::Close,
        Fault::Continue => {
            let mut bytes = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            bytes.extend(response(200, HTML, &[], &linked_page("continue")));
            Reply::Bytes(bytes)
        }
        Fault::Fold => {
            let folded = [("X-Folded", "first part\r\n  second part")];
            Reply::Bytes(response(200, HTML, &folded, &linked_page("fold")))
        }
        Fault::LongHeader => Reply::Stream {
            head: b"HTTP/1.0 200 OK\r\nX-Long: ".to_vec(),
            body_len: LONG_HEADER_LEN,
        },
        Fault::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let compressed = gz
                .write_all(&linked_page("gzip"))
                .and_then(|()| gz.finish())
                .unwrap_or_default();
            let extra = [("Content-Encoding", "gzip")];
            Reply::Bytes(response(200, HTML, &extra, &compressed))
        }
        Fault::Gbk => {
            let page = String::from_utf8_lossy(&linked_page("中文 gbk")).into_owned();
            let (bytes, _, _) = encoding_rs::GBK.encode(&page);
            Reply::Bytes(response(200, "text/html; charset=gbk", &[], &bytes))
        }
    }
}

/// A small page with this title and one link, to `/1`.
fn linked_page(title: &str) -> Vec<u8> {
    page(title, "<a href=\"/1\">page 1</a>")
}

impl Site {
    pub fn new(pages: usize, fanout: usize, fault: Option<Fault>) -> Site {
        Site {
            pages,
            fanout,
            fault,
            flaky: RefCell::new(FlakyCounts::new()),
        }
    }

    /// The children of tree page `n`: `n*fanout+1 ..= n*fanout+fanout`,
    /// those that are `< pages`.
    pub fn children(&self, n: usize) -> Vec<usize> {
        let first = n.saturating_mul(self.fanout).saturating_add(1);
        (0..self.fanout)
            .map(|i| first.saturating_add(i))
            .filter(|&m| m < self.pages)
            .collect()
    }

    /// Tree page `n`: title `page N`, a link to each child.
    fn tree_page(&self, n: usize) -> Vec<u8> {
        let links: String = self
            .children(n)
            .iter()
            .map(|m| format!("<a href=\"/{m}\">page {m}</a>\n"))
            .collect();
        response(200, HTML, &[], &page(&format!("page {n}"), &links))
    }

    /// Decides the answer to `method target` (target = path and query, as
    /// on the request line).
    pub fn route(&self, method: &str, target: &str) -> Reply {
        if let Some(fault) = self.fault {
            return fault_reply(fault);
        }
        if method != "GET" && method != "HEAD" {
            return Reply::Bytes(error(405, &format!("method {method} is not allowed")));
        }
        let reply = self.route_get(target);
        match reply {
            Reply::Bytes(bytes) if method == "HEAD" => Reply::Bytes(head_only(bytes)),
            Reply::Stream { head, .. } if method == "HEAD" => Reply::Bytes(head),
            other => other,
        }
    }

    fn route_get(&self, target: &str) -> Reply {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, q),
            None => (target, ""),
        };
        let pairs = query_pairs(query);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let bytes = match segments.as_slice() {
            [""] if self.pages > 0 => self.tree_page(0),
            ["s"] => match query_get(&pairs, "wd") {
                Some(wd) => {
                    let wd = escape(wd);
                    let body = page(
                        &format!("{wd} - pyfiber search"),
                        &format!("<p>results for {wd}</p>"),
                    );
                    response(200, HTML, &[], &body)
                }
                None => error(400, "missing query parameter 'wd' (try /s?wd=1)"),
            },
            [n] if page_number(n).is_some_and(|n| n >= 1 && n < self.pages) => {
                self.tree_page(page_number(n).unwrap_or_default())
            }
            ["fault", name] => match name.parse::<Fault>() {
                Ok(fault) => return fault_reply(fault),
                Err(_) => not_found(path),
            },
            ["redirect", n] => match page_number(n) {
                Some(0) => redirect(302, "/"),
                Some(n) => redirect(302, &format!("/redirect/{}", n - 1)),
                None => not_found(path),
            },
            ["redirect-loop", "a"] => redirect(302, "/redirect-loop/b"),
            ["redirect-loop", "b"] => redirect(302, "/redirect-loop/a"),
            ["redirect-to"] => redirect_to(&pairs),
            ["flaky", k, name] if !name.is_empty() => match page_number(k) {
                Some(k) => {
                    if self.flaky.borrow_mut().hit(path) <= k as u64 {
                        return Reply::Close;
                    }
                    let name = escape(name);
                    let body = page(&format!("flaky {name}"), &format!("<p>{name}</p>"));
                    response(200, HTML, &[], &body)
                }
                None => not_found(path),
            },
            ["charset", "latin-1"] => {
                let body = b"<html><head><title>caf\xe9 latin-1</title></head><body>\
                    <p>na\xefve caf\xe9</p><a href=\"/1\">page 1</a></body></html>\n";
                response(200, "text/html; charset=latin-1", &[], body)
            }
            ["type", "plain"] => response(
                200,
                "text/plain; charset=utf-8",
                &[],
                b"plain text, not a page: <a href=\"/2\">2</a>\n",
            ),
            ["type", "xml"] => response(
                200,
                "application/xml",
                &[],
                b"<?xml version=\"1.0\"?>\n<doc><a href=\"/3\">3</a></doc>\n",
            ),
            ["offhost"] => {
                let links: String = OFFHOST_LINKS
                    .iter()
                    .map(|l| format!("<a href=\"{l}\">{l}</a>\n"))
                    .collect();
                response(200, HTML, &[], &page("offhost", &links))
            }
            _ => not_found(path),
        };
        Reply::Bytes(bytes)
    }
}

/// The links of `/offhost`: other hosts, other schemes, and one on-host link
/// with a fragment.
pub const OFFHOST_LINKS: [&str; 6] = [
    "http://example.com/",
    "https://www.example.org/x",
    "mailto:a@b.c",
    "ftp://127.0.0.1/f",
    "/1#frag",
    "javascript:void(0)",
];

fn not_found(path: &str) -> Vec<u8> {
    error(404, &format!("no page at {path}"))
}

/// `/redirect-to?code=301&to=URL`: that code, `Location: URL` verbatim,
/// once checked: a Location is a URI reference (RFC 9110 §10.2.2), so
/// control characters (NUL, CR, LF, DEL, ...) and non-ASCII bytes are
/// refused with 400, naming the first bad character and where it is.
fn redirect_to(pairs: &[(String, String)]) -> Vec<u8> {
    let code = match query_get(pairs, "code") {
        None => 302,
        Some(text) => match text.parse::<u16>() {
            Ok(code) if (300..400).contains(&code) => code,
            _ => {
                return error(
                    400,
                    &format!(
                        "query parameter 'code' must be a redirect status 300-399, got {text:?}"
                    ),
                )
            }
        },
    };
    match query_get(pairs, "to") {
        None => error(
            400,
            "missing query parameter 'to' (the Location to redirect to)",
        ),
        Some(to) => match to
            .char_indices()
            .find(|(_, c)| !c.is_ascii() || c.is_ascii_control())
        {
            Some((at, c)) => error(
                400,
                &format!(
                    "query parameter 'to' must be a URI reference: {c:?} at character {} is not allowed in a Location (percent-encode it)",
                    to[..at].chars().count()
                ),
            ),
            None => redirect(code, to),
        },
    }
}

/// A response without its body (the answer to `HEAD`).
fn head_only(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        bytes.truncate(end + 4);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reply: Reply) -> String {
        match reply {
            Reply::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("not bytes: {other:?}"),
        }
    }

    #[test]
    fn tree_children_stay_below_pages() {
        let site = Site::new(1111, 10, None);
        assert_eq!(site.children(0), (1..=10).collect::<Vec<_>>());
        assert_eq!(site.children(110), (1101..=1110).collect::<Vec<_>>());
        assert!(site.children(111).is_empty());
        let small = Site::new(5, 3, None);
        assert_eq!(small.children(1), vec![4]);
    }

    #[test]
    fn page_numbers_are_canonical() {
        let site = Site::new(20, 2, None);
        assert!(text(site.route("GET", "/7")).contains("<title>page 7</title>"));
        for bad in ["/0", "/07", "/20", "/-1", "/+1", "/1/"] {
            assert!(
                text(site.route("GET", bad)).starts_with("HTTP/1.0 404 Not Found"),
                "{bad}"
            );
        }
    }

    #[test]
    fn redirect_to_checks_its_query() {
        let site = Site::new(1, 1, None);
        let ok = text(site.route("GET", "/redirect-to?code=307&to=http%3A%2F%2Fx%2Fy%3Fa%3D1"));
        assert!(ok.starts_with("HTTP/1.0 307 Temporary Redirect\r\n"));
        assert!(ok.contains("\r\nLocation: http://x/y?a=1\r\n"));
        let bad = text(site.route("GET", "/redirect-to?code=200&to=/"));
        assert!(bad.starts_with("HTTP/1.0 400") && bad.contains("&#x27;code&#x27;"));
        let missing = text(site.route("GET", "/redirect-to?code=301"));
        assert!(missing.starts_with("HTTP/1.0 400") && missing.contains("&#x27;to&#x27;"));
    }

    #[test]
    fn flaky_fails_k_times_per_path() {
        let site = Site::new(1, 1, None);
        assert_eq!(site.route("GET", "/flaky/2/a"), Reply::Close);
        assert_eq!(site.route("GET", "/flaky/2/b"), Reply::Close);
        assert_eq!(site.route("GET", "/flaky/2/a"), Reply::Close);
        assert!(text(site.route("GET", "/flaky/2/a")).contains("<title>flaky a</title>"));
        assert_eq!(site.route("GET", "/flaky/2/b"), Reply::Close);
    }

    #[test]
    fn flaky_remembers_a_bounded_number_of_paths() {
        let site = Site::new(1, 1, None);
        let long = "n".repeat(1000);
        for i in 0..FLAKY_PATHS + 100 {
            assert_eq!(
                site.route("GET", &format!("/flaky/1/{i}{long}")),
                Reply::Close
            );
        }
        assert_eq!(site.flaky.borrow().len(), FLAKY_PATHS);
        // The newest paths are still counted; the oldest were forgotten.
        let newest = format!("/flaky/1/{}{long}", FLAKY_PATHS + 99);
        assert!(text(site.route("GET", &newest)).contains("200 OK"));
        assert_eq!(
            site.route("GET", &format!("/flaky/1/0{long}")),
            Reply::Close
        );
    }

    #[test]
    fn redirect_to_refuses_control_characters_in_location() {
        let site = Site::new(1, 1, None);
        for (to, what) in [
            ("%00x", "'\\0' at character 0"),
            ("/a%0Db", "'\\r' at character 2"),
            ("/a%0Ab", "'\\n' at character 2"),
            ("/a%7F", "'\\u{7f}' at character 2"),
            ("/caf%C3%A9", "'é' at character 4"),
        ] {
            let got = text(site.route("GET", &format!("/redirect-to?to={to}")));
            assert!(got.starts_with("HTTP/1.0 400"), "{to}: {got}");
            assert!(!got.contains("Location:"), "{to}: {got}");
            assert!(got.contains(&escape(what)), "{to}: {got}");
        }
        let ok = text(site.route("GET", "/redirect-to?to=/a%20b"));
        assert!(ok.contains("\r\nLocation: /a b\r\n"), "{ok}");
    }

    #[test]
    fn head_has_no_body_and_other_methods_are_refused() {
        let site = Site::new(3, 2, None);
        let h = text(site.route("HEAD", "/"));
        assert!(h.ends_with("\r\n\r\n") && h.contains("Content-Length: "));
        let post = text(site.route("POST", "/"));
        assert!(post.starts_with("HTTP/1.0 405") && post.contains("Allow: GET, HEAD"));
    }
}
