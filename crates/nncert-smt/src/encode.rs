//! The QF_LRA encoding of "some input of this case's box reaches the bad output region".
//!
//! An [`Encoding`] is solver-neutral: real variables with optional bounds, linear definitions `v = e`, piecewise
//! linear ReLU / LeakyReLU constraints and the bad region as a disjunction of conjunctions of linear atoms. The
//! SMT-LIB writer ([`crate::smtlib`]) and the in-process z3 builder read the same value, so the exported file and
//! the in-process query are the same formula.
//!
//! All coefficients are exact rationals (see [`crate::rational`]): affine ops are composed exactly, so the
//! formula is the real-valued network with its stored weights, with no rounding anywhere.
//!
//! Sound bounds of `nncert-bounds` (valid for the real-valued network with its stored weights) make the formula
//! smaller and easier without changing its solutions: a ReLU whose input is proved non-negative becomes the
//! identity, one proved non-positive becomes 0, and every remaining (unstable) ReLU gets its input bounds and its
//! triangle relaxation as extra linear lemmas, which the solver's simplex uses to prune before case-splitting.

use crate::SmtError;
use crate::rational::{Rat, exact, sign};
use ndarray::IxDyn;
use nncert_model::ir::{Graph, NodeId, Op};
use nncert_spec::{Case, InputBox, Property};
use num_traits::{One, Zero};
use std::collections::BTreeMap;

/// A linear expression `Σ coeff·var + constant` over the encoding's variables.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LinExpr {
    /// `(variable index, coefficient)`, sorted by variable, no zero coefficients.
    pub terms: Vec<(usize, Rat)>,
    pub constant: Rat,
}

impl LinExpr {
    /// The constant `c`.
    pub fn constant(c: Rat) -> Self {
        LinExpr {
            terms: Vec::new(),
            constant: c,
        }
    }

    /// The variable `v` (coefficient 1).
    pub fn var(v: usize) -> Self {
        LinExpr {
            terms: vec![(v, Rat::one())],
            constant: Rat::zero(),
        }
    }

    /// `Some(v)` when the expression is exactly the variable `v`.
    pub fn as_var(&self) -> Option<usize> {
        match self.terms.as_slice() {
            [(v, c)] if c.is_one() && self.constant.is_zero() => Some(*v),
            _ => None,
        }
    }

    /// `Σ coeffs[i]·exprs[i] + constant`, exactly.
    fn combine<'a>(parts: impl Iterator<Item = (&'a Rat, &'a LinExpr)>, constant: Rat) -> Self {
        let mut acc: BTreeMap<usize, Rat> = BTreeMap::new();
        let mut c = constant;
        for (w, e) in parts {
            if w.is_zero() {
                continue;
            }
            for (v, k) in &e.terms {
                let t = if w.is_one() { k.clone() } else { w * k };
                *acc.entry(*v).or_insert_with(Rat::zero) += t;
            }
            if !e.constant.is_zero() {
                c += w * &e.constant;
            }
        }
        LinExpr {
            terms: acc.into_iter().filter(|(_, k)| !k.is_zero()).collect(),
            constant: c,
        }
    }

    fn scaled_shifted(&self, scale: &Rat, shift: &Rat) -> Self {
        LinExpr::combine(std::iter::once((scale, self)), shift.clone())
    }
}

/// A real variable with optional bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    /// Its name in SMT-LIB (`X_i`, `Y_j` for the network's inputs and outputs).
    pub name: String,
    pub lower: Option<Rat>,
    pub upper: Option<Rat>,
}

/// `out = max(inp, 0)` (ReLU) or `out = inp` for `inp >= 0` and `alpha·inp` otherwise (LeakyReLU).
#[derive(Clone, Debug, PartialEq)]
pub struct Relu {
    pub out: usize,
    pub inp: usize,
    /// Slope for negative inputs (0 for ReLU).
    pub alpha: Rat,
    /// Sound bounds `l < 0 < u` of `inp`, when known: the triangle lemmas are added.
    pub bounds: Option<(Rat, Rat)>,
}

/// `expr <= 0`, or `expr < 0` when `strict`.
#[derive(Clone, Debug, PartialEq)]
pub struct Atom {
    pub expr: LinExpr,
    pub strict: bool,
}

/// How a ReLU is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReluStyle {
    /// `(= y (ite (>= x 0) x 0))`.
    #[default]
    Ite,
    /// `(or (and (>= x 0) (= y x)) (and (<= x 0) (= y 0)))`.
    Disjunction,
}

