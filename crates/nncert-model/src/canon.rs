//! Canonicalization: semantics-preserving rewrites of an imported [`Graph`] that leave fewer, larger affine
//! layers, so that bound propagation has fewer places to lose precision.
//!
//! Rewrites (applied until none applies):
//! - a Reshape to the shape it already has is dropped; a Reshape of a Reshape reads the original operand;
//! - an Affine whose scale is all ones and whose shift is all zeros (or absent) is dropped;
//! - consecutive Affine ops merge into one (when the first has no other user);
//! - an Affine after a Linear whose constants vary only along the last axis is folded into the Linear's weight
//!   and bias (this is MatMul + Add → Linear with bias, and Gemm + Mul/Add by constants);
//! - an Affine after a Conv or ConvTranspose whose constants are per channel is folded into its weight and bias
//!   (BatchNormalization fusion).
//!
//! Linear layers are *not* merged with each other: separate layers keep the activation-free structure that
//! bounds exploit, and merging would not shrink the graph in general.
//!
//! Exactness: the constants of Affine ops, and the weights of the layers a rewrite touches, are converted to f64
//! (exactly) and rounded back to f32 once at the end, so each fused weight is the f32 rounding of the exact
//! product of the original f32 constants (up to the f64 rounding of products of more than two factors).

use crate::ir::{Conv, ConvTranspose, Graph, GraphBuilder, Linear, Op, Shape};
use ndarray::{Array1, Array2, Array4, ArrayD, Axis};

/// Applies the rewrites listed in the module documentation until none applies.
pub fn canonicalize(graph: Graph) -> Graph {
    let mut w = Work::new(&graph);
    w.run();
    match w.build() {
        Some(g) => g,
        // The rewrites preserve shapes, so rebuilding cannot fail; if it ever did, the original graph is
        // still correct.
        None => {
            debug_assert!(false, "canonicalization produced an invalid graph");
            graph
        }
    }
}

/// An op during rewriting: affine ops hold f64 constants, everything else the original op.
#[derive(Clone, Debug)]
enum WOp {
    Other(Op),
    Affine {
        scale: Option<ArrayD<f64>>,
        shift: Option<ArrayD<f64>>,
    },
    Linear {
        w: Array2<f64>,
        b: Option<Array1<f64>>,
    },
    /// The Conv's `weight` is emptied; `w` holds it.
    Conv {
        meta: Conv,
        w: Array4<f64>,
        b: Option<Array1<f64>>,
    },
    /// The ConvTranspose's `weight` is emptied; `w` holds it.
    ConvT {
        meta: ConvTranspose,
        w: Array4<f64>,
        b: Option<Array1<f64>>,
    },
}

#[derive(Clone, Debug)]
struct WNode {
    name: String,
    op: WOp,
    inputs: Vec<usize>,
    shape: Shape,
}

struct Work {
    nodes: Vec<WNode>,
    output: usize,
}

fn f64d(a: &ArrayD<f32>) -> ArrayD<f64> {
    a.mapv(|v| v as f64)
}
fn f64v(a: &Option<Array1<f32>>) -> Option<Array1<f64>> {
    a.as_ref().map(|b| b.mapv(|v| v as f64))
}
fn f32d<D: ndarray::Dimension>(a: &ndarray::Array<f64, D>) -> ndarray::Array<f32, D> {
    a.mapv(|v| v as f32)
}

/// If the constant (broadcast to `shape`) varies at most along axis `axis` of `shape`, its values along that
/// axis (length `shape[axis]`).
fn along_axis(c: &ArrayD<f64>, shape: &[usize], axis: usize) -> Option<Array1<f64>> {
    let r = shape.len();
    let cs = c.shape();
    if cs.len() > r {
        return None;
    }
    let off = r - cs.len();
    for (k, &d) in cs.iter().enumerate() {
        if d != 1 && k + off != axis {
            return None;
        }
    }
    let n = shape[axis];
    let vals: Vec<f64> = c.iter().copied().collect();
    match vals.len() {
        1 => Some(Array1::from_elem(n, vals[0])),
        m if m == n => Some(Array1::from(vals)),
        _ => None,
    }
}

