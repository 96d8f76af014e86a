//! `decode_body`: `bytes.decode(charset)` for response bodies.
//!
//! Why this exists: the tutorials' crawlers do `body.decode('utf-8')` (or the
//! page's declared charset) and let a bad byte raise `UnicodeDecodeError`.
//! Rust's `String::from_utf8_lossy` would instead hide it behind U+FFFD, and
//! a crawler comparing its link count with its Python twin would silently
//! disagree. So bytes are decoded strictly, and the error names the codec
//! and the byte position with CPython's own wording.
//!
//! UTF-8, ASCII and Latin-1 are decoded here, by their Python names (so
//! `iso-8859-1` is Latin-1, as in Python, not windows-1252 as in browsers);
//! every other charset a page declares (gbk and gb2312, which Chinese sites
//! commonly serve, windows-1252, utf-16, shift_jis, big5, koi8-r, ...) is
//! looked up by its WHATWG label in `encoding_rs`, the decoder Firefox uses,
//! and decoded just as strictly.

use crate::exception::{Exception, PyResult};

/// The codecs `decode_body` knows, by their Python names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Utf8,
    Ascii,
    Latin1,
}

/// Python's codec lookup for the names (and common aliases, after the
/// normalisation `codecs.lookup` does: case and `_`/`-`/space folded) of the
/// three codecs supported.
fn lookup(charset: &str) -> Option<Codec> {
    let name: String = charset
        .trim()
        .chars()
        .map(|c| match c {
            '_' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    Some(match name.as_str() {
        "utf-8" | "utf8" | "u8" | "utf" | "cp65001" => Codec::Utf8,
        "ascii" | "us-ascii" | "us" | "646" | "ansi-x3.4-1968" | "ansi-x3.4-1986" | "cp367"
        | "csascii" | "ibm367" | "iso646-us" | "iso-ir-6" => Codec::Ascii,
        "latin-1" | "latin1" | "latin" | "l1" | "iso-8859-1" | "iso8859-1" | "iso-8859-1:1987"
        | "8859" | "cp819" | "csisolatin1" | "ibm819" | "iso-ir-100" => Codec::Latin1,
        _ => return None,
    })
}

/// ISO-8859-1: each byte is the code point of the same number.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// `UnicodeDecodeError` with CPython's message.
fn decode_error(codec: &str, bytes: &[u8], start: usize, end: usize, reason: &str) -> Exception {
    let what = if end - start == 1 {
        format!("byte 0x{:02x} in position {start}", bytes[start])
    } else {
        format!("bytes in position {start}-{}", end - 1)
    };
    Exception::user(
        "UnicodeDecodeError",
        format!("'{codec}' codec can't decode {what}: {reason}"),
    )
}

fn utf8(bytes: &[u8]) -> PyResult<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let start = e.valid_up_to();
            Err(match e.error_len() {
                // The text ends inside a sequence that had looked valid.
                None => decode_error("utf-8", bytes, start, bytes.len(), "unexpected end of data"),
                Some(len) => {
                    // CPython: a byte that can never start a sequence is an
                    // "invalid start byte"; a good start followed by a bad
                    // byte is an "invalid continuation byte", reported over
                    // the valid part of the broken sequence (Rust's
                    // `error_len` is that same span).
                    let reason = match bytes[start] {
                        0xc2..=0xf4 => "invalid continuation byte",
                        _ => "invalid start byte",
                    };
                    decode_error("utf-8", bytes, start, start + len, reason)
                }
            })
        }
    }
}

/// `body.decode(charset)`, strict, as the crawlers do it.
///
/// Knows UTF-8, ASCII and ISO-8859-1 (Latin-1) under their Python names and
/// usual aliases (`utf8`, `us-ascii`, `latin-1`, `iso8859-1`, ...; case and
/// `-`/`_` do not matter). Note that Python, and so this function, takes
/// `iso-8859-1` literally, where browsers read it as windows-1252.
///
/// Errors:
/// - an invalid byte: `UnicodeDecodeError: 'utf-8' codec can't decode byte
///   0xff in position 3: invalid start byte` (CPython's text; the class is
///   [`UnicodeDecodeError`](crate::exception::UnicodeDecodeError), a
///   `ValueError` subclass as in Python);
/// - any other charset: decoded by [`encoding_rs`] under its WHATWG label
///   (`gbk`, `gb2312`, `windows-1252`, `utf-16`, ...); a malformed sequence
///   is `UnicodeDecodeError: 'gbk' codec can't decode byte 0x81 in position
///   2: illegal multibyte sequence` (CPython's wording; at the very end,
///   `incomplete multibyte sequence`). `utf-16` honours a byte-order mark
///   and is little-endian without one, as in Python on x86. The tables are
///   WHATWG's, so a few bytes Python's codecs refuse (0x81 in
///   windows-1252) decode as browsers decode them;
/// - a charset no one knows: `LookupError: unknown encoding: NAME`
///   (Python's text).
pub fn decode_body(bytes: &[u8], charset: &str) -> PyResult<String> {
    match lookup(charset) {
        Some(Codec::Utf8) => utf8(bytes),
        Some(Codec::Ascii) => match bytes.iter().position(|b| !b.is_ascii()) {
            None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            Some(i) => Err(decode_error(
                "ascii",
                bytes,
                i,
                i + 1,
                "ordinal not in range(128)",
            )),
        },
        Some(Codec::Latin1) => Ok(latin1(bytes)),
        None => match encoding_rs::Encoding::for_label(charset.trim().as_bytes()) {
            Some(encoding) => whatwg(bytes, encoding, charset),
            None => Err(Exception::user(
                "LookupError",
                format!("unknown encoding: {charset}"),
            )),
        },
    }
}

/// Strict decoding with an `encoding_rs` decoder: the first malformed
/// sequence raises, with its position.
fn whatwg(bytes: &[u8], encoding: &'static encoding_rs::Encoding, label: &str) -> PyResult<String> {
    // Python's `utf-16` reads a BOM (either order); other charsets do not
    // sniff one.
    let mut decoder = if label.trim().eq_ignore_ascii_case("utf-16") {
        encoding.new_decoder()
    } else {
        encoding.new_decoder_without_bom_handling()
    };
    let capacity = decoder
        .max_utf8_buffer_length_without_replacement(bytes.len())
        .unwrap_or(bytes.len() * 3 + 16);
    let mut out = String::with_capacity(capacity);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::InputEmpty => Ok(out),
        encoding_rs::DecoderResult::Malformed(bad, after) => {
            let end = read - after as usize;
            let start = end - bad as usize;
            // CPython names the codec as asked for (`'gb2312' codec`), and
            // every single-byte table `'charmap'`.
            let codec = if encoding.is_single_byte() {
                "charmap".to_string()
            } else {
                label.trim().to_ascii_lowercase()
            };
            let reason = if encoding.is_single_byte() {
                "character maps to <undefined>"
            } else if end == bytes.len() && after == 0 {
                "incomplete multibyte sequence"
            } else {
                "illegal multibyte sequence"
            };
            Err(decode_error(&codec, bytes, start, end, reason))
        }
        // Cannot happen: the buffer was sized for the worst case.
        encoding_rs::DecoderResult::OutputFull => Err(Exception::user(
            "UnicodeDecodeError",
            format!("'{label}' codec: output buffer too small"),
        )),
    }
}
