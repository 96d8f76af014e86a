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

use std::mem::MaybeUninit;

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
#[derive(Clone, Debug)]
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body_start: usize,
    framing: Framing,
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

/// `http.client._MAXLINE`: the longest status, header, chunk-size or
/// trailer line accepted, its line end included.
pub const MAX_LINE: usize = 65536;

/// `http.client.LineTooLong`: `got more than 65536 bytes when reading
/// header line` (or `status line`, `chunk size`, `trailer line`).
fn line_too_long(what: &str) -> Exception {
    Exception::user(
        "LineTooLong",
        format!("got more than {MAX_LINE} bytes when reading {what}"),
    )
}

/// httparse as `http.client` parses: obsolete line folding (a header line
/// that starts with a space or tab continues the one before) is accepted in
/// responses, its value kept with the fold, as `http.client` keeps it.
fn parser() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config.allow_obsolete_multiline_headers_in_responses(true);
    config
}

/// httparse over the head `raw[start..]`: `Some(length)` once complete,
/// `None` while its blank line has not arrived, or the error. The header
/// slots are left uninitialised until httparse fills them (a
/// `vec![EMPTY_HEADER; 128]` per call was a 4 KiB allocation and fill,
/// twice per response).
fn run_httparse<'h, 'b>(
    raw: &'b [u8],
    start: usize,
    resp: &mut httparse::Response<'h, 'b>,
    slots: &'h mut [MaybeUninit<httparse::Header<'b>>],
) -> PyResult<Option<usize>> {
    match parser().parse_response_with_uninit_headers(resp, &raw[start..], slots) {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(invalid(format!(
            "{e} in the head, which starts {}",
            preview(raw, start)
        ))),
    }
}

/// [`parse_head`]'s errors without its result: what the status-line check
/// needs. Building the `Head` (a `String` per header name and value) only to
/// drop it cost as much again as the real parse at the blank line
/// (callgrind, the crawler: each response's head was built twice, now
/// once; httparse itself still reads it twice, which is cheap).
fn check_head(raw: &[u8], start: usize) -> PyResult<()> {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    run_httparse(raw, start, &mut resp, &mut slots).map(drop)
}

/// Parses the status line and headers of the head `raw[start..]`; `None`
/// while the blank line that ends them has not arrived.
fn parse_head(raw: &[u8], start: usize) -> PyResult<Option<Head>> {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let Some(len) = run_httparse(raw, start, &mut resp, &mut slots)? else {
        return Ok(None);
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
        body_start: start + len,
        framing,
    }))
}

/// Whether a head of this status is an interim answer to skip: every 1xx
/// but `101 Switching Protocols` (RFC 9110 §15.2; curl skips them all;
/// `http.client` skips `100 Continue`, and takes 102/103 as final).
fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// Where the reading of a chunked body has got to: the start of the next
/// chunk's size line, its index, and how far that line was searched for its
/// end. Each chunk is walked once, however the bytes are fed.
#[derive(Clone, Copy, Debug, Default)]
struct ChunkCursor {
    pos: usize,
    index: usize,
    scanned: usize,
}

