//! The async/await stage: `pyfiber::aio`'s primitives (asyncio's `run`,
//! `create_task`, `gather`, `sleep`, `wait_for`, `sock_connect`/`sock_recv`,
//! `open_connection`), then `examples/async_await.rs` end to end beside its
//! Python twin.
//!
//! Each test runs on its own thread, so each has its own event loop and
//! task table (both are per thread).

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use pyfiber::aio::{self, TcpStream};
use pyfiber::event_loop;
use pyfiber::exception::{ConnectionRefusedError, TimeoutError};
use pyfiber::server::{self, Fault, ServerConfig};
use pyfiber::{Exception, PyResult};

mod support;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A task that counts turns of the loop until `stop` is set: proof that
/// other tasks ran while one was waiting on a socket.
fn ticker(stop: Rc<Cell<bool>>) -> aio::JoinHandle<u32> {
    aio::spawn(async move {
        let mut ticks = 0;
        while !stop.get() {
            aio::sleep(ms(2)).await;
            ticks += 1;
        }
        Ok(ticks)
    })
}

// --- run, spawn, sleep ------------------------------------------------------

#[test]
fn sleeps_finish_in_order_of_their_delays_and_overlap() {
    let order = Rc::new(RefCell::new(Vec::new()));
    let start = Instant::now();
    aio::run({
        let order = order.clone();
        async move {
            let tasks: Vec<_> = [150u64, 50, 100]
                .into_iter()
                .map(|d| {
                    let order = order.clone();
                    aio::spawn(async move {
                        aio::sleep(ms(d)).await;
                        order.borrow_mut().push(d);
                        Ok(d)
                    })
                })
                .collect();
            for t in tasks {
                t.await?;
            }
            Ok(())
        }
    })
    .unwrap();
    let took = start.elapsed();
    assert_eq!(*order.borrow(), vec![50, 100, 150]);
    // Physical lower bound: the longest sleep. They ran at once, so under
    // the sum (300 ms).
    assert!(took >= ms(150), "{took:?}");
    assert!(took < ms(290), "the sleeps did not overlap: {took:?}");
}

#[test]
fn sleep_zero_yields_to_the_other_tasks() {
    // async def a(): log.append(1); await asyncio.sleep(0); log.append(3)
    // async def b(): log.append(2)
    let log = Rc::new(RefCell::new(Vec::new()));
    let (la, lb) = (log.clone(), log.clone());
    aio::run(async move {
        let a = aio::spawn(async move {
            la.borrow_mut().push(1);
            aio::sleep(Duration::ZERO).await;
            la.borrow_mut().push(3);
            Ok(())
        });
        let b = aio::spawn(async move {
            lb.borrow_mut().push(2);
            Ok(())
        });
        a.await?;
        b.await
    })
    .unwrap();
    assert_eq!(*log.borrow(), vec![1, 2, 3]);
}

#[test]
fn a_task_created_before_run_starts_with_it() {
    // loop.create_task(...) before loop.run_until_complete(...), as seed 004.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let task = aio::spawn(async move {
        r.set(true);
        Ok(7)
    });
    assert!(!ran.get(), "a task runs only under the loop");
    assert_eq!(aio::run(task).unwrap(), 7);
    assert!(ran.get());
}

#[test]
fn an_exception_in_a_task_is_raised_by_awaiting_it() {
    let got = aio::run(async {
        let t = aio::spawn(async {
            aio::sleep(ms(5)).await;
            Err::<(), _>(Exception::ValueError("bad page".into()))
        });
        t.await
    });
    assert_eq!(got.unwrap_err().line(), "ValueError: bad page");
}

#[test]
fn run_cancels_the_tasks_left_pending() {
    let start = Instant::now();
    let left = aio::run(async {
        let long = aio::spawn(async {
            aio::sleep(Duration::from_secs(30)).await;
            Ok("never")
        });
        aio::sleep(ms(10)).await;
        Ok(long)
    })
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(left.done());
    let got = aio::run(left);
    assert_eq!(got.unwrap_err().line(), "CancelledError");
    // Nothing of it is left in the loop: its timer is cancelled, no fd.
    assert!(!event_loop::get_event_loop().has_work());
}

