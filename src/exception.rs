//! `Exception`: Python's exception objects, classes and chaining.
//!
//! Why this exists: in Python an exception unwinds through `yield` points,
//! `throw()` injects one into a suspended generator, and `StopIteration`
//! carries a generator's return value. In pyfiber an exception is a plain
//! value: a body returns `PyResult<T>`, `?` is Python's implicit propagation,
//! and `throw` makes the pending `co.yield_()` return `Err(exc)`.
//!
//! The value is a shared object, as in CPython: cloning an [`Exception`]
//! is `e2 = e` (one pointer, and [`Exception::is`] says they are the same
//! object), and what is attached to it later -- `__context__`, `__cause__` --
//! is seen through every clone. It has a class in CPython's hierarchy
//! ([`ExceptionClass`]; the built-ins are statics named as in Python, so
//! `except ValueError:` is `e.is_instance(&ValueError)`), `args`, `repr()`
//! (`Debug`) and `str()` (`Display`) as CPython prints them.
//!
//! ```
//! use pyfiber::exception::{builtins, KeyError, LookupError, ValueError};
//!
//! let e = KeyError.new(("k",));
//! assert_eq!(format!("{e:?} | {e}"), "KeyError('k') | 'k'");
//! assert!(e.is_instance(&LookupError) && e.is_instance(&builtins::Exception));
//! assert!(!e.is_instance(&ValueError));
//! let same = e.clone();
//! assert!(same.is(&e) && !KeyError.new(("k",)).is(&e));
//! ```
//!
//! Handling is [`Except::except`] and [`Except::finally`] on a `PyResult`:
//! they run the handler or cleanup and, when it raises, set the new
//! exception's `__context__` to the one being handled, as CPython does
//! whenever an exception is raised inside `except` or `finally`.
//! [`format_exception`] prints the chain as `traceback.format_exception`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::rc::Rc;
use std::sync::Mutex;

use crate::value::{str_repr, Object, Value};

/// `Result<T, Exception>`: what every generator body and every fallible call
/// returns. `Err` is "raised".
pub type PyResult<T> = Result<T, Exception>;

// ---------------------------------------------------------------------------
// Classes
// ---------------------------------------------------------------------------

/// A Python exception class: a name and one base (`class MyError(Base)`).
///
/// The built-in classes are the statics of this module, named as in Python
/// (`ValueError`, `OSError`, ...); a program's own are made with
/// [`ExceptionClass::declare`]. A class lives as long as the program, as a
/// module-level Python class does, so it is passed around as
/// `&'static ExceptionClass` and compared by identity.
pub struct ExceptionClass {
    name: &'static str,
    base: Option<&'static ExceptionClass>,
}

