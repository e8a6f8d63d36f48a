//! The mixed-integer encoding of a piecewise-linear network over one input box.
//!
//! Every node's output element is an affine expression ([`Expr`]) over the model's columns. Linear and Conv
//! outputs get a column of their own (an equality row defines it), so expressions stay short; elementwise
//! affine ops, Add/Sub and reshapes only combine or relabel expressions. A ReLU or LeakyReLU whose
//! pre-activation bounds straddle 0 gets one output column and one binary; a stable one is the identity, the
//! slope `alpha`, or zero, with no binary. A MaxPool window whose winner the bounds do not decide gets one
//! binary per remaining candidate. The big-M constants are the sound per-node bounds of `nncert-bounds`, so
//! the encoding is exact: its feasible set, projected on (input, output), is the graph of the network over
//! the box (in real arithmetic).

use crate::MilpError;
use nncert_bounds::NodeBounds;
use nncert_model::Graph;
use nncert_model::ir::{Conv, Op, Pool};
use std::collections::HashMap;

/// An affine expression `Σ coef·column + constant`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expr {
    pub terms: Vec<(usize, f64)>,
    pub constant: f64,
}

impl Expr {
    fn constant(c: f64) -> Self {
        Expr {
            terms: vec![],
            constant: c,
        }
    }
    fn var(col: usize) -> Self {
        Expr {
            terms: vec![(col, 1.0)],
            constant: 0.0,
        }
    }
    fn scaled(&self, s: f64) -> Self {
        if s == 0.0 {
            return Expr::constant(0.0);
        }
        Expr {
            terms: self.terms.iter().map(|&(c, v)| (c, v * s)).collect(),
            constant: self.constant * s,
        }
    }
    /// `self + s·other`.
    fn add_scaled(&mut self, other: &Expr, s: f64) {
        if s == 0.0 {
            return;
        }
        self.terms
            .extend(other.terms.iter().map(|&(c, v)| (c, v * s)));
        self.constant += other.constant * s;
    }
    /// Merges repeated columns and drops zero coefficients (HiGHS rejects repeated indices in a row).
    fn normalized(mut self) -> Self {
        if self.terms.len() > 1 {
            self.terms.sort_unstable_by_key(|t| t.0);
            let mut out: Vec<(usize, f64)> = Vec::with_capacity(self.terms.len());
            for (c, v) in self.terms {
                match out.last_mut() {
                    Some(last) if last.0 == c => last.1 += v,
                    _ => out.push((c, v)),
                }
            }
            self.terms = out;
        }
        self.terms.retain(|t| t.1 != 0.0);
        self
    }
    /// The value at a point given per column.
    pub fn eval(&self, x: &[f64]) -> f64 {
        self.constant + self.terms.iter().map(|&(c, v)| v * x[c]).sum::<f64>()
    }
}

/// What a column is, for names in exported files and for reading solutions.
#[derive(Clone, Debug, PartialEq)]
pub enum ColKind {
    /// Network input `X_i`.
    Input(usize),
    /// A node's output element (after a Linear/Conv or an unstable activation / pool).
    Value { node: usize, index: usize },
    /// The phase binary of an unstable activation, or a MaxPool selector.
    Binary { node: usize, index: usize },
    /// The margin variable of the objective.
    Margin,
}

/// One column: bounds, integrality, objective coefficient.
#[derive(Clone, Debug)]
pub struct Column {
    pub lower: f64,
    pub upper: f64,
    pub integer: bool,
    pub cost: f64,
    pub kind: ColKind,
}

/// One row `lower <= Σ coef·column <= upper`.
#[derive(Clone, Debug)]
pub struct RowSpec {
    pub lower: f64,
    pub upper: f64,
    pub terms: Vec<(usize, f64)>,
}

/// A solver-independent mixed-integer program (converted to HiGHS in `solve`).
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub cols: Vec<Column>,
    pub rows: Vec<RowSpec>,
}

