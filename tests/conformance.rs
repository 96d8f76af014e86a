//! Conformance: every case is a small Python program and its Rust twin, and
//! the test asserts they print the same trace, line for line.
//!
//! Nothing here hard-codes what Python prints: one `python3` process runs all
//! the snippets (each between `=== <case>` markers) and its stdout is the
//! expected trace. The Rust twins write their lines into a thread-local trace
//! with `out!`, which plays `print`.
//!
//! Trace conventions, shared by both sides:
//! - `call(label, ...)` prints `label -> repr(result)` or `label !! Name: msg`
//!   (`type(e).__name__ + ": " + str(e)`, or the bare name when `str(e)` is
//!   empty), which is [`Exception::line`] on the Rust side;
//! - `state(g)` is `inspect.getgeneratorstate(g)`, i.e. `GenState::python_name`;
//! - `close313(g)` is `g.close()` as CPython 3.13 defines it (see NOTES.md:
//!   3.11 and 3.12 return `None` even when the body returns a value on
//!   `GeneratorExit`; pyfiber follows 3.13).
//!
//! A case with `yield from` may have two Rust twins: `pep380` delegates with
//! `co.yield_from(&generator)` (a fiber per generator, PEP 380's expansion)
//! and `same_fiber` calls the sub-generator's body as a plain Rust function
//! on the delegator's own fiber. Both must print what Python prints.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;

use pyfiber::exception::{
    ArithmeticError, BaseException, BlockingIOError, ConnectionError, ConnectionRefusedError,
    Except, GeneratorExit, KeyError, KeyboardInterrupt, LookupError, NotImplementedError, OSError,
    RuntimeError, StopIteration, TimeoutError, TypeError, UnicodeDecodeError, ValueError,
    ZeroDivisionError,
};
use pyfiber::{
    stack_pool, Co, Exception, ExceptionClass, Generator, Object, PyResult, Value, YieldFrom,
};

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

thread_local! {
    /// What the running Rust twin has "printed".
    static TRACE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// `print(...)` for the Rust twins: one formatted line into the trace.
macro_rules! out {
    ($($arg:tt)*) => {
        TRACE.with(|t| t.borrow_mut().push(format!($($arg)*)))
    };
}

/// Helpers every Python snippet can use; the Rust helpers below mirror them.
const PRELUDE: &str = concat!(
    include_str!("support/cpython_helpers.py"),
    r#"
import gc, inspect, sys

state = inspect.getgeneratorstate

def yf(g):
    x = g.gi_yieldfrom
    if x is None:
        return "None"
    if inspect.isgenerator(x):
        return "generator " + x.__name__
    return type(x).__name__

class MyError(Exception):
    pass

def show(e):
    print(f"{e!r} | {e} | {e.args!r} | {line(e)}")

def chain(e):
    print(f"{e!r} context={e.__context__!r} cause={e.__cause__!r} suppress={e.__suppress_context__}")

def fmt(e):
    # traceback.format_exception(e) without frames (pyfiber records none):
    # drop every __traceback__ in the chain first. Classes of the case's own
    # module are printed without the module prefix, as pyfiber's are.
    import traceback
    todo, seen = [e], set()
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        x.__traceback__ = None
        todo += [x.__context__, x.__cause__]
    print("".join(traceback.format_exception(e)).replace(__name__ + ".", ""), end="")

class Token:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("freed", self.name)
"#
);

/// Reads the cases from stdin (`name \x1f source \x1e` records) and runs each
/// in a fresh namespace, printing `=== name` before it. Names a case defines
/// are deleted (newest first, like Rust dropping locals) and `gc.collect()`
/// runs before the next marker, so a finalizer's output stays in its case.
const DRIVER: &str = r#"
import gc, sys, textwrap
prelude = sys.argv[1]
records = sys.stdin.read().split("\x1e")
for rec in records:
    if not rec.strip():
        continue
    name, src = rec.split("\x1f", 1)
    print("=== " + name, flush=True)
    ns = {"__name__": "case_" + name}
    exec(compile(prelude, "<prelude>", "exec"), ns)
    keep = set(ns)
    try:
        exec(compile(textwrap.dedent(src), "<case " + name + ">", "exec"), ns)
    except BaseException as e:
        print("!!! uncaught " + type(e).__name__ + ": " + str(e))
    for k in reversed(list(ns)):
        if k not in keep:
            del ns[k]
    gc.collect()
    sys.stdout.flush()
print("=== END", flush=True)
"#;

/// One conformance case: a Python snippet and its Rust twins.
struct Case {
    name: &'static str,
    python: &'static str,
    twins: &'static [(&'static str, fn())],
}

/// Runs every snippet in one `python3` and splits its stdout by case.
fn python_traces() -> &'static HashMap<String, Vec<String>> {
    static TRACES: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    TRACES.get_or_init(|| {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(DRIVER)
            .arg(PRELUDE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("conformance tests need `python3` on PATH");
        let mut input = String::new();
        for case in CASES {
            input.push_str(case.name);
            input.push('\x1f');
            input.push_str(case.python);
            input.push('\x1e');
        }
        // Written from a thread so a large stdout cannot deadlock the pipe.
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let output = child.wait_with_output().expect("python3 did not run");
        writer.join().unwrap().expect("feeding python3");
        let stdout = String::from_utf8(output.stdout).expect("python3 printed UTF-8");
        assert!(
            output.status.success() && stdout.ends_with("=== END\n"),
            "python3 failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut traces = HashMap::new();
        let mut current: Option<(String, Vec<String>)> = None;
        for line in stdout.lines() {
            if let Some(name) = line.strip_prefix("=== ") {
                if let Some((n, t)) = current.take() {
                    traces.insert(n, t);
                }
                if name != "END" {
                    current = Some((name.to_string(), Vec::new()));
                }
            } else if let Some((_, t)) = &mut current {
                t.push(line.to_string());
            }
        }
        traces
    })
}

/// Runs one Rust twin and returns what it printed.
fn run_twin(twin: fn()) -> Vec<String> {
    TRACE.with(|t| t.borrow_mut().clear());
    twin();
    TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// A line-by-line diff: `  ` same, `- ` only Python, `+ ` only Rust.
fn diff(python: &[String], rust: &[String]) -> String {
    let mut report = String::new();
    for i in 0..python.len().max(rust.len()) {
        match (python.get(i), rust.get(i)) {
            (Some(p), Some(r)) if p == r => report.push_str(&format!("    {p}\n")),
            (p, r) => {
                if let Some(p) = p {
                    report.push_str(&format!("  - {p}\n"));
                }
                if let Some(r) = r {
                    report.push_str(&format!("  + {r}\n"));
                }
            }
        }
    }
    report
}

/// The assertion of every case: each twin prints Python's trace, and frees
/// every fiber stack it started (a leaked generator keeps its stack).
fn check(name: &str) {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .expect("case is registered");
    let expected = python_traces()
        .get(name)
        .unwrap_or_else(|| panic!("python3 printed nothing for case {name}"));
    assert!(
        !expected.is_empty(),
        "case {name}: the Python snippet prints nothing, so it proves nothing"
    );
    for (twin_name, twin) in case.twins {
        let before = stack_pool::stats().in_use;
        let got = run_twin(*twin);
        assert!(
            &got == expected,
            "case {name}, twin {twin_name}: Rust trace differs from python3's \
             (- python, + rust)\n{}\npython snippet:{}",
            diff(expected, &got),
            case.python
        );
        let after = stack_pool::stats().in_use;
        assert_eq!(
            before,
            after,
            "case {name}, twin {twin_name}: {} fiber stack(s) still in use after \
             every generator was dropped (a leak)",
            after.wrapping_sub(before)
        );
    }
}

// ---------------------------------------------------------------------------
// Rust twins of the prelude
// ---------------------------------------------------------------------------

/// `call(label, f, *args)`.
fn call(label: &str, result: PyResult<Value>) {
    match result {
        Ok(v) => out!("{label} -> {v:?}"),
        Err(e) => out!("{label} !! {}", e.line()),
    }
}

/// `inspect.getgeneratorstate(g)`.
fn state(g: &Generator) -> &'static str {
    g.state().python_name()
}

/// `yf(g)`: what `g.gi_yieldfrom` is.
fn yf(g: &Generator) -> String {
    match g.gi_yieldfrom() {
        None => "None".into(),
        Some(YieldFrom::Generator(sub)) => format!("generator {}", sub.name()),
        Some(YieldFrom::Iterator(type_name)) => type_name,
        Some(YieldFrom::Object(obj)) => obj.type_name().to_string(),
    }
}

/// `print(line(e))` for a panic: the panic message plays `str(e)`.
fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

/// Python's `finally: print(text)` as a drop guard: it runs on return, on an
/// exception (`Err` returned with `?`) and on a panic unwinding the body.
struct Finally(&'static str);

impl Drop for Finally {
    fn drop(&mut self) {
        out!("{}", self.0);
    }
}

/// `MyError(msg)`, the snippets' own exception class.
fn my_error(msg: &str) -> Exception {
    Exception::user("MyError", msg)
}

/// A place for generators to find each other, as Python bodies do through
/// module globals. Cleared at the end of a case to break the cycle.
type Slot = Rc<RefCell<Option<Generator>>>;

fn slot() -> Slot {
    Rc::new(RefCell::new(None))
}

fn get(slot: &Slot) -> Generator {
    slot.borrow().clone().expect("slot filled")
}

/// `a / b`, raising ZeroDivisionError as Python does.
fn divide(a: i64, b: i64) -> PyResult<Value> {
    if b == 0 {
        return Err(Exception::user("ZeroDivisionError", "division by zero"));
    }
    Ok(Value::Float(a as f64 / b as f64))
}

/// `Token(name)`: an object that says when it is freed (`__del__`).
struct Token(&'static str);

impl Object for Token {
    fn type_name(&self) -> &str {
        "Token"
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        out!("freed {}", self.0);
    }
}

fn token(name: &'static str) -> Value {
    Value::object(Token(name))
}

/// Values of every kind the snippets send: small and large ints, floats,
/// strings, bytes, tuples, lists, None, bools.
fn assorted() -> Vec<Value> {
    vec![
        Value::Int(7),
        Value::Int(-3),
        Value::Int(1 << 62),
        Value::Int(-(1 << 62) - 1),
        Value::Int(i64::MAX),
        Value::Float(2.5),
        "text".into(),
        Value::from(&b"\x00b"[..]),
        Value::Tuple(vec![Value::Int(1), "a".into()].into()),
        Value::from(vec![Value::None, Value::Bool(true)]),
        Value::None,
        Value::Bool(false),
    ]
}

fn int(v: &Value) -> i64 {
    v.as_int().expect("an int")
}

// ---------------------------------------------------------------------------
// send / next / return
// ---------------------------------------------------------------------------

/// `x = yield v`, `next`, `send`, and `return r` becoming `StopIteration(r)`.
mod next_send_and_return {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("start")
        x = yield 1
        print("got", x)
        y = yield x * 2
        print("got", y)
        return "done"
    g = gen()
    call("next", next, g)
    call("send 5", g.send, 5)
    call("next", next, g)
    call("next again", next, g)
    "#;
    pub fn rust() {
        let g = Generator::named("gen", |co| {
            out!("start");
            let x = co.yield_(1.into())?;
            out!("got {x}");
            let y = co.yield_((int(&x) * 2).into())?;
            out!("got {y}");
            Ok("done".into())
        });
        call("next", g.next());
        call("send 5", g.send(5.into()));
        call("next", g.next());
        call("next again", g.next());
    }
}

/// `send(None)` starts a generator exactly as `next()` does.
mod send_none_is_next {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("running")
        yield "first"
        yield "second"
    g = gen()
    call("send None", g.send, None)
    call("send None", g.send, None)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            out!("running");
            co.yield_("first".into())?;
            co.yield_("second".into())?;
            Ok(Value::None)
        });
        call("send None", g.send(Value::None));
        call("send None", g.send(Value::None));
    }
}

/// A non-None send into a just-started generator is TypeError, and the
/// generator is still usable afterwards.
mod send_non_none_to_just_started {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("started")
        x = yield 1
        print("got", x)
        yield 2
    g = gen()
    call("send 5", g.send, 5)
    print(state(g))
    call("next", next, g)
    call("send 7", g.send, 7)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            out!("started");
            let x = co.yield_(1.into())?;
            out!("got {x}");
            co.yield_(2.into())?;
            Ok(Value::None)
        });
        call("send 5", g.send(5.into()));
        out!("{}", state(&g));
        call("next", g.next());
        call("send 7", g.send(7.into()));
        out!("{}", state(&g));
    }
}

/// A bare `yield` yields None, and `next()` makes it evaluate to None.
mod bare_yield_is_none {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        x = yield
        print("x is", x)
        x = yield
        print("x is", x)
    g = gen()
    call("next", next, g)
    call("next", next, g)
    call("send 'hi'", g.send, "hi")
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let x = co.yield_(Value::None)?;
            out!("x is {x}");
            let x = co.yield_(Value::None)?;
            out!("x is {x}");
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
        call("send 'hi'", g.send("hi".into()));
    }
}

/// The return value rides on StopIteration: `e.value`, and `str(e)`.
mod return_value_in_stop_iteration {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        return 42
    g = gen()
    next(g)
    try:
        next(g)
    except StopIteration as e:
        print("value", e.value, "|", line(e))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Ok(42.into())
        });
        g.next().unwrap();
        if let Err(e) = g.next() {
            out!("value {} | {}", e.stop_value().unwrap(), e.line());
        }
    }
}

/// A bare `return` (or falling off the end) is StopIteration with value None.
mod bare_return_stop_iteration_none {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
    g = gen()
    next(g)
    try:
        next(g)
    except StopIteration as e:
        print("value", e.value, "|", line(e))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        g.next().unwrap();
        if let Err(e) = g.next() {
            out!("value {} | {}", e.stop_value().unwrap(), e.line());
        }
    }
}

/// A finished generator's send raises StopIteration (without the value), for
/// any value sent.
mod closed_generator_send_raises_stop_iteration {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        return "r"
    g = gen()
    call("next", next, g)
    call("next", next, g)
    call("next", next, g)
    call("send 5", g.send, 5)
    call("send None", g.send, None)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Ok("r".into())
        });
        call("next", g.next());
        call("next", g.next());
        call("next", g.next());
        call("send 5", g.send(5.into()));
        call("send None", g.send(Value::None));
        out!("{}", state(&g));
    }
}

/// `for v in gen()` and `list(gen())`: StopIteration ends the loop and its
/// value is dropped.
mod for_loop_and_list {
    use super::*;
    pub const PY: &str = r#"
    def squares(n):
        for i in range(n):
            yield i * i
        return "ignored by for"
    for v in squares(4):
        print("item", v)
    print(list(squares(3)))
    "#;
    fn squares(n: i64) -> Generator {
        Generator::named("squares", move |co| {
            for i in 0..n {
                co.yield_((i * i).into())?;
            }
            Ok("ignored by for".into())
        })
    }
    pub fn rust() {
        for v in squares(4) {
            out!("item {}", v.unwrap());
        }
        let list: Vec<Value> = squares(3).map(Result::unwrap).collect();
        out!("{}", Value::from(list));
    }
}

/// GEN_CREATED -> GEN_SUSPENDED -> GEN_CLOSED, with gi_running/gi_suspended.
mod states_through_life {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
    g = gen()
    print(state(g), g.gi_running, g.gi_suspended)
    next(g)
    print(state(g), g.gi_running, g.gi_suspended)
    call("next", next, g)
    print(state(g), g.gi_running, g.gi_suspended)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        let show = |g: &Generator| {
            let py = |b: bool| if b { "True" } else { "False" };
            out!(
                "{} {} {}",
                state(g),
                py(g.gi_running()),
                py(g.gi_suspended())
            );
        };
        show(&g);
        g.next().unwrap();
        show(&g);
        call("next", g.next());
        show(&g);
    }
}

/// Seen from inside its own body, a generator is GEN_RUNNING.
mod state_inside_body_is_running {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("inside:", state(me), me.gi_running, me.gi_suspended)
        yield 1
    me = gen()
    next(me)
    print("outside:", state(me), me.gi_running, me.gi_suspended)
    "#;
    pub fn rust() {
        let me = Generator::new(|co| {
            // Scoped: a body holding its own handle across a yield would be
            // a cycle that keeps it suspended forever.
            {
                let me = co.generator().unwrap();
                out!(
                    "inside: {} {} {}",
                    state(&me),
                    if me.gi_running() { "True" } else { "False" },
                    if me.gi_suspended() { "True" } else { "False" }
                );
            }
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        me.next().unwrap();
        out!(
            "outside: {} {} {}",
            state(&me),
            if me.gi_running() { "True" } else { "False" },
            if me.gi_suspended() { "True" } else { "False" }
        );
    }
}

/// Re-entrancy: a body sending to its own generator gets ValueError, can
/// catch it, and carries on.
mod reentrant_send_is_value_error {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            me.send(None)
        except ValueError as e:
            print("inside:", line(e))
        yield "after"
        print("resumed")
    me = gen()
    call("next", next, me)
    print(state(me))
    call("next", next, me)
    "#;
    pub fn rust() {
        let me = Generator::new(|co| {
            match co.generator().unwrap().send(Value::None) {
                Err(e) if e.is_instance(&ValueError) => out!("inside: {}", e.line()),
                other => {
                    other?;
                }
            }
            co.yield_("after".into())?;
            out!("resumed");
            Ok(Value::None)
        });
        call("next", me.next());
        out!("{}", state(&me));
        call("next", me.next());
    }
}

/// Re-entrancy left uncaught: the ValueError ends the body, which is closed.
mod reentrant_uncaught_closes {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        next(me)
        yield 2
    me = gen()
    call("next", next, me)
    call("next", next, me)
    print(state(me))
    call("next", next, me)
    "#;
    pub fn rust() {
        let me = Generator::new(|co| {
            co.yield_(1.into())?;
            co.generator().unwrap().next()?;
            co.yield_(2.into())?;
            Ok(Value::None)
        });
        call("next", me.next());
        call("next", me.next());
        out!("{}", state(&me));
        call("next", me.next());
    }
}

/// A running generator's own `throw` and `close` are ValueError too.
mod reentrant_throw_and_close {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            me.throw(KeyError("k"))
        except BaseException as e:
            print("throw:", line(e))
        try:
            me.close()
        except BaseException as e:
            print("close:", line(e))
        yield "still fine"
    me = gen()
    call("next", next, me)
    call("close", me.close)
    print(state(me))
    "#;
    pub fn rust() {
        let me = Generator::new(|co| {
            {
                let me = co.generator().unwrap();
                if let Err(e) = me.throw(Exception::KeyError("k".into())) {
                    out!("throw: {}", e.line());
                }
                if let Err(e) = me.close() {
                    out!("close: {}", e.line());
                }
            }
            co.yield_("still fine".into())?;
            Ok(Value::None)
        });
        call("next", me.next());
        call("close", me.close());
        out!("{}", state(&me));
    }
}

// ---------------------------------------------------------------------------
// throw
// ---------------------------------------------------------------------------

/// A thrown exception caught in the body: `throw` returns the next yield.
/// One not caught ends the body and closes the generator.
mod throw_caught_yields_next {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        while True:
            try:
                x = yield "ready"
                print("got", x)
            except ValueError as e:
                print("caught", line(e))
    g = gen()
    next(g)
    call("throw ValueError", g.throw, ValueError("bad"))
    call("send 1", g.send, 1)
    call("throw KeyError", g.throw, KeyError("k"))
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| loop {
            match co.yield_("ready".into()) {
                Ok(x) => out!("got {x}"),
                Err(e) if e.is_instance(&ValueError) => out!("caught {}", e.line()),
                Err(e) => return Err(e),
            }
        });
        g.next().unwrap();
        call(
            "throw ValueError",
            g.throw(Exception::ValueError("bad".into())),
        );
        call("send 1", g.send(1.into()));
        call("throw KeyError", g.throw(Exception::KeyError("k".into())));
        out!("{}", state(&g));
    }
}

