//! The pool of fiber stacks.
//!
//! Why this exists: a Python frame costs one small allocation, but a fiber
//! stack is address space the kernel must map, with a guard page below it
//! (two kernel mappings). Making and exhausting a generator should cost what
//! CPython's does, so a finished generator gives its stack back here and the
//! next one reuses it; and past the pool, new stacks are carved out of one
//! mapping made for 64 of them (the private module `batch`, the crate's only
//! `unsafe`: one `madvise` guard marker or `mprotect` per stack instead of
//! corosensei's `mmap` + `mprotect` + `munmap`).
//!
//! The pool is per thread, like the single-threaded runtime it serves.
//! Linux caps a process at `vm.max_map_count` mappings (65530 by default).
//! Where the kernel has guard markers (Linux ≥ 6.13) a batch of 64 stacks is
//! one mapping, and memory is the limit; elsewhere each stack is two, and
//! about 32,700 generators can be suspended at once ([`max_stacks`]). Past
//! the limit, starting a generator raises `MemoryError` naming it and the
//! sysctl that lifts it, instead of aborting.

use std::cell::RefCell;

use crate::exception::Exception;

mod batch;

pub(crate) use batch::FiberStack;
use batch::Reserve;

/// Usable size of each fiber stack. Only the pages a body touches become
/// resident; the rest is address space. (Python has no equivalent: a CPython
/// frame lives on the heap and grows nothing; deep recursion in a body is
/// bounded by this instead of `sys.getrecursionlimit()`.)
pub const STACK_SIZE: usize = 256 * 1024;

/// Stacks kept for reuse at most; more are unmapped when returned. (No
/// Python equivalent: CPython recycles frame memory through its allocator.)
pub const POOL_CAPACITY: usize = 4096;

/// This thread's stacks: the free ones, the reserved address space new ones
/// are carved from, and the counts `stats` reports.
struct Pool {
    free: Vec<FiberStack>,
    reserve: Reserve,
    in_use: usize,
    mapped: usize,
}

thread_local! {
    // One thread-local, not three: every generator start and finish visits it.
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool { free: Vec::new(), reserve: Reserve::new(), in_use: 0, mapped: 0 })
    };
}

/// How many fiber stacks this thread has: `in_use` by started, unfinished
/// generators, and `pooled` for reuse. (No Python equivalent: CPython frames
/// are ordinary heap objects.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackStats {
    /// Stacks held by generators that started and have not finished.
    pub in_use: usize,
    /// Stacks waiting in the pool.
    pub pooled: usize,
    /// Stacks currently mapped (in use plus pooled).
    pub mapped: usize,
}

/// The current thread's stack counts (no Python equivalent; the nearest is
/// counting live generator frames with `gc.get_objects()`).
pub fn stats() -> StackStats {
    POOL.with(|p| {
        let p = p.borrow();
        StackStats {
            in_use: p.in_use,
            pooled: p.free.len(),
            mapped: p.mapped,
        }
    })
}

/// A stack for a generator that is starting: from the pool, or newly mapped.
#[inline]
pub(crate) fn take() -> Result<FiberStack, Exception> {
    let reused = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let stack = p.free.pop();
        p.in_use += usize::from(stack.is_some());
        stack
    });
    match reused {
        Some(stack) => Ok(stack),
        None => map_new(),
    }
}

/// The pool is empty: carve a stack from the reserve (mapping a new batch
/// when it is used up), or explain why the kernel would not.
#[cold]
fn map_new() -> Result<FiberStack, Exception> {
    let stack = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let stack = p.reserve.carve(STACK_SIZE)?;
        p.mapped += 1;
        p.in_use += 1;
        Ok(stack)
    });
    stack.map_err(|err: std::io::Error| out_of_stacks(&err))
}

/// Returns the stack of a generator that finished.
pub(crate) fn give_back(stack: FiberStack) {
    // `try_with`: a generator dropped while the thread's locals are being
    // destroyed just drops its stack (its batch is unmapped with the last
    // stack of it).
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        p.in_use -= 1;
        if p.free.len() < POOL_CAPACITY {
            p.free.push(stack);
        } else {
            p.mapped -= 1;
            stack.release_memory();
        }
    });
}

/// How many fiber stacks fit in `max_map_count` kernel mappings on this
/// kernel: a batch of 64 per mapping with guard markers, half
/// the count with `mprotect`ed guards. (No Python equivalent.)
pub fn max_stacks(max_map_count: usize) -> usize {
    match batch::guards() {
        batch::Guards::Markers => max_map_count.saturating_mul(batch::BATCH),
        batch::Guards::Protect => max_map_count / 2,
    }
}

/// How the guard pages below fiber stacks are made here, as a phrase for
/// messages and benchmarks. (No Python equivalent.)
pub fn guard_kind() -> &'static str {
    match batch::guards() {
        batch::Guards::Markers => "guard markers (MADV_GUARD_INSTALL), one mapping per 64 stacks",
        batch::Guards::Protect => "mprotect'ed guard pages, 2 mappings per stack",
    }
}

fn out_of_stacks(err: &std::io::Error) -> Exception {
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Exception::MemoryError(format!(
        "cannot map a fiber stack for a new generator ({err}): {} generators are suspended, \
         stacks use {} and vm.max_map_count is {limit}; \
         raise it with `sysctl -w vm.max_map_count=262144`",
        POOL.with(|p| p.borrow().in_use),
        guard_kind()
    ))
}