macro_rules! builtins {
    ($($(#[$doc:meta])* $name:ident: $base:expr;)+) => {
        /// The built-in exception classes, named as in Python's `builtins`.
        ///
        /// All but `Exception` are also in [`crate::exception`] itself; that
        /// one lives only here, so that `Exception` there names the type of
        /// instances alone (`e.is_instance(&builtins::Exception)` is
        /// `isinstance(e, Exception)`, also [`Exception::is_exception`]).
        pub mod builtins {
            use super::ExceptionClass;
            $(
                $(#[$doc])*
                #[allow(non_upper_case_globals)]
                pub static $name: ExceptionClass = ExceptionClass {
                    name: stringify!($name),
                    base: $base,
                };
            )+
            /// Every built-in class, for [`ExceptionClass::named`].
            pub(super) static BUILTINS: &[&ExceptionClass] = &[$(&$name),+];
        }
    };
}

use builtins::BUILTINS;
pub use builtins::{
    ArithmeticError, AttributeError, BaseException, BlockingIOError, BrokenPipeError,
    ChildProcessError, ConnectionAbortedError, ConnectionError, ConnectionRefusedError,
    ConnectionResetError, FileExistsError, FileNotFoundError, GeneratorExit, IndexError,
    InterruptedError, IsADirectoryError, KeyError, KeyboardInterrupt, LookupError, MemoryError,
    NotADirectoryError, NotImplementedError, OSError, PermissionError, ProcessLookupError,
    RecursionError, RuntimeError, StopIteration, SystemExit, TimeoutError, TypeError,
    UnicodeDecodeError, UnicodeError, ValueError, ZeroDivisionError,
};

builtins! {
    /// `BaseException`: the root; `except BaseException:` catches everything.
    BaseException: None;
    /// `Exception`: what `except Exception:` catches (all but `GeneratorExit`,
    /// `KeyboardInterrupt`, `SystemExit`).
    Exception: Some(&BaseException);
    /// `GeneratorExit`: what `close()` throws into a generator.
    GeneratorExit: Some(&BaseException);
    /// `KeyboardInterrupt`.
    KeyboardInterrupt: Some(&BaseException);
    /// `SystemExit`.
    SystemExit: Some(&BaseException);
    /// `StopIteration`: a generator returned; `args[0]` is its `value`.
    StopIteration: Some(&Exception);
    /// `ArithmeticError`.
    ArithmeticError: Some(&Exception);
    /// `ZeroDivisionError`.
    ZeroDivisionError: Some(&ArithmeticError);
    /// `AttributeError`.
    AttributeError: Some(&Exception);
    /// `LookupError`.
    LookupError: Some(&Exception);
    /// `KeyError`: `str()` is the key's `repr()`.
    KeyError: Some(&LookupError);
    /// `IndexError`.
    IndexError: Some(&LookupError);
    /// `MemoryError`: here, when no fiber stack can be mapped.
    MemoryError: Some(&Exception);
    /// `RuntimeError`.
    RuntimeError: Some(&Exception);
    /// `NotImplementedError`.
    NotImplementedError: Some(&RuntimeError);
    /// `RecursionError`.
    RecursionError: Some(&RuntimeError);
    /// `TypeError`.
    TypeError: Some(&Exception);
    /// `ValueError`.
    ValueError: Some(&Exception);
    /// `UnicodeError`.
    UnicodeError: Some(&ValueError);
    /// `UnicodeDecodeError`.
    UnicodeDecodeError: Some(&UnicodeError);
    /// `OSError`: `[Errno N] strerror` when built with an errno.
    OSError: Some(&Exception);
    /// `BlockingIOError`: a non-blocking call that would block.
    BlockingIOError: Some(&OSError);
    /// `ConnectionError`.
    ConnectionError: Some(&OSError);
    /// `BrokenPipeError`.
    BrokenPipeError: Some(&ConnectionError);
    /// `ConnectionAbortedError`.
    ConnectionAbortedError: Some(&ConnectionError);
    /// `ConnectionRefusedError`.
    ConnectionRefusedError: Some(&ConnectionError);
    /// `ConnectionResetError`.
    ConnectionResetError: Some(&ConnectionError);
    /// `TimeoutError`.
    TimeoutError: Some(&OSError);
    /// `ChildProcessError` (`ECHILD`).
    ChildProcessError: Some(&OSError);
    /// `FileExistsError` (`EEXIST`).
    FileExistsError: Some(&OSError);
    /// `FileNotFoundError` (`ENOENT`).
    FileNotFoundError: Some(&OSError);
    /// `InterruptedError` (`EINTR`).
    InterruptedError: Some(&OSError);
    /// `IsADirectoryError` (`EISDIR`).
    IsADirectoryError: Some(&OSError);
    /// `NotADirectoryError` (`ENOTDIR`).
    NotADirectoryError: Some(&OSError);
    /// `PermissionError` (`EACCES`, `EPERM`).
    PermissionError: Some(&OSError);
    /// `ProcessLookupError` (`ESRCH`).
    ProcessLookupError: Some(&OSError);
}

/// The classes a program declared, so that declaring the same name and base
/// twice gives the same class (one module's `class MyError(Exception)`).
static DECLARED: Mutex<Vec<&'static ExceptionClass>> = Mutex::new(Vec::new());

impl ExceptionClass {
    /// `class name(base): pass`. Declaring the same name with the same base
    /// again returns the same class (classes are identified by name and
    /// base, as the classes of one module are).
    pub fn declare(name: &str, base: &'static ExceptionClass) -> &'static ExceptionClass {
        let mut declared = DECLARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = declared
            .iter()
            .find(|c| c.name == name && c.base.is_some_and(|b| std::ptr::eq(b, base)))
        {
            return c;
        }
        // Leaked on purpose: a class outlives every instance of it. Each
        // distinct (name, base) is leaked once.
        let class: &'static ExceptionClass = Box::leak(Box::new(ExceptionClass {
            name: Box::leak(name.to_string().into_boxed_str()),
            base: Some(base),
        }));
        declared.push(class);
        class
    }

    /// The class called `name`: the built-in one, or else a class of the
    /// program's own derived from `Exception` (what [`Exception::user`]
    /// raises).
    pub fn named(name: &str) -> &'static ExceptionClass {
        match BUILTINS.iter().find(|c| c.name == name) {
            Some(c) => c,
            None => ExceptionClass::declare(name, &builtins::Exception),
        }
    }

    /// `cls.__name__`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `cls.__base__` (`None` for `BaseException`).
    pub fn base(&self) -> Option<&'static ExceptionClass> {
        self.base
    }

    /// `issubclass(self, other)`.
    pub fn is_subclass(&self, other: &ExceptionClass) -> bool {
        let mut class = Some(self);
        while let Some(c) = class {
            if std::ptr::eq(c, other) {
                return true;
            }
            class = c.base;
        }
        false
    }

    /// `cls(*args)`: a new instance, e.g. `ValueError.new(("boom",))` or
    /// `KeyError.new(())`.
    // A class's `new` makes an instance of it, not another class.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(&'static self, args: impl IntoArgs) -> Exception {
        let args = args.into_args();
        // OSError(errno, strerror) keeps both as the `errno`/`strerror`
        // attributes, and its `str()` becomes `[Errno N] strerror`; plain
        // `OSError` picks the subclass of the errno, as CPython's does.
        let os = match &args[..] {
            [Value::Int(n), Value::Str(s)] if self.is_subclass(&OSError) => Some(OsError {
                errno: i32::try_from(*n).ok(),
                strerror: s.to_string(),
            }),
            _ => None,
        };
        let class = match &os {
            Some(OsError { errno: Some(n), .. }) if std::ptr::eq(self, &OSError) => os_subclass(*n),
            _ => self,
        };
        Exception::build(class, args, os)
    }
}

