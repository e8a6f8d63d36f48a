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

/// Minimizes the program's objective within `time_limit`, stopping at an absolute gap of `abs_gap`.
pub fn minimize(
    prog: &Program,
    time_limit: Duration,
    abs_gap: f64,
) -> Result<SolveReport, MilpError> {
    let mut model = to_model(prog, Sense::Minimise)?;
    set(&mut model, "time_limit", time_limit.as_secs_f64().max(0.01))?;
    set(
        &mut model,
        "primal_feasibility_tolerance",
        PRIMAL_FEASIBILITY_TOL,
    )?;
    set(&mut model, "mip_feasibility_tolerance", INTEGRALITY_TOL)?;
    set(&mut model, "mip_rel_gap", MIP_REL_GAP)?;
    // The verdict needs the dual bound above τ or a point below 0, not the optimum to 10⁻⁶: stop at a gap of τ.
    set(&mut model, "mip_abs_gap", abs_gap.max(1e-6))?;
    if std::env::var_os("NNCERT_MILP_LOG").is_some() {
        // Debugging aid: HiGHS's own log on stdout.
        let _ = model.try_set_option("output_flag", true);
        let _ = model.try_set_option("log_to_console", true);
    }
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
