//! `Generator`: Python's generator object on a stackful fiber.
//!
//! Why this exists: everything else in pyfiber (Future, Task, the ladder, the
//! crawler) stands on a faithful `yield`/`send`. A Python generator is a
//! function whose frame can be suspended at `yield` and resumed by `send`;
//! here the frame is a [`corosensei`] coroutine with its own stack, so the
//! body is an ordinary Rust closure that calls `co.yield_(v)` wherever Python
//! writes `yield v`.
//!
//! ```
//! use pyfiber::{Generator, Exception, Value};
//!
//! // def gen():
//! //     x = yield 1
//! //     return x * 2
//! let g = Generator::new(|co| {
//!     let x = co.yield_(1.into())?;
//!     Ok(Value::Int(x.as_int().unwrap() * 2))
//! });
//! assert_eq!(g.send(Value::None).unwrap(), Value::Int(1)); // next(g)
//! assert_eq!(g.send(21.into()), Err(Exception::StopIteration(Value::Int(42))));
//! ```
//!
//! The rules of PEP 342/380/479 live in three places: [`Generator::send`],
//! [`Generator::throw`] and [`Generator::close`] check the state before the
//! fiber is touched (just-started, running, closed); `Inner::resume` (and
//! its inlined twin for a plain send, `Inner::send_suspended`) switches into
//! the fiber and turns what comes back into Python's outcome;
//! [`Co::yield_from`] is PEP 380's expansion, line by line, and
//! `Generator::forward` its shortcut: a send to a generator suspended in
//! `yield_from` goes straight to the sub-generator.
//!
//! Speed shapes two things here. What crosses a fiber switch is one machine
//! word (`Wire`), not a `Value`; and the send and yield paths are inlined
//! into the caller with everything rare out of line. NOTES.md ("Why `send`
//! costs about 13 ns and not 3", and "send and yield from beside the
//! peers" for the rework that made it 1.9x a raw corosensei switch) has the
//! measurements.

use std::any::type_name;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};

use crate::stack_pool::FiberStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::exception::{Exception, GeneratorExit, PyResult, StopIteration};
use crate::value::{Object, Value};

/// `inspect.getgeneratorstate(g)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenState {
    /// `GEN_CREATED`: made, not yet started.
    Created,
    /// `GEN_RUNNING`: its body is executing now.
    Running,
    /// `GEN_SUSPENDED`: paused at a `yield`.
    Suspended,
    /// `GEN_CLOSED`: returned, raised, or closed.
    Closed,
}

impl GenState {
    /// The name `inspect.getgeneratorstate` returns.
    pub fn python_name(self) -> &'static str {
        match self {
            GenState::Created => "GEN_CREATED",
            GenState::Running => "GEN_RUNNING",
            GenState::Suspended => "GEN_SUSPENDED",
            GenState::Closed => "GEN_CLOSED",
        }
    }
}

impl fmt::Display for GenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.python_name())
    }
}

/// `generator.gi_frame`, as far as a Rust body has one: where the body
/// stands. `f_lineno` is the source line of the pending yield (`co.yield_`,
/// or the `co.yield_from...` call it is delegating in) while the generator
/// is suspended, and the line that made the generator before it starts
/// (Python: the `def` line). Captured with `#[track_caller]`: a constant
/// pointer stored at each yield, no lookup.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    at: &'static Location<'static>,
}

impl FrameInfo {
    /// `gi_frame.f_lineno`.
    pub fn f_lineno(&self) -> u32 {
        self.at.line()
    }

    /// `gi_frame.f_code.co_filename`: the Rust source file.
    pub fn filename(&self) -> &'static str {
        self.at.file()
    }
}

/// `examples/generator.rs:163`, the way the debugger helper prints it.
impl fmt::Display for FrameInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.at.file(), self.at.line())
    }
}

impl fmt::Debug for FrameInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<frame at {self}>")
    }
}

thread_local! {
    /// Where the body that just suspended was: `Co::yield_` writes it before
    /// the switch, and the sender copies it into the generator right after
    /// (one store on each side), since the body cannot reach its
    /// generator's fields without an upgrade of its weak handle.
    static YIELD_AT: Cell<Option<&'static Location<'static>>> = const { Cell::new(None) };
}

/// What `gi_yieldfrom` shows: the object a generator is delegating to.
#[derive(Clone)]
pub enum YieldFrom {
    /// `yield from sub_generator`.
    Generator(Generator),
    /// `yield from iterable` where the iterator is not a generator; the string
    /// is its Python type name (`list_iterator`, ...).
    Iterator(String),
    /// `yield from obj` for an object of the program's own with the
    /// iterator protocol ([`Protocol`]): the object itself.
    Object(Rc<dyn Protocol>),
}

impl fmt::Debug for YieldFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            YieldFrom::Generator(g) => write!(f, "{g:?}"),
            YieldFrom::Iterator(name) => write!(f, "<{name} object>"),
            YieldFrom::Object(o) => write!(f, "<{} object>", o.type_name()),
        }
    }
}

/// Python's iterator protocol as PEP 380 duck-types it: `__next__`, and
/// `send`, `throw` and `close`, each optional. A method the object does not
/// have returns `None` (the default), which is what `getattr` failing means
/// to `yield from`: a missing `throw` re-raises in the delegator, a missing
/// `close` is skipped, a non-`None` send without `send` is `AttributeError`.
/// `next` finishing with `Err(StopIteration(v))` makes `v` the result of the
/// `yield from` (an iterator may finish with a value).
pub trait Protocol {
    /// `type(obj).__name__`.
    fn type_name(&self) -> &str;
    /// `obj.__next__()`.
    fn next(&self) -> PyResult<Value>;
    /// `obj.send(value)`, if the object has `send`.
    fn send(&self, _value: Value) -> Option<PyResult<Value>> {
        None
    }
    /// `obj.throw(exc)`, if the object has `throw`.
    fn throw(&self, _exc: Exception) -> Option<PyResult<Value>> {
        None
    }
    /// `obj.close()`, if the object has `close`.
    fn close(&self) -> Option<PyResult<Value>> {
        None
    }
}

/// How the caller resumes the fiber: `send(value)` or `throw(exc)`.
///
/// `next(g)` is `Send(Value::None)`; `close()` is `Throw(GeneratorExit)`.
enum Resume {
    Send(Value),
    Throw(Exception),
    /// Only into a generator suspended in `yield_from(sub)`: a send was
    /// forwarded straight to `sub` (see [`Generator::forward`]) and `sub`
    /// finished with this.
    SubDone(PyResult<Value>),
}

/// What crosses a fiber switch, in either direction: one machine word.
///
/// Why not `Resume` and `Value` themselves: corosensei passes a message
/// that fits in a register in a register, and anything bigger by pointer to
/// the sender's stack, which the receiver reads right after the switch.
/// That read stalls (the sender's stores are still in flight, and a 24-byte
/// `Value` is stored and loaded in pieces of different sizes): a send round
/// trip measured about 3 ns with a word and 25-50 ns with a `Value`.
///
/// So the values a hot loop passes -- `None`, bools, ints that fit in 62
/// bits -- are packed into the word, tagged in its low two bits; anything
/// else waits in a per-thread mailbox that the receiver empties before it
/// runs any other code.
#[derive(Clone, Copy)]
struct Wire(u64);

/// Low two bits of a [`Wire`]: what the rest of the word means.
const TAG_INT: u64 = 0; // the word, shifted right by 2, is the int
const TAG_NONE: u64 = 1;
const TAG_BOOL: u64 = 2; // bit 2 is the bool
const TAG_MAILBOX: u64 = 3; // the value is in MAILBOX (or a Resume in PARCEL)
/// `TAG_MAILBOX` with bit 2 set: a `Resume` other than a send, in `PARCEL`.
const WIRE_PARCEL: u64 = TAG_MAILBOX | 4;
/// `TAG_MAILBOX` with bit 3 set: a body's (or a refused send's) exception,
/// in `RAISED` ([`Finished`]).
const WIRE_RAISED: u64 = TAG_MAILBOX | 8;

thread_local! {
    /// A value too big for a [`Wire`], between the two sides of one switch.
    /// One slot per thread is enough: whoever receives the wire takes the
    /// value before anything else can switch again.
    static MAILBOX: Cell<Value> = const { Cell::new(Value::None) };
    /// A `Resume` other than a send (a throw, a forwarded send's end), the
    /// same way.
    static PARCEL: Cell<Option<Resume>> = const { Cell::new(None) };
    /// The exception a [`Finished`] stands for, the same way.
    static RAISED: Cell<Option<Exception>> = const { Cell::new(None) };
}

