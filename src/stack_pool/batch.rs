//! Fiber stacks carved out of one big mapping: the crate's only `unsafe`.
//!
//! Why this exists (issue 15, goal 2: creating a generator past the pool
//! in ≤ 2 µs). corosensei's `DefaultStack::new` makes each stack with its
//! own `mmap` + `mprotect` (and frees it with `munmap`): a fresh region and
//! two kernel mappings per generator, about 10–13 µs each on this 2-core VM
//! when 32,000 generators start in a row. Here one `mmap` reserves address
//! space for [`BATCH`] stacks at once (`NORESERVE`: nothing is committed
//! until touched), and each stack's guard page is made one of two ways,
//! chosen once per process by [`guards`]:
//!
//! - [`Guards::Markers`] (Linux ≥ 6.13): `madvise(MADV_GUARD_INSTALL)` on the
//!   guard page. The kernel records the guard in the page table, not as a
//!   mapping, so a batch of 64 stacks is ONE mapping: `vm.max_map_count`
//!   (65530 by default) no longer caps suspended generators at ~32,700, and
//!   no mapping is split per stack.
//! - [`Guards::Protect`] (older kernels: wherever the one-time probe's
//!   `madvise` fails): the batch is mapped `PROT_NONE` and each stack's usable
//!   part is `mprotect`ed read-write. Each stack is then two mappings (its
//!   read-write part and the `PROT_NONE` guard below cannot merge with their
//!   neighbours): still ~32,700 suspended generators at the default
//!   `vm.max_map_count`, as with `DefaultStack`.
//!
//! A stack is never unmapped on its own (that would split the batch's
//! mapping): a stack given up beyond the pool's capacity returns its memory
//! with `MADV_DONTNEED` ([`FiberStack::release_memory`]), and the batch is
//! unmapped when its last stack and the reserve are gone (an `Rc` counts
//! them).
//!
//! Why `unsafe` is needed: corosensei's `Stack` trait is an `unsafe trait`
//! (the implementor promises a guard page and the bounds), and `mmap`,
//! `mprotect`, `madvise` and `munmap` are `unsafe` system calls, since they
//! can unmap or re-protect memory that Rust code still uses. Every call
//! below works on an address range this module alone owns, as each `SAFETY`
//! comment says.

#![allow(unsafe_code)]

use std::io;
use std::num::NonZeroUsize;
use std::ptr;
use std::rc::Rc;
use std::sync::OnceLock;

use corosensei::stack::{Stack, StackPointer, MIN_STACK_SIZE};

/// Stacks reserved per `mmap`: 64 × (256 KiB + a guard page) ≈ 16.3 MiB of
/// address space, none of it resident until touched.
pub const BATCH: usize = 64;

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (Linux 6.13); the libc crate
/// does not name it yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How guard pages are made in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guards {
    /// Page-table guard markers: no mapping per stack.
    Markers,
    /// `mprotect`: two mappings per stack.
    Protect,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).expect("a page size")
}

/// Which guards this kernel supports: tries a marker once, on two pages of
/// its own.
pub fn guards() -> Guards {
    static GUARDS: OnceLock<Guards> = OnceLock::new();
    *GUARDS.get_or_init(|| {
        let page = page_size();
        // SAFETY: a fresh private mapping of two pages, used by nothing else
        // and unmapped before returning.
        unsafe {
            let p = libc::mmap(
                ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return Guards::Protect;
            }
            let ok = libc::madvise(p, page, MADV_GUARD_INSTALL) == 0;
            libc::munmap(p, 2 * page);
            if ok {
                Guards::Markers
            } else {
                Guards::Protect
            }
        }
    })
}

/// One `mmap` holding [`BATCH`] stacks; unmapped when the last `Rc` goes.
struct Mapping {
    base: usize,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the whole batch, mapped by `Reserve::carve`; this is the
        // last reference, so no stack of it and no reserve is left.
        let r = unsafe { libc::munmap(self.base as *mut _, self.len) };
        debug_assert_eq!(r, 0, "munmap of a stack batch failed");
    }
}

/// One fiber stack: `[guard page][usable bytes]`, `len` bytes ending at
/// `top`, inside a batch it keeps mapped.
pub struct FiberStack {
    top: StackPointer,
    len: usize,
    // Held, not read: keeps the batch mapped while this stack lives.
    _batch: Rc<Mapping>,
}

// SAFETY: the range `[top - len, top)` belongs to this `FiberStack` alone
// (carved from a reservation exactly once, see `Reserve::carve`); its lowest
// page is a guard (a marker or `PROT_NONE`, either faults on access) and the
// rest, at least `MIN_STACK_SIZE` bytes, is read-write. `top` and `top - len`
// are page-aligned, hence aligned to `STACK_ALIGNMENT`. The limit includes
// the guard page, as the trait asks.
unsafe impl Stack for FiberStack {
    #[inline]
    fn base(&self) -> StackPointer {
        self.top
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.top.get() - self.len).expect("a stack never starts at address 0")
    }
}

