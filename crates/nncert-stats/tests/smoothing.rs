//! Randomized smoothing against closed forms: for a linear two-class classifier `f(x) = argmax(Wx + b)` under
//! `N(0, σ²I)` noise, `p_A = Φ(m / (σ‖w_a − w_b‖))` with `m` the logit margin, and the smoothed classifier's
//! true robustness radius is `σ·Φ⁻¹(p_A) = m / ‖w_a − w_b‖`, the distance to the decision boundary.

use ndarray::{Array1, Array2};
use nncert_model::Graph;
use nncert_model::ir::{GraphBuilder, Linear, Op};
use nncert_stats::binomial::{self, phi, phi_inv};
use nncert_stats::smoothing::SmoothedClassifier;
use rand::RngExt;

fn linear(weight: Vec<Vec<f32>>, bias: Vec<f32>) -> Graph {
    let (rows, cols) = (weight.len(), weight[0].len());
    let w = Array2::from_shape_vec((rows, cols), weight.concat()).unwrap();
    let mut b = GraphBuilder::new("x", vec![cols]);
    let op = Op::Linear(Linear {
        weight: w,
        bias: Some(Array1::from(bias)),
    });
    let h = b.push("fc", op, vec![b.input_id()], None).unwrap();
    b.finish(h)
}

/// Δw = (2, 0, −1), ‖Δw‖ = √5; the bias difference is 0.
fn two_class() -> Graph {
    linear(
        vec![vec![1.0, 0.5, -0.5], vec![-1.0, 0.5, 0.5]],
        vec![0.1, 0.1],
    )
}

fn margin_and_norm(x: &[f64]) -> (f64, f64) {
    (2.0 * x[0] - x[2], 5f64.sqrt())
}

#[test]
fn certified_radius_is_below_the_true_radius_and_converges() {
    let g = two_class();
    let sigma = 0.5;
    let x = [0.4, -0.3, 0.2]; // margin 0.6
    let (m, norm) = margin_and_norm(&x);
    let p_a = phi(m / (sigma * norm));
    let true_radius = m / norm;
    let alpha = 0.001;
    let mut gaps = Vec::new();
    for &n in &[1_000u64, 10_000, 100_000] {
        let sc = SmoothedClassifier::new(&g, sigma, 7).unwrap();
        let c = sc.certify(&x, 0, 100, n, alpha).unwrap();
        assert_eq!(c.class, Some(0), "n = {n}: {c:?}");
        assert!(
            c.radius <= true_radius,
            "n = {n}: certified {} > true {true_radius}",
            c.radius
        );
        // The Clopper–Pearson bound lies within a few binomial standard deviations of p_A.
        let sd = (p_a * (1.0 - p_a) / n as f64).sqrt();
        let worst = sigma * phi_inv(p_a - 6.0 * sd);
        assert!(
            c.radius >= worst,
            "n = {n}: radius {} below {worst} (true {true_radius})",
            c.radius
        );
        eprintln!(
            "n = {n}: certified radius {:.4} (p_lower {:.5}), true {true_radius:.4} (p_A {p_a:.5})",
            c.radius, c.p_lower
        );
        gaps.push(true_radius - c.radius);
    }
    assert!(
        gaps[2] < gaps[0],
        "the gap does not shrink with n: {gaps:?}"
    );
}

