//! `nncert verify --method smt` and `nncert export --smtlib`: thin wrappers around `nncert-smt`.

use anyhow::Result;
use nncert_model::Graph;
use nncert_spec::Property;
use std::path::Path;
use std::time::Duration;

/// Decides the property with z3. The result has the same shape as the default engine's, so printing and the
/// result file stay shared.
#[cfg(feature = "smt")]
pub fn verify(
    graph: &Graph,
    prop: &Property,
    timeout: Duration,
) -> Result<nncert_verify::VerifyResult> {
    let opts = nncert_smt::solve::SmtOptions {
        timeout,
        ..Default::default()
    };
    let (result, stats) = nncert_smt::solve::verify_smt(graph, prop, &opts)?;
    eprintln!(
        "smt: {} case(s), {} decided unsat, {} input box(es) encoded; {} ReLU(s), {} piecewise on the whole \
         box; {} z3 model(s) rejected by f32/f64 re-execution; {} counterexample(s) found at a sub-box centre",
        stats.cases,
        stats.unsat_cases,
        stats.boxes,
        stats.relus,
        stats.unstable_relus,
        stats.rejected_models,
        stats.centre_hits
    );
    Ok(result)
}

#[cfg(not(feature = "smt"))]
pub fn verify(_: &Graph, _: &Property, _: Duration) -> Result<nncert_verify::VerifyResult> {
    anyhow::bail!(
        "--method smt is not available in this build (built without the `smt` feature, which needs libz3-dev)"
    )
}

/// Writes the SMT-LIB 2 file of the property: one `(push 1)` … `(check-sat)` `(pop 1)` block per case (input
/// box), so `z3 OUT.smt2` prints one answer per case and the property is violated iff one of them is `sat`.
pub fn export_smtlib(
    graph: &Graph,
    prop: &Property,
    model: &Path,
    property: &Path,
    out: &Path,
) -> Result<()> {
    let header = vec![
        format!("nncert {} export", env!("CARGO_PKG_VERSION")),
        format!("model: {}", model.display()),
        format!("property: {}", property.display()),
    ];
    let text = nncert_smt::export_smtlib(graph, prop, true, nncert_smt::ReluStyle::Ite, &header)?;
    crate::io::write_atomically(out, text.as_bytes())?;
    eprintln!(
        "wrote {} ({} case(s), one (check-sat) each; the property is violated iff some answer is sat)",
        out.display(),
        prop.cases.len()
    );
    Ok(())
}
