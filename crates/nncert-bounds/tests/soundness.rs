//! Soundness: on random networks of every op kind and random boxes, every sampled point (and box vertex) of every
//! node lies inside the computed bounds, and every linear objective's lower bound is below its sampled values.

use ndarray::{Array1, Array2, Array4, ArrayD, IxDyn};
use nncert_bounds::{BoundModel, Method};
use nncert_model::eval::Evaluator;
use nncert_model::ir::{Conv, Graph, GraphBuilder, Linear, Op, Pool, SliceAxis};
use nncert_spec::InputBox;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn normal(rng: &mut ChaCha8Rng, scale: f64) -> f32 {
    // Sum of uniforms: good enough for weights.
    let s: f64 = (0..4).map(|_| rng.random::<f64>() - 0.5).sum();
    (s * scale * 1.7) as f32
}

fn linear(rng: &mut ChaCha8Rng, out: usize, inp: usize) -> Op {
    let s = 1.0 / (inp as f64).sqrt();
    Op::Linear(Linear {
        weight: Array2::from_shape_fn((out, inp), |_| normal(rng, s)),
        bias: Some(Array1::from_shape_fn(out, |_| normal(rng, 0.3))),
    })
}

fn activation(rng: &mut ChaCha8Rng) -> Op {
    match rng.random_range(0..6) {
        0 | 1 => Op::Relu,
        2 => Op::LeakyRelu { alpha: 0.1 },
        3 => Op::Sigmoid,
        4 => Op::Tanh,
        _ => Op::Clip {
            min: -0.5,
            max: 0.7,
        },
    }
}

/// A random MLP with affine rescaling, residual adds, subtractions and a softmax or not at the end.
fn random_mlp(rng: &mut ChaCha8Rng) -> Graph {
    let n_in = rng.random_range(1..6);
    let mut b = GraphBuilder::new("x", vec![1, n_in]);
    let mut cur = b.input_id();
    let scale = ArrayD::from_shape_fn(IxDyn(&[n_in]), |_| normal(rng, 1.0));
    let shift = ArrayD::from_shape_fn(IxDyn(&[1, n_in]), |_| normal(rng, 1.0));
    cur = b
        .push(
            "norm",
            Op::Affine {
                scale: Some(scale),
                shift: Some(shift),
            },
            vec![cur],
            None,
        )
        .unwrap();
    let mut width = n_in;
    for layer in 0..rng.random_range(1..4) {
        let w = rng.random_range(2..12);
        let h = b
            .push(format!("fc{layer}"), linear(rng, w, width), vec![cur], None)
            .unwrap();
        let a = b
            .push(format!("act{layer}"), activation(rng), vec![h], None)
            .unwrap();
        cur = if rng.random_bool(0.3) {
            let h2 = b
                .push(
                    format!("skip{layer}"),
                    linear(rng, w, width),
                    vec![cur],
                    None,
                )
                .unwrap();
            let op = if rng.random_bool(0.5) {
                Op::Add
            } else {
                Op::Sub
            };
            b.push(format!("res{layer}"), op, vec![a, h2], None)
                .unwrap()
        } else {
            a
        };
        width = w;
    }
    let out = rng.random_range(1..5);
    cur = b
        .push("out", linear(rng, out, width), vec![cur], None)
        .unwrap();
    if rng.random_bool(0.2) {
        cur = b
            .push("softmax", Op::Softmax { axis: 1 }, vec![cur], None)
            .unwrap();
    }
    b.finish(cur)
}

