//! The in-process solver: each case's [`Encoding`] built as z3 terms and decided by z3 (QF_LRA, exact rational
//! arithmetic). Compiled with the `z3` feature (links Debian's `libz3`).
//!
//! `unsat` for every case proves the property for the real-valued network with its stored weights. A `sat`
//! answer is a point of that real-valued network; it becomes a counterexample only after
//! [`nncert_verify::check::check_candidate`] re-executes it (snapped to f32) in f32 and f64. If that fails, the
//! query is solved again with the bad region shrunk by a small margin, so the point lies strictly inside; if no
//! such point is found either, the case is `unknown`, never `sat`.

use crate::encode::{Encoding, LinExpr, ReluStyle, encode_case, relu_lemmas};
use crate::rational::{Rat, exact, parse_literal, to_f64};
use crate::{METHOD_CLASS, SmtError};
use nncert_model::Graph;
use nncert_spec::Property;
use nncert_verify::{Verdict, VerifyResult};
use num_traits::{Signed, Zero};
use std::time::{Duration, Instant};
use z3::ast::{Bool, Real};
use z3::{Params, SatResult, Solver};

/// Options of [`verify_smt`].
#[derive(Clone, Debug)]
pub struct SmtOptions {
    /// Total time budget (bounds, encoding and all solver calls).
    pub timeout: Duration,
    pub relu_style: ReluStyle,
    /// Use sound bounds to fix stable ReLUs and add lemmas (faster; the answer is the same).
    pub use_bounds: bool,
    /// Re-execute each (sub-)box's centre before asking z3 (finds wide counterexample regions at once).
    pub centre_check: bool,
}

impl Default for SmtOptions {
    fn default() -> Self {
        SmtOptions {
            timeout: Duration::from_secs(60),
            relu_style: ReluStyle::Ite,
            use_bounds: true,
            centre_check: true,
        }
    }
}

fn lit(r: &Rat) -> Result<Real, SmtError> {
    Real::from_rational_str(&r.numer().to_string(), &r.denom().to_string())
        .ok_or_else(|| SmtError::Solver(format!("z3 rejected the numeral {r}")))
}

fn expr(vars: &[Real], e: &LinExpr) -> Result<Real, SmtError> {
    let mut parts: Vec<Real> = Vec::with_capacity(e.terms.len() + 1);
    for (v, c) in &e.terms {
        if num_traits::One::is_one(c) {
            parts.push(vars[*v].clone());
        } else {
            parts.push(Real::mul(&[lit(c)?, vars[*v].clone()]));
        }
    }
    if !e.constant.is_zero() || parts.is_empty() {
        parts.push(lit(&e.constant)?);
    }
    Ok(if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Real::add(&parts)
    })
}

/// Asserts `enc` into `solver`; returns the variables' terms.
pub fn assert_encoding(solver: &Solver, enc: &Encoding) -> Result<Vec<Real>, SmtError> {
    let vars: Vec<Real> = enc
        .vars
        .iter()
        .map(|v| Real::new_const(v.name.as_str()))
        .collect();
    let zero = lit(&Rat::zero())?;
    for (v, var) in enc.vars.iter().zip(&vars) {
        if let Some(l) = &v.lower {
            solver.assert(var.ge(lit(l)?));
        }
        if let Some(u) = &v.upper {
            solver.assert(var.le(lit(u)?));
        }
    }
    for (v, e) in &enc.defs {
        solver.assert(vars[*v].eq(expr(&vars, e)?));
    }
    for r in &enc.relus {
        let (x, y) = (&vars[r.inp], &vars[r.out]);
        let neg = if r.alpha.is_zero() {
            zero.clone()
        } else {
            Real::mul(&[lit(&r.alpha)?, x.clone()])
        };
        match enc.relu_style {
            ReluStyle::Ite => solver.assert(y.eq(x.ge(&zero).ite(x, &neg))),
            ReluStyle::Disjunction => solver.assert(Bool::or(&[
                Bool::and(&[x.ge(&zero), y.eq(x)]),
                Bool::and(&[x.le(&zero), y.eq(&neg)]),
            ])),
        }
        for l in relu_lemmas(r) {
            solver.assert(expr(&vars, &l)?.le(&zero));
        }
    }
    let mut disj = Vec::with_capacity(enc.bad.len());
    for conj in &enc.bad {
        let mut atoms = Vec::with_capacity(conj.len());
        for a in conj {
            let t = expr(&vars, &a.expr)?;
            atoms.push(if a.strict { t.lt(&zero) } else { t.le(&zero) });
        }
        disj.push(match atoms.len() {
            0 => Bool::from_bool(true),
            1 => atoms.pop().expect("one atom"),
            _ => Bool::and(&atoms),
        });
    }
    solver.assert(match disj.len() {
        0 => Bool::from_bool(false),
        1 => disj.pop().expect("one disjunct"),
        _ => Bool::or(&disj),
    });
    Ok(vars)
}

