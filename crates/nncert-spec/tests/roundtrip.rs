//! Property-based tests: random properties printed with `write_vnnlib` parse back to themselves,
//! and random token soups never make the parser panic.

use nncert_spec::{
    Case, Conjunction, InputBox, LinearConstraint, OutputCondition, Property, parse_str,
    write_vnnlib,
};
use proptest::num::f64 as pf64;
use proptest::prelude::*;

/// Finite numbers of every magnitude: normal, subnormal, zero, both signs, plus small decimals.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => -1e3..1e3f64,
        1 => Just(0.0),
        1 => Just(1.0),
        1 => Just(-1.0),
        2 => pf64::POSITIVE | pf64::NEGATIVE | pf64::NORMAL | pf64::SUBNORMAL | pf64::ZERO,
    ]
}

fn constraint(m: usize) -> impl Strategy<Value = LinearConstraint> {
    (
        prop::collection::vec(prop_oneof![Just(0.0), number()], m),
        number(),
        any::<bool>(),
        0..m,
    )
        .prop_map(|(mut coeffs, rhs, strict, k)| {
            // An all-zero row is a constant, which the parser evaluates instead of keeping.
            if coeffs.iter().all(|&a| a == 0.0) {
                coeffs[k] = 1.0;
            }
            LinearConstraint {
                coeffs,
                rhs,
                strict,
            }
        })
}

fn case(n: usize, m: usize) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((number(), number()), n),
        prop::collection::vec(
            prop::collection::vec(constraint(m), 0..4)
                .prop_map(|constraints| Conjunction { constraints }),
            1..5,
        ),
    )
        .prop_map(|(bounds, disjuncts)| Case {
            input: InputBox {
                lower: bounds.iter().map(|&(a, b)| a.min(b)).collect(),
                upper: bounds.iter().map(|&(a, b)| a.max(b)).collect(),
            },
            output: OutputCondition { disjuncts },
        })
}

fn property() -> impl Strategy<Value = Property> {
    (1usize..6, 1usize..5)
        .prop_flat_map(|(n, m)| {
            prop::collection::vec(case(n, m), 0..4).prop_map(move |cases| Property {
                num_inputs: n,
                num_outputs: m,
                cases,
            })
        })
        // Cases with the same box are one case once parsed.
        .prop_filter("distinct boxes", |p| {
            p.cases
                .iter()
                .enumerate()
                .all(|(k, a)| p.cases[..k].iter().all(|b| a.input != b.input))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn written_properties_parse_back(p in property()) {
        let text = write_vnnlib(&p);
        let back = parse_str(&text, "written.vnnlib");
        prop_assert!(back.is_ok(), "{}\n{}", back.unwrap_err(), text);
        prop_assert_eq!(back.unwrap(), p, "text:\n{}", text);
    }

    #[test]
    fn robustness_properties_round_trip(
        center in prop::collection::vec(-2.0..2.0f64, 1..20),
        eps in 0.0..0.5f64,
        (m, label) in (2usize..12).prop_flat_map(|m| (Just(m), 0..m)),
        clip in any::<bool>(),
    ) {
        let clip = clip.then_some((-1.0, 1.0));
        let center: Vec<f64> = match clip {
            Some(_) => center.iter().map(|c| c.clamp(-1.0, 1.0)).collect(),
            None => center,
        };
        let p = Property::robustness_linf(&center, eps, label, m, clip).unwrap();
        let c = &p.cases[0];
        for (i, &x) in center.iter().enumerate() {
            let (l, u) = (c.input.lower[i], c.input.upper[i]);
            prop_assert!(l <= u);
            match clip {
                Some((lo, hi)) => {
                    prop_assert!(l <= (x - eps).max(lo) && u >= (x + eps).min(hi));
                    prop_assert!(l >= lo && u <= hi);
                }
                None => prop_assert!(l <= x - eps && u >= x + eps),
            }
            // At most one ulp wider than the rounded-to-nearest box on each side.
            prop_assert!(u - l <= 2.0 * eps + 4.0 * f64::EPSILON * (x.abs() + eps + 1.0));
        }
        prop_assert_eq!(c.output.disjuncts.len(), m - 1);
        // y with the label winning is not bad, y with another class winning is.
        let mut y = vec![0.0; m];
        y[label] = 1.0;
        prop_assert!(!c.output.is_satisfied(&y, 0.0));
        y[(label + 1) % m] = 2.0;
        prop_assert!(c.output.is_satisfied(&y, 0.0));
        let back = parse_str(&write_vnnlib(&p), "r.vnnlib").unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn token_soup_never_panics(
        toks in prop::collection::vec(
            prop_oneof![
                Just("("), Just(")"), Just("assert"), Just("declare-const"), Just("Real"),
                Just("X_0"), Just("X_1"), Just("Y_0"), Just("Y_1"), Just("and"), Just("or"),
                Just("<="), Just(">="), Just("<"), Just(">"), Just("="), Just("+"), Just("-"),
                Just("*"), Just("/"), Just("1"), Just("-0.5"), Just("1e308"), Just("0"),
                Just("true"), Just("false"), Just(";c\n"), Just("\n"), Just("|X_0|"),
            ],
            0..80,
        )
    ) {
        let text = toks.join(" ");
        let text = format!(
            "(declare-const X_0 Real)(declare-const Y_0 Real){text}"
        );
        let _ = parse_str(&text, "soup");
    }
}

#[test]
fn zero_case_property_round_trips() {
    let p = Property {
        num_inputs: 2,
        num_outputs: 3,
        cases: vec![],
    };
    assert_eq!(parse_str(&write_vnnlib(&p), "w").unwrap(), p);
}

#[test]
fn written_text_is_vnncomp_style() {
    let p = Property::robustness_linf(&[0.5, 0.25], 0.25, 0, 3, None).unwrap();
    let text = write_vnnlib(&p);
    assert_eq!(
        text,
        "; VNN-LIB property written by nncert-spec\n\
         (declare-const X_0 Real)\n(declare-const X_1 Real)\n\
         (declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(declare-const Y_2 Real)\n\
         ; input box\n\
         (assert (>= X_0 0.25))\n(assert (<= X_0 0.75))\n\
         (assert (>= X_1 0.0))\n(assert (<= X_1 0.5))\n\
         ; output condition (a counterexample satisfies it)\n\
         (assert (or\n    (and (<= (+ Y_0 (* -1.0 Y_1)) 0.0))\n    \
         (and (<= (+ Y_0 (* -1.0 Y_2)) 0.0))))\n"
    );
}
