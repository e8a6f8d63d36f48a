//! ReLU-splitting branch-and-bound on the dense fast path ([`DenseReluNet`]), for inputs too wide to split
//! (MNIST-sized): a sub-domain is the input box with some hidden ReLUs fixed active (`z ≥ 0`) or inactive
//! (`z ≤ 0`).
//!
//! A split enters the bounds through the prior of [`DenseReluNet::bound_boxes_from`]: the parent's bounds with
//! the split neuron's interval clamped at 0. Bounds computed over the box are valid on the sub-domain, and
//! intersecting them with the split constraint keeps them valid on it; the fixed ReLU's relaxation is then
//! exact, and the layers after the split are recomputed from there. The objective's bound carries the split
//! constraints into the concretization over the input box with β-CROWN multipliers. Contradictory bounds (a
//! lower above an upper) prove the sub-domain empty. An optional [`LeafSolver`] decides sub-domains with few
//! unstable ReLUs exactly (an LP once every ReLU is fixed).
//!
//! Branching: the unstable neuron whose relaxation costs the open constraints most (scores from the backward
//! pass, see [`nncert_bounds::dense::ObjectiveBound::scores`]). Candidates: the input box vertex minimizing the worst
//! live constraint's linear lower bound, screened in f64 and checked by [`check_candidate`].

use crate::bab::BabOutcome;
use crate::check::{Counterexample, check_candidate};
use crate::dense_bab::CaseRows;
use crate::leaf::{Leaf, LeafAnswer, LeafSolver};
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
    /// A leaf solver already failed on this domain or an ancestor (it is asked again only once every ReLU
    /// is fixed, when its problem becomes an LP).
    leaf_tried: bool,
}

/// What the leaf solver did during one search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeafStats {
    /// Sub-domains handed to the leaf solver.
    pub calls: u64,
    /// Closed by a rigorous refutation (sound under floating point).
    pub refuted_rigorous: u64,
    /// Closed by a refutation valid only up to the solver's tolerances.
    pub refuted_tolerance: u64,
    /// Solver points that re-executed into the bad region.
    pub counterexamples: u64,
}

/// What the search needs besides the domain, shared by all domains of one case.
struct CaseContext<'a> {
    net: &'a DenseReluNet,
    graph: &'a Graph,
    property: &'a Property,
    case: usize,
    input: &'a InputBox,
    widened: &'a InputBox,
    rows: &'a CaseRows,
    leaf: Option<&'a dyn LeafSolver>,
    deadline: Instant,
}

enum Step {
    Closed,
    /// Closed by the leaf solver (`true`: rigorously).
    ClosedByLeaf(bool),
    Split {
        children: [Domain; 2],
        leaf_called: bool,
    },
    Found {
        cex: Box<Counterexample>,
        from_leaf: bool,
    },
    /// Every ReLU is fixed and neither the bound nor a leaf solver decides.
    Stuck {
        leaf_called: bool,
    },
}