/// An uncaught throw propagates to the caller; the generator is then closed.
mod throw_uncaught_closes {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        print("never")
        yield 2
    g = gen()
    next(g)
    call("throw", g.throw, MyError("boom"))
    print(state(g))
    call("next", next, g)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            out!("never");
            co.yield_(2.into())?;
            Ok(Value::None)
        });
        g.next().unwrap();
        call("throw", g.throw(my_error("boom")));
        out!("{}", state(&g));
        call("next", g.next());
    }
}

/// Throwing into a just-started generator raises straight back without
/// running any of the body, and closes it.
mod throw_into_just_started {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("body runs")
        yield 1
    g = gen()
    call("throw", g.throw, ValueError("early"))
    print(state(g))
    call("next", next, g)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            out!("body runs");
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        call("throw", g.throw(Exception::ValueError("early".into())));
        out!("{}", state(&g));
        call("next", g.next());
    }
}

/// Throwing into a finished generator raises the exception straight back.
mod throw_into_finished {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
    g = gen()
    print(list(g))
    call("throw", g.throw, ValueError("late"))
    print(state(g))
    call("throw again", g.throw, KeyError("again"))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        let list: Vec<Value> = g.clone().map(Result::unwrap).collect();
        out!("{}", Value::from(list));
        call("throw", g.throw(Exception::ValueError("late".into())));
        out!("{}", state(&g));
        call("throw again", g.throw(Exception::KeyError("again".into())));
    }
}

/// A throw the body handles by returning: `throw` raises StopIteration(value).
mod throw_caught_then_return {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except ValueError:
            print("handled")
            return "handled value"
    g = gen()
    next(g)
    call("throw", g.throw, ValueError("x"))
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| match co.yield_(1.into()) {
            Err(e) if e.is_instance(&ValueError) => {
                out!("handled");
                Ok("handled value".into())
            }
            other => other.map(|_| Value::None),
        });
        g.next().unwrap();
        call("throw", g.throw(Exception::ValueError("x".into())));
        out!("{}", state(&g));
    }
}

/// PEP 479: a StopIteration thrown in and not caught becomes RuntimeError.
mod throw_stop_iteration_is_runtime_error {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        yield 2
    g = gen()
    next(g)
    call("throw", g.throw, StopIteration("x"))
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            co.yield_(2.into())?;
            Ok(Value::None)
        });
        g.next().unwrap();
        call("throw", g.throw(Exception::StopIteration("x".into())));
        out!("{}", state(&g));
    }
}

/// PEP 479 also for a StopIteration thrown into a just-started generator:
/// CPython 3.11 converts it; 3.12 and 3.13 let it escape unchanged (a PEP 479
/// hole, CPython issue gh-152685, whose fix converts it as 3.11 does). We
/// follow PEP 479.
mod throw_stop_iteration_into_just_started {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
    g = gen()
    try:
        g.throw(StopIteration("early"))
    except BaseException as e:
        if sys.version_info >= (3, 12) and type(e) is StopIteration:
            e = RuntimeError("generator raised StopIteration")  # gh-152685
        print("throw !!", line(e))
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        call("throw", g.throw(Exception::StopIteration("early".into())));
        out!("{}", state(&g));
    }
}

/// An `except` clause that raises something else: that is what propagates.
mod throw_handler_raises_other {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except ValueError as e:
            print("translating", line(e))
            raise KeyError("k")
    g = gen()
    next(g)
    call("throw", g.throw, ValueError("v"))
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| match co.yield_(1.into()) {
            Err(e) if e.is_instance(&ValueError) => {
                out!("translating {}", e.line());
                Err(Exception::KeyError("k".into()))
            }
            other => other.map(|_| Value::None),
        });
        g.next().unwrap();
        call("throw", g.throw(Exception::ValueError("v".into())));
        out!("{}", state(&g));
    }
}

/// `throw(GeneratorExit)` is not `close()`: the GeneratorExit propagates out.
mod throw_generator_exit_directly {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        finally:
            print("cleanup")
    g = gen()
    next(g)
    call("throw GeneratorExit", g.throw, GeneratorExit())
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let r = co.yield_(1.into());
            out!("cleanup");
            r?;
            Ok(Value::None)
        });
        g.next().unwrap();
        call("throw GeneratorExit", g.throw(Exception::GeneratorExit()));
        out!("{}", state(&g));
    }
}

/// A program's own exception class, caught by class.
mod throw_user_exception_class {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        while True:
            try:
                yield "waiting"
            except MyError as e:
                print("mine:", line(e))
                yield "recovered"
    g = gen()
    next(g)
    call("throw MyError", g.throw, MyError("boom"))
    call("next", next, g)
    call("throw ValueError", g.throw, ValueError("not mine"))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| loop {
            match co.yield_("waiting".into()) {
                Ok(_) => {}
                Err(e) if e.name() == "MyError" => {
                    out!("mine: {}", e.line());
                    co.yield_("recovered".into())?;
                }
                Err(e) => return Err(e),
            }
        });
        g.next().unwrap();
        call("throw MyError", g.throw(my_error("boom")));
        call("next", g.next());
        call(
            "throw ValueError",
            g.throw(Exception::ValueError("not mine".into())),
        );
    }
}

/// `except Exception` does not catch GeneratorExit (a BaseException), so
/// close() passes it; a ValueError is caught by the same clause.
mod except_exception_skips_generator_exit {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        while True:
            try:
                yield "waiting"
            except Exception as e:
                print("caught", line(e))
    g = gen()
    next(g)
    call("throw ValueError", g.throw, ValueError("v"))
    call("close", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| loop {
            match co.yield_("waiting".into()) {
                Ok(_) => {}
                Err(e) if e.is_exception() => out!("caught {}", e.line()),
                Err(e) => return Err(e),
            }
        });
        g.next().unwrap();
        call(
            "throw ValueError",
            g.throw(Exception::ValueError("v".into())),
        );
        call("close", g.close());
        out!("{}", state(&g));
    }
}

// ---------------------------------------------------------------------------
// close
// ---------------------------------------------------------------------------

/// close() on a just-started generator: None, closed, body never runs.
mod close_just_started {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("body runs")
        yield 1
    g = gen()
    call("close", g.close)
    print(state(g))
    call("next", next, g)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            out!("body runs");
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        call("close", g.close());
        out!("{}", state(&g));
        call("next", g.next());
    }
}

/// close() on a finished generator is a no-op returning None.
mod close_finished {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        return "r"
    g = gen()
    print(list(g))
    call("close", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Ok("r".into())
        });
        let list: Vec<Value> = g.clone().map(Result::unwrap).collect();
        out!("{}", Value::from(list));
        call("close", g.close());
        out!("{}", state(&g));
    }
}

/// close() on a suspended generator runs its `finally`, then returns None.
mod close_suspended_runs_finally {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
            print("never")
        finally:
            print("cleanup")
    g = gen()
    next(g)
    call("close", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let r = co.yield_(1.into());
            if r.is_ok() {
                out!("never");
            }
            out!("cleanup");
            r.map(|_| Value::None)
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
    }
}

/// A second close() does nothing.
mod close_twice {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        finally:
            print("cleanup")
    g = gen()
    next(g)
    call("close", g.close)
    call("close again", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let _finally = Finally("cleanup");
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        g.next().unwrap();
        call("close", g.close());
        call("close again", g.close());
        out!("{}", state(&g));
    }
}

/// Yielding after GeneratorExit: close() raises RuntimeError and the
/// generator stays suspended at that yield; the next close() gets through.
mod close_ignored_generator_exit {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit:
            print("ignoring GeneratorExit")
            yield 2
        print("never")
    g = gen()
    next(g)
    call("close", g.close)
    print(state(g))
    call("close again", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            match co.yield_(1.into()) {
                Err(e) if e.is_instance(&GeneratorExit) => {
                    out!("ignoring GeneratorExit");
                    co.yield_(2.into())?;
                }
                other => {
                    other?;
                }
            }
            out!("never");
            Ok(Value::None)
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
        call("close again", g.close());
        out!("{}", state(&g));
    }
}

/// A yield inside `finally` during close() is ignoring GeneratorExit too.
mod close_yield_in_finally {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        finally:
            print("finally yields")
            yield "from finally"
    g = gen()
    next(g)
    call("close", g.close)
    call("next", next, g)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let r = co.yield_(1.into());
            out!("finally yields");
            co.yield_("from finally".into())?;
            r.map(|_| Value::None)
        });
        g.next().unwrap();
        call("close", g.close());
        // Resumed normally, the finally ends and re-raises the pending
        // GeneratorExit, which leaves the body.
        call("next", g.next());
        out!("{}", state(&g));
    }
}

/// close() returns the value the body returns on GeneratorExit (CPython
/// 3.13; 3.11/3.12 return None -- see NOTES.md). `close313` in the Python
/// prelude gives 3.13's answer on any version.
mod close_returns_value_313 {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit:
            print("closing")
            return "bye"
    g = gen()
    next(g)
    call("close", close313, g)
    print(state(g))
    call("close again", close313, g)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| match co.yield_(1.into()) {
            Err(e) if e.is_instance(&GeneratorExit) => {
                out!("closing");
                Ok("bye".into())
            }
            other => other.map(|_| Value::None),
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
        call("close again", g.close());
    }
}

/// A plain `return` on GeneratorExit: close() returns None in every version.
mod close_caught_and_returned_none {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit:
            print("closing quietly")
            return
    g = gen()
    next(g)
    call("close", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| match co.yield_(1.into()) {
            Err(e) if e.is_instance(&GeneratorExit) => {
                out!("closing quietly");
                Ok(Value::None)
            }
            other => other.map(|_| Value::None),
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
    }
}

/// Another exception raised while closing propagates out of close().
mod close_body_raises_other {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit:
            raise ValueError("refusing to close")
    g = gen()
    next(g)
    call("close", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| match co.yield_(1.into()) {
            Err(e) if e.is_instance(&GeneratorExit) => {
                Err(Exception::ValueError("refusing to close".into()))
            }
            other => other.map(|_| Value::None),
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
    }
}

// ---------------------------------------------------------------------------
// dropping (Python: `del g`, the generator's finalizer)
// ---------------------------------------------------------------------------

/// Dropping a suspended generator closes it: its cleanup runs at the drop.
mod drop_suspended_runs_cleanup {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        finally:
            print("cleanup")
    g = gen()
    next(g)
    print("before del")
    del g
    print("after del")
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let r = co.yield_(1.into());
            out!("cleanup");
            r.map(|_| Value::None)
        });
        g.next().unwrap();
        out!("before del");
        drop(g);
        out!("after del");
    }
}

/// The same with a drop guard as `finally`: it runs on GeneratorExit too.
mod drop_suspended_runs_guard {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            x = yield 1
            print("got", x)
            yield 2
        finally:
            print("guard dropped")
    g = gen()
    next(g)
    g.send("v")
    del g
    print("after del")
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let _finally = Finally("guard dropped");
            let x = co.yield_(1.into())?;
            out!("got {x}");
            co.yield_(2.into())?;
            Ok(Value::None)
        });
        g.next().unwrap();
        g.send("v".into()).unwrap();
        drop(g);
        out!("after del");
    }
}

/// Dropping a just-started generator runs nothing of its body.
mod drop_just_started_runs_nothing {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            print("body runs")
            yield 1
        finally:
            print("cleanup")
    g = gen()
    del g
    print("after del")
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let _finally = Finally("cleanup");
            out!("body runs");
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        drop(g);
        out!("after del");
    }
}

/// Dropping a finished generator runs nothing again.
mod drop_finished_runs_nothing {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        finally:
            print("cleanup")
    g = gen()
    print(list(g))
    del g
    print("after del")
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let _finally = Finally("cleanup");
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        let list: Vec<Value> = g.clone().map(Result::unwrap).collect();
        out!("{}", Value::from(list));
        drop(g);
        out!("after del");
    }
}

/// The finalizer's close() lets the body handle GeneratorExit and return.
mod drop_body_handles_exit {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit:
            print("finalizing")
            return "unused"
    g = gen()
    next(g)
    del g
    print("after del")
    "#;
    pub fn rust() {
        let g = Generator::new(|co| match co.yield_(1.into()) {
            Err(e) if e.is_instance(&GeneratorExit) => {
                out!("finalizing");
                Ok("unused".into())
            }
            other => other.map(|_| Value::None),
        });
        g.next().unwrap();
        drop(g);
        out!("after del");
    }
}

/// Dropping a delegating generator closes the whole chain, innermost first.
mod drop_delegator_closes_chain {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "from inner"
        finally:
            print("inner cleanup")
    def outer():
        try:
            yield from inner()
        finally:
            print("outer cleanup")
    g = outer()
    call("next", next, g)
    del g
    print("after del")
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let _finally = Finally("inner cleanup");
        co.yield_("from inner".into())?;
        Ok(Value::None)
    }
    pub fn pep380() {
        let g = Generator::new(|co| {
            let _finally = Finally("outer cleanup");
            co.yield_from(&Generator::new(inner))
        });
        call("next", g.next());
        drop(g);
        out!("after del");
    }
    pub fn same_fiber() {
        let g = Generator::new(|co| {
            let _finally = Finally("outer cleanup");
            inner(co)
        });
        call("next", g.next());
        drop(g);
        out!("after del");
    }
}

// ---------------------------------------------------------------------------
// exceptions raised by a body
// ---------------------------------------------------------------------------

/// An exception escaping the body reaches the caller and closes the generator.
mod exception_propagates_and_closes {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        print("dividing")
        1 / 0
        yield 2
    g = gen()
    call("next", next, g)
    call("next", next, g)
    print(state(g))
    call("next", next, g)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            out!("dividing");
            divide(1, 0)?;
            co.yield_(2.into())?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
        out!("{}", state(&g));
        call("next", g.next());
    }
}

/// An exception before the first yield: the very first next() raises it.
mod exception_before_first_yield {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("starting")
        raise KeyError("missing")
        yield 1
    g = gen()
    call("next", next, g)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|_co| {
            out!("starting");
            Err(Exception::KeyError("missing".into()))
        });
        call("next", g.next());
        out!("{}", state(&g));
    }
}

/// PEP 479: `raise StopIteration` in a body becomes RuntimeError.
mod stop_iteration_in_body_pep479 {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        raise StopIteration("sneaky")
    g = gen()
    call("next", next, g)
    call("next", next, g)
    print(state(g))
    call("next", next, g)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Err(Exception::StopIteration("sneaky".into()))
        });
        call("next", g.next());
        call("next", g.next());
        out!("{}", state(&g));
        call("next", g.next());
    }
}

/// PEP 479 again: `next(exhausted)` inside a body, uncaught.
mod next_of_exhausted_inside_body_pep479 {
    use super::*;
    pub const PY: &str = r#"
    def empty():
        return "nothing"
        yield
    def gen():
        e = empty()
        yield "before"
        x = next(e)
        yield x
    g = gen()
    call("next", next, g)
    call("next", next, g)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let e = Generator::named("empty", |_co| Ok("nothing".into()));
            co.yield_("before".into())?;
            let x = e.next()?;
            co.yield_(x)?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
        out!("{}", state(&g));
    }
}

/// An exception caught inside the body does not end it.
mod exception_caught_inside_body {
    use super::*;
    pub const PY: &str = r#"
    def risky(n):
        if n == 2:
            raise ValueError(f"bad {n}")
        return n * 10
    def gen():
        for n in range(4):
            try:
                yield risky(n)
            except ValueError as e:
                print("skipping:", line(e))
    print(list(gen()))
    "#;
    fn risky(n: i64) -> PyResult<Value> {
        if n == 2 {
            return Err(Exception::ValueError(format!("bad {n}")));
        }
        Ok((n * 10).into())
    }
    pub fn rust() {
        let g = Generator::new(|co| {
            for n in 0..4 {
                match risky(n) {
                    Ok(v) => {
                        co.yield_(v)?;
                    }
                    Err(e) if e.is_instance(&ValueError) => out!("skipping: {}", e.line()),
                    Err(e) => return Err(e),
                }
            }
            Ok(Value::None)
        });
        let list: Vec<Value> = g.map(Result::unwrap).collect();
        out!("{}", Value::from(list));
    }
}

/// The value sent in decides the exception: `send` raises it.
mod exception_from_sent_value {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        table = {"a": 1}
        key = yield "key?"
        while True:
            key = yield table[key]
    g = gen()
    call("next", next, g)
    call("send a", g.send, "a")
    call("send b", g.send, "b")
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let mut key = co.yield_("key?".into())?;
            loop {
                let v = match key.as_str() {
                    Some("a") => Value::Int(1),
                    _ => return Err(Exception::KeyError(key.to_string())),
                };
                key = co.yield_(v)?;
            }
        });
        call("next", g.next());
        call("send a", g.send("a".into()));
        call("send b", g.send("b".into()));
        out!("{}", state(&g));
    }
}

// ---------------------------------------------------------------------------
// yield from
// ---------------------------------------------------------------------------

/// How a twin writes `yield from sub()`.
#[derive(Clone, Copy)]
enum Via {
    /// `co.yield_from(&Generator::named(name, sub))`: PEP 380's expansion,
    /// the sub-generator on a fiber of its own.
    Pep380,
    /// `co.yield_from_fn(sub)`: the sub-generator's body called as a plain
    /// function on the delegator's fiber; its yields suspend the whole stack.
    SameFiber,
}

impl Via {
    /// `yield from name()` where `sub` is `name`'s body.
    fn yield_from<F>(self, co: &Co, name: &str, sub: F) -> PyResult<Value>
    where
        F: FnOnce(&Co<'_>) -> PyResult<Value> + 'static,
    {
        match self {
            Via::Pep380 => co.yield_from(&Generator::named(name, sub)),
            Via::SameFiber => co.yield_from_fn(sub),
        }
    }
}

/// Values out, sends in, and the sub-generator's return value as the value
/// of `yield from`.
mod yield_from_values_sends_and_result {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        print("inner start")
        x = yield "i1"
        print("inner got", x)
        y = yield "i2"
        print("inner got", y)
        return "inner result"
    def outer():
        print("outer start")
        r = yield from inner()
        print("outer got", r)
        z = yield "o1"
        print("outer got", z)
        return "outer result"
    g = outer()
    call("next", next, g)
    call("send a", g.send, "a")
    call("send b", g.send, "b")
    call("send c", g.send, "c")
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        out!("inner start");
        let x = co.yield_("i1".into())?;
        out!("inner got {x}");
        let y = co.yield_("i2".into())?;
        out!("inner got {y}");
        Ok("inner result".into())
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            out!("outer start");
            let r = via.yield_from(co, "inner", inner)?;
            out!("outer got {r}");
            let z = co.yield_("o1".into())?;
            out!("outer got {z}");
            Ok("outer result".into())
        });
        call("next", g.next());
        call("send a", g.send("a".into()));
        call("send b", g.send("b".into()));
        call("send c", g.send("c".into()));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// Three deep: sends reach the innermost, return values climb back up.
mod yield_from_three_deep {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        x = yield "inner 1"
        print("inner got", x)
        y = yield "inner 2"
        print("inner got", y)
        return "i"
    def middle():
        r = yield from inner()
        print("middle got", r)
        return r + "m"
    def outer():
        r = yield from middle()
        print("outer got", r)
        return r + "o"
    g = outer()
    call("next", next, g)
    call("send 1", g.send, 1)
    call("send 2", g.send, 2)
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let x = co.yield_("inner 1".into())?;
        out!("inner got {x}");
        let y = co.yield_("inner 2".into())?;
        out!("inner got {y}");
        Ok("i".into())
    }
    fn middle(co: &Co, via: Via) -> PyResult<Value> {
        let r = via.yield_from(co, "inner", inner)?;
        out!("middle got {r}");
        Ok(format!("{r}m").into())
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let r = via.yield_from(co, "middle", move |co| middle(co, via))?;
            out!("outer got {r}");
            Ok(format!("{r}o").into())
        });
        call("next", g.next());
        call("send 1", g.send(1.into()));
        call("send 2", g.send(2.into()));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A throw into the outermost is handled by the innermost sub-generator.
