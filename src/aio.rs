//! `aio`: the async/await stage — native Rust `async fn` over the same
//! selector the generator stages use, with Rust's `Future`/`Waker` playing
//! asyncio's roles.
//!
//! Why this exists: the last rung of the ladder. In Python, `async def` and
//! `await` replaced `yield from`, `asyncio.get_event_loop()` replaced the
//! hand-made `loop()`, and asyncio's streams took over registering and
//! unregistering socket events, so the program's `fetch` no longer touches
//! the selector at all. Rust's `async fn` is the same idea compiled into a
//! state machine instead of a generator frame, and this module supplies what
//! asyncio supplies around it: the loop that drives tasks, `sleep`, `gather`,
//! `wait_for`, and non-blocking sockets whose readiness is awaited.
//!
//! | Python (asyncio) | here |
//! |---|---|
//! | `asyncio.run(main())`, `loop.run_until_complete(f)` | [`run`] |
//! | `asyncio.create_task(coro)`, `loop.create_task` | [`spawn`] → [`JoinHandle`] |
//! | `asyncio.gather(*aws)` / `gather(*aws, return_exceptions=True)` | [`gather`] / [`gather_return_exceptions`] |
//! | `asyncio.sleep(delay)` | [`sleep`] |
//! | `asyncio.wait_for(aw, timeout)` | [`wait_for`] (`TimeoutError`) |
//! | `loop.sock_connect` / `sock_sendall` / `sock_recv` | [`TcpStream`] |
//! | `asyncio.open_connection(host, port)` | [`open_connection`] → ([`StreamReader`], [`StreamWriter`]) |
//! | `asyncio.wrap_future(f)` (await a generator-stage [`Future`](crate::Future)) | [`wrap_future`] |
//! | `asyncio.CancelledError` | `Exception::user("CancelledError", "")` ([`cancelled_error`]) |
//!
//! # How the pieces map
//!
//! In the generator stage a coroutine yields a `Future`; the `Task` adds
//! `step` as the future's done callback, and a selector callback calls
//! `set_result`, which calls `step`, which resumes the coroutine. Here:
//!
//! - the coroutine is an `async` block: a `Future` whose `poll` runs it to
//!   its next `.await` that is not ready (the generator's `yield`);
//! - `Task.step` is the executor polling the task once;
//! - the tutorials' `Future` + `add_done_callback(step)` become the [`Waker`]
//!   handed to `poll`: a leaf future (socket readiness, a timer) keeps the
//!   waker, and the selector callback or timer calls `waker.wake()`, which
//!   puts the task's id on the ready queue — "step me on the next turn";
//! - `loop()` is [`run`]: poll every task that was woken, then block in the
//!   event loop's `select()` (via [`EventLoop::run_once`]) until a socket or
//!   a timer wakes someone, and again, until the main future is done.
//!
//! ```text
//! selector callback / timer ──waker.wake()──▶ ready queue ──run──▶ poll(task)
//!        ▲                                                           │
//!        └──── registered by the leaf future when poll is Pending ◀──┘
//! ```
//!
//! The wakers are `std::task::Wake` impls on an `Arc`, because the `Waker`
//! contract lets them be sent to, and woken from, any thread. Waking from
//! the loop's own thread only pushes the id onto the shared queue; waking
//! from another thread also writes a byte to a self-pipe the selector
//! watches, so a loop blocked in `select()` notices — asyncio's
//! `call_soon_threadsafe` / `_write_to_self` trick.
//!
//! Everything else is single-threaded, as in the rest of the crate: the
//! tasks live in a per-thread table and are `!Send` futures.
//!
//! ```
//! use pyfiber::aio;
//! use std::time::Duration;
//!
//! // async def main():
//! //     async def double(x):
//! //         await asyncio.sleep(0.01)
//! //         return 2 * x
//! //     return await asyncio.gather(*(double(x) for x in range(3)))
//! // asyncio.run(main())
//! async fn double(x: i64) -> pyfiber::PyResult<i64> {
//!     aio::sleep(Duration::from_millis(10)).await;
//!     Ok(2 * x)
//! }
//! let got = aio::run(async { aio::gather((0..3).map(double)).await }).unwrap();
//! assert_eq!(got, vec![0, 2, 4]);
//! ```
//!
//! [`EventLoop::run_once`]: crate::event_loop::EventLoop::run_once

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};
use std::time::Duration;

use crate::event_loop::{self, get_event_loop, Callback, TimerHandle};
use crate::exception::{
    BlockingIOError, ConnectionRefusedError, ConnectionResetError, Exception, OSError, OsError,
    PyResult, TimeoutError,
};
use crate::net::Socket;
use crate::selector::{EVENT_READ, EVENT_WRITE};
use crate::trace;

// ---------------------------------------------------------------------------
// Wakers and the ready queue
// ---------------------------------------------------------------------------

