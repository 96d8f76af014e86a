//! Micro-benchmarks of the generator machinery against CPython, in one run.
//!
//! ```text
//! cargo run --release --example bench            # full run, a table
//! cargo run --release --example bench -- --json  # one JSON object per op
//! cargo run --release --example bench -- --quick # fewer, shorter samples
//! ```
//!
//! Every timed op is measured as a median of samples on both sides: ours
//! here, CPython's by a `python3` script that calibrates a `timeit.Timer`
//! and takes the median of `timeit.repeat`. Both count the thread's CPU
//! time, not the wall clock, so other processes on a busy machine do not
//! inflate the figures. (`python3 -m timeit` reports the *best* of its
//! wall-clock runs; the full run shows that too, as a cross-check.)
//!
//! - `send`: one `g.send(x)` round trip into `while True: x = yield x`.
//! - `yield_from_fn_dN`: the same send through a chain of N delegations on
//!   one fiber (nested plain Rust calls, the innermost looping on yield).
//! - `yield_from_gen_dN`: the same chain as N generators, each forwarding
//!   with `co.yield_from` (PEP 380's expansion, a fiber switch per hop).
//!   Python's twin of both is the same chain of `yield from`.
//! - `create_exhaust`: create, start and exhaust a one-yield generator.
//! - `live_generators`: suspended generators created until MemoryError or a
//!   cap, with the RSS each one costs (VmRSS delta / count). Past the stack
//!   pool, so this is also "creating past the pool". Printed beside it, the
//!   first write to a fresh page of memory: the page fault each new stack
//!   pays for its top page, the kernel's share of the figure.
//!
//! The peers, same run: when `peer_switch` is built beside this example
//! (`cargo build --release -p pyfiber-peers`, the `peers/` workspace member,
//! so plain `cargo test` never builds generator-rs), bench runs it right
//! after CPython's side and adds a raw corosensei resume/suspend (the floor
//! under `send`) and generator-rs's `send` and create+exhaust, a raw
//! corosensei create+exhaust (a fresh coroutine on a reused stack, with the
//! body inlined into the fiber's entry), the same in a generator's shape
//! (the body a boxed function, each resume made from a function: the floor
//! under ours) and the same body on one reused fiber, then prints issue
//! 15's goals with the figures of this run.

use std::hint::black_box;
use std::process::Command;

use rustix::time::{clock_gettime, ClockId};

use clap::Parser;
use pyfiber::exception::MemoryError;
use pyfiber::{stack_pool, Co, Generator, PyResult, Value};

#[derive(Parser)]
#[command(about = "pyfiber's generators against CPython's, op by op")]
struct Args {
    /// One JSON object per line: op, rust_ns, python_ns, ratio.
    #[arg(long)]
    json: bool,
    /// Fewer and shorter samples (a smoke run, noisier numbers).
    #[arg(long)]
    quick: bool,
    /// Most suspended generators to create for `live_generators`.
    #[arg(long, default_value_t = 40_000)]
    live_cap: usize,
}

/// How long each measurement runs.
#[derive(Clone, Copy)]
struct Budget {
    /// Samples per op; the reported figure is their median.
    samples: usize,
    /// Each sample loops until it has taken at least this long.
    sample_ns: u64,
}

impl Budget {
    fn new(quick: bool) -> Budget {
        if quick {
            Budget {
                samples: 5,
                sample_ns: 2_000_000,
            }
        } else {
            Budget {
                samples: 21,
                sample_ns: 20_000_000,
            }
        }
    }
}

