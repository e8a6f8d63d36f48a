//! Lipschitz bounds: exact on linear networks; on random ReLU / LeakyReLU / sigmoid / conv / max-pool /
//! residual networks, global ≥ local ≥ every finite-difference ratio over 10⁵ sampled pairs of the box, and
//! the interval Jacobian contains every sampled gradient; certified radii are never contradicted by the
//! falsifier (PGD + sampling) or by sampling; on one network per benchmark suite (when
//! `$NNCERT_BENCHMARKS` or `../shared/benchmarks` exists, else SKIPPED loudly) the bounds dominate sampled
//! finite differences.

mod common;

use ndarray::{Array1, Array2, Array4};
use nncert_model::eval::Evaluator;
use nncert_model::ir::{Conv, Graph, GraphBuilder, Linear, Op, Pool};
use nncert_spec::{InputBox, Property};
use nncert_verify::falsify::{FalsifierConfig, falsify};
use nncert_verify::lipschitz::{
    Analyzer, Norm, global_bound, interval_matrix_norm, jacobian_bounds, local_bound,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn gauss(r: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u: f64 = r.random::<f64>().max(1e-300);
    let v: f64 = r.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn linear(r: &mut ChaCha8Rng, out: usize, inp: usize, scale: f64) -> Op {
    let s = scale / (inp as f64).sqrt();
    Op::Linear(Linear {
        weight: Array2::from_shape_fn((out, inp), |_| (gauss(r) * s) as f32),
        bias: Some(Array1::from_shape_fn(out, |_| (gauss(r) * 0.1) as f32)),
    })
}

fn conv(r: &mut ChaCha8Rng, cout: usize, cin: usize, k: usize, stride: usize, pad: usize) -> Op {
    let s = 1.2 / ((cin * k * k) as f64).sqrt();
    Op::Conv(Conv {
        weight: Array4::from_shape_fn((cout, cin, k, k), |_| (gauss(r) * s) as f32),
        bias: Some(Array1::from_shape_fn(cout, |_| (gauss(r) * 0.1) as f32)),
        strides: [stride, stride],
        pads: [pad; 4],
        dilations: [1, 1],
        groups: 1,
    })
}

/// A feed-forward net `dims[0] → … → dims.last()` with `act` between layers (`None`: linear net).
fn mlp(seed: u64, dims: &[usize], act: Option<Op>) -> Graph {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new("x", vec![dims[0]]);
    let mut h = b.input_id();
    for (l, w) in dims.windows(2).enumerate() {
        h = b
            .push(
                format!("fc{l}"),
                linear(&mut r, w[1], w[0], 1.5),
                vec![h],
                None,
            )
            .unwrap();
        if l + 2 < dims.len()
            && let Some(a) = &act
        {
            h = b.push(format!("act{l}"), a.clone(), vec![h], None).unwrap();
        }
    }
    b.finish(h)
}

/// Conv(2→4, 3×3, pad 1) → ReLU → MaxPool 2×2 → Conv(4→4, 3×3, stride 2) → LeakyReLU → flatten → Linear(→3).
fn conv_net(seed: u64) -> Graph {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new("x", vec![1, 2, 8, 8]);
    let x = b.input_id();
    let c1 = b
        .push("c1", conv(&mut r, 4, 2, 3, 1, 1), vec![x], None)
        .unwrap();
    let a1 = b.push("r1", Op::Relu, vec![c1], None).unwrap();
    let pool = Pool {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        dilations: [1, 1],
    };
    let p1 = b
        .push("pool", Op::MaxPool(pool), vec![a1], Some(vec![1, 4, 4, 4]))
        .unwrap();
    let c2 = b
        .push("c2", conv(&mut r, 4, 4, 3, 2, 1), vec![p1], None)
        .unwrap();
    let a2 = b
        .push("l2", Op::LeakyRelu { alpha: 0.1 }, vec![c2], None)
        .unwrap();
    let f = b
        .push("flat", Op::Reshape, vec![a2], Some(vec![1, 16]))
        .unwrap();
    let y = b
        .push("fc", linear(&mut r, 3, 16, 1.5), vec![f], None)
        .unwrap();
    b.finish(y)
}

/// x → fc → ReLU → fc → (+ skip fc of x) → ReLU → Sub(tanh branch) → fc.
fn residual_net(seed: u64) -> Graph {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new("x", vec![5]);
    let x = b.input_id();
    let h1 = b
        .push("fc1", linear(&mut r, 8, 5, 1.5), vec![x], None)
        .unwrap();
    let a1 = b.push("relu1", Op::Relu, vec![h1], None).unwrap();
    let h2 = b
        .push("fc2", linear(&mut r, 8, 8, 1.5), vec![a1], None)
        .unwrap();
    let skip = b
        .push("skip", linear(&mut r, 8, 5, 1.0), vec![x], None)
        .unwrap();
    let s = b.push("add", Op::Add, vec![h2, skip], None).unwrap();
    let a2 = b.push("relu2", Op::Relu, vec![s], None).unwrap();
    let t = b.push("tanh", Op::Tanh, vec![skip], None).unwrap();
    let d = b.push("sub", Op::Sub, vec![a2, t], None).unwrap();
    let y = b
        .push("fc3", linear(&mut r, 3, 8, 1.5), vec![d], None)
        .unwrap();
    b.finish(y)
}

fn forward(ev: &Evaluator<'_, f64>, x: &Array2<f64>) -> Array2<f64> {
    ev.forward(x.view()).unwrap()
}

fn norm_of(v: impl Iterator<Item = f64>, n: Norm) -> f64 {
    match n {
        Norm::Linf => v.fold(0.0, |a, b| a.max(b.abs())),
        Norm::L2 => v.map(|a| a * a).sum::<f64>().sqrt(),
    }
}

/// Largest `‖f(x) − f(x')‖/‖x − x'‖` in L∞ and in L2 over `pairs` pairs in the box: half uniform pairs, half
/// close pairs (`x' = x ± small steps`, clipped to the box) which approach the local gradient norms.
fn max_fd_ratios(g: &Graph, bx: &InputBox, pairs: usize, seed: u64) -> (f64, f64) {
    let ev = Evaluator::<f64>::new(g);
    let n = bx.dim();
    let mut r = rng(seed);
    let mut best = (0.0f64, 0.0f64);
    let chunk = 2000;
    let mut done = 0;
    while done < pairs {
        let len = chunk.min(pairs - done);
        let mut a = Array2::zeros((len, n));
        let mut b = Array2::zeros((len, n));
        for p in 0..len {
            let close = p % 2 == 1;
            for j in 0..n {
                let (lo, hi) = (bx.lower[j], bx.upper[j]);
                let x = lo + (hi - lo) * r.random::<f64>();
                let y = if close {
                    // Sign steps align with the gradient's signs (the L∞ worst case) for some pairs.
                    let step = (hi - lo) * 1e-3 * if r.random::<bool>() { 1.0 } else { -1.0 };
                    (x + step).clamp(lo, hi)
                } else {
                    lo + (hi - lo) * r.random::<f64>()
                };
                a[[p, j]] = x;
                b[[p, j]] = y;
            }
        }
        let (fa, fb) = (forward(&ev, &a), forward(&ev, &b));
        for p in 0..len {
            let dx: Vec<f64> = a.row(p).iter().zip(b.row(p)).map(|(x, y)| x - y).collect();
            let dy: Vec<f64> = fa
                .row(p)
                .iter()
                .zip(fb.row(p))
                .map(|(x, y)| x - y)
                .collect();
            let xi = norm_of(dx.iter().copied(), Norm::Linf);
            if xi > 1e-12 {
                let x2 = norm_of(dx.iter().copied(), Norm::L2);
                best.0 = best.0.max(norm_of(dy.iter().copied(), Norm::Linf) / xi);
                best.1 = best.1.max(norm_of(dy.iter().copied(), Norm::L2) / x2);
            }
        }
        done += len;
    }
    best
}

fn fd_for(r: (f64, f64), norm: Norm) -> f64 {
    match norm {
        Norm::Linf => r.0,
        Norm::L2 => r.1,
    }
}

fn random_box(g: &Graph, seed: u64, radius: f64) -> InputBox {
    let mut r = rng(seed);
    let n = g.input_size();
    let c: Vec<f64> = (0..n).map(|_| gauss(&mut r) * 0.5).collect();
    InputBox {
        lower: c.iter().map(|v| v - radius).collect(),
        upper: c.iter().map(|v| v + radius).collect(),
    }
}

/// The product matrix of a linear net (weights only: biases do not affect the Jacobian).
fn product_matrix(g: &Graph) -> Array2<f64> {
    let mut p: Option<Array2<f64>> = None;
    for n in g.nodes() {
        if let Op::Linear(l) = &n.op {
            let w = l.weight.mapv(f64::from);
            p = Some(match p {
                None => w,
                Some(q) => w.dot(&q),
            });
        }
    }
    p.unwrap()
}

fn long_power_iteration(a: &Array2<f64>) -> f64 {
    let mut v = Array1::<f64>::from_elem(a.ncols(), 1.0);
    let mut s = 0.0;
    for _ in 0..5000 {
        v /= v.dot(&v).sqrt();
        let av = a.dot(&v);
        s = av.dot(&av).sqrt();
        v = a.t().dot(&av);
    }
    s
}

#[test]
fn exact_on_linear_nets() {
    for seed in 0..6u64 {
        let dims: &[usize] = match seed % 3 {
            0 => &[4, 6, 3],
            1 => &[7, 5, 5, 2],
            _ => &[10, 12, 8, 6],
        };
        let g = mlp(seed, dims, None);
        let p = product_matrix(&g);
        let exact_inf = p
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0, f64::max);
        let linf = global_bound(&g, Norm::Linf);
        // Exact up to the explicit float margins: 2⁻²³ relative per layer for import rounding, plus γ terms.
        assert!(
            linf.bound >= exact_inf && linf.bound <= exact_inf * (1.0 + 1e-5),
            "seed {seed}: L∞ bound {} vs exact {exact_inf}",
            linf.bound
        );
        let sigma = long_power_iteration(&p);
        let l2 = global_bound(&g, Norm::L2);
        assert!(
            l2.bound >= sigma && l2.bound <= sigma * 1.005,
            "seed {seed}: L2 bound {} vs spectral norm {sigma}",
            l2.bound
        );
        // The local bound of a linear map is the same everywhere.
        let bx = random_box(&g, seed, 0.3);
        let loc = local_bound(&g, &bx, Norm::Linf, linf.bound).unwrap();
        assert!(loc >= exact_inf && loc <= exact_inf * (1.0 + 1e-5), "{loc}");
        let fd = max_fd_ratios(&g, &bx, 2000, seed).0;
        assert!(fd <= loc * (1.0 + 1e-9));
    }
}

/// For every random net and both norms: global ≥ local ≥ sampled finite-difference ratios, and every
/// sampled gradient lies in the interval Jacobian.
#[test]
fn global_ge_local_ge_finite_differences() {
    let start = Instant::now();
    let nets: Vec<(&str, Graph, f64)> = vec![
        ("relu mlp", mlp(1, &[6, 16, 16, 4], Some(Op::Relu)), 0.2),
        (
            "leaky mlp",
            mlp(2, &[5, 12, 12, 3], Some(Op::LeakyRelu { alpha: 0.2 })),
            0.3,
        ),
        (
            "sigmoid mlp",
            mlp(3, &[4, 10, 10, 3], Some(Op::Sigmoid)),
            0.5,
        ),
        ("conv + maxpool", conv_net(4), 0.1),
        ("residual", residual_net(5), 0.25),
    ];
    for (name, g, radius) in &nets {
        let bx = random_box(g, 11, *radius);
        let fds = max_fd_ratios(g, &bx, 100_000, 7);
        for norm in [Norm::Linf, Norm::L2] {
            let global = global_bound(g, norm);
            let local = local_bound(g, &bx, norm, global.bound).unwrap();
            let fd = fd_for(fds, norm);
            assert!(
                global.bound >= local,
                "{name} {norm:?}: global {} < local {local}",
                global.bound
            );
            assert!(
                local >= fd,
                "{name} {norm:?}: local {local} < finite difference {fd}"
            );
            // The composition alone must also dominate the sampled ratios.
            assert!(global.product_bound >= fd, "{name} {norm:?}");
            eprintln!(
                "{name:>15} {:>4}: global {:.4e} (product {:.4e}), local {local:.4e}, max FD {fd:.4e}",
                norm.name(),
                global.bound,
                global.product_bound
            );
        }
        // Sampled gradients of every output lie in the interval Jacobian over the box.
        let jb = jacobian_bounds(g, Some(&bx)).unwrap();
        let ev = Evaluator::<f64>::new(g);
        let mut r = rng(3);
        let m = g.output_size();
        for _ in 0..200 {
            let x = Array2::from_shape_fn((1, bx.dim()), |(_, j)| {
                bx.lower[j] + (bx.upper[j] - bx.lower[j]) * r.random::<f64>()
            });
            let tr = ev.trace(x.view()).unwrap();
            for k in 0..m {
                let mut e = Array2::zeros((1, m));
                e[[0, k]] = 1.0;
                let grad = ev.backward(&tr, e.view());
                for j in 0..bx.dim() {
                    let (md, rd) = (jb.mid[[k, j]], jb.rad[[k, j]]);
                    assert!(
                        (grad[[0, j]] - md).abs() <= rd * (1.0 + 1e-9) + 1e-12,
                        "{name}: ∂y{k}/∂x{j} = {} outside {md} ± {rd}",
                        grad[[0, j]]
                    );
                }
            }
        }
        // The Jacobian over all of input space is wider than over the box.
        let jg = jacobian_bounds(g, None).unwrap();
        assert!(interval_matrix_norm(&jg, Norm::Linf) >= interval_matrix_norm(&jb, Norm::Linf));
    }
    eprintln!("random nets: {:.1} s", start.elapsed().as_secs_f64());
}

/// Sample points of the L2 ball of radius `r` around `c` (directions uniform, radii up to r), clipped to `bx`.
fn sample_l2_ball(c: &[f64], r: f64, bx: &InputBox, n: usize, seed: u64) -> Array2<f64> {
    let mut g = rng(seed);
    let d = c.len();
    let mut out = Array2::zeros((n, d));
    for p in 0..n {
        let dir: Vec<f64> = (0..d).map(|_| gauss(&mut g)).collect();
        let len = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
        // Most samples on the sphere itself, where a violation is likeliest.
        let t = if p % 4 == 0 { g.random::<f64>() } else { 1.0 };
        for j in 0..d {
            out[[p, j]] = (c[j] + dir[j] / len * r * t).clamp(bx.lower[j], bx.upper[j]);
        }
    }
    out
}

#[test]
fn certified_radii_are_never_contradicted() {
    let start = Instant::now();
    let nets: Vec<(&str, Graph)> = vec![
        ("relu mlp", mlp(21, &[4, 12, 12, 3], Some(Op::Relu))),
        ("conv + maxpool", conv_net(22)),
        ("residual", residual_net(23)),
        ("tanh mlp", mlp(24, &[3, 8, 3], Some(Op::Tanh))),
    ];
    let mut nontrivial = 0;
    for (name, g) in &nets {
        let ev = Evaluator::<f64>::new(g);
        let mut r = rng(99);
        let globals = vec![global_bound(g, Norm::Linf), global_bound(g, Norm::L2)];
        let analyzer = Analyzer::new(g, globals);
        for trial in 0..3 {
            let center: Vec<f64> = (0..g.input_size()).map(|_| gauss(&mut r) * 0.5).collect();
            let y = forward(
                &ev,
                &Array2::from_shape_vec((1, center.len()), center.clone()).unwrap(),
            );
            let label = (0..y.ncols())
                .max_by(|&a, &b| y[[0, a]].total_cmp(&y[[0, b]]))
                .unwrap();
            // A box of radius 0.5 around the point: the local radius is valid inside it.
            let prop =
                Property::robustness_linf(&center, 0.5, label, g.output_size(), None).unwrap();
            let case = &prop.cases[0];
            let a = analyzer.analyze_case(0, case).unwrap();
            for rad in &a.radii {
                let (rl, rg) = (rad.local, rad.global);
                assert!(rl >= rg, "{name}: local radius below global");
                if rl <= 0.0 {
                    continue;
                }
                nontrivial += 1;
                match rad.norm {
                    Norm::Linf => {
                        // The falsifier (sampling + PGD) on the certified L∞ ball inside the box.
                        let rr = rl.min(0.5);
                        let small =
                            Property::robustness_linf(&a.center, rr, label, g.output_size(), None)
                                .unwrap();
                        let mut cfg =
                            FalsifierConfig::new(trial, Instant::now() + Duration::from_secs(2));
                        cfg.max_rounds = Some(4);
                        let out = falsify(g, &small, &cfg);
                        assert!(
                            out.counterexample.is_none(),
                            "{name}: counterexample inside the certified L∞ radius {rr}"
                        );
                        assert!(out.best_margin > 0.0, "{name}: margin {}", out.best_margin);
                    }
                    Norm::L2 => {
                        let pts = sample_l2_ball(&a.center, rl, &case.input, 4000, trial);
                        let ys = forward(&ev, &pts);
                        for row in ys.rows() {
                            let best_other = (0..row.len())
                                .filter(|&k| k != label)
                                .map(|k| row[k])
                                .fold(f64::NEG_INFINITY, f64::max);
                            assert!(
                                row[label] > best_other,
                                "{name}: misclassified inside the certified L2 radius {rl}"
                            );
                        }
                    }
                }
            }
            if a.box_certified {
                // The whole box is claimed safe: the falsifier must agree.
                let mut cfg = FalsifierConfig::new(7, Instant::now() + Duration::from_secs(2));
                cfg.max_rounds = Some(4);
                assert!(falsify(g, &prop, &cfg).counterexample.is_none(), "{name}");
            }
        }
    }
    assert!(
        nontrivial >= 6,
        "too few non-zero radii to test ({nontrivial})"
    );
    eprintln!("radii: {:.1} s", start.elapsed().as_secs_f64());
}

/// A tiny conv + Gather/Concat/AveragePool net exercises the generic operator path (norms via the evaluator).
#[test]
fn generic_ops_dominate_finite_differences() {
    let mut r = rng(5);
    let mut b = GraphBuilder::new("x", vec![1, 1, 6, 6]);
    let x = b.input_id();
    let c = b
        .push("c", conv(&mut r, 2, 1, 3, 1, 0), vec![x], None)
        .unwrap();
    let pool = Pool {
        kernel: [2, 2],
        strides: [1, 1],
        pads: [0; 4],
        dilations: [1, 1],
    };
    let ap = b
        .push(
            "avg",
            Op::AveragePool {
                pool,
                count_include_pad: false,
            },
            vec![c],
            Some(vec![1, 2, 3, 3]),
        )
        .unwrap();
    let a = b.push("relu", Op::Relu, vec![ap], None).unwrap();
    let f = b
        .push("flat", Op::Reshape, vec![a], Some(vec![18]))
        .unwrap();
    let gth = b
        .push(
            "gather",
            Op::Gather {
                axis: 0,
                indices: vec![0, 0, 3, 7, 7, 7, 17],
            },
            vec![f],
            None,
        )
        .unwrap();
    let cat = b
        .push("cat", Op::Concat { axis: 0 }, vec![gth, f], None)
        .unwrap();
    let y = b
        .push("fc", linear(&mut r, 2, 25, 1.0), vec![cat], None)
        .unwrap();
    let g = b.finish(y);
    let bx = random_box(&g, 1, 0.3);
    let fds = max_fd_ratios(&g, &bx, 20_000, 2);
    for norm in [Norm::Linf, Norm::L2] {
        let gb = global_bound(&g, norm);
        let fd = fd_for(fds, norm);
        let loc = local_bound(&g, &bx, norm, gb.bound).unwrap();
        assert!(
            gb.product_bound >= fd && gb.bound >= loc && loc >= fd,
            "{norm:?}"
        );
    }
}

fn benchmarks() -> Option<PathBuf> {
    common::benchmarks(
        &["acasxu/instances.csv"],
        "Lipschitz bounds on benchmark networks",
    )
}

/// One network per suite, with the box of its first instance: the bounds dominate sampled finite differences.
#[test]
fn benchmark_nets_dominate_finite_differences() {
    let Some(dir) = benchmarks() else { return };
    let picks = [
        ("test", "test_small.onnx", "test_small.vnnlib"),
        (
            "acasxu",
            "onnx/ACASXU_run2a_1_1_batch_2000.onnx",
            "vnnlib/prop_1.vnnlib",
        ),
        (
            "mnist_fc",
            "onnx/mnist-net_256x2.onnx",
            "vnnlib/prop_0_0.03.vnnlib",
        ),
        (
            "eran",
            "nets/ffnnSIGMOID__Point_6x200.onnx",
            "specs/mnist/mnist_spec_idx_8098_eps_0.01500.vnnlib",
        ),
        (
            "oval21",
            "onnx/cifar_base_kw.onnx",
            "vnnlib/cifar_base_kw-img8194-eps0.018300653594771243.vnnlib",
        ),
        (
            "collins_rul_cnn",
            "onnx/NN_rul_small_window_20.onnx",
            "vnnlib/robustness_2perturbations_delta5_epsilon10_w20.vnnlib",
        ),
        (
            "cifar10_resnet",
            "onnx/resnet_2b.onnx",
            "vnnlib_properties_pgd_filtered/resnet2b_pgd_filtered/prop_0_eps_0.008.vnnlib",
        ),
    ];
    for (suite, onnx, vnnlib) in picks {
        let t = Instant::now();
        let (mp, pp) = (dir.join(suite).join(onnx), dir.join(suite).join(vnnlib));
        if !mp.exists() || !pp.exists() {
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("SKIPPED: {} missing\n", mp.display()),
            );
            continue;
        }
        let g = nncert_model::load_model(&mp).unwrap();
        let prop = nncert_spec::parse_file(&pp).unwrap();
        let bx = &prop.cases[0].input;
        // One interval Jacobian over the box serves both norms.
        let jb = jacobian_bounds(&g, Some(bx)).unwrap();
        let fds = max_fd_ratios(&g, bx, 1000, 1);
        for norm in [Norm::Linf, Norm::L2] {
            let gb = global_bound(&g, norm);
            let loc = interval_matrix_norm(&jb, norm).min(gb.bound);
            let fd = fd_for(fds, norm);
            assert!(
                gb.bound >= loc && loc >= fd,
                "{suite} {norm:?}: global {} local {loc} fd {fd}",
                gb.bound
            );
            eprintln!(
                "{suite:>15} {:>4}: global {:.4e}, local {loc:.4e}, max FD {fd:.4e}",
                norm.name(),
                gb.bound
            );
        }
        eprintln!("{suite}: {:.1} s", t.elapsed().as_secs_f64());
    }
}
