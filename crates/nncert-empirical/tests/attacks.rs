//! Attacks against closed forms (linear classifiers), ball/range/re-execution invariants, determinism.

use ndarray::{Array1, Array2, arr1};
use nncert_data::Dataset;
use nncert_empirical::attack::{
    AttackKind, AttackOptions, Norm, attack_samples, minimal_eps, robustness_curve,
};
use nncert_empirical::{Model, margin};
use nncert_model::Graph;
use nncert_model::ir::{GraphBuilder, Linear, Op};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const W: [f32; 5] = [1.0, -2.0, 0.5, 3.0, -0.25];

/// Two classes: z0 = w·x + b, z1 = 0, so the margin of label 0 is w·x + b and the best L∞ (L2) attack of radius ε
/// lowers it by exactly ε‖w‖₁ (ε‖w‖₂) when the input range does not bind.
fn linear_binary(b: f32) -> Graph {
    let mut g = GraphBuilder::new("x", vec![W.len()]);
    let mut w = Array2::<f32>::zeros((2, W.len()));
    w.row_mut(0).assign(&arr1(&W));
    let fc = Op::Linear(Linear {
        weight: w,
        bias: Some(arr1(&[b, 0.0])),
    });
    let h = g.push("fc", fc, vec![g.input_id()], None).unwrap();
    g.finish(h)
}

fn unbounded(x: Array2<f32>, labels: Vec<usize>) -> Dataset {
    let d = x.ncols();
    Dataset {
        shape: vec![d],
        lower: vec![f32::NEG_INFINITY; d],
        upper: vec![f32::INFINITY; d],
        origin: "test".into(),
        x,
        labels,
    }
}

fn samples(n: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((n, W.len()), |_| rng.random_range(-1.0f32..1.0))
}

fn norms() -> (f64, f64) {
    let l1 = W.iter().map(|v| v.abs() as f64).sum();
    let l2 = W.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt();
    (l1, l2)
}

#[test]
fn gradient_attacks_reach_the_closed_form_optimum() {
    // A large bias keeps every sample robust at ε, so the reported best margin is the attack's optimum.
    let g = linear_binary(20.0);
    let model = Model::new(&g).unwrap();
    let x = samples(10, 1);
    let data = unbounded(x.clone(), vec![0; 10]);
    let (l1, l2) = norms();
    let eps = 0.3f32;
    for (kind, norm) in [
        (AttackKind::Pgd, Norm::Linf),
        (AttackKind::Pgd, Norm::L2),
        (AttackKind::ApgdCe, Norm::Linf),
        (AttackKind::ApgdCe, Norm::L2),
        (AttackKind::ApgdDlr, Norm::Linf),
        (AttackKind::ApgdT, Norm::L2),
    ] {
        let opts = AttackOptions {
            kind,
            norm,
            steps: 50,
            restarts: 2,
            ..AttackOptions::default()
        };
        let run = attack_samples(&model, &data, &[eps; 10], None, &opts, &|_| {}).unwrap();
        for (i, o) in run.outcomes.iter().enumerate() {
            let m0: f64 = x
                .row(i)
                .iter()
                .zip(W)
                .map(|(a, b)| (*a * b) as f64)
                .sum::<f64>()
                + 20.0;
            let opt = m0 - eps as f64 * if norm == Norm::Linf { l1 } else { l2 };
            assert!(!o.broken, "{kind:?} {norm:?}: sample {i} cannot be broken");
            assert!(
                (o.best_margin as f64 - opt).abs() < 1e-4 * opt.abs().max(1.0),
                "{kind:?} {norm:?} sample {i}: best margin {} vs optimum {opt}",
                o.best_margin
            );
        }
    }
}

