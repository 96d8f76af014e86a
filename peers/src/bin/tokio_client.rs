//! `tokio_client`: N concurrent fetches the way a Rust user would write
//! them: a tokio current-thread runtime (one thread, like pyfiber's loop),
//! one task per URL, raw TCP (`connect`, `write_all` the tutorials'
//! HTTP/1.0 request, `read_to_end`). Each response then gets what the
//! stages do with theirs (parse it, decode the body, find `<title>`, with
//! pyfiber's own `net` functions) and a `result: URL TITLE` line, so the
//! comparison is of the waiting, not of the work.
//!
//! It prints the stages' last line and, with `--json`, their JSON line, so
//! `compare` reads it like the generator example's:
//!
//! ```text
//! target/release/tokio_client --urls 5000 --url 'http://127.0.0.1:5400/s?wd={}' --json
//! ```

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "N concurrent HTTP/1.0 GETs on a tokio current-thread runtime")]
struct Args {
    /// How many URLs: `{}` in --url is replaced by 0..N-1.
    #[arg(long, default_value_t = 10)]
    urls: usize,
    /// The URL template, e.g. 'http://127.0.0.1:5400/s?wd={}'.
    #[arg(long)]
    url: String,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// End with the stages' JSON line.
    #[arg(long)]
    json: bool,
    /// Also print, on stderr, when the requests reached each moment
    /// (started, connected, first byte, finished: seconds from the start,
    /// min/p10/p50/p90/max), the moments the stages' `--json` timeline
    /// records, so the phases of the two clients can be set side by side.
    #[arg(long)]
    phases: bool,
}

/// Seconds since the clock started at each of a request's moments.
type Moments = [f64; 4];

/// `http://HOST:PORT/PATH` → (`HOST:PORT`, `/PATH`).
fn split(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    Ok((host.to_string(), path.to_string()))
}

/// What the stages print for a response: its `<title>` (or `None`).
fn title_of(raw: &[u8]) -> Result<String, String> {
    let response = pyfiber::net::Response::parse(raw).map_err(|e| e.line())?;
    let html = response.text().map_err(|e| e.line())?;
    Ok(pyfiber::net::title(&html).unwrap_or_else(|| "None".to_string()))
}

async fn fetch(
    addr: SocketAddr,
    request: String,
    start: Instant,
) -> std::io::Result<(Vec<u8>, Moments)> {
    let started = start.elapsed().as_secs_f64();
    let mut sock = TcpStream::connect(addr).await?;
    let connected = start.elapsed().as_secs_f64();
    sock.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    sock.readable().await?;
    let first_byte = start.elapsed().as_secs_f64();
    sock.read_to_end(&mut response).await?;
    let finished = start.elapsed().as_secs_f64();
    Ok((response, [started, connected, first_byte, finished]))
}

/// `--phases`: each moment's spread over the requests that finished.
fn print_phases(moments: &[Moments]) {
    if moments.is_empty() {
        return;
    }
    for (k, name) in ["started", "connected", "first_byte", "finished"]
        .iter()
        .enumerate()
    {
        let mut v: Vec<f64> = moments.iter().map(|m| m[k]).collect();
        v.sort_by(f64::total_cmp);
        let at = |q: usize| v[(v.len() - 1) * q / 100];
        eprintln!(
            "{name:<10} min {:.3} p10 {:.3} p50 {:.3} p90 {:.3} max {:.3}",
            at(0),
            at(10),
            at(50),
            at(90),
            at(100)
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut jobs = Vec::with_capacity(args.urls);
    for i in 0..args.urls {
        let url = args.url.replace("{}", &i.to_string());
        let (host, path) = match split(&url) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let addr = match host.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            _ => {
                eprintln!("error: cannot resolve {host}");
                return ExitCode::from(2);
            }
        };
        let hostname = host.split(':').next().unwrap_or(&host).to_string();
        jobs.push((
            url,
            addr,
            format!("GET {path} HTTP/1.0\r\nHost: {hostname}\r\n\r\n"),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime");
    let timeout = Duration::from_secs_f64(args.timeout);
    let start = Instant::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (ok, errors, moments) = rt.block_on(async {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(url, addr, req)| {
                tokio::spawn(async move {
                    let got = tokio::time::timeout(timeout, fetch(addr, req, start)).await;
                    let (title, moments) = match got {
                        Ok(Ok((raw, moments))) => (title_of(&raw), Some(moments)),
                        Ok(Err(e)) => (Err(e.to_string()), None),
                        Err(_) => (Err("TimeoutError: timed out".to_string()), None),
                    };
                    (url, title, moments)
                })
            })
            .collect();
        let (mut ok, mut errors, mut moments) = (0usize, 0usize, Vec::new());
        for h in handles {
            match h.await {
                Ok((url, Ok(title), m)) => {
                    ok += 1;
                    moments.extend(m);
                    let _ = writeln!(out, "result: {url} {title}");
                }
                Ok((url, Err(e), _)) => {
                    errors += 1;
                    let _ = writeln!(out, "error: {url} {e}");
                }
                Err(e) => {
                    errors += 1;
                    let _ = writeln!(out, "error: task {e}");
                }
            }
        }
        (ok, errors, moments)
    });
    let seconds = start.elapsed().as_secs_f64();
    if args.phases {
        print_phases(&moments);
    }
    let n = args.urls;
    let _ = writeln!(out, "Request Times: {n}, Total Cost: {seconds:.6} seconds");
    if args.json {
        let _ = writeln!(
            out,
            "{{\"stage\": \"tokio\", \"requests\": {n}, \"ok\": {ok}, \"errors\": {errors}, \"seconds\": {seconds:.6}}}"
        );
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
