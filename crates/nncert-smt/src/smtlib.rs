//! SMT-LIB 2 text of an [`Encoding`] (logic QF_LRA), readable by any SMT solver (`z3 file.smt2`,
//! `cvc5 file.smt2`, …).
//!
//! A property file holds one block per case (input box), each between `(push 1)` and `(pop 1)` with its own
//! `(check-sat)`: a solver prints one answer per case, in order, and the property is violated (`sat`) iff some
//! case answers `sat`. Numbers are exact decimals (see [`crate::rational`]).

use crate::encode::{Atom, Encoding, LinExpr, ReluStyle, relu_lemmas};
use crate::rational::{Rat, smt_literal};
use num_traits::{One, Zero};
use std::fmt::Write as _;

/// Writes `e` as an SMT-LIB term.
fn term(enc: &Encoding, e: &LinExpr, out: &mut String) {
    write_sum(enc, &e.terms, Some(&e.constant), out);
}

fn write_sum(enc: &Encoding, terms: &[(usize, Rat)], constant: Option<&Rat>, out: &mut String) {
    let constant = constant.filter(|c| !c.is_zero());
    let n = terms.len() + usize::from(constant.is_some());
    if n == 0 {
        out.push_str("0.0");
        return;
    }
    if n > 1 {
        out.push_str("(+");
    }
    for (v, c) in terms {
        if n > 1 {
            out.push(' ');
        }
        let name = &enc.vars[*v].name;
        if c.is_one() {
            out.push_str(name);
        } else {
            let _ = write!(out, "(* {} {name})", smt_literal(c));
        }
    }
    if let Some(c) = constant {
        if n > 1 {
            out.push(' ');
        }
        out.push_str(&smt_literal(c));
    }
    if n > 1 {
        out.push(')');
    }
}

/// `(<= Σ terms rhs)` with the constant moved to the right.
fn atom(enc: &Encoding, a: &Atom, out: &mut String) {
    out.push_str(if a.strict { "(< " } else { "(<= " });
    write_sum(enc, &a.expr.terms, None, out);
    let _ = write!(out, " {})", smt_literal(&-a.expr.constant.clone()));
}

/// The declarations and assertions of one case (no `set-logic`, no `check-sat`).
pub fn write_assertions(enc: &Encoding, out: &mut String) {
    for v in &enc.vars {
        let _ = writeln!(out, "(declare-fun {} () Real)", v.name);
    }
    for v in &enc.vars {
        if let Some(l) = &v.lower {
            let _ = writeln!(out, "(assert (<= {} {}))", smt_literal(l), v.name);
        }
        if let Some(u) = &v.upper {
            let _ = writeln!(out, "(assert (<= {} {}))", v.name, smt_literal(u));
        }
    }
    for (v, e) in &enc.defs {
        let _ = write!(out, "(assert (= {} ", enc.vars[*v].name);
        term(enc, e, out);
        out.push_str("))\n");
    }
    for r in &enc.relus {
        let (x, y) = (&enc.vars[r.inp].name, &enc.vars[r.out].name);
        let neg = if r.alpha.is_zero() {
            "0.0".to_string()
        } else {
            format!("(* {} {x})", smt_literal(&r.alpha))
        };
        match enc.relu_style {
            ReluStyle::Ite => {
                let _ = writeln!(out, "(assert (= {y} (ite (>= {x} 0.0) {x} {neg})))");
            }
            ReluStyle::Disjunction => {
                let _ = writeln!(
                    out,
                    "(assert (or (and (>= {x} 0.0) (= {y} {x})) (and (<= {x} 0.0) (= {y} {neg}))))"
                );
            }
        }
        for l in relu_lemmas(r) {
            let a = Atom {
                expr: l,
                strict: false,
            };
            out.push_str("(assert ");
            atom(enc, &a, out);
            out.push_str(")\n");
        }
    }
    out.push_str("; the bad output region (VNN-LIB semantics: sat = counterexample)\n(assert ");
    match enc.bad.as_slice() {
        [] => out.push_str("false"),
        [conj] => conjunction(enc, conj, out),
        disj => {
            out.push_str("(or");
            for conj in disj {
                out.push(' ');
                conjunction(enc, conj, out);
            }
            out.push(')');
        }
    }
    out.push_str(")\n");
}

fn conjunction(enc: &Encoding, conj: &[Atom], out: &mut String) {
    match conj {
        [] => out.push_str("true"),
        [a] => atom(enc, a, out),
        many => {
            out.push_str("(and");
            for a in many {
                out.push(' ');
                atom(enc, a, out);
            }
            out.push(')');
        }
    }
}

/// A self-contained query for one case: `set-logic`, the assertions, `check-sat`.
pub fn case_query(enc: &Encoding) -> String {
    let mut s = String::from("(set-logic QF_LRA)\n");
    write_assertions(enc, &mut s);
    s.push_str("(check-sat)\n");
    s
}

/// The SMT-LIB file for a whole property: `header` lines as comments, then one `(push 1)` … `(check-sat)`
/// `(pop 1)` block per case. `(get-model)` is not written, because solvers report an error for it after
/// `unsat`.
pub fn property_file(header: &[String], cases: &[Encoding]) -> String {
    let mut s = String::new();
    for h in header {
        for line in h.lines() {
            let _ = writeln!(s, "; {line}");
        }
    }
    let _ = writeln!(
        s,
        "; {} case(s), one (check-sat) each: the property is violated (a counterexample exists) iff some \
         answer is sat.\n(set-logic QF_LRA)",
        cases.len()
    );
    for (i, enc) in cases.iter().enumerate() {
        let _ = writeln!(
            s,
            "; case {i}: {} ReLU(s), {} fixed active and {} fixed inactive by sound bounds, {} left piecewise\n\
             (push 1)",
            enc.stats.relus,
            enc.stats.stable_active,
            enc.stats.stable_inactive,
            enc.stats.unstable()
        );
        write_assertions(enc, &mut s);
        s.push_str("(check-sat)\n(pop 1)\n");
    }
    s
}
