//! The MILP optimum against independent evidence on small random networks of every encoded op kind:
//! - the sound lower bound of the bounds engine is below the MILP's dual bound (up to the tolerance);
//! - the margin of every sampled point is above the dual bound (the MILP covers the whole box);
//! - the solver's point, re-evaluated by the model evaluator, has the margin the solver claims (the encoding
//!   is exact), which is at most the best sampled margin;
//! - every `sat` of `verify_milp` re-checks as a counterexample.

use ndarray::{Array1, Array2, Array4, ArrayD, IxDyn};
use nncert_milp::{MilpOptions, optimal_margin, verify_milp};
use nncert_model::Graph;
use nncert_model::eval::Evaluator;
use nncert_model::ir::{Conv, GraphBuilder, Linear, Op, Pool};
use nncert_spec::{Case, Conjunction, InputBox, LinearConstraint, OutputCondition, Property};
use nncert_verify::Verdict;
use std::time::Duration;

/// A small deterministic generator (xorshift), so the test does not depend on a random crate's API.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn sym(&mut self) -> f32 {
        (2.0 * self.next() - 1.0) as f32
    }
}

fn linear(rng: &mut Rng, out: usize, inp: usize) -> Op {
    let scale = 1.5 / (inp as f32).sqrt();
    Op::Linear(Linear {
        weight: Array2::from_shape_fn((out, inp), |_| rng.sym() * scale),
        bias: Some(Array1::from_shape_fn(out, |_| rng.sym() * 0.3)),
    })
}

/// Dense ReLU (or LeakyReLU) network `n_in → h → h → n_out`.
fn dense(rng: &mut Rng, n_in: usize, h: usize, n_out: usize, leaky: bool) -> Graph {
    let mut b = GraphBuilder::new("x", vec![n_in]);
    let mut x = b.input_id();
    let mut width = n_in;
    for (k, w) in [h, h].into_iter().enumerate() {
        x = b
            .push(format!("fc{k}"), linear(rng, w, width), vec![x], None)
            .unwrap();
        let act = if leaky {
            Op::LeakyRelu { alpha: 0.1 }
        } else {
            Op::Relu
        };
        x = b.push(format!("act{k}"), act, vec![x], None).unwrap();
        width = w;
    }
    let y = b
        .push("out", linear(rng, n_out, width), vec![x], None)
        .unwrap();
    b.finish(y)
}

/// A residual block: `h = relu(W1 x)`, `r = relu(W2 h + h)` (Add of two variables), output `W3 r`.
fn residual(rng: &mut Rng, n_in: usize, h: usize, n_out: usize) -> Graph {
    let mut b = GraphBuilder::new("x", vec![n_in]);
    let x = b.input_id();
    let z1 = b.push("fc1", linear(rng, h, n_in), vec![x], None).unwrap();
    let h1 = b.push("relu1", Op::Relu, vec![z1], None).unwrap();
    let z2 = b.push("fc2", linear(rng, h, h), vec![h1], None).unwrap();
    let s = b.push("add", Op::Add, vec![z2, h1], None).unwrap();
    let aff = Op::Affine {
        scale: Some(ArrayD::from_elem(IxDyn(&[1]), 0.7)),
        shift: Some(ArrayD::from_elem(IxDyn(&[1]), 0.05)),
    };
    let s = b.push("scale", aff, vec![s], None).unwrap();
    let r = b.push("relu2", Op::Relu, vec![s], None).unwrap();
    let y = b.push("out", linear(rng, n_out, h), vec![r], None).unwrap();
    b.finish(y)
}