/// A random small CNN: conv, pools, pad, concat with a slice, transpose, flatten, linear.
fn random_cnn(rng: &mut ChaCha8Rng) -> Graph {
    let (c, h, w) = (
        rng.random_range(1..3),
        rng.random_range(4..7),
        rng.random_range(4..7),
    );
    let mut b = GraphBuilder::new("x", vec![1, c, h, w]);
    let x = b.input_id();
    let co = rng.random_range(1..4);
    let k = rng.random_range(1..4);
    let pad = rng.random_range(0..2);
    let conv = Op::Conv(Conv {
        weight: Array4::from_shape_fn((co, c, k, k), |_| normal(rng, 0.5)),
        bias: Some(Array1::from_shape_fn(co, |_| normal(rng, 0.2))),
        strides: [1, 1],
        pads: [pad, pad, pad, pad],
        dilations: [1, 1],
        groups: 1,
    });
    let y = b.push("conv", conv, vec![x], None).unwrap();
    let y = b.push("act", activation(rng), vec![y], None).unwrap();
    let s = b.shape(y).clone();
    let (oh, ow) = (s[2], s[3]);
    // Overlapping (stride 1) and disjoint windows, with and without padding.
    let kp = rng.random_range(2..4).min(oh).min(ow);
    let stride = rng.random_range(1..3);
    let ppad = rng.random_range(0..2).min(kp - 1);
    let pool = Pool {
        kernel: [kp, kp],
        strides: [stride, stride],
        pads: [ppad, ppad, ppad, ppad],
        dilations: [1, 1],
    };
    let side = |n: usize| (n + 2 * ppad - kp) / stride + 1;
    let pshape = vec![1, co, side(oh), side(ow)];
    let p = if rng.random_bool(0.5) {
        b.push("maxpool", Op::MaxPool(pool), vec![y], Some(pshape))
            .unwrap()
    } else {
        b.push(
            "avgpool",
            Op::AveragePool {
                pool,
                count_include_pad: false,
            },
            vec![y],
            Some(pshape),
        )
        .unwrap()
    };
    let padded = b
        .push(
            "pad",
            Op::Pad {
                pads: vec![(0, 0), (0, 0), (1, 0), (0, 1)],
                value: 0.25,
            },
            vec![p],
            None,
        )
        .unwrap();
    let ps = b.shape(padded).clone();
    let sl = b
        .push(
            "slice",
            Op::Slice {
                axes: vec![
                    SliceAxis { start: 0, step: 1 },
                    SliceAxis { start: 0, step: 1 },
                    SliceAxis {
                        start: ps[2] - 1,
                        step: -1,
                    },
                    SliceAxis { start: 0, step: 1 },
                ],
            },
            vec![padded],
            Some(ps.clone()),
        )
        .unwrap();
    let cat = b
        .push("concat", Op::Concat { axis: 1 }, vec![padded, sl], None)
        .unwrap();
    let t = b
        .push(
            "transpose",
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![cat],
            None,
        )
        .unwrap();
    let n: usize = b.shape(t).iter().product();
    let flat = b
        .push("flatten", Op::Reshape, vec![t], Some(vec![1, n]))
        .unwrap();
    let out = rng.random_range(1..4);
    let y = b.push("fc", linear(rng, out, n), vec![flat], None).unwrap();
    b.finish(y)
}

fn random_box(rng: &mut ChaCha8Rng, n: usize) -> InputBox {
    let mut lower = Vec::new();
    let mut upper = Vec::new();
    for _ in 0..n {
        let c = rng.random::<f64>() * 2.0 - 1.0;
        let r = rng.random::<f64>() * if rng.random_bool(0.5) { 0.05 } else { 0.8 };
        lower.push(c - r);
        upper.push(c + r);
    }
    InputBox { lower, upper }
}

/// Sample points: uniform in the box plus vertices (all of them for small boxes).
fn samples(rng: &mut ChaCha8Rng, b: &InputBox, count: usize) -> Array2<f64> {
    let n = b.lower.len();
    let mut x = Array2::zeros((count, n));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let vertex = i < count / 4;
        for (j, v) in row.iter_mut().enumerate() {
            let t: f64 = if vertex {
                if n <= 10 && i < (1 << n) {
                    ((i >> j) & 1) as f64
                } else {
                    rng.random_range(0..2) as f64
                }
            } else {
                rng.random()
            };
            *v = (b.lower[j] + t * (b.upper[j] - b.lower[j])).clamp(b.lower[j], b.upper[j]);
        }
    }
    x
}

