//! # Lipschitz bounds
//!
//! Sound upper bounds on how much a network's output can move when its input moves, and what they certify.
//! All norms are the same on input and output: `‖f(x) − f(x')‖_p ≤ L·‖x − x'‖_p` with `p = ∞` or `p = 2`.
//!
//! **Method class** (reported by every result): *incomplete; sound upper bound in real arithmetic with explicit
//! float error margin*. A bound is never below the true constant of the real-valued network with the stored
//! f32 weights (and of the model as written in its file: constants get the same 2⁻²³ relative allowance as in
//! `nncert-bounds`); a certificate derived from it is a proof, a failure to certify proves nothing.
//!
//! ## Global bound ([`global_bound`])
//! The minimum of two sound bounds:
//! 1. **Composition of per-node bounds** over the DAG: `L(input) = 1`; an affine node multiplies its
//!    operand's `L` by the operator norm of its linear part; `Add`/`Sub` add (`L(f ± g) ≤ L(f) + L(g)`);
//!    `Concat` takes the max (L∞) or the root of the sum of squares (L2); ReLU, clip and tanh are 1-Lipschitz,
//!    LeakyReLU `max(1, |α|)`, sigmoid `1/4`, softmax `1/2` (its Jacobian `diag(s) − ssᵀ` has row abs-sums
//!    `2sᵢ(1 − sᵢ) ≤ 1/2`, which bounds both its L∞ and, being symmetric, its L2 norm); max-pool is 1 in L∞
//!    and `√c` in L2 where `c` is the largest number of windows sharing one input
//!    (`Σ_o max_{i∈W_o} Δᵢ² ≤ Σ_o Σ_{i∈W_o} Δᵢ² ≤ c‖Δ‖²`), so 1 without overlap.
//!    Operator norms ([`operator`]): L∞ exactly (`max(|A|·1)`, one pass of the absolute operator); L2 by Gram
//!    iteration on the dense weight of `Linear` layers and of small other operators ([`linalg`]); a
//!    convolution too large to materialize gets the Fourier bound of its kernel ([`fourier`], the convolution
//!    embedded in a circular one on a torus large enough to avoid wrap-around, strides by polyphase
//!    decomposition), capped by `sqrt(‖A‖₁‖A‖∞)`. A power-iteration *estimate* (through the operator and its
//!    transpose) is reported next to each L2 bound, never used as one.
//! 2. **Interval Jacobian over all of input space** ([`jacobian`]): each activation's derivative in its
//!    global range (ReLU `[0, 1]`, sigmoid `[0, 1/4]`, …) through the backward pass gives entrywise bounds
//!    `|J − M| ≤ R` valid everywhere; L∞: `max_k Σ_j (|M| + R)_kj`, L2: `min(‖M‖₂ + ‖R‖₂, ‖|M| + R‖₂)`.
//!    For a linear network `R = 0` and `M` is the product matrix, so the bound is exact (up to rounding).
//!
//! ## Local bound over a box ([`analyze_case`])
//! Sound pre-activation bounds over the box (CROWN from `nncert-bounds`) fix each activation's derivative
//! range (ReLU `{0}`, `{1}` or `[0, 1]` by phase; sigmoid/tanh the range of the derivative on the
//! pre-activation interval; max-pool the elements that can be the maximum). The interval backward pass then
//! bounds every gradient of `c·f` over the box. Why that bounds the Lipschitz constant on the box: the
//! network restricted to the box equals one whose stable activations are replaced by their linear pieces;
//! it is Lipschitz, differentiable almost everywhere, and at almost every point of the box each remaining
//! activation's derivative lies in its range, so its gradient lies in the computed intervals. For `x, x'` in
//! the (convex) box, slightly shifted segments meet the non-differentiable set in a null set (Fubini), so
//! `c·f(x) − c·f(x') = ∫ ∇(c·f)·(x − x')` along them, and continuity gives
//! `|c·f(x) − c·f(x')| ≤ Σ_j max|∂_j(c·f)|·|x_j − x'_j|` (the approach of Fast-Lip, Weng et al. 2018, and
//! RecurJac, Zhang et al. 2019). The local bound reported is the minimum of this and the global bound.
//!
//! ## What is certified
//! For a property's constraint `c·y ≤ rhs` (VNN-LIB: the assertions describe the bad case), with `m` a sound
//! lower bound of `c·f(x₀) − rhs` at the box centre `x₀`:
//! - **box**: `m − Σ_j max|∂_j(c·f)|·h_j > 0` (`h` the half-widths) proves the constraint cannot hold anywhere
//!   in the box, so its conjunction is impossible; all conjunctions impossible: the case is certified.
//! - **radius**: the bad region is unreachable for `‖x − x₀‖ ≤ r` with `r = min over conjunctions of
//!   max over their constraints of m / L_c` (`L_c` the Lipschitz constant of `c·f`, dual norm of its
//!   gradient bound): globally (any such `x`) and locally (such `x` inside the box).
//! - **sensitivity** (ISO/IEC 24029-2): per input attribute `j` and output `k`, `max|∂y_k/∂x_j|` over the box
//!   times the attribute's range bounds the change of `y_k` when only attribute `j` varies within the box.

