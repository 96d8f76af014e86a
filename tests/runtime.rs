//! The generator-era runtime: Future, Task.step, the selector and the loop,
//! including the panic policy (a panicking task leaves the others intact).

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pyfiber::event_loop::{callback, get_event_loop};
use pyfiber::exception::{RuntimeError, TimeoutError};
use pyfiber::net::Socket;
use pyfiber::{
    DefaultSelector, Exception, Future, Generator, Task, Value, EVENT_READ, EVENT_WRITE,
};

#[test]
fn selector_errors_are_pythons() {
    let selector: DefaultSelector<()> = DefaultSelector::new().unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    selector.register(fd, EVENT_READ, ()).unwrap();
    let again = selector.register(fd, EVENT_READ, ()).unwrap_err();
    assert_eq!(
        again.line(),
        format!("KeyError: '{fd} (FD {fd}) is already registered'")
    );
    selector.unregister(fd).unwrap();
    let missing = selector.unregister(fd).unwrap_err();
    assert_eq!(
        missing.line(),
        format!("KeyError: '{fd} is not registered'")
    );
    let invalid = selector.register(fd, 4, ()).unwrap_err();
    assert_eq!(invalid.line(), "ValueError: Invalid events: 4");
}

#[test]
fn selector_is_level_triggered_and_modify_switches_interest() {
    let selector = DefaultSelector::new().unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut b, b"x").unwrap();
    selector.register(a.as_raw_fd(), EVENT_READ, "r").unwrap();
    for _ in 0..3 {
        // Not read, so reported again each time, as Python's selectors do.
        let ready = selector.select(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].1, EVENT_READ);
    }
    selector.modify(a.as_raw_fd(), EVENT_WRITE, "w").unwrap();
    let ready = selector.select(Some(Duration::from_secs(1))).unwrap();
    assert_eq!((ready[0].0.data, ready[0].1), ("w", EVENT_WRITE));
}

