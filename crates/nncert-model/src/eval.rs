//! Batched evaluation of a [`Graph`] in f32 or f64, and vector–Jacobian products.
//!
//! Inputs and outputs are matrices `[N, size]` (each row one sample, flattened row-major from the per-sample
//! shape). Internally every activation is a standard-layout array `[N, shape...]`. Weights are converted to the
//! evaluation type once, when the [`Evaluator`] is made, so repeated calls (attacks, falsifiers) pay nothing for it.
//!
//! ```
//! use nncert_model::ir::{GraphBuilder, Linear, Op};
//! use nncert_model::eval::Evaluator;
//! use ndarray::{arr1, arr2};
//! let mut b = GraphBuilder::new("x", vec![2]);
//! let fc = Op::Linear(Linear { weight: arr2(&[[1.0, -1.0]]), bias: Some(arr1(&[0.5])) });
//! let h = b.push("fc", fc, vec![b.input_id()], None).unwrap();
//! let g = b.finish(h);
//! let ev = Evaluator::<f64>::new(&g);
//! let y = ev.forward(arr2(&[[3.0, 1.0]]).view()).unwrap();
//! assert_eq!(y[[0, 0]], 2.5);
//! // Gradient of y[0] w.r.t. the input:
//! let trace = ev.trace(arr2(&[[3.0, 1.0]]).view()).unwrap();
//! let grad = ev.backward(&trace, arr2(&[[1.0]]).view());
//! assert_eq!(grad.row(0).to_vec(), vec![1.0, -1.0]);
//! ```

use crate::error::ModelError;
use crate::ir::{Conv, ConvTranspose, Graph, Op, Pool, SliceAxis};
use ndarray::{
    Array1, Array2, Array4, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn, LinalgScalar,
    ScalarOperand, Zip, s,
};
use num_traits::Float;
use rayon::prelude::*;

/// The scalar types the network can be evaluated in (f32 and f64).
pub trait Real:
    Float
    + LinalgScalar
    + ScalarOperand
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + Send
    + Sync
    + std::fmt::Debug
    + std::iter::Sum
    + 'static
{
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// Parameters of one node converted to the evaluation type.
enum Params<T> {
    None,
    Linear {
        weight_t: Array2<T>,
        bias: Option<Array1<T>>,
    },
    Conv {
        weight: Array4<T>,
        bias: Option<Array1<T>>,
    },
    Affine {
        scale: Option<ArrayD<T>>,
        shift: Option<ArrayD<T>>,
    },
    Constant(ArrayD<T>),
}

/// Evaluates one graph, many times, in scalar type `T`.
pub struct Evaluator<'g, T: Real> {
    graph: &'g Graph,
    params: Vec<Params<T>>,
}

/// All activations of a forward pass, kept for [`Evaluator::backward`].
pub struct Trace<T> {
    acts: Vec<ArrayD<T>>,
    output: usize,
}

impl<T: Real> Trace<T> {
    /// The outputs, `[N, output_size]`.
    pub fn output(&self) -> ArrayView2<'_, T> {
        let a = &self.acts[self.output];
        let n = a.shape()[0];
        a.view()
            .into_shape_with_order((n, a.len() / n.max(1)))
            .expect("activations are standard layout")
    }
}

fn conv_arr<T: Real, D: ndarray::Dimension>(a: &ndarray::Array<f32, D>) -> ndarray::Array<T, D> {
    a.mapv(T::from_f32)
}

/// Geometry of a 2-D convolution from an input `[C_in, H, W]` to an output `[C_out, OH, OW]`.
#[derive(Clone, Copy, Debug)]
struct ConvGeom {
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
}

impl ConvGeom {
    /// Input coordinate read by output `o` at kernel offset `k` along one axis, if inside the input.
    #[inline]
    fn src(
        o: usize,
        k: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        size: usize,
    ) -> Option<usize> {
        let p = (o * stride + k * dil).checked_sub(pad)?;
        (p < size).then_some(p)
    }

