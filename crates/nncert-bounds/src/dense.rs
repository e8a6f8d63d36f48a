//! A fast path for feed-forward ReLU networks (`Linear → ReLU → … → Linear`, the shape of ACAS Xu and the
//! MNIST fully-connected nets): bounds for many input boxes at once, one matrix product per layer for the
//! whole batch.
//!
//! Intermediate bounds come from **forward-mode** linear relaxation: every neuron carries a lower and an upper
//! linear function of the input (`n₀ + 1` coefficients each), pushed through the layers by two matrix products
//! (`W⁺` and `W⁻`) per layer for all boxes of the batch. With few inputs (ACAS Xu has 5) this costs a small
//! fraction of backward CROWN's intermediate passes. The property's objective is then bounded by **backward**
//! CROWN over those intermediate bounds, which picks each ReLU relaxation for the objective at hand.
//!
//! ## Soundness under floating point
//! As in the rest of the crate (see the crate docs), by explicit error terms with one global
//! `ε = γ_K + 2⁻²³ + 8u`, `K` = the total number of neurons and inputs plus 16 (every dot product of the
//! network has fewer terms):
//! - forward: every neuron carries a slack `e` such that `L(x) − e ≤ z(x) ≤ U(x) + e` for every `x` of the box,
//!   `L`, `U` being the computed linear functions evaluated exactly. A layer adds `ε·(|W|(m + r) + |b|)`, where
//!   `m` bounds the magnitude `Σ|coefficient|·max|x| + |constant|` of the relaxed functions and `r` the slack
//!   they carry (their own `e` plus `2u·m` for the rounded upper-relaxation slope products);
//! - backward: each step `A ← A·W` adds `ε·|A|(|W|·H + |b|)` with `H` the magnitude of the layer's input; the
//!   relaxation products add `4u·|A|·Z`, `Z` the magnitude of the pre-activation;
//! - concretization adds `ε·(Σ|a|·max|x| + |c|)`; every bound is then moved one ulp outward.
//!
//! The `2⁻²³` share is the import allowance of the crate docs (constants possibly rounded to f32 once), so a
//! proof holds for the model file as written.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, linalg::general_mat_mul};
use nncert_model::ir::{Graph, Op};
use nncert_spec::InputBox;

const U: f64 = f64::EPSILON / 2.0;

/// Above this many inputs, intermediate bounds come from interval arithmetic refined by backward CROWN instead
/// of forward-mode relaxation (whose cost grows with the number of inputs).
pub const FORWARD_MAX_INPUTS: usize = 64;

/// Bounds of one layer's pre-activations (or of the outputs, for the last layer): the same elementwise bounds
/// as a graph node's.
pub type LayerBounds = crate::NodeBounds;

/// Bounds of every layer of a [`DenseReluNet`] over one box: `layers[k]` are the pre-activations of layer `k`;
/// the last entry bounds the outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseBounds {
    pub layers: Vec<LayerBounds>,
}

impl DenseBounds {
    /// The output bounds.
    pub fn output(&self) -> &LayerBounds {
        self.layers
            .last()
            .expect("a dense net has at least one layer")
    }

    /// Number of hidden neurons whose ReLU is unstable (the bounds straddle 0).
    pub fn unstable(&self) -> usize {
        let hidden = &self.layers[..self.layers.len() - 1];
        hidden
            .iter()
            .map(|l| {
                l.lower
                    .iter()
                    .zip(&l.upper)
                    .filter(|(lo, up)| **lo < 0.0 && **up > 0.0)
                    .count()
            })
            .sum()
    }
}

/// What [`DenseReluNet::objective_lower_with`] computes besides the bound.
#[derive(Clone, Copy, Debug, Default)]
pub struct ObjectiveOptions {
    /// Branching scores per hidden neuron (see [`ObjectiveBound::scores`]).
    pub scores: bool,
    /// Iterations of α-CROWN slope optimization (0: CROWN's fixed slopes).
    pub alpha_iterations: usize,
    /// With α iterations, also optimize β-CROWN multipliers of the split constraints: neurons whose bounds
    /// sit exactly at 0 on one side (as [`DenseBounds`] clamped by a ReLU split have) constrain the input
    /// region, and the bound takes them into account.
    pub beta: bool,
}

/// A sound lower bound per objective row, with its linear function's input coefficients.
#[derive(Clone, Debug)]
pub struct ObjectiveBound {
    pub lower: Vec<f64>,
    /// `[rows, inputs]`: how much each input's range costs each row's bound.
    pub coeffs: Array2<f64>,
    /// When asked for, `scores[k][j]`: what the relaxation of layer `k`'s ReLU `j` costs the rows' bounds
    /// (the intercept of the upper chord where a row meets it, about half the lower relaxation's gap
    /// otherwise; in the spirit of BaBSR). A split neuron's relaxation becomes exact, so high scores are the
    /// splits that pay most. Empty otherwise.
    pub scores: Vec<Vec<f64>>,
}

/// Optional inputs and outputs of a backward pass.
#[derive(Default)]
struct BackwardExtras {
    /// Accumulates branching scores per hidden layer and neuron when non-empty.
    scores: Vec<Vec<f64>>,
    /// Lower ReLU slopes per hidden layer, `[rows, neurons]` (α-CROWN); CROWN's 0-or-1 choice when empty.
    alpha: Vec<Array2<f64>>,
    /// Multipliers β ≥ 0 of the split constraints per hidden layer, `[rows, neurons]` (β-CROWN): a neuron whose
    /// bounds were clamped at 0 by a split satisfies `s·z ≥ 0` on the sub-domain (`s` = +1 active, −1 inactive),
    /// so subtracting `β·s·z` from the objective keeps a lower bound. None when empty.
    beta: Vec<Array2<f64>>,
    /// Record each hidden layer's pre-relaxation coefficients in `tape` (for the slopes' gradient).
    record: bool,
    tape: Vec<Array2<f64>>,
}

fn has_unstable(l: &LayerBounds) -> bool {
    l.lower
        .iter()
        .zip(&l.upper)
        .any(|(lo, up)| *lo < 0.0 && *up > 0.0)
}

struct DenseLayer {
    w: Array2<f64>,
    w_pos: Array2<f64>,
    w_neg: Array2<f64>,
    w_abs: Array2<f64>,
    b: Vec<f64>,
}

/// A network of the form `x → W₁x + b₁ → ReLU → … → W_L h + b_L`, in f64 for bounding.
///
/// ```
/// use nncert_bounds::dense::DenseReluNet;
/// use nncert_model::ir::{GraphBuilder, Linear, Op};
/// use nncert_spec::InputBox;
/// use ndarray::{arr1, arr2};
/// let mut b = GraphBuilder::new("x", vec![2]);
/// let fc1 = Op::Linear(Linear { weight: arr2(&[[1.0, 1.0], [1.0, -1.0]]), bias: None });
/// let h = b.push("fc1", fc1, vec![b.input_id()], None).unwrap();
/// let r = b.push("relu", Op::Relu, vec![h], None).unwrap();
/// let fc2 = Op::Linear(Linear { weight: arr2(&[[1.0, 1.0]]), bias: Some(arr1(&[0.5])) });
/// let y = b.push("fc2", fc2, vec![r], None).unwrap();
/// let net = DenseReluNet::from_graph(&b.finish(y)).unwrap();
/// let bx = InputBox { lower: vec![0.0, 0.0], upper: vec![1.0, 1.0] };
/// let bounds = net.bound_boxes(&[bx], &[None]);
/// // y = relu(x0 + x1) + relu(x0 − x1) + 0.5 = 2·max(x0, x1) + 0.5 ∈ [0.5, 2.5]
/// let out = bounds[0].output();
/// assert!(out.lower[0] <= 0.5 && out.upper[0] >= 2.5);
/// ```
pub struct DenseReluNet {
    n_in: usize,
    layers: Vec<DenseLayer>,
    /// The global relative error factor `ε` of the module docs.
    err: f64,
    /// Tighten unstable neurons' bounds by backward CROWN (see [`DenseReluNet::with_backward_refinement`]).
    refine: bool,
    /// Per layer, the graph node whose output is that layer's pre-activations.
    layer_nodes: Vec<usize>,
}

