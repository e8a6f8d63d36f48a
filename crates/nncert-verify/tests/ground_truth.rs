//! The complete verifier against ground truth, as CI's correctness regression: every instance of the `test`
//! suite and every 15th ACAS Xu instance, with short budgets. Any answer contradicting `truth.csv` fails, and
//! so does solving fewer instances than this code did when the test was written. Reads `$NNCERT_BENCHMARKS`
//! (default `../shared/benchmarks`); skipped, loudly, when absent.

mod common;

use nncert_verify::{Verdict, VerifyOptions, verify};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn benchmarks() -> Option<PathBuf> {
    common::benchmarks(
        &["acasxu/truth.csv", "test/truth.csv"],
        "ground-truth regression",
    )
}

/// (onnx, vnnlib, expected) of every `step`-th instance of `suite`, from its truth.csv.
fn instances(dir: &std::path::Path, step: usize) -> Vec<(PathBuf, PathBuf, String)> {
    let text = std::fs::read_to_string(dir.join("truth.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (o, v, e) = (col("onnx"), col("vnnlib"), col("expected"));
    lines
        .step_by(step)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (dir.join(f[o]), dir.join(f[v]), f[e].to_string())
        })
        .collect()
}

fn run(suite: &str, step: usize, budget: f64, min_solved: usize) {
    let Some(dir) = benchmarks() else { return };
    let (mut solved, mut total) = (0, 0);
    let start = Instant::now();
    for (onnx, vnnlib, expected) in instances(&dir.join(suite), step) {
        let graph = nncert_model::load_model(&onnx).unwrap();
        let prop = nncert_spec::parse_file(&vnnlib).unwrap();
        let opts = VerifyOptions {
            timeout: Duration::from_secs_f64(budget),
            ..Default::default()
        };
        let t = Instant::now();
        let result = verify(&graph, &prop, &opts);
        let word = result.verdict.word();
        eprintln!(
            "{suite}: {} {} -> {word} in {:.2} s (truth {expected})",
            onnx.file_name().unwrap().to_string_lossy(),
            vnnlib.file_name().unwrap().to_string_lossy(),
            t.elapsed().as_secs_f64()
        );
        match (&result.verdict, expected.as_str()) {
            (Verdict::Sat(_), "unsat") | (Verdict::Unsat { .. }, "sat") => {
                panic!(
                    "WRONG answer {word} on {} {}",
                    onnx.display(),
                    vnnlib.display()
                )
            }
            (Verdict::Sat(_), "sat") | (Verdict::Unsat { .. }, "unsat") => solved += 1,
            _ => {}
        }
        total += 1;
    }
    eprintln!(
        "{suite}: {solved} of {total} solved, 0 wrong, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        solved >= min_solved,
        "{suite}: only {solved} of {total} solved (regression: at least {min_solved} expected)"
    );
}

#[test]
fn test_suite_is_solved_exactly() {
    run("test", 1, 10.0, 5);
}

#[test]
fn acasxu_subset_has_no_wrong_answer() {
    run("acasxu", 15, 3.0, 6);
}

#[test]
fn a_tiny_memory_limit_ends_in_unknown_not_in_a_crash() {
    let Some(dir) = benchmarks() else { return };
    // ACAS Xu 1_1 prop_5 needs tens of thousands of sub-boxes: with 64 KiB, the queue limit stops the search.
    let acas = dir.join("acasxu");
    let graph =
        nncert_model::load_model(&acas.join("onnx/ACASXU_run2a_1_1_batch_2000.onnx")).unwrap();
    let prop = nncert_spec::parse_file(&acas.join("vnnlib/prop_5.vnnlib")).unwrap();
    let opts = VerifyOptions {
        timeout: Duration::from_secs(5),
        memory_limit: 64 << 10,
        ..Default::default()
    };
    let t = Instant::now();
    let result = verify(&graph, &prop, &opts);
    assert!(
        matches!(result.verdict, Verdict::Unknown | Verdict::Timeout),
        "{}",
        result.verdict.word()
    );
    // The search stopped at the queue limit (a few hundred open boxes; unlimited, it bounds tens of
    // thousands in this time), the falsifier took the rest of the budget, and the timeout held.
    assert!(result.domains < 5_000, "{} sub-domains", result.domains);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}