#[test]
fn minimal_eps_matches_the_closed_form() {
    let g = linear_binary(1.0);
    let model = Model::new(&g).unwrap();
    let x = samples(12, 2);
    let m0: Vec<f64> = x
        .rows()
        .into_iter()
        .map(|r| r.iter().zip(W).map(|(a, b)| (*a * b) as f64).sum::<f64>() + 1.0)
        .collect();
    let labels: Vec<usize> = m0.iter().map(|&m| if m >= 0.0 { 0 } else { 1 }).collect();
    let data = unbounded(x, labels);
    let (l1, l2) = norms();
    for (norm, dual) in [(Norm::Linf, l1), (Norm::L2, l2)] {
        let opts = AttackOptions {
            kind: AttackKind::Pgd,
            norm,
            steps: 40,
            ..AttackOptions::default()
        };
        let found = minimal_eps(&model, &data, 2.0, 24, &opts, &|_| {}).unwrap();
        for (i, e) in found.iter().enumerate() {
            let exact = m0[i].abs() / dual;
            let e = e.expect("within 2.0 every sample is breakable") as f64;
            // The attack cannot succeed below the true radius (bar f32 rounding), and bisection must get close.
            assert!(
                e >= exact - 1e-5,
                "{norm:?} sample {i}: {e} below the exact {exact}"
            );
            assert!(
                e - exact < 1e-4,
                "{norm:?} sample {i}: {e} vs exact {exact}"
            );
        }
    }
}

/// A small random ReLU network on [0, 1]^12 with 4 classes.
fn relu_net(seed: u64) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut g = GraphBuilder::new("x", vec![1, 3, 4]);
    let flat = g
        .push("flat", Op::Reshape, vec![g.input_id()], Some(vec![12]))
        .unwrap();
    let w1 = Array2::from_shape_fn((16, 12), |_| rng.random_range(-1.0f32..1.0));
    let b1 = Array1::from_shape_fn(16, |_| rng.random_range(-0.5f32..0.5));
    let h = g
        .push(
            "fc1",
            Op::Linear(Linear {
                weight: w1,
                bias: Some(b1),
            }),
            vec![flat],
            None,
        )
        .unwrap();
    let r = g.push("relu", Op::Relu, vec![h], None).unwrap();
    let w2 = Array2::from_shape_fn((4, 16), |_| rng.random_range(-1.0f32..1.0));
    let o = g
        .push(
            "fc2",
            Op::Linear(Linear {
                weight: w2,
                bias: None,
            }),
            vec![r],
            None,
        )
        .unwrap();
    g.finish(o)
}

fn unit_data(model: &Model, n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, 12), |_| rng.random_range(0.0f32..=1.0));
    // Label = the model's own prediction for most samples, a wrong one for a few.
    let mut labels = model.predict(x.view()).unwrap();
    labels[0] = (labels[0] + 1) % 4;
    Dataset {
        x,
        labels,
        shape: vec![1, 3, 4],
        lower: vec![0.0; 12],
        upper: vec![1.0; 12],
        origin: "test".into(),
    }
}

const ALL: [AttackKind; 7] = [
    AttackKind::Fgsm,
    AttackKind::Pgd,
    AttackKind::ApgdCe,
    AttackKind::ApgdDlr,
    AttackKind::ApgdT,
    AttackKind::Square,
    AttackKind::Ensemble,
];

