//! # nncert-milp
//!
//! Complete verification by mixed-integer linear programming: a piecewise-linear network (Linear, Conv,
//! elementwise affine, Add/Sub including residual connections, Reshape, ReLU, LeakyReLU, MaxPool) is encoded
//! exactly over each input box, with big-M constants from the sound bounds of `nncert-bounds` (stable neurons
//! get no binary), and HiGHS minimizes the property margin `max_k (c_k·y − rhs_k)` of one DNF disjunct per
//! model.
//!
//! - `unsat` only when, for every disjunct, the bounds engine proves it impossible or HiGHS's **dual bound** on
//!   the minimal margin exceeds a tolerance `τ = 10⁻⁵·max(1, s)`, `s` the largest magnitude the margin's terms
//!   can take on the box (`Σ_j |c_kj|·max|y_j| + |rhs_k|`). The dual bound is a lower bound on the margin over
//!   the whole box (up to the solver's floating-point arithmetic and tolerances), so `τ` absorbs those errors.
//! - `sat` only with the solver's point re-executed by [`nncert_verify::check::check_candidate`] (f32 and f64,
//!   no tolerance). A point that fails is retried once with the margin forced below `−10·τ`; if that fails too,
//!   the answer is `unknown`, never `sat`.
//! - everything else is `unknown` (or `timeout`).
//!
//! See [`METHOD_CLASS`] for the one-line statement of what the answers mean.
//!
//! ```no_run
//! use nncert_milp::{verify_milp, MilpOptions};
//! let graph = nncert_model::load_model("net.onnx".as_ref())?;
//! let prop = nncert_spec::parse_file("prop.vnnlib".as_ref())?;
//! let out = verify_milp(&graph, &prop, &MilpOptions::default())?;
//! println!("{} ({})", out.result.verdict.word(), out.method_class);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod encode;
pub mod leaf;
pub mod solve;

use encode::{ColKind, Expr, NetEncoding, Program};
use ndarray::Array2;
use nncert_bounds::dense::DenseReluNet;
use nncert_bounds::{BoundModel, Bounder, Method, NodeBounds};
use nncert_model::Graph;
use nncert_model::ir::Op;
use nncert_spec::{Case, Conjunction, Property};
use nncert_verify::{Verdict, VerifyResult};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What kind of answer this engine gives (printed with every result, recorded in evidence).
pub const METHOD_CLASS: &str = "MILP (HiGHS): complete; exact in real arithmetic up to HiGHS tolerances \
     (primal feasibility 1e-7, integrality 1e-6, MIP relative gap 1e-4; unsat requires the MIP dual bound on the \
     margin to exceed 1e-5·max(1, scale)); not floating-point sound; sat answers re-executed in f32 and f64";

/// Relative margin tolerance: `unsat` needs a dual bound above `REL_TOL · max(1, scale)`.
pub const REL_TOL: f64 = 1e-5;

/// Errors of the MILP engine.
#[derive(Debug, thiserror::Error)]
pub enum MilpError {
    /// The network has an op the encoding does not cover.
    #[error("MILP encoding: node '{node}' ({op}): {why}")]
    Unsupported {
        node: String,
        op: &'static str,
        why: String,
    },
    /// The sound bounds are not finite (the encoding needs finite big-M constants).
    #[error(
        "MILP encoding: node '{node}' ({op}) has non-finite bounds on the input box; the big-M encoding needs finite ones"
    )]
    Unbounded { node: String, op: &'static str },
    /// HiGHS failed.
    #[error("HiGHS: {0}")]
    Solver(String),
    /// Writing a model file failed.
    #[error("MILP export: {0}")]
    Export(String),
}

/// Budget of a MILP run.
#[derive(Clone, Debug)]
pub struct MilpOptions {
    /// Wall-clock budget for the whole property (bounding, encoding, every model).
    pub timeout: Duration,
}

impl Default for MilpOptions {
    fn default() -> Self {
        MilpOptions {
            timeout: Duration::from_secs(60),
        }
    }
}

