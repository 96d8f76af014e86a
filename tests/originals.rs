//! The examples against the originals they follow: each fetch stage's
//! default output is what the yuchaoshui/notes file of the same name
//! prints, checked by running a Python program of that file's shape
//! (`tests/originals/yuchaoshui/NAME.py`, written for these tests; the
//! originals are not shipped) against the same server in the same test.
//!
//! The fixture's hard-coded `http://www.baidu.com/` is pointed at the
//! embedded server by rewriting that one string, so both sides print the
//! same URLs and the outputs can be compared byte for byte. (`ladder
//! --originals` runs them unmodified instead, through its startup hook;
//! that is tested at the end.)

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pyfiber::server::{self, ServerConfig, ServerHandle};

mod support;
use support::{example, root};

/// URLs per run: the originals' ten.
const N: usize = 10;

fn spawn_server(delay: f64) -> ServerHandle {
    server::spawn(ServerConfig {
        port: 0,
        delay: Duration::from_secs_f64(delay),
        ..ServerConfig::default()
    })
    .expect("server")
}

fn fixture(dir: &str, name: &str) -> PathBuf {
    root().join("tests/originals").join(dir).join(name)
}

/// A directory of its own under the system's temp dir, for one test.
fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pyfiber-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_ok(label: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{label} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Runs the yuchaoshui-shaped fixture `stage.py` against `server`, with its
/// `www.baidu.com` URLs rewritten to the server's address.
fn run_fixture(stage: &str, server: &ServerHandle) -> Output {
    let source = std::fs::read_to_string(fixture("yuchaoshui", &format!("{stage}.py")))
        .expect("fixture source");
    let base = server.url("/");
    assert!(source.contains("http://www.baidu.com/"), "{stage}.py");
    let pointed = source.replace("http://www.baidu.com/", &base);
    let dir = scratch(&format!("orig-{stage}"));
    let file = dir.join(format!("{stage}.py"));
    std::fs::write(&file, pointed).expect("write fixture");
    let out = Command::new("python3")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    check_ok(&format!("{stage}.py"), &out);
    out
}

/// Runs the Rust stage on the same `N` URLs, default output.
fn run_stage(stage: &str, server: &ServerHandle, extra: &[&str]) -> Output {
    let template = server.url("/s?wd={}");
    let out = example(stage)
        .args(["--urls", &N.to_string(), "--url", &template])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("example runs");
    check_ok(stage, &out);
    out
}

/// `[('u', 't'), ('u', 't')]` → its items, `('u', 't')` each.
fn list_items(line: &str) -> Vec<String> {
    let inner = line
        .strip_prefix("[(")
        .and_then(|l| l.strip_suffix(")]"))
        .unwrap_or_else(|| panic!("not a list of tuples: {line}"));
    inner.split("), (").map(|t| format!("({t})")).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// What every stage must have printed: each `/s?wd=K` with its title.
fn expected_items(server: &ServerHandle) -> Vec<String> {
    sorted(
        (0..N)
            .map(|k| {
                format!(
                    "('{}', '{k} - pyfiber search')",
                    server.url(&format!("/s?wd={k}"))
                )
            })
            .collect(),
    )
}

/// A list stage: one line, `print(results)`. One URL at a time
/// (`in_order`) gives the same bytes; the concurrent stages' lists are in
/// completion order, so they are compared as the same items in one list.
fn same_list(stage: &str, in_order: bool) {
    let server = spawn_server(0.2);
    let python = text(&run_fixture(stage, &server).stdout);
    let rust = text(&run_stage(stage, &server, &[]).stdout);
    assert_eq!(rust.lines().count(), 1, "{stage}: one line:\n{rust}");
    assert_eq!(python.lines().count(), 1, "{stage}.py: one line:\n{python}");
    if in_order {
        assert_eq!(rust, python, "{stage}: byte for byte");
    }
    let rust_items = list_items(rust.trim_end());
    let python_items = list_items(python.trim_end());
    assert_eq!(sorted(rust_items.clone()), sorted(python_items), "{stage}");
    assert_eq!(sorted(rust_items), expected_items(&server), "{stage}");
}

#[test]
fn sync_prints_what_sync_py_prints() {
    same_list("sync", true);
}

#[test]
fn no_blocking_prints_what_no_blocking_py_prints() {
    same_list("no_blocking", true);
}

#[test]
fn thread_prints_what_thread_py_prints() {
    same_list("thread", false);
}

#[test]
fn callback_prints_what_callback_py_prints() {
    same_list("callback", false);
}

#[test]
fn generator_prints_what_generator_py_prints() {
    same_list("generator", false);
}

#[test]
fn yield_from_prints_what_yield_from_py_prints() {
    same_list("yield_from", false);
    // --literal delegates differently, and prints the same.
    let server = spawn_server(0.05);
    let rust = text(&run_stage("yield_from", &server, &["--literal"]).stdout);
    assert_eq!(sorted(list_items(rust.trim_end())), expected_items(&server));
}

#[test]
fn process_prints_one_tuple_per_line_as_process_py_does() {
    let server = spawn_server(0.2);
    let python = text(&run_fixture("process", &server).stdout);
    let rust = text(&run_stage("process", &server, &[]).stdout);
    // Rust: exactly one tuple per line, each URL once.
    let lines = sorted(rust.lines().map(str::to_string).collect());
    assert_eq!(lines, expected_items(&server), "process:\n{rust}");
    // process.py's ten children share one stdout; when it is a pipe, their
    // buffered prints can interleave (`('a', 'b')('c', 'd')` on one line,
    // the newlines later), as seen here: on a terminal each is a line. So
    // the tuples are taken out wherever they are.
    let tuple = regex::Regex::new(r"\('[^']*', '[^']*'\)").unwrap();
    let found = sorted(
        tuple
            .find_iter(&python)
            .map(|m| m.as_str().to_string())
            .collect(),
    );
    assert_eq!(lines, found, "process.py printed:\n{python}");
}

#[test]
fn the_pools_default_to_the_originals_ten_workers() {
    // Ten URLs of 0.5 s each on ten workers: one round, as thread.py and
    // process.py do it (two workers would need five rounds, 2.5 s).
    let server = spawn_server(0.5);
    for stage in ["thread", "process"] {
        let started = std::time::Instant::now();
        run_stage(stage, &server, &[]);
        let seconds = started.elapsed().as_secs_f64();
        assert!(seconds >= 0.5, "{stage}: {seconds} s");
        assert!(seconds < 2.0, "{stage}: {seconds} s: not ten at once");
    }
}

#[test]
fn a_failed_url_keeps_stdout_the_originals_form() {
    // The originals would crash; here the error goes to stderr, the list
    // holds the rest, and the exit status says something failed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let template = format!("http://127.0.0.1:{port}/s?wd={{}}");
    for stage in ["sync", "generator", "process"] {
        let out = example(stage)
            .args(["--urls", "2", "--url", &template])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{stage}");
        let stdout = text(&out.stdout);
        let want = if stage == "process" { "" } else { "[]\n" };
        assert_eq!(stdout, want, "{stage}");
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.starts_with("error: ") && l.contains("ConnectionRefusedError"))
                .count(),
            2,
            "{stage}: {stderr}"
        );
    }
}

