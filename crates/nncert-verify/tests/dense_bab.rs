//! Dense branch-and-bound against brute force: on random ReLU MLPs with a threshold property set near the
//! sampled minimum (so both answers occur), a proof must survive dense sampling, a counterexample must re-check,
//! and the dense and generic engines never contradict each other.

use ndarray::{Array1, Array2};
use nncert_bounds::dense::DenseReluNet;
use nncert_model::ir::{Graph, GraphBuilder, Linear, Op};
use nncert_verify::bab::{self, BabOutcome};
use nncert_verify::dense_bab::input_split_dense;
use nncert_verify::dense_relu_bab::relu_split_dense;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// Weights and bias of one affine layer.
type Layer = (Array2<f32>, Array1<f32>);

fn random_mlp(rng: &mut ChaCha8Rng, n_in: usize) -> (Vec<Layer>, Graph) {
    let mut b = GraphBuilder::new("x", vec![1, n_in]);
    let mut cur = b.input_id();
    let mut width = n_in;
    let mut layers = Vec::new();
    let depth = rng.random_range(2..5);
    for k in 0..depth {
        let out = if k + 1 == depth {
            2
        } else {
            rng.random_range(4..16)
        };
        let s = 1.5 / (width as f32).sqrt();
        let w = Array2::from_shape_fn((out, width), |_| rng.random_range(-s..s));
        let bias = Array1::from_shape_fn(out, |_| rng.random_range(-0.5f32..0.5));
        layers.push((w.clone(), bias.clone()));
        let op = Op::Linear(Linear {
            weight: w,
            bias: Some(bias),
        });
        cur = b.push(format!("fc{k}"), op, vec![cur], None).unwrap();
        if k + 1 < depth {
            cur = b
                .push(format!("relu{k}"), Op::Relu, vec![cur], None)
                .unwrap();
        }
        width = out;
    }
    (layers, b.finish(cur))
}

/// y0 − y1 at `x`, in f64.
fn margin(layers: &[Layer], x: &[f64]) -> f64 {
    let mut h = x.to_vec();
    for (k, (w, b)) in layers.iter().enumerate() {
        h = (0..w.nrows())
            .map(|i| {
                let z = f64::from(b[i])
                    + (0..w.ncols())
                        .map(|j| f64::from(w[[i, j]]) * h[j])
                        .sum::<f64>();
                if k + 1 < layers.len() { z.max(0.0) } else { z }
            })
            .collect();
    }
    h[0] - h[1]
}

/// The box `lower ≤ x ≤ upper` with the bad region `y0 − y1 ≤ t`, as VNN-LIB.
fn threshold_property(lower: &[f64], upper: &[f64], t: f64) -> nncert_spec::Property {
    let n_in = lower.len();
    let mut text = String::new();
    for j in 0..n_in {
        text += &format!("(declare-const X_{j} Real)\n");
    }
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n";
    for j in 0..n_in {
        text += &format!(
            "(assert (>= X_{j} {:.17}))\n(assert (<= X_{j} {:.17}))\n",
            lower[j], upper[j]
        );
    }
    text += &format!("(assert (<= (- Y_0 Y_1) {t:.17}))\n");
    nncert_spec::parse_str(&text, "random").unwrap()
}