impl FiberStack {
    /// Gives this stack's memory back to the kernel before it is dropped
    /// (the pool is full): the batch stays mapped for its other stacks, so
    /// without this the touched pages would stay resident until all of them
    /// are gone. Not done on every drop: at thread exit the whole batch is
    /// unmapped at once anyway.
    pub fn release_memory(self) {
        let page = page_size();
        // SAFETY: the usable part is this stack's own, and its fiber has
        // finished or never started (corosensei gives the stack back only
        // then); nothing reads it again before it is unmapped.
        let r = unsafe {
            libc::madvise(
                (self.top.get() - self.len + page) as *mut _,
                self.len - page,
                libc::MADV_DONTNEED,
            )
        };
        debug_assert_eq!(r, 0, "madvise(DONTNEED) of a fiber stack failed");
    }
}

/// The part of the last batch not yet handed out: the addresses
/// `[next, end)`; the stacks below `guarded` already have their guard.
pub struct Reserve {
    batch: Option<Rc<Mapping>>,
    next: usize,
    end: usize,
    guarded: usize,
}

/// Installs the guard markers of a whole fresh batch in one system call,
/// `process_madvise` on this process's own pidfd with one `iovec` per guard
/// page, where `madvise` takes one call per stack (`strace -c`, 2,000
/// generators: 32 `process_madvise` of 38 µs each, for 64 guards each).
/// Returns the address below which every stack's guard is installed:
/// `base` itself if the kernel refuses (no pidfd_open, no process_madvise,
/// or no guard advice through it), and then each stack is guarded by its
/// own `madvise` in `carve`, as before. tests/guard_pages.rs checks that a
/// body overflowing any of these stacks faults on its own guard.
fn install_guards(base: usize, stride: usize, page: usize) -> usize {
    let iov: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
        iov_base: (base + i * stride) as *mut libc::c_void,
        iov_len: page,
    });
    // SAFETY: pidfd_open on our own pid has no memory effects; the fd it
    // returns is closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if pidfd < 0 {
        return base;
    }
    // SAFETY: each range is the guard page of a stack of this fresh batch,
    // which no stack owns yet (the whole batch is in the reserve), so
    // guarding it affects no one; `iov` outlives the call.
    let done = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd,
            iov.as_ptr(),
            iov.len(),
            MADV_GUARD_INSTALL,
            0,
        )
    };
    // SAFETY: the pidfd opened above, used by nothing else.
    unsafe { libc::close(pidfd as libc::c_int) };
    if done < 0 {
        return base;
    }
    // The kernel may stop early: only the guards it did are counted.
    let guards = usize::try_from(done).unwrap_or(0) / page;
    base + guards.min(BATCH) * stride
}

impl Reserve {
    /// An empty reserve; the first `carve` maps a batch.
    pub const fn new() -> Reserve {
        Reserve {
            batch: None,
            next: 0,
            end: 0,
            guarded: 0,
        }
    }

    /// A stack of `size` usable bytes (rounded up to pages) plus a guard page,
    /// from the reserve; maps a new batch first when it is used up.
    pub fn carve(&mut self, size: usize) -> io::Result<FiberStack> {
        let page = page_size();
        let usable = size.max(MIN_STACK_SIZE).next_multiple_of(page);
        let stride = usable + page;
        let guards = guards();
        if self.end - self.next < stride {
            let len = stride * BATCH;
            let prot = match guards {
                Guards::Markers => libc::PROT_READ | libc::PROT_WRITE,
                Guards::Protect => libc::PROT_NONE,
            };
            // SAFETY: a fresh anonymous mapping at an address the kernel
            // picks: it overlaps nothing anyone uses.
            let base = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            // Dropping the old batch's reserve reference: it is unmapped once
            // its stacks are gone too.
            self.batch = Some(Rc::new(Mapping {
                base: base as usize,
                len,
            }));
            self.next = base as usize;
            self.end = self.next + len;
            self.guarded = match guards {
                Guards::Markers => install_guards(self.next, stride, page),
                Guards::Protect => self.next,
            };
        }
        let start = self.next;
        // SAFETY: `[start, start + stride)` lies in `[next, end)`, the part
        // of the batch no stack owns yet: guarding or opening it affects no
        // one else. On failure (ENOMEM at vm.max_map_count) the range stays
        // in the reserve and nothing changed.
        let r = unsafe {
            match guards {
                Guards::Markers if start < self.guarded => 0, // installed with the batch
                Guards::Markers => libc::madvise(start as *mut _, page, MADV_GUARD_INSTALL),
                Guards::Protect => libc::mprotect(
                    (start + page) as *mut _,
                    usable,
                    libc::PROT_READ | libc::PROT_WRITE,
                ),
            }
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        self.next += stride;
        Ok(FiberStack {
            top: NonZeroUsize::new(start + stride).expect("mmap never returns address 0"),
            len: stride,
            _batch: Rc::clone(self.batch.as_ref().expect("mapped above")),
        })
    }
}