/// Walks a chunked body from `at`. `Ok(Ok(end))` when the last chunk and
/// trailers are in; `Ok(Err(what))` when more bytes are needed, `what`
/// saying where the data stops (`at` then points at the chunk that is not
/// complete yet); `Err` for a malformed body. The chunk data is appended to
/// `out`.
fn dechunk(raw: &[u8], at: &mut ChunkCursor, out: &mut Vec<u8>) -> PyResult<Result<usize, String>> {
    loop {
        let pos = at.pos;
        let index = at.index;
        // Look for the end of the size line in the new bytes only.
        let from = at.scanned.max(pos);
        if !raw[from..].contains(&b'\n') {
            at.scanned = raw.len();
            if raw.len() - pos > MAX_LINE {
                return Err(line_too_long("chunk size"));
            }
            return Ok(Err(format!(
                "inside the size line of chunk {index} at byte {pos}"
            )));
        }
        let (line_len, size) = match httparse::parse_chunk_size(&raw[pos..]) {
            Ok(httparse::Status::Complete((line_len, _))) if line_len > MAX_LINE => {
                return Err(line_too_long("chunk size"))
            }
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => {
                return Ok(Err(format!(
                    "inside the size line of chunk {index} at byte {pos}"
                )))
            }
            Err(_) if raw[pos..].iter().position(|&b| b == b'\n') > Some(MAX_LINE) => {
                return Err(line_too_long("chunk size"))
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
                Ok(httparse::Status::Partial) if raw.len() - data_start > MAX_LINE => {
                    Err(line_too_long("trailer line"))
                }
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
        out.extend_from_slice(&raw[data_start..data_end]);
        *at = ChunkCursor {
            pos: data_end + 2,
            index: index + 1,
            scanned: data_end + 2,
        };
    }
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
        let mut reader = ResponseReader::new();
        reader.feed(raw)?;
        reader.finish()
    }

    /// The response at the start of `raw` if it is already complete without
    /// EOF (see [`is_complete`]), with the number of bytes it took: what
    /// `http.client` does on a keep-alive connection, where the next
    /// response follows in the same stream. `Ok(None)` while bytes are
    /// missing (or the body runs to EOF); raises for garbage.
    pub fn parse_prefix(raw: &[u8]) -> PyResult<Option<(Response, usize)>> {
        let reader = ResponseReader::over(raw)?;
        if !reader.complete {
            return Ok(None);
        }
        let end = reader.end;
        Ok(Some((reader.finish()?, end)))
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
    Ok(ResponseReader::over(raw)?.complete)
}

/// The tutorials' read loop — `chunk = sock.recv(4096)`, `response +=
/// chunk` until `chunk == b''` — plus the knowledge of when the response is
/// complete before EOF (see [`is_complete`]).
///
/// It parses as the bytes come, in one pass, as `http.client` reads a
/// socket line by line: each feed looks only at the new bytes (a million
/// 1-byte chunks cost a million small steps, not a million re-parses of
/// everything so far). Lines longer than [`MAX_LINE`] raise `LineTooLong`
/// at once, as `http.client` does; interim `1xx` heads (`100 Continue`) are
/// skipped, and the response is the final one after them.
///
/// ```
/// use pyfiber::net::ResponseReader;
///
/// let mut reader = ResponseReader::new();
/// assert!(!reader.feed(b"HTTP/1.1 100 Continue\r\n\r\n")?);
/// assert!(!reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")?);
/// assert!(reader.feed(b"lo")?); // complete, no EOF needed
/// let response = reader.finish()?;
/// assert_eq!((response.status, response.body.as_slice()), (200, &b"hello"[..]));
/// # Ok::<(), pyfiber::Exception>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
    eof: bool,
    complete: bool,
    /// Where the head being read starts (past any skipped 1xx heads).
    head_start: usize,
    /// Where the current head line starts, and how far the head was
    /// searched for line ends.
    line_start: usize,
    scanned: usize,
    /// How many first bytes of an unfinished status line were checked.
    status_looked: usize,
    /// The final head, once it is in.
    head: Option<Head>,
    chunks: ChunkCursor,
    /// A chunked body, de-chunked as it arrives.
    dechunked: Vec<u8>,
    /// Where the response ends in `buf`, once complete.
    end: usize,
}

impl ResponseReader {
    /// `response = b''`.
    pub fn new() -> ResponseReader {
        ResponseReader::default()
    }

    /// A reader fed `raw` in one piece, without EOF (even when `raw` is
    /// empty).
    fn over(raw: &[u8]) -> PyResult<ResponseReader> {
        let mut reader = ResponseReader {
            buf: raw.to_vec(),
            ..ResponseReader::default()
        };
        reader.advance()?;
        Ok(reader)
    }

    /// `response += chunk`, where an empty `chunk` is EOF (`recv` returned
    /// `b''`). Returns whether the response is now complete: framed and all
    /// in, or delimited by EOF and EOF came. Raises when the bytes cannot be
    /// a response, when a line is longer than [`MAX_LINE`], or when EOF cuts
    /// a framed response short.
    pub fn feed(&mut self, chunk: &[u8]) -> PyResult<bool> {
        if chunk.is_empty() {
            self.eof = true;
        } else {
            self.buf.extend_from_slice(chunk);
        }
        if !self.complete {
            self.advance()?;
        }
        Ok(self.complete)
    }

    /// Moves the parse on over the bytes that arrived.
    fn advance(&mut self) -> PyResult<()> {
        let head = loop {
            if let Some(head) = &self.head {
                break head;
            }
            match self.advance_head()? {
                Some(head) if is_interim(head.status) => {
                    // `100 Continue` and the like: skip it, read the next.
                    self.head_start = head.body_start;
                    self.line_start = head.body_start;
                    self.scanned = head.body_start;
                    self.status_looked = 0;
                }
                Some(head) => {
                    self.chunks = ChunkCursor {
                        pos: head.body_start,
                        index: 0,
                        scanned: head.body_start,
                    };
                    self.head = Some(head);
                }
                None if !self.eof => return Ok(()),
                None if self.buf.len() == self.head_start => {
                    return Err(invalid(
                        "empty response: the connection closed before any byte arrived",
                    ))
                }
                None => {
                    return Err(invalid(format!(
                        "truncated head: the connection closed after {} bytes, before the blank line that ends the headers; it starts {}",
                        self.buf.len() - self.head_start,
                        preview(&self.buf, self.head_start)
                    )))
                }
            }
        };
        let start = head.body_start;
        let end = match head.framing {
            Framing::Empty => start,
            Framing::Length(n) => {
                let got = self.buf.len() - start;
                if got >= n {
                    start + n
                } else if self.eof {
                    return Err(invalid(format!(
                        "truncated body: Content-Length is {n} but the connection closed after {got} body bytes"
                    )));
                } else {
                    return Ok(());
                }
            }
            Framing::Chunked => match dechunk(&self.buf, &mut self.chunks, &mut self.dechunked)? {
                Ok(end) => end,
                Err(what) if self.eof => {
                    return Err(invalid(format!(
                        "truncated chunked body: the connection closed {what}"
                    )))
                }
                Err(_) => return Ok(()),
            },
            Framing::UntilEof if self.eof => self.buf.len(),
            Framing::UntilEof => return Ok(()),
        };
        self.end = end;
        self.complete = true;
        Ok(())
    }

    /// Reads head lines in the new bytes: checks each line's length, checks
    /// the status line once it is in (so garbage is refused at once), and
    /// parses the head once its blank line is in.
    fn advance_head(&mut self) -> PyResult<Option<Head>> {
        let first_line = |reader: &Self| reader.line_start == reader.head_start;
        while let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let lf = self.scanned + i;
            let line = &self.buf[self.line_start..=lf];
            if line.len() > MAX_LINE {
                return Err(line_too_long(if first_line(self) {
                    "status line"
                } else {
                    "header line"
                }));
            }
            let blank = line == b"\n" || line == b"\r\n";
            let was_first = first_line(self);
            self.scanned = lf + 1;
            self.line_start = lf + 1;
            if was_first {
                // The status line: httparse says now if it is not HTTP.
                check_head(&self.buf, self.head_start)?;
            } else if blank {
                return match parse_head(&self.buf[..lf + 1], self.head_start)? {
                    Some(head) => Ok(Some(head)),
                    None => Err(invalid(format!(
                        "a blank line that does not end the head, which starts {}",
                        preview(&self.buf, self.head_start)
                    ))),
                };
            }
        }
        self.scanned = self.buf.len();
        let open_line = self.buf.len() - self.line_start;
        if open_line > MAX_LINE {
            return Err(line_too_long(if first_line(self) {
                "status line"
            } else {
                "header line"
            }));
        }
        // A status line still coming: its first bytes already tell garbage
        // ("SSH-2.0-...", "<html>") from HTTP. Only the first few bytes are
        // looked at, so a long line costs nothing here.
        let look = open_line.min(16);
        if first_line(self) && look > self.status_looked {
            self.status_looked = look;
            check_head(&self.buf[..self.head_start + look], self.head_start)?;
        }
        Ok(None)
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

    /// The response, taken as complete whether or not EOF came: a stalled,
    /// unfinished response raises its truncation error here. Bytes after a
    /// framed body are ignored, as `http.client` ignores them.
    pub fn finish(mut self) -> PyResult<Response> {
        if !self.complete {
            self.eof = true;
            self.advance()?;
        }
        let Some(head) = self.head else {
            return Err(invalid("incomplete response"));
        };
        let body = match head.framing {
            Framing::Chunked => self.dechunked,
            _ => {
                self.buf.truncate(self.end);
                self.buf.drain(..head.body_start);
                self.buf
            }
        };
        Ok(Response {
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            body,
        })
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