/// `OSError(errno, ...)`'s class: CPython's errno map (`ADD_ERRNO` in
/// Objects/exceptions.c), with this platform's numbers.
fn os_subclass(errno: i32) -> &'static ExceptionClass {
    match errno {
        libc::EAGAIN | libc::EALREADY | libc::EINPROGRESS => &BlockingIOError,
        libc::EPIPE | libc::ESHUTDOWN => &BrokenPipeError,
        libc::ECHILD => &ChildProcessError,
        libc::ECONNABORTED => &ConnectionAbortedError,
        libc::ECONNREFUSED => &ConnectionRefusedError,
        libc::ECONNRESET => &ConnectionResetError,
        libc::EEXIST => &FileExistsError,
        libc::ENOENT => &FileNotFoundError,
        libc::EISDIR => &IsADirectoryError,
        libc::ENOTDIR => &NotADirectoryError,
        libc::EINTR => &InterruptedError,
        libc::EACCES | libc::EPERM => &PermissionError,
        libc::ESRCH => &ProcessLookupError,
        libc::ETIMEDOUT => &TimeoutError,
        _ => &OSError,
    }
}

impl PartialEq for ExceptionClass {
    /// `cls1 is cls2`.
    fn eq(&self, other: &ExceptionClass) -> bool {
        std::ptr::eq(self, other)
    }
}

/// `repr(cls)`: `<class 'ValueError'>`.
impl fmt::Debug for ExceptionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<class '{}'>", self.name)
    }
}

/// The positional arguments of a call `cls(*args)`: `()`, a tuple of up to
/// three values, or a `Vec<Value>`.
pub trait IntoArgs {
    /// The arguments as `args`.
    fn into_args(self) -> Vec<Value>;
}

impl IntoArgs for () {
    fn into_args(self) -> Vec<Value> {
        Vec::new()
    }
}
impl IntoArgs for Vec<Value> {
    fn into_args(self) -> Vec<Value> {
        self
    }
}
impl<A: Into<Value>> IntoArgs for (A,) {
    fn into_args(self) -> Vec<Value> {
        vec![self.0.into()]
    }
}
impl<A: Into<Value>, B: Into<Value>> IntoArgs for (A, B) {
    fn into_args(self) -> Vec<Value> {
        vec![self.0.into(), self.1.into()]
    }
}
impl<A: Into<Value>, B: Into<Value>, C: Into<Value>> IntoArgs for (A, B, C) {
    fn into_args(self) -> Vec<Value> {
        vec![self.0.into(), self.1.into(), self.2.into()]
    }
}