#[test]
fn dense_bab_agrees_with_sampling_and_the_generic_engine() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (mut proved, mut found) = (0, 0);
    for case in 0..40 {
        let n_in = rng.random_range(1..5);
        let (layers, graph) = random_mlp(&mut rng, n_in);
        let net = DenseReluNet::from_graph(&graph).unwrap();
        let lower: Vec<f64> = (0..n_in).map(|_| rng.random_range(-1.0..0.0)).collect();
        let upper: Vec<f64> = lower
            .iter()
            .map(|l| l + rng.random_range(0.1..1.0))
            .collect();
        let samples: Vec<Vec<f64>> = (0..20_000)
            .map(|_| {
                (0..n_in)
                    .map(|j| rng.random_range(lower[j]..=upper[j]))
                    .collect()
            })
            .collect();
        let min = samples
            .iter()
            .map(|x| margin(&layers, x))
            .fold(f64::INFINITY, f64::min);
        // Bad region y0 − y1 ≤ t, with t just below or just above the sampled minimum.
        let t = min + if case % 2 == 0 { -0.02 } else { 0.02 };
        let prop = threshold_property(&lower, &upper, t);
        let deadline = Instant::now() + Duration::from_secs(5);
        let limits = nncert_verify::dense_bab::QueueLimits::for_net(&net, 1 << 30);
        let dense = input_split_dense(&net, &graph, &prop, deadline, limits);
        let deadline = Instant::now() + Duration::from_secs(5);
        let generic = bab::input_split(&graph, &prop, deadline, 1_000_000);
        for outcome in [&dense, &generic] {
            match outcome {
                BabOutcome::Proved { .. } => {
                    for x in &samples {
                        let m = margin(&layers, x);
                        assert!(
                            m > t - 1e-9,
                            "case {case}: proved, but x={x:?} has margin {m} ≤ {t}"
                        );
                    }
                }
                BabOutcome::Counterexample { cex, .. } => {
                    assert!(prop.is_counterexample(&cex.input, &cex.output_f64, 0.0));
                    assert!(margin(&layers, &cex.input) <= t + 1e-9);
                }
                BabOutcome::Undecided { .. } => {}
            }
        }
        match (&dense, &generic) {
            (BabOutcome::Proved { .. }, BabOutcome::Counterexample { .. })
            | (BabOutcome::Counterexample { .. }, BabOutcome::Proved { .. }) => {
                panic!("case {case}: the dense and generic engines disagree")
            }
            _ => {}
        }
        match dense {
            BabOutcome::Proved { .. } => proved += 1,
            BabOutcome::Counterexample { .. } => found += 1,
            BabOutcome::Undecided { .. } => {}
        }
    }
    // Near-threshold cases are hard but small: the dense engine decides most of them.
    assert!(
        proved >= 10 && found >= 10,
        "proved {proved}, found {found} of 40"
    );
}

#[test]
fn relu_splitting_proofs_survive_sampling_on_wide_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut proved, mut split_proofs, mut found) = (0, 0, 0);
    for case in 0..60 {
        let n_in = rng.random_range(70..120);
        let (layers, graph) = random_mlp(&mut rng, n_in);
        let net = DenseReluNet::from_graph(&graph).unwrap();
        let centre: Vec<f64> = (0..n_in).map(|_| rng.random_range(-1.0..1.0)).collect();
        let eps = rng.random_range(0.01..0.06);
        let lower: Vec<f64> = centre.iter().map(|c| c - eps).collect();
        let upper: Vec<f64> = centre.iter().map(|c| c + eps).collect();
        let samples: Vec<Vec<f64>> = (0..5_000)
            .map(|s| {
                (0..n_in)
                    .map(|j| match s % 2 {
                        0 => rng.random_range(lower[j]..=upper[j]),
                        _ => {
                            if rng.random_bool(0.5) {
                                lower[j]
                            } else {
                                upper[j]
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        let margins: Vec<f64> = samples.iter().map(|x| margin(&layers, x)).collect();
        let min = margins.iter().copied().fold(f64::INFINITY, f64::min);
        let max = margins.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let t = min - [3.0, 1.5, 1.0, 0.7][case % 4] * (max - min);
        let prop = threshold_property(&lower, &upper, t);
        let deadline = Instant::now() + Duration::from_secs(3);
        match relu_split_dense(&net, &graph, &prop, deadline, 100_000, None, &[]).0 {
            BabOutcome::Proved { domains } => {
                proved += 1;
                if domains > 1 {
                    split_proofs += 1;
                }
                for x in &samples {
                    let m = margin(&layers, x);
                    assert!(m > t - 1e-9, "case {case}: proved, but margin {m} ≤ {t}");
                }
            }
            BabOutcome::Counterexample { cex, .. } => {
                found += 1;
                assert!(prop.is_counterexample(&cex.input, &cex.output_f64, 0.0));
                assert!(margin(&layers, &cex.input) <= t + 1e-9);
            }
            BabOutcome::Undecided { .. } => {}
        }
    }
    eprintln!(
        "wide inputs: {proved} proved ({split_proofs} after splitting), {found} counterexamples"
    );
    assert!(
        proved >= 10 && split_proofs >= 2,
        "proved {proved} ({split_proofs} after splitting) of 30"
    );
}