/// Checks every node's bounds and random output objectives (IBP, CROWN, α-CROWN) at sampled points; returns
/// the number of values checked and how many objectives α-CROWN bounded strictly tighter than CROWN.
fn check(graph: &Graph, rng: &mut ChaCha8Rng, points: usize) -> (usize, usize) {
    let model = BoundModel::new(graph);
    let bounder = model.bounder();
    let ev = Evaluator::<f64>::new(graph);
    let ibox = random_box(rng, graph.input_size());
    let x = samples(rng, &ibox, points);
    let trace = ev.trace(x.view()).unwrap();
    let _ = trace.output();
    let mut checked = 0;
    let mut alpha_tighter = 0;
    for method in [
        Method::Interval,
        Method::Crown,
        Method::Alpha {
            iterations: 10,
            intermediate: 3,
        },
    ] {
        let bounds = bounder.node_bounds(&ibox, method);
        // Every node: re-evaluate the graph truncated at that node is costly; instead compare the output and
        // use per-node evaluation through truncated graphs for the nonlinear nodes' inputs.
        for (id, node) in graph.nodes().iter().enumerate() {
            let sub = truncate(graph, id);
            let y = Evaluator::<f64>::new(&sub).forward(x.view()).unwrap();
            let b = &bounds[id];
            for row in y.rows() {
                for (e, &v) in row.iter().enumerate() {
                    assert!(
                        b.lower[e] <= v && v <= b.upper[e],
                        "{method:?}: node {id} ({}) element {e}: value {v} outside [{}, {}]\n{graph}",
                        node.op.kind(),
                        b.lower[e],
                        b.upper[e]
                    );
                    checked += 1;
                }
            }
        }
        // Random linear objectives on the output.
        let m = graph.output_size();
        let c = Array2::from_shape_fn((3, m), |_| rng.random::<f64>() * 2.0 - 1.0);
        let lb = match method {
            Method::Alpha { iterations, .. } => {
                // Against CROWN on the same objectives (same node bounds): never looser.
                let crown = bounder.output_lower(&c, &bounds);
                let (lb, _) = bounder.output_lower_alpha(&c, &bounds, iterations, &|_| false);
                for (a, cr) in lb.iter().zip(&crown) {
                    assert!(a >= cr, "α-CROWN {a} looser than CROWN {cr}\n{graph}");
                    alpha_tighter += usize::from(*a > *cr + 1e-9 * cr.abs());
                }
                lb
            }
            Method::Interval | Method::Crown => bounder.output_lower(&c, &bounds),
        };
        let y = ev.forward(x.view()).unwrap();
        for (r, crow) in c.rows().into_iter().enumerate() {
            for yrow in y.rows() {
                let v: f64 = crow.iter().zip(yrow.iter()).map(|(a, b)| a * b).sum();
                assert!(
                    lb[r] <= v + 1e-12 * v.abs(),
                    "{method:?}: objective {r}: {v} < lower bound {}",
                    lb[r]
                );
            }
        }
    }
    (checked, alpha_tighter)
}

/// The same graph with node `id` as its output.
fn truncate(graph: &Graph, id: usize) -> Graph {
    let input = graph.input();
    let mut b = GraphBuilder::new(input.name.clone(), input.shape.clone());
    for n in &graph.nodes()[1..=id] {
        b.push(
            n.name.clone(),
            n.op.clone(),
            n.inputs.clone(),
            Some(n.shape.clone()),
        )
        .unwrap();
    }
    let out = if id == 0 {
        b.input_id()
    } else {
        nncert_model::NodeId(id)
    };
    b.finish(out)
}

#[test]
fn random_mlps_are_bounded_soundly() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut total, mut tighter) = (0, 0);
    for _ in 0..60 {
        let g = random_mlp(&mut rng);
        let (n, t) = check(&g, &mut rng, 400);
        total += n;
        tighter += t;
    }
    eprintln!(
        "{total} node values checked; α-CROWN tighter than CROWN on {tighter} of 180 objectives"
    );
    assert!(total > 100_000);
    assert!(tighter > 0, "α-CROWN never improved on CROWN");
}

#[test]
fn random_cnns_are_bounded_soundly() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (mut total, mut tighter) = (0, 0);
    for _ in 0..25 {
        let g = random_cnn(&mut rng);
        let (n, t) = check(&g, &mut rng, 300);
        total += n;
        tighter += t;
    }
    eprintln!(
        "{total} node values checked; α-CROWN tighter than CROWN on {tighter} of 75 objectives"
    );
    assert!(total > 100_000);
    assert!(tighter > 0, "α-CROWN never improved on CROWN");
}

#[test]
fn linear_networks_get_exact_bounds() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..20 {
        let mut b = GraphBuilder::new("x", vec![3]);
        let h = b
            .push("a", linear(&mut rng, 4, 3), vec![b.input_id()], None)
            .unwrap();
        let y = b.push("b", linear(&mut rng, 2, 4), vec![h], None).unwrap();
        let g = b.finish(y);
        let ibox = random_box(&mut rng, 3);
        let model = BoundModel::new(&g);
        let bounds = model.bounder().node_bounds(&ibox, Method::Crown);
        // The exact extremes of a linear map over a box are at vertices.
        let x = samples(&mut rng, &ibox, 32);
        let y = Evaluator::<f64>::new(&g).forward(x.view()).unwrap();
        // Exact up to the error terms, dominated by the 2⁻²³ import-rounding allowance per layer.
        let out = &bounds[g.output_id().0];
        for e in 0..2 {
            let lo = y.column(e).fold(f64::INFINITY, |a, &b| a.min(b));
            let hi = y.column(e).fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            assert!(
                out.lower[e] <= lo && lo - out.lower[e] < 4e-6 * (1.0 + lo.abs()),
                "{} vs {lo}",
                out.lower[e]
            );
            assert!(
                out.upper[e] >= hi && out.upper[e] - hi < 4e-6 * (1.0 + hi.abs()),
                "{} vs {hi}",
                out.upper[e]
            );
        }
    }
}

