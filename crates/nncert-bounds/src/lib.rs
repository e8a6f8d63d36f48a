//! # nncert-bounds
//!
//! Sound bounds on a network's values over an input box: interval bound propagation (IBP), backward linear
//! relaxation (CROWN / DeepPoly) and α-CROWN, for every op of the IR.
//!
//! Relaxations in the backward pass: ReLU and LeakyReLU (CROWN's adaptive lower slope, or α-CROWN's optimized
//! one; the chord above), sigmoid and tanh (chord and tangent on the convex or concave side, constants across
//! 0), max-pool (below by the window element with the largest lower bound, above by the same element when it
//! dominates the window, else by the interval bound), every affine op (Linear, Conv via its transpose,
//! pooling averages, Add/Sub, Concat, Slice, Reshape, Transpose, Pad, ...) exactly; any other op by its
//! interval bounds. α-CROWN ([`Bounder::output_lower_alpha`]) optimizes the lower ReLU slopes of the
//! objective's pass by projected sign-gradient ascent with the exact gradient; feed-forward ReLU nets have a
//! faster engine of their own in [`dense`].
//!
//! ## Soundness under floating point
//! Bounds hold for the *real-valued* network with its stored f32 weights. All arithmetic is f64 with
//! round-to-nearest, and every step adds an explicit, rigorous error term instead of switching rounding modes:
//! - a computed sum of `K` products differs from the exact one by at most `γ_K · Σ|aᵢ||bᵢ|` with
//!   `γ_K = K·u / (1 − K·u)`, `u = 2⁻⁵³` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1), for any
//!   summation order and with or without FMA. `K` is taken as the number of elements of the node's operands plus
//!   its output plus 4, an upper bound on any sum the node performs in either direction.
//! - the `Σ|aᵢ||bᵢ|` are themselves computed by pushing magnitudes through a copy of the network with absolute
//!   weights ([`BoundModel`]); those error terms are inflated by 1% to cover their own rounding.
//! - a result rounded to nearest is moved one ulp outward (`next_down` / `next_up`), which covers the final
//!   rounding of a sum.
//! - ReLU relaxation slopes are rounded so that the relaxation stays valid (the upper chord's slope upward).
//! - stored constants may have been rounded once to f32 by import and canonicalization (`x / c` → `x·fl(1/c)`,
//!   BatchNorm fusion): every node with constants adds `2⁻²³ · (|W||x| + |b|)`, so proofs hold for the model as
//!   written in its file.
//! - `exp`/`tanh` of the platform's libm are within a few ulps: IBP through sigmoid/tanh widens by 2⁻⁴⁴ relative.
//!
//! The cost is one extra matrix–vector product per layer (the magnitude pass) and an `O(k·n)` pass per backward
//! step, negligible next to the matrix products themselves.
//!
//! ```
//! use nncert_bounds::{BoundModel, Method};
//! use nncert_model::ir::{GraphBuilder, Linear, Op};
//! use nncert_spec::InputBox;
//! use ndarray::{arr1, arr2};
//! let mut b = GraphBuilder::new("x", vec![2]);
//! let fc = Op::Linear(Linear { weight: arr2(&[[1.0, -1.0]]), bias: Some(arr1(&[0.5])) });
//! let y = b.push("fc", fc, vec![b.input_id()], None).unwrap();
//! let g = b.finish(y);
//! let model = BoundModel::new(&g);
//! let bounds = model.bounder().node_bounds(&InputBox { lower: vec![0.0, 0.0], upper: vec![1.0, 1.0] }, Method::Crown);
//! let out = &bounds[g.output_id().0];
//! assert!(out.lower[0] <= -0.5 && out.lower[0] > -0.5 - 1e-6);
//! assert!(out.upper[0] >= 1.5 && out.upper[0] < 1.5 + 1e-6);
//! ```

pub mod dense;

use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};
use nncert_model::eval::Evaluator;
use nncert_model::ir::{Graph, GraphBuilder, Linear, Op};
use nncert_spec::InputBox;

const U: f64 = f64::EPSILON / 2.0;

/// Relative uncertainty granted to every stored constant (weights, biases, affine constants). Import and
/// canonicalization may round a constant once to f32 (e.g. `x / c` becomes `x · fl(1/c)`, BatchNorm is fused
/// into the preceding layer), so the IR's constants can differ from the model file's by 2⁻²⁴ relative; 2⁻²³
/// covers that with room for the f64 arithmetic before the rounding. Proofs thereby hold for the network as
/// written in the file, not only for its canonical form, at a cost of about 1e-7 relative in bound width.
const IMPORT_ROUNDING: f64 = 1.0 / (1u64 << 23) as f64;

/// `γ_K = K·u / (1 − K·u)`: the relative error bound of a K-term floating-point dot product.
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * U;
    // Rounded up generously: the bound only needs to be an over-estimate.
    (ku / (1.0 - ku)) * (1.0 + 1e-6)
}

/// Which relaxation to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Interval bound propagation.
    Interval,
    /// Backward linear relaxation (CROWN / DeepPoly) for the output and for every pre-activation.
    Crown,
    /// α-CROWN: `iterations` of projected gradient ascent on the lower ReLU slopes of the objective's backward
    /// pass (see [`Bounder::output_lower_alpha`]), and `intermediate` iterations on those of every
    /// intermediate node's own bounds (0: CROWN there). Intermediate slopes pay on deep convolutional nets
    /// (oval21: 3 instances proved instead of 2) at about 6× CROWN's time with 5 iterations.
    Alpha {
        iterations: usize,
        intermediate: usize,
    },
}

/// α-CROWN iterations on the objective when none are given (`"alpha"`): most of the gain comes in the first
/// 10–20.
pub const ALPHA_ITERATIONS: usize = 20;

/// α-CROWN iterations per intermediate node when none are given.
pub const ALPHA_INTERMEDIATE_ITERATIONS: usize = 5;

impl Method {
    /// Whether intermediate nodes get backward-relaxation bounds (CROWN and α-CROWN).
    pub fn is_linear_relaxation(self) -> bool {
        !matches!(self, Method::Interval)
    }

    /// α-CROWN iterations on the objective (0 for IBP and CROWN).
    pub fn alpha_iterations(self) -> usize {
        match self {
            Method::Alpha { iterations, .. } => iterations,
            _ => 0,
        }
    }

    /// α-CROWN iterations per intermediate node (0 for IBP and CROWN).
    pub fn intermediate_alpha_iterations(self) -> usize {
        match self {
            Method::Alpha { intermediate, .. } => intermediate,
            _ => 0,
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ibp" | "interval" => Ok(Method::Interval),
            "crown" | "deeppoly" => Ok(Method::Crown),
            "alpha" | "alpha-crown" => Ok(Method::Alpha {
                iterations: ALPHA_ITERATIONS,
                intermediate: ALPHA_INTERMEDIATE_ITERATIONS,
            }),
            _ => Err(format!(
                "unknown bound method '{s}' (expected ibp, crown or alpha)"
            )),
        }
    }
}

