//! `crawl`: the 500 Lines chapter's `crawl.py`, on pyfiber's generator
//! runtime.
//!
//! Why this exists: it is the command line of the crawler the tutorials lead
//! to. With no roots it starts the embedded slow server and crawls its tree
//! site, so it runs with no setup:
//!
//! ```text
//! cargo run --release --example crawl                      # 1111 pages, 1 s each, 100 tasks
//! cargo run --release --example crawl -- --max_tasks 1000 -q
//! cargo run --release --example crawl -- --max_tasks 1000 -q --python   # + the asyncio twin
//! cargo run --release --example crawl -- http://127.0.0.1:8000/ --json
//! ```
//!
//! `--python` runs `examples/python/crawl.py` (the stdlib asyncio twin)
//! against the same server right after, and prints both timings and whether
//! both crawls found the same URLs with the same outcomes.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use pyfiber::crawler::{self, Crawler, CrawlerOptions};
use pyfiber::net;
use pyfiber::server::{self, ServerConfig, ServerHandle};
use signal_hook::consts::{SIGINT, SIGTERM};

/// Web crawler (the 500 Lines chapter's crawl.py, on pyfiber generators).
#[derive(Parser, Debug)]
#[command(name = "crawl")]
struct Args {
    /// Root URL (may be repeated); `http://` is added when no scheme is
    /// given. None: crawl the embedded server's tree site.
    roots: Vec<String>,
    /// Limit redirection chains (for 301, 302 etc.).
    #[arg(long = "max_redirect", value_name = "N", default_value_t = 10)]
    max_redirect: usize,
    /// Limit retries on network errors.
    #[arg(long = "max_tries", value_name = "N", default_value_t = 4)]
    max_tries: usize,
    /// Limit concurrent connections.
    #[arg(long = "max_tasks", value_name = "N", default_value_t = 100)]
    max_tasks: usize,
    /// Limit connection pool size: the most connections open at once;
    /// workers past it wait their turn before connecting. Default: the
    /// --max_tasks value, so no worker waits (the chapter's Crawler pairs
    /// them, max_tasks=10 and max_pool=10).
    #[arg(long = "max_pool", value_name = "N")]
    max_pool: Option<usize>,
    /// Queue at most this many URLs in all (roots included); further links
    /// are counted, not followed.
    #[arg(long = "max_pages", value_name = "N", default_value_t = CrawlerOptions::default().max_pages)]
    max_pages: usize,
    /// Follow links at most this many hops from a root.
    #[arg(long = "max_depth", value_name = "N", default_value_t = CrawlerOptions::default().max_depth)]
    max_depth: usize,
    /// Exclude matching URLs.
    #[arg(long, value_name = "REGEX")]
    exclude: Option<String>,
    /// Strict host matching (default).
    #[arg(long, overrides_with = "lenient")]
    strict: bool,
    /// Lenient host matching.
    #[arg(long, overrides_with = "strict")]
    lenient: bool,
    /// Verbose logging (repeat for more verbose).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only log errors.
    #[arg(short, long)]
    quiet: bool,
    /// Seconds one request may take, connect to last byte (more than 0).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    timeout: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Embedded server (no roots): seconds before each answer.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    delay: f64,
    /// Embedded server: pages of the tree site.
    #[arg(long, value_name = "N", default_value_t = 1111)]
    pages: usize,
    /// Embedded server: links per page.
    #[arg(long, value_name = "N", default_value_t = 10)]
    fanout: usize,
    /// Then run the Python twin (examples/python/crawl.py) on the same
    /// roots, and compare.
    #[arg(long)]
    python: bool,
}

/// The flags checked before anything starts, with the stages' rules and
/// messages (examples/common): `--timeout` more than 0 and at most a day
/// (0 would fail every URL), `--delay` from 0 to 3600.
fn check(args: &Args) -> Result<(Duration, Duration), String> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 86400.0) {
        return Err(format!(
            "--timeout must be more than 0 and at most 86400 seconds, got {}",
            args.timeout
        ));
    }
    if !(args.delay.is_finite() && (0.0..=3600.0).contains(&args.delay)) {
        return Err(format!(
            "--delay must be between 0 and 3600 seconds, got {}",
            args.delay
        ));
    }
    if args.max_pool == Some(0) {
        return Err(
            "--max_pool must be at least 1: with no connection allowed, no URL could be fetched"
                .into(),
        );
    }
    Ok((
        Duration::from_secs_f64(args.timeout),
        Duration::from_secs_f64(args.delay),
    ))
}