/// Counts describing an encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodingStats {
    /// ReLU / LeakyReLU neurons of the network.
    pub relus: usize,
    /// Of those, fixed active (linear) by the bounds.
    pub stable_active: usize,
    /// Fixed inactive (0 or `alpha·x`) by the bounds.
    pub stable_inactive: usize,
}

impl EncodingStats {
    /// Neurons left piecewise (a case split for the solver).
    pub fn unstable(&self) -> usize {
        self.relus - self.stable_active - self.stable_inactive
    }
}

/// One case of a property as a QF_LRA formula: the formula is satisfiable iff some input of the case's box has
/// its (real-valued) output in the case's bad region.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoding {
    pub vars: Vec<Var>,
    /// The network's input variables, in order.
    pub inputs: Vec<usize>,
    /// The network's output variables, in order.
    pub outputs: Vec<usize>,
    /// `var = expr`.
    pub defs: Vec<(usize, LinExpr)>,
    pub relus: Vec<Relu>,
    /// The bad region: satisfied iff some conjunction holds entirely. Empty: nothing is bad.
    pub bad: Vec<Vec<Atom>>,
    pub relu_style: ReluStyle,
    pub stats: EncodingStats,
}

impl Encoding {
    /// The same formula with every bad-region atom tightened by `delta >= 0` (`e <= 0` becomes `e + delta <= 0`):
    /// a model of it lies at least `delta` inside every constraint, so rounding of the f32 execution is less
    /// likely to push it out.
    pub fn tightened(&self, delta: &Rat) -> Encoding {
        let mut e = self.clone();
        for conj in &mut e.bad {
            for a in conj {
                a.expr.constant += delta;
            }
        }
        e
    }
}

/// Sound bounds of every node's values over one input box (flattened row-major), where known.
#[derive(Clone, Debug, Default)]
pub struct NodeBounds {
    pub per_node: Vec<Option<(Vec<f64>, Vec<f64>)>>,
}

/// Sound bounds for `case`, from the dense fast path of `nncert-bounds` for feed-forward ReLU nets, or the
/// generic CROWN bounder otherwise (stopping backward refinement at `deadline`).
pub fn case_bounds(graph: &Graph, case: &Case, deadline: std::time::Instant) -> NodeBounds {
    box_bounds(graph, &case.input, deadline)
}

/// [`case_bounds`] for any input box.
pub fn box_bounds(graph: &Graph, input: &InputBox, deadline: std::time::Instant) -> NodeBounds {
    let n = graph.nodes().len();
    let mut per_node = vec![None; n];
    if let Some(net) = nncert_bounds::dense::DenseReluNet::from_graph(graph) {
        let b = net.bound_boxes(std::slice::from_ref(input), &[None]);
        let layers = &b[0].layers;
        let mut k = 0;
        for node in graph.nodes() {
            if matches!(node.op, Op::Relu) {
                if let (Some(l), Some(&inp)) = (layers.get(k), node.inputs.first()) {
                    per_node[inp.0] = Some((l.lower.clone(), l.upper.clone()));
                }
                k += 1;
            }
        }
        if let Some(out) = layers.last() {
            per_node[graph.output_id().0] = Some((out.lower.clone(), out.upper.clone()));
        }
    } else {
        let model = nncert_bounds::BoundModel::new(graph);
        let bounds = model
            .bounder()
            .with_deadline(deadline)
            .node_bounds(input, nncert_bounds::Method::Crown);
        for (i, b) in bounds.into_iter().enumerate() {
            per_node[i] = Some((b.lower, b.upper));
        }
    }
    NodeBounds { per_node }
}

/// Checks that every op of `graph` can be encoded; the error names the first node that cannot.
pub fn check_supported(graph: &Graph) -> Result<(), SmtError> {
    for node in graph.nodes() {
        let ok = match &node.op {
            Op::Input
            | Op::Constant(_)
            | Op::Linear(_)
            | Op::Affine { .. }
            | Op::Add
            | Op::Sub
            | Op::Relu
            | Op::Reshape
            | Op::Transpose { .. } => true,
            Op::LeakyRelu { alpha } => alpha.is_finite(),
            _ => false,
        };
        if !ok {
            return Err(SmtError::Unsupported {
                node: node.name.clone(),
                op: node.op.kind(),
            });
        }
    }
    Ok(())
}

struct Builder {
    vars: Vec<Var>,
    defs: Vec<(usize, LinExpr)>,
    relus: Vec<Relu>,
    stats: EncodingStats,
}