mod yield_from_throw_handled_innermost {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        while True:
            try:
                x = yield "inner waiting"
                print("inner got", x)
            except ValueError as e:
                print("inner handled", line(e))
                yield "inner recovered"
    def middle():
        yield from inner()
    def outer():
        yield from middle()
    g = outer()
    call("next", next, g)
    call("throw", g.throw, ValueError("deep"))
    call("send x", g.send, "x")
    call("send y", g.send, "y")
    call("close", g.close)
    print(state(g))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        loop {
            match co.yield_("inner waiting".into()) {
                Ok(x) => out!("inner got {x}"),
                Err(e) if e.is_instance(&ValueError) => {
                    out!("inner handled {}", e.line());
                    co.yield_("inner recovered".into())?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            via.yield_from(co, "middle", move |co| {
                via.yield_from(co, "inner", inner)?;
                Ok(Value::None)
            })?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("throw", g.throw(Exception::ValueError("deep".into())));
        call("send x", g.send("x".into()));
        call("send y", g.send("y".into()));
        call("close", g.close());
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A throw the innermost does not handle ends it and is caught one level up.
mod yield_from_throw_caught_by_middle {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner waiting"
        finally:
            print("inner cleanup")
    def middle():
        try:
            yield from inner()
        except ValueError as e:
            print("middle handled", line(e))
        yield "middle recovered"
    def outer():
        r = yield from middle()
        print("outer got", r)
    g = outer()
    call("next", next, g)
    call("throw", g.throw, ValueError("deep"))
    call("next", next, g)
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let _finally = Finally("inner cleanup");
        co.yield_("inner waiting".into())?;
        Ok(Value::None)
    }
    fn middle(co: &Co, via: Via) -> PyResult<Value> {
        match via.yield_from(co, "inner", inner) {
            Err(e) if e.is_instance(&ValueError) => out!("middle handled {}", e.line()),
            other => {
                other?;
            }
        }
        co.yield_("middle recovered".into())?;
        Ok(Value::None)
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let r = via.yield_from(co, "middle", move |co| middle(co, via))?;
            out!("outer got {r}");
            Ok(Value::None)
        });
        call("next", g.next());
        call("throw", g.throw(Exception::ValueError("deep".into())));
        call("next", g.next());
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// close() of the outermost closes the chain: innermost cleanup first.
mod yield_from_close_chain_order {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
        finally:
            print("inner cleanup")
    def middle():
        try:
            yield from inner()
        finally:
            print("middle cleanup")
    def outer():
        try:
            yield from middle()
        finally:
            print("outer cleanup")
    g = outer()
    call("next", next, g)
    call("close", g.close)
    print(state(g))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let _finally = Finally("inner cleanup");
        co.yield_("inner".into())?;
        Ok(Value::None)
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let _finally = Finally("outer cleanup");
            via.yield_from(co, "middle", move |co| {
                let _finally = Finally("middle cleanup");
                via.yield_from(co, "inner", inner)
            })
        });
        call("next", g.next());
        call("close", g.close());
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A sub-generator that yields on GeneratorExit during the delegator's
/// close(): its close() raises RuntimeError inside the delegator, which
/// ends; the sub-generator is left suspended. (PEP 380 only: on one fiber
/// there is no separate sub-generator to be left behind -- see NOTES.md.)
mod yield_from_sub_ignores_generator_exit {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
        except GeneratorExit:
            print("inner ignores GeneratorExit")
            yield "inner still here"
    def outer():
        try:
            yield from i
        finally:
            print("outer cleanup")
    i = inner()
    g = outer()
    call("next", next, g)
    call("close", g.close)
    print("outer", state(g), "inner", state(i))
    call("inner close", i.close)
    print("inner", state(i))
    "#;
    pub fn pep380() {
        let i = Generator::named("inner", |co| {
            match co.yield_("inner".into()) {
                Err(e) if e.is_instance(&GeneratorExit) => {
                    out!("inner ignores GeneratorExit");
                    co.yield_("inner still here".into())?;
                }
                other => {
                    other?;
                }
            }
            Ok(Value::None)
        });
        let sub = i.clone();
        let g = Generator::named("outer", move |co| {
            let _finally = Finally("outer cleanup");
            co.yield_from(&sub)
        });
        call("next", g.next());
        call("close", g.close());
        out!("outer {} inner {}", state(&g), state(&i));
        call("inner close", i.close());
        out!("inner {}", state(&i));
    }
}

/// `yield from` a generator that is already exhausted: result None at once.
mod yield_from_exhausted_generator {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        yield 1
        return "spent"
    def outer(s):
        r = yield from s
        print("yield from exhausted gave", r)
        yield "outer own"
    s = sub()
    print(list(s))
    g = outer(s)
    call("next", next, g)
    call("next", next, g)
    "#;
    pub fn pep380() {
        let s = Generator::named("sub", |co| {
            co.yield_(1.into())?;
            Ok("spent".into())
        });
        let list: Vec<Value> = s.clone().map(Result::unwrap).collect();
        out!("{}", Value::from(list));
        let sub = s.clone();
        let g = Generator::named("outer", move |co| {
            let r = co.yield_from(&sub)?;
            out!("yield from exhausted gave {r}");
            co.yield_("outer own".into())?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
    }
}

/// A sub-generator that returns before any yield.
mod yield_from_sub_returns_at_once {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        print("inner runs")
        return 5
        yield
    def outer():
        r = yield from inner()
        print("got", r)
        yield r + 1
    g = outer()
    call("next", next, g)
    call("next", next, g)
    "#;
    fn inner(_co: &Co) -> PyResult<Value> {
        out!("inner runs");
        Ok(5.into())
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let r = via.yield_from(co, "inner", inner)?;
            out!("got {r}");
            co.yield_((int(&r) + 1).into())?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// `send(42)` to a delegator over a list iterator: AttributeError, raised
/// in the delegator at its `yield from`.
mod yield_from_list_send_attribute_error {
    use super::*;
    pub const PY: &str = r#"
    def outer():
        try:
            yield from [1, 2, 3]
        finally:
            print("outer cleanup")
    g = outer()
    call("next", next, g)
    print(yf(g))
    call("send 42", g.send, 42)
    print(state(g), yf(g))
    "#;
    pub fn rust() {
        let g = Generator::named("outer", |co| {
            let _finally = Finally("outer cleanup");
            co.yield_from_list(vec![1.into(), 2.into(), 3.into()])
        });
        call("next", g.next());
        out!("{}", yf(&g));
        call("send 42", g.send(42.into()));
        out!("{} {}", state(&g), yf(&g));
    }
}

/// `yield from range(3)`: the same rule for another iterator type.
mod yield_from_range_send_attribute_error {
    use super::*;
    pub const PY: &str = r#"
    def outer():
        r = yield from range(3)
        print("never", r)
    g = outer()
    call("next", next, g)
    call("next", next, g)
    print(yf(g))
    call("send 'x'", g.send, "x")
    "#;
    pub fn rust() {
        let g = Generator::named("outer", |co| {
            let r = co.yield_from_iter("range_iterator", (0..3).map(Value::from))?;
            out!("never {r}");
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
        out!("{}", yf(&g));
        call("send 'x'", g.send("x".into()));
    }
}

/// `yield from` a list with next(): its items, then result None.
mod yield_from_list_items_and_result {
    use super::*;
    pub const PY: &str = r#"
    def outer():
        r = yield from ["a", "b"]
        print("result", r)
        yield "c"
    print(list(outer()))
    "#;
    pub fn rust() {
        let g = Generator::named("outer", |co| {
            let r = co.yield_from_list(vec!["a".into(), "b".into()])?;
            out!("result {r}");
            co.yield_("c".into())?;
            Ok(Value::None)
        });
        let list: Vec<Value> = g.map(Result::unwrap).collect();
        out!("{}", Value::from(list));
    }
}

/// A list iterator has no throw(): the exception is raised in the delegator.
mod yield_from_list_throw_lands_in_delegator {
    use super::*;
    pub const PY: &str = r#"
    def outer():
        try:
            yield from [1, 2, 3]
        except ValueError as e:
            print("outer caught", line(e))
            yield "caught"
    g = outer()
    call("next", next, g)
    call("throw", g.throw, ValueError("v"))
    print(state(g), yf(g))
    call("next", next, g)
    "#;
    pub fn rust() {
        let g = Generator::named("outer", |co| {
            match co.yield_from_list(vec![1.into(), 2.into(), 3.into()]) {
                Err(e) if e.is_instance(&ValueError) => {
                    out!("outer caught {}", e.line());
                    co.yield_("caught".into())?;
                }
                other => {
                    other?;
                }
            }
            Ok(Value::None)
        });
        call("next", g.next());
        call("throw", g.throw(Exception::ValueError("v".into())));
        out!("{} {}", state(&g), yf(&g));
        call("next", g.next());
    }
}

/// An uncaught throw into a delegator over a list ends the delegator.
mod yield_from_list_throw_uncaught {
    use super::*;
    pub const PY: &str = r#"
    def outer():
        yield from [1, 2]
    g = outer()
    call("next", next, g)
    call("throw", g.throw, KeyError("k"))
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::named("outer", |co| co.yield_from_list(vec![1.into(), 2.into()]));
        call("next", g.next());
        call("throw", g.throw(Exception::KeyError("k".into())));
        out!("{}", state(&g));
    }
}

/// close() of a delegator over a list: nothing to close but the delegator.
mod yield_from_list_close {
    use super::*;
    pub const PY: &str = r#"
    def outer():
        try:
            yield from [1, 2, 3]
        finally:
            print("outer cleanup")
    g = outer()
    call("next", next, g)
    call("close", g.close)
    print(state(g), yf(g))
    "#;
    pub fn rust() {
        let g = Generator::named("outer", |co| {
            let _finally = Finally("outer cleanup");
            co.yield_from_list(vec![1.into(), 2.into(), 3.into()])
        });
        call("next", g.next());
        call("close", g.close());
        out!("{} {}", state(&g), yf(&g));
    }
}

/// `gi_yieldfrom` at each point: None before the start, the sub-generator
/// while suspended in `yield from` (None while running), the next target in
/// the next `yield from`, None after.
mod gi_yieldfrom_at_each_point {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        print("inside inner: outer", yf(o), "| inner", yf(i))
        yield "i"
    def other():
        yield "other"
    def outer():
        yield from i
        yield from other()
        yield from ["x"]
        yield "own"
    i = inner()
    o = outer()
    print("created:", yf(o))
    call("next", next, o)
    print("in inner:", yf(o), o.gi_yieldfrom is i, yf(i))
    call("next", next, o)
    print("in other:", yf(o))
    call("next", next, o)
    print("in list:", yf(o))
    call("next", next, o)
    print("own yield:", yf(o))
    call("next", next, o)
    print("closed:", yf(o))
    "#;
    pub fn pep380() {
        let o_slot = slot();
        let i_slot = slot();
        let (os, is) = (o_slot.clone(), i_slot.clone());
        let i = Generator::named("inner", move |co| {
            out!(
                "inside inner: outer {} | inner {}",
                yf(&get(&os)),
                yf(&get(&is))
            );
            co.yield_("i".into())?;
            Ok(Value::None)
        });
        let sub = i.clone();
        let o = Generator::named("outer", move |co| {
            co.yield_from(&sub)?;
            co.yield_from(&Generator::named("other", |co| {
                co.yield_("other".into())?;
                Ok(Value::None)
            }))?;
            co.yield_from_list(vec!["x".into()])?;
            co.yield_("own".into())?;
            Ok(Value::None)
        });
        *o_slot.borrow_mut() = Some(o.clone());
        *i_slot.borrow_mut() = Some(i.clone());
        let is_i = |o: &Generator| match o.gi_yieldfrom() {
            Some(YieldFrom::Generator(g)) if g.is(&i) => "True",
            _ => "False",
        };
        out!("created: {}", yf(&o));
        call("next", o.next());
        out!("in inner: {} {} {}", yf(&o), is_i(&o), yf(&i));
        call("next", o.next());
        out!("in other: {}", yf(&o));
        call("next", o.next());
        out!("in list: {}", yf(&o));
        call("next", o.next());
        out!("own yield: {}", yf(&o));
        call("next", o.next());
        out!("closed: {}", yf(&o));
        o_slot.borrow_mut().take();
        i_slot.borrow_mut().take();
    }
}

/// `inspect.getgeneratorstate` of every generator of a three-deep chain, at
/// each point: created, running (seen from the innermost), suspended, after
/// a throw the innermost handles, closed.
mod states_of_chain_at_each_point {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        print("in inner:", state(o), state(m), state(i), o.gi_running, m.gi_running, i.gi_running)
        try:
            yield "i1"
        except ValueError:
            print("inner handling:", state(o), state(m), state(i))
            yield "i2"
    def middle():
        yield from i
    def outer():
        yield from m
    i = inner()
    m = middle()
    o = outer()
    print("created:", state(o), state(m), state(i))
    call("next", next, o)
    print("suspended:", state(o), state(m), state(i))
    call("throw", o.throw, ValueError("v"))
    print("after throw:", state(o), state(m), state(i))
    call("close", o.close)
    print("closed:", state(o), state(m), state(i))
    "#;
    pub fn pep380() {
        let slots = [slot(), slot(), slot()];
        let [o_slot, m_slot, i_slot] = slots.clone();
        let states = move || {
            format!(
                "{} {} {}",
                state(&get(&o_slot)),
                state(&get(&m_slot)),
                state(&get(&i_slot))
            )
        };
        let in_body = states.clone();
        let (os, ms, is) = (slots[0].clone(), slots[1].clone(), slots[2].clone());
        let i = Generator::named("inner", move |co| {
            let py = |g: &Slot| if get(g).gi_running() { "True" } else { "False" };
            out!(
                "in inner: {} {} {} {}",
                in_body(),
                py(&os),
                py(&ms),
                py(&is)
            );
            match co.yield_("i1".into()) {
                Err(e) if e.is_instance(&ValueError) => {
                    out!("inner handling: {}", in_body());
                    co.yield_("i2".into())?;
                }
                other => {
                    other?;
                }
            }
            Ok(Value::None)
        });
        let sub = i.clone();
        let m = Generator::named("middle", move |co| co.yield_from(&sub));
        let sub = m.clone();
        let o = Generator::named("outer", move |co| co.yield_from(&sub));
        *slots[0].borrow_mut() = Some(o.clone());
        *slots[1].borrow_mut() = Some(m);
        *slots[2].borrow_mut() = Some(i);
        out!("created: {}", states());
        call("next", o.next());
        out!("suspended: {}", states());
        call("throw", o.throw(Exception::ValueError("v".into())));
        out!("after throw: {}", states());
        call("close", o.close());
        out!("closed: {}", states());
        for s in &slots {
            s.borrow_mut().take();
        }
    }
}

/// The delegator catches what its sub-generator raised.
mod yield_from_delegator_catches_sub_exception {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        yield "inner"
        raise ValueError("inner failed")
    def outer():
        try:
            yield from inner()
        except ValueError as e:
            print("outer caught", line(e))
        yield "recovered"
    g = outer()
    call("next", next, g)
    call("next", next, g)
    call("next", next, g)
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        co.yield_("inner".into())?;
        Err(Exception::ValueError("inner failed".into()))
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            match via.yield_from(co, "inner", inner) {
                Err(e) if e.is_instance(&ValueError) => out!("outer caught {}", e.line()),
                other => {
                    other?;
                }
            }
            co.yield_("recovered".into())?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
        call("next", g.next());
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A sub-generator raising on close: the delegator's close() raises it.
mod yield_from_close_sub_raises {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
        except GeneratorExit:
            print("inner refuses")
            raise ValueError("inner refuses to close")
    def outer():
        try:
            yield from inner()
        finally:
            print("outer cleanup")
    g = outer()
    call("next", next, g)
    call("close", g.close)
    print(state(g))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        match co.yield_("inner".into()) {
            Err(e) if e.is_instance(&GeneratorExit) => {
                out!("inner refuses");
                Err(Exception::ValueError("inner refuses to close".into()))
            }
            other => other.map(|_| Value::None),
        }
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let _finally = Finally("outer cleanup");
            via.yield_from(co, "inner", inner)
        });
        call("next", g.next());
        call("close", g.close());
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A sub-generator returning a value on close: PEP 380 still raises
/// GeneratorExit in the delegator, so the value is lost and the delegator's
/// close() returns None. (PEP 380 only: on one fiber the return value would
/// reach the delegator -- see NOTES.md.)
mod yield_from_close_sub_returns_value {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
        except GeneratorExit:
            print("inner returns on close")
            return "inner bye"
    def outer():
        try:
            r = yield from i
            print("never", r)
        finally:
            print("outer cleanup")
    i = inner()
    g = outer()
    call("next", next, g)
    call("close", close313, g)
    print(state(g), state(i))
    "#;
    pub fn pep380() {
        let i = Generator::named("inner", |co| match co.yield_("inner".into()) {
            Err(e) if e.is_instance(&GeneratorExit) => {
                out!("inner returns on close");
                Ok("inner bye".into())
            }
            other => other.map(|_| Value::None),
        });
        let sub = i.clone();
        let g = Generator::named("outer", move |co| {
            let _finally = Finally("outer cleanup");
            let r = co.yield_from(&sub)?;
            out!("never {r}");
            Ok(Value::None)
        });
        call("next", g.next());
        call("close", g.close());
        out!("{} {}", state(&g), state(&i));
    }
}

/// `yield from` the generator itself: it is running, so ValueError.
mod yield_from_itself {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        print("delegating to myself")
        yield from me
    me = gen()
    call("next", next, me)
    print(state(me))
    "#;
    pub fn pep380() {
        let me = Generator::named("gen", |co| {
            out!("delegating to myself");
            co.yield_from(&co.generator().unwrap())
        });
        call("next", me.next());
        out!("{}", state(&me));
    }
}

/// `yield from` a sub-generator someone already advanced: delegation picks
/// up where it is.
mod yield_from_started_sub {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        yield "s1"
        yield "s2"
        return "s done"
    def outer(s):
        r = yield from s
        print("outer got", r)
    s = sub()
    call("next sub", next, s)
    g = outer(s)
    call("next", next, g)
    call("next", next, g)
    "#;
    pub fn pep380() {
        let s = Generator::named("sub", |co| {
            co.yield_("s1".into())?;
            co.yield_("s2".into())?;
            Ok("s done".into())
        });
        call("next sub", s.next());
        let sub = s.clone();
        let g = Generator::named("outer", move |co| {
            let r = co.yield_from(&sub)?;
            out!("outer got {r}");
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
    }
}

/// The just-started rule holds for a delegator too.
mod yield_from_send_before_start {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        x = yield "inner"
        print("inner got", x)
    def outer():
        print("outer starts")
        yield from inner()
    g = outer()
    call("send 1", g.send, 1)
    call("next", next, g)
    call("send 2", g.send, 2)
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let x = co.yield_("inner".into())?;
        out!("inner got {x}");
        Ok(Value::None)
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            out!("outer starts");
            via.yield_from(co, "inner", inner)
        });
        call("send 1", g.send(1.into()));
        call("next", g.next());
        call("send 2", g.send(2.into()));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A throw the sub-generator answers by returning: `yield from` evaluates to
/// that value and the delegator carries on.
mod yield_from_throw_sub_returns {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
        except ValueError as e:
            print("inner rescues", line(e))
            return "rescued"
    def outer():
        r = yield from inner()
        print("outer got", r)
        yield r
    g = outer()
    call("next", next, g)
    call("throw", g.throw, ValueError("v"))
    call("next", next, g)
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        match co.yield_("inner".into()) {
            Err(e) if e.is_instance(&ValueError) => {
                out!("inner rescues {}", e.line());
                Ok("rescued".into())
            }
            other => other.map(|_| Value::None),
        }
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let r = via.yield_from(co, "inner", inner)?;
            out!("outer got {r}");
            co.yield_(r)?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("throw", g.throw(Exception::ValueError("v".into())));
        call("next", g.next());
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// PEP 479 in a sub-generator: its StopIteration is not a return, the chain
/// fails with RuntimeError.
mod yield_from_stop_iteration_in_sub {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        yield "inner"
        raise StopIteration("sneaky")
    def outer():
        r = yield from inner()
        print("never", r)
        yield "never"
    g = outer()
    call("next", next, g)
    call("next", next, g)
    print(state(g))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        co.yield_("inner".into())?;
        Err(Exception::StopIteration("sneaky".into()))
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let r = via.yield_from(co, "inner", inner)?;
            out!("never {r}");
            co.yield_("never".into())?;
            Ok(Value::None)
        });
        call("next", g.next());
        call("next", g.next());
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A sub-generator that returns a value on GeneratorExit: the delegator
/// still gets GeneratorExit at its `yield from` (PEP 380 closes the sub, then
/// raises), and can see it there.
mod yield_from_sub_returns_on_close_delegator_sees_exit {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
        except GeneratorExit:
            print("inner returns on close")
            return "inner bye"
    def outer():
        try:
            r = yield from inner()
            print("never", r)
        except GeneratorExit:
            print("outer sees GeneratorExit")
            return "outer bye"
    g = outer()
    call("next", next, g)
    call("close", close313, g)
    print(state(g))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        match co.yield_("inner".into()) {
            Err(e) if e.is_instance(&GeneratorExit) => {
                out!("inner returns on close");
                Ok("inner bye".into())
            }
            other => other.map(|_| Value::None),
        }
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            match via.yield_from(co, "inner", inner) {
                Ok(r) => {
                    out!("never {r}");
                    Ok(Value::None)
                }
                Err(e) if e.is_instance(&GeneratorExit) => {
                    out!("outer sees GeneratorExit");
                    Ok("outer bye".into())
                }
                Err(e) => Err(e),
            }
        });
        call("next", g.next());
        call("close", g.close());
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// PEP 479 at the sub-generator's boundary: the delegator catches the
/// RuntimeError that a StopIteration raised in the sub became.
mod yield_from_delegator_catches_pep479_runtime_error {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        yield "inner"
        raise StopIteration("sneaky")
    def outer():
        try:
            yield from inner()
        except RuntimeError as e:
            print("outer caught", line(e))
        except StopIteration:
            print("outer caught StopIteration")
        return "recovered"
    g = outer()
    call("next", next, g)
    call("next", next, g)
    print(state(g))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        co.yield_("inner".into())?;
        Err(Exception::StopIteration("sneaky".into()))
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            match via.yield_from(co, "inner", inner) {
                Err(e) if e.is_instance(&RuntimeError) => out!("outer caught {}", e.line()),
                Err(e) if e.is_instance(&StopIteration) => out!("outer caught StopIteration"),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            Ok("recovered".into())
        });
        call("next", g.next());
        call("next", g.next());
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A `for` loop over a delegator mixing a list, a generator and own yields.
mod yield_from_for_loop_mixed {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        yield "i1"
        yield "i2"
        return "ret"
    def outer():
        yield from ["l1", "l2"]
        r = yield from inner()
        yield r
        yield "own"
    for v in outer():
        print("item", v)
    print(list(outer()))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        co.yield_("i1".into())?;
        co.yield_("i2".into())?;
        Ok("ret".into())
    }
    fn outer(via: Via) -> Generator {
        Generator::named("outer", move |co| {
            co.yield_from_list(vec!["l1".into(), "l2".into()])?;
            let r = via.yield_from(co, "inner", inner)?;
            co.yield_(r)?;
            co.yield_("own".into())?;
            Ok(Value::None)
        })
    }
    fn run(via: Via) {
        for v in outer(via) {
            out!("item {}", v.unwrap());
        }
        let list: Vec<Value> = outer(via).map(Result::unwrap).collect();
        out!("{}", Value::from(list));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// `throw(GeneratorExit)` to a delegator: the sub-generator is closed, then
/// GeneratorExit is raised in the delegator and propagates out of throw.
mod yield_from_throw_generator_exit {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
        finally:
            print("inner cleanup")
    def outer():
        try:
            yield from inner()
        finally:
            print("outer cleanup")
    g = outer()
    call("next", next, g)
    call("throw GeneratorExit", g.throw, GeneratorExit())
    print(state(g))
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let _finally = Finally("inner cleanup");
        co.yield_("inner".into())?;
        Ok(Value::None)
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let _finally = Finally("outer cleanup");
            via.yield_from(co, "inner", inner)
        });
        call("next", g.next());
        call("throw GeneratorExit", g.throw(Exception::GeneratorExit()));
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// The value of `yield from` used in expressions, two delegations in a row.
mod yield_from_results_in_expressions {
    use super::*;
    pub const PY: &str = r#"
    def num(n):
        x = yield f"num {n}"
        return n + (x or 0)
    def total():
        a = yield from num(1)
        b = yield from num(2)
        return a * b
    g = total()
    call("next", next, g)
    call("send 10", g.send, 10)
    call("next", next, g)
    "#;
    fn num(co: &Co, n: i64) -> PyResult<Value> {
        let x = co.yield_(format!("num {n}").into())?;
        Ok((n + x.as_int().unwrap_or(0)).into())
    }
    fn run(via: Via) {
        let g = Generator::named("total", move |co| {
            let a = via.yield_from(co, "num", |co| num(co, 1))?;
            let b = via.yield_from(co, "num", |co| num(co, 2))?;
            Ok((int(&a) * int(&b)).into())
        });
        call("next", g.next());
        call("send 10", g.send(10.into()));
        call("next", g.next());
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

// ---------------------------------------------------------------------------
// panics (Python twin: an exception nobody catches in the body)
// ---------------------------------------------------------------------------

/// A panic in a body reaches the caller of `send` as a panic; cleanup runs
/// while it unwinds and the generator is closed afterwards.
mod panic_propagates_and_closes {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
            raise Exception("boom")
        finally:
            print("cleanup")
    g = gen()
    call("next", next, g)
    try:
        next(g)
    except Exception as e:
        print("escaped:", e)
    print(state(g))
    call("next", next, g)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            let _finally = Finally("cleanup");
            co.yield_(1.into())?;
            panic!("boom");
        });
        call("next", g.next());
        if let Err(msg) = catch_panic(|| g.next()) {
            out!("escaped: {msg}");
        }
        out!("{}", state(&g));
        call("next", g.next());
    }
}

/// A panic in a sub-generator unwinds through the whole chain.
mod panic_through_yield_from {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        try:
            yield "inner"
            raise Exception("inner boom")
        finally:
            print("inner cleanup")
    def outer():
        try:
            yield from inner()
        finally:
            print("outer cleanup")
    g = outer()
    call("next", next, g)
    try:
        next(g)
    except Exception as e:
        print("escaped:", e)
    print(state(g))
    call("next", next, g)
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let _finally = Finally("inner cleanup");
        co.yield_("inner".into())?;
        panic!("inner boom");
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| {
            let _finally = Finally("outer cleanup");
            via.yield_from(co, "inner", inner)
        });
        call("next", g.next());
        if let Err(msg) = catch_panic(|| g.next()) {
            out!("escaped: {msg}");
        }
        out!("{}", state(&g));
        call("next", g.next());
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

// ---------------------------------------------------------------------------
// values of every kind, and when they are freed
// ---------------------------------------------------------------------------

/// Every kind of value goes in with send and comes back out with yield,
/// through a three-deep `yield from` chain too.
mod values_of_every_kind_round_trip {
    use super::*;
    pub const PY: &str = r#"
    VALUES = [7, -3, 2**62, -2**62 - 1, 2**63 - 1, 2.5, "text", b"\x00b", (1, "a"), [None, True], None, False]
    def echo():
        x = yield "ready"
        while True:
            x = yield x
    def middle():
        return (yield from echo())
    def outer():
        return (yield from middle())
    for g in (echo(), outer()):
        next(g)
        for v in VALUES:
            call("send " + repr(v), g.send, v)
    "#;
    fn echo(co: &Co) -> PyResult<Value> {
        let mut x = co.yield_("ready".into())?;
        loop {
            x = co.yield_(x)?;
        }
    }
    fn run(via: Via) {
        let chain = Generator::named("outer", move |co| {
            via.yield_from(co, "middle", move |co| via.yield_from(co, "echo", echo))
        });
        for g in [Generator::named("echo", echo), chain] {
            g.next().unwrap();
            for v in assorted() {
                call(&format!("send {v:?}"), g.send(v));
            }
        }
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A value sent to a generator that refuses it (closed, just started,
/// running) is not kept anywhere: it is freed when its last owner drops it.
mod refused_sends_keep_nothing {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            me.send(t2)
        except ValueError as e:
            print("inside:", line(e))
        yield 1
    t1 = Token("t1")
    t2 = Token("t2")
    t3 = Token("t3")
    me = gen()
    call("send t1 before start", me.send, t1)
    print("dropping t1")
    del t1
    call("next", next, me)
    print("dropping t2")
    del t2
    me.close()
    call("send t3 after close", me.send, t3)
    print("dropping t3")
    del t3
    print("end")
    "#;
    pub fn rust() {
        let t1 = token("t1");
        let t2 = token("t2");
        let t3 = token("t3");
        let sent = t2.clone();
        let me = Generator::named("gen", move |co| {
            if let Err(e) = co.generator().unwrap().send(sent) {
                out!("inside: {}", e.line());
            }
            co.yield_(1.into())?;
            Ok(Value::None)
        });
        call("send t1 before start", me.send(t1.clone()));
        out!("dropping t1");
        drop(t1);
        call("next", me.next());
        out!("dropping t2");
        drop(t2);
        me.close().unwrap();
        call("send t3 after close", me.send(t3.clone()));
        out!("dropping t3");
        drop(t3);
        out!("end");
    }
}

/// A value yielded in answer to close() is thrown away by close() at once.
mod value_yielded_on_close_is_freed {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit:
            yield Token("late")
    g = gen()
    next(g)
    call("close", g.close)
    print("after close")
    call("close again", g.close)
    "#;
    pub fn rust() {
        let g = Generator::named("gen", |co| {
            match co.yield_(1.into()) {
                Err(e) if e.is_instance(&GeneratorExit) => {
                    co.yield_(token("late"))?;
                }
                other => {
                    other?;
                }
            }
            Ok(Value::None)
        });
        g.next().unwrap();
        call("close", g.close());
        out!("after close");
        call("close again", g.close());
    }
}

/// Objects through a `yield from` chain arrive as the very same object, and
/// are freed when the last holder lets go.
mod objects_through_a_chain_are_the_same_object {
    use super::*;
    pub const PY: &str = r#"
    def inner():
        x = yield "ready"
        print("inner got", x.name)
        yield x
    def outer():
        yield from inner()
    g = outer()
    next(g)
    t = Token("t")
    back = g.send(t)
    print("same object:", back is t)
    del back
    print("dropping t")
    del t
    print("closing")
    g.close()
    print("end")
    "#;
    fn inner(co: &Co) -> PyResult<Value> {
        let x = co.yield_("ready".into())?;
        let name = x.downcast::<Token>().map_or("?", |t| t.0);
        out!("inner got {name}");
        // A clone: `x` stays a local of the body until it ends, as in Python.
        co.yield_(x.clone())?;
        Ok(Value::None)
    }
    fn run(via: Via) {
        let g = Generator::named("outer", move |co| via.yield_from(co, "inner", inner));
        g.next().unwrap();
        let t = token("t");
        let back = g.send(t.clone()).unwrap();
        out!("same object: {}", if back == t { "True" } else { "False" });
        drop(back);
        out!("dropping t");
        drop(t);
        out!("closing");
        g.close().unwrap();
        out!("end");
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

// ---------------------------------------------------------------------------
// Exception objects: args, repr, identity, classes, chaining (issue 12)
// ---------------------------------------------------------------------------

/// `show(e)`: `repr | str | args | line`, one line per exception.
fn show(e: &Exception) {
    out!("{e:?} | {e} | {:?} | {}", e.args(), e.line());
}

/// `chain(e)`: an exception with its `__context__`, `__cause__` and
/// `__suppress_context__`.
fn chain(e: &Exception) {
    out!(
        "{e:?} context={} cause={} suppress={}",
        opt_repr(e.context()),
        opt_repr(e.cause()),
        if e.suppress_context() {
            "True"
        } else {
            "False"
        }
    );
}

fn opt_repr(e: Option<Exception>) -> String {
    e.map_or("None".into(), |e| e.repr())
}

/// `fmt(e)`: `traceback.format_exception(e)` without frames.
fn fmt(e: &Exception) {
    for l in pyfiber::format_exception(e).lines() {
        out!("{l}");
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// `args`, `repr()` and `str()` of the built-in classes and a user class,
/// and `OSError(errno, msg)` choosing its subclass by errno.
mod exception_args_repr_str {
    use super::*;
    pub const PY: &str = r#"
    for e in [ValueError("boom"), KeyError(), KeyError("k"), KeyError(3),
              StopIteration(42), StopIteration(), GeneratorExit("why"),
              OSError(111, "Connection refused"), OSError("plain"),
              ValueError("a", 2), MyError("x"), RuntimeError(),
              TimeoutError("timed out"), ZeroDivisionError("division by zero"),
              StopIteration("it's"), KeyError(None)]:
        show(e)
    "#;
    pub fn rust() {
        for e in [
            ValueError.new(("boom",)),
            KeyError.new(()),
            KeyError.new(("k",)),
            KeyError.new((3,)),
            StopIteration.new((42,)),
            StopIteration.new(()),
            GeneratorExit.new(("why",)),
            OSError.new((111, "Connection refused")),
            OSError.new(("plain",)),
            ValueError.new(("a", 2)),
            my_error("x"),
            RuntimeError.new(()),
            TimeoutError.new(("timed out",)),
            Exception::user("ZeroDivisionError", "division by zero"),
            StopIteration.new(("it's",)),
            KeyError.new((Value::None,)),
        ] {
            show(&e);
        }
    }
}

/// `OSError(errno, strerror)` is an instance of the subclass CPython maps
/// the errno to (`OSError(2, ...)` is a `FileNotFoundError`), with `errno`
/// and `[Errno N]` kept; an unmapped errno stays `OSError`, a subclass named
/// by hand is kept whatever the errno, and an OS error (`io::Error` here,
/// `OSError(n, os.strerror(n))` in Python) follows the same map.
mod oserror_errno_picks_the_subclass {
    use super::*;
    pub const PY: &str = r#"
    import errno, os
    names = ["ENOENT", "EAGAIN", "EALREADY", "EINPROGRESS", "EPIPE", "ESHUTDOWN",
             "ECHILD", "ECONNABORTED", "ECONNREFUSED", "ECONNRESET", "EEXIST",
             "EISDIR", "ENOTDIR", "EINTR", "EACCES", "EPERM", "ESRCH", "ETIMEDOUT",
             "EADDRINUSE", "EINVAL"]
    for name in names:
        n = getattr(errno, name)
        e = OSError(n, "why")
        print(name, type(e).__name__, e.errno, isinstance(e, OSError), repr(e), "|", e)
        e = OSError(n, os.strerror(n))
        print(name, type(e).__name__, "|", e)
    e = FileNotFoundError(111, "kept")
    print(type(e).__name__, repr(e), "|", e)
    e = OSError(2)
    print(type(e).__name__, repr(e), "|", e)
    "#;
    pub fn rust() {
        use pyfiber::exception::{builtins, FileNotFoundError, OsError};
        let names = [
            ("ENOENT", libc::ENOENT),
            ("EAGAIN", libc::EAGAIN),
            ("EALREADY", libc::EALREADY),
            ("EINPROGRESS", libc::EINPROGRESS),
            ("EPIPE", libc::EPIPE),
            ("ESHUTDOWN", libc::ESHUTDOWN),
            ("ECHILD", libc::ECHILD),
            ("ECONNABORTED", libc::ECONNABORTED),
            ("ECONNREFUSED", libc::ECONNREFUSED),
            ("ECONNRESET", libc::ECONNRESET),
            ("EEXIST", libc::EEXIST),
            ("EISDIR", libc::EISDIR),
            ("ENOTDIR", libc::ENOTDIR),
            ("EINTR", libc::EINTR),
            ("EACCES", libc::EACCES),
            ("EPERM", libc::EPERM),
            ("ESRCH", libc::ESRCH),
            ("ETIMEDOUT", libc::ETIMEDOUT),
            ("EADDRINUSE", libc::EADDRINUSE),
            ("EINVAL", libc::EINVAL),
        ];
        for (name, n) in names {
            let e = OSError.new((i64::from(n), "why"));
            let errno = e.os_error().and_then(|os| os.errno).unwrap();
            let is_os = py_bool(e.is_instance(&OSError));
            out!("{name} {} {errno} {is_os} {e:?} | {e}", e.name());
            // What the OS reports, as std gives it.
            let e = Exception::from(std::io::Error::from_raw_os_error(n));
            out!("{name} {} | {e}", e.name());
            // The constructor Rust code calls with an errno: the same map.
            let os = e.os_error().unwrap().clone();
            let again = Exception::OSError(OsError { ..os });
            assert_eq!(again.name(), e.name(), "Exception::OSError({n}, ..)");
            assert!(again.is_instance(&builtins::Exception));
        }
        let e = FileNotFoundError.new((111, "kept"));
        out!("{} {e:?} | {e}", e.name());
        let e = OSError.new((2,));
        out!("{} {e:?} | {e}", e.name());
    }
}

/// `isinstance` along CPython's hierarchy: `except LookupError` catches a
/// KeyError, `except OSError` a ConnectionRefusedError, `except
/// Exception` neither GeneratorExit nor KeyboardInterrupt.
mod exception_hierarchy {
    use super::*;
    pub const PY: &str = r#"
    classes = [BaseException, Exception, LookupError, OSError, ConnectionError,
               ArithmeticError, ValueError, RuntimeError]
    for e in [KeyError("k"), ConnectionRefusedError(111, "x"), ZeroDivisionError(),
              GeneratorExit(), StopIteration(), UnicodeDecodeError("utf-8", b"", 0, 1, "bad"),
              NotImplementedError(), KeyboardInterrupt(), BlockingIOError(11, "x")]:
        print(type(e).__name__, [c.__name__ for c in classes if isinstance(e, c)])
    "#;
    pub fn rust() {
        use pyfiber::exception::builtins;
        let classes: [&'static ExceptionClass; 8] = [
            &BaseException,
            &builtins::Exception,
            &LookupError,
            &OSError,
            &ConnectionError,
            &ArithmeticError,
            &ValueError,
            &RuntimeError,
        ];
        for e in [
            KeyError.new(("k",)),
            ConnectionRefusedError.new((111, "x")),
            ZeroDivisionError.new(()),
            GeneratorExit.new(()),
            StopIteration.new(()),
            UnicodeDecodeError.new(("bad",)),
            NotImplementedError.new(()),
            KeyboardInterrupt.new(()),
            BlockingIOError.new((11, "x")),
        ] {
            let names: Vec<Value> = classes
                .iter()
                .filter(|c| e.is_instance(c))
                .map(|c| c.name().into())
                .collect();
            out!("{} {:?}", e.name(), Value::from(names));
        }
    }
}

/// A user class declared with a base: `except Base` catches a thrown
/// `Derived`, `except Derived` lets a `Base` pass.
mod user_class_with_base {
    use super::*;
    pub const PY: &str = r#"
    class AppError(Exception):
        pass
    class NetError(AppError):
        pass
    print(issubclass(NetError, AppError), issubclass(AppError, NetError),
          issubclass(NetError, Exception), NetError.__base__.__name__)
    def gen():
        while True:
            try:
                yield "ready"
            except NetError as e:
                print("net:", repr(e))
            except AppError as e:
                print("app:", repr(e))
    g = gen()
    next(g)
    call("throw NetError", g.throw, NetError("down"))
    call("throw AppError", g.throw, AppError("bad"))
    call("throw ValueError", g.throw, ValueError("other"))
    print(state(g))
    "#;
    pub fn rust() {
        let app = ExceptionClass::declare("AppError", &pyfiber::exception::builtins::Exception);
        let net = ExceptionClass::declare("NetError", app);
        out!(
            "{} {} {} {}",
            py_bool(net.is_subclass(app)),
            py_bool(app.is_subclass(net)),
            py_bool(net.is_subclass(&pyfiber::exception::builtins::Exception)),
            net.base().unwrap().name()
        );
        let g = Generator::new(move |co| loop {
            co.yield_("ready".into())
                .except(net, |e| {
                    out!("net: {e:?}");
                    Ok(Value::None)
                })
                .except(app, |e| {
                    out!("app: {e:?}");
                    Ok(Value::None)
                })?;
        });
        g.next().unwrap();
        call("throw NetError", g.throw(net.new(("down",))));
        call("throw AppError", g.throw(app.new(("bad",))));
        call("throw ValueError", g.throw(ValueError.new(("other",))));
        out!("{}", state(&g));
    }
}

/// The exception a generator catches is the object thrown (`e is thrown`),
/// and the one re-raised comes back out as that same object.
mod thrown_object_identity {
    use super::*;
    pub const PY: &str = r#"
    thrown = ValueError("boom")
    def gen():
        try:
            yield 1
        except ValueError as e:
            print("caught is thrown:", e is thrown)
            yield e
        try:
            yield 2
        except ValueError:
            print("re-raising")
            raise
    g = gen()
    next(g)
    got = g.throw(thrown)
    print("yielded is thrown:", got is thrown, repr(got))
    next(g)
    try:
        g.throw(thrown)
    except ValueError as e:
        print("raised is thrown:", e is thrown)
    other = ValueError("boom")
    print("equal but other:", other is thrown)
    "#;
    pub fn rust() {
        let thrown = ValueError.new(("boom",));
        let seen = thrown.clone();
        let g = Generator::new(move |co| {
            if let Err(e) = co.yield_(1.into()) {
                out!("caught is thrown: {}", py_bool(e.is(&seen)));
                co.yield_(Value::object(e))?;
            }
            co.yield_(2.into()).except(&ValueError, |e| {
                out!("re-raising");
                Err(e)
            })?;
            Ok(Value::None)
        });
        g.next().unwrap();
        let got = g.throw(thrown.clone()).unwrap();
        let got = got.downcast::<Exception>().unwrap();
        out!("yielded is thrown: {} {got:?}", py_bool(got.is(&thrown)));
        g.next().unwrap();
        let e = g.throw(thrown.clone()).unwrap_err();
        out!("raised is thrown: {}", py_bool(e.is(&thrown)));
        let other = ValueError.new(("boom",));
        out!("equal but other: {}", py_bool(other.is(&thrown)));
    }
}

/// `throw(ValueError)` with the class instantiates it without args;
/// `throw(GeneratorExit("why"))` arrives with its args and, unhandled,
/// comes back as the same object.
mod throw_class_and_generator_exit_args {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except ValueError as e:
            print("got", repr(e), e.args)
        try:
            yield 2
        finally:
            print("finally")
    g = gen()
    next(g)
    call("throw class", g.throw, ValueError)
    why = GeneratorExit("why")
    try:
        g.throw(why)
    except GeneratorExit as e:
        print("back:", repr(e), e is why)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&ValueError, |e| {
                out!("got {e:?} {:?}", e.args());
                Ok(Value::None)
            })?;
            let _f = Finally("finally");
            co.yield_(2.into())?;
            Ok(Value::None)
        });
        g.next().unwrap();
        call("throw class", g.throw(Exception::from(&ValueError)));
        let why = GeneratorExit.new(("why",));
        let e = g.throw(why.clone()).unwrap_err();
        out!("back: {e:?} {}", py_bool(e.is(&why)));
        out!("{}", state(&g));
    }
}

/// `close()` throws a fresh `GeneratorExit()` with no args each time.
mod close_throws_bare_generator_exit {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit as e:
            print("closing with", repr(e), e.args, line(e))
            raise
    g = gen()
    next(g)
    call("close", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&GeneratorExit, |e| {
                out!("closing with {e:?} {:?} {}", e.args(), e.line());
                Err(e)
            })?;
            Ok(Value::None)
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
    }
}

/// `StopIteration.value` is the returned object itself; `return None`
/// gives `StopIteration()` with no args.
mod stop_iteration_value_is_the_object {
    use super::*;
    pub const PY: &str = r#"
    box = [1, 2]
    def gen(r):
        yield 1
        return r
    for r in (box, None, 0):
        g = gen(r)
        next(g)
        try:
            next(g)
        except StopIteration as e:
            print(repr(e), e.args, e.value is r, repr(e.value))
    "#;
    pub fn rust() {
        let boxed = Value::from(vec![Value::Int(1), Value::Int(2)]);
        for r in [boxed, Value::None, Value::Int(0)] {
            let ret = r.clone();
            let g = Generator::new(move |co| {
                co.yield_(1.into())?;
                Ok(ret)
            });
            g.next().unwrap();
            let e = g.next().unwrap_err();
            let v = e.stop_value().unwrap();
            out!("{e:?} {:?} {} {v:?}", e.args(), py_bool(is_same(v, &r)));
        }
    }

    /// `a is b`: the same list, or equal ints and None (CPython caches
    /// small ints).
    fn is_same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::List(x), Value::List(y)) => Rc::ptr_eq(x, y),
            (Value::None, Value::None) => true,
            (Value::Int(x), Value::Int(y)) => x == y,
            _ => false,
        }
    }
}

/// Identity through a delegation: the sub-generator catches the very
/// object thrown into the delegator, and re-raised it reaches the caller.
mod thrown_identity_through_yield_from {
    use super::*;
    pub const PY: &str = r#"
    thrown = MyError("deep")
    def sub():
        try:
            yield "sub"
        except MyError as e:
            print("sub caught is thrown:", e is thrown)
            raise
    def outer():
        try:
            yield from sub()
        except MyError as e:
            print("outer caught is thrown:", e is thrown)
            raise
    g = outer()
    next(g)
    try:
        g.throw(thrown)
    except MyError as e:
        print("caller caught is thrown:", e is thrown)
    "#;
    fn sub(co: &Co<'_>, thrown: &Exception) -> PyResult<Value> {
        co.yield_("sub".into())
            .except(ExceptionClass::named("MyError"), |e| {
                out!("sub caught is thrown: {}", py_bool(e.is(thrown)));
                Err(e)
            })
    }
    fn outer(thrown: Exception, pep380: bool) -> Generator {
        Generator::new(move |co| {
            let r = if pep380 {
                let t = thrown.clone();
                co.yield_from(&Generator::new(move |co| sub(co, &t)))
            } else {
                co.yield_from_fn(|co| sub(co, &thrown))
            };
            r.except(ExceptionClass::named("MyError"), |e| {
                out!("outer caught is thrown: {}", py_bool(e.is(&thrown)));
                Err(e)
            })
        })
    }
    fn run(pep380: bool) {
        let thrown = my_error("deep");
        let g = outer(thrown.clone(), pep380);
        g.next().unwrap();
        let e = g.throw(thrown.clone()).unwrap_err();
        out!("caller caught is thrown: {}", py_bool(e.is(&thrown)));
    }
    pub fn pep380() {
        run(true)
    }
    pub fn same_fiber() {
        run(false)
    }
}

/// Raising inside `except` sets `__context__` to the exception handled
/// (the very object thrown); `__cause__` stays None.
mod raise_in_except_sets_context {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except ValueError as e:
            print("handling", repr(e))
            raise KeyError("k")
    g = gen()
    next(g)
    v = ValueError("v")
    try:
        g.throw(v)
    except KeyError as k:
        chain(k)
        print("context is thrown:", k.__context__ is v)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&ValueError, |e| {
                out!("handling {e:?}");
                Err(KeyError.new(("k",)))
            })?;
            Ok(Value::None)
        });
        g.next().unwrap();
        let v = ValueError.new(("v",));
        let k = g.throw(v.clone()).unwrap_err();
        chain(&k);
        out!(
            "context is thrown: {}",
            py_bool(k.context().unwrap().is(&v))
        );
        out!("{}", state(&g));
    }
}

/// `raise X from e` sets `__cause__` and `__suppress_context__` (and
/// `__context__` still); `raise X from None` hides the context.
mod raise_from_and_from_none {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        while True:
            try:
                yield "ready"
            except ValueError as e:
                raise KeyError("from e") from e
            except TypeError:
                raise KeyError("from None") from None
    for exc in (ValueError("v"), TypeError("t")):
        g = gen()
        next(g)
        try:
            g.throw(exc)
        except KeyError as k:
            chain(k)
            fmt(k)
    "#;
    pub fn rust() {
        for exc in [ValueError.new(("v",)), TypeError.new(("t",))] {
            let g = Generator::new(|co| loop {
                co.yield_("ready".into())
                    .except(&ValueError, |e| {
                        Err(KeyError.new(("from e",)).with_cause(e))
                    })
                    .except(&TypeError, |_| {
                        Err(KeyError.new(("from None",)).with_cause(None))
                    })?;
            });
            g.next().unwrap();
            let k = g.throw(exc).unwrap_err();
            chain(&k);
            fmt(&k);
        }
    }
}

/// An exception raised in `finally` while another propagates gets that
/// one as `__context__`; a clean `finally` passes the first one on.
mod raise_in_finally_sets_context {
    use super::*;
    pub const PY: &str = r#"
    def gen(fail):
        try:
            yield 1
        finally:
            print("finally, fail =", fail)
            if fail:
                raise RuntimeError("cleanup failed")
    for fail in (True, False):
        g = gen(fail)
        next(g)
        try:
            g.throw(ValueError("first"))
        except Exception as e:
            chain(e)
    "#;
    pub fn rust() {
        for fail in [true, false] {
            let g = Generator::new(move |co| {
                co.yield_(1.into()).finally(|| {
                    out!("finally, fail = {}", py_bool(fail));
                    if fail {
                        return Err(Exception::RuntimeError("cleanup failed".into()));
                    }
                    Ok(())
                })?;
                Ok(Value::None)
            });
            g.next().unwrap();
            let e = g.throw(ValueError.new(("first",))).unwrap_err();
            chain(&e);
        }
    }
}

/// `close()` of a body that raises in `except GeneratorExit`: close()
/// raises that exception, with the GeneratorExit as its context.
mod close_raising_has_generator_exit_context {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit:
            raise ValueError("refusing")
    g = gen()
    next(g)
    try:
        g.close()
    except ValueError as e:
        chain(e)
        fmt(e)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())
                .except(&GeneratorExit, |_| Err(ValueError.new(("refusing",))))?;
            Ok(Value::None)
        });
        g.next().unwrap();
        let e = g.close().unwrap_err();
        chain(&e);
        fmt(&e);
        out!("{}", state(&g));
    }
}

