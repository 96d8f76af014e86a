//! `compare`: pyfiber's event-loop stages beside their peers, in one run.
//!
//! Starts the slow server in a process of its own (`slow_server --port 0`),
//! then runs each contender against it in turns, `--runs` rounds, the order
//! rotated every round so none always goes first on a warm or cold machine,
//! and prints each run, then the median/min/max per contender and the
//! ratios taken round by round (a ratio from one round compares two runs a
//! few seconds apart, so it holds when the machine's speed drifts).
//!
//! ```text
//! cargo build --release --example generator --example crawl --example slow_server
//! cargo build --release -p pyfiber-peers
//! target/release/compare urls --urls 5000 --runs 7    # generator, tokio, Python twin
//! target/release/compare crawl --runs 5               # crawl, Python crawl.py
//! ```
//!
//! - `urls`: `examples/generator` (pyfiber's generator stage), `tokio_client`
//!   (a tokio current-thread runtime over raw TCP) and
//!   `examples/python/generator.py` (the Python twin), each fetching N URLs
//!   at `--delay` s; the figure is the `seconds` of each one's JSON line.
//! - `crawl`: `examples/crawl` and `examples/python/crawl.py` (asyncio)
//!   crawling the server's 1,111-page tree with `--max_tasks`; the figure is
//!   each one's `Finished N urls in S secs`, and N must be the site's size.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use pyfiber_peers::median;

#[derive(Parser)]
#[command(about = "pyfiber's generator stage and crawler beside tokio and CPython, in one run")]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// Rounds; each runs every contender once.
    #[arg(long, default_value_t = 5, global = true)]
    runs: usize,
    /// Seconds the server waits before each answer.
    #[arg(long, default_value_t = 1.0, global = true)]
    delay: f64,
    /// Seconds to pause between two runs (lets the loopback's TIME_WAIT
    /// sockets and the other processes settle).
    #[arg(long, default_value_t = 1.0, global = true)]
    pause: f64,
}

#[derive(Subcommand)]
enum What {
    /// N URLs: the generator example, the tokio client, the Python twin.
    Urls {
        #[arg(long, default_value_t = 5000)]
        urls: usize,
    },
    /// The 1,111-page tree: the crawl example and Python's crawl.py.
    Crawl {
        #[arg(long = "max_tasks", default_value_t = 1000)]
        max_tasks: usize,
        /// Pages in the server's tree site.
        #[arg(long, default_value_t = 1111)]
        pages: usize,
    },
}

/// How one run's output becomes its seconds.
type Figure = Box<dyn Fn(&str) -> Result<f64, String>>;

/// One contender: a name and the command that runs it once.
struct Contender {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

/// The directory this binary was built into (`target/release`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("exe dir").to_path_buf()
}

/// The repository root (for `examples/python/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("peers/ has a parent")
        .to_path_buf()
}

fn need(path: PathBuf) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is not built: cargo build --release --example generator --example crawl \
             --example slow_server && cargo build --release -p pyfiber-peers",
            path.display()
        ))
    }
}

/// The slow server in its own process; it stops when its stdin closes.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(delay: f64, pages: usize) -> Result<Server, String> {
        let program = need(target_dir().join("examples/slow_server"))?;
        let mut child = Command::new(program)
            .args(["--port", "0", "--stop-on-eof", "--delay"])
            .arg(delay.to_string())
            .args(["--pages", &pages.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start slow_server: {e}"))?;
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        // Keep reading what it says (its closing `served N requests` line),
        // so it never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        // `Running on http://127.0.0.1:PORT/ (delay S s)`
        let url = line
            .split_whitespace()
            .nth(2)
            .filter(|u| u.starts_with("http://"))
            .ok_or_else(|| format!("slow_server said {line:?}"))?
            .to_string();
        Ok(Server { child, url })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: the server stops by itself
        let _ = self.child.wait();
    }
}

/// Runs one contender; returns its seconds, or why it has none.
fn run_once(c: &Contender, figure: &dyn Fn(&str) -> Result<f64, String>) -> Result<f64, String> {
    let out = Command::new(&c.program)
        .args(&c.args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", c.program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    figure(&text).map_err(|e| {
        format!(
            "{}: {e} (exit {:?}; stderr: {})",
            c.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// The `seconds` of a stage's JSON line, which must report no errors.
fn stage_seconds(text: &str) -> Result<f64, String> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"stage\""))
        .ok_or("no JSON line")?;
    let field = |name: &str| -> Option<f64> {
        let rest = line.split(&format!("\"{name}\": ")).nth(1)?;
        rest.split([',', '}']).next()?.trim().parse().ok()
    };
    let errors = field("errors").ok_or("no errors field")?;
    if errors != 0.0 {
        return Err(format!("{errors} errors: {line}"));
    }
    field("seconds").ok_or_else(|| format!("no seconds field: {line}"))
}

