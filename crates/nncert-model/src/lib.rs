//! # nncert-model
//!
//! The model side of nncert: a small IR of typed operations with static shapes ([`ir`]), importers for ONNX
//! ([`onnx`]) and the ACAS Xu `.nnet` format ([`nnet`]), canonicalization ([`canon`]), and batched evaluation in
//! f32 or f64 with vector–Jacobian products ([`eval`]).
//!
//! ```no_run
//! use nncert_model::{load_model, eval::Evaluator};
//! use ndarray::Array2;
//! let graph = load_model(std::path::Path::new("model.onnx"))?;
//! let x = Array2::<f64>::zeros((4, graph.input_size())); // 4 samples, flattened inputs
//! let y = Evaluator::new(&graph).forward(x.view())?;      // [4, output_size]
//! # Ok::<(), nncert_model::ModelError>(())
//! ```

// Errors carry file, node and op names for the user; they are rare and never on a hot path.
#![allow(clippy::result_large_err)]

pub mod canon;
pub mod error;
pub mod eval;
pub mod ir;
pub mod nnet;
pub mod onnx;

pub use error::ModelError;
pub use ir::{Graph, GraphBuilder, NodeId, Op, Shape};

use std::path::Path;

/// Loads a model by its extension (`.onnx` or `.nnet`) and canonicalizes it.
pub fn load_model(path: &Path) -> Result<Graph, ModelError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    let graph = match ext.as_deref() {
        Some("nnet") => nnet::load(path)?,
        _ => onnx::load(path)?,
    };
    Ok(canon::canonicalize(graph))
}
