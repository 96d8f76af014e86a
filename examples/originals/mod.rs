//! `ladder --originals DIR`: a learner's own checkout of the originals, run
//! unmodified with `python3` against the ladder's server, one row each.
//!
//! Why this exists: the Rust stages follow the originals and print what they
//! print, and the way to see it is to run both side by side. The originals
//! fetch from hosts on the internet (`www.baidu.com`, `example.com`,
//! `xkcd.com`, port 80); the ladder installs a startup hook for them (a
//! `sitecustomize` module on `PYTHONPATH`, imported by Python's `site` at
//! start-up) that redirects exactly those connections to the embedded
//! server, by patching `socket.socket.connect`/`connect_ex` and
//! `socket.getaddrinfo`. Nothing in DIR is changed or copied.
//!
//! Two series are known, told apart by their file names:
//! - yuchaoshui/notes `Python异步并发/`: `sync.py` ... `async_await.py`,
//!   each the original of the Rust stage of the same name. They print
//!   `(url, title)` tuples; `same_output` compares those with the Rust
//!   stage's, the URLs' `scheme://host:port` removed and the completion
//!   order ignored, and the form (one list, or one tuple per line).
//! - denglj/aiotutorial `part_1/`: `blocking.py` (its main runs
//!   `thread_way`: the `thread` stage), `nonblocking.py`, `callback.py`,
//!   `generator.py`, `yieldfrom.py`, `aio.py`. They print a count and/or
//!   the elapsed seconds; `same_output` says whether the count equals the
//!   Rust stage's `ok` (`null` when a file prints only its time).
//!
//! A row's `requests` is what the server answered while the file ran (what
//! it printed, with `--url`); `ok` is the tuples with a title (yuchaoshui),
//! the count it printed, or, for a file printing only its time, `requests`
//! when it exited with status 0; `seconds` is the wall time of the whole
//! `python3` run (interpreter start included; the Rust rows time
//! themselves). A file that needs a package Python lacks (aiohttp for
//! `async_await.py` and `aio.py`) is a row saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hosts the originals fetch from; only these, on port 80, are
/// redirected.
pub const HOSTS: [&str; 5] = [
    "www.baidu.com",
    "baidu.com",
    "example.com",
    "www.example.com",
    "xkcd.com",
];

/// The startup hook, written to `sitecustomize.py` in a directory of its
/// own that goes first on `PYTHONPATH`. The server's address comes in
/// `PYFIBER_ORIGINALS_SERVER` (`127.0.0.1:PORT`).
const HOOK: &str = r#"# sitecustomize.py, written by pyfiber's `ladder --originals`.
# Python's `site` imports it at start-up. It redirects connections to the
# originals' hosts on port 80 to the ladder's server on 127.0.0.1, and
# touches nothing else.
import os
import socket

_server = os.environ.get('PYFIBER_ORIGINALS_SERVER')
if _server:
    _host, _, _port = _server.rpartition(':')
    _port = int(_port)
    _hosts = set(os.environ.get('PYFIBER_ORIGINALS_HOSTS', '').split(','))

    def _redirect(address):
        if (isinstance(address, tuple) and len(address) >= 2
                and address[0] in _hosts and address[1] == 80):
            return (_host, _port) + tuple(address[2:])
        return address

    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        return _connect(self, _redirect(address))

    def connect_ex(self, address):
        return _connect_ex(self, _redirect(address))

    def getaddrinfo(host, port, *args, **kwargs):
        if host in _hosts and port in (80, '80', 'http'):
            host, port = _host, _port
        return _getaddrinfo(host, port, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
"#;

/// yuchaoshui's files: each is the original of the Rust stage of the same
/// name, so the list is the ladder's own.
const YUCHAOSHUI: [&str; 8] = super::STAGES;

/// denglj's files and the Rust stage each one is the original of.
const DENGLJ: [(&str, &str); 6] = [
    ("blocking", "thread"),
    ("nonblocking", "no_blocking"),
    ("callback", "callback"),
    ("generator", "generator"),
    ("yieldfrom", "yield_from"),
    ("aio", "async_await"),
];

/// Which tutorial a checkout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// yuchaoshui/notes `Python异步并发/`.
    Yuchaoshui,
    /// denglj/aiotutorial `part_1/`.
    Denglj,
}