/// This thread's CPU time, in ns (Python: `time.thread_time_ns()`).
fn cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Median CPU ns per call of `op`: finds an iteration count that fills a
/// sample, then times `samples` samples of it.
fn median_ns(budget: Budget, mut op: impl FnMut()) -> f64 {
    let mut iters: u64 = 1;
    loop {
        let t = cpu_ns();
        for _ in 0..iters {
            op();
        }
        if cpu_ns() - t >= budget.sample_ns / 4 {
            break;
        }
        iters *= 2;
    }
    iters *= 4;
    let mut per_op: Vec<f64> = (0..budget.samples)
        .map(|_| {
            let t = cpu_ns();
            for _ in 0..iters {
                op();
            }
            (cpu_ns() - t) as f64 / iters as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op[per_op.len() / 2]
}

// ---------------------------------------------------------------------------
// The Rust side of each op
// ---------------------------------------------------------------------------

/// `def leaf(): x = None; while True: x = yield x`, as a body.
fn leaf(co: &Co) -> PyResult<Value> {
    let mut x = Value::None;
    loop {
        x = co.yield_(x)?;
    }
}

/// Same-fiber chain: `depth` nested calls, the innermost looping on yield.
/// Each level is a real frame on the fiber's stack (no tail call: the
/// result is used after the call returns).
fn chain_fn(co: &Co, depth: u32) -> PyResult<Value> {
    let r = if depth == 1 {
        leaf(co)?
    } else {
        chain_fn(co, black_box(depth - 1))?
    };
    Ok(black_box(r))
}

/// PEP 380 chain: `depth` generators, each `yield from` the next.
fn chain_gen(depth: u32) -> Generator {
    Generator::new(move |co| {
        let sub = if depth == 1 {
            Generator::new(leaf)
        } else {
            chain_gen(depth - 1)
        };
        co.yield_from(&sub)
    })
}

/// A started generator's send round trip, in ns.
fn time_send(budget: Budget, g: &Generator) -> f64 {
    g.next().expect("starts");
    let mut i = 0i64;
    median_ns(budget, || {
        i += 1;
        black_box(g.send(Value::Int(i)).expect("loops forever"));
    })
}

fn one_yield(co: &Co) -> PyResult<Value> {
    co.yield_(1.into())?;
    Ok(Value::None)
}

/// `for _ in one(): pass`.
fn time_create_exhaust(budget: Budget) -> f64 {
    median_ns(budget, || {
        for v in Generator::new(one_yield) {
            black_box(v.expect("yields"));
        }
    })
}

/// CPU ns of the first write to a page never touched before: the page
/// fault that allocates and zeroes it, which every new fiber stack pays for
/// its top page (`live_generators`). `vec![0; n]` this large is `calloc`
/// of fresh anonymous memory, not yet backed by any page.
fn first_touch_ns(pages: usize) -> f64 {
    const PAGE: usize = 4096;
    let mut fresh = vec![0u8; pages * PAGE];
    let t = cpu_ns();
    for i in 0..pages {
        fresh[i * PAGE] = 1;
    }
    let elapsed = (cpu_ns() - t) as f64;
    black_box(&fresh);
    elapsed / pages as f64
}

/// `VmRSS` of this process, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What `live_generators` found on one side.
struct Live {
    count: usize,
    bytes_each: f64,
    ns_each: f64,
    /// The MemoryError that stopped it, if the cap was not reached.
    stopped_by: Option<String>,
}

/// Creates and starts generators until `cap` or MemoryError; all stay
/// suspended (each holds its fiber stack) until the end.
fn live_generators(cap: usize) -> Live {
    // Reserved up front: at the mapping limit even a Vec's growth could not
    // get memory.
    let mut live: Vec<Generator> = Vec::with_capacity(cap);
    let before = rss_bytes().unwrap_or(0);
    let t = cpu_ns();
    let mut stopped_by = None;
    while live.len() < cap {
        let g = Generator::new(one_yield);
        match g.next() {
            Ok(_) => live.push(g),
            Err(e) if e.is_instance(&MemoryError) => {
                stopped_by = Some(e.line());
                break;
            }
            Err(e) => panic!("unexpected {}", e.line()),
        }
    }
    let elapsed = (cpu_ns() - t) as f64;
    let after = rss_bytes().unwrap_or(0);
    let count = live.len();
    drop(live);
    Live {
        count,
        bytes_each: after.saturating_sub(before) as f64 / count.max(1) as f64,
        ns_each: elapsed / count.max(1) as f64,
        stopped_by,
    }
}

// ---------------------------------------------------------------------------
// The CPython side
// ---------------------------------------------------------------------------

/// Setup shared by the Python ops: the same generators as above.
const PY_SETUP: &str = "
def leaf():
    x = None
    while True:
        x = yield x
def chain(d):
    return (yield from (leaf() if d == 1 else chain(d - 1)))
def one():
    yield 1
";

/// `(op, setup, statement)` for each timed op. The fn and gen chains of the
/// same depth share one Python twin.
fn python_ops() -> Vec<(String, String, String)> {
    let mut ops = vec![(
        "send".to_string(),
        "g = leaf(); next(g)".to_string(),
        "g.send(1)".to_string(),
    )];
    for d in [1, 3, 10] {
        ops.push((
            format!("chain_d{d}"),
            format!("g = chain({d}); next(g)"),
            "g.send(1)".to_string(),
        ));
    }
    ops.push((
        "create_exhaust".into(),
        String::new(),
        "for _ in one(): pass".into(),
    ));
    ops
}

/// Calibrates each `timeit.Timer` to `sample_ns`, takes the median of
/// `timeit.repeat`, prints `op median_ns`; then the live-generators run
/// prints `live count bytes_each ns_each error`.
const PY_SCRIPT: &str = r#"
import statistics, sys, time, timeit
setup_all, samples, sample_ns, live_cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ops = sys.argv[5:]
for i in range(0, len(ops), 3):
    name, setup, stmt = ops[i:i + 3]
    t = timeit.Timer(stmt, setup_all + "\n" + setup, timer=time.thread_time)
    n = 1
    while t.timeit(n) * 1e9 < sample_ns / 4:
        n *= 2
    n *= 4
    print(name, statistics.median(t.repeat(repeat=samples, number=n)) / n * 1e9, flush=True)

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
ns = {}
exec(setup_all, ns)
one = ns["one"]
live = []
before = rss()
t0 = time.thread_time_ns()
err = "-"
try:
    while len(live) < live_cap:
        g = one()
        next(g)
        live.append(g)
except MemoryError as e:
    err = "MemoryError: " + str(e)
t1 = time.thread_time_ns()
after = rss()
print("live", len(live), (after - before) / max(len(live), 1), (t1 - t0) / max(len(live), 1), err)
"#;

/// The peers' medians (`peer_switch`'s `op ns` lines), or why there are none.
fn run_peers(quick: bool) -> Result<Vec<(String, f64)>, String> {
    // target/<profile>/examples/bench -> target/<profile>/peer_switch
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let peer = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("peer_switch"))
        .filter(|p| p.exists())
        .ok_or("peer_switch is not built: cargo build --release -p pyfiber-peers")?;
    let mut cmd = Command::new(&peer);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", peer.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| match line.split_once(' ') {
            Some((op, ns)) => Ok((op.to_string(), ns.parse().map_err(|_| line.to_string())?)),
            None => Err(format!("unexpected peer_switch output: {line}")),
        })
        .collect()
}