/// The URL → outcome map of a text report (`url error ...`, `url 302
/// redirect ...`, `url 200 text/html ...`, anything else), to compare two
/// crawls whose per-page `new/total` counts depend on timing.
fn outcomes_of_report(report: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_body = false;
    for line in report.lines() {
        if line == "*** Report ***" {
            in_body = true;
            continue;
        }
        if line.starts_with("Finished ") {
            break;
        }
        if !in_body {
            continue;
        }
        let words: Vec<&str> = line.split(' ').collect();
        let outcome = match words.as_slice() {
            [_, "error", ..] => "error",
            [_, _, "redirect", ..] => "redirect",
            [_, _, "text/html", ..] => "html",
            _ => "other",
        };
        out.insert(words[0].to_string(), outcome.to_string());
    }
    out
}

/// Refuses a `--max_tasks` this machine cannot hold, before any task
/// starts: each task keeps a socket open (two with the embedded server,
/// whose end counts too) and a fiber stack mapped (`vm.max_map_count`
/// counts them: see `stack_pool::max_stacks`). Past either limit the crawl used to
/// fail thousands of URLs with EMFILE or MemoryError instead.
fn check_max_tasks(max_tasks: usize, embedded: bool) -> Result<(), String> {
    if max_tasks == 0 {
        return Err("--max_tasks must be at least 1".into());
    }
    let (soft, _) = net::nofile_limit();
    let per_task = if embedded { 2 } else { 1 };
    // stdin/out/err, the epoll fd, the server's listener and wake-up pair.
    let reserve = 32;
    let fds = max_tasks.saturating_mul(per_task).saturating_add(reserve);
    if (fds as u64) > soft {
        return Err(format!(
            "--max_tasks {max_tasks} needs {fds} open files ({per_task} per task{}, plus {reserve}), but the limit is {soft} (ulimit -n); use at most --max_tasks {}",
            if embedded { ": the crawler's socket and the embedded server's" } else { "" },
            (soft.saturating_sub(reserve as u64)) / per_task as u64
        ));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/sys/vm/max_map_count") {
        if let Ok(maps) = text.trim().parse::<usize>() {
            // Half the mappings for the stacks (two each with mprotect'ed
            // guards, one per 64 with guard markers), half for the program.
            let stacks = pyfiber::stack_pool::max_stacks(maps / 2);
            if max_tasks > stacks {
                return Err(format!(
                    "--max_tasks {max_tasks} needs {max_tasks} fiber stacks of {} KiB, but vm.max_map_count {maps} allows about {stacks}; use at most --max_tasks {stacks}",
                    pyfiber::stack_pool::STACK_SIZE / 1024
                ));
            }
        }
    }
    Ok(())
}

