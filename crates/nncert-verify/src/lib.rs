//! # nncert-verify
//!
//! Verification engines over the IR of `nncert-model` and the properties of `nncert-spec`: the incomplete
//! proof by sound bounds ([`incomplete`], CROWN from `nncert-bounds`), input-splitting branch-and-bound
//! ([`bab`] over any graph, [`dense_bab`] on the dense fast path for feed-forward ReLU networks), the falsifier
//! ([`falsify`]) and counterexample checking ([`check`]). `unsat` is answered only by a bound proof; `sat` only with a checked
//! counterexample.
//!
//! ```no_run
//! use nncert_verify::{verify, VerifyOptions, Verdict};
//! let graph = nncert_model::load_model("net.onnx".as_ref())?;
//! let prop = nncert_spec::parse_file("prop.vnnlib".as_ref())?;
//! let result = verify(&graph, &prop, &VerifyOptions::default());
//! if let Verdict::Sat(cex) = &result.verdict { println!("{:?}", cex.input); }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bab;
pub mod check;
pub mod dense_bab;
pub mod dense_relu_bab;
pub mod falsify;
pub mod incomplete;
pub mod leaf;
pub mod lipschitz;

pub use check::Counterexample;

use nncert_model::Graph;
use nncert_spec::Property;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The answer to "does a counterexample exist?".
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The property holds on the whole input region (proved by `method`).
    Unsat { method: String },
    /// A checked counterexample.
    Sat(Box<Counterexample>),
    /// The engines ran to completion without deciding.
    Unknown,
    /// The time budget ran out.
    Timeout,
}

impl Verdict {
    /// The VNN-COMP word for this verdict.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Unsat { .. } => "unsat",
            Verdict::Sat(_) => "sat",
            Verdict::Unknown => "unknown",
            Verdict::Timeout => "timeout",
        }
    }

    /// Process exit code: 0 unsat (proved), 1 sat, 2 unknown or timeout.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Unsat { .. } => 0,
            Verdict::Sat(_) => 1,
            Verdict::Unknown | Verdict::Timeout => 2,
        }
    }
}

/// Budget and seed of a verification run.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub timeout: Duration,
    pub seed: u64,
    /// Memory the branch-and-bound queue may hold (bytes); past it the search stops with `unknown` rather than
    /// risk being killed. Default: a quarter of the machine's RAM (4 GiB where it cannot be read).
    pub memory_limit: usize,
    /// Use the dense fast path ([`nncert_bounds::dense`], [`dense_bab`]) for feed-forward ReLU networks.
    /// Off, such networks go through the generic CROWN engine like any other (for comparison and testing).
    pub dense_path: bool,
    /// An exact solver for the small sub-problems of ReLU-splitting branch-and-bound ([`leaf`]); `None`: the
    /// search bounds only (and leaves whose every ReLU is fixed stay undecided).
    pub leaf_solver: Option<std::sync::Arc<dyn leaf::LeafSolver>>,
    /// On the dense path, start the search from the generic engine's α-CROWN bounds (slopes optimized for
    /// every neuron) on the whole region, which may also prove the property at once. Off: the dense engine's
    /// own root bounds (for comparison).
    pub alpha_root: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            timeout: Duration::from_secs(60),
            seed: 0,
            memory_limit: default_memory_limit(),
            dense_path: true,
            leaf_solver: None,
            alpha_root: true,
        }
    }
}

/// A quarter of `MemTotal` from `/proc/meminfo`, or 4 GiB.
fn default_memory_limit() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024 / 4)
        })
        .unwrap_or(4 << 30)
}

/// A verdict with what it cost.
#[derive(Clone, Debug)]
pub struct VerifyResult {
    pub verdict: Verdict,
    pub elapsed: Duration,
    /// Smallest property margin the falsifier reached (≤ 0: counterexample).
    pub best_margin: f64,
    pub evaluations: u64,
    /// Sub-domains bounded by branch-and-bound (0 when it did not run).
    pub domains: u64,
    /// What the leaf solver of ReLU-splitting branch-and-bound did (all zero without one).
    pub leaves: dense_relu_bab::LeafStats,
}

/// The most inputs any case of `property` lets vary.
pub fn max_free_dims(property: &Property) -> usize {
    property
        .cases
        .iter()
        .map(|c| c.input.free_dims())
        .max()
        .unwrap_or(0)
}

/// Whether [`verify`] runs a complete search on this instance (one that decides it given enough time):
/// input splitting (at most [`bab::MAX_INPUTS`] varying inputs), or ReLU splitting on the dense path with a
/// [`leaf::LeafSolver`] for the leaves whose every ReLU is fixed.
pub fn search_is_complete(graph: &Graph, property: &Property, options: &VerifyOptions) -> bool {
    max_free_dims(property) <= bab::MAX_INPUTS
        || (options.dense_path
            && options.leaf_solver.is_some()
            && nncert_bounds::dense::DenseReluNet::from_graph(graph).is_some())
}

