//! Incomplete verification: a property is proved (`unsat`) when sound bounds show that no disjunct of any case
//! can be met anywhere in its input box.
//!
//! The file's decimal constants are rounded to f64 by the parser; to stay sound for the real numbers the file
//! states, each box is widened by one ulp on both sides, each right-hand side must be beaten by more than one
//! ulp, and coefficients that were rounded are covered by a `u·Σ|c_j|·|y_j|` term.

use ndarray::Array2;
use nncert_bounds::{BoundModel, Bounder, Method};
use nncert_model::Graph;
use nncert_spec::{Case, InputBox, Property};

const U: f64 = f64::EPSILON / 2.0;

/// Per case, per disjunct: `true` when the bounds prove that the disjunct cannot be met in the case's box.
pub fn refuted_disjuncts(
    model: &BoundModel,
    property: &Property,
    method: Method,
) -> Vec<Vec<bool>> {
    let bounder = model.bounder();
    property
        .cases
        .iter()
        .map(|case| refute_case(&bounder, case, method))
        .collect()
}

/// Per disjunct of `case`: `true` when the bounds prove it cannot be met in the case's box.
pub fn refute_case(bounder: &Bounder<'_>, case: &Case, method: Method) -> Vec<bool> {
    let graph = bounder.graph();
    let out_id = graph.output_id().0;
    let widened = InputBox {
        lower: case.input.lower.iter().map(|v| v.next_down()).collect(),
        upper: case.input.upper.iter().map(|v| v.next_up()).collect(),
    };
    let bounds = bounder.node_bounds(&widened, method);
    let rows: Vec<&nncert_spec::LinearConstraint> = case
        .output
        .disjuncts
        .iter()
        .flat_map(|d| &d.constraints)
        .collect();
    let m = graph.output_size();
    let mut c = Array2::<f64>::zeros((rows.len(), m));
    for (r, k) in rows.iter().enumerate() {
        for (j, &v) in k.coeffs.iter().enumerate() {
            c[[r, j]] = v;
        }
    }
    let lower = if rows.is_empty() {
        vec![]
    } else {
        bounder.output_lower(&c, &bounds)
    };
    let out = &bounds[out_id];
    let mag: Vec<f64> = out
        .lower
        .iter()
        .zip(&out.upper)
        .map(|(l, u)| l.abs().max(u.abs()))
        .collect();
    let mut r = 0;
    case.output
        .disjuncts
        .iter()
        .map(|d| {
            let mut refuted = false;
            for k in &d.constraints {
                let slack: f64 = k
                    .coeffs
                    .iter()
                    .zip(&mag)
                    .map(|(a, m)| a.abs() * m)
                    .sum::<f64>()
                    * U
                    * 1.01;
                // The bad case needs c·y ≤ rhs (or <). Refuted when a lower bound beats rhs for sure.
                let lb = (lower[r] - slack).next_down();
                if lb > k.rhs.next_up() {
                    refuted = true;
                }
                r += 1;
            }
            refuted
        })
        .collect()
}

/// `true` when the property is proved by `method` alone.
pub fn prove(graph: &Graph, property: &Property, method: Method) -> bool {
    let model = BoundModel::new(graph);
    refuted_disjuncts(&model, property, method)
        .iter()
        .all(|case| case.iter().all(|&r| r))
}
