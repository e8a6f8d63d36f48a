//! Entrywise bounds on the Jacobian of linear functionals `c·f(x)` over a region: interval (midpoint–radius)
//! arithmetic through the backward pass. A row `c` starts at the output; affine nodes apply their transpose
//! exactly to the midpoint and their absolute transpose to the radius; activations multiply by the interval
//! of their derivative over the region (ReLU: `{0}`, `{1}` or `[0, 1]` by phase; sigmoid/tanh: the range of
//! the derivative over the pre-activation bounds); max-pool routes each output's gradient to the window
//! elements that can be the maximum. The result contains every gradient `∇(c·f)(x)` for `x` in the region
//! (see the module docs of [`super`] for why this bounds the Lipschitz constant).

use super::LipschitzError;
use super::linalg::{U, up};
use super::operator::{linear_graph, node_error};
use ndarray::{Array2, ArrayD, IxDyn, Zip};
use nncert_bounds::NodeBounds;
use nncert_model::eval::Evaluator;
use nncert_model::ir::{Graph, Op, Pool};

/// The derivative of a nonlinear node over the region.
pub(crate) enum Deriv {
    /// Elementwise: `f'(x_e) ∈ [lo_e, hi_e]`.
    Elementwise { lo: Vec<f64>, hi: Vec<f64> },
    /// Max-pool: per output element, the input elements that can be its maximum.
    MaxPool { candidates: Vec<Vec<usize>> },
}

/// Calls `f(out_index, in_index)` for every in-bounds element of every window of a pool over `[.., C, H, W]`.
pub(crate) fn pool_windows(
    p: &Pool,
    in_shape: &[usize],
    out_shape: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    let r = in_shape.len();
    let (h, w) = (in_shape[r - 2], in_shape[r - 1]);
    let (oh, ow) = (out_shape[r - 2], out_shape[r - 1]);
    let planes: usize = in_shape[..r - 2].iter().product();
    let src = |o: usize, k: usize, axis: usize, size: usize| -> Option<usize> {
        let v = (o * p.strides[axis] + k * p.dilations[axis]).checked_sub(p.pads[axis])?;
        (v < size).then_some(v)
    };
    for plane in 0..planes {
        for a in 0..oh {
            for b in 0..ow {
                let o = plane * oh * ow + a * ow + b;
                for ki in 0..p.kernel[0] {
                    let Some(i) = src(a, ki, 0, h) else { continue };
                    for kj in 0..p.kernel[1] {
                        if let Some(j) = src(b, kj, 1, w) {
                            f(o, plane * h * w + i * w + j);
                        }
                    }
                }
            }
        }
    }
}

/// Range of `g'(x)` for `x ∈ [l, u]`, where `g'` is even, maximal at 0 and decreasing in `|x|`, given as a
/// function of `|x|`; widened for libm's error in `exp`.
fn even_derivative_range(l: f64, u: f64, d: fn(f64) -> f64) -> (f64, f64) {
    let at = |x: f64| d(x.abs());
    let peak = if l <= 0.0 && u >= 0.0 {
        0.0
    } else {
        l.abs().min(u.abs())
    };
    let far = l.abs().max(u.abs());
    let (lo, hi) = (at(far), at(peak));
    (
        (lo * (1.0 - 2f64.powi(-40))).max(0.0),
        hi * (1.0 + 2f64.powi(-40)) + 1e-300,
    )
}

/// σ'(a) for a ≥ 0, written without cancellation: e^{−a}/(1 + e^{−a})².
fn sigmoid_deriv(a: f64) -> f64 {
    let e = (-a).exp();
    e / ((1.0 + e) * (1.0 + e))
}

/// tanh'(a) for a ≥ 0: 4e^{−2a}/(1 + e^{−2a})².
fn tanh_deriv(a: f64) -> f64 {
    let e = (-2.0 * a).exp();
    4.0 * e / ((1.0 + e) * (1.0 + e))
}

