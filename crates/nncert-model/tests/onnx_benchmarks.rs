//! Every ONNX model of the shared VNN-COMP benchmarks loads, canonicalizes, and has the expected input and
//! output sizes. The benchmarks are read in place (never copied into the repository): from `$NNCERT_BENCHMARKS`,
//! else `../shared/benchmarks` beside the repository.

use nncert_model::{canon, onnx};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn benchmarks_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("NNCERT_BENCHMARKS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/benchmarks"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: benchmarks directory {} not found (set NNCERT_BENCHMARKS)",
            dir.display()
        );
        None
    }
}

/// The distinct model paths listed in a suite's instances.csv (column `onnx`).
fn models_of(suite: &std::path::Path) -> Vec<PathBuf> {
    let Ok(csv) = std::fs::read_to_string(suite.join("instances.csv")) else {
        return vec![];
    };
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = header.iter().position(|h| h.trim() == "onnx").expect("instances.csv has an onnx column");
    let set: BTreeSet<String> = lines
        .filter_map(|l| l.split(',').nth(col).map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    set.into_iter().map(|s| suite.join(s)).collect()
}

/// Expected (input size, output size) of a model of a suite.
fn expected(suite: &str, file: &str) -> Option<(usize, usize)> {
    Some(match suite {
        "acasxu" => (5, 5),
        "mnist_fc" | "eran" => (784, 10),
        "oval21" | "cifar10_resnet" => (3072, 10),
        "collins_rul_cnn" if file.contains("window_20") => (400, 1),
        "collins_rul_cnn" if file.contains("window_40") => (800, 1),
        "test" if file.contains("sat") => (5, 5),
        "test" => (1, 1),
        _ => return None,
    })
}

#[test]
fn every_benchmark_model_loads() {
    let Some(dir) = benchmarks_dir() else { return };
    let mut suites: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("readable benchmarks dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("instances.csv").is_file())
        .collect();
    suites.sort();
    assert!(!suites.is_empty(), "no suites with instances.csv in {}", dir.display());
    let mut failures = Vec::new();
    let mut count = 0;
    for suite in &suites {
        let sname = suite.file_name().unwrap().to_string_lossy().to_string();
        for model in models_of(suite) {
            let fname = model.file_name().unwrap().to_string_lossy().to_string();
            let raw = match onnx::load(&model) {
                Ok(g) => g,
                Err(e) => {
                    failures.push(format!("{}: {e}", model.display()));
                    continue;
                }
            };
            let g = canon::canonicalize(raw.clone());
            count += 1;
            let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.kind()).collect();
            println!(
                "{sname}/{fname}: {} -> {}; {} nodes raw, {} canonical: {}",
                g.input_size(),
                g.output_size(),
                raw.nodes().len(),
                g.nodes().len(),
                ops.join(" ")
            );
            assert_eq!(raw.input_size(), g.input_size());
            assert_eq!(raw.output_size(), g.output_size());
            match expected(&sname, &fname) {
                Some((i, o)) => {
                    if (g.input_size(), g.output_size()) != (i, o) {
                        failures.push(format!(
                            "{}: sizes {} -> {}, expected {i} -> {o}",
                            model.display(),
                            g.input_size(),
                            g.output_size()
                        ));
                    }
                }
                None => println!("  (no expected sizes for suite {sname})"),
            }
            let info = onnx::inspect(&model).expect("inspect");
            assert!(info.unsupported_ops().is_empty(), "{info}");
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(count > 0);
    println!("{count} models loaded");
}
