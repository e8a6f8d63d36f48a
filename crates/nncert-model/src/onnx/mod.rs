//! ONNX import.
//!
//! The protobuf is decoded with prost into the message types of [`proto`]; the graph is then converted to the
//! IR by folding everything that does not depend on the input into constants (initializers, `Constant` nodes,
//! `Shape` of a tensor — shapes are static — and the shape arithmetic built on them) and mapping the remaining
//! nodes to IR ops. Default-domain opsets 7 and later are read (attributes that became inputs in later opsets,
//! such as Reshape's shape, Slice's starts/ends, Pad's pads, Clip's bounds and Squeeze's axes, are taken from
//! wherever the node has them).
//!
//! Per-sample shapes: a symbolic, unknown or zero dimension of the graph input (the batch dimension) is 1; see
//! [`crate::ir`].
//!
//! Not supported (the load fails with [`ModelError::UnsupportedOp`] naming the node): ops outside
//! [`SUPPORTED_OPS`]; elementwise Mul/Div of two variables and MatMul of two variables (the IR is piecewise
//! linear up to its activations); variable weights, indices, pads, or shapes; 3-D convolutions and pools;
//! non-constant Pad modes; broadcasting that replicates a variable.

// `ModelError` (the crate's one error type) is large; boxing it is the error type's decision, not this module's.
#![allow(clippy::result_large_err)]

mod import;
pub mod proto;
mod tensor;

use crate::error::ModelError;
use crate::ir::Graph;
use prost::Message;
use proto::{ModelProto, ValueInfoProto, data_type, tensor_shape_proto::dimension, type_proto};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The ONNX ops nncert imports (default domain). `Constant`, `ConstantOfShape`, `Range`, `Equal`, `Where` and
/// `Size` are evaluated on constants only (at load time); `Shape` is always folded, shapes being static.
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Equal",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "Neg",
    "Pad",
    "Range",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Whether nncert imports nodes of this op type and domain.
pub fn is_supported(op_type: &str, domain: &str) -> bool {
    (domain.is_empty() || domain == "ai.onnx") && SUPPORTED_OPS.contains(&op_type)
}

fn decode_model(bytes: &[u8], path: &Path) -> Result<ModelProto, ModelError> {
    ModelProto::decode(bytes).map_err(|e| ModelError::Protobuf {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads an ONNX model (not canonicalized: see [`crate::load_model`]).
pub fn load(path: &Path) -> Result<Graph, ModelError> {
    load_bytes(&read(path)?, path)
}

/// Loads an ONNX model from its bytes. `path_for_messages` names the model in errors, and its directory is
/// where external tensor data is looked for.
pub fn load_bytes(bytes: &[u8], path_for_messages: &Path) -> Result<Graph, ModelError> {
    let model = decode_model(bytes, path_for_messages)?;
    import::Importer::run(&model, path_for_messages, path_for_messages.parent())
}

/// A dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size (`dim_value`).
    Fixed(i64),
    /// A named dimension (`dim_param`), usually the batch size.
    Symbolic(String),
    /// Neither a size nor a name.
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbolic(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

/// A graph input or output as declared in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    /// The value's name in the graph.
    pub name: String,
    /// ONNX element type name (`FLOAT`, ...), or `"?"` if not a tensor.
    pub elem_type: String,
    /// `None` when no shape is declared.
    pub dims: Option<Vec<Dim>>,
}

impl fmt::Display for ValueInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.elem_type)?;
        match &self.dims {
            Some(d) => {
                let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
                write!(f, "[{}]", d.join(", "))
            }
            None => write!(f, " (no shape)"),
        }
    }
}

/// One node of the ONNX graph, as listed by [`inspect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name, or its first output if unnamed.
    pub name: String,
    /// ONNX op type (`Conv`, `Gemm`, ...).
    pub op_type: String,
    /// Operator domain (empty for the default ONNX domain).
    pub domain: String,
    /// Whether nncert implements the op type (it may still reject particular attribute values or uses).
    pub supported: bool,
}