/// Derivative ranges of every nonlinear node: over the region whose node bounds are `bounds`, or over all of
/// input space when `bounds` is `None`. Errors name the first node whose op has no Jacobian rule.
pub(crate) fn derivatives(
    graph: &Graph,
    bounds: Option<&[NodeBounds]>,
) -> Result<Vec<Option<Deriv>>, LipschitzError> {
    let nodes = graph.nodes();
    let mut out = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let pre = bounds.map(|b| &b[node.inputs.first().map_or(0, |j| j.0)]);
        let n = node.numel();
        let elementwise = |f: &dyn Fn(f64, f64) -> (f64, f64)| {
            let mut lo = vec![0.0; n];
            let mut hi = vec![0.0; n];
            for e in 0..n {
                let (l, u) = match pre {
                    Some(p) => (p.lower[e], p.upper[e]),
                    None => (f64::NEG_INFINITY, f64::INFINITY),
                };
                (lo[e], hi[e]) = f(l, u);
            }
            Some(Deriv::Elementwise { lo, hi })
        };
        let d = match &node.op {
            Op::Relu => elementwise(&|l, u| {
                if l >= 0.0 {
                    (1.0, 1.0)
                } else if u <= 0.0 {
                    (0.0, 0.0)
                } else {
                    (0.0, 1.0)
                }
            }),
            Op::LeakyRelu { alpha } => {
                let a = *alpha as f64;
                elementwise(&|l, u| {
                    if l >= 0.0 {
                        (1.0, 1.0)
                    } else if u <= 0.0 {
                        (a, a)
                    } else {
                        (a.min(1.0), a.max(1.0))
                    }
                })
            }
            Op::Clip { min, max } => {
                let (cl, cu) = (*min as f64, *max as f64);
                elementwise(&|l, u| {
                    if l >= cl && u <= cu {
                        (1.0, 1.0)
                    } else if u <= cl || l >= cu {
                        (0.0, 0.0)
                    } else {
                        (0.0, 1.0)
                    }
                })
            }
            Op::Sigmoid => elementwise(&|l, u| even_derivative_range(l, u, sigmoid_deriv)),
            Op::Tanh => elementwise(&|l, u| even_derivative_range(l, u, tanh_deriv)),
            Op::MaxPool(p) => {
                let input = graph.node(node.inputs[0]);
                let mut windows: Vec<Vec<usize>> = vec![Vec::new(); n];
                pool_windows(p, &input.shape, &node.shape, |o, k| windows[o].push(k));
                if let Some(pre) = pre {
                    // Only elements whose upper bound reaches the window's largest lower bound can be the max.
                    for w in &mut windows {
                        let best_low = w
                            .iter()
                            .map(|&k| pre.lower[k])
                            .fold(f64::NEG_INFINITY, f64::max);
                        w.retain(|&k| pre.upper[k] >= best_low);
                    }
                }
                Some(Deriv::MaxPool {
                    candidates: windows,
                })
            }
            Op::Softmax { .. } => {
                return Err(LipschitzError::Unsupported {
                    node: node.name.clone(),
                    op: node.op.kind(),
                    what: "Jacobian bounds",
                });
            }
            _ => None,
        };
        debug_assert!(i > 0 || d.is_none());
        out.push(d);
    }
    Ok(out)
}

/// Entrywise bounds `|J − mid| ≤ rad` on the Jacobian rows `[k, input_size]` of `k` functionals `c·f`.
#[derive(Clone, Debug)]
pub struct JacobianBounds {
    pub mid: Array2<f64>,
    pub rad: Array2<f64>,
}

impl JacobianBounds {
    /// Upper bounds of `|∂(c_r·f)/∂x_j|`, per row `r` and input `j`.
    pub fn abs_upper(&self) -> Array2<f64> {
        let mut a = self.mid.mapv(f64::abs);
        Zip::from(&mut a)
            .and(&self.rad)
            .for_each(|a, &r| *a = up(*a + r));
        a
    }
}

/// Midpoint–radius state of one node: `[k, shape...]` each.
struct State {
    mid: ArrayD<f64>,
    rad: ArrayD<f64>,
}

/// Adds `(m, r)` into `slot`, covering the rounding of the sums.
fn accumulate(slot: &mut Option<State>, m: ArrayD<f64>, r: ArrayD<f64>) {
    match slot {
        None => *slot = Some(State { mid: m, rad: r }),
        Some(s) => {
            s.mid += &m;
            s.rad += &r;
            Zip::from(&mut s.rad)
                .and(&s.mid)
                .for_each(|r, &m| *r = *r * (1.0 + 2.0 * U) + 2.0 * U * m.abs() + 1e-300);
        }
    }
}