impl Wire {
    // Both conversions look at the value in place and touch the rest of it
    // only on the cold path: moving a `Value` whole is a 24-byte copy whose
    // load would wait for the separate tag and payload stores just made.
    //
    // The value is held in a `ManuallyDrop` so that the three packed
    // variants, which own nothing, are not dropped: `Value`'s drop glue is
    // not inlined, and calling it for an int cost 12 instructions of the
    // 152 in a send round trip (callgrind, /tmp probe of 2,000,000 sends).
    #[inline(always)]
    fn from_value(v: Value) -> Wire {
        let v = std::mem::ManuallyDrop::new(v);
        match &*v {
            Value::None => Wire(TAG_NONE),
            Value::Bool(b) => Wire(TAG_BOOL | (u64::from(*b) << 2)),
            // Ints of 62 bits survive the shift both ways; others go by mail.
            Value::Int(i) if (i << 2) >> 2 == *i => Wire(((i << 2) as u64) | TAG_INT),
            _ => Wire::mail(std::mem::ManuallyDrop::into_inner(v)),
        }
    }

    #[cold]
    #[inline(never)]
    fn mail(big: Value) -> Wire {
        MAILBOX.with(|m| m.set(big));
        Wire(TAG_MAILBOX)
    }

    #[inline(always)]
    fn from_resume(r: Resume) -> Wire {
        match r {
            Resume::Send(v) => Wire::from_value(v),
            other => Wire::parcel(other),
        }
    }

    #[cold]
    #[inline(never)]
    fn parcel(r: Resume) -> Wire {
        PARCEL.with(|p| p.set(Some(r)));
        Wire(WIRE_PARCEL)
    }

    #[inline(always)]
    fn into_resume(self) -> Resume {
        if self.0 == WIRE_PARCEL {
            Wire::unparcel()
        } else {
            Resume::Send(self.into_value())
        }
    }

    #[cold]
    #[inline(never)]
    fn unparcel() -> Resume {
        PARCEL
            .with(Cell::take)
            .expect("a parcel wire comes with a parcel")
    }

    /// The two variants a hot loop passes, `None` and a small int, have a
    /// clear bit 1 in their tag (`TAG_INT` 0, `TAG_NONE` 1); everything else
    /// has it set.
    #[inline(always)]
    fn is_packed_int_or_none(self) -> bool {
        self.0 & 2 == 0
    }

    /// A `None` or a small int (the caller has checked
    /// [`Wire::is_packed_int_or_none`]), built from the word alone: no
    /// branch can write the value to memory, so it stays in registers.
    #[inline(always)]
    fn int_or_none(self) -> Value {
        if self.0 & 1 == TAG_INT {
            Value::Int((self.0 as i64) >> 2)
        } else {
            Value::None
        }
    }

    #[inline(always)]
    fn into_value(self) -> Value {
        // Only variants without a byte next to the tag on the hot path, so
        // the value is written as one tag store and one payload store.
        if self.is_packed_int_or_none() {
            self.int_or_none()
        } else {
            self.into_value_cold()
        }
    }

    #[cold]
    #[inline(never)]
    fn into_value_cold(self) -> Value {
        match self.0 & 3 {
            TAG_BOOL => Value::Bool(self.0 & 4 != 0),
            _ => MAILBOX.with(Cell::take),
        }
    }

    /// Drops a value nobody will receive (a refused send, a yield that
    /// `close` ignores), emptying the mailbox if it is there.
    fn discard(self) {
        if self.0 & 3 == TAG_MAILBOX {
            drop(self.into_value_cold());
        }
    }
}

/// A generator body: Python's function body with `yield` in it.
type Body = Box<dyn FnOnce(&Co<'_>) -> PyResult<Value>>;
/// The fiber that runs one body: it takes `Resume`s, yields `Value`s and
/// finishes with the body's result, all three as [`Wire`]s.
///
/// The result too: with `PyResult<Value>` (24 bytes) as the fiber's return
/// type, every `resume` returned its 24-byte `CoroutineResult` through
/// memory, and every hop of a `yield from` chain copied its `Outcome`
/// through memory again; with a wire both are two registers.
type Fiber = Coroutine<Wire, Wire, Finished, FiberStack>;

/// A body's result, `return v` or a raise, as one word: `Ok` is packed as a
/// yielded value is ([`Wire::from_value`], a big value by mail), `Err` waits
/// in `RAISED`. Whoever gets a `Finished` opens it ([`Finished::result`])
/// before anything else can switch.
#[derive(Clone, Copy)]
struct Finished(Wire);

impl Finished {
    #[inline(always)]
    fn new(r: PyResult<Value>) -> Finished {
        match r {
            Ok(v) => Finished(Wire::from_value(v)),
            Err(e) => Finished::raised(e),
        }
    }

    #[cold]
    #[inline(never)]
    fn raised(e: Exception) -> Finished {
        RAISED.with(|r| r.set(Some(e)));
        Finished(Wire(WIRE_RAISED))
    }

    fn is_raised(self) -> bool {
        self.0 .0 == WIRE_RAISED
    }

    #[inline(always)]
    fn result(self) -> PyResult<Value> {
        if self.is_raised() {
            Err(Finished::take_raised())
        } else {
            Ok(self.0.into_value())
        }
    }

    #[cold]
    #[inline(never)]
    fn take_raised() -> Exception {
        RAISED
            .with(Cell::take)
            .expect("a raised result comes with its exception")
    }
}

/// The frame of a generator, in the three shapes of its life.
enum Frame {
    /// Made but never sent to: the body waits, no stack is taken yet.
    NotStarted(Body),
    /// Started: the fiber holds the body's stack.
    Started(Fiber),
    /// Finished, closed, or never started and closed: no frame at all.
    Gone,
}

struct Inner {
    /// `__name__`: the Rust function the body was written in.
    name: Name,
    state: Cell<GenState>,
    /// `gi_yieldfrom`, set by the body while it delegates.
    yieldfrom: RefCell<Option<YieldFrom>>,
    /// `yieldfrom` holds a generator: sends can skip this fiber.
    delegating: Cell<bool>,
    /// That generator again, while `delegating`: what
    /// [`Generator::forward`] sends to. A `Cell` it takes the handle out of
    /// and puts back, where reading `yieldfrom` was a `RefCell` borrow and
    /// an enum match (8 instructions per hop of a chain, callgrind).
    sub: Cell<Option<Generator>>,
    /// Borrowed mutably only while the fiber runs; `state == Running` is what
    /// guarantees nobody else tries, so the borrow never fails.
    frame: RefCell<Frame>,
    /// `gi_exc_state`: the exceptions the body is handling while it is
    /// suspended (it yielded inside an `except` or `finally`), innermost
    /// last; `exc_saved` says whether there are any, so a send checks a
    /// flag rather than borrowing the list. See [`Inner::exc_state_in`].
    exc_state: RefCell<Vec<Exception>>,
    exc_saved: Cell<bool>,
    /// The depth of the thread's handled exceptions when the body was last
    /// resumed: those above it are the body's own (`chain_to_own_handled`).
    exc_mark: Cell<usize>,
    /// `gi_frame`'s line: where the generator was made, then the pending
    /// yield's call site after each suspension ([`FrameInfo`]).
    at: Cell<&'static Location<'static>>,
}

/// A Python generator object.
///
/// A cheap, shared handle (cloning it is `g2 = g` in Python): a generator's
/// body may hold its own handle, and every handle sees the same state. When
/// the last handle goes while the body is suspended, the generator is closed
/// first, as CPython's finalizer does, so `finally` cleanup in the body runs.
#[derive(Clone)]
pub struct Generator(Rc<Inner>);

/// The body's side of a generator: where `yield` and `yield from` are written.
///
/// Mirrors the `yield` keyword inside a Python generator function.
pub struct Co<'a> {
    yielder: &'a Yielder<Wire, Wire>,
    generator: Weak<Inner>,
    /// How many `GeneratorExit`s this body's yields have received: how
    /// [`Co::yield_from_fn`] tells that its sub-generator was closed.
    exits_received: Cell<u32>,
    /// The last throw a yield of this body received (`exception::
    /// active_throw` then): its serial, and the depth of the handled
    /// exceptions under this body's own while that throw runs.
    throw_seen: Cell<(u64, usize)>,
    /// How many of this body's handled exceptions belong to the frames that
    /// called the innermost [`Co::yield_from_fn`] sub-generator still
    /// running (CPython gives each its own frame and `gi_exc_state`).
    frame_base: Cell<usize>,
}

/// A forwarded send's end reached a body that is not in `yield_from`.
#[cold]
fn not_delegating() -> ! {
    unreachable!("a forwarded send can only end in yield_from")
}

/// The Python error for resuming a generator that is already executing.
fn already_executing() -> Exception {
    Exception::ValueError("generator already executing".into())
}