/// PEP 479: the RuntimeError has the escaping StopIteration as both
/// `__cause__` and `__context__` (the same object), and prints as
/// "direct cause".
mod pep479_runtime_error_has_cause {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        raise StopIteration("escaped")
    g = gen()
    next(g)
    try:
        next(g)
    except RuntimeError as e:
        chain(e)
        print("cause is context:", e.__cause__ is e.__context__)
        fmt(e)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Err(StopIteration.new(("escaped",)))
        });
        g.next().unwrap();
        let e = g.next().unwrap_err();
        chain(&e);
        out!(
            "cause is context: {}",
            py_bool(e.cause().unwrap().is(&e.context().unwrap()))
        );
        fmt(&e);
    }
}

/// The same rule at a same-fiber or PEP 380 delegation's boundary: the
/// delegator sees the RuntimeError with the sub's StopIteration as cause.
mod pep479_cause_through_yield_from {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        yield "s"
        raise StopIteration("from sub")
    def outer():
        try:
            yield from sub()
        except RuntimeError as e:
            chain(e)
            yield "handled"
    g = outer()
    call("next", next, g)
    call("next", next, g)
    "#;
    fn sub(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s".into())?;
        Err(StopIteration.new(("from sub",)))
    }
    fn run(pep380: bool) {
        let g = Generator::new(move |co| {
            let r = if pep380 {
                co.yield_from(&Generator::new(sub))
            } else {
                co.yield_from_fn(sub)
            };
            r.except(&RuntimeError, |e| {
                chain(&e);
                co.yield_("handled".into())
            })
        });
        call("next", g.next());
        call("next", g.next());
    }
    pub fn pep380() {
        run(true)
    }
    pub fn same_fiber() {
        run(false)
    }
}