/// A connected pair of `Socket`s on loopback, the client's fd moved to
/// `at` or the lowest free number above it (what `fcntl(F_DUPFD)` gives).
fn socket_pair_at(at: i32) -> (Socket, Socket) {
    let listener = Socket::listen_on(("127.0.0.1", 0), 1).unwrap();
    let client = Socket::new().unwrap();
    client.connect(listener.getsockname().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let moved = rustix::io::fcntl_dupfd_cloexec(&client, at).unwrap();
    drop(client);
    (Socket::from_socket2(socket2::Socket::from(moved)), server)
}

/// The selector's skipped `epoll_ctl`s (an unregister and a register of the
/// same socket between two `select()`s make no call) must not skip a NEW
/// socket that got a closed one's number in between: it has to be added,
/// or it would never be reported.
#[test]
fn selector_watches_a_new_socket_on_a_closed_ones_number() {
    let selector = DefaultSelector::new().unwrap();
    let (a, _a_peer) = socket_pair_at(4000);
    let fd = a.fileno();
    selector.register(fd, EVENT_READ, "a").unwrap();
    selector.unregister(fd).unwrap();
    drop(a); // closed: the kernel drops it from the epoll set
    let (b, b_peer) = socket_pair_at(fd);
    assert_eq!(b.fileno(), fd, "the new socket should get the freed number");
    selector.register(fd, EVENT_READ, "b").unwrap();
    std::io::Write::write_all(&mut b_peer.as_socket2(), b"x").unwrap();
    let ready = selector.select(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ready.len(), 1, "the new socket was never added to epoll");
    assert_eq!((ready[0].0.data, ready[0].1), ("b", EVENT_READ));
}

/// The same socket unregistered and registered again before the next
/// `select()` (no system call now) is still reported, with its new data;
/// unregistered and left so, it is not reported even when ready; `modify`
/// with the same events (no system call either) still changes the data.
#[test]
fn selector_reregistering_the_same_socket_keeps_pythons_results() {
    let selector = DefaultSelector::new().unwrap();
    let (a, peer) = socket_pair_at(3000);
    std::io::Write::write_all(&mut peer.as_socket2(), b"x").unwrap();
    selector.register(a.fileno(), EVENT_READ, "first").unwrap();
    selector.unregister(a.fileno()).unwrap();
    selector.register(a.fileno(), EVENT_READ, "second").unwrap();
    let ready = selector.select(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((ready.len(), ready[0].0.data), (1, "second"));
    selector.modify(a.fileno(), EVENT_READ, "third").unwrap();
    let ready = selector.select(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((ready.len(), ready[0].0.data), (1, "third"));
    selector.unregister(a.fileno()).unwrap();
    assert!(selector.is_empty());
    let ready = selector.select(Some(Duration::from_millis(50))).unwrap();
    assert!(ready.is_empty(), "an unregistered socket was reported");
    // And registered for other events, it reports those.
    selector.register(a.fileno(), EVENT_WRITE, "w").unwrap();
    let ready = selector.select(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((ready[0].0.data, ready[0].1), ("w", EVENT_WRITE));
}

/// `def coro(f): x = yield f; return x` driven by a Task and the loop.
#[test]
fn task_steps_through_futures_set_by_timers() {
    let lp = get_event_loop();
    let (f1, f2) = (Future::new(), Future::new());
    let (w1, w2) = (f1.clone(), f2.clone());
    let task = Task::new(Generator::new(move |co| {
        let a = co.yield_from_future(&w1)?;
        let b = co.yield_from_future(&w2)?;
        Ok(Value::from(format!("{a}+{b}")))
    }));
    assert_eq!(task.waiting_on().map(|f| f.id()), Some(f1.id()));
    lp.call_later(Duration::from_millis(20), move || {
        f1.set_result("one".into())
    });
    lp.call_later(Duration::from_millis(40), move || {
        f2.set_result("two".into())
    });
    let started = Instant::now();
    assert_eq!(lp.run_until_complete(&task), Ok(Value::from("one+two")));
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn a_task_exception_is_surfaced_and_a_timeout_is_thrown_in() {
    let lp = get_event_loop();
    let never = Future::new();
    let waiting = never.clone();
    let task = Task::new(Generator::new(move |co| {
        match co.yield_from_future(&waiting) {
            Err(e) if e.is_instance(&TimeoutError) => Err(Exception::ValueError("gave up".into())),
            other => other,
        }
    }));
    let timed_out = never.clone();
    lp.call_later(Duration::from_millis(10), move || {
        timed_out.set_exception(Exception::TimeoutError(pyfiber::OsError::msg("timed out")))
    });
    assert_eq!(
        lp.run_until_complete(&task),
        Err(Exception::ValueError("gave up".into()))
    );
    // A late set_result is ignored: the coroutine is not resumed twice.
    never.set_result("late".into());
    assert!(task.done());
}

#[test]
fn a_yielded_non_future_is_pythons_attribute_error() {
    let task = Task::new(Generator::new(|co| {
        co.yield_(5.into())?;
        Ok(Value::None)
    }));
    assert_eq!(
        task.result(),
        Some(Err(Exception::AttributeError(
            "'int' object has no attribute 'add_done_callback'".into()
        )))
    );
}

#[test]
fn a_panicking_task_leaves_the_loop_and_the_other_tasks_intact() {
    let lp = get_event_loop();
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let shared = Future::new();
    let mut tasks = Vec::new();
    for name in ["first", "boom", "last"] {
        let (f, log) = (shared.clone(), log.clone());
        tasks.push(Task::new(Generator::new(move |co| {
            let v = co.yield_from_future(&f)?;
            if name == "boom" {
                panic!("boom's body panics");
            }
            log.borrow_mut().push(format!("{name} got {v}"));
            Ok(Value::None)
        })));
    }
    let (a, mut b) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut b, b"!").unwrap();
    let fd = a.as_raw_fd();
    let f = shared.clone();
    lp.selector()
        .register(
            fd,
            EVENT_READ,
            callback(move || {
                get_event_loop().selector().unregister(fd).unwrap();
                f.set_result("ready".into());
            }),
        )
        .unwrap();

    let caught = catch_unwind(AssertUnwindSafe(|| lp.run_loop()));
    assert!(caught.is_err(), "the panic reaches the caller of run_loop");
    assert_eq!(*log.borrow(), vec!["first got ready".to_string()]);
    assert!(tasks[1].done());
    assert_eq!(tasks[1].coro().state(), pyfiber::GenState::Closed);

    // The caller decides to go on: the task after the panicking one still
    // gets its wake-up on the next turn.
    lp.run_loop().unwrap();
    assert_eq!(
        *log.borrow(),
        vec!["first got ready".to_string(), "last got ready".to_string()]
    );
    let expected = format!("Task-{} panicked", tasks[1].id());
    assert!(
        matches!(tasks[1].result(), Some(Err(e)) if e.is_instance(&RuntimeError) && e.to_string() == expected)
    );
    drop(a);
}
