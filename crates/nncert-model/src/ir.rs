//! The model IR: a DAG of typed operations with static per-sample shapes and f32 weights.
//!
//! Shapes are *per sample*: a network exported with input shape `[1, 3, 32, 32]` (or with a symbolic batch
//! dimension, taken as 1) has a node of shape `[1, 3, 32, 32]`; evaluation adds one leading batch axis of its own
//! (`[N, 1, 3, 32, 32]`). So no operation ever mixes samples, and batching is purely an evaluation concern.
//!
//! A [`Graph`] is built only through [`GraphBuilder`], which infers and checks every node's shape, so a graph
//! that exists is well-formed: topologically ordered, one input (node 0), shapes consistent with the ops.

use ndarray::{Array1, Array2, Array4, ArrayD};
use std::fmt;

/// A per-sample tensor shape (row-major).
pub type Shape = Vec<usize>;

/// Index of a node in [`Graph::nodes`]; nodes are stored in topological order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// Fully connected layer acting on the *last* axis: `y[.., o] = Σ_i weight[o, i]·x[.., i] + bias[o]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Array2<f32>,
    /// `[out_features]`.
    pub bias: Option<Array1<f32>>,
}

/// 2-D convolution over an input of shape `[.., C_in, H, W]` (the leading axes, usually ONNX's batch 1, are kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// `[C_out, C_in / groups, kH, kW]`.
    pub weight: Array4<f32>,
    /// `[C_out]`.
    pub bias: Option<Array1<f32>>,
    /// `[sH, sW]`.
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// `[dH, dW]`.
    pub dilations: [usize; 2],
    pub groups: usize,
}

