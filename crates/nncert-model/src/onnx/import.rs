//! ONNX graph → IR. Every ONNX value is either a *constant* (initializers, Constant nodes, shapes, and anything
//! computed only from constants, folded here at load time) or a *variable* (depends on the network input), which
//! becomes an IR node. Only the nodes the graph output depends on are imported, so dead branches with
//! unsupported ops do not prevent loading.

use super::SUPPORTED_OPS;
use super::proto::{AttributeProto, ModelProto, NodeProto, TensorProto, data_type, type_proto};
use super::tensor::{self, Arith, Tensor, broadcast_shape, checked_computed_numel, checked_numel};
use crate::error::ModelError;
use crate::ir::{
    Conv, ConvTranspose, Graph, GraphBuilder, Linear, NodeId, Op, Pool, Shape, ShapeError,
    SliceAxis,
};
use ndarray::{Array1, Array2, Array4, ArrayD, IxDyn};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

/// Oldest default-domain opset whose operator semantics this importer implements.
pub(crate) const MIN_OPSET: i64 = 7;

/// Largest integer attribute (pad, stride, dilation, group...) accepted: far above any real network, and small
/// enough that shape arithmetic in the IR can never overflow.
const MAX_ATTR: i64 = 1 << 24;

/// A value of the ONNX graph during import.
#[derive(Clone, Debug)]
enum Value {
    Const(Rc<Tensor>),
    Var(NodeId),
}

/// Why one node could not be imported; turned into a [`ModelError`] naming the node by [`Importer::run`].
#[derive(Debug)]
enum NodeErr {
    /// The op, or this use of it; the string is the `detail` of [`ModelError::UnsupportedOp`].
    Unsupported(String),
    /// The node is malformed or inconsistent.
    Invalid(String),
    Shape(ShapeError),
}

impl From<ShapeError> for NodeErr {
    fn from(e: ShapeError) -> Self {
        NodeErr::Shape(e)
    }
}

impl From<String> for NodeErr {
    fn from(e: String) -> Self {
        NodeErr::Invalid(e)
    }
}

type NRes<T> = Result<T, NodeErr>;

macro_rules! invalid {
    ($($t:tt)*) => { NodeErr::Invalid(format!($($t)*)) };
}

fn unsupported(detail: impl Into<String>) -> NodeErr {
    NodeErr::Unsupported(detail.into())
}

/// Attribute access by name.
struct Attrs<'a>(&'a [AttributeProto]);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }
    fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }
    fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
    fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn tensor(&self, name: &str) -> Option<&TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
}

/// `axis` in `[-rank, rank)` → `[0, rank)`.
fn norm_axis(axis: i64, rank: usize) -> NRes<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(invalid!("axis {axis} out of range for rank {rank}"))
    }
}

/// A non-negative integer attribute value, bounded by [`MAX_ATTR`].
fn attr_usize(v: i64, what: &str) -> NRes<usize> {
    if (0..=MAX_ATTR).contains(&v) {
        Ok(v as usize)
    } else if v < 0 {
        Err(unsupported(format!(" with negative {what} {v}")))
    } else {
        Err(invalid!("{what} {v} is too large"))
    }
}

/// Like [`attr_usize`] but also rejects 0 (strides, dilations, groups).
fn attr_pos(v: i64, what: &str) -> NRes<usize> {
    match attr_usize(v, what)? {
        0 => Err(invalid!("{what} must be positive")),
        x => Ok(x),
    }
}

/// The target shape of ONNX Reshape (`0` copies the input's dim unless `allowzero`, `-1` is inferred).
fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> NRes<Shape> {
    let numel: usize = checked_numel(input)?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 => {
                if infer.replace(i).is_some() {
                    return Err(invalid!("shape {spec:?} has more than one -1"));
                }
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                invalid!("shape {spec:?}: 0 copies a dim the input {input:?} lacks")
            })?),
            s if s >= 0 => {
                out.push(usize::try_from(s).map_err(|_| invalid!("shape entry {s} too large"))?)
            }
            s => return Err(invalid!("invalid shape entry {s} in {spec:?}")),
        }
    }
    let known = checked_numel(&out)?;
    if let Some(i) = infer {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(invalid!("cannot reshape {input:?} to {spec:?}"));
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(invalid!(
            "cannot reshape {input:?} ({numel} elements) to {spec:?}"
        ));
    }
    Ok(out)
}

/// ONNX Flatten: `[Π d[..axis], Π d[axis..]]`.
fn flatten_shape(input: &[usize], axis: i64) -> NRes<Shape> {
    let r = input.len() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&a) {
        return Err(invalid!("axis {axis} out of range for rank {r}"));
    }
    let a = a as usize;
    Ok(vec![
        input[..a].iter().product(),
        input[a..].iter().product(),
    ])
}

fn squeeze_shape(input: &[usize], axes: Option<Vec<i64>>) -> NRes<Shape> {
    match axes {
        None => Ok(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let mut drop = vec![false; input.len()];
            for a in axes {
                let a = norm_axis(a, input.len())?;
                if input[a] != 1 {
                    return Err(invalid!(
                        "cannot squeeze axis {a} of size {} in {input:?}",
                        input[a]
                    ));
                }
                drop[a] = true;
            }
            Ok(input
                .iter()
                .zip(drop)
                .filter(|(_, d)| !d)
                .map(|(&s, _)| s)
                .collect())
        }
    }
}

fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> NRes<Shape> {
    let rank = input.len() + axes.len();
    let mut ones = vec![false; rank];
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if std::mem::replace(&mut ones[a], true) {
            return Err(invalid!("repeated axis in {axes:?}"));
        }
    }
    let mut it = input.iter();
    Ok(ones
        .into_iter()
        .map(|one| if one { 1 } else { *it.next().unwrap_or(&1) })
        .collect())
}

/// Normalizes ONNX Slice parameters (clamping per the operator's rules) to `(start, step, len)` per axis.
fn slice_params(
    input: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> NRes<Vec<(usize, isize, usize)>> {
    let mut out: Vec<(usize, isize, usize)> = input.iter().map(|&d| (0, 1, d)).collect();
    if starts.len() != ends.len() {
        return Err(invalid!("{} starts but {} ends", starts.len(), ends.len()));
    }
    let default_axes: Vec<i64> = (0..starts.len() as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    if axes.len() != starts.len() || steps.is_some_and(|s| s.len() != starts.len()) {
        return Err(invalid!("starts, ends, axes and steps differ in length"));
    }
    let mut seen = HashSet::new();
    for (k, &a) in axes.iter().enumerate() {
        let ax = norm_axis(a, input.len())?;
        if !seen.insert(ax) {
            return Err(invalid!("axis {a} repeated"));
        }
        let dim = input[ax] as i128;
        let step = steps.map_or(1, |s| s[k]) as i128;
        if step == 0 {
            return Err(invalid!("step 0"));
        }
        let (mut s, mut e) = (starts[k] as i128, ends[k] as i128);
        if s < 0 {
            s += dim;
        }
        if e < 0 {
            e += dim;
        }
        let len = if step > 0 {
            s = s.clamp(0, dim);
            e = e.clamp(0, dim);
            if e > s { (e - s + step - 1) / step } else { 0 }
        } else {
            s = s.clamp(0, dim - 1);
            e = e.clamp(-1, dim - 1);
            if s > e {
                (s - e - step - 1) / (-step)
            } else {
                0
            }
        };
        let step = isize::try_from(step).map_err(|_| invalid!("step too large"))?;
        out[ax] = (s.max(0) as usize, step, len as usize);
    }
    Ok(out)
}

/// Sizes of the parts of an ONNX Split of an axis of size `dim`.
fn split_sizes(
    dim: usize,
    split: Option<Vec<i64>>,
    parts: usize,
    num_outputs: Option<i64>,
) -> NRes<Vec<usize>> {
    if let Some(split) = split {
        let sizes: Vec<usize> = split
            .iter()
            .map(|&s| attr_usize(s, "split size"))
            .collect::<NRes<_>>()?;
        if sizes.iter().sum::<usize>() != dim {
            return Err(invalid!("split {split:?} does not add up to {dim}"));
        }
        return Ok(sizes);
    }
    if let Some(n) = num_outputs {
        // Opset 18: ceil(dim / n) per part, the last one smaller.
        let n = attr_pos(n, "num_outputs")?;
        let chunk = dim.div_ceil(n);
        return Ok((0..n)
            .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
            .collect());
    }
    if parts == 0 || !dim.is_multiple_of(parts) {
        return Err(invalid!("cannot split {dim} into {parts} equal parts"));
    }
    Ok(vec![dim / parts; parts])
}

/// Indices (possibly negative) into an axis of size `dim` → non-negative.
fn gather_indices(dim: usize, idx: &[i64]) -> NRes<Vec<usize>> {
    idx.iter()
        .map(|&i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            if (0..dim as i64).contains(&j) {
                Ok(j as usize)
            } else {
                Err(invalid!("index {i} out of range for an axis of size {dim}"))
            }
        })
        .collect()
}

fn perm_of(attr: Option<Vec<i64>>, rank: usize) -> NRes<Vec<usize>> {
    let perm: Vec<usize> = match attr {
        None => (0..rank).rev().collect(),
        Some(p) => p.iter().map(|&a| norm_axis(a, rank)).collect::<NRes<_>>()?,
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        return Err(invalid!(
            "perm {perm:?} is not a permutation of {rank} axes"
        ));
    }
    Ok(perm)
}

/// Pads `[begin.., end..]` from `auto_pad` or the explicit `pads` attribute.
fn resolve_pads(
    auto_pad: &str,
    in_sz: &[usize],
    eff_k: &[usize],
    strides: &[usize],
    explicit: Option<Vec<i64>>,
) -> NRes<Vec<usize>> {
    let n = in_sz.len();
    match auto_pad {
        "" | "NOTSET" => match explicit {
            None => Ok(vec![0; 2 * n]),
            Some(p) if p.len() == 2 * n => p.iter().map(|&v| attr_usize(v, "pads")).collect(),
            Some(p) => Err(invalid!("pads {p:?} should have {} entries", 2 * n)),
        },
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = vec![0; 2 * n];
            for i in 0..n {
                let out = in_sz[i].div_ceil(strides[i]);
                let total = ((out - 1) * strides[i] + eff_k[i]).saturating_sub(in_sz[i]);
                let small = total / 2;
                let (b, e) = if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = b;
                pads[n + i] = e;
            }
            Ok(pads)
        }
        other => Err(unsupported(format!(" with auto_pad='{other}'"))),
    }
}