/// Conv 1→3 channels (3x3, pad 1) on a 1x5x5 image, ReLU, MaxPool 2x2 stride 2 (→ 3x2x2), flatten, Linear.
fn conv_pool(rng: &mut Rng, n_out: usize) -> Graph {
    let mut b = GraphBuilder::new("x", vec![1, 1, 5, 5]);
    let x = b.input_id();
    let conv = Op::Conv(Conv {
        weight: Array4::from_shape_fn((3, 1, 3, 3), |_| rng.sym() * 0.6),
        bias: Some(Array1::from_shape_fn(3, |_| rng.sym() * 0.2)),
        strides: [1, 1],
        pads: [1, 1, 1, 1],
        dilations: [1, 1],
        groups: 1,
    });
    let c = b.push("conv", conv, vec![x], None).unwrap();
    let r = b.push("relu", Op::Relu, vec![c], None).unwrap();
    let pool = Op::MaxPool(Pool {
        kernel: [2, 2],
        strides: [2, 2],
        pads: [0, 0, 0, 0],
        dilations: [1, 1],
    });
    let p = b
        .push("pool", pool, vec![r], Some(vec![1, 3, 2, 2]))
        .unwrap();
    let f = b
        .push("flatten", Op::Reshape, vec![p], Some(vec![1, 12]))
        .unwrap();
    let y = b
        .push("out", linear(rng, n_out, 12), vec![f], None)
        .unwrap();
    b.finish(y)
}

fn eval(g: &Graph, x: &[f64]) -> Vec<f64> {
    let a = Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap();
    Evaluator::<f64>::new(g)
        .forward(a.view())
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// A property on one box around a random centre with one disjunct of `rows` random constraints, the
/// right-hand side set so that the centre's margin is `offset`.
fn property(rng: &mut Rng, g: &Graph, eps: f64, rows: usize, offset: f64) -> Property {
    let n = g.input_size();
    let m = g.output_size();
    let centre: Vec<f64> = (0..n).map(|_| f64::from(rng.sym())).collect();
    let y = eval(g, &centre);
    let constraints = (0..rows)
        .map(|_| {
            let coeffs: Vec<f64> = (0..m).map(|_| f64::from(rng.sym())).collect();
            let cy: f64 = coeffs.iter().zip(&y).map(|(a, b)| a * b).sum();
            LinearConstraint {
                coeffs,
                rhs: cy - offset,
                strict: false,
            }
        })
        .collect();
    Property {
        num_inputs: n,
        num_outputs: m,
        cases: vec![Case {
            input: InputBox {
                lower: centre.iter().map(|c| c - eps).collect(),
                upper: centre.iter().map(|c| c + eps).collect(),
            },
            output: OutputCondition {
                disjuncts: vec![Conjunction { constraints }],
            },
        }],
    }
}

/// Sound lower bound of the disjunct's margin from the bounds engine (CROWN).
fn crown_lower(g: &Graph, p: &Property) -> f64 {
    let model = nncert_bounds::BoundModel::new(g);
    let bounder = model.bounder();
    let case = &p.cases[0];
    let bounds = bounder.node_bounds(&case.input, nncert_bounds::Method::Crown);
    let d = &case.output.disjuncts[0];
    let c = Array2::from_shape_fn((d.constraints.len(), g.output_size()), |(r, j)| {
        d.constraints[r].coeffs[j]
    });
    bounder
        .output_lower(&c, &bounds)
        .iter()
        .zip(&d.constraints)
        .map(|(l, k)| l - k.rhs)
        .fold(f64::NEG_INFINITY, f64::max)
}

fn check_instance(g: &Graph, p: &Property, rng: &mut Rng, label: &str) {
    let ms = optimal_margin(g, p, 0, 0, Duration::from_secs(30)).unwrap();
    let tol = ms.tolerance;
    let (obj, x) = ms.best.clone().expect("a solver point");
    assert!(!ms.timed_out, "{label}: timed out");
    let margin_of = |x: &[f64]| p.cases[0].output.margin(&eval(g, x));
    // The encoding is exact: the point's real margin is the solver's.
    let real = margin_of(&x);
    assert!(
        (real - obj).abs() <= 10.0 * tol,
        "{label}: solver says {obj}, point has {real}"
    );
    // Dual bound ≤ optimum ≤ every sampled margin; sound bound ≤ dual bound.
    assert!(
        ms.lower <= obj + tol,
        "{label}: dual bound {} above the point's margin {obj}",
        ms.lower
    );
    let lb = crown_lower(g, p);
    assert!(
        lb <= ms.lower + tol,
        "{label}: sound bound {lb} above the MILP dual bound {}",
        ms.lower
    );
    let b = &p.cases[0].input;
    let mut best_sample = f64::INFINITY;
    for _ in 0..400 {
        let s: Vec<f64> = b
            .lower
            .iter()
            .zip(&b.upper)
            .map(|(l, u)| l + (u - l) * rng.next())
            .collect();
        let m = margin_of(&s);
        assert!(
            m >= ms.lower - tol,
            "{label}: sampled margin {m} below the dual bound {}",
            ms.lower
        );
        best_sample = best_sample.min(m);
    }
    assert!(
        obj <= best_sample + tol,
        "{label}: MILP optimum {obj} above a sampled margin {best_sample}"
    );
    // The verdict agrees with the optimum, and a sat is a checked counterexample.
    let out = verify_milp(
        g,
        p,
        &MilpOptions {
            timeout: Duration::from_secs(30),
        },
    )
    .unwrap();
    match &out.result.verdict {
        Verdict::Sat(c) => {
            assert!(obj <= tol, "{label}: sat but optimum {obj}");
            assert!(nncert_verify::check::check_candidate(g, p, c.case, &c.input).is_some());
        }
        Verdict::Unsat { .. } => assert!(obj > 0.0, "{label}: unsat but optimum {obj}"),
        v => assert!(
            obj.abs() <= 10.0 * tol,
            "{label}: {v:?} with optimum {obj} far from 0"
        ),
    }
}

#[test]
fn milp_optimum_matches_bounds_samples_and_reexecution() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for t in 0..6 {
        let offset = [0.3, -0.2, 0.05][t % 3];
        let g = dense(&mut rng, 4, 12, 3, false);
        let p = property(&mut rng, &g, 0.3, 1 + t % 2, offset);
        check_instance(&g, &p, &mut rng, &format!("relu #{t}"));
        let g = dense(&mut rng, 3, 10, 2, true);
        let p = property(&mut rng, &g, 0.4, 1, offset);
        check_instance(&g, &p, &mut rng, &format!("leaky #{t}"));
        let g = residual(&mut rng, 3, 8, 3);
        let p = property(&mut rng, &g, 0.4, 2, offset);
        check_instance(&g, &p, &mut rng, &format!("residual #{t}"));
    }
    for t in 0..3 {
        let g = conv_pool(&mut rng, 3);
        let p = property(&mut rng, &g, 0.15, 1, [0.2, -0.1, 0.0][t]);
        check_instance(&g, &p, &mut rng, &format!("conv+maxpool #{t}"));
    }
}