/// 2-D transposed convolution (the adjoint of [`Conv`] plus bias), over `[.., C_in, H, W]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    /// `[C_in, C_out / groups, kH, kW]`.
    pub weight: Array4<f32>,
    /// `[C_out]`.
    pub bias: Option<Array1<f32>>,
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`: removed from the full output.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    /// Extra rows/columns added at the bottom/right of the output.
    pub output_padding: [usize; 2],
    pub groups: usize,
}

/// Window geometry of a 2-D pooling op over `[.., C, H, W]`. The output size (including ONNX's `ceil_mode`) is
/// the node's shape; windows are read at `o·stride − pad_begin + k·dilation`, positions outside the input skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
}

/// One axis of a [`Op::Slice`]: output element `i` reads input element `start + i·step` (`step` may be negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceAxis {
    pub start: usize,
    pub step: isize,
}

/// An operation. Variable operands are the node's `inputs`; constants are stored in the op.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The network input (always node 0).
    Input,
    /// A per-sample constant (the same for every sample of a batch).
    Constant(ArrayD<f32>),
    Linear(Linear),
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    /// `y = x ⊙ scale + shift`, with `scale`/`shift` broadcast (numpy rules) to the input's shape and the output
    /// of the input's shape. Covers Add/Sub/Mul/Div by a constant, Neg and standalone BatchNormalization.
    Affine {
        scale: Option<ArrayD<f32>>,
        shift: Option<ArrayD<f32>>,
    },
    /// Elementwise sum of two variable operands of the same shape.
    Add,
    /// Elementwise difference `a − b` of two variable operands of the same shape.
    Sub,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// Softmax over one axis of the per-sample shape.
    Softmax {
        axis: usize,
    },
    /// `min(max(x, min), max)`; an unbounded side is ±∞.
    Clip {
        min: f32,
        max: f32,
    },
    MaxPool(Pool),
    AveragePool {
        pool: Pool,
        /// Divide by the number of window positions inside the padded input (true) or inside the input (false).
        count_include_pad: bool,
    },
    /// Mean over H, W of `[.., C, H, W]`, output `[.., C, 1, 1]`.
    GlobalAveragePool,
    /// Constant padding: `pads[axis] = (before, after)`.
    Pad {
        pads: Vec<(usize, usize)>,
        value: f32,
    },
    /// Reinterpret the elements (row-major) with the node's shape. Covers Flatten, Squeeze, Unsqueeze.
    Reshape,
    /// Permute axes: output axis `i` is input axis `perm[i]`.
    Transpose {
        perm: Vec<usize>,
    },
    /// Concatenate the variable operands along `axis`.
    Concat {
        axis: usize,
    },
    /// Strided selection on every axis (length of each output axis is the node's shape).
    Slice {
        axes: Vec<SliceAxis>,
    },
    /// Select `indices` along `axis` (constant indices; repeats allowed).
    Gather {
        axis: usize,
        indices: Vec<usize>,
    },
}

impl Op {
    /// The op's name as users know it (ONNX-like).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Constant(_) => "Constant",
            Op::Linear(_) => "Linear",
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::Affine { .. } => "Affine",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Relu => "Relu",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::Softmax { .. } => "Softmax",
            Op::Clip { .. } => "Clip",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Pad { .. } => "Pad",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Slice { .. } => "Slice",
            Op::Gather { .. } => "Gather",
        }
    }

    /// Number of stored parameters (weights, biases, constants).
    pub fn num_parameters(&self) -> usize {
        let opt = |a: &Option<ArrayD<f32>>| a.as_ref().map_or(0, |a| a.len());
        match self {
            Op::Constant(c) => c.len(),
            Op::Linear(l) => l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()),
            Op::Conv(c) => c.weight.len() + c.bias.as_ref().map_or(0, |b| b.len()),
            Op::ConvTranspose(c) => c.weight.len() + c.bias.as_ref().map_or(0, |b| b.len()),
            Op::Affine { scale, shift } => opt(scale) + opt(shift),
            _ => 0,
        }
    }

    /// True for ops that are linear (affine) maps of their operands.
    pub fn is_affine(&self) -> bool {
        !matches!(
            self,
            Op::Relu
                | Op::LeakyRelu { .. }
                | Op::Sigmoid
                | Op::Tanh
                | Op::Softmax { .. }
                | Op::Clip { .. }
                | Op::MaxPool(_)
        )
    }
}

/// A node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The name it had in the source model (ONNX node name or output name), for messages.
    pub name: String,
    pub op: Op,
    /// Variable operands, all earlier in the graph.
    pub inputs: Vec<NodeId>,
    /// Per-sample output shape.
    pub shape: Shape,
}

impl Node {
    /// Number of elements of one sample's output.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A well-formed network: one input (node 0), one output, nodes in topological order.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    nodes: Vec<Node>,
    output: NodeId,
}

impl Graph {
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }
    pub fn input(&self) -> &Node {
        &self.nodes[0]
    }
    pub fn output_id(&self) -> NodeId {
        self.output
    }
    pub fn output(&self) -> &Node {
        &self.nodes[self.output.0]
    }
    /// Number of scalar inputs of one sample.
    pub fn input_size(&self) -> usize {
        self.input().numel()
    }
    /// Number of scalar outputs of one sample.
    pub fn output_size(&self) -> usize {
        self.output().numel()
    }
    pub fn num_parameters(&self) -> usize {
        self.nodes.iter().map(|n| n.op.num_parameters()).sum()
    }
    /// For each node, how many later nodes (or the graph output) read it.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for i in &n.inputs {
                uses[i.0] += 1;
            }
        }
        uses[self.output.0] += 1;
        uses
    }
}

/// Why a graph could not be built: an op applied to operands of shapes it cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node '{node}' ({op}): {message}")]
pub struct ShapeError {
    pub node: String,
    pub op: &'static str,
    pub message: String,
}

/// Builds a [`Graph`] node by node, inferring and checking shapes.
///
/// ```
/// use nncert_model::ir::{GraphBuilder, Linear, Op};
/// use ndarray::{arr1, arr2};
/// let mut b = GraphBuilder::new("x", vec![1, 2]);
/// let x = b.input_id();
/// let lin = Op::Linear(Linear { weight: arr2(&[[1.0, -1.0]]), bias: Some(arr1(&[0.5])) });
/// let h = b.push("fc", lin, vec![x], None).unwrap();
/// let y = b.push("relu", Op::Relu, vec![h], None).unwrap();
/// let g = b.finish(y);
/// assert_eq!(g.output().shape, vec![1, 1]);
/// ```
#[derive(Clone, Debug)]
pub struct GraphBuilder {
    nodes: Vec<Node>,
}

impl GraphBuilder {
    pub fn new(input_name: impl Into<String>, input_shape: Shape) -> Self {
        GraphBuilder {
            nodes: vec![Node {
                name: input_name.into(),
                op: Op::Input,
                inputs: vec![],
                shape: input_shape,
            }],
        }
    }

