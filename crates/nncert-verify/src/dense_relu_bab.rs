//! ReLU-splitting branch-and-bound on the dense fast path ([`DenseReluNet`]), for inputs too wide to split
//! (MNIST-sized): a sub-domain is the input box with some hidden ReLUs fixed active (`z ≥ 0`) or inactive
//! (`z ≤ 0`).
//!
//! A split enters the bounds through the prior of [`DenseReluNet::bound_boxes`]: the parent's bounds with the
//! split neuron's interval clamped at 0. Bounds computed over the box are valid on the sub-domain, and
//! intersecting them with the split constraint keeps them valid on it; the fixed ReLU's relaxation is then
//! exact, and every later layer is recomputed from there. (β-CROWN would also carry the split constraint into
//! the concretization over the input box; this is the plainer, looser and equally sound form.) Contradictory
//! bounds (a lower above an upper) prove the sub-domain empty.
//!
//! Branching: the unstable neuron whose relaxation costs the open constraints most (scores from the backward
//! pass, see [`nncert_bounds::dense::ObjectiveBound::scores`]). Candidates: the input box vertex minimizing the worst
//! live constraint's linear lower bound, screened in f64 and checked by [`check_candidate`].

use crate::bab::BabOutcome;
use crate::check::{Counterexample, check_candidate};
use crate::dense_bab::CaseRows;
use nncert_bounds::dense::{DenseBounds, DenseReluNet, ObjectiveBound, ObjectiveOptions};
use nncert_model::Graph;
use nncert_spec::{InputBox, Property};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// α-CROWN iterations on each sub-domain's objective.
const ALPHA_ITERATIONS: usize = 8;

/// Sub-domains bounded together by one task.
const CHUNK: usize = 8;

struct Domain {
    /// The parent's bounds with this domain's splits applied (`None` at the root).
    prior: Option<Arc<DenseBounds>>,
    live: Vec<usize>,
    /// The first layer whose bounds the last split can change (the one after the split neuron's).
    refine_from: usize,
}

enum Step {
    Closed,
    Split([Domain; 2]),
    Found(Box<Counterexample>),
    /// Every ReLU is fixed and the bound still does not decide: needs an LP over the sub-domain.
    Stuck,
}