#[test]
fn cancel_drops_the_task_and_its_socket_registration() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outcome = aio::run(async move {
        let reader = aio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await?;
            let mut buf = [0u8; 16];
            stream.read(&mut buf).await // the server never writes
        });
        aio::sleep(ms(30)).await;
        let registered_while_reading = event_loop::selector().len();
        assert!(reader.cancel(), "cancel() of a pending task is True");
        assert!(!reader.cancel(), "cancel() of a done task is False");
        let registered_after = event_loop::selector().len();
        Ok((registered_while_reading, registered_after, reader.await))
    })
    .unwrap();
    // While reading: the socket and the loop's self-pipe; after: the pipe.
    assert_eq!((outcome.0, outcome.1), (2, 1));
    assert_eq!(outcome.2.unwrap_err().line(), "CancelledError");
    assert!(event_loop::selector().is_empty());
    drop(listener);
}

#[test]
fn run_inside_run_is_a_runtime_error() {
    let inner = aio::run(async { Ok(aio::run(async { Ok(1) })) }).unwrap();
    let e = inner.unwrap_err();
    assert_eq!(e.name(), "RuntimeError");
    assert!(e.to_string().contains("running event loop"), "{e}");
}

#[test]
fn a_main_nothing_can_wake_is_an_error_not_a_hang() {
    let start = Instant::now();
    let e = aio::run(pending::<PyResult<()>>()).unwrap_err();
    assert_eq!(e.name(), "RuntimeError");
    assert!(e.to_string().contains("nothing can ever wake"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The loop is usable again afterwards.
    assert_eq!(aio::run(async { Ok(3) }).unwrap(), 3);
}

#[test]
fn a_waker_woken_from_another_thread_ends_the_wait() {
    // Wakers are Send: a thread may wake a task while the loop is blocked
    // in select(). The self-pipe is what makes select() return.
    let done = Arc::new(AtomicBool::new(false));
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let started = Cell::new(false);
    let start = Instant::now();
    aio::run(poll_fn(|cx| {
        if done.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        *slot.lock().unwrap() = Some(cx.waker().clone());
        if !started.replace(true) {
            let (done, slot) = (done.clone(), slot.clone());
            thread::spawn(move || {
                thread::sleep(ms(50));
                done.store(true, Ordering::Release);
                let waker = slot.lock().unwrap().take();
                waker.expect("the task left its waker").wake();
            });
        }
        Poll::Pending
    }))
    .unwrap();
    assert!(start.elapsed() >= ms(50));
}

// --- gather -------------------------------------------------------------------

#[test]
fn gather_returns_results_in_argument_order_not_finish_order() {
    let finished = Rc::new(RefCell::new(Vec::new()));
    let start = Instant::now();
    let got = aio::run({
        let finished = finished.clone();
        async move {
            aio::gather((0..5u64).map(|i| {
                let finished = finished.clone();
                async move {
                    // The last argument finishes first.
                    aio::sleep(ms(20 * (5 - i))).await;
                    finished.borrow_mut().push(i);
                    Ok(i * i)
                }
            }))
            .await
        }
    })
    .unwrap();
    assert_eq!(got, vec![0, 1, 4, 9, 16]);
    assert_eq!(*finished.borrow(), vec![4, 3, 2, 1, 0]);
    // The longest is 100 ms; one after another would be 300 ms.
    assert!(start.elapsed() < ms(250), "ran one after another");
}

#[test]
fn gather_of_nothing_is_an_empty_list() {
    let got: Vec<i32> =
        aio::run(aio::gather(Vec::<std::future::Ready<PyResult<i32>>>::new())).unwrap();
    assert!(got.is_empty());
}

#[test]
fn gather_raises_the_first_exception_in_time_and_the_others_keep_running() {
    let finished = Rc::new(Cell::new(false));
    let f = finished.clone();
    let start = Instant::now();
    let (err, raised_after) = aio::run(async move {
        let slow_ok = aio::spawn(async move {
            aio::sleep(ms(200)).await;
            f.set(true);
            Ok(0)
        });
        let late_error = aio::spawn(async {
            aio::sleep(ms(150)).await;
            Err(Exception::ValueError("late".into()))
        });
        let early_error = aio::spawn(async {
            aio::sleep(ms(10)).await;
            Err(Exception::KeyError("early".into()))
        });
        let err = aio::gather(vec![slow_ok, late_error, early_error])
            .await
            .unwrap_err();
        let raised_after = start.elapsed();
        // Python does not cancel the others when gather raises.
        aio::sleep(ms(250)).await;
        Ok((err, raised_after))
    })
    .unwrap();
    assert_eq!(err.line(), "KeyError: 'early'");
    assert!(raised_after < ms(150), "raised only at {raised_after:?}");
    assert!(finished.get(), "the slow awaitable was cancelled");
}

#[test]
fn gather_return_exceptions_gives_one_outcome_per_awaitable() {
    let got = aio::run(async {
        Ok(aio::gather_return_exceptions((0..4).map(|i| async move {
            aio::sleep(ms(5)).await;
            if i % 2 == 1 {
                Err(Exception::ValueError(format!("odd {i}")))
            } else {
                Ok(i)
            }
        }))
        .await)
    })
    .unwrap();
    let lines: Vec<String> = got
        .into_iter()
        .map(|o| match o {
            Ok(v) => v.to_string(),
            Err(e) => e.line(),
        })
        .collect();
    assert_eq!(lines, ["0", "ValueError: odd 1", "2", "ValueError: odd 3"]);
}

// --- wait_for -----------------------------------------------------------------

/// Sets a flag when dropped: shows that `wait_for` cancelled its awaitable.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn wait_for_raises_timeout_error_and_cancels_the_awaitable() {
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let start = Instant::now();
    let got = aio::run(aio::wait_for(
        async move {
            let _flag = DropFlag(d);
            aio::sleep(Duration::from_secs(30)).await;
            Ok("too late")
        },
        ms(50),
    ));
    let took = start.elapsed();
    let e = got.unwrap_err();
    assert!(e.is_instance(&TimeoutError), "{e:?}");
    // Python 3.11: `asyncio.TimeoutError is TimeoutError`, raised bare.
    assert_eq!(e.line(), "TimeoutError");
    assert!(took >= ms(50) && took < Duration::from_secs(5), "{took:?}");
    assert!(dropped.get());
    assert!(
        !event_loop::get_event_loop().has_work(),
        "the 30 s timer is left"
    );
}

#[test]
fn wait_for_returns_the_outcome_when_in_time() {
    let got = aio::run(aio::wait_for(
        async {
            aio::sleep(ms(5)).await;
            Ok(42)
        },
        Duration::from_secs(10),
    ));
    assert_eq!(got.unwrap(), 42);
    let got = aio::run(aio::wait_for(
        async { Err::<(), _>(Exception::ValueError("inner".into())) },
        Duration::from_secs(10),
    ));
    assert_eq!(got.unwrap_err().line(), "ValueError: inner");
}

// --- sockets ------------------------------------------------------------------

/// A port that refuses: bound, then closed.
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn connect_refused_is_connection_refused_error_with_asyncios_text() {
    let port = refused_port();
    let e = aio::run(TcpStream::connect(("127.0.0.1", port))).unwrap_err();
    assert!(e.is_instance(&ConnectionRefusedError), "{e:?}");
    assert_eq!(
        e.line(),
        format!("ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', {port})")
    );
    assert!(event_loop::selector().is_empty());
}

#[test]
fn connect_refused_reads_as_python_says_it() {
    // The same call in CPython's asyncio prints the same line.
    let port = refused_port();
    let script = format!(
        "import asyncio\n\
         async def main():\n\
         \x20   try:\n\
         \x20       await asyncio.open_connection('127.0.0.1', {port})\n\
         \x20   except OSError as e:\n\
         \x20       print(type(e).__name__ + ': ' + str(e))\n\
         asyncio.run(main())\n"
    );
    let out = Command::new("python3").args(["-c", &script]).output();
    let python = String::from_utf8(out.expect("python3 runs").stdout).unwrap();
    let rust = aio::run(async move { Ok(aio::open_connection("127.0.0.1", port).await.err()) })
        .unwrap()
        .expect("refused")
        .line();
    assert_eq!(python.trim_end(), rust);
}

/// A std::net server for one connection: reads the request head, then
/// sends `response` in `pieces` parts `pause` apart and closes. Returns the
/// port and a handle giving the request it read.
fn one_shot_server(
    response: Vec<u8>,
    pieces: usize,
    pause: Duration,
) -> (u16, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        let size = response.len().div_ceil(pieces);
        for piece in response.chunks(size) {
            thread::sleep(pause);
            conn.write_all(piece).unwrap();
        }
        request
    });
    (port, handle)
}

