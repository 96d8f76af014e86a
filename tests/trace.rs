//! `--trace`, Rust against Python: for one URL, the generator and
//! yield_from stages print the same steps (selector register/unregister,
//! select returning, set_result, Task.step sending, the yielded futures,
//! the task finishing) as their Python twins, line for line, once fd numbers
//! and ports are normalised.
//!
//! Both sides fetch from the same server, started here, so the bytes they
//! receive (and so the `repr` of each chunk in the trace) are the same.
//! Nothing is hard-coded: the expected trace is what `python3` prints.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pyfiber::server::{self, ServerConfig};
use regex::Regex;

mod support;
use support::examples_dir;

fn output_of(mut cmd: Command) -> String {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .expect("cannot start the example");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{out}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// fd numbers and ports differ between two processes; the timing line
/// differs between any two runs.
fn normalise(trace: &str) -> String {
    let fd = Regex::new(r"fd=\d+").unwrap();
    let port = Regex::new(r"127\.0\.0\.1:\d+").unwrap();
    let cost = Regex::new(r"Total Cost: [0-9.]+ seconds").unwrap();
    let t = fd.replace_all(trace, "fd=N");
    let t = port.replace_all(&t, "127.0.0.1:PORT");
    cost.replace_all(&t, "Total Cost: S seconds").into_owned()
}

/// Runs the Rust stage and its Python twin on one URL with `--trace` and
/// asserts the traces match line for line. Returns the (normalised) trace.
fn same_trace(stage: &str, rust_extra: &[&str]) -> String {
    let server = server::spawn(ServerConfig {
        port: 0,
        delay: Duration::from_millis(50),
        ..ServerConfig::default()
    })
    .expect("server");
    let template = server.url("/s?wd={}");
    let args = [
        "--urls",
        "1",
        "--url",
        template.as_str(),
        "--trace",
        "--format",
        "forcemain",
    ];

    let mut rust = Command::new(examples_dir().join(stage));
    rust.args(args).args(rust_extra);
    let rust = normalise(&output_of(rust));

    let mut python = Command::new("python3");
    python
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/python/{stage}.py")))
        .args(args);
    let python = normalise(&output_of(python));

    let r: Vec<&str> = rust.lines().collect();
    let p: Vec<&str> = python.lines().collect();
    for (i, (a, b)) in r.iter().zip(&p).enumerate() {
        assert_eq!(
            a,
            b,
            "{stage}: line {} differs\n--- rust\n{rust}\n--- python\n{python}",
            i + 1
        );
    }
    assert_eq!(
        r.len(),
        p.len(),
        "{stage}: lengths differ\n--- rust\n{rust}\n--- python\n{python}"
    );
    rust
}

/// The steps the tutorials narrate, in order, must all be there.
fn assert_narrates_the_chain(trace: &str) {
    let steps = [
        "trace: Task-1.step send None",
        "trace: register fd=N EVENT_WRITE",
        "trace: Task-1 yielded Future-",
        "trace: select -> [fd=N]",
        "trace: set_result Future-",
        "trace: unregister fd=N",
        "trace: register fd=N EVENT_READ",
        "trace: set_result Future-5 b''",
        "trace: Task-1.step send b''",
        "result: http://127.0.0.1:PORT/s?wd=0 0 - pyfiber search",
        "trace: Task-1 done: StopIteration(None)",
        "Request Times: 1, Total Cost: S seconds",
    ];
    let mut at = 0;
    for step in steps {
        match trace[at..].find(step) {
            Some(i) => at += i + step.len(),
            None => panic!("missing (or out of order) {step:?} in\n{trace}"),
        }
    }
    // The chunk the loop read is what Task.step sent into the coroutine.
    assert!(
        trace.contains("trace: Task-1.step send b'HTTP/1.0 200 OK"),
        "{trace}"
    );
}

#[test]
fn generator_trace_matches_python() {
    let trace = same_trace("generator", &[]);
    assert_narrates_the_chain(&trace);
}

#[test]
fn yield_from_trace_matches_python() {
    let trace = same_trace("yield_from", &[]);
    assert_narrates_the_chain(&trace);
}

#[test]
fn yield_from_literal_trace_matches_python() {
    // PEP 380's generator objects and Future.__iter__ take no step of their
    // own in the trace: the Task sees the same futures either way.
    let trace = same_trace("yield_from", &["--literal"]);
    assert_narrates_the_chain(&trace);
}

#[test]
fn callback_trace_matches_python() {
    let trace = same_trace("callback", &[]);
    for step in [
        "trace: register fd=N EVENT_WRITE",
        "trace: register fd=N EVENT_READ",
        "trace: unregister fd=N",
    ] {
        assert!(trace.contains(step), "{step:?} in\n{trace}");
    }
    assert!(!trace.contains("Task-"), "no tasks in the callback stage");
}