impl DenseReluNet {
    /// Recognizes `Input → (Reshape)* → Linear → (Relu → Linear)* (→ Relu)?` with every intermediate value
    /// used once. A ReLU on the outputs becomes a hidden layer followed by an identity layer (exact: the
    /// identity's products and sums are exact in floating point). Returns `None` for any other graph (the
    /// generic [`crate::Bounder`] handles those).
    pub fn from_graph(graph: &Graph) -> Option<Self> {
        let uses = graph.use_counts();
        // `None`: the identity layer standing for an output ReLU.
        let mut linears: Vec<Option<&nncert_model::ir::Linear>> = Vec::new();
        let mut layer_nodes = Vec::new();
        let mut id = graph.output_id();
        let mut expect_linear = true;
        loop {
            let node = graph.node(id);
            match (&node.op, expect_linear) {
                (Op::Linear(lin), true) => {
                    linears.push(Some(lin));
                    layer_nodes.push(id.0);
                    expect_linear = false;
                }
                (Op::Relu, false) => expect_linear = true,
                (Op::Relu, true) if linears.is_empty() => {
                    linears.push(None);
                    layer_nodes.push(id.0);
                }
                (Op::Reshape, _) => {}
                (Op::Input, false) => break,
                _ => return None,
            }
            if id != graph.output_id() && uses[id.0] != 1 {
                return None;
            }
            id = *node.inputs.first()?;
        }
        linears.reverse();
        layer_nodes.reverse();
        let n_in = graph.input_size();
        let mut prev = n_in;
        let mut layers = Vec::with_capacity(linears.len());
        for lin in linears {
            let (w, b) = match lin {
                Some(lin) => {
                    let w = lin.weight.mapv(f64::from).as_standard_layout().into_owned();
                    let b = match &lin.bias {
                        Some(b) => b.iter().map(|&v| f64::from(v)).collect(),
                        None => vec![0.0; w.nrows()],
                    };
                    (w, b)
                }
                None => (ndarray::Array2::eye(prev), vec![0.0; prev]),
            };
            if w.ncols() != prev {
                return None;
            }
            prev = w.nrows();
            layers.push(DenseLayer {
                w_pos: w.mapv(|v| v.max(0.0)),
                w_neg: w.mapv(|v| v.min(0.0)),
                w_abs: w.mapv(f64::abs),
                w,
                b,
            });
        }
        let k: usize = n_in + layers.iter().map(|l| l.b.len()).sum::<usize>() + 16;
        let err = crate::gamma(k) + crate::IMPORT_ROUNDING + 8.0 * U;
        Some(DenseReluNet {
            n_in,
            layers,
            err,
            refine: true,
            layer_nodes,
        })
    }

    /// Per layer, the id of the graph node whose output is that layer's pre-activations (a Linear node; for
    /// the identity layer of an output ReLU, the ReLU): where the generic engine's node bounds of the same
    /// graph give this net's layer bounds.
    pub fn layer_nodes(&self) -> &[usize] {
        &self.layer_nodes
    }

    /// With `false`, intermediate bounds come from forward mode and interval arithmetic only: cheaper per box
    /// but much looser on deep nets. Default `true`.
    pub fn with_backward_refinement(mut self, refine: bool) -> Self {
        self.refine = refine;
        self
    }

    pub fn input_size(&self) -> usize {
        self.n_in
    }

    pub fn output_size(&self) -> usize {
        self.layers.last().map_or(0, |l| l.b.len())
    }

    /// Number of hidden neurons (ReLUs).
    pub fn hidden_neurons(&self) -> usize {
        self.layers[..self.layers.len() - 1]
            .iter()
            .map(|l| l.b.len())
            .sum()
    }