pub mod fourier;
pub mod jacobian;
pub mod linalg;
pub mod operator;

pub use jacobian::JacobianBounds;

use linalg::up;
use ndarray::Array2;
use nncert_bounds::{BoundModel, Method, NodeBounds};
use nncert_model::Graph;
use nncert_model::ir::Op;
use nncert_spec::{Case, InputBox};
use std::time::{Duration, Instant};

/// The method class every Lipschitz result reports.
pub const METHOD_CLASS: &str =
    "incomplete; sound upper bound in real arithmetic with explicit float error margin";

/// One backward pass carries `rows × (largest node)` midpoints and radii per node: batches of rows are sized so
/// that this stays below about 2²⁴ values (128 MiB per array).
const JACOBIAN_BATCH_VALUES: usize = 1 << 24;
/// The global interval Jacobian (one row per output) is skipped for networks with more outputs than this.
const MAX_GLOBAL_JACOBIAN_OUTPUTS: usize = 1024;

/// Why a Lipschitz analysis could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LipschitzError {
    /// An op without a rule for this analysis.
    #[error("node '{node}' ({op}): {what} are not supported for this op")]
    Unsupported {
        node: String,
        op: &'static str,
        what: &'static str,
    },
    /// The property's box or constraints do not fit the model.
    #[error("{0}")]
    Dimensions(String),
}

/// The norm on inputs and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Norm {
    L2,
    Linf,
}

impl Norm {
    /// `"l2"` or `"linf"`.
    pub fn name(self) -> &'static str {
        match self {
            Norm::L2 => "l2",
            Norm::Linf => "linf",
        }
    }

    /// The dual norm of a vector of magnitudes (L∞ ↔ L1, L2 ↔ L2), rounded up.
    fn dual_of_magnitudes(self, v: impl Iterator<Item = f64>) -> f64 {
        let (s, n) = match self {
            Norm::Linf => v.fold((0.0, 0usize), |(s, n), a| (s + a.abs(), n + 1)),
            Norm::L2 => v.fold((0.0, 0usize), |(s, n), a| (s + a * a, n + 1)),
        };
        let s = up(s * (1.0 + nncert_bounds::gamma(n + 2)));
        match self {
            Norm::Linf => s,
            Norm::L2 => up(s.sqrt()),
        }
    }
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "2" => Ok(Norm::L2),
            "linf" | "inf" | "l_inf" => Ok(Norm::Linf),
            _ => Err(format!("unknown norm '{s}' (expected l2 or linf)")),
        }
    }
}

/// One node's contribution to the composed global bound.
#[derive(Clone, Debug)]
pub struct LayerFactor {
    pub node: String,
    pub op: &'static str,
    /// The node's own Lipschitz factor (operator norm for affine ops), `None` for nodes that combine
    /// operands (`Add`, `Sub`, `Concat`) or are constant.
    pub factor: Option<f64>,
    /// Power-iteration estimate of the L2 operator norm (≈ the true norm), for comparison with `factor`.
    pub estimate: Option<f64>,
    /// How `factor` was obtained.
    pub method: String,
    /// Bound on the Lipschitz constant of this node's output as a function of the network input.
    pub cumulative: f64,
}