/// Converts a Linear, Conv or ConvTranspose to its f64 working form (exact), so that fusions into it round once.
fn promote(op: &mut WOp) {
    let empty = || Array4::zeros((0, 0, 0, 0));
    let new = match op {
        WOp::Other(Op::Linear(l)) => WOp::Linear {
            w: l.weight.mapv(|v| v as f64),
            b: f64v(&l.bias),
        },
        WOp::Other(Op::Conv(c)) => WOp::Conv {
            w: c.weight.mapv(|v| v as f64),
            b: f64v(&c.bias),
            meta: Conv {
                weight: empty(),
                bias: None,
                ..c.clone()
            },
        },
        WOp::Other(Op::ConvTranspose(c)) => WOp::ConvT {
            w: c.weight.mapv(|v| v as f64),
            b: f64v(&c.bias),
            meta: ConvTranspose {
                weight: empty(),
                bias: None,
                ..c.clone()
            },
        },
        _ => return,
    };
    *op = new;
}

/// `(scale, shift)` of an Affine as per-channel vectors along `axis`, if both vary only along it.
fn per_axis(
    scale: &Option<ArrayD<f64>>,
    shift: &Option<ArrayD<f64>>,
    shape: &[usize],
    axis: usize,
) -> Option<(Array1<f64>, Option<Array1<f64>>)> {
    let n = shape[axis];
    let s = match scale {
        Some(s) => along_axis(s, shape, axis)?,
        None => Array1::ones(n),
    };
    let t = match shift {
        Some(t) => Some(along_axis(t, shape, axis)?),
        None => None,
    };
    Some((s, t))
}

/// New bias `s ⊙ b + t`.
fn fused_bias(
    b: &Option<Array1<f64>>,
    s: &Array1<f64>,
    t: &Option<Array1<f64>>,
) -> Option<Array1<f64>> {
    match (b, t) {
        (None, None) => None,
        (Some(b), None) => Some(b * s),
        (None, Some(t)) => Some(t.clone()),
        (Some(b), Some(t)) => Some(b * s + t),
    }
}

impl Work {
    fn new(g: &Graph) -> Work {
        let nodes = g
            .nodes()
            .iter()
            .map(|n| {
                // Affine constants are small: f64 from the start. Weights are converted only when a fusion
                // touches them ([`promote`]).
                let op = match &n.op {
                    Op::Affine { scale, shift } => WOp::Affine {
                        scale: scale.as_ref().map(f64d),
                        shift: shift.as_ref().map(f64d),
                    },
                    op => WOp::Other(op.clone()),
                };
                WNode {
                    name: n.name.clone(),
                    op,
                    inputs: n.inputs.iter().map(|i| i.0).collect(),
                    shape: n.shape.clone(),
                }
            })
            .collect();
        Work {
            nodes,
            output: g.output_id().0,
        }
    }

    /// Uses of each node by nodes the output depends on (the output itself counts as a use).
    fn live_uses(&self) -> Vec<usize> {
        let n = self.nodes.len();
        let mut live = vec![false; n];
        live[self.output] = true;
        for i in (0..n).rev() {
            if live[i] {
                for &j in &self.nodes[i].inputs {
                    live[j] = true;
                }
            }
        }
        let mut uses = vec![0; n];
        for (node, _) in self.nodes.iter().zip(&live).filter(|(_, l)| **l) {
            for &j in &node.inputs {
                uses[j] += 1;
            }
        }
        uses[self.output] += 1;
        uses
    }

    /// Makes every reader of `old` read `new` instead (`new` precedes all of them).
    fn replace_uses(&mut self, old: usize, new: usize) {
        for n in &mut self.nodes {
            for i in &mut n.inputs {
                if *i == old {
                    *i = new;
                }
            }
        }
        if self.output == old {
            self.output = new;
        }
    }