/// One original in DIR: its file, its stem, and the Rust stage it mirrors.
#[derive(Clone, Debug)]
pub struct Original {
    pub file: PathBuf,
    pub stem: String,
    pub stage: &'static str,
    pub series: Series,
}

/// The originals in `dir`, in the ladder's order. Fails with a message if
/// `dir` is not a directory or holds none of them.
pub fn find(dir: &Path) -> Result<Vec<Original>, String> {
    if !dir.is_dir() {
        return Err(format!("--originals {}: not a directory", dir.display()));
    }
    // Each file runs from its own directory, so the path must not be relative.
    let dir = &dir
        .canonicalize()
        .map_err(|e| format!("--originals {}: {e}", dir.display()))?;
    let has = |stem: &str| dir.join(format!("{stem}.py")).is_file();
    let denglj_only = ["blocking", "nonblocking", "yieldfrom", "aio"];
    let series = if denglj_only.iter().any(|s| has(s)) {
        Series::Denglj
    } else {
        Series::Yuchaoshui
    };
    let pairs: Vec<(&str, &'static str)> = match series {
        Series::Yuchaoshui => YUCHAOSHUI.iter().map(|s| (*s, *s)).collect(),
        Series::Denglj => DENGLJ.to_vec(),
    };
    let found: Vec<Original> = pairs
        .into_iter()
        .filter(|(stem, _)| has(stem))
        .map(|(stem, stage)| Original {
            file: dir.join(format!("{stem}.py")),
            stem: stem.to_string(),
            stage,
            series,
        })
        .collect();
    if found.is_empty() {
        return Err(format!(
            "--originals {}: none of the originals is there (yuchaoshui/notes Python异步并发/: {}.py; \
             denglj/aiotutorial part_1/: {}.py)",
            dir.display(),
            YUCHAOSHUI.join(".py, "),
            DENGLJ.map(|(s, _)| s).join(".py, ")
        ));
    }
    Ok(found)
}

/// The directory holding the startup hook, for `PYTHONPATH`; removed when
/// dropped.
pub struct Hook {
    dir: PathBuf,
}

