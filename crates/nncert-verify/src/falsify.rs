//! The falsifier: random sampling and projected gradient descent on the property's margin.
//!
//! For one case (an input box and a bad output region in DNF), the margin of a disjunct at output `y` is
//! `max_k (c_k·y − rhs_k)`: ≤ 0 exactly when `y` satisfies every constraint of the disjunct. The falsifier
//! minimizes it by signed-gradient steps projected on the box (PGD for L∞ regions), each start aimed at one
//! disjunct. Work is split into *rounds*, each with its own random stream derived from `(seed, round)`; rounds run
//! in parallel and the lowest-numbered successful round wins, so a result depends on the seed only, not on the
//! number of threads.

use crate::check::{Counterexample, check_candidate};
use ndarray::{Array2, ArrayView1};
use nncert_model::Graph;
use nncert_model::eval::Evaluator;
use nncert_spec::{Case, Conjunction, Property};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

/// How hard and how long to search.
#[derive(Clone, Debug)]
pub struct FalsifierConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Give up at this instant.
    pub deadline: Instant,
    /// Points per round (sampled, then used as PGD starts).
    pub batch: usize,
    /// PGD steps per round.
    pub pgd_steps: usize,
    /// Stop after this many rounds even before the deadline (`None`: until the deadline).
    pub max_rounds: Option<usize>,
}

impl FalsifierConfig {
    pub fn new(seed: u64, deadline: Instant) -> Self {
        FalsifierConfig {
            seed,
            deadline,
            batch: 256,
            pgd_steps: 60,
            max_rounds: None,
        }
    }
}

/// What the falsifier found.
#[derive(Clone, Debug)]
pub struct FalsifyOutcome {
    /// A checked counterexample, if one was found.
    pub counterexample: Option<Counterexample>,
    /// The smallest margin seen over all cases (≤ 0 would be a counterexample).
    pub best_margin: f64,
    /// Rounds completed.
    pub rounds: usize,
    /// Model evaluations (forward passes of single samples).
    pub evaluations: u64,
}

/// Searches for a counterexample to `property` on `graph` until one is found or the budget is spent.
pub fn falsify(graph: &Graph, property: &Property, cfg: &FalsifierConfig) -> FalsifyOutcome {
    let eval = Evaluator::<f32>::new(graph);
    let mut out = FalsifyOutcome {
        counterexample: None,
        best_margin: f64::INFINITY,
        rounds: 0,
        evaluations: 0,
    };
    if property.cases.is_empty() {
        return out;
    }
    let width = rayon::current_num_threads().max(1);
    let mut next_round = 0usize;
    while Instant::now() < cfg.deadline && cfg.max_rounds.is_none_or(|m| next_round < m) {
        let last = cfg
            .max_rounds
            .map_or(next_round + width, |m| m.min(next_round + width));
        let results: Vec<RoundResult> = (next_round..last)
            .into_par_iter()
            .map(|r| run_round(&eval, graph, property, cfg, r))
            .collect();
        next_round = last;
        for r in results {
            out.rounds += 1;
            out.evaluations += r.evaluations;
            out.best_margin = out.best_margin.min(r.best_margin);
            if out.counterexample.is_none() {
                out.counterexample = r.counterexample;
            }
        }
        if out.counterexample.is_some() {
            break;
        }
    }
    out
}

struct RoundResult {
    counterexample: Option<Counterexample>,
    best_margin: f64,
    evaluations: u64,
}

/// Margin of one disjunct and the index of its most violated constraint.
fn conj_margin(conj: &Conjunction, y: ArrayView1<'_, f32>) -> (f64, usize) {
    let mut best = (f64::NEG_INFINITY, usize::MAX);
    for (k, c) in conj.constraints.iter().enumerate() {
        let v: f64 = c
            .coeffs
            .iter()
            .zip(y.iter())
            .map(|(a, &b)| a * b as f64)
            .sum::<f64>()
            - c.rhs;
        if v > best.0 {
            best = (v, k);
        }
    }
    best
}

