//! The HiGHS side: a [`Program`] becomes a HiGHS model, is solved under a time limit, or is written to a file.

use crate::MilpError;
use crate::encode::{Program, column_names};
use highs::{HighsModelStatus, HighsSolutionStatus, RowProblem, Sense};
use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

/// HiGHS's primal feasibility tolerance, set explicitly so that the method class states it.
pub const PRIMAL_FEASIBILITY_TOL: f64 = 1e-7;
/// HiGHS's integrality tolerance (`mip_feasibility_tolerance`).
pub const INTEGRALITY_TOL: f64 = 1e-6;
/// HiGHS's relative MIP gap at which it stops (the dual bound, not the gap, decides `unsat`).
pub const MIP_REL_GAP: f64 = 1e-4;

/// What one solve established.
#[derive(Clone, Debug)]
pub struct SolveReport {
    /// HiGHS's final status.
    pub status: HighsModelStatus,
    /// A lower bound on the optimum (the MIP dual bound; for a pure LP, the optimal value); `-inf` when none.
    pub dual_bound: f64,
    /// The best point found and its objective value.
    pub primal: Option<(f64, Vec<f64>)>,
}

impl SolveReport {
    /// True when HiGHS stopped on its time limit.
    pub fn timed_out(&self) -> bool {
        self.status == HighsModelStatus::ReachedTimeLimit
    }
}

fn to_model(prog: &Program, sense: Sense) -> Result<highs::Model, MilpError> {
    let mut pb = RowProblem::default();
    let cols: Vec<highs::Col> = prog
        .cols
        .iter()
        .map(|c| {
            if c.integer {
                pb.add_integer_column(c.cost, c.lower..=c.upper)
            } else {
                pb.add_column(c.cost, c.lower..=c.upper)
            }
        })
        .collect();
    for r in &prog.rows {
        let factors: Vec<(highs::Col, f64)> = r.terms.iter().map(|&(c, v)| (cols[c], v)).collect();
        pb.add_row(r.lower..=r.upper, &factors);
    }
    pb.try_optimise(sense)
        .map_err(|s| MilpError::Solver(format!("HiGHS rejected the model: {s:?}")))
}

fn set(model: &mut highs::Model, name: &str, value: f64) -> Result<(), MilpError> {
    model
        .try_set_option(name, value)
        .map_err(|_| MilpError::Solver(format!("HiGHS refused option {name} = {value}")))
}

/// A HiGHS model of `prog` with the time limit and the tolerances of the method class set.
fn configured(prog: &Program, time_limit: Duration) -> Result<highs::Model, MilpError> {
    let mut model = to_model(prog, Sense::Minimise)?;
    set(&mut model, "time_limit", time_limit.as_secs_f64().max(0.01))?;
    set(
        &mut model,
        "primal_feasibility_tolerance",
        PRIMAL_FEASIBILITY_TOL,
    )?;
    if std::env::var_os("NNCERT_MILP_LOG").is_some() {
        // Debugging aid: HiGHS's own log on stdout.
        let _ = model.try_set_option("output_flag", true);
        let _ = model.try_set_option("log_to_console", true);
    }
    Ok(model)
}

/// Minimizes the program's objective within `time_limit`, stopping at an absolute gap of `abs_gap`.
pub fn minimize(
    prog: &Program,
    time_limit: Duration,
    abs_gap: f64,
) -> Result<SolveReport, MilpError> {
    let mut model = configured(prog, time_limit)?;
    set(&mut model, "mip_feasibility_tolerance", INTEGRALITY_TOL)?;
    set(&mut model, "mip_rel_gap", MIP_REL_GAP)?;
    // The verdict needs the dual bound above τ or a point below 0, not the optimum to 10⁻⁶: stop at a gap of τ.
    set(&mut model, "mip_abs_gap", abs_gap.max(1e-6))?;
    let solved = model
        .try_solve()
        .map_err(|s| MilpError::Solver(format!("HiGHS failed: {s:?}")))?;
    let status = solved.status();
    let is_mip = prog.cols.iter().any(|c| c.integer);
    let primal = (solved.primal_solution_status() == HighsSolutionStatus::Feasible).then(|| {
        (
            solved.objective_value(),
            solved.get_solution().columns().to_vec(),
        )
    });
    let dual_bound = if is_mip {
        match solved.double_info_value(c"mip_dual_bound") {
            Ok(v) if !v.is_nan() => v,
            _ => f64::NEG_INFINITY,
        }
    } else if status == HighsModelStatus::Optimal {
        // A pure LP solved to optimality: primal and dual objectives agree up to the tolerances.
        solved.objective_value()
    } else {
        f64::NEG_INFINITY
    };
    Ok(SolveReport {
        status,
        dual_bound,
        primal,
    })
}

