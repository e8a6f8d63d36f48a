//! The linear part of affine nodes as operators: the node's op with its offsets removed (bias, shift, pad
//! value), and the same with every coefficient replaced by its absolute value. Both are applied through the
//! model's evaluator (forward = `A·x`, `node_backward` = `Aᵀ·y`), so a convolution is never turned into a
//! matrix unless it is small.

use super::linalg::{self, U, up};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use nncert_bounds::gamma;
use nncert_model::eval::Evaluator;
use nncert_model::ir::{Graph, GraphBuilder, Linear, Op};

/// Relative uncertainty granted to stored constants (as in `nncert-bounds`): import may have rounded a
/// constant once to f32, so bounds hold for the model as written in its file.
pub(crate) const IMPORT_ROUNDING: f64 = 1.0 / (1u64 << 23) as f64;

/// Matrices up to this many entries may be materialized for the spectral bound.
const DENSE_MAX_ENTRIES: usize = 4 << 20;
/// … and only when the Gram matrix (the smaller side) is at most this wide.
const DENSE_MAX_SIDE: usize = 1024;

/// `op` with its offsets removed (`abs`: and coefficients replaced by their absolute values). Non-affine ops
/// are returned unchanged; `Sub` becomes `Add` in the absolute version.
pub(crate) fn linear_part(op: &Op, abs: bool) -> Op {
    let f = |v: f32| if abs { v.abs() } else { v };
    match op {
        Op::Linear(l) => Op::Linear(Linear {
            weight: l.weight.mapv(f),
            bias: None,
        }),
        Op::Conv(c) => {
            let mut c = c.clone();
            c.weight.mapv_inplace(f);
            c.bias = None;
            Op::Conv(c)
        }
        Op::ConvTranspose(c) => {
            let mut c = c.clone();
            c.weight.mapv_inplace(f);
            c.bias = None;
            Op::ConvTranspose(c)
        }
        Op::Affine { scale, .. } => Op::Affine {
            scale: scale.as_ref().map(|s| s.mapv(f)),
            shift: None,
        },
        Op::Constant(c) => Op::Constant(c.mapv(|_| 0.0)),
        Op::Sub if abs => Op::Add,
        Op::Pad { pads, .. } => Op::Pad {
            pads: pads.clone(),
            value: 0.0,
        },
        other => other.clone(),
    }
}

/// The whole graph with every affine node replaced by its linear part (`abs`: absolute coefficients).
/// Node ids are unchanged.
pub(crate) fn linear_graph(graph: &Graph, abs: bool) -> Graph {
    let input = graph.input();
    let mut b = GraphBuilder::new(input.name.clone(), input.shape.clone());
    for n in &graph.nodes()[1..] {
        b.push(
            n.name.clone(),
            linear_part(&n.op, abs),
            n.inputs.clone(),
            Some(n.shape.clone()),
        )
        .expect("same shapes as the original graph");
    }
    b.finish(graph.output_id())
}

/// Per node, the length bound `K` of any dot product the node computes (operands + output + 4), for `γ_K`.
pub(crate) fn dot_terms(graph: &Graph, i: usize) -> usize {
    let n = &graph.nodes()[i];
    n.inputs
        .iter()
        .map(|j| graph.node(*j).numel())
        .sum::<usize>()
        + n.numel()
        + 4
}

/// Relative error factor of node `i`'s linear map: rounding of its sums plus import rounding of constants.
pub(crate) fn node_error(graph: &Graph, i: usize) -> f64 {
    let has_constants = graph.nodes()[i].op.num_parameters() > 0;
    gamma(dot_terms(graph, i)) + if has_constants { IMPORT_ROUNDING } else { 0.0 }
}

/// A single-operand affine node's linear part as a standalone one-node graph.
pub(crate) struct NodeOperator {
    exact: Graph,
    abs: Graph,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    err: f64,
}

