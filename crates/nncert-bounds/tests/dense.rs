//! The dense fast path: on random ReLU MLPs and random boxes, every sampled point (and vertex) lies inside every
//! layer's bounds, objective lower bounds are below every sampled value, priors only tighten, and the bounds are
//! never looser than interval arithmetic's on the output objective (checked against the generic engine). Both
//! the forward-mode path (few inputs) and the wide-input path are covered.

use ndarray::{Array1, Array2};
use nncert_bounds::dense::{DenseReluNet, FORWARD_MAX_INPUTS};
use nncert_bounds::{BoundModel, Method};
use nncert_model::ir::{Graph, GraphBuilder, Linear, Op};
use nncert_spec::InputBox;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn normal(rng: &mut ChaCha8Rng, scale: f64) -> f32 {
    let s: f64 = (0..4).map(|_| rng.random::<f64>() - 0.5).sum();
    (s * scale * 1.7) as f32
}

/// Weights and biases of a random MLP, and the graph built from them.
/// Weights and bias of one affine layer.
type Layer = (Array2<f32>, Array1<f32>);

fn random_mlp(rng: &mut ChaCha8Rng) -> (Vec<Layer>, Graph) {
    let n_in = rng.random_range(1..7);
    random_mlp_with_inputs(rng, n_in)
}

/// A random MLP with `n_in` inputs (above `FORWARD_MAX_INPUTS`, the wide-input path is taken).
fn random_mlp_with_inputs(rng: &mut ChaCha8Rng, n_in: usize) -> (Vec<Layer>, Graph) {
    random_mlp_ending(rng, n_in, false)
}

/// A random MLP; with `output_relu`, a ReLU on its outputs too.
fn random_mlp_ending(rng: &mut ChaCha8Rng, n_in: usize, output_relu: bool) -> (Vec<Layer>, Graph) {
    let mut b = GraphBuilder::new("x", vec![1, n_in]);
    let mut cur = b.input_id();
    let mut width = n_in;
    let mut layers = Vec::new();
    let depth = rng.random_range(1..6);
    for k in 0..depth {
        let out = if k + 1 == depth {
            rng.random_range(1..5)
        } else {
            rng.random_range(2..20)
        };
        let s = 1.5 / (width as f64).sqrt();
        let w = Array2::from_shape_fn((out, width), |_| normal(rng, s));
        let bias = Array1::from_shape_fn(out, |_| normal(rng, 0.5));
        layers.push((w.clone(), bias.clone()));
        let op = Op::Linear(Linear {
            weight: w,
            bias: Some(bias),
        });
        cur = b.push(format!("fc{k}"), op, vec![cur], None).unwrap();
        if k + 1 < depth || output_relu {
            cur = b
                .push(format!("relu{k}"), Op::Relu, vec![cur], None)
                .unwrap();
        }
        width = out;
    }
    (layers, b.finish(cur))
}

/// Pre-activations of every layer at `x`, in f64.
fn trace(layers: &[Layer], x: &[f64]) -> Vec<Vec<f64>> {
    let mut h = x.to_vec();
    let mut out = Vec::new();
    for (k, (w, b)) in layers.iter().enumerate() {
        let z: Vec<f64> = (0..w.nrows())
            .map(|i| {
                f64::from(b[i])
                    + (0..w.ncols())
                        .map(|j| f64::from(w[[i, j]]) * h[j])
                        .sum::<f64>()
            })
            .collect();
        h = if k + 1 < layers.len() {
            z.iter().map(|v| v.max(0.0)).collect()
        } else {
            z.clone()
        };
        out.push(z);
    }
    out
}

fn random_box(rng: &mut ChaCha8Rng, n: usize) -> InputBox {
    let centre: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let radius: Vec<f64> = (0..n)
        .map(|_| {
            if rng.random_bool(0.1) {
                0.0
            } else {
                rng.random_range(0.0..0.8)
            }
        })
        .collect();
    InputBox {
        lower: centre.iter().zip(&radius).map(|(c, r)| c - r).collect(),
        upper: centre.iter().zip(&radius).map(|(c, r)| c + r).collect(),
    }
}

fn sample(rng: &mut ChaCha8Rng, bx: &InputBox, vertex: bool) -> Vec<f64> {
    bx.lower
        .iter()
        .zip(&bx.upper)
        .map(|(&l, &u)| {
            if vertex {
                if rng.random_bool(0.5) { l } else { u }
            } else {
                l + (u - l) * rng.random::<f64>()
            }
        })
        .collect()
}

