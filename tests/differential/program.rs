//! The fuzzer's language: a tiny AST of generator functions and a driver
//! script, and the seeded random generation of both.
//!
//! Why this exists: to compare pyfiber with CPython on programs nobody wrote
//! by hand, the same program must be runnable on both sides. This AST is that
//! common ground: `python.rs` prints it as Python source, `interp.rs` runs it
//! as `Generator` bodies.
//!
//! A program is a tree of generator functions `f0 .. fN`: `f0` is the one the
//! driver calls, and each `yield from fK()` in a body names a function of its
//! own (so a delegation chain is a path in the tree, at most
//! [`MAX_DELEGATION_DEPTH`] deep).

use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// `f0 -> f1 -> f2 -> f3 -> f4`: the longest `yield from` chain generated.
pub const MAX_DELEGATION_DEPTH: usize = 4;
/// How many generator functions one program may define at most.
const MAX_FUNCS: usize = 6;
/// How deeply `try`/`for` blocks nest inside one function at most.
const MAX_BLOCK_DEPTH: usize = 2;

/// A Python literal: what is yielded, sent, returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    /// `None`.
    None,
    /// A small `int`.
    Int(i64),
    /// A short `str` (letters only, so it needs no escaping anywhere).
    Str(String),
}

/// A yielded or returned expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A literal.
    Lit(Lit),
    /// The local `x`: the last value the body received (from `yield`, or a
    /// `yield from`'s result). Starts as `None`.
    X,
}

/// An exception the program (or the driver) can raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raisable {
    /// `ValueError(msg)`.
    ValueError,
    /// `KeyError(msg)`: `str()` shows the key's `repr()`.
    KeyError,
    /// `MyError(msg)`, a class of the program's own (`class MyError(Exception)`).
    MyError,
    /// `StopIteration(n)`: only thrown by the driver (PEP 479 territory).
    StopIteration,
    /// `GeneratorExit()`: only thrown by the driver.
    GeneratorExit,
}

/// The class an `except` clause names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Catch {
    /// `except ValueError`.
    ValueError,
    /// `except KeyError`.
    KeyError,
    /// `except MyError`.
    MyError,
    /// `except RuntimeError` (what "generator ignored GeneratorExit" and
    /// PEP 479 raise).
    RuntimeError,
    /// `except StopIteration`.
    StopIteration,
    /// `except Exception`: everything but `GeneratorExit` here.
    Exception,
    /// `except GeneratorExit`.
    GeneratorExit,
    /// `except BaseException`: everything.
    BaseException,
}

impl Catch {
    /// The class name as Python spells it.
    pub fn python(self) -> &'static str {
        match self {
            Catch::ValueError => "ValueError",
            Catch::KeyError => "KeyError",
            Catch::MyError => "MyError",
            Catch::RuntimeError => "RuntimeError",
            Catch::StopIteration => "StopIteration",
            Catch::Exception => "Exception",
            Catch::GeneratorExit => "GeneratorExit",
            Catch::BaseException => "BaseException",
        }
    }
}

/// How a `yield from fK()` is written on the pyfiber side. Python has one
/// spelling for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delegation {
    /// `co.yield_from(&fK())`: `fK` runs on a fiber of its own and every
    /// send/throw/close is forwarded to it (PEP 380's expansion).
    Literal,
    /// `fK(co)`: `fK`'s body is a plain function called on the delegator's own
    /// fiber; the chain is the call stack.
    SameFiber,
}

/// What `raise K(msg) from ...` names as the cause.
#[derive(Clone, Debug)]
pub enum Cause {
    /// `from eN`: the exception the innermost enclosing handler (block `N`)
    /// caught.
    Caught(usize),
    /// `from None`.
    Nothing,
    /// `from K2(msg2)`: a new exception.
    New(Raisable, String),
}

/// What an object's `throw` does with the exception thrown into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrowMode {
    /// Prints it and goes on as `__next__` would.
    Swallow,
    /// `raise e`: the very object goes on to the delegator.
    Reraise,
    /// `raise StopIteration(ret)`: the `yield from` ends with `ret`.
    Finish,
}

