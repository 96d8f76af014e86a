//! `ladder`: every stage of the tutorials, sync → async/await, against one
//! server, in one table.
//!
//! Why this exists: each stage's example prints its own
//! `Request Times: N, Total Cost: S seconds`; the point of the tutorials is
//! the comparison. This runs the eight stage examples one after another,
//! each as a child process, all fetching the same N URLs from ONE embedded
//! slow server started here (each child gets `--url`), and prints the
//! stage, the Python file it mirrors, the requests, the successes, the
//! seconds and the speed-up over `sync`. `--python` also runs each Python
//! twin (`examples/python/<stage>.py`) against the same server in the same
//! run, and adds its time and the Rust/Python ratio.
//!
//! ```text
//! cargo run --release --example ladder                  # 10 URLs, 1 s each
//! cargo run --release --example ladder -- --urls 20 --delay 0.5 --python
//! ```
//!
//! `--originals DIR` also runs a learner's own checkout of the originals
//! (yuchaoshui/notes `Python异步并发/`, or denglj/aiotutorial `part_1/`),
//! unmodified, against the same server: each becomes a row under the stage
//! it is the original of, with its seconds, its ok count and whether its
//! output is the Rust stage's (see `examples/originals/mod.rs`).
//!
//! ```text
//! git clone https://github.com/yuchaoshui/notes
//! cargo run --release --example ladder -- --originals 'notes/Python异步并发'
//! ```
//!
//! `process` and `thread` run with `--workers` workers (default 10, the
//! originals'; `--workers cpu` for `cpu_count()`); the table says so under
//! it.
//!
//! `cargo run --example ladder` builds only this example, so the ladder
//! first builds the stage examples itself (`cargo build --example sync ...`
//! with the same profile) and then runs them from the directory it runs
//! from (`target/<profile>/examples/`). `--no-build` skips that step.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use pyfiber::net;
use pyfiber::server::{self, ServerConfig};
use pyfiber::timeline::{self, Request, StageTimeline};

#[path = "originals/mod.rs"]
mod originals;

/// The stages, in the tutorials' order: the example's name, which is also
/// the Python file's stem.
const STAGES: [&str; 8] = [
    "sync",
    "process",
    "thread",
    "no_blocking",
    "callback",
    "generator",
    "yield_from",
    "async_await",
];

#[derive(Parser, Debug)]
#[command(
    about = "Run all eight stages (sync → async/await) against one slow server and compare their times"
)]
struct Cli {
    /// How many URLs each stage fetches.
    #[arg(long = "urls", value_name = "N", default_value_t = 10,
          allow_negative_numbers = true, value_parser = parse_urls)]
    urls: usize,
    /// Seconds the server waits before each answer.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    delay: f64,
    /// Print one JSON object per stage per line instead of the table.
    #[arg(long)]
    json: bool,
    /// Also run the Python twins (examples/python/<stage>.py) against the
    /// same server, adding their time and the Rust/Python ratio.
    #[arg(long)]
    python: bool,
    /// Per-request timeout passed to every stage, in seconds.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    timeout: f64,
    /// Use another server (e.g. `slow_server` in its own process) instead of
    /// starting one here: `{}` is replaced by 0..N-1, e.g.
    /// 'http://127.0.0.1:5000/s?wd={}'. `--delay` is then the other
    /// server's business.
    #[arg(long, value_name = "TEMPLATE")]
    url: Option<String>,
    /// Only these stages (comma-separated), e.g. `--stages sync,generator`.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    stages: Vec<String>,
    /// Do not build the stage examples first; run what is already built.
    #[arg(long)]
    no_build: bool,
    /// Pool size of `process` and `thread`: a number (the originals' 10) or
    /// `cpu` (forcemain's `cpu_count()`).
    #[arg(long, value_name = "N|cpu", default_value = "10")]
    workers: String,
    /// Also run the originals in DIR (a checkout of yuchaoshui/notes
    /// `Python异步并发/` or denglj/aiotutorial `part_1/`), unmodified, with
    /// python3, their hosts redirected to this server: one row each.
    #[arg(long, value_name = "DIR")]
    originals: Option<PathBuf>,
    /// Also draw every stage's requests as bars on one time axis into FILE,
    /// an SVG (one band per stage, labelled with its file and its time).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Also write FILE, one HTML page: the table, the picture, and one
    /// stage's trace (generator, 3 URLs) drawn as the chain.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// `--urls N`: a whole number, at least 1, as the stages take it.
