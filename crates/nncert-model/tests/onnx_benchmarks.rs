//! Every ONNX model of the shared VNN-COMP benchmarks loads, canonicalizes, and has the expected input and
//! output sizes. The benchmarks are read in place (never copied into the repository): from `$NNCERT_BENCHMARKS`,
//! else `../shared/benchmarks` beside the repository.

#![allow(clippy::result_large_err)]

use std::io::Write as _; // skips are written to stderr directly: the harness captures eprintln!

use nncert_model::{canon, onnx};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn benchmarks_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("NNCERT_BENCHMARKS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/benchmarks")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        let _ = writeln!(
            std::io::stderr(),
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
    let col = header
        .iter()
        .position(|h| h.trim() == "onnx")
        .expect("instances.csv has an onnx column");
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
    assert!(
        !suites.is_empty(),
        "no suites with instances.csv in {}",
        dir.display()
    );
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
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count > 0);
    println!("{count} models loaded");
}

mod data {
    include!("data/onnxruntime_benchmarks.rs");
}

/// The input of the recorded onnxruntime outputs (see tests/onnxruntime_benchmarks.py), computed in f32.
fn bench_input(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 + 11) % 101) as f32 / 101.0 - 0.25)
        .collect()
}

/// nncert's evaluation (f64 and f32) of every imported and canonicalized benchmark model agrees with
/// onnxruntime's.
#[test]
fn benchmark_models_compute_what_onnxruntime_computes() {
    use ndarray::Array2;
    use nncert_model::eval::Evaluator;
    let Some(dir) = benchmarks_dir() else { return };
    let mut failures = Vec::new();
    let mut checked = 0;
    for &(rel, shape, want) in data::BENCHMARK_OUTPUTS {
        let path = dir.join(rel);
        if !path.is_file() {
            let _ = writeln!(std::io::stderr(), "SKIPPED: {} not found", path.display());
            continue;
        }
        let raw = onnx::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let g = canon::canonicalize(raw.clone());
        assert_eq!(g.output().shape, shape, "{rel}");
        let x = bench_input(g.input_size());
        let x64 =
            Array2::from_shape_vec((1, x.len()), x.iter().map(|&v| v as f64).collect()).unwrap();
        let x32 = Array2::from_shape_vec((1, x.len()), x).unwrap();
        for (which, graph) in [("imported", &raw), ("canonical", &g)] {
            let y64 = Evaluator::<f64>::new(graph).forward(x64.view()).unwrap();
            let y32 = Evaluator::<f32>::new(graph).forward(x32.view()).unwrap();
            for (k, &w) in want.iter().enumerate() {
                let tol = 1e-4 * (1.0 + w.abs() as f64);
                let (a, b) = (y64[[0, k]], y32[[0, k]] as f64);
                if (a - w as f64).abs() > tol || (b - w as f64).abs() > tol {
                    failures.push(format!(
                        "{rel} ({which}): output {k} is {a} (f64) / {b} (f32), onnxruntime {w}"
                    ));
                    break;
                }
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("{checked} models agree with onnxruntime");
}

/// splitmix64, so that the mutants are the same on every run.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Truncated and corrupted real models never make the loader panic: they load or fail with an error.
#[test]
fn corrupted_benchmark_models_never_panic() {
    let Some(dir) = benchmarks_dir() else { return };
    let models = [
        ("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", 1200),
        ("cifar10_resnet/onnx/resnet_2b.onnx", 400),
        ("collins_rul_cnn/onnx/NN_rul_small_window_20.onnx", 400),
    ];
    let start = std::time::Instant::now();
    let (mut loaded, mut total) = (0, 0);
    for (seed, (rel, count)) in models.into_iter().enumerate() {
        let path = dir.join(rel);
        let Ok(bytes) = std::fs::read(&path) else {
            let _ = writeln!(std::io::stderr(), "SKIPPED: {} not found", path.display());
            continue;
        };
        // Mutate the graph structure (nodes, attributes, shapes) more often than the weights: most bytes are
        // weights, and a changed weight still loads.
        let mut rng = SplitMix(seed as u64 + 1);
        for k in 0..count {
            let mut b = bytes.clone();
            let pos = |rng: &mut SplitMix, len: usize| {
                if rng.below(2) == 0 {
                    rng.below(len.min(2048))
                } else {
                    rng.below(len)
                }
            };
            match k % 4 {
                0 => b.truncate(rng.below(bytes.len())),
                1 => {
                    for _ in 0..1 + rng.below(4) {
                        let i = pos(&mut rng, b.len());
                        b[i] ^= 1 << rng.below(8);
                    }
                }
                2 => {
                    let i = pos(&mut rng, b.len());
                    b[i] = [0u8, 1, 2, 3, 0x7f, 0x80, 0xff][rng.below(7)];
                }
                _ => {
                    let i = pos(&mut rng, b.len());
                    let j = (i + 1 + rng.below(16)).min(b.len());
                    let span = b[i..j].to_vec();
                    b.splice(i..i, span);
                }
            }
            total += 1;
            let r = std::panic::catch_unwind(|| {
                onnx::load_bytes(&b, std::path::Path::new("mutant.onnx")).map(canon::canonicalize)
            });
            match r {
                Ok(Ok(_)) => loaded += 1,
                Ok(Err(_)) => {}
                Err(_) => panic!("mutant {k} of {rel} panicked"),
            }
        }
    }
    println!("{total} mutants, {loaded} loaded, {:?}", start.elapsed());
}
