//! The pyfiber side of the differential test: an interpreter that turns each
//! function of a [`Program`] into a `Generator` body, and a driver that plays
//! the steps and records the trace.
//!
//! Why this exists: the Python side is source text run by CPython; here the
//! same AST runs on pyfiber's generators. Everything that is Python's own
//! language (blocks, `except` matching, `finally`, bare `raise`) is done by
//! this interpreter, written straight from the language reference; everything
//! that is the generator protocol (`yield`, `send`, `throw`, `close`,
//! `yield from`, PEP 479, finalizers) is left to pyfiber, which is what is
//! under test.

use std::cell::RefCell;
use std::rc::Rc;

use pyfiber::exception::{GeneratorExit, KeyError, RuntimeError, StopIteration, ValueError};
use pyfiber::{Co, Exception, Generator, PyResult, Value};

use super::program::{Catch, Delegation, Expr, Lit, Poke, Program, Raisable, Step, Stmt};
use super::python::step_label;

/// Which runtime the interpreter drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// pyfiber as it is.
    Pyfiber,
    /// A deliberately wrong `yield from`, written the way a first attempt
    /// often is (`for y in sub: received = yield y`): sends, throws and close
    /// are not forwarded to the sub-generator. The fuzzer must catch it.
    NaiveYieldFrom,
}

/// What one case shares between its generator bodies.
struct Ctx {
    program: Program,
    runtime: Runtime,
    out: RefCell<Vec<String>>,
    /// `me()`: the driver's `g` while the driver holds it. Python's weak
    /// reference dies with `del g`, before the finalizer runs; the driver
    /// clears this just before it drops `g`.
    me: RefCell<Option<Generator>>,
}

impl Ctx {
    fn print(&self, line: String) {
        self.out.borrow_mut().push(line);
    }
}

/// How a block ended when it did not raise.
enum Flow {
    /// It ran to its end.
    Normal,
    /// It executed `return value`.
    Return(Value),
}

/// The frame of one function call: its name and its local `x`.
struct Frame<'p> {
    name: &'p str,
    x: Value,
    /// The call runs on `f0`'s fiber, where `co.generator()` is `me()`.
    on_f0_fiber: bool,
}

/// A literal as a pyfiber [`Value`].
pub fn value(l: &Lit) -> Value {
    match l {
        Lit::None => Value::None,
        Lit::Int(i) => Value::Int(*i),
        Lit::Str(s) => Value::from(s.as_str()),
    }
}

/// `Class(arg)` as a pyfiber [`Exception`].
pub fn exception(kind: Raisable, arg: &Lit) -> Exception {
    let text = match arg {
        Lit::Str(s) => s.clone(),
        other => value(other).to_string(),
    };
    match kind {
        Raisable::ValueError => Exception::ValueError(text),
        Raisable::KeyError => Exception::KeyError(text),
        Raisable::MyError => Exception::user("MyError", text),
        Raisable::StopIteration => StopIteration.new((value(arg),)),
        Raisable::GeneratorExit => Exception::GeneratorExit(),
    }
}

/// `isinstance(exc, Class)` for the classes an `except` clause may name.
fn matches(catch: Catch, exc: &Exception) -> bool {
    match catch {
        Catch::ValueError => exc.is_instance(&ValueError),
        Catch::KeyError => exc.is_instance(&KeyError),
        Catch::MyError => exc.name() == "MyError",
        Catch::RuntimeError => exc.is_instance(&RuntimeError),
        Catch::StopIteration => exc.is_instance(&StopIteration),
        Catch::Exception => exc.is_exception(),
        Catch::GeneratorExit => exc.is_instance(&GeneratorExit),
        Catch::BaseException => true,
    }
}

/// `fK()`: a generator object whose body interprets function `f`.
fn make_generator(ctx: &Rc<Ctx>, f: usize) -> Generator {
    let name = ctx.program.funcs[f].name.clone();
    let ctx = ctx.clone();
    Generator::named(name, move |co| call_body(&ctx, co, f, f == 0))
}

