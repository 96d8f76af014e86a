//! The yield / yield from walkthrough of the tutorial, in Rust: `gen` (the
//! sub-generator), `proxy_gen` (the delegating generator) and three callers.
//!
//! `main1` drives `gen` by hand, `main2` sends through `proxy_gen`, `main3`
//! loops over `proxy_gen` with `for` and sends inside the loop. It prints
//! what `examples/python/yield_to_from.py` prints, line for line:
//!
//! ```text
//! cargo run --example yield_to_from -- --rounds 3
//! python3 examples/python/yield_to_from.py --rounds 3
//! ```
//!
//! `main3` is an endless loop in the tutorial; `--rounds N` stops it after N
//! rounds. Its lines are the tutorial's, in Chinese; `--english` prints them
//! in English instead (same lines, same order). `--same-fiber` makes `proxy_gen` delegate by calling `gen`'s body
//! on its own fiber instead of `yield from` over a separate generator; the
//! output is the same.

use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use pyfiber::exception::StopIteration;
use pyfiber::{Co, Generator, PyResult, Value};

/// How many values `main2` sends (Python: `m = 5`).
const M: i64 = 5;
/// The caller's signal that tells `gen` to finish (Python: `flag = "stop"`).
const FLAG: &str = "stop";

#[derive(Parser)]
#[command(about = "The tutorial's gen / proxy_gen / main1 / main2 / main3 walkthrough")]
struct Args {
    /// Rounds of main3's endless loop.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Delegate by calling gen's body on proxy_gen's fiber, not `yield from`.
    #[arg(long)]
    same_fiber: bool,
    /// Print the lines in English instead of the tutorial's Chinese.
    #[arg(long)]
    english: bool,
}

/// `--english`.
static ENGLISH: AtomicBool = AtomicBool::new(false);

/// One of the tutorial's phrases, or its English with `--english`.
fn t(chinese: &'static str) -> &'static str {
    if !ENGLISH.load(Ordering::Relaxed) {
        return chinese;
    }
    match chinese {
        "start 子生成器" => "start sub-generator",
        "end 子生成器" => "end sub-generator",
        "子生成器--要返回的值:" => "sub-generator -- value to yield:",
        "子生成器--接受到的值:" => "sub-generator -- value received:",
        "这就是result" => "this is the result",
        "委托生成器result:" => "delegating generator result:",
        "子生成器return的值:" => "sub-generator returned:",
        "调用方--要发送的值:" => "caller -- value to send:",
        "调用方--接受到的值:" => "caller -- value received:",
        other => other,
    }
}

/// `def gen()`: the sub-generator, as a body any fiber can run.
fn gen_body(co: &Co) -> PyResult<Value> {
    println!("{}", t("start 子生成器"));
    let k = "k";
    loop {
        // Endless unless the caller sends FLAG.
        println!("{} {k}", t("子生成器--要返回的值:"));
        let sent = co.yield_(k.into())?; // pause here; send()/next() resumes with it
        println!("{} {sent}", t("子生成器--接受到的值:"));
        // Python compares identity (`t is flag`); the interned "stop" makes
        // that the same as comparing the text.
        if sent.as_str() == Some(FLAG) {
            break;
        }
    }
    println!("{}", t("end 子生成器"));
    Ok(t("这就是result").into()) // becomes StopIteration("这就是result")
}

/// `gen()`: a generator object running `gen_body`.
fn gen() -> Generator {
    Generator::named("gen", gen_body)
}

/// `def proxy_gen()`: the delegating generator, a two-way channel between
/// the caller and `gen`.
fn proxy_gen(same_fiber: bool) -> Generator {
    Generator::named("proxy_gen", move |co| {
        let result = if same_fiber {
            co.yield_from_fn(gen_body)? // gen's yields suspend this very fiber
        } else {
            co.yield_from(&gen())? // result = yield from gen()
        };
        println!("{} {result}", t("委托生成器result:"));
        co.yield_(result)?;
        Ok(Value::None)
    })
}

/// 调用方1: drives `gen` without a delegator.
fn main1() -> PyResult<()> {
    let g = gen();
    println!("{}", g.send(Value::None)?);
    println!("{}", g.send(1.into())?);
    println!("{}", g.next()?);
    // Without a delegator we catch the end ourselves.
    match g.send(FLAG.into()) {
        Ok(v) => println!("{v}"),
        Err(e) if e.is_instance(&StopIteration) => {
            let value = e.stop_value().unwrap_or(&Value::None);
            println!("StopIteration");
            println!("{} {value}", t("子生成器return的值:"));
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// 调用方2: sends through `proxy_gen`.
fn main2(same_fiber: bool) -> PyResult<()> {
    let g = proxy_gen(same_fiber);
    g.send(Value::None)?; // start it first: a non-None send would be a TypeError
    for k in 0..M {
        println!("{} {k}", t("调用方--要发送的值:"));
        let received = g.send(k.into())?;
        println!("{} {received}", t("调用方--接受到的值:"));
        println!("--------------------");
    }
    g.send(FLAG.into())?; // tells the endless gen to finish
    Ok(())
}

/// 调用方3: a `for` loop that also sends; endless, so it stops after `rounds`.
fn main3(same_fiber: bool, rounds: u64) -> PyResult<()> {
    let g = proxy_gen(same_fiber);
    g.send(Value::None)?;
    let mut done = 0;
    for k in g.clone() {
        // each round's next(g) is g.send(None)
        let k = k?;
        println!("{} {k}", t("调用方--接受到的值:"));
        let sent = g.send("m".into())?;
        println!("{} {sent}", t("调用方--要发送的值:"));
        println!("{} {k}", t("调用方--接受到的值:"));
        println!("--------------------");
        done += 1;
        if done == rounds {
            break;
        }
    }
    Ok(())
}

fn main() -> PyResult<()> {
    let args = Args::parse();
    ENGLISH.store(args.english, Ordering::Relaxed);
    println!("*********************");
    main1()?;
    println!("*********************");
    main2(args.same_fiber)?;
    println!("*********************");
    main3(args.same_fiber, args.rounds)?;
    println!("*********************");
    Ok(())
}
