//! A newcomer's first ten minutes, each rough edge they hit pinned by a
//! test: negative numbers reach the range message, bad input exits 2 in
//! every example, `--help` describes the example, an unresolvable host is
//! named, yield_to_from speaks English on request, the README and NOTES
//! lead where they say.

use std::process::{Output, Stdio};

mod support;
use support::{example, root};

fn run(name: &str, args: &[&str]) -> Output {
    example(name)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot start the example")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The fetch stages, the ladder and the crawler: every example that takes
/// `--delay` and `--timeout`.
fn take_timeout() -> impl Iterator<Item = &'static str> {
    support::STAGES.into_iter().chain(["ladder", "crawl"])
}

/// Checks a refusal: exit status 2, the message on stderr, nothing else
/// clap would say instead.
fn refused(name: &str, args: &[&str], message: &str) {
    let output = run(name, args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {err}");
    assert!(err.contains(message), "{name} {args:?}: {err}");
    assert!(
        !err.contains("unexpected argument"),
        "{name} {args:?}: {err}"
    );
}

#[test]
fn negative_numbers_get_the_range_message() {
    for name in take_timeout() {
        refused(
            name,
            &["--delay", "-1"],
            "--delay must be between 0 and 3600 seconds, got -1",
        );
        refused(
            name,
            &["--timeout", "-1"],
            "--timeout must be more than 0 and at most 86400 seconds, got -1",
        );
        if name != "crawl" {
            refused(name, &["--urls", "-1"], "--urls must be at least 1, got -1");
            refused(name, &["--urls", "0"], "--urls must be at least 1, got 0");
        }
    }
}

#[test]
fn a_zero_timeout_is_bad_input_everywhere() {
    for name in take_timeout() {
        refused(
            name,
            &["--timeout", "0"],
            "--timeout must be more than 0 and at most 86400 seconds, got 0",
        );
    }
}

#[test]
fn help_describes_the_example_not_the_shared_flags() {
    for (name, about) in [
        ("process", "process.py: fetch on a pool of worker processes"),
        ("thread", "thread.py: fetch on a pool of worker threads"),
        (
            "yield_from",
            "yield_from.py: fetch with connect/read/read_all",
        ),
        ("sync", "Fetch N URLs from the slow server"),
    ] {
        for flag in ["--help", "-h"] {
            let output = run(name, &[flag]);
            let out = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{name} {flag}");
            assert!(out.starts_with(about), "{name} {flag}:\n{out}");
            assert!(!out.contains("flatten"), "{name} {flag}:\n{out}");
        }
    }
}

#[test]
fn an_unresolvable_host_is_named() {
    for name in ["sync", "generator"] {
        let output = run(
            name,
            &[
                "--urls",
                "1",
                "--url",
                "http://no-such-host.invalid/s?wd={}",
            ],
        );
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("cannot resolve host \"no-such-host.invalid\""),
            "{name}: {err}"
        );
    }
}

#[test]
fn yield_to_from_speaks_english_on_request() {
    let chinese = run("yield_to_from", &[]);
    let english = run("yield_to_from", &["--english"]);
    assert!(chinese.status.success() && english.status.success());
    let (zh, en) = (
        String::from_utf8_lossy(&chinese.stdout).into_owned(),
        String::from_utf8_lossy(&english.stdout).into_owned(),
    );
    let is_cjk = |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c);
    assert!(
        zh.chars().any(is_cjk),
        "the default is the tutorial's Chinese"
    );
    assert!(!en.chars().any(is_cjk), "{en}");
    // The same walkthrough: as many lines, the same values at their ends.
    let (zh, en): (Vec<&str>, Vec<&str>) = (zh.lines().collect(), en.lines().collect());
    assert_eq!(zh.len(), en.len());
    for (a, b) in zh.iter().zip(&en) {
        if a.chars().any(is_cjk) {
            // `label: value`: the value is the same (but the result, which
            // is a phrase itself).
            let value = |l: &str| l.rsplit_once(": ").map(|(_, v)| v.to_string());
            if !a.contains("result") {
                assert_eq!(value(a), value(b), "{a:?} / {b:?}");
            }
        } else {
            assert_eq!(a, b);
        }
    }
    assert!(en.contains(&"start sub-generator"), "{en:?}");
}