/// What every waker of this thread's tasks shares: the ready queue (ids of
/// tasks to poll on the next turn), the loop's thread, and the write end of
/// the self-pipe (made by the first [`run`]).
struct Shared {
    ready: Mutex<VecDeque<u64>>,
    thread: ThreadId,
    self_pipe: OnceLock<UnixStream>,
}

impl Shared {
    fn push(&self, id: u64) {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(id);
    }

    fn pop(&self) -> Option<u64> {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    fn queued(&self) -> usize {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Makes a `select()` that is blocked (or about to block) return at once.
    fn write_to_self(&self) {
        if let Some(pipe) = self.self_pipe.get() {
            // A full pipe already guarantees a wake-up; nothing is lost.
            let _ = (&*pipe).write(&[0]);
        }
    }
}

/// One task's waker: `wake()` is the tutorials' `future.set_result(...)`
/// that ends in `Task.step`, except that the step happens on the loop's next
/// turn instead of inside the call.
struct TaskWaker {
    id: u64,
    /// Already on the ready queue: a second wake before the poll is a no-op.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.push(self.id);
        if thread::current().id() == self.shared.thread {
            trace::emit(format_args!("wake Task-{}", self.id));
        } else {
            self.shared.write_to_self();
        }
    }
}

// ---------------------------------------------------------------------------
// The executor: this thread's tasks
// ---------------------------------------------------------------------------

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

struct TaskSlot {
    /// `None` while the task is being polled.
    future: Option<LocalFuture>,
    waker: Arc<TaskWaker>,
    /// `cancel()` was called while the task was being polled.
    cancelled: bool,
}

struct Executor {
    shared: Arc<Shared>,
    tasks: RefCell<HashMap<u64, TaskSlot>>,
    next_id: Cell<u64>,
    running: Cell<bool>,
    /// The read end of the self-pipe, created by the first `run`.
    self_pipe_reader: RefCell<Option<Rc<UnixStream>>>,
}

thread_local! {
    static EXECUTOR: Rc<Executor> = Rc::new(Executor {
        shared: Arc::new(Shared {
            ready: Mutex::new(VecDeque::new()),
            thread: thread::current().id(),
            self_pipe: OnceLock::new(),
        }),
        tasks: RefCell::new(HashMap::new()),
        next_id: Cell::new(1),
        running: Cell::new(false),
        self_pipe_reader: RefCell::new(None),
    });
}

fn executor() -> Rc<Executor> {
    EXECUTOR.with(Rc::clone)
}

impl Executor {
    fn new_waker(&self) -> Arc<TaskWaker> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            shared: self.shared.clone(),
        })
    }

    /// Adds a task under its waker's id and queues its first poll.
    fn insert(&self, waker: Arc<TaskWaker>, future: LocalFuture) {
        let id = waker.id;
        waker.queued.store(true, Ordering::Release);
        self.shared.push(id);
        let slot = TaskSlot {
            future: Some(future),
            waker,
            cancelled: false,
        };
        self.tasks.borrow_mut().insert(id, slot);
    }

    /// `Task.step`: polls one task once. A stale id (the task finished or
    /// was cancelled since it was woken) is skipped.
    fn poll_task(&self, id: u64) {
        let (mut future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(&id) else {
                return;
            };
            let Some(future) = slot.future.take() else {
                return;
            };
            (future, slot.waker.clone())
        };
        waker.queued.store(false, Ordering::Release);
        trace::emit(format_args!("poll Task-{id}"));
        let waker = Waker::from(waker);
        let ready = future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        let mut tasks = self.tasks.borrow_mut();
        let Some(slot) = tasks.get_mut(&id) else {
            return;
        };
        if ready || slot.cancelled {
            let slot = tasks.remove(&id);
            drop(tasks);
            // Dropped outside the borrow: a drop may wake or cancel others.
            drop(future);
            drop(slot);
        } else {
            slot.future = Some(future);
        }
    }

    /// `task.cancel()`: drops the task's future, which runs the destructors
    /// of everything it was awaiting (unregistering its sockets, cancelling
    /// its timers) — Rust's version of throwing `CancelledError` into it.
    fn cancel(&self, id: u64) -> bool {
        let removed = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(&id) {
                None => return false,
                Some(slot) if slot.future.is_none() => {
                    // Cancelling itself from inside its own poll: finish the
                    // poll first, then drop it.
                    slot.cancelled = true;
                    return true;
                }
                Some(_) => tasks.remove(&id),
            }
        };
        drop(removed);
        true
    }

    /// Whether anything outside the executor still holds a waker of a
    /// pending task (a selector callback, a timer, another task's join
    /// state, another thread). If nothing does, no task can ever be woken.
    fn anyone_can_wake(&self, main: &Arc<TaskWaker>) -> bool {
        Arc::strong_count(main) > 1
            || self
                .tasks
                .borrow()
                .values()
                .any(|slot| Arc::strong_count(&slot.waker) > 1)
    }

    /// `asyncio.run`'s last act: cancel every task still pending.
    fn cancel_all(&self) {
        for _ in 0..1000 {
            let tasks: Vec<TaskSlot> = self.tasks.borrow_mut().drain().map(|(_, t)| t).collect();
            if tasks.is_empty() {
                break;
            }
            drop(tasks);
        }
        while self.shared.pop().is_some() {}
    }

    /// The read end of the self-pipe, made on first use.
    fn self_pipe(&self) -> PyResult<Rc<UnixStream>> {
        if let Some(reader) = self.self_pipe_reader.borrow().as_ref() {
            return Ok(reader.clone());
        }
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        // Only this thread's executor sets it, and only here.
        let _ = self.shared.self_pipe.set(writer);
        let reader = Rc::new(reader);
        *self.self_pipe_reader.borrow_mut() = Some(reader.clone());
        Ok(reader)
    }
}