/// Runs ReLU-splitting branch-and-bound until `deadline` or until more than `max_open` sub-domains are pending.
/// With a `leaf` solver, sub-domains with at most [`LeafSolver::max_unstable`] unstable ReLUs are also handed
/// to it (see [`crate::leaf`]); the returned [`LeafStats`] say what it closed, and how rigorously.
pub fn relu_split_dense(
    net: &DenseReluNet,
    graph: &Graph,
    property: &Property,
    deadline: Instant,
    max_open: usize,
    leaf: Option<&dyn LeafSolver>,
    root_priors: &[Option<Arc<DenseBounds>>],
) -> (BabOutcome, LeafStats) {
    let threads = rayon::current_num_threads().max(1);
    let mut domains = 0u64;
    let mut stats = LeafStats::default();
    for (ci, case) in property.cases.iter().enumerate() {
        let rows = CaseRows::new(case, net.output_size());
        if rows.n_disjuncts == 0 {
            continue;
        }
        // One-ulp outward widening, as in the input-splitting search.
        let bx = case.input.widened_one_ulp();
        let ctx = CaseContext {
            net,
            graph,
            property,
            case: ci,
            input: &case.input,
            widened: &bx,
            rows: &rows,
            leaf,
            deadline,
        };
        let mut stack = vec![Domain {
            prior: root_priors.get(ci).cloned().flatten(),
            live: (0..rows.n_disjuncts).collect(),
            refine_from: 0,
            leaf_tried: false,
        }];
        while !stack.is_empty() {
            if Instant::now() >= deadline || stack.len() > max_open {
                return (
                    BabOutcome::Undecided {
                        domains,
                        open: stack.len(),
                    },
                    stats,
                );
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
                        .map(|(d, b)| decide(&ctx, d, b))
                        .collect()
                })
                .collect();
            for step in steps.into_iter().flatten() {
                match step {
                    Step::Closed => {}
                    Step::ClosedByLeaf(rigorous) => {
                        stats.calls += 1;
                        if rigorous {
                            stats.refuted_rigorous += 1;
                        } else {
                            stats.refuted_tolerance += 1;
                        }
                    }
                    Step::Split {
                        children,
                        leaf_called,
                    } => {
                        stats.calls += u64::from(leaf_called);
                        stack.extend(children)
                    }
                    Step::Found { cex, from_leaf } => {
                        stats.calls += u64::from(from_leaf);
                        stats.counterexamples += u64::from(from_leaf);
                        return (BabOutcome::Counterexample { cex, domains }, stats);
                    }
                    Step::Stuck { leaf_called } => {
                        stats.calls += u64::from(leaf_called);
                        return (
                            BabOutcome::Undecided {
                                domains,
                                open: stack.len() + 1,
                            },
                            stats,
                        );
                    }
                }
            }
        }
    }
    (BabOutcome::Proved { domains }, stats)
}

fn decide(ctx: &CaseContext<'_>, d: &Domain, bounds: DenseBounds) -> Step {
    let CaseContext {
        net,
        graph,
        property,
        case,
        input,
        widened,
        rows,
        ..
    } = *ctx;
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
        return Step::Found {
            cex: Box::new(cex),
            from_leaf: false,
        };
    }
    let live: Vec<usize> = open.iter().map(|o| o.disjunct).collect();
    let hidden = &bounds.layers[..bounds.layers.len() - 1];
    let unstable = hidden
        .iter()
        .flat_map(|l| l.lower.iter().zip(&l.upper))
        .filter(|&(&lo, &up)| lo < 0.0 && up > 0.0)
        .count();
    let mut leaf_called = false;
    if let Some(solver) = ctx.leaf
        && unstable <= solver.max_unstable()
        && (unstable == 0 || !d.leaf_tried)
    {
        leaf_called = true;
        // A leaf may take a tenth of what is left (at least 50 ms): one hard leaf must not eat the search.
        let now = Instant::now();
        let share = ctx.deadline.saturating_duration_since(now) / 10;
        let leaf = Leaf {
            property,
            case,
            disjuncts: &live,
            input: widened,
            layers: &bounds.layers,
            unstable,
            deadline: (now + share.max(std::time::Duration::from_millis(50))).min(ctx.deadline),
        };
        match solver.solve(&leaf) {
            LeafAnswer::Refuted { rigorous } => return Step::ClosedByLeaf(rigorous),
            LeafAnswer::Candidate(x) => {
                // The solver works on the widened box: clamp back into the property's own box.
                let x: Vec<f64> = x
                    .iter()
                    .enumerate()
                    .map(|(t, &v)| v.clamp(input.lower[t], input.upper[t]))
                    .collect();
                if let Some(cex) = check_candidate(graph, property, case, &x) {
                    return Step::Found {
                        cex: Box::new(cex),
                        from_leaf: true,
                    };
                }
            }
            LeafAnswer::Unknown => {}
        }
    }
    // Branch on the unstable neuron with the highest score; ties (all zero) go to the widest relaxation.
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
        return Step::Stuck { leaf_called };
    };
    let leaf_tried = d.leaf_tried || leaf_called;
    let mut active = bounds.clone();
    active.layers[k].lower[j] = 0.0;
    let mut inactive = bounds;
    inactive.layers[k].upper[j] = 0.0;
    Step::Split {
        children: [
            Domain {
                prior: Some(Arc::new(inactive)),
                live: live.clone(),
                refine_from: k + 1,
                leaf_tried,
            },
            Domain {
                prior: Some(Arc::new(active)),
                live,
                refine_from: k + 1,
                leaf_tried,
            },
        ],
        leaf_called,
    }
}