fn big_response() -> Vec<u8> {
    let body: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut r = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

#[test]
fn read_to_end_gets_a_whole_response_while_other_tasks_run() {
    let expected = big_response();
    let (port, server) = one_shot_server(expected.clone(), 5, ms(20));
    let (got, ticks) = aio::run(async move {
        let stop = Rc::new(Cell::new(false));
        let ticks = ticker(stop.clone());
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut got = Vec::new();
        let n = stream.read_to_end(&mut got).await?;
        assert_eq!(n, got.len());
        stop.set(true);
        Ok((got, ticks.await?))
    })
    .unwrap();
    assert_eq!(
        server.join().unwrap(),
        b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    );
    assert!(
        got == expected,
        "{} bytes, expected {}",
        got.len(),
        expected.len()
    );
    assert!(ticks > 0, "the loop was blocked while reading");
    // The response parses (status and body) as the stages parse it.
    let response = pyfiber::net::Response::parse(&got).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 300_000);
}

#[test]
fn streams_read_and_at_eof_like_asyncio() {
    let (port, server) = one_shot_server(b"hello, world".to_vec(), 2, ms(10));
    let (first, rest, eof_after) = aio::run(async move {
        let (mut reader, mut writer) = aio::open_connection("127.0.0.1", port).await?;
        writer.write(b"GET /x HTTP/1.0\r\n");
        writer.write(b"\r\n");
        writer.drain().await?;
        // reader.read(5): at most 5 bytes; reader.read(): the rest to EOF.
        let first = reader.read(5).await?;
        let rest = reader.read_all().await?;
        let eof_after = (reader.at_eof(), reader.read(10).await?.is_empty());
        writer.close();
        Ok((first, rest, eof_after))
    })
    .unwrap();
    assert_eq!(server.join().unwrap(), b"GET /x HTTP/1.0\r\n\r\n");
    assert!(!first.is_empty() && first.len() <= 5);
    assert_eq!([first, rest].concat(), b"hello, world");
    assert_eq!(eof_after, (true, true));
}

