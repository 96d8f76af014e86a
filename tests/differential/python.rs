//! The Python side of the differential test: a [`Program`] as Python source,
//! and one script that runs every case in a single `python3`.
//!
//! Why this exists: CPython is the specification. Every case becomes a
//! function `case_N()` that defines the generator functions, drives `g = f0()`
//! step by step and ends with `del g`; the script prints `=== case N` before
//! each, so one run of `python3` gives every expected trace.

use std::fmt::Write as _;

use pyfiber::value::str_repr;

use super::program::{Cause, Delegation, Expr, Func, Lit, Poke, Program, Raisable, Step, Stmt};

/// Helpers the cases call. `call` and `line` fix the trace format the Rust
/// driver reproduces; `close313` is `generator.close()` as Python 3.13
/// defines it (the one behaviour this python3 lacks; see NOTES.md).
pub const PRELUDE: &str = concat!(
    include_str!("../support/cpython_helpers.py"),
    r#"import gc, inspect, sys, weakref

gc.disable()  # a finalizer runs at `del g` or at the explicit collect, never at random
sys.unraisablehook = lambda unraisable: None  # pyfiber reports those on stderr

class MyError(Exception):
    pass

def untrace():
    # First thing in every `except` and `finally` block. A generator
    # suspended while it handles an exception is kept alive by a reference
    # cycle (frame -> exception -> traceback -> frame), so CPython clears its
    # frame -- closing the sub-generators it holds -- only when the cycle
    # collector runs. pyfiber, like CPython's reference counting, does it the
    # moment the last reference goes. Nothing here prints a traceback; drop it
    # and the cycle, so both sides clear frames at the same moment.
    e = sys.exc_info()[1]
    if e is not None:
        e.__traceback__ = None

def cline(x):
    return "None" if x is None else line(x)

THROWING = False

def throwing(on):
    # The driver has called throw() or close() (or the finalizer closes g).
    global THROWING
    THROWING = on

def info(e, t):
    # What the trace shows of an exception besides its line: its chain and
    # whether it is the driver's last thrown object `t`. The context of one
    # thrown in (t, GeneratorExit), and of anything once the driver has
    # thrown or closed, is not shown while pyfiber lacks CPython's
    # per-generator handled exceptions (see interp.rs, THROWN_CONTEXT).
    hide = THROWING or e is t or isinstance(e, GeneratorExit)
    ctx = "?" if hide and not THROWN_CONTEXT else cline(e.__context__)
    if isinstance(e, GeneratorExit):
        # One object on a same-fiber stack, one per level under PEP 380
        # (each close() makes its own): their contexts differ (interp.rs).
        ctx = "?"
    s = f"ctx={ctx} cause={cline(e.__cause__)}"
    if e.__suppress_context__:
        s += " sup"
    if e is t:
        s += " is-t"
    return s

def step(label, t, f, *args, thrown=False):
    # `call` for the driver: an exception also shows its chain.
    if thrown:
        throwing(True)
    try:
        v = f(*args)
    except BaseException as e:
        print(f"{label} !! {line(e)} {info(e, t)}")
    else:
        print(f"{label} -> {v!r}")

class Proto:
    # An object with the iterator protocol and some of send/throw/close,
    # looked up by `yield from` as it needs them (instance attributes count).
    def __init__(self, name, n, ret, methods):
        self.name, self.n, self.ret, self.i = name, n, ret, 0
        if "s" in methods:
            self.send = self._send
        if "t" in methods:
            self.throw = self._throw_swallow
        if "r" in methods:
            self.throw = self._throw_reraise
        if "f" in methods:
            self.throw = self._throw_finish
        if "c" in methods:
            self.close = self._close
        if "C" in methods:
            self.close = self._close_raise
    def __iter__(self):
        return self
    def __next__(self):
        self.i += 1
        print(f"{self.name} next {self.i}")
        if self.i > self.n:
            raise StopIteration(self.ret)
        return self.i
    def _send(self, v):
        print(f"{self.name} send {v!r}")
        return self.__next__()
    def _throw_swallow(self, e):
        print(f"{self.name} throw {line(e)}")
        return self.__next__()
    def _throw_reraise(self, e):
        print(f"{self.name} throw {line(e)}")
        raise e
    def _throw_finish(self, e):
        print(f"{self.name} throw {line(e)}")
        raise StopIteration(self.ret)
    def _close(self):
        print(f"{self.name} close")
    def _close_raise(self):
        print(f"{self.name} close")
        raise KeyError("closing")

def poke(name, me, op):
    # The running generator touching itself through a weak reference (a
    # strong one would keep it from being finalized); `g` goes before
    # the exception leaves, so the traceback holds no reference either.
    g = me()
    if g is None:
        print(f"{name} me gone")
        return
    try:
        if op == "next":
            next(g)
        elif op == "throw":
            g.throw(ValueError("self"))
        elif op == "close":
            g.close()
        else:
            print(f"{name} me {inspect.getgeneratorstate(g)}")
            return
    finally:
        del g
    print(f"{name} me ok")
"#
);

