//! The falsifier on the ACAS Xu suite with ground truth: every `sat` it prints must be a true `sat`, and it
//! must find most of the known counterexamples quickly. Reads `$NNCERT_BENCHMARKS` (default
//! `../shared/benchmarks`); skipped, loudly, when absent.

mod common;

use nncert_verify::{Verdict, VerifyOptions, verify};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn benchmarks() -> Option<PathBuf> {
    common::benchmarks(&["acasxu/truth.csv"], "ACAS Xu falsifier test")
}

/// (onnx, vnnlib, expected) for every ACAS Xu instance.
fn instances(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("acasxu/truth.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (o, v, e) = (col("onnx"), col("vnnlib"), col("expected"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[o].to_string(), f[v].to_string(), f[e].to_string())
        })
        .collect()
}

#[test]
fn acasxu_counterexamples_are_found_and_true() {
    let Some(dir) = benchmarks() else { return };
    let all = instances(&dir);
    let mut models = HashMap::new();
    let (mut sat_found, mut sat_total, mut proved, mut wrong) = (0, 0, 0, Vec::new());
    let start = Instant::now();
    for (onnx, vnnlib, expected) in &all {
        // Every sat instance with a short budget; the unsat ones briefly (they must never come out sat).
        let budget = if expected == "sat" { 5.0 } else { 0.05 };
        let graph = models
            .entry(onnx.clone())
            .or_insert_with(|| nncert_model::load_model(&dir.join("acasxu").join(onnx)).unwrap());
        let prop = nncert_spec::parse_file(&dir.join("acasxu").join(vnnlib)).unwrap();
        let opts = VerifyOptions {
            timeout: Duration::from_secs_f64(budget),
            seed: 0,
            ..VerifyOptions::default()
        };
        let r = verify(graph, &prop, &opts);
        if expected == "sat" {
            sat_total += 1;
        }
        match (&r.verdict, expected.as_str()) {
            (Verdict::Sat(_), "sat") => sat_found += 1,
            (Verdict::Unsat { .. }, "unsat") => proved += 1,
            (Verdict::Sat(_) | Verdict::Unsat { .. }, _) => wrong.push(format!(
                "{onnx} {vnnlib}: {} but truth {expected}",
                r.verdict.word()
            )),
            _ => {}
        }
    }
    eprintln!(
        "ACAS Xu: {sat_found}/{sat_total} sat found, {proved} unsat proved, {} wrong, {:.1} s",
        wrong.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(wrong.is_empty(), "wrong answers: {wrong:#?}");
    assert_eq!(sat_total, 47);
    assert!(
        sat_found >= 40,
        "only {sat_found} of 47 counterexamples found"
    );
}