/// The spatial geometry of a Conv/ConvTranspose/pool node, read from its attributes.
struct Geometry {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
}

impl Geometry {
    fn read(a: &Attrs, kernel: Vec<usize>) -> NRes<Geometry> {
        let n = kernel.len();
        let list = |name: &str, pos: bool| -> NRes<Vec<usize>> {
            match a.ints(name) {
                None => Ok(vec![1; n]),
                Some(v) if v.len() == n => v
                    .iter()
                    .map(|&x| {
                        if pos {
                            attr_pos(x, name)
                        } else {
                            attr_usize(x, name)
                        }
                    })
                    .collect(),
                Some(v) => Err(invalid!("{name} {v:?} should have {n} entries")),
            }
        };
        Ok(Geometry {
            strides: list("strides", true)?,
            dilations: list("dilations", true)?,
            kernel,
        })
    }
    fn eff_kernel(&self) -> Vec<usize> {
        self.kernel
            .iter()
            .zip(&self.dilations)
            .map(|(&k, &d)| (k - 1) * d + 1)
            .collect()
    }
}

/// 1-D or 2-D spatial parameters → the IR's 2-D arrays (a 1-D op runs on H = 1).
fn to2(v: &[usize]) -> [usize; 2] {
    match v {
        [w] => [1, *w],
        [h, w] => [*h, *w],
        _ => [1, 1],
    }
}

/// `[begin.., end..]` → `[top, left, bottom, right]`.
fn pads4(p: &[usize]) -> [usize; 4] {
    match p {
        [b, e] => [0, *b, 0, *e],
        [t, l, b, r] => [*t, *l, *b, *r],
        _ => [0; 4],
    }
}

/// Imports one model.
pub(crate) struct Importer<'a> {
    path: &'a Path,
    base_dir: Option<&'a Path>,
    opset: i64,
    b: GraphBuilder,
    values: HashMap<String, Value>,
}

/// The default-domain opset of a model, if declared.
pub(crate) fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
}

/// The name nncert uses for a node: its name, or its first output if unnamed.
pub(crate) fn node_name(node: &NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else {
        node.output.first().cloned().unwrap_or_default()
    }
}

fn is_default_domain(d: &str) -> bool {
    d.is_empty() || d == "ai.onnx"
}

impl<'a> Importer<'a> {
    /// Converts a decoded model to a [`Graph`].
    pub(crate) fn run(
        model: &ModelProto,
        path: &'a Path,
        base_dir: Option<&'a Path>,
    ) -> Result<Graph, ModelError> {
        let inv = |message: String| ModelError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let opset = default_opset(model).ok_or_else(|| {
            inv("the model declares no opset for the default ONNX domain (opset_import)".into())
        })?;
        if opset < MIN_OPSET {
            return Err(inv(format!(
                "opset {opset} is older than the oldest nncert supports ({MIN_OPSET}); convert the model with \
                 onnx.version_converter.convert_version(model, 13)"
            )));
        }
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| inv("the model has no graph".into()))?;