/// The GitHub anchor of a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn notes_sections_are_links_that_resolve() {
    let notes = std::fs::read_to_string(root().join("NOTES.md")).unwrap();
    let anchors: Vec<String> = notes
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(anchor)
        .collect();
    let sections = notes
        .split("## Sections")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Sections list");
    let links: Vec<&str> = sections
        .split("](#")
        .skip(1)
        .map(|s| s.split(')').next().unwrap())
        .collect();
    assert!(links.len() >= 8, "{sections}");
    for link in &links {
        assert!(
            anchors.iter().any(|a| a == link),
            "#{link} is not a heading"
        );
    }
    // Every top-level section is listed.
    for heading in notes.lines().filter_map(|l| l.strip_prefix("## ")) {
        if heading != "Sections" {
            assert!(
                links.contains(&anchor(heading).as_str()),
                "{heading} not listed"
            );
        }
    }
}

#[test]
fn readme_opens_with_the_two_commands_then_what_you_will_see_and_the_series() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // First the two commands (run the main example; run the tests), then
    // what you will see.
    let lines: Vec<&str> = readme.lines().collect();
    assert_eq!(lines[2], "```sh", "{readme}");
    assert!(lines[3].starts_with("cargo run --release --example ladder "));
    assert!(lines[4].starts_with("cargo test "));
    assert_eq!(lines[5], "```");
    let opening: String = lines[6..24].join("\n");
    for link in [
        "https://github.com/yuchaoshui/notes",
        "https://github.com/aosabook/500lines",
        "https://github.com/denglj/aiotutorial",
    ] {
        assert!(
            opening.contains(link),
            "the opening does not link {link}:\n{opening}"
        );
    }
    assert!(opening.contains("first build"), "{opening}");
}

#[test]
fn echo_servers_do_not_print_a_url_curl_would_fail_on() {
    use std::io::{BufRead, Read, Write};
    for name in ["socket_server_sync", "socket_server_async"] {
        let mut child = example(name)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.contains("http://"), "{name}: {first}");
        // What it says to try works: a plain TCP round trip.
        let port: u16 = first
            .strip_prefix("Running on localhost:")
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {first}"));
        assert!(first.contains(&format!("nc localhost {port}")), "{first}");
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.write_all(b"hello").unwrap();
        let mut echoed = [0u8; 5];
        sock.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"hello");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Ctrl-C in the middle of a stage whose output goes to a pipe: the lines
