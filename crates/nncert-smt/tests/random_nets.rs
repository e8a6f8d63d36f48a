//! z3 on random small ReLU networks: its answers agree with branch-and-bound (`nncert_verify::verify`) and with
//! brute-force sampling, every `sat` re-executes, and the exported SMT-LIB text, parsed back by z3, gives the
//! same answer as the in-process encoding (both ReLU styles, with and without bounds).
#![cfg(feature = "z3")]

use ndarray::{Array1, Array2};
use nncert_model::Graph;
use nncert_model::ir::{GraphBuilder, Linear, Op};
use nncert_smt::encode::{ReluStyle, case_bounds, encode_case};
use nncert_smt::solve::{CaseAnswer, SmtOptions, solve_encoding, verify_smt};
use nncert_spec::{Case, Conjunction, InputBox, LinearConstraint, OutputCondition, Property};
use nncert_verify::{Verdict, VerifyOptions};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// A random `n_in → hidden… → n_out` ReLU net (optionally with a LeakyReLU and an input normalization).
fn random_net(
    rng: &mut ChaCha8Rng,
    n_in: usize,
    hidden: &[usize],
    n_out: usize,
    leaky: bool,
) -> Graph {
    let mut b = GraphBuilder::new("x", vec![1, n_in]);
    let mut cur = b.input_id();
    // An input normalization (Affine), as ONNX Sub/Div constants become.
    let shift =
        ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[n_in]), |_| rng.random_range(-0.2f32..0.2));
    let scale =
        ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[n_in]), |_| rng.random_range(0.5f32..2.0));
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
    let mut prev = n_in;
    let sizes: Vec<usize> = hidden.iter().copied().chain([n_out]).collect();
    for (k, &n) in sizes.iter().enumerate() {
        let w = Array2::from_shape_fn((n, prev), |_| rng.random_range(-1.0f32..1.0));
        let bias = Array1::from_shape_fn(n, |_| rng.random_range(-0.5f32..0.5));
        cur = b
            .push(
                format!("fc{k}"),
                Op::Linear(Linear {
                    weight: w,
                    bias: Some(bias),
                }),
                vec![cur],
                None,
            )
            .unwrap();
        if k + 1 < sizes.len() {
            let op = if leaky && k == 0 {
                Op::LeakyRelu { alpha: 0.125 }
            } else {
                Op::Relu
            };
            cur = b.push(format!("act{k}"), op, vec![cur], None).unwrap();
        }
        prev = n;
    }
    b.finish(cur)
}

/// "Output 0 stays the largest" over a box, or a random output threshold, as a bad region.
fn random_property(rng: &mut ChaCha8Rng, n_in: usize, n_out: usize, kind: usize) -> Property {
    let centre: Vec<f64> = (0..n_in).map(|_| rng.random_range(-1.0..1.0)).collect();
    let r: f64 = rng.random_range(0.05..0.6);
    let input = InputBox {
        lower: centre.iter().map(|c| c - r).collect(),
        upper: centre.iter().map(|c| c + r).collect(),
    };
    let output = if kind.is_multiple_of(2) {
        // Bad: some other output reaches output 0 (a disjunction).
        OutputCondition {
            disjuncts: (1..n_out)
                .map(|j| {
                    let mut coeffs = vec![0.0; n_out];
                    coeffs[0] = 1.0;
                    coeffs[j] = -1.0;
                    Conjunction {
                        constraints: vec![LinearConstraint {
                            coeffs,
                            rhs: 0.0,
                            strict: false,
                        }],
                    }
                })
                .collect(),
        }
    } else {
        // Bad: y_0 >= t and y_1 <= s (a conjunction).
        let mut c0 = vec![0.0; n_out];
        c0[0] = -1.0;
        let mut c1 = vec![0.0; n_out];
        c1[1] = 1.0;
        OutputCondition {
            disjuncts: vec![Conjunction {
                constraints: vec![
                    LinearConstraint {
                        coeffs: c0,
                        rhs: -rng.random_range(-0.5..1.0),
                        strict: false,
                    },
                    LinearConstraint {
                        coeffs: c1,
                        rhs: rng.random_range(-0.5..1.0),
                        strict: true,
                    },
                ],
            }],
        }
    };
    Property {
        num_inputs: n_in,
        num_outputs: n_out,
        cases: vec![Case { input, output }],
    }
}

/// Whether some sampled f32 point of the box is a checked counterexample.
fn sampled_counterexample(rng: &mut ChaCha8Rng, g: &Graph, p: &Property) -> bool {
    let b = &p.cases[0].input;
    (0..400).any(|_| {
        let x: Vec<f64> = b
            .lower
            .iter()
            .zip(&b.upper)
            .map(|(l, u)| rng.random_range(*l..=*u))
            .collect();
        nncert_verify::check::check_candidate(g, p, 0, &x).is_some()
    })
}

fn parsed_back(text: &str, budget: Duration) -> z3::SatResult {
    let solver = z3::Solver::new();
    let mut params = z3::Params::new();
    params.set_u32("timeout", budget.as_millis() as u32);
    solver.set_params(&params);
    solver.from_string(text);
    solver.check()
}

