//! Branch-and-bound by input splitting, for networks with few inputs (ACAS Xu has 5).
//!
//! Each case's box is covered by sub-boxes; a sub-box is closed when CROWN refutes every disjunct on it,
//! otherwise its centre is checked as a counterexample and it is split in two at the midpoint of the dimension
//! that is widest relative to the case's box. The two halves share the midpoint, so they cover the parent
//! exactly: the property is proved only when every leaf is closed. Sub-boxes are bounded in parallel batches.
//!
//! Used when at most [`MAX_INPUTS`] input dimensions vary in the property's boxes; wider regions need ReLU
//! splitting instead.

use crate::check::{Counterexample, check_candidate};
use crate::incomplete::refute_case_detailed;
use nncert_bounds::{BoundModel, Method, NodeBounds};
use nncert_model::Graph;
use nncert_spec::{Case, InputBox, OutputCondition, Property};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// Input splitting is used up to this many varying input dimensions.
pub const MAX_INPUTS: usize = 16;

/// How a branch-and-bound run ended.
#[derive(Clone, Debug)]
pub enum BabOutcome {
    /// Every sub-box of every case was refuted.
    Proved { domains: u64 },
    /// A sub-box centre was a (checked) counterexample.
    Counterexample {
        cex: Box<Counterexample>,
        domains: u64,
    },
    /// The deadline or the domain cap came first.
    Undecided { domains: u64, open: usize },
}

struct Domain {
    input: InputBox,
    /// Disjuncts not yet refuted on an ancestor (refutation is inherited by sub-boxes).
    live: Vec<usize>,
    /// Node bounds of an ancestor's box (valid here too), shared by siblings.
    prior: Option<Arc<Vec<NodeBounds>>>,
    /// Splits since the last full CROWN pass (with intermediate bounds) on the ancestry.
    age: u32,
}

/// Full CROWN (intermediate bounds too) every this many splits; in between, IBP ∩ the ancestor's bounds for
/// intermediate nodes and CROWN on the output only, which costs a fraction of a full pass.
const REFRESH_EVERY: u32 = 1;

/// Above this many open sub-boxes, priors are not kept (they cost memory per box).
const MAX_OPEN_WITH_PRIORS: usize = 50_000;

/// Runs input-splitting branch-and-bound until `deadline` or until `max_open` sub-boxes are pending.
pub fn input_split(
    graph: &Graph,
    property: &Property,
    deadline: Instant,
    max_open: usize,
) -> BabOutcome {
    let model = BoundModel::new(graph);
    let bounder = model.bounder().with_deadline(deadline);
    let batch = 8 * rayon::current_num_threads().max(1);
    let mut domains = 0u64;
    for (ci, case) in property.cases.iter().enumerate() {
        let root_width: Vec<f64> = case
            .input
            .lower
            .iter()
            .zip(&case.input.upper)
            .map(|(l, u)| u - l)
            .collect();
        let mut stack = vec![Domain {
            input: case.input.clone(),
            live: (0..case.output.disjuncts.len()).collect(),
            prior: None,
            age: 0,
        }];
        while !stack.is_empty() {
            if Instant::now() >= deadline || stack.len() > max_open {
                return BabOutcome::Undecided {
                    domains,
                    open: stack.len(),
                };
            }
            let keep_priors = stack.len() < MAX_OPEN_WITH_PRIORS;
            let take = stack.len().min(batch);
            let work: Vec<Domain> = stack.split_off(stack.len() - take);
            domains += work.len() as u64;
            let results: Vec<Result<Vec<Domain>, Option<Counterexample>>> = work
                .into_par_iter()
                .map(|d| {
                    let sub = Case {
                        input: d.input.clone(),
                        output: OutputCondition {
                            disjuncts: d
                                .live
                                .iter()
                                .map(|&k| case.output.disjuncts[k].clone())
                                .collect(),
                        },
                    };
                    let full = d.prior.is_none() || d.age >= REFRESH_EVERY;
                    let res = refute_case_detailed(
                        &bounder,
                        &sub,
                        Method::Crown,
                        d.prior.as_deref().map(|v| v.as_slice()),
                        full,
                    );
                    let refuted = res.refuted;
                    let live: Vec<usize> = d
                        .live
                        .iter()
                        .zip(&refuted)
                        .filter(|(_, r)| !**r)
                        .map(|(k, _)| *k)
                        .collect();
                    if live.is_empty() {
                        return Ok(vec![]);
                    }
                    let centre: Vec<f64> = d
                        .input
                        .lower
                        .iter()
                        .zip(&d.input.upper)
                        .map(|(l, u)| l + (u - l) / 2.0)
                        .collect();
                    if let Some(c) = check_candidate(graph, property, ci, &centre) {
                        return Err(Some(c));
                    }
                    // Split where the open constraints' linear bound pays most for the input's range; fall
                    // back to the relatively widest dimension when the bound does not depend on the input.
                    let by_score = (0..centre.len())
                        .filter(|&j| d.input.upper[j] > d.input.lower[j])
                        .max_by(|&a, &b| res.split_scores[a].total_cmp(&res.split_scores[b]))
                        .filter(|&j| res.split_scores[j] > 0.0);
                    let split = by_score.or_else(|| {
                        (0..centre.len())
                            .filter(|&j| root_width[j] > 0.0)
                            .max_by(|&a, &b| {
                                let wa = (d.input.upper[a] - d.input.lower[a]) / root_width[a];
                                let wb = (d.input.upper[b] - d.input.lower[b]) / root_width[b];
                                wa.total_cmp(&wb)
                            })
                    });
                    let Some(j) = split else { return Err(None) };
                    let mid = centre[j];
                    if !(mid > d.input.lower[j] && mid < d.input.upper[j]) {
                        // The box cannot be split further in floating point: give up on it honestly.
                        return Err(None);
                    }
                    let mut left = d.input.clone();
                    left.upper[j] = mid;
                    let mut right = d.input;
                    right.lower[j] = mid;
                    let prior = keep_priors.then(|| Arc::new(res.bounds));
                    let age = if full { 1 } else { d.age + 1 };
                    Ok(vec![
                        Domain {
                            input: left,
                            live: live.clone(),
                            prior: prior.clone(),
                            age,
                        },
                        Domain {
                            input: right,
                            live,
                            prior,
                            age,
                        },
                    ])
                })
                .collect();
            for r in results {
                match r {
                    Ok(children) => stack.extend(children),
                    Err(Some(cex)) => {
                        return BabOutcome::Counterexample {
                            cex: Box::new(cex),
                            domains,
                        };
                    }
                    Err(None) => {
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