fn parse_urls(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("--urls is too large: {n}")),
        Ok(n) => Err(format!("--urls must be at least 1, got {n}")),
        Err(_) => Err(format!("--urls must be a whole number, got {s:?}")),
    }
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2);
}

/// What one run of one stage reported (its `--json` line), and the first
/// error it printed.
#[derive(Clone, Debug, Default)]
struct Run {
    requests: usize,
    ok: usize,
    errors: usize,
    seconds: f64,
    /// Each request's instants (the stages' `"timeline"`; the Python twins
    /// print none).
    timeline: Vec<Request>,
    /// The first `error: <url> <Name: message>` line, if any.
    first_error: Option<String>,
}

impl Run {
    /// Every URL got a result: only then is a time comparable.
    fn complete(&self, urls: usize) -> bool {
        self.ok == urls && self.errors == 0
    }
}

/// One stage's line of the table: its name, the Rust run, the Python run
/// (with `--python`). `Err` says why a run has no figures.
type Row<'a> = (
    &'a str,
    Result<Run, String>,
    Option<Result<Run, String>>,
    Vec<originals::Row>,
);

/// Reads a stage's `--json` line out of its stdout:
/// `{"stage": "sync", "requests": 10, ..., "timeline": [{"started": ...}, ...]}`.
fn parse_run(stdout: &str) -> Option<Run> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{') && l.contains("\"stage\""))?;
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let count = |key: &str| json.get(key)?.as_u64().map(|n| n as usize);
    let instant = |r: &serde_json::Value, key: &str| r.get(key).and_then(serde_json::Value::as_f64);
    let timeline = json
        .get("timeline")
        .and_then(serde_json::Value::as_array)
        .map(|requests| {
            requests
                .iter()
                .map(|r| Request {
                    started: instant(r, "started"),
                    connected: instant(r, "connected"),
                    first_byte: instant(r, "first_byte"),
                    finished: instant(r, "finished"),
                    ok: r
                        .get("ok")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Run {
        requests: count("requests")?,
        ok: count("ok")?,
        errors: count("errors")?,
        seconds: json.get("seconds")?.as_f64()?,
        timeline,
        first_error: None,
    })
}

/// The first `error: ...` line of a run's output (the stages print them on
/// stderr in the originals' output form, on stdout in the others).
fn first_error(stdout: &str, stderr: &str) -> Option<String> {
    stdout
        .lines()
        .chain(stderr.lines())
        .find(|l| l.starts_with("error: "))
        .map(str::to_string)
}

/// Runs one stage (a built example, or `python3 <file>`) and reads its
/// result, and returns what it printed; `Err` says what went wrong.
fn run_stage(mut command: Command, label: &str) -> Result<(Run, String), String> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{label}: cannot start: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match parse_run(&stdout) {
        Some(mut run) => {
            run.first_error = first_error(&stdout, &stderr);
            Ok((run, stdout.into_owned()))
        }
        None => {
            let status = match output.status.code() {
                Some(code) => format!("exit status {code}"),
                None => output.status.to_string(),
            };
            let last = stderr.lines().last().unwrap_or("(nothing on stderr)");
            Err(format!("{label}: no --json line ({status}): {last}"))
        }
    }
}

/// The directory the stage binaries are built into: the one this binary
/// runs from (`target/<profile>/examples/`).
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(format!("current_exe: {e}")));
    exe.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| fail("cannot tell where this binary lives"))
}

