//! The crawlers' text chores: `<title>`, `href` links, `urljoin`,
//! `urldefrag`.
//!
//! Why this exists: the 500 Lines crawler finds links with one regular
//! expression, joins each onto the page's URL with `urllib.parse.urljoin`
//! and drops the fragment with `urldefrag`; the simpler tutorials print the
//! page's `<title>`. The Rust crawler has to find the *same* links so its
//! report can be compared with the Python twin's, so the regexes are the
//! chapter's, character for character, and joining goes through the `url`
//! crate (WHATWG) with its differences from Python written down below.
//!
//! ## Where `url::Url::join` and `urllib.parse.urljoin` differ
//! For the links a crawler meets on one site (relative paths, `../`,
//! `?query`, `#fragment`, `/absolute`, `//host/path`, `http://...`,
//! `mailto:`) both give the same string; `tests/net.rs` checks a list of
//! such cases against `python3`. They differ where the `url` crate
//! normalises and Python copies the text through:
//! - an empty path gets a `/`: `http://h` → `http://h/`;
//! - scheme and host are lower-cased: `HTTP://Example.COM/x` → `http://example.com/x`;
//! - a default port is dropped: `http://h:80/` → `http://h/`;
//! - dot segments in an *absolute* link are removed (`http://h/a/../b` →
//!   `http://h/b`; Python removes them only for relative links);
//! - non-ASCII and spaces are percent-encoded: `/café` → `/caf%C3%A9`;
//! - `\` counts as `/` in http(s) URLs.
//! - an empty query or empty `;params` stays: `urljoin(base, '?')` ends in
//!   `?` here, and `'/p;'` keeps its `;` (Python's `urlunparse` drops both;
//!   [`urldefrag`] drops them too, as Python's does).
//!
//! A crawler comparing its URL set with Python's must avoid (or normalise)
//! such links on its site.

use std::sync::LazyLock;

use regex::Regex;
use url::Url;

use crate::exception::{Exception, PyResult};

/// The 500 Lines crawler's link regex (`crawling.py`, `parse_links`):
/// `re.findall(r'''(?i)href=["']([^\s"'<>]+)''', text)` — the value must be
/// quoted.
pub const HREF_PATTERN: &str = r#"(?i)href=["']([^\s"'<>]+)"#;

/// The regex of the chapter's earlier crawlers (`loop-with-callbacks.py`,
/// `loop-with-coroutines.py`): `(?i)href=["']?([^\s"'<>]+)` — the quote is
/// optional, so `href=/a` counts too.
pub const HREF_PATTERN_QUOTE_OPTIONAL: &str = r#"(?i)href=["']?([^\s"'<>]+)"#;

static HREF_QUOTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(HREF_PATTERN).expect("valid regex"));
static HREF_OPTIONAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(HREF_PATTERN_QUOTE_OPTIONAL).expect("valid regex"));
static TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)<title\b[^>]*>(.*?)</title\s*>").expect("valid regex"));

/// Which of the chapter's two link regexes to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HrefQuotes {
    /// [`HREF_PATTERN`]: `crawling.py`, the finished asyncio crawler.
    #[default]
    Required,
    /// [`HREF_PATTERN_QUOTE_OPTIONAL`]: the callback and generator crawlers.
    Optional,
}

/// `m = re.search(r'<title[^>]*>(.*?)</title>', html, re.I | re.S)` and
/// `m.group(1).strip()`: the page's title, or `None` without a `<title>`.
/// Entities are left as they are (`&amp;` stays `&amp;`), as the regex
/// leaves them.
pub fn title(html: &str) -> Option<String> {
    TITLE
        .captures(html)
        .map(|c| c[1].trim_matches(PY_WHITESPACE).to_string())
}

/// What `str.strip()` strips: Unicode whitespace.
const PY_WHITESPACE: &[char] = &[
    ' ', '\t', '\n', '\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x1f', '\u{85}', '\u{a0}',
    '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}',
    '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}',
    '\u{3000}',
];