/// Operator norms of one node's linear part, each a sound upper bound.
#[derive(Clone, Debug)]
pub struct OperatorNorms {
    /// Induced L∞ norm (max row abs-sum).
    pub linf: f64,
    /// Induced L1 norm (max column abs-sum).
    pub l1: f64,
    /// Spectral norm bound, its power-iteration estimate, and how the bound was obtained.
    pub l2: f64,
    pub l2_estimate: f64,
    pub l2_method: &'static str,
}

fn batch(v: ArrayD<f64>) -> ArrayD<f64> {
    let mut s = vec![1];
    s.extend(v.shape());
    v.into_shape_with_order(IxDyn(&s)).expect("sizes agree")
}

impl NodeOperator {
    /// For node `i` of `graph`, which must be an affine op with one variable operand.
    pub(crate) fn new(graph: &Graph, i: usize) -> Self {
        let node = &graph.nodes()[i];
        let input = graph.node(node.inputs[0]);
        let one = |abs: bool| {
            let mut b = GraphBuilder::new("x", input.shape.clone());
            let y = b
                .push(
                    node.name.clone(),
                    linear_part(&node.op, abs),
                    vec![b.input_id()],
                    Some(node.shape.clone()),
                )
                .expect("same shapes as the original graph");
            b.finish(y)
        };
        NodeOperator {
            exact: one(false),
            abs: one(true),
            in_shape: input.shape.clone(),
            out_shape: node.shape.clone(),
            err: node_error(graph, i),
        }
    }

    fn in_size(&self) -> usize {
        self.in_shape.iter().product()
    }
    fn out_size(&self) -> usize {
        self.out_shape.iter().product()
    }

    /// `A·x` for a batch `[N, in_size]`.
    fn apply(ev: &Evaluator<'_, f64>, x: &Array2<f64>) -> Array2<f64> {
        ev.forward(x.view()).expect("sizes agree")
    }

    /// `Aᵀ·y` for one vector.
    fn apply_t(&self, ev: &Evaluator<'_, f64>, y: &Array1<f64>) -> Array1<f64> {
        let mut is = vec![1];
        is.extend(&self.in_shape);
        let ins = ArrayD::zeros(IxDyn(&is));
        let g = batch(
            y.clone()
                .into_shape_with_order(IxDyn(&self.out_shape))
                .expect("sizes agree")
                .into_dyn(),
        );
        let out = ev.node_backward(1, &[&ins], &g, g.clone());
        Array1::from_iter(out[0].iter().copied())
    }