#[test]
fn samples_lie_inside_dense_bounds() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0usize;
    for i in 0..200 {
        let (layers, graph) = if i % 4 == 3 {
            let n_in = rng.random_range(FORWARD_MAX_INPUTS + 1..FORWARD_MAX_INPUTS + 60);
            random_mlp_with_inputs(&mut rng, n_in)
        } else {
            random_mlp(&mut rng)
        };
        let net = DenseReluNet::from_graph(&graph).expect("a ReLU MLP is dense");
        let n_in = net.input_size();
        let boxes: Vec<InputBox> = (0..rng.random_range(1..6))
            .map(|_| random_box(&mut rng, n_in))
            .collect();
        let priors = vec![None; boxes.len()];
        let all = net.bound_boxes(&boxes, &priors);
        let m = net.output_size();
        let c = Array2::from_shape_fn((3, m), |_| rng.random_range(-1.0..1.0));
        for (bx, bounds) in boxes.iter().zip(&all) {
            let (lower, _) = net.objective_lower(bx, bounds, c.view());
            for s in 0..300 {
                let x = sample(&mut rng, bx, s % 3 == 0);
                let zs = trace(&layers, &x);
                for (k, z) in zs.iter().enumerate() {
                    for (j, v) in z.iter().enumerate() {
                        let lb = &bounds.layers[k];
                        assert!(
                            lb.lower[j] <= *v && *v <= lb.upper[j],
                            "layer {k} neuron {j}: {v} outside [{}, {}]",
                            lb.lower[j],
                            lb.upper[j]
                        );
                        checked += 1;
                    }
                }
                let y = zs.last().unwrap();
                for (r, row) in c.rows().into_iter().enumerate() {
                    let v: f64 = row.iter().zip(y).map(|(a, b)| a * b).sum();
                    assert!(lower[r] <= v, "objective {r}: {v} below bound {}", lower[r]);
                }
            }
        }
    }
    assert!(checked > 100_000, "only {checked} values checked");
}