    /// Number of layers (hidden layers + the output layer).
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Evaluates the network in f64 (no error bound: for screening candidates, not for proofs).
    pub fn eval(&self, x: &[f64]) -> Vec<f64> {
        let mut h = x.to_vec();
        for (k, layer) in self.layers.iter().enumerate() {
            let mut z = layer.b.clone();
            for (i, zi) in z.iter_mut().enumerate() {
                *zi += layer
                    .w
                    .row(i)
                    .iter()
                    .zip(&h)
                    .map(|(w, v)| w * v)
                    .sum::<f64>();
            }
            if k + 1 < self.layers.len() {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = z;
        }
        h
    }

    /// Sound bounds on every layer over each box (forward-mode relaxation, one matrix product per layer for
    /// the whole batch). `priors[d]`, when given, must be bounds over a box containing `boxes[d]`; the result
    /// is intersected with them.
    pub fn bound_boxes(
        &self,
        boxes: &[InputBox],
        priors: &[Option<&DenseBounds>],
    ) -> Vec<DenseBounds> {
        self.bound_boxes_from(boxes, priors, &vec![0; boxes.len()])
    }

    /// [`Self::bound_boxes`] where box `d`'s layers below `refine_from[d]` are known not to gain from
    /// refinement: their prior is already as tight as a backward pass would make it (a ReLU split at layer `k`
    /// changes nothing below `k + 1` on the same box), so the backward CROWN refinement skips them.
    pub fn bound_boxes_from(
        &self,
        boxes: &[InputBox],
        priors: &[Option<&DenseBounds>],
        refine_from: &[usize],
    ) -> Vec<DenseBounds> {
        assert_eq!(boxes.len(), priors.len(), "one prior slot per box");
        assert_eq!(boxes.len(), refine_from.len(), "one refine_from per box");
        let nb = boxes.len();
        let n0 = self.n_in;
        let w = 2 * (n0 + 1);
        let eps = self.err;
        let mut out: Vec<DenseBounds> = (0..nb)
            .map(|_| DenseBounds {
                layers: Vec::with_capacity(self.layers.len()),
            })
            .collect();
        // max|x| per box and input.
        let xmag: Vec<Vec<f64>> = boxes
            .iter()
            .map(|b| {
                b.lower
                    .iter()
                    .zip(&b.upper)
                    .map(|(l, u)| l.abs().max(u.abs()))
                    .collect()
            })
            .collect();

        // What the backward refinement passes read, built as the layers' bounds become final.
        let mut cache = BackwardCache::new(nb, true);
        if n0 > FORWARD_MAX_INPUTS {
            // Wide inputs: forward functions would carry 2(n₀+1) columns per neuron; interval bounds refined
            // by backward CROWN on the unstable neurons cost far less.
            // Interval arithmetic is exact on the first layer (up to rounding).
            for k in 0..self.layers.len() {
                let ibp = self.interval_layer(k, boxes, &out);
                for (d, db) in out.iter_mut().enumerate() {
                    let n = self.layers[k].b.len();
                    let mut lower = ibp.column(d).to_vec();
                    let mut upper = ibp.column(nb + d).to_vec();
                    if let Some(p) = priors[d] {
                        for j in 0..n {
                            lower[j] = lower[j].max(p.layers[k].lower[j]);
                            upper[j] = upper[j].min(p.layers[k].upper[j]);
                        }
                    }
                    db.layers.push(LayerBounds { lower, upper });
                }
                if k + 1 < self.layers.len() && self.refine {
                    self.refine_unstable(k, boxes, refine_from, &mut cache, &mut out);
                }
            }
            return out;
        }
        // Layer 1: the functions are the weight rows themselves (exact copies); the slack is the import allowance.
        let first = &self.layers[0];
        let n1 = first.b.len();
        let mut f = Array2::<f64>::zeros((n1, nb * w));
        let mut slack = vec![0.0; n1 * nb]; // [d * n + j]
        for j in 0..n1 {
            let row = first.w.row(j);
            let mut frow = f.row_mut(j);
            let fr = frow.as_slice_mut().expect("standard layout");
            for d in 0..nb {
                let blk = &mut fr[d * w..(d + 1) * w];
                for (t, &v) in row.iter().enumerate() {
                    blk[t] = v;
                    blk[n0 + 1 + t] = v;
                }
                blk[n0] = first.b[j];
                blk[2 * n0 + 1] = first.b[j];
                let m: f64 = row
                    .iter()
                    .zip(&xmag[d])
                    .map(|(a, x)| a.abs() * x)
                    .sum::<f64>()
                    + first.b[j].abs();
                slack[d * n1 + j] = eps * m * (1.0 + 1e-6);
            }
        }
        let mut mag = vec![0.0; n1 * nb];
        self.concretize(
            &f, &slack, boxes, &xmag, priors, None, 0, &mut mag, &mut out,
        );

        let mut h = Array2::<f64>::zeros((0, 0));
        let mut rm = Array2::<f64>::zeros((0, 0));
        // Reused across layers (the products overwrite them, and every entry of `fnext` is written).
        let mut p = Array2::<f64>::zeros((0, 0));
        let mut q = Array2::<f64>::zeros((0, 0));
        let mut wrm = Array2::<f64>::zeros((0, 0));
        let mut fnext = Array2::<f64>::zeros((0, 0));
        for k in 1..self.layers.len() {
            let n = self.layers[k - 1].b.len();
            // Relax the ReLUs of layer k-1: H holds [h_lower | h_upper] functions per box.
            if h.dim() != (n, nb * w) {
                h = Array2::zeros((n, nb * w));
            }
            // r (slack carried by the relaxed functions) and m (their magnitude), [n, 2 * nb].
            if rm.dim() != (n, 2 * nb) {
                rm = Array2::zeros((n, 2 * nb));
            }
            for j in 0..n {
                let frow = f.row(j);
                let fr = frow.as_slice().expect("standard layout");
                let mut hrow = h.row_mut(j);
                let hr = hrow.as_slice_mut().expect("standard layout");
                let mut rmrow = rm.row_mut(j);
                let rmr = rmrow.as_slice_mut().expect("standard layout");
                for d in 0..nb {
                    let lb = &out[d].layers[k - 1];
                    let (lo, up) = (lb.lower[j], lb.upper[j]);
                    let src = &fr[d * w..(d + 1) * w];
                    let dst = &mut hr[d * w..(d + 1) * w];
                    let e = slack[d * n + j];
                    let m = mag[d * n + j];
                    if up <= 0.0 {
                        dst.fill(0.0);
                        rmr[d] = 0.0;
                        rmr[nb + d] = 0.0;
                    } else if lo >= 0.0 {
                        dst.copy_from_slice(src);
                        rmr[d] = e;
                        rmr[nb + d] = m;
                    } else {
                        // Lower: 0 or z (whichever is closer on the box, as CROWN); upper: the chord.
                        if up > -lo {
                            dst[..n0 + 1].copy_from_slice(&src[..n0 + 1]);
                        } else {
                            dst[..n0 + 1].fill(0.0);
                        }
                        let slope = chord_slope(lo, up);
                        for t in 0..n0 {
                            dst[n0 + 1 + t] = slope * src[n0 + 1 + t];
                        }
                        dst[2 * n0 + 1] = slope * (src[2 * n0 + 1] - lo);
                        rmr[d] = e * slope.max(1.0) + 2.0 * U * (m + lo.abs()) * slope.max(1.0);
                        rmr[nb + d] = (m + lo.abs()) * slope.max(1.0);
                    }
                }
            }
            let layer = &self.layers[k];
            let n_next = layer.b.len();
            if p.dim() != (n_next, nb * w) {
                p = Array2::zeros((n_next, nb * w));
                q = Array2::zeros((n_next, nb * w));
                fnext = Array2::zeros((n_next, nb * w));
            }
            if wrm.dim() != (n_next, 2 * nb) {
                wrm = Array2::zeros((n_next, 2 * nb));
            }
            general_mat_mul(1.0, &layer.w_pos, &h, 0.0, &mut p);
            general_mat_mul(1.0, &layer.w_neg, &h, 0.0, &mut q);
            // |W| · [r | m]
            general_mat_mul(1.0, &layer.w_abs, &rm, 0.0, &mut wrm);
            if fnext.dim() != (n_next, nb * w) {
                fnext = Array2::zeros((n_next, nb * w));
            }
            let mut slack_next = vec![0.0; n_next * nb];
            for i in 0..n_next {
                let pr = p.row(i);
                let pr = pr.as_slice().expect("standard layout");
                let qr = q.row(i);
                let qr = qr.as_slice().expect("standard layout");
                let mut frow = fnext.row_mut(i);
                let fr = frow.as_slice_mut().expect("standard layout");
                let bi = layer.b[i];
                for d in 0..nb {
                    let o = d * w;
                    for t in 0..=n0 {
                        // lower = W⁺·h_lower + W⁻·h_upper; upper = W⁺·h_upper + W⁻·h_lower
                        fr[o + t] = pr[o + t] + qr[o + n0 + 1 + t];
                        fr[o + n0 + 1 + t] = pr[o + n0 + 1 + t] + qr[o + t];
                    }
                    fr[o + n0] += bi;
                    fr[o + 2 * n0 + 1] += bi;
                    let r = wrm[[i, d]];
                    let m = wrm[[i, nb + d]];
                    slack_next[d * n_next + i] = (r + eps * (m + r + bi.abs())) * (1.0 + 1e-6);
                }
            }
            std::mem::swap(&mut f, &mut fnext);
            slack = slack_next;
            mag = vec![0.0; n_next * nb];
            let ibp = self.interval_layer(k, boxes, &out);
            self.concretize(
                &f,
                &slack,
                boxes,
                &xmag,
                priors,
                Some(&ibp),
                k,
                &mut mag,
                &mut out,
            );
            if k + 1 < self.layers.len() && self.refine {
                self.refine_unstable(k, boxes, refine_from, &mut cache, &mut out);
            }
        }
        out
    }

    /// Interval bounds of layer `k`'s pre-activations from layer `k-1`'s bounds, for every box: `[n, 2·nb]`
    /// (lower bounds in the first `nb` columns, upper in the rest). Forward-mode relaxation is not always
    /// tighter than interval arithmetic, so the two are intersected.
    fn interval_layer(&self, k: usize, boxes: &[InputBox], out: &[DenseBounds]) -> Array2<f64> {
        let nb = out.len();
        let layer = &self.layers[k];
        let n = layer.w.ncols();
        // Input intervals (post-ReLU, or the box for the first layer) as centre and radius, [n, nb] each; the
        // radius covers the rounded centre.
        let mut centre = Array2::<f64>::zeros((n, nb));
        let mut radius = Array2::<f64>::zeros((n, 2 * nb));
        for d in 0..nb {
            for j in 0..n {
                let (lo, up) = if k == 0 {
                    (boxes[d].lower[j], boxes[d].upper[j])
                } else {
                    let lb = &out[d].layers[k - 1];
                    (lb.lower[j].max(0.0), lb.upper[j].max(0.0))
                };
                let c = lo + (up - lo) / 2.0;
                let r = (up - c).max(c - lo).next_up();
                centre[[j, d]] = c;
                radius[[j, d]] = r;
                radius[[j, nb + d]] = c.abs() + r;
            }
        }
        let mut mid = Array2::<f64>::zeros((layer.b.len(), nb));
        general_mat_mul(1.0, &layer.w, &centre, 0.0, &mut mid);
        let mut spread = Array2::<f64>::zeros((layer.b.len(), 2 * nb));
        general_mat_mul(1.0, &layer.w_abs, &radius, 0.0, &mut spread);
        let mut res = Array2::<f64>::zeros((layer.b.len(), 2 * nb));
        for i in 0..layer.b.len() {
            let bi = layer.b[i];
            for d in 0..nb {
                let m = mid[[i, d]] + bi;
                let r = spread[[i, d]];
                let e = self.err * (spread[[i, nb + d]] + bi.abs()) * (1.0 + 1e-6);
                res[[i, d]] = (m - r - e).next_down().next_down();
                res[[i, nb + d]] = (m + r + e).next_up().next_up();
            }
        }
        res
    }

    /// Turns layer `k`'s linear functions into bounds per box (pushing them into `out`) and records the
    /// functions' magnitudes in `mag`.
    #[allow(clippy::too_many_arguments)]
    fn concretize(
        &self,
        f: &Array2<f64>,
        slack: &[f64],
        boxes: &[InputBox],
        xmag: &[Vec<f64>],
        priors: &[Option<&DenseBounds>],
        ibp: Option<&Array2<f64>>,
        k: usize,
        mag: &mut [f64],
        out: &mut [DenseBounds],
    ) {
        let n0 = self.n_in;
        let w = 2 * (n0 + 1);
        let n = f.nrows();
        let nb = boxes.len();
        let eps = self.err;
        for (d, bx) in boxes.iter().enumerate() {
            let mut lower = vec![0.0; n];
            let mut upper = vec![0.0; n];
            for j in 0..n {
                let row = f.row(j);
                let blk = &row.as_slice().expect("standard layout")[d * w..(d + 1) * w];
                let (lf, uf) = blk.split_at(n0 + 1);
                let mut lo = lf[n0];
                let mut up = uf[n0];
                let mut ml = lf[n0].abs();
                let mut mu = uf[n0].abs();
                for t in 0..n0 {
                    let (a, c) = (lf[t], uf[t]);
                    lo += if a >= 0.0 {
                        a * bx.lower[t]
                    } else {
                        a * bx.upper[t]
                    };
                    up += if c >= 0.0 {
                        c * bx.upper[t]
                    } else {
                        c * bx.lower[t]
                    };
                    ml += a.abs() * xmag[d][t];
                    mu += c.abs() * xmag[d][t];
                }
                let m = ml.max(mu) * (1.0 + 1e-9);
                let e = slack[d * n + j] + eps * m;
                mag[d * n + j] = m;
                let mut l = (lo - e).next_down();
                let mut u = (up + e).next_up();
                if let Some(ibp) = ibp {
                    l = l.max(ibp[[j, d]]);
                    u = u.min(ibp[[j, nb + d]]);
                }
                if let Some(p) = priors[d] {
                    l = l.max(p.layers[k].lower[j]);
                    u = u.min(p.layers[k].upper[j]);
                }
                lower[j] = l;
                upper[j] = u;
            }
            debug_assert_eq!(out[d].layers.len(), k);
            out[d].layers.push(LayerBounds { lower, upper });
        }
    }

    /// Sound lower bounds of `c_r · y` over the box for each row `c_r` of `c` (`[rows, outputs]`), by backward
    /// CROWN through `bounds` (which must be valid on the box). Also returns each row's linear lower bound's
    /// coefficients on the input (`[rows, inputs]`), which tell how much each input's range costs.
    pub fn objective_lower(
        &self,
        bx: &InputBox,
        bounds: &DenseBounds,
        c: ArrayView2<'_, f64>,
    ) -> (Vec<f64>, Array2<f64>) {
        let b = self.objective_lower_with(bx, bounds, c, ObjectiveOptions::default());
        (b.lower, b.coeffs)
    }

    /// [`DenseReluNet::objective_lower`] with the options of [`ObjectiveOptions`]: branching scores, and
    /// α-CROWN's optimized lower ReLU slopes. Any slope in `[0, 1]` gives a sound bound, so the optimizer only
    /// affects tightness: each row keeps its best bound over the iterations.
    pub fn objective_lower_with(
        &self,
        bx: &InputBox,
        bounds: &DenseBounds,
        c: ArrayView2<'_, f64>,
        options: ObjectiveOptions,
    ) -> ObjectiveBound {
        let rows = c.nrows();
        let top = self.layers.len() - 1;
        let hidden: &[LayerBounds] = &bounds.layers[..top];
        let mut extras = BackwardExtras {
            scores: if options.scores {
                hidden.iter().map(|l| vec![0.0; l.lower.len()]).collect()
            } else {
                Vec::new()
            },
            ..BackwardExtras::default()
        };
        let mut cache = BackwardCache::new(1, false);
        cache.extend_to(self, top, std::slice::from_ref(bx), &[hidden]);
        let (mut lower, mut coeffs) = self.backward_rows(
            top,
            std::slice::from_ref(bx),
            &cache,
            c.to_owned(),
            &vec![0; rows],
            &vec![0.0; rows],
            None,
            &mut extras,
        );
        let scores = std::mem::take(&mut extras.scores);
        let has_split = |l: &LayerBounds| {
            l.lower
                .iter()
                .zip(&l.upper)
                .any(|(&lo, &up)| split_sign(lo, up) != 0.0)
        };
        if options.alpha_iterations > 0
            && hidden
                .iter()
                .any(|l| has_unstable(l) || (options.beta && has_split(l)))
        {
            self.optimize_alpha(bx, hidden, &cache, c, options, &mut lower, &mut coeffs);
        }
        // Backward CROWN is not always tighter than the output's own bounds: keep the better.
        let out = bounds.output();
        for (r, lr) in lower.iter_mut().enumerate() {
            let mut interval = 0.0;
            let mut mag = 0.0;
            for (j, &cj) in c.row(r).iter().enumerate() {
                interval += if cj >= 0.0 {
                    cj * out.lower[j]
                } else {
                    cj * out.upper[j]
                };
                mag += cj.abs() * out.lower[j].abs().max(out.upper[j].abs());
            }
            let interval = (interval - 2.0 * self.err * mag * (1.0 + 1e-6)).next_down();
            *lr = lr.max(interval);
        }
        ObjectiveBound {
            lower,
            coeffs,
            scores,
        }
    }

    /// α-CROWN on the objective's backward pass: projected gradient ascent on the lower ReLU slopes (one slope
    /// per row and unstable neuron) and, on a sub-domain of ReLU splits, on the splits' multipliers β ≥ 0
    /// (β-CROWN), with the gradient of the linear bound taken analytically by running the backward pass in
    /// reverse. Improves `lower`/`coeffs` in place, row by row.
    #[allow(clippy::too_many_arguments)]
    fn optimize_alpha(
        &self,
        bx: &InputBox,
        hidden: &[LayerBounds],
        cache: &BackwardCache,
        c: ArrayView2<'_, f64>,
        options: ObjectiveOptions,
        lower: &mut [f64],
        coeffs: &mut Array2<f64>,
    ) {
        let rows = c.nrows();
        let top = self.layers.len() - 1;
        // Start from CROWN's choice (1 where the neuron leans positive, else 0).
        let mut alpha: Vec<Array2<f64>> = hidden
            .iter()
            .map(|l| {
                let row: Vec<f64> = l
                    .lower
                    .iter()
                    .zip(&l.upper)
                    .map(|(&lo, &up)| if up > -lo { 1.0 } else { 0.0 })
                    .collect();
                Array2::from_shape_fn((rows, row.len()), |(_, j)| row[j])
            })
            .collect();
        let any_split = options.beta
            && hidden.iter().any(|l| {
                l.lower
                    .iter()
                    .zip(&l.upper)
                    .any(|(&lo, &up)| split_sign(lo, up) != 0.0)
            });
        let mut beta: Vec<Array2<f64>> = if any_split {
            hidden
                .iter()
                .map(|l| Array2::zeros((rows, l.lower.len())))
                .collect()
        } else {
            Vec::new()
        };
        let mut step = 0.5;
        for _ in 0..options.alpha_iterations {
            let mut extras = BackwardExtras {
                alpha: std::mem::take(&mut alpha),
                beta: std::mem::take(&mut beta),
                record: true,
                ..BackwardExtras::default()
            };
            let (l, a) = self.backward_rows(
                top,
                std::slice::from_ref(bx),
                cache,
                c.to_owned(),
                &vec![0; rows],
                &vec![0.0; rows],
                None,
                &mut extras,
            );
            alpha = std::mem::take(&mut extras.alpha);
            beta = std::mem::take(&mut extras.beta);
            for r in 0..rows {
                if l[r] > lower[r] {
                    lower[r] = l[r];
                    coeffs.row_mut(r).assign(&a.row(r));
                }
            }
            let (grad, beta_grad) = self.alpha_gradient(bx, hidden, &a, &alpha, &extras.tape);
            // β moves on the scale of the coefficients it is added to: sign steps of `step` times the row's
            // mean |coefficient| on that layer, projected onto β ≥ 0.
            for (k, (be, g)) in beta.iter_mut().zip(&beta_grad).enumerate() {
                let tape = &extras.tape[k];
                for r in 0..rows {
                    let scale = tape.row(r).iter().map(|v| v.abs()).sum::<f64>()
                        / tape.ncols().max(1) as f64;
                    for j in 0..be.ncols() {
                        let gv = g[[r, j]];
                        if gv != 0.0 {
                            be[[r, j]] = (be[[r, j]] + step * scale * gv.signum()).max(0.0);
                        }
                    }
                }
            }
            // Sign-gradient steps with a decaying size: robust to the gradient's scale, which varies by layer.
            for (al, g) in alpha.iter_mut().zip(&grad) {
                ndarray::Zip::from(al).and(g).for_each(|v, &gv| {
                    if gv != 0.0 {
                        *v = (*v + step * gv.signum()).clamp(0.0, 1.0);
                    }
                });
            }
            step *= 0.7;
        }
    }

    /// Gradient of the backward pass's (rounding-free) linear bound with respect to the lower slopes: `tape[k]`
    /// holds the rows' coefficients on layer `k`'s ReLU outputs before relaxation, `a0` the final input
    /// coefficients. The bound is `Σ_t min(a0_t·x_t) + constants`; going back up the chain, `G_k = ∂bound/∂(the
    /// coefficients on z_k)` starts as `z_0` at the minimizing vertex and moves up through each relaxation and
    /// weight matrix.
    fn alpha_gradient(
        &self,
        bx: &InputBox,
        hidden: &[LayerBounds],
        a0: &Array2<f64>,
        alpha: &[Array2<f64>],
        tape: &[Array2<f64>],
    ) -> (Vec<Array2<f64>>, Vec<Array2<f64>>) {
        let rows = a0.nrows();
        let n0 = self.n_in;
        let mut xstar = Array2::<f64>::zeros((rows, n0));
        for r in 0..rows {
            for t in 0..n0 {
                xstar[[r, t]] = if a0[[r, t]] >= 0.0 {
                    bx.lower[t]
                } else {
                    bx.upper[t]
                };
            }
        }
        // G_0 = W_0 x* + b_0, [rows, n_0].
        let first = &self.layers[0];
        let mut g = xstar.dot(&first.w.t());
        for mut row in g.rows_mut() {
            for (v, b) in row.iter_mut().zip(&first.b) {
                *v += b;
            }
        }
        let mut grads: Vec<Array2<f64>> = alpha.iter().map(|a| Array2::zeros(a.dim())).collect();
        // ∂bound/∂β_j = −s_j·G_k[j]: the split term −β·s·z_j enters the bound through z_j's value at x*.
        let mut beta_grads: Vec<Array2<f64>> =
            alpha.iter().map(|a| Array2::zeros(a.dim())).collect();
        for (k, lb) in hidden.iter().enumerate() {
            for (j, (&lo, &up)) in lb.lower.iter().zip(&lb.upper).enumerate() {
                let sign = split_sign(lo, up);
                if sign != 0.0 {
                    for r in 0..rows {
                        beta_grads[k][[r, j]] = -sign * g[[r, j]];
                    }
                }
            }
            // Relaxation of layer k: A_k[j] = m_j·A'[j] (+ the chord's constant −s_j·A'[j]·l_j).
            let ap = &tape[k];
            let mut d = Array2::<f64>::zeros(ap.dim());
            for r in 0..rows {
                for j in 0..lb.lower.len() {
                    let (lo, up) = (lb.lower[j], lb.upper[j]);
                    let apj = ap[[r, j]];
                    let gj = g[[r, j]];
                    d[[r, j]] = if lo >= 0.0 {
                        gj
                    } else if up <= 0.0 {
                        0.0
                    } else if apj >= 0.0 {
                        grads[k][[r, j]] = apj * gj;
                        alpha[k][[r, j]] * gj
                    } else {
                        let slope = chord_slope(lo, up);
                        slope * gj - slope * lo
                    };
                }
            }
            // A'_{k+1} = A_{k+1}·W_{k+1} and the constant gains A_{k+1}·b_{k+1}: G_{k+1} = D·W_{k+1}ᵀ + b_{k+1}.
            let next = &self.layers[k + 1];
            g = d.dot(&next.w.t());
            for mut row in g.rows_mut() {
                for (v, b) in row.iter_mut().zip(&next.b) {
                    *v += b;
                }
            }
        }
        (grads, beta_grads)
    }

    /// Backward CROWN for a batch of rows: row `r` holds coefficients `a[r]` on the pre-activations of layer
    /// `top` (plus the constant `constants[r]`) of box `row_box[r]`; `layers[d]` are bounds of layers
    /// `0..top` over `boxes[d]`. Returns a sound lower bound of `a[r]·z_top + constants[r]` over the box per
    /// row, and the input coefficients of each row's final linear bound. All rows go through one matrix
    /// product per layer, whatever box they belong to. With `unit_top`, row `r`'s only non-zero coefficient is
    /// on neuron `unit_top[r]`. `extras` carries the optional scores, slopes and tape.
    #[allow(clippy::too_many_arguments)]
    fn backward_rows(
        &self,
        top: usize,
        boxes: &[InputBox],
        cache: &BackwardCache,
        mut a: Array2<f64>,
        row_box: &[usize],
        constants: &[f64],
        unit_top: Option<&[usize]>,
        extras: &mut BackwardExtras,
    ) -> (Vec<f64>, Array2<f64>) {
        let rows = a.nrows();
        let eps = self.err;
        debug_assert!(
            cache.wb.len() > top,
            "the cache covers the layers up to `top`"
        );
        let mut constant = constants.to_vec();
        // Absolute error accumulated along the chain (see the module docs). Every constant term is counted
        // too, at 2ε, which covers the rounding of the constant's running sum.
        let mut err = vec![0.0; rows];
        let mut best = vec![f64::NEG_INFINITY; rows];
        let tables = &cache.tables;
        let mut next = Array2::<f64>::zeros((0, 0));
        let plain = cache.use_compact
            && extras.scores.is_empty()
            && extras.alpha.is_empty()
            && extras.beta.is_empty()
            && !extras.record;
        if plain {
            // CROWN's plain pass, one run of rows of the same box at a time, on the neurons the box does not
            // block (see [`CompactLayer`]).
            let mut a0 = Array2::<f64>::zeros((rows, self.n_in));
            let mut bufs = [Vec::new(), Vec::new()];
            let mut r0 = 0;
            while r0 < rows {
                let d = row_box[r0];
                let r1 = r0 + row_box[r0..].iter().take_while(|&&b| b == d).count();
                self.backward_compact(
                    top,
                    d,
                    cache,
                    a.slice(ndarray::s![r0..r1, ..]),
                    unit_top.map(|u| &u[r0..r1]),
                    &mut constant[r0..r1],
                    &mut err[r0..r1],
                    &mut best[r0..r1],
                    a0.slice_mut(ndarray::s![r0..r1, ..]),
                    &mut bufs,
                );
                r0 = r1;
            }
            a = a0;
        }
        for k in (0..=top).rev() {
            if plain {
                break;
            }
            let layer = &self.layers[k];
            let n_prev = layer.w.ncols();
            let wb = &cache.wb[k];
            for r in 0..rows {
                let ar = a.row(r);
                let ar = ar.as_slice().expect("standard layout");
                let wbr = wb.row(row_box[r]);
                let wbr = wbr.as_slice().expect("standard layout");
                let mut e = 0.0;
                let mut cst = 0.0;
                for ((&ai, &bi), &wi) in ar.iter().zip(&layer.b).zip(wbr) {
                    // (skipping zeros also keeps 0·∞ out of the sums)
                    if ai != 0.0 {
                        cst += ai * bi;
                        e += ai.abs() * wi;
                    }
                }
                constant[r] += cst;
                err[r] += 2.0 * eps * e;
            }
            if next.dim() != (rows, n_prev) {
                next = Array2::<f64>::zeros((rows, n_prev));
            }
            match unit_top.filter(|_| k == top) {
                // One non-zero coefficient per row: the product is that coefficient times a row of W, the
                // same value the matrix product computes (`+ 0.0`: its sums of zeros are +0).
                Some(cols) => {
                    for (r, mut nr) in next.rows_mut().into_iter().enumerate() {
                        let j = cols[r];
                        let s = a[[r, j]];
                        for (o, &wv) in nr.iter_mut().zip(layer.w.row(j)) {
                            *o = s * wv + 0.0;
                        }
                    }
                }
                None => general_mat_mul(1.0, &a, &layer.w, 0.0, &mut next),
            }
            std::mem::swap(&mut a, &mut next);
            if k == 0 {
                break;
            }
            if extras.record {
                if extras.tape.len() != top {
                    extras.tape = vec![Array2::zeros((0, 0)); top];
                }
                extras.tape[k - 1] = a.clone();
            }
            for r in 0..rows {
                let t = &tables[row_box[r]][k - 1];
                let mut ar = a.row_mut(r);
                let ar = ar.as_slice_mut().expect("standard layout");
                // Stopping here and using the interval of this layer's input is sometimes tighter than
                // relaxing further: keep the best of these bounds. `v`/`m` read the coefficients before the
                // relaxation below changes them.
                let mut v = constant[r];
                let mut m = constant[r].abs();
                let mut d_const = 0.0;
                let mut d_err = 0.0;
                {
                    for (j, aj) in ar.iter_mut().enumerate() {
                        let x = *aj;
                        let (lo_p, up_p) = (t.lo_pos[j], t.up_pos[j]);
                        v += if x >= 0.0 { x * lo_p } else { x * up_p };
                        m += x.abs() * up_p;
                        if x == 0.0 || !t.unstable[j] {
                            *aj = x * t.upper_mult[j]; // stable: 1 (active) or 0 (inactive)
                            continue;
                        }
                        let (lo, up) = (t.lo[j], t.up[j]);
                        if x > 0.0 {
                            if let Some(s) = extras.scores.get_mut(k - 1) {
                                s[j] += 0.5 * x * up.min(-lo);
                            }
                            if let Some(al) = extras.alpha.get(k - 1) {
                                // lower relaxation α·z with an optimized α ∈ [0, 1]
                                let slope = al[[r, j]];
                                if slope != 1.0 {
                                    d_err += (2.0 * eps + 4.0 * U) * x * slope * t.z[j];
                                    *aj = x * slope;
                                }
                            } else {
                                *aj = x * t.lower_mult[j];
                            }
                        } else {
                            let slope = t.upper_mult[j];
                            if let Some(s) = extras.scores.get_mut(k - 1) {
                                s[j] += x.abs() * slope * -lo;
                            }
                            let na = x * slope;
                            *aj = na;
                            d_const -= na * lo;
                            d_err -= x * t.chord_err[j];
                        }
                    }
                    if let Some(be) = extras.beta.get(k - 1) {
                        // Lagrangian terms of the split constraints. Rounding only changes which β ≥ 0 is
                        // used (fl(a − β) ≤ a), and any β ≥ 0 gives a lower bound.
                        for (j, aj) in ar.iter_mut().enumerate() {
                            let sign = t.split_sign[j];
                            if sign != 0.0 {
                                *aj -= sign * be[[r, j]];
                            }
                        }
                    }
                }
                let cand = (v - (err[r] + 2.0 * eps * m) * (1.0 + 1e-6)).next_down();
                best[r] = best[r].max(cand);
                constant[r] += d_const;
                err[r] += d_err;
            }
        }
        // Concretize a·x + constant over each row's box.
        let mut lower = vec![0.0; rows];
        for r in 0..rows {
            let bx = &boxes[row_box[r]];
            let ar = a.row(r);
            let mut value = constant[r];
            let mut m = constant[r].abs();
            for (t, &at) in ar.iter().enumerate() {
                value += if at >= 0.0 {
                    at * bx.lower[t]
                } else {
                    at * bx.upper[t]
                };
                m += at.abs() * bx.lower[t].abs().max(bx.upper[t].abs());
            }
            let total_err = (err[r] + 2.0 * eps * m) * (1.0 + 1e-6);
            lower[r] = (value - total_err).next_down().max(best[r]);
        }
        (lower, a)
    }

    /// CROWN's plain backward pass for rows `a` (`[rows, n_top]`) of box `d` on the neurons the box does not
    /// block ([`CompactLayer`]); updates the rows' `constant`, `err` and `best` as [`Self::backward_rows`] and
    /// returns their input coefficients. Every value is the full pass's, bit for bit.
    #[allow(clippy::too_many_arguments)]
    fn backward_compact(
        &self,
        top: usize,
        d: usize,
        cache: &BackwardCache,
        a: ArrayView2<'_, f64>,
        unit_top: Option<&[usize]>,
        constant: &mut [f64],
        err: &mut [f64],
        best: &mut [f64],
        mut out: ArrayViewMut2<'_, f64>,
        bufs: &mut [Vec<f64>; 2],
    ) {
        let eps = self.err;
        let rows = a.nrows();
        let comp = &cache.compact[d];
        // The top layer: every neuron.
        let layer = &self.layers[top];
        let wbt = cache.wb[top].row(d);
        let wbt = wbt.to_slice().expect("standard layout");
        for (r, ar) in a.rows().into_iter().enumerate() {
            constant_terms(
                ar.as_slice().expect("standard layout"),
                &layer.b,
                wbt,
                eps,
                &mut constant[r],
                &mut err[r],
            );
        }
        if top == 0 {
            mat_mul_into(&a, &layer.w.view(), &mut out);
            return;
        }
        let [buf, buf_next] = bufs;
        let act = &comp[top - 1].act;
        let m = act.len();
        // (the buffers need no clearing: every entry is written before it is read)
        buf.resize(rows * m, 0.0);
        match unit_top {
            // One non-zero coefficient per row: the product is that coefficient times a row of W (`+ 0.0`: the
            // product's sums of zeros are +0).
            Some(cols) => {
                for (r, cr) in buf.chunks_exact_mut(m.max(1)).take(rows).enumerate() {
                    let j = cols[r];
                    let s = a[[r, j]];
                    let wj = layer.w.row(j);
                    let wj = wj.to_slice().expect("standard layout");
                    for (o, &i) in cr.iter_mut().zip(act) {
                        *o = s * wj[i] + 0.0;
                    }
                }
            }
            None => {
                let wg = Array2::from_shape_fn((layer.w.nrows(), m), |(i, j)| layer.w[[i, act[j]]]);
                let mut cur = ArrayViewMut2::from_shape((rows, m), &mut buf[..]).expect("sized");
                mat_mul_into(&a, &wg.view(), &mut cur);
            }
        }
        let mut k = top - 1;
        loop {
            let c = &comp[k];
            let m = c.act.len();
            if m > 0 {
                for (r, cr) in buf[..rows * m].chunks_exact_mut(m).enumerate() {
                    c.relax_row(eps, cr, &mut constant[r], &mut err[r], &mut best[r]);
                }
            } else {
                // No neuron: the relaxation's bound is the constant's.
                for r in 0..rows {
                    c.relax_row(eps, &mut [], &mut constant[r], &mut err[r], &mut best[r]);
                }
            }
            let cur = ArrayView2::from_shape((rows, m), &buf[..rows * m]).expect("sized");
            if k == 0 {
                mat_mul_into(&cur, &c.w.view(), &mut out);
                return;
            }
            let n_next = c.w.ncols();
            buf_next.resize(rows * n_next, 0.0);
            let mut nxt = ArrayViewMut2::from_shape((rows, n_next), &mut buf_next[..rows * n_next])
                .expect("sized");
            mat_mul_into(&cur, &c.w.view(), &mut nxt);
            std::mem::swap(buf, buf_next);
            k -= 1;
        }
    }

    /// Tightens the bounds of hidden layer `k` by backward CROWN, for the neurons whose ReLU the current
    /// bounds leave unstable (stable neurons' relaxations are exact already).
    fn refine_unstable(
        &self,
        k: usize,
        boxes: &[InputBox],
        refine_from: &[usize],
        cache: &mut BackwardCache,
        out: &mut [DenseBounds],
    ) {
        let layer = &self.layers[k];
        let n = layer.b.len();
        let mut picks: Vec<(usize, usize)> = Vec::new(); // (box, neuron)
        for (d, db) in out.iter().enumerate() {
            if k < refine_from[d] {
                continue;
            }
            let lb = &db.layers[k];
            for j in 0..n {
                if lb.lower[j] < 0.0 && lb.upper[j] > 0.0 {
                    picks.push((d, j));
                }
            }
        }
        if picks.is_empty() {
            return;
        }
        // Two rows per neuron: z_j (its lower bound) and −z_j (minus its upper bound).
        let rows = 2 * picks.len();
        let mut a = Array2::<f64>::zeros((rows, n));
        let mut row_box = Vec::with_capacity(rows);
        let mut unit_cols = Vec::with_capacity(rows);
        for (p, &(d, j)) in picks.iter().enumerate() {
            a[[2 * p, j]] = 1.0;
            a[[2 * p + 1, j]] = -1.0;
            row_box.push(d);
            row_box.push(d);
            unit_cols.push(j);
            unit_cols.push(j);
        }
        let lower = {
            let layers: Vec<&[LayerBounds]> = out.iter().map(|db| &db.layers[..k]).collect();
            cache.extend_to(self, k, boxes, &layers);
            self.backward_rows(
                k,
                boxes,
                cache,
                a,
                &row_box,
                &vec![0.0; rows],
                Some(&unit_cols),
                &mut BackwardExtras::default(),
            )
            .0
        };
        for (p, &(d, j)) in picks.iter().enumerate() {
            let lb = &mut out[d].layers[k];
            lb.lower[j] = lb.lower[j].max(lower[2 * p]);
            lb.upper[j] = lb.upper[j].min(-lower[2 * p + 1]);
        }
    }

    /// Bounds of the output layer only (no objective), from the last entry of `bounds`.
    pub fn output_bounds<'b>(&self, bounds: &'b DenseBounds) -> &'b LayerBounds {
        bounds.output()
    }
}