    /// Unfolds one group of one sample into columns `[C_in/g · kH · kW, OH · OW]`.
    fn im2col<T: Real>(&self, x: &[T], group: usize, cols: &mut Array2<T>) {
        let cg = self.c_in / self.groups;
        let (oh, ow) = (self.oh, self.ow);
        for c in 0..cg {
            let ch = &x[(group * cg + c) * self.h * self.w..][..self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = (c * self.kh + ki) * self.kw + kj;
                    let mut dst = cols.row_mut(row);
                    let dst = dst.as_slice_mut().expect("contiguous");
                    for a in 0..oh {
                        let Some(i) =
                            Self::src(a, ki, self.stride[0], self.pad[0], self.dil[0], self.h)
                        else {
                            dst[a * ow..(a + 1) * ow].fill(T::zero());
                            continue;
                        };
                        for b in 0..ow {
                            dst[a * ow + b] = match Self::src(
                                b,
                                kj,
                                self.stride[1],
                                self.pad[1],
                                self.dil[1],
                                self.w,
                            ) {
                                Some(j) => ch[i * self.w + j],
                                None => T::zero(),
                            };
                        }
                    }
                }
            }
        }
    }

    /// Adds columns back onto one group of one sample (the adjoint of [`Self::im2col`]).
    fn col2im<T: Real>(&self, cols: &Array2<T>, group: usize, x: &mut [T]) {
        let cg = self.c_in / self.groups;
        let (oh, ow) = (self.oh, self.ow);
        for c in 0..cg {
            let ch = &mut x[(group * cg + c) * self.h * self.w..][..self.h * self.w];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let row = (c * self.kh + ki) * self.kw + kj;
                    let src = cols.row(row);
                    let src = src.as_slice().expect("contiguous");
                    for a in 0..oh {
                        let Some(i) =
                            Self::src(a, ki, self.stride[0], self.pad[0], self.dil[0], self.h)
                        else {
                            continue;
                        };
                        for b in 0..ow {
                            if let Some(j) =
                                Self::src(b, kj, self.stride[1], self.pad[1], self.dil[1], self.w)
                            {
                                ch[i * self.w + j] += src[a * ow + b];
                            }
                        }
                    }
                }
            }
        }
    }

    /// `y = conv(x)` (no bias) for `batch` samples stored contiguously.
    fn forward<T: Real>(&self, x: &[T], weight: &Array4<T>, y: &mut [T]) {
        let (isz, osz) = (self.c_in * self.h * self.w, self.c_out * self.oh * self.ow);
        let cg_out = self.c_out / self.groups;
        let k = (self.c_in / self.groups) * self.kh * self.kw;
        let w2 = weight
            .view()
            .into_shape_with_order((self.c_out, k))
            .expect("weight is standard layout");
        y.par_chunks_mut(osz).zip(x.par_chunks(isz)).for_each_init(
            || Array2::<T>::zeros((k, self.oh * self.ow)),
            |cols, (yo, xi)| {
                for g in 0..self.groups {
                    self.im2col(xi, g, cols);
                    let wg = w2.slice(s![g * cg_out..(g + 1) * cg_out, ..]);
                    let out = wg.dot(&*cols);
                    let dst =
                        &mut yo[g * cg_out * self.oh * self.ow..][..cg_out * self.oh * self.ow];
                    for (d, v) in dst.iter_mut().zip(out.iter()) {
                        *d = *v;
                    }
                }
            },
        );
    }

    /// `x̄ = convᵀ(ȳ)`: the input-gradient of the convolution (also the forward map of ConvTranspose).
    fn backward_data<T: Real>(&self, gy: &[T], weight: &Array4<T>, gx: &mut [T]) {
        let (isz, osz) = (self.c_in * self.h * self.w, self.c_out * self.oh * self.ow);
        let cg_out = self.c_out / self.groups;
        let k = (self.c_in / self.groups) * self.kh * self.kw;
        let w2 = weight
            .view()
            .into_shape_with_order((self.c_out, k))
            .expect("weight is standard layout");
        gx.par_chunks_mut(isz)
            .zip(gy.par_chunks(osz))
            .for_each(|(gxi, gyo)| {
                gxi.fill(T::zero());
                for g in 0..self.groups {
                    let wg = w2.slice(s![g * cg_out..(g + 1) * cg_out, ..]);
                    let gyg = ArrayView2::from_shape(
                        (cg_out, self.oh * self.ow),
                        &gyo[g * cg_out * self.oh * self.ow..][..cg_out * self.oh * self.ow],
                    )
                    .expect("sizes agree");
                    let cols = wg.t().dot(&gyg);
                    self.col2im(&cols, g, gxi);
                }
            });
    }
}

fn chw(shape: &[usize]) -> (usize, usize, usize) {
    let r = shape.len();
    (shape[r - 3], shape[r - 2], shape[r - 1])
}