        let mut values = HashMap::new();
        for t in &graph.initializer {
            let v = tensor::decode(t, base_dir)
                .map_err(|e| inv(format!("initializer '{}': {e}", t.name)))?;
            values.insert(t.name.clone(), Value::Const(Rc::new(v)));
        }
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !values.contains_key(&i.name))
            .collect();
        let [input] = inputs.as_slice() else {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(inv(format!(
                "nncert needs exactly one graph input (besides initializers), the model has {}: {names:?}",
                names.len()
            )));
        };
        let [output] = graph.output.as_slice() else {
            let names: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
            return Err(inv(format!(
                "nncert needs exactly one graph output, the model has {}: {names:?}",
                names.len()
            )));
        };
        let Some(type_proto::Value::TensorType(tt)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(inv(format!("input '{}' is not a tensor", input.name)));
        };
        if tt.elem_type != data_type::FLOAT {
            return Err(inv(format!(
                "input '{}' has element type {}; nncert needs FLOAT (f32) inputs",
                input.name,
                data_type::name(tt.elem_type)
            )));
        }
        let dims = tt
            .shape
            .as_ref()
            .ok_or_else(|| inv(format!("input '{}' has no declared shape", input.name)))?;
        // Symbolic, unknown or 0 dims are the batch dimension: shapes are per sample, so they are 1.
        use super::proto::tensor_shape_proto::dimension::Value as D;
        let shape: Shape = dims
            .dim
            .iter()
            .map(|d| match d.value {
                Some(D::DimValue(v)) if v > 0 => usize::try_from(v).unwrap_or(usize::MAX),
                _ => 1,
            })
            .collect();
        checked_numel(&shape).map_err(|e| inv(format!("input '{}': {e}", input.name)))?;

        let mut imp = Importer {
            path,
            base_dir,
            opset,
            b: GraphBuilder::new(input.name.clone(), shape),
            values,
        };
        imp.values
            .insert(input.name.clone(), Value::Var(imp.b.input_id()));

        // The nodes the output depends on.
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for o in &n.output {
                if !o.is_empty() {
                    producer.insert(o.as_str(), i);
                }
            }
        }
        let mut needed = vec![false; graph.node.len()];
        let mut stack = vec![output.name.as_str()];
        while let Some(v) = stack.pop() {
            if imp.values.contains_key(v) {
                continue;
            }
            if let Some(&i) = producer.get(v)
                && !std::mem::replace(&mut needed[i], true)
            {
                stack.extend(
                    graph.node[i]
                        .input
                        .iter()
                        .filter(|s| !s.is_empty())
                        .map(|s| s.as_str()),
                );
            }
        }

        // ONNX requires topological order, but process out-of-order nodes when their inputs become ready.
        let mut pending: Vec<usize> = (0..graph.node.len()).filter(|&i| needed[i]).collect();
        while !pending.is_empty() {
            let mut next = Vec::new();
            for &i in &pending {
                let node = &graph.node[i];
                if node
                    .input
                    .iter()
                    .all(|s| s.is_empty() || imp.values.contains_key(s))
                {
                    imp.node(node)?;
                } else {
                    next.push(i);
                }
            }
            if next.len() == pending.len() {
                let node = &graph.node[next[0]];
                let missing = node
                    .input
                    .iter()
                    .find(|s| !s.is_empty() && !imp.values.contains_key(*s))
                    .cloned()
                    .unwrap_or_default();
                let why = match producer.get(missing.as_str()) {
                    Some(&p) if !next.contains(&p) => {
                        let pn = &graph.node[p];
                        format!(
                            "it is an optional output of node '{}' ({}) that nncert does not compute",
                            node_name(pn),
                            pn.op_type
                        )
                    }
                    Some(_) => "the graph has a cycle".to_string(),
                    None => "no graph input, initializer or node produces it".to_string(),
                };
                return Err(inv(format!(
                    "node '{}' ({}) reads '{missing}', but {why}",
                    node_name(node),
                    node.op_type
                )));
            }
            pending = next;
        }

        match imp.values.get(&output.name) {
            Some(Value::Var(id)) => Ok(imp.b.finish(*id)),
            Some(Value::Const(_)) => Err(inv(format!(
                "the output '{}' does not depend on the input",
                output.name
            ))),
            None => Err(inv(format!(
                "no node produces the output '{}'",
                output.name
            ))),
        }
    }

    /// Imports one node, registering its outputs.
    fn node(&mut self, node: &NodeProto) -> Result<(), ModelError> {
        let name = node_name(node);
        let ins: Vec<Option<Value>> = node
            .input
            .iter()
            .map(|s| {
                if s.is_empty() {
                    None
                } else {
                    self.values.get(s).cloned()
                }
            })
            .collect();
        let any_var = ins.iter().any(|v| matches!(v, Some(Value::Var(_))));
        let res = if !is_default_domain(&node.domain) {
            Err(unsupported(format!(" from domain '{}'", node.domain)))
        } else if any_var {
            self.var_op(node, &name, &ins)
        } else {
            let consts: Vec<Option<Rc<Tensor>>> = ins
                .iter()
                .map(|v| match v {
                    Some(Value::Const(t)) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            self.const_op(node, &consts)
                .map(|ts| ts.into_iter().map(|t| Value::Const(Rc::new(t))).collect())
        };
        let outs = res.map_err(|e| match e {
            NodeErr::Unsupported(detail) => ModelError::UnsupportedOp {
                path: self.path.to_path_buf(),
                node: name.clone(),
                op: node.op_type.clone(),
                opset: self.opset,
                detail,
                supported: SUPPORTED_OPS.join(", "),
            },
            NodeErr::Invalid(m) => ModelError::Invalid {
                path: self.path.to_path_buf(),
                message: format!("node '{name}' ({}): {m}", node.op_type),
            },
            NodeErr::Shape(source) => ModelError::Shape {
                path: self.path.to_path_buf(),
                source,
            },
        })?;
        for (o, v) in node.output.iter().zip(outs) {
            if !o.is_empty() {
                self.values.insert(o.clone(), v);
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------------------------
    // Constants

    /// Evaluates a node all of whose inputs are constants.
    fn const_op(&self, node: &NodeProto, ins: &[Option<Rc<Tensor>>]) -> NRes<Vec<Tensor>> {
        let a = Attrs(&node.attribute);
        let req = |i: usize| -> NRes<&Tensor> {
            ins.get(i)
                .and_then(|t| t.as_deref())
                .ok_or_else(|| invalid!("missing input #{i}"))
        };
        let opt = |i: usize| ins.get(i).and_then(|t| t.as_deref());
        let one = |t: Tensor| Ok(vec![t]);
        match node.op_type.as_str() {
            "Constant" => {
                if let Some(t) = a.tensor("value") {
                    return one(tensor::decode(t, self.base_dir)?);
                }
                if let Some(at) = a.get("value_float") {
                    return one(Tensor::F32(ArrayD::from_elem(IxDyn(&[]), at.f)));
                }
                if let Some(at) = a.get("value_floats") {
                    let v = at.floats.clone();
                    return one(Tensor::F32(
                        ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| e.to_string())?,
                    ));
                }
                if let Some(at) = a.get("value_int") {
                    return one(Tensor::I64(ArrayD::from_elem(IxDyn(&[]), at.i)));
                }
                if let Some(at) = a.get("value_ints") {
                    return one(Tensor::from_i64_vec(at.ints.clone()));
                }
                Err(unsupported(" without a numeric 'value' attribute"))
            }
            "Identity" | "Dropout" => one(req(0)?.clone()),
            "Cast" => {
                let x = req(0)?;
                let to = a.int("to", data_type::FLOAT as i64) as i32;
                match to {
                    data_type::FLOAT
                    | data_type::DOUBLE
                    | data_type::FLOAT16
                    | data_type::BFLOAT16 => one(Tensor::F32(x.to_f32())),
                    data_type::BOOL => one(Tensor::I64(x.to_f32().mapv(|v| (v != 0.0) as i64))),
                    data_type::STRING
                    | data_type::COMPLEX64
                    | data_type::COMPLEX128
                    | data_type::UNDEFINED => {
                        Err(unsupported(format!(" to {}", data_type::name(to))))
                    }
                    _ => one(match x {
                        Tensor::I64(v) => Tensor::I64(v.clone()),
                        Tensor::F32(v) => Tensor::I64(v.mapv(|f| f.trunc() as i64)),
                    }),
                }
            }
            "Shape" => one(self.shape_tensor(req(0)?.shape(), &a)),
            "Size" => one(Tensor::I64(ArrayD::from_elem(
                IxDyn(&[]),
                req(0)?.len() as i64,
            ))),
            "Add" => one(tensor::arith(Arith::Add, req(0)?, req(1)?)?),
            "Sub" => one(tensor::arith(Arith::Sub, req(0)?, req(1)?)?),
            "Mul" => one(tensor::arith(Arith::Mul, req(0)?, req(1)?)?),
            "Div" => one(tensor::arith(Arith::Div, req(0)?, req(1)?)?),
            "Neg" => one(match req(0)? {
                Tensor::F32(v) => Tensor::F32(v.mapv(|x| -x)),
                Tensor::I64(v) => Tensor::I64(v.mapv(|x| x.wrapping_neg())),
            }),
            "Relu" => one(match req(0)? {
                Tensor::F32(v) => Tensor::F32(v.mapv(|x| x.max(0.0))),
                Tensor::I64(v) => Tensor::I64(v.mapv(|x| x.max(0))),
            }),
            "Equal" => one(tensor::equal(req(0)?, req(1)?)?),
            "Where" => one(tensor::where_(req(0)?, req(1)?, req(2)?)?),
            "Gather" => {
                let x = req(0)?;
                let idx = req(1)?;
                let axis = norm_axis(a.int("axis", 0), x.shape().len())?;
                let flat = gather_indices(x.shape()[axis], &idx.to_i64_vec()?)?;
                let ishape = idx.shape().to_vec();
                one(x.map_layout(
                    |v| tensor::gather(v, axis, &flat, &ishape),
                    |v| tensor::gather(v, axis, &flat, &ishape),
                )?)
            }
            "Concat" => {
                let ts: Vec<Tensor> = ins.iter().flatten().map(|t| (**t).clone()).collect();
                let rank = ts.first().map_or(0, |t| t.shape().len());
                let axis = norm_axis(a.int("axis", 0), rank)?;
                let total: usize = ts.iter().map(|t| t.len()).sum();
                checked_computed_numel(&[total])?;
                one(tensor::concat(&ts, axis)?)
            }
            "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => {
                let x = req(0)?;
                let shape =
                    self.reshape_like_shape(node, &a, x.shape(), |i| Ok(opt(i).cloned()))?;
                one(x.map_layout(
                    |v| tensor::reshape(v, &shape),
                    |v| tensor::reshape(v, &shape),
                )?)
            }
            "Transpose" => {
                let x = req(0)?;
                let perm = perm_of(a.ints("perm"), x.shape().len())?;
                one(x.map_layout(
                    |v| Ok(tensor::transpose(v, &perm)),
                    |v| Ok(tensor::transpose(v, &perm)),
                )?)
            }
            "Slice" => {
                let x = req(0)?;
                let p = self.slice_of(node, &a, x.shape(), |i| Ok(opt(i).cloned()))?;
                one(x.map_layout(
                    |v| Ok(tensor::strided(v, &p)),
                    |v| Ok(tensor::strided(v, &p)),
                )?)
            }
            "Split" => {
                let x = req(0)?;
                let axis = norm_axis(a.int("axis", 0), x.shape().len())?;
                let sizes = self.split_of(node, &a, x.shape()[axis], |i| Ok(opt(i).cloned()))?;
                let mut off = 0;
                let mut outs = Vec::new();
                for s in sizes {
                    let mut p: Vec<(usize, isize, usize)> =
                        x.shape().iter().map(|&d| (0, 1, d)).collect();
                    p[axis] = (off, 1, s);
                    off += s;
                    outs.push(x.map_layout(
                        |v| Ok(tensor::strided(v, &p)),
                        |v| Ok(tensor::strided(v, &p)),
                    )?);
                }
                Ok(outs)
            }
            "ConstantOfShape" => {
                let shape: Vec<usize> = req(0)?
                    .to_i64_vec()?
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| invalid!("negative dimension {d}")))
                    .collect::<NRes<_>>()?;
                checked_computed_numel(&shape)?;
                let value = match a.tensor("value") {
                    Some(t) => tensor::decode(t, self.base_dir)?,
                    None => Tensor::F32(ArrayD::from_elem(IxDyn(&[1]), 0.0)),
                };
                one(match value {
                    Tensor::F32(v) => Tensor::F32(ArrayD::from_elem(
                        IxDyn(&shape),
                        v.iter().next().copied().unwrap_or(0.0),
                    )),
                    Tensor::I64(v) => Tensor::I64(ArrayD::from_elem(
                        IxDyn(&shape),
                        v.iter().next().copied().unwrap_or(0),
                    )),
                })
            }
            "Range" => {
                let (s, l, d) = (req(0)?, req(1)?, req(2)?);
                let all_int = [s, l, d].iter().all(|t| matches!(t, Tensor::I64(_)));
                let (sf, lf, df) = (
                    s.scalar_f32()? as f64,
                    l.scalar_f32()? as f64,
                    d.scalar_f32()? as f64,
                );
                if df == 0.0 {
                    return Err(invalid!("delta 0"));
                }
                let n = ((lf - sf) / df).ceil().max(0.0);
                if n.is_nan() || n > tensor::MAX_COMPUTED_NUMEL as f64 {
                    return Err(invalid!("range too long"));
                }
                let n = n as usize;
                if all_int {
                    let (si, di) = (s.scalar_i64()?, d.scalar_i64()?);
                    one(Tensor::from_i64_vec(
                        (0..n as i64)
                            .map(|i| si.wrapping_add(i.wrapping_mul(di)))
                            .collect(),
                    ))
                } else {
                    let (sf, df) = (s.scalar_f32()?, d.scalar_f32()?);
                    let v: Vec<f32> = (0..n).map(|i| sf + i as f32 * df).collect();
                    one(Tensor::F32(
                        ArrayD::from_shape_vec(IxDyn(&[n]), v).map_err(|e| e.to_string())?,
                    ))
                }
            }
            "MatMul" => {
                let (x, y) = (req(0)?.to_f32(), req(1)?.to_f32());
                let (Ok(x), Ok(y)) = (
                    x.into_dimensionality::<ndarray::Ix2>(),
                    y.into_dimensionality::<ndarray::Ix2>(),
                ) else {
                    return Err(unsupported(" on constants that are not matrices"));
                };
                if x.ncols() != y.nrows() {
                    return Err(invalid!(
                        "shapes {:?} and {:?} do not multiply",
                        x.shape(),
                        y.shape()
                    ));
                }
                checked_computed_numel(&[x.nrows(), y.ncols()])?;
                one(Tensor::F32(x.dot(&y).into_dyn()))
            }
            op if SUPPORTED_OPS.contains(&op) => Err(unsupported(" on constant inputs")),
            _ => Err(unsupported("")),
        }
    }

    /// ONNX Shape (with opset 15's `start`/`end`).
    fn shape_tensor(&self, shape: &[usize], a: &Attrs) -> Tensor {
        let r = shape.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clamp(a.int("start", 0));
        let end = clamp(a.int("end", r));
        let dims = if start < end {
            &shape[start..end]
        } else {
            &[][..]
        };
        Tensor::from_i64_vec(dims.iter().map(|&d| d as i64).collect())
    }

    /// The output shape of Reshape, Flatten, Squeeze, Unsqueeze. Parameters come from the input (newer opsets)
    /// or, when that input is absent, the attribute (older opsets).
    fn reshape_like_shape(
        &self,
        node: &NodeProto,
        a: &Attrs,
        input: &[usize],
        konst: impl Fn(usize) -> NRes<Option<Tensor>>,
    ) -> NRes<Shape> {
        let from = |i: usize, attr: &str| -> NRes<Option<Vec<i64>>> {
            match konst(i)? {
                Some(t) => Ok(Some(t.to_i64_vec()?)),
                None => Ok(a.ints(attr)),
            }
        };
        let shape = match node.op_type.as_str() {
            "Flatten" => flatten_shape(input, a.int("axis", 1))?,
            "Reshape" => {
                let spec = from(1, "shape")?.ok_or_else(|| invalid!("no target shape"))?;
                reshape_target(input, &spec, a.int("allowzero", 0) != 0)?
            }
            "Squeeze" => squeeze_shape(input, from(1, "axes")?)?,
            _ => {
                let axes = from(1, "axes")?.ok_or_else(|| invalid!("no axes"))?;
                unsqueeze_shape(input, &axes)?
            }
        };
        checked_numel(&shape)?;
        Ok(shape)
    }

    /// Normalized Slice parameters from inputs (opset ≥ 10) or attributes (opset < 10).
    fn slice_of(
        &self,
        node: &NodeProto,
        a: &Attrs,
        input: &[usize],
        konst: impl Fn(usize) -> NRes<Option<Tensor>>,
    ) -> NRes<Vec<(usize, isize, usize)>> {
        let ints = |i: usize| -> NRes<Option<Vec<i64>>> {
            konst(i)?
                .map(|t| t.to_i64_vec().map_err(NodeErr::Invalid))
                .transpose()
        };
        let (starts, ends, axes, steps) = if node.input.len() > 1 {
            (
                ints(1)?.ok_or_else(|| invalid!("no starts"))?,
                ints(2)?.ok_or_else(|| invalid!("no ends"))?,
                ints(3)?,
                ints(4)?,
            )
        } else {
            (
                a.ints("starts").ok_or_else(|| invalid!("no starts"))?,
                a.ints("ends").ok_or_else(|| invalid!("no ends"))?,
                a.ints("axes"),
                None,
            )
        };
        slice_params(input, &starts, &ends, axes.as_deref(), steps.as_deref())
    }

    /// Split sizes from the `split` input (opset ≥ 13), attribute (older), `num_outputs` (opset 18) or the
    /// number of outputs.
    fn split_of(
        &self,
        node: &NodeProto,
        a: &Attrs,
        dim: usize,
        konst: impl Fn(usize) -> NRes<Option<Tensor>>,
    ) -> NRes<Vec<usize>> {
        let split = match konst(1)? {
            Some(t) => Some(t.to_i64_vec()?),
            None => a.ints("split"),
        };
        let n_out = node.output.len();
        let sizes = split_sizes(dim, split, n_out, a.get("num_outputs").map(|x| x.i))?;
        if sizes.len() != n_out {
            return Err(invalid!("{} parts for {n_out} outputs", sizes.len()));
        }
        Ok(sizes)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Variables

    fn shape(&self, id: NodeId) -> Shape {
        self.b.shape(id).clone()
    }

    /// Appends a node, rejecting empty or oversized results.
    fn push(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<NodeId>,
        shape: Option<Shape>,
    ) -> NRes<NodeId> {
        let id = self.b.push(name, op, inputs, shape)?;
        let s = self.b.shape(id);
        if s.contains(&0) {
            return Err(invalid!("produces an empty tensor of shape {s:?}"));
        }
        checked_numel(s)?;
        Ok(id)
    }

    fn reshape(&mut self, name: impl Into<String>, x: NodeId, shape: Shape) -> NRes<NodeId> {
        if *self.b.shape(x) == shape {
            return Ok(x);
        }
        checked_numel(&shape)?;
        self.push(name, Op::Reshape, vec![x], Some(shape))
    }

    /// A 1-D spatial op's input `[.., C, L]` as `[.., C, 1, L]`.
    fn lift_1d(&mut self, name: &str, x: NodeId) -> NRes<NodeId> {
        let mut s = self.shape(x);
        let l = s.len();
        s.insert(l - 1, 1);
        self.reshape(format!("{name}/to2d"), x, s)
    }

    /// Back from `[.., C, 1, L]` to `[.., C, L]`.
    fn drop_1d(&mut self, name: &str, y: NodeId) -> NRes<NodeId> {
        let mut s = self.shape(y);
        let l = s.len();
        s.remove(l - 2);
        self.reshape(format!("{name}/to1d"), y, s)
    }

    /// Imports a node with at least one variable input.
    fn var_op(&mut self, node: &NodeProto, name: &str, ins: &[Option<Value>]) -> NRes<Vec<Value>> {
        let a = Attrs(&node.attribute);
        let var = |i: usize| -> NRes<NodeId> {
            match ins.get(i) {
                Some(Some(Value::Var(id))) => Ok(*id),
                Some(Some(Value::Const(_))) => {
                    Err(unsupported(format!(" with a constant input #{i}")))
                }
                _ => Err(invalid!("missing input #{i}")),
            }
        };
        let konst = |i: usize| -> NRes<Option<Tensor>> {
            match ins.get(i) {
                Some(Some(Value::Const(t))) => Ok(Some((**t).clone())),
                Some(Some(Value::Var(_))) => {
                    Err(unsupported(format!(" with a variable input #{i}")))
                }
                _ => Ok(None),
            }
        };
        let req_const = |i: usize, what: &str| -> NRes<Tensor> {
            konst(i)?.ok_or_else(|| invalid!("missing {what} (input #{i})"))
        };
        let one = |id: NodeId| Ok(vec![Value::Var(id)]);
        let op = node.op_type.as_str();
        match op {
            "Identity" => one(var(0)?),
            "Dropout" => {
                if let Some(t) = konst(2)?
                    && t.scalar_i64().unwrap_or(0) != 0
                {
                    return Err(unsupported(" in training mode"));
                }
                one(var(0)?)
            }
            "Cast" => {
                let to = a.int("to", data_type::FLOAT as i64) as i32;
                if to == data_type::FLOAT || to == data_type::DOUBLE {
                    one(var(0)?)
                } else {
                    Err(unsupported(format!(
                        " to {} on a variable",
                        data_type::name(to)
                    )))
                }
            }
            "Shape" => {
                let s = self.shape(var(0)?);
                Ok(vec![Value::Const(Rc::new(self.shape_tensor(&s, &a)))])
            }
            "Size" => {
                let n = self.shape(var(0)?).iter().product::<usize>() as i64;
                Ok(vec![Value::Const(Rc::new(Tensor::I64(ArrayD::from_elem(
                    IxDyn(&[]),
                    n,
                ))))])
            }
            "Relu" => one(self.push(name, Op::Relu, vec![var(0)?], None)?),
            "Sigmoid" => one(self.push(name, Op::Sigmoid, vec![var(0)?], None)?),
            "Tanh" => one(self.push(name, Op::Tanh, vec![var(0)?], None)?),
            "LeakyRelu" => {
                let alpha = a.float("alpha", 0.01);
                one(self.push(name, Op::LeakyRelu { alpha }, vec![var(0)?], None)?)
            }
            "Neg" => {
                let op = Op::Affine {
                    scale: Some(ArrayD::from_elem(IxDyn(&[]), -1.0)),
                    shift: None,
                };
                one(self.push(name, op, vec![var(0)?], None)?)
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let ar = match op {
                    "Add" => Arith::Add,
                    "Sub" => Arith::Sub,
                    "Mul" => Arith::Mul,
                    _ => Arith::Div,
                };
                let (Some(x), Some(y)) = (
                    ins.first().cloned().flatten(),
                    ins.get(1).cloned().flatten(),
                ) else {
                    return Err(invalid!("needs two inputs"));
                };
                one(self.binary(name, ar, x, y)?)
            }
            "Clip" => {
                let x = var(0)?;
                let min = match konst(1)? {
                    Some(t) => t.scalar_f32()?,
                    None => a.float("min", f32::NEG_INFINITY),
                };
                let max = match konst(2)? {
                    Some(t) => t.scalar_f32()?,
                    None => a.float("max", f32::INFINITY),
                };
                one(self.push(name, Op::Clip { min, max }, vec![x], None)?)
            }
            "Softmax" => {
                let x = var(0)?;
                let s = self.shape(x);
                let r = s.len();
                if self.opset < 13 {
                    // Before opset 13 Softmax flattens to 2-D at `axis` (default 1) and normalizes over the
                    // whole second part; that equals a softmax over the last axis only when axis = rank - 1.
                    let axis = norm_axis(a.int("axis", 1), r)?;
                    if axis == r - 1 {
                        return one(self.push(name, Op::Softmax { axis }, vec![x], None)?);
                    }
                    let flat = flatten_shape(&s, axis as i64)?;
                    let f = self.reshape(format!("{name}/to2d"), x, flat)?;
                    let y = self.push(name, Op::Softmax { axis: 1 }, vec![f], None)?;
                    one(self.reshape(format!("{name}/back"), y, s)?)
                } else {
                    let axis = norm_axis(a.int("axis", -1), r)?;
                    one(self.push(name, Op::Softmax { axis }, vec![x], None)?)
                }
            }
            "Gemm" => one(self.gemm(name, &a, ins)?),
            "MatMul" => one(self.matmul(name, ins)?),
            "Conv" => {
                let x = var(0)?;
                let w = match konst(1) {
                    Ok(Some(w)) => w.to_f32(),
                    Ok(None) => return Err(invalid!("missing weight")),
                    Err(_) => return Err(unsupported(" with a variable weight")),
                };
                let bias = konst(2)?.map(|b| b.to_f32());
                one(self.conv(name, &a, x, w, bias, false)?)
            }
            "ConvTranspose" => {
                let x = var(0)?;
                let w = match konst(1) {
                    Ok(Some(w)) => w.to_f32(),
                    Ok(None) => return Err(invalid!("missing weight")),
                    Err(_) => return Err(unsupported(" with a variable weight")),
                };
                let bias = konst(2)?.map(|b| b.to_f32());
                one(self.conv(name, &a, x, w, bias, true)?)
            }
            "BatchNormalization" => {
                let x = var(0)?;
                if a.int("spatial", 1) == 0 {
                    return Err(unsupported(" with spatial=0"));
                }
                if a.int("training_mode", 0) != 0 {
                    return Err(unsupported(" in training mode"));
                }
                let eps = a.float("epsilon", 1e-5) as f64;
                let gamma = req_const(1, "scale")?.to_f32();
                let beta = req_const(2, "bias")?.to_f32();
                let mean = req_const(3, "mean")?.to_f32();
                let var_ = req_const(4, "var")?.to_f32();
                let s = self.shape(x);
                if s.len() < 2 {
                    return Err(invalid!("input {s:?} has no channel axis"));
                }
                let c = s[1];
                if [&gamma, &beta, &mean, &var_].iter().any(|t| t.len() != c) {
                    return Err(invalid!(
                        "parameters must have {c} elements (channels of {s:?})"
                    ));
                }
                let mut cshape = vec![c];
                cshape.extend(std::iter::repeat_n(1, s.len() - 2));
                let mut scale = Vec::with_capacity(c);
                let mut shift = Vec::with_capacity(c);
                for (((&g, &b), &m), &v) in gamma.iter().zip(&beta).zip(&mean).zip(&var_) {
                    let k = g as f64 / (v as f64 + eps).sqrt();
                    scale.push(k as f32);
                    shift.push((b as f64 - m as f64 * k) as f32);
                }
                let arr = |v: Vec<f32>| {
                    ArrayD::from_shape_vec(IxDyn(&cshape), v).map_err(|e| invalid!("{e}"))
                };
                let op = Op::Affine {
                    scale: Some(arr(scale)?),
                    shift: Some(arr(shift)?),
                };
                one(self.push(name, op, vec![x], None)?)
            }
            "MaxPool" | "AveragePool" => one(self.pool(name, op, &a, var(0)?)?),
            "GlobalAveragePool" => {
                let x = var(0)?;
                match self.shape(x).len() {
                    4 => one(self.push(name, Op::GlobalAveragePool, vec![x], None)?),
                    3 => {
                        let x2 = self.lift_1d(name, x)?;
                        let y = self.push(name, Op::GlobalAveragePool, vec![x2], None)?;
                        one(self.drop_1d(name, y)?)
                    }
                    r => Err(unsupported(format!(" on a rank-{r} input"))),
                }
            }
            "Pad" => {
                let x = var(0)?;
                let s = self.shape(x);
                let mode = a.string("mode").unwrap_or_else(|| "constant".into());
                if mode != "constant" {
                    return Err(unsupported(format!(" with mode='{mode}'")));
                }
                let pads = match konst(1)? {
                    Some(t) => t.to_i64_vec()?,
                    None => a
                        .ints("pads")
                        .or_else(|| a.ints("paddings"))
                        .ok_or_else(|| invalid!("no pads"))?,
                };
                let value = match konst(2)? {
                    Some(t) if t.len() > 0 => t.scalar_f32()?,
                    _ => a.float("value", 0.0),
                };
                let axes: Vec<usize> = match konst(3)? {
                    Some(t) => t
                        .to_i64_vec()?
                        .iter()
                        .map(|&ax| norm_axis(ax, s.len()))
                        .collect::<NRes<_>>()?,
                    None => (0..s.len()).collect(),
                };
                let n = axes.len();
                if pads.len() != 2 * n {
                    return Err(invalid!("{} pads for {n} axes", pads.len()));
                }
                if pads.iter().any(|&p| p < 0) {
                    return Err(unsupported(format!(" with negative pads {pads:?}")));
                }
                let mut pp = vec![(0usize, 0usize); s.len()];
                for (k, &ax) in axes.iter().enumerate() {
                    pp[ax] = (
                        attr_usize(pads[k], "pads")?,
                        attr_usize(pads[n + k], "pads")?,
                    );
                }
                if pp.iter().all(|&(b, e)| b == 0 && e == 0) {
                    return one(x);
                }
                one(self.push(name, Op::Pad { pads: pp, value }, vec![x], None)?)
            }
            "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
                let x = var(0)?;
                let s = self.shape(x);
                let target = self.reshape_like_shape(node, &a, &s, konst)?;
                one(self.reshape(name, x, target)?)
            }
            "Transpose" => {
                let x = var(0)?;
                let perm = perm_of(a.ints("perm"), self.shape(x).len())?;
                if perm.iter().enumerate().all(|(i, &p)| i == p) {
                    return one(x);
                }
                one(self.push(name, Op::Transpose { perm }, vec![x], None)?)
            }
            "Concat" => {
                let present: Vec<&Value> = ins.iter().flatten().collect();
                let rank = match present.first() {
                    Some(Value::Var(id)) => self.shape(*id).len(),
                    Some(Value::Const(t)) => t.shape().len(),
                    None => 0,
                };
                let axis = norm_axis(a.int("axis", 0), rank)?;
                let mut ids = Vec::with_capacity(present.len());
                let mut total = 0usize;
                for (k, v) in present.into_iter().enumerate() {
                    let id = match v {
                        Value::Var(id) => *id,
                        Value::Const(t) => self.push(
                            format!("{name}/const{k}"),
                            Op::Constant(t.to_f32()),
                            vec![],
                            None,
                        )?,
                    };
                    total = total.saturating_add(self.shape(id).get(axis).copied().unwrap_or(0));
                    ids.push(id);
                }
                checked_numel(&[total])?;
                one(self.push(name, Op::Concat { axis }, ids, None)?)
            }
            "Slice" => {
                let x = var(0)?;
                let s = self.shape(x);
                let p = self.slice_of(node, &a, &s, konst)?;
                if p.iter()
                    .zip(&s)
                    .all(|(&(st, step, len), &d)| st == 0 && step == 1 && len == d)
                {
                    return one(x);
                }
                let axes = p
                    .iter()
                    .map(|&(start, step, _)| SliceAxis { start, step })
                    .collect();
                let out = p.iter().map(|t| t.2).collect();
                one(self.push(name, Op::Slice { axes }, vec![x], Some(out))?)
            }
            "Gather" => {
                let x = var(0)?;
                let idx = match konst(1) {
                    Ok(Some(t)) => t,
                    Ok(None) => return Err(invalid!("missing indices")),
                    Err(_) => return Err(unsupported(" with variable indices")),
                };
                let s = self.shape(x);
                let axis = norm_axis(a.int("axis", 0), s.len())?;
                let flat = gather_indices(s[axis], &idx.to_i64_vec()?)?;
                let g = self.push(
                    name,
                    Op::Gather {
                        axis,
                        indices: flat,
                    },
                    vec![x],
                    None,
                )?;
                let mut out = s[..axis].to_vec();
                out.extend_from_slice(idx.shape());
                out.extend_from_slice(&s[axis + 1..]);
                one(self.reshape(format!("{name}/reshape"), g, out)?)
            }
            "Split" => {
                let x = var(0)?;
                let s = self.shape(x);
                let axis = norm_axis(a.int("axis", 0), s.len())?;
                let sizes = self.split_of(node, &a, s[axis], konst)?;
                let mut off = 0;
                let mut outs = Vec::new();
                for (k, sz) in sizes.into_iter().enumerate() {
                    let axes = (0..s.len())
                        .map(|i| SliceAxis {
                            start: if i == axis { off } else { 0 },
                            step: 1,
                        })
                        .collect();
                    let mut out = s.clone();
                    out[axis] = sz;
                    off += sz;
                    let oname = node
                        .output
                        .get(k)
                        .filter(|o| !o.is_empty())
                        .cloned()
                        .unwrap_or(format!("{name}:{k}"));
                    outs.push(Value::Var(self.push(
                        oname,
                        Op::Slice { axes },
                        vec![x],
                        Some(out),
                    )?));
                }
                Ok(outs)
            }
            "Constant" | "ConstantOfShape" | "Range" | "Equal" | "Where" => Err(unsupported(
                " on a variable (nncert evaluates it only on constants)",
            )),
            _ => Err(unsupported("")),
        }
    }

    /// Add/Sub/Mul/Div with at least one variable operand.
    fn binary(&mut self, name: &str, op: Arith, x: Value, y: Value) -> NRes<NodeId> {
        let scalar = |v: f32| ArrayD::from_elem(IxDyn(&[]), v);
        match (x, y) {
            (Value::Var(x), Value::Var(y)) => {
                let ir = match op {
                    Arith::Add => Op::Add,
                    Arith::Sub => Op::Sub,
                    _ => return Err(unsupported(" with two variable operands")),
                };
                let (xs, ys) = (self.shape(x), self.shape(y));
                let (x, y) = if xs == ys {
                    (x, y)
                } else {
                    // Shapes that differ only by leading 1s are the same data; anything else would replicate
                    // one operand, which the IR's Add/Sub do not do.
                    match broadcast_shape(&xs, &ys) {
                        Some(bs)
                            if bs.iter().product::<usize>() == xs.iter().product::<usize>()
                                && bs.iter().product::<usize>() == ys.iter().product::<usize>() =>
                        {
                            (
                                self.reshape(format!("{name}/lhs"), x, bs.clone())?,
                                self.reshape(format!("{name}/rhs"), y, bs)?,
                            )
                        }
                        _ => {
                            return Err(unsupported(format!(
                                " broadcasting variable operands of shapes {xs:?} and {ys:?}"
                            )));
                        }
                    }
                };
                self.push(name, ir, vec![x, y], None)
            }
            (Value::Var(x), Value::Const(c)) => {
                let c = c.to_f32();
                let x = self.broadcast_var(name, x, c.shape())?;
                let (scale, shift) = match op {
                    Arith::Add => (None, Some(c)),
                    Arith::Sub => (None, Some(c.mapv(|v| -v))),
                    Arith::Mul => (Some(c), None),
                    Arith::Div => (Some(c.mapv(|v| (1.0 / v as f64) as f32)), None),
                };
                self.push(name, Op::Affine { scale, shift }, vec![x], None)
            }
            (Value::Const(c), Value::Var(x)) => {
                let c = c.to_f32();
                let x = self.broadcast_var(name, x, c.shape())?;
                let (scale, shift) = match op {
                    Arith::Add => (None, Some(c)),
                    Arith::Sub => (Some(scalar(-1.0)), Some(c)),
                    Arith::Mul => (Some(c), None),
                    Arith::Div => return Err(unsupported(" with a variable divisor")),
                };
                self.push(name, Op::Affine { scale, shift }, vec![x], None)
            }
            (Value::Const(_), Value::Const(_)) => Err(invalid!("internal: constant operands")),
        }
    }

    /// Makes the variable `x` the shape of its broadcast with a constant of shape `cshape` (possible without
    /// copying data only if broadcasting just adds leading 1s).
    fn broadcast_var(&mut self, name: &str, x: NodeId, cshape: &[usize]) -> NRes<NodeId> {
        let xs = self.shape(x);
        let bs = broadcast_shape(&xs, cshape).ok_or_else(|| {
            invalid!("variable of shape {xs:?} and constant of shape {cshape:?} do not broadcast")
        })?;
        if bs == xs {
            return Ok(x);
        }
        if checked_numel(&bs)? == xs.iter().product::<usize>() {
            return self.reshape(format!("{name}/broadcast"), x, bs);
        }
        Err(unsupported(format!(
            " broadcasting the variable operand of shape {xs:?} to {bs:?}"
        )))
    }

    fn gemm(&mut self, name: &str, a: &Attrs, ins: &[Option<Value>]) -> NRes<NodeId> {
        let (mut x, w) = match (ins.first(), ins.get(1)) {
            (Some(Some(Value::Var(x))), Some(Some(Value::Const(w)))) => (*x, w.to_f32()),
            (_, Some(Some(Value::Var(_)))) => {
                return Err(unsupported(" with a variable B operand"));
            }
            _ => return Err(invalid!("needs A and B inputs")),
        };
        let c = match ins.get(2) {
            Some(Some(Value::Const(c))) => Some(c.to_f32()),
            Some(Some(Value::Var(_))) => return Err(unsupported(" with a variable C operand")),
            _ => None,
        };
        let alpha = a.float("alpha", 1.0) as f64;
        let beta = a.float("beta", 1.0) as f64;
        let xs = self.shape(x);
        if xs.len() != 2 {
            return Err(invalid!("A must be 2-D, got shape {xs:?}"));
        }
        if a.int("transA", 0) != 0 {
            x = self.push(
                format!("{name}/transA"),
                Op::Transpose { perm: vec![1, 0] },
                vec![x],
                None,
            )?;
        }
        let w = w
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| invalid!("B must be 2-D"))?;
        // Linear's weight is [out, in] = (B')ᵀ, B' = Bᵀ if transB.
        let wt = if a.int("transB", 0) != 0 {
            w.view()
        } else {
            w.t()
        };
        let weight: Array2<f32> = wt.mapv(|v| (alpha * v as f64) as f32);
        let n = weight.nrows();
        let mut bias = None;
        let mut shift = None;
        if let Some(c) = c {
            let cs = c.shape().to_vec();
            let c = c.mapv(|v| (beta * v as f64) as f32);
            let lead_ones = cs.len() <= 2 && cs.iter().rev().skip(1).all(|&d| d == 1);
            match cs.last() {
                _ if !lead_ones => shift = Some(c),
                None | Some(1) => {
                    bias = Some(Array1::from_elem(
                        n,
                        c.iter().next().copied().unwrap_or(0.0),
                    ))
                }
                Some(&m) if m == n => bias = Some(Array1::from_iter(c.iter().copied())),
                Some(_) => shift = Some(c),
            }
        }
        let y = self.push(name, Op::Linear(Linear { weight, bias }), vec![x], None)?;
        match shift {
            Some(s) => {
                let ys = self.shape(y);
                if broadcast_shape(&ys, s.shape()).as_ref() != Some(&ys) {
                    return Err(invalid!(
                        "C of shape {:?} does not broadcast to {ys:?}",
                        s.shape()
                    ));
                }
                self.push(
                    format!("{name}/C"),
                    Op::Affine {
                        scale: None,
                        shift: Some(s),
                    },
                    vec![y],
                    None,
                )
            }
            None => Ok(y),
        }
    }

    fn matmul(&mut self, name: &str, ins: &[Option<Value>]) -> NRes<NodeId> {
        // A constant matrix: [K, N] (or [1, .., 1, K, N]).
        let as_matrix = |c: &Tensor, xrank: usize| -> NRes<Array2<f32>> {
            let c = c.to_f32();
            let s = c.shape().to_vec();
            match s.len() {
                0 => Err(invalid!("scalar operand")),
                1 => Ok(c
                    .into_shape_with_order((s[0], 1))
                    .map_err(|e| invalid!("{e}"))?),
                r if s[..r - 2].iter().all(|&d| d == 1) && r <= xrank.max(2) => Ok(c
                    .into_shape_with_order((s[r - 2], s[r - 1]))
                    .map_err(|e| invalid!("{e}"))?),
                _ => Err(unsupported(format!(
                    " with a constant of shape {s:?} (batched matrix product)"
                ))),
            }
        };
        match (ins.first(), ins.get(1)) {
            (Some(Some(Value::Var(x))), Some(Some(Value::Const(w)))) => {
                let x = *x;
                let xs = self.shape(x);
                let m = as_matrix(w, xs.len())?; // [K, N]
                let vector = w.shape().len() == 1;
                let y = self.push(
                    name,
                    Op::Linear(Linear {
                        weight: m.t().to_owned(),
                        bias: None,
                    }),
                    vec![x],
                    None,
                )?;
                if vector {
                    // x @ w with w 1-D drops the last axis.
                    let mut s = self.shape(y);
                    s.pop();
                    return self.reshape(format!("{name}/squeeze"), y, s);
                }
                Ok(y)
            }
            (Some(Some(Value::Const(w))), Some(Some(Value::Var(x)))) => {
                let x = *x;
                let xs = self.shape(x);
                if xs.is_empty() {
                    return Err(invalid!("MatMul of a scalar"));
                }
                let m = if w.shape().len() == 1 {
                    as_matrix(w, xs.len())?.t().to_owned() // [1, K]
                } else {
                    as_matrix(w, xs.len())? // [M, K]
                };
                let vector = w.shape().len() == 1;
                let lin = |m: Array2<f32>| {
                    Op::Linear(Linear {
                        weight: m,
                        bias: None,
                    })
                };
                if xs.len() == 1 {
                    // W @ x for a vector x is Linear with weight W.
                    let y = self.push(name, lin(m), vec![x], None)?;
                    if vector {
                        return self.reshape(format!("{name}/squeeze"), y, vec![]);
                    }
                    return Ok(y);
                }
                // W @ X = (Xᵀ Wᵀ)ᵀ on the last two axes.
                let r = xs.len();
                let mut perm: Vec<usize> = (0..r).collect();
                perm.swap(r - 2, r - 1);
                let xt = self.push(
                    format!("{name}/T"),
                    Op::Transpose { perm: perm.clone() },
                    vec![x],
                    None,
                )?;
                let y = self.push(name, lin(m), vec![xt], None)?;
                if vector {
                    let mut s = self.shape(y);
                    s.pop();
                    return self.reshape(format!("{name}/squeeze"), y, s);
                }
                self.push(format!("{name}/TT"), Op::Transpose { perm }, vec![y], None)
            }
            (Some(Some(Value::Var(_))), Some(Some(Value::Var(_)))) => {
                Err(unsupported(" with two variable operands"))
            }
            _ => Err(invalid!("needs two inputs")),
        }
    }

    /// Conv and ConvTranspose (1-D via H = 1, 2-D).
    fn conv(
        &mut self,
        name: &str,
        a: &Attrs,
        x: NodeId,
        w: ArrayD<f32>,
        bias: Option<ArrayD<f32>>,
        transpose: bool,
    ) -> NRes<NodeId> {
        let xs = self.shape(x);
        let r = xs.len();
        if r < 3 {
            return Err(invalid!("input {xs:?} is not [N, C, spatial..]"));
        }
        let nsp = r - 2;
        if nsp > 2 {
            return Err(unsupported(format!(" with {nsp} spatial dimensions")));
        }
        if w.ndim() != r {
            return Err(invalid!(
                "weight {:?} does not match the input rank {r}",
                w.shape()
            ));
        }
        if w.shape().contains(&0) {
            return Err(invalid!("empty weight {:?}", w.shape()));
        }
        let kernel = w.shape()[2..].to_vec();
        if let Some(k) = a.ints("kernel_shape")
            && k.iter().map(|&v| v as usize).ne(kernel.iter().copied())
        {
            return Err(invalid!(
                "kernel_shape {k:?} differs from the weight's {:?}",
                w.shape()
            ));
        }
        let g = Geometry::read(a, kernel)?;
        let groups = attr_pos(a.int("group", 1), "group")?;
        let in_sz = xs[2..].to_vec();
        let auto_pad = a.string("auto_pad").unwrap_or_default();
        let bias = bias.map(|b| Array1::from_iter(b.iter().copied()));
        let mut w4s = w.shape()[..2].to_vec();
        w4s.extend(to2(&w.shape()[2..]));
        let weight: Array4<f32> = tensor::reshape(&w, &w4s)?
            .into_dimensionality()
            .map_err(|e| invalid!("{e}"))?;
        let op = if !transpose {
            let pads = resolve_pads(
                &auto_pad,
                &in_sz,
                &g.eff_kernel(),
                &g.strides,
                a.ints("pads"),
            )?;
            Op::Conv(Conv {
                weight,
                bias,
                strides: to2(&g.strides),
                pads: pads4(&pads),
                dilations: to2(&g.dilations),
                groups,
            })
        } else {
            let out_pad: Vec<usize> = match a.ints("output_padding") {
                Some(p) if p.len() == nsp => p
                    .iter()
                    .map(|&v| attr_usize(v, "output_padding"))
                    .collect::<NRes<_>>()?,
                Some(p) => return Err(invalid!("output_padding {p:?} should have {nsp} entries")),
                None => vec![0; nsp],
            };
            let eff = g.eff_kernel();
            // The full (unpadded) output size.
            let full: Vec<usize> = (0..nsp)
                .map(|i| g.strides[i] * (in_sz[i] - 1) + out_pad[i] + eff[i])
                .collect();
            let target: Option<Vec<usize>> = match a.ints("output_shape") {
                Some(os) if os.len() >= nsp => Some(
                    os[os.len() - nsp..]
                        .iter()
                        .map(|&v| attr_pos(v, "output_shape"))
                        .collect::<NRes<_>>()?,
                ),
                Some(os) => return Err(invalid!("output_shape {os:?} should have {nsp} entries")),
                None if auto_pad.starts_with("SAME") => {
                    Some((0..nsp).map(|i| in_sz[i] * g.strides[i]).collect())
                }
                None => None,
            };
            let pads = match target {
                Some(t) => {
                    let mut p = vec![0; 2 * nsp];
                    for i in 0..nsp {
                        let total = full[i].checked_sub(t[i]).ok_or_else(|| {
                            unsupported(format!(
                                " with output_shape {t:?} larger than the full output {full:?}"
                            ))
                        })?;
                        let (b, e) = if auto_pad == "SAME_UPPER" {
                            (total / 2, total - total / 2)
                        } else {
                            (total - total / 2, total / 2)
                        };
                        p[i] = b;
                        p[nsp + i] = e;
                    }
                    p
                }
                None => match auto_pad.as_str() {
                    "" | "NOTSET" | "VALID" => resolve_pads(
                        "NOTSET",
                        &in_sz,
                        &eff,
                        &g.strides,
                        if auto_pad == "VALID" {
                            None
                        } else {
                            a.ints("pads")
                        },
                    )?,
                    other => return Err(unsupported(format!(" with auto_pad='{other}'"))),
                },
            };
            for i in 0..nsp {
                if pads[i] + pads[nsp + i] >= full[i] {
                    return Err(invalid!("pads {pads:?} remove the whole output"));
                }
            }
            checked_numel(&full)?;
            Op::ConvTranspose(ConvTranspose {
                weight,
                bias,
                strides: to2(&g.strides),
                pads: pads4(&pads),
                dilations: to2(&g.dilations),
                output_padding: if nsp == 1 {
                    [0, out_pad[0]]
                } else {
                    [out_pad[0], out_pad[1]]
                },
                groups,
            })
        };
        if nsp == 1 {
            let x2 = self.lift_1d(name, x)?;
            let y = self.push(name, op, vec![x2], None)?;
            self.drop_1d(name, y)
        } else {
            self.push(name, op, vec![x], None)
        }
    }

    /// MaxPool and AveragePool (1-D via H = 1, 2-D).
    fn pool(&mut self, name: &str, op: &str, a: &Attrs, x: NodeId) -> NRes<NodeId> {
        let xs = self.shape(x);
        let kernel: Vec<usize> = a
            .ints("kernel_shape")
            .ok_or_else(|| invalid!("no kernel_shape"))?
            .iter()
            .map(|&k| attr_pos(k, "kernel_shape"))
            .collect::<NRes<_>>()?;
        let nsp = kernel.len();
        if nsp == 0 || nsp > 2 {
            return Err(unsupported(format!(" with {nsp} spatial dimensions")));
        }
        if xs.len() != nsp + 2 {
            return Err(invalid!(
                "kernel_shape {kernel:?} does not fit the input {xs:?}"
            ));
        }
        let g = Geometry::read(a, kernel)?;
        let in_sz = xs[2..].to_vec();
        let eff = g.eff_kernel();
        let auto_pad = a.string("auto_pad").unwrap_or_default();
        let pads = resolve_pads(&auto_pad, &in_sz, &eff, &g.strides, a.ints("pads"))?;
        let ceil = a.int("ceil_mode", 0) != 0;
        let mut out = xs[..2].to_vec();
        for i in 0..nsp {
            let (inp, s, pb, pe) = (in_sz[i], g.strides[i], pads[i], pads[nsp + i]);
            let o = if auto_pad.starts_with("SAME") {
                inp.div_ceil(s)
            } else {
                let span = (inp + pb + pe).checked_sub(eff[i]).ok_or_else(|| {
                    invalid!("kernel {:?} larger than the padded input {xs:?}", g.kernel)
                })?;
                if ceil {
                    // The last window must start inside the input or its leading padding (as PyTorch and
                    // onnxruntime do).
                    let mut o = span.div_ceil(s) + 1;
                    if (o - 1) * s >= inp + pb {
                        o -= 1;
                    }
                    o
                } else {
                    span / s + 1
                }
            };
            out.push(o);
        }
        let pool = Pool {
            kernel: to2(&g.kernel),
            strides: to2(&g.strides),
            pads: pads4(&pads),
            dilations: to2(&g.dilations),
        };
        let ir = if op == "MaxPool" {
            Op::MaxPool(pool)
        } else {
            Op::AveragePool {
                pool,
                count_include_pad: a.int("count_include_pad", 0) != 0,
            }
        };
        if nsp == 1 {
            let x2 = self.lift_1d(name, x)?;
            let mut out2 = out.clone();
            out2.insert(2, 1);
            let y = self.push(name, ir, vec![x2], Some(out2))?;
            self.drop_1d(name, y)
        } else {
            self.push(name, ir, vec![x], Some(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_rules() {
        assert_eq!(
            reshape_target(&[1, 3, 4], &[0, -1], false).unwrap(),
            vec![1, 12]
        );
        assert_eq!(reshape_target(&[1, 3, 4], &[-1], false).unwrap(), vec![12]);
        assert!(reshape_target(&[1, 3, 4], &[-1, -1], false).is_err());
        assert!(reshape_target(&[1, 3, 4], &[5, -1], false).is_err());
        assert!(reshape_target(&[1, 3, 4], &[0, 0, 0, 0], false).is_err());
        assert_eq!(flatten_shape(&[1, 1, 28, 28], 1).unwrap(), vec![1, 784]);
        assert_eq!(flatten_shape(&[2, 3, 4], -1).unwrap(), vec![6, 4]);
        assert_eq!(flatten_shape(&[2, 3], 0).unwrap(), vec![1, 6]);
        assert_eq!(
            squeeze_shape(&[1, 3, 1], Some(vec![-1])).unwrap(),
            vec![1, 3]
        );
        assert_eq!(squeeze_shape(&[1, 3, 1], None).unwrap(), vec![3]);
        assert!(squeeze_shape(&[1, 3, 1], Some(vec![1])).is_err());
        assert_eq!(
            unsqueeze_shape(&[3, 4], &[0, -1]).unwrap(),
            vec![1, 3, 4, 1]
        );
    }

    #[test]
    fn slice_rules() {
        // Python semantics: x[1:], x[::-1], x[-2:], x[10:20] (empty), INT64 sentinels.
        assert_eq!(
            slice_params(&[5], &[1], &[i64::MAX], None, None).unwrap(),
            vec![(1, 1, 4)]
        );
        assert_eq!(
            slice_params(&[5], &[-1], &[i64::MIN], None, Some(&[-1])).unwrap(),
            vec![(4, -1, 5)]
        );
        assert_eq!(
            slice_params(&[5], &[-2], &[5], None, None).unwrap(),
            vec![(3, 1, 2)]
        );
        assert_eq!(
            slice_params(&[5], &[10], &[20], None, None).unwrap()[0].2,
            0
        );
        assert_eq!(
            slice_params(&[5], &[0], &[5], None, Some(&[2])).unwrap(),
            vec![(0, 2, 3)]
        );
        assert_eq!(
            slice_params(&[5], &[4], &[0], None, Some(&[-2])).unwrap(),
            vec![(4, -2, 2)]
        );
        assert_eq!(
            slice_params(&[2, 6], &[1], &[-1], Some(&[-1]), None).unwrap(),
            vec![(0, 1, 2), (1, 1, 4)]
        );
        assert!(slice_params(&[5], &[0], &[5], None, Some(&[0])).is_err());
    }

    #[test]
    fn split_and_pads() {
        assert_eq!(split_sizes(10, None, 2, None).unwrap(), vec![5, 5]);
        assert_eq!(
            split_sizes(10, Some(vec![3, 7]), 2, None).unwrap(),
            vec![3, 7]
        );
        assert_eq!(split_sizes(10, None, 3, Some(3)).unwrap(), vec![4, 4, 2]);
        assert!(split_sizes(10, None, 3, None).is_err());
        // SAME_UPPER with an even kernel puts the extra pad at the end, SAME_LOWER at the beginning.
        assert_eq!(
            resolve_pads("SAME_UPPER", &[5], &[4], &[1], None).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            resolve_pads("SAME_LOWER", &[5], &[4], &[1], None).unwrap(),
            vec![2, 1]
        );
        assert_eq!(
            resolve_pads("SAME_UPPER", &[6], &[3], &[2], None).unwrap(),
            vec![0, 1]
        );
        assert_eq!(
            resolve_pads("VALID", &[6], &[3], &[2], Some(vec![1, 1])).unwrap(),
            vec![0, 0]
        );
        assert!(resolve_pads("NOTSET", &[6], &[3], &[2], Some(vec![1])).is_err());
    }
}