/// An object a body delegates to with `yield from`: Python's iterator
/// protocol with some of the optional methods PEP 380 looks up.
#[derive(Clone, Debug)]
pub struct Proto {
    /// Block number (names the object in the trace).
    pub id: usize,
    /// How many values `__next__` returns before `StopIteration(ret)`.
    pub n: usize,
    /// The value it finishes with.
    pub ret: Lit,
    /// It has `send` (which prints and goes on as `__next__`).
    pub send: bool,
    /// It has `throw`, doing this.
    pub throw: Option<ThrowMode>,
    /// It has `close`; `Some(true)`: `close` raises `KeyError('closing')`.
    pub close: Option<bool>,
}

impl Proto {
    /// The methods as the Python side's `Proto` class takes them.
    pub fn methods(&self) -> String {
        let mut m = String::new();
        if self.send {
            m.push('s');
        }
        match self.throw {
            Some(ThrowMode::Swallow) => m.push('t'),
            Some(ThrowMode::Reraise) => m.push('r'),
            Some(ThrowMode::Finish) => m.push('f'),
            None => {}
        }
        match self.close {
            Some(false) => m.push('c'),
            Some(true) => m.push('C'),
            None => {}
        }
        m
    }
}

/// One statement of a generator body. `id`s number the blocks of a program so
/// that the printed trace says which block ran.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `print("fN note#id")`.
    Print(usize),
    /// `x = yield e; print(f"fN got {x!r}")`.
    Yield(Expr),
    /// `x = yield from [..]; print(f"fN list-> {x!r}")`.
    YieldList(Vec<Lit>),
    /// `x = yield from fK(); print(f"fN yf-> {x!r}")`.
    YieldFrom {
        /// Index of the callee in [`Program::funcs`].
        callee: usize,
        /// How pyfiber spells the delegation.
        how: Delegation,
    },
    /// `try: .. except C as e: .. finally: ..`, printing on entry, in each
    /// handler (with the caught exception), in `finally`, and after.
    Try {
        /// Block number.
        id: usize,
        /// The `try` body.
        body: Vec<Stmt>,
        /// `except` clauses, first match wins.
        handlers: Vec<(Catch, Vec<Stmt>)>,
        /// The `finally` body, if any.
        finally: Option<Vec<Stmt>>,
    },
    /// `for i in range(n): print(f"fN loop#id {i}"); ..`.
    Repeat {
        /// Block number.
        id: usize,
        /// Iterations.
        n: usize,
        /// The loop body.
        body: Vec<Stmt>,
    },
    /// `raise Class(msg)`.
    Raise(Raisable, String),
    /// `raise Class(msg) from cause`.
    RaiseFrom(Raisable, String, Cause),
    /// `x = yield from Proto(...); print(f"fN obj-> {x!r}")`: delegation to
    /// an object that is not a generator (pyfiber: `co.yield_from_object`).
    YieldObject(Proto),
    /// `raise` (bare, re-raising what the enclosing handler caught).
    Reraise,
    /// `next(me())`, `me().throw(ValueError('self'))`, `me().close()` or
    /// `inspect.getgeneratorstate(me())`, where `me` is a weak reference to
    /// the driver's `g` (`f0`): a chain touching its own top while it runs
    /// ("generator already executing", `GEN_RUNNING`), or, during the
    /// finalizer, finding it gone.
    ///
    /// `throw` and `close` only on `f0`'s own fiber: CPython 3.11 crashes
    /// (SIGSEGV) when a sub-generator being finalized inside a close of `f0`
    /// throws into or closes `f0` (its `_gen_throw`/`gen_close` consult a
    /// running frame's stale `gi_yieldfrom` before checking that it runs);
    /// see NOTES.md. Nor from a same-fiber callee inside an `except`: there
    /// CPython 3.11.7 runs `f0`'s `finally` before the throw returns
    /// (`f1 finally#2` before `throw -> None`) while 3.12.1 and 3.13.0 print
    /// pyfiber's order (seed 0x1badb002, case 19681; NOTES.md).
    Poke(Poke),
    /// `return e`.
    Return(Expr),
}

