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
}

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

async fn fetch(addr: SocketAddr, request: String) -> std::io::Result<Vec<u8>> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    sock.read_to_end(&mut response).await?;
    Ok(response)
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
    let (ok, errors) = rt.block_on(async {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(url, addr, req)| {
                tokio::spawn(async move {
                    let got = tokio::time::timeout(timeout, fetch(addr, req)).await;
                    let title = match got {
                        Ok(Ok(raw)) => title_of(&raw),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("TimeoutError: timed out".to_string()),
                    };
                    (url, title)
                })
            })
            .collect();
        let (mut ok, mut errors) = (0usize, 0usize);
        for h in handles {
            match h.await {
                Ok((url, Ok(title))) => {
                    ok += 1;
                    let _ = writeln!(out, "result: {url} {title}");
                }
                Ok((url, Err(e))) => {
                    errors += 1;
                    let _ = writeln!(out, "error: {url} {e}");
                }
                Err(e) => {
                    errors += 1;
                    let _ = writeln!(out, "error: task {e}");
                }
            }
        }
        (ok, errors)
    });
    let seconds = start.elapsed().as_secs_f64();
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
