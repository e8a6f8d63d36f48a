//! Property tests of [`Evaluator`] on random graphs built with [`GraphBuilder`], covering every [`Op`] variant:
//!
//! - (a) `forward` in f64 and f32 against a naive f64 reference written here, op by op, from the ONNX operator
//!   definitions (loops over output positions; nothing shared with `eval.rs`);
//! - (b) `backward` (the vector–Jacobian product) against central finite differences of `w·f(x)`, with kinks
//!   (ReLU, MaxPool, Clip, LeakyRelu) detected by comparing the one-sided slopes;
//! - (c) batching: a batch evaluates (forward and backward) like its rows one at a time, and an empty batch works.
//!
//! Graphs are drawn from a seed: input → optional random op → the op under test → `extra` random ops → optional
//! flatten + Linear. A failure prints the seed, the op under test and `extra` (feed them to `build_graph` to
//! reproduce), the graph, and for forward mismatches the first node whose output differs from the reference.

use ndarray::{Array1, Array2, Array4, ArrayD, IxDyn, s};
use nncert_model::eval::Evaluator;
use nncert_model::ir::{
    Conv, ConvTranspose, Graph, GraphBuilder, Linear, NodeId, Op, Pool, Shape, SliceAxis,
};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ============================================================================================================
// Reference evaluation: one sample, f64, per-sample shapes, row-major flat buffers.
// ============================================================================================================

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Row-major multi-index of flat position `flat` in `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = flat % shape[k];
        flat /= shape[k];
    }
    idx
}

/// Row-major flat position of multi-index `idx` in `shape`.
fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| {
        debug_assert!(i < d);
        acc * d + i
    })
}

/// Numpy broadcasting: the element of constant `c` (trailing-aligned, size-1 axes repeated) at `idx`.
fn broadcast_at(c: &ArrayD<f32>, idx: &[usize]) -> f64 {
    let off = idx.len() - c.ndim();
    let ci: Vec<usize> = c
        .shape()
        .iter()
        .enumerate()
        .map(|(k, &d)| if d == 1 { 0 } else { idx[off + k] })
        .collect();
    c[IxDyn(&ci)] as f64
}

#[derive(Clone, Copy, PartialEq)]
enum PoolKind {
    Max,
    Avg { count_include_pad: bool },
}

/// ONNX MaxPool / AveragePool over `[.., H, W]` planes. Window element `k` of output `o` sits at
/// `o·stride − pad_begin + k·dilation`; MaxPool pads with −∞ (so padding never wins); AveragePool divides by
/// the number of window positions inside the input (count_include_pad = 0) or inside the *padded* input
/// `[−pad_begin, size + pad_end)` (count_include_pad = 1; with ceil_mode a window may reach past the padded end,
/// and those positions count for neither: this is what onnxruntime and the ONNX reference implementation do).
fn ref_pool(x: &[f64], s: &[usize], out: &[usize], p: &Pool, kind: PoolKind) -> Vec<f64> {
    let r = s.len();
    let (h, w) = (s[r - 2] as isize, s[r - 1] as isize);
    let (oh, ow) = (out[r - 2], out[r - 1]);
    let planes = numel(&s[..r - 2]);
    let (pt, pl, pb, pr) = (
        p.pads[0] as isize,
        p.pads[1] as isize,
        p.pads[2] as isize,
        p.pads[3] as isize,
    );
    let mut y = Vec::with_capacity(planes * oh * ow);
    for plane in 0..planes {
        for a in 0..oh {
            for b in 0..ow {
                let mut vals = Vec::new();
                let mut in_padded = 0usize;
                for ki in 0..p.kernel[0] {
                    let i = (a * p.strides[0] + ki * p.dilations[0]) as isize - pt;
                    for kj in 0..p.kernel[1] {
                        let j = (b * p.strides[1] + kj * p.dilations[1]) as isize - pl;
                        if i >= -pt && i < h + pb && j >= -pl && j < w + pr {
                            in_padded += 1;
                        }
                        if i >= 0 && i < h && j >= 0 && j < w {
                            vals.push(
                                x[(plane * h as usize + i as usize) * w as usize + j as usize],
                            );
                        }
                    }
                }
                assert!(!vals.is_empty(), "generator made an empty pooling window");
                y.push(match kind {
                    PoolKind::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    PoolKind::Avg { count_include_pad } => {
                        let d = if count_include_pad {
                            in_padded
                        } else {
                            vals.len()
                        };
                        vals.iter().sum::<f64>() / d as f64
                    }
                });
            }
        }
    }
    y
}

/// The reference forward map of one node, from its operands' values and shapes.
fn ref_node(op: &Op, ins: &[(&[usize], &[f64])], out: &[usize]) -> Vec<f64> {
    let n_out = numel(out);
    let unary = |f: &dyn Fn(f64) -> f64| ins[0].1.iter().map(|&v| f(v)).collect::<Vec<f64>>();
    match op {
        Op::Input => unreachable!(),
        Op::Constant(c) => c.iter().map(|&v| v as f64).collect(),
        Op::Linear(l) => {
            let (m, k) = l.weight.dim();
            let x = ins[0].1;
            let rows = x.len() / k;
            let mut y = vec![0.0; rows * m];
            for r in 0..rows {
                for o in 0..m {
                    let mut acc = l.bias.as_ref().map_or(0.0, |b| b[o] as f64);
                    for i in 0..k {
                        acc += l.weight[[o, i]] as f64 * x[r * k + i];
                    }
                    y[r * m + o] = acc;
                }
            }
            y
        }
        Op::Conv(c) => {
            // ONNX Conv: y[m, a, b] = B[m] + Σ_{c, ki, kj} x[g·Cg + c, a·sH + ki·dH − padT, b·sW + kj·dW − padL]
            //                                           · W[m, c, ki, kj],   g = m / (M / groups).
            let (s, x) = ins[0];
            let r = s.len();
            let (ci, h, w) = (s[r - 3], s[r - 2], s[r - 1]);
            let (co, oh, ow) = (out[r - 3], out[r - 2], out[r - 1]);
            let lead = numel(&s[..r - 3]);
            let [_, cg, kh, kw]: [usize; 4] = c.weight.shape().try_into().unwrap();
            let mg = co / c.groups;
            let mut y = vec![0.0; n_out];
            for l in 0..lead {
                for m in 0..co {
                    let grp = m / mg;
                    for a in 0..oh {
                        for b in 0..ow {
                            let mut acc = c.bias.as_ref().map_or(0.0, |bb| bb[m] as f64);
                            for cc in 0..cg {
                                for ki in 0..kh {
                                    let i = (a * c.strides[0] + ki * c.dilations[0]) as isize
                                        - c.pads[0] as isize;
                                    if i < 0 || i >= h as isize {
                                        continue;
                                    }
                                    for kj in 0..kw {
                                        let j = (b * c.strides[1] + kj * c.dilations[1]) as isize
                                            - c.pads[1] as isize;
                                        if j < 0 || j >= w as isize {
                                            continue;
                                        }
                                        let xv = x[((l * ci + grp * cg + cc) * h + i as usize) * w
                                            + j as usize];
                                        acc += xv * c.weight[[m, cc, ki, kj]] as f64;
                                    }
                                }
                            }
                            y[((l * co + m) * oh + a) * ow + b] = acc;
                        }
                    }
                }
            }
            y
        }
        Op::ConvTranspose(c) => {
            // ONNX ConvTranspose: every input element x[c, a, b] adds x·W[c, mo, ki, kj] to
            // y[g·Mg + mo, a·sH + ki·dH − padT, b·sW + kj·dW − padL] (positions outside the output dropped),
            // g = c / (C / groups); output_padding only extends the output (those rows get the bias only).
            let (s, x) = ins[0];
            let r = s.len();
            let (ci, h, w) = (s[r - 3], s[r - 2], s[r - 1]);
            let (co, oh, ow) = (out[r - 3], out[r - 2], out[r - 1]);
            let lead = numel(&s[..r - 3]);
            let [_, mg, kh, kw]: [usize; 4] = c.weight.shape().try_into().unwrap();
            let cig = ci / c.groups;
            let mut y = vec![0.0; n_out];
            for l in 0..lead {
                for m in 0..co {
                    let bv = c.bias.as_ref().map_or(0.0, |bb| bb[m] as f64);
                    for v in &mut y[(l * co + m) * oh * ow..][..oh * ow] {
                        *v = bv;
                    }
                }
                for cin in 0..ci {
                    let grp = cin / cig;
                    for a in 0..h {
                        for b in 0..w {
                            let xv = x[((l * ci + cin) * h + a) * w + b];
                            for mo in 0..mg {
                                for ki in 0..kh {
                                    let i = (a * c.strides[0] + ki * c.dilations[0]) as isize
                                        - c.pads[0] as isize;
                                    if i < 0 || i >= oh as isize {
                                        continue;
                                    }
                                    for kj in 0..kw {
                                        let j = (b * c.strides[1] + kj * c.dilations[1]) as isize
                                            - c.pads[1] as isize;
                                        if j < 0 || j >= ow as isize {
                                            continue;
                                        }
                                        y[((l * co + grp * mg + mo) * oh + i as usize) * ow
                                            + j as usize] +=
                                            xv * c.weight[[cin, mo, ki, kj]] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            y
        }
        Op::Affine { scale, shift } => {
            let (s, x) = ins[0];
            (0..x.len())
                .map(|f| {
                    let idx = unravel(f, s);
                    let mut v = x[f];
                    if let Some(sc) = scale {
                        v *= broadcast_at(sc, &idx);
                    }
                    if let Some(sh) = shift {
                        v += broadcast_at(sh, &idx);
                    }
                    v
                })
                .collect()
        }
        Op::Add => ins[0].1.iter().zip(ins[1].1).map(|(a, b)| a + b).collect(),
        Op::Sub => ins[0].1.iter().zip(ins[1].1).map(|(a, b)| a - b).collect(),
        Op::Relu => unary(&|v| if v > 0.0 { v } else { 0.0 }),
        Op::LeakyRelu { alpha } => {
            let a = *alpha as f64;
            unary(&|v| if v >= 0.0 { v } else { a * v })
        }
        Op::Sigmoid => unary(&|v| 1.0 / (1.0 + (-v).exp())),
        Op::Tanh => unary(&|v| v.tanh()),
        Op::Clip { min, max } => {
            let (lo, hi) = (*min as f64, *max as f64);
            unary(&|v| v.max(lo).min(hi))
        }
        Op::Softmax { axis } => {
            // softmax(x)_j = exp(x_j) / Σ_k exp(x_k) along `axis`.
            let (s, x) = ins[0];
            (0..x.len())
                .map(|f| {
                    let mut idx = unravel(f, s);
                    let mut den = 0.0;
                    for k in 0..s[*axis] {
                        idx[*axis] = k;
                        den += x[ravel(&idx, s)].exp();
                    }
                    x[f].exp() / den
                })
                .collect()
        }
        Op::MaxPool(p) => ref_pool(ins[0].1, ins[0].0, out, p, PoolKind::Max),
        Op::AveragePool {
            pool,
            count_include_pad,
        } => ref_pool(
            ins[0].1,
            ins[0].0,
            out,
            pool,
            PoolKind::Avg {
                count_include_pad: *count_include_pad,
            },
        ),
        Op::GlobalAveragePool => {
            let (s, x) = ins[0];
            let r = s.len();
            let hw = s[r - 2] * s[r - 1];
            x.chunks(hw)
                .map(|plane| plane.iter().sum::<f64>() / hw as f64)
                .collect()
        }
        Op::Pad { pads, value } => {
            let (s, x) = ins[0];
            (0..n_out)
                .map(|f| {
                    let idx = unravel(f, out);
                    let mut src = Vec::with_capacity(idx.len());
                    for (k, &i) in idx.iter().enumerate() {
                        let before = pads[k].0;
                        if i < before || i - before >= s[k] {
                            return *value as f64;
                        }
                        src.push(i - before);
                    }
                    x[ravel(&src, s)]
                })
                .collect()
        }
        Op::Reshape => ins[0].1.to_vec(),
        Op::Transpose { perm } => {
            let (s, x) = ins[0];
            (0..n_out)
                .map(|f| {
                    let oi = unravel(f, out);
                    let mut ii = vec![0; s.len()];
                    for (k, &p) in perm.iter().enumerate() {
                        ii[p] = oi[k];
                    }
                    x[ravel(&ii, s)]
                })
                .collect()
        }
        Op::Concat { axis } => (0..n_out)
            .map(|f| {
                let mut idx = unravel(f, out);
                let mut a = idx[*axis];
                for (s, x) in ins {
                    if a < s[*axis] {
                        idx[*axis] = a;
                        return x[ravel(&idx, s)];
                    }
                    a -= s[*axis];
                }
                unreachable!("concat index out of range")
            })
            .collect(),
        Op::Slice { axes } => {
            let (s, x) = ins[0];
            (0..n_out)
                .map(|f| {
                    let oi = unravel(f, out);
                    let ii: Vec<usize> = oi
                        .iter()
                        .zip(axes)
                        .map(|(&i, ax)| (ax.start as isize + i as isize * ax.step) as usize)
                        .collect();
                    x[ravel(&ii, s)]
                })
                .collect()
        }
        Op::Gather { axis, indices } => {
            let (s, x) = ins[0];
            (0..n_out)
                .map(|f| {
                    let mut idx = unravel(f, out);
                    idx[*axis] = indices[idx[*axis]];
                    x[ravel(&idx, s)]
                })
                .collect()
        }
    }
}

/// All node values of the reference evaluation of one sample.
fn reference_all(g: &Graph, x: &[f64]) -> Vec<Vec<f64>> {
    let nodes = g.nodes();
    let mut vals: Vec<Vec<f64>> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let y = match node.op {
            Op::Input => x.to_vec(),
            _ => {
                let ins: Vec<(&[usize], &[f64])> = node
                    .inputs
                    .iter()
                    .map(|j| (&nodes[j.0].shape[..], &vals[j.0][..]))
                    .collect();
                ref_node(&node.op, &ins, &node.shape)
            }
        };
        assert_eq!(
            y.len(),
            node.numel(),
            "reference size for node {}",
            node.name
        );
        vals.push(y);
    }
    vals
}

fn reference(g: &Graph, x: &[f64]) -> Vec<f64> {
    reference_all(g, x).swap_remove(g.output_id().0)
}

/// The graph made of `g`'s nodes up to `k`, with node `k` as output (for locating a failing node).
fn prefix_graph(g: &Graph, k: usize) -> Graph {
    let nodes = g.nodes();
    let mut b = GraphBuilder::new(nodes[0].name.clone(), nodes[0].shape.clone());
    for n in &nodes[1..=k] {
        b.push(
            n.name.clone(),
            n.op.clone(),
            n.inputs.clone(),
            Some(n.shape.clone()),
        )
        .expect("a valid graph's nodes rebuild");
    }
    b.finish(NodeId(k))
}

// ============================================================================================================
// Random graphs.
// ============================================================================================================

/// The op (family) under test; every `Op` variant appears (Constant through ConcatConst and Add/Sub).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Linear,
    Conv,
    ConvTranspose,
    Affine,
    Add,
    Sub,
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
    Softmax,
    Clip,
    MaxPool,
    AvgPoolIncludePad,
    AvgPoolExcludePad,
    GlobalAveragePool,
    Pad,
    Reshape,
    Transpose,
    Concat,
    ConcatConst,
    Slice,
    Gather,
}

const KINDS: [Kind; 23] = [
    Kind::Linear,
    Kind::Conv,
    Kind::ConvTranspose,
    Kind::Affine,
    Kind::Add,
    Kind::Sub,
    Kind::Relu,
    Kind::LeakyRelu,
    Kind::Sigmoid,
    Kind::Tanh,
    Kind::Softmax,
    Kind::Clip,
    Kind::MaxPool,
    Kind::AvgPoolIncludePad,
    Kind::AvgPoolExcludePad,
    Kind::GlobalAveragePool,
    Kind::Pad,
    Kind::Reshape,
    Kind::Transpose,
    Kind::Concat,
    Kind::ConcatConst,
    Kind::Slice,
    Kind::Gather,
];

/// Intermediate tensors are kept at most this large (per sample), so reference and finite differences are cheap.
const MAX_NUMEL: usize = 240;

struct Gen {
    b: GraphBuilder,
    rng: ChaCha8Rng,
    count: usize,
    /// Variable (input-dependent) nodes made so far, for second operands of Add/Sub.
    vars: Vec<NodeId>,
}

impl Gen {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let lead: Vec<usize> = match rng.random_range(0..3) {
            0 => vec![],
            1 => vec![1],
            _ => vec![2],
        };
        let mut shape = lead;
        shape.push(rng.random_range(1..=3));
        shape.push(rng.random_range(1..=5));
        shape.push(rng.random_range(1..=5));
        Gen {
            b: GraphBuilder::new("x", shape),
            rng,
            count: 0,
            vars: vec![NodeId(0)],
        }
    }

    fn shape(&self, id: NodeId) -> Shape {
        self.b.shape(id).clone()
    }

    fn push(&mut self, op: Op, inputs: Vec<NodeId>, shape: Option<Shape>) -> NodeId {
        self.count += 1;
        let name = format!("n{}_{}", self.count, op.kind());
        let is_var = !matches!(op, Op::Constant(_));
        let id = self
            .b
            .push(name, op, inputs, shape)
            .unwrap_or_else(|e| panic!("test generator made an invalid node: {e}"));
        if is_var {
            self.vars.push(id);
        }
        id
    }

    fn int(&mut self, lo: usize, hi_incl: usize) -> usize {
        self.rng.random_range(lo..=hi_incl)
    }

    fn coin(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn uni(&mut self, lo: f32, hi: f32) -> f32 {
        self.rng.random_range(lo..hi)
    }

    fn arr(&mut self, shape: &[usize], scale: f32) -> ArrayD<f32> {
        let n = numel(shape);
        let v: Vec<f32> = (0..n).map(|_| self.uni(-scale, scale)).collect();
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    fn divisor(&mut self, n: usize) -> usize {
        let ds: Vec<usize> = (1..=n).filter(|d| n.is_multiple_of(*d)).collect();
        ds[self.rng.random_range(0..ds.len())]
    }

    /// A cheap shape-preserving branch of `x` (a second operand for Add/Sub/Concat).
    fn side_branch(&mut self, x: NodeId) -> NodeId {
        match self.int(0, 2) {
            0 => self.push(Op::Tanh, vec![x], None),
            1 => self.push(Op::Sigmoid, vec![x], None),
            _ => {
                let s = self.shape(x);
                let c = self.arr(&s[s.len() - 1..], 1.0);
                self.push(
                    Op::Affine {
                        scale: Some(c),
                        shift: None,
                    },
                    vec![x],
                    None,
                )
            }
        }
    }

    /// Pool geometry for an `h × w` plane: windows never empty, output size from floor or ceil mode (a window
    /// starting in the end padding dropped, as ONNX specifies).
    fn pool_geometry(&mut self, h: usize, w: usize) -> (Pool, [usize; 2]) {
        let size = [h, w];
        'retry: for _ in 0..30 {
            let kernel = [self.int(1, 3), self.int(1, 3)];
            let strides = [self.int(1, 3), self.int(1, 3)];
            let dilations = [self.int(1, 2), self.int(1, 2)];
            let ceil = self.coin(0.5);
            let mut pads = [0usize; 4];
            for ax in 0..2 {
                let eff = dilations[ax] * (kernel[ax] - 1) + 1;
                pads[ax] = self.int(0, (eff - 1).min(2));
                pads[ax + 2] = self.int(0, (eff - 1).min(2));
            }
            let mut out = [0usize; 2];
            for ax in 0..2 {
                let eff = dilations[ax] * (kernel[ax] - 1) + 1;
                let span = size[ax] + pads[ax] + pads[ax + 2];
                if span < eff {
                    continue 'retry;
                }
                let mut o = if ceil {
                    (span - eff).div_ceil(strides[ax]) + 1
                } else {
                    (span - eff) / strides[ax] + 1
                };
                if ceil && (o - 1) * strides[ax] >= size[ax] + pads[ax] {
                    o -= 1;
                }
                // Every window must hold an input element.
                for oo in 0..o {
                    let hit = (0..kernel[ax]).any(|k| {
                        let p = (oo * strides[ax] + k * dilations[ax]) as isize - pads[ax] as isize;
                        p >= 0 && p < size[ax] as isize
                    });
                    if !hit {
                        continue 'retry;
                    }
                }
                out[ax] = o;
            }
            return (
                Pool {
                    kernel,
                    strides,
                    pads,
                    dilations,
                },
                out,
            );
        }
        (
            Pool {
                kernel: [1, 1],
                strides: [1, 1],
                pads: [0; 4],
                dilations: [1, 1],
            },
            [h, w],
        )
    }

    fn pool(&mut self, x: NodeId, kind: Kind) -> NodeId {
        let s = self.shape(x);
        let r = s.len();
        let (p, [oh, ow]) = self.pool_geometry(s[r - 2], s[r - 1]);
        let mut out = s.clone();
        out[r - 2] = oh;
        out[r - 1] = ow;
        let op = match kind {
            Kind::MaxPool => Op::MaxPool(p),
            Kind::AvgPoolIncludePad => Op::AveragePool {
                pool: p,
                count_include_pad: true,
            },
            _ => Op::AveragePool {
                pool: p,
                count_include_pad: false,
            },
        };
        self.push(op, vec![x], Some(out))
    }

    /// Appends one op of `kind` reading `x` (which always has rank ≥ 3); returns the new node.
    fn apply(&mut self, kind: Kind, x: NodeId) -> NodeId {
        let s = self.shape(x);
        let r = s.len();
        match kind {
            Kind::Linear => {
                let k = s[r - 1];
                let m = self.int(1, 4);
                let scale = (3.0 / k as f32).sqrt();
                let weight = self.arr(&[m, k], scale).into_dimensionality().unwrap();
                let bias = self.coin(0.7).then(|| {
                    let b: Array1<f32> = self.arr(&[m], 0.5).into_dimensionality().unwrap();
                    b
                });
                self.push(Op::Linear(Linear { weight, bias }), vec![x], None)
            }
            Kind::Conv => {
                let (c, h, w) = (s[r - 3], s[r - 2], s[r - 1]);
                let groups = self.divisor(c);
                let c_out = groups * self.int(1, 2);
                let cg = c / groups;
                let (mut kernel, mut strides, mut dil, mut pads) = ([1; 2], [1; 2], [1; 2], [0; 4]);
                for _ in 0..20 {
                    kernel = [self.int(1, 3), self.int(1, 3)];
                    strides = [self.int(1, 2), self.int(1, 2)];
                    dil = [self.int(1, 2), self.int(1, 2)];
                    pads = [
                        self.int(0, 2),
                        self.int(0, 2),
                        self.int(0, 2),
                        self.int(0, 2),
                    ];
                    let fits = |ax: usize, n: usize| {
                        n + pads[ax] + pads[ax + 2] > dil[ax] * (kernel[ax] - 1)
                    };
                    if fits(0, h) && fits(1, w) {
                        break;
                    }
                    (kernel, dil) = ([1; 2], [1; 2]);
                }
                let scale = (3.0 / (cg * kernel[0] * kernel[1]) as f32).sqrt();
                let weight: Array4<f32> = self
                    .arr(&[c_out, cg, kernel[0], kernel[1]], scale)
                    .into_dimensionality()
                    .unwrap();
                let bias = self
                    .coin(0.7)
                    .then(|| self.arr(&[c_out], 0.5).into_dimensionality().unwrap());
                let op = Op::Conv(Conv {
                    weight,
                    bias,
                    strides,
                    pads,
                    dilations: dil,
                    groups,
                });
                self.push(op, vec![x], None)
            }
            Kind::ConvTranspose => {
                let (c, h, w) = (s[r - 3], s[r - 2], s[r - 1]);
                let groups = self.divisor(c);
                let mg = self.int(1, 2);
                let kernel = [self.int(1, 3), self.int(1, 3)];
                let strides = [self.int(1, 2), self.int(1, 2)];
                let dil = [self.int(1, 2), self.int(1, 2)];
                let output_padding = [self.int(0, strides[0] - 1), self.int(0, strides[1] - 1)];
                let mut pads = [
                    self.int(0, 1),
                    self.int(0, 1),
                    self.int(0, 1),
                    self.int(0, 1),
                ];
                for (ax, n) in [(0, h), (1, w)] {
                    let full =
                        strides[ax] * (n - 1) + output_padding[ax] + dil[ax] * (kernel[ax] - 1) + 1;
                    if full <= pads[ax] + pads[ax + 2] {
                        pads[ax] = 0;
                        pads[ax + 2] = 0;
                    }
                }
                let scale = (3.0 / ((c / groups) * kernel[0] * kernel[1]) as f32).sqrt();
                let weight: Array4<f32> = self
                    .arr(&[c, mg, kernel[0], kernel[1]], scale)
                    .into_dimensionality()
                    .unwrap();
                let bias = self
                    .coin(0.7)
                    .then(|| self.arr(&[mg * groups], 0.5).into_dimensionality().unwrap());
                let op = Op::ConvTranspose(ConvTranspose {
                    weight,
                    bias,
                    strides,
                    pads,
                    dilations: dil,
                    output_padding,
                    groups,
                });
                self.push(op, vec![x], None)
            }
            Kind::Affine => {
                let bshape = |g: &mut Gen| -> Vec<usize> {
                    let rr = g.int(0, r);
                    s[r - rr..]
                        .iter()
                        .map(|&d| if g.coin(0.5) { 1 } else { d })
                        .collect()
                };
                let which = self.int(0, 2);
                let scale = (which != 1).then(|| {
                    let sh = bshape(self);
                    self.arr(&sh, 1.5)
                });
                let shift = (which != 0).then(|| {
                    let sh = bshape(self);
                    self.arr(&sh, 0.5)
                });
                self.push(Op::Affine { scale, shift }, vec![x], None)
            }
            Kind::Add | Kind::Sub => {
                let other = match self.int(0, 3) {
                    0 => x,
                    1 => {
                        let same: Vec<NodeId> = self
                            .vars
                            .iter()
                            .copied()
                            .filter(|&v| self.shape(v) == s)
                            .collect();
                        same[self.rng.random_range(0..same.len())]
                    }
                    2 => self.side_branch(x),
                    _ => {
                        let c = self.arr(&s, 1.0);
                        self.push(Op::Constant(c), vec![], None)
                    }
                };
                let ins = if self.coin(0.5) {
                    vec![x, other]
                } else {
                    vec![other, x]
                };
                let op = if kind == Kind::Add { Op::Add } else { Op::Sub };
                self.push(op, ins, None)
            }
            Kind::Relu => self.push(Op::Relu, vec![x], None),
            Kind::LeakyRelu => {
                let alpha = self.uni(0.01, 0.9);
                self.push(Op::LeakyRelu { alpha }, vec![x], None)
            }
            Kind::Sigmoid => self.push(Op::Sigmoid, vec![x], None),
            Kind::Tanh => self.push(Op::Tanh, vec![x], None),
            Kind::Softmax => {
                let axis = self.int(0, r - 1);
                self.push(Op::Softmax { axis }, vec![x], None)
            }
            Kind::Clip => {
                let min = if self.coin(0.15) {
                    f32::NEG_INFINITY
                } else {
                    self.uni(-0.8, 0.2)
                };
                let max = if self.coin(0.15) {
                    f32::INFINITY
                } else {
                    min.max(-0.8) + self.uni(0.1, 1.0)
                };
                self.push(Op::Clip { min, max }, vec![x], None)
            }
            Kind::MaxPool | Kind::AvgPoolIncludePad | Kind::AvgPoolExcludePad => self.pool(x, kind),
            Kind::GlobalAveragePool => self.push(Op::GlobalAveragePool, vec![x], None),
            Kind::Pad => {
                let pads: Vec<(usize, usize)> =
                    (0..r).map(|_| (self.int(0, 2), self.int(0, 2))).collect();
                let value = self.uni(-1.0, 1.0);
                self.push(Op::Pad { pads, value }, vec![x], None)
            }
            Kind::Reshape => {
                // A random factorization of the element count into 3 axes (4 with a leading 1), rank ≥ 3 kept.
                let n = numel(&s);
                let a = self.divisor(n);
                let b = self.divisor(n / a);
                let mut out = vec![a, b, n / a / b];
                if self.coin(0.3) {
                    out.insert(0, 1);
                }
                self.push(Op::Reshape, vec![x], Some(out))
            }
            Kind::Transpose => {
                let mut perm: Vec<usize> = (0..r).collect();
                for i in (1..r).rev() {
                    let j = self.int(0, i);
                    perm.swap(i, j);
                }
                self.push(Op::Transpose { perm }, vec![x], None)
            }
            Kind::Concat | Kind::ConcatConst => {
                let axis = self.int(0, r - 1);
                let mut ins = vec![x];
                let n_more = self.int(1, 2);
                for k in 0..n_more {
                    let choice = if kind == Kind::ConcatConst && k == 0 {
                        0
                    } else {
                        self.int(0, 2)
                    };
                    let o = match choice {
                        0 => {
                            let mut cs = s.clone();
                            cs[axis] = self.int(1, 3);
                            let c = self.arr(&cs, 1.0);
                            self.push(Op::Constant(c), vec![], None)
                        }
                        1 => {
                            // A (strided) slice of x along the axis: a different length there.
                            let d = s[axis];
                            let step: isize = if self.coin(0.5) { 1 } else { -2 };
                            let start = if step > 0 { self.int(0, d - 1) } else { d - 1 };
                            let max_len = if step > 0 { d - start } else { start / 2 + 1 };
                            let len = self.int(1, max_len);
                            let axes: Vec<SliceAxis> = (0..r)
                                .map(|k| {
                                    if k == axis {
                                        SliceAxis { start, step }
                                    } else {
                                        SliceAxis { start: 0, step: 1 }
                                    }
                                })
                                .collect();
                            let mut out = s.clone();
                            out[axis] = len;
                            self.push(Op::Slice { axes }, vec![x], Some(out))
                        }
                        _ => self.side_branch(x),
                    };
                    ins.push(o);
                }
                let pos = self.int(0, ins.len() - 1);
                ins.swap(0, pos);
                self.push(Op::Concat { axis }, ins, None)
            }
            Kind::Slice => {
                let neg_axis = self.int(0, r - 1);
                let mut axes = Vec::with_capacity(r);
                let mut out = Vec::with_capacity(r);
                for (k, &d) in s.iter().enumerate() {
                    let steps: [isize; 7] = [1, 1, 2, 3, -1, -2, -3];
                    let mut step = steps[self.rng.random_range(0..steps.len())];
                    if k == neg_axis && step > 0 {
                        step = -step;
                    }
                    let start = self.int(0, d - 1);
                    let max_len = if step > 0 {
                        (d - 1 - start) / step as usize + 1
                    } else {
                        start / (-step) as usize + 1
                    };
                    let len = self.int(1, max_len);
                    axes.push(SliceAxis { start, step });
                    out.push(len);
                }
                self.push(Op::Slice { axes }, vec![x], Some(out))
            }
            Kind::Gather => {
                let axis = self.int(0, r - 1);
                let len = self.int(1, 4);
                let mut indices: Vec<usize> = (0..len).map(|_| self.int(0, s[axis] - 1)).collect();
                if len >= 2 {
                    // Always a repeated index.
                    indices[len - 1] = indices[0];
                }
                self.push(Op::Gather { axis, indices }, vec![x], None)
            }
        }
    }

    /// Applies `kind`, undoing and retrying with random kinds when the result would be too large.
    fn apply_bounded(&mut self, kind: Kind, x: NodeId) -> NodeId {
        let mut kind = kind;
        for _ in 0..10 {
            let (saved_b, saved_vars, saved_count) =
                (self.b.clone(), self.vars.clone(), self.count);
            let y = self.apply(kind, x);
            if numel(self.b.shape(y)) <= MAX_NUMEL {
                return y;
            }
            (self.b, self.vars, self.count) = (saved_b, saved_vars, saved_count);
            kind = KINDS[self.rng.random_range(0..KINDS.len())];
        }
        self.push(Op::Tanh, vec![x], None)
    }

    fn apply_random(&mut self, x: NodeId) -> NodeId {
        let kind = KINDS[self.rng.random_range(0..KINDS.len())];
        self.apply_bounded(kind, x)
    }
}

/// The random graph of `seed` with `focus` as the op under test and `extra` random ops after it.
fn build_graph(seed: u64, focus: Kind, extra: usize) -> Graph {
    let mut g = Gen::new(seed);
    let mut x = g.b.input_id();
    if g.coin(0.4) {
        x = g.apply_random(x);
    }
    x = g.apply_bounded(focus, x);
    for _ in 0..extra {
        x = g.apply_random(x);
    }
    if g.coin(0.4) {
        // Flatten and a small dense head: rank-1 tensors and Linear over a long axis.
        let n = numel(g.b.shape(x));
        x = g.push(Op::Reshape, vec![x], Some(vec![n]));
        x = g.apply(Kind::Linear, x);
    }
    g.b.finish(x)
}

// ============================================================================================================
// Checks.
// ============================================================================================================

/// `n` random f32 points in [-1, 1]^d, as f64 (so the f32 and f64 evaluations see the same inputs).
fn random_points(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0f32..1.0) as f64)
}

fn describe(g: &Graph) -> String {
    let mut s = format!("{g}\nops:\n");
    for (i, n) in g.nodes().iter().enumerate() {
        let op = format!("{:?}", n.op);
        let op = if op.len() > 400 {
            format!("{}…", &op[..400])
        } else {
            op
        };
        s += &format!("  %{i} {op}\n");
    }
    s
}

/// The first node of `g` whose f64 evaluation differs from the reference at `x` (one sample).
fn first_bad_node(g: &Graph, x: &[f64]) -> String {
    let all = reference_all(g, x);
    for (k, want) in all.iter().enumerate().skip(1) {
        let sub = prefix_graph(g, k);
        let xm = Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap();
        let Ok(y) = Evaluator::<f64>::new(&sub).forward(xm.view()) else {
            return format!("node %{k}: forward returned an error");
        };
        for (j, (&a, &b)) in y.iter().zip(want).enumerate() {
            if (a - b).abs() > 1e-9 * b.abs().max(1.0) {
                let n = &g.nodes()[k];
                return format!(
                    "first differing node: %{k} '{}' ({}) shape {:?}, element {j} {:?}: eval {a}, reference {b}",
                    n.name,
                    n.op.kind(),
                    n.shape,
                    unravel(j, &n.shape)
                );
            }
        }
    }
    "no single node differs".into()
}

/// (a) forward in f64 and f32 against the reference.
fn check_forward(g: &Graph, seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf0f0);
    let n = 4;
    let xs = random_points(&mut rng, n, g.input_size());
    let y64 = Evaluator::<f64>::new(g)
        .forward(xs.view())
        .map_err(|e| format!("f64 forward failed: {e}"))?;
    let y32 = Evaluator::<f32>::new(g)
        .forward(xs.mapv(|v| v as f32).view())
        .map_err(|e| format!("f32 forward failed: {e}"))?;
    let m = g.output_size();
    if y64.dim() != (n, m) || y32.dim() != (n, m) {
        return Err(format!(
            "output dims {:?} / {:?}, expected {:?}",
            y64.dim(),
            y32.dim(),
            (n, m)
        ));
    }
    for p in 0..n {
        let x = xs.row(p).to_vec();
        let want = reference(g, &x);
        for j in 0..m {
            let (a, b, c) = (y64[[p, j]], y32[[p, j]] as f64, want[j]);
            if !within((a - c).abs(), 1e-9 * c.abs().max(1.0)) {
                return Err(format!(
                    "f64 forward: sample {p} output {j}: eval {a}, reference {c} (diff {:e})\n{}",
                    (a - c).abs(),
                    first_bad_node(g, &x)
                ));
            }
            if !within((b - c).abs(), 1e-4 * c.abs().max(1.0)) {
                return Err(format!(
                    "f32 forward: sample {p} output {j}: eval {b}, reference {c} (diff {:e})",
                    (b - c).abs()
                ));
            }
        }
    }
    Ok(())
}

#[derive(Default, Debug, Clone, Copy)]
struct VjpStats {
    coords: usize,
    /// Gradient matched a one-sided slope (a kink inside the finite-difference step on the other side).
    one_sided: usize,
    /// Kinks on both sides within the step: not decidable by finite differences.
    skipped: usize,
}

/// (b) `backward` against central finite differences of `w·f(x)` (f64, step 1e-6).
///
/// With `c = (F(x+h) − F(x−h)) / 2h` and one-sided slopes `s± `, a correct VJP component `g` satisfies
/// `g ≈ c` wherever `F` is smooth on `[x−h, x+h]`. With one kink inside the step, `F` is smooth on the side
/// without it and `g` (the derivative of the piece holding `x`, or either piece when `x` is on the kink) equals that
/// side's slope. Only when both half-segments are nonlinear (second differences at step h/2 above rounding) is
/// the component left undecided; those are counted and must stay rare.
fn check_vjp(g: &Graph, seed: u64) -> Result<VjpStats, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0f0f);
    let (d, m) = (g.input_size(), g.output_size());
    let npts = 2;
    let xs = random_points(&mut rng, npts, d);
    let ws = Array2::from_shape_fn((npts, m), |_| rng.random_range(-1.0..1.0f64));
    check_vjp_at(g, &xs, &ws)
}

/// The finite-difference check of `backward` at the points `xs` with cotangents `ws` (see [`check_vjp`]).
fn check_vjp_at(g: &Graph, xs: &Array2<f64>, ws: &Array2<f64>) -> Result<VjpStats, String> {
    const H: f64 = 1e-6;
    let ev = Evaluator::<f64>::new(g);
    let d = g.input_size();
    let npts = xs.nrows();
    let trace = ev
        .trace(xs.view())
        .map_err(|e| format!("trace failed: {e}"))?;
    let fwd = ev
        .forward(xs.view())
        .map_err(|e| format!("forward failed: {e}"))?;
    if trace.output() != fwd.view() {
        return Err("trace output differs from forward".into());
    }
    let grads = ev.backward(&trace, ws.view());
    if grads.dim() != (npts, d) {
        return Err(format!(
            "backward dims {:?}, expected {:?}",
            grads.dim(),
            (npts, d)
        ));
    }
    let mut st = VjpStats::default();
    for p in 0..npts {
        // Rows: x, then for each coordinate i: x+h e_i, x−h e_i, x+h/2 e_i, x−h/2 e_i.
        let mut batch = Array2::zeros((1 + 4 * d, d));
        for r in 0..batch.nrows() {
            batch.row_mut(r).assign(&xs.row(p));
        }
        for i in 0..d {
            for (k, delta) in [H, -H, H / 2.0, -H / 2.0].into_iter().enumerate() {
                batch[[1 + 4 * i + k, i]] += delta;
            }
        }
        let ys = ev
            .forward(batch.view())
            .map_err(|e| format!("forward failed: {e}"))?;
        let f: Vec<f64> = ys.outer_iter().map(|y| y.dot(&ws.row(p))).collect();
        let f0 = f[0];
        let cs: Vec<f64> = (0..d)
            .map(|i| (f[1 + 4 * i] - f[2 + 4 * i]) / (2.0 * H))
            .collect();
        let gscale = cs.iter().fold(0.0f64, |a, &c| a.max(c.abs()));
        for i in 0..d {
            st.coords += 1;
            let (fp, fm, fph, fmh) = (f[1 + 4 * i], f[2 + 4 * i], f[3 + 4 * i], f[4 + 4 * i]);
            let gi = grads[[p, i]];
            let c = cs[i];
            let tol = 1e-5 * c.abs().max(gscale) + 1e-8;
            if (gi - c).abs() <= tol {
                continue;
            }
            let (sp, sm) = ((fp - f0) / H, (f0 - fm) / H);
            if (gi - sp).abs() <= tol || (gi - sm).abs() <= tol {
                st.one_sided += 1;
                continue;
            }
            let lin = 1e-10 * (1.0 + f0.abs());
            let (d2p, d2m) = (fp - 2.0 * fph + f0, f0 - 2.0 * fmh + fm);
            if d2p.abs() > lin && d2m.abs() > lin {
                st.skipped += 1;
                continue;
            }
            return Err(format!(
                "VJP: sample {p}, input {i}: backward {gi}, central difference {c} (slopes {sm} | {sp}), \
                 tolerance {tol:e}\nw = {}\nx = {}",
                ws.row(p),
                xs.row(p)
            ));
        }
    }
    if st.skipped > 1 + st.coords / 20 {
        return Err(format!("too many undecidable finite differences: {st:?}"));
    }
    Ok(st)
}

/// `err <= tol`, false when `err` is NaN.
fn within(err: f64, tol: f64) -> bool {
    err <= tol
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

/// (c) batched forward/backward equal per-row forward/backward (f64 and f32); an empty batch works.
fn check_batching(g: &Graph, seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xbbbb);
    let (d, m) = (g.input_size(), g.output_size());
    let n = 5;
    let xs = random_points(&mut rng, n, d);
    let ws = Array2::from_shape_fn((n, m), |_| rng.random_range(-1.0..1.0f64));
    use nncert_model::eval::Real;
    fn run<T: Real>(
        g: &Graph,
        xs: &Array2<T>,
        ws: &Array2<T>,
        rel: f64,
        what: &str,
    ) -> Result<(), String> {
        let ev = Evaluator::<T>::new(g);
        let n = xs.nrows();
        let yb = ev.forward(xs.view()).map_err(|e| e.to_string())?;
        let gb = ev.backward(&ev.trace(xs.view()).map_err(|e| e.to_string())?, ws.view());
        for p in 0..n {
            let xr = xs.slice(s![p..p + 1, ..]);
            let y1 = ev.forward(xr).map_err(|e| e.to_string())?;
            let g1 = ev.backward(
                &ev.trace(xr).map_err(|e| e.to_string())?,
                ws.slice(s![p..p + 1, ..]),
            );
            for (j, (a, b)) in yb.row(p).iter().zip(y1.row(0)).enumerate() {
                if !close(Real::to_f64(*a), Real::to_f64(*b), rel) {
                    return Err(format!(
                        "{what} forward: row {p} output {j} is {a:?} in a batch of {n} but {b:?} alone"
                    ));
                }
            }
            for (j, (a, b)) in gb.row(p).iter().zip(g1.row(0)).enumerate() {
                if !close(Real::to_f64(*a), Real::to_f64(*b), rel) {
                    return Err(format!(
                        "{what} backward: row {p} input {j} is {a:?} in a batch of {n} but {b:?} alone"
                    ));
                }
            }
        }
        // An empty batch.
        let x0 = Array2::<T>::zeros((0, xs.ncols()));
        let y0 = ev
            .forward(x0.view())
            .map_err(|e| format!("{what} empty batch: {e}"))?;
        if y0.dim() != (0, ws.ncols()) {
            return Err(format!("{what} empty batch: output dims {:?}", y0.dim()));
        }
        Ok(())
    }
    run::<f64>(g, &xs, &ws, 1e-12, "f64")?;
    run::<f32>(
        g,
        &xs.mapv(|v| v as f32),
        &ws.mapv(|v| v as f32),
        1e-5,
        "f32",
    )
}

/// Runs a check, turning a panic inside the evaluator into a failure message (so the graph gets reported).
fn guard<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panicked: {msg}"))
    })
}

fn fail_msg(what: &str, seed: u64, kind: Kind, extra: usize, g: &Graph, e: &str) -> String {
    format!(
        "{what}: build_graph(seed = {seed}, {kind:?}, extra = {extra}):\n{e}\ngraph:\n{}",
        describe(g)
    )
}

/// `cases` per property unless `PROPTEST_CASES` is set (for long bug-hunting runs).
fn config(cases: u32) -> ProptestConfig {
    let cases = match std::env::var("PROPTEST_CASES") {
        Ok(_) => ProptestConfig::default().cases,
        Err(_) => cases,
    };
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    (0..KINDS.len()).prop_map(|i| KINDS[i])
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn forward_matches_reference(kind in kind_strategy(), seed in any::<u64>(), extra in 0usize..=3) {
        let g = build_graph(seed, kind, extra);
        if let Err(e) = guard(|| check_forward(&g, seed)) {
            return Err(TestCaseError::fail(fail_msg("forward", seed, kind, extra, &g, &e)));
        }
    }

    #[test]
    fn vjp_matches_finite_differences(kind in kind_strategy(), seed in any::<u64>(), extra in 0usize..=3) {
        let g = build_graph(seed, kind, extra);
        if let Err(e) = guard(|| check_vjp(&g, seed)) {
            return Err(TestCaseError::fail(fail_msg("VJP", seed, kind, extra, &g, &e)));
        }
    }

    #[test]
    fn batch_equals_rows(kind in kind_strategy(), seed in any::<u64>(), extra in 0usize..=3) {
        let g = build_graph(seed, kind, extra);
        if let Err(e) = guard(|| check_batching(&g, seed)) {
            return Err(TestCaseError::fail(fail_msg("batching", seed, kind, extra, &g, &e)));
        }
    }
}

/// Every op kind, several fixed seeds, all three checks: coverage of every `Op` variant on every run.
#[test]
fn every_op_kind_all_checks() {
    let mut failures = Vec::new();
    let mut total = VjpStats::default();
    for &kind in &KINDS {
        for seed in 0..6u64 {
            let extra = (seed % 3) as usize;
            let g = build_graph(seed, kind, extra);
            let checks: [(&str, Result<(), String>); 3] = [
                ("forward", guard(|| check_forward(&g, seed))),
                (
                    "VJP",
                    guard(|| check_vjp(&g, seed)).map(|st| {
                        total.coords += st.coords;
                        total.one_sided += st.one_sided;
                        total.skipped += st.skipped;
                    }),
                ),
                ("batching", guard(|| check_batching(&g, seed))),
            ];
            for (what, r) in checks {
                if let Err(e) = r {
                    failures.push(fail_msg(what, seed, kind, extra, &g, &e));
                }
            }
        }
    }
    eprintln!("finite-difference coordinates: {total:?}");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The generator really produces every `Op` variant (guards against a generator change silently dropping one).
#[test]
fn generator_covers_every_op_variant() {
    let mut seen = std::collections::BTreeSet::new();
    let mut neg_step = false;
    let mut repeated_gather = false;
    let mut grouped_conv = false;
    for &kind in &KINDS {
        for seed in 0..6u64 {
            let g = build_graph(seed, kind, (seed % 3) as usize);
            for n in g.nodes() {
                seen.insert(n.op.kind());
                match &n.op {
                    Op::Slice { axes } => neg_step |= axes.iter().any(|a| a.step < 0),
                    Op::Gather { indices, .. } => {
                        repeated_gather |=
                            (1..indices.len()).any(|i| indices[..i].contains(&indices[i]))
                    }
                    Op::Conv(c) => grouped_conv |= c.groups > 1,
                    _ => {}
                }
            }
        }
    }
    let all = [
        "Input",
        "Constant",
        "Linear",
        "Conv",
        "ConvTranspose",
        "Affine",
        "Add",
        "Sub",
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "Clip",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Pad",
        "Reshape",
        "Transpose",
        "Concat",
        "Slice",
        "Gather",
    ];
    for k in all {
        assert!(seen.contains(k), "generator never made {k}");
    }
    assert!(neg_step && repeated_gather && grouped_conv);
}

// ============================================================================================================
// A few hand-computed cases (ONNX semantics spelled out on tiny inputs).
// ============================================================================================================

fn eval1(g: &Graph, x: &[f64]) -> Vec<f64> {
    let xm = Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap();
    Evaluator::<f64>::new(g)
        .forward(xm.view())
        .unwrap()
        .row(0)
        .to_vec()
}

fn grad1(g: &Graph, x: &[f64], w: &[f64]) -> Vec<f64> {
    let ev = Evaluator::<f64>::new(g);
    let xm = Array2::from_shape_vec((1, x.len()), x.to_vec()).unwrap();
    let wm = Array2::from_shape_vec((1, w.len()), w.to_vec()).unwrap();
    ev.backward(&ev.trace(xm.view()).unwrap(), wm.view())
        .row(0)
        .to_vec()
}

#[test]
fn slice_negative_step_and_gather_repeats() {
    // x = [0, 1, 2, 3, 4] as [1, 1, 5]; Slice(start 4, step −2) = [4, 2, 0]; Gather([3, 3, 0]) = [3, 3, 0].
    let mut b = GraphBuilder::new("x", vec![1, 1, 5]);
    let x = b.input_id();
    let axes = vec![
        SliceAxis { start: 0, step: 1 },
        SliceAxis { start: 0, step: 1 },
        SliceAxis { start: 4, step: -2 },
    ];
    let sl = b
        .push("s", Op::Slice { axes }, vec![x], Some(vec![1, 1, 3]))
        .unwrap();
    let ga = b
        .push(
            "g",
            Op::Gather {
                axis: 2,
                indices: vec![3, 3, 0],
            },
            vec![x],
            None,
        )
        .unwrap();
    let y = b
        .push("c", Op::Concat { axis: 2 }, vec![sl, ga], None)
        .unwrap();
    let g = b.finish(y);
    let x = [0.0, 1.0, 2.0, 3.0, 4.0];
    assert_eq!(eval1(&g, &x), vec![4.0, 2.0, 0.0, 3.0, 3.0, 0.0]);
    // Gradient: slice scatters to 4, 2, 0; the repeated gather index 3 collects twice.
    let w = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0];
    assert_eq!(
        grad1(&g, &x, &w),
        vec![100.0 + 100000.0, 0.0, 10.0, 11000.0, 1.0]
    );
}

#[test]
fn average_pool_count_include_pad() {
    // All-ones 3×3 input, kernel 2×2, stride 2, pads 1 on every side → 2×2 output; windows cover rows (and
    // columns) {−1, 0} and {1, 2}, so they hold 1, 2, 2 and 4 input elements and 4 padded-input positions each.
    let pool = Pool {
        kernel: [2, 2],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        dilations: [1, 1],
    };
    for include in [false, true] {
        let mut b = GraphBuilder::new("x", vec![1, 3, 3]);
        let x = b.input_id();
        let op = Op::AveragePool {
            pool: pool.clone(),
            count_include_pad: include,
        };
        let y = b.push("p", op, vec![x], Some(vec![1, 2, 2])).unwrap();
        let g = b.finish(y);
        let got = eval1(&g, &[1.0; 9]);
        let want = if include {
            vec![1.0 / 4.0, 2.0 / 4.0, 2.0 / 4.0, 1.0]
        } else {
            vec![1.0; 4]
        };
        assert_eq!(got, want, "count_include_pad = {include}");
    }
}

#[test]
fn average_pool_ceil_mode_window_past_the_padded_end() {
    // ONNX / onnxruntime: AveragePool(kernel 3, stride 2, no pads, ceil_mode 1, count_include_pad 1) on a
    // 1×4 row of ones gives [1, 1]: the second window {2, 3, 4} reaches past the (unpadded) end and position 4
    // is not counted (verified with onnxruntime 1.32: output [[1, 1], [1, 1]] on a 4×4 input).
    let pool = Pool {
        kernel: [1, 3],
        strides: [1, 2],
        pads: [0; 4],
        dilations: [1, 1],
    };
    let mut b = GraphBuilder::new("x", vec![1, 1, 4]);
    let x = b.input_id();
    let op = Op::AveragePool {
        pool,
        count_include_pad: true,
    };
    let y = b.push("p", op, vec![x], Some(vec![1, 1, 2])).unwrap();
    let g = b.finish(y);
    assert_eq!(eval1(&g, &[1.0; 4]), vec![1.0, 1.0]);
}

#[test]
fn finite_difference_checker_handles_kinks() {
    // y = relu(x) on a scalar: at x = 0.3·h the kink lies inside the step on the left, so the central difference
    // (0.65) is off but the right-hand slope (1) is exact; at x = 0, ReLU'(0) = 0 is the left-hand slope.
    let mut b = GraphBuilder::new("x", vec![1, 1, 1]);
    let y = b.push("r", Op::Relu, vec![b.input_id()], None).unwrap();
    let g = b.finish(y);
    let xs = Array2::from_shape_vec((3, 1), vec![0.3e-6, 0.0, 0.5]).unwrap();
    let ws = Array2::from_elem((3, 1), 1.0);
    let st = check_vjp_at(&g, &xs, &ws).unwrap();
    assert_eq!((st.coords, st.one_sided, st.skipped), (3, 2, 0), "{st:?}");
}