/// A verdict with the MILP-specific figures.
#[derive(Clone, Debug)]
pub struct MilpOutcome {
    /// The verdict in the form every engine returns (`best_margin`: the smallest margin of a solver point).
    pub result: VerifyResult,
    /// [`METHOD_CLASS`].
    pub method_class: String,
    /// A lower bound on the property margin (min over disjuncts of the dual bounds, or of the sound bounds for
    /// disjuncts refuted without a solver); `-inf` when some model ended without one.
    pub margin_lower: f64,
    /// The smallest margin of a solver point (`+inf` if none was solved).
    pub margin_upper: f64,
    /// Models handed to HiGHS.
    pub models: usize,
    /// Disjuncts refuted by the bounds engine alone.
    pub refuted_by_bounds: usize,
    /// Binaries / stable activations over all encoded boxes.
    pub binaries: usize,
    pub stable: usize,
    /// The largest tolerance `τ` used.
    pub tolerance: f64,
}

impl MilpOutcome {
    /// A one-line summary of the figures (for the CLI).
    pub fn summary(&self) -> String {
        format!(
            "MILP: {} model(s), {} disjunct(s) refuted by bounds alone, {} binaries, {} stable activations; \
             margin in [{:.6e}, {:.6e}], tolerance {:.1e}",
            self.models,
            self.refuted_by_bounds,
            self.binaries,
            self.stable,
            self.margin_lower,
            self.margin_upper,
            self.tolerance
        )
    }
}

/// One case's network, bounded and encoded.
struct CaseModel {
    net: NetEncoding,
    /// Sound bounds on every node over the (ulp-widened) box.
    bounds: Vec<NodeBounds>,
}

/// Sound node bounds over `case`'s box: the generic CROWN bounds, intersected for feed-forward ReLU networks
/// with the dense path's (forward relaxation refined backward), which are often tighter. Both are sound, so
/// their intersection is; tighter bounds mean smaller big-M constants and more stable neurons.
fn case_bounds(
    graph: &Graph,
    bounder: &Bounder<'_>,
    dense: Option<&DenseReluNet>,
    case: &Case,
) -> (Vec<NodeBounds>, Vec<bool>) {
    let r =
        nncert_verify::incomplete::refute_case_detailed(bounder, case, Method::Crown, None, true);
    let mut bounds = r.bounds;
    if let Some(net) = dense {
        let db = net.bound_boxes(&[case.input.widened_one_ulp()], &[None]);
        let linear_ids = linear_node_ids(graph);
        if let Some(db) = db.first()
            && db.layers.len() >= linear_ids.len()
        {
            for (layer, &id) in db.layers.iter().zip(&linear_ids) {
                let b = &mut bounds[id];
                for k in 0..b.lower.len() {
                    let (l, u) = (
                        b.lower[k].max(layer.lower[k]),
                        b.upper[k].min(layer.upper[k]),
                    );
                    // Sound bounds cannot cross; if rounding ever made them, keep the generic ones.
                    if l <= u {
                        b.lower[k] = l;
                        b.upper[k] = u;
                    }
                }
            }
        }
    }
    (bounds, r.refuted)
}

/// The graph's Linear nodes in order: the layers of its [`DenseReluNet`] (which may add an identity layer for
/// an output ReLU after them).
fn linear_node_ids(graph: &Graph) -> Vec<usize> {
    graph
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, Op::Linear(_)))
        .map(|(i, _)| i)
        .collect()
}

fn check_finite(graph: &Graph, bounds: &[NodeBounds]) -> Result<(), MilpError> {
    for (n, b) in graph.nodes().iter().zip(bounds) {
        if b.lower.iter().chain(&b.upper).any(|v| !v.is_finite()) {
            return Err(MilpError::Unbounded {
                node: n.name.clone(),
                op: n.op.kind(),
            });
        }
    }
    Ok(())
}

fn encode_case(
    graph: &Graph,
    bounder: &Bounder<'_>,
    dense: Option<&DenseReluNet>,
    case: &Case,
) -> Result<(CaseModel, Vec<bool>), MilpError> {
    let (mut bounds, refuted) = case_bounds(graph, bounder, dense, case);
    // The bounds were computed on the box widened by one ulp (sound for the file's decimals); the input columns
    // take the box itself, so solver points need no clamping.
    bounds[0] = NodeBounds {
        lower: case.input.lower.clone(),
        upper: case.input.upper.clone(),
    };
    check_finite(graph, &bounds)?;
    let net = encode::encode(graph, &bounds)?;
    Ok((CaseModel { net, bounds }, refuted))
}

