//! `verify --method milp` and `export --milp`: the MILP engine of `nncert-milp` (HiGHS). Behind the default
//! cargo feature `milp`, so that `--no-default-features` builds the binary without compiling HiGHS.

use anyhow::Result;
use nncert_model::Graph;
use nncert_spec::Property;
use nncert_verify::VerifyResult;
use std::path::Path;

/// Decides the property by MILP; prints the method class and the MILP figures on stderr and returns the result
/// for the shared printing of `verify`.
#[cfg(feature = "milp")]
pub fn verify(graph: &Graph, prop: &Property, timeout: f64) -> Result<VerifyResult> {
    let opts = nncert_milp::MilpOptions {
        timeout: std::time::Duration::from_secs_f64(timeout),
    };
    let out = nncert_milp::verify_milp(graph, prop, &opts)?;
    eprintln!("{}", out.summary());
    Ok(out.result)
}

/// Writes the MILP of every (case, disjunct) and lists the files.
#[cfg(feature = "milp")]
pub fn export(graph: &Graph, prop: &Property, out: &Path) -> Result<()> {
    let files = nncert_milp::export(graph, prop, out)?;
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    eprintln!(
        "each model minimizes the column `margin`: the property is violated iff some model's optimum is <= 0"
    );
    Ok(())
}

/// The HiGHS leaf solver for ReLU-splitting branch-and-bound: `verify --leaves N`, or LP leaves (`N = 0`) by
/// default. `None` for networks that are not feed-forward ReLU networks (with a note when N was asked for).
#[cfg(feature = "milp")]
pub fn leaf_solver(
    graph: &Graph,
    prop: &Property,
    max_unstable: Option<usize>,
) -> Result<Option<std::sync::Arc<dyn nncert_verify::leaf::LeafSolver>>> {
    let solver = nncert_milp::leaf::leaf_solver_for(graph, prop, max_unstable.unwrap_or(0));
    if solver.is_none() && max_unstable.is_some() {
        eprintln!(
            "note: --leaves needs a feed-forward ReLU network; running without a leaf solver"
        );
    }
    Ok(solver)
}

/// Without HiGHS there is no leaf solver: asking for one is an error, the default runs without.
#[cfg(not(feature = "milp"))]
pub fn leaf_solver(
    _: &Graph,
    _: &Property,
    max_unstable: Option<usize>,
) -> Result<Option<std::sync::Arc<dyn nncert_verify::leaf::LeafSolver>>> {
    if max_unstable.is_some() {
        anyhow::bail!(
            "--leaves is not available: nncert was built without the `milp` feature (HiGHS)"
        );
    }
    Ok(None)
}

#[cfg(not(feature = "milp"))]
pub fn verify(_: &Graph, _: &Property, _: f64) -> Result<VerifyResult> {
    anyhow::bail!(
        "--method milp is not available: nncert was built without the `milp` feature (HiGHS)"
    )
}

#[cfg(not(feature = "milp"))]
pub fn export(_: &Graph, _: &Property, _: &Path) -> Result<()> {
    anyhow::bail!("--milp is not available: nncert was built without the `milp` feature (HiGHS)")
}