#[test]
fn adversarial_examples_stay_in_ball_and_range_and_are_misclassified() {
    let g = relu_net(3);
    let model = Model::new(&g).unwrap();
    let data = unit_data(&model, 40, 4);
    let mut broken_somewhere = 0;
    for kind in ALL {
        for norm in [Norm::Linf, Norm::L2] {
            if kind == AttackKind::Square && norm == Norm::L2 {
                continue;
            }
            let eps = if norm == Norm::Linf { 0.1 } else { 0.3 };
            let opts = AttackOptions {
                kind,
                norm,
                steps: 20,
                restarts: 2,
                queries: 200,
                batch: 7,
                ..AttackOptions::default()
            };
            let run = attack_samples(&model, &data, &[eps; 40], None, &opts, &|_| {}).unwrap();
            assert!(
                run.outcomes[0].broken,
                "a misclassified sample counts as broken"
            );
            for o in &run.outcomes {
                let Some(adv) = &o.adv else { continue };
                broken_somewhere += 1;
                let x0 = data.x.row(o.index);
                let d = nncert_empirical::attack::distance(
                    adv.iter().copied(),
                    x0.iter().copied(),
                    norm,
                );
                assert!(d <= eps as f64, "{kind:?} {norm:?}: distance {d} > {eps}");
                assert!(
                    adv.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{kind:?}: out of range"
                );
                let a = Array2::from_shape_vec((1, 12), adv.clone()).unwrap();
                let z = model.logits(a.view()).unwrap();
                let pred = nncert_empirical::argmax(z.row(0).as_slice().unwrap());
                assert_ne!(
                    pred, o.label,
                    "{kind:?}: reported success is not misclassified"
                );
                assert_eq!(Some(pred), o.adv_pred);
                assert!(margin(z.row(0).as_slice().unwrap(), o.label) <= 0.0);
            }
        }
    }
    assert!(
        broken_somewhere > 20,
        "the attacks should break some samples ({broken_somewhere})"
    );
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let g = relu_net(5);
    let model = Model::new(&g).unwrap();
    let data = unit_data(&model, 30, 6);
    for kind in [
        AttackKind::Pgd,
        AttackKind::ApgdCe,
        AttackKind::Square,
        AttackKind::Ensemble,
    ] {
        let opts = AttackOptions {
            kind,
            norm: Norm::Linf,
            steps: 15,
            restarts: 3,
            queries: 100,
            batch: 4,
            seed: 42,
            ..AttackOptions::default()
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| robustness_curve(&model, &data, &[0.03, 0.08], &opts, &|_| {}).unwrap())
        };
        let (a, b) = (run(1), run(2));
        for (ra, rb) in a.iter().zip(&b) {
            assert_eq!(ra.robust, rb.robust, "{kind:?}");
            for (sa, sb) in ra.samples.iter().zip(&rb.samples) {
                assert_eq!(sa.adv, sb.adv, "{kind:?} sample {}", sa.index);
                assert_eq!(sa.best_margin.to_bits(), sb.best_margin.to_bits());
            }
        }
        // A different seed may change the random restarts: the run must at least still be valid.
        assert!(
            a[0].robust >= a[1].robust,
            "robust accuracy cannot grow with ε"
        );
    }
}

#[test]
fn ensemble_is_at_least_as_strong_as_its_members() {
    let g = relu_net(7);
    let model = Model::new(&g).unwrap();
    let data = unit_data(&model, 40, 8);
    let base = AttackOptions {
        steps: 20,
        restarts: 2,
        queries: 200,
        ..AttackOptions::default()
    };
    let ens = robustness_curve(
        &model,
        &data,
        &[0.05],
        &AttackOptions {
            kind: AttackKind::Ensemble,
            ..base.clone()
        },
        &|_| {},
    )
    .unwrap();
    for kind in [
        AttackKind::Fgsm,
        AttackKind::Pgd,
        AttackKind::ApgdCe,
        AttackKind::Square,
    ] {
        let r = robustness_curve(
            &model,
            &data,
            &[0.05],
            &AttackOptions {
                kind,
                ..base.clone()
            },
            &|_| {},
        )
        .unwrap();
        assert!(
            ens[0].robust <= r[0].robust,
            "{kind:?}: ensemble {} vs {}",
            ens[0].robust,
            r[0].robust
        );
    }
    let (lo, hi) = ens[0].ci95;
    assert!(lo <= ens[0].robust_accuracy && ens[0].robust_accuracy <= hi);
}

#[test]
fn bad_options_are_errors() {
    let g = relu_net(9);
    let model = Model::new(&g).unwrap();
    let data = unit_data(&model, 5, 10);
    let opts = AttackOptions {
        kind: AttackKind::Square,
        norm: Norm::L2,
        ..AttackOptions::default()
    };
    let err = attack_samples(&model, &data, &[0.1; 5], None, &opts, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("L∞ only"), "{err}");
    let err = attack_samples(
        &model,
        &data,
        &[-0.1; 5],
        None,
        &AttackOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("non-negative"), "{err}");
    let mut wrong = data.clone();
    wrong.labels[2] = 9;
    let err = attack_samples(
        &model,
        &wrong,
        &[0.1; 5],
        None,
        &AttackOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("label 9 of sample 2"), "{err}");
}