/// Registers the self-pipe for the duration of one [`run`], and on the way
/// out (a return, an error or a panic) cancels the leftover tasks and
/// unregisters it.
struct RunGuard {
    executor: Rc<Executor>,
    fd: RawFd,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.executor.cancel_all();
        quietly(|| {
            let _ = event_loop::selector().unregister(self.fd);
        });
        self.executor.running.set(false);
    }
}

/// Runs `f` with tracing off: the self-pipe is the executor's plumbing, not
/// one of the program's sockets, so its registration stays out of traces.
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let was = trace::enabled();
    trace::set_enabled(false);
    let r = f();
    trace::set_enabled(was);
    r
}

/// `asyncio.run(main)` (and `loop.run_until_complete(main)`): runs this
/// thread's event loop until `main` is done and returns its outcome.
///
/// Each turn polls the tasks that were woken since the last turn (tasks
/// created with [`spawn`], and `main` itself), then lets the event loop do
/// one [`run_once`](crate::event_loop::EventLoop::run_once): block in
/// `select()` until a socket is ready or a timer is due, and run those
/// callbacks, which wake the tasks waiting on them.
///
/// As `asyncio.run` does, it cancels the tasks still pending when `main`
/// finishes. Errors: calling it from inside a running `run` is
/// `RuntimeError` (asyncio: "asyncio.run() cannot be called from a running
/// event loop"); a `main` that waits for something nothing can ever wake
/// (no socket, timer, task or thread holds its waker) is `RuntimeError`
/// instead of a hang.
pub fn run<T>(main: impl Future<Output = PyResult<T>>) -> PyResult<T> {
    let executor = executor();
    if executor.running.get() {
        return Err(Exception::RuntimeError(
            "aio::run() cannot be called from a running event loop".into(),
        ));
    }
    let lp = get_event_loop();
    let reader = executor.self_pipe()?;
    let fd = reader.as_raw_fd();
    let drain: Callback = event_loop::callback(move || {
        let mut buf = [0u8; 256];
        while matches!((&*reader).read(&mut buf), Ok(n) if n > 0) {}
    });
    quietly(|| lp.selector().register(fd, EVENT_READ, drain))?;
    executor.running.set(true);
    let _guard = RunGuard {
        executor: executor.clone(),
        fd,
    };

    // `main` is polled in place rather than spawned, so it may borrow from
    // the caller's stack; it still gets a waker (and an id) like any task.
    let mut main = pin!(main);
    let main_waker = executor.new_waker();
    let main_id = main_waker.id;
    main_waker.queued.store(true, Ordering::Release);
    executor.shared.push(main_id);

    loop {
        // The tasks woken before this turn; those woken while it runs wait
        // for the next one, so a busy task cannot starve the sockets.
        for _ in 0..executor.shared.queued() {
            let Some(id) = executor.shared.pop() else {
                break;
            };
            if id != main_id {
                executor.poll_task(id);
                continue;
            }
            main_waker.queued.store(false, Ordering::Release);
            trace::emit(format_args!("poll Task-{id} (main)"));
            let waker = Waker::from(main_waker.clone());
            if let Poll::Ready(outcome) = main.as_mut().poll(&mut Context::from_waker(&waker)) {
                trace::emit(format_args!("Task-{id} (main) done"));
                return outcome;
            }
        }
        if executor.shared.queued() > 0 {
            // Someone is ready already: look at the sockets, don't wait.
            executor.shared.write_to_self();
        } else if !executor.anyone_can_wake(&main_waker) {
            return Err(Exception::RuntimeError(
                "aio::run(): the main future waits for something nothing can ever wake \
                 (no socket, timer, task or thread holds a waker of any pending task)"
                    .into(),
            ));
        }
        lp.run_once()?;
    }
}

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

struct JoinState<T> {
    outcome: Option<PyResult<T>>,
    done: bool,
    waiter: Option<Waker>,
}