/// The margin model of one disjunct: the case's network plus a free column `t` with `t >= c_k·y − rhs_k`
/// for every constraint, minimizing `t`. Returns the program and the margin column.
fn disjunct_program(cm: &CaseModel, d: &Conjunction) -> (Program, usize) {
    let mut prog = cm.net.program.clone();
    let t = prog.add_col(f64::NEG_INFINITY, f64::INFINITY, false, ColKind::Margin);
    prog.cols[t].cost = 1.0;
    for k in &d.constraints {
        // t − c·y >= −rhs
        let mut e = Expr::default();
        e.terms.push((t, 1.0));
        for (j, &c) in k.coeffs.iter().enumerate() {
            if c != 0.0 {
                let y = &cm.net.outputs[j];
                e.terms
                    .extend(y.terms.iter().map(|&(col, v)| (col, -c * v)));
                e.constant -= c * y.constant;
            }
        }
        prog.add_expr_row(&e, -k.rhs, f64::INFINITY);
    }
    (prog, t)
}

/// The scale of a disjunct's margin on the box: `max_k Σ_j |c_kj|·max(|l_j|, |u_j|) + |rhs_k|`.
fn margin_scale(out: &NodeBounds, d: &Conjunction) -> f64 {
    d.constraints
        .iter()
        .map(|k| {
            k.coeffs
                .iter()
                .zip(out.lower.iter().zip(&out.upper))
                .map(|(c, (l, u))| c.abs() * l.abs().max(u.abs()))
                .sum::<f64>()
                + k.rhs.abs()
        })
        .fold(0.0, f64::max)
}