// ---------------------------------------------------------------------------
// Instances
// ---------------------------------------------------------------------------

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

    /// `args` of an `OSError` built from this: `(errno, strerror)`, or
    /// `(message,)`, or `()` for no message.
    fn args(&self) -> Vec<Value> {
        match self.errno {
            Some(n) => vec![Value::Int(n.into()), self.strerror.as_str().into()],
            None if self.strerror.is_empty() => Vec::new(),
            None => vec![self.strerror.as_str().into()],
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

/// A Python exception instance: a shared object. `Display` is `str(exc)`,
/// `Debug` is `repr(exc)`, [`Exception::is`] is `is`.
///
/// It is one pointer, so a `PyResult<Value>` is no bigger than a `Value`.
/// `==` compares class and `args` (a convenience for tests; Python's `==`
/// on exceptions is identity, which is [`Exception::is`]).
#[derive(Clone)]
pub struct Exception {
    obj: Rc<ExcObject>,
}

/// What an exception object holds.
struct ExcObject {
    class: &'static ExceptionClass,
    args: Vec<Value>,
    /// `errno`/`strerror`, for the `OSError` family.
    os: Option<OsError>,
    /// `__context__`: the exception being handled when this one was raised.
    context: RefCell<Option<Exception>>,
    /// `__cause__`: `raise self from cause`.
    cause: RefCell<Option<Exception>>,
    /// `__suppress_context__`: set by `raise ... from ...`.
    suppress_context: Cell<bool>,
    /// The [`CLOCK`] reading when `context` was last set by implicit
    /// chaining (0: never, or set by hand). See [`Exception::chain_handled`].
    context_stamp: Cell<u64>,
    /// The [`CLOCK`] reading when the innermost handler of this exception
    /// that is still running began (0: none).
    handler_start: Cell<u64>,
}

/// The built-in classes' constructors under their Python names, so that
/// `Exception::ValueError(msg)` reads as `ValueError(msg)`. An empty message
/// means no arguments (`ValueError()`).
#[allow(non_snake_case)]
impl Exception {
    fn build(class: &'static ExceptionClass, args: Vec<Value>, os: Option<OsError>) -> Exception {
        Exception {
            obj: Rc::new(ExcObject {
                class,
                args,
                os,
                context: RefCell::new(None),
                cause: RefCell::new(None),
                suppress_context: Cell::new(false),
                context_stamp: Cell::new(0),
                handler_start: Cell::new(0),
            }),
        }
    }

    fn with_message(class: &'static ExceptionClass, message: String) -> Exception {
        let args = if message.is_empty() {
            Vec::new()
        } else {
            vec![message.into()]
        };
        Exception::build(class, args, None)
    }

    fn os(class: &'static ExceptionClass, os: OsError) -> Exception {
        Exception::build(class, os.args(), Some(os))
    }

    /// `StopIteration(value)`, as a generator's `return value` raises it:
    /// `return None` gives `StopIteration()` with no args, as in CPython.
    pub fn StopIteration(value: Value) -> Exception {
        let args = if value.is_none() {
            Vec::new()
        } else {
            vec![value]
        };
        Exception::build(&StopIteration, args, None)
    }
    /// `GeneratorExit()`.
    pub fn GeneratorExit() -> Exception {
        Exception::build(&GeneratorExit, Vec::new(), None)
    }
    /// `TypeError(message)`.
    pub fn TypeError(message: String) -> Exception {
        Exception::with_message(&TypeError, message)
    }
    /// `ValueError(message)`.
    pub fn ValueError(message: String) -> Exception {
        Exception::with_message(&ValueError, message)
    }
    /// `RuntimeError(message)`.
    pub fn RuntimeError(message: String) -> Exception {
        Exception::with_message(&RuntimeError, message)
    }
    /// `AttributeError(message)`.
    pub fn AttributeError(message: String) -> Exception {
        Exception::with_message(&AttributeError, message)
    }
    /// `KeyError(key)` for a `str` key: `str()` is the key's `repr()`.
    pub fn KeyError(key: String) -> Exception {
        Exception::with_message(&KeyError, key)
    }
    /// `MemoryError(message)`.
    pub fn MemoryError(message: String) -> Exception {
        Exception::with_message(&MemoryError, message)
    }
    /// `OSError(errno, strerror)` or `OSError(message)`. As in CPython, an
    /// errno picks the subclass: `OSError(2, ...)` is a `FileNotFoundError`.
    pub fn OSError(os: OsError) -> Exception {
        let class = os.errno.map_or(&OSError, os_subclass);
        Exception::os(class, os)
    }
    /// `BlockingIOError`: a non-blocking call that would block, such as
    /// `connect()` still in progress.
    pub fn BlockingIOError(os: OsError) -> Exception {
        Exception::os(&BlockingIOError, os)
    }
    /// `ConnectionRefusedError`.
    pub fn ConnectionRefusedError(os: OsError) -> Exception {
        Exception::os(&ConnectionRefusedError, os)
    }
    /// `ConnectionResetError`.
    pub fn ConnectionResetError(os: OsError) -> Exception {
        Exception::os(&ConnectionResetError, os)
    }
    /// `BrokenPipeError`.
    pub fn BrokenPipeError(os: OsError) -> Exception {
        Exception::os(&BrokenPipeError, os)
    }
    /// `TimeoutError`.
    pub fn TimeoutError(os: OsError) -> Exception {
        Exception::os(&TimeoutError, os)
    }
}

impl Exception {
    /// `raise Name(message)` for a class given by name: a built-in, or a
    /// class of the program's own derived from `Exception`
    /// ([`ExceptionClass::named`]). An empty message means no arguments.
    pub fn user(name: impl AsRef<str>, message: impl Into<String>) -> Exception {
        Exception::with_message(ExceptionClass::named(name.as_ref()), message.into())
    }

    /// `type(exc)`.
    pub fn class(&self) -> &'static ExceptionClass {
        self.obj.class
    }

    /// `type(exc).__name__`.
    pub fn name(&self) -> &'static str {
        self.obj.class.name
    }

    /// `isinstance(exc, class)`: what `except class:` tests.
    #[inline]
    pub fn is_instance(&self, class: &ExceptionClass) -> bool {
        std::ptr::eq(self.obj.class, class) || self.obj.class.is_subclass(class)
    }

    /// `exc is other`: the same object (clones of one exception are).
    pub fn is(&self, other: &Exception) -> bool {
        Rc::ptr_eq(&self.obj, &other.obj)
    }

    /// `exc.args`, as a tuple.
    pub fn args(&self) -> Value {
        Value::Tuple(self.obj.args.clone().into())
    }

    /// `exc.args`, as a slice.
    pub fn args_slice(&self) -> &[Value] {
        &self.obj.args
    }

    /// `repr(exc)`: `ValueError('boom')`, `KeyError()`,
    /// `OSError(111, 'Connection refused')`.
    pub fn repr(&self) -> String {
        format!("{self:?}")
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
        self.is_instance(&OSError)
    }

    /// The `errno`/`strerror` of an `OSError` (or subclass) built with them.
    pub fn os_error(&self) -> Option<&OsError> {
        self.obj.os.as_ref()
    }

    /// `isinstance(exc, Exception)`: false for `GeneratorExit` (and the
    /// other direct subclasses of `BaseException`), which `except
    /// Exception:` lets pass.
    pub fn is_exception(&self) -> bool {
        self.is_instance(&builtins::Exception)
    }

    /// `exc.value`, if this is a `StopIteration`: its first argument, or
    /// `None` when it has none.
    pub fn stop_value(&self) -> Option<&Value> {
        const NONE: &Value = &Value::None;
        if !self.is_instance(&StopIteration) {
            return None;
        }
        Some(self.obj.args.first().unwrap_or(NONE))
    }

    /// `exc.__context__`.
    pub fn context(&self) -> Option<Exception> {
        self.obj.context.borrow().clone()
    }

    /// `exc.__cause__`.
    pub fn cause(&self) -> Option<Exception> {
        self.obj.cause.borrow().clone()
    }

    /// `exc.__suppress_context__`.
    pub fn suppress_context(&self) -> bool {
        self.obj.suppress_context.get()
    }

    /// `exc.__context__ = context`. Set by hand, as in Python: the next
    /// raise of `exc` inside a handler replaces it.
    pub fn set_context(&self, context: Option<Exception>) {
        *self.obj.context.borrow_mut() = context;
        self.obj.context_stamp.set(0);
    }

    /// `exc.__cause__ = cause`, which (as in Python) also sets
    /// `__suppress_context__`.
    pub fn set_cause(&self, cause: Option<Exception>) {
        *self.obj.cause.borrow_mut() = cause;
        self.obj.suppress_context.set(true);
    }

    /// `raise self from cause` (`from None` is `with_cause(None)`): sets
    /// `__cause__` and `__suppress_context__`, and gives `self` back to
    /// raise.
    pub fn with_cause(self, cause: impl Into<Option<Exception>>) -> Exception {
        self.set_cause(cause.into());
        self
    }

    /// Implicit chaining, as CPython does when `self` is raised while
    /// `handled` is being handled: `self.__context__ = handled`, replacing
    /// any context `self` had (CPython sets it at every raise, so a saved
    /// exception raised again in another handler gets that handler's), unless
    /// `self` is `handled` (a re-raise). A link of `handled`'s own chain that
    /// points back at `self` is cut first, as CPython cuts it, so no chain is
    /// a cycle.
    pub fn chain(&self, handled: &Exception) {
        if self.is(handled) {
            return;
        }
        let mut link = handled.clone();
        loop {
            let next = link.context();
            match next {
                Some(n) if n.is(self) => {
                    link.set_context(None);
                    break;
                }
                Some(n) => link = n,
                None => break,
            }
        }
        *self.obj.context.borrow_mut() = Some(handled.clone());
        self.obj.context_stamp.set(CLOCK.with(Cell::get));
    }

    /// [`Exception::chain`] where pyfiber can only see the raise afterwards:
    /// `self` was caught in, or escaped from, the handler of `handled`.
    /// CPython chained it when it was raised, to the innermost exception
    /// handled then; if that happened while `handled`'s handler ran (in a
    /// nested handler, whose exception is the nearer one) the context set
    /// then stays. A context older than the handler (a saved exception
    /// raised again, one set by hand) is replaced, as CPython's raise
    /// replaces it.
    fn chain_handled(&self, handled: &Exception) {
        let start = handled.obj.handler_start.get();
        // A stamp without a context: raised (thrown) during the handler
        // with nothing to chain to then; that stays too.
        if self.obj.context_stamp.get() >= start {
            return;
        }
        self.chain(handled);
    }
}