/// A generator's `__name__`, as it was given. For [`Generator::new`] that is
/// the body's type name, stored as is (free) and shortened only when asked
/// for: searching it at every creation was a tenth of the cost of making
/// and exhausting a generator.
#[derive(Clone)]
enum Name {
    TypeOf(&'static str),
    Given(String),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::TypeOf(full) => short_name(full),
            Name::Given(name) => name,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `__name__` from the type name of the body's closure: for a closure written
/// inside `fn gen()`, the type is `crate::gen::{{closure}}` and the name `gen`.
fn short_name(full: &'static str) -> &'static str {
    let mut path = full;
    while let Some(stripped) = path.strip_suffix("::{{closure}}") {
        path = stripped;
    }
    path.rsplit("::").next().unwrap_or(full)
}

impl Generator {
    /// Calls a generator function: `gen()` in Python makes a generator object
    /// whose body has not run yet. `body` is that function's body; it gets a
    /// [`Co`] to yield with, and its `Ok(r)` becomes `StopIteration(r)`.
    #[track_caller]
    pub fn new<F>(body: F) -> Generator
    where
        F: FnOnce(&Co<'_>) -> PyResult<Value> + 'static,
    {
        Generator::with_name(Name::TypeOf(type_name::<F>()), Location::caller(), body)
    }

    /// Like [`Generator::new`], with an explicit `__name__` (Python: the
    /// `def` line's name).
    #[track_caller]
    pub fn named<F>(name: impl Into<String>, body: F) -> Generator
    where
        F: FnOnce(&Co<'_>) -> PyResult<Value> + 'static,
    {
        Generator::with_name(Name::Given(name.into()), Location::caller(), body)
    }

    fn with_name<F>(name: Name, at: &'static Location<'static>, body: F) -> Generator
    where
        F: FnOnce(&Co<'_>) -> PyResult<Value> + 'static,
    {
        let body: Body = Box::new(body);
        // `try_with`: a generator made while the thread's locals are being
        // destroyed gets a new allocation.
        match SPARES.try_with(|s| s.borrow_mut().pop()).ok().flatten() {
            Some(spare) => Generator::reuse(spare, name, at, body),
            None => Generator(Rc::new(Inner {
                name,
                state: Cell::new(GenState::Created),
                yieldfrom: RefCell::new(None),
                delegating: Cell::new(false),
                sub: Cell::new(None),
                frame: RefCell::new(Frame::NotStarted(body)),
                exc_state: RefCell::new(Vec::new()),
                exc_saved: Cell::new(false),
                exc_mark: Cell::new(0),
                at: Cell::new(at),
            })),
        }
    }

    /// A new generator in the allocation of a finished one ([`SPARES`]):
    /// only the fields a generator's life changes are set again, since
    /// [`Inner::make_spare`] took only one left as a new one starts.
    fn reuse(
        mut spare: Rc<Inner>,
        name: Name,
        at: &'static Location<'static>,
        body: Body,
    ) -> Generator {
        let inner = Rc::get_mut(&mut spare).expect("a spare has no other handle");
        // `forget`: a spare's name and frame own nothing (`make_spare`
        // left a `TypeOf` and a `Gone`); assigning called their drop glue
        // (40 instructions, callgrind).
        std::mem::forget(std::mem::replace(&mut inner.name, name));
        std::mem::forget(std::mem::replace(
            inner.frame.get_mut(),
            Frame::NotStarted(body),
        ));
        inner.state.set(GenState::Created);
        inner.at.set(at);
        Generator(spare)
    }

    /// `generator.send(value)`: resumes the body, making the pending
    /// `co.yield_()` return `value`, and runs it to the next yield.
    ///
    /// `Ok(v)` is the value yielded. `Err(StopIteration(r))` means the body
    /// returned `r`; any other `Err` is what the body raised. Python's rules:
    /// a non-`None` value into a just-started generator is `TypeError` (and
    /// the generator stays usable); a running generator is `ValueError`; a
    /// closed one raises `StopIteration` at once.
    ///
    /// Not generic, so that `break pyfiber::generator::Generator::send` works
    /// as typed in a debugger (a generic function is known to gdb and lldb
    /// only by its instances' names, `send<i64>`, ...): callers convert with
    /// `.into()` (`g.send(5.into())`, `Value::from(...)`). Out of line in a
    /// debug build so the breakpoint has one place to sit and `finish` has a
    /// frame to leave; inlined into the caller in a release build, as before
    /// (NOTES.md, "Stepping through yield/send", says what that costs the
    /// debugger).
    #[cfg_attr(debug_assertions, inline(never))]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn send(&self, value: Value) -> PyResult<Value> {
        self.send_wire(Wire::from_value(value)).into_send_result()
    }

    /// `send` on the value's wire form, which it keeps until the public
    /// edge: a yielded value forwarded up a `yield from` chain is not
    /// unpacked and repacked at every hop.
    #[inline(always)]
    fn send_wire(&self, w: Wire) -> Outcome {
        // Suspended is the only state in which a send reaches a body; an if
        // rather than a match keeps that path free of a jump table.
        if self.0.state.get() == GenState::Suspended {
            if self.0.delegating.get() {
                Generator::forward(&self.0, w)
            } else {
                self.0.send_suspended(w)
            }
        } else {
            self.send_wire_other(w)
        }
    }

    /// `send` to a generator that is not suspended.
    #[cold]
    #[inline(never)]
    fn send_wire_other(&self, w: Wire) -> Outcome {
        match self.0.state.get() {
            GenState::Running => refuse(w, already_executing()),
            GenState::Closed => refuse(w, Exception::StopIteration(Value::None)),
            GenState::Created if w.0 != TAG_NONE => refuse(
                w,
                Exception::TypeError(
                    "can't send non-None value to a just-started generator".into(),
                ),
            ),
            // `w` is None here: the first send starts the body.
            GenState::Created => self.0.first_send(&self.0),
            GenState::Suspended => self.resume(Resume::Send(w.into_value())),
        }
    }

    /// [`Generator::send_wire`] from a delegator's [`Generator::forward`]:
    /// the next hop down the chain, or the switch into the generator that
    /// takes the value, out of line. Inlined into `forward`, the switch made
    /// every hop's frame as big as a send's (six saved registers and 200
    /// bytes of stack).
    #[inline(always)]
    fn send_wire_below(&self, w: Wire) -> Outcome {
        let inner: &Inner = &self.0;
        if inner.state.get() == GenState::Suspended && inner.delegating.get() {
            Generator::forward(inner, w)
        } else {
            self.send_wire_outlined(w)
        }
    }

    #[inline(never)]
    fn send_wire_outlined(&self, w: Wire) -> Outcome {
        self.send_wire(w)
    }

    /// `send` to a generator suspended in `yield from sub`: PEP 380 passes
    /// the value on to `sub`, so do that from here, instead of switching
    /// into this generator's fiber only for it to switch into `sub`'s. This
    /// fiber wakes only when `sub` finishes (its `yield from` then returns
    /// or raises). Meanwhile this generator is running, as CPython's
    /// delegator is. If `sub` panics, [`UnwindOnPanic`] unwinds this body as
    /// the panic passes, as if it had come through this fiber.
    ///
    /// It takes the generator's `Inner`, not the handle: a handle is a
    /// pointer to the `Inner`, which the hop above keeps on its stack, so
    /// reading it back at the start of each hop put a store-to-load round
    /// trip on the chain's critical path, hop after hop. Same instructions
    /// (442 per send through 10 generators, callgrind), shorter chain: per
    /// hop 5.09, 6.13, 5.59 ns before and 4.66, 5.17, 3.32 after (bench,
    /// three alternating runs on the Intel Xeon machine of NOTES). The hop's
    /// functions stay associated functions of `Generator` rather than
    /// methods of `Inner`: the debugger knows this frame by that name
    /// (`SENDERS` and the frame roles in `tools/gdb/pyfiber.py`).
    #[inline(never)]
    fn forward(inner: &Inner, w: Wire) -> Outcome {
        // The delegator is running, so what it is handling is on the stack
        // while its sub-generator runs, as in CPython. Only a delegator
        // that yielded inside a handler has any; the others skip the depth
        // checks (the sub-generator takes its own handled exceptions off
        // with it). That path, the switch into the generator at the end of
        // the chain (`send_wire_below`) and a finished sub-generator
        // (`sub_done`) are out of line, so a hop's frame saves one register
        // where it saved six: 42 -> 29 instructions per hop (callgrind, a
        // chain 10 deep).
        if inner.exc_saved.get() {
            return Generator::forward_handling(inner, w);
        }
        match Generator::forward_down(inner, w) {
            Outcome::Yielded(y) => Outcome::Yielded(y),
            done => Generator::sub_done(inner, done),
        }
    }

    /// [`Generator::forward`] for a delegator that yielded inside a handler.
    #[cold]
    #[inline(never)]
    fn forward_handling(inner: &Inner, w: Wire) -> Outcome {
        let mark = inner.exc_state_in();
        let step = Generator::forward_down(inner, w);
        inner.exc_state_out(mark);
        match step {
            Outcome::Yielded(y) => Outcome::Yielded(y),
            done => Generator::sub_done(inner, done),
        }
    }

    /// One hop of [`Generator::forward`]: this delegator runs while its
    /// sub-generator takes the send.
    #[inline(always)]
    fn forward_down(inner: &Inner, w: Wire) -> Outcome {
        inner.state.set(GenState::Running);
        let guard = UnwindOnPanic(inner);
        // Taken out and put back, not cloned: nothing else can reach
        // `sub` while this generator is running (a send to it is refused,
        // and only its own fiber, which is not running, clears it).
        let sub = inner
            .sub
            .take()
            .expect("`delegating` is set only while yielding from a generator");
        let step = sub.send_wire_below(w);
        // The slot is empty (taken above): no old value to drop.
        std::mem::forget(inner.sub.replace(Some(sub)));
        std::mem::forget(guard);
        inner.state.set(GenState::Suspended);
        step
    }

    /// The sub-generator of a [`Generator::forward`] finished: its `yield
    /// from` returns or raises, in this generator's body. Out of line, so
    /// that `forward`'s frame is only what a hop needs. The delegator is
    /// started (it is suspended in its `yield from`), so this is the switch
    /// of [`Inner::send_suspended`], with the result in the mailbox.
    #[cold]
    #[inline(never)]
    fn sub_done(inner: &Inner, done: Outcome) -> Outcome {
        inner.send_suspended(Wire::from_resume(Resume::SubDone(done.into_send_result())))
    }

    /// `next(generator)`, which is `send(None)`.
    #[allow(clippy::should_implement_trait)] // Python's name; `Iterator` is implemented too.
    #[inline]
    pub fn next(&self) -> PyResult<Value> {
        self.send(Value::None)
    }

    /// `generator.throw(exc)`: raises `exc` at the pending `yield`, where
    /// `co.yield_()` returns `Err(exc)`. Into a just-started or closed
    /// generator the exception is raised straight back and the generator is
    /// closed, without running the body.
    ///
    /// PEP 479 applies to a just-started generator too: a `StopIteration`
    /// thrown into it comes back as `RuntimeError("generator raised
    /// StopIteration")`, as in CPython 3.11 (3.12 and 3.13 let it escape
    /// unchanged, CPython issue gh-152685; see NOTES.md).
    // Out of line even in a release build: a breakpoint on the plain name
    // always has a function to sit in, and this is not a hot path.
    #[inline(never)]
    pub fn throw(&self, exc: Exception) -> PyResult<Value> {
        match self.0.state.get() {
            GenState::Running => Err(already_executing()),
            GenState::Created => {
                self.finish_unstarted();
                Err(pep479(raised_back(exc)))
            }
            GenState::Closed => Err(raised_back(exc)),
            GenState::Suspended => {
                let _throwing = crate::exception::throwing();
                self.resume(Resume::Throw(exc)).into_send_result()
            }
        }
    }

    /// `generator.close()`: throws `GeneratorExit` at the pending `yield`.
    ///
    /// Returns `Ok(r)` when the body returns `r` on `GeneratorExit` (Python
    /// 3.13; older versions return `None`), `Ok(None)` when it lets
    /// `GeneratorExit` propagate, `RuntimeError("generator ignored
    /// GeneratorExit")` when it yields again, and any other exception it
    /// raises.
    // Out of line even in a release build: a breakpoint on the plain name
    // always has a function to sit in, and this is not a hot path.
    #[inline(never)]
    pub fn close(&self) -> PyResult<Value> {
        match self.0.state.get() {
            GenState::Running => Err(already_executing()),
            GenState::Created | GenState::Closed => {
                self.finish_unstarted();
                Ok(Value::None)
            }
            GenState::Suspended => {
                let exit = raised_by_close(Exception::GeneratorExit());
                let throwing = crate::exception::throwing();
                let outcome = self.resume(Resume::Throw(exit.clone()));
                drop(throwing);
                match outcome {
                    Outcome::Yielded(w) => {
                        w.discard();
                        Err(Exception::RuntimeError(
                            "generator ignored GeneratorExit".into(),
                        ))
                    }
                    Outcome::Returned(r) => match r.result() {
                        Ok(v) => Ok(v),
                        Err(e) if e.is_instance(&GeneratorExit) => Ok(Value::None),
                        Err(e) => Err(e),
                    },
                }
            }
        }
    }

    /// `inspect.getgeneratorstate(generator)`.
    pub fn state(&self) -> GenState {
        self.0.state.get()
    }

    /// `generator.gi_running`.
    pub fn gi_running(&self) -> bool {
        self.state() == GenState::Running
    }

    /// `generator.gi_suspended` (Python 3.11+).
    pub fn gi_suspended(&self) -> bool {
        self.state() == GenState::Suspended
    }

    /// `generator.gi_frame`: `None` once the generator is closed (returned,
    /// raised or closed), as in CPython. Otherwise where the body stands:
    /// the line that made the generator before its first send, the line of
    /// the pending yield while it is suspended, and while it runs the yield
    /// it was last resumed from (CPython would give the line running now,
    /// which only the debugger can see here).
    pub fn gi_frame(&self) -> Option<FrameInfo> {
        if self.state() == GenState::Closed {
            return None;
        }
        Some(FrameInfo {
            at: self.0.at.get(),
        })
    }

    /// `generator.gi_yieldfrom`: the sub-generator or iterator this generator
    /// is suspended in with `co.yield_from`, if any. As in CPython it is
    /// `None` while the generator runs, even in the middle of a `yield from`.
    pub fn gi_yieldfrom(&self) -> Option<YieldFrom> {
        if self.state() != GenState::Suspended {
            return None;
        }
        self.0.yieldfrom.borrow().clone()
    }

    /// What a `co.yield_from` in progress is delegating to, whether this
    /// generator is suspended or running (a debugger's view: `gi_yieldfrom`
    /// hides it while running, as CPython's does).
    pub fn delegating_to(&self) -> Option<YieldFrom> {
        self.0.yieldfrom.borrow().clone()
    }

    /// `generator.__name__`.
    pub fn name(&self) -> &str {
        self.0.name.as_str()
    }

    /// `g1 is g2`.
    pub fn is(&self, other: &Generator) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Drops the body of a generator that never started; it becomes closed.
    fn finish_unstarted(&self) {
        let mut frame = self.0.frame.borrow_mut();
        if matches!(*frame, Frame::NotStarted(_)) {
            *frame = Frame::Gone;
        }
        self.0.state.set(GenState::Closed);
    }

    /// Switches into the fiber with `input` and comes back with what the body
    /// did: this is where every `send`, `next`, `throw` and `close` resumes
    /// the body. The caller has checked the state is `Created` (with a `Send`)
    /// or `Suspended`.
    #[inline(always)]
    fn resume(&self, input: Resume) -> Outcome {
        self.0.resume(input, &self.0)
    }
}

/// What came back from the fiber.
enum Outcome {
    /// The body reached a `yield`; the value is still in its wire form.
    Yielded(Wire),
    /// The body finished: returned `Ok`, or raised. PEP 479 already applied.
    /// (Also a send refused before the body was reached: `Err`.)
    Returned(Finished),
}

impl Outcome {
    /// `send`'s view: a return is `StopIteration(value)`.
    //
    // Everything but a yielded `None` or small int leaves through one cold
    // call, so the hot result is built from the wire in registers: when a
    // cold branch shared the result's slot with it, the compiler kept the
    // value in memory and copied it twice on every send.
    #[inline(always)]
    fn into_send_result(self) -> PyResult<Value> {
        match self {
            Outcome::Yielded(w) if w.is_packed_int_or_none() => Ok(w.int_or_none()),
            other => other.into_send_result_cold(),
        }
    }

    #[cold]
    #[inline(never)]
    fn into_send_result_cold(self) -> PyResult<Value> {
        match self {
            Outcome::Yielded(w) => Ok(w.into_value()),
            Outcome::Returned(r) => match r.result() {
                Ok(v) => Err(Exception::StopIteration(v)),
                Err(e) => Err(e),
            },
        }
    }
}

/// A send refused before the body runs (running, closed, just started):
/// the value sent is dropped, out of the mailbox if it went there.
#[cold]
#[inline(never)]
fn refuse(w: Wire, exc: Exception) -> Outcome {
    w.discard();
    Outcome::Returned(Finished::raised(exc))
}

/// A body's result as its caller sees it: PEP 479 applied to a raise.
fn applying_pep479(r: Finished) -> Finished {
    if r.is_raised() {
        Finished::raised(pep479(Finished::take_raised()))
    } else {
        r
    }
}

/// PEP 479's `RuntimeError`, raised from the `StopIteration` that escaped:
/// CPython sets it as both `__cause__` and `__context__`.
#[cold]
fn pep479_error(stop: Exception) -> Exception {
    let e = Exception::RuntimeError("generator raised StopIteration".into());
    e.chain(&stop); // raised while `stop` is handled: chained now, not by hand
    e.with_cause(stop)
}

/// PEP 479: a `StopIteration` escaping a body would end the caller's loop
/// silently, so it becomes a `RuntimeError`.
fn pep479(exc: Exception) -> Exception {
    if exc.is_instance(&StopIteration) {
        pep479_error(exc)
    } else {
        exc
    }
}

/// Armed while a fiber runs; dropped only if the body panics (the normal
/// path forgets it). Then the generator is closed, as after an uncaught
/// exception, and its stack goes back to the pool at once rather than when
/// the last handle goes: the panic propagates to the caller of `send`.
struct ClosedOnPanic<'a>(&'a Inner);

impl Drop for ClosedOnPanic<'_> {
    fn drop(&mut self) {
        self.0.state.set(GenState::Closed);
        // The frame's borrow was declared after this guard, so it has been
        // released by the time the unwinding reaches here.
        if let Ok(mut frame) = self.0.frame.try_borrow_mut() {
            if matches!(&*frame, Frame::Started(fiber) if fiber.done()) {
                if let Frame::Started(fiber) = std::mem::replace(&mut *frame, Frame::Gone) {
                    crate::stack_pool::give_back(fiber.into_stack());
                }
            }
        }
    }
}

/// Armed while [`Generator::forward`] runs a send in a delegator's
/// sub-generator; dropped only if that panics (the normal path forgets it).
/// The panic did not pass through the delegator's fiber, so unwind that
/// fiber here, as it goes by: the delegator's cleanup runs right after its
/// sub-generator's, and the delegator is closed.
struct UnwindOnPanic<'a>(&'a Inner);

impl Drop for UnwindOnPanic<'_> {
    fn drop(&mut self) {
        self.0.state.set(GenState::Closed);
        if let Ok(mut frame) = self.0.frame.try_borrow_mut() {
            if let Frame::Started(mut fiber) = std::mem::replace(&mut *frame, Frame::Gone) {
                self.0.unwind(&mut fiber);
                crate::stack_pool::give_back(fiber.into_stack());
            }
        }
    }
}

impl Inner {
    /// The hot path of every send: borrow the frame, switch, look at what
    /// came back. Starting and finishing are out of line so that this stays
    /// small enough to inline into the caller, where the values it passes
    /// live in registers instead of being copied through memory.
    #[inline(always)]
    fn resume(&self, input: Resume, this: &Rc<Inner>) -> Outcome {
        let guard = ClosedOnPanic(self);
        let mut frame = self.frame.borrow_mut();
        if let Frame::NotStarted(_) = &*frame {
            if let Err(exc) = self.start(&mut frame, this) {
                std::mem::forget(guard);
                return Outcome::Returned(Finished::raised(exc));
            }
        }
        let outcome = self.switch(&mut frame, Wire::from_resume(input));
        std::mem::forget(guard);
        outcome
    }