/// CPython's medians by op name, and its live-generators figures.
fn run_python(budget: Budget, live_cap: usize) -> Result<(Vec<(String, f64)>, Live), String> {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(PY_SCRIPT)
        .arg(PY_SETUP)
        .arg(budget.samples.to_string())
        .arg(budget.sample_ns.to_string())
        .arg(live_cap.to_string());
    for (name, setup, stmt) in python_ops() {
        cmd.args([name, setup, stmt]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut medians = Vec::new();
    let mut live = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        match fields.as_slice() {
            ["live", count, bytes, ns, err] => {
                live = Some(Live {
                    count: count.parse().map_err(|_| line.to_string())?,
                    bytes_each: bytes.parse().map_err(|_| line.to_string())?,
                    ns_each: ns.parse().map_err(|_| line.to_string())?,
                    stopped_by: (*err != "-").then(|| err.to_string()),
                });
            }
            [name, ns] => {
                medians.push((name.to_string(), ns.parse().map_err(|_| line.to_string())?))
            }
            _ => return Err(format!("unexpected python3 output: {line}")),
        }
    }
    Ok((medians, live.ok_or("python3 printed no live line")?))
}

/// `python3 -m timeit`'s own figure (the best of 5 runs), in ns: parses
/// `N loops, best of 5: X nsec per loop`.
fn python_timeit_best(setup: &str, stmt: &str) -> Option<f64> {
    let out = Command::new("python3")
        .args(["-m", "timeit", "-s", PY_SETUP, "-s", setup, stmt])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tail = text.split("best of").nth(1)?;
    let mut words = tail.split(':').nth(1)?.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    let scale = match words.next()? {
        "nsec" => 1.0,
        "usec" => 1e3,
        "msec" => 1e6,
        "sec" => 1e9,
        _ => return None,
    };
    Some(value * scale)
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

/// One timed op: ours, CPython's, and `python3 -m timeit`'s best.
struct Row {
    op: String,
    rust_ns: f64,
    python_ns: f64,
    timeit_best_ns: Option<f64>,
    note: String,
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "null".into()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() {
    let args = Args::parse();
    let budget = Budget::new(args.quick);
    let (py_medians, py_live) = match run_python(budget, args.live_cap) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: python3 side failed: {e}");
            std::process::exit(1);
        }
    };
    let peers = run_peers(args.quick);
    let py = |name: &str| {
        py_medians
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, ns)| *ns)
    };
    let py_ops = python_ops();
    let best = |name: &str| {
        if args.quick {
            return None;
        }
        let (_, setup, stmt) = py_ops.iter().find(|(n, _, _)| n == name)?;
        python_timeit_best(setup, stmt)
    };

    let mut rows = Vec::new();
    let send = time_send(budget, &Generator::new(leaf));
    rows.push(Row {
        op: "send".into(),
        rust_ns: send,
        python_ns: py("send"),
        timeit_best_ns: best("send"),
        note: String::new(),
    });
    let mut fn_d1 = f64::NAN;
    for d in [1u32, 3, 10] {
        let g = Generator::new(move |co| chain_fn(co, d));
        let ns = time_send(budget, &g);
        if d == 1 {
            fn_d1 = ns;
        }
        rows.push(Row {
            op: format!("yield_from_fn_d{d}"),
            rust_ns: ns,
            python_ns: py(&format!("chain_d{d}")),
            timeit_best_ns: best(&format!("chain_d{d}")),
            note: format!("{:.2}x depth 1", ns / fn_d1),
        });
    }
    for d in [1u32, 3, 10] {
        let ns = time_send(budget, &chain_gen(d));
        rows.push(Row {
            op: format!("yield_from_gen_d{d}"),
            rust_ns: ns,
            python_ns: py(&format!("chain_d{d}")),
            timeit_best_ns: best(&format!("chain_d{d}")),
            note: format!("{:.2} ns/hop", (ns - send) / f64::from(d)),
        });
    }
    let pooled = stack_pool::stats().pooled;
    rows.push(Row {
        op: "create_exhaust".into(),
        rust_ns: time_create_exhaust(budget),
        python_ns: py("create_exhaust"),
        timeit_best_ns: best("create_exhaust"),
        note: format!("stack pool: {pooled} stack(s) ready"),
    });
    let live = live_generators(args.live_cap);
    let page_fault = first_touch_ns(10_000);
    let peer = |name: &str| {
        peers
            .as_ref()
            .ok()
            .and_then(|p| p.iter().find(|(n, _)| n == name))
            .map(|(_, ns)| *ns)
    };

    if args.json {
        // The peers' lines only when peer_switch ran (it is built apart).
        for name in [
            "raw_switch",
            "generator_rs_send",
            "generator_rs_create_exhaust",
            "raw_create_exhaust",
            "raw_create_exhaust_boxed",
            "raw_reused_fiber",
        ] {
            if let Some(ns) = peer(name) {
                println!("{{\"op\": \"peer_{name}\", \"ns\": {}}}", json_num(ns));
            }
        }
        for r in &rows {
            println!(
                "{{\"op\": {}, \"rust_ns\": {}, \"python_ns\": {}, \"ratio\": {}}}",
                json_str(&r.op),
                json_num(r.rust_ns),
                json_num(r.python_ns),
                json_num(r.rust_ns / r.python_ns)
            );
        }
        println!(
            "{{\"op\": \"live_generators\", \"rust_ns\": {}, \"python_ns\": {}, \"ratio\": {}, \
             \"rust_count\": {}, \"python_count\": {}, \"rust_bytes_each\": {}, \
             \"python_bytes_each\": {}, \"rust_stopped_by\": {}, \"python_stopped_by\": {}, \
             \"first_touch_ns\": {}}}",
            json_num(live.ns_each),
            json_num(py_live.ns_each),
            json_num(live.ns_each / py_live.ns_each),
            live.count,
            py_live.count,
            json_num(live.bytes_each),
            json_num(py_live.bytes_each),
            live.stopped_by.as_deref().map_or("null".into(), json_str),
            py_live
                .stopped_by
                .as_deref()
                .map_or("null".into(), json_str),
            json_num(page_fault),
        );
        return;
    }

    println!(
        "{:<20} {:>12} {:>14} {:>8}  {:>14}  notes",
        "op (CPU time)", "rust ns/op", "python ns/op", "ratio", "timeit best"
    );
    for r in &rows {
        let best = r
            .timeit_best_ns
            .map_or_else(|| "-".to_string(), |b| format!("{b:.1}"));
        println!(
            "{:<20} {:>12.2} {:>14.1} {:>8.3}  {:>14}  {}",
            r.op,
            r.rust_ns,
            r.python_ns,
            r.rust_ns / r.python_ns,
            best,
            r.note
        );
    }
    println!(
        "{:<20} {:>12.1} {:>14.1} {:>8.3}  {:>14}  create+start ns each, while filling",
        "live_generators",
        live.ns_each,
        py_live.ns_each,
        live.ns_each / py_live.ns_each,
        "-"
    );
    let report = |side: &str, l: &Live| {
        println!(
            "  {side}: {} suspended generators ({}), {:.0} bytes RSS each",
            l.count,
            l.stopped_by
                .as_deref()
                .unwrap_or("stopped at --live-cap, no MemoryError"),
            l.bytes_each
        );
    };
    report("rust  ", &live);
    report("python", &py_live);
    println!(
        "  first write to a fresh page (a page fault, each new stack's top page): {page_fault:.0} ns"
    );

    let (raw, gen_rs, gen_rs_create) = match (
        peer("raw_switch"),
        peer("generator_rs_send"),
        peer("generator_rs_create_exhaust"),
    ) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => {
            println!(
                "\npeers: none ({})",
                peers.err().unwrap_or_else(|| "incomplete output".into())
            );
            return;
        }
    };
    println!("\n{:<32} {:>12}  same run", "peer (CPU time)", "ns/op");
    println!("{:<32} {:>12.2}", "raw corosensei resume/suspend", raw);
    println!("{:<32} {:>12.2}", "generator-rs send", gen_rs);
    println!(
        "{:<32} {:>12.1}",
        "generator-rs create+exhaust", gen_rs_create
    );
    if let (Some(fresh), Some(reused)) = (peer("raw_create_exhaust"), peer("raw_reused_fiber")) {
        println!("{:<32} {:>12.1}", "raw corosensei create+exhaust", fresh);
        println!("{:<32} {:>12.1}", "  the same, one fiber reused", reused);
    }
    if let Some(boxed) = peer("raw_create_exhaust_boxed") {
        println!(
            "{:<32} {:>12.1}  a boxed body, resumed from a fn",
            "  the same, a generator's shape", boxed
        );
    }

    // Issue 15's goals, each from this run's figures.
    let find = |op: &str| {
        rows.iter()
            .find(|r| r.op == op)
            .map_or(f64::NAN, |r| r.rust_ns)
    };
    let (send, d10, create) = (
        find("send"),
        find("yield_from_gen_d10"),
        find("create_exhaust"),
    );
    let goal = |what: &str, value: String, ok: bool| {
        println!(
            "{:<46} {:<28} {}",
            what,
            value,
            if ok { "met" } else { "NOT met" }
        );
    };
    println!("\ngoals (issue 15), this run:");
    goal(
        "send <= 2x raw switch",
        format!("{send:.2} / {raw:.2} = {:.2}x", send / raw),
        send <= 2.0 * raw,
    );
    goal(
        "send <= 0.5x generator-rs send",
        format!("{send:.2} / {gen_rs:.2} = {:.2}x", send / gen_rs),
        send <= 0.5 * gen_rs,
    );
    let hop = (d10 - send) / 10.0;
    goal(
        "yield_from (gen chain) <= 3 ns per hop",
        format!("({d10:.1} - {send:.1}) / 10 = {hop:.2} ns"),
        hop <= 3.0,
    );
    let py_create = py("create_exhaust");
    goal(
        "create+exhaust <= 0.5x CPython",
        format!("{create:.1} / {py_create:.1} = {:.2}x", create / py_create),
        create <= 0.5 * py_create,
    );
    goal(
        "creating past the pool <= 2 us each",
        format!(
            "{:.0} ns (live_generators; a page fault {page_fault:.0})",
            live.ns_each
        ),
        live.ns_each <= 2000.0,
    );
}
