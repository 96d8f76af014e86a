//! HTTP/1.x for the tutorials' clients: the `GET` they send, and the parsing
//! of what comes back.
//!
//! Why this exists: the tutorials send `GET {url} HTTP/1.0` and read until
//! the server closes, then split the bytes at `\r\n\r\n` by hand. That stops
//! working as soon as a server answers HTTP/1.1 with `Transfer-Encoding:
//! chunked` (the Baidu version of the tutorial), or keeps the connection
//! open, or a response is cut short. Here the head is parsed by `httparse`;
//! the body is framed the way `http.client` frames it (no body for 1xx, 204
//! and 304; `Transfer-Encoding: chunked` decoded; else `Content-Length`; else
//! until EOF), and every malformed or truncated response is an error that
//! says what was wrong and where, never a silently wrong body.

use std::ops::Range;

use crate::exception::{Exception, PyResult};
use crate::net::charset::{decode_body, latin1};
use crate::net::socket::Socket;
use crate::value::bytes_repr;

/// The most header lines a response may carry.
const MAX_HEADERS: usize = 128;
/// The most trailer lines after a chunked body.
const MAX_TRAILERS: usize = 32;

fn invalid(msg: impl std::fmt::Display) -> Exception {
    Exception::ValueError(format!("invalid HTTP response: {msg}"))
}

/// `repr()` of up to 40 bytes from `at`, cut at the end of the line.
fn preview(raw: &[u8], at: usize) -> String {
    let rest = &raw[at.min(raw.len())..];
    let line_end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(rest.len(), |i| i + 2);
    let cut = line_end.min(40);
    let more = if cut < rest.len() { "..." } else { "" };
    format!("{}{more}", bytes_repr(&rest[..cut]))
}

/// Which HTTP version [`http_get_request`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// `HTTP/1.0`: the tutorials' form; the server closes after answering.
    Http10,
    /// `HTTP/1.1` with `Connection: close`: the Baidu version, whose answer
    /// may be chunked.
    Http11,
}

/// The tutorials' request line and headers:
/// `'GET {0} HTTP/1.0\r\nHost: {1}\r\n\r\n'.format(path, host)`, or for
/// [`HttpVersion::Http11`]
/// `'GET {0} HTTP/1.1\r\nHost: {1}\r\nConnection: close\r\n\r\n'`. Send it
/// with `.as_bytes()` (Python's `.encode('ascii')`).
pub fn http_get_request(path: &str, host: &str, version: HttpVersion) -> String {
    match version {
        HttpVersion::Http10 => format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"),
        HttpVersion::Http11 => {
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        }
    }
}