    /// `send` to a suspended generator: [`Inner::resume`] without the
    /// `Resume` and `Outcome` in between, which would each be one more copy
    /// of the value in memory on the path every send takes.
    #[inline(always)]
    fn send_suspended(&self, w: Wire) -> Outcome {
        let guard = ClosedOnPanic(self);
        let mut frame = self.frame.borrow_mut();
        let outcome = self.switch(&mut frame, w);
        std::mem::forget(guard);
        outcome
    }

    /// The switch itself, the one place where a caller's `send`, `throw`,
    /// `close` or first `next` enters the body's fiber (the finalizer's
    /// close aside, [`Inner::resume_for_drop`]): the generator runs with its
    /// handled exceptions back on the thread's stack, and what came back is
    /// a yield (suspended at a new line) or the end (closed, stack
    /// recycled). The caller has borrowed the frame and armed
    /// [`ClosedOnPanic`]; the frame holds a started fiber.
    #[inline(always)]
    fn switch(&self, frame: &mut Frame, w: Wire) -> Outcome {
        let Frame::Started(fiber) = frame else {
            unreachable!("only a started generator is switched into")
        };
        self.state.set(GenState::Running);
        let mark = self.exc_state_in();
        let result = fiber.resume(w);
        self.exc_state_out(mark);
        match result {
            CoroutineResult::Yield(w) => {
                self.state.set(GenState::Suspended);
                self.record_yield_site();
                Outcome::Yielded(w)
            }
            CoroutineResult::Return(r) => self.finish(frame, r),
        }
    }