impl Program {
    pub fn add_col(&mut self, lower: f64, upper: f64, integer: bool, kind: ColKind) -> usize {
        self.cols.push(Column {
            lower,
            upper,
            integer,
            cost: 0.0,
            kind,
        });
        self.cols.len() - 1
    }

    /// `lower <= e <= upper` (the expression's constant is moved to the bounds).
    pub fn add_expr_row(&mut self, e: &Expr, lower: f64, upper: f64) {
        let e = e.clone().normalized();
        if e.terms.is_empty() {
            // A constant row is either always true or (through rounding of sound bounds) marginally false;
            // HiGHS needs no row for it either way. Dropping it never removes a real solution.
            return;
        }
        self.rows.push(RowSpec {
            lower: lower - e.constant,
            upper: upper - e.constant,
            terms: e.terms,
        });
    }

    /// `a - b >= 0`.
    fn add_ge(&mut self, a: &Expr, b: &Expr) {
        let mut d = a.clone();
        d.add_scaled(b, -1.0);
        self.add_expr_row(&d, 0.0, f64::INFINITY);
    }

    /// Number of integer columns.
    pub fn binaries(&self) -> usize {
        self.cols.iter().filter(|c| c.integer).count()
    }
}

/// A network encoded over one box.
#[derive(Clone, Debug)]
pub struct NetEncoding {
    pub program: Program,
    /// The input columns, in input order.
    pub inputs: Vec<usize>,
    /// The network outputs as expressions.
    pub outputs: Vec<Expr>,
    /// Unstable neurons (ReLU/LeakyReLU) encoded with a binary.
    pub unstable: usize,
    /// Activations fixed by the bounds (no binary).
    pub stable: usize,
}

