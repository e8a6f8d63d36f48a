//! Bound methods on real benchmark networks (ACAS Xu and MNIST fully-connected): the tightness order
//! IBP ⊇ CROWN ⊇ α-CROWN holds constraint by constraint (same objective), and every method's lower bound of
//! each constraint's `c·y − rhs` holds at sampled points and box vertices. Reads `$NNCERT_BENCHMARKS` (default
//! `../shared/benchmarks`); skipped, loudly, when absent.

mod common;

use ndarray::Array2;
use nncert_bounds::dense::DenseReluNet;
use nncert_bounds::{BoundModel, Method};
use nncert_verify::incomplete::dense_case_bounds;
use rand::{RngExt, SeedableRng};
use std::path::PathBuf;

fn benchmarks() -> Option<PathBuf> {
    common::benchmarks(&["acasxu/instances.csv"], "tightness-order test")
}

/// (onnx, vnnlib) of every `step`-th instance of a suite.
fn instances(dir: &std::path::Path, step: usize) -> Vec<(PathBuf, PathBuf)> {
    let text = std::fs::read_to_string(dir.join("instances.csv")).unwrap();
    text.lines()
        .skip(1)
        .step_by(step)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (dir.join(f[1]), dir.join(f[2]))
        })
        .collect()
}

/// Every constraint of every disjunct of `case`, in order.
fn constraint_rows(case: &nncert_spec::Case) -> Vec<&nncert_spec::LinearConstraint> {
    case.output
        .disjuncts
        .iter()
        .flat_map(|d| &d.constraints)
        .collect()
}

/// Asserts IBP ≤ CROWN ≤ α-CROWN per row (margins `c·y − rhs`, up to rounding-term noise); returns on how many
/// rows CROWN beats IBP and α-CROWN beats CROWN strictly.
fn check_order(
    what: &std::path::Path,
    ibp: &[f64],
    crown: &[f64],
    alpha: &[f64],
) -> (usize, usize) {
    let (mut crown_strict, mut alpha_strict) = (0, 0);
    for r in 0..ibp.len() {
        let tol = 1e-6 * (1.0 + ibp[r].abs());
        assert!(
            crown[r] >= ibp[r] - tol && alpha[r] >= crown[r] - tol,
            "{}: row {r}: IBP {} CROWN {} α {}",
            what.display(),
            ibp[r],
            crown[r],
            alpha[r]
        );
        crown_strict += usize::from(crown[r] > ibp[r] + tol);
        alpha_strict += usize::from(alpha[r] > crown[r] + tol);
    }
    (crown_strict, alpha_strict)
}

/// Asserts that each row's margin `c·y − rhs` at the outputs `y` of a sampled point is not below its α bound.
fn check_below(
    what: &std::path::Path,
    rows: &[&nncert_spec::LinearConstraint],
    y: &[f64],
    alpha: &[f64],
) {
    for (r, k) in rows.iter().enumerate() {
        let v: f64 = k.coeffs.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() - k.rhs;
        assert!(
            v >= alpha[r] - 1e-9 * (1.0 + v.abs()),
            "{}: α-CROWN bound {} above the value {v} at a sampled point",
            what.display(),
            alpha[r]
        );
    }
}