/// A literal in Python syntax.
pub fn lit(l: &Lit) -> String {
    match l {
        Lit::None => "None".into(),
        Lit::Int(i) => i.to_string(),
        Lit::Str(s) => str_repr(s),
    }
}

fn expr(e: &Expr) -> String {
    match e {
        Expr::Lit(l) => lit(l),
        Expr::X => "x".into(),
    }
}

/// `Class(arg)` in Python syntax.
pub fn raisable(kind: Raisable, arg: &Lit) -> String {
    let class = match kind {
        Raisable::ValueError => "ValueError",
        Raisable::KeyError => "KeyError",
        Raisable::MyError => "MyError",
        Raisable::StopIteration => "StopIteration",
        Raisable::GeneratorExit => "GeneratorExit",
    };
    match arg {
        Lit::None if kind == Raisable::GeneratorExit => format!("{class}()"),
        arg => format!("{class}({})", lit(arg)),
    }
}

/// The label the driver prints for a step (the same string on both sides).
pub fn step_label(step: &Step) -> String {
    match step {
        Step::Next => "next".into(),
        Step::Send(v) => format!("send({})", lit(v)),
        Step::Throw(kind, arg) => format!("throw({})", raisable(*kind, arg)),
        Step::Rethrow => "rethrow".into(),
        Step::Close => "close".into(),
        Step::State => "state".into(),
    }
}

/// Whether a body contains a `yield` anywhere (else Python would not make the
/// function a generator).
fn yields(body: &[Stmt]) -> bool {
    body.iter().any(|s| match s {
        Stmt::Yield(_) | Stmt::YieldList(_) | Stmt::YieldFrom { .. } | Stmt::YieldObject(_) => true,
        Stmt::Try {
            body,
            handlers,
            finally,
            ..
        } => {
            yields(body)
                || handlers.iter().any(|(_, h)| yields(h))
                || finally.as_deref().is_some_and(yields)
        }
        Stmt::Repeat { body, .. } => yields(body),
        _ => false,
    })
}

struct Writer<'p> {
    out: String,
    program: &'p Program,
}