fn conv_geom(c: &Conv, in_shape: &[usize], out_shape: &[usize]) -> ConvGeom {
    let (c_in, h, w) = chw(in_shape);
    let (c_out, oh, ow) = chw(out_shape);
    let [_, _, kh, kw] = c.weight.shape().try_into().expect("4-D weight");
    ConvGeom {
        c_in,
        h,
        w,
        c_out,
        oh,
        ow,
        kh,
        kw,
        stride: c.strides,
        pad: [c.pads[0], c.pads[1]],
        dil: c.dilations,
        groups: c.groups,
    }
}

/// A ConvTranspose from `[C_in, H, W]` to `[C_out, OH, OW]` is the data-gradient of a convolution from
/// `[C_out, OH, OW]` to `[C_in, H, W]` with the same weight tensor read as `[C_in(conv out), C_out/g, kH, kW]`.
fn conv_transpose_geom(c: &ConvTranspose, in_shape: &[usize], out_shape: &[usize]) -> ConvGeom {
    let (c_in, h, w) = chw(in_shape);
    let (c_out, oh, ow) = chw(out_shape);
    let [_, _, kh, kw] = c.weight.shape().try_into().expect("4-D weight");
    ConvGeom {
        c_in: c_out,
        h: oh,
        w: ow,
        c_out: c_in,
        oh: h,
        ow: w,
        kh,
        kw,
        stride: c.strides,
        pad: [c.pads[0], c.pads[1]],
        dil: c.dilations,
        groups: c.groups,
    }
}

/// Calls `f(out_index, in_index)` for every in-bounds element of every pooling window (per channel plane).
fn for_each_window(
    p: &Pool,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>),
) {
    for a in 0..oh {
        for b in 0..ow {
            let mut it = (0..p.kernel[0]).flat_map(move |ki| {
                (0..p.kernel[1]).filter_map(move |kj| {
                    let i = ConvGeom::src(a, ki, p.strides[0], p.pads[0], p.dilations[0], h)?;
                    let j = ConvGeom::src(b, kj, p.strides[1], p.pads[1], p.dilations[1], w)?;
                    Some(i * w + j)
                })
            });
            f(a * ow + b, &mut it);
        }
    }
}

/// The windows of a pooling op from `in_shape` to `out_shape` (per-sample `[.., C, H, W]`): for every output
/// element (row-major over channels and positions), the row-major indices of the in-bounds input elements it
/// pools. Bound propagation reads them to relax max-pooling.
pub fn pool_windows(p: &Pool, in_shape: &[usize], out_shape: &[usize]) -> Vec<Vec<usize>> {
    let (_, h, w) = chw(in_shape);
    let (_, oh, ow) = chw(out_shape);
    let planes = in_shape.iter().product::<usize>() / (h * w).max(1);
    let mut plane = vec![Vec::new(); oh * ow];
    for_each_window(p, (h, w), (oh, ow), |o, it| plane[o] = it.collect());
    (0..planes)
        .flat_map(|ch| {
            plane
                .iter()
                .map(move |win| win.iter().map(|&i| ch * h * w + i).collect())
        })
        .collect()
}

/// Number of window positions inside the *padded* input (ONNX's divisor with `count_include_pad`): a ceil-mode
/// window that runs past the padding does not count the positions beyond it.
fn padded_window_size<T: Real>(p: &Pool, (h, w): (usize, usize), (a, b): (usize, usize)) -> T {
    let count = |o: usize, axis: usize, size: usize| {
        let extent = size + p.pads[axis] + p.pads[axis + 2];
        (0..p.kernel[axis])
            .filter(|k| o * p.strides[axis] + k * p.dilations[axis] < extent)
            .count()
    };
    T::from_f64((count(a, 0, h) * count(b, 1, w)).max(1) as f64)
}

/// Index lists selecting a slice's elements, per axis.
fn slice_indices(axes: &[SliceAxis], out_shape: &[usize]) -> Vec<Vec<usize>> {
    axes.iter()
        .zip(out_shape)
        .map(|(ax, &n)| {
            (0..n)
                .map(|i| (ax.start as isize + i as isize * ax.step) as usize)
                .collect()
        })
        .collect()
}