/// Elementwise bounds of one node's output (one sample, flattened row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeBounds {
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

impl NodeBounds {
    /// `max(|lower|, |upper|)` per element: the largest magnitude each value can take.
    pub fn magnitude(&self) -> Vec<f64> {
        self.lower
            .iter()
            .zip(&self.upper)
            .map(|(l, u)| l.abs().max(u.abs()))
            .collect()
    }
}

/// The network plus the two absolute-value copies that the error terms need. Build once per network.
pub struct BoundModel {
    graph: Graph,
    /// `|W|`, no biases/offsets: pushes radii.
    abs: Graph,
    /// `|W|` with `|b|`: pushes magnitudes for rounding-error terms.
    abs_bias: Graph,
    /// Per node, the dot-product length bound `K` of [`gamma`].
    terms: Vec<usize>,
}

fn abs_op(op: &Op, keep_offsets: bool) -> Op {
    let abs = |a: &ArrayD<f32>| a.mapv(f32::abs);
    let abs1 = |a: &Array1<f32>| a.mapv(f32::abs);
    match op {
        Op::Linear(l) => Op::Linear(Linear {
            weight: l.weight.mapv(f32::abs),
            bias: l.bias.as_ref().filter(|_| keep_offsets).map(abs1),
        }),
        Op::Conv(c) => {
            let mut c = c.clone();
            c.weight.mapv_inplace(f32::abs);
            c.bias = c.bias.filter(|_| keep_offsets).map(|b| b.mapv(f32::abs));
            Op::Conv(c)
        }
        Op::ConvTranspose(c) => {
            let mut c = c.clone();
            c.weight.mapv_inplace(f32::abs);
            c.bias = c.bias.filter(|_| keep_offsets).map(|b| b.mapv(f32::abs));
            Op::ConvTranspose(c)
        }
        Op::Affine { scale, shift } => Op::Affine {
            scale: scale.as_ref().map(abs),
            shift: shift.as_ref().filter(|_| keep_offsets).map(abs),
        },
        Op::Constant(c) => Op::Constant(if keep_offsets {
            abs(c)
        } else {
            c.mapv(|_| 0.0)
        }),
        Op::Sub => Op::Add,
        Op::Pad { pads, value } => Op::Pad {
            pads: pads.clone(),
            value: if keep_offsets { value.abs() } else { 0.0 },
        },
        other => other.clone(),
    }
}

fn rebuild(graph: &Graph, keep_offsets: bool) -> Graph {
    let input = graph.input();
    let mut b = GraphBuilder::new(input.name.clone(), input.shape.clone());
    for n in &graph.nodes()[1..] {
        b.push(
            n.name.clone(),
            abs_op(&n.op, keep_offsets),
            n.inputs.clone(),
            Some(n.shape.clone()),
        )
        .expect("same shapes as the original graph");
    }
    // Nodes are pushed in the same order, so ids are unchanged; `finish` keeps them all (they were all needed).
    b.finish(graph.output_id())
}

impl BoundModel {
    pub fn new(graph: &Graph) -> Self {
        let terms = graph
            .nodes()
            .iter()
            .map(|n| {
                n.inputs
                    .iter()
                    .map(|j| graph.node(*j).numel())
                    .sum::<usize>()
                    + n.numel()
                    + 4
            })
            .collect();
        BoundModel {
            graph: graph.clone(),
            abs: rebuild(graph, false),
            abs_bias: rebuild(graph, true),
            terms,
        }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Error factor of node `i`: the dot-product bound plus, for nodes with stored constants, the import rounding.
    fn node_gamma(&self, i: usize) -> f64 {
        let has_constants = self.graph.nodes()[i].op.num_parameters() > 0;
        gamma(self.terms[i]) + if has_constants { IMPORT_ROUNDING } else { 0.0 }
    }

    /// Evaluators over this model; make one per thread and reuse it.
    pub fn bounder(&self) -> Bounder<'_> {
        let exact = Evaluator::new(&self.graph);
        let nodes = self.graph.nodes();
        let offsets = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == 0 || !n.op.is_affine() {
                    return vec![];
                }
                let zeros: Vec<ArrayD<f64>> = n
                    .inputs
                    .iter()
                    .map(|j| batch1(&vec![0.0; nodes[j.0].numel()], &nodes[j.0].shape))
                    .collect();
                let refs: Vec<&ArrayD<f64>> = zeros.iter().collect();
                exact.node_forward(i, &refs, 1).into_iter().collect()
            })
            .collect();
        let linear_weights = nodes
            .iter()
            .map(|n| match &n.op {
                Op::Linear(l) => Some(l.weight.mapv(f64::from)),
                _ => None,
            })
            .collect();
        Bounder {
            model: self,
            exact,
            abs: Evaluator::new(&self.abs),
            abs_bias: Evaluator::new(&self.abs_bias),
            offsets,
            linear_weights,
            deadline: None,
        }
    }
}

/// Computes bounds for one [`BoundModel`].
pub struct Bounder<'m> {
    model: &'m BoundModel,
    exact: Evaluator<'m, f64>,
    abs: Evaluator<'m, f64>,
    abs_bias: Evaluator<'m, f64>,
    /// Per node, its output at all-zero operands (the offset of an affine node; empty for other ops).
    offsets: Vec<Vec<f64>>,
    /// Per Linear node, its weight `[out, in]` in f64.
    linear_weights: Vec<Option<Array2<f64>>>,
    /// After this instant, intermediate nodes keep their IBP bounds (still sound, only looser).
    deadline: Option<std::time::Instant>,
}

fn batch1(v: &[f64], shape: &[usize]) -> ArrayD<f64> {
    let mut s = vec![1];
    s.extend(shape);
    ArrayD::from_shape_vec(IxDyn(&s), v.to_vec()).expect("sizes agree")
}

fn is_relaxed_nonlinear(op: &Op) -> bool {
    !op.is_affine()
}

type ScalarFn = fn(f64) -> f64;