/// Context through a delegation: the sub-generator raises while handling
/// what was thrown into the delegator; the caller sees that chain, and a
/// handler in the delegator chains once more.
mod context_through_yield_from {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        try:
            yield "sub"
        except ValueError:
            raise KeyError("in sub")
    def outer():
        try:
            yield from sub()
        except KeyError:
            raise RuntimeError("in outer")
    g = outer()
    next(g)
    try:
        g.throw(ValueError("thrown"))
    except RuntimeError as e:
        chain(e)
        chain(e.__context__)
        fmt(e)
    "#;
    fn sub(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("sub".into())
            .except(&ValueError, |_| Err(KeyError.new(("in sub",))))
    }
    fn run(pep380: bool) {
        let g = Generator::new(move |co| {
            let r = if pep380 {
                co.yield_from(&Generator::new(sub))
            } else {
                co.yield_from_fn(sub)
            };
            r.except(&KeyError, |_| {
                Err(Exception::RuntimeError("in outer".into()))
            })
        });
        g.next().unwrap();
        let e = g.throw(ValueError.new(("thrown",))).unwrap_err();
        chain(&e);
        chain(&e.context().unwrap());
        fmt(&e);
    }
    pub fn pep380() {
        run(true)
    }
    pub fn same_fiber() {
        run(false)
    }
}

/// Closing a delegator whose sub raises in `except GeneratorExit`: the
/// delegator's close() raises it, chained to the sub's GeneratorExit.
mod close_delegator_sub_raises_context {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        try:
            yield "sub"
        except GeneratorExit:
            print("sub closing")
            raise MyError("sub refuses")
    def outer():
        try:
            yield from sub()
        finally:
            print("outer finally")
    g = outer()
    next(g)
    try:
        g.close()
    except MyError as e:
        chain(e)
    print(state(g))
    "#;
    fn sub(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("sub".into()).except(&GeneratorExit, |_| {
            out!("sub closing");
            Err(my_error("sub refuses"))
        })
    }
    fn run(pep380: bool) {
        let g = Generator::new(move |co| {
            let _f = Finally("outer finally");
            if pep380 {
                co.yield_from(&Generator::new(sub))
            } else {
                co.yield_from_fn(sub)
            }
        });
        g.next().unwrap();
        let e = g.close().unwrap_err();
        chain(&e);
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(true)
    }
    pub fn same_fiber() {
        run(false)
    }
}

/// A bare re-raise keeps the exception as it was (no context of its
/// own); raising after the handler has finished chains nothing.
mod reraise_and_raise_after_handler {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except ValueError:
            print("re-raise")
            raise
    g = gen()
    next(g)
    try:
        g.throw(ValueError("v"))
    except ValueError as e:
        chain(e)
    def gen2():
        try:
            yield 1
        except ValueError:
            print("handled")
        raise KeyError("after")
    g = gen2()
    next(g)
    try:
        g.throw(ValueError("v"))
    except KeyError as e:
        chain(e)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&ValueError, |e| {
                out!("re-raise");
                Err(e)
            })?;
            Ok(Value::None)
        });
        g.next().unwrap();
        chain(&g.throw(ValueError.new(("v",))).unwrap_err());
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&ValueError, |_| {
                out!("handled");
                Ok(Value::None)
            })?;
            Err(KeyError.new(("after",)))
        });
        g.next().unwrap();
        chain(&g.throw(ValueError.new(("v",))).unwrap_err());
    }
}

/// Nested handlers: the innermost handled exception is the context, and
/// raising an exception that is already in the handled one's chain cuts
/// that link so no chain is a cycle (CPython's rule).
mod nested_handlers_and_cycle_cut {
    use super::*;
    pub const PY: &str = r#"
    a = ValueError("a")
    b = KeyError("b")
    try:
        try:
            raise a
        except ValueError:
            try:
                raise b
            except KeyError:
                raise TypeError("c")
    except TypeError as c:
        chain(c)
        chain(c.__context__)
        fmt(c)
    try:
        try:
            raise a
        except ValueError:
            raise b
    except KeyError:
        try:
            raise a
        except ValueError as e:
            chain(e)
            chain(b)
    "#;
    pub fn rust() {
        let a = ValueError.new(("a",));
        let b = KeyError.new(("b",));
        let raise = |e: &Exception| -> PyResult<Value> { Err(e.clone()) };
        let c = raise(&a)
            .except(&ValueError, |_| {
                raise(&b).except(&KeyError, |_| Err(TypeError.new(("c",))))
            })
            .unwrap_err();
        chain(&c);
        chain(&c.context().unwrap());
        fmt(&c);
        let e = raise(&a)
            .except(&ValueError, |_| raise(&b))
            .except(&KeyError, |_| raise(&a))
            .unwrap_err();
        chain(&e);
        chain(&b);
    }
}

/// `format_exception` of a three-deep chain mixing both separators.
mod format_exception_three_deep {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except OSError as e:
            try:
                raise LookupError("lookup") from e
            except LookupError:
                raise MyError("mine")
    g = gen()
    next(g)
    try:
        g.throw(ConnectionResetError(104, "Connection reset by peer"))
    except MyError as e:
        fmt(e)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&OSError, |e| {
                Err(LookupError.new(("lookup",)).with_cause(e))
                    .except(&LookupError, |_| Err(my_error("mine")))
            })?;
            Ok(Value::None)
        });
        g.next().unwrap();
        let e = g
            .throw(OSError.new((104, "Connection reset by peer")))
            .unwrap_err();
        fmt(&e);
    }
}

/// `yield from` an object with the whole protocol: `__next__`, `send`,
/// `throw`, `close`; `gi_yieldfrom` is the object itself, and `__next__`
/// finishing with `StopIteration("echo done")` makes that the result.
mod yield_from_object_full_protocol {
    use super::*;
    pub const PY: &str = r#"
    class Echo:
        def __init__(self):
            self.n = 0
        def __iter__(self):
            return self
        def __next__(self):
            self.n += 1
            print("next", self.n)
            if self.n > 3:
                raise StopIteration("echo done")
            return self.n
        def send(self, v):
            print("send", repr(v))
            return ("echo", v)
        def throw(self, e):
            print("throw", repr(e))
            return "recovered"
        def close(self):
            print("close")
    e = Echo()
    def outer():
        r = yield from e
        print("result", repr(r))
        return r
    g = outer()
    call("next", next, g)
    print("yieldfrom is e:", g.gi_yieldfrom is e)
    call("send 5", g.send, 5)
    call("throw", g.throw, ValueError("v"))
    call("next", next, g)
    call("next", next, g)
    call("next", next, g)
    print("yieldfrom:", g.gi_yieldfrom)
    "#;
    struct Echo {
        n: std::cell::Cell<i64>,
    }
    impl pyfiber::Protocol for Echo {
        fn type_name(&self) -> &str {
            "Echo"
        }
        fn next(&self) -> PyResult<Value> {
            self.n.set(self.n.get() + 1);
            out!("next {}", self.n.get());
            if self.n.get() > 3 {
                return Err(StopIteration.new(("echo done",)));
            }
            Ok(Value::Int(self.n.get()))
        }
        fn send(&self, v: Value) -> Option<PyResult<Value>> {
            out!("send {v:?}");
            Some(Ok(Value::Tuple(vec!["echo".into(), v].into())))
        }
        fn throw(&self, e: Exception) -> Option<PyResult<Value>> {
            out!("throw {e:?}");
            Some(Ok("recovered".into()))
        }
        fn close(&self) -> Option<PyResult<Value>> {
            out!("close");
            Some(Ok(Value::None))
        }
    }
    pub fn rust() {
        let e: Rc<dyn pyfiber::Protocol> = Rc::new(Echo {
            n: std::cell::Cell::new(0),
        });
        let obj = e.clone();
        let g = Generator::new(move |co| {
            let r = co.yield_from_object(obj)?;
            out!("result {r:?}");
            Ok(r)
        });
        call("next", g.next());
        let same = matches!(g.gi_yieldfrom(), Some(YieldFrom::Object(o)) if Rc::ptr_eq(&o, &e));
        out!("yieldfrom is e: {}", py_bool(same));
        call("send 5", g.send(5.into()));
        call("throw", g.throw(ValueError.new(("v",))));
        call("next", g.next());
        call("next", g.next());
        call("next", g.next());
        out!(
            "yieldfrom: {}",
            if g.gi_yieldfrom().is_none() {
                "None"
            } else {
                "?"
            }
        );
    }
}