    /// Before one switch into this generator's body: CPython's
    /// `gi_exc_state`. The exceptions the body was handling when it last
    /// yielded go back on the thread's stack of handled exceptions, and the
    /// depth under them is returned, for [`Inner::exc_state_out`] after the
    /// switch: whatever the body is still handling when it yields again
    /// comes off with it. So neither side's `sys.exc_info()` (nor the
    /// chaining that reads it) sees the other's handlers. On the hot path
    /// that is a load and a store here, a load and a compare there, and a
    /// flag test; both fix-ups are out of line.
    #[inline(always)]
    fn exc_state_in(&self) -> usize {
        let mark = crate::exception::handled_depth();
        self.exc_mark.set(mark);
        if self.exc_saved.get() {
            self.restore_exc_state();
        }
        mark
    }

    /// After the switch: see [`Inner::exc_state_in`].
    #[inline(always)]
    fn exc_state_out(&self, mark: usize) {
        if crate::exception::handled_depth() != mark {
            self.save_exc_state(mark);
        }
    }

    #[cold]
    #[inline(never)]
    fn restore_exc_state(&self) {
        self.exc_saved.set(false);
        crate::exception::restore_handled(std::mem::take(&mut *self.exc_state.borrow_mut()));
    }

    /// The body yielded inside a handler: keep its handled exceptions.
    #[cold]
    #[inline(never)]
    fn save_exc_state(&self, mark: usize) {
        let mine = crate::exception::take_handled_above(mark);
        self.exc_saved.set(!mine.is_empty());
        *self.exc_state.borrow_mut() = mine;
    }

    /// The body suspended: `gi_frame` is now where it did ([`YIELD_AT`]).
    #[inline(always)]
    fn record_yield_site(&self) {
        if let Some(at) = YIELD_AT.with(Cell::get) {
            self.at.set(at);
        }
    }

    /// The first resume: the body gets a stack and a fiber. (Out of line
    /// for [`Inner::resume`]; [`Inner::first_send`], the path every start
    /// takes, has it inlined.)
    #[cold]
    #[inline(never)]
    fn start(&self, frame: &mut Frame, this: &Rc<Inner>) -> PyResult<()> {
        self.start_inline(frame, this)
    }

    #[inline(always)]
    fn start_inline(&self, frame: &mut Frame, this: &Rc<Inner>) -> PyResult<()> {
        let Frame::NotStarted(body) = std::mem::replace(frame, Frame::Gone) else {
            unreachable!("start() is only called on a created generator")
        };
        match crate::stack_pool::take() {
            Ok(stack) => {
                // `forget`: what is replaced is the `Gone` put there above,
                // which owns nothing; a plain assignment called `Frame`'s
                // drop glue for it (28 instructions, callgrind).
                let fiber = start_fiber(stack, body, Rc::downgrade(this));
                std::mem::forget(std::mem::replace(frame, Frame::Started(fiber)));
                Ok(())
            }
            Err(exc) => {
                self.state.set(GenState::Closed);
                Err(exc)
            }
        }
    }

    /// `send(None)` to a generator that was just made: [`Inner::resume`]
    /// with the start in line and the `None` passed as its wire, with no
    /// `Resume` made and taken apart in between. With the two `forget`s of
    /// `start_inline` and `Generator::reuse`, this took creating and
    /// exhausting a generator from 735 to 672 instructions (callgrind).
    ///
    /// In line in its two callers (`send_wire_other` and the iterator's
    /// `next`), where it was a call of its own: every frame that is live
    /// across a switch costs a mispredicted return afterwards (the CPU's
    /// return predictor filled up on the other stack), so what counts
    /// here is how many frames lie between the caller and the switch,
    /// not instructions. One frame fewer on this path, and a `for` loop's
    /// first `next` no longer going through `send_wire_other` at all:
    /// creating and exhausting a generator 102 -> 82 ns (a probe looping
    /// `for v in Generator::new(one_yield)`, 10 million, five runs each,
    /// AMD EPYC), and 684 -> 646 instructions (callgrind).
    #[inline(always)]
    fn first_send(&self, this: &Rc<Inner>) -> Outcome {
        let guard = ClosedOnPanic(self);
        let mut frame = self.frame.borrow_mut();
        if let Err(exc) = self.start_inline(&mut frame, this) {
            std::mem::forget(guard);
            return Outcome::Returned(Finished::raised(exc));
        }
        let outcome = self.switch(&mut frame, Wire(TAG_NONE));
        std::mem::forget(guard);
        outcome
    }

