//! Incomplete verification: a property is proved (`unsat`) when sound bounds show that no disjunct of any case
//! can be met anywhere in its input box.
//!
//! The file's decimal constants are rounded to f64 by the parser; to stay sound for the real numbers the file
//! states, each box is widened by one ulp on both sides, each right-hand side must be beaten by more than one
//! ulp, and coefficients that were rounded are covered by a `u·Σ|c_j|·|y_j|` term.

use ndarray::Array2;
use nncert_bounds::{BoundModel, Bounder, Method, NodeBounds};
use nncert_model::Graph;
use nncert_spec::{Case, Property};
use std::time::Instant;

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
    refute_case_detailed(bounder, case, method, None, true).refuted
}

/// What bounding one case's box tells branch-and-bound.
#[derive(Clone, Debug)]
pub struct CaseRefutation {
    /// Per disjunct: proved impossible in the box.
    pub refuted: Vec<bool>,
    /// Per input dimension: how much its range weakens the bounds of the disjuncts still open
    /// (`Σ |coefficient| × width` over each open disjunct's most promising constraint).
    pub split_scores: Vec<f64>,
    /// The node bounds on the (ulp-widened) box, valid as a prior on every sub-box.
    pub bounds: Vec<NodeBounds>,
    /// Per constraint, disjuncts in order: a lower bound of `c·y` over the box (before the coefficient
    /// rounding allowance that the refutation subtracts).
    pub lower: Vec<f64>,
}

/// [`refute_case`] plus the split scores of [`CaseRefutation`].
/// `prior`: bounds of a box containing this one (see [`Bounder::node_bounds_within`]).
pub fn refute_case_detailed(
    bounder: &Bounder<'_>,
    case: &Case,
    method: Method,
    prior: Option<&[NodeBounds]>,
    refine_intermediate: bool,
) -> CaseRefutation {
    let graph = bounder.graph();
    let out_id = graph.output_id().0;
    let widened = case.input.widened_one_ulp();
    let bounds = bounder.node_bounds_within(&widened, method, prior, refine_intermediate);
    let rows = crate::dense_bab::CaseRows::new(case, graph.output_size());
    let ymag = bounds[out_id].magnitude();
    // Per disjunct: refuted by some row, and its most promising row (largest gap) with that gap.
    let judge = |lower: &[f64]| {
        let mut refuted = vec![false; rows.n_disjuncts];
        let mut best: Vec<Option<(f64, usize)>> = vec![None; rows.n_disjuncts];
        for (r, &lb) in lower.iter().enumerate() {
            let (refutes, gap) = rows.refutes(rows.c.row(r), r, lb, &ymag);
            let d = rows.owner[r];
            refuted[d] |= refutes;
            if best[d].is_none_or(|(g, _)| gap > g) {
                best[d] = Some((gap, r));
            }
        }
        (refuted, best)
    };
    let (lower, coeffs) = if rows.c.nrows() == 0 {
        (vec![], Array2::zeros((0, graph.input_size())))
    } else if method.alpha_iterations() > 0 {
        let all_refuted = |lower: &[f64]| judge(lower).0.iter().all(|&v| v);
        bounder.output_lower_alpha(&rows.c, &bounds, method.alpha_iterations(), &all_refuted)
    } else {
        bounder.output_lower_with_input_coeffs(&rows.c, &bounds)
    };
    let (refuted, best) = judge(&lower);
    let mut split_scores = vec![0.0; graph.input_size()];
    for (_, row) in refuted
        .iter()
        .zip(&best)
        .filter_map(|(&r, b)| if r { None } else { *b })
    {
        for (j, s) in split_scores.iter_mut().enumerate() {
            *s += coeffs[[row, j]].abs() * (case.input.upper[j] - case.input.lower[j]);
        }
    }
    CaseRefutation {
        refuted,
        split_scores,
        bounds,
        lower,
    }
}

/// `true` when the property is proved by `method` alone.
/// Intermediate refinement stops at `deadline` (see [`Bounder::with_deadline`]).
pub fn prove(graph: &Graph, property: &Property, method: Method, deadline: Instant) -> bool {
    let model = BoundModel::new(graph);
    let bounder = model.bounder().with_deadline(deadline);
    property
        .cases
        .iter()
        .all(|case| refute_case(&bounder, case, method).iter().all(|&r| r))
}

/// What the dense engine ([`nncert_bounds::dense`], feed-forward ReLU networks) proves about one case's box.
#[derive(Clone, Debug)]
pub struct DenseCaseBounds {
    /// Bounds of the outputs over the (ulp-widened) box.
    pub output: nncert_bounds::dense::LayerBounds,
    /// Per disjunct, per constraint `c·y ≤ rhs`: a sound lower bound of `c·y − rhs` (positive: impossible).
    pub margins: Vec<Vec<f64>>,
    /// Per disjunct: proved impossible in the box.
    pub refuted: Vec<bool>,
}

/// Bounds `case` with the dense engine: forward relaxation refined by backward CROWN for the layers, then each
/// constraint's objective by backward CROWN, with `alpha_iterations` of α-CROWN slope optimization (0: CROWN).
/// The same soundness rules as [`refute_case`] (ulp-widened box, rounded coefficients covered).
pub fn dense_case_bounds(
    net: &nncert_bounds::dense::DenseReluNet,
    case: &Case,
    alpha_iterations: usize,
) -> DenseCaseBounds {
    let rows = crate::dense_bab::CaseRows::new(case, net.output_size());
    let widened = case.input.widened_one_ulp();
    let bounds = net
        .bound_boxes(std::slice::from_ref(&widened), &[None])
        .pop()
        .expect("one box in, one out");
    let lower = if rows.c.nrows() == 0 {
        vec![]
    } else {
        let opts = nncert_bounds::dense::ObjectiveOptions {
            alpha_iterations,
            ..Default::default()
        };
        net.objective_lower_with(&widened, &bounds, rows.c.view(), opts)
            .lower
    };
    let out = bounds.output();
    let ymag = out.magnitude();
    let mut margins = vec![Vec::new(); rows.n_disjuncts];
    let mut refuted = vec![false; rows.n_disjuncts];
    for (r, &lb) in lower.iter().enumerate() {
        let (refutes, gap) = rows.refutes(rows.c.row(r), r, lb, &ymag);
        let d = rows.owner[r];
        margins[d].push(gap);
        refuted[d] |= refutes;
    }
    DenseCaseBounds {
        output: out.clone(),
        margins,
        refuted,
    }
}
