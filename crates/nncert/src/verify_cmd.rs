//! `nncert verify`'s reporting: the summary on stderr, and the JSON evidence record of `--json` with the
//! method class of the engine that answered (ISO/IEC 24029-2 proof-scope conditions: complete or not, what
//! arithmetic a proof holds in, which solver tolerances bear on it).

use crate::io;
use anyhow::{Context, Result};
use nncert_model::Graph;
use nncert_report::evidence::{Completeness, Soundness};
use nncert_spec::Property;
use nncert_verify::{Verdict, VerifyOptions, VerifyResult};
use serde_json::{Value, json};
use std::path::Path;

/// The engine `verify --method` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyMethod {
    Bab,
    Milp,
    Smt,
}

impl VerifyMethod {
    fn name(self) -> &'static str {
        match self {
            VerifyMethod::Bab => "bab",
            VerifyMethod::Milp => "milp",
            VerifyMethod::Smt => "smt",
        }
    }
}

/// The class of the method that produced `result`.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodClass {
    pub completeness: Completeness,
    /// What an `unsat` of this run guarantees.
    pub soundness: Soundness,
    /// The solver tolerances that bear on a proof (`None`: none do).
    pub tolerances: Option<&'static str>,
    /// One sentence for people.
    pub statement: String,
}

const HIGHS_TOLERANCES: &str = "HiGHS primal feasibility 1e-7, integrality 1e-6, MIP relative gap 1e-4; \
     unsat needs the dual bound on the margin above 1e-5·max(1, scale)";

/// The method class of one run of `method` on `property` (branch-and-bound's depends on which search ran and
/// on how its leaves were closed).
pub fn method_class(
    method: VerifyMethod,
    graph: &Graph,
    property: &Property,
    opts: &VerifyOptions,
    result: &VerifyResult,
) -> MethodClass {
    match method {
        VerifyMethod::Milp => MethodClass {
            completeness: Completeness::Complete,
            soundness: Soundness::SoundReal,
            tolerances: Some(HIGHS_TOLERANCES),
            statement: "MILP (HiGHS): exact encoding of the piecewise-linear network; a proof holds in real \
                        arithmetic up to HiGHS's tolerances; counterexamples re-executed in f32 and f64"
                .into(),
        },
        VerifyMethod::Smt => MethodClass {
            completeness: Completeness::Complete,
            soundness: Soundness::SoundReal,
            tolerances: None,
            statement: format!("SMT (z3, QF_LRA): {}", nncert_smt::METHOD_CLASS),
        },
        VerifyMethod::Bab => {
            let dense =
                opts.dense_path && nncert_bounds::dense::DenseReluNet::from_graph(graph).is_some();
            let input_split = nncert_verify::max_free_dims(property) <= nncert_verify::bab::MAX_INPUTS;
            let complete = nncert_verify::search_is_complete(graph, property, opts);
            // A proof that leaned on a MILP leaf holds only up to HiGHS's tolerances.
            let tolerance_leaves = matches!(result.verdict, Verdict::Unsat { .. })
                && result.leaves.refuted_tolerance > 0;
            let (soundness, tolerances) = if tolerance_leaves {
                (Soundness::SoundReal, Some(HIGHS_TOLERANCES))
            } else {
                (Soundness::SoundFloat, None)
            };
            let search = match (input_split, dense) {
                (true, _) => "input-splitting branch-and-bound",
                (false, true) => "ReLU-splitting branch-and-bound (β-CROWN)",
                (false, false) => "sound bounds and falsifier (no branch-and-bound for this graph)",
            };
            MethodClass {
                completeness: if complete {
                    Completeness::Complete
                } else {
                    Completeness::Incomplete
                },
                soundness,
                tolerances,
                statement: format!(
                    "linear-relaxation bounds (CROWN family) with {search}; a proof holds {}; counterexamples \
                     re-executed in f32 and f64",
                    if tolerance_leaves {
                        "in real arithmetic up to HiGHS's tolerances (MILP leaves)"
                    } else {
                        "for the real-valued network despite floating-point rounding (explicit rounding-error \
                         terms)"
                    }
                ),
            }
        }
    }
}