/// `str(exc)`: nothing for no args, `str(arg)` for one (`repr` for
/// `KeyError`), `str(args)` for more; `[Errno N] strerror` for an `OSError`
/// built with an errno.
impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(os @ OsError { errno: Some(_), .. }) = &self.obj.os {
            return write!(f, "{os}");
        }
        match &self.obj.args[..] {
            [] => Ok(()),
            [Value::Str(key)] if self.is_instance(&KeyError) => f.write_str(&str_repr(key)),
            [arg] if self.is_instance(&KeyError) => write!(f, "{arg:?}"),
            [arg] => write!(f, "{arg}"),
            _ => write!(f, "{:?}", self.args()),
        }
    }
}

/// `repr(exc)`: `Name(repr(arg))` for one arg, `Name` + `repr(args)` else.
impl fmt::Debug for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.obj.args[..] {
            [] => write!(f, "{}()", self.name()),
            [arg] => write!(f, "{}({arg:?})", self.name()),
            _ => write!(f, "{}{:?}", self.name(), self.args()),
        }
    }
}

/// Same class and same `args` (see [`Exception`]).
impl PartialEq for Exception {
    fn eq(&self, other: &Exception) -> bool {
        self.is(other) || (self.obj.class == other.obj.class && self.obj.args == other.obj.args)
    }
}

impl std::error::Error for Exception {}

/// An exception is a Python object like any other: it can be yielded,
/// sent and kept in a `Value` (`Value::object(e)`, `v.downcast::<Exception>()`).
impl Object for Exception {
    fn type_name(&self) -> &str {
        self.name()
    }
    fn repr(&self) -> String {
        format!("{self:?}")
    }
}