/// Encodes `graph` over the box whose sound node bounds are `bounds` (indexed by node; `bounds[0]` is the box).
///
/// # Errors
/// [`MilpError::Unsupported`] for an op outside the piecewise-linear set (naming the node and op), and for a
/// LeakyReLU slope outside `[0, 1]`.
pub fn encode(graph: &Graph, bounds: &[NodeBounds]) -> Result<NetEncoding, MilpError> {
    let nodes = graph.nodes();
    let mut prog = Program::default();
    let mut exprs: Vec<Vec<Expr>> = Vec::with_capacity(nodes.len());
    let mut unstable = 0;
    let mut stable = 0;
    let input_bounds = &bounds[0];
    let inputs: Vec<usize> = (0..graph.input_size())
        .map(|i| {
            prog.add_col(
                input_bounds.lower[i],
                input_bounds.upper[i],
                false,
                ColKind::Input(i),
            )
        })
        .collect();
    exprs.push(inputs.iter().map(|&c| Expr::var(c)).collect());
    for (id, node) in nodes.iter().enumerate().skip(1) {
        let unsupported = |why: &str| MilpError::Unsupported {
            node: node.name.clone(),
            op: node.op.kind(),
            why: why.to_string(),
        };
        let arg = |k: usize| -> &Vec<Expr> { &exprs[node.inputs[k].0] };
        let out_b = &bounds[id];
        let n = node.numel();
        let out: Vec<Expr> = match &node.op {
            Op::Input => return Err(unsupported("a second Input node")),
            Op::Constant(c) => c.iter().map(|&v| Expr::constant(f64::from(v))).collect(),
            Op::Reshape => arg(0).clone(),
            Op::Linear(lin) => {
                let x = arg(0);
                let (o, i) = lin.weight.dim();
                let rows = n / o.max(1);
                let mut v = Vec::with_capacity(n);
                for r in 0..rows {
                    for oi in 0..o {
                        let mut e =
                            Expr::constant(lin.bias.as_ref().map_or(0.0, |b| f64::from(b[oi])));
                        for ii in 0..i {
                            e.add_scaled(&x[r * i + ii], f64::from(lin.weight[[oi, ii]]));
                        }
                        v.push(e);
                    }
                }
                materialize(&mut prog, id, v, out_b)
            }
            Op::Conv(c) => {
                let v = conv_exprs(c, arg(0), &graph.node(node.inputs[0]).shape, &node.shape);
                materialize(&mut prog, id, v, out_b)
            }
            Op::Affine { scale, shift } => {
                let x = arg(0);
                let sc = scale.as_ref().map(|a| broadcast(a, &node.shape));
                let sh = shift.as_ref().map(|a| broadcast(a, &node.shape));
                (0..n)
                    .map(|k| {
                        let mut e = x[k].scaled(sc.as_ref().map_or(1.0, |s| s[k]));
                        e.constant += sh.as_ref().map_or(0.0, |s| s[k]);
                        e
                    })
                    .collect()
            }
            Op::Add | Op::Sub => {
                let s = if matches!(node.op, Op::Add) {
                    1.0
                } else {
                    -1.0
                };
                let (a, b) = (arg(0), arg(1));
                (0..n)
                    .map(|k| {
                        let mut e = a[k].clone();
                        e.add_scaled(&b[k], s);
                        e.normalized()
                    })
                    .collect()
            }
            Op::Relu | Op::LeakyRelu { .. } => {
                let alpha = match node.op {
                    Op::LeakyRelu { alpha } => f64::from(alpha),
                    _ => 0.0,
                };
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(unsupported(&format!(
                        "slope {alpha} outside [0, 1] (the encoding uses y = max(x, alpha·x))"
                    )));
                }
                let x = arg(0);
                let pre = &bounds[node.inputs[0].0];
                let mut v = Vec::with_capacity(n);
                for (k, xk) in x.iter().enumerate().take(n) {
                    let (l, u) = (pre.lower[k], pre.upper[k]);
                    if l >= 0.0 {
                        stable += 1;
                        v.push(xk.clone());
                    } else if u <= 0.0 {
                        stable += 1;
                        v.push(xk.scaled(alpha));
                    } else {
                        unstable += 1;
                        v.push(encode_leaky(&mut prog, id, k, xk, l, u, alpha));
                    }
                }
                v
            }
            Op::MaxPool(p) => {
                let in_shape = &graph.node(node.inputs[0]).shape;
                let pre = &bounds[node.inputs[0].0];
                let windows = pool_windows(p, in_shape, &node.shape);
                let x = arg(0);
                windows
                    .iter()
                    .enumerate()
                    .map(|(k, w)| encode_max(&mut prog, id, k, x, w, pre, out_b))
                    .collect()
            }
            other => {
                return Err(unsupported(&format!(
                    "{} is not piecewise linear or not encoded yet (supported: Linear, Conv, Affine, Add, Sub, \
                     Reshape, Constant, Relu, LeakyRelu, MaxPool)",
                    other.kind()
                )));
            }
        };
        debug_assert_eq!(out.len(), n, "node {id}");
        exprs.push(out);
    }
    let outputs = exprs.swap_remove(graph.output_id().0);
    Ok(NetEncoding {
        program: prog,
        inputs,
        outputs,
        unstable,
        stable,
    })
}

/// Gives each expression a column of its own, defined by an equality row and bounded by the node's sound
/// bounds (so the solver's relaxation starts from them).
fn materialize(prog: &mut Program, node: usize, v: Vec<Expr>, b: &NodeBounds) -> Vec<Expr> {
    v.into_iter()
        .enumerate()
        .map(|(k, e)| {
            let e = e.normalized();
            if e.terms.is_empty() {
                return e;
            }
            let col = prog.add_col(
                b.lower[k],
                b.upper[k],
                false,
                ColKind::Value { node, index: k },
            );
            let mut d = e;
            d.add_scaled(&Expr::var(col), -1.0);
            prog.add_expr_row(&d, 0.0, 0.0);
            Expr::var(col)
        })
        .collect()
}