/// An object with `__next__` only: a non-None send is AttributeError, a
/// throw is raised in the delegator (no `throw`), a close skips the
/// missing `close`.
mod yield_from_object_partial_protocol {
    use super::*;
    pub const PY: &str = r#"
    class Count:
        def __init__(self):
            self.n = 0
        def __iter__(self):
            return self
        def __next__(self):
            self.n += 1
            return self.n
    def outer(c):
        try:
            yield from c
        except ValueError as e:
            print("delegator caught", repr(e))
            yield "after"
        finally:
            print("outer finally")
    g = outer(Count())
    call("next", next, g)
    call("send 1", g.send, 1)
    g = outer(Count())
    next(g)
    call("throw", g.throw, ValueError("v"))
    call("close", g.close)
    g = outer(Count())
    next(g)
    call("close", g.close)
    print(state(g))
    "#;
    struct Count {
        n: std::cell::Cell<i64>,
    }
    impl pyfiber::Protocol for Count {
        fn type_name(&self) -> &str {
            "Count"
        }
        fn next(&self) -> PyResult<Value> {
            self.n.set(self.n.get() + 1);
            Ok(Value::Int(self.n.get()))
        }
    }
    fn outer() -> Generator {
        Generator::new(|co| {
            let _f = Finally("outer finally");
            let c = Rc::new(Count {
                n: std::cell::Cell::new(0),
            });
            co.yield_from_object(c).except(&ValueError, |e| {
                out!("delegator caught {e:?}");
                co.yield_("after".into())
            })
        })
    }
    pub fn rust() {
        let g = outer();
        call("next", g.next());
        call("send 1", g.send(1.into()));
        let g = outer();
        g.next().unwrap();
        call("throw", g.throw(ValueError.new(("v",))));
        call("close", g.close());
        let g = outer();
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
    }
}

/// `throw(GeneratorExit("why"))` into a delegator: the delegate is closed
/// (an object's `close`, a generator's close), then the delegator raises
/// the very object thrown, not a fresh GeneratorExit.
mod yield_from_reraises_the_thrown_generator_exit {
    use super::*;
    pub const PY: &str = r#"
    class Closer:
        def __iter__(self):
            return self
        def __next__(self):
            return "tick"
        def close(self):
            print("closer closed")
    def sub():
        try:
            yield "s"
        finally:
            print("sub finally")
    def outer(target):
        try:
            yield from target
        except GeneratorExit as e:
            print("delegator got", repr(e), e is why)
            raise
    for target in (Closer(), sub()):
        why = GeneratorExit("why")
        g = outer(target)
        next(g)
        try:
            g.throw(why)
        except GeneratorExit as e:
            print("caller got", repr(e), e is why)
    "#;
    struct Closer;
    impl pyfiber::Protocol for Closer {
        fn type_name(&self) -> &str {
            "Closer"
        }
        fn next(&self) -> PyResult<Value> {
            Ok("tick".into())
        }
        fn close(&self) -> Option<PyResult<Value>> {
            out!("closer closed");
            Some(Ok(Value::None))
        }
    }
    pub fn rust() {
        for object in [true, false] {
            let why = GeneratorExit.new(("why",));
            let seen = why.clone();
            let g = Generator::new(move |co| {
                let r = if object {
                    co.yield_from_object(Rc::new(Closer))
                } else {
                    co.yield_from(&Generator::new(|co| {
                        let _f = Finally("sub finally");
                        co.yield_("s".into())
                    }))
                };
                r.except(&GeneratorExit, |e| {
                    out!("delegator got {e:?} {}", py_bool(e.is(&seen)));
                    Err(e)
                })
            });
            g.next().unwrap();
            let e = g.throw(why.clone()).unwrap_err();
            out!("caller got {e:?} {}", py_bool(e.is(&why)));
        }
    }
}

// ---------------------------------------------------------------------------
// More chaining, identity and protocol cases (issue 12, item 4)
// ---------------------------------------------------------------------------

/// `raise` of a saved exception in a new handler: CPython sets its
/// `__context__` at every raise, so the new handled exception replaces the
/// old context, in a handler of the caller's and of a generator's; one set
/// by hand is replaced too.
mod reraise_saved_exception_overwrites_context {
    use super::*;
    pub const PY: &str = r#"
    try:
        try:
            raise ValueError("A")
        except ValueError:
            raise KeyError("B")
    except KeyError as b:
        saved = b
    chain(saved)
    try:
        try:
            raise TypeError("C")
        except TypeError:
            raise saved
    except KeyError as e:
        chain(e)
        print("is saved:", e is saved)
    def gen():
        yield 1
        try:
            raise ValueError("g")
        except ValueError:
            raise saved
    g = gen()
    next(g)
    try:
        next(g)
    except KeyError as e:
        chain(e)
    saved.__context__ = TypeError("by hand")
    try:
        raise MyError("m")
    except MyError:
        try:
            raise saved
        except KeyError as e:
            chain(e)
    "#;
    pub fn rust() {
        let raise = |e: &Exception| -> PyResult<Value> { Err(e.clone()) };
        let saved = raise(&ValueError.new(("A",)))
            .except(&ValueError, |_| Err(KeyError.new(("B",))))
            .unwrap_err();
        chain(&saved);
        raise(&TypeError.new(("C",)))
            .except(&TypeError, |_| raise(&saved))
            .except(&KeyError, |e| {
                chain(&e);
                out!("is saved: {}", py_bool(e.is(&saved)));
                Ok(Value::None)
            })
            .unwrap();
        let s = saved.clone();
        let g = Generator::new(move |co| {
            co.yield_(1.into())?;
            raise(&ValueError.new(("g",))).except(&ValueError, |_| raise(&s))
        });
        g.next().unwrap();
        g.next()
            .except(&KeyError, |e| {
                chain(&e);
                Ok(Value::None)
            })
            .unwrap();
        saved.set_context(Some(TypeError.new(("by hand",))));
        raise(&my_error("m"))
            .except(ExceptionClass::named("MyError"), |_| {
                raise(&saved).except(&KeyError, |e| {
                    chain(&e);
                    Ok(Value::None)
                })
            })
            .unwrap();
    }
}

/// `raise X from Z` inside `except Y`: `__context__` is Y, `__cause__` is Z,
/// `__suppress_context__` is set, and the traceback shows Z as the direct
/// cause and not Y. Setting `__cause__` on an exception already raised
/// does the same.
mod raise_from_other_keeps_context {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except ValueError:
            raise KeyError("k") from TypeError("cause")
    g = gen()
    next(g)
    try:
        g.throw(ValueError("v"))
    except KeyError as k:
        chain(k)
        fmt(k)
        k.__cause__ = None
        chain(k)
        fmt(k)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&ValueError, |_| {
                Err(KeyError.new(("k",)).with_cause(TypeError.new(("cause",))))
            })
        });
        g.next().unwrap();
        g.throw(ValueError.new(("v",)))
            .except(&KeyError, |k| {
                chain(&k);
                fmt(&k);
                k.set_cause(None);
                chain(&k);
                fmt(&k);
                Ok(Value::None)
            })
            .unwrap();
    }
}

/// `close()` of a body whose `finally` raises: close() raises that
/// exception, chained to the GeneratorExit; `raise ... from None` in the
/// `finally` keeps the context but hides it from the traceback.
mod raise_in_finally_during_close {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        finally:
            print("finally")
            raise ValueError("cleanup")
    g = gen()
    next(g)
    try:
        g.close()
    except ValueError as e:
        chain(e)
        fmt(e)
    print(state(g))
    def gen2():
        try:
            yield 1
        finally:
            raise ValueError("quiet") from None
    g = gen2()
    next(g)
    try:
        g.close()
    except ValueError as e:
        chain(e)
        fmt(e)
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).finally(|| {
                out!("finally");
                Err(ValueError.new(("cleanup",)))
            })
        });
        g.next().unwrap();
        g.close()
            .except(&ValueError, |e| {
                chain(&e);
                fmt(&e);
                Ok(Value::None)
            })
            .unwrap();
        out!("{}", state(&g));
        let g = Generator::new(|co| {
            co.yield_(1.into())
                .finally(|| Err(ValueError.new(("quiet",)).with_cause(None)))
        });
        g.next().unwrap();
        g.close()
            .except(&ValueError, |e| {
                chain(&e);
                fmt(&e);
                Ok(Value::None)
            })
            .unwrap();
    }
}

/// A sub-generator's `finally` raising while its delegator is closed: the
/// delegator sees that exception (chained to the sub's GeneratorExit) at
/// its `yield from`, and close() raises it.
mod raise_in_sub_finally_during_delegator_close {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        try:
            yield "s"
        finally:
            print("sub finally")
            raise MyError("sub cleanup")
    def outer():
        try:
            yield from sub()
        except MyError as e:
            chain(e)
            raise
    g = outer()
    next(g)
    call("close", g.close)
    print(state(g))
    "#;
    fn sub(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s".into()).finally(|| {
            out!("sub finally");
            Err(my_error("sub cleanup"))
        })
    }
    fn run(pep380: bool) {
        let g = Generator::new(move |co| {
            let r = if pep380 {
                co.yield_from(&Generator::new(sub))
            } else {
                co.yield_from_fn(sub)
            };
            r.except(ExceptionClass::named("MyError"), |e| {
                chain(&e);
                Err(e)
            })
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(true)
    }
    pub fn same_fiber() {
        run(false)
    }
}

/// `throw()` into a generator suspended inside an `except` block: the
/// thrown exception gets the generator's handled exception as its
/// context, caught there or not, and through a `yield from` it is the
/// sub-generator's handled one.
mod throw_into_handler_sets_context {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            raise ValueError("handled")
        except ValueError:
            yield 1
    g = gen()
    next(g)
    try:
        g.throw(KeyError("thrown"))
    except KeyError as e:
        chain(e)
    def sub():
        try:
            raise ValueError("sub handled")
        except ValueError:
            yield "s"
    def outer():
        yield from sub()
    g = outer()
    next(g)
    try:
        g.throw(KeyError("thrown"))
    except KeyError as e:
        chain(e)
    print(state(g))
    "#;
    fn sub(co: &Co<'_>) -> PyResult<Value> {
        Err::<Value, _>(ValueError.new(("sub handled",)))
            .except(&ValueError, |_| co.yield_("s".into()))
    }
    fn run(pep380: bool) {
        let g = Generator::new(|co| {
            Err::<Value, _>(ValueError.new(("handled",)))
                .except(&ValueError, |_| co.yield_(1.into()))
        });
        g.next().unwrap();
        g.throw(KeyError.new(("thrown",)))
            .except(&KeyError, |e| {
                chain(&e);
                Ok(Value::None)
            })
            .unwrap();
        let g = Generator::new(move |co| {
            if pep380 {
                co.yield_from(&Generator::new(sub))
            } else {
                co.yield_from_fn(sub)
            }
        });
        g.next().unwrap();
        g.throw(KeyError.new(("thrown",)))
            .except(&KeyError, |e| {
                chain(&e);
                Ok(Value::None)
            })
            .unwrap();
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(true)
    }
    pub fn same_fiber() {
        run(false)
    }
}

/// `close()` of a generator suspended inside an `except` block: the
/// GeneratorExit it receives has the handled exception as its context.
mod close_in_handler_generator_exit_context {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            raise ValueError("handled")
        except ValueError:
            try:
                yield 1
            except GeneratorExit as e:
                chain(e)
                raise
    g = gen()
    next(g)
    call("close", g.close)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            Err::<Value, _>(ValueError.new(("handled",))).except(&ValueError, |_| {
                co.yield_(1.into()).except(&GeneratorExit, |e| {
                    chain(&e);
                    Err(e)
                })
            })
        });
        g.next().unwrap();
        call("close", g.close());
        out!("{}", state(&g));
    }
}

/// CPython keeps the exception a generator handles in the generator
/// (`gi_exc_state`): while it is suspended inside an `except` block, the
/// caller's own exceptions do not get it as their context, and
/// `sys.exc_info()` in the caller does not show it; resumed, the
/// generator sees it again.
mod handled_exception_does_not_leak_across_yield {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            raise ValueError("in gen")
        except ValueError:
            yield 1
            print("gen handling:", repr(sys.exc_info()[1]))
            yield 2
            print("gen handling:", repr(sys.exc_info()[1]))
    g = gen()
    next(g)
    print("caller sees:", repr(sys.exc_info()[1]))
    try:
        raise KeyError("caller")
    except KeyError as e:
        chain(e)
        print("caller handling:", repr(sys.exc_info()[1]))
    try:
        raise KeyError("caller2")
    except KeyError:
        next(g)
        print("caller handling:", repr(sys.exc_info()[1]))
        try:
            raise TypeError("inner")
        except TypeError as t:
            chain(t)
    print("caller sees:", repr(sys.exc_info()[1]))
    call("next", next, g)
    print("caller sees:", repr(sys.exc_info()[1]))
    "#;
    pub fn rust() {
        use pyfiber::exception::exc_info;
        let g = Generator::new(|co| {
            Err::<Value, _>(ValueError.new(("in gen",))).except(&ValueError, |_| {
                co.yield_(1.into())?;
                out!("gen handling: {}", opt_repr(exc_info()));
                co.yield_(2.into())?;
                out!("gen handling: {}", opt_repr(exc_info()));
                Ok(Value::None)
            })
        });
        g.next().unwrap();
        out!("caller sees: {}", opt_repr(exc_info()));
        Err::<Value, _>(KeyError.new(("caller",)))
            .except(&KeyError, |e| {
                chain(&e);
                out!("caller handling: {}", opt_repr(exc_info()));
                Ok(Value::None)
            })
            .unwrap();
        Err::<Value, _>(KeyError.new(("caller2",)))
            .except(&KeyError, |_| {
                g.next().unwrap();
                out!("caller handling: {}", opt_repr(exc_info()));
                Err::<Value, _>(TypeError.new(("inner",))).except(&TypeError, |t| {
                    chain(&t);
                    Ok(Value::None)
                })
            })
            .unwrap();
        out!("caller sees: {}", opt_repr(exc_info()));
        call("next", g.next());
        out!("caller sees: {}", opt_repr(exc_info()));
    }
}

/// The other direction of `gi_exc_state`: an exception the caller is
/// handling is the context of one the generator *raises* (the raise looks
/// down the whole stack of handled exceptions), but not of one thrown into
/// a generator that is not itself handling anything: `throw()` chains only
/// to the generator's own handled exception, replacing a context the thrown
/// one had. What comes back out of a delegate's `throw()` (a PEP 479
/// RuntimeError, an exception the sub raised in its handler) is chained
/// again, to the delegator's own handled exception; an object's `close()`
/// raising is chained as raised by the caller.
mod throw_chains_only_to_the_generators_own_handled {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except ValueError as e:
            chain(e)
        yield 2
        raise MyError("raised")
    g = gen()
    next(g)
    try:
        raise TypeError("caller's")
    except TypeError:
        call("throw", g.throw, ValueError("thrown"))
        try:
            next(g)
        except MyError as e:
            chain(e)
    def gen2():
        try:
            raise ValueError("g")
        except ValueError:
            try:
                yield 1
            except KeyError as e:
                chain(e)
                raise
    g = gen2()
    next(g)
    k = KeyError("t")
    k.__context__ = TypeError("old")
    try:
        g.throw(k)
    except KeyError as e:
        chain(e)
        print("is k:", e is k)
    def sub():
        try:
            yield "s"
        except ValueError:
            raise KeyError("sub")
    def outer():
        try:
            raise MyError("outer's")
        except MyError:
            while True:
                try:
                    yield from sub()
                except RuntimeError as e:
                    chain(e)
                except KeyError as e:
                    chain(e)
    g = outer()
    next(g)
    g.throw(StopIteration("s"))
    g.throw(ValueError("v"))
    class Obj:
        def __iter__(self):
            return self
        def __next__(self):
            return 1
        def close(self):
            raise KeyError("closing")
    def outer2():
        try:
            yield from Obj()
        except KeyError as e:
            chain(e)
    try:
        raise TypeError("caller")
    except TypeError:
        g = outer2()
        next(g)
        g.close()
    "#;
    struct Obj;
    impl pyfiber::Protocol for Obj {
        fn type_name(&self) -> &str {
            "Obj"
        }
        fn next(&self) -> PyResult<Value> {
            Ok(1.into())
        }
        fn close(&self) -> Option<PyResult<Value>> {
            Some(Err(KeyError.new(("closing",))))
        }
    }
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into()).except(&ValueError, |e| {
                chain(&e);
                Ok(Value::None)
            })?;
            co.yield_(2.into())?;
            Err(my_error("raised"))
        });
        g.next().unwrap();
        Err::<Value, _>(TypeError.new(("caller's",)))
            .except(&TypeError, |_| {
                call("throw", g.throw(ValueError.new(("thrown",))));
                g.next().except(ExceptionClass::named("MyError"), |e| {
                    chain(&e);
                    Ok(Value::None)
                })
            })
            .unwrap();
        let g = Generator::new(|co| {
            Err::<Value, _>(ValueError.new(("g",))).except(&ValueError, |_| {
                co.yield_(1.into()).except(&KeyError, |e| {
                    chain(&e);
                    Err(e)
                })
            })
        });
        g.next().unwrap();
        let k = KeyError.new(("t",));
        k.set_context(Some(TypeError.new(("old",))));
        g.throw(k.clone())
            .except(&KeyError, |e| {
                chain(&e);
                out!("is k: {}", py_bool(e.is(&k)));
                Ok(Value::None)
            })
            .unwrap();
        let my = ExceptionClass::named("MyError");
        let g = Generator::new(move |co| {
            Err::<Value, _>(my_error("outer's")).except(my, |_| loop {
                let sub = Generator::new(|co| {
                    co.yield_("s".into())
                        .except(&ValueError, |_| Err(KeyError.new(("sub",))))
                });
                co.yield_from(&sub)
                    .except(&RuntimeError, |e| {
                        chain(&e);
                        Ok(Value::None)
                    })
                    .except(&KeyError, |e| {
                        chain(&e);
                        Ok(Value::None)
                    })?;
            })
        });
        g.next().unwrap();
        let _ = g.throw(StopIteration.new(("s",)));
        let _ = g.throw(ValueError.new(("v",)));
        drop(g);
        Err::<Value, _>(TypeError.new(("caller",)))
            .except(&TypeError, |_| {
                let g = Generator::new(|co| {
                    co.yield_from_object(Rc::new(Obj)).except(&KeyError, |e| {
                        chain(&e);
                        Ok(Value::None)
                    })
                });
                g.next().unwrap();
                g.close()
            })
            .unwrap();
    }
}