/// How the body after the head is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// 1xx, 204, 304: no body whatever the headers say.
    Empty,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: ..., chunked`.
    Chunked,
    /// Neither: the body runs until the server closes the connection.
    UntilEof,
}

/// The status line and headers, and where the body starts.
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body_start: usize,
    framing: Framing,
}

/// A response found complete in a buffer.
struct Framed {
    head: Head,
    /// The body: a range of the buffer, or the de-chunked bytes.
    body: Body,
    /// Where the response ends in the buffer.
    end: usize,
}

enum Body {
    Range(Range<usize>),
    Decoded(Vec<u8>),
    /// A chunked body that was only checked, not copied.
    Unread,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn framing(status: u16, headers: &[(String, String)]) -> PyResult<Framing> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let codings: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if !codings.is_empty() {
        // Transfer-Encoding overrides Content-Length; only a final `chunked`
        // delimits the body, any other last coding runs to EOF.
        return Ok(if codings.last().map(String::as_str) == Some("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilEof
        });
    }
    let mut length: Option<usize> = None;
    for (_, value) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        for item in value.split(',') {
            let item = item.trim();
            let n = if !item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()) {
                item.parse::<usize>().ok()
            } else {
                None
            }
            .ok_or_else(|| invalid(format!("bad Content-Length {:?}", value)))?;
            if length.is_some_and(|m| m != n) {
                return Err(invalid(format!(
                    "conflicting Content-Length values ({} and {n})",
                    length.unwrap_or_default()
                )));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilEof, Framing::Length))
}

/// Parses the status line and headers; `None` while the blank line that ends
/// them has not arrived.
fn parse_head(raw: &[u8]) -> PyResult<Option<Head>> {
    let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let body_start = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(invalid(format!(
                "{e} in the head, which starts {}",
                preview(raw, 0)
            )))
        }
    };
    let status = resp.code.unwrap_or_default();
    let reason = resp.reason.unwrap_or_default().to_string();
    // http.client decodes header bytes as ISO-8859-1, which never fails.
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_string(), latin1(h.value)))
        .collect();
    let framing = framing(status, &headers)?;
    Ok(Some(Head {
        status,
        reason,
        headers,
        body_start,
        framing,
    }))
}

/// Walks a chunked body starting at `start`. `Ok(Ok(end))` when the last
/// chunk and trailers are in; `Ok(Err(what))` when more bytes are needed,
/// `what` saying where the data stops; `Err` for a malformed body. With
/// `out`, the chunk data is appended to it.
fn dechunk(
    raw: &[u8],
    start: usize,
    mut out: Option<&mut Vec<u8>>,
) -> PyResult<Result<usize, String>> {
    let mut pos = start;
    let mut index = 0usize;
    loop {
        let (line_len, size) = match httparse::parse_chunk_size(&raw[pos..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => {
                return Ok(Err(format!(
                    "inside the size line of chunk {index} at byte {pos}"
                )))
            }
            Err(_) => {
                return Err(invalid(format!(
                    "bad chunk size line for chunk {index} at byte {pos}: {}",
                    preview(raw, pos)
                )))
            }
        };
        let data_start = pos + line_len;
        if size == 0 {
            let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
            return match httparse::parse_headers(&raw[data_start..], &mut slots) {
                Ok(httparse::Status::Complete((n, _))) => Ok(Ok(data_start + n)),
                Ok(httparse::Status::Partial) => Ok(Err(format!(
                    "after the last chunk, before the blank line that ends the trailers (byte {data_start})"
                ))),
                Err(e) => Err(invalid(format!(
                    "bad trailer after the last chunk at byte {data_start}: {e}: {}",
                    preview(raw, data_start)
                ))),
            };
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|s| s.checked_add(data_start + 2).is_some())
            .ok_or_else(|| {
                invalid(format!(
                    "chunk {index} at byte {pos} claims {size} bytes, more than can be held"
                ))
            })?;
        let data_end = data_start + size;
        let available = raw.len() - data_start;
        // Check the CRLF after the data as far as it has arrived.
        if available > size {
            let got = &raw[data_end..raw.len().min(data_end + 2)];
            if !b"\r\n".starts_with(got) {
                return Err(invalid(format!(
                    "chunk {index} ({size} bytes from byte {data_start}) is not followed by CRLF but by {}",
                    preview(raw, data_end)
                )));
            }
        }
        if available < size + 2 {
            return Ok(Err(format!(
                "inside chunk {index} ({size} bytes from byte {data_start}, {} arrived)",
                available.min(size)
            )));
        }
        if let Some(out) = out.as_deref_mut() {
            out.extend_from_slice(&raw[data_start..data_end]);
        }
        pos = data_end + 2;
        index += 1;
    }
}

/// Finds the response at the start of `raw`. `eof` says the connection is
/// closed, so nothing more will come: a body delimited by EOF is then
/// complete, and anything still missing is a truncation error. `decode`
/// copies out a chunked body (otherwise it is only checked).
fn frame(raw: &[u8], eof: bool, decode: bool) -> PyResult<Option<Framed>> {
    let head = match parse_head(raw)? {
        Some(head) => head,
        None if !eof => return Ok(None),
        None if raw.is_empty() => {
            return Err(invalid(
                "empty response: the connection closed before any byte arrived",
            ))
        }
        None => {
            return Err(invalid(format!(
                "truncated head: the connection closed after {} bytes, before the blank line that ends the headers; it starts {}",
                raw.len(),
                preview(raw, 0)
            )))
        }
    };
    let start = head.body_start;
    let (body, end) = match head.framing {
        Framing::Empty => (Body::Range(start..start), start),
        Framing::Length(n) => {
            let got = raw.len() - start;
            if got >= n {
                (Body::Range(start..start + n), start + n)
            } else if eof {
                return Err(invalid(format!(
                    "truncated body: Content-Length is {n} but the connection closed after {got} body bytes"
                )));
            } else {
                return Ok(None);
            }
        }
        Framing::Chunked => {
            let mut out = Vec::new();
            match dechunk(raw, start, decode.then_some(&mut out))? {
                Ok(end) => (
                    if decode {
                        Body::Decoded(out)
                    } else {
                        Body::Unread
                    },
                    end,
                ),
                Err(what) if eof => {
                    return Err(invalid(format!(
                        "truncated chunked body: the connection closed {what}"
                    )))
                }
                Err(_) => return Ok(None),
            }
        }
        Framing::UntilEof if eof => (Body::Range(start..raw.len()), raw.len()),
        Framing::UntilEof => return Ok(None),
    };
    Ok(Some(Framed { head, body, end }))
}

/// An HTTP response: what `http.client.HTTPResponse` (or aiohttp's
/// `ClientResponse`) gives the crawler — `status`, `reason`, `headers` and
/// the whole `body` (de-chunked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// `response.status`, e.g. `200`.
    pub status: u16,
    /// `response.reason`, e.g. `"OK"`.
    pub reason: String,
    /// `response.getheaders()`: every header line in order, names as sent,
    /// values decoded as ISO-8859-1 like `http.client` does.
    pub headers: Vec<(String, String)>,
    /// `response.read()`: the body, chunked transfer-encoding removed.
    pub body: Vec<u8>,
}

impl Response {
    /// Parses a whole response as read until EOF (the tutorials' `response
    /// += chunk` until `recv` returns `b''`), like `http.client` reading it.
    ///
    /// The body is framed by `Transfer-Encoding: chunked` (decoded), else
    /// `Content-Length`, else it is everything after the head. Bytes after a
    /// framed body are ignored, as `http.client` ignores them. Raises
    /// `ValueError("invalid HTTP response: ...")` for garbage, a truncated
    /// head or body, a bad `Content-Length` or a malformed chunk, saying what
    /// and at which byte.
    pub fn parse(raw: &[u8]) -> PyResult<Response> {
        let framed = frame(raw, true, true)?.ok_or_else(|| invalid("incomplete response"))?;
        Ok(Response::from_framed(raw, framed))
    }

    /// The response at the start of `raw` if it is already complete without
    /// EOF (see [`is_complete`]), with the number of bytes it took: what
    /// `http.client` does on a keep-alive connection, where the next
    /// response follows in the same stream. `Ok(None)` while bytes are
    /// missing (or the body runs to EOF); raises for garbage.
    pub fn parse_prefix(raw: &[u8]) -> PyResult<Option<(Response, usize)>> {
        Ok(frame(raw, false, true)?.map(|framed| {
            let end = framed.end;
            (Response::from_framed(raw, framed), end)
        }))
    }

    fn from_framed(raw: &[u8], framed: Framed) -> Response {
        let Framed { head, body, .. } = framed;
        let body = match body {
            Body::Range(r) => raw[r].to_vec(),
            Body::Decoded(v) => v,
            Body::Unread => unreachable!("decoded when parsed"),
        };
        Response {
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            body,
        }
    }

    /// `response.getheader(name)` (`response.headers.get(name)`): the first
    /// header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The crawler's `content_type, pdict = cgi.parse_header(ct)` and
    /// `encoding = pdict.get('charset', 'utf-8')`: the media type
    /// (lower-cased; `""` when there is no `Content-Type`) and the charset
    /// (quotes removed; `"utf-8"` when none is given).
    pub fn content_type(&self) -> (String, String) {
        let Some(value) = self.header("content-type") else {
            return (String::new(), "utf-8".to_string());
        };
        let mut parts = value.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let charset = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
            .map(|(_, v)| {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                v.to_string()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "utf-8".to_string());
        (mime, charset)
    }

    /// aiohttp's `await response.text()`: the body decoded with the charset
    /// of [`Response::content_type`]; see [`decode_body`] for the errors.
    pub fn text(&self) -> PyResult<String> {
        let (_, charset) = self.content_type();
        decode_body(&self.body, &charset)
    }
}