impl Builder {
    fn new_var(&mut self, name: String) -> usize {
        self.vars.push(Var {
            name,
            lower: None,
            upper: None,
        });
        self.vars.len() - 1
    }

    /// A variable equal to `e` (a new one unless `e` already is a variable).
    fn materialize(&mut self, e: LinExpr, name: String) -> usize {
        if let Some(v) = e.as_var() {
            return v;
        }
        let v = self.new_var(name);
        self.defs.push((v, e));
        v
    }
}

fn rat(v: f32, node: &str) -> Result<Rat, SmtError> {
    exact(f64::from(v)).ok_or_else(|| SmtError::NonFinite {
        node: node.to_string(),
    })
}

/// Encodes case `case` of `property` on `graph`. `bounds`, when given, must be sound bounds over that case's
/// box (see [`case_bounds`]); they fix stable ReLUs and add lemmas, never change the answer.
pub fn encode_case(
    graph: &Graph,
    property: &Property,
    case: usize,
    bounds: Option<&NodeBounds>,
    relu_style: ReluStyle,
) -> Result<Encoding, SmtError> {
    check_supported(graph)?;
    let c = property.cases.get(case).ok_or(SmtError::NoSuchCase {
        case,
        cases: property.cases.len(),
    })?;
    if c.input.lower.len() != graph.input_size() || property.num_outputs != graph.output_size() {
        return Err(SmtError::Dimensions {
            model_inputs: graph.input_size(),
            model_outputs: graph.output_size(),
            property_inputs: c.input.lower.len(),
            property_outputs: property.num_outputs,
        });
    }
    let mut b = Builder {
        vars: Vec::new(),
        defs: Vec::new(),
        relus: Vec::new(),
        stats: EncodingStats::default(),
    };
    let bound_of = |id: usize, j: usize| -> Option<(f64, f64)> {
        let (l, u) = bounds?.per_node.get(id)?.as_ref()?;
        Some((*l.get(j)?, *u.get(j)?))
    };
    let mut inputs = Vec::new();
    let mut values: Vec<Vec<LinExpr>> = Vec::with_capacity(graph.nodes().len());
    for (id, node) in graph.nodes().iter().enumerate() {
        let arg = |k: usize| -> &Vec<LinExpr> { &values[node.inputs[k].0] };
        let out: Vec<LinExpr> = match &node.op {
            Op::Input => {
                let mut v = Vec::with_capacity(node.numel());
                for i in 0..node.numel() {
                    let x = b.new_var(format!("X_{i}"));
                    let (lo, hi) = (c.input.lower[i], c.input.upper[i]);
                    let nf = || SmtError::NonFinite {
                        node: format!("input bound of X_{i}"),
                    };
                    b.vars[x].lower = Some(exact(lo).ok_or_else(nf)?);
                    b.vars[x].upper = Some(exact(hi).ok_or_else(nf)?);
                    inputs.push(x);
                    v.push(LinExpr::var(x));
                }
                v
            }
            Op::Constant(a) => a
                .iter()
                .map(|&v| rat(v, &node.name).map(LinExpr::constant))
                .collect::<Result<_, _>>()?,
            Op::Linear(lin) => {
                let x = arg(0);
                let (n_out, n_in) = lin.weight.dim();
                let rows = x.len() / n_in.max(1);
                let w: Vec<Rat> = lin
                    .weight
                    .iter()
                    .map(|&v| rat(v, &node.name))
                    .collect::<Result<_, _>>()?;
                let bias: Vec<Rat> = match &lin.bias {
                    Some(bv) => bv
                        .iter()
                        .map(|&v| rat(v, &node.name))
                        .collect::<Result<_, _>>()?,
                    None => vec![Rat::zero(); n_out],
                };
                let mut out = Vec::with_capacity(rows * n_out);
                for r in 0..rows {
                    let xs = &x[r * n_in..(r + 1) * n_in];
                    for o in 0..n_out {
                        let e = LinExpr::combine(
                            w[o * n_in..(o + 1) * n_in].iter().zip(xs),
                            bias[o].clone(),
                        );
                        // A variable per output keeps every later expression short (a layer's expressions
                        // would otherwise expand into the previous layer's).
                        let j = out.len();
                        let v = b.materialize(e, format!("h{id}_{j}"));
                        out.push(LinExpr::var(v));
                    }
                }
                out
            }
            Op::Affine { scale, shift } => {
                let x = arg(0);
                let shape = IxDyn(&node.shape);
                let bc = |a: &Option<ndarray::ArrayD<f32>>| -> Result<Option<Vec<Rat>>, SmtError> {
                    let Some(a) = a else { return Ok(None) };
                    let view = a
                        .broadcast(shape.clone())
                        .ok_or_else(|| SmtError::Unsupported {
                            node: node.name.clone(),
                            op: "Affine (constant does not broadcast)",
                        })?;
                    view.iter()
                        .map(|&v| rat(v, &node.name))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Some)
                };
                let s = bc(scale)?;
                let t = bc(shift)?;
                x.iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let sc = s.as_ref().map_or_else(Rat::one, |s| s[i].clone());
                        let sh = t.as_ref().map_or_else(Rat::zero, |t| t[i].clone());
                        e.scaled_shifted(&sc, &sh)
                    })
                    .collect()
            }
            Op::Add | Op::Sub => {
                let sub = matches!(node.op, Op::Sub);
                let (a, bb) = (arg(0), arg(1));
                let one = Rat::one();
                let minus = -Rat::one();
                a.iter()
                    .zip(bb)
                    .map(|(p, q)| {
                        let k = if sub { &minus } else { &one };
                        LinExpr::combine([(&one, p), (k, q)].into_iter(), Rat::zero())
                    })
                    .collect()
            }
            Op::Reshape => arg(0).clone(),
            Op::Transpose { perm } => {
                let x = arg(0);
                let in_shape = graph.node(node.inputs[0]).shape.clone();
                let idx = ndarray::ArrayD::from_shape_vec(IxDyn(&in_shape), (0..x.len()).collect())
                    .map_err(|_| SmtError::Unsupported {
                        node: node.name.clone(),
                        op: "Transpose (shape mismatch)",
                    })?;
                let t = idx.permuted_axes(IxDyn(perm));
                t.iter().map(|&i| x[i].clone()).collect()
            }
            Op::Relu | Op::LeakyRelu { .. } => {
                let alpha = match node.op {
                    Op::LeakyRelu { alpha } => rat(alpha, &node.name)?,
                    _ => Rat::zero(),
                };
                let inp_id = node.inputs[0];
                let x = arg(0).clone();
                let mut out = Vec::with_capacity(x.len());
                for (j, e) in x.into_iter().enumerate() {
                    b.stats.relus += 1;
                    let bd = bound_of(inp_id.0, j);
                    match bd {
                        Some((lo, _)) if lo >= 0.0 => {
                            b.stats.stable_active += 1;
                            out.push(e);
                        }
                        Some((_, hi)) if hi <= 0.0 => {
                            b.stats.stable_inactive += 1;
                            out.push(e.scaled_shifted(&alpha, &Rat::zero()));
                        }
                        _ => {
                            let inp = b.materialize(e, format!("z{id}_{j}"));
                            let bounds =
                                bd.and_then(|(lo, hi)| Some((coarse_down(lo)?, coarse_up(hi)?)));
                            if let Some((lo, hi)) = &bounds {
                                tighten(&mut b.vars[inp], lo, hi);
                            }
                            let y = b.new_var(format!("r{id}_{j}"));
                            b.relus.push(Relu {
                                out: y,
                                inp,
                                alpha: alpha.clone(),
                                bounds,
                            });
                            out.push(LinExpr::var(y));
                        }
                    }
                }
                out
            }
            other => {
                return Err(SmtError::Unsupported {
                    node: node.name.clone(),
                    op: other.kind(),
                });
            }
        };
        values.push(out);
    }
    // Outputs get their VNN-LIB names, so the bad region reads like the property file.
    let out_id: NodeId = graph.output_id();
    let outs = std::mem::take(&mut values[out_id.0]);
    let mut outputs = Vec::with_capacity(outs.len());
    for (j, e) in outs.into_iter().enumerate() {
        let y = b.new_var(format!("Y_{j}"));
        if let Some((Some(lo), Some(hi))) =
            bound_of(out_id.0, j).map(|(lo, hi)| (coarse_down(lo), coarse_up(hi)))
        {
            tighten(&mut b.vars[y], &lo, &hi);
        }
        b.defs.push((y, e));
        outputs.push(y);
    }
    let mut bad = Vec::with_capacity(c.output.disjuncts.len());
    for d in &c.output.disjuncts {
        let mut conj = Vec::with_capacity(d.constraints.len());
        for k in &d.constraints {
            let nf = || SmtError::NonFinite {
                node: "output constraint of the property".into(),
            };
            let coeffs: Vec<Rat> = k
                .coeffs
                .iter()
                .map(|&v| exact(v).ok_or_else(nf))
                .collect::<Result<_, _>>()?;
            let ys: Vec<LinExpr> = outputs.iter().map(|&y| LinExpr::var(y)).collect();
            let rhs = exact(k.rhs).ok_or_else(nf)?;
            conj.push(Atom {
                expr: LinExpr::combine(coeffs.iter().zip(&ys), -rhs),
                strict: k.strict,
            });
        }
        bad.push(conj);
    }
    Ok(Encoding {
        vars: b.vars,
        inputs,
        outputs,
        defs: b.defs,
        relus: b.relus,
        bad,
        relu_style,
        stats: b.stats,
    })
}

