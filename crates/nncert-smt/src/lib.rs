//! # nncert-smt
//!
//! The SMT engine of nncert (ISO/IEC 24029-2 formal method "SMT"): a ReLU network and a VNN-LIB property become,
//! per input box, a formula of quantifier-free linear real arithmetic (QF_LRA) that is satisfiable iff some
//! input of the box has its output in the bad region.
//!
//! - [`encode`]: the solver-neutral encoding (exact rational coefficients; ReLU as `ite` or as a disjunction;
//!   stable ReLUs fixed and lemmas added from sound bounds of `nncert-bounds`);
//! - [`smtlib`]: SMT-LIB 2 text for any external solver (always built, pure Rust);
//! - `solve` (feature `z3`): the same formula built in-process and decided by z3, with every `sat` re-executed
//!   in f32 and f64 before it is reported. z3 4.8.12 stalls (seconds to minutes, not even interruptible at
//!   once) when more than a dozen ReLUs are left piecewise, even on tiny nets, so boxes with few free inputs
//!   are split first until sound bounds leave few unstable ReLUs; the exported file is the unsplit formula.
//!
//! ## What an answer means ([`METHOD_CLASS`])
//! z3 decides QF_LRA exactly (rational simplex, no tolerances), and the formula carries the stored weights
//! exactly, so `unsat` proves the property for the **real-valued** network with its stored weights, on the input
//! box as parsed (f64 bounds). It does not prove anything about floating-point execution, whose rounding can
//! differ from the real network by a tiny amount. `sat` is reported only for a point that, snapped to f32,
//! re-executes in f32 and f64 into the bad region.
//!
//! ```
//! use nncert_model::ir::{GraphBuilder, Linear, Op};
//! use ndarray::{arr1, arr2};
//! let mut b = GraphBuilder::new("x", vec![1]);
//! let fc = Op::Linear(Linear { weight: arr2(&[[1.0], [-1.0]]), bias: Some(arr1(&[0.0, 0.5])) });
//! let h = b.push("fc", fc, vec![b.input_id()], None).unwrap();
//! let r = b.push("relu", Op::Relu, vec![h], None).unwrap();
//! let g = b.finish(r);
//! let p = nncert_spec::parse_str(
//!     "(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)
//!      (assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= Y_0 2))", "p.vnnlib").unwrap();
//! let text = nncert_smt::export_smtlib(&g, &p, true, Default::default(), &[]).unwrap();
//! assert!(text.contains("(check-sat)"));
//! ```

pub mod encode;
pub mod rational;
pub mod smtlib;
#[cfg(feature = "z3")]
pub mod solve;

pub use encode::{Encoding, ReluStyle};

use nncert_model::Graph;
use nncert_spec::Property;

/// The method class printed with every SMT answer.
pub const METHOD_CLASS: &str = "complete; exact rational arithmetic (z3 QF_LRA, no solver tolerances); proves the \
     real-valued network with its stored weights, not its f32 execution; sat only after f32 and f64 re-execution";

/// Errors of the SMT engine.
#[derive(Debug, thiserror::Error)]
pub enum SmtError {
    #[error(
        "node '{node}' ({op}) cannot be encoded in QF_LRA; the SMT engine supports Linear/Gemm/MatMul, Add/Sub/Mul/Div \
         by constants, Add/Sub of two tensors, Flatten/Reshape/Transpose, Relu and LeakyRelu (use --method bab for \
         other networks)"
    )]
    Unsupported { node: String, op: &'static str },
    #[error("{node}: a value is NaN or infinite, which has no exact rational form")]
    NonFinite { node: String },
    #[error("the property has {cases} case(s); case {case} does not exist")]
    NoSuchCase { case: usize, cases: usize },
    #[error(
        "the property has {property_inputs} inputs and {property_outputs} outputs, the model \
         {model_inputs} and {model_outputs}"
    )]
    Dimensions {
        model_inputs: usize,
        model_outputs: usize,
        property_inputs: usize,
        property_outputs: usize,
    },
    #[error("z3: {0}")]
    Solver(String),
}

/// The SMT-LIB 2 file of `property` on `graph` (see [`smtlib::property_file`]): one `(push 1)` …
/// `(check-sat)` `(pop 1)` block per case. With `use_bounds`, sound bounds fix stable ReLUs and add lemmas
/// (the answers are the same; solvers are much faster). `header` lines are written as comments.
///
/// # Errors
/// As [`encode::encode_case`]: unsupported ops, non-finite values, mismatched dimensions.
pub fn export_smtlib(
    graph: &Graph,
    property: &Property,
    use_bounds: bool,
    relu_style: ReluStyle,
    header: &[String],
) -> Result<String, SmtError> {
    encode::check_supported(graph)?;
    let mut encs = Vec::with_capacity(property.cases.len());
    // Bounds get a generous budget: exporting has no time limit, and intermediate bounds stop refining at the
    // deadline without becoming unsound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for (i, case) in property.cases.iter().enumerate() {
        let bounds = use_bounds.then(|| encode::case_bounds(graph, case, deadline));
        encs.push(encode::encode_case(
            graph,
            property,
            i,
            bounds.as_ref(),
            relu_style,
        )?);
    }
    let mut h = header.to_vec();
    h.push(format!(
        "method class of a solver's answer on this file: {METHOD_CLASS}"
    ));
    Ok(smtlib::property_file(&h, &encs))
}