fn run_round(
    eval: &Evaluator<f32>,
    graph: &Graph,
    property: &Property,
    cfg: &FalsifierConfig,
    round: usize,
) -> RoundResult {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(round as u64 + 1);
    let case_idx = round % property.cases.len();
    let case: &Case = &property.cases[case_idx];
    let lo = &case.input.lower;
    let hi = &case.input.upper;
    let n = lo.len();
    let b = cfg.batch.max(1);
    let disjuncts = &case.output.disjuncts;
    let mut res = RoundResult {
        counterexample: None,
        best_margin: f64::INFINITY,
        evaluations: 0,
    };
    if disjuncts.is_empty() {
        return res;
    }

    // Starts: the box centre (first round of a case), then uniform samples.
    let mut x = Array2::<f32>::zeros((b, n));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let t: f64 = if round < property.cases.len() && i == 0 {
                0.5
            } else {
                rng.random::<f64>()
            };
            *v = (lo[j] + t * (hi[j] - lo[j])) as f32;
        }
    }
    // Each start aims at one disjunct: the one it is closest to after sampling, or round-robin when
    // sampling tells nothing (all equally far).
    let mut target: Vec<usize> = (0..b).map(|i| (i + round) % disjuncts.len()).collect();
    let width: Vec<f32> = lo.iter().zip(hi).map(|(l, h)| (h - l) as f32).collect();
    let clamp = |x: &mut Array2<f32>| {
        for mut row in x.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = v.clamp(lo[j] as f32, hi[j] as f32);
            }
        }
    };

    for step in 0..=cfg.pgd_steps {
        if Instant::now() >= cfg.deadline {
            break;
        }
        let Ok(trace) = eval.trace(x.view()) else {
            break;
        };
        res.evaluations += b as u64;
        let y = trace.output();
        let m = y.ncols();
        let mut cot = Array2::<f32>::zeros((b, m));
        for i in 0..b {
            if step == 0 {
                // Retarget to the closest disjunct.
                let (d, _) = disjuncts
                    .iter()
                    .enumerate()
                    .map(|(d, conj)| (d, conj_margin(conj, y.row(i)).0))
                    .fold(
                        (target[i], f64::INFINITY),
                        |a, c| if c.1 < a.1 { c } else { a },
                    );
                if i % 2 == 0 {
                    target[i] = d;
                }
            }
            let conj = &disjuncts[target[i]];
            let (margin, k) = conj_margin(conj, y.row(i));
            res.best_margin = res.best_margin.min(margin);
            if margin <= 0.0 {
                let xi: Vec<f64> = x.row(i).iter().map(|&v| v as f64).collect();
                if let Some(cex) = check_candidate(graph, property, case_idx, &xi) {
                    res.counterexample = Some(cex);
                    return res;
                }
            }
            // Descend on the sum of the violated constraints (the most violated one alone makes the
            // constraints of a conjunction take turns and the search zig-zag near the region).
            if k != usize::MAX {
                let yi = y.row(i);
                let mut row = cot.row_mut(i);
                for c in &conj.constraints {
                    let v: f64 = c
                        .coeffs
                        .iter()
                        .zip(yi.iter())
                        .map(|(a, &b)| a * b as f64)
                        .sum::<f64>()
                        - c.rhs;
                    if v >= 0.0 {
                        for (t, &a) in row.iter_mut().zip(&c.coeffs) {
                            *t += a as f32;
                        }
                    }
                }
            }
        }
        if step == cfg.pgd_steps {
            break;
        }
        let grad = eval.backward(&trace, cot.view());
        // Step size decays geometrically from 10% to 0.01% of the box width.
        let frac = step as f32 / cfg.pgd_steps.max(1) as f32;
        let alpha = 0.1f32 * (0.001f32).powf(frac);
        for (mut row, g) in x.rows_mut().into_iter().zip(grad.rows()) {
            for ((v, &gj), &w) in row.iter_mut().zip(g.iter()).zip(&width) {
                if gj != 0.0 {
                    *v -= alpha * w * gj.signum();
                }
            }
        }
        clamp(&mut x);
    }
    res
}
