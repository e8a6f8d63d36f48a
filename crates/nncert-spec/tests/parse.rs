//! Hand-written VNN-LIB inputs with their exact expected properties.

use nncert_spec::{
    Case, Conjunction, InputBox, LinearConstraint, OutputCondition, Property, parse_str,
};

fn parse(text: &str) -> Property {
    match parse_str(text, "t.vnnlib") {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn decls(n: usize, m: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s += &format!("(declare-const X_{i} Real)\n");
    }
    for j in 0..m {
        s += &format!("(declare-const Y_{j} Real)\n");
    }
    s
}

fn lc(coeffs: &[f64], rhs: f64, strict: bool) -> LinearConstraint {
    LinearConstraint {
        coeffs: coeffs.to_vec(),
        rhs,
        strict,
    }
}

fn conj(cs: Vec<LinearConstraint>) -> Conjunction {
    Conjunction { constraints: cs }
}

fn case(lower: &[f64], upper: &[f64], disjuncts: Vec<Conjunction>) -> Case {
    Case {
        input: InputBox {
            lower: lower.to_vec(),
            upper: upper.to_vec(),
        },
        output: OutputCondition { disjuncts },
    }
}

#[test]
fn small_box_single_output_constraint() {
    let p = parse(&format!(
        "; comment\n{}(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (<= X_1 2.5)) \
         (assert (>= X_1 0))\n(assert (>= Y_0 3.75))",
        decls(2, 2)
    ));
    assert_eq!(
        p,
        Property {
            num_inputs: 2,
            num_outputs: 2,
            cases: vec![case(
                &[-1.0, 0.0],
                &[1.0, 2.5],
                vec![conj(vec![lc(&[-1.0, 0.0], -3.75, false)])]
            )],
        }
    );
}

#[test]
fn or_of_two_boxes() {
    // The ACAS Xu property 6 form: two boxes, each with its own output constraint.
    let p = parse(&format!(
        "{}(assert (or\n  (and (>= X_0 0) (<= X_0 1) (<= Y_0 Y_1))\n  \
         (and (>= X_0 2) (<= X_0 3) (>= Y_1 0.5))\n))",
        decls(1, 2)
    ));
    assert_eq!(
        p.cases,
        vec![
            case(
                &[0.0],
                &[1.0],
                vec![conj(vec![lc(&[1.0, -1.0], 0.0, false)])]
            ),
            case(
                &[2.0],
                &[3.0],
                vec![conj(vec![lc(&[0.0, -1.0], -0.5, false)])]
            ),
        ]
    );
}

#[test]
fn separate_or_asserts_multiply_out() {
    // ACAS Xu prop_6 form: (or box1 box2) and (or out1 out2) -> 2 cases x 2 disjuncts.
    let p = parse(&format!(
        "{}(assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))\n\
         (assert (or (and (<= Y_1 Y_0)) (and (<= Y_2 Y_0))))",
        decls(1, 3)
    ));
    let out = vec![
        conj(vec![lc(&[-1.0, 1.0, 0.0], 0.0, false)]),
        conj(vec![lc(&[-1.0, 0.0, 1.0], 0.0, false)]),
    ];
    assert_eq!(
        p.cases,
        vec![case(&[0.0], &[1.0], out.clone()), case(&[2.0], &[3.0], out)]
    );
}

#[test]
fn mnist_form_disjunction_over_outputs() {
    let p = parse(&format!(
        "{}(assert (<= X_0 0.03))\n(assert (>= X_0 0.0))\n(assert (<= X_1 1))(assert (>= X_1 \
         0.97))\n(assert (or\n    (and (>= Y_0 Y_3))\n    (and (>= Y_1 Y_3))\n    (and (>= Y_2 \
         Y_3))\n))",
        decls(2, 4)
    ));
    assert_eq!(p.num_inputs, 2);
    assert_eq!(p.num_outputs, 4);
    assert_eq!(
        p.cases,
        vec![case(
            &[0.0, 0.97],
            &[0.03, 1.0],
            vec![
                conj(vec![lc(&[-1.0, 0.0, 0.0, 1.0], 0.0, false)]),
                conj(vec![lc(&[0.0, -1.0, 0.0, 1.0], 0.0, false)]),
                conj(vec![lc(&[0.0, 0.0, -1.0, 1.0], 0.0, false)]),
            ]
        )]
    );
    // It is exactly the robustness builder's property on this box.
    let built = Property::robustness_linf(&[0.015, 0.985], 0.015, 3, 4, Some((0.0, 1.0))).unwrap();
    assert_eq!(built.cases[0].output, p.cases[0].output);
    let c = &p.cases[0];
    assert!(c.output.is_satisfied(&[0.0, 0.0, 2.0, 1.0], 0.0));
    assert!(!c.output.is_satisfied(&[0.0, 0.0, 0.0, 1.0], 0.0));
    assert_eq!(c.output.margin(&[0.0, 0.0, 0.0, 1.0]), 1.0);
    assert_eq!(c.output.margin(&[0.0, 3.0, 0.0, 1.0]), -2.0);
}

#[test]
fn equality_on_inputs_and_outputs() {
    let p = parse(&format!(
        "{}(assert (= X_0 0.25))\n(assert (= 2.0 X_1))\n(assert (= (+ Y_0 Y_1) 1))",
        decls(2, 2)
    ));
    assert_eq!(
        p.cases,
        vec![case(
            &[0.25, 2.0],
            &[0.25, 2.0],
            vec![conj(vec![
                lc(&[1.0, 1.0], 1.0, false),
                lc(&[-1.0, -1.0], -1.0, false)
            ])]
        )]
    );
}

#[test]
fn strict_comparisons() {
    let p = parse(&format!(
        "{}(assert (> X_0 -1))(assert (< X_0 1))\n(assert (< Y_0 0.5))(assert (> Y_1 Y_0))",
        decls(1, 2)
    ));
    assert_eq!(
        p.cases,
        vec![case(
            &[-1.0],
            &[1.0],
            vec![conj(vec![
                lc(&[1.0, 0.0], 0.5, true),
                lc(&[1.0, -1.0], 0.0, true)
            ])]
        )]
    );
}

#[test]
fn number_forms() {
    let p = parse(&format!(
        "{}(assert (>= X_0 1e-3))(assert (<= X_0 1E+2))\n(assert (>= X_1 -.5))(assert (<= X_1 \
         5.))\n(assert (>= X_2 +1))(assert (<= X_2 2.5e1))\n(assert (<= Y_0 -0.5E-1))",
        decls(3, 1)
    ));
    assert_eq!(
        p.cases,
        vec![case(
            &[1e-3, -0.5, 1.0],
            &[100.0, 5.0, 25.0],
            vec![conj(vec![lc(&[1.0], -0.05, false)])]
        )]
    );
}

#[test]
fn reversed_and_scaled_bounds() {
    let p = parse(&format!(
        "{}(assert (<= 0.5 X_0))(assert (>= 1.5 X_0))\n\
         (assert (<= (* 2 X_1) 3))(assert (<= (* X_1 -4) 2))\n\
         (assert (>= (- X_2) -1))(assert (<= (- 1 X_2) 1))\n\
         (assert (<= (/ Y_0 4) (+ 1 Y_1)))",
        decls(3, 2)
    ));
    assert_eq!(
        p.cases,
        vec![case(
            &[0.5, -0.5, 0.0],
            &[1.5, 1.5, 1.0],
            vec![conj(vec![lc(&[0.25, -1.0], 1.0, false)])]
        )]
    );
}

#[test]
fn constants_on_both_sides() {
    // A true constant atom is dropped; a false one drops its disjunct.
    let p = parse(&format!(
        "{}(assert (>= X_0 0))(assert (<= X_0 1))\n(assert (<= 1 2))\n\
         (assert (or (and (<= 3 (+ 1 1)) (>= Y_0 0)) (and (< (- 2) -1) (<= Y_0 -7))))\n\
         (assert (<= (+ Y_0 2) (* 3 Y_0 0.5)))",
        decls(1, 1)
    ));
    // (<= (+ Y_0 2) (* 3 Y_0 0.5)): Y_0 + 2 - 1.5 Y_0 <= 0  ->  -0.5 Y_0 <= -2.
    assert_eq!(
        p.cases,
        vec![case(
            &[0.0],
            &[1.0],
            vec![conj(vec![
                lc(&[1.0], -7.0, false),
                lc(&[-0.5], -2.0, false)
            ])]
        )]
    );
}

#[test]
fn constant_false_assertion_gives_no_cases() {
    let p = parse(&format!(
        "{}(assert (>= X_0 0))(assert (<= X_0 1))(assert (< 1 1))(assert (>= Y_0 0))",
        decls(1, 1)
    ));
    assert_eq!(p.cases, vec![]);
    assert_eq!((p.num_inputs, p.num_outputs), (1, 1));
}

#[test]
fn empty_boxes_are_dropped() {
    let p = parse(&format!(
        "{}(assert (or (and (>= X_0 2) (<= X_0 1) (>= Y_0 0)) (and (>= X_0 0) (<= X_0 1) (<= \
         Y_0 0))))",
        decls(1, 1)
    ));
    assert_eq!(
        p.cases,
        vec![case(
            &[0.0],
            &[1.0],
            vec![conj(vec![lc(&[1.0], 0.0, false)])]
        )]
    );
    let p = parse(&format!(
        "{}(assert (>= X_0 2))(assert (<= X_0 1))(assert (>= Y_0 0))",
        decls(1, 1)
    ));
    assert_eq!(p.cases, vec![]);
}

#[test]
fn no_output_constraint_means_whole_box_is_bad() {
    let p = parse(&format!(
        "{}(assert (>= X_0 0))(assert (<= X_0 1))",
        decls(1, 3)
    ));
    assert_eq!(p.cases, vec![case(&[0.0], &[1.0], vec![conj(vec![])])]);
    let out = &p.cases[0].output;
    assert_eq!(out.margin(&[5.0, 1.0, 2.0]), f64::NEG_INFINITY);
    assert!(out.is_satisfied(&[5.0, 1.0, 2.0], 0.0));
}

#[test]
fn same_box_disjuncts_group_into_one_case() {
    let p = parse(&format!(
        "{}(assert (or (and (<= X_0 1) (>= X_0 0) (<= Y_0 0)) (and (>= X_0 0) (<= X_0 1) (>= \
         Y_0 5)) (and (>= X_0 0) (<= X_0 2) (>= Y_0 9))))",
        decls(1, 1)
    ));
    assert_eq!(
        p.cases,
        vec![
            case(
                &[0.0],
                &[1.0],
                vec![
                    conj(vec![lc(&[1.0], 0.0, false)]),
                    conj(vec![lc(&[-1.0], -5.0, false)])
                ]
            ),
            case(&[0.0], &[2.0], vec![conj(vec![lc(&[-1.0], -9.0, false)])]),
        ]
    );
}

#[test]
fn nested_and_or_distribute() {
    // (a or b) and (c or (d and e)) with the box common.
    let p = parse(&format!(
        "{}(assert (and (>= X_0 0) (<= X_0 1) (or (<= Y_0 1) (<= Y_0 2)) (or (<= Y_1 3) (and \
         (<= Y_1 4) (<= Y_0 5)))))",
        decls(1, 2)
    ));
    let a = lc(&[1.0, 0.0], 1.0, false);
    let b = lc(&[1.0, 0.0], 2.0, false);
    let c = lc(&[0.0, 1.0], 3.0, false);
    let d = lc(&[0.0, 1.0], 4.0, false);
    let e = lc(&[1.0, 0.0], 5.0, false);
    assert_eq!(
        p.cases,
        vec![case(
            &[0.0],
            &[1.0],
            vec![
                conj(vec![a.clone(), c.clone()]),
                conj(vec![a, d.clone(), e.clone()]),
                conj(vec![b.clone(), c]),
                conj(vec![b, d, e]),
            ]
        )]
    );
}

#[test]
fn chained_comparison_and_nary_ops() {
    let p = parse(&format!(
        "{}(assert (<= 0 X_0 1))\n(assert (<= (+ Y_0 Y_1 Y_0) (- Y_1 2 3) (* 2 4)))",
        decls(1, 2)
    ));
    // 2 Y_0 + Y_1 <= Y_1 - 5  ->  2 Y_0 <= -5 ; Y_1 - 5 <= 8 -> Y_1 <= 13
    assert_eq!(
        p.cases,
        vec![case(
            &[0.0],
            &[1.0],
            vec![conj(vec![
                lc(&[2.0, 0.0], -5.0, false),
                lc(&[0.0, 1.0], 13.0, false)
            ])]
        )]
    );
}

#[test]
fn cancellation_leaves_constant() {
    // Y_0 - Y_0 cancels: (<= 0 1) is true and dropped.
    let p = parse(&format!(
        "{}(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= (- Y_0 Y_0) 1))",
        decls(1, 1)
    ));
    assert_eq!(p.cases, vec![case(&[0.0], &[1.0], vec![conj(vec![])])]);
}

#[test]
fn declarations_in_any_order_and_ignored_commands() {
    let p = parse(
        "(set-logic QF_LRA)\n(declare-const Y_0 Real)\n(declare-const X_1 Real)\n\
         (declare-const X_0 Real)\n(assert (<= -1 X_0 1))(assert (<= -1 X_1 1))(assert (>= Y_0 \
         0))\n(check-sat)\n(get-model (x y))\n(exit)",
    );
    assert_eq!((p.num_inputs, p.num_outputs), (2, 1));
    assert_eq!(p.cases.len(), 1);
}

#[test]
fn crlf_bom_quoted_symbols_and_true_false() {
    let text = "\u{feff}(declare-const |X_0| Real)\r\n(declare-const Y_0 Real)\r\n\
                (assert (and true (>= X_0 0) (<= |X_0| 1)))\r\n(assert (or false (>= Y_0 1)))\r\n";
    let p = parse(text);
    assert_eq!(
        p.cases,
        vec![case(
            &[0.0],
            &[1.0],
            vec![conj(vec![lc(&[-1.0], -1.0, false)])]
        )]
    );
}

#[test]
fn negative_zero_is_normalized() {
    let p = parse(&format!(
        "{}(assert (>= X_0 -0.0))(assert (<= X_0 0))(assert (<= Y_0 -0.0))",
        decls(1, 1)
    ));
    let c = &p.cases[0];
    assert!(c.input.lower[0].is_sign_positive());
    assert!(c.output.disjuncts[0].constraints[0].rhs.is_sign_positive());
}

#[test]
fn semantics_helpers() {
    let b = InputBox {
        lower: vec![0.0, -1.0],
        upper: vec![1.0, 1.0],
    };
    assert_eq!(b.dim(), 2);
    assert!(b.contains(&[0.5, 0.0], 0.0));
    assert!(!b.contains(&[1.5, 0.0], 0.0));
    assert!(b.contains(&[1.0 + 1e-9, 0.0], 1e-6));
    assert!(!b.contains(&[0.5], 0.0));
    assert!(!b.contains(&[f64::NAN, 0.0], 1.0));

    let c = lc(&[1.0, -2.0], 3.0, false);
    assert_eq!(c.violation(&[1.0, 1.0]), -4.0);
    assert!(c.violation(&[1.0]).is_nan());

    let empty = conj(vec![]);
    assert_eq!(empty.margin(&[0.0, 0.0]), f64::NEG_INFINITY);
    let never = OutputCondition { disjuncts: vec![] };
    assert_eq!(never.margin(&[0.0]), f64::INFINITY);
    assert!(!never.is_satisfied(&[0.0], 1.0));
    let two = conj(vec![
        lc(&[1.0, 0.0], 0.0, false),
        lc(&[0.0, 1.0], 0.0, false),
    ]);
    assert_eq!(two.margin(&[2.0, -1.0]), 2.0);
    assert!(two.is_satisfied(&[1e-7, -1.0], 1e-6));
    assert!(!two.is_satisfied(&[f64::NAN, -1.0], 1e9));

    let p = Property::output_range(b.clone(), 2, 1, -1.0, 1.0).unwrap();
    assert!(p.is_counterexample(&[0.5, 0.5], &[0.0, 1.5], 0.0));
    assert!(p.is_counterexample(&[0.5, 0.5], &[0.0, -1.5], 0.0));
    assert!(!p.is_counterexample(&[0.5, 0.5], &[9.0, 0.5], 0.0));
    assert!(!p.is_counterexample(&[5.0, 0.5], &[0.0, 1.5], 0.0));
}

#[test]
fn builders() {
    let p = Property::robustness_linf(&[0.5, 0.0, 1.0], 0.1, 1, 3, Some((0.0, 1.0))).unwrap();
    assert_eq!((p.num_inputs, p.num_outputs), (3, 3));
    let c = &p.cases[0];
    // Outward rounding: the box contains the exact real box.
    assert!(c.input.lower[0] <= 0.4 && c.input.upper[0] >= 0.6);
    assert!(c.input.upper[0] - c.input.lower[0] < 0.2 + 1e-15);
    assert_eq!(c.input.lower[1], 0.0);
    assert_eq!(c.input.upper[2], 1.0);
    assert_eq!(
        c.output.disjuncts,
        vec![
            conj(vec![lc(&[-1.0, 1.0, 0.0], 0.0, false)]),
            conj(vec![lc(&[0.0, 1.0, -1.0], 0.0, false)]),
        ]
    );
    assert!(Property::robustness_linf(&[0.5], 0.1, 3, 3, None).is_err());
    assert!(Property::robustness_linf(&[0.5], -0.1, 0, 3, None).is_err());
    assert!(Property::robustness_linf(&[0.5], 0.1, 0, 1, None).is_err());
    assert!(Property::robustness_linf(&[], 0.1, 0, 2, None).is_err());
    assert!(Property::robustness_linf(&[f64::NAN], 0.1, 0, 2, None).is_err());
    assert!(Property::robustness_linf(&[2.0], 0.1, 0, 2, Some((0.0, 1.0))).is_err());

    let b = InputBox {
        lower: vec![0.0],
        upper: vec![1.0],
    };
    let p = Property::output_range(b.clone(), 2, 0, -1.0, 2.0).unwrap();
    assert_eq!(
        p.cases[0].output.disjuncts,
        vec![
            conj(vec![lc(&[1.0, 0.0], -1.0, true)]),
            conj(vec![lc(&[-1.0, 0.0], -2.0, true)]),
        ]
    );
    let one_sided = Property::output_range(b.clone(), 1, 0, f64::NEG_INFINITY, 2.0).unwrap();
    assert_eq!(one_sided.cases[0].output.disjuncts.len(), 1);
    assert!(Property::output_range(b.clone(), 2, 2, 0.0, 1.0).is_err());
    assert!(Property::output_range(b.clone(), 2, 0, 1.0, 0.0).is_err());
    let bad_box = InputBox {
        lower: vec![1.0],
        upper: vec![0.0],
    };
    assert!(Property::output_range(bad_box, 2, 0, 0.0, 1.0).is_err());

    assert!(p.check_dims(1, 2).is_ok());
    let e = p.check_dims(784, 2).unwrap_err().to_string();
    assert!(
        e.contains("the property has 1 inputs but the model has 784"),
        "{e}"
    );
    let e = p.check_dims(1, 10).unwrap_err().to_string();
    assert!(
        e.contains("the property has 2 outputs but the model has 10"),
        "{e}"
    );
}
