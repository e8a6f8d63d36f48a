//! Helpers shared by the integration tests: where the VNN-COMP benchmarks are.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;

/// `$NNCERT_BENCHMARKS`, or `../shared/benchmarks` next to the repository; `None` (after a loud
/// message on stderr) if it does not exist.
pub fn benchmarks_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("NNCERT_BENCHMARKS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/benchmarks"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        // Written to stderr directly, not with eprintln!, so that the test harness does not
        // capture it: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: ../shared/benchmarks not found (looked in {}; set NNCERT_BENCHMARKS)",
            dir.display()
        );
        None
    }
}

/// The distinct `.vnnlib` files referenced by `SUITE/instances.csv`, sorted, as
/// `(suite, path)`.
pub fn vnnlib_files(dir: &std::path::Path) -> Vec<(String, PathBuf)> {
    let mut suites: Vec<_> = std::fs::read_dir(dir)
        .expect("benchmarks dir is readable")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("instances.csv").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    suites.sort();
    let mut out = Vec::new();
    for suite in suites {
        let csv = std::fs::read_to_string(dir.join(&suite).join("instances.csv"))
            .expect("instances.csv is readable");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
        let col = header
            .iter()
            .position(|h| h.trim() == "vnnlib")
            .expect("instances.csv has a vnnlib column");
        let mut files: Vec<PathBuf> = lines
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                l.split(',')
                    .nth(col)
                    .map(|p| dir.join(&suite).join(p.trim()))
            })
            .collect();
        files.sort();
        files.dedup();
        out.extend(files.into_iter().map(|f| (suite.clone(), f)));
    }
    out
}