/// A ReLU on the outputs becomes a hidden layer plus an exact identity layer: the last layer's bounds and the
/// objective bound hold for the ReLU'd outputs at sampled points (both input regimes).
#[test]
fn output_relu_is_bounded_soundly_as_an_identity_layer() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let mut checked = 0usize;
    for i in 0..80 {
        let n_in = if i % 2 == 0 {
            rng.random_range(1..7)
        } else {
            rng.random_range(FORWARD_MAX_INPUTS + 1..FORWARD_MAX_INPUTS + 30)
        };
        let (layers, graph) = random_mlp_ending(&mut rng, n_in, true);
        let net =
            DenseReluNet::from_graph(&graph).expect("a ReLU MLP with an output ReLU is dense");
        assert_eq!(net.output_size(), layers.last().unwrap().0.nrows());
        let bx = random_box(&mut rng, n_in);
        let bounds = net
            .bound_boxes(std::slice::from_ref(&bx), &[None])
            .remove(0);
        assert_eq!(bounds.layers.len(), layers.len() + 1);
        let c = Array2::from_shape_fn((2, net.output_size()), |_| rng.random_range(-1.0..1.0));
        let (lower, _) = net.objective_lower(&bx, &bounds, c.view());
        for s in 0..300 {
            let x = sample(&mut rng, &bx, s % 3 == 0);
            let y: Vec<f64> = trace(&layers, &x)
                .last()
                .unwrap()
                .iter()
                .map(|v| v.max(0.0))
                .collect();
            let out = bounds.layers.last().unwrap();
            for (j, v) in y.iter().enumerate() {
                assert!(
                    out.lower[j] <= *v && *v <= out.upper[j],
                    "output {j}: {v} outside"
                );
                checked += 1;
            }
            for (r, row) in c.rows().into_iter().enumerate() {
                let v: f64 = row.iter().zip(&y).map(|(a, b)| a * b).sum();
                assert!(lower[r] <= v, "objective {r}: {v} below bound {}", lower[r]);
            }
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn priors_only_tighten_and_sub_boxes_stay_sound() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for i in 0..100 {
        let (layers, graph) = if i % 4 == 3 {
            random_mlp_with_inputs(&mut rng, FORWARD_MAX_INPUTS + 10)
        } else {
            random_mlp(&mut rng)
        };
        let net = DenseReluNet::from_graph(&graph).unwrap();
        let parent = random_box(&mut rng, net.input_size());
        let pb = net
            .bound_boxes(std::slice::from_ref(&parent), &[None])
            .remove(0);
        // A random sub-box.
        let a = sample(&mut rng, &parent, false);
        let b = sample(&mut rng, &parent, false);
        let child = InputBox {
            lower: a.iter().zip(&b).map(|(x, y)| x.min(*y)).collect(),
            upper: a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect(),
        };
        let cb = net
            .bound_boxes(std::slice::from_ref(&child), &[Some(&pb)])
            .remove(0);
        for (k, (p, c)) in pb.layers.iter().zip(&cb.layers).enumerate() {
            for j in 0..p.lower.len() {
                assert!(
                    c.lower[j] >= p.lower[j] && c.upper[j] <= p.upper[j],
                    "layer {k}"
                );
            }
        }
        for _ in 0..200 {
            let x = sample(&mut rng, &child, false);
            for (k, z) in trace(&layers, &x).iter().enumerate() {
                for (j, v) in z.iter().enumerate() {
                    assert!(cb.layers[k].lower[j] <= *v && *v <= cb.layers[k].upper[j]);
                }
            }
        }
    }
}

#[test]
fn dense_objective_is_at_least_as_tight_as_interval_arithmetic() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut strictly_tighter = 0;
    for _ in 0..100 {
        let (_, graph) = random_mlp(&mut rng);
        let net = DenseReluNet::from_graph(&graph).unwrap();
        let bx = random_box(&mut rng, net.input_size());
        let m = net.output_size();
        let c = Array2::from_shape_fn((2, m), |_| rng.random_range(-1.0..1.0));
        let bounds = net
            .bound_boxes(std::slice::from_ref(&bx), &[None])
            .remove(0);
        let (dense, _) = net.objective_lower(&bx, &bounds, c.view());
        let model = BoundModel::new(&graph);
        let bounder = model.bounder();
        let ibp = bounder.node_bounds(&bx, Method::Interval);
        let out = &ibp[graph.output_id().0];
        let ibp_lower: Vec<f64> = (0..2)
            .map(|r| {
                (0..m)
                    .map(|j| {
                        let cj = c[[r, j]];
                        if cj >= 0.0 {
                            cj * out.lower[j]
                        } else {
                            cj * out.upper[j]
                        }
                    })
                    .sum()
            })
            .collect();
        for r in 0..2 {
            // Allow for the two engines' different rounding-error terms.
            let tol = 1e-5 * (1.0 + ibp_lower[r].abs());
            assert!(
                dense[r] >= ibp_lower[r] - tol,
                "dense {} vs ibp {}",
                dense[r],
                ibp_lower[r]
            );
            if dense[r] > ibp_lower[r] + 1e-6 {
                strictly_tighter += 1;
            }
        }
    }
    assert!(
        strictly_tighter > 20,
        "only {strictly_tighter} objectives tighter than IBP"
    );
}

#[test]
fn linear_network_bounds_are_exact() {
    let mut b = GraphBuilder::new("x", vec![2]);
    let fc = Op::Linear(Linear {
        weight: ndarray::arr2(&[[2.0, -3.0]]),
        bias: Some(ndarray::arr1(&[1.0])),
    });
    let y = b.push("fc", fc, vec![b.input_id()], None).unwrap();
    let net = DenseReluNet::from_graph(&b.finish(y)).unwrap();
    let bx = InputBox {
        lower: vec![-1.0, 0.0],
        upper: vec![1.0, 2.0],
    };
    let bounds = net
        .bound_boxes(std::slice::from_ref(&bx), &[None])
        .remove(0);
    let out = bounds.output();
    // y = 2a − 3b + 1 ∈ [−7, 3]
    assert!(out.lower[0] <= -7.0 && out.lower[0] > -7.0 - 1e-5);
    assert!(out.upper[0] >= 3.0 && out.upper[0] < 3.0 + 1e-5);
    let c = ndarray::arr2(&[[1.0], [-1.0]]);
    let (lower, coeffs) = net.objective_lower(&bx, &bounds, c.view());
    assert!(lower[0] <= -7.0 && lower[0] > -7.0 - 1e-5);
    assert!(lower[1] <= -3.0 && lower[1] > -3.0 - 1e-5);
    assert_eq!(coeffs.row(0).to_vec(), vec![2.0, -3.0]);
}