/// A global Lipschitz bound (valid for all inputs).
#[derive(Clone, Debug)]
pub struct GlobalBound {
    pub norm: Norm,
    pub layers: Vec<LayerFactor>,
    /// The composition of per-node bounds.
    pub product_bound: f64,
    /// The bound from the interval Jacobian over all of input space, when available.
    pub jacobian_bound: Option<f64>,
    /// Why `jacobian_bound` is missing, if it is.
    pub jacobian_note: Option<String>,
    /// `min(product_bound, jacobian_bound)`: the reported bound.
    pub bound: f64,
    pub elapsed: Duration,
}

/// Operator-norm bound of an interval matrix `{J : |J − mid| ≤ rad}` in `norm` (sound upper bound).
pub fn interval_matrix_norm(j: &JacobianBounds, norm: Norm) -> f64 {
    let abs = j.abs_upper();
    match norm {
        Norm::Linf => linalg::linf_norm_up(&abs),
        Norm::L2 => {
            let via_abs = linalg::spectral_norm_up(&abs, 1e-4, 14).upper;
            let has_rad = j.rad.iter().any(|&r| r != 0.0);
            let via_mid = up(linalg::spectral_norm_up(&j.mid, 1e-4, 14).upper
                + if has_rad {
                    linalg::spectral_norm_up(&j.rad, 1e-3, 14).upper
                } else {
                    0.0
                });
            via_abs.min(via_mid)
        }
    }
}

/// Jacobian bounds of the rows `c` (`[k, outputs]`) with the given derivative ranges, in batches of rows.
fn jacobian_rows(
    graph: &Graph,
    rows: &Array2<f64>,
    derivs: &[Option<jacobian::Deriv>],
) -> JacobianBounds {
    let k = rows.nrows();
    let n = graph.input_size();
    let widest = graph
        .nodes()
        .iter()
        .map(|n| n.numel())
        .max()
        .unwrap_or(1)
        .max(1);
    let batch = (JACOBIAN_BATCH_VALUES / widest).clamp(1, 4096);
    let mut mid = Array2::zeros((k, n));
    let mut rad = Array2::zeros((k, n));
    for start in (0..k).step_by(batch) {
        let end = (start + batch).min(k);
        let part = rows.slice(ndarray::s![start..end, ..]).to_owned();
        let jb = jacobian::backward(graph, &part, derivs);
        mid.slice_mut(ndarray::s![start..end, ..]).assign(&jb.mid);
        rad.slice_mut(ndarray::s![start..end, ..]).assign(&jb.rad);
    }
    JacobianBounds { mid, rad }
}

/// Largest number of pooling windows that share one input element.
fn max_window_multiplicity(graph: &Graph, i: usize) -> usize {
    let node = &graph.nodes()[i];
    let Op::MaxPool(p) = &node.op else { return 1 };
    let input = graph.node(node.inputs[0]);
    let mut count = vec![0usize; input.numel()];
    jacobian::pool_windows(p, &input.shape, &node.shape, |_, k| count[k] += 1);
    count.into_iter().max().unwrap_or(0).max(1)
}

/// Largest number of times `Gather` reads one element.
fn max_gather_repeats(indices: &[usize]) -> usize {
    let mut c = std::collections::HashMap::new();
    for &i in indices {
        *c.entry(i).or_insert(0usize) += 1;
    }
    c.into_values().max().unwrap_or(1)
}