/// Settles a task's [`JoinState`]: with the outcome when the future
/// finishes, or with `CancelledError` if the future is dropped first.
struct Completion<T> {
    id: u64,
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> Completion<T> {
    fn settle(&self, outcome: PyResult<T>) {
        let waiter = {
            let mut state = self.state.borrow_mut();
            if state.done {
                return;
            }
            state.done = true;
            state.outcome = Some(outcome);
            state.waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        if !self.state.borrow().done {
            trace::emit(format_args!("Task-{} cancelled", self.id));
            self.settle(Err(cancelled_error()));
        }
    }
}

/// `asyncio.CancelledError()`: what awaiting a cancelled task raises.
pub fn cancelled_error() -> Exception {
    Exception::user("CancelledError", "")
}

/// `asyncio.TimeoutError()` (the built-in `TimeoutError` since Python 3.11):
/// what [`wait_for`] raises when the time is up. Its message is empty, as
/// Python's is.
pub fn timeout_error() -> Exception {
    Exception::TimeoutError(OsError::msg(""))
}

/// `asyncio.Task`, seen from outside: awaiting it gives the task's result
/// (or raises its exception, or `CancelledError`).
///
/// Dropping the handle does not cancel the task (asyncio keeps a task
/// running whether or not anyone holds it); [`JoinHandle::cancel`] does.
pub struct JoinHandle<T> {
    id: u64,
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> JoinHandle<T> {
    /// `task.get_name()` is `Task-N`; this is the `N`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `task.done()`: finished, failed or cancelled.
    pub fn done(&self) -> bool {
        self.state.borrow().done
    }

    /// `task.cancel()`: drops the task's future (every socket it waited on
    /// is unregistered, every timer cancelled) and makes awaiting the handle
    /// raise `CancelledError`. `false` if the task had already finished, as
    /// in Python.
    pub fn cancel(&self) -> bool {
        if self.done() {
            return false;
        }
        executor().cancel(self.id)
    }
}

/// `repr(task)`: `<Task pending name='Task-3'>` / `<Task finished name='Task-3'>`.
impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.done() { "finished" } else { "pending" };
        write!(f, "<Task {state} name='Task-{}'>", self.id)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = PyResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PyResult<T>> {
        let mut state = self.state.borrow_mut();
        if let Some(outcome) = state.outcome.take() {
            return Poll::Ready(outcome);
        }
        if state.done {
            return Poll::Ready(Err(Exception::RuntimeError(format!(
                "Task-{}'s result was already taken",
                self.id
            ))));
        }
        match &state.waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// `asyncio.create_task(coro)` / `loop.create_task(coro)`: schedules `fut`
/// as a task of this thread's loop and returns a handle to await it.
///
/// The task first runs on the next turn of [`run`] (so tasks created before
/// `run`, as seed 004 does with `loop.create_task`, start when it starts);
/// the ones still pending when `run` returns are cancelled.
pub fn spawn<T: 'static>(fut: impl Future<Output = PyResult<T>> + 'static) -> JoinHandle<T> {
    let executor = executor();
    let state = Rc::new(RefCell::new(JoinState {
        outcome: None,
        done: false,
        waiter: None,
    }));
    let waker = executor.new_waker();
    let id = waker.id;
    let completion = Completion {
        id,
        state: state.clone(),
    };
    // `completion` is moved in before the first poll, so dropping a task
    // that never ran still settles it as cancelled.
    let task = async move {
        let outcome = fut.await;
        if trace::enabled() {
            match &outcome {
                Ok(_) => trace::emit(format_args!("Task-{id} done")),
                Err(e) => trace::emit(format_args!("Task-{id} done: {}", e.line())),
            }
        }
        completion.settle(outcome);
    };
    executor.insert(waker, Box::pin(task));
    JoinHandle { id, state }
}

// ---------------------------------------------------------------------------
// gather
// ---------------------------------------------------------------------------

struct GatherState<T> {
    outcomes: Vec<Option<PyResult<T>>>,
    remaining: usize,
    /// The first exception, in time, of any child.
    first_error: Option<Exception>,
    waiter: Option<Waker>,
}

/// The future [`gather`] and [`gather_return_exceptions`] return.
///
/// Each awaitable runs as its own task (as `asyncio.gather` wraps each
/// coroutine with `ensure_future`), so only the child whose socket became
/// ready is polled; each child, when done, records its outcome and wakes the
/// gathering task. Dropping the gather future before it finished cancels the
/// children, as cancelling a gather does in Python.
pub struct Gather<T> {
    state: Rc<RefCell<GatherState<T>>>,
    children: Vec<JoinHandle<()>>,
    return_exceptions: bool,
    finished: bool,
}

fn gather_impl<T, F>(aws: impl IntoIterator<Item = F>, return_exceptions: bool) -> Gather<T>
where
    T: 'static,
    F: Future<Output = PyResult<T>> + 'static,
{
    let aws: Vec<F> = aws.into_iter().collect();
    let state = Rc::new(RefCell::new(GatherState {
        outcomes: (0..aws.len()).map(|_| None).collect(),
        remaining: aws.len(),
        first_error: None,
        waiter: None,
    }));
    let children = aws
        .into_iter()
        .enumerate()
        .map(|(i, aw)| {
            let state = state.clone();
            spawn(async move {
                let outcome = aw.await;
                let waiter = {
                    let mut s = state.borrow_mut();
                    if let Err(e) = &outcome {
                        if s.first_error.is_none() {
                            s.first_error = Some(e.clone());
                        }
                    }
                    s.outcomes[i] = Some(outcome);
                    s.remaining -= 1;
                    s.waiter.take()
                };
                if let Some(w) = waiter {
                    w.wake();
                }
                Ok(())
            })
        })
        .collect();
    Gather {
        state,
        children,
        return_exceptions,
        finished: false,
    }
}

/// `asyncio.gather(*aws)`: runs every awaitable concurrently and returns
/// their results in the order given (not the order they finished).
///
/// The first exception raised by any of them (first in time) is raised
/// at once; as in Python the other awaitables are not cancelled by that and
/// keep running. For one outcome per awaitable, use
/// [`gather_return_exceptions`].
pub fn gather<T, F>(aws: impl IntoIterator<Item = F>) -> impl Future<Output = PyResult<Vec<T>>>
where
    T: 'static,
    F: Future<Output = PyResult<T>> + 'static,
{
    // The children are spawned here, when `gather` is called, not when it is
    // first awaited: `asyncio.gather` schedules them at once too.
    let mut g = gather_impl(aws, false);
    async move {
        poll_fn(|cx| g.poll_outcomes(cx))
            .await?
            .into_iter()
            .collect()
    }
}

/// `asyncio.gather(*aws, return_exceptions=True)`: one outcome per
/// awaitable, in the order given, exceptions included; it never raises.
pub fn gather_return_exceptions<T, F>(
    aws: impl IntoIterator<Item = F>,
) -> impl Future<Output = Vec<PyResult<T>>>
where
    T: 'static,
    F: Future<Output = PyResult<T>> + 'static,
{
    let mut g = gather_impl(aws, true);
    async move {
        // With `return_exceptions` nothing short-circuits, so the outer
        // `Err` cannot happen; it would be one more outcome if it did.
        poll_fn(|cx| g.poll_outcomes(cx))
            .await
            .unwrap_or_else(|e| vec![Err(e)])
    }
}

impl<T> Gather<T> {
    fn poll_outcomes(&mut self, cx: &mut Context<'_>) -> Poll<PyResult<Vec<PyResult<T>>>> {
        let mut state = self.state.borrow_mut();
        if !self.return_exceptions {
            if let Some(e) = state.first_error.take() {
                self.finished = true;
                return Poll::Ready(Err(e));
            }
        }
        if state.remaining == 0 {
            self.finished = true;
            let outcomes = state
                .outcomes
                .drain(..)
                .map(|o| o.unwrap_or_else(|| Err(cancelled_error())))
                .collect();
            return Poll::Ready(Ok(outcomes));
        }
        match &state.waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Gather<T> {
    fn drop(&mut self) {
        if !self.finished {
            for child in &self.children {
                child.cancel();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Timers: sleep and wait_for
// ---------------------------------------------------------------------------

/// What a leaf future shares with the loop callback that will wake it.
#[derive(Default)]
struct Signal {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    fn set_waker(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }
}

/// The future [`sleep`] returns.
pub struct Sleep {
    delay: Duration,
    signal: Rc<Signal>,
    timer: Option<TimerHandle>,
    yielded: bool,
}

/// `asyncio.sleep(delay)`: completes after `delay`, by a `call_later` timer
/// on the event loop (nothing blocks). The clock starts at the first poll,
/// as a coroutine's body starts when it is first awaited. `sleep(0)` just
/// yields once to the other tasks, as in Python.
pub fn sleep(delay: Duration) -> Sleep {
    Sleep {
        delay,
        signal: Rc::new(Signal::default()),
        timer: None,
        yielded: false,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.delay.is_zero() {
            if self.yielded {
                return Poll::Ready(());
            }
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.signal.fired.get() {
            self.timer = None;
            return Poll::Ready(());
        }
        self.signal.set_waker(cx.waker());
        if self.timer.is_none() {
            let signal = self.signal.clone();
            let handle = get_event_loop().call_later(self.delay, move || signal.fire());
            self.timer = Some(handle);
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.cancel();
        }
        // The cancelled timer stays in the loop's heap until its time; it
        // must not keep the task's waker alive meanwhile.
        self.signal.waker.borrow_mut().take();
    }
}

/// `asyncio.wait_for(aw, timeout)`: `aw`'s outcome, or `TimeoutError` once
/// `timeout` has passed, in which case `aw` is dropped, which cancels it
/// (its sockets are unregistered, its timers cancelled). Awaiting a
/// [`JoinHandle`] this way leaves the task itself running; cancel it with
/// [`JoinHandle::cancel`] if it should stop.
pub async fn wait_for<T>(aw: impl Future<Output = PyResult<T>>, timeout: Duration) -> PyResult<T> {
    let mut aw = pin!(aw);
    let mut timer = pin!(sleep(timeout));
    poll_fn(move |cx| {
        if let Poll::Ready(outcome) = aw.as_mut().poll(cx) {
            return Poll::Ready(outcome);
        }
        if timer.as_mut().poll(cx).is_ready() {
            trace::emit(format_args!("wait_for timed out after {timeout:?}"));
            return Poll::Ready(Err(timeout_error()));
        }
        Poll::Pending
    })
    .await
}

/// `asyncio.wrap_future(future)`: awaits one of the generator stages'
/// [`crate::Future`]s from async code, returning its outcome.
///
/// Seed 000's point that `async/await` and `yield from` coroutines "share
/// one implementation and work together": a `Task` of the generator runtime
/// (through `task.add_done_callback`) or any future a selector callback
/// settles can be awaited here, because the done callback simply wakes the
/// awaiting task.
pub fn wrap_future(future: &crate::Future) -> impl Future<Output = PyResult<crate::Value>> {
    let future = future.clone();
    let signal = Rc::new(Signal::default());
    let mut armed = false;
    poll_fn(move |cx| {
        if future.done() {
            return Poll::Ready(future.outcome());
        }
        signal.set_waker(cx.waker());
        if !armed {
            armed = true;
            let signal = signal.clone();
            future.add_done_callback(Box::new(move |_| signal.fire()));
        }
        Poll::Pending
    })
}

// ---------------------------------------------------------------------------
// Socket readiness
// ---------------------------------------------------------------------------

/// Who waits on one fd: at most one reader and one writer (asyncio's
/// `add_reader`/`add_writer`), sharing one selector registration whose
/// events are the union of theirs.
struct FdWaiters {
    reader: Option<Rc<Signal>>,
    writer: Option<Rc<Signal>>,
    callback: Callback,
}

impl FdWaiters {
    fn events(&self) -> u32 {
        let mut events = 0;
        if self.reader.is_some() {
            events |= EVENT_READ;
        }
        if self.writer.is_some() {
            events |= EVENT_WRITE;
        }
        events
    }
}

thread_local! {
    static WAITERS: RefCell<HashMap<RawFd, FdWaiters>> = RefCell::new(HashMap::new());
}

fn direction(events: u32) -> &'static str {
    if events == EVENT_READ {
        "reading"
    } else {
        "writing"
    }
}

/// Starts waiting for `events` (one of `EVENT_READ`, `EVENT_WRITE`) on `fd`:
/// `selector.register(fd, events, callback)`, or `modify` when the other
/// direction is already waited on.
fn add_waiter(fd: RawFd, events: u32, signal: Rc<Signal>) -> PyResult<()> {
    let (before, after, callback) = WAITERS.with(|all| {
        let mut all = all.borrow_mut();
        let entry = all.entry(fd).or_insert_with(|| FdWaiters {
            reader: None,
            writer: None,
            // The loop cannot say which direction is ready, so both waiters
            // are woken; each retries its system call and waits again on
            // `BlockingIOError` (a spurious wake-up, which is allowed).
            callback: event_loop::callback(move || {
                let (reader, writer) = WAITERS.with(|all| {
                    all.borrow()
                        .get(&fd)
                        .map(|w| (w.reader.clone(), w.writer.clone()))
                        .unwrap_or_default()
                });
                for signal in reader.into_iter().chain(writer) {
                    signal.fire();
                }
            }),
        });
        let before = entry.events();
        let slot = if events == EVENT_READ {
            &mut entry.reader
        } else {
            &mut entry.writer
        };
        if slot.is_some() {
            return Err(Exception::RuntimeError(format!(
                "fd {fd}: another task is already waiting for {} on this socket",
                direction(events)
            )));
        }
        *slot = Some(signal);
        Ok((before, entry.events(), entry.callback.clone()))
    })?;
    let selector = event_loop::selector();
    let registered = if before == 0 {
        selector.register(fd, after, callback)
    } else {
        selector.modify(fd, after, callback)
    };
    if let Err(e) = registered {
        remove_waiter_entry(fd, events);
        return Err(e);
    }
    Ok(())
}

/// Forgets the waiter without touching the selector; returns the events
/// still waited on and whether the fd had a waiter of that direction.
fn remove_waiter_entry(fd: RawFd, events: u32) -> Option<(u32, Callback)> {
    WAITERS.with(|all| {
        let mut all = all.borrow_mut();
        let entry = all.get_mut(&fd)?;
        if events == EVENT_READ {
            entry.reader.take()?;
        } else {
            entry.writer.take()?;
        }
        let left = entry.events();
        let callback = entry.callback.clone();
        if left == 0 {
            all.remove(&fd);
        }
        Some((left, callback))
    })
}

/// Stops waiting: `selector.unregister(fd)`, or `modify` back to the other
/// direction if it is still waited on.
fn remove_waiter(fd: RawFd, events: u32) {
    if let Some((left, callback)) = remove_waiter_entry(fd, events) {
        let selector = event_loop::selector();
        let _ = if left == 0 {
            selector.unregister(fd).map(drop)
        } else {
            selector.modify(fd, left, callback).map(drop)
        };
    }
}

/// Waits until `fd` is ready for `events`: registers with the selector on
/// the first poll, unregisters when ready or dropped (so a cancelled task
/// leaves nothing behind in the selector).
struct Readiness {
    fd: RawFd,
    events: u32,
    signal: Rc<Signal>,
    registered: bool,
}

fn readiness(fd: RawFd, events: u32) -> Readiness {
    Readiness {
        fd,
        events,
        signal: Rc::new(Signal::default()),
        registered: false,
    }
}

impl Future for Readiness {
    type Output = PyResult<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PyResult<()>> {
        if self.signal.fired.get() {
            self.registered = false;
            remove_waiter(self.fd, self.events);
            return Poll::Ready(Ok(()));
        }
        self.signal.set_waker(cx.waker());
        if !self.registered {
            if let Err(e) = add_waiter(self.fd, self.events, self.signal.clone()) {
                return Poll::Ready(Err(e));
            }
            self.registered = true;
        }
        Poll::Pending
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        if self.registered {
            remove_waiter(self.fd, self.events);
        }
    }
}

// ---------------------------------------------------------------------------
// TcpStream: loop.sock_connect / sock_sendall / sock_recv
// ---------------------------------------------------------------------------

/// A connected non-blocking TCP socket whose calls are awaited: asyncio's
/// `loop.sock_connect`, `loop.sock_sendall` and `loop.sock_recv` on a
/// `socket.socket` with `setblocking(False)`.
///
/// Every call first tries the system call and only on `BlockingIOError`
/// registers the fd with the selector and awaits readiness — the
/// register/`yield`/unregister dance of the generator stages, done once,
/// here, instead of in every `fetch`.
pub struct TcpStream {
    sock: Socket,
}

/// `repr(sock)`, as [`Socket`] shows it.
impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.sock, f)
    }
}

fn resolve_v4(address: impl ToSocketAddrs) -> PyResult<SocketAddr> {
    let mut addrs = address
        .to_socket_addrs()
        .map_err(|e| Exception::OSError(OsError::msg(format!("cannot resolve address: {e}"))))?;
    addrs.find(SocketAddr::is_ipv4).ok_or_else(|| {
        Exception::OSError(OsError::msg(
            "address has no IPv4 address (this socket is AF_INET)",
        ))
    })
}

impl TcpStream {
    /// `sock = socket.socket(); sock.setblocking(False); await
    /// loop.sock_connect(sock, address)`.
    ///
    /// The non-blocking `connect` "raises" `BlockingIOError`; the stream
    /// then awaits the socket becoming writable and reads `SO_ERROR`, as
    /// asyncio does, raising the matching `OSError` subclass with asyncio's
    /// text: `ConnectionRefusedError: [Errno 111] Connect call failed
    /// ('127.0.0.1', 9)`. Name resolution is synchronous (numeric addresses
    /// resolve without I/O).
    pub async fn connect(address: impl ToSocketAddrs) -> PyResult<TcpStream> {
        let addr = resolve_v4(address)?;
        let sock = Socket::new()?;
        sock.setblocking(false)?;
        let failed = |e: Exception| match e.os_error() {
            Some(OsError {
                errno: Some(errno), ..
            }) => {
                let strerror = format!("Connect call failed ('{}', {})", addr.ip(), addr.port());
                let kept = [
                    &ConnectionRefusedError,
                    &ConnectionResetError,
                    &TimeoutError,
                ];
                let class = kept
                    .into_iter()
                    .find(|c| e.is_instance(c))
                    .unwrap_or(&OSError);
                class.new((*errno, strerror))
            }
            _ => e,
        };
        match sock.connect(addr) {
            Ok(()) => {}
            Err(e) if e.is_instance(&BlockingIOError) => {
                readiness(sock.fileno(), EVENT_WRITE).await?;
                sock.take_error().map_err(failed)?;
            }
            Err(e) => return Err(failed(e)),
        }
        Ok(TcpStream { sock })
    }

    /// The socket inside (`writer.get_extra_info('socket')`).
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// `sock.fileno()`.
    pub fn fileno(&self) -> RawFd {
        self.sock.fileno()
    }

    /// `await loop.sock_send(sock, data)`: sends some of `data`, waiting
    /// until the socket can take at least one byte; returns how many it took.
    pub async fn write(&self, data: &[u8]) -> PyResult<usize> {
        loop {
            match self.sock.send(data) {
                Err(e) if e.is_instance(&BlockingIOError) => {
                    readiness(self.fileno(), EVENT_WRITE).await?
                }
                other => return other,
            }
        }
    }

    /// `await loop.sock_sendall(sock, data)`: sends every byte, awaiting
    /// writability whenever the send buffer is full.
    pub async fn write_all(&self, data: &[u8]) -> PyResult<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.write(rest).await?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// `await loop.sock_recv_into(sock, buf)`: reads what is there (at
    /// least one byte), waiting until something is; `0` is EOF (`b''`).
    pub async fn read(&self, buf: &mut [u8]) -> PyResult<usize> {
        loop {
            match self.sock.as_socket2().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    readiness(self.fileno(), EVENT_READ).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `await loop.sock_recv(sock, bufsize)`: at most `bufsize` bytes; empty
    /// is EOF.
    pub async fn recv(&self, bufsize: usize) -> PyResult<Vec<u8>> {
        let mut buf = vec![0u8; bufsize];
        let n = self.read(&mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Reads until EOF, appending to `out`; returns how many bytes it read.
    /// The generator stages' `read_all`: `recv` until `b''`.
    pub async fn read_to_end(&self, out: &mut Vec<u8>) -> PyResult<usize> {
        // Reads land straight in `out`'s tail. The first asks for 4096 bytes
        // (the tutorials' `recv(4096)`); each next one for as much as was
        // read so far, up to 1 MiB, so a big body takes few calls and a small
        // one zeroes little. (A fixed buffer inside the future would make
        // every task's future that much bigger, and moving and allocating
        // those is what dominated a 5,000-URL run.)
        const FIRST: usize = 4096;
        const MOST: usize = 1 << 20;
        let start = out.len();
        loop {
            let len = out.len();
            let want = (len - start).clamp(FIRST, MOST);
            out.resize(len + want, 0);
            let got = self.read(&mut out[len..]).await;
            let n = *got.as_ref().unwrap_or(&0);
            out.truncate(len + n);
            if got? == 0 {
                return Ok(out.len() - start);
            }
        }
    }

    /// `sock.shutdown(how)`.
    pub fn shutdown(&self, how: Shutdown) -> PyResult<()> {
        self.sock.shutdown(how)
    }
}

// ---------------------------------------------------------------------------
// Streams: asyncio.open_connection
// ---------------------------------------------------------------------------

/// `asyncio.StreamReader`: the reading half of [`open_connection`].
#[derive(Debug)]
pub struct StreamReader {
    stream: Rc<TcpStream>,
    eof: bool,
}

/// `asyncio.StreamWriter`: the writing half of [`open_connection`].
/// `write` buffers; `drain` sends the buffer.
#[derive(Debug)]
pub struct StreamWriter {
    stream: Rc<TcpStream>,
    buffer: Vec<u8>,
}

/// `reader, writer = await asyncio.open_connection(host, port)`: connects
/// (see [`TcpStream::connect`]) and returns the two stream halves.
pub async fn open_connection(host: &str, port: u16) -> PyResult<(StreamReader, StreamWriter)> {
    let stream = Rc::new(TcpStream::connect((host, port)).await?);
    Ok((
        StreamReader {
            stream: stream.clone(),
            eof: false,
        },
        StreamWriter {
            stream,
            buffer: Vec::new(),
        },
    ))
}

impl StreamReader {
    /// `await reader.read(n)`: up to `n` bytes, at least one unless at EOF,
    /// where it is empty.
    pub async fn read(&mut self, n: usize) -> PyResult<Vec<u8>> {
        if self.eof || n == 0 {
            return Ok(Vec::new());
        }
        let data = self.stream.recv(n).await?;
        self.eof = data.is_empty();
        Ok(data)
    }

    /// `await reader.read()` (`n=-1`): everything until EOF.
    pub async fn read_all(&mut self) -> PyResult<Vec<u8>> {
        let mut out = Vec::new();
        if !self.eof {
            self.stream.read_to_end(&mut out).await?;
            self.eof = true;
        }
        Ok(out)
    }

    /// `reader.at_eof()`.
    pub fn at_eof(&self) -> bool {
        self.eof
    }
}

impl StreamWriter {
    /// `writer.write(data)`: buffers `data` (nothing is sent until
    /// [`StreamWriter::drain`]).
    pub fn write(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// `await writer.drain()`: sends everything written so far.
    pub async fn drain(&mut self) -> PyResult<()> {
        let data = std::mem::take(&mut self.buffer);
        self.stream.write_all(&data).await
    }

    /// `writer.close()`: shuts the connection down both ways (the socket
    /// itself is closed when the reader is dropped too). Unsent buffered
    /// bytes are discarded, as aborting the transport would.
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// `writer.get_extra_info('peername')`.
    pub fn peername(&self) -> PyResult<SocketAddr> {
        self.stream.socket().getpeername()
    }
}