#[test]
fn write_all_waits_for_a_full_send_buffer_without_blocking_the_loop() {
    // 32 MiB is more than loopback's socket buffers hold while the server
    // is not reading, so write_all must wait for EVENT_WRITE.
    const SIZE: usize = 32 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        thread::sleep(ms(100));
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match conn.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    let ticks = aio::run(async move {
        let stop = Rc::new(Cell::new(false));
        let ticks = ticker(stop.clone());
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(&vec![7u8; SIZE]).await?;
        stream.shutdown(Shutdown::Write)?;
        stop.set(true);
        ticks.await
    })
    .unwrap();
    assert_eq!(server.join().unwrap(), SIZE);
    assert!(ticks > 0, "the loop was blocked while writing");
}

#[test]
fn two_readers_on_one_socket_is_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let e = aio::run(async move {
        let stream = Rc::new(TcpStream::connect(("127.0.0.1", port)).await?);
        let s = stream.clone();
        let first = aio::spawn(async move { s.recv(10).await });
        aio::sleep(ms(10)).await;
        let second = stream.recv(10).await.unwrap_err();
        first.cancel();
        Ok(second)
    })
    .unwrap();
    assert_eq!(e.name(), "RuntimeError");
    assert!(e.to_string().contains("already waiting for reading"), "{e}");
    drop(listener);
}

// --- examples/async_await.rs and its twin, end to end --------------------------

struct Run {
    stdout: String,
    success: bool,
}

fn run_rust(args: &[&str]) -> Run {
    let out = support::example("async_await")
        .args(["--format", "forcemain"])
        .args(args)
        .output()
        .expect("cargo runs");
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        success: out.status.success(),
    }
}

fn run_python(args: &[&str]) -> Run {
    let out = Command::new("python3")
        .arg(support::python_twin("async_await"))
        .args(["--format", "forcemain"])
        .args(args)
        .output()
        .expect("python3 runs");
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        success: out.status.success(),
    }
}

fn outcome_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("result: ") || l.starts_with("error: "))
        .collect()
}

/// The `"seconds"` of the `--json` line.
fn json_seconds(stdout: &str) -> f64 {
    let json = stdout.lines().last().expect("a --json line");
    assert!(json.contains("\"stage\": \"async_await\""), "{json}");
    let s = json.split("\"seconds\": ").nth(1).expect("seconds");
    s.split([',', '}']).next().unwrap().trim().parse().unwrap()
}