/// What backward passes read per box and layer, computed once per layer (when its bounds are final) and
/// shared by every pass through it: the refinement of each deeper layer, the objective, α-CROWN's iterations.
struct BackwardCache {
    /// `tables[d][k]`: the relaxation of hidden layer `k` over box `d`.
    tables: Vec<Vec<ReluTable>>,
    /// `compact[d][k]`: hidden layer `k` over box `d` restricted to the neurons its ReLU does not block; empty
    /// unless built with `compact` (worth it for many rows per box, as the refinement's).
    compact: Vec<Vec<CompactLayer>>,
    use_compact: bool,
    /// `wb[k]`, `[nb, n_out_k]`: `|W_k|·H + |b_k|` per box, `H` the magnitude of layer `k`'s input (max|x| for
    /// the first layer, max(u, 0) after a ReLU).
    wb: Vec<Array2<f64>>,
}

impl BackwardCache {
    fn new(nb: usize, compact: bool) -> Self {
        BackwardCache {
            use_compact: compact,
            tables: (0..nb).map(|_| Vec::new()).collect(),
            compact: (0..nb).map(|_| Vec::new()).collect(),
            wb: Vec::new(),
        }
    }

    /// Extends the cache to what a backward pass from layer `top` reads: the tables of hidden layers `0..top`
    /// and `wb` of layers `0..=top`. `layers[d]` are box `d`'s bounds of (at least) layers `0..top`, which must
    /// not change afterwards.
    fn extend_to(
        &mut self,
        net: &DenseReluNet,
        top: usize,
        boxes: &[InputBox],
        layers: &[&[LayerBounds]],
    ) {
        let nb = boxes.len();
        debug_assert_eq!(self.tables.len(), nb);
        while self.wb.len() <= top {
            let k = self.wb.len();
            if k > 0 {
                for (t, lb) in self.tables.iter_mut().zip(layers) {
                    debug_assert_eq!(t.len(), k - 1);
                    t.push(ReluTable::new(&lb[k - 1], net.err));
                }
                let hidden = &net.layers[k - 1];
                let wb = &self.wb[k - 1];
                let compact = if self.use_compact {
                    &mut self.compact[..]
                } else {
                    &mut []
                };
                for (d, (c, t)) in compact.iter_mut().zip(&self.tables).enumerate() {
                    let t = &t[k - 1];
                    let act: Vec<usize> =
                        (0..t.up_pos.len()).filter(|&j| t.up_pos[j] > 0.0).collect();
                    let prev: Vec<usize> = match c.last() {
                        Some(p) => p.act.clone(),
                        None => (0..hidden.w.ncols()).collect(),
                    };
                    let mut wv = Vec::with_capacity(act.len() * prev.len());
                    for &i in &act {
                        let row = hidden.w.row(i);
                        let row = row.to_slice().expect("standard layout");
                        wv.extend(prev.iter().map(|&j| row[j]));
                    }
                    let w = Array2::from_shape_vec((act.len(), prev.len()), wv).expect("sized");
                    let wbd = wb.row(d);
                    let wbd = wbd.to_slice().expect("standard layout");
                    c.push(CompactLayer::new(t, act, w, &hidden.b, wbd));
                }
            }
            let layer = &net.layers[k];
            // Magnitude of this layer's input per box ([n_in_k, nb]); then |W|·mag + |b| per box, stored per
            // box ([nb, n_out_k]).
            let n_prev = layer.w.ncols();
            let mut mag = Array2::<f64>::zeros((n_prev, nb));
            for d in 0..nb {
                for j in 0..n_prev {
                    mag[[j, d]] = if k == 0 {
                        boxes[d].lower[j].abs().max(boxes[d].upper[j].abs())
                    } else {
                        self.tables[d][k - 1].up_pos[j]
                    };
                }
            }
            let mut wmag = Array2::<f64>::zeros((layer.b.len(), nb));
            general_mat_mul(1.0, &layer.w_abs, &mag, 0.0, &mut wmag);
            let mut wb = wmag.reversed_axes().as_standard_layout().into_owned();
            for mut row in wb.rows_mut() {
                for (v, b) in row.iter_mut().zip(&layer.b) {
                    *v += b.abs();
                }
            }
            self.wb.push(wb);
        }
    }
}