#[test]
fn certify_abstains_near_the_boundary_and_predict_controls_errors() {
    let g = two_class();
    let sc = SmoothedClassifier::new(&g, 0.25, 3).unwrap();
    // On the boundary p_A = 1/2 exactly: certify must abstain and predict may answer in at most ~alpha of runs.
    let x = [0.1, 0.0, 0.2];
    let alpha = 0.01;
    let mut answered = 0;
    for point in 0..40 {
        let c = sc.certify(&x, point, 100, 2_000, alpha).unwrap();
        assert_eq!(c.class, None, "{c:?}");
        assert_eq!(c.radius, 0.0);
        if sc.predict(&x, point, 2_000, alpha).unwrap().class.is_some() {
            answered += 1;
        }
    }
    assert!(
        answered <= 3,
        "predict answered {answered}/40 times at p_A = 1/2 with alpha = {alpha}"
    );
    // Far from the boundary predict answers with the right class.
    let p = sc.predict(&[1.0, 0.0, 0.0], 0, 1_000, alpha).unwrap();
    assert_eq!(p.class, Some(0));
    let p = sc.predict(&[-1.0, 0.0, 0.0], 0, 1_000, alpha).unwrap();
    assert_eq!(p.class, Some(1));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let g = two_class();
    let x = [0.3, 0.1, 0.1];
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let sc = SmoothedClassifier::new(&g, 0.5, 11)
                .unwrap()
                .with_batch(250);
            let xs = ndarray::arr2(&[
                [0.3, 0.1, 0.1],
                [0.0, 0.5, -0.2],
                [-0.4, 0.0, 0.3],
                [0.05, 0.0, 0.0],
            ]);
            let all: Vec<_> = sc
                .certify_all(xs.view(), 50, 3_000, 0.001, &|_| {})
                .unwrap()
                .into_iter()
                .map(|(c, _)| c)
                .collect();
            // Point i of certify_all is certify(x, i).
            assert_eq!(
                all[2],
                sc.certify(&[-0.4, 0.0, 0.3], 2, 50, 3_000, 0.001).unwrap()
            );
            (
                sc.sample_counts(&x, 5_003, 4, 1).unwrap(),
                sc.certify(&x, 4, 100, 5_003, 0.001).unwrap(),
                all,
            )
        })
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a, b);
    // A different seed gives different counts (the seed is used).
    let sc = SmoothedClassifier::new(&g, 0.5, 12)
        .unwrap()
        .with_batch(250);
    assert_ne!(sc.sample_counts(&x, 5_003, 4, 1).unwrap(), a.0);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let g = two_class();
    assert!(SmoothedClassifier::new(&g, 0.0, 0).is_err());
    assert!(SmoothedClassifier::new(&g, f64::NAN, 0).is_err());
    let sc = SmoothedClassifier::new(&g, 0.5, 0).unwrap();
    assert!(sc.certify(&[0.0, 0.0], 0, 10, 10, 0.01).is_err());
    assert!(
        sc.certify(&[0.0, f64::INFINITY, 0.0], 0, 10, 10, 0.01)
            .is_err()
    );
    assert!(sc.certify(&[0.0; 3], 0, 0, 10, 0.01).is_err());
    assert!(sc.certify(&[0.0; 3], 0, 10, 10, 1.5).is_err());
    assert!(sc.predict(&[0.0; 3], 0, 0, 0.01).is_err());
    let one_output = linear(vec![vec![1.0, 1.0, 1.0]], vec![0.0]);
    assert!(SmoothedClassifier::new(&one_output, 0.5, 0).is_err());
}

/// Over 1,000 seeded binomial experiments the Clopper–Pearson interval misses the true p no more often than its
/// level allows (it is conservative: the exact miss rate is below α), with sampling slack.
#[test]
fn clopper_pearson_coverage() {
    for &(n, p) in &[(50u64, 0.1), (200, 0.02), (30, 0.5)] {
        let reps = 1000;
        let alpha = 0.05;
        let (mut two_sided, mut lower, mut upper) = (0, 0, 0);
        for r in 0..reps {
            let mut rng = nncert_stats::stream(99, &[n, r]);
            let k = (0..n).filter(|_| rng.random::<f64>() < p).count() as u64;
            let (lo, hi) = binomial::clopper_pearson(k, n, alpha).unwrap();
            two_sided += usize::from(p < lo || p > hi);
            lower += usize::from(binomial::lower_bound(k, n, alpha).unwrap() > p);
            upper += usize::from(binomial::upper_bound(k, n, alpha).unwrap() < p);
        }
        let slack = 3.0 * (alpha * (1.0 - alpha) / reps as f64).sqrt();
        let limit = ((alpha + slack) * reps as f64) as usize;
        assert!(
            two_sided <= limit,
            "n={n} p={p}: two-sided missed {two_sided}/{reps}"
        );
        assert!(
            lower <= limit,
            "n={n} p={p}: lower bound missed {lower}/{reps}"
        );
        assert!(
            upper <= limit,
            "n={n} p={p}: upper bound missed {upper}/{reps}"
        );
        // And it is not vacuous: a bound that never misses because it is [0, 1] would be useless.
        let (lo, hi) = binomial::clopper_pearson((n as f64 * p) as u64, n, alpha).unwrap();
        assert!(hi - lo < 0.5, "n={n} p={p}: interval [{lo}, {hi}] too wide");
    }
}