/// Sums `g` (of a broadcast result's shape) down to `shape` (numpy broadcasting, trailing-aligned).
fn unbroadcast<T: Real>(g: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    let mut r = g.clone();
    while r.ndim() > shape.len() {
        r = r.sum_axis(Axis(0));
    }
    for (ax, &d) in shape.iter().enumerate() {
        if d == 1 && r.shape()[ax] != 1 {
            r = r.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    r
}

impl<'g, T: Real> Evaluator<'g, T> {
    /// Prepares `graph` for evaluation in `T` (weights converted once).
    pub fn new(graph: &'g Graph) -> Self {
        let params = graph
            .nodes()
            .iter()
            .map(|n| match &n.op {
                Op::Linear(l) => Params::Linear {
                    // Row-major [in, out], so that products come out row-major too.
                    weight_t: l.weight.t().as_standard_layout().mapv(T::from_f32),
                    bias: l.bias.as_ref().map(conv_arr),
                },
                Op::Conv(c) => Params::Conv {
                    weight: conv_arr(&c.weight),
                    bias: c.bias.as_ref().map(conv_arr),
                },
                Op::ConvTranspose(c) => Params::Conv {
                    weight: conv_arr(&c.weight),
                    bias: c.bias.as_ref().map(conv_arr),
                },
                Op::Affine { scale, shift } => Params::Affine {
                    scale: scale.as_ref().map(conv_arr),
                    shift: shift.as_ref().map(conv_arr),
                },
                Op::Constant(c) => Params::Constant(conv_arr(c)),
                _ => Params::None,
            })
            .collect();
        Evaluator { graph, params }
    }

    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    fn input_array(&self, x: ArrayView2<'_, T>) -> Result<ArrayD<T>, ModelError> {
        let shape = &self.graph.input().shape;
        let expected = self.graph.input_size();
        if x.ncols() != expected {
            return Err(ModelError::InputSize {
                got: x.ncols(),
                expected,
                shape: shape.clone(),
            });
        }
        let mut full = vec![x.nrows()];
        full.extend(shape);
        Ok(x.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&full))
            .expect("sizes checked"))
    }

    /// Evaluates `x` (`[N, input_size]`) to `[N, output_size]`, freeing activations as soon as they are used.
    pub fn forward(&self, x: ArrayView2<'_, T>) -> Result<Array2<T>, ModelError> {
        let n = x.nrows();
        let nodes = self.graph.nodes();
        let mut remaining = self.graph.use_counts();
        let mut acts: Vec<Option<ArrayD<T>>> = vec![None; nodes.len()];
        acts[0] = Some(self.input_array(x)?);
        for i in 1..nodes.len() {
            let ins: Vec<&ArrayD<T>> = nodes[i]
                .inputs
                .iter()
                .map(|j| acts[j.0].as_ref().expect("operands computed before use"))
                .collect();
            let y = self.node_forward(i, &ins, n);
            for j in &nodes[i].inputs {
                remaining[j.0] -= 1;
                if remaining[j.0] == 0 {
                    acts[j.0] = None;
                }
            }
            acts[i] = Some(y);
        }
        let out = acts[self.graph.output_id().0]
            .take()
            .expect("output computed");
        let m = self.graph.output_size();
        Ok(out.into_shape_with_order((n, m)).expect("standard layout"))
    }

    /// Evaluates `x` keeping every activation, for [`Self::backward`].
    pub fn trace(&self, x: ArrayView2<'_, T>) -> Result<Trace<T>, ModelError> {
        let n = x.nrows();
        let nodes = self.graph.nodes();
        let mut acts: Vec<ArrayD<T>> = Vec::with_capacity(nodes.len());
        acts.push(self.input_array(x)?);
        for (i, node) in nodes.iter().enumerate().skip(1) {
            let ins: Vec<&ArrayD<T>> = node.inputs.iter().map(|j| &acts[j.0]).collect();
            let y = self.node_forward(i, &ins, n);
            acts.push(y);
        }
        Ok(Trace {
            acts,
            output: self.graph.output_id().0,
        })
    }

    /// Vector–Jacobian product: given `cotangent` = ∂L/∂y (`[N, output_size]`) at the traced point, returns
    /// ∂L/∂x (`[N, input_size]`). Non-differentiable points take the usual one-sided choice (ReLU'(0) = 0).
    pub fn backward(&self, trace: &Trace<T>, cotangent: ArrayView2<'_, T>) -> Array2<T> {
        let nodes = self.graph.nodes();
        let n = trace.acts[0].shape()[0];
        let mut grads: Vec<Option<ArrayD<T>>> = vec![None; nodes.len()];
        let out_shape = trace.acts[trace.output].raw_dim();
        grads[trace.output] = Some(
            cotangent
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(out_shape)
                .expect("cotangent has the output's size"),
        );
        for i in (1..nodes.len()).rev() {
            let Some(g) = grads[i].take() else { continue };
            let ins: Vec<&ArrayD<T>> = nodes[i].inputs.iter().map(|j| &trace.acts[j.0]).collect();
            let gin = self.node_backward(i, &ins, &trace.acts[i], g);
            for (j, gj) in nodes[i].inputs.iter().zip(gin) {
                match &mut grads[j.0] {
                    Some(acc) => *acc += &gj,
                    slot @ None => *slot = Some(gj),
                }
            }
        }
        let m = self.graph.input_size();
        match grads[0].take() {
            Some(g) => g.into_shape_with_order((n, m)).expect("standard layout"),
            None => Array2::zeros((n, m)),
        }
    }

    fn batched_shape(&self, node: usize, n: usize) -> Vec<usize> {
        let mut s = vec![n];
        s.extend(&self.graph.nodes()[node].shape);
        s
    }

    /// Forward map of node `i` on a batch of `n` samples: `ins` are its operands, each `[n, shape...]`.
    /// Bound propagation uses it to push centres and radii through affine nodes.
    pub fn node_forward(&self, i: usize, ins: &[&ArrayD<T>], n: usize) -> ArrayD<T> {
        let node = &self.graph.nodes()[i];
        let out_shape = self.batched_shape(i, n);
        let y = match (&node.op, &self.params[i]) {
            (Op::Input, _) => unreachable!("input is node 0"),
            (Op::Constant(_), Params::Constant(c)) => c
                .broadcast(IxDyn(&out_shape))
                .expect("constant broadcast over the batch")
                .to_owned(),
            (Op::Linear(_), Params::Linear { weight_t, bias }) => {
                let x = ins[0];
                let k = weight_t.nrows();
                let x2 = x
                    .view()
                    .into_shape_with_order((x.len() / k, k))
                    .expect("standard layout");
                let mut y = x2.dot(weight_t);
                if let Some(b) = bias {
                    y += b;
                }
                into_shape_std(y, &out_shape)
            }
            (Op::Conv(c), Params::Conv { weight, bias }) => {
                let geom = conv_geom(c, &ins[0].shape()[1..], &node.shape);
                let mut y = ArrayD::zeros(IxDyn(&out_shape));
                geom.forward(
                    ins[0].as_slice().expect("standard layout"),
                    weight,
                    y.as_slice_mut().expect("standard layout"),
                );
                add_channel_bias(&mut y, bias.as_ref());
                y
            }
            (Op::ConvTranspose(c), Params::Conv { weight, bias }) => {
                let geom = conv_transpose_geom(c, &ins[0].shape()[1..], &node.shape);
                let mut y = ArrayD::zeros(IxDyn(&out_shape));
                geom.backward_data(
                    ins[0].as_slice().expect("standard layout"),
                    weight,
                    y.as_slice_mut().expect("standard layout"),
                );
                add_channel_bias(&mut y, bias.as_ref());
                y
            }
            (Op::Affine { .. }, Params::Affine { scale, shift }) => {
                let mut y = ins[0].clone();
                if let Some(s) = scale {
                    y *= s;
                }
                if let Some(b) = shift {
                    y += b;
                }
                y
            }
            (Op::Add, _) => ins[0] + ins[1],
            (Op::Sub, _) => ins[0] - ins[1],
            (Op::Relu, _) => ins[0].mapv(|v| if v > T::zero() { v } else { T::zero() }),
            (Op::LeakyRelu { alpha }, _) => {
                let a = T::from_f32(*alpha);
                ins[0].mapv(|v| if v > T::zero() { v } else { a * v })
            }
            (Op::Sigmoid, _) => ins[0].mapv(sigmoid),
            (Op::Tanh, _) => ins[0].mapv(|v| v.tanh()),
            (Op::Clip { min, max }, _) => {
                let (lo, hi) = (T::from_f32(*min), T::from_f32(*max));
                ins[0].mapv(|v| v.max(lo).min(hi))
            }
            (Op::Softmax { axis }, _) => {
                let mut y = ins[0].clone();
                for mut lane in y.lanes_mut(Axis(axis + 1)) {
                    let m = lane.fold(T::neg_infinity(), |a, &b| a.max(b));
                    lane.mapv_inplace(|v| (v - m).exp());
                    let s = lane.sum();
                    lane.mapv_inplace(|v| v / s);
                }
                y
            }
            (Op::MaxPool(p), _) => self.pool(ins[0], &out_shape, p, None),
            (
                Op::AveragePool {
                    pool,
                    count_include_pad,
                },
                _,
            ) => self.pool(ins[0], &out_shape, pool, Some(*count_include_pad)),
            (Op::GlobalAveragePool, _) => {
                let r = ins[0].ndim();
                let hw = T::from_f64((ins[0].shape()[r - 1] * ins[0].shape()[r - 2]) as f64);
                ins[0]
                    .sum_axis(Axis(r - 1))
                    .sum_axis(Axis(r - 2))
                    .mapv(|v| v / hw)
                    .into_shape_with_order(IxDyn(&out_shape))
                    .expect("sizes agree")
            }
            (Op::Pad { pads, value }, _) => {
                let mut y = ArrayD::from_elem(IxDyn(&out_shape), T::from_f32(*value));
                let mut view = y.view_mut();
                for (ax, (b, _)) in pads.iter().enumerate() {
                    let len = ins[0].shape()[ax + 1];
                    view.slice_axis_inplace(Axis(ax + 1), (*b..b + len).into());
                }
                view.assign(ins[0]);
                y
            }
            (Op::Reshape, _) => ins[0]
                .clone()
                .into_shape_with_order(IxDyn(&out_shape))
                .expect("sizes agree"),
            (Op::Transpose { perm }, _) => {
                let mut p = vec![0];
                p.extend(perm.iter().map(|a| a + 1));
                ins[0]
                    .view()
                    .permuted_axes(IxDyn(&p))
                    .as_standard_layout()
                    .into_owned()
            }
            (Op::Concat { axis }, _) => {
                let views: Vec<ArrayViewD<T>> = ins.iter().map(|a| a.view()).collect();
                ndarray::concatenate(Axis(axis + 1), &views)
                    .expect("shapes checked at build")
                    .as_standard_layout()
                    .into_owned()
            }
            (Op::Slice { axes }, _) => {
                let idx = slice_indices(axes, &node.shape);
                let mut y = ins[0].clone();
                for (ax, (sa, ix)) in axes.iter().zip(&idx).enumerate() {
                    let identity = sa.start == 0 && sa.step == 1 && ix.len() == y.shape()[ax + 1];
                    if !identity {
                        y = y.select(Axis(ax + 1), ix);
                    }
                }
                y
            }
            (Op::Gather { axis, indices }, _) => ins[0].select(Axis(axis + 1), indices),
            (op, _) => unreachable!("parameters prepared for {}", op.kind()),
        };
        debug_assert_eq!(y.shape(), &out_shape[..], "node {}", node.name);
        // Every activation is kept row-major: reshapes and flat views rely on it.
        if y.is_standard_layout() {
            y
        } else {
            y.as_standard_layout().into_owned()
        }
    }

    fn pool(
        &self,
        x: &ArrayD<T>,
        out_shape: &[usize],
        p: &Pool,
        average: Option<bool>,
    ) -> ArrayD<T> {
        let (_, h, w) = chw(x.shape());
        let (_, oh, ow) = chw(out_shape);
        let mut y = ArrayD::zeros(IxDyn(out_shape));
        let xs = x.as_slice().expect("standard layout");
        let ys = y.as_slice_mut().expect("standard layout");
        for (yp, xp) in ys.chunks_mut(oh * ow).zip(xs.chunks(h * w)) {
            for_each_window(p, (h, w), (oh, ow), |o, it| {
                yp[o] = match average {
                    None => it.map(|i| xp[i]).fold(T::neg_infinity(), T::max),
                    Some(include_pad) => {
                        let (mut s, mut c) = (T::zero(), 0usize);
                        for i in it {
                            s += xp[i];
                            c += 1;
                        }
                        s / if include_pad {
                            padded_window_size(p, (h, w), (o / ow, o % ow))
                        } else {
                            T::from_f64(c.max(1) as f64)
                        }
                    }
                }
            });
        }
        y
    }

    /// Gradients w.r.t. each variable operand of node `i`, given the gradient `g` of its output `y` (the
    /// node's output at the operands `ins`). For affine nodes this is the transpose map, which backward bound
    /// propagation applies to its rows of coefficients (the batch axis then indexes rows, `ins`/`y` only give shapes).
    pub fn node_backward(
        &self,
        i: usize,
        ins: &[&ArrayD<T>],
        y: &ArrayD<T>,
        g: ArrayD<T>,
    ) -> Vec<ArrayD<T>> {
        let node = &self.graph.nodes()[i];
        let zero = T::zero();
        match (&node.op, &self.params[i]) {
            (Op::Input | Op::Constant(_), _) => vec![],
            (Op::Linear(_), Params::Linear { weight_t, .. }) => {
                let (k, m) = weight_t.dim();
                let g2 = g
                    .view()
                    .into_shape_with_order((g.len() / m, m))
                    .expect("standard layout");
                debug_assert_eq!(k, ins[0].shape()[ins[0].ndim() - 1]);
                vec![into_shape_std(g2.dot(&weight_t.t()), ins[0].shape())]
            }
            (Op::Conv(c), Params::Conv { weight, .. }) => {
                let geom = conv_geom(c, &ins[0].shape()[1..], &node.shape);
                let mut gx = ArrayD::zeros(ins[0].raw_dim());
                geom.backward_data(
                    g.as_slice().expect("standard layout"),
                    weight,
                    gx.as_slice_mut().expect("standard layout"),
                );
                vec![gx]
            }
            (Op::ConvTranspose(c), Params::Conv { weight, .. }) => {
                let geom = conv_transpose_geom(c, &ins[0].shape()[1..], &node.shape);
                let mut gx = ArrayD::zeros(ins[0].raw_dim());
                geom.forward(
                    g.as_slice().expect("standard layout"),
                    weight,
                    gx.as_slice_mut().expect("standard layout"),
                );
                vec![gx]
            }
            (Op::Affine { .. }, Params::Affine { scale, .. }) => match scale {
                Some(s) => vec![g * s],
                None => vec![g],
            },
            (Op::Add, _) => vec![g.clone(), g],
            (Op::Sub, _) => vec![g.clone(), -g],
            (Op::Relu, _) => {
                let mut g = g;
                Zip::from(&mut g)
                    .and(ins[0])
                    .for_each(|g, &x| *g = if x > zero { *g } else { zero });
                vec![g]
            }
            (Op::LeakyRelu { alpha }, _) => {
                let a = T::from_f32(*alpha);
                let mut g = g;
                Zip::from(&mut g)
                    .and(ins[0])
                    .for_each(|g, &x| *g = if x > zero { *g } else { a * *g });
                vec![g]
            }
            (Op::Sigmoid, _) => {
                let mut g = g;
                Zip::from(&mut g)
                    .and(y)
                    .for_each(|g, &s| *g = *g * s * (T::one() - s));
                vec![g]
            }
            (Op::Tanh, _) => {
                let mut g = g;
                Zip::from(&mut g)
                    .and(y)
                    .for_each(|g, &t| *g *= T::one() - t * t);
                vec![g]
            }
            (Op::Clip { min, max }, _) => {
                let (lo, hi) = (T::from_f32(*min), T::from_f32(*max));
                let mut g = g;
                Zip::from(&mut g).and(ins[0]).for_each(|g, &x| {
                    if x < lo || x > hi {
                        *g = zero
                    }
                });
                vec![g]
            }
            (Op::Softmax { axis }, _) => {
                // x̄ = s ⊙ (ȳ − ⟨ȳ, s⟩) along the axis.
                let mut g = g;
                for (mut gl, sl) in g
                    .lanes_mut(Axis(axis + 1))
                    .into_iter()
                    .zip(y.lanes(Axis(axis + 1)))
                {
                    let dot = gl.iter().zip(sl.iter()).map(|(&a, &b)| a * b).sum::<T>();
                    Zip::from(&mut gl)
                        .and(&sl)
                        .for_each(|g, &s| *g = s * (*g - dot));
                }
                vec![g]
            }
            (Op::MaxPool(p), _) | (Op::AveragePool { pool: p, .. }, _) => {
                let average = match &node.op {
                    Op::AveragePool {
                        count_include_pad, ..
                    } => Some(*count_include_pad),
                    _ => None,
                };
                let x = ins[0];
                let (_, h, w) = chw(x.shape());
                let (_, oh, ow) = chw(g.shape());
                let mut gx = ArrayD::zeros(x.raw_dim());
                let xs = x.as_slice().expect("standard layout");
                let gs = g.as_slice().expect("standard layout");
                let gxs = gx.as_slice_mut().expect("standard layout");
                for ((gxp, xp), gp) in gxs
                    .chunks_mut(h * w)
                    .zip(xs.chunks(h * w))
                    .zip(gs.chunks(oh * ow))
                {
                    for_each_window(p, (h, w), (oh, ow), |o, it| match average {
                        None => {
                            // The gradient goes to the first maximal element (as the usual frameworks do).
                            let mut best: Option<usize> = None;
                            for k in it {
                                if best.is_none_or(|b| xp[k] > xp[b]) {
                                    best = Some(k);
                                }
                            }
                            if let Some(b) = best {
                                gxp[b] += gp[o];
                            }
                        }
                        Some(include_pad) => {
                            let idx: Vec<usize> = it.collect();
                            let d = if include_pad {
                                padded_window_size(p, (h, w), (o / ow, o % ow))
                            } else {
                                T::from_f64(idx.len().max(1) as f64)
                            };
                            for k in idx {
                                gxp[k] += gp[o] / d;
                            }
                        }
                    });
                }
                vec![gx]
            }
            (Op::GlobalAveragePool, _) => {
                let r = ins[0].ndim();
                let hw = T::from_f64((ins[0].shape()[r - 1] * ins[0].shape()[r - 2]) as f64);
                let gs = g.mapv(|v| v / hw);
                vec![
                    gs.broadcast(ins[0].raw_dim())
                        .expect("[.., C, 1, 1] broadcasts")
                        .to_owned(),
                ]
            }
            (Op::Pad { pads, .. }, _) => {
                let mut v = g.view();
                for (ax, (b, _)) in pads.iter().enumerate() {
                    let len = ins[0].shape()[ax + 1];
                    v.slice_axis_inplace(Axis(ax + 1), (*b..b + len).into());
                }
                vec![v.as_standard_layout().into_owned()]
            }
            (Op::Reshape, _) => vec![
                g.into_shape_with_order(ins[0].raw_dim())
                    .expect("sizes agree"),
            ],
            (Op::Transpose { perm }, _) => {
                let mut inv = vec![0; perm.len() + 1];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p + 1] = i + 1;
                }
                vec![
                    g.view()
                        .permuted_axes(IxDyn(&inv))
                        .as_standard_layout()
                        .into_owned(),
                ]
            }
            (Op::Concat { axis }, _) => {
                let mut start = 0;
                ins.iter()
                    .map(|a| {
                        let len = a.shape()[axis + 1];
                        let part = g
                            .slice_axis(Axis(axis + 1), (start..start + len).into())
                            .as_standard_layout()
                            .into_owned();
                        start += len;
                        part
                    })
                    .collect()
            }
            (Op::Slice { axes }, _) => {
                // Scatter back one axis at a time (the reverse of the forward's per-axis selection).
                let idx = slice_indices(axes, &node.shape);
                let in_shape = ins[0].shape();
                let mut cur = g;
                for ax in (0..axes.len()).rev() {
                    let sa = axes[ax];
                    let identity =
                        sa.start == 0 && sa.step == 1 && idx[ax].len() == in_shape[ax + 1];
                    if !identity {
                        cur = scatter_axis(&cur, ax + 1, &idx[ax], in_shape[ax + 1]);
                    }
                }
                vec![cur]
            }
            (Op::Gather { axis, indices }, _) => vec![scatter_axis(
                &g,
                axis + 1,
                indices,
                ins[0].shape()[axis + 1],
            )],
            (op, _) => unreachable!("parameters prepared for {}", op.kind()),
        }
        .into_iter()
        .zip(ins)
        .map(|(gx, x)| {
            if gx.shape() == x.shape() {
                gx
            } else {
                unbroadcast(&gx, x.shape())
            }
        })
        .collect()
    }
}