/// Builds the stage examples with the profile this binary was built with.
fn build_stages(stages: &[&str], dir: &Path) {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = dir
        .parent()
        .and_then(Path::file_name)
        .and_then(|p| p.to_str())
        .unwrap_or("debug");
    let mut args: Vec<String> = vec!["build".into(), "--quiet".into()];
    match profile {
        "debug" => {}
        "release" => args.push("--release".into()),
        other => args.extend(["--profile".into(), other.to_string()]),
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // A stage whose source is not in this checkout cannot be built.
    let buildable: Vec<&&str> = stages
        .iter()
        .filter(|stage| manifest_dir.join(format!("examples/{stage}.rs")).exists())
        .collect();
    eprintln!(
        "ladder: building the stages ({cargo} {} --example NAME; what cargo built before is reused)",
        args.join(" ")
    );
    // One stage at a time, so the wait says what it is waiting for: the
    // first one also builds the library, the others only link.
    for (k, stage) in buildable.iter().enumerate() {
        let started = Instant::now();
        eprint!(
            "ladder: building {stage} ({}/{}) ...",
            k + 1,
            buildable.len()
        );
        let _ = std::io::stderr().flush();
        let status = Command::new(&cargo)
            .args(&args)
            .args(["--example", stage])
            .arg("--manifest-path")
            .arg(manifest_dir.join("Cargo.toml"))
            .status();
        match status {
            Ok(s) if s.success() => eprintln!(" {:.1} s", started.elapsed().as_secs_f64()),
            Ok(s) => eprintln!(" the build failed ({s}); running what is built"),
            Err(e) => eprintln!(" cannot run cargo ({e}); running what is built"),
        }
    }
}

/// The HTML page's trace: the generator stage run on 3 URLs of the same
/// server with `--trace --svg`; its chain picture and its trace lines, or
/// why there are none.
fn trace_chain(dir: &Path, template: &str, timeout: f64) -> Result<(String, String), String> {
    let exe = dir.join("generator");
    if !exe.exists() {
        return Err(format!("generator is not built ({})", exe.display()));
    }
    let file =
        std::env::temp_dir().join(format!("pyfiber-ladder-{}-chain.svg", std::process::id()));
    let output = Command::new(&exe)
        .args([
            "--urls", "3", "--trace", "--format", "lines", "--url", template,
        ])
        .arg("--timeout")
        .arg(timeout.to_string())
        .arg("--svg")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start generator: {e}"))?;
    let svg = std::fs::read_to_string(&file);
    let _ = std::fs::remove_file(&file);
    let svg = svg.map_err(|e| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        format!("generator --trace --svg: {e}: {}", stderr.trim())
    })?;
    Ok((svg, String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// `&`, `<`, `>` and `"` as HTML entities.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `--html`: one page with the table, the timeline picture and the
/// generator stage's trace (its chain picture and its lines).
fn html_page(
    rows: &[Row],
    urls: usize,
    picture: &str,
    chain: &Result<(String, String), String>,
) -> String {
    let mut table = String::from(
        "<table>\n<tr><th>stage</th><th>mirrors</th><th>requests</th><th>ok</th><th>errors</th><th>seconds</th><th>first error</th></tr>\n",
    );
    for (stage, rust, _, _) in rows {
        let cells = match rust {
            Ok(r) => format!(
                "<td>{}</td><td>{}</td><td>{}</td><td>{:.6}</td><td>{}</td>",
                r.requests,
                r.ok,
                r.errors,
                r.seconds,
                escape(r.first_error.as_deref().unwrap_or(""))
            ),
            Err(e) => format!("<td colspan=\"4\">failed</td><td>{}</td>", escape(e)),
        };
        table.push_str(&format!(
            "<tr><td>{stage}</td><td>{stage}.py</td>{cells}</tr>\n"
        ));
    }
    table.push_str("</table>\n");
    let trace = match chain {
        Ok((svg, lines)) => {
            let lines: String = lines
                .lines()
                .filter(|l| l.starts_with("trace: ") || l.starts_with("result: "))
                .map(|l| format!("{}\n", escape(l)))
                .collect();
            format!("<div class=\"picture\">{svg}</div>\n<pre>{lines}</pre>\n")
        }
        Err(e) => format!("<p>No trace: {}</p>\n", escape(e)),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>pyfiber ladder</title>\n\
         <style>body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }} \
         td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }} \
         td:first-child, td:nth-child(2), td:last-child {{ text-align: left; }} pre {{ background: #f6f6f6; padding: 1em; }}</style>\n\
         </head>\n<body>\n<h1>The ladder: {urls} URLs, sync → async/await</h1>\n{table}\
         <h2>Every request of every stage</h2>\n<div class=\"picture\">{picture}</div>\n\
         <h2>One stage's trace: generator.py, 3 URLs</h2>\n{trace}</body>\n</html>\n"
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.urls == 0 {
        fail("--urls must be at least 1");
    }
    if !(cli.delay.is_finite() && (0.0..=3600.0).contains(&cli.delay)) {
        fail(format!(
            "--delay must be between 0 and 3600 seconds, got {}",
            cli.delay
        ));
    }
    // The stages' own rule (examples/common): a timeout they would refuse
    // is refused here, before eight of them fail one after another.
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout <= 86400.0) {
        fail(format!(
            "--timeout must be more than 0 and at most 86400 seconds, got {}",
            cli.timeout
        ));
    }
    let workers = match cli.workers.as_str() {
        "cpu" => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => n,
            _ => fail(format!(
                "--workers: expected a number of workers from 1 to 1024, or cpu, got {n:?}"
            )),
        },
    };
    let originals = match &cli.originals {
        Some(dir) => {
            if cli.urls != 10 {
                fail("--originals: the originals fetch 10 URLs each; leave --urls at 10");
            }
            if cli.url.is_some() {
                fail("--originals: the originals' hosts are redirected to the ladder's own server; leave out --url");
            }
            originals::find(dir).unwrap_or_else(|e| fail(e))
        }
        None => Vec::new(),
    };
    let stages: Vec<&str> = if cli.stages.is_empty() {
        STAGES.to_vec()
    } else {
        cli.stages
            .iter()
            .map(|s| {
                STAGES.iter().copied().find(|k| k == s).unwrap_or_else(|| {
                    fail(format!(
                        "--stages: unknown stage {s:?} (the stages: {})",
                        STAGES.join(", ")
                    ))
                })
            })
            .collect()
    };

    let dir = examples_dir();
    if !cli.no_build {
        build_stages(&stages, &dir);
    }
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python");
    if (cli.python || !originals.is_empty())
        && Command::new("python3")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
    {
        fail("--python and --originals need python3 on PATH");
    }

    // This process hosts the server (unless --url): one socket per
    // connection the running stage has open, N at most. Each child checks
    // its own needs.
    let (soft, _) = net::raise_nofile_limit().unwrap_or_else(|_| net::nofile_limit());
    if cli.url.is_none() && cli.urls as u64 + 64 > soft {
        fail(format!(
            "--urls {} needs about {} open files here, but the limit is {soft}; \
             run slow_server in another process and pass --url",
            cli.urls,
            cli.urls + 64
        ));
    }
    let server = match &cli.url {
        Some(template) => {
            if !template.contains("{}") {
                fail(format!(
                    "--url {template:?} has no {{}} to replace with 0..N-1"
                ));
            }
            None
        }
        None => Some(
            server::spawn(ServerConfig {
                port: 0,
                delay: Duration::from_secs_f64(cli.delay),
                ..ServerConfig::default()
            })
            .unwrap_or_else(|e| fail(format!("cannot start the server: {}", e.line()))),
        ),
    };
    let template = match (&server, &cli.url) {
        (Some(server), _) => server.url("/s?wd={}"),
        (None, Some(template)) => template.clone(),
        (None, None) => unreachable!("a server or a --url"),
    };
    let stage_args = |cmd: &mut Command, stage: &str| {
        cmd.arg("--urls")
            .arg(cli.urls.to_string())
            .arg("--url")
            .arg(&template)
            .arg("--timeout")
            .arg(cli.timeout.to_string())
            .arg("--json");
        if matches!(stage, "process" | "thread") {
            cmd.arg("--workers").arg(workers.to_string());
        }
    };
    let hook =
        (!originals.is_empty()).then(|| originals::Hook::install().unwrap_or_else(|e| fail(e)));
    let by_stage = originals::by_stage(&originals);
    // An original must not hang the ladder: ten fetches one after another,
    // with room to spare.
    let original_limit = Duration::from_secs_f64(30.0 + 20.0 * cli.delay);
    if !cli.json {
        match &server {
            Some(server) => eprintln!(
                "ladder: {} URLs, {} s per answer, server {}",
                cli.urls,
                cli.delay,
                server.url("/")
            ),
            None => eprintln!("ladder: {} URLs from {template}", cli.urls),
        }
    }

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for stage in &stages {
        let exe = dir.join(stage);
        let rust = if exe.exists() {
            let mut cmd = Command::new(&exe);
            stage_args(&mut cmd, stage);
            run_stage(cmd, stage)
        } else {
            Err(format!(
                "{stage}: not built ({} is missing; build it with: cargo build --release --example {stage})",
                exe.display()
            ))
        };
        let python = cli.python.then(|| {
            let file = python_dir.join(format!("{stage}.py"));
            if !file.exists() {
                return Err(format!("{stage}.py: not in {}", python_dir.display()));
            }
            let mut cmd = Command::new("python3");
            cmd.arg(&file);
            stage_args(&mut cmd, stage);
            run_stage(cmd, &format!("{stage}.py")).map(|(run, _)| run)
        });
        let mut original_rows = Vec::new();
        if let (Some(hook), Some(server)) = (&hook, &server) {
            let address = server.addr().to_string();
            let served = || Some(server.stats().requests);
            let rust_out = rust
                .as_ref()
                .ok()
                .map(|(run, out)| (out.as_str(), run.ok as u64));
            for original in by_stage.get(stage).into_iter().flatten() {
                if !cli.json {
                    eprintln!("ladder: running {}", original.file.display());
                }
                original_rows.push(originals::run(
                    hook,
                    original,
                    &address,
                    original_limit,
                    &served,
                    rust_out,
                ));
            }
        }
        if !cli.json {
            eprintln!("ladder: {stage} done");
        }
        rows.push((stage, rust.map(|(run, _)| run), python, original_rows));
    }

    let sync_seconds = rows
        .iter()
        .find(|(s, _, _, _)| *s == "sync")
        .and_then(|(_, r, _, _)| r.as_ref().ok())
        .filter(|r| r.complete(cli.urls))
        .map(|r| r.seconds);
    let mut all_ok = true;
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    if !cli.json {
        let _ = write!(
            out,
            "{:<12} {:<15} {:>8} {:>6} {:>6} {:>11} {:>9}",
            "stage", "mirrors", "requests", "ok", "errors", "seconds", "speed-up"
        );
        if cli.python {
            let _ = write!(out, " {:>11} {:>12}", "python (s)", "rust/python");
        }
        let _ = writeln!(out);
    }
    for (stage, rust, python, original_rows) in &rows {
        let mirrors = format!("{stage}.py");
        // A time is comparable only when every URL got a result.
        let speedup = match (&rust, sync_seconds) {
            (Ok(r), Some(s)) if r.seconds > 0.0 && r.complete(cli.urls) => Some(s / r.seconds),
            _ => None,
        };
        if let Err(e) = rust {
            problems.push(e.clone());
        }
        if let Some(Err(e)) = python {
            problems.push(e.clone());
        }
        for row in original_rows {
            if let Some(e) = &row.error {
                problems.push(format!("{}.py: {e}", row.stem));
            }
        }
        let python_seconds = python
            .as_ref()
            .and_then(|p| p.as_ref().ok())
            .map(|p| p.seconds);
        let ratio = match (&rust, python_seconds) {
            (Ok(r), Some(p)) if p > 0.0 => Some(r.seconds / p),
            _ => None,
        };
        match rust {
            Ok(r) if r.ok != cli.urls => all_ok = false,
            Err(_) => all_ok = false,
            _ => {}
        }
        if cli.json {
            let mut line = format!("{{\"stage\": \"{stage}\", \"mirrors\": \"{mirrors}\"");
            match rust {
                Ok(r) => {
                    line.push_str(&format!(
                        ", \"requests\": {}, \"ok\": {}, \"errors\": {}, \"seconds\": {:.6}",
                        r.requests, r.ok, r.errors, r.seconds
                    ));
                    if let Some(e) = &r.first_error {
                        let e = serde_json::Value::from(e.as_str());
                        line.push_str(&format!(", \"first_error\": {e}"));
                    }
                    let timeline: Vec<String> = r.timeline.iter().map(Request::to_json).collect();
                    line.push_str(&format!(", \"timeline\": [{}]", timeline.join(", ")));
                }
                Err(_) => line.push_str(&format!(
                    ", \"requests\": {}, \"ok\": 0, \"errors\": null, \"seconds\": null",
                    cli.urls
                )),
            }
            if let Some(s) = speedup {
                line.push_str(&format!(", \"speedup\": {s:.3}"));
            }
            if matches!(*stage, "process" | "thread") {
                line.push_str(&format!(", \"workers\": {workers}"));
            }
            if cli.python {
                match python_seconds {
                    Some(p) => line.push_str(&format!(", \"python_seconds\": {p:.6}")),
                    None => line.push_str(", \"python_seconds\": null"),
                }
                if let Some(ratio) = ratio {
                    line.push_str(&format!(", \"rust_python_ratio\": {ratio:.3}"));
                }
            }
            line.push('}');
            let _ = writeln!(out, "{line}");
            for row in original_rows {
                let _ = writeln!(out, "{}", originals::json(row));
            }
        } else {
            let (requests, ok, errors, seconds) = match rust {
                Ok(r) => (
                    r.requests.to_string(),
                    r.ok.to_string(),
                    r.errors.to_string(),
                    format!("{:.6}", r.seconds),
                ),
                Err(_) => ("-".into(), "-".into(), "-".into(), "failed".into()),
            };
            let speedup = speedup.map_or("-".to_string(), |s| format!("{s:.1}x"));
            let _ = write!(
                out,
                "{stage:<12} {mirrors:<15} {requests:>8} {ok:>6} {errors:>6} {seconds:>11} {speedup:>9}"
            );
            if cli.python {
                let p = python_seconds.map_or("-".to_string(), |p| format!("{p:.6}"));
                let r = ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
                let _ = write!(out, " {p:>11} {r:>12}");
            }
            let _ = writeln!(out);
            // Why a stage failed, under its row: the first error it printed,
            // or why it has no figures at all.
            match rust {
                Ok(r) => {
                    if let Some(e) = &r.first_error {
                        let _ = writeln!(out, "{:<12} first of {} errors: {e}", "", r.errors);
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "{:<12} {e}", "");
                }
            }
            for row in original_rows {
                let name = format!("{}.py", row.stem);
                let num = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                let seconds = row.seconds.map_or("-".to_string(), |s| format!("{s:.6}"));
                let same = match (row.same_output, &row.error) {
                    (_, Some(e)) => e.clone(),
                    (Some(true), None) => "same output".to_string(),
                    (Some(false), None) => "DIFFERENT output".to_string(),
                    (None, None) => "(prints no count to compare)".to_string(),
                };
                let _ = writeln!(
                    out,
                    "{:<12} {name:<15} {:>8} {:>6} {:>6} {seconds:>11}  {same}",
                    "  original",
                    num(row.requests),
                    num(row.ok),
                    "-"
                );
            }
        }
    }
    if !cli.json && stages.iter().any(|s| matches!(*s, "process" | "thread")) {
        let _ = writeln!(
            out,
            "(process and thread: {workers} workers{}; --workers N or --workers cpu to change)",
            if cli.workers == "10" {
                ", as in the originals"
            } else {
                ""
            }
        );
    }
    // The lesson is a shape: every stage's requests on one time axis.
    let timelines: Vec<StageTimeline> = rows
        .iter()
        .filter_map(|(stage, rust, _, _)| {
            let r = rust.as_ref().ok()?;
            Some(StageTimeline {
                stage: stage.to_string(),
                mirrors: format!("{stage}.py"),
                seconds: r.seconds,
                requests: r.timeline.clone(),
            })
        })
        .collect();
    if !cli.json && !timelines.is_empty() {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(80)
            .saturating_sub(20)
            .clamp(20, 160);
        let _ = writeln!(out);
        let _ = write!(out, "{}", timeline::terminal(&timelines, width, colour));
    }
    drop(out);
    let picture = (cli.svg.is_some() || cli.html.is_some())
        .then(|| timeline::svg(&timelines).unwrap_or_else(|e| fail(format!("--svg: {e}"))));
    if let (Some(path), Some(picture)) = (&cli.svg, &picture) {
        std::fs::write(path, picture)
            .unwrap_or_else(|e| fail(format!("--svg {}: {e}", path.display())));
        eprintln!("ladder: wrote {}", path.display());
    }
    if let (Some(path), Some(picture)) = (&cli.html, &picture) {
        let chain = trace_chain(&dir, &template, cli.timeout);
        let page = html_page(&rows, cli.urls, picture, &chain);
        std::fs::write(path, page)
            .unwrap_or_else(|e| fail(format!("--html {}: {e}", path.display())));
        eprintln!("ladder: wrote {}", path.display());
    }
    for p in &problems {
        eprintln!("ladder: {p}");
    }
    if let Some(server) = server {
        let stats = server.stop();
        if !cli.json {
            eprintln!(
                "ladder: {:.1} s in all; the server answered {} requests, at most {} at once",
                started.elapsed().as_secs_f64(),
                stats.requests,
                stats.peak_concurrency
            );
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
