//! `Exception`: the Python exceptions the tutorials meet, as one Rust enum.
//!
//! Why this exists: in Python an exception unwinds through `yield` points,
//! `throw()` injects one into a suspended generator, and `StopIteration`
//! carries a generator's return value. In pyfiber an exception is a plain
//! value: a body returns `PyResult<T>`, `?` is Python's implicit propagation,
//! and `throw` makes the pending `co.yield_()` return `Err(exc)`.
//!
//! `Display` is Python's `str(exc)` and [`Exception::line`] is the last line
//! of a Python traceback (`TypeError: can't send ...`), so messages can be
//! compared with CPython's text for text.

use std::fmt;
use std::io;

use crate::value::{str_repr, Value};

/// `Result<T, Exception>`: what every generator body and every fallible call
/// returns. `Err` is "raised".
pub type PyResult<T> = Result<T, Exception>;

/// An `OSError`'s payload: `errno` and `strerror`, shown as Python shows them
/// (`[Errno 111] Connection refused`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsError {
    /// `exc.errno`, when the error came from the OS.
    pub errno: Option<i32>,
    /// `exc.strerror`, or the whole message when there is no errno.
    pub strerror: String,
}

impl OsError {
    /// An `OSError` with a message and no errno.
    pub fn msg(strerror: impl Into<String>) -> OsError {
        OsError {
            errno: None,
            strerror: strerror.into(),
        }
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(n) => write!(f, "[Errno {n}] {}", self.strerror),
            None => f.write_str(&self.strerror),
        }
    }
}

/// A Python exception. The variant is the class; `Display` is `str(exc)`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Exception {
    /// `StopIteration(value)`: a generator returned `value`.
    #[error("{}", if .0.is_none() { String::new() } else { .0.to_string() })]
    StopIteration(Value),
    /// `GeneratorExit`: what `close()` throws into a generator.
    #[error("")]
    GeneratorExit,
    /// `TypeError`.
    #[error("{0}")]
    TypeError(String),
    /// `ValueError`.
    #[error("{0}")]
    ValueError(String),
    /// `RuntimeError`.
    #[error("{0}")]
    RuntimeError(String),
    /// `AttributeError`.
    #[error("{0}")]
    AttributeError(String),
    /// `KeyError(key)`: `str()` is the key's `repr()`, as in Python.
    #[error("{}", str_repr(.0))]
    KeyError(String),
    /// `MemoryError`: here, when no fiber stack can be mapped.
    #[error("{0}")]
    MemoryError(String),
    /// `OSError`.
    #[error("{0}")]
    OSError(OsError),
    /// `BlockingIOError`: a non-blocking call that would block, such as
    /// `connect()` still in progress.
    #[error("{0}")]
    BlockingIOError(OsError),
    /// `ConnectionRefusedError`.
    #[error("{0}")]
    ConnectionRefusedError(OsError),
    /// `ConnectionResetError`.
    #[error("{0}")]
    ConnectionResetError(OsError),
    /// `BrokenPipeError`.
    #[error("{0}")]
    BrokenPipeError(OsError),
    /// `TimeoutError`.
    #[error("{0}")]
    TimeoutError(OsError),
    /// A class of the program's own (`class MyError(Exception)`), or any other
    /// built-in the enum does not name (`ZeroDivisionError`, ...).
    #[error("{message}")]
    User {
        /// `type(exc).__name__`.
        name: String,
        /// `str(exc)`.
        message: String,
    },
}

impl Exception {
    /// `raise Name(message)` for a class the enum does not name.
    pub fn user(name: impl Into<String>, message: impl Into<String>) -> Exception {
        Exception::User {
            name: name.into(),
            message: message.into(),
        }
    }