fn sigmoid(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// Widening for results of libm's exp/tanh (a few ulps), relative plus a tiny absolute term.
fn widen(v: f64, down: bool) -> f64 {
    let d = v.abs() * 2f64.powi(-44) + 1e-300;
    if down { v - d } else { v + d }
}

/// What a backward pass may use and record besides its rows (α-CROWN).
#[derive(Default)]
struct Relaxation {
    /// Indexed by node: lower slopes `[rows, n]` for a ReLU/LeakyReLU node's unstable elements; CROWN's
    /// 0-or-1 choice where `None` (or where the vector is shorter).
    alpha: Vec<Option<Array2<f64>>>,
    /// Record each nonlinear node's coefficients before relaxation in `tape` (indexed by node; `None` for
    /// nodes the pass did not reach).
    record: bool,
    tape: Vec<Option<Array2<f64>>>,
}

/// The linear relaxation of a ReLU or LeakyReLU (leak `a`) over its input's bounds, per element: a lower line
/// through the origin with any slope in `[a, 1]` (CROWN picks 1 or `a`, α-CROWN optimizes it), and the upper
/// chord `up_slope·z + up_icpt`.
struct ReluRelaxation {
    leak: f64,
    /// CROWN's lower slope.
    lo_slope: Vec<f64>,
    up_slope: Vec<f64>,
    up_icpt: Vec<f64>,
    unstable: Vec<bool>,
}

impl ReluRelaxation {
    fn new(op: &Op, pre: &NodeBounds) -> Self {
        let leak = match op {
            Op::LeakyRelu { alpha } => *alpha as f64,
            _ => 0.0,
        };
        let n = pre.lower.len();
        let mut r = ReluRelaxation {
            leak,
            lo_slope: vec![0.0; n],
            up_slope: vec![0.0; n],
            up_icpt: vec![0.0; n],
            unstable: vec![false; n],
        };
        for e in 0..n {
            let (l, u) = (pre.lower[e], pre.upper[e]);
            if l >= 0.0 {
                r.lo_slope[e] = 1.0;
                r.up_slope[e] = 1.0;
            } else if u <= 0.0 {
                r.lo_slope[e] = leak;
                r.up_slope[e] = leak;
            } else {
                // Chord through (l, a·l) and (u, u): slope (u − a·l)/(u − l), rounded up; it stays above the
                // function on [l, u] since it pivots at the left end.
                let s = ((u - leak * l).next_up() / (u - l).next_down()).next_up();
                r.up_slope[e] = s.min(1.0).max(leak);
                // Intercept at z = 0 from the left pivot: a·l − s·l = (s − a)(−l) ≥ 0, rounded up.
                r.up_icpt[e] = ((r.up_slope[e] - leak).next_up() * (-l)).next_up();
                r.lo_slope[e] = if u >= -l { 1.0 } else { leak };
                r.unstable[e] = true;
            }
        }
        r
    }

    /// The lower slope of element `e`: `alpha` (clamped to `[leak, 1]`, where every line through the origin
    /// stays below the function) for an unstable element when given, else CROWN's.
    fn lower_slope(&self, e: usize, alpha: Option<f64>) -> f64 {
        match alpha {
            Some(a) if self.unstable[e] => a.clamp(self.leak, 1.0),
            _ => self.lo_slope[e],
        }
    }
}

/// The linear relaxation of a max-pool over its input's bounds, per output element `o`: `y_o ≥ x_k` for the
/// window element `k = pick[o]` with the largest lower bound (exact: the max is at least any element), and
/// `y_o ≤ x_k` too when that element's lower bound reaches every other element's upper bound (`exact[o]`: then
/// the max is `x_k`); otherwise `y_o ≤` its interval upper bound.
struct MaxPoolRelaxation {
    pick: Vec<usize>,
    exact: Vec<bool>,
}

impl MaxPoolRelaxation {
    fn new(graph: &Graph, i: usize, pre: &NodeBounds) -> Self {
        let node = &graph.nodes()[i];
        let Op::MaxPool(p) = &node.op else {
            unreachable!("a max-pool node")
        };
        let in_shape = &graph.nodes()[node.inputs[0].0].shape;
        let windows = nncert_model::eval::pool_windows(p, in_shape, &node.shape);
        let mut pick = Vec::with_capacity(windows.len());
        let mut exact = Vec::with_capacity(windows.len());
        for win in &windows {
            // A window is never empty for a valid pool (ONNX requires pads smaller than the kernel).
            let k = win
                .iter()
                .copied()
                .reduce(|b, j| if pre.lower[j] > pre.lower[b] { j } else { b })
                .expect("non-empty pooling window");
            pick.push(k);
            exact.push(win.iter().all(|&j| j == k || pre.upper[j] <= pre.lower[k]));
        }
        MaxPoolRelaxation { pick, exact }
    }
}

/// Linear bounds `z ≥ a_l·x + b_l` and `z ≤ a_u·x + b_u` of a sigmoid or tanh on each element's input range
/// `[l, u]` (`pre`): chord and midpoint tangent where the function is convex (`u ≤ 0`) or concave (`l ≥ 0`),
/// constants from the node's own bounds (`own`) where the range straddles 0. Returns (lower, upper) lines as
/// (slope, intercept).
#[allow(clippy::type_complexity)]
fn s_shaped_lines(
    op: &Op,
    pre: &NodeBounds,
    own: &NodeBounds,
) -> (Vec<(f64, f64)>, Vec<(f64, f64)>) {
    let (f, df): (ScalarFn, ScalarFn) = match op {
        Op::Sigmoid => (sigmoid, |x| {
            let s = sigmoid(x);
            s * (1.0 - s)
        }),
        _ => (f64::tanh, |x| {
            let t = x.tanh();
            1.0 - t * t
        }),
    };
    let n = pre.lower.len();
    let mut lo = vec![(0.0, 0.0); n];
    let mut up = vec![(0.0, 0.0); n];
    for e in 0..n {
        let (l, u) = (pre.lower[e], pre.upper[e]);
        lo[e] = (0.0, own.lower[e]);
        up[e] = (0.0, own.upper[e]);
        if !(l.is_finite() && u.is_finite()) || u - l < 1e-12 || (l < 0.0 && u > 0.0) {
            continue;
        }
        let (fl, fu) = (f(l), f(u));
        let chord = (fu - fl) / (u - l);
        let chord_icpt = fl - chord * l;
        let d = l + (u - l) / 2.0;
        let tangent = df(d);
        let tangent_icpt = f(d) - tangent * d;
        // A generous allowance for libm error in f and f', the rounding of slopes and intercepts, and the
        // slope error times the interval width: the lines move outward by it.
        let delta = 1e-12
            * (1.0 + fl.abs() + fu.abs() + (chord.abs() + tangent.abs()) * (l.abs() + u.abs()));
        let (lower_line, upper_line) = if u <= 0.0 {
            ((tangent, tangent_icpt - delta), (chord, chord_icpt + delta))
        } else {
            ((chord, chord_icpt - delta), (tangent, tangent_icpt + delta))
        };
        lo[e] = lower_line;
        up[e] = upper_line;
    }
    (lo, up)
}

impl Bounder<'_> {
    pub fn graph(&self) -> &Graph {
        &self.model.graph
    }

    /// Stops refining intermediate bounds by backward relaxation at `deadline`: bounds computed after it are
    /// IBP (intersected with any prior) except for the output, so a time budget is honoured without ever
    /// giving up soundness.
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// Bounds of every node over `input`. With [`Method::Crown`], every input of a nonlinear op (and the output)
    /// is bounded by backward relaxation too, and the tighter of the two bounds is kept.
    pub fn node_bounds(&self, input: &InputBox, method: Method) -> Vec<NodeBounds> {
        self.node_bounds_within(input, method, None, true)
    }

    /// [`Self::node_bounds`] for a sub-box of a box whose bounds `prior` are known (they stay valid on any
    /// sub-box, so every node's bounds are intersected with them). With `refine_intermediate` false, only the
    /// output is bounded by backward relaxation; intermediate nodes get IBP ∩ `prior`, which is what makes
    /// branch-and-bound cheap between full refreshes.
    pub fn node_bounds_within(
        &self,
        input: &InputBox,
        method: Method,
        prior: Option<&[NodeBounds]>,
        refine_intermediate: bool,
    ) -> Vec<NodeBounds> {
        let g = self.graph();
        let nodes = g.nodes();
        let mut needs_crown = vec![false; nodes.len()];
        // Nodes whose nonlinear consumers are all ReLUs: only their unstable neurons need tighter bounds (a
        // stable ReLU's relaxation is exact whatever its bounds).
        let mut relu_fed = vec![true; nodes.len()];
        if method.is_linear_relaxation() {
            for n in nodes {
                if is_relaxed_nonlinear(&n.op) {
                    for j in &n.inputs {
                        needs_crown[j.0] = true;
                        if !matches!(n.op, Op::Relu | Op::LeakyRelu { .. }) {
                            relu_fed[j.0] = false;
                        }
                    }
                }
            }
            if !refine_intermediate {
                needs_crown.iter_mut().for_each(|v| *v = false);
            }
            needs_crown[g.output_id().0] = true;
        }
        let intermediate_alpha = method.intermediate_alpha_iterations();
        let mut bounds: Vec<NodeBounds> = Vec::with_capacity(nodes.len());
        bounds.push(NodeBounds {
            lower: input.lower.clone(),
            upper: input.upper.clone(),
        });
        for i in 1..nodes.len() {
            let mut b = self.interval_step(i, &bounds);
            if let Some(p) = prior {
                for k in 0..b.lower.len() {
                    b.lower[k] = b.lower[k].max(p[i].lower[k]);
                    b.upper[k] = b.upper[k].min(p[i].upper[k]);
                }
            }
            // Affine nodes right after the input are already exact up to rounding; skip the backward pass there.
            let direct = nodes[i].inputs.iter().all(|j| j.0 == 0) && nodes[i].op.is_affine();
            // Nonlinear nodes gain nothing over IBP from their exact inputs' bounds, so only affine ones are refined.
            let refine = nodes[i].op.is_affine() && !matches!(nodes[i].op, Op::Constant(_));
            let is_output = i == g.output_id().0;
            if needs_crown[i] && !direct && refine && (is_output || !self.past_deadline()) {
                let rows: Vec<usize> = if relu_fed[i] && !is_output {
                    (0..b.lower.len())
                        .filter(|&k| b.lower[k] < 0.0 && b.upper[k] > 0.0)
                        .collect()
                } else {
                    (0..b.lower.len()).collect()
                };
                let c = self.crown_node(i, &rows, &bounds, intermediate_alpha);
                for (t, &k) in rows.iter().enumerate() {
                    b.lower[k] = b.lower[k].max(c.lower[t]);
                    b.upper[k] = b.upper[k].min(c.upper[t]);
                }
            }
            bounds.push(b);
        }
        bounds
    }

    /// Lower bounds of `c·y` (rows of `c`, `y` = the network output) over `input`, given node bounds.
    pub fn output_lower(&self, c: &Array2<f64>, bounds: &[NodeBounds]) -> Vec<f64> {
        self.backward(self.graph().output_id().0, c.clone(), bounds)
            .0
    }

    /// Like [`Self::output_lower`], also returning the coefficients of the final linear bound on the input
    /// (rows of `c` × input size; zeros when the bound does not depend on the input). Branch-and-bound reads
    /// them to choose which input to split: `|coefficient| × width` is how much that input's range costs.
    pub fn output_lower_with_input_coeffs(
        &self,
        c: &Array2<f64>,
        bounds: &[NodeBounds],
    ) -> (Vec<f64>, Array2<f64>) {
        let (lower, coeffs) = self.backward(self.graph().output_id().0, c.clone(), bounds);
        let coeffs =
            coeffs.unwrap_or_else(|| Array2::zeros((c.nrows(), self.graph().input_size())));
        (lower, coeffs)
    }

    /// α-CROWN on the output: lower bounds of `c·y` like [`Self::output_lower_with_input_coeffs`], with the
    /// lower ReLU slopes of the objective's backward pass optimized per row and neuron by `iterations` steps of
    /// projected sign-gradient ascent (intermediate bounds stay as given). Any slope in `[leak, 1]` gives a
    /// sound bound, so the optimizer only affects tightness; each row keeps its best bound (the first is
    /// CROWN's). The gradient is exact for the linear bound without its rounding terms: the bound is the
    /// relaxed network's value at the minimizing input vertex `x*`, so `∂bound/∂α = λ·ẑ(x*)`, with `λ` the
    /// row's coefficient on the ReLU's output and `ẑ` its input in the relaxed network, computed by one
    /// forward pass of the relaxed network for all rows.
    ///
    /// `done` sees the current bounds after each pass; returning `true` stops early (e.g. once they prove what
    /// was asked). The deadline of [`Self::with_deadline`] stops it too.
    pub fn output_lower_alpha(
        &self,
        c: &Array2<f64>,
        bounds: &[NodeBounds],
        iterations: usize,
        done: &dyn Fn(&[f64]) -> bool,
    ) -> (Vec<f64>, Array2<f64>) {
        self.lower_alpha(self.graph().output_id().0, c, bounds, iterations, done)
    }

    /// α-CROWN lower bounds of `c · z_out` for node `out` (see [`Self::output_lower_alpha`]); `bounds` must
    /// hold bounds for every node before `out`.
    fn lower_alpha(
        &self,
        out: usize,
        c: &Array2<f64>,
        bounds: &[NodeBounds],
        iterations: usize,
        done: &dyn Fn(&[f64]) -> bool,
    ) -> (Vec<f64>, Array2<f64>) {
        let n_in = self.graph().input_size();
        let rows = c.nrows();
        let mut relax = Relaxation {
            record: iterations > 0,
            ..Relaxation::default()
        };
        let (mut lower, a) = self.backward_relaxed(out, c.clone(), bounds, &mut relax);
        let mut coeffs = a.unwrap_or_else(|| Array2::zeros((rows, n_in)));
        let nodes = self.graph().nodes();
        let relus: Vec<(usize, ReluRelaxation)> = (0..relax.tape.len())
            .filter(|&i| {
                relax.tape[i].is_some() && matches!(nodes[i].op, Op::Relu | Op::LeakyRelu { .. })
            })
            .map(|i| {
                (
                    i,
                    ReluRelaxation::new(&nodes[i].op, &bounds[nodes[i].inputs[0].0]),
                )
            })
            .filter(|(_, r)| r.unstable.iter().any(|&u| u))
            .collect();
        if iterations == 0 || relus.is_empty() || done(&lower) {
            return (lower, coeffs);
        }
        // Start from CROWN's slopes.
        let mut alpha: Vec<Option<Array2<f64>>> = vec![None; out + 1];
        for (i, r) in &relus {
            let n = r.lo_slope.len();
            alpha[*i] = Some(Array2::from_shape_fn((rows, n), |(_, e)| r.lo_slope[e]));
        }
        let mut a_now = coeffs.clone();
        let mut step = 0.5;
        for _ in 0..iterations {
            if self.past_deadline() {
                break;
            }
            // Gradient at the current slopes, from the last pass's tape and input coefficients.
            let xstar = Array2::from_shape_fn((rows, n_in), |(r, t)| {
                if a_now[[r, t]] >= 0.0 {
                    bounds[0].lower[t]
                } else {
                    bounds[0].upper[t]
                }
            });
            relax.alpha = alpha;
            let values = self.relaxed_forward(xstar, out, bounds, &relax);
            let mut alpha_next = std::mem::take(&mut relax.alpha);
            for (i, r) in &relus {
                let (Some(al), Some(tape)) = (alpha_next[*i].as_mut(), relax.tape[*i].as_ref())
                else {
                    continue;
                };
                let z = values[nodes[*i].inputs[0].0]
                    .as_ref()
                    .expect("every node before the output has a value");
                let z = z
                    .view()
                    .into_shape_with_order((rows, r.lo_slope.len()))
                    .expect("standard layout");
                // Sign-gradient steps with a decaying size: robust to the gradient's scale, which varies by
                // layer and row.
                ndarray::Zip::indexed(al).for_each(|(row, e), v| {
                    let lam = tape[[row, e]];
                    if r.unstable[e] && lam > 0.0 {
                        let g = lam * z[[row, e]];
                        if g != 0.0 {
                            *v = (*v + step * g.signum()).clamp(r.leak, 1.0);
                        }
                    }
                });
            }
            step *= 0.7;
            relax.alpha = alpha_next;
            let (l, a) = self.backward_relaxed(out, c.clone(), bounds, &mut relax);
            a_now = a.unwrap_or_else(|| Array2::zeros((rows, n_in)));
            for r in 0..rows {
                if l[r] > lower[r] {
                    lower[r] = l[r];
                    coeffs.row_mut(r).assign(&a_now.row(r));
                }
            }
            alpha = std::mem::take(&mut relax.alpha);
            if done(&lower) {
                break;
            }
        }
        (lower, coeffs)
    }

    /// The relaxed network of a backward pass evaluated at one input per row (`x`, `[rows, inputs]`): affine
    /// nodes as they are, each nonlinear node replaced by the linear bound that row's pass used there (by the
    /// sign of its recorded coefficient in `relax.tape`; the lower one where nothing was recorded). Values of
    /// nodes `0..=upto`, each `[rows, shape...]`.
    fn relaxed_forward(
        &self,
        x: Array2<f64>,
        upto: usize,
        bounds: &[NodeBounds],
        relax: &Relaxation,
    ) -> Vec<Option<ArrayD<f64>>> {
        let nodes = self.graph().nodes();
        let k = x.nrows();
        let mut values: Vec<Option<ArrayD<f64>>> = vec![None; upto + 1];
        let mut s0 = vec![k];
        s0.extend(&nodes[0].shape);
        values[0] = Some(
            x.into_shape_with_order(IxDyn(&s0))
                .expect("row length is the input size"),
        );
        for i in 1..=upto {
            let node = &nodes[i];
            let tape = relax.tape.get(i).and_then(|t| t.as_ref());
            // The bound the pass used for row r, element e: lower when the coefficient was ≥ 0.
            let use_lower = |r: usize, e: usize| tape.is_none_or(|t| t[[r, e]] >= 0.0);
            let y = if node.op.is_affine() {
                let ins: Vec<&ArrayD<f64>> = node
                    .inputs
                    .iter()
                    .map(|j| values[j.0].as_ref().expect("operands come first"))
                    .collect();
                self.exact.node_forward(i, &ins, k)
            } else {
                let n = node.numel();
                let mut shape = vec![k];
                shape.extend(&node.shape);
                let mut y = Array2::<f64>::zeros((k, n));
                match &node.op {
                    Op::Relu | Op::LeakyRelu { .. } => {
                        let j = node.inputs[0].0;
                        let rr = ReluRelaxation::new(&node.op, &bounds[j]);
                        let z = values[j].as_ref().expect("operands come first");
                        let z = z
                            .view()
                            .into_shape_with_order((k, n))
                            .expect("standard layout");
                        let alpha = relax.alpha.get(i).and_then(|a| a.as_ref());
                        ndarray::Zip::indexed(&mut y).for_each(|(r, e), v| {
                            let zv = z[[r, e]];
                            *v = if use_lower(r, e) {
                                rr.lower_slope(e, alpha.map(|a| a[[r, e]])) * zv
                            } else {
                                rr.up_slope[e] * zv + rr.up_icpt[e]
                            };
                        });
                    }
                    Op::Sigmoid | Op::Tanh => {
                        let j = node.inputs[0].0;
                        let (lo, up) = s_shaped_lines(&node.op, &bounds[j], &bounds[i]);
                        let z = values[j].as_ref().expect("operands come first");
                        let z = z
                            .view()
                            .into_shape_with_order((k, n))
                            .expect("standard layout");
                        ndarray::Zip::indexed(&mut y).for_each(|(r, e), v| {
                            let (slope, icpt) = if use_lower(r, e) { lo[e] } else { up[e] };
                            *v = slope * z[[r, e]] + icpt;
                        });
                    }
                    Op::MaxPool(_) => {
                        let j = node.inputs[0].0;
                        let mp = MaxPoolRelaxation::new(self.graph(), i, &bounds[j]);
                        let x = values[j].as_ref().expect("operands come first");
                        let x = x
                            .view()
                            .into_shape_with_order((k, nodes[j].numel()))
                            .expect("standard layout");
                        let b = &bounds[i];
                        ndarray::Zip::indexed(&mut y).for_each(|(r, o), v| {
                            *v = if use_lower(r, o) || mp.exact[o] {
                                x[[r, mp.pick[o]]]
                            } else {
                                b.upper[o]
                            };
                        });
                    }
                    _ => {
                        let b = &bounds[i];
                        ndarray::Zip::indexed(&mut y).for_each(|(r, e), v| {
                            *v = if use_lower(r, e) {
                                b.lower[e]
                            } else {
                                b.upper[e]
                            };
                        });
                    }
                }
                y.into_shape_with_order(IxDyn(&shape)).expect("sizes agree")
            };
            values[i] = Some(y);
        }
        values
    }

    /// IBP through node `i` from its operands' bounds.
    fn interval_step(&self, i: usize, bounds: &[NodeBounds]) -> NodeBounds {
        let g = self.graph();
        let node = g.node(nncert_model::NodeId(i));
        let ins: Vec<&NodeBounds> = node.inputs.iter().map(|j| &bounds[j.0]).collect();
        let monotone = |f: &dyn Fn(f64) -> f64, wide: bool| {
            let w = |v: f64, down: bool| if wide { widen(v, down) } else { v };
            NodeBounds {
                lower: ins[0].lower.iter().map(|&v| w(f(v), true)).collect(),
                upper: ins[0].upper.iter().map(|&v| w(f(v), false)).collect(),
            }
        };
        match &node.op {
            Op::Input => unreachable!("node 0"),
            Op::Relu => monotone(&|v| v.max(0.0), false),
            Op::LeakyRelu { alpha } => {
                let a = *alpha as f64;
                // a·v is rounded: move outward by one ulp where it is used.
                NodeBounds {
                    lower: ins[0]
                        .lower
                        .iter()
                        .map(|&v| if v >= 0.0 { v } else { (a * v).next_down() })
                        .collect(),
                    upper: ins[0]
                        .upper
                        .iter()
                        .map(|&v| if v >= 0.0 { v } else { (a * v).next_up() })
                        .collect(),
                }
            }
            Op::Sigmoid => {
                let mut b = monotone(&|v| 1.0 / (1.0 + (-v).exp()), true);
                b.lower.iter_mut().for_each(|v| *v = v.max(0.0));
                b.upper.iter_mut().for_each(|v| *v = v.min(1.0));
                b
            }
            Op::Tanh => {
                let mut b = monotone(&f64::tanh, true);
                b.lower.iter_mut().for_each(|v| *v = v.max(-1.0));
                b.upper.iter_mut().for_each(|v| *v = v.min(1.0));
                b
            }
            Op::Clip { min, max } => {
                let (lo, hi) = (*min as f64, *max as f64);
                monotone(&|v| v.max(lo).min(hi), false)
            }
            Op::MaxPool(_) => {
                // Max is monotone in every argument and exact in floating point.
                let l = self.exact.node_forward(
                    i,
                    &[&batch1(&ins[0].lower, &g.node(node.inputs[0]).shape)],
                    1,
                );
                let u = self.exact.node_forward(
                    i,
                    &[&batch1(&ins[0].upper, &g.node(node.inputs[0]).shape)],
                    1,
                );
                NodeBounds {
                    lower: l.into_iter().collect(),
                    upper: u.into_iter().collect(),
                }
            }
            Op::Softmax { .. } => {
                // Each output lies in [0, 1]; a sharper bound needs the sum's bounds (CROWN handles the rest).
                let l = ins[0].lower.clone();
                let u = ins[0].upper.clone();
                let shape = &g.node(node.inputs[0]).shape;
                // softmax_i ≥ exp(l_i) / (exp(l_i) + Σ_{j≠i} exp(u_j)) along the axis: evaluate by substitution.
                let lo = self.softmax_bound(i, &l, &u, shape, true);
                let hi = self.softmax_bound(i, &u, &l, shape, false);
                // Sums of up to thousands of exponentials: widen by 2⁻⁴⁰ relative (≥ γ_n for n ≤ 8000).
                let w = 2f64.powi(-40);
                NodeBounds {
                    lower: lo
                        .into_iter()
                        .map(|v| (v - v.abs() * w - 1e-300).max(0.0))
                        .collect(),
                    upper: hi
                        .into_iter()
                        .map(|v| (v + v.abs() * w + 1e-300).min(1.0))
                        .collect(),
                }
            }
            _ => self.affine_interval(i, &ins),
        }
    }

    /// softmax_i with x_i taken from `own` and the other elements from `others` (a monotone substitution).
    fn softmax_bound(
        &self,
        i: usize,
        own: &[f64],
        others: &[f64],
        shape: &[usize],
        _lower: bool,
    ) -> Vec<f64> {
        let Op::Softmax { axis } = &self.graph().node(nncert_model::NodeId(i)).op else {
            unreachable!()
        };
        let own_a = batch1(own, shape);
        let oth_a = batch1(others, shape);
        let mut out = own_a.clone();
        for ((mut o, a), b) in out
            .lanes_mut(Axis(axis + 1))
            .into_iter()
            .zip(own_a.lanes(Axis(axis + 1)))
            .zip(oth_a.lanes(Axis(axis + 1)))
        {
            let m = a
                .iter()
                .chain(b.iter())
                .fold(f64::NEG_INFINITY, |x, &y| x.max(y));
            let exps: Vec<f64> = b.iter().map(|&v| (v - m).exp()).collect();
            for k in 0..o.len() {
                let e = (a[k] - m).exp();
                // Summed directly (not total minus own term), which would cancel catastrophically.
                let rest: f64 = exps
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != k)
                    .map(|(_, v)| v)
                    .sum();
                o[k] = e / (e + rest);
            }
        }
        out.into_iter().collect()
    }

    /// IBP through an affine node: centre and radius, plus the rounding-error term.
    fn affine_interval(&self, i: usize, ins: &[&NodeBounds]) -> NodeBounds {
        let g = self.graph();
        let node = g.node(nncert_model::NodeId(i));
        let mut centers = Vec::new();
        let mut radii = Vec::new();
        let mut mags = Vec::new();
        for (j, b) in node.inputs.iter().zip(ins) {
            let shape = &g.node(*j).shape;
            let c: Vec<f64> = b
                .lower
                .iter()
                .zip(&b.upper)
                .map(|(l, u)| l + (u - l) / 2.0)
                .collect();
            let r: Vec<f64> = b
                .lower
                .iter()
                .zip(&b.upper)
                .zip(&c)
                .map(|((l, u), c)| (u - c).max(c - l).next_up())
                .collect();
            let m: Vec<f64> = c.iter().map(|v| v.abs()).collect();
            centers.push(batch1(&c, shape));
            radii.push(batch1(&r, shape));
            mags.push(batch1(&m, shape));
        }
        let cr: Vec<&ArrayD<f64>> = centers.iter().collect();
        let rr: Vec<&ArrayD<f64>> = radii.iter().collect();
        let mr: Vec<&ArrayD<f64>> = mags.iter().collect();
        let yc = self.exact.node_forward(i, &cr, 1);
        let yr = self.abs.node_forward(i, &rr, 1);
        let ym = self.abs_bias.node_forward(i, &mr, 1);
        let gam = self.model.node_gamma(i);
        let mut lower = Vec::with_capacity(yc.len());
        let mut upper = Vec::with_capacity(yc.len());
        for ((c, r), m) in yc.iter().zip(yr.iter()).zip(ym.iter()) {
            // |exact − computed| ≤ γ(|W||c| + |b|) for the centre and ≤ γ|W|r for the radius.
            let err = gam * (m + r) * 1.01 + 1e-300;
            let rad = (r + err).next_up();
            lower.push((c - rad).next_down());
            upper.push((c + rad).next_up());
        }
        NodeBounds { lower, upper }
    }

    /// Backward-relaxation bounds of the elements `rows` of node `i` (`lower[t]`, `upper[t]` for `rows[t]`;
    /// ±∞ for those the deadline cut off), with `alpha_iterations` of α-CROWN per chunk of rows (0: CROWN).
    fn crown_node(
        &self,
        i: usize,
        rows: &[usize],
        bounds: &[NodeBounds],
        alpha_iterations: usize,
    ) -> NodeBounds {
        let n = self.graph().node(nncert_model::NodeId(i)).numel();
        // Rows in chunks so that memory stays bounded on wide layers.
        let chunk = 256usize;
        let mut lower = vec![f64::NEG_INFINITY; rows.len()];
        let mut upper = vec![f64::INFINITY; rows.len()];
        for (c, part) in rows.chunks(chunk).enumerate() {
            if c > 0 && self.past_deadline() {
                // The rest keeps ±∞ here, i.e. its IBP bounds after the intersection.
                break;
            }
            let k = part.len();
            let mut lam = Array2::<f64>::zeros((2 * k, n));
            for (r, &e) in part.iter().enumerate() {
                lam[[r, e]] = 1.0;
                lam[[k + r, e]] = -1.0;
            }
            let (res, _) = if alpha_iterations > 0 {
                self.lower_alpha(i, &lam, bounds, alpha_iterations, &|_| false)
            } else {
                let (l, a) = self.backward(i, lam, bounds);
                (l, a.unwrap_or_default())
            };
            for r in 0..k {
                lower[c * chunk + r] = res[r];
                upper[c * chunk + r] = -res[k + r];
            }
        }
        NodeBounds { lower, upper }
    }

    /// Lower bound of `lam · z_start` over the input box: backward linear relaxation from node `start`.
    /// `bounds` must hold bounds for every node before `start`.
    fn backward(
        &self,
        start: usize,
        lam: Array2<f64>,
        bounds: &[NodeBounds],
    ) -> (Vec<f64>, Option<Array2<f64>>) {
        self.backward_relaxed(start, lam, bounds, &mut Relaxation::default())
    }

    /// [`Self::backward`] with α-CROWN's lower slopes from `relax.alpha` and, if `relax.record`, each
    /// nonlinear node's coefficients before relaxation recorded in `relax.tape`.
    fn backward_relaxed(
        &self,
        start: usize,
        lam: Array2<f64>,
        bounds: &[NodeBounds],
        relax: &mut Relaxation,
    ) -> (Vec<f64>, Option<Array2<f64>>) {
        if relax.record {
            relax.tape = vec![None; start + 1];
        }
        let g = self.graph();
        let nodes = g.nodes();
        let k = lam.nrows();
        let mut lams: Vec<Option<ArrayD<f64>>> = vec![None; start + 1];
        let mut shape = vec![k];
        shape.extend(&nodes[start].shape);
        lams[start] = Some(
            lam.into_shape_with_order(IxDyn(&shape))
                .expect("row length is the node size"),
        );
        // The running constant and the accumulated rounding-error bound, per row.
        let mut d = vec![0.0f64; k];
        let mut err = vec![0.0f64; k];
        let add_const = |d: &mut [f64], err: &mut [f64], r: usize, term: f64| {
            d[r] += term;
            err[r] += U * d[r].abs();
        };
        for i in (0..=start).rev() {
            let Some(lam_i) = lams[i].take() else {
                if i == 0 {
                    // Nothing depends on the input (constant relaxations all the way): the constant is the bound.
                    let out = (0..k)
                        .map(|r| (d[r] - (err[r] * 1.01 + U * d[r].abs())).next_down())
                        .collect();
                    return (out, None);
                }
                continue;
            };
            let rows = |a: &ArrayD<f64>| -> Array2<f64> {
                let n = a.len() / k;
                a.view()
                    .into_shape_with_order((k, n))
                    .expect("standard layout")
                    .to_owned()
            };
            let node = &nodes[i];
            if i == 0 {
                let l2 = rows(&lam_i);
                let b = &bounds[0];
                let gam = gamma(b.lower.len() + 2);
                let mut out = vec![0.0; k];
                for (r, row) in l2.rows().into_iter().enumerate() {
                    let mut s = 0.0;
                    let mut mag = 0.0;
                    for ((&a, &lo), &hi) in row.iter().zip(&b.lower).zip(&b.upper) {
                        s += if a >= 0.0 { a * lo } else { a * hi };
                        mag += a.abs() * lo.abs().max(hi.abs());
                    }
                    let total = (s + d[r]).next_down();
                    let e = (err[r] + gam * mag) * 1.01 + U * total.abs();
                    out[r] = (total - e).next_down();
                }
                return (out, Some(l2));
            }
            match &node.op {
                Op::Constant(c) => {
                    let l2 = rows(&lam_i);
                    let cv: Vec<f64> = c.iter().map(|&v| v as f64).collect();
                    let gam = gamma(cv.len() + 2) + IMPORT_ROUNDING;
                    for (r, row) in l2.rows().into_iter().enumerate() {
                        let t: f64 = row.iter().zip(&cv).map(|(a, c)| a * c).sum();
                        let m: f64 = row.iter().zip(&cv).map(|(a, c)| (a * c).abs()).sum();
                        add_const(&mut d, &mut err, r, t);
                        err[r] += gam * m * 1.01;
                    }
                }
                Op::Relu | Op::LeakyRelu { .. } => {
                    let j = node.inputs[0].0;
                    let relax_i = ReluRelaxation::new(&node.op, &bounds[j]);
                    let n = lam_i.len() / k;
                    let mut l2 = lam_i
                        .into_shape_with_order((k, n))
                        .expect("standard layout");
                    if relax.record {
                        relax.tape[i] = Some(l2.clone());
                    }
                    let alpha = relax.alpha.get(i).and_then(|a| a.as_ref());
                    let mag = bounds[j].magnitude();
                    for (r, mut row) in l2.rows_mut().into_iter().enumerate() {
                        let mut c = 0.0;
                        let mut e_abs = 0.0;
                        for (e, a) in row.iter_mut().enumerate() {
                            let lam = *a;
                            if lam >= 0.0 {
                                *a = lam * relax_i.lower_slope(e, alpha.map(|al| al[[r, e]]));
                            } else {
                                *a = lam * relax_i.up_slope[e];
                                c += lam * relax_i.up_icpt[e];
                                e_abs += (lam * relax_i.up_icpt[e]).abs();
                            }
                            // Any slope lies in [leak, 1]: |λ·slope·z| ≤ |λ|·max|z|.
                            e_abs += (lam.abs() * mag[e]) * 1.01;
                        }
                        add_const(&mut d, &mut err, r, c);
                        // Products rounded once each (u), sum of n terms (γ_n).
                        err[r] += gamma(n + 2) * e_abs * 1.01;
                    }
                    self.accumulate(&mut lams, &mut err, j, l2, bounds);
                }
                Op::Sigmoid | Op::Tanh => {
                    let j = node.inputs[0].0;
                    let pre = &bounds[j];
                    let (lo, up) = s_shaped_lines(&node.op, pre, &bounds[i]);
                    let mag = pre.magnitude();
                    let n = lam_i.len() / k;
                    let mut l2 = lam_i
                        .into_shape_with_order((k, n))
                        .expect("standard layout");
                    if relax.record {
                        relax.tape[i] = Some(l2.clone());
                    }
                    for (r, mut row) in l2.rows_mut().into_iter().enumerate() {
                        let mut c = 0.0;
                        let mut e_abs = 0.0;
                        for (e, a) in row.iter_mut().enumerate() {
                            let lam = *a;
                            let (slope, icpt) = if lam >= 0.0 { lo[e] } else { up[e] };
                            *a = lam * slope;
                            c += lam * icpt;
                            e_abs += (lam * icpt).abs() + (lam * slope).abs() * mag[e];
                        }
                        add_const(&mut d, &mut err, r, c);
                        err[r] += gamma(n + 2) * e_abs * 1.01;
                    }
                    self.accumulate(&mut lams, &mut err, j, l2, bounds);
                }
                Op::MaxPool(_) => {
                    let j = node.inputs[0].0;
                    let mp = MaxPoolRelaxation::new(g, i, &bounds[j]);
                    let own = &bounds[i];
                    let pre_mag = bounds[j].magnitude();
                    let l2 = rows(&lam_i);
                    if relax.record {
                        relax.tape[i] = Some(l2.clone());
                    }
                    let n_in = nodes[j].numel();
                    let n_out = l2.ncols();
                    let mut g2 = Array2::<f64>::zeros((k, n_in));
                    for (r, row) in l2.rows().into_iter().enumerate() {
                        let mut c = 0.0;
                        let mut e_abs = 0.0;
                        let mut gr = g2.row_mut(r);
                        for (o, &lam) in row.iter().enumerate() {
                            if lam >= 0.0 || mp.exact[o] {
                                gr[mp.pick[o]] += lam;
                                // Overlapping windows sum coefficients on one input: covered below.
                                e_abs += lam.abs() * pre_mag[mp.pick[o]];
                            } else {
                                c += lam * own.upper[o];
                                e_abs += (lam * own.upper[o]).abs();
                            }
                        }
                        add_const(&mut d, &mut err, r, c);
                        err[r] += gamma(n_out + 2) * e_abs * 1.01;
                    }
                    self.accumulate(&mut lams, &mut err, j, g2, bounds);
                }
                op if !op.is_affine() => {
                    // Constant relaxation from the node's own bounds (sound for any op, exact for none).
                    let b = &bounds[i];
                    let l2 = rows(&lam_i);
                    if relax.record {
                        relax.tape[i] = Some(l2.clone());
                    }
                    for (r, row) in l2.rows().into_iter().enumerate() {
                        let mut c = 0.0;
                        let mut m = 0.0;
                        for ((&a, &lo), &hi) in row.iter().zip(&b.lower).zip(&b.upper) {
                            let t = if a >= 0.0 { a * lo } else { a * hi };
                            c += t;
                            m += t.abs();
                        }
                        add_const(&mut d, &mut err, r, c);
                        err[r] += gamma(row.len() + 2) * m * 1.01;
                    }
                }
                _ => {
                    // Affine node: z_i = J(operands) + offset. λ·z_i = (λJ)·operands + λ·offset.
                    // The magnitude pass |J|·m_in + |b|, one sample.
                    let mags1: Vec<ArrayD<f64>> = node
                        .inputs
                        .iter()
                        .map(|j| batch1(&bounds[j.0].magnitude(), &nodes[j.0].shape))
                        .collect();
                    let mr: Vec<&ArrayD<f64>> = mags1.iter().collect();
                    let ymag: Vec<f64> =
                        self.abs_bias.node_forward(i, &mr, 1).into_iter().collect();
                    let offset = &self.offsets[i];
                    let gam = self.model.node_gamma(i);
                    let n_out = lam_i.len() / k;
                    let l2 = lam_i
                        .view()
                        .into_shape_with_order((k, n_out))
                        .expect("standard layout");
                    let has_offset = offset.iter().any(|&v| v != 0.0);
                    for (r, row) in l2.rows().into_iter().enumerate() {
                        if has_offset {
                            let t: f64 = row.iter().zip(offset).map(|(a, o)| a * o).sum();
                            add_const(&mut d, &mut err, r, t);
                        }
                        // |λJ − fl(λJ)|·|operands| + |λ·offset − fl(λ·offset)| ≤ γ·|λ|·(|J| m + |offset|).
                        let m: f64 = row.iter().zip(&ymag).map(|(a, v)| a.abs() * v).sum();
                        err[r] += gam * m * 1.01;
                    }
                    if let Some(w) = &self.linear_weights[i] {
                        // The common case, one matrix product: λ' = λ·W over the last axis.
                        let (out_f, in_f) = w.dim();
                        let lead = lam_i.len() / (k * out_f);
                        let g = l2
                            .into_shape_with_order((k * lead, out_f))
                            .expect("standard layout")
                            .dot(w);
                        let g = if g.is_standard_layout() {
                            g
                        } else {
                            g.as_standard_layout().into_owned()
                        };
                        let g2 = g
                            .into_shape_with_order((k, lead * in_f))
                            .expect("sizes agree");
                        self.accumulate(&mut lams, &mut err, node.inputs[0].0, g2, bounds);
                    } else {
                        // Any other affine op: its transpose map from the evaluator (operand arrays only give
                        // shapes there).
                        let ins_dummy: Vec<ArrayD<f64>> = node
                            .inputs
                            .iter()
                            .map(|j| {
                                let mut s = vec![k];
                                s.extend(&nodes[j.0].shape);
                                ArrayD::zeros(IxDyn(&s))
                            })
                            .collect();
                        let refs: Vec<&ArrayD<f64>> = ins_dummy.iter().collect();
                        let y_dummy = ArrayD::zeros(lam_i.raw_dim());
                        let grads = self.exact.node_backward(i, &refs, &y_dummy, lam_i);
                        for (j, gj) in node.inputs.iter().zip(grads) {
                            let n = gj.len() / k;
                            let g2 = gj.into_shape_with_order((k, n)).expect("standard layout");
                            self.accumulate(&mut lams, &mut err, j.0, g2, bounds);
                        }
                    }
                }
            }
        }
        unreachable!("the backward pass ends at the input node")
    }

    /// Adds `g` (rows of coefficients on node `j`) to the running coefficients of `j`.
    fn accumulate(
        &self,
        lams: &mut [Option<ArrayD<f64>>],
        err: &mut [f64],
        j: usize,
        g: Array2<f64>,
        bounds: &[NodeBounds],
    ) {
        let k = g.nrows();
        let mut shape = vec![k];
        shape.extend(&self.graph().node(nncert_model::NodeId(j)).shape);
        let g = g.into_shape_with_order(IxDyn(&shape)).expect("sizes agree");
        match &mut lams[j] {
            Some(acc) => {
                *acc += &g;
                // Each sum rounded once: |error| ≤ u·|sum| per element, times the node's magnitude.
                let mag = bounds[j].magnitude();
                let n = mag.len();
                let a2 = acc
                    .view()
                    .into_shape_with_order((k, n))
                    .expect("standard layout");
                for (r, row) in a2.rows().into_iter().enumerate() {
                    let m: f64 = row.iter().zip(&mag).map(|(a, m)| a.abs() * m).sum();
                    err[r] += 2.0 * U * m * 1.01;
                }
            }
            slot @ None => *slot = Some(g),
        }
    }
}
