//! A generator dropped in the middle of a `yield from` chain closes the
//! whole chain (issue 7, part 3): every level's cleanup runs, in the order
//! CPython runs it, and every fiber stack goes back to the pool.
//!
//! Why this exists: dropping the last handle to a suspended generator is
//! `del g` in Python, and CPython's finalizer closes it -- which, through
//! PEP 380, closes the sub-generator first, and so on down. A chain that leaked
//! a level would leak its fiber stack (a `mmap`) and skip its `finally`.
//!
//! The chain is three deep (`outer -> mid -> inner`) and is built with each
//! mix of pyfiber's two ways of delegating: `co.yield_from(&generator)` (a
//! fiber per level) and a plain call on the delegator's own fiber. A `finally`
//! is written the way a pyfiber body writes it: run the block, print, hand the
//! outcome on -- so it runs only if the close really throws `GeneratorExit`
//! into the body (a drop guard would run on any unwind and prove nothing).
//!
//! Nothing expected is written by hand: one `python3` runs the Python
//! snippets and its output is the expected trace of each case.

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

use pyfiber::exception::GeneratorExit;
use pyfiber::{stack_pool, Co, Generator, PyResult, Value};

thread_local! {
    /// What the Rust side has "printed".
    static TRACE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// `print(...)` for the Rust side.
fn out(line: &str) {
    TRACE.with(|t| t.borrow_mut().push(line.to_string()));
}

/// The Python snippets, each printed after a `=== name` marker. `del g`
/// runs the finalizer; `after del` shows it ran before the next statement.
const PYTHON: &str = r#"
import gc, sys
sys.unraisablehook = lambda u: print("ignored:", type(u.exc_value).__name__)

def chain():
    def inner():
        try:
            print("inner start")
            yield 1
            print("inner resumed")
        finally:
            print("inner cleanup")
    def mid():
        try:
            print("mid start")
            return (yield from inner())
        finally:
            print("mid cleanup")
    def outer():
        try:
            print("outer start")
            return (yield from mid())
        finally:
            print("outer cleanup")
    g = outer()
    print("next ->", next(g))
    del g
    print("after del")

def chain_in_a_list():
    def inner():
        try:
            print("inner start")
            yield from [1, 2]
        finally:
            print("inner cleanup")
    def mid():
        try:
            print("mid start")
            return (yield from inner())
        finally:
            print("mid cleanup")
    def outer():
        try:
            print("outer start")
            return (yield from mid())
        finally:
            print("outer cleanup")
    g = outer()
    print("next ->", next(g))
    del g
    print("after del")

def mid_ignores_generator_exit():
    def inner():
        try:
            print("inner start")
            yield 1
        finally:
            print("inner cleanup")
    def mid():
        try:
            print("mid start")
            return (yield from inner())
        finally:
            print("mid cleanup")
            try:
                yield "again"
            finally:
                print("mid cleanup 2")
    def outer():
        try:
            print("outer start")
            return (yield from mid())
        finally:
            print("outer cleanup")
    g = outer()
    print("next ->", next(g))
    del g
    print("after del")

def outer_ignores_generator_exit():
    def inner():
        try:
            print("inner start")
            yield 1
        finally:
            print("inner cleanup")
    def mid():
        try:
            print("mid start")
            return (yield from inner())
        finally:
            print("mid cleanup")
    def outer():
        try:
            print("outer start")
            yield 0
        except GeneratorExit:
            print("outer cleanup")
        yield from mid()
    g = outer()
    print("next ->", next(g))
    del g
    print("after del")

for case in [chain, chain_in_a_list, mid_ignores_generator_exit, outer_ignores_generator_exit]:
    print("=== " + case.__name__)
    case()
    gc.collect()
print("=== END")
"#;

/// What python3 printed, by case.
fn expected(case: &str) -> Vec<String> {
    static TRACES: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    let traces = TRACES.get_or_init(|| {
        let output = Command::new("python3")
            .arg("-c")
            .arg(PYTHON)
            .output()
            .expect("drop_chain needs `python3` on PATH");
        let stdout = String::from_utf8(output.stdout).expect("python3 printed UTF-8");
        assert!(
            output.status.success() && stdout.ends_with("=== END\n"),
            "python3 failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut traces: HashMap<String, Vec<String>> = HashMap::new();
        let mut current = String::new();
        for line in stdout.lines() {
            if let Some(name) = line.strip_prefix("=== ") {
                current = name.to_string();
                traces.entry(current.clone()).or_default();
            } else {
                traces.get_mut(&current).unwrap().push(line.to_string());
            }
        }
        traces
    });
    let trace = traces
        .get(case)
        .unwrap_or_else(|| panic!("python3 printed no case {case}"))
        .clone();
    // The unraisable hook's lines are Python's stderr report; pyfiber writes
    // its "Exception ignored in" report to stderr too, so neither is compared.
    trace
        .into_iter()
        .filter(|l| !l.starts_with("ignored:"))
        .collect()
}

/// How one level hands its `yield from` down.
#[derive(Clone, Copy, Debug)]
enum How {
    /// `co.yield_from(&generator)`: the sub-generator on its own fiber.
    Literal,
    /// The sub-generator's body called on this fiber.
    SameFiber,
}

/// A generator body, as a plain function so that it can be delegated to
/// either way.
type Body = fn(&Co<'_>, How) -> PyResult<Value>;

/// `yield from sub()` where `sub`'s body is `body`, delegated `how`.
fn delegate(co: &Co<'_>, how: How, name: &str, body: Body, next: How) -> PyResult<Value> {
    match how {
        How::Literal => co.yield_from(&Generator::named(name, move |co| body(co, next))),
        How::SameFiber => body(co, next),
    }
}

/// ```python
/// def inner():
///     try:
///         print("inner start"); yield 1; print("inner resumed")
///     finally:
///         print("inner cleanup")
/// ```
fn inner(co: &Co<'_>, _: How) -> PyResult<Value> {
    out("inner start");
    let r = co.yield_(1.into()).map(|_| out("inner resumed"));
    out("inner cleanup");
    r.map(|_| Value::None)
}

/// `inner` with `yield from [1, 2]` in place of `yield 1`.
fn inner_in_a_list(co: &Co<'_>, _: How) -> PyResult<Value> {
    out("inner start");
    let r = co.yield_from_list(vec![Value::Int(1), Value::Int(2)]);
    out("inner cleanup");
    r
}

/// ```python
/// def mid():
///     try:
///         print("mid start"); return (yield from inner())
///     finally:
///         print("mid cleanup")
/// ```
fn mid(co: &Co<'_>, how: How) -> PyResult<Value> {
    out("mid start");
    let r = delegate(co, how, "inner", inner, how);
    out("mid cleanup");
    r
}

/// `mid` over `inner_in_a_list`.
fn mid_over_a_list(co: &Co<'_>, how: How) -> PyResult<Value> {
    out("mid start");
    let r = delegate(co, how, "inner", inner_in_a_list, how);
    out("mid cleanup");
    r
}

/// `mid` whose `finally` yields again: it ignores `GeneratorExit`.
fn mid_ignoring(co: &Co<'_>, how: How) -> PyResult<Value> {
    out("mid start");
    let r = delegate(co, how, "inner", inner, how);
    out("mid cleanup");
    let again = co.yield_("again".into());
    out("mid cleanup 2");
    again?;
    r
}

/// The three-level chain `outer -> mid -> inner`, `outer` delegating
/// `outer_how` and `mid` delegating `mid_how`.
fn outer(outer_how: How, mid_how: How, mid_body: Body) -> Generator {
    Generator::named("outer", move |co| {
        out("outer start");
        let r = delegate(co, outer_how, "mid", mid_body, mid_how);
        out("outer cleanup");
        r
    })
}

/// Runs `g` to its first yield, drops it, and checks the trace against
/// python3's and the stack count: `fibers` stacks while suspended, none
/// left over after the drop.
fn check(case: &str, label: &str, g: Generator, fibers: usize) {
    TRACE.with(|t| t.borrow_mut().clear());
    let before = stack_pool::stats().in_use;
    match g.next() {
        Ok(v) => out(&format!("next -> {v}")),
        Err(e) => out(&format!("next !! {}", e.line())),
    }
    assert_eq!(
        stack_pool::stats().in_use - before,
        fibers,
        "{case} ({label}): fiber stacks in use while the chain is suspended"
    );
    drop(g); // del g
    out("after del");
    let got = TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    assert_eq!(
        got,
        expected(case),
        "{case} ({label}): pyfiber's trace (left) differs from python3's (right)"
    );
    assert_eq!(
        stack_pool::stats().in_use,
        before,
        "{case} ({label}): fiber stacks still in use after the chain was dropped"
    );
}

/// Each mix of delegations, with the stacks it keeps while suspended: one
/// per generator that runs on a fiber of its own.
const MIXES: [(How, How, usize); 4] = [
    (How::Literal, How::Literal, 3),
    (How::Literal, How::SameFiber, 2),
    (How::SameFiber, How::Literal, 2),
    (How::SameFiber, How::SameFiber, 1),
];

#[test]
fn a_dropped_chain_closes_every_level_innermost_first() {
    for (outer_how, mid_how, fibers) in MIXES {
        let label = format!("outer {outer_how:?}, mid {mid_how:?}");
        check("chain", &label, outer(outer_how, mid_how, mid), fibers);
    }
}

#[test]
fn a_chain_dropped_inside_yield_from_a_list_closes_every_level() {
    for (outer_how, mid_how, fibers) in MIXES {
        let label = format!("outer {outer_how:?}, mid {mid_how:?}");
        let g = outer(outer_how, mid_how, mid_over_a_list);
        check("chain_in_a_list", &label, g, fibers);
    }
}

/// `mid` yields while being closed, so `outer`'s close gets "generator
/// ignored GeneratorExit"; CPython then drops `mid` at once (it was only on
/// `outer`'s stack), and its finalizer closes it again before `outer`'s own
/// cleanup runs. `mid` must have a frame of its own for that, so `outer`
/// delegates to it with `co.yield_from`.
#[test]
fn a_level_that_ignores_generator_exit_is_closed_again_when_it_goes() {
    for (mid_how, fibers) in [(How::Literal, 3), (How::SameFiber, 2)] {
        let label = format!("outer Literal, mid {mid_how:?}");
        let g = outer(How::Literal, mid_how, mid_ignoring);
        check("mid_ignores_generator_exit", &label, g, fibers);
    }
}

/// `outer` swallows `GeneratorExit` and starts a `yield from mid()` while
/// being finalized, so it ignores `GeneratorExit`. CPython then clears
/// `outer`'s frame, and the chain it was delegating to is closed on its way
/// out: `inner` and `mid` clean up, innermost first, before `del g` returns.
///
/// (The Python swallows `GeneratorExit` with `except` and yields *after* the
/// handler: a generator suspended inside an `except`/`finally` block sits in a
/// reference cycle through the exception's traceback, and CPython would clear
/// it only when the cycle collector runs.)
#[test]
fn a_chain_left_behind_by_a_generator_that_ignored_generator_exit_is_closed() {
    for (mid_how, fibers) in [(How::Literal, 1), (How::SameFiber, 1)] {
        let label = format!("outer Literal, mid {mid_how:?}");
        let g = Generator::named("outer", move |co| {
            out("outer start");
            match co.yield_(0.into()) {
                Ok(_) => {}
                Err(e) if e.is_instance(&GeneratorExit) => out("outer cleanup"),
                Err(e) => return Err(e),
            }
            co.yield_from(&Generator::named("mid", move |co| mid(co, mid_how)))
        });
        check("outer_ignores_generator_exit", &label, g, fibers);
    }
}