/// `y = max(x, alpha·x)` for `x ∈ [l, u]`, `l < 0 < u`, with a binary `d` (1: active, `y = x`):
/// `y >= x`, `y >= alpha·x`, `y <= x − (1 − alpha)·l·(1 − d)`, `y <= alpha·x + (1 − alpha)·u·d`.
/// With `d = 1` the first and third rows force `y = x`, and `y >= alpha·x` then forces `x >= 0`; with
/// `d = 0`, `y = alpha·x` and `y >= x` forces `x <= 0`. So the rows are exact on `[l, u]`.
fn encode_leaky(
    prog: &mut Program,
    node: usize,
    k: usize,
    x: &Expr,
    l: f64,
    u: f64,
    alpha: f64,
) -> Expr {
    let y = prog.add_col(alpha * l, u, false, ColKind::Value { node, index: k });
    let d = prog.add_col(0.0, 1.0, true, ColKind::Binary { node, index: k });
    let ye = Expr::var(y);
    prog.add_ge(&ye, x);
    if alpha > 0.0 {
        prog.add_ge(&ye, &x.scaled(alpha));
    }
    // x − (1 − α)·l + (1 − α)·l·d − y >= 0
    let mut r = x.clone();
    r.constant -= (1.0 - alpha) * l;
    r.terms.push((d, (1.0 - alpha) * l));
    r.terms.push((y, -1.0));
    prog.add_expr_row(&r, 0.0, f64::INFINITY);
    // α·x + (1 − α)·u·d − y >= 0
    let mut r = x.scaled(alpha);
    r.terms.push((d, (1.0 - alpha) * u));
    r.terms.push((y, -1.0));
    prog.add_expr_row(&r, 0.0, f64::INFINITY);
    ye
}

/// `y = max_i x_i` over one pooling window (flat input indices `w`). Candidates whose upper bound is below the
/// largest lower bound can never be the maximum and are dropped; one left means `y` is that candidate;
/// otherwise one selector binary per candidate: `Σ d_i = 1`, `y >= x_i`, `y <= x_i + (U − l_i)(1 − d_i)`,
/// `U` the largest upper bound.
fn encode_max(
    prog: &mut Program,
    node: usize,
    k: usize,
    x: &[Expr],
    w: &[usize],
    pre: &NodeBounds,
    out_b: &NodeBounds,
) -> Expr {
    let max_lower = w
        .iter()
        .map(|&i| pre.lower[i])
        .fold(f64::NEG_INFINITY, f64::max);
    let cands: Vec<usize> = w
        .iter()
        .copied()
        .filter(|&i| pre.upper[i] >= max_lower)
        .collect();
    if cands.len() == 1 {
        return x[cands[0]].clone();
    }
    let big_u = cands
        .iter()
        .map(|&i| pre.upper[i])
        .fold(f64::NEG_INFINITY, f64::max);
    let y = prog.add_col(
        max_lower.max(out_b.lower[k]),
        big_u.min(out_b.upper[k]).max(max_lower),
        false,
        ColKind::Value { node, index: k },
    );
    let ye = Expr::var(y);
    let mut sum = Expr::constant(0.0);
    for (j, &i) in cands.iter().enumerate() {
        let d = prog.add_col(
            0.0,
            1.0,
            true,
            ColKind::Binary {
                node,
                index: k * w.len() + j,
            },
        );
        sum.terms.push((d, 1.0));
        prog.add_ge(&ye, &x[i]);
        // x_i + (U − l_i) − (U − l_i)·d − y >= 0
        let m = big_u - pre.lower[i];
        let mut r = x[i].clone();
        r.constant += m;
        r.terms.push((d, -m));
        r.terms.push((y, -1.0));
        prog.add_expr_row(&r, 0.0, f64::INFINITY);
    }
    prog.add_expr_row(&sum, 1.0, 1.0);
    ye
}