/// Writes the program to `path` in the format its extension names (`.lp` or `.mps`), with readable column
/// names. HiGHS writes a temporary file in the same folder, renamed into place, so `path` is never half written.
pub fn write(prog: &Program, path: &Path) -> Result<(), MilpError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let ext = match ext.as_deref() {
        Some(e @ ("lp" | "mps")) => e.to_string(),
        _ => {
            return Err(MilpError::Export(format!(
                "{}: the file name must end in .lp or .mps (HiGHS picks the format from it)",
                path.display()
            )));
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{stem}.tmp{}.{ext}", std::process::id()));
    let mut model = to_model(prog, Sense::Minimise)?;
    let names = column_names(prog);
    let c_tmp = CString::new(tmp.to_string_lossy().as_bytes())
        .map_err(|_| MilpError::Export(format!("{}: path contains a NUL byte", path.display())))?;
    // SAFETY: the pointer is HiGHS's own instance owned by `model`, alive for these calls; the strings are
    // NUL-terminated and outlive them; indices are in range (one name per column of the model).
    let status = unsafe {
        let ptr = model.as_mut_ptr();
        for (i, n) in names.iter().enumerate() {
            let cn = CString::new(n.as_bytes()).expect("generated names have no NUL");
            highs_sys::Highs_passColName(ptr, i as highs_sys::HighsInt, cn.as_ptr());
        }
        highs_sys::Highs_writeModel(ptr, c_tmp.as_ptr())
    };
    if status == highs_sys::STATUS_ERROR || !tmp.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Err(MilpError::Export(format!(
            "HiGHS could not write {}",
            path.display()
        )));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        MilpError::Export(format!("{}: {e}", path.display()))
    })
}

/// What solving a pure LP gave, with the row multipliers a certificate needs.
#[derive(Clone, Debug)]
pub struct LpReport {
    pub status: HighsModelStatus,
    /// The solver's point and objective value, when it has a feasible one.
    pub primal: Option<(f64, Vec<f64>)>,
    /// HiGHS's row duals (when it reports a dual solution).
    pub row_duals: Option<Vec<f64>>,
    /// When HiGHS finds the LP infeasible: its dual ray (a Farkas certificate to check, see
    /// [`certified_infeasible`]).
    pub dual_ray: Option<Vec<f64>>,
}

/// Solves a program without integer columns and returns its point and row duals.
///
/// # Errors
/// [`MilpError::Solver`] when HiGHS rejects or fails the model, or the program has integer columns.
pub fn minimize_lp(prog: &Program, time_limit: Duration) -> Result<LpReport, MilpError> {
    if prog.binaries() > 0 {
        return Err(MilpError::Solver(
            "minimize_lp was given a program with integer columns".into(),
        ));
    }
    let mut model = configured(prog, time_limit)?;
    // Without presolve HiGHS keeps a dual ray when it proves the LP infeasible (presolve may decide
    // infeasibility without one); leaf LPs are small enough.
    model
        .try_set_option("presolve", "off")
        .map_err(|_| MilpError::Solver("HiGHS refused option presolve = off".into()))?;
    let solved = model
        .try_solve()
        .map_err(|s| MilpError::Solver(format!("HiGHS failed: {s:?}")))?;
    let status = solved.status();
    let dual_ray = (status == HighsModelStatus::Infeasible)
        .then(|| {
            let mut has_ray: highs_sys::HighsInt = 0;
            let mut ray = vec![0.0; prog.rows.len()];
            // SAFETY: the pointer is the live HiGHS instance of `solved`, and `ray` has one entry per row, as
            // Highs_getDualRay requires.
            let status = unsafe {
                highs_sys::Highs_getDualRay(solved.as_ptr(), &mut has_ray, ray.as_mut_ptr())
            };
            (status == highs_sys::kHighsStatusOk && has_ray != 0).then_some(ray)
        })
        .flatten();
    let solution = solved.get_solution();
    let primal = (solved.primal_solution_status() == HighsSolutionStatus::Feasible)
        .then(|| (solved.objective_value(), solution.columns().to_vec()));
    // Any multipliers give a valid certificate (a poor one at worst), so the duals need no status check.
    let row_duals =
        (solution.dual_rows().len() == prog.rows.len()).then(|| solution.dual_rows().to_vec());
    Ok(LpReport {
        status,
        primal,
        row_duals,
        dual_ray,
    })
}