/// What [`Stmt::Poke`] does to the running generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poke {
    /// `next(g)`.
    Next,
    /// `g.throw(ValueError('self'))`.
    Throw,
    /// `g.close()`.
    Close,
    /// `print(inspect.getgeneratorstate(g))`.
    State,
}

/// One generator function `def fN(): x = None; print("fN start"); ..body..;
/// print("fN end")`.
#[derive(Clone, Debug)]
pub struct Func {
    /// `fN`.
    pub name: String,
    /// The body.
    pub body: Vec<Stmt>,
}

/// One step of the driver, which holds `g = f0()`.
#[derive(Clone, Debug)]
pub enum Step {
    /// `next(g)`.
    Next,
    /// `g.send(v)`.
    Send(Lit),
    /// `t = Class(arg); g.throw(t)`: the bodies and the driver print whether
    /// an exception they see is `t`.
    Throw(Raisable, Lit),
    /// `g.throw(t)` again: the same object thrown once more (a step with no
    /// `t` yet is not generated).
    Rethrow,
    /// `g.close()` (as Python 3.13 defines its value; see NOTES.md).
    Close,
    /// `inspect.getgeneratorstate(g)`.
    State,
}

/// A generated case: the functions and the driver's steps. After the last
/// step the driver drops `g` (`del g`), so a suspended generator is closed by
/// its finalizer.
#[derive(Clone, Debug)]
pub struct Program {
    /// `f0` first.
    pub funcs: Vec<Func>,
    /// What the driver does with `g = f0()`.
    pub steps: Vec<Step>,
    /// The driver runs inside `except TypeError:` of its own `TypeError(
    /// "driver")`: what a body raises outside its own handlers gets that as
    /// its context (CPython looks down the whole stack of handled
    /// exceptions, the caller's included).
    pub caller_handling: bool,
}

impl Program {
    /// The longest `yield from` chain below `f0`, as the delegations along
    /// it (`[Literal, SameFiber]` is `f0 -> fA -> fB`).
    pub fn longest_chain(&self) -> Vec<Delegation> {
        self.chain_below(0)
    }

    fn chain_below(&self, f: usize) -> Vec<Delegation> {
        let mut calls = Vec::new();
        collect_calls(&self.funcs[f].body, &mut calls);
        calls
            .into_iter()
            .map(|(callee, how)| {
                let mut chain = vec![how];
                chain.extend(self.chain_below(callee));
                chain
            })
            .max_by_key(Vec::len)
            .unwrap_or_default()
    }

    /// The functions `f0` can reach through `yield from`, `f0` included.
    pub fn reachable(&self) -> Vec<bool> {
        let mut seen = vec![false; self.funcs.len()];
        let mut todo = vec![0];
        while let Some(f) = todo.pop() {
            if std::mem::replace(&mut seen[f], true) {
                continue;
            }
            let mut calls = Vec::new();
            collect_calls(&self.funcs[f].body, &mut calls);
            todo.extend(calls.into_iter().map(|(c, _)| c));
        }
        seen
    }

    /// Whether some body has a bare `raise`.
    pub fn has_reraise(&self) -> bool {
        fn any(body: &[Stmt]) -> bool {
            body.iter().any(|s| match s {
                Stmt::Reraise => true,
                Stmt::Try {
                    body,
                    handlers,
                    finally,
                    ..
                } => {
                    any(body)
                        || handlers.iter().any(|(_, h)| any(h))
                        || finally.as_deref().is_some_and(any)
                }
                Stmt::Repeat { body, .. } => any(body),
                _ => false,
            })
        }
        self.funcs.iter().any(|f| any(&f.body))
    }
}

/// The `yield from fK()` statements of a body, nested blocks included.
pub fn collect_calls(body: &[Stmt], calls: &mut Vec<(usize, Delegation)>) {
    for s in body {
        match s {
            Stmt::YieldFrom { callee, how } => calls.push((*callee, *how)),
            Stmt::Try {
                body,
                handlers,
                finally,
                ..
            } => {
                collect_calls(body, calls);
                for (_, h) in handlers {
                    collect_calls(h, calls);
                }
                if let Some(f) = finally {
                    collect_calls(f, calls);
                }
            }
            Stmt::Repeat { body, .. } => collect_calls(body, calls),
            _ => {}
        }
    }
}