    /// `type(exc).__name__`.
    pub fn name(&self) -> &str {
        match self {
            Exception::StopIteration(_) => "StopIteration",
            Exception::GeneratorExit => "GeneratorExit",
            Exception::TypeError(_) => "TypeError",
            Exception::ValueError(_) => "ValueError",
            Exception::RuntimeError(_) => "RuntimeError",
            Exception::AttributeError(_) => "AttributeError",
            Exception::KeyError(_) => "KeyError",
            Exception::MemoryError(_) => "MemoryError",
            Exception::OSError(_) => "OSError",
            Exception::BlockingIOError(_) => "BlockingIOError",
            Exception::ConnectionRefusedError(_) => "ConnectionRefusedError",
            Exception::ConnectionResetError(_) => "ConnectionResetError",
            Exception::BrokenPipeError(_) => "BrokenPipeError",
            Exception::TimeoutError(_) => "TimeoutError",
            Exception::User { name, .. } => name,
        }
    }

    /// The last line of Python's traceback: `Name: message`, or `Name` alone
    /// when the message is empty (`traceback.format_exception_only`).
    pub fn line(&self) -> String {
        let msg = self.to_string();
        if msg.is_empty() {
            self.name().to_string()
        } else {
            format!("{}: {msg}", self.name())
        }
    }

    /// `isinstance(exc, OSError)`: true for `OSError` and its subclasses.
    pub fn is_os_error(&self) -> bool {
        self.os_error().is_some()
    }

    /// The `errno`/`strerror` of an `OSError` (or subclass).
    pub fn os_error(&self) -> Option<&OsError> {
        match self {
            Exception::OSError(e)
            | Exception::BlockingIOError(e)
            | Exception::ConnectionRefusedError(e)
            | Exception::ConnectionResetError(e)
            | Exception::BrokenPipeError(e)
            | Exception::TimeoutError(e) => Some(e),
            _ => None,
        }
    }

    /// `isinstance(exc, Exception)`: false only for `GeneratorExit`, which
    /// derives from `BaseException` so that `except Exception:` lets it pass.
    pub fn is_exception(&self) -> bool {
        !matches!(self, Exception::GeneratorExit)
    }

    /// The `StopIteration` value, if this is a `StopIteration`.
    pub fn stop_value(&self) -> Option<&Value> {
        match self {
            Exception::StopIteration(v) => Some(v),
            _ => None,
        }
    }
}

/// Python's mapping from `errno` to the `OSError` subclass it raises.
impl From<io::Error> for Exception {
    fn from(e: io::Error) -> Exception {
        let errno = e.raw_os_error();
        let text = e.to_string();
        // std appends " (os error N)"; Python shows "[Errno N] text" instead.
        let strerror = match text.rfind(" (os error ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        let os = OsError { errno, strerror };
        match e.kind() {
            io::ErrorKind::WouldBlock => Exception::BlockingIOError(os),
            io::ErrorKind::ConnectionRefused => Exception::ConnectionRefusedError(os),
            io::ErrorKind::ConnectionReset => Exception::ConnectionResetError(os),
            io::ErrorKind::BrokenPipe => Exception::BrokenPipeError(os),
            io::ErrorKind::TimedOut => Exception::TimeoutError(os),
            _ if errno == Some(115) => Exception::BlockingIOError(os), // EINPROGRESS
            _ => Exception::OSError(os),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_python() {
        assert_eq!(
            Exception::StopIteration(Value::None).line(),
            "StopIteration"
        );
        assert_eq!(
            Exception::StopIteration(5.into()).line(),
            "StopIteration: 5"
        );
        assert_eq!(Exception::KeyError("x".into()).line(), "KeyError: 'x'");
        assert_eq!(Exception::GeneratorExit.line(), "GeneratorExit");
        let refused = Exception::from(io::Error::from_raw_os_error(111));
        assert_eq!(
            refused.line(),
            "ConnectionRefusedError: [Errno 111] Connection refused"
        );
        let in_progress = Exception::from(io::Error::from_raw_os_error(115));
        assert_eq!(in_progress.name(), "BlockingIOError");
    }
}