#[test]
fn single_relu_has_the_known_hull() {
    // y = relu(x) on [-1, 3]: the upper chord is 0.75·(x + 1); CROWN's bound on y − 0.75x is then 0.75 exactly.
    let mut b = GraphBuilder::new("x", vec![1]);
    let r = b.push("relu", Op::Relu, vec![b.input_id()], None).unwrap();
    let g = b.finish(r);
    let model = BoundModel::new(&g);
    let bounder = model.bounder();
    let ibox = InputBox {
        lower: vec![-1.0],
        upper: vec![3.0],
    };
    let bounds = bounder.node_bounds(&ibox, Method::Crown);
    assert_eq!(bounds[1].lower[0], 0.0);
    assert!(bounds[1].upper[0] >= 3.0 && bounds[1].upper[0] < 3.0 + 1e-12);
    // −y ≥ −0.75x − 0.75 ≥ −3 over the box; and with λ = −1 the chord is used.
    let lb = bounder.output_lower(&Array2::from_elem((1, 1), -1.0), &bounds);
    assert!(lb[0] <= -3.0 && lb[0] > -3.0 - 1e-12, "{}", lb[0]);
}

#[test]
fn crown_is_at_least_as_tight_as_interval() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..40 {
        let g = random_mlp(&mut rng);
        let ibox = random_box(&mut rng, g.input_size());
        let model = BoundModel::new(&g);
        let bounder = model.bounder();
        let ibp = bounder.node_bounds(&ibox, Method::Interval);
        let crown = bounder.node_bounds(&ibox, Method::Crown);
        for (a, b) in ibp.iter().zip(&crown) {
            for e in 0..a.lower.len() {
                // Up to the rounding-error terms, which depend on the centre and may grow as a box shrinks.
                let tol = 1e-9 * (1.0 + a.lower[e].abs().max(a.upper[e].abs()));
                assert!(b.lower[e] >= a.lower[e] - tol && b.upper[e] <= a.upper[e] + tol);
            }
        }
    }
}

#[test]
fn max_pool_relaxation_is_linear_and_exact_when_one_element_dominates() {
    // y = max(x0, x1) next to x itself: outputs [y, x0, x1].
    let mut b = GraphBuilder::new("x", vec![1, 1, 2]);
    let x = b.input_id();
    let pool = Pool {
        kernel: [1, 2],
        strides: [1, 1],
        pads: [0, 0, 0, 0],
        dilations: [1, 1],
    };
    let y = b
        .push("maxpool", Op::MaxPool(pool), vec![x], Some(vec![1, 1, 1]))
        .unwrap();
    let cat = b
        .push("concat", Op::Concat { axis: 2 }, vec![y, x], None)
        .unwrap();
    let flat = b
        .push("flatten", Op::Reshape, vec![cat], Some(vec![3]))
        .unwrap();
    let g = b.finish(flat);
    let model = BoundModel::new(&g);
    let bounder = model.bounder();
    let objective = |c: [f64; 3], lower: [f64; 2], upper: [f64; 2], method: Method| {
        let ibox = InputBox {
            lower: lower.to_vec(),
            upper: upper.to_vec(),
        };
        let bounds = bounder.node_bounds(&ibox, method);
        bounder.output_lower(
            &Array2::from_shape_vec((1, 3), c.to_vec()).unwrap(),
            &bounds,
        )[0]
    };
    let near = |v: f64, want: f64| v <= want && v > want - 1e-9;
    // x0 ∈ [2, 3] dominates x1 ∈ [0, 1]: y = x0, so y − x0 and x0 − y are both ≥ 0 (intervals alone: ≥ −1).
    for c in [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]] {
        let crown = objective(c, [2.0, 0.0], [3.0, 1.0], Method::Crown);
        assert!(near(crown, 0.0), "{c:?}: CROWN {crown}");
    }
    // Overlapping ranges x0 ∈ [0, 2], x1 ∈ [1, 3]: y ≥ x1 (the larger lower bound) still gives y − x1 ≥ 0;
    // x1 − y has no linear lower bound better than x1 − max upper = 1 − 3.
    assert!(near(
        objective([1.0, 0.0, -1.0], [0.0, 1.0], [2.0, 3.0], Method::Crown),
        0.0
    ));
    assert!(near(
        objective([-1.0, 0.0, 1.0], [0.0, 1.0], [2.0, 3.0], Method::Crown),
        -2.0
    ));
}