#[test]
fn z3_agrees_with_bab_and_sampling_and_the_exported_text() {
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut sat, mut unsat, mut undecided, mut same_decided, mut z3_sat) = (0, 0, 0, 0, 0);
    for trial in 0..30usize {
        let n_in = rng.random_range(1..=4);
        let n_out = rng.random_range(2..=3);
        let depth = rng.random_range(1..=2);
        let hidden: Vec<usize> = (0..depth).map(|_| rng.random_range(2..=6)).collect();
        let g = random_net(&mut rng, n_in, &hidden, n_out, trial.is_multiple_of(3));
        let p = random_property(&mut rng, n_in, n_out, trial);
        let opts = SmtOptions {
            timeout: Duration::from_secs(5),
            relu_style: if trial.is_multiple_of(2) {
                ReluStyle::Ite
            } else {
                ReluStyle::Disjunction
            },
            use_bounds: trial % 4 != 1,
            // Half the trials without the centre shortcut, so that sat answers come from z3's models.
            centre_check: trial % 2 == 1,
        };
        let (r, stats) = verify_smt(&g, &p, &opts).unwrap();
        let bab = nncert_verify::verify(
            &g,
            &p,
            &VerifyOptions {
                timeout: Duration::from_secs(3),
                ..VerifyOptions::default()
            },
        );
        let sampled = sampled_counterexample(&mut rng, &g, &p);
        let ctx = format!(
            "trial {trial}: smt {}, bab {}, sampled cex {sampled}",
            r.verdict.word(),
            bab.verdict.word()
        );
        match &r.verdict {
            Verdict::Sat(cex) => {
                sat += 1;
                // Found in a z3 model (not at a sub-box centre) and re-executed.
                z3_sat += usize::from(stats.centre_hits == 0);
                // The counterexample must re-execute (check_candidate is deterministic).
                let again = nncert_verify::check::check_candidate(&g, &p, cex.case, &cex.input);
                assert!(again.is_some(), "{ctx}: sat does not re-check");
                assert!(!matches!(bab.verdict, Verdict::Unsat { .. }), "{ctx}");
            }
            Verdict::Unsat { method } => {
                unsat += 1;
                assert!(method.contains("exact rational"), "{method}");
                assert!(!matches!(bab.verdict, Verdict::Sat(_)), "{ctx}");
                assert!(!sampled, "{ctx}");
            }
            _ => undecided += 1,
        }
        // The exported text, parsed back by z3, answers like the in-process encoding.
        let bounds = opts
            .use_bounds
            .then(|| case_bounds(&g, &p.cases[0], Instant::now() + Duration::from_secs(5)));
        let enc = encode_case(&g, &p, 0, bounds.as_ref(), opts.relu_style).unwrap();
        let text = nncert_smt::smtlib::case_query(&enc);
        // (Both on the whole box, no input splitting: z3 4.8.12 may give up on some; then both must.)
        let in_process = solve_encoding(&enc, Instant::now() + Duration::from_secs(2)).unwrap();
        let from_text = parsed_back(&text, Duration::from_secs(2));
        match (&in_process, from_text) {
            (CaseAnswer::Sat(_), z3::SatResult::Sat)
            | (CaseAnswer::Unsat, z3::SatResult::Unsat) => same_decided += 1,
            (CaseAnswer::Unknown { .. }, z3::SatResult::Unknown) => {}
            (a, b) => panic!("{ctx}: in-process {a:?}, parsed text {b:?}\n{text}"),
        }
    }
    eprintln!(
        "random nets: {sat} sat ({z3_sat} from z3 models), {unsat} unsat, {undecided} undecided; exported text decided like the \
         in-process encoding on {same_decided} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        sat >= 5 && unsat >= 5,
        "too few decided: {sat} sat, {unsat} unsat"
    );
    assert!(undecided <= 3, "{undecided} undecided");
    assert!(
        z3_sat >= 3,
        "only {z3_sat} counterexamples came from z3 models"
    );
    assert!(
        same_decided >= 15,
        "text and in-process decided only {same_decided} alike"
    );
}

#[test]
fn the_property_file_has_one_block_per_case() {
    // Two cases (boxes): the file has one (push 1) ... (check-sat) (pop 1) block per case.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let g = random_net(&mut rng, 2, &[4, 4], 2, false);
    let mut p = random_property(&mut rng, 2, 2, 0);
    let mut second = p.cases[0].clone();
    second.input.lower.iter_mut().for_each(|v| *v += 0.5);
    second.input.upper.iter_mut().for_each(|v| *v += 0.5);
    p.cases.push(second);
    let text = nncert_smt::export_smtlib(&g, &p, true, ReluStyle::Ite, &["test".into()]).unwrap();
    assert_eq!(text.matches("\n(check-sat)\n(pop 1)\n").count(), 2);
    assert_eq!(text.matches("\n(push 1)\n").count(), 2);
    // Each case alone, as the in-process solver sees it, equals the matching block of the file.
    for (i, _) in p.cases.iter().enumerate() {
        let b = case_bounds(&g, &p.cases[i], Instant::now() + Duration::from_secs(5));
        let enc = encode_case(&g, &p, i, Some(&b), ReluStyle::Ite).unwrap();
        let mut block = String::new();
        nncert_smt::smtlib::write_assertions(&enc, &mut block);
        assert!(text.contains(&block), "case {i} block differs");
    }
}

#[test]
fn unsupported_ops_are_named() {
    let mut b = GraphBuilder::new("x", vec![2]);
    let s = b
        .push("squash", Op::Sigmoid, vec![b.input_id()], None)
        .unwrap();
    let g = b.finish(s);
    let p = Property {
        num_inputs: 2,
        num_outputs: 2,
        cases: vec![Case {
            input: InputBox {
                lower: vec![0.0; 2],
                upper: vec![1.0; 2],
            },
            output: OutputCondition { disjuncts: vec![] },
        }],
    };
    let e = verify_smt(&g, &p, &SmtOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("squash") && e.contains("Sigmoid"), "{e}");
}