/// A `throw()` that fails in a sub-generator is raised into its delegator
/// again, chained to the delegator's *own* handled exception (CPython's
/// `gen_send_ex(gen, exc=1)` after the delegate's `throw()` failed), for a
/// sub-generator on its own fiber and on the delegator's alike: what the
/// sub raised in its handler, the thrown exception let through, PEP 479's
/// RuntimeError. What fails later, in a send, keeps the context it was
/// raised with; and a thrown exception caught inside the sub has only the
/// sub's own handled exception as context, not the delegator's.
mod a_failed_throw_chains_to_the_delegators_own {
    use super::*;
    pub const PY: &str = r#"
    def fails_in_the_throw():
        try:
            yield "s1"
        except ValueError:
            raise TypeError("in the throw")
    def fails_in_a_send():
        try:
            yield "s1"
        except ValueError:
            yield "s2"
            raise TypeError("in a send")
    def lets_it_through():
        yield "s1"
    def catches_it():
        try:
            yield "s1"
        except ValueError as e:
            chain(e)
    def delegator(sub):
        try:
            raise KeyError("own")
        except KeyError:
            try:
                yield from sub()
            except TypeError as e:
                chain(e)
            except ValueError as e:
                chain(e)
            except RuntimeError as e:
                chain(e)
        yield "end"
    for sub, thrown in [(fails_in_the_throw, ValueError("v")), (fails_in_a_send, ValueError("v")),
                        (lets_it_through, ValueError("v")), (lets_it_through, StopIteration("s")),
                        (catches_it, ValueError("v"))]:
        print("--", sub.__name__)
        g = delegator(sub)
        call("next", g.__next__)
        call("throw", g.throw, thrown)
        call("next", g.__next__)
        call("next", g.__next__)
    "#;
    fn fails_in_the_throw(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s1".into())
            .except(&ValueError, |_| Err(TypeError.new(("in the throw",))))
    }
    fn fails_in_a_send(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s1".into()).except(&ValueError, |_| {
            co.yield_("s2".into())?;
            Err(TypeError.new(("in a send",)))
        })
    }
    fn lets_it_through(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s1".into())?;
        Ok(Value::None)
    }
    fn catches_it(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s1".into()).except(&ValueError, |e| {
            chain(&e);
            Ok(Value::None)
        })?;
        Ok(Value::None)
    }
    type Sub = fn(&Co<'_>) -> PyResult<Value>;
    fn run(via: Via) {
        let subs: [(&str, Sub, Exception); 5] = [
            (
                "fails_in_the_throw",
                fails_in_the_throw,
                ValueError.new(("v",)),
            ),
            ("fails_in_a_send", fails_in_a_send, ValueError.new(("v",))),
            ("lets_it_through", lets_it_through, ValueError.new(("v",))),
            (
                "lets_it_through",
                lets_it_through,
                StopIteration.new(("s",)),
            ),
            ("catches_it", catches_it, ValueError.new(("v",))),
        ];
        for (name, sub, thrown) in subs {
            out!("-- {name}");
            let g = Generator::named("delegator", move |co| {
                Err::<Value, _>(KeyError.new(("own",))).except(&KeyError, |_| {
                    let caught = |e: Exception| {
                        chain(&e);
                        Ok(Value::None)
                    };
                    via.yield_from(co, name, sub)
                        .except(&TypeError, caught)
                        .except(&ValueError, caught)
                        .except(&RuntimeError, caught)
                })?;
                co.yield_("end".into())?;
                Ok(Value::None)
            });
            call("next", g.next());
            call("throw", g.throw(thrown));
            call("next", g.next());
            call("next", g.next());
        }
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// CPython walks a `throw()` or `close()` down a `yield from` chain without
/// resuming the delegators (`_gen_throw`, `gen_close`): what runs down
/// there -- the sub-generator's handlers, an object's `throw` and `close`
/// -- sees its own handled exceptions and then the outermost caller's,
/// never a delegator's. Here on the way down of a throw, of a `close()`
/// from inside the caller's `except`, and of the finalizer's close.
mod a_throw_walks_down_past_the_delegators_handled {
    use super::*;
    pub const PY: &str = r#"
    class Obj:
        def __iter__(self):
            return self
        def __next__(self):
            return "o"
        def throw(self, e, *rest):
            print("obj throw sees", repr(sys.exc_info()[1]))
            raise e
        def close(self):
            print("obj close sees", repr(sys.exc_info()[1]))
    def sub():
        try:
            yield "s"
        except BaseException as e:
            print("sub got", repr(e), "sees", repr(sys.exc_info()[1]))
        try:
            raise KeyError("after")
        except KeyError as e:
            chain(e)
        yield from Obj()
    def outer():
        try:
            raise MyError("outer's")
        except MyError:
            yield from sub()
    g = outer()
    next(g)
    call("throw", g.throw, ValueError("v"))
    try:
        g.throw(ValueError("w"))
    except ValueError as e:
        chain(e)
    try:
        raise TypeError("caller")
    except TypeError:
        g = outer()
        next(g)
        call("throw", g.throw, ValueError("v"))
        call("close", g.close)
        g = outer()
        next(g)
        call("next", g.__next__)
        del g
        gc.collect()
        print("caller still handles", repr(sys.exc_info()[1]))
    "#;
    struct Obj;
    impl pyfiber::Protocol for Obj {
        fn type_name(&self) -> &str {
            "Obj"
        }
        fn next(&self) -> PyResult<Value> {
            Ok("o".into())
        }
        fn throw(&self, e: Exception) -> Option<PyResult<Value>> {
            out!(
                "obj throw sees {}",
                opt_repr(pyfiber::exception::exc_info())
            );
            Some(Err(e))
        }
        fn close(&self) -> Option<PyResult<Value>> {
            out!(
                "obj close sees {}",
                opt_repr(pyfiber::exception::exc_info())
            );
            Some(Ok(Value::None))
        }
    }
    fn outer() -> Generator {
        Generator::named("outer", |co| {
            Err::<Value, _>(my_error("outer's")).except(ExceptionClass::named("MyError"), |_| {
                co.yield_from(&Generator::named("sub", |co| {
                    co.yield_("s".into()).except(&BaseException, |e| {
                        let sees = opt_repr(pyfiber::exception::exc_info());
                        out!("sub got {e:?} sees {sees}");
                        Ok(Value::None)
                    })?;
                    Err::<Value, _>(KeyError.new(("after",))).except(&KeyError, |e| {
                        chain(&e);
                        Ok(Value::None)
                    })?;
                    co.yield_from_object(Rc::new(Obj))
                }))
            })
        })
    }
    pub fn rust() {
        let g = outer();
        g.next().unwrap();
        call("throw", g.throw(ValueError.new(("v",))));
        g.throw(ValueError.new(("w",)))
            .except(&ValueError, |e| {
                chain(&e);
                Ok(Value::None)
            })
            .unwrap();
        Err::<Value, _>(TypeError.new(("caller",)))
            .except(&TypeError, |_| {
                let g = outer();
                g.next().unwrap();
                call("throw", g.throw(ValueError.new(("v",))));
                call("close", g.close());
                let g = outer();
                g.next().unwrap();
                call("next", g.next());
                drop(g);
                out!(
                    "caller still handles {}",
                    opt_repr(pyfiber::exception::exc_info())
                );
                Ok(Value::None)
            })
            .unwrap();
    }
}

/// A throw that reaches a sub-generator resumes that sub alone (CPython
/// does not enter the delegators' frames on the way down): while it runs,
/// the sub sees its own handled exception and then the caller's, not its
/// delegator's -- on a fiber of its own and on the delegator's alike. A
/// send afterwards goes through the delegator, which sees its own again.
mod a_throw_into_a_sub_sees_its_own_and_the_callers {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        try:
            yield "s1"
        except ValueError:
            print("sub caught; sees", repr(sys.exc_info()[1]))
        print("sub after its handler sees", repr(sys.exc_info()[1]))
        try:
            raise TypeError("t")
        except TypeError as e:
            chain(e)
        yield "s2"
        print("sub after a send sees", repr(sys.exc_info()[1]))
    def delegator():
        try:
            raise KeyError("own")
        except KeyError:
            yield from sub()
            print("delegator after sub sees", repr(sys.exc_info()[1]))
            yield "d"
    g = delegator()
    call("next", g.__next__)
    call("throw", g.throw, ValueError("v"))
    call("next", g.__next__)
    try:
        raise TypeError("caller")
    except TypeError:
        g = delegator()
        call("next", g.__next__)
        call("throw", g.throw, ValueError("v"))
        call("next", g.__next__)
    print("after", repr(sys.exc_info()[1]))
    "#;
    fn sees() -> String {
        opt_repr(pyfiber::exception::exc_info())
    }
    fn sub(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s1".into()).except(&ValueError, |_| {
            out!("sub caught; sees {}", sees());
            Ok(Value::None)
        })?;
        out!("sub after its handler sees {}", sees());
        Err::<Value, _>(TypeError.new(("t",))).except(&TypeError, |e| {
            chain(&e);
            Ok(Value::None)
        })?;
        co.yield_("s2".into())?;
        out!("sub after a send sees {}", sees());
        Ok(Value::None)
    }
    fn run(via: Via) {
        let delegator = move || {
            Generator::named("delegator", move |co| {
                Err::<Value, _>(KeyError.new(("own",))).except(&KeyError, |_| {
                    via.yield_from(co, "sub", sub)?;
                    out!("delegator after sub sees {}", sees());
                    co.yield_("d".into())
                })
            })
        };
        let g = delegator();
        call("next", g.next());
        call("throw", g.throw(ValueError.new(("v",))));
        call("next", g.next());
        drop(g);
        Err::<Value, _>(TypeError.new(("caller",)))
            .except(&TypeError, |_| {
                let g = delegator();
                call("next", g.next());
                call("throw", g.throw(ValueError.new(("v",))));
                call("next", g.next());
                Ok(Value::None)
            })
            .unwrap();
        out!("after {}", sees());
    }
    pub fn pep380() {
        run(Via::Pep380)
    }
    pub fn same_fiber() {
        run(Via::SameFiber)
    }
}

/// A generator suspended inside a handler that ignores `GeneratorExit` is
/// finally dropped (its frame cleared without running it): its handler ends
/// then, and the exception the caller is handling is still the caller's
/// (`sys.exc_info()`, and the context of what the caller raises next).
mod a_dropped_generator_leaves_the_callers_handled {
    use super::*;
    pub const PY: &str = r#"
    def stubborn():
        try:
            raise ValueError("own")
        except ValueError as e:
            e.__traceback__ = None
            while True:
                try:
                    yield 1
                except GeneratorExit:
                    print("ignoring GeneratorExit")
    try:
        raise TypeError("caller")
    except TypeError:
        g = stubborn()
        call("next", g.__next__)
        call("close", g.close)
        del g
        gc.collect()
        print("caller handles", repr(sys.exc_info()[1]))
        try:
            raise KeyError("next")
        except KeyError as e:
            chain(e)
    print("after", repr(sys.exc_info()[1]))
    "#;
    pub fn rust() {
        Err::<Value, _>(TypeError.new(("caller",)))
            .except(&TypeError, |_| {
                let g = Generator::named("stubborn", |co| {
                    Err::<Value, _>(ValueError.new(("own",))).except(&ValueError, |_| loop {
                        co.yield_(1.into()).except(&GeneratorExit, |_| {
                            out!("ignoring GeneratorExit");
                            Ok(Value::None)
                        })?;
                    })
                });
                call("next", g.next());
                call("close", g.close());
                drop(g);
                out!(
                    "caller handles {}",
                    opt_repr(pyfiber::exception::exc_info())
                );
                Err::<Value, _>(KeyError.new(("next",))).except(&KeyError, |e| {
                    chain(&e);
                    Ok(Value::None)
                })
            })
            .unwrap();
        out!("after {}", opt_repr(pyfiber::exception::exc_info()));
    }
}

/// `args`, `repr()`, `str()` and the traceback line at their edges: a
/// tuple key, several keys, empty strings, `None`, floats, bytes and lists
/// as args, GeneratorExit with two args, and `StopIteration.value` of each
/// shape (the first arg, `None` without args) -- also as a generator's
/// `return (1, 2)` and `return ""` raise it.
mod args_repr_str_edge_cases {
    use super::*;
    pub const PY: &str = r#"
    for e in [KeyError(("a", 1)), KeyError("a", "b"), KeyError(""), ValueError(""),
              ValueError(None), ValueError(2.5), ValueError(b"x"), ValueError([1, "a"]),
              GeneratorExit(), GeneratorExit("a", "b"), MyError(), RuntimeError("x", None),
              StopIteration(None), StopIteration(1, 2), StopIteration((1, 2)), StopIteration()]:
        show(e)
    for e in [StopIteration(None), StopIteration(1, 2), StopIteration((1, 2)), StopIteration()]:
        print("value", repr(e.value))
    def gen(r):
        yield 1
        return r
    for r in [(1, 2), ""]:
        g = gen(r)
        next(g)
        try:
            next(g)
        except StopIteration as e:
            show(e)
            print("value", repr(e.value))
    "#;
    pub fn rust() {
        let pair = Value::Tuple(vec![Value::Int(1), Value::Int(2)].into());
        for e in [
            KeyError.new((Value::Tuple(vec!["a".into(), Value::Int(1)].into()),)),
            KeyError.new(("a", "b")),
            KeyError.new(("",)),
            ValueError.new(("",)),
            ValueError.new((Value::None,)),
            ValueError.new((Value::Float(2.5),)),
            ValueError.new((Value::from(&b"x"[..]),)),
            ValueError.new((Value::from(vec![Value::Int(1), "a".into()]),)),
            GeneratorExit.new(()),
            GeneratorExit.new(("a", "b")),
            ExceptionClass::named("MyError").new(()),
            RuntimeError.new(("x", Value::None)),
            StopIteration.new((Value::None,)),
            StopIteration.new((1, 2)),
            StopIteration.new((pair.clone(),)),
            StopIteration.new(()),
        ] {
            show(&e);
        }
        for e in [
            StopIteration.new((Value::None,)),
            StopIteration.new((1, 2)),
            StopIteration.new((pair.clone(),)),
            StopIteration.new(()),
        ] {
            out!("value {:?}", e.stop_value().unwrap());
        }
        for r in [pair, Value::from("")] {
            let g = Generator::new(move |co| {
                co.yield_(1.into())?;
                Ok(r)
            });
            g.next().unwrap();
            g.next()
                .except(&StopIteration, |e| {
                    show(&e);
                    out!("value {:?}", e.stop_value().unwrap());
                    Ok(Value::None)
                })
                .unwrap();
        }
    }
}

/// PEP 479 when the StopIteration is raised inside an `except`: the
/// RuntimeError has it as cause and context, and it has the handled
/// exception as its own context; the traceback shows all three.
mod pep479_stop_iteration_raised_in_handler {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        yield 1
        try:
            raise ValueError("v")
        except ValueError:
            raise StopIteration("s")
    g = gen()
    next(g)
    try:
        next(g)
    except RuntimeError as e:
        chain(e)
        chain(e.__cause__)
        fmt(e)
    print(state(g))
    "#;
    pub fn rust() {
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            Err::<Value, _>(ValueError.new(("v",)))
                .except(&ValueError, |_| Err(StopIteration.new(("s",))))
        });
        g.next().unwrap();
        g.next()
            .except(&RuntimeError, |e| {
                chain(&e);
                chain(&e.cause().unwrap());
                fmt(&e);
                Ok(Value::None)
            })
            .unwrap();
        out!("{}", state(&g));
    }
}

/// Identity through objects delegated to: an object's `throw` receives
/// the very object thrown and re-raises it; without `throw` the delegator
/// catches that same object; the caller gets it back either way.
mod thrown_identity_through_objects {
    use super::*;
    pub const PY: &str = r#"
    thrown = MyError("t")
    class WithThrow:
        def __iter__(self):
            return self
        def __next__(self):
            return "w"
        def throw(self, e):
            print("object got thrown:", e is thrown)
            raise e
    class NoThrow:
        def __iter__(self):
            return self
        def __next__(self):
            return "n"
    def outer(obj):
        try:
            yield from obj
        except MyError as e:
            print("delegator caught is thrown:", e is thrown)
            raise
    for obj in (WithThrow(), NoThrow()):
        g = outer(obj)
        next(g)
        try:
            g.throw(thrown)
        except MyError as e:
            print("caller caught is thrown:", e is thrown)
            chain(e)
        print(state(g))
    "#;
    struct WithThrow(Exception);
    impl pyfiber::Protocol for WithThrow {
        fn type_name(&self) -> &str {
            "WithThrow"
        }
        fn next(&self) -> PyResult<Value> {
            Ok("w".into())
        }
        fn throw(&self, e: Exception) -> Option<PyResult<Value>> {
            out!("object got thrown: {}", py_bool(e.is(&self.0)));
            Some(Err(e))
        }
    }
    struct NoThrow;
    impl pyfiber::Protocol for NoThrow {
        fn type_name(&self) -> &str {
            "NoThrow"
        }
        fn next(&self) -> PyResult<Value> {
            Ok("n".into())
        }
    }
    pub fn rust() {
        let my = ExceptionClass::named("MyError");
        let thrown = my.new(("t",));
        let objects: [Rc<dyn pyfiber::Protocol>; 2] =
            [Rc::new(WithThrow(thrown.clone())), Rc::new(NoThrow)];
        for obj in objects {
            let t = thrown.clone();
            let g = Generator::new(move |co| {
                co.yield_from_object(obj).except(my, |e| {
                    out!("delegator caught is thrown: {}", py_bool(e.is(&t)));
                    Err(e)
                })
            });
            g.next().unwrap();
            g.throw(thrown.clone())
                .except(my, |e| {
                    out!("caller caught is thrown: {}", py_bool(e.is(&thrown)));
                    chain(&e);
                    Ok(Value::None)
                })
                .unwrap();
            out!("{}", state(&g));
        }
    }
}