/// A hidden layer `k` over one box restricted to the neurons whose ReLU the box's bounds do not block
/// (`up > 0`): a blocked neuron's coefficient is exactly 0 after the relaxation, so CROWN's plain backward pass
/// can leave it out of every sum and product (the terms left out are ±0 and every sum starts at +0 and never
/// becomes −0, so the results are bit for bit the same).
struct CompactLayer {
    /// The neurons kept, increasing.
    act: Vec<usize>,
    /// `W_k[act_k, act_{k-1}]` (all inputs for the first layer).
    w: Array2<f64>,
    /// Per neuron kept, eight segments of `act.len()`: the [`ReluTable`] entries `lo_pos`, `up_pos`,
    /// `lower_mult`, `upper_mult`, `chord_lo`, `chord_err`, then the bias `b_k` and the error weights `wb_k`
    /// of [`BackwardCache::wb`].
    data: Vec<f64>,
}

impl CompactLayer {
    fn new(t: &ReluTable, act: Vec<usize>, w: Array2<f64>, b: &[f64], wb: &[f64]) -> Self {
        let mut data = Vec::with_capacity(8 * act.len());
        for v in [
            &t.lo_pos,
            &t.up_pos,
            &t.lower_mult,
            &t.upper_mult,
            &t.chord_lo,
            &t.chord_err,
        ] {
            data.extend(act.iter().map(|&i| v[i]));
        }
        data.extend(act.iter().map(|&i| b[i]));
        data.extend(act.iter().map(|&i| wb[i]));
        CompactLayer { act, w, data }
    }