impl Hook {
    /// Writes `sitecustomize.py` into a fresh directory under the temp dir.
    pub fn install() -> Result<Hook, String> {
        let dir = std::env::temp_dir().join(format!("pyfiber-originals-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("sitecustomize.py"), HOOK))
            .map_err(|e| format!("cannot write the startup hook in {}: {e}", dir.display()))?;
        Ok(Hook { dir })
    }

    /// `python3 FILE` with the hook first on `PYTHONPATH`, aimed at `server`
    /// (`127.0.0.1:PORT`), run from the file's own directory as a learner
    /// would.
    pub fn command(&self, file: &Path, server: &str) -> Command {
        let mut path = self.dir.as_os_str().to_owned();
        if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(old);
        }
        let mut cmd = Command::new("python3");
        cmd.arg(file)
            .env("PYTHONPATH", path)
            .env("PYFIBER_ORIGINALS_SERVER", server)
            .env("PYFIBER_ORIGINALS_HOSTS", HOSTS.join(","));
        if let Some(parent) = file.parent() {
            cmd.current_dir(parent);
        }
        cmd
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one original's run came to: a row.
#[derive(Clone, Debug)]
pub struct Row {
    pub stem: String,
    pub requests: Option<u64>,
    pub ok: Option<u64>,
    pub seconds: Option<f64>,
    /// `None` when there is nothing to compare (a file printing only its
    /// time, or a run that failed).
    pub same_output: Option<bool>,
    /// Why the run has no figures (a missing package, a crash, a timeout).
    pub error: Option<String>,
}

/// The `(url, title)` tuples in a printed output, each URL with its
/// `scheme://host[:port]` removed, sorted (completion order is not part of
/// the comparison); and whether they were printed as one list.
pub fn tuples(output: &str) -> (Vec<(String, String)>, bool) {
    let tuple = regex::Regex::new(r"\('([^'\\]*)', '([^'\\]*)'\)").expect("regex");
    let host = regex::Regex::new(r"^[a-z]+://[^/]*").expect("regex");
    let mut found: Vec<(String, String)> = tuple
        .captures_iter(output)
        .map(|c| (host.replace(&c[1], "").into_owned(), c[2].to_string()))
        .collect();
    found.sort();
    let body: Vec<&str> = output
        .lines()
        .filter(|l| !l.starts_with('{'))
        .filter(|l| !l.is_empty())
        .collect();
    let one_list = body.len() == 1 && body[0].starts_with('[') && body[0].ends_with(']');
    (found, one_list)
}

/// The count a denglj file printed: its first line that is a whole number.
fn printed_count(output: &str) -> Option<u64> {
    output.lines().find_map(|l| l.trim().parse::<u64>().ok())
}

/// The package a failed run could not import, from its traceback.
fn missing_package(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("ModuleNotFoundError: No module named "))?;
    Some(
        line.trim_start_matches("ModuleNotFoundError: No module named ")
            .trim_matches('\'')
            .to_string(),
    )
}

/// Runs one original, bounded by `limit`; `requests_served` reads the
/// server's request counter (when the server is the ladder's own).
/// `rust_stdout` is what the Rust stage printed, for `same_output`.
pub fn run(
    hook: &Hook,
    original: &Original,
    server: &str,
    limit: Duration,
    requests_served: &dyn Fn() -> Option<u64>,
    rust: Option<(&str, u64)>,
) -> Row {
    let mut row = Row {
        stem: original.stem.clone(),
        requests: None,
        ok: None,
        seconds: None,
        same_output: None,
        error: None,
    };
    let before = requests_served();
    let started = Instant::now();
    let child = hook
        .command(&original.file, server)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            row.error = Some(format!("cannot start python3: {e}"));
            return row;
        }
    };
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        row.error = Some(format!(
            "still running after {:.0} s: stopped",
            limit.as_secs_f64()
        ));
        return row;
    };
    if !status.success() {
        row.error = Some(match missing_package(&stderr) {
            Some(package) => format!(
                "needs the {package} package, which this python3 lacks (pip install {package})"
            ),
            None => format!(
                "exited with {status}: {}",
                stderr.lines().last().unwrap_or("(no message)")
            ),
        });
        return row;
    }
    row.seconds = Some(seconds);
    let served = match (before, requests_served()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    match original.series {
        Series::Yuchaoshui => {
            let (found, one_list) = tuples(&stdout);
            row.requests = served.or(Some(found.len() as u64));
            row.ok = Some(found.iter().filter(|(_, title)| !title.is_empty()).count() as u64);
            if let Some((rust_stdout, _)) = rust {
                let (theirs, their_list) = tuples(rust_stdout);
                row.same_output = Some(theirs == found && their_list == one_list);
            }
        }
        Series::Denglj => {
            let count = printed_count(&stdout);
            row.requests = served.or(count);
            row.ok = count.or(row.requests);
            if let (Some(count), Some((_, rust_ok))) = (count, rust) {
                row.same_output = Some(count == rust_ok);
            }
        }
    }
    row
}

/// A row as the `--json` line the issue asks for: `stage` (the file's
/// stem), `original: true`, `requests`, `ok`, `seconds`, `same_output`
/// (and `error` when the run has no figures).
pub fn json(row: &Row) -> String {
    let num = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
    let mut line = format!(
        "{{\"stage\": \"{}\", \"original\": true, \"requests\": {}, \"ok\": {}, \"seconds\": {}, \"same_output\": {}",
        row.stem,
        num(row.requests),
        num(row.ok),
        row.seconds.map_or("null".to_string(), |s| format!("{s:.6}")),
        row.same_output.map_or("null".to_string(), |b| b.to_string()),
    );
    if let Some(e) = &row.error {
        line.push_str(&format!(
            ", \"error\": \"{}\"",
            e.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    line.push('}');
    line
}

/// Which originals map to which Rust stage, for placing their rows.
pub fn by_stage(originals: &[Original]) -> BTreeMap<&'static str, Vec<Original>> {
    let mut map: BTreeMap<&'static str, Vec<Original>> = BTreeMap::new();
    for o in originals {
        map.entry(o.stage).or_default().push(o.clone());
    }
    map
}