/// A sound lower bound of each disjunct's margin from the bounds engine (`max_k lower(c_k·y) − rhs_k`),
/// used to order the models (the most promising counterexample first).
fn disjunct_lower_bounds(
    bounder: &Bounder<'_>,
    bounds: &[NodeBounds],
    case: &Case,
    m: usize,
) -> Vec<f64> {
    case.output
        .disjuncts
        .iter()
        .map(|d| {
            if d.constraints.is_empty() {
                return f64::NEG_INFINITY;
            }
            let c = Array2::from_shape_fn((d.constraints.len(), m), |(r, j)| {
                d.constraints[r].coeffs[j]
            });
            bounder
                .output_lower(&c, bounds)
                .iter()
                .zip(&d.constraints)
                .map(|(lb, k)| lb - k.rhs)
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect()
}

/// What minimizing one disjunct's margin gave.
#[derive(Clone, Debug)]
pub struct MarginSolve {
    /// Lower bound of the minimal margin (HiGHS's dual bound).
    pub lower: f64,
    /// The best point's margin as the solver computed it, and the point (network inputs).
    pub best: Option<(f64, Vec<f64>)>,
    /// The tolerance `τ` for this disjunct.
    pub tolerance: f64,
    /// HiGHS stopped on its time limit.
    pub timed_out: bool,
    /// Binaries in the model.
    pub binaries: usize,
}

fn solve_margin(
    prog: &Program,
    inputs: &[usize],
    tolerance: f64,
    limit: Duration,
) -> Result<MarginSolve, MilpError> {
    let rep = solve::minimize(prog, limit, tolerance)?;
    let timed_out = rep.timed_out();
    // Mathematically the encoding is always feasible (every box point has an output); an "infeasible"
    // verdict can only come from numerical trouble and proves nothing, so it leaves the lower bound at −∞.
    let lower = match rep.status {
        highs::HighsModelStatus::Infeasible
        | highs::HighsModelStatus::UnboundedOrInfeasible
        | highs::HighsModelStatus::Unbounded => f64::NEG_INFINITY,
        _ => rep.dual_bound,
    };
    let best = rep
        .primal
        .map(|(obj, cols)| (obj, inputs.iter().map(|&c| cols[c]).collect()));
    Ok(MarginSolve {
        lower,
        best,
        tolerance,
        timed_out,
        binaries: prog.binaries(),
    })
}

/// Minimizes the margin of disjunct `disjunct` of case `case` by MILP (no bound-based shortcut): for tests and
/// for comparing with other engines' bounds.
///
/// # Errors
/// As [`verify_milp`]; an out-of-range case or disjunct is an `Unsupported` error naming it.
pub fn optimal_margin(
    graph: &Graph,
    property: &Property,
    case: usize,
    disjunct: usize,
    time_limit: Duration,
) -> Result<MarginSolve, MilpError> {
    let out_of_range = || MilpError::Unsupported {
        node: format!("case {case}, disjunct {disjunct}"),
        op: "Property",
        why: "no such case or disjunct".into(),
    };
    let c = property.cases.get(case).ok_or_else(out_of_range)?;
    let d = c.output.disjuncts.get(disjunct).ok_or_else(out_of_range)?;
    let model = BoundModel::new(graph);
    let bounder = model.bounder();
    let dense = DenseReluNet::from_graph(graph);
    let (cm, _) = encode_case(graph, &bounder, dense.as_ref(), c)?;
    let (prog, _) = disjunct_program(&cm, d);
    let tol = REL_TOL * margin_scale(&cm.bounds[graph.output_id().0], d).max(1.0);
    solve_margin(&prog, &cm.net.inputs, tol, time_limit)
}

/// Decides `property` on `graph` by MILP within `options.timeout` (see the crate docs for what each answer
/// means).
///
/// # Errors
/// [`MilpError::Unsupported`] / [`MilpError::Unbounded`] when the network cannot be encoded (before any
/// solving), [`MilpError::Solver`] when HiGHS fails.
pub fn verify_milp(
    graph: &Graph,
    property: &Property,
    options: &MilpOptions,
) -> Result<MilpOutcome, MilpError> {
    let start = Instant::now();
    let deadline = start + options.timeout;
    let mut out = MilpOutcome {
        result: VerifyResult {
            verdict: Verdict::Unknown,
            elapsed: Duration::ZERO,
            best_margin: f64::INFINITY,
            evaluations: 0,
            domains: 0,
            leaves: Default::default(),
        },
        method_class: METHOD_CLASS.to_string(),
        margin_lower: f64::INFINITY,
        margin_upper: f64::INFINITY,
        models: 0,
        refuted_by_bounds: 0,
        binaries: 0,
        stable: 0,
        tolerance: 0.0,
    };
    let finish = |mut out: MilpOutcome, verdict: Verdict| {
        out.result.verdict = verdict;
        out.result.elapsed = start.elapsed();
        out.result.best_margin = out.margin_upper;
        Ok(out)
    };
    if property.cases.is_empty() {
        out.margin_lower = f64::INFINITY;
        return finish(
            out,
            Verdict::Unsat {
                method: "empty input region".into(),
            },
        );
    }
    let model = BoundModel::new(graph);
    // Intermediate CROWN refinement may use up to a quarter of the budget; past it, IBP (still sound).
    let bounder = model.bounder().with_deadline(start + options.timeout / 4);
    let dense = DenseReluNet::from_graph(graph);
    let m = graph.output_size();
    let mut all_proved = true;
    let mut timed_out = false;
    for (ci, case) in property.cases.iter().enumerate() {
        let (cm, refuted) = encode_case(graph, &bounder, dense.as_ref(), case)?;
        out.binaries += cm.net.program.binaries();
        out.stable += cm.net.stable;
        let lbs = disjunct_lower_bounds(&bounder, &cm.bounds, case, m);
        let mut order: Vec<usize> = (0..case.output.disjuncts.len()).collect();
        order.sort_by(|&a, &b| lbs[a].total_cmp(&lbs[b]));
        for di in order {
            let d = &case.output.disjuncts[di];
            if refuted[di] {
                // Proved impossible by the sound bounds (floating-point sound): no model needed.
                out.refuted_by_bounds += 1;
                out.margin_lower = out.margin_lower.min(lbs[di].max(0.0));
                continue;
            }
            if d.constraints.is_empty() {
                // Every output is bad: any point of the box is a counterexample.
                let centre: Vec<f64> = case
                    .input
                    .lower
                    .iter()
                    .zip(&case.input.upper)
                    .map(|(l, u)| 0.5 * (l + u))
                    .collect();
                if let Some(cex) =
                    nncert_verify::check::check_candidate(graph, property, ci, &centre)
                {
                    out.margin_upper = out.margin_upper.min(cex.margin_f64);
                    return finish(out, Verdict::Sat(Box::new(cex)));
                }
                all_proved = false;
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                all_proved = false;
                break;
            }
            let (prog, t) = disjunct_program(&cm, d);
            let tol = REL_TOL * margin_scale(&cm.bounds[graph.output_id().0], d).max(1.0);
            out.tolerance = out.tolerance.max(tol);
            out.models += 1;
            let ms = solve_margin(&prog, &cm.net.inputs, tol, deadline - now)?;
            out.margin_lower = out.margin_lower.min(ms.lower);
            if let Some((obj, _)) = &ms.best {
                out.margin_upper = out.margin_upper.min(*obj);
            }
            if ms.lower > tol {
                continue; // this disjunct is impossible (up to the solver's tolerances)
            }
            all_proved = false;
            timed_out |= ms.timed_out;
            if let Some((obj, x)) = &ms.best
                && *obj <= 0.0
            {
                if let Some(cex) = nncert_verify::check::check_candidate(graph, property, ci, x) {
                    return finish(out, Verdict::Sat(Box::new(cex)));
                }
                // The solver's point does not survive re-execution (tolerances, f32 snapping): ask for one
                // strictly inside, with the margin at most −10τ.
                let now = Instant::now();
                if now < deadline {
                    let mut strict = prog.clone();
                    strict.cols[t].upper = -10.0 * tol;
                    out.models += 1;
                    let ms2 = solve_margin(&strict, &cm.net.inputs, tol, deadline - now)?;
                    timed_out |= ms2.timed_out;
                    if let Some((_, x2)) = &ms2.best
                        && let Some(cex) =
                            nncert_verify::check::check_candidate(graph, property, ci, x2)
                    {
                        return finish(out, Verdict::Sat(Box::new(cex)));
                    }
                }
            }
        }
        if timed_out {
            break;
        }
    }
    let verdict = if all_proved {
        Verdict::Unsat {
            method: format!(
                "{METHOD_CLASS}; margin lower bound {:.6e} over {} model(s), {} disjunct(s) refuted by sound bounds",
                out.margin_lower, out.models, out.refuted_by_bounds
            ),
        }
    } else if timed_out {
        Verdict::Timeout
    } else {
        Verdict::Unknown
    };
    finish(out, verdict)
}

/// Writes the MILP of every (case, disjunct) of `property` to `path` (`.lp` or `.mps`): one file when there is
/// one model, else `stem.case<c>.disjunct<d>.ext` next to it. Each model minimizes the column `margin`; the
/// property is violated iff some model's optimum is `<= 0`. Returns the files written.
///
/// # Errors
/// As [`verify_milp`] for the encoding; [`MilpError::Export`] for a bad extension or a failed write.
pub fn export(graph: &Graph, property: &Property, path: &Path) -> Result<Vec<PathBuf>, MilpError> {
    let model = BoundModel::new(graph);
    let bounder = model.bounder();
    let dense = DenseReluNet::from_graph(graph);
    let total: usize = property
        .cases
        .iter()
        .map(|c| c.output.disjuncts.len())
        .sum();
    if total == 0 {
        return Err(MilpError::Export(
            "the property has no output disjunct: nothing to encode (it is trivially unsat)".into(),
        ));
    }
    let mut written = Vec::new();
    for (ci, case) in property.cases.iter().enumerate() {
        let (cm, _) = encode_case(graph, &bounder, dense.as_ref(), case)?;
        for (di, d) in case.output.disjuncts.iter().enumerate() {
            let (prog, _) = disjunct_program(&cm, d);
            let target = if total == 1 {
                path.to_path_buf()
            } else {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext = path
                    .extension()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                path.with_file_name(format!("{stem}.case{ci}.disjunct{di}.{ext}"))
            };
            solve::write(&prog, &target)?;
            written.push(target);
        }
    }
    Ok(written)
}
