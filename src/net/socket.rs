//! `Socket`: Python's `socket.socket` for the tutorials' TCP clients and
//! servers, over `socket2`.
//!
//! Why this exists: the whole story of the tutorials turns on what a socket
//! call does *in Python*: a non-blocking `connect` raises `BlockingIOError`
//! (`[Errno 115] Operation now in progress`) and the program carries on; a
//! `recv` with nothing to read raises it too (`[Errno 11] Resource temporarily
//! unavailable`); a refused connection surfaces as `ConnectionRefusedError`.
//! `std::net` cannot express a non-blocking connect at all, and `socket2`
//! reports `io::Error`s; this wrapper turns each call into the Python call of
//! the same name, raising the same exception class with the same text.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, SockAddr, Type};

use crate::exception::{Exception, OsError, PyResult};
use crate::value::Object;

/// `resource.RLIM_INFINITY` as [`raise_nofile_limit`] and [`nofile_limit`]
/// report it: no limit.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// Runs a system call again when a signal interrupted it, as CPython does
/// since PEP 475.
fn retry_eintr<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Resolves a Python-style `(host, port)` address to the first IPv4 address,
/// since the socket is `AF_INET` (Python's `getaddrinfo(..., AF_INET)`).
fn resolve(address: impl ToSocketAddrs) -> PyResult<SocketAddr> {
    let addrs = address.to_socket_addrs().map_err(|e| {
        // std says "failed to lookup address information: ..."; Python's
        // `socket.gaierror` is an OSError subclass, so OSError it is here.
        let text = e.to_string();
        let text = text
            .strip_prefix("failed to lookup address information: ")
            .unwrap_or(&text)
            .to_string();
        Exception::OSError(OsError::msg(text))
    })?;
    let mut saw_any = false;
    for addr in addrs {
        saw_any = true;
        if addr.is_ipv4() {
            return Ok(addr);
        }
    }
    Err(Exception::OSError(OsError::msg(if saw_any {
        "address has no IPv4 address (this socket is AF_INET)"
    } else {
        "address resolved to nothing"
    })))
}

/// The address a `SockAddr` holds, as Python's `(host, port)` tuple holds it.
fn inet(addr: SockAddr) -> PyResult<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| Exception::OSError(OsError::msg("not an internet address")))
}

/// Fd numbers up to this one are followed by [`generation`].
const TRACKED_FDS: usize = 1 << 16;

/// Which [`Socket`] holds each fd number, for the selector's skipped
/// `epoll_ctl`s: one counter per fd, made odd when a `Socket` takes the
/// number and even again just before it closes it, so two reads that give
/// the same odd value saw the same socket, open all along. Process-wide (an
/// fd number is), lock-free, and 256 KiB of zeroed memory that costs
/// nothing until a number is used.
static GENERATIONS: [AtomicU32; TRACKED_FDS] = [const { AtomicU32::new(0) }; TRACKED_FDS];

/// Counts a change of owner of `fd`: a [`Socket`] took it (the count
/// becomes odd) or is about to close it (even).
fn bump_generation(fd: RawFd) {
    if let Some(g) = usize::try_from(fd).ok().and_then(|i| GENERATIONS.get(i)) {
        g.fetch_add(1, Ordering::SeqCst);
    }
}

/// Which socket holds `fd` now: `Some(g)` while a [`Socket`] of this
/// process has it open (the same `g` from its creation to its close, and a
/// different one for the next socket given the number), `None` for a
/// number no `Socket` holds (closed, or another kind of fd: a pipe, a
/// `std` or `socket2` socket, whose closes this module does not see).
///
/// `DefaultSelector` uses it to skip the `epoll_ctl` of an `unregister` +
/// `register` of the same socket between two `select()`s (see
/// `selector.rs`); for any fd it does not know it makes the calls.
pub(crate) fn generation(fd: RawFd) -> Option<u32> {
    let g = GENERATIONS
        .get(usize::try_from(fd).ok()?)?
        .load(Ordering::SeqCst);
    (g % 2 == 1).then_some(g)
}