/// `set(re.findall(pattern, html))`, kept in first-seen order: every
/// distinct `href` value as written in the page.
pub fn find_hrefs(html: &str, quotes: HrefQuotes) -> Vec<String> {
    let re = match quotes {
        HrefQuotes::Required => &*HREF_QUOTED,
        HrefQuotes::Optional => &*HREF_OPTIONAL,
    };
    let mut seen = std::collections::HashSet::new();
    re.captures_iter(html)
        .map(|c| c[1].to_string())
        .filter(|h| seen.insert(h.clone()))
        .collect()
}

/// The 500 Lines crawler's `parse_links` body without its host filter:
///
/// ```python
/// urls = set(re.findall(r'''(?i)href=["']([^\s"'<>]+)''', text))
/// for url in urls:
///     normalized = urllib.parse.urljoin(response.url, url)
///     defragmented, frag = urllib.parse.urldefrag(normalized)
/// ```
///
/// Every distinct link, joined onto `base_url` and without its fragment, in
/// the order first seen (Python's set has no order; a list keeps runs
/// reproducible). Links of every scheme are returned (`mailto:` too): which
/// to follow is the crawler's `url_allowed`. A link the `url` crate cannot
/// join (e.g. `http://[oops`) is skipped, as no request could be made for
/// it. Raises `ValueError` if `base_url` is neither an absolute URL nor a
/// path (see [`urljoin`]).
pub fn parse_links(base_url: &str, html: &str) -> PyResult<Vec<String>> {
    parse_links_with(base_url, html, HrefQuotes::Required)
}

/// [`parse_links`] with either of the chapter's regexes.
pub fn parse_links_with(base_url: &str, html: &str, quotes: HrefQuotes) -> PyResult<Vec<String>> {
    join_links(base_url, find_hrefs(html, quotes))
}

/// The second half of [`parse_links`]: `hrefs` (from [`find_hrefs`]) joined
/// onto `base_url`, without fragments, each once. The crawler calls it only
/// for a page that has links: parsing the base was 6,200 instructions of
/// the `url` crate (its IDNA pass over the host), for each of the 1,000
/// leaf pages of the last level too (callgrind, `crawl --max_tasks 1000`).
pub fn join_links(base_url: &str, hrefs: Vec<String>) -> PyResult<Vec<String>> {
    let base = Base::parse(base_url)?;
    let mut seen = std::collections::HashSet::new();
    let mut links = Vec::new();
    for href in hrefs {
        let Ok(joined) = base.join(&href) else {
            continue;
        };
        let (defragmented, _) = urldefrag(&joined);
        if seen.insert(defragmented.clone()) {
            links.push(defragmented);
        }
    }
    Ok(links)
}

/// A base for joining: an absolute URL, or a bare path such as `/a/b` (the
/// callback crawler joins onto `self.url`, which is a path).
enum Base {
    Absolute(Url),
    Path(Url),
}

/// Host standing in for a path-only base (the `.invalid` TLD is reserved, so
/// no real link names it).
const PATH_BASE: &str = "http://path-only-base.invalid";

impl Base {
    fn parse(base: &str) -> PyResult<Base> {
        match Url::parse(base) {
            Ok(url) => Ok(Base::Absolute(url)),
            Err(url::ParseError::RelativeUrlWithoutBase) if base.starts_with('/') => {
                let dummy = Url::parse(PATH_BASE).expect("valid URL");
                dummy
                    .join(base)
                    .map(Base::Path)
                    .map_err(|e| bad_base(base, e))
            }
            Err(e) => Err(bad_base(base, e)),
        }
    }

    fn join(&self, link: &str) -> Result<String, url::ParseError> {
        match self {
            Base::Absolute(url) => url.join(link).map(String::from),
            Base::Path(url) => {
                let joined = url.join(link)?;
                Ok(if joined.origin() == url.origin() {
                    joined[url::Position::BeforePath..].to_string()
                } else {
                    joined.into()
                })
            }
        }
    }
}

fn bad_base(base: &str, e: url::ParseError) -> Exception {
    Exception::ValueError(format!(
        "cannot join onto {}: {e} (need an absolute URL or a path)",
        crate::value::str_repr(base)
    ))
}