/// The body of function `f`, run on whichever fiber calls it.
fn call_body(ctx: &Rc<Ctx>, co: &Co<'_>, f: usize, on_f0_fiber: bool) -> PyResult<Value> {
    let func = &ctx.program.funcs[f];
    let mut frame = Frame {
        name: &func.name,
        x: Value::None,
        on_f0_fiber,
    };
    ctx.print(format!("{} start", func.name));
    match exec_block(ctx, co, &mut frame, &func.body, None)? {
        Flow::Normal => {
            ctx.print(format!("{} end", func.name));
            Ok(Value::None)
        }
        Flow::Return(v) => Ok(v),
    }
}

/// `yield from fK()` with `fK`'s body called on this very fiber. A generator
/// function's boundary does one thing a plain call does not: PEP 479 turns a
/// `StopIteration` escaping the body into `RuntimeError`, so the delegator
/// sees what it would see from a sub-generator. (Closing needs nothing here:
/// `GeneratorExit` reaches the innermost `yield` and unwinds the call stack,
/// which is what PEP 380's `_i.close(); raise` does level by level, as long as
/// no level survives it -- see `Gen::program`.)
fn same_fiber(ctx: &Rc<Ctx>, co: &Co<'_>, f: usize, on_f0_fiber: bool) -> PyResult<Value> {
    match call_body(ctx, co, f, on_f0_fiber) {
        Err(e) if e.is_instance(&StopIteration) => Err(Exception::RuntimeError(
            "generator raised StopIteration".into(),
        )),
        other => other,
    }
}

/// The broken `yield from` of [`Runtime::NaiveYieldFrom`].
fn naive_yield_from(co: &Co<'_>, sub: &Generator) -> PyResult<Value> {
    loop {
        match sub.next() {
            Ok(y) => {
                co.yield_(y)?;
            }
            Err(e) => return e.stop_value().cloned().ok_or(e),
        }
    }
}

fn eval(e: &Expr, frame: &Frame<'_>) -> Value {
    match e {
        Expr::Lit(l) => value(l),
        Expr::X => frame.x.clone(),
    }
}

/// Runs a block. `handling` is the exception the innermost enclosing
/// `except` clause caught, for a bare `raise`.
fn exec_block(
    ctx: &Rc<Ctx>,
    co: &Co<'_>,
    frame: &mut Frame<'_>,
    body: &[Stmt],
    handling: Option<&Exception>,
) -> PyResult<Flow> {
    for stmt in body {
        if let Flow::Return(v) = exec_stmt(ctx, co, frame, stmt, handling)? {
            return Ok(Flow::Return(v));
        }
    }
    Ok(Flow::Normal)
}