/// The seeded RNG of one case: a case is reproducible from `(seed, case)`
/// alone, whatever the other cases are.
pub fn case_rng(seed: u64, case: usize) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(case as u64).to_le_bytes());
    bytes[16..24].copy_from_slice(b"pyfiber!");
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Draws programs from a seeded RNG.
pub struct Gen<'r> {
    rng: &'r mut TestRng,
    funcs: Vec<Option<Func>>,
    next_id: usize,
    /// This case is built to be hard to close: unclean functions are more
    /// likely, and the driver stops early, so that the finalizer meets a
    /// chain that survives `GeneratorExit`.
    hostile: bool,
    /// How often (percent) the driver runs inside its own `except`
    /// ([`Program::caller_handling`]); set from
    /// `PYFIBER_FUZZ_CALLER_HANDLING` in tests/differential.rs (25 there
    /// by default, 0 here).
    pub caller_handling_percent: usize,
}

/// What a body being generated may contain.
#[derive(Clone, Copy)]
struct Scope {
    /// How many `yield from` links lead to this function from `f0`.
    depth: usize,
    /// How many blocks enclose the statement.
    blocks: usize,
    /// Inside an `except` handler: a bare `raise` is allowed.
    in_handler: bool,
    /// The block number of the innermost enclosing handler's `try`, whose
    /// exception `raise ... from eN` names.
    handler: Option<usize>,
    /// The function lets `GeneratorExit` pass untouched, and may delegate on
    /// the same fiber (see [`Gen::program`]).
    clean: bool,
    /// The function runs on `f0`'s fiber (it is `f0`, or called on the same
    /// fiber from there), where it can only poke `f0` while `f0`'s own frame
    /// executes.
    top_fiber: bool,
}