impl Encoding {
    /// Whether the output variables' bounds alone (exact rational interval arithmetic over the atoms) show that
    /// no conjunction of the bad region can hold: then the formula is unsatisfiable without solving.
    pub fn refuted_by_output_bounds(&self) -> bool {
        self.bad.iter().all(|conj| {
            conj.iter().any(|a| {
                // Lower bound of the atom's expression over the variables' boxes; > 0 (>= 0 if strict) refutes.
                let mut lo = a.expr.constant.clone();
                for (v, c) in &a.expr.terms {
                    let var = &self.vars[*v];
                    let end = if sign(c) > 0 { &var.lower } else { &var.upper };
                    match end {
                        Some(b) => lo += c * b,
                        None => return false,
                    }
                }
                if a.strict {
                    sign(&lo) >= 0
                } else {
                    sign(&lo) > 0
                }
            })
        })
    }
}

/// Bound lemmas are rounded outward to multiples of `2^-BOUND_GRID_BITS`: a looser bound is still sound, and
/// short numerals keep z3's exact simplex fast (f64 bounds with 53-bit mantissas at mixed exponents make the
/// tableau's rationals huge, and z3 then spends seconds per pivot).
const BOUND_GRID_BITS: i32 = 16;

/// `x` rounded down to the bound grid, exactly.
fn coarse_down(x: f64) -> Option<Rat> {
    let s = 2f64.powi(BOUND_GRID_BITS);
    let k = (x * s).floor();
    // x·2^16 is exact unless it overflows; floor of a finite float is exact.
    (k.is_finite()).then(|| exact(k).map(|k| k / exact(s).expect("finite")))?
}

