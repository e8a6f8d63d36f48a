//! The one error type of this crate.

use crate::ir::ShapeError;
use std::path::PathBuf;

/// Everything that can go wrong loading or evaluating a model. Messages name the file, the node and the op.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid ONNX model (protobuf decoding failed: {message})")]
    Protobuf { path: PathBuf, message: String },
    /// An operator nncert does not implement (or an attribute value it does not support).
    #[error(
        "{path}: node '{node}' uses op {op} (opset {opset}){detail}, which nncert does not support.\nSupported ops: {supported}"
    )]
    UnsupportedOp {
        path: PathBuf,
        node: String,
        op: String,
        opset: i64,
        detail: String,
        supported: String,
    },
    /// The model is well-formed protobuf but not a model nncert can use as it is.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Shape {
        path: PathBuf,
        #[source]
        source: ShapeError,
    },
    #[error("{path}:{line}: {message}")]
    Nnet {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An evaluation input whose size does not match the model.
    #[error("input has {got} values per sample but the model takes {expected} (shape {shape:?})")]
    InputSize {
        got: usize,
        expected: usize,
        shape: Vec<usize>,
    },
}