    pub fn input_id(&self) -> NodeId {
        NodeId(0)
    }

    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.nodes[id.0].shape
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// Appends a node. `shape` is required for the ops whose output shape is not implied by their operands
    /// (Reshape, Slice, pools, ConvTranspose: the importer knows it); for the others it is inferred, and if given,
    /// checked against the inference.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<NodeId>,
        shape: Option<Shape>,
    ) -> Result<NodeId, ShapeError> {
        let name = name.into();
        let err = |message: String| ShapeError {
            node: name.clone(),
            op: op.kind(),
            message,
        };
        for i in &inputs {
            if i.0 >= self.nodes.len() {
                return Err(err(format!("operand {} does not exist yet", i.0)));
            }
        }
        let in_shapes: Vec<&Shape> = inputs.iter().map(|i| &self.nodes[i.0].shape).collect();
        let inferred = infer_shape(&op, &in_shapes, shape.as_ref()).map_err(err)?;
        if let Some(s) = &shape
            && *s != inferred
        {
            return Err(err(format!(
                "declared shape {s:?} differs from the inferred {inferred:?}"
            )));
        }
        self.nodes.push(Node {
            name,
            op,
            inputs,
            shape: inferred,
        });
        Ok(NodeId(self.nodes.len() - 1))
    }

    /// Ends the graph with `output` as its output. Nodes the output does not depend on are removed.
    pub fn finish(self, output: NodeId) -> Graph {
        // Keep only what the output needs, renumbering in order (topological order is preserved).
        let mut needed = vec![false; self.nodes.len()];
        needed[0] = true;
        needed[output.0] = true;
        for i in (0..self.nodes.len()).rev() {
            if needed[i] {
                for j in &self.nodes[i].inputs {
                    needed[j.0] = true;
                }
            }
        }
        let mut remap = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (i, mut n) in self.nodes.into_iter().enumerate() {
            if needed[i] {
                for j in &mut n.inputs {
                    j.0 = remap[j.0];
                }
                remap[i] = nodes.len();
                nodes.push(n);
            }
        }
        Graph {
            nodes,
            output: NodeId(remap[output.0]),
        }
    }
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Numpy-style broadcast of a constant against a variable shape; the result must be the variable's shape.
fn check_broadcast_to(c: &[usize], target: &[usize]) -> Result<(), String> {
    if c.len() > target.len() {
        return Err(format!(
            "constant of shape {c:?} has more axes than the operand {target:?}"
        ));
    }
    let off = target.len() - c.len();
    for (i, &d) in c.iter().enumerate() {
        if d != 1 && d != target[off + i] {
            return Err(format!(
                "constant of shape {c:?} does not broadcast to {target:?}"
            ));
        }
    }
    Ok(())
}

fn conv_out(input: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
    let eff = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = input + pad;
    if padded < eff || stride == 0 {
        return None;
    }
    Some((padded - eff) / stride + 1)
}