/// Whether `raw` already holds a whole response, without waiting for EOF:
/// the head is in and `Content-Length` is satisfied, or the last chunk has
/// arrived, or the status has no body. A body delimited only by EOF is never
/// complete here. What `http.client` knows when it stops reading a
/// keep-alive response; raises for garbage as soon as it is seen.
pub fn is_complete(raw: &[u8]) -> PyResult<bool> {
    Ok(frame(raw, false, false)?.is_some())
}

/// The tutorials' read loop — `chunk = sock.recv(4096)`, `response +=
/// chunk` until `chunk == b''` — plus the knowledge of when the response is
/// complete before EOF (see [`is_complete`]).
///
/// ```
/// use pyfiber::net::ResponseReader;
///
/// let mut reader = ResponseReader::new();
/// assert!(!reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")?);
/// assert!(reader.feed(b"lo")?); // complete, no EOF needed
/// assert_eq!(reader.finish()?.body, b"hello");
/// # Ok::<(), pyfiber::Exception>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
    eof: bool,
    complete: bool,
}

impl ResponseReader {
    /// `response = b''`.
    pub fn new() -> ResponseReader {
        ResponseReader::default()
    }

    /// `response += chunk`, where an empty `chunk` is EOF (`recv` returned
    /// `b''`). Returns whether the response is now complete: framed and all
    /// in, or delimited by EOF and EOF came. Raises when the bytes cannot be
    /// a response, or when EOF cuts a framed response short.
    pub fn feed(&mut self, chunk: &[u8]) -> PyResult<bool> {
        if chunk.is_empty() {
            self.eof = true;
        } else {
            self.buf.extend_from_slice(chunk);
        }
        if !self.complete {
            self.complete = frame(&self.buf, self.eof, false)?.is_some();
        }
        Ok(self.complete)
    }