/// Reshapes a matrix product to `shape`. Products of thin matrices may come out column-major (ndarray picks
/// column-major when both factors are, which a single row or column is), so the layout is normalized first.
fn into_shape_std<T: Real>(y: Array2<T>, shape: &[usize]) -> ArrayD<T> {
    let y = if y.is_standard_layout() {
        y
    } else {
        y.as_standard_layout().into_owned()
    };
    y.into_shape_with_order(IxDyn(shape)).expect("sizes agree")
}

/// The adjoint of `select(axis, idx)`: a zero array with `len` entries on `axis`, `g`'s slices added at `idx`.
fn scatter_axis<T: Real>(g: &ArrayD<T>, axis: usize, idx: &[usize], len: usize) -> ArrayD<T> {
    let mut shape = g.shape().to_vec();
    shape[axis] = len;
    let mut out = ArrayD::zeros(IxDyn(&shape));
    for (k, &i) in idx.iter().enumerate() {
        let mut dst = out.index_axis_mut(Axis(axis), i);
        dst += &g.index_axis(Axis(axis), k);
    }
    out
}

fn add_channel_bias<T: Real>(y: &mut ArrayD<T>, bias: Option<&Array1<T>>) {
    if let Some(b) = bias {
        // y: [N, .., C, H, W]; broadcast b as [C, 1, 1].
        let b3 = b
            .view()
            .into_shape_with_order((b.len(), 1, 1))
            .expect("1-D bias");
        *y += &b3;
    }
}

fn sigmoid<T: Real>(v: T) -> T {
    // Written so that neither branch overflows.
    if v >= T::zero() {
        T::one() / (T::one() + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::one() + e)
    }
}