#[test]
fn the_other_formats_stay_available() {
    let server = spawn_server(0.05);
    let lines = text(&run_stage("generator", &server, &["--format", "lines"]).stdout);
    assert_eq!(lines.lines().count(), N, "{lines}");
    assert!(lines.lines().all(|l| l.starts_with("result: ")), "{lines}");
    let forcemain =
        text(&run_stage("generator", &server, &["--format", "forcemain", "--json"]).stdout);
    let last: Vec<&str> = forcemain.lines().rev().take(2).collect();
    assert!(
        last[0].starts_with("{\"stage\": \"generator\""),
        "{forcemain}"
    );
    assert!(
        last[1].starts_with(&format!("Request Times: {N}, Total Cost: ")),
        "{forcemain}"
    );
    // --json after the original's list.
    let json = text(&run_stage("sync", &server, &["--json"]).stdout);
    let json: Vec<&str> = json.lines().collect();
    assert_eq!(json.len(), 2, "{json:?}");
    assert!(json[0].starts_with("[("), "{json:?}");
    assert!(json[1].starts_with("{\"stage\": \"sync\""), "{json:?}");
}

/// Starts an echo server example on a free port; returns it and the port
/// its `Running on localhost:PORT (...)` line gives.
fn echo_server(name: &str, extra: &[&str]) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = example(name)
        .args(["--port", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("echo server");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .trim()
        .strip_prefix("Running on localhost:")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{name}: first line {first:?}"));
    (child, port)
}

fn typed(mut cmd: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn socket_client_prints_what_socket_client_py_prints() {
    for (server, extra) in [
        ("socket_server_sync", &[][..]),
        ("socket_server_async", &["--style", "callbacks"][..]),
    ] {
        let (mut child, port) = echo_server(server, extra);
        let source = std::fs::read_to_string(fixture("yuchaoshui", "socket_client.py")).unwrap();
        let dir = scratch("orig-client");
        let file = dir.join("socket_client.py");
        std::fs::write(&file, source.replace("8888", &port.to_string())).unwrap();
        let typing = "hello\nwo'rld\ncafé\n\n".as_bytes();
        let mut python = Command::new("python3");
        python.arg(&file);
        let python = typed(python, typing);
        let mut rust = example("socket_client");
        rust.args(["--port", &port.to_string()]);
        let rust = typed(rust, typing);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        check_ok("socket_client.py", &python);
        check_ok("socket_client", &rust);
        assert_eq!(
            text(&rust.stdout),
            text(&python.stdout),
            "{server}: byte for byte"
        );
        assert_eq!(
            text(&rust.stdout),
            ">b'hello'\n>b\"wo'rld\"\n>b'caf\\xc3\\xa9'\n>",
            "{server}"
        );
    }
}

// ------------------------------------------------ ladder --originals DIR

/// The `--json` lines of a ladder run, as key → raw value.
fn json_rows(stdout: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            value
                .as_object()
                .expect("a JSON object")
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .collect()
}

fn ladder_with_originals(dir: &std::path::Path, delay: f64) -> Output {
    let out = example("ladder")
        .args(["--no-build", "--json", "--delay", &delay.to_string()])
        .arg("--originals")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("ladder runs");
    check_ok("ladder --originals", &out);
    out
}

fn has_aiohttp() -> bool {
    Command::new("python3")
        .args(["-c", "import aiohttp"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn ladder_runs_yuchaoshuis_files_unmodified_beside_the_stages() {
    let delay = 0.2;
    let out = ladder_with_originals(&root().join("tests/originals/yuchaoshui"), delay);
    let rows = json_rows(&text(&out.stdout));
    let stages = support::STAGES;
    // Each stage's row, then its original's, in the ladder's order.
    let order: Vec<(String, bool)> = rows
        .iter()
        .map(|r| (r["stage"].clone(), r.contains_key("original")))
        .collect();
    let want: Vec<(String, bool)> = stages
        .iter()
        .flat_map(|s| [(s.to_string(), false), (s.to_string(), true)])
        .collect();
    assert_eq!(order, want, "{}", text(&out.stdout));
    for row in rows.iter().filter(|r| r.contains_key("original")) {
        let stage = row["stage"].as_str();
        assert_eq!(row["original"], "true", "{row:?}");
        if stage == "async_await" && !has_aiohttp() {
            // A missing package is a row saying so, not a crash.
            assert!(row["error"].contains("aiohttp"), "{row:?}");
            assert_eq!(row["same_output"], "null", "{row:?}");
            continue;
        }
        // The server answered all ten: the redirect of www.baidu.com:80 works.
        assert_eq!(row["requests"], "10", "{row:?}");
        assert_eq!(row["ok"], "10", "{row:?}");
        assert_eq!(row["same_output"], "true", "{row:?}");
        let seconds: f64 = row["seconds"].parse().unwrap();
        // One URL after another cannot beat ten delays; the rest wait once.
        let floor = if matches!(stage, "sync" | "no_blocking") {
            10.0 * delay
        } else {
            delay
        };
        assert!(seconds >= floor, "{stage}.py: {seconds} s < {floor} s");
    }
}

#[test]
fn ladder_runs_dengljs_files_and_compares_their_count() {
    let out = ladder_with_originals(&root().join("tests/originals/denglj"), 0.1);
    let rows = json_rows(&text(&out.stdout));
    let originals: Vec<_> = rows.iter().filter(|r| r.contains_key("original")).collect();
    let names: Vec<&str> = originals.iter().map(|r| r["stage"].as_str()).collect();
    assert_eq!(
        names,
        ["blocking", "generator", "aio"],
        "{}",
        text(&out.stdout)
    );
    // blocking.py prints 10, the thread stage's ok count.
    assert_eq!(originals[0]["requests"], "10");
    assert_eq!(originals[0]["same_output"], "true");
    // generator.py prints only its time: nothing to compare, but its ten
    // fetches of example.com reached the server.
    assert_eq!(originals[1]["requests"], "10");
    assert_eq!(originals[1]["same_output"], "null");
    if !has_aiohttp() {
        assert!(
            originals[2]["error"].contains("aiohttp"),
            "{:?}",
            originals[2]
        );
    }
}

#[test]
fn a_different_output_is_reported_as_different() {
    // A sync.py whose parse keeps the wrong part of the page.
    let dir = scratch("orig-different");
    let source = std::fs::read_to_string(fixture("yuchaoshui", "sync.py")).unwrap();
    let changed = source.replace("r'<title>(.*)</title>'", "r'<p>(.*)</p>'");
    assert_ne!(changed, source);
    std::fs::write(dir.join("sync.py"), changed).unwrap();
    let out = example("ladder")
        .args([
            "--no-build",
            "--json",
            "--delay",
            "0.01",
            "--stages",
            "sync",
        ])
        .arg("--originals")
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    check_ok("ladder", &out);
    let rows = json_rows(&text(&out.stdout));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1]["stage"], "sync");
    assert_eq!(rows[1]["ok"], "10");
    assert_eq!(rows[1]["same_output"], "false", "{rows:?}");
}

#[test]
fn ladder_refuses_what_it_cannot_compare() {
    let cases: [(&[&str], &str); 3] = [
        (&["--originals", "/nonexistent-dir"], "not a directory"),
        (&["--originals", "/", "--urls", "5"], "leave --urls at 10"),
        (&["--originals", "/tmp"], "none of the originals is there"),
    ];
    for (args, message) in cases {
        let out = example("ladder")
            .arg("--no-build")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