#[test]
fn ibp_crown_alpha_are_ordered_and_sound_on_benchmark_nets() {
    let Some(dir) = benchmarks() else { return };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut rows_checked, mut crown_strict, mut alpha_strict, mut samples) = (0, 0, 0, 0usize);
    for (suite, step) in [("acasxu", 12), ("mnist_fc", 10)] {
        for (onnx, vnnlib) in instances(&dir.join(suite), step) {
            let graph = nncert_model::load_model(&onnx).unwrap();
            let prop = nncert_spec::parse_file(&vnnlib).unwrap();
            let net = DenseReluNet::from_graph(&graph).expect("feed-forward ReLU benchmark net");
            let model = BoundModel::new(&graph);
            let bounder = model.bounder();
            for case in &prop.cases {
                let rows = constraint_rows(case);
                let c = Array2::from_shape_fn((rows.len(), graph.output_size()), |(r, j)| {
                    rows[r].coeffs[j]
                });
                let widened = case.input.widened_one_ulp();
                let ibp_bounds = bounder.node_bounds(&widened, Method::Interval);
                let ibp: Vec<f64> = bounder
                    .output_lower(&c, &ibp_bounds)
                    .iter()
                    .zip(&rows)
                    .map(|(l, k)| l - k.rhs)
                    .collect();
                let crown: Vec<f64> = dense_case_bounds(&net, case, 0).margins.concat();
                let alpha: Vec<f64> = dense_case_bounds(&net, case, 10).margins.concat();
                let (c, a) = check_order(&vnnlib, &ibp, &crown, &alpha);
                rows_checked += ibp.len();
                crown_strict += c;
                alpha_strict += a;
                // Soundness of the tightest bound at random points and random vertices of the box.
                let n = case.input.dim();
                for s in 0..300 {
                    let x: Vec<f64> = (0..n)
                        .map(|j| {
                            let (l, u) = (case.input.lower[j], case.input.upper[j]);
                            if s % 3 == 0 {
                                if rng.random_bool(0.5) { l } else { u }
                            } else {
                                l + rng.random_range(0.0..=1.0) * (u - l)
                            }
                        })
                        .collect();
                    check_below(&vnnlib, &rows, &net.eval(&x), &alpha);
                    samples += 1;
                }
            }
        }
    }
    eprintln!(
        "tightness: {rows_checked} constraint rows; CROWN strictly tighter than IBP on {crown_strict}, \
         α-CROWN strictly tighter than CROWN on {alpha_strict}; {samples} sampled points"
    );
    assert!(rows_checked > 100, "too few rows checked: {rows_checked}");
    assert!(crown_strict > 0 && alpha_strict > 0);
}

/// The generic engine (every op of the IR): sigmoid/tanh MLPs with Sub/Div normalization (eran),
/// convolutional nets (oval21) and ACAS Xu: IBP ⊇ CROWN ⊇ α-CROWN (slopes optimized on intermediate nodes
/// too) per constraint, and the α-CROWN bound holds at sampled points and vertices (f64 executor).
#[test]
fn generic_ibp_crown_alpha_are_ordered_and_sound_on_benchmark_nets() {
    let Some(dir) = common::benchmarks(
        &[
            "eran/instances.csv",
            "oval21/instances.csv",
            "acasxu/instances.csv",
        ],
        "generic tightness-order test",
    ) else {
        return;
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let (mut rows_checked, mut crown_strict, mut alpha_strict, mut samples) = (0, 0, 0, 0usize);
    for (suite, step) in [("eran", 9), ("oval21", 10), ("acasxu", 12)] {
        for (onnx, vnnlib) in instances(&dir.join(suite), step) {
            let graph = nncert_model::load_model(&onnx).unwrap();
            let prop = nncert_spec::parse_file(&vnnlib).unwrap();
            let model = BoundModel::new(&graph);
            let bounder = model.bounder();
            let ev = nncert_model::eval::Evaluator::<f64>::new(&graph);
            for case in &prop.cases {
                let margins = |method: Method| -> Vec<f64> {
                    let res = nncert_verify::incomplete::refute_case_detailed(
                        &bounder, case, method, None, true,
                    );
                    let rhs = constraint_rows(case).into_iter().map(|k| k.rhs);
                    res.lower.iter().zip(rhs).map(|(l, r)| l - r).collect()
                };
                let ibp = margins(Method::Interval);
                let crown = margins(Method::Crown);
                let alpha = margins(Method::Alpha {
                    iterations: 10,
                    intermediate: 2,
                });
                let (c, a) = check_order(&vnnlib, &ibp, &crown, &alpha);
                rows_checked += ibp.len();
                crown_strict += c;
                alpha_strict += a;
                let n = case.input.dim();
                let points = 200;
                let x = Array2::from_shape_fn((points, n), |(s, j)| {
                    let (l, u) = (case.input.lower[j], case.input.upper[j]);
                    if s % 4 == 0 {
                        if rng.random_bool(0.5) { l } else { u }
                    } else {
                        l + rng.random_range(0.0..=1.0) * (u - l)
                    }
                });
                let y = ev.forward(x.view()).unwrap();
                let rows = constraint_rows(case);
                for yrow in y.rows() {
                    check_below(&vnnlib, &rows, yrow.as_slice().unwrap(), &alpha);
                    samples += 1;
                }
            }
        }
    }
    eprintln!(
        "generic tightness: {rows_checked} constraint rows; CROWN strictly tighter than IBP on {crown_strict}, \
         α-CROWN strictly tighter than CROWN on {alpha_strict}; {samples} sampled points"
    );
    assert!(rows_checked > 50, "too few rows checked: {rows_checked}");
    assert!(crown_strict > 0 && alpha_strict > 0);
}