/// `urllib.parse.urljoin(base, link)`, by the `url` crate's `Url::join`.
///
/// `base` is an absolute URL, or a path beginning with `/` (then a relative
/// link gives a path, `urljoin('/a/b', 'c') == '/a/c'`, as in the callback
/// crawler). Raises `ValueError` for any other base, or a link that cannot
/// be joined (Python never raises; it would hand back a URL no request can
/// use). See the module docs for where the result differs from Python's.
pub fn urljoin(base: &str, link: &str) -> PyResult<String> {
    Base::parse(base)?.join(link).map_err(|e| {
        Exception::ValueError(format!(
            "cannot join {} onto {}: {e}",
            crate::value::str_repr(link),
            crate::value::str_repr(base)
        ))
    })
}

/// `urllib.parse.urldefrag(url)`: `(url without its fragment, fragment)`.
///
/// Works on any string, relative or absolute, like Python's. As Python's
/// `urlunparse` does when it rebuilds the URL, an empty query (`?`) or empty
/// `;params` left before the `#` goes too: `urldefrag('http://a/b?#f') ==
/// ('http://a/b', 'f')`.
pub fn urldefrag(url: &str) -> (String, String) {
    let Some((before, fragment)) = url.split_once('#') else {
        return (url.to_string(), String::new());
    };
    let mut defrag = before;
    if let Some(stripped) = defrag.strip_suffix('?') {
        if !stripped.contains('?') {
            defrag = stripped;
        }
    }
    if !defrag.contains('?') && uses_params(defrag) {
        if let Some(stripped) = defrag.strip_suffix(';') {
            // Python splits params off at the first `;` of the last path
            // segment; they are empty only if that `;` ends the URL.
            let last_segment = stripped.rsplit('/').next().unwrap_or("");
            if !last_segment.contains(';') {
                defrag = stripped;
            }
        }
    }
    (defrag.to_string(), fragment.to_string())
}

/// `scheme in urllib.parse.uses_params` (no scheme counts as `''`, which
/// is in the list).
fn uses_params(url: &str) -> bool {
    const USES_PARAMS: &[&str] = &[
        "", "ftp", "hdl", "prospero", "http", "imap", "https", "shttp", "rtsp", "rtspu", "sip",
        "sips", "mms", "sftp", "tel",
    ];
    let scheme = match url.split_once(':') {
        Some((s, _))
            if s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            s.to_ascii_lowercase()
        }
        _ => String::new(),
    };
    USES_PARAMS.contains(&scheme.as_str())
}

/// `parts = urllib.parse.urlparse(url)` then `host, port =
/// splitport(parts.netloc)`: what a fetch needs — the host, the port (80 by
/// default) and the request target (path and query, `/` if empty; no
/// fragment). Only `http://` (the loop speaks plain TCP): other schemes,
/// and URLs without a host, raise `ValueError`.
pub fn split_http_url(url: &str) -> PyResult<(String, u16, String)> {
    let parsed = Url::parse(url).map_err(|e| {
        Exception::ValueError(format!("bad URL {}: {e}", crate::value::str_repr(url)))
    })?;
    if parsed.scheme() != "http" {
        return Err(Exception::ValueError(format!(
            "only http:// URLs can be fetched, not {}",
            crate::value::str_repr(url)
        )));
    }
    let host = match parsed.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        // A name or an IPv4 address: the URL's own text of it, which is
        // what `Host`'s `Display` would format again (4,200 instructions
        // for `127.0.0.1`, a twentieth of the crawler's work per page:
        // callgrind of `crawl --max_tasks 1000`).
        Some(_) => parsed.host_str().unwrap_or_default().to_string(),
        None => {
            return Err(Exception::ValueError(format!(
                "no host in URL {}",
                crate::value::str_repr(url)
            )))
        }
    };
    let port = parsed.port_or_known_default().unwrap_or(80);
    let target = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    let target = if target.is_empty() { "/" } else { target };
    Ok((host, port, target.to_string()))
}