/// `raise ValueError` (the class alone): an instance with no arguments.
impl From<&'static ExceptionClass> for Exception {
    fn from(class: &'static ExceptionClass) -> Exception {
        class.new(())
    }
}

/// Python's mapping from `errno` to the `OSError` subclass it raises.
impl From<io::Error> for Exception {
    fn from(e: io::Error) -> Exception {
        let errno = e.raw_os_error();
        // The two errors a non-blocking program meets at every wait get
        // glibc's text without asking for it: `to_string` runs strerror_r
        // (through gettext) and formats " (os error N)" only to cut it off,
        // 3,700 instructions per non-blocking `connect` (callgrind,
        // generator stage). The text is the C locale's, as Rust's and
        // CPython's strerror give it (neither calls setlocale(LC_MESSAGES)).
        match errno {
            Some(115) => {
                return Exception::BlockingIOError(OsError {
                    errno,
                    strerror: "Operation now in progress".to_string(),
                })
            }
            Some(11) => {
                return Exception::BlockingIOError(OsError {
                    errno,
                    strerror: "Resource temporarily unavailable".to_string(),
                })
            }
            _ => {}
        }
        let text = e.to_string();
        // std appends " (os error N)"; Python shows "[Errno N] text" instead.
        let strerror = match text.rfind(" (os error ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        let os = OsError { errno, strerror };
        if let Some(n) = errno {
            // What `OSError(errno, strerror)` would be: CPython's map.
            return Exception::os(os_subclass(n), os);
        }
        match e.kind() {
            io::ErrorKind::WouldBlock => Exception::BlockingIOError(os),
            io::ErrorKind::ConnectionRefused => Exception::ConnectionRefusedError(os),
            io::ErrorKind::ConnectionReset => Exception::ConnectionResetError(os),
            io::ErrorKind::BrokenPipe => Exception::BrokenPipeError(os),
            io::ErrorKind::TimedOut => Exception::TimeoutError(os),
            _ => Exception::OSError(os),
        }
    }
}

// ---------------------------------------------------------------------------
// Handling
// ---------------------------------------------------------------------------

/// `try`/`except`/`finally` on a `PyResult`, with Python's implicit
/// chaining: an exception raised by a handler or by a cleanup gets the one
/// being handled as its `__context__` ([`Exception::chain`]).
///
/// ```
/// use pyfiber::exception::{Except, KeyError, ValueError};
///
/// // try:
/// //     raise ValueError("boom")
/// // except ValueError:
/// //     raise KeyError("k")
/// let r: Result<(), _> = Err(ValueError.new(("boom",)))
///     .except(&ValueError, |_| Err(KeyError.new(("k",))));
/// let e = r.unwrap_err();
/// assert_eq!(format!("{:?}", e.context()), "Some(ValueError('boom'))");
/// ```
pub trait Except<T> {
    /// `try: <self> except class as e: handler(e)`: an exception of another
    /// class passes through untouched.
    fn except(
        self,
        class: &ExceptionClass,
        handler: impl FnOnce(Exception) -> PyResult<T>,
    ) -> PyResult<T>;