    /// CROWN's relaxation of one row `ar` (coefficients on this layer's ReLU outputs) in place, updating the
    /// row's `constant`, `err` and `best` bound, then the row's constant term through this layer's bias and
    /// its error: the same operations in the same order as the full pass's relaxation and
    /// [`constant_terms`], in one sweep.
    fn relax_row(
        &self,
        eps: f64,
        ar: &mut [f64],
        constant: &mut f64,
        err: &mut f64,
        best: &mut f64,
    ) {
        let n = ar.len();
        debug_assert_eq!(n, self.act.len());
        let seg = |i: usize| &self.data[i * n..(i + 1) * n];
        let (lo_pos, up_pos, lower_mult, upper_mult) = (seg(0), seg(1), seg(2), seg(3));
        let (chord_lo, chord_err, b, wb) = (seg(4), seg(5), seg(6), seg(7));
        // Stopping here and using the interval of this layer's input is sometimes tighter than relaxing
        // further: keep the best of these bounds. `v`/`m` read the coefficients before the relaxation.
        let mut v = *constant;
        let mut m = constant.abs();
        let mut d_const = 0.0;
        let mut d_err = 0.0;
        let mut cst = 0.0;
        let mut e = 0.0;
        // Through the ReLU: a positive coefficient meets the lower relaxation (0 or z, whichever is closer on
        // [lo, up], as CROWN), a negative one the upper chord s·(z − lo). Branch-free (the coefficients' signs
        // are unpredictable): one of `pos`/`neg` is zero, so every sum below adds exactly the product the
        // sign selects.
        for j in 0..n {
            let x = ar[j];
            let pos = x.max(0.0);
            let neg = x.min(0.0);
            v += pos * lo_pos[j] + neg * up_pos[j];
            m += (pos - neg) * up_pos[j];
            let na = neg * upper_mult[j];
            let y = pos * lower_mult[j] + na;
            ar[j] = y;
            d_const -= na * chord_lo[j];
            d_err -= neg * chord_err[j];
            // The constant term of the relaxed coefficient: adding 0.0 for a zero coefficient equals
            // skipping it as `constant_terms` does (these sums start at +0 and never become −0).
            let nz = y != 0.0;
            cst += if nz { y * b[j] } else { 0.0 };
            e += if nz { y.abs() * wb[j] } else { 0.0 };
        }
        let cand = (v - (*err + 2.0 * eps * m) * (1.0 + 1e-6)).next_down();
        *best = best.max(cand);
        *constant += d_const;
        *err += d_err;
        *constant += cst;
        *err += 2.0 * eps * e;
    }
}