    /// The dense matrix `[out, in]`, by applying the operator to the unit vectors in chunks.
    fn dense(&self) -> Array2<f64> {
        let ev = Evaluator::<f64>::new(&self.exact);
        let (n, m) = (self.in_size(), self.out_size());
        let mut a = Array2::zeros((m, n));
        let chunk = 256;
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            let mut e = Array2::zeros((len, n));
            for r in 0..len {
                e[[r, start + r]] = 1.0;
            }
            let y = Self::apply(&ev, &e);
            for r in 0..len {
                a.column_mut(start + r).assign(&y.row(r));
            }
        }
        a
    }

    /// Power-iteration estimate of `‖A‖₂` through the operator and its transpose.
    fn spectral_estimate(&self, iters: usize) -> f64 {
        let ev = Evaluator::<f64>::new(&self.exact);
        let n = self.in_size();
        let mut v = Array1::from_shape_fn(n, |i| {
            1.0 + 0.5 * ((i as f64 * 0.618_033_988_7).fract() - 0.5)
        });
        let mut est = 0.0;
        for _ in 0..iters {
            let norm = v.dot(&v).sqrt();
            if !(norm.is_finite() && norm > 0.0) {
                break;
            }
            v /= norm;
            let av = Self::apply(&ev, &v.clone().insert_axis(ndarray::Axis(0)));
            let av = av.row(0).to_owned();
            est = av.dot(&av).sqrt();
            v = self.apply_t(&ev, &av);
        }
        est
    }

    /// Sound operator norms (L∞, L1 exact up to rounding; L2 by the best rigorous method available for the op).
    /// `conv_l2`: an extra rigorous L2 bound for convolutions (from their kernel), if computed.
    pub(crate) fn norms(&self, op: &Op, want_l2: bool, conv_l2: Option<f64>) -> OperatorNorms {
        let abs = Evaluator::<f64>::new(&self.abs);
        let g = (1.0 + self.err) * (1.0 + 4.0 * U);
        // |A|·1 gives the row abs-sums, |A|ᵀ·1 the column abs-sums.
        let ones_in = Array2::from_elem((1, self.in_size()), 1.0);
        let rows = Self::apply(&abs, &ones_in);
        let linf = up(rows.iter().copied().fold(0.0, f64::max) * g);
        let ones_out = Array1::from_elem(self.out_size(), 1.0);
        let cols = self.apply_t(&abs, &ones_out);
        let l1 = up(cols.iter().copied().fold(0.0, f64::max) * g);
        let mixed = up((l1 * linf).sqrt());
        if !want_l2 {
            return OperatorNorms {
                linf,
                l1,
                l2: mixed,
                l2_estimate: f64::NAN,
                l2_method: "sqrt(‖A‖₁‖A‖∞)",
            };
        }
        // Import rounding moves A by at most δ|A| entrywise, and ‖|A|‖₂ ≤ sqrt(‖|A|‖₁‖|A|‖∞).
        let import = if op.num_parameters() > 0 {
            IMPORT_ROUNDING * mixed
        } else {
            0.0
        };
        let (n, m) = (self.in_size(), self.out_size());
        // Ops whose matrix is diagonal, a selection, an embedding or a block average: sqrt(‖A‖₁‖A‖∞) is exact.
        let mixed_is_exact = matches!(
            op,
            Op::Affine { .. }
                | Op::Reshape
                | Op::Transpose { .. }
                | Op::Slice { .. }
                | Op::Gather { .. }
                | Op::Pad { .. }
                | Op::GlobalAveragePool
        );
        if mixed_is_exact {
            return OperatorNorms {
                linf,
                l1,
                l2: mixed,
                l2_estimate: mixed,
                l2_method: "sqrt(‖A‖₁‖A‖∞) (exact for this op)",
            };
        }
        // A convolution whose kernel bound is already within 5% of the power-iteration estimate keeps it; the
        // dense Gram iteration (cubic in the smaller side) is only paid where it can gain more.
        let estimate_op = if matches!(op, Op::Linear(_)) {
            None
        } else {
            Some(self.spectral_estimate(40))
        };
        let kernel_good = matches!((conv_l2, estimate_op), (Some(c), Some(e)) if c <= e * 1.05);
        let dense = match op {
            Op::Linear(l) => Some(l.weight.mapv(f64::from)),
            _ if !kernel_good
                && n.saturating_mul(m) <= DENSE_MAX_ENTRIES
                && n.min(m) <= DENSE_MAX_SIDE =>
            {
                Some(self.dense())
            }
            _ => None,
        };
        let mut candidates: Vec<(f64, &'static str)> = vec![(mixed, "sqrt(‖A‖₁‖A‖∞)")];
        if let Some(c) = conv_l2 {
            candidates.push((c, "Fourier bound of the kernel (circular embedding)"));
        }
        let mut estimate = estimate_op.unwrap_or(f64::NAN);
        if let Some(a) = dense {
            let sb = linalg::spectral_norm_up(&a, 1e-3, 14);
            candidates.push((sb.upper, "Gram iteration (dense)"));
            estimate = sb.estimate;
        }
        let (bound, method) = candidates
            .into_iter()
            .fold((f64::INFINITY, ""), |a, b| if b.0 < a.0 { b } else { a });
        let l2 = bound;
        OperatorNorms {
            linf,
            l1,
            l2: up(l2 + import),
            l2_estimate: estimate,
            l2_method: method,
        }
    }
}