    /// The body returned or raised: the generator is closed and its stack
    /// goes back to the pool.
    #[cold]
    #[inline(never)]
    fn finish(&self, frame: &mut Frame, r: Finished) -> Outcome {
        self.state.set(GenState::Closed);
        if let Frame::Started(fiber) = std::mem::replace(frame, Frame::Gone) {
            crate::stack_pool::give_back(fiber.into_stack());
        }
        Outcome::Returned(applying_pep479(r))
    }
}

/// Starts a fiber for `body` on `stack`. The first resume is always a `Send`
/// of `None` (`send` and `throw` see to it), so its input is not inspected.
fn start_fiber(stack: FiberStack, body: Body, generator: Weak<Inner>) -> Fiber {
    Coroutine::with_stack(stack, move |yielder: &Yielder<Wire, Wire>, _first: Wire| {
        let co = Co {
            yielder,
            generator,
            exits_received: Cell::new(0),
            throw_seen: Cell::new((0, 0)),
            frame_base: Cell::new(0),
        };
        // gdb: started (a body's first line is the next one it runs)
        Finished::new(body(&co))
    })
}

thread_local! {
    /// How many fibers `Inner::drop` is unwinding on this thread, not counting
    /// unwinds done because of a real panic.
    static CLEARING: Cell<usize> = const { Cell::new(0) };
    /// Suspended generators whose last handle went while a fiber was being
    /// cleared; they are closed as soon as that unwind is over.
    static ORPHANS: RefCell<Vec<Generator>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// The allocations of generators that finished and were dropped, for
    /// the next [`Generator::new`] to reuse: CPython's allocator recycles a
    /// generator's memory about as cheaply, where `malloc` and `free` of an
    /// `Inner` were 150 of the 870 instructions of a create and exhaust
    /// (callgrind). At most [`SPARES_MAX`] are kept.
    static SPARES: RefCell<Vec<Rc<Inner>>> = const { RefCell::new(Vec::new()) };
}

/// How many finished generators' allocations a thread keeps (about 200
/// bytes each).
const SPARES_MAX: usize = 64;

impl Drop for Generator {
    /// The last handle of a finished generator: keep its allocation.
    #[inline]
    fn drop(&mut self) {
        if self.0.state.get() == GenState::Closed {
            if let Some(inner) = Rc::get_mut(&mut self.0) {
                if inner.make_spare() {
                    keep_spare(&self.0);
                }
            }
        }
    }
}

/// Keeps the allocation of a generator whose last handle is going in
/// [`SPARES`]: the clone kept there is what survives the handle's drop.
#[inline(never)]
fn keep_spare(inner: &Rc<Inner>) {
    // `try_with`: at thread exit the spares may be gone already.
    let _ = SPARES.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARES_MAX {
            s.push(Rc::clone(inner));
        }
    });
}

impl Inner {
    /// Whether a closed generator, which nothing else can reach (no other
    /// handle, no weak one), holds nothing but its name, so that a new
    /// generator need only set its name, state, frame and line
    /// ([`Generator::reuse`]). A closed generator's `gi_yieldfrom` is
    /// already cleared (the `yield from` that set it has ended) and its
    /// frame is `Gone` unless a panic left it; a given name is dropped now.
    #[inline(always)]
    fn make_spare(&mut self) -> bool {
        if self.exc_saved.get()
            || self.delegating.get()
            || !matches!(self.frame.get_mut(), Frame::Gone)
            || self.yieldfrom.get_mut().is_some()
        {
            return false;
        }
        if let Name::Given(_) = self.name {
            self.name = Name::TypeOf("");
        }
        true
    }
}

impl Drop for Inner {
    /// CPython's generator finalizer: a suspended generator is closed before
    /// it goes, and an exception from that close is reported, not raised.
    fn drop(&mut self) {
        // `gi_yieldfrom` is a second handle to the sub-generator, which the
        // body cannot clear once the last handle to us is gone. CPython holds
        // the sub-generator only on the frame's stack, so it is finalized the
        // moment its `yield from` ends; drop ours now to do the same.
        self.yieldfrom.get_mut().take();
        self.sub.get_mut().take();
        let suspended = self.state.get() == GenState::Suspended;
        if suspended && std::thread::panicking() && CLEARING.with(Cell::get) > 0 {
            // We are a local of a generator that ignored GeneratorExit and
            // whose frame is being cleared below. CPython closes us right then;
            // no code can run in the middle of an unwind, so hand our fiber
            // to a new handle that is closed as soon as the unwind is over.
            let orphan = Generator(Rc::new(Inner {
                name: self.name.clone(),
                state: Cell::new(GenState::Suspended),
                yieldfrom: RefCell::new(None),
                delegating: Cell::new(false),
                sub: Cell::new(None),
                frame: RefCell::new(std::mem::replace(self.frame.get_mut(), Frame::Gone)),
                exc_state: RefCell::new(std::mem::take(self.exc_state.get_mut())),
                exc_saved: Cell::new(self.exc_saved.get()),
                exc_mark: Cell::new(0),
                at: Cell::new(self.at.get()),
            }));
            ORPHANS.with(|o| o.borrow_mut().push(orphan));
            return;
        }
        if suspended && !std::thread::panicking() {
            let outcome = match self.resume_for_drop() {
                Outcome::Yielded(w) => {
                    w.discard();
                    Err(Exception::RuntimeError(
                        "generator ignored GeneratorExit".into(),
                    ))
                }
                Outcome::Returned(r) => match r.result() {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_instance(&GeneratorExit) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = outcome {
                eprintln!(
                    "Exception ignored in: <generator object {}>\n{}",
                    self.name,
                    e.line()
                );
            }
        }
        // A body that ignored GeneratorExit (or a drop during a panic) still
        // holds its stack: unwind it so Rust destructors run, then recycle it.
        if let Frame::Started(mut fiber) = std::mem::replace(self.frame.get_mut(), Frame::Gone) {
            if std::thread::panicking() {
                self.unwind(&mut fiber);
                crate::stack_pool::give_back(fiber.into_stack());
                return;
            }
            // CPython clears such a frame: its locals go, and a suspended
            // sub-generator among them is closed (its `finally` runs). Here
            // the sub-generators go during the unwind, become orphans, and
            // are closed in the order they went, once the unwind is done.
            let first = ORPHANS.with(|o| o.borrow().len());
            CLEARING.with(|c| c.set(c.get() + 1));
            self.unwind(&mut fiber);
            CLEARING.with(|c| c.set(c.get() - 1));
            crate::stack_pool::give_back(fiber.into_stack());
            let orphans: Vec<Generator> = ORPHANS.with(|o| o.borrow_mut().drain(first..).collect());
            for orphan in orphans {
                drop(orphan);
            }
        }
    }
}

impl Inner {
    /// Unwinds a fiber whose body will not be resumed again (it ignored
    /// `GeneratorExit`, or a panic passes). The handlers it is suspended in
    /// end during the unwind, and each handler's guard pops the thread's
    /// innermost handled exception: so this body's `gi_exc_state` goes back
    /// on the stack first, or they would pop the caller's.
    #[cold]
    #[inline(never)]
    fn unwind(&self, fiber: &mut Fiber) {
        let mark = self.exc_state_in();
        fiber.force_unwind();
        // Every handler popped its own: nothing of the body's is left.
        drop(crate::exception::take_handled_above(mark));
    }

    /// `close()` from the finalizer, where no `Rc` is left to start a fiber
    /// with (a started fiber is all a suspended generator needs).
    fn resume_for_drop(&self) -> Outcome {
        let guard = ClosedOnPanic(self);
        let mut frame = self.frame.borrow_mut();
        let Frame::Started(fiber) = &mut *frame else {
            std::mem::forget(guard);
            return Outcome::Returned(Finished(Wire(TAG_NONE)));
        };
        self.state.set(GenState::Running);
        let throwing = crate::exception::throwing();
        let mark = self.exc_state_in();
        let result = fiber.resume(Wire::from_resume(Resume::Throw(Exception::GeneratorExit())));
        self.exc_state_out(mark);
        drop(throwing);
        std::mem::forget(guard);
        self.state.set(GenState::Closed);
        match result {
            CoroutineResult::Yield(w) => Outcome::Yielded(w),
            CoroutineResult::Return(r) => {
                if let Frame::Started(fiber) = std::mem::replace(&mut *frame, Frame::Gone) {
                    crate::stack_pool::give_back(fiber.into_stack());
                }
                Outcome::Returned(applying_pep479(r))
            }
        }
    }
}

/// `for v in generator`: each `Ok` is a yielded value; a raised exception is
/// the last item; `StopIteration` ends the loop.
impl Iterator for Generator {
    type Item = PyResult<Value>;

    fn next(&mut self) -> Option<PyResult<Value>> {
        // On the outcome rather than `send`'s result: the end of the loop
        // need not be dressed up as a StopIteration only to be taken apart.
        // A `for` loop's first `next` starts the body from right here, with
        // no frame in between (see `Inner::first_send`).
        let outcome = if self.0.state.get() == GenState::Created {
            self.0.first_send(&self.0)
        } else {
            self.send_wire(Wire(TAG_NONE))
        };
        match outcome {
            Outcome::Yielded(w) => Some(Ok(w.into_value())),
            Outcome::Returned(r) => match r.result() {
                Ok(_) => None,
                Err(e) if e.is_instance(&StopIteration) => None,
                Err(e) => Some(Err(e)),
            },
        }
    }
}

/// `repr(generator)`: `<generator object gen at 0x...>`.
impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<generator object {} at {:p}>",
            self.0.name,
            Rc::as_ptr(&self.0)
        )
    }
}

/// A generator is a Python object like any other: it can be yielded and sent.
impl Object for Generator {
    fn type_name(&self) -> &str {
        "generator"
    }
    fn repr(&self) -> String {
        format!("{self:?}")
    }
}