/// Prints the method class and the verdict's figures on stderr.
pub fn print_summary(class: &MethodClass, result: &VerifyResult) {
    eprintln!(
        "method class: {}, {}{}: {}",
        word(&class.completeness),
        word(&class.soundness),
        class
            .tolerances
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        class.statement
    );
    match &result.verdict {
        Verdict::Sat(c) => eprintln!(
            "counterexample in case {} checked: margin {:.3e} (f32), {:.3e} (f64); {:.2} s",
            c.case,
            c.margin_f32,
            c.margin_f64,
            result.elapsed.as_secs_f64()
        ),
        Verdict::Unsat { method } => {
            eprintln!("proved by {method}; {:.2} s", result.elapsed.as_secs_f64())
        }
        Verdict::Unknown | Verdict::Timeout => eprintln!(
            "neither proved nor refuted in {:.2} s ({} sub-domains bounded, {} model evaluations, best margin \
             {:.4e})",
            result.elapsed.as_secs_f64(),
            result.domains,
            result.evaluations,
            result.best_margin
        ),
    }
    let l = &result.leaves;
    if l.calls > 0 {
        eprintln!(
            "leaf solver: {} sub-domains handed over, {} closed rigorously, {} up to solver tolerances, {} \
             counterexample(s)",
            l.calls, l.refuted_rigorous, l.refuted_tolerance, l.counterexamples
        );
    }
}

/// The serde name of a class field (`complete`, `sound_float`, ...).
fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// Everything `--json` records about one run.
pub struct RunRecord<'a> {
    pub model: &'a Path,
    pub property: &'a Path,
    pub method: VerifyMethod,
    pub class: &'a MethodClass,
    pub opts: &'a VerifyOptions,
    pub result: &'a VerifyResult,
    pub started_utc: String,
}

/// Writes the run's evidence record to `path` (atomically).
pub fn write_record(path: &Path, r: &RunRecord<'_>) -> Result<()> {
    let hash = |p: &Path| -> Result<String> {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(nncert_report::audit::sha256_hex(&bytes))
    };
    let (decided_by, counterexample) = match &r.result.verdict {
        Verdict::Unsat { method } => (Value::String(method.clone()), Value::Null),
        Verdict::Sat(c) => (
            json!("counterexample re-executed in f32 and f64"),
            json!({
                "case": c.case,
                "input": c.input,
                "output_f32": c.output_f32,
                "output_f64": c.output_f64,
                "margin_f32": c.margin_f32,
                "margin_f64": c.margin_f64,
            }),
        ),
        Verdict::Unknown | Verdict::Timeout => (Value::Null, Value::Null),
    };
    let record = json!({
        "schema": "nncert.verify/1",
        "tool": { "name": "nncert", "version": env!("CARGO_PKG_VERSION") },
        "started_utc": r.started_utc,
        "model": { "path": r.model.display().to_string(), "sha256": hash(r.model)? },
        "property": { "path": r.property.display().to_string(), "sha256": hash(r.property)? },
        "method": {
            "engine": r.method.name(),
            "decided_by": decided_by,
            "class": {
                "completeness": r.class.completeness,
                "soundness": r.class.soundness,
                "tolerances": r.class.tolerances,
                "statement": r.class.statement,
            },
        },
        "budget": {
            "timeout_s": r.opts.timeout.as_secs_f64(),
            "seed": r.opts.seed,
            "memory_limit_bytes": r.opts.memory_limit,
        },
        "result": {
            "verdict": r.result.verdict.word(),
            "elapsed_s": r.result.elapsed.as_secs_f64(),
            "sub_domains": r.result.domains,
            "model_evaluations": r.result.evaluations,
            "best_margin": finite(r.result.best_margin),
        },
        "counterexample": counterexample,
    });
    let mut text = serde_json::to_string_pretty(&record)?;
    text.push('\n');
    io::write_atomically(path, text.as_bytes())
}
