//! Printing a [`Property`] as VNN-LIB text.

use std::fmt::Write as _;

use crate::{Case, Conjunction, LinearConstraint, OutputCondition, Property};

/// A number in a form the parser reads back exactly (shortest round-trip representation).
fn num(out: &mut String, v: f64) {
    // `Debug` prints the shortest text that round-trips, using an exponent for very large or
    // small magnitudes (`1e-7`, `1e300`), always with a digit before any dot.
    let _ = write!(out, "{v:?}");
}

fn constraint(out: &mut String, c: &LinearConstraint) {
    out.push_str(if c.strict { "(< " } else { "(<= " });
    let terms: Vec<(usize, f64)> = c
        .coeffs
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, a)| a != 0.0)
        .collect();
    let term = |out: &mut String, (j, a): (usize, f64)| {
        if a == 1.0 {
            let _ = write!(out, "Y_{j}");
        } else {
            out.push_str("(* ");
            num(out, a);
            let _ = write!(out, " Y_{j})");
        }
    };
    match terms.as_slice() {
        [] => out.push_str("0.0"),
        [t] => term(out, *t),
        _ => {
            out.push_str("(+");
            for &t in &terms {
                out.push(' ');
                term(out, t);
            }
            out.push(')');
        }
    }
    out.push(' ');
    num(out, c.rhs);
    out.push(')');
}

fn conjunction_items(out: &mut String, c: &Conjunction, sep: &str) {
    for (k, lc) in c.constraints.iter().enumerate() {
        if k > 0 {
            out.push_str(sep);
        }
        constraint(out, lc);
    }
}

/// The output condition as one formula; `None` if it is `true` (one empty conjunction).
fn output_formula(out: &mut String, o: &OutputCondition) -> bool {
    match o.disjuncts.as_slice() {
        [] => {
            out.push_str("(<= 1.0 0.0)");
            true
        }
        [c] if c.constraints.is_empty() => false,
        _ => {
            out.push_str("(or");
            for c in &o.disjuncts {
                out.push_str("\n    (and ");
                conjunction_items(out, c, " ");
                out.push(')');
            }
            out.push(')');
            true
        }
    }
}

fn box_items(out: &mut String, case: &Case, prefix: &str, sep: &str, suffix: &str) {
    for (i, (&lo, &hi)) in case.input.lower.iter().zip(&case.input.upper).enumerate() {
        let _ = write!(out, "{prefix}(>= X_{i} ");
        num(out, lo);
        let _ = write!(out, "){suffix}{sep}{prefix}(<= X_{i} ");
        num(out, hi);
        let _ = write!(out, "){suffix}{sep}");
    }
}

/// Prints a property as VNN-LIB 1.0 text that [`parse_str`](crate::parse_str) reads back.
///
/// The output declares `X_0..` and `Y_0..`; a single case is written in the usual VNN-COMP style
/// (one `assert` per bound, then the output condition), several cases as
/// `(assert (or (and box_1 output_1) (and box_2 output_2) ...))`.
///
/// Reading the text back gives the same property, except that cases with identical boxes are
/// merged into one case, cases whose box is empty are dropped, and constraints whose coefficients
/// are all zero are evaluated (dropped if true, dropping their conjunction if false), as the parser
/// always does. All numbers must be finite (infinities cannot be written in VNN-LIB).
pub fn write_vnnlib(property: &Property) -> String {
    let mut out = String::new();
    out.push_str("; VNN-LIB property written by nncert-spec\n");
    for i in 0..property.num_inputs {
        let _ = writeln!(out, "(declare-const X_{i} Real)");
    }
    for j in 0..property.num_outputs {
        let _ = writeln!(out, "(declare-const Y_{j} Real)");
    }
    match property.cases.as_slice() {
        [] => {
            out.push_str("; no case: no counterexample can exist\n");
            for i in 0..property.num_inputs {
                let _ = writeln!(out, "(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 0.0))");
            }
            out.push_str("(assert (<= 1.0 0.0))\n");
        }
        [case] => {
            out.push_str("; input box\n");
            box_items(&mut out, case, "(assert ", "\n", ")");
            out.push_str("; output condition (a counterexample satisfies it)\n");
            match case.output.disjuncts.as_slice() {
                [c] => {
                    for lc in &c.constraints {
                        out.push_str("(assert ");
                        constraint(&mut out, lc);
                        out.push_str(")\n");
                    }
                }
                _ => {
                    out.push_str("(assert ");
                    output_formula(&mut out, &case.output);
                    out.push_str(")\n");
                }
            }
        }
        cases => {
            out.push_str("(assert (or");
            for case in cases {
                out.push_str("\n  (and ");
                box_items(&mut out, case, "", " ", "");
                output_formula(&mut out, &case.output);
                out.push(')');
            }
            out.push_str("))\n");
        }
    }
    out
}