    fn run(&mut self) {
        let mut uses = self.live_uses();
        loop {
            let mut changed = false;
            for i in 1..self.nodes.len() {
                if uses[i] > 0 && self.rewrite(i, &uses) {
                    changed = true;
                    uses = self.live_uses();
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Applies one rewrite at node `i`, if one applies.
    fn rewrite(&mut self, i: usize, uses: &[usize]) -> bool {
        let Some(&j) = self.nodes[i].inputs.first() else {
            return false;
        };
        match &self.nodes[i].op {
            WOp::Other(Op::Reshape) => {
                if self.nodes[i].shape == self.nodes[j].shape {
                    self.replace_uses(i, j);
                    return true;
                }
                if matches!(self.nodes[j].op, WOp::Other(Op::Reshape)) {
                    self.nodes[i].inputs = self.nodes[j].inputs.clone();
                    return true;
                }
                false
            }
            WOp::Affine { scale, shift } => {
                // Trivial constants first.
                let one = scale.as_ref().is_some_and(|s| s.iter().all(|&v| v == 1.0));
                let zero = shift.as_ref().is_some_and(|t| t.iter().all(|&v| v == 0.0));
                if one || zero {
                    if let WOp::Affine { scale, shift } = &mut self.nodes[i].op {
                        if one {
                            *scale = None;
                        }
                        if zero {
                            *shift = None;
                        }
                    }
                    return true;
                }
                if scale.is_none() && shift.is_none() {
                    self.replace_uses(i, j);
                    return true;
                }
                if uses[j] != 1 {
                    return false;
                }
                let (scale, shift) = (scale.clone(), shift.clone());
                promote(&mut self.nodes[j].op);
                let shape = self.nodes[i].shape.clone();
                let r = shape.len();
                match &mut self.nodes[j].op {
                    WOp::Affine {
                        scale: s1,
                        shift: b1,
                    } => {
                        // s2 ⊙ (s1 ⊙ x + b1) + b2
                        let s = match (s1.as_ref(), scale.as_ref()) {
                            (None, None) => None,
                            (Some(a), None) => Some(a.clone()),
                            (None, Some(b)) => Some(b.clone()),
                            (Some(a), Some(b)) => Some(a * b),
                        };
                        let b1s = match (b1.as_ref(), scale.as_ref()) {
                            (None, _) => None,
                            (Some(b), None) => Some(b.clone()),
                            (Some(b), Some(s2)) => Some(b * s2),
                        };
                        let t = match (b1s, shift) {
                            (None, t) => t,
                            (b, None) => b,
                            (Some(b), Some(t)) => Some(&b + &t),
                        };
                        let inputs = self.nodes[j].inputs.clone();
                        self.nodes[i].op = WOp::Affine { scale: s, shift: t };
                        self.nodes[i].inputs = inputs;
                        true
                    }
                    WOp::Linear { w, b } if r >= 1 => {
                        let Some((s, t)) = per_axis(&scale, &shift, &shape, r - 1) else {
                            return false;
                        };
                        for (mut row, &k) in w.axis_iter_mut(Axis(0)).zip(&s) {
                            row *= k;
                        }
                        *b = fused_bias(b, &s, &t);
                        self.replace_uses(i, j);
                        true
                    }
                    WOp::Conv { w, b, .. } if r >= 3 => {
                        let Some((s, t)) = per_axis(&scale, &shift, &shape, r - 3) else {
                            return false;
                        };
                        for (mut filt, &k) in w.axis_iter_mut(Axis(0)).zip(&s) {
                            filt *= k;
                        }
                        *b = fused_bias(b, &s, &t);
                        self.replace_uses(i, j);
                        true
                    }
                    WOp::ConvT { meta, w, b } if r >= 3 => {
                        let Some((s, t)) = per_axis(&scale, &shift, &shape, r - 3) else {
                            return false;
                        };
                        // weight [C_in, C_out/groups, kH, kW]: input channel ci of group g feeds output channels
                        // g·(C_out/groups) + j.
                        let cin = w.shape()[0];
                        let cpg = w.shape()[1];
                        let in_per_group = cin / meta.groups.max(1);
                        for ci in 0..cin {
                            let g = ci / in_per_group.max(1);
                            for jj in 0..cpg {
                                let k = s[g * cpg + jj];
                                let mut f = w.index_axis_mut(Axis(0), ci);
                                let mut f = f.index_axis_mut(Axis(0), jj);
                                f *= k;
                            }
                        }
                        *b = fused_bias(b, &s, &t);
                        self.replace_uses(i, j);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// The rewritten graph (dead nodes dropped by [`GraphBuilder::finish`]).
    fn build(self) -> Option<Graph> {
        let uses = self.live_uses();
        let mut it = self.nodes.into_iter();
        let input = it.next()?;
        let mut b = GraphBuilder::new(input.name, input.shape);
        let mut map = vec![None; uses.len()];
        map[0] = Some(b.input_id());
        for (k, n) in it.enumerate() {
            let i = k + 1;
            if uses[i] == 0 {
                continue;
            }
            let op = match n.op {
                WOp::Other(op) => op,
                WOp::Affine { scale, shift } => Op::Affine {
                    scale: scale.as_ref().map(f32d),
                    shift: shift.as_ref().map(f32d),
                },
                WOp::Linear { w, b } => Op::Linear(Linear {
                    weight: f32d(&w),
                    bias: b.as_ref().map(f32d),
                }),
                WOp::Conv { meta, w, b } => Op::Conv(Conv {
                    weight: f32d(&w),
                    bias: b.as_ref().map(f32d),
                    ..meta
                }),
                WOp::ConvT { meta, w, b } => Op::ConvTranspose(ConvTranspose {
                    weight: f32d(&w),
                    bias: b.as_ref().map(f32d),
                    ..meta
                }),
            };
            let inputs = n
                .inputs
                .iter()
                .map(|&j| map[j])
                .collect::<Option<Vec<_>>>()?;
            map[i] = Some(b.push(n.name, op, inputs, Some(n.shape)).ok()?);
        }
        Some(b.finish(map[self.output]?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Evaluator;
    use crate::ir::NodeId;
    use ndarray::{Array, IxDyn, arr1};

    /// Deterministic pseudo-random values in [-1, 1) (splitmix64).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn arr(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), values(n, seed)).unwrap()
    }

    fn affine(scale: Option<ArrayD<f32>>, shift: Option<ArrayD<f32>>) -> Op {
        Op::Affine { scale, shift }
    }

    fn linear(o: usize, i: usize, seed: u64, bias: bool) -> Op {
        Op::Linear(Linear {
            weight: arr(&[o, i], seed).into_dimensionality().unwrap(),
            bias: bias.then(|| Array1::from(values(o, seed + 1))),
        })
    }

    fn conv(cout: usize, cin: usize, k: usize, seed: u64, bias: bool) -> Op {
        Op::Conv(Conv {
            weight: arr(&[cout, cin, k, k], seed).into_dimensionality().unwrap(),
            bias: bias.then(|| Array1::from(values(cout, seed + 1))),
            strides: [1, 1],
            pads: [1, 0, 1, 0],
            dilations: [1, 1],
            groups: 1,
        })
    }

    fn kinds(g: &Graph) -> Vec<&'static str> {
        g.nodes().iter().map(|n| n.op.kind()).collect()
    }

    /// Canonicalizes and checks the result computes the same function (f64 evaluation, 8 random inputs).
    fn check(g: Graph, expected_kinds: &[&str]) -> Graph {
        let c = canonicalize(g.clone());
        assert_eq!(kinds(&c), expected_kinds, "canonical graph:\n{c}");
        let n = g.input_size();
        let x = Array::from_shape_vec(
            (8, n),
            values(8 * n, 99).iter().map(|&v| v as f64).collect(),
        )
        .unwrap();
        let y0 = Evaluator::<f64>::new(&g).forward(x.view()).unwrap();
        let y1 = Evaluator::<f64>::new(&c).forward(x.view()).unwrap();
        let scale = y0.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (a, b) in y0.iter().zip(y1.iter()) {
            assert!(
                (a - b).abs() <= 1e-5 * scale,
                "{a} vs {b}\nbefore:\n{g}\nafter:\n{c}"
            );
        }
        c
    }

    #[test]
    fn noop_reshape_and_reshape_chains_go() {
        let mut b = GraphBuilder::new("x", vec![1, 2, 3]);
        let x = b.input_id();
        let r0 = b
            .push("same", Op::Reshape, vec![x], Some(vec![1, 2, 3]))
            .unwrap();
        let r1 = b.push("r1", Op::Reshape, vec![r0], Some(vec![6])).unwrap();
        let r2 = b
            .push("r2", Op::Reshape, vec![r1], Some(vec![3, 2]))
            .unwrap();
        let r3 = b
            .push("r3", Op::Reshape, vec![r2], Some(vec![1, 6]))
            .unwrap();
        let y = b.push("fc", linear(2, 6, 1, true), vec![r3], None).unwrap();
        check(b.finish(y), &["Input", "Reshape", "Linear"]);

        // A chain that ends in the original shape disappears entirely.
        let mut b = GraphBuilder::new("x", vec![2, 3]);
        let x = b.input_id();
        let r1 = b.push("r1", Op::Reshape, vec![x], Some(vec![6])).unwrap();
        let r2 = b
            .push("r2", Op::Reshape, vec![r1], Some(vec![2, 3]))
            .unwrap();
        let y = b.push("relu", Op::Relu, vec![r2], None).unwrap();
        check(b.finish(y), &["Input", "Relu"]);
    }

    #[test]
    fn identity_affines_go() {
        let mut b = GraphBuilder::new("x", vec![4]);
        let x = b.input_id();
        let a0 = b.push("none", affine(None, None), vec![x], None).unwrap();
        let ones = ArrayD::from_elem(IxDyn(&[4]), 1.0f32);
        let zeros = ArrayD::from_elem(IxDyn(&[1]), 0.0f32);
        let a1 = b
            .push("id", affine(Some(ones), Some(zeros)), vec![a0], None)
            .unwrap();
        let y = b.push("relu", Op::Relu, vec![a1], None).unwrap();
        check(b.finish(y), &["Input", "Relu"]);
    }

    #[test]
    fn consecutive_affines_merge() {
        // (x - mean) / std with differently shaped constants, then a shift along another axis.
        let mut b = GraphBuilder::new("x", vec![1, 3, 2, 2]);
        let x = b.input_id();
        let a0 = b
            .push("sub", affine(None, Some(arr(&[3, 1, 1], 5))), vec![x], None)
            .unwrap();
        let a1 = b
            .push(
                "div",
                affine(Some(arr(&[3, 1, 1], 6)), None),
                vec![a0],
                None,
            )
            .unwrap();
        let a2 = b
            .push(
                "add",
                affine(Some(arr(&[2], 7)), Some(arr(&[2, 1], 8))),
                vec![a1],
                None,
            )
            .unwrap();
        let y = b.push("relu", Op::Relu, vec![a2], None).unwrap();
        let c = check(b.finish(y), &["Input", "Affine", "Relu"]);
        assert_eq!(c.nodes()[1].name, "add");
    }

    #[test]
    fn affine_with_two_users_is_not_merged() {
        let mut b = GraphBuilder::new("x", vec![3]);
        let x = b.input_id();
        let a0 = b
            .push("a0", affine(Some(arr(&[3], 1)), None), vec![x], None)
            .unwrap();
        let a1 = b
            .push("a1", affine(None, Some(arr(&[3], 2))), vec![a0], None)
            .unwrap();
        let r = b.push("relu", Op::Relu, vec![a0], None).unwrap();
        let y = b.push("add", Op::Add, vec![a1, r], None).unwrap();
        check(b.finish(y), &["Input", "Affine", "Affine", "Relu", "Add"]);
    }

    #[test]
    fn matmul_plus_bias_fuses_into_linear() {
        // Linear without bias, then Add(bias) and Mul(per-output scale): one Linear with bias.
        let mut b = GraphBuilder::new("x", vec![1, 5]);
        let x = b.input_id();
        let l = b.push("mm", linear(3, 5, 1, false), vec![x], None).unwrap();
        let a = b
            .push("add", affine(None, Some(arr(&[3], 2))), vec![l], None)
            .unwrap();
        let m = b
            .push("mul", affine(Some(arr(&[1, 3], 3)), None), vec![a], None)
            .unwrap();
        let y = b.push("relu", Op::Relu, vec![m], None).unwrap();
        let c = check(b.finish(y), &["Input", "Linear", "Relu"]);
        let Op::Linear(l) = &c.nodes()[1].op else {
            panic!()
        };
        assert!(l.bias.is_some());
        assert_eq!(c.nodes()[1].name, "mm");
    }

    #[test]
    fn affine_not_along_last_axis_stays() {
        // Output [2, 3]: a shift varying along axis 0 cannot be a bias.
        let mut b = GraphBuilder::new("x", vec![2, 4]);
        let x = b.input_id();
        let l = b.push("fc", linear(3, 4, 1, true), vec![x], None).unwrap();
        let a = b
            .push("add", affine(None, Some(arr(&[2, 1], 2))), vec![l], None)
            .unwrap();
        check(b.finish(a), &["Input", "Linear", "Affine"]);
    }

    #[test]
    fn linear_with_two_users_is_not_fused() {
        let mut b = GraphBuilder::new("x", vec![4]);
        let x = b.input_id();
        let l = b.push("fc", linear(4, 4, 1, true), vec![x], None).unwrap();
        let a = b
            .push("scale", affine(Some(arr(&[4], 2)), None), vec![l], None)
            .unwrap();
        let y = b.push("add", Op::Add, vec![a, l], None).unwrap();
        check(b.finish(y), &["Input", "Linear", "Affine", "Add"]);
    }

    #[test]
    fn batchnorm_fuses_into_conv() {
        let mut b = GraphBuilder::new("x", vec![1, 2, 5, 4]);
        let x = b.input_id();
        let c = b
            .push("conv", conv(3, 2, 3, 1, true), vec![x], None)
            .unwrap();
        let bn = b
            .push(
                "bn",
                affine(Some(arr(&[3, 1, 1], 2)), Some(arr(&[3, 1, 1], 3))),
                vec![c],
                None,
            )
            .unwrap();
        let y = b.push("relu", Op::Relu, vec![bn], None).unwrap();
        check(b.finish(y), &["Input", "Conv", "Relu"]);

        // Without a conv bias, and a scalar scale.
        let mut b = GraphBuilder::new("x", vec![1, 2, 5, 4]);
        let x = b.input_id();
        let c = b
            .push("conv", conv(3, 2, 3, 1, false), vec![x], None)
            .unwrap();
        let s = ArrayD::from_elem(IxDyn(&[]), 0.5f32);
        let bn = b
            .push(
                "half",
                affine(Some(s), Some(arr(&[1, 3, 1, 1], 3))),
                vec![c],
                None,
            )
            .unwrap();
        check(b.finish(bn), &["Input", "Conv"]);

        // A constant varying along W is not per channel.
        let mut b = GraphBuilder::new("x", vec![1, 2, 5, 4]);
        let x = b.input_id();
        let c = b
            .push("conv", conv(3, 2, 3, 1, true), vec![x], None)
            .unwrap();
        let bn = b
            .push("w", affine(Some(arr(&[2], 2)), None), vec![c], None)
            .unwrap();
        check(b.finish(bn), &["Input", "Conv", "Affine"]);
    }

    #[test]
    fn batchnorm_fuses_into_conv_transpose() {
        let mut b = GraphBuilder::new("x", vec![1, 4, 3, 3]);
        let x = b.input_id();
        let ct = Op::ConvTranspose(ConvTranspose {
            weight: arr(&[4, 3, 2, 2], 1).into_dimensionality().unwrap(),
            bias: Some(Array1::from(values(6, 9))),
            strides: [2, 2],
            pads: [0, 0, 0, 0],
            dilations: [1, 1],
            output_padding: [0, 0],
            groups: 2,
        });
        let c = b
            .push("convT", ct, vec![x], Some(vec![1, 6, 6, 6]))
            .unwrap();
        let bn = b
            .push(
                "bn",
                affine(Some(arr(&[6, 1, 1], 2)), Some(arr(&[6, 1, 1], 3))),
                vec![c],
                None,
            )
            .unwrap();
        check(b.finish(bn), &["Input", "ConvTranspose"]);
    }

    #[test]
    fn chain_of_rewrites_reaches_a_fixpoint() {
        // Linear → no-op Reshape → Affine → Affine → Reshape → Reshape: one Linear and one Reshape remain.
        let mut b = GraphBuilder::new("x", vec![1, 3]);
        let x = b.input_id();
        let l = b.push("fc", linear(4, 3, 1, true), vec![x], None).unwrap();
        let r = b
            .push("noop", Op::Reshape, vec![l], Some(vec![1, 4]))
            .unwrap();
        let a = b
            .push("a", affine(Some(arr(&[4], 2)), None), vec![r], None)
            .unwrap();
        let a2 = b
            .push("a2", affine(None, Some(arr(&[1], 3))), vec![a], None)
            .unwrap();
        let r1 = b
            .push("r1", Op::Reshape, vec![a2], Some(vec![2, 2]))
            .unwrap();
        let r2 = b.push("r2", Op::Reshape, vec![r1], Some(vec![4])).unwrap();
        let c = check(b.finish(r2), &["Input", "Linear", "Reshape"]);
        assert_eq!(c.output().shape, vec![4]);
        assert_eq!(c.output_id(), NodeId(2));
    }

    #[test]
    fn fusion_rounds_once() {
        // Two scalings by 3 then 1/3 in f64 give back the weights exactly (f32 rounding after each step would not
        // in general).
        let w = arr1(&[0.1f32, 0.7, -1.3]);
        let mut b = GraphBuilder::new("x", vec![3]);
        let x = b.input_id();
        let l = b
            .push(
                "fc",
                Op::Linear(Linear {
                    weight: w.clone().into_shape_with_order((1, 3)).unwrap(),
                    bias: None,
                }),
                vec![x],
                None,
            )
            .unwrap();
        let a = b
            .push(
                "x3",
                affine(Some(ArrayD::from_elem(IxDyn(&[1]), 3.0)), None),
                vec![l],
                None,
            )
            .unwrap();
        let third = (1.0f64 / 3.0) as f32;
        let a2 = b
            .push(
                "d3",
                affine(Some(ArrayD::from_elem(IxDyn(&[1]), third)), None),
                vec![a],
                None,
            )
            .unwrap();
        let c = check(b.finish(a2), &["Input", "Linear"]);
        let Op::Linear(l) = &c.nodes()[1].op else {
            panic!()
        };
        let expect: Vec<f32> = w
            .iter()
            .map(|&v| (v as f64 * 3.0 * third as f64) as f32)
            .collect();
        assert_eq!(l.weight.iter().copied().collect::<Vec<_>>(), expect);
    }
}
