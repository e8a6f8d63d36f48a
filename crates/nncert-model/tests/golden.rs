//! Golden test: every benchmark network, imported with `load_model` and evaluated in f32 and in f64, reproduces
//! onnxruntime's outputs on 20 random inputs from its property's input box.
//!
//! The goldens are made by `python3 scripts/make_goldens.py [BENCHMARKS [OUT]]` (numpy, onnx, onnxruntime):
//! `OUT/manifest.csv` (`suite,onnx,name`) and per model `OUT/<name>.x.npy` (f32 `[20, input_size]`) and
//! `OUT/<name>.y.npy` (f32 `[20, output_size]`). Locations: `NNCERT_GOLDENS` (default `target/goldens` in the
//! workspace) and `NNCERT_BENCHMARKS` (default `../shared/benchmarks` beside the workspace). Without them the test
//! prints `SKIPPED` and passes.
//!
//! Tolerance per output: `|ours − ort| ≤ 1e-6 + 1e-5·|ort|`.

use ndarray::Array2;
use nncert_model::eval::Evaluator;
use nncert_model::load_model;
use std::io::Write as _; // skips are written to stderr directly: the harness captures eprintln!
use std::path::{Path, PathBuf};

const ABS_TOL: f64 = 1e-6;
const REL_TOL: f64 = 1e-5;

fn location(var: &str, default_rel: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(default_rel),
    }
}

/// A 2-D f32 `.npy` file (C order).
fn read_npy_2d(path: &Path) -> Result<Array2<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| format!("{}: {e}", path.display()))?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 || npy.order() != npyz::Order::C {
        return Err(format!(
            "{}: expected a 2-D C-order array, got shape {shape:?}",
            path.display()
        ));
    }
    let data: Vec<f32> = npy
        .into_vec()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Array2::from_shape_vec((shape[0] as usize, shape[1] as usize), data)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Worst deviations of one evaluation from onnxruntime.
#[derive(Default)]
struct Errors {
    max_abs: f64,
    max_rel: f64,
    /// Largest `|err| / (ABS_TOL + REL_TOL·|ort|)`: above 1 fails.
    max_ratio: f64,
    /// The first output out of tolerance: (sample, output, ours, ort).
    first_bad: Option<(usize, usize, f64, f64)>,
    bad: usize,
}

fn compare(ours: &Array2<f64>, ort: &Array2<f32>) -> Errors {
    let mut e = Errors::default();
    for ((s, o), &want) in ort.indexed_iter() {
        let want = want as f64;
        let got = ours[[s, o]];
        let err = (got - want).abs();
        let allowed = ABS_TOL + REL_TOL * want.abs();
        e.max_abs = e.max_abs.max(err);
        if want != 0.0 {
            e.max_rel = e.max_rel.max(err / want.abs());
        }
        // NaN-safe: a NaN output is out of tolerance.
        let ratio = if err.is_nan() {
            f64::INFINITY
        } else {
            err / allowed
        };
        e.max_ratio = e.max_ratio.max(ratio);
        if err.is_nan() || err > allowed {
            e.bad += 1;
            if e.first_bad.is_none() {
                e.first_bad = Some((s, o, got, want));
            }
        }
    }
    e
}

/// Checks one manifest row; `Ok(report line)` or `Err(failure message)`.
fn check_model(
    bench: &Path,
    goldens: &Path,
    suite: &str,
    onnx: &str,
    name: &str,
) -> Result<String, String> {
    let model_path = bench.join(suite).join(onnx);
    let graph = load_model(&model_path).map_err(|e| format!("load_model failed: {e}"))?;
    let x = read_npy_2d(&goldens.join(format!("{name}.x.npy")))?;
    let y = read_npy_2d(&goldens.join(format!("{name}.y.npy")))?;
    if x.ncols() != graph.input_size() || y.ncols() != graph.output_size() || x.nrows() != y.nrows()
    {
        return Err(format!(
            "golden shapes x {:?}, y {:?} do not fit the model (input size {}, output size {})",
            x.dim(),
            y.dim(),
            graph.input_size(),
            graph.output_size()
        ));
    }
    let y32 = Evaluator::<f32>::new(&graph)
        .forward(x.view())
        .map_err(|e| format!("f32 forward failed: {e}"))?
        .mapv(|v| v as f64);
    let y64 = Evaluator::<f64>::new(&graph)
        .forward(x.mapv(|v| v as f64).view())
        .map_err(|e| format!("f64 forward failed: {e}"))?;
    let mut line = format!("{name:<45}");
    let mut failures = Vec::new();
    for (prec, ours) in [("f32", &y32), ("f64", &y64)] {
        let e = compare(ours, &y);
        line += &format!(
            "  {prec}: max abs {:.2e} rel {:.2e} (tolerance used {:.0}%)",
            e.max_abs,
            e.max_rel,
            100.0 * e.max_ratio
        );
        if let Some((s, o, got, want)) = e.first_bad {
            failures.push(format!(
                "{prec}: {} of {} outputs out of tolerance; first: sample {s}, output {o}: nncert {got:e}, \
                 onnxruntime {want:e} (|diff| {:.3e}); max abs error {:.3e}, max rel error {:.3e}",
                e.bad,
                y.len(),
                (got - want).abs(),
                e.max_abs,
                e.max_rel
            ));
        }
    }
    if failures.is_empty() {
        Ok(line)
    } else {
        Err(failures.join("\n    "))
    }
}

#[test]
fn benchmark_networks_match_onnxruntime() {
    let goldens = location("NNCERT_GOLDENS", "../../target/goldens");
    let bench = location("NNCERT_BENCHMARKS", "../../../shared/benchmarks");
    let manifest_path = goldens.join("manifest.csv");
    if !bench.is_dir() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: golden test: benchmarks not found at {} (set NNCERT_BENCHMARKS)",
            bench.display()
        );
        return;
    }
    if !manifest_path.is_file() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: golden test: no goldens at {} — make them with `python3 scripts/make_goldens.py {} {}` \
             (needs pip packages numpy, onnx, onnxruntime), or set NNCERT_GOLDENS",
            manifest_path.display(),
            bench.display(),
            goldens.display()
        );
        return;
    }
    let manifest = std::fs::read_to_string(&manifest_path)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
    let mut lines = manifest.lines().filter(|l| !l.trim().is_empty());
    assert_eq!(
        lines.next().map(str::trim),
        Some("suite,onnx,name"),
        "{}: unexpected header",
        manifest_path.display()
    );
    let rows: Vec<(String, String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            assert_eq!(f.len(), 3, "{}: bad row {l:?}", manifest_path.display());
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect();
    assert!(!rows.is_empty(), "{}: no models", manifest_path.display());

    let mut checked = 0;
    let mut failures = Vec::new();
    for (suite, onnx, name) in &rows {
        let r = std::panic::catch_unwind(|| check_model(&bench, &goldens, suite, onnx, name))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(format!("panicked: {msg}"))
            });
        checked += 1;
        match r {
            Ok(line) => eprintln!("{line}"),
            Err(e) => {
                eprintln!("{name:<45}  FAILED");
                failures.push(format!("{suite}/{onnx} ({name}):\n    {e}"));
            }
        }
    }
    eprintln!(
        "golden: {checked} models checked, {} failed (tolerance |diff| <= {ABS_TOL:e} + {REL_TOL:e}·|ort|)",
        failures.len()
    );
    assert_eq!(checked, rows.len(), "every manifest row must be checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} models differ from onnxruntime:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
