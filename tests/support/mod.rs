//! What the integration tests share: the examples, built, and their paths.
//!
//! Why this exists: the tests run the examples as child processes, as a user
//! would. `cargo test` builds the example targets, but a test binary should
//! not rely on that (one may be run alone, or in another profile), so the
//! first test that needs an example builds them all once, in this test
//! binary's own profile, and every later call just returns the path.

#![allow(dead_code)] // each test binary uses part of this

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The eight stages, in the tutorials' order: each example's name, which
/// is also its Python original's stem (examples/ladder.rs has the same list).
pub const STAGES: [&str; 8] = [
    "sync",
    "process",
    "thread",
    "no_blocking",
    "callback",
    "generator",
    "yield_from",
    "async_await",
];

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/examples/`, with every example built in the profile of
/// the running test binary (which lives in `target/<profile>/deps/`).
pub fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("a test binary lives in target/<profile>/deps");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--examples"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .arg("--manifest-path")
            .arg(root().join("Cargo.toml"))
            .status()
            .expect("cannot run cargo");
        assert!(status.success(), "building the examples failed");
        profile_dir.join("examples")
    })
}

/// The path of a built example.
pub fn example_path(name: &str) -> PathBuf {
    let path = examples_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A command that runs a built example.
pub fn example(name: &str) -> Command {
    Command::new(example_path(name))
}

/// The Python twin of an example, `examples/python/<name>.py`.
pub fn python_twin(name: &str) -> PathBuf {
    root().join(format!("examples/python/{name}.py"))
}