/// A solver for QF_LRA with a timeout of `budget` (at least 1 ms).
fn new_solver(budget: Duration) -> Solver {
    // The general solver, not `new_for_logic("QF_LRA")`: 4.8.12's QF_LRA tactic spends minutes in preprocessing
    // that neither its timeout nor an interrupt stops; the incremental SMT core answers the same formula fast.
    let solver = Solver::new();
    let mut p = Params::new();
    let ms = budget.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
    p.set_u32("timeout", ms);
    solver.set_params(&p);
    solver
}

/// `solver.check()`, interrupted from a watchdog thread at `deadline`: z3's own `timeout` parameter is not
/// honoured by every tactic of 4.8.12, and the budget must hold.
fn check_until(solver: &Solver, deadline: Instant) -> SatResult {
    let ctx = z3::Context::thread_local();
    let handle = ctx.handle();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let handle = &handle;
        s.spawn(move || {
            let budget = deadline.saturating_duration_since(Instant::now());
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(budget) {
                handle.interrupt();
            }
        });
        let r = solver.check();
        drop(done);
        r
    })
}

fn run(
    solver: &Solver,
    vars: &[Real],
    inputs: &[usize],
    deadline: Instant,
) -> Result<CaseAnswer, SmtError> {
    match check_until(solver, deadline) {
        SatResult::Unsat => Ok(CaseAnswer::Unsat),
        SatResult::Sat => {
            let model = solver
                .get_model()
                .ok_or_else(|| SmtError::Solver("z3 said sat but gave no model".into()))?;
            let mut x = Vec::with_capacity(inputs.len());
            for &i in inputs {
                let v = model
                    .eval(&vars[i], true)
                    .ok_or_else(|| SmtError::Solver("z3 could not evaluate an input".into()))?;
                let text = v.to_string();
                let r = parse_literal(&text).ok_or_else(|| {
                    SmtError::Solver(format!("unexpected numeral in z3's model: {text}"))
                })?;
                x.push(to_f64(&r));
            }
            Ok(CaseAnswer::Sat(x))
        }
        SatResult::Unknown => {
            let reason = solver.get_reason_unknown().unwrap_or_default();
            Ok(CaseAnswer::Unknown {
                timeout: reason.contains("timeout")
                    || reason.contains("canceled")
                    || reason.contains("interrupted")
                    || Instant::now() >= deadline,
            })
        }
    }
}

/// Solves `enc` within `deadline` (plus half a second of grace).
///
/// z3 runs on its own thread (with its own thread-local context). z3 4.8.12 sometimes ignores both its
/// `timeout` and an interrupt for minutes (inside its rational simplex); then the answer is `timeout` on time
/// and the thread is left to finish on its own (it holds only its copy of the formula; the process may exit
/// under it). The price is a busy core until z3 returns.
pub fn solve_encoding(enc: &Encoding, deadline: Instant) -> Result<CaseAnswer, SmtError> {
    if deadline <= Instant::now() {
        return Ok(CaseAnswer::Unknown { timeout: true });
    }
    let owned = enc.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("nncert-z3".into())
        .spawn(move || {
            let _ = tx.send(solve_encoding_here(&owned, deadline));
        })
        .map_err(|e| SmtError::Solver(format!("cannot start the solver thread: {e}")))?;
    let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(500);
    match rx.recv_timeout(grace) {
        Ok(r) => r,
        Err(_) => Ok(CaseAnswer::Unknown { timeout: true }),
    }
}

fn solve_encoding_here(enc: &Encoding, deadline: Instant) -> Result<CaseAnswer, SmtError> {
    let budget = deadline.saturating_duration_since(Instant::now());
    if budget.is_zero() {
        return Ok(CaseAnswer::Unknown { timeout: true });
    }
    let solver = new_solver(budget);
    let vars = assert_encoding(&solver, enc)?;
    run(&solver, &vars, &enc.inputs, deadline)
}

/// The public form of a solver answer for one encoded case.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseAnswer {
    /// No point of the (real-valued) network satisfies the formula.
    Unsat,
    /// z3's model: the input point (nearest f64 to its exact values), not yet checked.
    Sat(Vec<f64>),
    /// z3 gave up (`timeout`: the time budget ran out).
    Unknown { timeout: bool },
}