impl From<Generator> for Value {
    fn from(g: Generator) -> Value {
        Value::object(g)
    }
}

/// Sets `gi_yieldfrom` for as long as a `yield from` runs, and clears it on
/// every way out (return, raise, or a panic unwinding the fiber).
///
/// It holds the generator weakly: it lives on the generator's own fiber
/// stack, and a strong handle there would keep a suspended delegator alive
/// forever, so dropping it would never close it.
struct Delegating<'a>(&'a Weak<Inner>);

impl<'a> Delegating<'a> {
    fn start(generator: &'a Weak<Inner>, target: YieldFrom) -> Delegating<'a> {
        if let Some(g) = generator.upgrade() {
            g.delegating.set(matches!(target, YieldFrom::Generator(_)));
            if let YieldFrom::Generator(sub) = &target {
                g.sub.set(Some(sub.clone()));
            }
            *g.yieldfrom.borrow_mut() = Some(target);
        }
        Delegating(generator)
    }
}

impl Drop for Delegating<'_> {
    fn drop(&mut self) {
        // During the finalizer's close the generator can no longer be
        // upgraded; it is going away with its `gi_yieldfrom` anyway.
        if let Some(g) = self.0.upgrade() {
            g.delegating.set(false);
            g.sub.take();
            g.yieldfrom.borrow_mut().take();
        }
    }
}

impl Co<'_> {
    /// `received = yield value`: suspends the body and hands `value` to the
    /// caller of `send`. Returns what the next `send` passes (`None` for
    /// `next`), or `Err(exc)` when the caller `throw`s `exc` (`close()`
    /// throws `GeneratorExit`): propagate it with `?`, or handle it as an
    /// `except` clause would.
    ///
    /// Not generic, for the debugger's sake, as [`Generator::send`]: `break
    /// pyfiber::generator::Co::yield_` works as typed; the value is converted
    /// by the caller (`co.yield_(f.into())`).
    #[cfg_attr(debug_assertions, inline(never))]
    #[cfg_attr(not(debug_assertions), inline(always))]
    #[track_caller]
    pub fn yield_(&self, value: Value) -> PyResult<Value> {
        // gi_frame: this call's line, a constant once inlined (taken out
        // here: inside the closure it would be the closure's own line).
        let here = Location::caller();
        YIELD_AT.with(|at| at.set(Some(here)));
        // The common case, a plain send, straight into the result: every
        // intermediate enum a `Value` passes through is a copy in memory.
        let w = self.yielder.suspend(Wire::from_value(value));
        // gdb: resumed (the body continues here; `pyfiber step` stops here)
        if w.is_packed_int_or_none() {
            return Ok(w.int_or_none());
        }
        self.yield_cold(w)
    }

    /// `yield_` resumed by anything but a send of `None` or a small int: a
    /// throw, or a value that did not fit in the wire. Out of line, so the
    /// hot path's result never shares a memory slot with this one's (see
    /// `Outcome::into_send_result`).
    #[cold]
    #[inline(never)]
    fn yield_cold(&self, w: Wire) -> PyResult<Value> {
        if w.0 != WIRE_PARCEL {
            return Ok(w.into_value());
        }
        match self.received(Wire::unparcel()) {
            Resume::Send(v) => Ok(v),
            Resume::Throw(e) => {
                self.chain_to_own_handled(&e, true);
                Err(e)
            }
            Resume::SubDone(_) => not_delegating(),
        }
    }

    /// An exception raised into this body at a yield: chained as CPython's
    /// `_PyErr_ChainStackItem` chains it, to what this generator itself is
    /// handling (see `exception::chain_to_own_handled`).
    /// Only while the throw this body received runs (what `throw_seen`
    /// tells), which is also how it works during the finalizer's close,
    /// when the generator can no longer be reached from its body. A
    /// same-fiber sub-generator's own are those above `frame_base`.
    #[cold]
    #[inline(never)]
    fn chain_to_own_handled(&self, e: &Exception, thrown: bool) {
        let (serial, mark) = self.throw_seen.get();
        debug_assert_eq!(serial, crate::exception::active_throw().0);
        crate::exception::chain_to_own_handled(e, mark + self.frame_base.get(), thrown);
    }

    /// A throw reached a yield of this body: `throw_seen`, and in a
    /// same-fiber sub-generator the handlers of the frames that called it
    /// are out of sight meanwhile (`exception::hide_outer_frames`).
    #[cold]
    #[inline(never)]
    fn note_throw(&self) {
        let (serial, mark) = crate::exception::active_throw();
        self.throw_seen.set((serial, mark));
        let base = self.frame_base.get();
        if base > 0 {
            crate::exception::hide_outer_frames(mark, mark + base);
        }
    }

    /// Runs `f`, a throw or close passed down to this body's delegate, with
    /// this body's handled exceptions off the thread's stack: CPython's
    /// `_gen_throw` and `gen_close` walk down a `yield from` chain without
    /// resuming the delegators, so what the delegate raises or catches is
    /// chained to its own handled exceptions or the outermost caller's,
    /// never a delegator's. They are back before this body goes on.
    #[cold]
    #[inline(never)]
    fn descend<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Puts them back on every way out (a panic unwinds this body's
        /// handlers next, and their guards pop them).
        struct Back(Vec<Exception>);
        impl Drop for Back {
            fn drop(&mut self) {
                crate::exception::restore_handled(std::mem::take(&mut self.0));
            }
        }
        let (_, mark) = self.throw_seen.get();
        let _back = Back(crate::exception::take_handled_above(mark));
        f()
    }

    /// What came back out of the delegate's `throw()` or `close()`: an
    /// exception is raised into this body again (CPython's SEND loop ends
    /// with `gen_send_ex(gen, None, exc=1)`, which chains it to the
    /// delegator's own handled exception); a finished delegate's
    /// `StopIteration` is its result, not an exception.
    fn raised_back(&self, r: PyResult<Value>) -> PyResult<Value> {
        if let Err(e) = &r {
            if !e.is_instance(&StopIteration) {
                self.chain_to_own_handled(e, false);
            }
        }
        r
    }

    /// Notes a throw arriving at a yield of this body (`throw_seen`), and
    /// counts it if it is a `GeneratorExit`.
    #[inline(always)]
    fn received(&self, resume: Resume) -> Resume {
        if let Resume::Throw(e) = &resume {
            self.note_throw();
            if e.is_instance(&GeneratorExit) {
                self.exits_received.set(self.exits_received.get() + 1);
            }
        }
        resume
    }

    /// `result = yield from sub()` on this generator's own fiber: `sub` is a
    /// generator function written as a plain Rust function of the `Co`, and
    /// its yields suspend the whole stack, delegator included (the second
    /// way of delegating in DESIGN.md; constant cost per send at any depth).
    ///
    /// Calling `sub(co)` directly already behaves as `yield from` for sends,
    /// throws, yields and the return value. This wrapper adds the two rules
    /// of PEP 380/479 that a plain call cannot see:
    /// - PEP 479 holds at the sub-generator's own boundary: a `StopIteration`
    ///   escaping `sub` reaches the delegator as `RuntimeError("generator
    ///   raised StopIteration")`, as it would from a sub-generator object;
    /// - on `GeneratorExit` the delegator closes the sub-generator and then
    ///   raises `GeneratorExit` itself, whatever `sub` returned: a `sub` that
    ///   catches `GeneratorExit` and returns still ends the `yield from` with
    ///   `GeneratorExit`.
    ///
    /// One difference stays (frames that share a stack cannot outlive each
    /// other): a `sub` that *yields* after `GeneratorExit` suspends the whole
    /// stack, where PEP 380 would leave it suspended alone and raise
    /// `RuntimeError` in the delegator. Use [`Co::yield_from`] for that.
    ///
    /// And the exception rule of a generator boundary: what leaves `sub` in
    /// the middle of a `throw()` or `close()` it received is raised into the
    /// delegator again, chained to the delegator's own handled exception, as
    /// CPython's `gen_send_ex(gen, exc=1)` chains it after the delegate's
    /// `throw()` failed (`_PyErr_ChainStackItem`).
    pub fn yield_from_fn(&self, sub: impl FnOnce(&Co<'_>) -> PyResult<Value>) -> PyResult<Value> {
        let exits_before = self.exits_received.get();
        let (throw_before, _) = self.throw_seen.get();
        let result = {
            let _frame = SubFrame::enter(self);
            sub(self)
        };
        let result = match result {
            Err(e) if e.is_instance(&StopIteration) => Err(pep479_error(e)),
            Ok(_) if self.exits_received.get() != exits_before => Err(Exception::GeneratorExit()),
            other => other,
        };
        let (seen, mark) = self.throw_seen.get();
        if seen != throw_before && seen == crate::exception::active_throw().0 {
            // `sub` received the throw now running and has ended: the
            // delegator is resumed (CPython's `gen_send_ex` of it), its
            // handlers in sight again, and what `sub` raised is chained
            // to its own.
            crate::exception::hide_outer_frames(mark, mark + self.frame_base.get());
            if let Err(e) = &result {
                self.chain_to_own_handled(e, false);
            }
        }
        result
    }

    /// The depth of the handled exceptions under this body's own, for the
    /// resume now running: the throw's, or the one the generator recorded.
    fn resume_mark(&self) -> usize {
        let (seen, mark) = self.throw_seen.get();
        if seen != 0 && seen == crate::exception::active_throw().0 {
            return mark;
        }
        self.generator.upgrade().map_or(0, |g| g.exc_mark.get())
    }

    /// `result = yield from sub`: PEP 380's full expansion, with `sub` running
    /// on its own fiber. Every `send`, `throw` and `close` reaching this
    /// generator is forwarded to `sub`; `sub`'s yields go straight to our
    /// caller; its return value is ours.
    ///
    /// The Python it mirrors, clause by clause (seed 002 prints it):
    ///
    /// ```text
    /// _y = next(_i)                     -> first `sub.send(None)`
    /// _s = yield _y                     -> `self.yield_(y)`
    /// except GeneratorExit: _i.close(); raise
    /// except BaseException: _y = _i.throw(e)
    /// else: _y = _i.send(_s)            (`next(_i)` when _s is None)
    /// except StopIteration as _e: _r = _e.value
    /// ```
    // Out of line even in a release build: a breakpoint on the plain name
    // always has a function to sit in, and this is not a hot path.
    #[inline(never)]
    #[track_caller]
    pub fn yield_from(&self, sub: &Generator) -> PyResult<Value> {
        let at = Location::caller(); // gi_frame while delegating
        let _delegating = Delegating::start(&self.generator, YieldFrom::Generator(sub.clone()));
        let mut step = sub.send(Value::None);
        loop {
            let y = match step {
                Ok(y) => y,
                Err(e) => match e.stop_value() {
                    Some(r) => return Ok(r.clone()),
                    None => return Err(e),
                },
            };
            step = match self.suspend(y, at) {
                Resume::Send(s) => sub.send(s),
                // The caller sent straight to `sub` (Generator::forward),
                // which finished: this is how its `send` ended.
                Resume::SubDone(step) => step,
                Resume::Throw(e) if e.is_instance(&GeneratorExit) => {
                    self.raised_back(self.descend(|| sub.close()))?;
                    // Raised here once `sub` is closed (CPython's
                    // `throw_here`), chained as a throw into this body.
                    self.chain_to_own_handled(&e, true);
                    return Err(e);
                }
                Resume::Throw(e) => self.raised_back(self.descend(|| sub.throw(e))),
            };
        }
    }

    /// `yield from iterable` where the iterable is not a generator (Python:
    /// `yield from [1, 2, 3]`). `type_name` is the Python iterator's type
    /// (`list_iterator` for a list), used in the errors Python raises: a
    /// non-`None` send is `AttributeError: 'list_iterator' object has no
    /// attribute 'send'`; a thrown exception is raised here, since the
    /// iterator has no `throw`; `close` just raises `GeneratorExit`. The
    /// result is `None`, as an exhausted iterator's `StopIteration` carries
    /// nothing.
    #[track_caller]
    pub fn yield_from_iter<I>(&self, type_name: &str, iterable: I) -> PyResult<Value>
    where
        I: IntoIterator<Item = Value>,
    {
        let at = Location::caller(); // gi_frame while delegating
        let _delegating =
            Delegating::start(&self.generator, YieldFrom::Iterator(type_name.to_string()));
        for y in iterable {
            match self.suspend(y, at) {
                Resume::Send(s) if s.is_none() => {}
                Resume::Send(_) => {
                    return Err(Exception::AttributeError(format!(
                        "'{type_name}' object has no attribute 'send'"
                    )))
                }
                Resume::Throw(e) => {
                    // An iterator has no `throw`: raised here.
                    self.chain_to_own_handled(&e, true);
                    return Err(e);
                }
                Resume::SubDone(_) => not_delegating(),
            }
        }
        Ok(Value::None)
    }

    /// `result = yield from obj` for any object with the iterator protocol
    /// (PEP 380's expansion with each method looked up as it is needed):
    /// `__next__` for `next()`, `send` for other values, `throw` for
    /// exceptions (re-raised here when there is none), `close` then
    /// re-raising the very `GeneratorExit` thrown (skipped when there is no
    /// `close`). `gi_yieldfrom` is the object meanwhile.
    #[track_caller]
    pub fn yield_from_object(&self, obj: Rc<dyn Protocol>) -> PyResult<Value> {
        let at = Location::caller(); // gi_frame while delegating
        let _delegating = Delegating::start(&self.generator, YieldFrom::Object(obj.clone()));
        let mut step = obj.next();
        loop {
            let y = match step {
                Ok(y) => y,
                Err(e) => match e.stop_value() {
                    Some(r) => return Ok(r.clone()),
                    None => return Err(e),
                },
            };
            step = match self.suspend(y, at) {
                Resume::Send(s) if s.is_none() => obj.next(),
                Resume::Send(s) => obj.send(s).unwrap_or_else(|| {
                    Err(Exception::AttributeError(format!(
                        "'{}' object has no attribute 'send'",
                        obj.type_name()
                    )))
                }),
                Resume::Throw(e) if e.is_instance(&GeneratorExit) => {
                    if let Some(closed) =
                        self.descend(|| crate::exception::raised_in(|| obj.close()))
                    {
                        self.raised_back(closed)?;
                    }
                    self.chain_to_own_handled(&e, true);
                    return Err(e);
                }
                Resume::Throw(e) => {
                    match self.descend(|| crate::exception::raised_in(|| obj.throw(e.clone()))) {
                        Some(thrown) => self.raised_back(thrown),
                        None => {
                            self.chain_to_own_handled(&e, true);
                            return Err(e);
                        }
                    }
                }
                Resume::SubDone(_) => not_delegating(),
            };
        }
    }

    /// `yield from [values...]`: [`Co::yield_from_iter`] over a list.
    #[track_caller]
    pub fn yield_from_list(&self, values: Vec<Value>) -> PyResult<Value> {
        self.yield_from_iter("list_iterator", values)
    }

    /// Suspends the fiber with `value` for the caller; returns how the
    /// caller resumed it.
    #[inline(always)]
    fn suspend(&self, value: Value, at: &'static Location<'static>) -> Resume {
        YIELD_AT.with(|c| c.set(Some(at)));
        let w = self.yielder.suspend(Wire::from_value(value));
        // gdb: resumed (a `yield from` continues here; `pyfiber step` stops here)
        self.received(w.into_resume())
    }

    /// The generator this body belongs to (Python: no direct equivalent; a
    /// body can reach its own generator object only through a global).
    ///
    /// `None` while the generator is being finalized (its last handle is
    /// gone and the drop is closing it). Do not keep the handle across a
    /// yield: a suspended generator holding itself is a cycle that no drop
    /// will ever close (Python's cycle collector would; Rust has none).
    pub fn generator(&self) -> Option<Generator> {
        self.generator.upgrade().map(Generator)
    }
}

