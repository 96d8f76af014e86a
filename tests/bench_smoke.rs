//! The benchmark example runs and reports every op, on both sides.
//!
//! Debug build, `--quick`, a small `--live-cap`: this checks the plumbing
//! (the Python twin ran, its output parsed, every op measured), not speed.

use std::process::Command;

const OPS: [&str; 9] = [
    "send",
    "yield_from_fn_d1",
    "yield_from_fn_d3",
    "yield_from_fn_d10",
    "yield_from_gen_d1",
    "yield_from_gen_d3",
    "yield_from_gen_d10",
    "create_exhaust",
    "live_generators",
];

/// The number after `"key": ` in a one-line JSON object.
fn number(line: &str, key: &str) -> f64 {
    let start = line
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 4;
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {line}"))
}

#[test]
fn bench_reports_every_op_as_json() {
    let output = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--example", "bench", "--"])
        .args(["--quick", "--json", "--live-cap", "2000"])
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Lines of the peers (`peer_*`) appear only when `peer_switch` is built
    // beside the example; the ops of pyfiber and CPython always.
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("{\"op\": \"peer_"))
        .collect();
    assert_eq!(lines.len(), OPS.len(), "one line per op:\n{stdout}");
    for (line, op) in lines.iter().zip(OPS) {
        assert!(line.starts_with(&format!("{{\"op\": \"{op}\"")), "{line}");
        let (rust, python) = (number(line, "rust_ns"), number(line, "python_ns"));
        assert!(rust > 0.0 && python > 0.0, "{line}");
        let ratio = number(line, "ratio");
        assert!(
            (ratio - rust / python).abs() <= 0.01 * ratio.max(1.0),
            "{line}"
        );
    }
    let live = lines.last().unwrap();
    assert_eq!(number(live, "rust_count"), 2000.0, "{live}");
    assert_eq!(number(live, "python_count"), 2000.0, "{live}");
    // A page fault takes some time: at least a few hundred instructions.
    assert!(number(live, "first_touch_ns") > 10.0, "{live}");
}