/// Counts of what [`verify_smt`] did, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmtStats {
    pub cases: usize,
    pub unsat_cases: usize,
    pub relus: usize,
    pub unstable_relus: usize,
    /// z3 models that failed f32/f64 re-execution (each followed by a tightened re-solve).
    pub rejected_models: usize,
    /// Input boxes (cases and sub-boxes of input splitting) encoded.
    pub boxes: usize,
    /// Counterexamples found at a box's centre (re-executed) rather than in a z3 model.
    pub centre_hits: usize,
}

/// Decides `property` on `graph` with z3: `unsat` (proved for the real-valued network), `sat` (a checked
/// counterexample), `timeout` or `unknown`.
///
/// # Errors
/// [`SmtError::Unsupported`] for ops outside the encoding (checked before any solving), [`SmtError::NonFinite`]
/// for NaN/∞ weights or bounds, [`SmtError::Solver`] if z3 misbehaves.
pub fn verify_smt(
    graph: &Graph,
    property: &Property,
    opts: &SmtOptions,
) -> Result<(VerifyResult, SmtStats), SmtError> {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    crate::encode::check_supported(graph)?;
    let mut stats = SmtStats {
        cases: property.cases.len(),
        ..SmtStats::default()
    };
    let result = |verdict: Verdict, margin: f64| VerifyResult {
        verdict,
        elapsed: start.elapsed(),
        best_margin: margin,
        evaluations: 0,
        domains: 0,
        leaves: Default::default(),
    };
    let mut undecided_timeout = false;
    let mut undecided = false;
    for ci in 0..property.cases.len() {
        if Instant::now() >= deadline {
            undecided_timeout = true;
            break;
        }
        match solve_case(graph, property, ci, opts, deadline, &mut stats)? {
            CaseOutcome::Unsat => stats.unsat_cases += 1,
            CaseOutcome::Sat(cex) => {
                let m = cex.margin_f64;
                return Ok((result(Verdict::Sat(cex), m), stats));
            }
            CaseOutcome::Undecided { timeout } => {
                undecided_timeout |= timeout;
                undecided |= !timeout;
            }
        }
    }
    let verdict = if stats.unsat_cases == property.cases.len() {
        Verdict::Unsat {
            method: format!(
                "SMT ({METHOD_CLASS}); {} case(s) split into {} input box(es) decided by z3 or refuted by \
                 sound output bounds; {} ReLU(s), {} piecewise on the whole box",
                property.cases.len(),
                stats.boxes,
                stats.relus,
                stats.unstable_relus
            ),
        }
    } else if undecided_timeout || (!undecided && Instant::now() >= deadline) {
        Verdict::Timeout
    } else {
        Verdict::Unknown
    };
    let margin = if matches!(verdict, Verdict::Unsat { .. }) {
        f64::INFINITY
    } else {
        f64::NAN
    };
    Ok((result(verdict, margin), stats))
}

/// Input boxes with at most this many free inputs are split before z3 sees them.
pub const MAX_SPLIT_INPUTS: usize = 16;
/// A sub-box goes to z3 once sound bounds leave at most this many ReLUs piecewise (z3's case splitting on
/// ReLUs degrades quickly past a few dozen, see the crate docs).
const LEAF_UNSTABLE: usize = 12;
/// Per-leaf z3 budget before the leaf is split further instead.
const LEAF_BUDGET: Duration = Duration::from_secs(2);

enum CaseOutcome {
    Unsat,
    Sat(Box<nncert_verify::Counterexample>),
    Undecided { timeout: bool },
}