/// Interval backward pass: bounds on `∇ₓ(c·f)` for every row `c` of `rows` (`[k, output_size]`).
pub(crate) fn backward(
    graph: &Graph,
    rows: &Array2<f64>,
    derivs: &[Option<Deriv>],
) -> JacobianBounds {
    let lin = linear_graph(graph, false);
    let abs = linear_graph(graph, true);
    let lin_ev = Evaluator::<f64>::new(&lin);
    let abs_ev = Evaluator::<f64>::new(&abs);
    let nodes = graph.nodes();
    let k = rows.nrows();
    let batched = |i: usize| {
        let mut s = vec![k];
        s.extend(&nodes[i].shape);
        s
    };
    let mut states: Vec<Option<State>> = (0..nodes.len()).map(|_| None).collect();
    let out = graph.output_id().0;
    let start = rows
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&batched(out)))
        .expect("rows have the output's size");
    states[out] = Some(State {
        rad: ArrayD::zeros(start.raw_dim()),
        mid: start,
    });
    for i in (1..nodes.len()).rev() {
        let Some(State { mid, rad }) = states[i].take() else {
            continue;
        };
        let node = &nodes[i];
        match (&node.op, &derivs[i]) {
            (Op::Constant(_), _) => {}
            (_, Some(Deriv::Elementwise { lo, hi })) => {
                let j = node.inputs[0].0;
                let n = lo.len();
                let mut m2 = mid.into_shape_with_order((k, n)).expect("standard layout");
                let mut r2 = rad.into_shape_with_order((k, n)).expect("standard layout");
                for e in 0..n {
                    let (dl, dh) = (lo[e], hi[e]);
                    if dl == 1.0 && dh == 1.0 {
                        continue;
                    }
                    // Midpoint–radius product (Rump): g·d ⊆ ⟨m·dm, |m|·dr + r·|dm| + r·dr⟩.
                    let dm = (dl + dh) * 0.5;
                    let dr = up((dh - dm).max(dm - dl));
                    for r in 0..k {
                        let (m, rr) = (m2[[r, e]], r2[[r, e]]);
                        let nm = m * dm;
                        let nr = (m.abs() * dr + rr * dm.abs() + rr * dr) * (1.0 + 4.0 * U)
                            + U * nm.abs()
                            + 1e-300;
                        m2[[r, e]] = nm;
                        r2[[r, e]] = if dl == dh && dl == 0.0 { 0.0 } else { nr };
                        if dl == dh && dl == 0.0 {
                            m2[[r, e]] = 0.0;
                        }
                    }
                }
                let shape = IxDyn(&batched(j));
                accumulate(
                    &mut states[j],
                    m2.into_shape_with_order(shape.clone())
                        .expect("sizes agree"),
                    r2.into_shape_with_order(shape).expect("sizes agree"),
                );
            }
            (_, Some(Deriv::MaxPool { candidates })) => {
                let j = node.inputs[0].0;
                let (n_out, n_in) = (node.numel(), nodes[j].numel());
                let m2 = mid
                    .into_shape_with_order((k, n_out))
                    .expect("standard layout");
                let r2 = rad
                    .into_shape_with_order((k, n_out))
                    .expect("standard layout");
                let mut gm = Array2::<f64>::zeros((k, n_in));
                let mut gr = Array2::<f64>::zeros((k, n_in));
                for (o, cand) in candidates.iter().enumerate() {
                    for r in 0..k {
                        let (m, rr) = (m2[[r, o]], r2[[r, o]]);
                        if cand.len() == 1 {
                            gm[[r, cand[0]]] += m;
                            gr[[r, cand[0]]] += rr;
                        } else {
                            // g·[0, 1] = ⟨m/2, |m|/2 + r⟩ on every possible maximum.
                            for &c in cand {
                                gm[[r, c]] += 0.5 * m;
                                gr[[r, c]] += 0.5 * m.abs() + rr;
                            }
                        }
                    }
                }
                // Each entry is a sum of at most (number of windows) terms.
                let g = 1.0 + nncert_bounds::gamma(candidates.len() + 2);
                Zip::from(&mut gr)
                    .and(&gm)
                    .for_each(|r, &m| *r = *r * g + g * m.abs() + 1e-300);
                let shape = IxDyn(&batched(j));
                accumulate(
                    &mut states[j],
                    gm.into_shape_with_order(shape.clone())
                        .expect("sizes agree"),
                    gr.into_shape_with_order(shape).expect("sizes agree"),
                );
            }
            (op, None) if op.is_affine() => {
                // λ ↦ λJ on the midpoint exactly (rounded), |J|ᵀ on the radius, and an error term
                // (γ + δ)·|J|ᵀ(|m| + r) for the rounding and the import rounding of constants.
                let dummies: Vec<ArrayD<f64>> = node
                    .inputs
                    .iter()
                    .map(|j| ArrayD::zeros(IxDyn(&batched(j.0))))
                    .collect();
                let refs: Vec<&ArrayD<f64>> = dummies.iter().collect();
                let mag = {
                    let mut a = mid.mapv(f64::abs);
                    a += &rad;
                    a
                };
                let any_rad = rad.iter().any(|&v| v != 0.0);
                let gm = lin_ev.node_backward(i, &refs, &mid, mid.clone());
                let gt = abs_ev.node_backward(i, &refs, &mag, mag.clone());
                let gr = if any_rad {
                    Some(abs_ev.node_backward(i, &refs, &rad, rad.clone()))
                } else {
                    None
                };
                let e = node_error(graph, i);
                for (idx, (j, m)) in node.inputs.iter().zip(gm).enumerate() {
                    let mut r = gt[idx].mapv(|t| e * t);
                    if let Some(gr) = &gr {
                        r += &gr[idx];
                    }
                    r.mapv_inplace(|v| v * (1.0 + e) * (1.0 + 8.0 * U) + 1e-300);
                    accumulate(&mut states[j.0], m, r);
                }
            }
            (op, _) => unreachable!("derivative prepared for {}", op.kind()),
        }
    }
    let n_in = graph.input_size();
    match states[0].take() {
        Some(State { mid, rad }) => JacobianBounds {
            mid: mid
                .into_shape_with_order((k, n_in))
                .expect("standard layout"),
            rad: rad
                .into_shape_with_order((k, n_in))
                .expect("standard layout"),
        },
        None => JacobianBounds {
            mid: Array2::zeros((k, n_in)),
            rad: Array2::zeros((k, n_in)),
        },
    }
}