    /// `try: <self> finally: cleanup()`: the cleanup runs on every way out;
    /// an exception it raises replaces the result (chained to the pending
    /// exception, if any).
    fn finally(self, cleanup: impl FnOnce() -> PyResult<()>) -> PyResult<T>;
}

thread_local! {
    /// The exceptions whose handlers (or `finally` cleanups) are running on
    /// this thread, innermost last: CPython's `sys.exc_info()` stack. An
    /// exception caught while one is handled was raised during that
    /// handling, so it gets it as its `__context__`.
    static HANDLING: RefCell<Vec<Exception>> = const { RefCell::new(Vec::new()) };
    /// Ticks once as each handler starts: what tells a context set during a
    /// handler from one set before it ([`Exception::chain_handled`]).
    static CLOCK: Cell<u64> = const { Cell::new(0) };
    /// `HANDLING`'s length, kept beside it in a plain `Cell`: what a send
    /// reads before and after the switch to see whether the body left
    /// handlers open across its yield (one load each, where the `Vec`'s
    /// length would be a `RefCell` borrow).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

thread_local! {
    /// The `throw()` (or `close()`) whose resume of a generator is under
    /// way on this thread, innermost: its serial number (0: none) and the
    /// depth of the handled exceptions under that generator's own. What a
    /// body that receives the throw reads instead of asking its generator
    /// (which it cannot reach any more during the finalizer's close).
    static THROW: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
    /// The last serial given to a throw.
    static THROWS: Cell<u64> = const { Cell::new(0) };
    /// Handled exceptions `exc_info()` does not see while the throw with
    /// this serial runs: the range `lo..hi` of the stack, the handlers of
    /// the frames that called a same-fiber sub-generator the throw reached
    /// ([`hide_outer_frames`]).
    static HIDDEN: Cell<(u64, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// While the throw in progress runs, `exc_info()` skips the handled
/// exceptions `lo..hi`: a throw that reaches a same-fiber sub-generator
/// resumes that sub alone in CPython (the delegators' frames are not
/// entered on the way down, `_gen_throw`), so what its body catches or
/// raises sees its own handled exceptions and then the caller's. The range
/// lapses by itself when the throw ends: when the body yields again, or
/// returns to the caller.
#[cold]
#[inline(never)]
pub(crate) fn hide_outer_frames(lo: usize, hi: usize) {
    let serial = active_throw().0;
    HIDDEN.with(|m| m.set((serial, lo, hi)));
}

/// Marks the switch into a generator that delivers a thrown exception
/// (`throw()`, `close()`, the finalizer's close) as the throw in progress
/// ([`active_throw`]) until the guard goes. Cold paths only: a send never
/// comes here. (A guard and not a closure around the switch: a closure
/// made the compiler lay out the send path differently, 12 more
/// instructions per send through 10 generators, callgrind.)
#[cold]
#[inline(never)]
pub(crate) fn throwing() -> Throwing {
    let serial = THROWS.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let outer = THROW.with(|t| t.replace((serial, handled_depth())));
    Throwing(outer, HIDDEN.with(Cell::get))
}

/// The guard of [`throwing`]: puts the outer throw back on every way out,
/// with what it hid.
pub(crate) struct Throwing((u64, usize), (u64, usize, usize));

impl Drop for Throwing {
    fn drop(&mut self) {
        THROW.with(|t| t.set(self.0));
        HIDDEN.with(|m| m.set(self.1));
    }
}

/// The throw in progress: its serial (0 if none) and the handled depth
/// under the generator it resumed (see [`throwing`]).
pub(crate) fn active_throw() -> (u64, usize) {
    THROW.with(Cell::get)
}

/// How many exceptions are being handled on this thread: the mark a send
/// takes before it resumes a body ([`take_handled_above`]).
#[inline(always)]
pub(crate) fn handled_depth() -> usize {
    DEPTH.with(Cell::get)
}

/// CPython's `gi_exc_state`, saved at a yield: the exceptions a generator
/// body is handling when it suspends (it yielded inside `except` or
/// `finally`) leave the thread's stack with it, innermost last, so the
/// caller's `sys.exc_info()` and its chaining no longer see them.
#[cold]
#[inline(never)]
pub(crate) fn take_handled_above(mark: usize) -> Vec<Exception> {
    let taken: Vec<Exception> = HANDLING.with(|h| {
        let mut h = h.borrow_mut();
        let mark = mark.min(h.len());
        h.drain(mark..).collect()
    });
    DEPTH.with(|d| d.set(mark.min(d.get())));
    taken
}

/// CPython's `_PyErr_ChainStackItem`, for an exception raised into a
/// generator at its yield (by `throw()`, or coming back out of its
/// delegate's `throw()` or `close()`): it is chained to the exception the
/// generator's own frame is handling, the innermost above `mark` (the depth
/// when the generator was resumed), replacing any context it had; with
/// none, its context stays. Either way it counts as raised now, so the
/// handlers it meets later do not chain it again to the caller's
/// exceptions (a thrown exception is not "raised while the caller handles
/// one", whatever the caller was doing).
///
/// `thrown` is false for an exception that comes back out of a delegate:
/// it was raised in there and already chained as pyfiber could, so with no
/// own handled exception it is left as it is.
#[cold]
#[inline(never)]
pub(crate) fn chain_to_own_handled(exc: &Exception, mark: usize, thrown: bool) {
    let own = HANDLING.with(|h| {
        let h = h.borrow();
        if h.len() > mark {
            h.last().cloned()
        } else {
            None
        }
    });
    match own {
        Some(own) => exc.chain(&own),
        None if thrown => exc.obj.context_stamp.set(CLOCK.with(Cell::get)),
        None => {}
    }
}

/// Runs `f`, a call into code pyfiber cannot see into (a
/// [`Protocol`](crate::Protocol) object's `throw` or `close`), and chains
/// what it raises as CPython chains at a raise: to the innermost exception
/// being handled (then as now), replacing the context it had -- unless a
/// handler of its own, during `f`, set that context.
#[cold]
#[inline(never)]
pub(crate) fn raised_in(f: impl FnOnce() -> Option<PyResult<Value>>) -> Option<PyResult<Value>> {
    // A tick of its own: a context set during `f` is stamped at or after it.
    let start = CLOCK.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let result = f();
    if let Some(Err(e)) = &result {
        if e.obj.context_stamp.get() < start {
            if let Some(handled) = exc_info() {
                e.chain(&handled);
            }
        }
    }
    result
}

/// `gi_exc_state` pushed back as its generator resumes: its body's
/// handlers see their exceptions again, on top of the caller's.
#[cold]
#[inline(never)]
pub(crate) fn restore_handled(saved: Vec<Exception>) {
    let n = saved.len();
    HANDLING.with(|h| h.borrow_mut().extend(saved));
    DEPTH.with(|d| d.set(d.get() + n));
}

/// `sys.exc_info()[1]`: the exception whose handler is running, if any.
pub fn exc_info() -> Option<Exception> {
    let (serial, lo, hi) = HIDDEN.with(Cell::get);
    HANDLING.with(|h| {
        let h = h.borrow();
        let hidden = serial != 0 && serial == active_throw().0;
        if hidden && h.len() > lo && h.len() <= hi {
            // The innermost is hidden: the one under the hidden ones.
            return lo.checked_sub(1).and_then(|i| h.get(i)).cloned();
        }
        h.last().cloned()
    })
}

/// Runs `f` as the handler of `e`: `e` is on the handling stack meanwhile,
/// and comes off it on every way out (a panic unwinding the handler too).
fn handling<R>(e: &Exception, f: impl FnOnce() -> R) -> R {
    /// Takes `e` off the stack and gives it back the start of the handler
    /// it had before (the same exception may be handled again inside its
    /// own handler).
    struct Pop(Exception, u64);
    impl Drop for Pop {
        fn drop(&mut self) {
            HANDLING.with(|h| h.borrow_mut().pop());
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
            self.0.obj.handler_start.set(self.1);
        }
    }
    if let Some(outer) = exc_info() {
        e.chain_handled(&outer);
    }
    let start = CLOCK.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let before = e.obj.handler_start.replace(start);
    HANDLING.with(|h| h.borrow_mut().push(e.clone()));
    DEPTH.with(|d| d.set(d.get() + 1));
    let _pop = Pop(e.clone(), before);
    f()
}

impl<T> Except<T> for PyResult<T> {
    fn except(
        self,
        class: &ExceptionClass,
        handler: impl FnOnce(Exception) -> PyResult<T>,
    ) -> PyResult<T> {
        match self {
            // Chained before the handler's end, while its start is known.
            Err(e) if e.is_instance(class) => handling(&e, || {
                handler(e.clone()).inspect_err(|new| new.chain_handled(&e))
            }),
            other => other,
        }
    }

    fn finally(self, cleanup: impl FnOnce() -> PyResult<()>) -> PyResult<T> {
        let cleaned = match &self {
            Err(pending) => handling(pending, || {
                cleanup().inspect_err(|new| new.chain_handled(pending))
            }),
            Ok(_) => cleanup(),
        };
        match cleaned {
            Ok(()) => self,
            Err(new) => Err(new),
        }
    }
}

/// `''.join(traceback.format_exception(exc))`: the chain, oldest first,
/// with CPython's separators, each exception as its last traceback line.
/// pyfiber records no frames, so no `Traceback (most recent call last):`
/// block is printed (CPython prints none either for an exception that has
/// no `__traceback__`).
pub fn format_exception(exc: &Exception) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    format_chain(exc, &mut seen, &mut out);
    out
}

fn format_chain(exc: &Exception, seen: &mut Vec<Exception>, out: &mut String) {
    seen.push(exc.clone());
    let unseen = |e: &Exception, seen: &Vec<Exception>| !seen.iter().any(|s| s.is(e));
    if let Some(cause) = exc.cause().filter(|c| unseen(c, seen)) {
        format_chain(&cause, seen, out);
        out.push_str("\nThe above exception was the direct cause of the following exception:\n\n");
    } else if let Some(context) = exc
        .context()
        .filter(|c| !exc.suppress_context() && unseen(c, seen))
    {
        format_chain(&context, seen, out);
        out.push_str("\nDuring handling of the above exception, another exception occurred:\n\n");
    }
    out.push_str(&exc.line());
    out.push('\n');
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
        assert_eq!(Exception::GeneratorExit().line(), "GeneratorExit");
        let refused = Exception::from(io::Error::from_raw_os_error(111));
        assert_eq!(
            refused.line(),
            "ConnectionRefusedError: [Errno 111] Connection refused"
        );
        assert_eq!(
            refused.repr(),
            "ConnectionRefusedError(111, 'Connection refused')"
        );
        let in_progress = Exception::from(io::Error::from_raw_os_error(115));
        assert_eq!(in_progress.name(), "BlockingIOError");
    }

    #[test]
    fn would_block_texts_are_the_os_texts() {
        // The fast path's fixed texts against what strerror says here.
        for (errno, class) in [(115, "BlockingIOError"), (11, "BlockingIOError")] {
            let e = Exception::from(io::Error::from_raw_os_error(errno));
            let os = io::Error::from_raw_os_error(errno).to_string();
            let strerror = &os[..os.rfind(" (os error ").unwrap()];
            assert_eq!(e.line(), format!("{class}: [Errno {errno}] {strerror}"));
            assert_eq!(e.repr(), format!("{class}({errno}, '{strerror}')"));
        }
    }

    #[test]
    fn one_pointer() {
        assert_eq!(std::mem::size_of::<Exception>(), 8);
        assert_eq!(std::mem::size_of::<PyResult<Value>>(), 24);
    }

    #[test]
    fn declared_classes_are_interned() {
        let a = ExceptionClass::declare("Fancy", &ValueError);
        let b = ExceptionClass::declare("Fancy", &ValueError);
        let c = ExceptionClass::declare("Fancy", &TypeError);
        assert!(std::ptr::eq(a, b) && !std::ptr::eq(a, c));
        assert!(a.new(()).is_instance(&ValueError));
        assert!(std::ptr::eq(ExceptionClass::named("KeyError"), &KeyError));
    }
}
