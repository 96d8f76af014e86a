//! `Value`: the Python object that travels through `yield` and `send`.
//!
//! Why this exists: a Python generator yields, receives and returns *any*
//! object. To keep our generators as untyped as Python's (so the same program
//! can be written on both sides and its printed trace compared line by line),
//! everything that crosses a fiber boundary is a `Value`. Its `Display` is
//! Python's `str()` and its `Debug` is Python's `repr()`, so `println!("{v}")`
//! prints what `print(v)` prints.
//!
//! Objects that are not plain data (a `Future`, a `Generator`, a socket) ride
//! in [`Value::Object`] and are recovered with [`Value::downcast`].

use std::any::Any;
use std::fmt;
use std::rc::Rc;

/// A Python object that is not plain data: what `Value::Object` carries.
///
/// Mirrors the part of Python's object protocol the tutorials rely on: a type
/// name (for messages such as `'int' object has no attribute ...`) and a
/// `repr()`.
pub trait Object: Any {
    /// `type(obj).__name__`.
    fn type_name(&self) -> &str;
    /// `repr(obj)`; by default Python's `<name object at 0x...>`.
    fn repr(&self) -> String {
        format!("<{} object at {:p}>", self.type_name(), self as *const Self)
    }
}

/// A Python value: `None`, `bool`, `int`, `float`, `str`, `bytes`, `tuple`,
/// `list`, or any other object.
///
/// Cheap to clone: strings, bytes and sequences are reference counted, like
/// Python's objects.
// `repr(u64)`: a word-sized tag. With the default one-byte tag, a `Value`
// written tag-then-payload and read back with word loads stalls on failed
// store-to-load forwarding on every send (perf annotate put 45% of a send
// loop on one such load); `send` goes from about 19 to 13 ns. The size stays
// 24 bytes (`tests` below).
#[derive(Clone, Default)]
#[repr(u64)]
pub enum Value {
    /// `None`: what `next()` sends and what a bare `return` returns.
    #[default]
    None,
    /// `bool`.
    Bool(bool),
    /// `int` (bounded to 64 bits here).
    Int(i64),
    /// `float`.
    Float(f64),
    /// `str`.
    Str(Rc<str>),
    /// `bytes`, e.g. what `sock.recv(4096)` returns.
    Bytes(Rc<[u8]>),
    /// `tuple`.
    Tuple(Rc<[Value]>),
    /// `list` (immutable here: the tutorials only build and print lists).
    List(Rc<[Value]>),
    /// Any other object: a `Future`, a `Generator`, ...
    Object(Rc<dyn Object>),
}

impl Value {
    /// `value is None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// Wraps any [`Object`] (Python: just passing the object around).
    pub fn object<T: Object>(obj: T) -> Value {
        Value::Object(Rc::new(obj))
    }

    /// Wraps an already shared object.
    pub fn from_rc<T: Object>(obj: Rc<T>) -> Value {
        Value::Object(obj)
    }

    /// `type(value).__name__`.
    pub fn type_name(&self) -> &str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Object(o) => o.type_name(),
        }
    }

    /// The object inside, if it is a `T` (Python: `isinstance(value, T)`).
    pub fn downcast<T: Object>(&self) -> Option<Rc<T>> {
        match self {
            Value::Object(o) => {
                let any: Rc<dyn Any> = o.clone();
                any.downcast::<T>().ok()
            }
            _ => None,
        }
    }

    /// The `int` inside, if any.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The `str` inside, if any.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The `bytes` inside, if any.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Python's truth value (`bool(value)`).
    pub fn truthy(&self) -> bool {
        match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::Tuple(t) | Value::List(t) => !t.is_empty(),
            Value::Object(_) => true,
        }
    }

    /// Python's `repr(value)`.
    pub fn repr(&self) -> String {
        format!("{self:?}")
    }
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`.
pub fn str_repr(s: &str) -> String {
    // Printable ASCII with no quote or backslash is copied as it is: one
    // pass over the bytes instead of a `char` at a time. `print(results)`
    // at the end of a stage's run (a URL/title pair per fetch, inside the
    // timed part) went from 4,500 to 3,000 instructions a pair with this
    // (callgrind, `generator --urls 1000`), and to 1,300 with the list
    // written into one string (`examples/common`'s `Results::print`).
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'\\' && b != b'\'')
    {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        out.push_str(s);
        out.push('\'');
        return out;
    }
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(bytes)`: `b'...'` with `\x..` escapes for non-printables.
pub fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(b.len() + 3);
    out.push('b');
    out.push(quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote as char);
    out
}

fn float_repr(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

fn seq_repr(f: &mut fmt::Formatter<'_>, items: &[Value], open: &str, close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v:?}")?;
    }
    if open == "(" && items.len() == 1 {
        f.write_str(",")?;
    }
    f.write_str(close)
}

/// `repr(value)`.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&float_repr(*x)),
            Value::Str(s) => f.write_str(&str_repr(s)),
            Value::Bytes(b) => f.write_str(&bytes_repr(b)),
            Value::Tuple(t) => seq_repr(f, t, "(", ")"),
            Value::List(l) => seq_repr(f, l, "[", "]"),
            Value::Object(o) => f.write_str(&o.repr()),
        }
    }
}

/// `str(value)`: what `print(value)` shows.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            other => write!(f, "{other:?}"),
        }
    }
}

/// `a == b`; objects compare by identity (`a is b`), as Python's default.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => *a as f64 == *b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Tuple(a), Value::Tuple(b)) | (Value::List(a), Value::List(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => std::ptr::addr_eq(Rc::as_ptr(a), Rc::as_ptr(b)),
            _ => false,
        }
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::None
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Int(i64::from(i))
    }
}
impl From<usize> for Value {
    fn from(i: usize) -> Value {
        Value::Int(i as i64)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Float(x)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s.into())
    }
}
impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::Bytes(b.into())
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b.into())
    }
}
impl From<Vec<Value>> for Value {
    /// A `list`.
    fn from(items: Vec<Value>) -> Value {
        Value::List(items.into())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` or the value.
    fn from(o: Option<T>) -> Value {
        o.map_or(Value::None, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_three_words() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn repr_matches_python() {
        assert_eq!(bytes_repr(b"a'b\x00\xff\n"), r#"b"a'b\x00\xff\n""#);
        assert_eq!(bytes_repr(b"a\"'"), r#"b'a"\''"#);
        assert_eq!(str_repr("a'b"), r#""a'b""#);
        // The plain-ASCII fast path and the one beside it (python3: repr()).
        assert_eq!(str_repr("http://x/s?wd=1 ~"), "'http://x/s?wd=1 ~'");
        assert_eq!(str_repr(r#"a"b"#), r#"'a"b'"#);
        assert_eq!(str_repr(r"a\b"), r"'a\\b'");
        assert_eq!(str_repr("\x7f\té"), r"'\x7f\té'");
        assert_eq!(str_repr(""), "''");
        assert_eq!(
            Value::from(vec![Value::Int(1), "x".into()]).repr(),
            "[1, 'x']"
        );
        assert_eq!(Value::Tuple(vec![Value::None].into()).repr(), "(None,)");
        assert_eq!(Value::Float(1.0).repr(), "1.0");
        assert_eq!(Value::from("k").to_string(), "k");
    }
}