/// What an ONNX file contains, read without converting it (so that models nncert cannot import can still be
/// described, with their unsupported ops).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// ONNX IR (file format) version.
    pub ir_version: i64,
    /// Default-domain opset, if declared.
    pub opset: Option<i64>,
    /// Other domains' opsets.
    pub other_opsets: Vec<(String, i64)>,
    /// The tool that wrote the file (`pytorch`, `tf2onnx`, ...) and its version.
    pub producer_name: String,
    pub producer_version: String,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
    /// Number of initializers and their total number of elements.
    pub initializers: usize,
    pub parameters: u64,
    /// Count of each op type among the ONNX nodes (sorted by op type).
    pub op_histogram: Vec<(String, usize)>,
    /// The ONNX nodes in file order.
    pub nodes: Vec<NodeInfo>,
}

impl ModelInfo {
    /// The distinct op types nncert does not implement, sorted.
    pub fn unsupported_ops(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !n.supported)
            .map(|n| n.op_type.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opset = self.opset.map_or("none".to_string(), |o| o.to_string());
        writeln!(
            f,
            "producer: {} {}\nIR version {}, opset {opset}",
            self.producer_name, self.producer_version, self.ir_version
        )?;
        for (d, v) in &self.other_opsets {
            writeln!(f, "opset {d}: {v}")?;
        }
        for i in &self.inputs {
            writeln!(f, "input  {i}")?;
        }
        for o in &self.outputs {
            writeln!(f, "output {o}")?;
        }
        writeln!(
            f,
            "{} initializers, {} parameters, {} nodes",
            self.initializers,
            self.parameters,
            self.nodes.len()
        )?;
        for (op, n) in &self.op_histogram {
            let mark = if is_supported(op, "") {
                ""
            } else {
                "  (not supported)"
            };
            writeln!(f, "  {op:<20} {n}{mark}")?;
        }
        Ok(())
    }
}

fn value_info(v: &ValueInfoProto) -> ValueInfo {
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => ValueInfo {
            name: v.name.clone(),
            elem_type: data_type::name(t.elem_type),
            dims: t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) => Dim::Fixed(*v),
                        Some(dimension::Value::DimParam(p)) => Dim::Symbolic(p.clone()),
                        None => Dim::Unknown,
                    })
                    .collect()
            }),
        },
        None => ValueInfo {
            name: v.name.clone(),
            elem_type: "?".into(),
            dims: None,
        },
    }
}

/// Describes an ONNX file without importing it.
pub fn inspect(path: &Path) -> Result<ModelInfo, ModelError> {
    inspect_bytes(&read(path)?, path)
}

/// [`inspect`] on bytes.
pub fn inspect_bytes(bytes: &[u8], path_for_messages: &Path) -> Result<ModelInfo, ModelError> {
    let m = decode_model(bytes, path_for_messages)?;
    let g = m.graph.clone().unwrap_or_default();
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut hist = BTreeMap::new();
    for n in &g.node {
        *hist.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    Ok(ModelInfo {
        ir_version: m.ir_version,
        opset: import::default_opset(&m),
        other_opsets: m
            .opset_import
            .iter()
            .filter(|o| !(o.domain.is_empty() || o.domain == "ai.onnx"))
            .map(|o| (o.domain.clone(), o.version))
            .collect(),
        producer_name: m.producer_name.clone(),
        producer_version: m.producer_version.clone(),
        inputs: g
            .input
            .iter()
            .filter(|i| !inits.contains(i.name.as_str()))
            .map(value_info)
            .collect(),
        outputs: g.output.iter().map(value_info).collect(),
        initializers: g.initializer.len(),
        parameters: g
            .initializer
            .iter()
            .map(|t| {
                t.dims
                    .iter()
                    .map(|&d| d.max(0) as u64)
                    .fold(1u64, |a, d| a.saturating_mul(d))
            })
            .fold(0u64, |a, n| a.saturating_add(n)),
        op_histogram: hist.into_iter().collect(),
        nodes: g
            .node
            .iter()
            .map(|n| NodeInfo {
                name: import::node_name(n),
                op_type: n.op_type.clone(),
                domain: n.domain.clone(),
                supported: is_supported(&n.op_type, &n.domain),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests;