    /// `chunk = sock.recv(bufsize)` then [`ResponseReader::feed`]. Raises
    /// `BlockingIOError` if a non-blocking socket has nothing yet.
    pub fn recv(&mut self, sock: &Socket, bufsize: usize) -> PyResult<bool> {
        let chunk = sock.recv(bufsize)?;
        self.feed(&chunk)
    }

    /// Whether the last [`ResponseReader::feed`] found the response complete.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether EOF was fed.
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Every byte fed so far.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// The response: [`Response::parse`] of what was read, taken as complete
    /// (whether or not EOF came), so a stalled, unfinished response raises
    /// its truncation error here.
    pub fn finish(self) -> PyResult<Response> {
        Response::parse(&self.buf)
    }
}

/// `sync.py`'s `blocking_request()`: `socket.socket()`, `connect((host,
/// port))`, `sendall` the HTTP/1.0 GET, `recv(4096)` until `b''`, then parse.
/// The `Host` header is `host`, with `:port` added when the port is not 80.
pub fn fetch_blocking(host: &str, port: u16, path: &str) -> PyResult<Response> {
    let sock = Socket::new()?;
    sock.connect((host, port))?;
    let host_header = if port == 80 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    sock.sendall(http_get_request(path, &host_header, HttpVersion::Http10).as_bytes())?;
    let mut response = Vec::new();
    let mut chunk = sock.recv(4096)?;
    while !chunk.is_empty() {
        response.extend_from_slice(&chunk);
        chunk = sock.recv(4096)?;
    }
    sock.close();
    Response::parse(&response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_cuts_at_line_end() {
        assert_eq!(preview(b"zz\r\nmore", 0), r"b'zz\r\n'...");
        assert_eq!(preview(b"abc", 1), "b'bc'");
    }

    #[test]
    fn content_length_list_and_conflict() {
        let ok = Response::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi").unwrap();
        assert_eq!(ok.body, b"hi");
        let err = Response::parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!",
        )
        .unwrap_err();
        assert!(err.to_string().contains("conflicting"), "{err}");
    }
}