impl<'r> Gen<'r> {
    /// A generator of programs over `rng`.
    pub fn new(rng: &'r mut TestRng) -> Gen<'r> {
        Gen {
            rng,
            funcs: Vec::new(),
            next_id: 1,
            hostile: false,
            caller_handling_percent: 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id - 1
    }

    fn lit(&mut self) -> Lit {
        match self.below(5) {
            0 => Lit::None,
            1 | 2 => Lit::Int(self.below(100) as i64),
            _ => Lit::Str(["a", "b", "c", "hi", "ok", "zz"][self.below(6)].to_string()),
        }
    }

    fn expr(&mut self) -> Expr {
        if self.chance(30) {
            Expr::X
        } else {
            Expr::Lit(self.lit())
        }
    }

    fn message(&mut self) -> String {
        format!("{}{}", ["v", "k", "m", "e"][self.below(4)], self.below(10))
    }

    /// A whole case.
    ///
    /// One restriction keeps the two ways of delegating observably equal.
    /// Some functions are *clean*: they never survive `GeneratorExit` (no
    /// `except GeneratorExit` or `except BaseException`, and `finally` blocks
    /// only print). Only a clean function delegates on the same fiber, and
    /// what it calls that way is clean too (and so is everything that calls
    /// delegates to). The reason: under PEP 380 every level of a chain is a
    /// frame of its own, and a generator that yields while being closed (or
    /// whose frame is cleared after it ignored `GeneratorExit`) leaves its
    /// sub-generators suspended, to be closed later, on their own. Frames
    /// sharing one stack cannot outlive the frame that called them, so a
    /// chain that survives `GeneratorExit` is only generated with
    /// `co.yield_from` (NOTES.md, "Differential testing against CPython").
    pub fn program(&mut self) -> Program {
        self.funcs = vec![None];
        self.hostile = self.chance(30);
        let clean = !self.hostile && self.chance(50);
        let body = self.body(Scope {
            depth: 0,
            blocks: 0,
            in_handler: false,
            handler: None,
            clean,
            top_fiber: true,
        });
        self.funcs[0] = Some(Func {
            name: "f0".into(),
            body,
        });
        let funcs = std::mem::take(&mut self.funcs)
            .into_iter()
            .map(|f| f.expect("every function slot is filled"))
            .collect();
        let steps = self.steps();
        // Drawn last, so that every case's functions and steps are the ones
        // they were before this knob existed.
        let caller_handling = self.chance(self.caller_handling_percent);
        Program {
            funcs,
            steps,
            caller_handling,
        }
    }

    fn steps(&mut self) -> Vec<Step> {
        let n = if self.hostile {
            self.range(1, 3)
        } else {
            self.range(2, 16)
        };
        let mut steps = Vec::with_capacity(n);
        // Usually start the generator; sometimes poke it while just created.
        if self.chance(85) {
            steps.push(Step::Next);
        }
        while steps.len() < n {
            let step = match self.below(110) {
                0..=34 => Step::Next,
                35..=59 => Step::Send(self.lit()),
                60..=79 => {
                    let kind = match self.below(10) {
                        0..=2 => Raisable::ValueError,
                        3..=4 => Raisable::KeyError,
                        5..=6 => Raisable::MyError,
                        7 => Raisable::StopIteration,
                        _ => Raisable::GeneratorExit,
                    };
                    let arg = match kind {
                        // Not `None`: Python's `str(StopIteration(None))` is
                        // 'None', but a `StopIteration` carrying `None` is
                        // how pyfiber spells a bare `StopIteration()`.
                        Raisable::StopIteration => loop {
                            let l = self.lit();
                            if l != Lit::None {
                                break l;
                            }
                        },
                        Raisable::GeneratorExit => Lit::None,
                        _ => Lit::Str(self.message()),
                    };
                    Step::Throw(kind, arg)
                }
                80..=88 => Step::Close,
                89..=99 => Step::State,
                // Only after a throw, so that there is a `t`.
                _ if steps.iter().any(|s| matches!(s, Step::Throw(..))) => Step::Rethrow,
                _ => Step::Next,
            };
            steps.push(step);
        }
        steps
    }

    fn body(&mut self, scope: Scope) -> Vec<Stmt> {
        let n = if scope.blocks == 0 {
            self.range(1, 4)
        } else {
            self.range(1, 2)
        };
        (0..n).map(|_| self.stmt(scope)).collect()
    }

    fn stmt(&mut self, scope: Scope) -> Stmt {
        let can_nest = scope.blocks < MAX_BLOCK_DEPTH;
        let can_delegate = scope.depth < MAX_DELEGATION_DEPTH && self.funcs.len() < MAX_FUNCS;
        // A handler that returns: with `except GeneratorExit`, that is how
        // close() gets a value back.
        if scope.in_handler && self.chance(20) {
            return Stmt::Return(self.expr());
        }
        loop {
            match self.below(112) {
                0..=31 => return Stmt::Yield(self.expr()),
                32..=34 => return Stmt::Print(self.id()),
                35..=41 => {
                    let n = self.range(0, 3);
                    return Stmt::YieldList((0..n).map(|_| self.lit()).collect());
                }
                42..=59 if can_delegate => return self.yield_from(scope),
                60..=78 if can_nest => return self.try_stmt(scope),
                79..=82 if can_nest => {
                    let id = self.id();
                    let n = self.range(1, 3);
                    let body = self.body(Scope {
                        blocks: scope.blocks + 1,
                        ..scope
                    });
                    return Stmt::Repeat { id, n, body };
                }
                83..=88 => {
                    let kind = [Raisable::ValueError, Raisable::KeyError, Raisable::MyError]
                        [self.below(3)];
                    return Stmt::Raise(kind, self.message());
                }
                89..=91 if scope.in_handler => return Stmt::Reraise,
                // `raise .. from ..`: in a handler the cause may be what it
                // caught; anywhere, `from None` or a new exception.
                100..=104 => {
                    let kind = [Raisable::ValueError, Raisable::KeyError, Raisable::MyError]
                        [self.below(3)];
                    let msg = self.message();
                    let cause = match (self.below(3), scope.handler) {
                        (0, Some(id)) | (1, Some(id)) => Cause::Caught(id),
                        (0, None) => Cause::Nothing,
                        (1, None) | (2, _) if self.chance(50) => Cause::Nothing,
                        _ => Cause::New(
                            [Raisable::ValueError, Raisable::KeyError, Raisable::MyError]
                                [self.below(3)],
                            self.message(),
                        ),
                    };
                    return Stmt::RaiseFrom(kind, msg, cause);
                }
                105..=111 => return Stmt::YieldObject(self.proto(scope.clean)),
                92..=93 => {
                    let ops = [Poke::Next, Poke::State, Poke::Throw, Poke::Close];
                    let may_throw = scope.top_fiber && !(scope.depth > 0 && scope.in_handler);
                    let op = ops[self.below(if may_throw { 4 } else { 2 })];
                    return Stmt::Poke(op);
                }
                94..=98 => return Stmt::Return(self.expr()),
                _ => continue,
            }
        }
    }

    /// An object to delegate to, with a random set of the optional methods.
    /// A clean function's object does not raise from `close` (something
    /// else than GeneratorExit leaving a `yield from` could be caught, and a
    /// clean function must not survive being closed; see [`Gen::program`]).
    fn proto(&mut self, clean: bool) -> Proto {
        let id = self.id();
        let n = self.range(0, 3);
        let ret = self.lit();
        let send = self.chance(50);
        let throw = match self.below(4) {
            0 => None,
            1 => Some(ThrowMode::Swallow),
            2 => Some(ThrowMode::Reraise),
            _ => Some(ThrowMode::Finish),
        };
        let close = match self.below(4) {
            0 | 1 => None,
            3 if !clean => Some(true),
            _ => Some(false),
        };
        Proto {
            id,
            n,
            ret,
            send,
            throw,
            close,
        }
    }

    /// `x = yield from fK()` with a new function `fK`.
    fn yield_from(&mut self, scope: Scope) -> Stmt {
        let how = if scope.clean && self.chance(60) {
            Delegation::SameFiber
        } else {
            Delegation::Literal
        };
        // A clean caller's callees are clean; a literal callee of an unclean
        // caller (its own fiber, its own frame) may be either.
        let clean = scope.clean || self.chance(if self.hostile { 20 } else { 50 });
        let callee = self.funcs.len();
        self.funcs.push(None);
        let body = self.body(Scope {
            depth: scope.depth + 1,
            blocks: 0,
            in_handler: false,
            handler: None,
            clean,
            top_fiber: scope.top_fiber && how == Delegation::SameFiber,
        });
        self.funcs[callee] = Some(Func {
            name: format!("f{callee}"),
            body,
        });
        Stmt::YieldFrom { callee, how }
    }

    fn try_stmt(&mut self, scope: Scope) -> Stmt {
        let id = self.id();
        let inner = Scope {
            blocks: scope.blocks + 1,
            ..scope
        };
        let body = self.body(inner);
        let mut handlers = Vec::new();
        for _ in 0..self.range(0, 2) {
            // An unclean function leans towards surviving GeneratorExit:
            // that is where close() and the finalizer have the most to get
            // right.
            let classes = if scope.clean { 7 } else { 11 };
            let first = if self.hostile && !scope.clean { 5 } else { 0 };
            let catch = [
                Catch::ValueError,
                Catch::KeyError,
                Catch::MyError,
                Catch::RuntimeError,
                Catch::StopIteration,
                Catch::Exception,
                Catch::Exception,
                Catch::GeneratorExit,
                Catch::GeneratorExit,
                Catch::BaseException,
                Catch::BaseException,
            ][first + self.below(classes - first)];
            let mut handler = self.body(Scope {
                in_handler: true,
                handler: Some(id),
                ..inner
            });
            // `except GeneratorExit: return v` is how close() gets a value
            // back (Python 3.13); make it common enough to be met.
            if matches!(catch, Catch::GeneratorExit | Catch::BaseException) && self.chance(40) {
                handler.push(Stmt::Return(Expr::Lit(Lit::Int(self.below(100) as i64))));
            }
            handlers.push((catch, handler));
        }
        let finally = if handlers.is_empty() || self.chance(if self.hostile { 70 } else { 40 }) {
            Some(if scope.clean {
                vec![Stmt::Print(self.id())]
            } else {
                self.body(Scope {
                    in_handler: false,
                    handler: None,
                    ..inner
                })
            })
        } else {
            None
        };
        Stmt::Try {
            id,
            body,
            handlers,
            finally,
        }
    }
}