impl Writer<'_> {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn func(&mut self, indent: usize, f: &Func) {
        self.line(indent, &format!("def {}():", f.name));
        self.line(indent + 1, "x = None");
        self.line(
            indent + 1,
            &format!("print({})", str_repr(&format!("{} start", f.name))),
        );
        self.block(indent + 1, &f.name, &f.body);
        self.line(
            indent + 1,
            &format!("print({})", str_repr(&format!("{} end", f.name))),
        );
        if !yields(&f.body) {
            self.line(indent + 1, "if False:");
            self.line(indent + 2, "yield  # makes it a generator function");
        }
    }

    fn block(&mut self, indent: usize, name: &str, body: &[Stmt]) {
        for stmt in body {
            self.stmt(indent, name, stmt);
        }
    }

    fn stmt(&mut self, indent: usize, name: &str, stmt: &Stmt) {
        match stmt {
            Stmt::Print(id) => self.line(indent, &format!("print(\"{name} note#{id}\")")),
            Stmt::Yield(e) => {
                self.line(indent, &format!("x = yield {}", expr(e)));
                self.line(indent, &format!("print(f\"{name} got {{x!r}}\")"));
            }
            Stmt::YieldList(items) => {
                let items: Vec<String> = items.iter().map(lit).collect();
                self.line(indent, &format!("x = yield from [{}]", items.join(", ")));
                self.line(indent, &format!("print(f\"{name} list-> {{x!r}}\")"));
            }
            Stmt::YieldFrom { callee, how } => {
                let callee = &self.program.funcs[*callee].name;
                let how = match how {
                    Delegation::Literal => "co.yield_from(&generator)",
                    Delegation::SameFiber => "same fiber",
                };
                self.line(
                    indent,
                    &format!("x = yield from {callee}()  # pyfiber: {how}"),
                );
                self.line(indent, &format!("print(f\"{name} yf-> {{x!r}}\")"));
            }
            Stmt::Try {
                id,
                body,
                handlers,
                finally,
            } => {
                self.line(indent, "try:");
                self.line(indent + 1, &format!("print(\"{name} try#{id}\")"));
                self.block(indent + 1, name, body);
                for (catch, handler) in handlers {
                    // `eN`, not `e`: a nested handler's `as e` would unbind
                    // the name a later `raise .. from eN` of this one uses.
                    self.line(indent, &format!("except {} as e{id}:", catch.python()));
                    self.line(indent + 1, "untrace()");
                    self.line(
                        indent + 1,
                        &format!(
                            "print(f\"{name} except#{id} {{line(e{id})}} {{info(e{id}, t)}}\")"
                        ),
                    );
                    self.block(indent + 1, name, handler);
                }
                if let Some(fin) = finally {
                    self.line(indent, "finally:");
                    self.line(indent + 1, "untrace()");
                    self.line(indent + 1, &format!("print(\"{name} finally#{id}\")"));
                    self.block(indent + 1, name, fin);
                }
                self.line(indent, &format!("print(\"{name} after#{id}\")"));
            }
            Stmt::Repeat { id, n, body } => {
                self.line(indent, &format!("for i in range({n}):"));
                self.line(indent + 1, &format!("print(f\"{name} loop#{id} {{i}}\")"));
                self.block(indent + 1, name, body);
            }
            Stmt::Raise(kind, msg) => self.line(
                indent,
                &format!("raise {}", raisable(*kind, &Lit::Str(msg.clone()))),
            ),
            Stmt::RaiseFrom(kind, msg, cause) => {
                let cause = match cause {
                    Cause::Caught(id) => format!("e{id}"),
                    Cause::Nothing => "None".into(),
                    Cause::New(k, m) => raisable(*k, &Lit::Str(m.clone())),
                };
                self.line(
                    indent,
                    &format!(
                        "raise {} from {cause}",
                        raisable(*kind, &Lit::Str(msg.clone()))
                    ),
                )
            }
            Stmt::YieldObject(p) => {
                self.line(
                    indent,
                    &format!(
                        "x = yield from Proto(\"{name} obj#{}\", {}, {}, \"{}\")",
                        p.id,
                        p.n,
                        lit(&p.ret),
                        p.methods()
                    ),
                );
                self.line(indent, &format!("print(f\"{name} obj-> {{x!r}}\")"));
            }
            Stmt::Reraise => self.line(indent, "raise"),
            Stmt::Poke(op) => {
                let op = match op {
                    Poke::Next => "next",
                    Poke::Throw => "throw",
                    Poke::Close => "close",
                    Poke::State => "state",
                };
                self.line(indent, &format!("poke(\"{name}\", me, \"{op}\")"));
            }
            Stmt::Return(e) => self.line(indent, &format!("return {}", expr(e))),
        }
    }

    fn driver(&mut self, indent: usize) {
        let indent = if self.program.caller_handling {
            self.line(indent, "try:");
            self.line(indent + 1, "raise TypeError(\"driver\")");
            self.line(indent, "except TypeError:");
            self.line(indent + 1, "untrace()");
            indent + 1
        } else {
            indent
        };
        self.line(indent, "g = f0()");
        self.line(indent, "me = weakref.ref(g)");
        for step in &self.program.steps {
            let label = str_repr(&step_label(step));
            let text = match step {
                Step::Next => format!("step({label}, t, next, g)"),
                Step::Send(v) => format!("step({label}, t, g.send, {})", lit(v)),
                Step::Throw(kind, arg) => {
                    self.line(indent, &format!("t = {}", raisable(*kind, arg)));
                    format!("step({label}, t, g.throw, t, thrown=True)")
                }
                // A shrunk driver may have lost the throw that made `t`.
                Step::Rethrow => format!(
                    "step({label}, t, g.throw, t, thrown=True) if t is not None \
                     else print(\"rethrow: no t\")"
                ),
                Step::Close => format!("step({label}, t, close313, g, thrown=True)"),
                Step::State => format!("print({label}, inspect.getgeneratorstate(g))"),
            };
            self.line(indent, &text);
        }
        self.line(indent, "throwing(True)  # the finalizer closes g");
        self.line(indent, "del g");
    }
}

/// One case as Python: `def case_N():` holding the functions and the driver.
pub fn case_source(n: usize, program: &Program) -> String {
    let mut w = Writer {
        out: String::new(),
        program,
    };
    w.line(0, &format!("def case_{n}():"));
    w.line(1, "t = None  # the driver's last thrown exception");
    w.line(1, "throwing(False)");
    // Only what `f0` can reach (a shrunk case may leave functions behind).
    let reachable = program.reachable();
    for (f, _) in program.funcs.iter().zip(reachable).filter(|(_, r)| *r) {
        w.func(1, f);
    }
    w.driver(1);
    w.out
}

/// The whole script: prelude, every case, and the loop that runs them
/// between `=== case N` markers, collecting garbage after each so that every
/// finalizer prints inside its own case (the youngest generation is enough:
/// a case's cycles are all made during the case).
pub fn script(cases: &[(usize, String)]) -> String {
    let mut s = format!(
        "THROWN_CONTEXT = {}\n",
        if super::interp::THROWN_CONTEXT {
            "True"
        } else {
            "False"
        }
    );
    s.push_str(PRELUDE);
    for (_, source) in cases {
        s.push('\n');
        s.push_str(source);
    }
    s.push_str("\nfor n in [");
    for (i, (n, _)) in cases.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{n}");
    }
    s.push_str(
        "]:\n    print(f\"=== case {n}\")\n    globals()[f\"case_{n}\"]()\n    gc.collect(0)\n\
         print(\"=== END\")\n",
    );
    s
}
