//! Helpers shared by the CLI test files: run the built `nncert` binary from the repository root.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (the bundled examples' paths are relative to it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `nncert ARGS` in the repository root.
pub fn nncert(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nncert"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("binary runs")
}

/// Process output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
