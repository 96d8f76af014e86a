//! The walkthrough example prints exactly what its Python twin prints.
//!
//! Runs `examples/yield_to_from.rs` (through `cargo run`, which builds it)
//! and `examples/python/yield_to_from.py` with the same `--rounds`, both
//! delegation modes on the Rust side, and compares stdout byte for byte.

use std::process::Command;

fn stdout_of(cmd: &mut Command) -> String {
    let output = cmd.output().expect("command runs");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn python(rounds: u32) -> String {
    stdout_of(
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/python/yield_to_from.py"
            ))
            .args(["--rounds", &rounds.to_string()]),
    )
}

fn rust(rounds: u32, extra: &[&str]) -> String {
    stdout_of(
        Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["run", "--quiet", "--example", "yield_to_from", "--"])
            .args(["--rounds", &rounds.to_string()])
            .args(extra),
    )
}

/// A readable report of the first line where the two outputs part.
fn first_difference(python: &str, rust: &str) -> String {
    let (p, r): (Vec<_>, Vec<_>) = (python.lines().collect(), rust.lines().collect());
    let i = p.iter().zip(&r).take_while(|(a, b)| a == b).count();
    format!("line {}: python {:?}, rust {:?}", i + 1, p.get(i), r.get(i))
}

#[test]
fn example_prints_what_python_prints() {
    for rounds in [1, 4] {
        let expected = python(rounds);
        // main2 prints one separator per value sent, main3 one per round:
        // proof that --rounds reached both programs.
        let separators = expected.lines().filter(|l| *l == "--------------------");
        assert_eq!(separators.count(), 5 + rounds as usize);
        for extra in [&[][..], &["--same-fiber"][..]] {
            let got = rust(rounds, extra);
            assert!(
                got == expected,
                "--rounds {rounds} {extra:?}: {}",
                first_difference(&expected, &got)
            );
        }
    }
}

#[test]
fn rounds_must_be_positive_in_both() {
    let py = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python/yield_to_from.py"
        ))
        .args(["--rounds", "0"])
        .output()
        .unwrap();
    let rs = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "--quiet",
            "--example",
            "yield_to_from",
            "--",
            "--rounds",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!py.status.success() && py.stdout.is_empty());
    assert!(!rs.status.success() && rs.stdout.is_empty());
}