/// Runs ReLU-splitting branch-and-bound until `deadline` or until more than `max_open` sub-domains are pending.
pub fn relu_split_dense(
    net: &DenseReluNet,
    graph: &Graph,
    property: &Property,
    deadline: Instant,
    max_open: usize,
) -> BabOutcome {
    let threads = rayon::current_num_threads().max(1);
    let mut domains = 0u64;
    for (ci, case) in property.cases.iter().enumerate() {
        let rows = CaseRows::new(case, net.output_size());
        if rows.n_disjuncts == 0 {
            continue;
        }
        // One-ulp outward widening, as in the input-splitting search.
        let bx = case.input.widened_one_ulp();
        let mut stack = vec![Domain {
            prior: None,
            live: (0..rows.n_disjuncts).collect(),
            refine_from: 0,
        }];
        while !stack.is_empty() {
            if Instant::now() >= deadline || stack.len() > max_open {
                return BabOutcome::Undecided {
                    domains,
                    open: stack.len(),
                };
            }
            let take = stack.len().min(CHUNK * threads);
            let work = stack.split_off(stack.len() - take);
            domains += work.len() as u64;
            let size = take.div_ceil(threads).clamp(1, CHUNK);
            let mut chunks: Vec<Vec<Domain>> = Vec::new();
            let mut work = work.into_iter().peekable();
            while work.peek().is_some() {
                chunks.push(work.by_ref().take(size).collect());
            }
            let steps: Vec<Vec<Step>> = chunks
                .into_par_iter()
                .map(|chunk| {
                    let boxes = vec![bx.clone(); chunk.len()];
                    let priors: Vec<Option<&DenseBounds>> =
                        chunk.iter().map(|d| d.prior.as_deref()).collect();
                    let from: Vec<usize> = chunk.iter().map(|d| d.refine_from).collect();
                    let all = net.bound_boxes_from(&boxes, &priors, &from);
                    chunk
                        .iter()
                        .zip(all)
                        .map(|(d, b)| {
                            decide(net, graph, property, ci, &case.input, &bx, &rows, d, b)
                        })
                        .collect()
                })
                .collect();
            for step in steps.into_iter().flatten() {
                match step {
                    Step::Closed => {}
                    Step::Split(children) => stack.extend(children),
                    Step::Found(cex) => return BabOutcome::Counterexample { cex, domains },
                    Step::Stuck => {
                        return BabOutcome::Undecided {
                            domains,
                            open: stack.len() + 1,
                        };
                    }
                }
            }
        }
    }
    BabOutcome::Proved { domains }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    net: &DenseReluNet,
    graph: &Graph,
    property: &Property,
    case: usize,
    input: &InputBox,
    widened: &InputBox,
    rows: &CaseRows,
    d: &Domain,
    bounds: DenseBounds,
) -> Step {
    let empty = bounds
        .layers
        .iter()
        .any(|l| l.lower.iter().zip(&l.upper).any(|(lo, up)| lo > up));
    if empty {
        return Step::Closed;
    }
    let live_rows = rows.live_rows(&d.live);
    let c = rows.c.select(ndarray::Axis(0), &live_rows);
    let ObjectiveBound {
        lower,
        coeffs,
        scores,
    } = net.objective_lower_with(
        widened,
        &bounds,
        c.view(),
        ObjectiveOptions {
            scores: true,
            alpha_iterations: ALPHA_ITERATIONS,
            beta: true,
        },
    );
    let open = rows.open_disjuncts(&d.live, &live_rows, c.view(), &lower, bounds.output());
    let Some(worst) = open.iter().min_by(|a, b| a.gap.total_cmp(&b.gap)) else {
        return Step::Closed;
    };
    // The box vertex where the worst open row's linear lower bound is least: the bound's own witness.
    let x: Vec<f64> = coeffs
        .row(worst.row)
        .iter()
        .enumerate()
        .map(|(t, &a)| {
            if a >= 0.0 {
                input.lower[t]
            } else {
                input.upper[t]
            }
        })
        .collect();
    if rows.near_bad(&open, &live_rows, c.view(), &net.eval(&x))
        && let Some(cex) = check_candidate(graph, property, case, &x)
    {
        return Step::Found(Box::new(cex));
    }
    let live: Vec<usize> = open.iter().map(|o| o.disjunct).collect();
    // Branch on the unstable neuron with the highest score; ties (all zero) go to the widest relaxation.
    let hidden = &bounds.layers[..bounds.layers.len() - 1];
    let mut pick: Option<(f64, f64, usize, usize)> = None; // (score, gap, layer, neuron)
    for (k, l) in hidden.iter().enumerate() {
        for (j, ((&lo, &up), &score)) in l.lower.iter().zip(&l.upper).zip(&scores[k]).enumerate() {
            if !(lo < 0.0 && up > 0.0) {
                continue;
            }
            let cand = (score, up.min(-lo), k, j);
            if pick.is_none_or(|p| (cand.0, cand.1) > (p.0, p.1)) {
                pick = Some(cand);
            }
        }
    }
    let Some((_, _, k, j)) = pick else {
        return Step::Stuck;
    };
    let mut active = bounds.clone();
    active.layers[k].lower[j] = 0.0;
    let mut inactive = bounds;
    inactive.layers[k].upper[j] = 0.0;
    Step::Split([
        Domain {
            prior: Some(Arc::new(inactive)),
            live: live.clone(),
            refine_from: k + 1,
        },
        Domain {
            prior: Some(Arc::new(active)),
            live,
            refine_from: k + 1,
        },
    ])
}