/// One hidden layer's ReLU relaxation over one box, precomputed for the backward pass (which reads it once per
/// objective row): stable neurons pass (1) or block (0) their coefficient; an unstable one has CROWN's lower
/// slope (0 or 1, whichever is closer on `[lo, up]`) and the upper chord `s·(z − lo)`.
struct ReluTable {
    lo: Vec<f64>,
    up: Vec<f64>,
    /// `max(lo, 0)`, `max(up, 0)`: the post-ReLU interval.
    lo_pos: Vec<f64>,
    up_pos: Vec<f64>,
    /// `max(|lo|, |up|)`.
    z: Vec<f64>,
    unstable: Vec<bool>,
    /// Multiplier of a positive coefficient (lower relaxation) and of a negative one (upper relaxation).
    lower_mult: Vec<f64>,
    upper_mult: Vec<f64>,
    /// `lo` where the chord applies (unstable neurons), else 0: the chord's intercept is `−s·lo`.
    chord_lo: Vec<f64>,
    /// Error per unit of |coefficient| through the chord: `(2ε + 4u)·s·(z + |lo|)` (unstable), else 0.
    chord_err: Vec<f64>,
    /// +1 where a split fixed the neuron active (`lo` clamped to exactly 0, so `z ≥ 0` on the sub-domain),
    /// −1 where it fixed it inactive (`up` clamped to 0: `z ≤ 0`), else 0. An unsplit neuron with such bounds
    /// satisfies the same constraint, so treating it alike is sound.
    split_sign: Vec<f64>,
}

