//! Failure-probability estimators against closed forms and against each other.
//!
//! The models are linear, `y = w·x`, with the bad region `y >= t`, so that the failure probability is known:
//! Gaussian inputs give `1 − Φ(t/‖w‖)`, uniform inputs on the unit cube give the Irwin–Hall tail, and the
//! uniform disc gives the circular-segment area.

use ndarray::{Array1, Array2};
use nncert_model::Graph;
use nncert_model::ir::{GraphBuilder, Linear, Op};
use nncert_spec::{Conjunction, LinearConstraint, OutputCondition};
use nncert_stats::binomial::phi_upper;
use nncert_stats::failure::{
    AmsOptions, AmsOutcome, InputDistribution, PropertyScorer, monte_carlo, multilevel_splitting,
};

fn linear(w: &[f32]) -> Graph {
    let weight = Array2::from_shape_vec((1, w.len()), w.to_vec()).unwrap();
    let mut b = GraphBuilder::new("x", vec![w.len()]);
    let op = Op::Linear(Linear {
        weight,
        bias: Some(Array1::from(vec![0.0])),
    });
    let h = b.push("fc", op, vec![b.input_id()], None).unwrap();
    b.finish(h)
}

/// The bad region `y_0 >= t`, i.e. `−y_0 <= −t`.
fn above(t: f64) -> OutputCondition {
    OutputCondition {
        disjuncts: vec![Conjunction {
            constraints: vec![LinearConstraint {
                coeffs: vec![-1.0],
                rhs: -t,
                strict: false,
            }],
        }],
    }
}

fn gaussian(d: usize) -> InputDistribution {
    InputDistribution::Gaussian {
        center: vec![0.0; d],
        sigma: vec![1.0; d],
        lower: vec![f64::NEG_INFINITY; d],
        upper: vec![f64::INFINITY; d],
    }
}

fn unit_cube(d: usize) -> InputDistribution {
    InputDistribution::UniformBox {
        lower: vec![0.0; d],
        upper: vec![1.0; d],
    }
}

/// `w` of norm 1 in 4 dimensions.
const W4: [f32; 4] = [0.5, 0.5, 0.5, 0.5];

fn quiet(_: u64) {}
fn quiet_levels(_: usize, _: f64) {}

#[test]
fn monte_carlo_interval_covers_the_gaussian_tail() {
    let g = linear(&W4);
    let t = 1.5;
    let truth = phi_upper(t);
    let scorer = PropertyScorer::new(&g, above(t)).unwrap();
    let est = monte_carlo(&gaussian(4), &scorer, 200_000, 0.99, 5, &quiet).unwrap();
    assert!(
        est.interval.0 <= truth && truth <= est.interval.1,
        "{truth} not in {:?}",
        est.interval
    );
    assert!(est.interval.1 - est.interval.0 < 0.01, "{:?}", est.interval);
    assert!(est.upper >= truth && est.upper < est.interval.1);
    let ex = est.example.expect("failures were seen");
    let y: f64 = ex.iter().zip(W4).map(|(a, b)| a * f64::from(b)).sum();
    assert!(
        y >= t - 1e-5,
        "the reported failing input has y = {y} < {t}"
    );
}

#[test]
fn zero_failures_give_the_zero_failure_bound() {
    let g = linear(&W4);
    // On the unit cube y <= 2, so y >= 3 never happens.
    let scorer = PropertyScorer::new(&g, above(3.0)).unwrap();
    let est = monte_carlo(&unit_cube(4), &scorer, 3_000, 0.95, 1, &quiet).unwrap();
    assert_eq!(est.failures, 0);
    assert!(est.example.is_none());
    let rule = 1.0 - 0.05f64.powf(1.0 / 3000.0);
    assert!((est.upper - rule).abs() < 1e-9, "{} vs {rule}", est.upper);
}