/// Global Lipschitz bound of `graph` in `norm`, valid for every pair of inputs.
///
/// ```
/// use nncert_model::ir::{GraphBuilder, Linear, Op};
/// use nncert_verify::lipschitz::{global_bound, Norm};
/// use ndarray::arr2;
/// let mut b = GraphBuilder::new("x", vec![2]);
/// let fc = Op::Linear(Linear { weight: arr2(&[[1.0, -2.0], [0.5, 0.5]]), bias: None });
/// let y = b.push("fc", fc, vec![b.input_id()], None).unwrap();
/// let g = b.finish(y);
/// let l = global_bound(&g, Norm::Linf);
/// assert!(l.bound >= 3.0 && l.bound < 3.0 + 1e-5); // max row abs-sum
/// ```
pub fn global_bound(graph: &Graph, norm: Norm) -> GlobalBound {
    let start = Instant::now();
    let nodes = graph.nodes();
    let mut lip = vec![0.0f64; nodes.len()];
    lip[0] = 1.0;
    let mut layers = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let operand = |k: usize| lip[node.inputs[k].0];
        let elementwise = |f: f64, what: &str| (Some(f), None, what.to_string());
        let (factor, estimate, method) = match &node.op {
            Op::Input => unreachable!("input is node 0"),
            Op::Constant(_) => (None, None, "constant".to_string()),
            Op::Add | Op::Sub => (None, None, "sum of the operands' bounds".to_string()),
            Op::Concat { .. } => (
                None,
                None,
                match norm {
                    Norm::Linf => "max of the operands' bounds",
                    Norm::L2 => "root of the sum of squares of the operands' bounds",
                }
                .to_string(),
            ),
            Op::Relu => elementwise(1.0, "1-Lipschitz"),
            Op::Clip { .. } => elementwise(1.0, "1-Lipschitz"),
            Op::Tanh => elementwise(1.0, "1-Lipschitz"),
            Op::Sigmoid => elementwise(0.25, "max σ' = 1/4"),
            Op::LeakyRelu { alpha } => elementwise((*alpha as f64).abs().max(1.0), "max(1, |α|)"),
            Op::Softmax { .. } => elementwise(0.5, "Jacobian row abs-sums ≤ 1/2"),
            Op::MaxPool(_) => match norm {
                Norm::Linf => elementwise(1.0, "max is 1-Lipschitz in L∞"),
                Norm::L2 => {
                    let c = max_window_multiplicity(graph, i);
                    elementwise(
                        up((c as f64).sqrt()),
                        &format!("sqrt(max windows per input = {c})"),
                    )
                }
            },
            Op::Gather { indices, .. } if norm == Norm::L2 => {
                let c = max_gather_repeats(indices);
                elementwise(up((c as f64).sqrt()), "sqrt(max repeats)")
            }
            _ => {
                let opn = operator::NodeOperator::new(graph, i);
                let in_shape = &graph.node(node.inputs[0]).shape;
                let hw = |s: &[usize]| [s[s.len() - 2], s[s.len() - 1]];
                let conv_l2 = match (&node.op, norm) {
                    (Op::Conv(c), Norm::L2) => fourier::conv_spectral_bound(
                        &c.weight,
                        c.strides,
                        c.pads,
                        c.dilations,
                        c.groups,
                        hw(in_shape),
                        hw(&node.shape),
                    ),
                    // A ConvTranspose is the adjoint of the convolution from its output back to its input,
                    // with the same weight tensor; adjoints have the same norm.
                    (Op::ConvTranspose(c), Norm::L2) => fourier::conv_spectral_bound(
                        &c.weight,
                        c.strides,
                        c.pads,
                        c.dilations,
                        c.groups,
                        hw(&node.shape),
                        hw(in_shape),
                    ),
                    _ => None,
                };
                let n = opn.norms(&node.op, norm == Norm::L2, conv_l2);
                match norm {
                    Norm::Linf => (Some(n.linf), None, "max row abs-sum".to_string()),
                    Norm::L2 => (
                        Some(n.l2),
                        Some(n.l2_estimate).filter(|e| e.is_finite()),
                        n.l2_method.to_string(),
                    ),
                }
            }
        };
        lip[i] = match (&node.op, factor) {
            (Op::Constant(_), _) => 0.0,
            (Op::Add | Op::Sub, _) => up(operand(0) + operand(1)),
            (Op::Concat { .. }, _) => match norm {
                Norm::Linf => node.inputs.iter().map(|j| lip[j.0]).fold(0.0, f64::max),
                Norm::L2 => up(node
                    .inputs
                    .iter()
                    .map(|j| lip[j.0] * lip[j.0])
                    .sum::<f64>()
                    .sqrt()),
            },
            (_, Some(f)) => up(f * operand(0)),
            (_, None) => unreachable!("single-operand nodes have a factor"),
        };
        layers.push(LayerFactor {
            node: node.name.clone(),
            op: node.op.kind(),
            factor,
            estimate,
            method,
            cumulative: lip[i],
        });
    }
    let product_bound = lip[graph.output_id().0];
    let (jacobian_bound, jacobian_note) = match jacobian::derivatives(graph, None) {
        Ok(_) if graph.output_size() > MAX_GLOBAL_JACOBIAN_OUTPUTS => (
            None,
            Some(format!(
                "skipped: {} outputs (more than {MAX_GLOBAL_JACOBIAN_OUTPUTS})",
                graph.output_size()
            )),
        ),
        Ok(derivs) => {
            let rows = Array2::eye(graph.output_size());
            let jb = jacobian_rows(graph, &rows, &derivs);
            (Some(interval_matrix_norm(&jb, norm)), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let bound = jacobian_bound.map_or(product_bound, |j| j.min(product_bound));
    GlobalBound {
        norm,
        layers,
        product_bound,
        jacobian_bound,
        jacobian_note,
        bound,
        elapsed: start.elapsed(),
    }
}

/// What one constraint `c·y ≤ rhs` of the bad region gets from the Lipschitz bounds.
#[derive(Clone, Debug)]
pub struct ConstraintAnalysis {
    /// Index of the conjunction (disjunct) and of the constraint in it.
    pub disjunct: usize,
    pub constraint: usize,
    /// Sound lower bound of `c·f(x₀) − rhs` at the box centre (`> 0`: the constraint fails at the centre).
    pub margin_at_center: f64,
    /// Upper bound of `Σ_j max|∂_j(c·f)|·h_j` over the box (how far `c·f` can move from the centre).
    pub max_change_in_box: f64,
    /// `margin_at_center − max_change_in_box` (rounded down): `> 0` proves the constraint impossible on the box.
    pub margin_lower_in_box: f64,
    /// Per norm: (norm, local Lipschitz of `c·f` over the box, global Lipschitz of `c·f`).
    pub lipschitz: Vec<(Norm, f64, f64)>,
}

impl ConstraintAnalysis {
    /// Whether the bounds prove the constraint cannot hold anywhere in the box.
    pub fn excluded_on_box(&self) -> bool {
        self.margin_lower_in_box > 0.0
    }
}

/// A certified radius around the box centre.
#[derive(Clone, Copy, Debug)]
pub struct Radius {
    pub norm: Norm,
    /// No input with `‖x − x₀‖ ≤ global` reaches the bad region (from the global bounds).
    pub global: f64,
    /// No input of the box with `‖x − x₀‖ ≤ local` reaches the bad region (from the local bounds).
    pub local: f64,
}

/// The Lipschitz analysis of one case (input box and bad region) of a property.
#[derive(Clone, Debug)]
pub struct CaseAnalysis {
    pub case: usize,
    pub center: Vec<f64>,
    pub half_width: Vec<f64>,
    /// Per norm: (norm, local bound of `f` over the box = min(interval-Jacobian bound, global bound)).
    pub local: Vec<(Norm, f64)>,
    /// `[outputs, inputs]`: upper bounds of `|∂y_k/∂x_j|` over the box (sensitivity per input attribute).
    pub sensitivity: Array2<f64>,
    pub constraints: Vec<ConstraintAnalysis>,
    /// Per conjunction: proved impossible on the box.
    pub disjunct_excluded: Vec<bool>,
    /// Every conjunction proved impossible: no counterexample in this box.
    pub box_certified: bool,
    pub radii: Vec<Radius>,
    pub elapsed: Duration,
}

impl CaseAnalysis {
    /// Sound bound on `|Δy_k|` when only input `j` moves within its range in the box.
    pub fn output_change_bound(&self, k: usize, j: usize) -> f64 {
        up(self.sensitivity[[k, j]] * 2.0 * self.half_width[j])
    }
}

/// Precomputed global data the case analysis reuses.
pub struct Analyzer<'g> {
    graph: &'g Graph,
    model: BoundModel,
    globals: Vec<GlobalBound>,
    global_derivs: Option<Vec<Option<jacobian::Deriv>>>,
    /// Node bounds over each box by this method.
    pub method: Method,
}

impl<'g> Analyzer<'g> {
    /// `globals`: the global bounds of `graph` for the norms to report.
    pub fn new(graph: &'g Graph, globals: Vec<GlobalBound>) -> Self {
        Analyzer {
            graph,
            model: BoundModel::new(graph),
            global_derivs: jacobian::derivatives(graph, None).ok(),
            globals,
            method: Method::Crown,
        }
    }

    /// Analyzes one case: local bounds, sensitivity, box certification and radii.
    pub fn analyze_case(&self, index: usize, case: &Case) -> Result<CaseAnalysis, LipschitzError> {
        let start = Instant::now();
        let g = self.graph;
        let (n, m) = (g.input_size(), g.output_size());
        if case.input.dim() != n {
            return Err(LipschitzError::Dimensions(format!(
                "case {index}: the input box has {} dimensions, the model {n} inputs",
                case.input.dim()
            )));
        }
        let center: Vec<f64> = case
            .input
            .lower
            .iter()
            .zip(&case.input.upper)
            .map(|(l, u)| l + (u - l) / 2.0)
            .collect();
        // Half-widths measured from the computed centre, rounded up: they cover the box exactly.
        let half_width: Vec<f64> = center
            .iter()
            .zip(case.input.lower.iter().zip(&case.input.upper))
            .map(|(c, (l, u))| up((u - c).max(c - l)))
            .collect();
        let bounder = self.model.bounder();
        let bounds: Vec<NodeBounds> = bounder.node_bounds(&case.input, self.method);
        let derivs = jacobian::derivatives(g, Some(&bounds))?;
        // Sensitivity and the local bound of f: one row per output.
        let jf = jacobian_rows(g, &Array2::eye(m), &derivs);
        let sensitivity = jf.abs_upper();
        let local: Vec<(Norm, f64)> = self
            .globals
            .iter()
            .map(|gb| (gb.norm, interval_matrix_norm(&jf, gb.norm).min(gb.bound)))
            .collect();
        // Constraints: one row per constraint of every conjunction.
        let mut rows_idx = Vec::new();
        for (d, conj) in case.output.disjuncts.iter().enumerate() {
            for (c, lc) in conj.constraints.iter().enumerate() {
                if lc.coeffs.len() != m {
                    return Err(LipschitzError::Dimensions(format!(
                        "case {index}: a constraint has {} coefficients, the model {m} outputs",
                        lc.coeffs.len()
                    )));
                }
                rows_idx.push((d, c));
            }
        }
        let k = rows_idx.len();
        let mut crow = Array2::zeros((k, m));
        for (r, &(d, c)) in rows_idx.iter().enumerate() {
            for (o, &v) in case.output.disjuncts[d].constraints[c]
                .coeffs
                .iter()
                .enumerate()
            {
                crow[[r, o]] = v;
            }
        }
        let mut constraints = Vec::with_capacity(k);
        if k > 0 {
            // Sound margins at the centre: bounds over the degenerate box {x₀}.
            let point = InputBox {
                lower: center.clone(),
                upper: center.clone(),
            };
            let pb = bounder.node_bounds(&point, Method::Interval);
            let lower_cy = bounder.output_lower(&crow, &pb);
            let jl = jacobian_rows(g, &crow, &derivs);
            let jl_abs = jl.abs_upper();
            let jg_abs = self
                .global_derivs
                .as_ref()
                .map(|d| jacobian_rows(g, &crow, d).abs_upper());
            for (r, &(d, c)) in rows_idx.iter().enumerate() {
                let rhs = case.output.disjuncts[d].constraints[c].rhs;
                let margin = ((lower_cy[r] - rhs).next_down()).next_down();
                let row = jl_abs.row(r);
                let change = up(row.iter().zip(&half_width).map(|(s, h)| s * h).sum::<f64>()
                    * (1.0 + nncert_bounds::gamma(n + 2)));
                let lower_box = (margin - change).next_down();
                let lipschitz = self
                    .globals
                    .iter()
                    .map(|gb| {
                        let local = gb.norm.dual_of_magnitudes(row.iter().copied());
                        let c_dual = gb.norm.dual_of_magnitudes(crow.row(r).iter().copied());
                        let mut global = up(c_dual * gb.bound);
                        if let Some(ja) = &jg_abs {
                            global =
                                global.min(gb.norm.dual_of_magnitudes(ja.row(r).iter().copied()));
                        }
                        (gb.norm, local.min(global), global)
                    })
                    .collect();
                constraints.push(ConstraintAnalysis {
                    disjunct: d,
                    constraint: c,
                    margin_at_center: margin,
                    max_change_in_box: change,
                    margin_lower_in_box: lower_box,
                    lipschitz,
                });
            }
        }
        let nd = case.output.disjuncts.len();
        let mut disjunct_excluded = vec![false; nd];
        for ca in &constraints {
            if ca.excluded_on_box() {
                disjunct_excluded[ca.disjunct] = true;
            }
        }
        let box_certified = disjunct_excluded.iter().all(|&e| e);
        let radii = self
            .globals
            .iter()
            .enumerate()
            .map(|(gi, gb)| {
                // Per conjunction: the best of its constraints; the case: the worst conjunction.
                let mut per_d = vec![(0.0f64, 0.0f64); nd];
                for ca in &constraints {
                    if ca.margin_at_center > 0.0 {
                        let (_, loc, glob) = ca.lipschitz[gi];
                        let rad = |l: f64| {
                            if l == 0.0 {
                                f64::INFINITY
                            } else {
                                (ca.margin_at_center / up(l)).next_down()
                            }
                        };
                        let e = &mut per_d[ca.disjunct];
                        e.0 = e.0.max(rad(glob));
                        e.1 = e.1.max(rad(loc));
                    }
                }
                let global = per_d.iter().map(|e| e.0).fold(f64::INFINITY, f64::min);
                let local = per_d.iter().map(|e| e.1).fold(f64::INFINITY, f64::min);
                Radius {
                    norm: gb.norm,
                    global,
                    local: local.max(global),
                }
            })
            .collect();
        Ok(CaseAnalysis {
            case: index,
            center,
            half_width,
            local,
            sensitivity,
            constraints,
            disjunct_excluded,
            box_certified,
            radii,
            elapsed: start.elapsed(),
        })
    }

    /// The global bounds this analyzer was made with.
    pub fn globals(&self) -> &[GlobalBound] {
        &self.globals
    }
}

/// Local Lipschitz bound of `graph` over `region` in `norm` (min of the interval-Jacobian bound and `global`).
pub fn local_bound(
    graph: &Graph,
    region: &InputBox,
    norm: Norm,
    global: f64,
) -> Result<f64, LipschitzError> {
    let model = BoundModel::new(graph);
    let bounds = model.bounder().node_bounds(region, Method::Crown);
    let derivs = jacobian::derivatives(graph, Some(&bounds))?;
    let jf = jacobian_rows(graph, &Array2::eye(graph.output_size()), &derivs);
    Ok(interval_matrix_norm(&jf, norm).min(global))
}

/// Jacobian bounds of `f` (one row per output) over `region` (`None`: all of input space).
pub fn jacobian_bounds(
    graph: &Graph,
    region: Option<&InputBox>,
) -> Result<JacobianBounds, LipschitzError> {
    let bounds = region.map(|r| {
        BoundModel::new(graph)
            .bounder()
            .node_bounds(r, Method::Crown)
    });
    let derivs = jacobian::derivatives(graph, bounds.as_deref())?;
    Ok(jacobian_rows(
        graph,
        &Array2::eye(graph.output_size()),
        &derivs,
    ))
}