impl ReluTable {
    fn new(l: &LayerBounds, eps: f64) -> Self {
        let n = l.lower.len();
        let mut t = ReluTable {
            lo: l.lower.clone(),
            up: l.upper.clone(),
            lo_pos: vec![0.0; n],
            up_pos: vec![0.0; n],
            z: vec![0.0; n],
            unstable: vec![false; n],
            lower_mult: vec![0.0; n],
            upper_mult: vec![0.0; n],
            chord_lo: vec![0.0; n],
            chord_err: vec![0.0; n],
            split_sign: vec![0.0; n],
        };
        for j in 0..n {
            let (lo, up) = (l.lower[j], l.upper[j]);
            t.lo_pos[j] = lo.max(0.0);
            t.up_pos[j] = up.max(0.0);
            t.z[j] = lo.abs().max(up.abs());
            t.split_sign[j] = split_sign(lo, up);
            if lo >= 0.0 {
                t.lower_mult[j] = 1.0;
                t.upper_mult[j] = 1.0;
            } else if up > 0.0 {
                let slope = chord_slope(lo, up);
                t.unstable[j] = true;
                t.lower_mult[j] = if up <= -lo { 0.0 } else { 1.0 };
                t.upper_mult[j] = slope;
                t.chord_lo[j] = lo;
                t.chord_err[j] = (2.0 * eps + 4.0 * U) * slope * (t.z[j] + lo.abs());
            }
        }
        t
    }
}

/// `out = a·w`, the sums of an empty product being +0 as the matrix product's.
fn mat_mul_into(
    a: &ArrayView2<'_, f64>,
    w: &ArrayView2<'_, f64>,
    out: &mut ArrayViewMut2<'_, f64>,
) {
    if a.ncols() == 0 {
        out.fill(0.0);
    } else {
        general_mat_mul(1.0, a, w, 0.0, out);
    }
}

/// One row's constant term `a·b` through a layer's bias `b`, added to `constant`, and its error `2ε·|a|·wb`
/// (see [`BackwardCache::wb`]) added to `err`. Zero coefficients are skipped (which also keeps 0·∞ out of
/// the sums).
fn constant_terms(ar: &[f64], b: &[f64], wb: &[f64], eps: f64, constant: &mut f64, err: &mut f64) {
    let mut e = 0.0;
    let mut cst = 0.0;
    for ((&ai, &bi), &wi) in ar.iter().zip(b).zip(wb) {
        if ai != 0.0 {
            cst += ai * bi;
            e += ai.abs() * wi;
        }
    }
    *constant += cst;
    *err += 2.0 * eps * e;
}

/// See [`ReluTable::split_sign`].
fn split_sign(lo: f64, up: f64) -> f64 {
    if lo == 0.0 && up > 0.0 {
        1.0
    } else if up == 0.0 && lo < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The slope `u / (u − l)` of the ReLU's upper chord on `[l, u]` (`l < 0 < u`), rounded up (three ulps cover
/// the two roundings of the quotient) so that `relu(z) ≤ s·(z − l)` holds on the whole interval.
fn chord_slope(lo: f64, up: f64) -> f64 {
    (up / (up - lo)).next_up().next_up().next_up()
}