#[test]
fn other_graphs_are_not_dense() {
    let mut b = GraphBuilder::new("x", vec![2]);
    let t = b.push("t", Op::Tanh, vec![b.input_id()], None).unwrap();
    assert!(DenseReluNet::from_graph(&b.finish(t)).is_none());
}

/// β-CROWN on sub-domains of ReLU splits: clamp a few unstable neurons' bounds at 0 (as ReLU-splitting
/// branch-and-bound does), bound the objective with α and with α+β, and check both at sampled points that
/// satisfy the splits. The joint α+β optimization starts from CROWN, so it is never looser than CROWN; it
/// must beat α alone more often than it loses to it.
#[test]
fn beta_bounds_hold_on_split_sub_domains_and_tighten() {
    use nncert_bounds::dense::ObjectiveOptions;
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let (mut checked, mut tighter, mut looser, mut points) = (0, 0, 0, 0usize);
    for i in 0..150 {
        let (layers, graph) = if i % 3 == 2 {
            random_mlp_with_inputs(&mut rng, FORWARD_MAX_INPUTS + 6)
        } else {
            random_mlp(&mut rng)
        };
        if layers.len() < 2 {
            continue;
        }
        let net = DenseReluNet::from_graph(&graph).unwrap();
        let bx = random_box(&mut rng, net.input_size());
        let root = net
            .bound_boxes(std::slice::from_ref(&bx), &[None])
            .remove(0);
        // Up to three splits on unstable hidden neurons, each side at random.
        let mut split = root.clone();
        let mut phases = Vec::new();
        for (k, l) in root.layers[..root.layers.len() - 1].iter().enumerate() {
            for j in 0..l.lower.len() {
                if l.lower[j] < 0.0 && l.upper[j] > 0.0 && phases.len() < 3 && rng.random_bool(0.5)
                {
                    let active = rng.random_bool(0.5);
                    if active {
                        split.layers[k].lower[j] = 0.0;
                    } else {
                        split.layers[k].upper[j] = 0.0;
                    }
                    phases.push((k, j, active));
                }
            }
        }
        if phases.is_empty() {
            continue;
        }
        let b = net
            .bound_boxes(std::slice::from_ref(&bx), &[Some(&split)])
            .remove(0);
        if b.layers
            .iter()
            .any(|l| l.lower.iter().zip(&l.upper).any(|(lo, up)| lo > up))
        {
            continue; // the splits are infeasible: the search closes such domains
        }
        let m = net.output_size();
        let c = Array2::from_shape_fn((m, m), |(r, j)| if r == j { 1.0 } else { 0.0 });
        let opts = |beta| ObjectiveOptions {
            alpha_iterations: 12,
            beta,
            ..Default::default()
        };
        let crown = net.objective_lower(&bx, &b, c.view()).0;
        let alpha = net
            .objective_lower_with(&bx, &b, c.view(), opts(false))
            .lower;
        let beta = net
            .objective_lower_with(&bx, &b, c.view(), opts(true))
            .lower;
        for r in 0..m {
            assert!(
                beta[r] >= crown[r],
                "β below CROWN on row {r}: {} < {}",
                beta[r],
                crown[r]
            );
            checked += 1;
            let tol = 1e-9 * (1.0 + alpha[r].abs());
            tighter += usize::from(beta[r] > alpha[r] + tol);
            looser += usize::from(beta[r] < alpha[r] - tol);
        }
        for s in 0..3000 {
            let x = sample(&mut rng, &bx, s % 5 == 0);
            let z = trace(&layers, &x);
            if !phases
                .iter()
                .all(|&(k, j, active)| (z[k][j] >= 0.0) == active)
            {
                continue;
            }
            points += 1;
            let y = z.last().unwrap();
            for r in 0..m {
                assert!(
                    y[r] >= beta[r],
                    "net {i}: output {r} = {} below its β-CROWN bound {} on the split sub-domain",
                    y[r],
                    beta[r]
                );
            }
        }
    }
    eprintln!(
        "β-CROWN: {checked} rows, tighter than α alone on {tighter}, looser on {looser}; {points} points in \
         split domains"
    );
    assert!(checked > 50 && points > 1000);
    assert!(
        tighter > looser,
        "β tightened {tighter} rows, loosened {looser}"
    );
}