fn infer_shape(op: &Op, ins: &[&Shape], declared: Option<&Shape>) -> Result<Shape, String> {
    let arity = |n: usize| -> Result<(), String> {
        if ins.len() == n {
            Ok(())
        } else {
            Err(format!(
                "expects {n} variable operand(s), got {}",
                ins.len()
            ))
        }
    };
    let need_declared = || -> Result<Shape, String> {
        declared
            .cloned()
            .ok_or_else(|| "output shape must be given".to_string())
    };
    let spatial = |s: &Shape| -> Result<(usize, usize, usize), String> {
        if s.len() < 3 {
            return Err(format!("expects an input [.., C, H, W], got {s:?}"));
        }
        let r = s.len();
        Ok((s[r - 3], s[r - 2], s[r - 1]))
    };
    match op {
        Op::Input => Err("Input can only be node 0".into()),
        Op::Constant(c) => {
            arity(0)?;
            Ok(c.shape().to_vec())
        }
        Op::Linear(l) => {
            arity(1)?;
            let s = ins[0];
            let (out, inp) = l.weight.dim();
            if s.last() != Some(&inp) {
                return Err(format!(
                    "weight [{out}, {inp}] does not fit an input of shape {s:?} (last axis must be {inp})"
                ));
            }
            if let Some(b) = &l.bias
                && b.len() != out
            {
                return Err(format!("bias has {} elements, expected {out}", b.len()));
            }
            let mut r = s.clone();
            *r.last_mut().expect("non-empty") = out;
            Ok(r)
        }
        Op::Conv(c) => {
            arity(1)?;
            let s = ins[0];
            let (cin, h, w) = spatial(s)?;
            let [cout, cin_g, kh, kw] = c.weight.shape().try_into().expect("4-D");
            if c.groups == 0 || cin != cin_g * c.groups || cout % c.groups != 0 {
                return Err(format!(
                    "weight {:?} with {} group(s) does not fit {cin} input channels",
                    c.weight.shape(),
                    c.groups
                ));
            }
            if let Some(b) = &c.bias
                && b.len() != cout
            {
                return Err(format!("bias has {} elements, expected {cout}", b.len()));
            }
            let oh = conv_out(h, kh, c.strides[0], c.pads[0] + c.pads[2], c.dilations[0]);
            let ow = conv_out(w, kw, c.strides[1], c.pads[1] + c.pads[3], c.dilations[1]);
            let (Some(oh), Some(ow)) = (oh, ow) else {
                return Err(format!(
                    "empty kernel, or kernel larger than the padded input {s:?}"
                ));
            };
            let mut r = s[..s.len() - 3].to_vec();
            r.extend([cout, oh, ow]);
            Ok(r)
        }
        Op::ConvTranspose(c) => {
            arity(1)?;
            let s = ins[0];
            let (cin, h, w) = spatial(s)?;
            let [wcin, cout_g, kh, kw] = c.weight.shape().try_into().expect("4-D");
            if c.groups == 0 || cin != wcin || cin % c.groups != 0 {
                return Err(format!(
                    "weight {:?} does not fit {cin} input channels",
                    c.weight.shape()
                ));
            }
            let cout = cout_g * c.groups;
            let full = |i: usize, k: usize, st: usize, d: usize, op: usize, p: usize| {
                let span = st
                    .checked_mul(i.checked_sub(1)?)?
                    .checked_add(op)?
                    .checked_add(k.checked_sub(1)?.checked_mul(d)?)?
                    .checked_add(1)?;
                span.checked_sub(p)
            };
            let oh = full(
                h,
                kh,
                c.strides[0],
                c.dilations[0],
                c.output_padding[0],
                c.pads[0] + c.pads[2],
            );
            let ow = full(
                w,
                kw,
                c.strides[1],
                c.dilations[1],
                c.output_padding[1],
                c.pads[1] + c.pads[3],
            );
            let (Some(oh), Some(ow)) = (oh, ow) else {
                return Err("empty input or kernel, or pads larger than the output".into());
            };
            if let Some(b) = &c.bias
                && b.len() != cout
            {
                return Err(format!("bias has {} elements, expected {cout}", b.len()));
            }
            let mut r = s[..s.len() - 3].to_vec();
            r.extend([cout, oh, ow]);
            Ok(r)
        }
        Op::Affine { scale, shift } => {
            arity(1)?;
            for c in [scale, shift].into_iter().flatten() {
                check_broadcast_to(c.shape(), ins[0])?;
            }
            Ok(ins[0].clone())
        }
        Op::Add | Op::Sub => {
            arity(2)?;
            if ins[0] != ins[1] {
                return Err(format!(
                    "operands have different shapes {:?} and {:?}",
                    ins[0], ins[1]
                ));
            }
            Ok(ins[0].clone())
        }
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::Tanh
        | Op::Clip { .. }
        | Op::Softmax { .. } => {
            arity(1)?;
            if let Op::Softmax { axis } = op
                && *axis >= ins[0].len()
            {
                return Err(format!("axis {axis} out of range for {:?}", ins[0]));
            }
            Ok(ins[0].clone())
        }
        Op::MaxPool(p) | Op::AveragePool { pool: p, .. } => {
            arity(1)?;
            let s = ins[0];
            let (c, h, w) = spatial(s)?;
            let out = need_declared()?;
            let r = s.len();
            if out.len() != r || out[..r - 2] != s[..r - 2] || out[r - 3] != c {
                return Err(format!(
                    "declared shape {out:?} does not fit the input {s:?}"
                ));
            }
            // Every window must start inside the padded input.
            let ok = |o: usize, i: usize, axis: usize| {
                o >= 1 && (o - 1) * p.strides[axis] < i + p.pads[axis] + p.pads[axis + 2]
            };
            if !ok(out[r - 2], h, 0) || !ok(out[r - 1], w, 1) || p.kernel.contains(&0) {
                return Err(format!(
                    "output {out:?} inconsistent with kernel/strides/pads of input {s:?}"
                ));
            }
            Ok(out)
        }
        Op::GlobalAveragePool => {
            arity(1)?;
            spatial(ins[0])?;
            let mut r = ins[0].clone();
            let n = r.len();
            r[n - 1] = 1;
            r[n - 2] = 1;
            Ok(r)
        }
        Op::Pad { pads, .. } => {
            arity(1)?;
            if pads.len() != ins[0].len() {
                return Err(format!(
                    "{} pad pairs for an input of rank {}",
                    pads.len(),
                    ins[0].len()
                ));
            }
            Ok(ins[0]
                .iter()
                .zip(pads)
                .map(|(d, (a, b))| d + a + b)
                .collect())
        }
        Op::Reshape => {
            arity(1)?;
            let out = need_declared()?;
            if numel(&out) != numel(ins[0]) {
                return Err(format!(
                    "cannot reshape {:?} ({} elements) to {out:?}",
                    ins[0],
                    numel(ins[0])
                ));
            }
            Ok(out)
        }
        Op::Transpose { perm } => {
            arity(1)?;
            let mut seen = vec![false; perm.len()];
            if perm.len() != ins[0].len()
                || perm
                    .iter()
                    .any(|&p| p >= seen.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!(
                    "perm {perm:?} is not a permutation of the axes of {:?}",
                    ins[0]
                ));
            }
            Ok(perm.iter().map(|&p| ins[0][p]).collect())
        }
        Op::Concat { axis } => {
            if ins.is_empty() {
                return Err("expects at least one operand".into());
            }
            let first = ins[0];
            if *axis >= first.len() {
                return Err(format!("axis {axis} out of range for {first:?}"));
            }
            let mut r = first.clone();
            r[*axis] = 0;
            for s in ins {
                if s.len() != first.len()
                    || s.iter()
                        .zip(first.iter())
                        .enumerate()
                        .any(|(i, (a, b))| i != *axis && a != b)
                {
                    return Err(format!(
                        "operand shapes {first:?} and {s:?} differ off axis {axis}"
                    ));
                }
                r[*axis] += s[*axis];
            }
            Ok(r)
        }
        Op::Slice { axes } => {
            arity(1)?;
            let s = ins[0];
            let out = need_declared()?;
            if axes.len() != s.len() || out.len() != s.len() {
                return Err(format!("slice of rank {} on input {s:?}", axes.len()));
            }
            for (k, ax) in axes.iter().enumerate() {
                if out[k] == 0 {
                    continue;
                }
                let last = ax.start as isize + (out[k] as isize - 1) * ax.step;
                if ax.start >= s[k] || last < 0 || last as usize >= s[k] || ax.step == 0 {
                    return Err(format!("slice on axis {k} reads outside the input {s:?}"));
                }
            }
            Ok(out)
        }
        Op::Gather { axis, indices } => {
            arity(1)?;
            let s = ins[0];
            if *axis >= s.len() {
                return Err(format!("axis {axis} out of range for {s:?}"));
            }
            if let Some(bad) = indices.iter().find(|&&i| i >= s[*axis]) {
                return Err(format!("index {bad} out of range for axis {axis} of {s:?}"));
            }
            let mut r = s.clone();
            r[*axis] = indices.len();
            Ok(r)
        }
    }
}

impl fmt::Display for Graph {
    /// One line per node: `%id name: Op(inputs) -> shape`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            let ins: Vec<String> = n.inputs.iter().map(|j| format!("%{}", j.0)).collect();
            writeln!(
                f,
                "%{i:<3} {:<10} {:<24} ({}) -> {:?}",
                n.op.kind(),
                n.name,
                ins.join(", "),
                n.shape
            )?;
        }
        write!(f, "output: %{}", self.output.0)
    }
}