#[test]
fn splitting_agrees_with_monte_carlo_at_1e_minus_3() {
    let g = linear(&W4);
    let t = 3.09; // 1 − Φ(3.09) ≈ 1.0e-3
    let scorer = PropertyScorer::new(&g, above(t)).unwrap();
    let mc = monte_carlo(&gaussian(4), &scorer, 1_000_000, 0.99, 2, &quiet).unwrap();
    let opts = AmsOptions {
        particles: 1000,
        seed: 3,
        ..AmsOptions::default()
    };
    let ams = multilevel_splitting(&gaussian(4), &scorer, &opts, &quiet_levels).unwrap();
    assert_eq!(ams.outcome, AmsOutcome::Reached);
    eprintln!(
        "AMS {:.4e} {:?}, MC {:.4e} {:?}",
        ams.p_hat, ams.interval, mc.p_hat, mc.interval
    );
    assert!(
        ams.interval.0 <= mc.interval.1 && mc.interval.0 <= ams.interval.1,
        "AMS {:?} and MC {:?} disagree",
        ams.interval,
        mc.interval
    );
    assert!(
        (ams.p_hat / mc.p_hat).ln().abs() < 0.3,
        "AMS {} vs MC {}",
        ams.p_hat,
        mc.p_hat
    );
}

/// Asserts that `p_hat` is within `4` estimated standard deviations (plus 10 % for the Metropolis correlation
/// the variance formula ignores) of `truth`, and that the estimator is not vacuous.
fn assert_close(ams: &nncert_stats::failure::AmsEstimate, truth: f64) {
    assert_eq!(ams.outcome, AmsOutcome::Reached, "{ams:?}");
    eprintln!(
        "AMS {:.4e} [{:.4e}, {:.4e}] vs truth {truth:.4e}; {} levels, {} evaluations, acceptance {:.2}",
        ams.p_hat, ams.interval.0, ams.interval.1, ams.levels, ams.evaluations, ams.acceptance
    );
    let err = (ams.p_hat / truth).ln().abs();
    assert!(
        err < 4.0 * ams.relative_std + 0.1,
        "AMS {} vs truth {truth} (rel sd {})",
        ams.p_hat,
        ams.relative_std
    );
    assert!(ams.relative_std < 0.5, "{ams:?}");
}

#[test]
fn splitting_matches_the_gaussian_tail_at_1e_minus_8_and_1e_minus_10() {
    // 1 − Φ(5.612) ≈ 1.0e-8 in 4 dimensions, 1 − Φ(6.3613) ≈ 1.0e-10 in 64 dimensions (w of norm 1).
    let w64 = vec![0.125f32; 64];
    for (w, t, seed) in [(&W4[..], 5.612, 1), (&w64[..], 6.3613, 5)] {
        let g = linear(w);
        let truth = phi_upper(t);
        let scorer = PropertyScorer::new(&g, above(t)).unwrap();
        let opts = AmsOptions {
            particles: 1000,
            seed,
            ..AmsOptions::default()
        };
        let ams = multilevel_splitting(&gaussian(w.len()), &scorer, &opts, &quiet_levels).unwrap();
        assert_close(&ams, truth);
        assert!(
            ams.interval.0 < truth && truth < ams.interval.1,
            "{truth} not in {:?}",
            ams.interval
        );
    }
}

#[test]
fn splitting_matches_the_irwin_hall_tail_at_1e_minus_8() {
    // Sum of 5 uniforms above 5 − s has probability s⁵/5! for s <= 1.
    let g = linear(&[1.0; 5]);
    let s: f64 = (1e-8f64 * 120.0).powf(0.2);
    let truth = s.powi(5) / 120.0;
    let scorer = PropertyScorer::new(&g, above(5.0 - s)).unwrap();
    let opts = AmsOptions {
        particles: 1000,
        seed: 2,
        ..AmsOptions::default()
    };
    let ams = multilevel_splitting(&unit_cube(5), &scorer, &opts, &quiet_levels).unwrap();
    assert_close(&ams, truth);
}

