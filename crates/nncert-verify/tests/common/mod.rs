//! Shared by the integration tests that read the VNN-COMP suites.

use std::io::Write as _; // skips are written to stderr directly: the harness captures eprintln!
use std::path::PathBuf;

/// The benchmarks directory (`$NNCERT_BENCHMARKS`, default `../shared/benchmarks` beside the repository) when
/// it holds `needs` (a path inside it); otherwise prints `SKIPPED: … <what> not run` and returns `None`.
pub fn benchmarks(needs: &[&str], what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("NNCERT_BENCHMARKS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/benchmarks")
        });
    if needs.iter().all(|p| dir.join(p).exists()) {
        Some(dir)
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {} not found: {what} not run",
            dir.display()
        );
        None
    }
}