fn exec_stmt(
    ctx: &Rc<Ctx>,
    co: &Co<'_>,
    frame: &mut Frame<'_>,
    stmt: &Stmt,
    handling: Option<&Exception>,
) -> PyResult<Flow> {
    let name = frame.name;
    match stmt {
        Stmt::Print(id) => ctx.print(format!("{name} note#{id}")),
        Stmt::Yield(e) => {
            frame.x = co.yield_(eval(e, frame))?;
            ctx.print(format!("{name} got {:?}", frame.x));
        }
        Stmt::YieldList(items) => {
            frame.x = co.yield_from_list(items.iter().map(value).collect())?;
            ctx.print(format!("{name} list-> {:?}", frame.x));
        }
        Stmt::YieldFrom { callee, how } => {
            frame.x = match how {
                Delegation::Literal => {
                    let sub = make_generator(ctx, *callee);
                    let result = match ctx.runtime {
                        Runtime::Pyfiber => co.yield_from(&sub),
                        Runtime::NaiveYieldFrom => naive_yield_from(co, &sub),
                    };
                    // Python drops the sub-generator as soon as the
                    // `yield from` expression is done, before any handler of
                    // ours runs: its finalizer (if it is still suspended)
                    // prints here, not later.
                    drop(sub);
                    result?
                }
                Delegation::SameFiber => same_fiber(ctx, co, *callee, frame.on_f0_fiber)?,
            };
            ctx.print(format!("{name} yf-> {:?}", frame.x));
        }
        Stmt::Try {
            id,
            body,
            handlers,
            finally,
        } => {
            ctx.print(format!("{name} try#{id}"));
            let mut outcome = exec_block(ctx, co, frame, body, handling);
            if let Err(exc) = &outcome {
                if let Some((_, handler)) = handlers.iter().find(|(c, _)| matches(*c, exc)) {
                    let exc = exc.clone();
                    ctx.print(format!("{name} except#{id} {}", exc.line()));
                    outcome = exec_block(ctx, co, frame, handler, Some(&exc));
                }
            }
            if let Some(fin) = finally {
                ctx.print(format!("{name} finally#{id}"));
                // `finally` runs whatever happened; if it raises or returns,
                // that replaces the pending outcome.
                match exec_block(ctx, co, frame, fin, handling)? {
                    Flow::Normal => {}
                    Flow::Return(v) => outcome = Ok(Flow::Return(v)),
                }
            }
            if let Flow::Return(v) = outcome? {
                return Ok(Flow::Return(v));
            }
            ctx.print(format!("{name} after#{id}"));
        }
        Stmt::Repeat { id, n, body } => {
            for i in 0..*n {
                ctx.print(format!("{name} loop#{id} {i}"));
                if let Flow::Return(v) = exec_block(ctx, co, frame, body, handling)? {
                    return Ok(Flow::Return(v));
                }
            }
        }
        Stmt::Raise(kind, msg) => return Err(exception(*kind, &Lit::Str(msg.clone()))),
        Stmt::Reraise => {
            return Err(handling
                .expect("the generator only puts a bare `raise` inside a handler")
                .clone())
        }
        Stmt::Return(e) => return Ok(Flow::Return(eval(e, frame))),
        Stmt::Poke(op) => {
            let me = ctx.me.borrow().clone();
            if frame.on_f0_fiber {
                // Here the fiber's own generator is `me()` too: while `g` is
                // held, and gone (no handle left) in the finalizer.
                let own = co.generator();
                assert_eq!(
                    own.as_ref().map(|g| g.name().to_string()),
                    me.as_ref().map(|g| g.name().to_string()),
                    "co.generator() on f0's fiber is not the driver's g"
                );
                assert!(own.zip(me.clone()).is_none_or(|(a, b)| a.is(&b)));
            }
            let Some(me) = me else {
                ctx.print(format!("{name} me gone"));
                return Ok(Flow::Normal);
            };
            let result = match op {
                Poke::Next => me.next(),
                Poke::Throw => me.throw(Exception::ValueError("self".into())),
                Poke::Close => me.close(),
                Poke::State => {
                    ctx.print(format!("{name} me {}", me.state().python_name()));
                    return Ok(Flow::Normal);
                }
            };
            drop(me);
            result?;
            ctx.print(format!("{name} me ok"));
        }
    }
    Ok(Flow::Normal)
}

/// Runs a case on pyfiber and returns its trace: the body's prints and one
/// line per driver step, then whatever the finalizer prints when `g` goes.
pub fn run(program: &Program, runtime: Runtime) -> Vec<String> {
    let ctx = Rc::new(Ctx {
        program: program.clone(),
        runtime,
        out: RefCell::new(Vec::new()),
        me: RefCell::new(None),
    });
    let g = make_generator(&ctx, 0);
    *ctx.me.borrow_mut() = Some(g.clone()); // me = weakref.ref(g)
    for step in &program.steps {
        let label = step_label(step);
        let result = match step {
            Step::Next => g.next(),
            Step::Send(v) => g.send(value(v)),
            Step::Throw(kind, arg) => g.throw(exception(*kind, arg)),
            Step::Close => g.close(),
            Step::State => {
                ctx.print(format!("{label} {}", g.state().python_name()));
                continue;
            }
        };
        ctx.print(match result {
            Ok(v) => format!("{label} -> {v:?}"),
            Err(e) => format!("{label} !! {}", e.line()),
        });
    }
    ctx.me.borrow_mut().take(); // the weak reference dies with `del g`
    drop(g);
    ctx.out.take()
}