fn run(args: Args, timeout: Duration, delay: Duration) -> Result<ExitCode, String> {
    // Thousands of sockets at once (ours, and the embedded server's).
    net::raise_nofile_limit().map_err(|e| e.line())?;
    check_max_tasks(args.max_tasks, args.roots.is_empty())?;
    // Ctrl-C and SIGTERM set a flag that the crawl looks at; crawl.py's
    // `except KeyboardInterrupt: print('\nInterrupted\n')`, then the report.
    let interrupt = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, interrupt.clone())
            .map_err(|e| format!("cannot catch signal {signal}: {e}"))?;
    }

    let mut server: Option<ServerHandle> = None;
    let roots = if args.roots.is_empty() {
        let handle = server::spawn(ServerConfig {
            port: 0,
            delay,
            pages: args.pages,
            fanout: args.fanout,
            fault: None,
            ..ServerConfig::default()
        })
        .map_err(|e| format!("cannot start the embedded server: {}", e.line()))?;
        let root = handle.url("/");
        eprintln!(
            "crawling the embedded server's tree site at {root} ({} pages, fanout {}, delay {:.3} s)",
            args.pages,
            args.fanout,
            delay.as_secs_f64()
        );
        server = Some(handle);
        vec![root]
    } else {
        args.roots.clone()
    };

    let log_level = if args.quiet {
        0
    } else {
        2u8.saturating_add(args.verbose)
    };
    let options = CrawlerOptions {
        exclude: args.exclude.clone(),
        strict: !args.lenient,
        max_redirect: args.max_redirect,
        max_tries: args.max_tries,
        max_tasks: args.max_tasks,
        max_pool: args.max_pool,
        timeout,
        max_body: CrawlerOptions::default().max_body,
        log_level,
        progress: !args.json && std::io::stdout().is_terminal(),
        max_pages: args.max_pages,
        max_depth: args.max_depth,
        interrupt: Some(interrupt),
    };
    let crawler = Crawler::new(&roots, options).map_err(|e| e.line())?;
    let outcome = crawler.run();
    if crawler.interrupted() {
        // On stderr with --json, whose stdout is one JSON document.
        if args.json {
            eprintln!("\nInterrupted\n");
        } else {
            println!("\nInterrupted\n");
        }
    }

    let mut text = Vec::new();
    crawler::report(&crawler, &mut text).map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        crawler::report_json(&crawler, &mut stdout).map_err(|e| e.to_string())?;
    } else {
        stdout.write_all(&text).map_err(|e| e.to_string())?;
    }
    stdout.flush().map_err(|e| e.to_string())?;
    drop(stdout);
    if crawler.interrupted() {
        // 128 + SIGINT, as a shell reports a program Ctrl-C ended. The tasks
        // still in flight are left to the process exit.
        std::process::exit(130);
    }
    if crawler.limited() > 0 {
        eprintln!(
            "crawl: {} links not followed (--max_pages {}, --max_depth {})",
            crawler.limited(),
            args.max_pages,
            args.max_depth
        );
    }
    outcome.map_err(|e| format!("the crawl failed: {}", e.line()))?;
    crawler
        .check_outcomes()
        .map_err(|e| format!("broken promise: {}", e.line()))?;

    if args.python {
        let rust_secs = crawler.elapsed().as_secs_f64();
        let rust_outcomes = outcomes_of_report(&String::from_utf8_lossy(&text));
        compare_with_python(&args, &roots, rust_secs, &rust_outcomes)?;
    }
    if let Some(server) = server {
        let stats = server.stop();
        eprintln!(
            "server: {} requests, peak {} connections at once",
            stats.requests, stats.peak_concurrency
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the Python twin on the same roots with the same flags, and prints
/// both timings and whether the outcomes agree.
fn compare_with_python(
    args: &Args,
    roots: &[String],
    rust_secs: f64,
    rust_outcomes: &BTreeMap<String, String>,
) -> Result<(), String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/python/crawl.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(roots)
        .arg(format!("--max_redirect={}", args.max_redirect))
        .arg(format!("--max_tries={}", args.max_tries))
        .arg(format!("--max_tasks={}", args.max_tasks))
        .arg(format!("--timeout={}", args.timeout))
        .arg("-q");
    if let Some(max_pool) = args.max_pool {
        cmd.arg(format!("--max_pool={max_pool}"));
    }
    if let Some(exclude) = &args.exclude {
        cmd.arg(format!("--exclude={exclude}"));
    }
    if args.lenient {
        cmd.arg("--lenient");
    }
    let started = Instant::now();
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run python3 {}: {e}", script.display()))?;
    let wall = started.elapsed().as_secs_f64();
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the Python twin failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let py_secs = report
        .lines()
        .find_map(|l| l.strip_prefix("Finished "))
        .and_then(|l| l.split(" urls in ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or("the Python twin printed no `Finished N urls in S secs` line")?;
    let py_outcomes = outcomes_of_report(&report);
    println!();
    println!("*** Side by side (max_tasks={}) ***", args.max_tasks);
    println!(
        "rust   {:5} urls in {rust_secs:.3} secs",
        rust_outcomes.len()
    );
    println!(
        "python {:5} urls in {py_secs:.3} secs (process wall time {wall:.3} s)",
        py_outcomes.len()
    );
    if &py_outcomes == rust_outcomes {
        println!("same URLs, same outcomes");
        Ok(())
    } else {
        let differ: Vec<String> = rust_outcomes
            .keys()
            .chain(py_outcomes.keys())
            .filter(|u| rust_outcomes.get(*u) != py_outcomes.get(*u))
            .take(5)
            .map(|u| {
                format!(
                    "{u}: rust {:?}, python {:?}",
                    rust_outcomes.get(u),
                    py_outcomes.get(u)
                )
            })
            .collect();
        Err(format!(
            "the two crawls differ, e.g.\n  {}",
            differ.join("\n  ")
        ))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Bad input: exit 2 before anything has started, as clap and the
    // stages do; 1 is for a crawl that went wrong.
    let (timeout, delay) = match check(&args) {
        Ok(checked) => checked,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match run(args, timeout, delay) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("crawl: {message}");
            ExitCode::FAILURE
        }
    }
}