/// A constant broadcast (numpy rules) to `shape`, flattened row-major.
fn broadcast(c: &ndarray::ArrayD<f32>, shape: &[usize]) -> Vec<f64> {
    let cs = c.shape();
    let off = shape.len() - cs.len();
    let n: usize = shape.iter().product();
    let flat: Vec<f32> = c.iter().copied().collect();
    let mut idx = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ci = 0;
        for (a, &d) in cs.iter().enumerate() {
            let i = if d == 1 { 0 } else { idx[off + a] };
            ci = ci * d + i;
        }
        out.push(f64::from(flat[ci]));
        for a in (0..shape.len()).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

/// The output expressions of a convolution over `[.., C, H, W]` (leading axes kept; usually a batch of 1).
fn conv_exprs(c: &Conv, x: &[Expr], in_shape: &[usize], out_shape: &[usize]) -> Vec<Expr> {
    let r = in_shape.len();
    let (cin, h, w) = (in_shape[r - 3], in_shape[r - 2], in_shape[r - 1]);
    let (cout, oh, ow) = (out_shape[r - 3], out_shape[r - 2], out_shape[r - 1]);
    let lead: usize = in_shape[..r - 3].iter().product();
    let [_, cin_g, kh, kw]: [usize; 4] = c.weight.shape().try_into().expect("4-D weight");
    let cout_g = cout / c.groups;
    let mut out = Vec::with_capacity(lead * cout * oh * ow);
    for b in 0..lead {
        let xb = &x[b * cin * h * w..(b + 1) * cin * h * w];
        for co in 0..cout {
            let g = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut e = Expr::constant(c.bias.as_ref().map_or(0.0, |v| f64::from(v[co])));
                    for cg in 0..cin_g {
                        let ci = g * cin_g + cg;
                        for ky in 0..kh {
                            let iy = (oy * c.strides[0] + ky * c.dilations[0]) as isize
                                - c.pads[0] as isize;
                            if iy < 0 || iy as usize >= h {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * c.strides[1] + kx * c.dilations[1]) as isize
                                    - c.pads[1] as isize;
                                if ix < 0 || ix as usize >= w {
                                    continue;
                                }
                                let wv = f64::from(c.weight[[co, cg, ky, kx]]);
                                e.add_scaled(&xb[(ci * h + iy as usize) * w + ix as usize], wv);
                            }
                        }
                    }
                    out.push(e);
                }
            }
        }
    }
    out
}

/// For each output element of a pool, the flat input indices of its window (padding skipped).
fn pool_windows(p: &Pool, in_shape: &[usize], out_shape: &[usize]) -> Vec<Vec<usize>> {
    let r = in_shape.len();
    let (c, h, w) = (in_shape[r - 3], in_shape[r - 2], in_shape[r - 1]);
    let (oh, ow) = (out_shape[r - 2], out_shape[r - 1]);
    let lead: usize = in_shape[..r - 3].iter().product();
    let mut out = Vec::with_capacity(lead * c * oh * ow);
    for b in 0..lead {
        for ch in 0..c {
            let base = (b * c + ch) * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut win = Vec::with_capacity(p.kernel[0] * p.kernel[1]);
                    for ky in 0..p.kernel[0] {
                        let iy =
                            (oy * p.strides[0] + ky * p.dilations[0]) as isize - p.pads[0] as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        for kx in 0..p.kernel[1] {
                            let ix = (ox * p.strides[1] + kx * p.dilations[1]) as isize
                                - p.pads[1] as isize;
                            if ix < 0 || ix as usize >= w {
                                continue;
                            }
                            win.push(base + iy as usize * w + ix as usize);
                        }
                    }
                    out.push(win);
                }
            }
        }
    }
    out
}

/// Column names for exported files: `X_i`, `v<node>_<k>`, `d<node>_<k>`, `margin`.
pub fn column_names(prog: &Program) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    prog.cols
        .iter()
        .map(|c| {
            let base = match &c.kind {
                ColKind::Input(i) => format!("X_{i}"),
                ColKind::Value { node, index } => format!("v{node}_{index}"),
                ColKind::Binary { node, index } => format!("d{node}_{index}"),
                ColKind::Margin => "margin".to_string(),
            };
            // Names must be unique; a repeated one (not expected) gets a suffix.
            let count = seen.entry(base.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                base
            } else {
                format!("{base}_{count}")
            }
        })
        .collect()
}