/// An object ends a `yield from` with a value from any of its methods:
/// `__next__`, `send` or `throw` raising `StopIteration(v)` makes `v` the
/// result (`None` for a bare `StopIteration`).
mod object_finishes_with_value_from_any_method {
    use super::*;
    pub const PY: &str = r#"
    class Finisher:
        def __init__(self, how):
            self.how = how
        def __iter__(self):
            return self
        def __next__(self):
            if self.how == "next":
                raise StopIteration("next done")
            if self.how == "bare":
                raise StopIteration
            return "tick"
        def send(self, v):
            raise StopIteration(("sent", v))
        def throw(self, e):
            raise StopIteration("thrown " + str(e))
    def outer(obj):
        r = yield from obj
        print("result", repr(r))
        yield "after"
    for how in ("next", "bare", "send", "throw"):
        g = outer(Finisher(how))
        call("next", next, g)
        if how == "send":
            call("send", g.send, 5)
        if how == "throw":
            call("throw", g.throw, ValueError("v"))
        print(state(g))
        del g
    "#;
    struct Finisher(&'static str);
    impl pyfiber::Protocol for Finisher {
        fn type_name(&self) -> &str {
            "Finisher"
        }
        fn next(&self) -> PyResult<Value> {
            match self.0 {
                "next" => Err(StopIteration.new(("next done",))),
                "bare" => Err(StopIteration.new(())),
                _ => Ok("tick".into()),
            }
        }
        fn send(&self, v: Value) -> Option<PyResult<Value>> {
            let r = Value::Tuple(vec!["sent".into(), v].into());
            Some(Err(StopIteration.new((r,))))
        }
        fn throw(&self, e: Exception) -> Option<PyResult<Value>> {
            Some(Err(StopIteration.new((format!("thrown {e}"),))))
        }
    }
    pub fn rust() {
        for how in ["next", "bare", "send", "throw"] {
            let g = Generator::new(move |co| {
                let r = co.yield_from_object(Rc::new(Finisher(how)))?;
                out!("result {r:?}");
                co.yield_("after".into())?;
                Ok(Value::None)
            });
            call("next", g.next());
            if how == "send" {
                call("send", g.send(5.into()));
            }
            if how == "throw" {
                call("throw", g.throw(ValueError.new(("v",))));
            }
            out!("{}", state(&g));
        }
    }
}

/// Every mix of the optional methods PEP 380 looks up: a send without
/// `send` is AttributeError, a throw without `throw` lands in the
/// delegator, a close without `close` is skipped; what is there is called.
/// The finalizer closes whatever is still suspended.
mod yield_from_object_protocol_combinations {
    use super::*;
    pub const PY: &str = r#"
    class Proto:
        def __init__(self, methods):
            self.i = 0
            if "s" in methods:
                self.send = self._send
            if "t" in methods:
                self.throw = self._throw
            if "c" in methods:
                self.close = self._close
        def __iter__(self):
            return self
        def __next__(self):
            self.i += 1
            print("  next", self.i)
            return self.i
        def _send(self, v):
            print("  send", repr(v))
            return ("sent", v)
        def _throw(self, e):
            print("  throw", repr(e))
            return "caught"
        def _close(self):
            print("  close")
    def outer(obj):
        try:
            yield from obj
        except ValueError as e:
            print("  delegator caught", repr(e))
            yield "after"
        finally:
            print("  outer finally")
    for methods in ("", "s", "t", "c", "st", "tc", "stc"):
        print("methods", repr(methods))
        for act in ("send", "throw", "close"):
            g = outer(Proto(methods))
            next(g)
            if act == "send":
                call("  send 5", g.send, 5)
            elif act == "throw":
                call("  throw", g.throw, ValueError("v"))
            else:
                call("  close", g.close)
            print(" ", state(g))
            del g
    "#;
    struct Proto {
        methods: &'static str,
        i: std::cell::Cell<i64>,
    }
    impl pyfiber::Protocol for Proto {
        fn type_name(&self) -> &str {
            "Proto"
        }
        fn next(&self) -> PyResult<Value> {
            self.i.set(self.i.get() + 1);
            out!("  next {}", self.i.get());
            Ok(Value::Int(self.i.get()))
        }
        fn send(&self, v: Value) -> Option<PyResult<Value>> {
            self.methods.contains('s').then(|| {
                out!("  send {v:?}");
                Ok(Value::Tuple(vec!["sent".into(), v].into()))
            })
        }
        fn throw(&self, e: Exception) -> Option<PyResult<Value>> {
            self.methods.contains('t').then(|| {
                out!("  throw {e:?}");
                Ok("caught".into())
            })
        }
        fn close(&self) -> Option<PyResult<Value>> {
            self.methods.contains('c').then(|| {
                out!("  close");
                Ok(Value::None)
            })
        }
    }
    pub fn rust() {
        for methods in ["", "s", "t", "c", "st", "tc", "stc"] {
            out!("methods {:?}", Value::from(methods));
            for act in ["send", "throw", "close"] {
                let g = Generator::new(move |co| {
                    let _f = Finally("  outer finally");
                    let obj = Rc::new(Proto {
                        methods,
                        i: std::cell::Cell::new(0),
                    });
                    co.yield_from_object(obj).except(&ValueError, |e| {
                        out!("  delegator caught {e:?}");
                        co.yield_("after".into())
                    })
                });
                g.next().unwrap();
                match act {
                    "send" => call("  send 5", g.send(5.into())),
                    "throw" => call("  throw", g.throw(ValueError.new(("v",)))),
                    _ => call("  close", g.close()),
                }
                out!("  {}", state(&g));
            }
        }
    }
}

/// `gi_yieldfrom` is the very object delegated to: the sub-generator
/// itself (`is`), the protocol object itself, and `None` once the
/// delegation is over.
mod gi_yieldfrom_is_the_real_object {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        yield "s1"
        yield "s2"
    class Once:
        def __init__(self):
            self.n = 0
        def __iter__(self):
            return self
        def __next__(self):
            self.n += 1
            if self.n > 1:
                raise StopIteration("once done")
            return "o"
    s = sub()
    o = Once()
    def outer():
        r = yield from s
        print("sub ->", repr(r))
        r = yield from o
        print("obj ->", repr(r))
        yield "own"
    g = outer()
    call("next", next, g)
    print("is sub:", g.gi_yieldfrom is s)
    call("next", next, g)
    call("next", next, g)
    print("is obj:", g.gi_yieldfrom is o, type(g.gi_yieldfrom).__name__)
    call("next", next, g)
    print("after:", g.gi_yieldfrom)
    "#;
    struct Once(std::cell::Cell<i64>);
    impl pyfiber::Protocol for Once {
        fn type_name(&self) -> &str {
            "Once"
        }
        fn next(&self) -> PyResult<Value> {
            self.0.set(self.0.get() + 1);
            if self.0.get() > 1 {
                return Err(StopIteration.new(("once done",)));
            }
            Ok("o".into())
        }
    }
    pub fn rust() {
        let s = Generator::new(|co| {
            co.yield_("s1".into())?;
            co.yield_("s2".into())?;
            Ok(Value::None)
        });
        let o: Rc<dyn pyfiber::Protocol> = Rc::new(Once(std::cell::Cell::new(0)));
        let (sub, obj) = (s.clone(), o.clone());
        let g = Generator::new(move |co| {
            let r = co.yield_from(&sub)?;
            out!("sub -> {r:?}");
            let r = co.yield_from_object(obj)?;
            out!("obj -> {r:?}");
            co.yield_("own".into())?;
            Ok(Value::None)
        });
        call("next", g.next());
        let is_sub = matches!(g.gi_yieldfrom(), Some(YieldFrom::Generator(x)) if x.is(&s));
        out!("is sub: {}", py_bool(is_sub));
        call("next", g.next());
        call("next", g.next());
        let is_obj = matches!(g.gi_yieldfrom(), Some(YieldFrom::Object(x)) if Rc::ptr_eq(&x, &o));
        out!("is obj: {} {}", py_bool(is_obj), yf(&g));
        call("next", g.next());
        out!("after: {}", yf(&g));
    }
}

/// PEP 479 on a throw: the RuntimeError's `__cause__` (and `__context__`)
/// is the very StopIteration object thrown, into a generator and through a
/// delegation to the sub-generator that let it escape.
mod pep479_cause_is_the_thrown_object {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        yield "s"
    def outer():
        yield from sub()
    t = StopIteration("thrown")
    g = outer()
    next(g)
    try:
        g.throw(t)
    except RuntimeError as e:
        chain(e)
        print("cause is t:", e.__cause__ is t, "context is t:", e.__context__ is t)
    print(state(g))
    "#;
    fn sub(co: &Co<'_>) -> PyResult<Value> {
        co.yield_("s".into())
    }
    fn run(pep380: bool) {
        let t = StopIteration.new(("thrown",));
        let g = Generator::new(move |co| {
            if pep380 {
                co.yield_from(&Generator::new(sub))
            } else {
                co.yield_from_fn(sub)
            }
        });
        g.next().unwrap();
        g.throw(t.clone())
            .except(&RuntimeError, |e| {
                chain(&e);
                out!(
                    "cause is t: {} context is t: {}",
                    py_bool(e.cause().is_some_and(|c| c.is(&t))),
                    py_bool(e.context().is_some_and(|c| c.is(&t)))
                );
                Ok(Value::None)
            })
            .unwrap();
        out!("{}", state(&g));
    }
    pub fn pep380() {
        run(true)
    }
    pub fn same_fiber() {
        run(false)
    }
}

/// An exception passing through `finally` blocks and `except` clauses
/// that do not match stays the same object with no context; one caught
/// and re-raised inside a `finally` (a nested `try`) too.
mod finally_keeps_the_pending_exception {
    use super::*;
    pub const PY: &str = r#"
    t = ValueError("t")
    def gen():
        try:
            try:
                yield 1
            except KeyError:
                print("not this one")
            finally:
                print("inner finally")
                try:
                    raise TypeError("inside finally")
                except TypeError as e:
                    chain(e)
        finally:
            print("outer finally")
    g = gen()
    next(g)
    try:
        g.throw(t)
    except ValueError as e:
        print("is t:", e is t)
        chain(e)
    print(state(g))
    "#;
    pub fn rust() {
        let t = ValueError.new(("t",));
        let g = Generator::new(|co| {
            co.yield_(1.into())
                .except(&KeyError, |_| {
                    out!("not this one");
                    Ok(Value::None)
                })
                .finally(|| {
                    out!("inner finally");
                    Err::<(), _>(TypeError.new(("inside finally",))).except(&TypeError, |e| {
                        chain(&e);
                        Ok(())
                    })
                })
                .finally(|| {
                    out!("outer finally");
                    Ok(())
                })
        });
        g.next().unwrap();
        g.throw(t.clone())
            .except(&ValueError, |e| {
                out!("is t: {}", py_bool(e.is(&t)));
                chain(&e);
                Ok(Value::None)
            })
            .unwrap();
        out!("{}", state(&g));
    }
}

/// An object's `throw` raising `KeyError from e`: the delegator catches it
/// with the thrown object itself as `__cause__`, and the traceback shows
/// the two.
mod raise_from_in_an_objects_throw {
    use super::*;
    pub const PY: &str = r#"
    t = ValueError("t")
    class Wrapper:
        def __iter__(self):
            return self
        def __next__(self):
            return "w"
        def throw(self, e):
            raise KeyError("wrapped") from e
    def outer():
        try:
            yield from Wrapper()
        except KeyError as e:
            chain(e)
            print("cause is t:", e.__cause__ is t)
            fmt(e)
    g = outer()
    next(g)
    call("throw", g.throw, t)
    "#;
    struct Wrapper;
    impl pyfiber::Protocol for Wrapper {
        fn type_name(&self) -> &str {
            "Wrapper"
        }
        fn next(&self) -> PyResult<Value> {
            Ok("w".into())
        }
        fn throw(&self, e: Exception) -> Option<PyResult<Value>> {
            Some(Err(KeyError.new(("wrapped",)).with_cause(e)))
        }
    }
    pub fn rust() {
        let t = ValueError.new(("t",));
        let seen = t.clone();
        let g = Generator::new(move |co| {
            co.yield_from_object(Rc::new(Wrapper))
                .except(&KeyError, |e| {
                    chain(&e);
                    out!(
                        "cause is t: {}",
                        py_bool(e.cause().is_some_and(|c| c.is(&seen)))
                    );
                    fmt(&e);
                    Ok(Value::None)
                })
        });
        g.next().unwrap();
        call("throw", g.throw(t));
    }
}

/// What the caller is handling and the exceptions `close()` and `throw()`
/// hand a generator: close()'s GeneratorExit is raised in the caller's frame,
/// so it is chained to the caller's handled exception; a throw into a
/// finished or a just-started generator raises the exception straight back,
/// chained to nothing (a throw is not a raise), and the caller's `except`
/// does not chain it either.
mod close_and_throw_while_the_caller_handles {
    use super::*;
    pub const PY: &str = r#"
    def gen():
        try:
            yield 1
        except GeneratorExit as e:
            chain(e)
            raise
    def done():
        yield 1
    try:
        raise TypeError("caller")
    except TypeError:
        g = gen()
        next(g)
        call("close", g.close)
        d = done()
        call("close done", d.close)
        try:
            d.throw(ValueError("into finished"))
        except ValueError as e:
            chain(e)
        try:
            done().throw(KeyError("into just started"))
        except KeyError as e:
            chain(e)
    "#;
    pub fn rust() {
        let gen = || {
            Generator::new(|co| {
                co.yield_(1.into()).except(&GeneratorExit, |e| {
                    chain(&e);
                    Err(e)
                })
            })
        };
        let done = || Generator::new(|co| co.yield_(1.into()));
        Err::<Value, _>(TypeError.new(("caller",)))
            .except(&TypeError, |_| {
                let g = gen();
                g.next().unwrap();
                call("close", g.close());
                let d = done();
                call("close done", d.close());
                d.throw(ValueError.new(("into finished",)))
                    .except(&ValueError, |e| {
                        chain(&e);
                        Ok(Value::None)
                    })?;
                done()
                    .throw(KeyError.new(("into just started",)))
                    .except(&KeyError, |e| {
                        chain(&e);
                        Ok(Value::None)
                    })
            })
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// The registry: one `#[test]` per case, one python3 run for all of them
// ---------------------------------------------------------------------------

/// `cases! { name => [twin, ...], ... }` lists every case: it builds
/// `CASES` (what python3 runs) and a `#[test]` per case (what cargo reports).
/// Attributes before a name go on its `#[test]` (an `#[ignore = "why"]` for
/// a known bug whose fix is under way: python3 still runs its snippet).
macro_rules! cases {
    ($($(#[$attr:meta])* $name:ident => [$($twin:ident),+]),+ $(,)?) => {
        const CASES: &[Case] = &[$(Case {
            name: stringify!($name),
            python: $name::PY,
            twins: &[$((stringify!($twin), $name::$twin as fn())),+],
        }),+];

        mod case {
            $(
                #[test]
                $(#[$attr])*
                fn $name() {
                    super::check(stringify!($name));
                }
            )+
        }
    };
}

cases! {
    next_send_and_return => [rust],
    send_none_is_next => [rust],
    send_non_none_to_just_started => [rust],
    bare_yield_is_none => [rust],
    return_value_in_stop_iteration => [rust],
    bare_return_stop_iteration_none => [rust],
    closed_generator_send_raises_stop_iteration => [rust],
    for_loop_and_list => [rust],
    states_through_life => [rust],
    state_inside_body_is_running => [rust],
    reentrant_send_is_value_error => [rust],
    reentrant_uncaught_closes => [rust],
    reentrant_throw_and_close => [rust],
    throw_caught_yields_next => [rust],
    throw_uncaught_closes => [rust],
    throw_into_just_started => [rust],
    throw_into_finished => [rust],
    throw_caught_then_return => [rust],
    throw_stop_iteration_is_runtime_error => [rust],
    throw_stop_iteration_into_just_started => [rust],
    throw_handler_raises_other => [rust],
    throw_generator_exit_directly => [rust],
    throw_user_exception_class => [rust],
    except_exception_skips_generator_exit => [rust],
    close_just_started => [rust],
    close_finished => [rust],
    close_suspended_runs_finally => [rust],
    close_twice => [rust],
    close_ignored_generator_exit => [rust],
    close_yield_in_finally => [rust],
    close_returns_value_313 => [rust],
    close_caught_and_returned_none => [rust],
    close_body_raises_other => [rust],
    drop_suspended_runs_cleanup => [rust],
    drop_suspended_runs_guard => [rust],
    drop_just_started_runs_nothing => [rust],
    drop_finished_runs_nothing => [rust],
    drop_body_handles_exit => [rust],
    drop_delegator_closes_chain => [pep380, same_fiber],
    exception_propagates_and_closes => [rust],
    exception_before_first_yield => [rust],
    stop_iteration_in_body_pep479 => [rust],
    next_of_exhausted_inside_body_pep479 => [rust],
    exception_caught_inside_body => [rust],
    exception_from_sent_value => [rust],
    yield_from_values_sends_and_result => [pep380, same_fiber],
    yield_from_three_deep => [pep380, same_fiber],
    yield_from_throw_handled_innermost => [pep380, same_fiber],
    yield_from_throw_caught_by_middle => [pep380, same_fiber],
    yield_from_close_chain_order => [pep380, same_fiber],
    yield_from_sub_ignores_generator_exit => [pep380],
    yield_from_exhausted_generator => [pep380],
    yield_from_sub_returns_at_once => [pep380, same_fiber],
    yield_from_list_send_attribute_error => [rust],
    yield_from_range_send_attribute_error => [rust],
    yield_from_list_items_and_result => [rust],
    yield_from_list_throw_lands_in_delegator => [rust],
    yield_from_list_throw_uncaught => [rust],
    yield_from_list_close => [rust],
    gi_yieldfrom_at_each_point => [pep380],
    states_of_chain_at_each_point => [pep380],
    yield_from_delegator_catches_sub_exception => [pep380, same_fiber],
    yield_from_close_sub_raises => [pep380, same_fiber],
    yield_from_close_sub_returns_value => [pep380],
    yield_from_itself => [pep380],
    yield_from_started_sub => [pep380],
    yield_from_send_before_start => [pep380, same_fiber],
    yield_from_throw_sub_returns => [pep380, same_fiber],
    yield_from_stop_iteration_in_sub => [pep380, same_fiber],
    yield_from_for_loop_mixed => [pep380, same_fiber],
    yield_from_sub_returns_on_close_delegator_sees_exit => [pep380, same_fiber],
    yield_from_delegator_catches_pep479_runtime_error => [pep380, same_fiber],
    yield_from_throw_generator_exit => [pep380, same_fiber],
    yield_from_results_in_expressions => [pep380, same_fiber],
    panic_propagates_and_closes => [rust],
    panic_through_yield_from => [pep380, same_fiber],
    values_of_every_kind_round_trip => [pep380, same_fiber],
    refused_sends_keep_nothing => [rust],
    value_yielded_on_close_is_freed => [rust],
    objects_through_a_chain_are_the_same_object => [pep380, same_fiber],
    exception_args_repr_str => [rust],
    oserror_errno_picks_the_subclass => [rust],
    exception_hierarchy => [rust],
    user_class_with_base => [rust],
    thrown_object_identity => [rust],
    throw_class_and_generator_exit_args => [rust],
    close_throws_bare_generator_exit => [rust],
    stop_iteration_value_is_the_object => [rust],
    thrown_identity_through_yield_from => [pep380, same_fiber],
    raise_in_except_sets_context => [rust],
    raise_from_and_from_none => [rust],
    raise_in_finally_sets_context => [rust],
    close_raising_has_generator_exit_context => [rust],
    pep479_runtime_error_has_cause => [rust],
    pep479_cause_through_yield_from => [pep380, same_fiber],
    context_through_yield_from => [pep380, same_fiber],
    close_delegator_sub_raises_context => [pep380, same_fiber],
    reraise_and_raise_after_handler => [rust],
    nested_handlers_and_cycle_cut => [rust],
    format_exception_three_deep => [rust],
    yield_from_object_full_protocol => [rust],
    yield_from_object_partial_protocol => [rust],
    yield_from_reraises_the_thrown_generator_exit => [rust],
    reraise_saved_exception_overwrites_context => [rust],
    raise_from_other_keeps_context => [rust],
    raise_in_finally_during_close => [rust],
    raise_in_sub_finally_during_delegator_close => [pep380, same_fiber],
    throw_into_handler_sets_context => [pep380, same_fiber],
    close_in_handler_generator_exit_context => [rust],
    handled_exception_does_not_leak_across_yield => [rust],
    throw_chains_only_to_the_generators_own_handled => [rust],
    a_failed_throw_chains_to_the_delegators_own => [pep380, same_fiber],
    a_throw_walks_down_past_the_delegators_handled => [rust],
    a_dropped_generator_leaves_the_callers_handled => [rust],
    a_throw_into_a_sub_sees_its_own_and_the_callers => [pep380, same_fiber],
    args_repr_str_edge_cases => [rust],
    pep479_stop_iteration_raised_in_handler => [rust],
    thrown_identity_through_objects => [rust],
    object_finishes_with_value_from_any_method => [rust],
    yield_from_object_protocol_combinations => [rust],
    gi_yieldfrom_is_the_real_object => [rust],
    gi_frame_is_the_pending_yields_line => [rust],
    pep479_cause_is_the_thrown_object => [pep380, same_fiber],
    finally_keeps_the_pending_exception => [rust],
    raise_from_in_an_objects_throw => [rust],
    close_and_throw_while_the_caller_handles => [rust],
}

/// `gi_frame`: where a generator stands, as line offsets from its `def`
/// (Python) or from the `Generator::new(` line (Rust, whose closure body
/// starts on the next line as a Python body does): the def line before it
/// starts, the pending yield's line while suspended (a `yield from`'s line
/// while it delegates, to a generator or a list), and `None` once finished
/// or closed, or when closed before it ever ran.
mod gi_frame_is_the_pending_yields_line {
    use super::*;
    pub const PY: &str = r#"
    def sub():
        yield "s"
    def gen():
        yield 1
        x = yield from sub()
        yield from [7, 8]
        return 3
    g = gen()
    first = g.gi_frame.f_lineno
    print("created at def:", first == gen.__code__.co_firstlineno)
    for _ in range(4):
        call("next", next, g)
        print("at +", g.gi_frame.f_lineno - first)
    call("next", next, g)
    print("finished:", g.gi_frame)
    g = gen()
    next(g)
    g.close()
    print("closed:", g.gi_frame)
    g = gen()
    g.close()
    print("closed unstarted:", g.gi_frame)
    "#;
    /// The generator and its `def` line (the `Generator::new(` line).
    fn gen() -> (Generator, u32) {
        let def = line!() + 1;
        let g = Generator::new(|co| {
            co.yield_(1.into())?;
            let _x = co.yield_from(&Generator::new(|co| co.yield_("s".into())))?;
            co.yield_from_list(vec![7.into(), 8.into()])?;
            Ok(3.into())
        });
        (g, def)
    }
    pub fn rust() {
        let (g, def) = gen();
        let first = g
            .gi_frame()
            .expect("a new generator has a frame")
            .f_lineno();
        out!(
            "created at def: {}",
            if first == def { "True" } else { "False" }
        );
        for _ in 0..4 {
            call("next", g.next());
            out!("at + {}", g.gi_frame().unwrap().f_lineno() - first);
        }
        call("next", g.next());
        out!(
            "finished: {}",
            if g.gi_frame().is_none() {
                "None"
            } else {
                "a frame"
            }
        );
        let (g, _) = gen();
        g.next().unwrap();
        g.close().unwrap();
        out!(
            "closed: {}",
            if g.gi_frame().is_none() {
                "None"
            } else {
                "a frame"
            }
        );
        let (g, _) = gen();
        g.close().unwrap();
        out!(
            "closed unstarted: {}",
            if g.gi_frame().is_none() {
                "None"
            } else {
                "a frame"
            }
        );
    }
}

/// The suite itself: enough cases, unique names, and python3 ran every one
/// of them (a snippet that crashed python3's driver would leave a gap).
#[test]
fn python_ran_every_case() {
    assert!(CASES.len() >= 50, "only {} cases", CASES.len());
    let traces = python_traces();
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CASES.len(), "duplicate case names");
    for case in CASES {
        let trace = traces
            .get(case.name)
            .unwrap_or_else(|| panic!("python3 did not run case {}", case.name));
        assert!(
            !trace.iter().any(|l| l.starts_with("!!! uncaught")),
            "case {}: the Python snippet itself failed: {trace:?}",
            case.name
        );
    }
    assert_eq!(traces.len(), CASES.len(), "one trace per case");
}
