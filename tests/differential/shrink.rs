//! Shrinking a failing case: the smallest program we can find that still
//! makes pyfiber and CPython disagree.
//!
//! Why this exists: a random case that fails is usually mostly noise (dead
//! code after a `raise`, steps that do nothing, blocks that are never
//! entered). Proptest's shrinking needs one property evaluation per candidate;
//! here each evaluation needs CPython, so the candidates of one round (every
//! program one edit smaller) run in a single `python3`, and the first that
//! still disagrees becomes the next round's start.

use super::program::{collect_calls, Delegation, Program, Stmt};

/// A block with one edit applied, for every edit of one step: remove a
/// statement, inline a `try`'s body (or its `finally`) or a loop's body in
/// its place, drop one
/// handler or the `finally`, run a loop once, shorten a list, or any of
/// these inside a nested block, or skip a level of a `yield from` chain.
fn block_reductions(p: &Program, block: &[Stmt]) -> Vec<Vec<Stmt>> {
    let mut out = Vec::new();
    for i in 0..block.len() {
        let with = |replacement: Vec<Stmt>| {
            let mut b = block[..i].to_vec();
            b.extend(replacement);
            b.extend_from_slice(&block[i + 1..]);
            b
        };
        out.push(with(Vec::new()));
        match &block[i] {
            Stmt::Try {
                id,
                body,
                handlers,
                finally,
            } => {
                out.push(with(body.clone()));
                if let Some(fin) = finally {
                    out.push(with(fin.clone()));
                }
                for h in 0..handlers.len() {
                    let mut hs = handlers.clone();
                    hs.remove(h);
                    if hs.is_empty() && finally.is_none() {
                        continue; // `try` needs an `except` or a `finally`
                    }
                    out.push(with(vec![Stmt::Try {
                        id: *id,
                        body: body.clone(),
                        handlers: hs,
                        finally: finally.clone(),
                    }]));
                }
                if finally.is_some() && !handlers.is_empty() {
                    out.push(with(vec![Stmt::Try {
                        id: *id,
                        body: body.clone(),
                        handlers: handlers.clone(),
                        finally: None,
                    }]));
                }
                for b in block_reductions(p, body) {
                    out.push(with(vec![Stmt::Try {
                        id: *id,
                        body: b,
                        handlers: handlers.clone(),
                        finally: finally.clone(),
                    }]));
                }
                for (h, (catch, handler)) in handlers.iter().enumerate() {
                    for b in block_reductions(p, handler) {
                        let mut hs = handlers.clone();
                        hs[h] = (*catch, b);
                        out.push(with(vec![Stmt::Try {
                            id: *id,
                            body: body.clone(),
                            handlers: hs,
                            finally: finally.clone(),
                        }]));
                    }
                }
                if let Some(fin) = finally {
                    for b in block_reductions(p, fin) {
                        out.push(with(vec![Stmt::Try {
                            id: *id,
                            body: body.clone(),
                            handlers: handlers.clone(),
                            finally: Some(b),
                        }]));
                    }
                }
            }
            Stmt::Repeat { id, n, body } => {
                out.push(with(body.clone()));
                if *n > 1 {
                    out.push(with(vec![Stmt::Repeat {
                        id: *id,
                        n: 1,
                        body: body.clone(),
                    }]));
                }
                for b in block_reductions(p, body) {
                    out.push(with(vec![Stmt::Repeat {
                        id: *id,
                        n: *n,
                        body: b,
                    }]));
                }
            }
            Stmt::YieldFrom { callee, how } => {
                // `yield from fK()` -> `yield from fJ()` for each fJ that fK
                // delegates to. A literal delegation stays literal: its
                // caller may be unclean (see `Gen::program`).
                let mut calls = Vec::new();
                collect_calls(&p.funcs[*callee].body, &mut calls);
                for (c, h) in calls {
                    let how = match how {
                        Delegation::Literal => Delegation::Literal,
                        Delegation::SameFiber => h,
                    };
                    out.push(with(vec![Stmt::YieldFrom { callee: c, how }]));
                }
            }
            Stmt::YieldList(items) if !items.is_empty() => {
                out.push(with(vec![Stmt::YieldList(items[1..].to_vec())]));
            }
            _ => {}
        }
    }
    out
}

/// Every program one edit smaller than `p`: a driver step less, or one edit
/// in one function's body.
pub fn reductions(p: &Program) -> Vec<Program> {
    let mut out = Vec::new();
    if p.caller_handling {
        let mut q = p.clone();
        q.caller_handling = false;
        out.push(q);
    }
    for i in 0..p.steps.len() {
        let mut q = p.clone();
        q.steps.remove(i);
        out.push(q);
    }
    for f in 0..p.funcs.len() {
        for body in block_reductions(p, &p.funcs[f].body) {
            let mut q = p.clone();
            q.funcs[f].body = body;
            out.push(q);
        }
    }
    out
}