/// Runs the engines available on `property` within `options.timeout`.
pub fn verify(graph: &Graph, property: &Property, options: &VerifyOptions) -> VerifyResult {
    let start = Instant::now();
    if property.cases.is_empty() {
        return VerifyResult {
            verdict: Verdict::Unsat {
                method: "empty input region".into(),
            },
            elapsed: start.elapsed(),
            best_margin: f64::INFINITY,
            evaluations: 0,
            domains: 0,
            leaves: Default::default(),
        };
    }
    let dense =
        nncert_bounds::dense::DenseReluNet::from_graph(graph).filter(|_| options.dense_path);
    // The first proof attempt may use up to half the budget; past that, CROWN falls back to IBP inside.
    // Feed-forward ReLU nets take the dense path: the same kind of bound, computed for the whole input region at
    // once (forward linear relaxation refined backward), with the region's centre checked on the way.
    let proof_deadline = start + options.timeout / 2;
    let mut root_priors: dense_bab::RootPriors = Vec::new();
    let first_proof = match &dense {
        Some(net) => match dense_bab::input_split_dense(
            net,
            graph,
            property,
            proof_deadline,
            dense_bab::QueueLimits {
                with_priors: 1,
                max_open: 1,
            },
        ) {
            bab::BabOutcome::Proved { .. } => Some(Verdict::Unsat {
                method: "linear-relaxation bounds on the whole input region (dense path: forward relaxation \
                         refined by backward CROWN; sound under floating point: explicit rounding-error terms)"
                    .into(),
            }),
            bab::BabOutcome::Counterexample { cex, .. } => Some(Verdict::Sat(cex)),
            // Then the generic engine's α-CROWN with intermediate slopes (which the dense engine lacks) on the
            // whole region, within a fifth of the budget: a proof by itself, or tighter root bounds for ReLU
            // splitting.
            bab::BabOutcome::Undecided { .. } if options.alpha_root => {
                let alpha_deadline = (Instant::now() + options.timeout / 5).min(proof_deadline);
                let (priors, proved) =
                    dense_bab::alpha_root_priors(net, graph, property, alpha_deadline);
                root_priors = priors;
                proved.then(|| Verdict::Unsat {
                    method: "α-CROWN bounds on the whole input region (slopes optimized for every neuron; \
                             sound under floating point: explicit rounding-error terms)"
                        .into(),
                })
            }
            bab::BabOutcome::Undecided { .. } => None,
        },
        None => {
            // CROWN everywhere with the objective's ReLU slopes optimized where CROWN alone falls short (it stops
            // as soon as the bounds prove the case); then, if that was quick enough to afford about 8× its time,
            // α-CROWN on the intermediate nodes too.
            let objective_only = nncert_bounds::Method::Alpha {
                iterations: nncert_bounds::ALPHA_ITERATIONS,
                intermediate: 0,
            };
            let full = nncert_bounds::Method::Alpha {
                iterations: nncert_bounds::ALPHA_ITERATIONS,
                intermediate: nncert_bounds::ALPHA_INTERMEDIATE_ITERATIONS,
            };
            let proved = incomplete::prove(graph, property, objective_only, proof_deadline) || {
                let spent = start.elapsed();
                Instant::now() + spent * 8 < proof_deadline
                    && incomplete::prove(graph, property, full, proof_deadline)
            };
            proved.then(|| Verdict::Unsat {
                method: "CROWN / α-CROWN bounds (sound under floating point: explicit rounding-error terms)"
                    .into(),
            })
        }
    };
    if let Some(verdict) = first_proof {
        let best_margin = match &verdict {
            Verdict::Sat(cex) => cex.margin_f64,
            _ => f64::INFINITY,
        };
        return VerifyResult {
            verdict,
            elapsed: start.elapsed(),
            best_margin,
            evaluations: 0,
            domains: 0,
            leaves: Default::default(),
        };
    }
    let deadline = start + options.timeout;
    // Input splitting pays when few inputs vary (ACAS Xu: 5; some properties fix all but a few of many inputs).
    let small_input = max_free_dims(property) <= bab::MAX_INPUTS;
    // With branch-and-bound to follow, the falsifier first gets a short slice (most counterexamples fall at
    // once), then whatever branch-and-bound leaves. The dense branch-and-bound proves easy cases in well under
    // a second, so it starts early, and leaves the falsifier the last 15% of the budget.
    let first_slice = if dense.is_some() {
        (start
            + options
                .timeout
                .mul_f64(0.05)
                .min(Duration::from_millis(500)))
        .min(deadline)
    } else if small_input {
        (start + options.timeout.mul_f64(0.1).min(Duration::from_secs(2))).min(deadline)
    } else {
        deadline
    };
    let cfg = falsify::FalsifierConfig::new(options.seed, first_slice);
    let mut outcome = falsify::falsify(graph, property, &cfg);
    let mut verdict = match outcome.counterexample.take() {
        Some(c) => Verdict::Sat(Box::new(c)),
        None => Verdict::Timeout,
    };
    let mut bab_domains = 0;
    let mut leaf_stats = dense_relu_bab::LeafStats::default();
    // The search: input splitting when few inputs vary, else ReLU splitting (dense nets only).
    let relu_split = !small_input && dense.is_some();
    if verdict == Verdict::Timeout && (small_input || relu_split) {
        let bab_deadline = start + options.timeout.mul_f64(0.85);
        let bab_outcome = match &dense {
            Some(net) if small_input => {
                let limits = dense_bab::QueueLimits::for_net(net, options.memory_limit);
                dense_bab::input_split_dense(net, graph, property, bab_deadline, limits)
            }
            Some(net) => {
                // A ReLU-split domain holds its own (clamped) copy of every layer's bounds.
                let per_domain = 16 * (net.hidden_neurons() + net.output_size()) + 128;
                let max_open = (options.memory_limit / per_domain).max(1);
                let (outcome, stats) = dense_relu_bab::relu_split_dense(
                    net,
                    graph,
                    property,
                    bab_deadline,
                    max_open,
                    options.leaf_solver.as_deref(),
                    &root_priors,
                );
                leaf_stats = stats;
                outcome
            }
            None => {
                // A generic sub-box keeps every node's bounds as its prior.
                let values: usize = graph.nodes().iter().map(|n| n.numel()).sum();
                let max_open = (options.memory_limit / (16 * values + 128)).clamp(1, 2_000_000);
                bab::input_split(graph, property, deadline, max_open)
            }
        };
        bab_domains = match &bab_outcome {
            bab::BabOutcome::Proved { domains }
            | bab::BabOutcome::Counterexample { domains, .. }
            | bab::BabOutcome::Undecided { domains, .. } => *domains,
        };
        match bab_outcome {
            bab::BabOutcome::Proved { domains } => {
                let leaves = match &options.leaf_solver {
                    Some(s) if leaf_stats.calls > 0 => format!(
                        "; {} leaves closed by {} ({} rigorously, {} up to solver tolerances)",
                        leaf_stats.refuted_rigorous + leaf_stats.refuted_tolerance,
                        s.describe(),
                        leaf_stats.refuted_rigorous,
                        leaf_stats.refuted_tolerance
                    ),
                    _ => String::new(),
                };
                let soundness = if leaf_stats.refuted_tolerance > 0 {
                    "sound in real arithmetic up to the leaf solver's tolerances"
                } else {
                    "sound under floating point: explicit rounding-error terms"
                };
                verdict = Verdict::Unsat {
                    method: format!(
                        "{}-splitting branch-and-bound with {} bounds ({domains} sub-domains{leaves}; \
                         {soundness})",
                        if relu_split { "ReLU" } else { "input" },
                        if dense.is_some() {
                            "forward/backward linear-relaxation (dense path)"
                        } else {
                            "CROWN"
                        }
                    ),
                }
            }
            bab::BabOutcome::Counterexample { cex, .. } => verdict = Verdict::Sat(cex),
            bab::BabOutcome::Undecided { .. } => {
                let cfg = falsify::FalsifierConfig::new(options.seed.wrapping_add(1), deadline);
                let more = falsify::falsify(graph, property, &cfg);
                outcome.best_margin = outcome.best_margin.min(more.best_margin);
                outcome.evaluations += more.evaluations;
                if let Some(c) = more.counterexample {
                    verdict = Verdict::Sat(Box::new(c));
                }
            }
        }
    }
    VerifyResult {
        verdict,
        elapsed: start.elapsed(),
        best_margin: outcome.best_margin,
        evaluations: outcome.evaluations,
        domains: bab_domains,
        leaves: leaf_stats,
    }
}

/// The VNN-COMP result file: the verdict word, and after `sat` the counterexample as
/// `((X_0 v) ... (Y_0 v) ...)` with the f64 outputs.
pub fn vnncomp_result(verdict: &Verdict) -> String {
    let mut s = format!("{}\n", verdict.word());
    if let Verdict::Sat(c) = verdict {
        s.push('(');
        for (i, v) in c.input.iter().enumerate() {
            let _ = writeln!(s, "(X_{i} {v:e})");
        }
        for (j, v) in c.output_f64.iter().enumerate() {
            let _ = write!(s, "(Y_{j} {v:e})");
            s.push(if j + 1 == c.output_f64.len() {
                ')'
            } else {
                '\n'
            });
        }
        s.push('\n');
    }
    s
}