/// `throw()` into a generator whose frame does not run (just started, or
/// finished): CPython raises the exception straight back, chained to
/// nothing -- the generator handles nothing, and a throw is not a raise
/// while the caller handles something -- so it counts as raised now, and
/// the caller's `except` does not chain it to the caller's exception.
/// (Here, at the end of the file, so that no line cited in NOTES.md moves.)
#[cold]
fn raised_back(exc: Exception) -> Exception {
    crate::exception::chain_to_own_handled(&exc, crate::exception::handled_depth(), true);
    exc
}

/// The `GeneratorExit` that `close()` raises into a suspended generator:
/// CPython makes it with `PyErr_SetNone` in the caller's frame, so it is
/// chained to the exception the caller is handling, if any (then, at the
/// yield, to the generator's own, which replaces it). For the close of a
/// sub-generator by its delegator (PEP 380's `_i.close()`) the caller is the
/// outermost one: the delegators' handled exceptions are off the stack
/// meanwhile (`Co::descend`), as CPython does not resume them on the way.
#[cold]
fn raised_by_close(exit: Exception) -> Exception {
    if let Some(handled) = crate::exception::exc_info() {
        exit.chain(&handled);
    }
    exit
}

/// A same-fiber sub-generator's frame, while [`Co::yield_from_fn`] runs it:
/// the handled exceptions its body adds are its own (`Co::frame_base`).
struct SubFrame<'a, 'b> {
    co: &'a Co<'b>,
    outer: usize,
}

impl<'a, 'b> SubFrame<'a, 'b> {
    fn enter(co: &'a Co<'b>) -> SubFrame<'a, 'b> {
        let base = crate::exception::handled_depth().saturating_sub(co.resume_mark());
        let outer = co.frame_base.replace(base);
        SubFrame { co, outer }
    }
}

impl Drop for SubFrame<'_, '_> {
    fn drop(&mut self) {
        self.co.frame_base.set(self.outer);
    }
}