/// True when the row multipliers `ray` prove, rigorously in floating point, that `prog`'s LP relaxation has no
/// feasible point: with the objective taken as 0, [`certified_lower_bound`] is then above 0 (a Farkas
/// certificate checked with explicit rounding-error terms). Either sign of `ray` is tried.
pub fn certified_infeasible(prog: &Program, ray: &[f64]) -> bool {
    let neg: Vec<f64> = ray.iter().map(|v| -v).collect();
    safe_bound(prog, ray, false) > 0.0 || safe_bound(prog, &neg, false) > 0.0
}

/// A lower bound on the minimum of `prog`'s objective over its LP relaxation, rigorous in floating point, from
/// any row multipliers `y` (the Neumaier–Shcherbina safe bound): for every feasible `x`,
/// `cost·x = y·(A x) + (cost − Aᵀy)·x ≥ Σ_r min over the row's range of y_r·(A x)_r + Σ_j min over the column's
/// range of d_j·x_j`. Any `y` gives a valid bound (a good one comes from the LP's optimal duals); the
/// reduced costs `d` are enclosed with an a-priori error term `γ_n·Σ|terms|`, and the final sum is rounded
/// down the same way. `−∞` when a needed column bound is infinite.
pub fn certified_lower_bound(prog: &Program, y: &[f64]) -> f64 {
    safe_bound(prog, y, true)
}

/// The safe bound of [`certified_lower_bound`], with the objective or with 0 (`with_cost = false`).
fn safe_bound(prog: &Program, y: &[f64], with_cost: bool) -> f64 {
    // γ_n with a factor 2 of slack that also covers the rounding of the error terms themselves.
    let gamma = |n: usize| 2.0 * nncert_bounds::gamma(n + 2);
    // Multipliers whose row has no bound on the side they need contribute −∞: drop them (y_r = 0 is valid).
    let y: Vec<f64> = prog
        .rows
        .iter()
        .zip(y)
        .map(|(r, &v)| {
            let usable = if v > 0.0 {
                r.lower.is_finite()
            } else {
                r.upper.is_finite()
            };
            if usable && v.is_finite() { v } else { 0.0 }
        })
        .collect();
    let n = prog.cols.len();
    let mut d: Vec<f64> = prog
        .cols
        .iter()
        .map(|c| if with_cost { c.cost } else { 0.0 })
        .collect();
    let mut mag: Vec<f64> = d.iter().map(|v| v.abs()).collect();
    let mut count = vec![1usize; n];
    let mut terms: Vec<f64> = Vec::with_capacity(n + prog.rows.len());
    for (r, &yr) in prog.rows.iter().zip(&y) {
        if yr == 0.0 {
            continue;
        }
        for &(c, a) in &r.terms {
            let p = a * yr;
            d[c] -= p;
            mag[c] += p.abs();
            count[c] += 1;
        }
        terms.push(if yr > 0.0 { yr * r.lower } else { yr * r.upper });
    }
    for (j, col) in prog.cols.iter().enumerate() {
        let e = gamma(count[j]) * mag[j];
        let (dl, dh) = (d[j] - e, d[j] + e);
        if dl == 0.0 && dh == 0.0 {
            continue;
        }
        if !(col.lower.is_finite() && col.upper.is_finite()) {
            return f64::NEG_INFINITY;
        }
        let t = [
            dl * col.lower,
            dl * col.upper,
            dh * col.lower,
            dh * col.upper,
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min);
        terms.push(t);
    }
    let sum: f64 = terms.iter().sum();
    let abs: f64 = terms.iter().map(|t| t.abs()).sum();
    let bound = sum - gamma(terms.len()) * abs - f64::MIN_POSITIVE;
    if bound.is_nan() {
        f64::NEG_INFINITY
    } else {
        bound
    }
}