#[test]
fn example_fetches_every_url_concurrently_from_the_embedded_server() {
    const N: usize = 20;
    const DELAY: f64 = 0.2;
    let run = run_rust(&["--urls", "20", "--delay", "0.2", "--json"]);
    assert!(run.success, "{}", run.stdout);
    let lines = outcome_lines(&run.stdout);
    assert_eq!(lines.len(), N, "{}", run.stdout);
    for (i, line) in lines.iter().enumerate() {
        // result: http://127.0.0.1:PORT/s?wd=i i - pyfiber search
        let rest = line.strip_prefix("result: http://127.0.0.1:").expect(line);
        let (_port, rest) = rest.split_once('/').expect(line);
        assert_eq!(rest, format!("s?wd={i} {i} - pyfiber search"));
    }
    assert!(run
        .stdout
        .contains(&format!("Request Times: {N}, Total Cost: ")));
    let seconds = json_seconds(&run.stdout);
    assert!(
        seconds >= DELAY,
        "faster than the server's delay: {seconds}"
    );
    assert!(
        seconds < N as f64 * DELAY / 2.0,
        "not concurrent: {seconds} s for {N} URLs at {DELAY} s"
    );
}

#[test]
fn example_and_python_twin_print_the_same_lines() {
    let server = server::spawn(ServerConfig {
        delay: Duration::from_secs_f64(0.1),
        ..ServerConfig::default()
    })
    .unwrap();
    let template = server.url("/s?wd={}");
    let args = ["--urls", "8", "--url", template.as_str()];
    let (rust, python) = (run_rust(&args), run_python(&args));
    assert!(
        rust.success && python.success,
        "{}\n{}",
        rust.stdout,
        python.stdout
    );
    assert_eq!(outcome_lines(&rust.stdout).len(), 8);
    assert_eq!(outcome_lines(&rust.stdout), outcome_lines(&python.stdout));
    assert!(server.stop().requests >= 16);
}

#[test]
fn example_and_python_twin_fail_the_same_way() {
    // Refused: every URL gets asyncio's ConnectionRefusedError line.
    let port = refused_port();
    let template = format!("http://127.0.0.1:{port}/s?wd={{}}");
    let args = ["--urls", "3", "--url", template.as_str()];
    let (rust, python) = (run_rust(&args), run_python(&args));
    assert!(!rust.success && !python.success);
    let lines = outcome_lines(&rust.stdout);
    assert_eq!(lines.len(), 3);
    assert!(lines[0].ends_with(&format!(
        "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', {port})"
    )));
    assert_eq!(lines, outcome_lines(&python.stdout));

    // A server that never answers: every URL times out after --timeout.
    let server = server::spawn(ServerConfig {
        delay: ms(0),
        fault: Some(Fault::Stall),
        ..ServerConfig::default()
    })
    .unwrap();
    let template = server.url("/s?wd={}");
    let args = [
        "--urls",
        "3",
        "--timeout",
        "0.3",
        "--url",
        template.as_str(),
    ];
    let start = Instant::now();
    let rust = run_rust(&args);
    let python = run_python(&args);
    assert!(start.elapsed() >= ms(600));
    assert!(!rust.success && !python.success);
    let lines = outcome_lines(&rust.stdout);
    assert_eq!(lines.len(), 3, "{}", rust.stdout);
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(" TimeoutError: timed out")),
        "{lines:?}"
    );
    assert_eq!(lines, outcome_lines(&python.stdout));
    assert!(json_free(&rust.stdout).contains("Request Times: 3, Total Cost: "));
}

/// The output without `--json` has no JSON line.
fn json_free(stdout: &str) -> &str {
    assert!(!stdout.contains("\"stage\""));
    stdout
}

#[test]
fn a_generator_stage_future_can_be_awaited() {
    // async/await and the generator runtime share the loop: a pyfiber
    // Future settled by a loop timer wakes the task awaiting it.
    let f = pyfiber::Future::new();
    let setter = f.clone();
    event_loop::get_event_loop().call_later(ms(20), move || setter.set_result("chunk".into()));
    let start = Instant::now();
    let got = aio::run(aio::wrap_future(&f)).unwrap();
    assert_eq!(got, pyfiber::Value::from("chunk"));
    assert!(start.elapsed() >= ms(20));

    let failed = pyfiber::Future::new();
    let setter = failed.clone();
    event_loop::get_event_loop().call_later(ms(5), move || {
        setter.set_exception(Exception::ValueError("boom".into()))
    });
    let e = aio::run(aio::wrap_future(&failed)).unwrap_err();
    assert_eq!(e.line(), "ValueError: boom");
}