/// `x` rounded up to the bound grid, exactly.
fn coarse_up(x: f64) -> Option<Rat> {
    coarse_down(-x).map(|r| -r)
}

/// Intersects a variable's bounds with `[lo, hi]`.
fn tighten(v: &mut Var, lo: &Rat, hi: &Rat) {
    if v.lower.as_ref().is_none_or(|l| lo > l) {
        v.lower = Some(lo.clone());
    }
    if v.upper.as_ref().is_none_or(|u| hi < u) {
        v.upper = Some(hi.clone());
    }
}

/// The linear lemmas implied by a ReLU with input bounds `l < 0 < u` (slope `alpha` in `[0, 1]` below 0):
/// `y >= x`, `y >= alpha·x` and the chord `(u − l)·(y − alpha·l) <= (u − alpha·l)·(x − l)`, each as
/// `expr <= 0`. They hold for every solution (sound bounds), so adding them never changes the answer; outside
/// `alpha ∈ [0, 1]` the function is not convex and no lemmas are given.
pub fn relu_lemmas(r: &Relu) -> Vec<LinExpr> {
    let one = Rat::one();
    let mut out = Vec::new();
    if sign(&r.alpha) < 0 || r.alpha > one {
        return out;
    }
    let x = LinExpr::var(r.inp);
    let y = LinExpr::var(r.out);
    let minus = -Rat::one();
    // x − y <= 0
    out.push(LinExpr::combine(
        [(&one, &x), (&minus, &y)].into_iter(),
        Rat::zero(),
    ));
    // alpha·x − y <= 0
    out.push(LinExpr::combine(
        [(&r.alpha, &x), (&minus, &y)].into_iter(),
        Rat::zero(),
    ));
    if let Some((l, u)) = r
        .bounds
        .as_ref()
        .filter(|(l, u)| sign(l) < 0 && sign(u) > 0)
    {
        // (u − l)·y − (u − αl)·x + [ −(u − l)·αl + (u − αl)·l ] <= 0
        let d = u - l;
        let s = u - &r.alpha * l;
        let neg_s = -s.clone();
        let constant = -(&d * &r.alpha * l) + &s * l;
        out.push(LinExpr::combine(
            [(&d, &y), (&neg_s, &x)].into_iter(),
            constant,
        ));
    }
    out
}