/// One case: directly by z3 when many inputs vary (or without bounds); otherwise the box is split (widest free
/// input first) until sound bounds leave few unstable ReLUs, and each sub-box goes to z3. The sub-boxes cover
/// the box exactly (closed halves at an f64 midpoint), so `unsat` on all of them is `unsat` on the box.
fn solve_case(
    graph: &Graph,
    property: &Property,
    ci: usize,
    opts: &SmtOptions,
    deadline: Instant,
    stats: &mut SmtStats,
) -> Result<CaseOutcome, SmtError> {
    let case = &property.cases[ci];
    let split = opts.use_bounds && case.input.free_dims() <= MAX_SPLIT_INPUTS;
    let mut stack = vec![case.input.clone()];
    let mut first = true;
    let mut undecided = false;
    while let Some(bx) = stack.pop() {
        if Instant::now() >= deadline {
            return Ok(CaseOutcome::Undecided { timeout: true });
        }
        let sub = Property {
            num_inputs: property.num_inputs,
            num_outputs: property.num_outputs,
            cases: vec![nncert_spec::Case {
                input: bx.clone(),
                output: case.output.clone(),
            }],
        };
        let bounds = opts
            .use_bounds
            .then(|| crate::encode::box_bounds(graph, &bx, deadline));
        let enc = encode_case(graph, &sub, 0, bounds.as_ref(), opts.relu_style)?;
        if first {
            stats.relus += enc.stats.relus;
            stats.unstable_relus += enc.stats.unstable();
            first = false;
        }
        stats.boxes += 1;
        if enc.refuted_by_output_bounds() {
            continue;
        }
        // The box's centre, re-executed: a cheap way to a counterexample when the bad region is wide (z3's
        // search for a model is the slow part on sat instances). Checked like any candidate.
        let centre: Vec<f64> = bx
            .lower
            .iter()
            .zip(&bx.upper)
            .map(|(l, u)| l + (u - l) / 2.0)
            .collect();
        let hit = opts
            .centre_check
            .then(|| nncert_verify::check::check_candidate(graph, property, ci, &centre))
            .flatten();
        if let Some(cex) = hit {
            stats.centre_hits += 1;
            return Ok(CaseOutcome::Sat(Box::new(cex)));
        }
        // The widest free input and its midpoint, if the box can still be halved.
        let halves = split
            .then(|| {
                let (d, w) = bx
                    .lower
                    .iter()
                    .zip(&bx.upper)
                    .map(|(l, u)| u - l)
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(&b.1))?;
                let mid = bx.lower[d] + w / 2.0;
                (mid > bx.lower[d] && mid < bx.upper[d]).then_some((d, mid))
            })
            .flatten();
        let to_z3 = halves.is_none() || enc.stats.unstable() <= LEAF_UNSTABLE;
        if to_z3 {
            let leaf_deadline = match halves {
                Some(_) => deadline.min(Instant::now() + LEAF_BUDGET),
                None => deadline,
            };
            let t = Instant::now();
            let answer = solve_encoding(&enc, leaf_deadline)?;
            if std::env::var_os("NNCERT_SMT_TRACE").is_some() {
                eprintln!(
                    "smt trace: box {} unstable {} -> {:?} in {:.3} s",
                    stats.boxes,
                    enc.stats.unstable(),
                    std::mem::discriminant(&answer),
                    t.elapsed().as_secs_f64()
                );
            }
            match answer {
                CaseAnswer::Unsat => continue,
                CaseAnswer::Sat(x) => {
                    if let Some(cex) =
                        nncert_verify::check::check_candidate(graph, property, ci, &x)
                    {
                        return Ok(CaseOutcome::Sat(Box::new(cex)));
                    }
                    stats.rejected_models += 1;
                    // The real-valued point does not survive f32 execution (it sits on the boundary of the bad
                    // region, where z3's vertices usually are). Ask for points deeper inside.
                    if let Some(cex) = tightened_search(graph, property, ci, &enc, deadline, stats)?
                    {
                        return Ok(CaseOutcome::Sat(Box::new(cex)));
                    }
                    // Splitting cannot turn this box into unsat: it has real-valued counterexamples.
                    undecided = true;
                    continue;
                }
                CaseAnswer::Unknown { .. } if halves.is_none() => {
                    return Ok(CaseOutcome::Undecided {
                        timeout: Instant::now() >= deadline,
                    });
                }
                CaseAnswer::Unknown { .. } => {}
            }
        }
        if let Some((d, mid)) = halves {
            let mut lo = bx.clone();
            lo.upper[d] = mid;
            let mut hi = bx;
            hi.lower[d] = mid;
            stack.push(hi);
            stack.push(lo);
        }
    }
    Ok(if undecided {
        CaseOutcome::Undecided { timeout: false }
    } else {
        CaseOutcome::Unsat
    })
}

/// Re-solves with the bad region shrunk by growing margins (relative to the output scale) until a model passes
/// re-execution; `None` when none does (or the shrunk region is empty, or time runs out).
fn tightened_search(
    graph: &Graph,
    property: &Property,
    case: usize,
    enc: &Encoding,
    deadline: Instant,
    stats: &mut SmtStats,
) -> Result<Option<nncert_verify::Counterexample>, SmtError> {
    let scale = enc
        .outputs
        .iter()
        .flat_map(|&y| [enc.vars[y].lower.as_ref(), enc.vars[y].upper.as_ref()])
        .flatten()
        .map(|r| to_f64(&r.abs()))
        .fold(1.0f64, f64::max);
    for rel in [1e-9, 1e-6, 1e-3] {
        let Some(delta) = exact(scale * rel) else {
            return Ok(None);
        };
        match solve_encoding(&enc.tightened(&delta), deadline)? {
            CaseAnswer::Sat(x) => {
                if let Some(cex) = nncert_verify::check::check_candidate(graph, property, case, &x)
                {
                    return Ok(Some(cex));
                }
                stats.rejected_models += 1;
            }
            CaseAnswer::Unsat | CaseAnswer::Unknown { .. } => return Ok(None),
        }
    }
    Ok(None)
}