/// Python's `socket.socket`: an `AF_INET`, `SOCK_STREAM` socket.
///
/// Every method raises what Python's method of the same name raises (see
/// [`Exception`]'s `From<io::Error>`: `EAGAIN`/`EINPROGRESS` →
/// `BlockingIOError`, `ECONNREFUSED` → `ConnectionRefusedError`, ...).
/// Dropping the socket closes it, as CPython's finalizer does.
///
/// ```no_run
/// use pyfiber::exception::{BlockingIOError, Except};
/// use pyfiber::net::Socket;
/// use pyfiber::Exception;
///
/// // sock = socket.socket()
/// // sock.setblocking(False)
/// // try:
/// //     sock.connect(('127.0.0.1', 8080))
/// // except BlockingIOError:
/// //     pass
/// let sock = Socket::new()?;
/// sock.setblocking(false)?;
/// sock.connect(("127.0.0.1", 8080))
///     .except(&BlockingIOError, |_| Ok(()))?;
/// # Ok::<(), Exception>(())
/// ```
pub struct Socket {
    inner: socket2::Socket,
    /// Whether the fd is blocking, as far as this wrapper knows (`None`:
    /// not known, ask the kernel). CPython keeps the same fact in the socket
    /// object (`sock_timeout`, which `getblocking()` reads); here it lets
    /// `setblocking` skip the `fcntl` when nothing would change.
    blocking: Cell<Option<bool>>,
}

impl Socket {
    /// `socket.socket()` (the same as `socket.socket(AF_INET, SOCK_STREAM)`):
    /// a new blocking TCP socket.
    pub fn new() -> PyResult<Socket> {
        let inner = socket2::Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        Ok(Socket::wrap(inner, Some(true)))
    }