#[test]
fn unsupported_op_names_the_node() {
    let mut b = GraphBuilder::new("x", vec![2]);
    let x = b.input_id();
    let s = b.push("squash", Op::Sigmoid, vec![x], None).unwrap();
    let g = b.finish(s);
    let p = Property {
        num_inputs: 2,
        num_outputs: 2,
        cases: vec![Case {
            input: InputBox {
                lower: vec![0.0; 2],
                upper: vec![1.0; 2],
            },
            output: OutputCondition {
                disjuncts: vec![Conjunction {
                    constraints: vec![LinearConstraint {
                        coeffs: vec![1.0, 0.0],
                        rhs: 0.0,
                        strict: false,
                    }],
                }],
            },
        }],
    };
    let e = verify_milp(&g, &p, &MilpOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("squash") && e.contains("Sigmoid"), "{e}");
}

#[test]
fn export_writes_lp_and_mps() {
    let mut rng = Rng(7);
    let g = dense(&mut rng, 3, 6, 2, false);
    let p = property(&mut rng, &g, 0.2, 1, 0.1);
    let dir = std::env::temp_dir().join(format!("nncert-milp-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["lp", "mps"] {
        let path = dir.join(format!("m.{ext}"));
        let files = nncert_milp::export(&g, &p, &path).unwrap();
        assert_eq!(files, vec![path.clone()]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("margin"), "{ext}: no margin column");
        assert!(text.contains("X_0"), "{ext}: no input column");
    }
    assert!(nncert_milp::export(&g, &p, &dir.join("m.txt")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A random LP `lo ≤ A x ≤ up`, `x ∈ box`, built around a point `x0` that satisfies every row exactly (rows
/// get slack ≥ 0 on both sides, some one-sided), so `x0` is feasible without any tolerance.
fn random_lp(rng: &mut Rng, n: usize, m: usize) -> (nncert_milp::encode::Program, Vec<f64>) {
    use nncert_milp::encode::{ColKind, Program, RowSpec};
    let mut prog = Program::default();
    let x0: Vec<f64> = (0..n).map(|_| f64::from(rng.sym())).collect();
    for (i, &v) in x0.iter().enumerate() {
        let c = prog.add_col(
            v - rng.next() - 0.1,
            v + rng.next() + 0.1,
            false,
            ColKind::Input(i),
        );
        prog.cols[c].cost = f64::from(rng.sym());
    }
    for _ in 0..m {
        let mut terms: Vec<(usize, f64)> = Vec::new();
        for j in 0..n {
            if rng.next() < 0.7 {
                terms.push((j, f64::from(rng.sym())));
            }
        }
        let v: f64 = terms.iter().map(|&(j, a)| a * x0[j]).sum();
        // Slack well above the rounding of `v`, so x0 satisfies the row in exact arithmetic too.
        let (lo, up) = match rng.next() {
            p if p < 0.3 => (v - 0.1 * rng.next() - 1e-9, f64::INFINITY),
            p if p < 0.6 => (f64::NEG_INFINITY, v + 0.1 * rng.next() + 1e-9),
            _ => (v - 0.1 * rng.next() - 1e-9, v + 0.1 * rng.next() + 1e-9),
        };
        prog.rows.push(RowSpec {
            lower: lo,
            upper: up,
            terms,
        });
    }
    (prog, x0)
}

/// The safe LP bound (Neumaier–Shcherbina) from HiGHS's duals is within 1e-6 of the optimum and never above
/// it; from arbitrary multipliers it is still below the objective at a point feasible in exact arithmetic.
#[test]
fn certified_lp_bounds_are_tight_from_duals_and_valid_from_any_multipliers() {
    use nncert_milp::solve::{certified_lower_bound, minimize_lp};
    let mut rng = Rng(0x5eed_1eaf);
    let mut tight = 0;
    for trial in 0..60 {
        let (n, m) = (2 + trial % 7, 1 + trial % 9);
        let (prog, x0) = random_lp(&mut rng, n, m);
        let cost_at_x0: f64 = prog.cols.iter().zip(&x0).map(|(c, v)| c.cost * v).sum();
        let rep = minimize_lp(&prog, Duration::from_secs(5)).unwrap();
        let (opt, _) = rep.primal.clone().expect("the LP is feasible (x0)");
        assert!(
            opt <= cost_at_x0 + 1e-6,
            "trial {trial}: optimum {opt} above x0's {cost_at_x0}"
        );
        let y = rep.row_duals.expect("HiGHS reports row duals");
        let neg: Vec<f64> = y.iter().map(|v| -v).collect();
        let lb = certified_lower_bound(&prog, &y).max(certified_lower_bound(&prog, &neg));
        assert!(
            lb <= opt + 1e-7,
            "trial {trial}: certified {lb} above the optimum {opt}"
        );
        if lb >= opt - 1e-6 {
            tight += 1;
        }
        for _ in 0..20 {
            let r: Vec<f64> = (0..m).map(|_| 3.0 * f64::from(rng.sym())).collect();
            let b = certified_lower_bound(&prog, &r);
            assert!(
                b <= cost_at_x0,
                "trial {trial}: bound {b} from random multipliers above the objective {cost_at_x0} at a \
                 feasible point"
            );
        }
    }
    assert!(
        tight >= 55,
        "only {tight}/60 certified bounds within 1e-6 of the LP optimum"
    );
}

/// An infeasible LP is certified infeasible from HiGHS's dual ray; a feasible one never is, whatever the
/// multipliers.
#[test]
fn farkas_certificates_check_only_for_infeasible_lps() {
    use nncert_milp::encode::{ColKind, Program, RowSpec};
    use nncert_milp::solve::{certified_infeasible, minimize_lp};
    let mut prog = Program::default();
    for i in 0..3 {
        prog.add_col(0.0, 1.0, false, ColKind::Input(i));
    }
    // x0 + x1 + x2 >= 3.5 cannot hold with every x_i <= 1.
    prog.rows.push(RowSpec {
        lower: 3.5,
        upper: f64::INFINITY,
        terms: vec![(0, 1.0), (1, 1.0), (2, 1.0)],
    });
    prog.rows.push(RowSpec {
        lower: f64::NEG_INFINITY,
        upper: 0.5,
        terms: vec![(0, 1.0), (1, -1.0)],
    });
    let rep = minimize_lp(&prog, Duration::from_secs(5)).unwrap();
    assert_eq!(rep.status, highs::HighsModelStatus::Infeasible);
    let ray = rep
        .dual_ray
        .expect("HiGHS gives a dual ray for an infeasible LP");
    assert!(
        certified_infeasible(&prog, &ray),
        "ray {ray:?} not accepted"
    );
    let mut rng = Rng(0xfa4c);
    for trial in 0..40 {
        let (prog, _) = random_lp(&mut rng, 3 + trial % 5, 2 + trial % 6);
        for _ in 0..20 {
            let r: Vec<f64> = (0..prog.rows.len())
                .map(|_| 5.0 * f64::from(rng.sym()))
                .collect();
            assert!(
                !certified_infeasible(&prog, &r),
                "trial {trial}: a feasible LP 'certified' infeasible"
            );
        }
    }
}

/// ReLU-splitting branch-and-bound with HiGHS leaves (LP only, and small MILPs) never contradicts the MILP
/// engine on random networks with 20 varying inputs; LP-only leaves never claim a tolerance-level proof.
#[test]
fn relu_split_with_leaf_solver_agrees_with_the_milp_engine() {
    use nncert_verify::{VerifyOptions, verify};
    let mut rng = Rng(0x1eaf_0b0b);
    let (mut calls, mut decided_leaves, mut compared) = (0, 0, 0);
    for trial in 0..24 {
        let g = dense(&mut rng, 20, 10, 3, false);
        let p = property(&mut rng, &g, 0.15 + 0.05 * (trial % 4) as f64, 2, 0.3);
        let milp = verify_milp(
            &g,
            &p,
            &MilpOptions {
                timeout: Duration::from_secs(20),
            },
        )
        .unwrap();
        for k in [0usize, 10] {
            let opts = VerifyOptions {
                timeout: Duration::from_secs(4),
                leaf_solver: nncert_milp::leaf::leaf_solver_for(&g, &p, k),
                ..VerifyOptions::default()
            };
            assert!(opts.leaf_solver.is_some());
            let r = verify(&g, &p, &opts);
            calls += r.leaves.calls;
            decided_leaves +=
                r.leaves.refuted_rigorous + r.leaves.refuted_tolerance + r.leaves.counterexamples;
            if k == 0 {
                assert_eq!(
                    r.leaves.refuted_tolerance, 0,
                    "trial {trial}: LP leaves gave a tolerance proof"
                );
                if let Verdict::Unsat { method } = &r.verdict {
                    assert!(method.contains("sound under floating point"), "{method}");
                }
            }
            let (a, b) = (r.verdict.word(), milp.result.verdict.word());
            if matches!(a, "sat" | "unsat") && matches!(b, "sat" | "unsat") {
                compared += 1;
                assert_eq!(
                    a, b,
                    "trial {trial}, leaves ≤ {k}: branch-and-bound says {a}, MILP {b}"
                );
            }
            if let Verdict::Sat(c) = &r.verdict {
                assert!(c.margin_f64 <= 0.0 && c.margin_f32 <= 0.0);
            }
        }
    }
    assert!(compared >= 30, "only {compared} decided pairs to compare");
    assert!(calls > 0, "no sub-domain reached the leaf solver");
    eprintln!(
        "leaf solver: {calls} calls, {decided_leaves} decided; {compared} verdict pairs compared"
    );
}