/// `Finished N urls in S secs`: S, after checking N against the site.
fn crawl_seconds(text: &str, pages: usize) -> Result<f64, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("Finished "))
        .ok_or("no Finished line")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let n: usize = words.get(1).and_then(|w| w.parse().ok()).ok_or(line)?;
    if n != pages {
        return Err(format!("crawled {n} pages, the site has {pages}: {line}"));
    }
    words
        .get(4)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| line.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    // The children inherit a raised open-file limit (5,000 sockets each).
    pyfiber::net::raise_nofile_limit().map_err(|e| e.line())?;
    let dir = target_dir();
    let py = repo_root().join("examples/python");
    let (server, contenders, figure): (Server, Vec<Contender>, Figure);
    match cli.what {
        What::Urls { urls } => {
            server = Server::start(cli.delay, 1111)?;
            let template = format!("{}s?wd={{}}", server.url);
            let common = vec![
                "--urls".to_string(),
                urls.to_string(),
                "--url".into(),
                template,
                "--json".into(),
            ];
            contenders = vec![
                Contender {
                    name: "pyfiber generator",
                    program: need(dir.join("examples/generator"))?,
                    args: common.clone(),
                },
                Contender {
                    name: "tokio current-thread",
                    program: need(dir.join("tokio_client"))?,
                    args: common.clone(),
                },
                Contender {
                    name: "python generator.py",
                    program: PathBuf::from("python3"),
                    args: [vec![py.join("generator.py").display().to_string()], common].concat(),
                },
            ];
            figure = Box::new(stage_seconds);
            println!(
                "{urls} URLs at {} s, server {} in its own process",
                cli.delay, server.url
            );
        }
        What::Crawl {
            max_tasks,
            pages: p,
        } => {
            server = Server::start(cli.delay, p)?;
            let common = vec![
                server.url.clone(),
                "--max_tasks".into(),
                max_tasks.to_string(),
                "-q".into(),
            ];
            contenders = vec![
                Contender {
                    name: "pyfiber crawl",
                    program: need(dir.join("examples/crawl"))?,
                    args: common.clone(),
                },
                Contender {
                    name: "python crawl.py (asyncio)",
                    program: PathBuf::from("python3"),
                    args: [vec![py.join("crawl.py").display().to_string()], common].concat(),
                },
            ];
            figure = Box::new(move |text| crawl_seconds(text, p));
            println!(
                "crawl of {p} pages, max_tasks {max_tasks}, {} s delay (floor {} s), server {} in its own process",
                cli.delay,
                4.0 * cli.delay,
                server.url
            );
        }
    }
    let k = contenders.len();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); k];
    for round in 0..cli.runs {
        let mut line = format!("round {}:", round + 1);
        let mut this = vec![f64::NAN; k];
        for j in 0..k {
            let i = (round + j) % k;
            std::thread::sleep(Duration::from_secs_f64(cli.pause));
            let c = &contenders[i];
            this[i] = run_once(c, &*figure)?;
        }
        for (i, c) in contenders.iter().enumerate() {
            times[i].push(this[i]);
            line.push_str(&format!("  {} {:.3} s", c.name, this[i]));
        }
        println!("{line}");
    }
    drop(server);
    println!(
        "\n{:<28} {:>8} {:>8} {:>8}   ratio to the first, per round: median (min-max)",
        "contender (wall s)", "median", "min", "max"
    );
    for (i, c) in contenders.iter().enumerate() {
        let t = &times[i];
        let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = t.iter().copied().fold(0.0, f64::max);
        let ratio = if i == 0 {
            String::new()
        } else {
            let r: Vec<f64> = times[0].iter().zip(t).map(|(a, b)| a / b).collect();
            let (rlo, rhi) = (
                r.iter().copied().fold(f64::INFINITY, f64::min),
                r.iter().copied().fold(0.0, f64::max),
            );
            format!(
                "{} / this: {:.3} ({:.3}-{:.3})",
                contenders[0].name,
                median(&r),
                rlo,
                rhi
            )
        };
        println!(
            "{:<28} {:>8.3} {:>8.3} {:>8.3}   {}",
            c.name,
            median(t),
            lo,
            hi,
            ratio
        );
    }
    Ok(())
}