/// printed before it are all there (they sat in the pipe buffer, which died
/// with the process before), and the exit status is 130. Issue 13, item 8.
#[test]
fn ctrl_c_keeps_what_a_stage_printed_to_a_pipe() {
    use std::io::Read;
    use std::time::Duration;
    let mut child = example("sync")
        .args(["--urls", "20", "--delay", "0.3", "--format", "lines"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Sync answers one URL per 0.3 s: by 1.5 s at least one has been
    // printed (four, on an idle machine), and 20 need 6 s.
    std::thread::sleep(Duration::from_millis(1500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT failed");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "exit status after SIGINT; stdout:\n{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        !lines.is_empty() && lines.len() < 20,
        "expected some but not all 20 results before Ctrl-C, got {}:\n{out}",
        lines.len()
    );
    for line in &lines {
        assert!(
            line.starts_with("result: "),
            "a whole result line: {line:?}"
        );
    }
}

/// A stage whose stdout is a pipe, read the way `| head -1` reads it: how
/// long the first line took from the start, then the reader goes away.
/// Returns (first line, seconds to it, seconds from the close to the
/// stage's end, its exit status, its stderr).
fn read_first_line_then_close(
    mut cmd: std::process::Command,
) -> (String, f64, f64, std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Read};
    use std::time::Instant;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the stage");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let to_first = started.elapsed().as_secs_f64();
    drop(stdout); // `head` has its line and exits
    let closed = Instant::now();
    let status = child.wait().unwrap();
    let to_end = closed.elapsed().as_secs_f64();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (first, to_first, to_end, status, err)
}

/// Issue 13, item 8, the second half: `stage | head`. A stage buffers its
/// lines for a pipe, but writes them out within 50 ms, so the first line
/// reaches the reader long before the run would end (it used to wait for
/// the end, or for 64 KiB of lines); and once the reader has gone, the
/// stage's next write ends it at once and quietly, as a coreutils tool dies
/// of SIGPIPE (the shell's 141), with no panic and no traceback.
///
/// sync, blocking: 20 URLs answered 0.3 s apart, 6 s in all; the first line
/// comes at 0.3 s, the next write after the close at 0.6 s, and that write
/// ends it. The event-loop stages: `/flaky/K/NAME` with K = 1.. is closed at
/// once (an error line each, at once) and K = 0 answers after 6 s, so the
/// first line comes at once; their next write after the close is the last
/// URL's line at 6 s, and that one ends them (killed by SIGPIPE, not exit 1
/// as when the write's failure was ignored).
#[test]
fn a_piped_stage_shows_its_lines_promptly_and_stops_when_the_reader_goes() {
    use pyfiber::server::{self, ServerConfig};
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;
    let server = server::spawn(ServerConfig {
        port: 0,
        delay: Duration::from_secs(6),
        ..ServerConfig::default()
    })
    .unwrap();
    let sync_args = ["--urls", "20", "--delay", "0.3", "--format", "lines"];
    let mut runs: Vec<(String, bool, std::process::Command)> = Vec::new();
    // (async_await.py reports every URL after asyncio.gather, in order: its
    // first line comes at the end by design.)
    for (name, twin_too) in [("sync", true), ("generator", true), ("async_await", false)] {
        for python in [false, true].into_iter().filter(|&p| !p || twin_too) {
            let mut cmd = if python {
                let mut cmd = std::process::Command::new("python3");
                cmd.arg(support::python_twin(name));
                cmd
            } else {
                example(name)
            };
            let label = if python {
                format!("{name}.py")
            } else {
                name.to_string()
            };
            if name == "sync" {
                cmd.args(sync_args);
            } else {
                // A path of its own per run: the server counts requests per path.
                let template = server.url(&format!("/flaky/{{}}/{}", label.replace('.', "-")));
                cmd.args(["--urls", "40", "--url", &template, "--format", "lines"]);
            }
            runs.push((label, name == "sync", cmd));
        }
    }
    // --trace prints from the library as it goes: a closed pipe used to
    // panic there ("failed printing to stdout"); now tracing stops and the
    // stage ends at its next line.
    for python in [false, true] {
        let mut cmd = if python {
            let mut cmd = std::process::Command::new("python3");
            cmd.arg(support::python_twin("generator"));
            cmd
        } else {
            example("generator")
        };
        let label = format!("generator{} --trace", if python { ".py" } else { "" });
        let template = server.url(&format!("/flaky/{{}}/trace-{python}"));
        cmd.args([
            "--urls", "40", "--url", &template, "--format", "lines", "--trace",
        ]);
        runs.push((label, false, cmd));
    }
    for (label, writes_after_the_close, cmd) in runs {
        let (first, to_first, to_end, status, err) = read_first_line_then_close(cmd);
        assert!(
            ["result: ", "error: ", "trace: "]
                .iter()
                .any(|p| first.starts_with(p)),
            "{label}: first line {first:?}; stderr:\n{err}"
        );
        // The run takes 6 s; its first line is due after 0.3 s (sync) or at
        // once (the others).
        assert!(
            to_first < 3.0,
            "{label}: the first line took {to_first:.2} s of a 6 s run"
        );
        assert!(
            !writes_after_the_close || to_end < 3.0,
            "{label}: still running {to_end:.2} s after the reader went away"
        );
        assert!(
            status.signal() == Some(13) || status.code() == Some(141),
            "{label}: expected the end of a tool killed by SIGPIPE, got {status}; stderr:\n{err}"
        );
        for noise in ["panicked", "Traceback", "BrokenPipe", "Broken pipe"] {
            assert!(!err.contains(noise), "{label}: stderr says {noise}:\n{err}");
        }
    }
}