    /// `socket.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK)` (Linux): a TCP
    /// socket non-blocking from its creation, so a later
    /// `setblocking(False)` finds it already set and is a no-op (no system
    /// call). The event-loop stages keep the seed's `setblocking(False)`
    /// line after it.
    pub fn new_nonblocking() -> PyResult<Socket> {
        let inner = socket2::Socket::new(
            Domain::IPV4,
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        Ok(Socket::wrap(inner, Some(false)))
    }

    /// `socket.socket(fileno=...)` for a `socket2::Socket` made elsewhere.
    pub fn from_socket2(inner: socket2::Socket) -> Socket {
        Socket::wrap(inner, None)
    }

    /// Every `Socket` is made here: it now holds its fd's number (see
    /// [`generation`]).
    fn wrap(inner: socket2::Socket, blocking: Option<bool>) -> Socket {
        bump_generation(inner.as_raw_fd());
        Socket {
            inner,
            blocking: Cell::new(blocking),
        }
    }

    /// The `socket2::Socket` inside, for the options Python reaches with
    /// `setsockopt` and this wrapper does not name. The caller may change
    /// the blocking flag through it, so the wrapper forgets what it knew of
    /// that flag and asks the kernel next time.
    pub fn as_socket2(&self) -> &socket2::Socket {
        self.blocking.set(None);
        &self.inner
    }

    /// `sock.setblocking(flag)`: `setblocking(False)` makes every later call
    /// return at once, raising `BlockingIOError` when it would have waited.
    ///
    /// Setting what the socket is already known to be is a no-op with no
    /// system call (a socket made by [`Socket::new_nonblocking`] and then
    /// `setblocking(False)`, as the event-loop stages do). It was one
    /// `fcntl(F_GETFL)` per fetch: 5,000 system calls in `generator --urls
    /// 5000` (`strace -c`), now none. A flag changed behind the wrapper's
    /// back (`fcntl` on `fileno()`) is not seen, as CPython's socket object
    /// does not see it either.
    pub fn setblocking(&self, flag: bool) -> PyResult<()> {
        if self.blocking.get() != Some(flag) {
            self.inner.set_nonblocking(!flag)?;
            self.blocking.set(Some(flag));
        }
        Ok(())
    }

    /// `sock.getblocking()`.
    pub fn getblocking(&self) -> PyResult<bool> {
        match self.blocking.get() {
            Some(blocking) => Ok(blocking),
            None => {
                let blocking = !self.inner.nonblocking()?;
                self.blocking.set(Some(blocking));
                Ok(blocking)
            }
        }
    }

    /// `sock.connect(address)`, `address` being `(host, port)`.
    ///
    /// On a non-blocking socket the connection is still under way when this
    /// returns, and it raises exactly what Python raises:
    /// `BlockingIOError: [Errno 115] Operation now in progress`. Wait for the
    /// socket to become writable, then ask [`Socket::take_error`] how it
    /// went. On a blocking socket a refused connection raises
    /// `ConnectionRefusedError: [Errno 111] Connection refused`.
    pub fn connect(&self, address: impl ToSocketAddrs) -> PyResult<()> {
        let addr = resolve(address)?;
        Ok(self.inner.connect(&SockAddr::from(addr))?)
    }

    /// `sock.connect_ex(address)`: like [`Socket::connect`] but returns the
    /// errno (`0` on success, `115` = `EINPROGRESS` for a non-blocking
    /// connect under way) instead of raising. Name resolution errors still
    /// raise, as in Python.
    pub fn connect_ex(&self, address: impl ToSocketAddrs) -> PyResult<i32> {
        let addr = resolve(address)?;
        match self.inner.connect(&SockAddr::from(addr)) {
            Ok(()) => Ok(0),
            Err(e) => match e.raw_os_error() {
                Some(errno) => Ok(errno),
                None => Err(e.into()),
            },
        }
    }

    /// `sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)`: the errno of
    /// the pending error, `0` if none. Reading it clears it, as in C.
    pub fn so_error(&self) -> PyResult<i32> {
        Ok(match self.inner.take_error()? {
            None => 0,
            Some(e) => e.raw_os_error().unwrap_or(-1),
        })
    }

    /// The check asyncio's `sock_connect` makes once a connecting socket is
    /// writable: `err = sock.getsockopt(SOL_SOCKET, SO_ERROR); if err: raise
    /// OSError(err, ...)`. `Ok(())` means connected; a refused connection
    /// raises `ConnectionRefusedError: [Errno 111] Connection refused`.
    /// Reading the error clears it.
    pub fn take_error(&self) -> PyResult<()> {
        match self.inner.take_error()? {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }

    /// `sock.fileno()`: what the tutorials hand to `selector.register`.
    pub fn fileno(&self) -> RawFd {
        self.inner.as_raw_fd()
    }

    /// `sock.send(data)`: the number of bytes the kernel took, which may be
    /// fewer than `data.len()`. A full send buffer on a non-blocking socket
    /// raises `BlockingIOError`.
    pub fn send(&self, data: &[u8]) -> PyResult<usize> {
        Ok(retry_eintr(|| self.inner.send(data))?)
    }

    /// `sock.sendall(data)`: `send` until every byte is gone. Meant for
    /// blocking sockets; on a non-blocking one it raises `BlockingIOError`
    /// as soon as the send buffer is full, as Python's does, and how much was
    /// sent is lost.
    pub fn sendall(&self, data: &[u8]) -> PyResult<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.send(rest)?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// `sock.recv(bufsize)`: at most `bufsize` bytes; an empty `Vec` is
    /// `b''`, the peer closed the connection (EOF). Nothing to read yet on a
    /// non-blocking socket raises `BlockingIOError: [Errno 11] Resource
    /// temporarily unavailable`.
    ///
    /// The bytes are read into a per-thread scratch buffer and copied out
    /// into a `Vec` of exactly their length (none for `b''`), as CPython
    /// reads into a `bufsize` bytes object and shrinks it. A fresh zeroed
    /// `vec![0; bufsize]` per call was 8,300 instructions per fetch in the
    /// generator stage (`calloc` + `memset` of 4 KiB, twice: the data and the
    /// EOF), a tenth of its user-space work (callgrind, `--urls 1000`).
    pub fn recv(&self, bufsize: usize) -> PyResult<Vec<u8>> {
        /// Requests up to this size use the scratch buffer; larger ones
        /// (rare: the tutorials ask for 4 KiB) get a buffer of their own, so
        /// the thread does not keep a huge one.
        const SCRATCH_MAX: usize = 64 * 1024;
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let read_into = |buf: &mut [u8]| -> PyResult<Vec<u8>> {
            let n = retry_eintr(|| (&self.inner).read(buf))?;
            Ok(buf[..n].to_vec())
        };
        if bufsize > SCRATCH_MAX {
            return read_into(&mut vec![0u8; bufsize]);
        }
        SCRATCH.with(|scratch| {
            // `recv` runs no other code while it holds the buffer, so the
            // borrow cannot clash.
            let mut buf = scratch.borrow_mut();
            if buf.len() < bufsize {
                buf.resize(bufsize, 0);
            }
            read_into(&mut buf[..bufsize])
        })
    }

    /// `sock.close()`. Taking `self` makes Python's "use after close"
    /// (`OSError: [Errno 9] Bad file descriptor`) impossible; dropping the
    /// socket does the same.
    pub fn close(self) {
        drop(self);
    }

    /// `sock.shutdown(how)`, e.g. `shutdown(SHUT_WR)` to send EOF but keep
    /// reading.
    pub fn shutdown(&self, how: std::net::Shutdown) -> PyResult<()> {
        Ok(self.inner.shutdown(how)?)
    }

    /// `sock.getpeername()`: the `(host, port)` this socket is connected
    /// to; `OSError: [Errno 107] Transport endpoint is not connected` if
    /// none.
    pub fn getpeername(&self) -> PyResult<SocketAddr> {
        inet(self.inner.peer_addr()?)
    }

    /// `sock.getsockname()`: the local `(host, port)`; `('0.0.0.0', 0)`
    /// before `bind`/`connect`.
    pub fn getsockname(&self) -> PyResult<SocketAddr> {
        inet(self.inner.local_addr()?)
    }

    /// `sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)`: lets a
    /// restarted server bind its port while old connections sit in
    /// `TIME_WAIT`.
    pub fn set_reuseaddr(&self, on: bool) -> PyResult<()> {
        Ok(self.inner.set_reuse_address(on)?)
    }

    /// `sock.bind(address)`.
    pub fn bind(&self, address: impl ToSocketAddrs) -> PyResult<()> {
        let addr = resolve(address)?;
        Ok(self.inner.bind(&SockAddr::from(addr))?)
    }

    /// `sock.listen(backlog)`.
    pub fn listen(&self, backlog: i32) -> PyResult<()> {
        Ok(self.inner.listen(backlog)?)
    }

    /// The servers' four lines: `sock = socket.socket()`,
    /// `sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)`, `sock.bind(address)`,
    /// `sock.listen(backlog)` (`socket.create_server(address,
    /// backlog=backlog)`). Port `0` picks a free port; read it back with
    /// [`Socket::getsockname`]. The socket is blocking.
    pub fn listen_on(address: impl ToSocketAddrs, backlog: i32) -> PyResult<Socket> {
        let sock = Socket::new()?;
        sock.set_reuseaddr(true)?;
        sock.bind(address)?;
        sock.listen(backlog)?;
        Ok(sock)
    }

    /// `conn, addr = sock.accept()`. On a non-blocking listening socket with
    /// no pending connection it raises `BlockingIOError`. As in CPython on
    /// Linux (with no default timeout), the new socket is blocking whatever
    /// the listening socket is.
    pub fn accept(&self) -> PyResult<(Socket, SocketAddr)> {
        let (inner, addr) = retry_eintr(|| self.inner.accept())?;
        let conn = Socket::wrap(inner, Some(true));
        Ok((conn, inet(addr)?))
    }
}

/// The count of `generation` moves on before the fd is closed (by
/// `inner`'s drop, right after), so a selector that reads the old count
/// knows the socket is still open.
impl Drop for Socket {
    fn drop(&mut self) {
        bump_generation(self.inner.as_raw_fd());
    }
}

impl AsRawFd for Socket {
    /// [`Socket::fileno`].
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for Socket {
    /// The descriptor, borrowed for as long as the socket lives.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// `repr(sock)`: `<socket.socket fd=3, family=2, type=1, proto=0,
/// laddr=('127.0.0.1', 54321), raddr=('127.0.0.1', 8080)>` (`socket.socket()`
/// says proto 0, and an accepted socket inherits it).
impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn tuple(a: SocketAddr) -> String {
            format!("('{}', {})", a.ip(), a.port())
        }
        write!(
            f,
            "<socket.socket fd={}, family=2, type=1, proto=0",
            self.fileno()
        )?;
        if let Ok(local) = self.getsockname() {
            write!(f, ", laddr={}", tuple(local))?;
        }
        if let Ok(peer) = self.getpeername() {
            write!(f, ", raddr={}", tuple(peer))?;
        }
        f.write_str(">")
    }
}

/// So a socket can travel in a [`Value`](crate::Value), as any Python object
/// can.
impl Object for Socket {
    fn type_name(&self) -> &str {
        "socket"
    }
    fn repr(&self) -> String {
        format!("{self:?}")
    }
}

fn rlim(v: Option<u64>) -> u64 {
    v.unwrap_or(RLIM_INFINITY)
}

/// `resource.getrlimit(resource.RLIMIT_NOFILE)`: `(soft, hard)`, with
/// [`RLIM_INFINITY`] for "unlimited".
pub fn nofile_limit() -> (u64, u64) {
    use rustix::process::{getrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    (rlim(lim.current), rlim(lim.maximum))
}

/// `resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))`: raises the
/// soft limit on open descriptors to the hard limit, so that thousands of
/// concurrent sockets (the C10K stages) do not fail with `OSError: [Errno
/// 24] Too many open files`. Returns the new `(soft, hard)`.
///
/// An unlimited hard limit cannot be the soft limit of `RLIMIT_NOFILE` on
/// Linux; then the soft limit goes to 1048576 (the kernel's default
/// `fs.nr_open`), or stays where it was if even that is refused.
pub fn raise_nofile_limit() -> PyResult<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    const NR_OPEN_DEFAULT: u64 = 1 << 20;
    let lim = getrlimit(Resource::Nofile);
    let target = lim.maximum.unwrap_or(NR_OPEN_DEFAULT);
    if lim.current.is_none_or(|soft| soft >= target) {
        return Ok((rlim(lim.current), rlim(lim.maximum)));
    }
    let new = Rlimit {
        current: Some(target),
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => {}
        // Unlimited hard limit but a smaller nr_open: keep what we had.
        Err(_) if lim.maximum.is_none() => {}
        Err(e) => return Err(io::Error::from(e).into()),
    }
    Ok(nofile_limit())
}

/// Grows this process's descriptor table now to hold `n` descriptors, so
/// that opening them later does not grow it step by step. (Python has no
/// name for this: CPython programs never need it, see below.)
///
/// Linux doubles the table as descriptors are opened past its size (64,
/// 128, ..., 8,192 for 5,000 sockets) and, when the process has more than one
/// thread, waits for an RCU grace period at each doubling: milliseconds
/// each on a busy machine. The stages have helper threads (the output
/// flusher, the signal watcher), so the first 5,000 `socket()` calls of
/// `generator --urls 5000` took 80–100 ms where a single-threaded process
/// (tokio's current-thread client, CPython) takes 22–30 ms (measured with
/// a Python script, 5,000 `socket.socket()` with and without one idle
/// thread, three runs each). One `fcntl(F_DUPFD_CLOEXEC, n - 1)`, closed at
/// once, grows the table in one step before the clock starts. A no-op when
/// the table is already that big; `n` above the open-file limit raises
/// `OSError` (EINVAL), so call it after [`raise_nofile_limit`].
pub fn reserve_fds(n: usize) -> PyResult<()> {
    let Some(highest) = n.checked_sub(1) else {
        return Ok(());
    };
    let highest = RawFd::try_from(highest)
        .map_err(|_| Exception::OSError(OsError::msg(format!("{n} descriptors"))))?;
    // Any open descriptor will do as the one to duplicate.
    let probe = socket2::Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let high = rustix::io::fcntl_dupfd_cloexec(&probe, highest).map_err(io::Error::from)?;
    drop(high);
    Ok(())
}