#[test]
fn splitting_matches_the_disc_segment() {
    // Uniform on the unit disc: P(x_0 >= t) = (acos t − t·√(1−t²)) / π.
    let g = linear(&[1.0, 0.0]);
    let t: f64 = 0.999;
    let truth = (t.acos() - t * (1.0 - t * t).sqrt()) / std::f64::consts::PI;
    let dist = InputDistribution::UniformL2 {
        center: vec![0.0; 2],
        radius: 1.0,
        lower: vec![-2.0; 2],
        upper: vec![2.0; 2],
    };
    let scorer = PropertyScorer::new(&g, above(t)).unwrap();
    let opts = AmsOptions {
        particles: 1000,
        seed: 4,
        ..AmsOptions::default()
    };
    let ams = multilevel_splitting(&dist, &scorer, &opts, &quiet_levels).unwrap();
    assert_close(&ams, truth);
    let mc = monte_carlo(&dist, &scorer, 2_000_000, 0.99, 4, &quiet).unwrap();
    assert!(
        mc.interval.0 <= truth && truth <= mc.interval.1,
        "{truth} not in {:?}",
        mc.interval
    );
}

#[test]
fn estimates_do_not_depend_on_the_thread_count() {
    let g = linear(&W4);
    let scorer = PropertyScorer::new(&g, above(3.0)).unwrap();
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mc = monte_carlo(&gaussian(4), &scorer, 12_345, 0.95, 8, &quiet).unwrap();
            let opts = AmsOptions {
                particles: 2_500,
                mcmc_steps: 5,
                seed: 8,
                ..AmsOptions::default()
            };
            let ams = multilevel_splitting(&gaussian(4), &scorer, &opts, &quiet_levels).unwrap();
            (mc, ams)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn splitting_stops_below_the_minimum_probability() {
    let g = linear(&W4);
    let scorer = PropertyScorer::new(&g, above(12.0)).unwrap(); // p ≈ 2e-33
    let opts = AmsOptions {
        particles: 200,
        mcmc_steps: 5,
        min_probability: 1e-6,
        ..AmsOptions::default()
    };
    let ams = multilevel_splitting(&gaussian(4), &scorer, &opts, &quiet_levels).unwrap();
    assert_eq!(ams.outcome, AmsOutcome::BelowMinimum);
    assert!(ams.p_hat.is_nan());
    let q = ams.level_probability;
    assert!(q < 1e-6 && q > 1e-7, "{q}");
    assert!(
        ams.interval.0 == 0.0 && ams.interval.1 > q && ams.interval.1 < 1e-5,
        "{:?}",
        ams.interval
    );
}

#[test]
fn bad_settings_are_errors() {
    let g = linear(&W4);
    let scorer = PropertyScorer::new(&g, above(1.0)).unwrap();
    assert!(monte_carlo(&gaussian(3), &scorer, 10, 0.95, 0, &quiet).is_err());
    assert!(monte_carlo(&gaussian(4), &scorer, 0, 0.95, 0, &quiet).is_err());
    assert!(monte_carlo(&gaussian(4), &scorer, 10, 1.0, 0, &quiet).is_err());
    let flipped = InputDistribution::UniformBox {
        lower: vec![1.0; 4],
        upper: vec![0.0; 4],
    };
    assert!(monte_carlo(&flipped, &scorer, 10, 0.95, 0, &quiet).is_err());
    let opts = AmsOptions {
        kill_fraction: 1.0,
        ..AmsOptions::default()
    };
    assert!(multilevel_splitting(&gaussian(4), &scorer, &opts, &quiet_levels).is_err());
    let opts = AmsOptions {
        particles: 3,
        ..AmsOptions::default()
    };
    assert!(multilevel_splitting(&gaussian(4), &scorer, &opts, &quiet_levels).is_err());
    assert!(InputDistribution::uniform_linf(&[0.0], 0.1, &[1.0], &[2.0]).is_err());
    let wrong = OutputCondition {
        disjuncts: vec![Conjunction {
            constraints: vec![LinearConstraint {
                coeffs: vec![1.0, 1.0],
                rhs: 0.0,
                strict: false,
            }],
        }],
    };
    assert!(PropertyScorer::new(&g, wrong).is_err());
}
