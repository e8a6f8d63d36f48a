//! Constant tensors of an ONNX model: decoding `TensorProto`s and evaluating the shape-arithmetic ops on
//! constants at load time (PyTorch's exports compute reshape targets with Shape → Gather → Concat chains; the
//! shapes are static here, so all of that folds to constants).
//!
//! Two element types are enough: every float type becomes f32 (weights are f32 in the IR) and every integer or
//! boolean type becomes i64 (shapes, indices, axes).

use super::proto::{DATA_LOCATION_EXTERNAL, TensorProto, data_type};
use ndarray::{ArrayD, Axis, IxDyn, Zip};
use std::path::{Component, Path};

/// Largest number of elements of a constant nncert materializes. Larger ones come only from corrupt or hostile
/// models (a ConstantOfShape or a broadcast asking for petabytes), which must fail cleanly, not abort.
pub(crate) const MAX_NUMEL: usize = 1 << 28;

/// Largest number of elements of a constant nncert *computes* at load time (ConstantOfShape, Range, broadcasts,
/// Concat): these are shape arithmetic in real models, tiny; the bound keeps a hostile model from making the
/// loader allocate gigabytes out of a few bytes.
pub(crate) const MAX_COMPUTED_NUMEL: usize = 1 << 26;

/// A constant value: float (any ONNX float type) or integer (any ONNX integer or boolean type).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tensor {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

impl Tensor {
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// The values as f32 (integers converted).
    pub(crate) fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            Tensor::I64(a) => a.mapv(|v| v as f32),
        }
    }

    /// The values as integers. Float tensors are accepted when every value is integral (ONNX requires int64 for
    /// shapes and axes, but some converters write float constants).
    pub(crate) fn to_i64(&self) -> Result<ArrayD<i64>, String> {
        match self {
            Tensor::I64(a) => Ok(a.clone()),
            Tensor::F32(a) => {
                if a.iter().all(|v| v.fract() == 0.0 && v.abs() < 9.0e18) {
                    Ok(a.mapv(|v| v as i64))
                } else {
                    Err("expected an integer tensor, got non-integral float values".into())
                }
            }
        }
    }

    /// The values as a flat list of integers (for shapes, axes, pads, indices).
    pub(crate) fn to_i64_vec(&self) -> Result<Vec<i64>, String> {
        Ok(self.to_i64()?.iter().copied().collect())
    }

    /// The single value of a one-element tensor, as f32.
    pub(crate) fn scalar_f32(&self) -> Result<f32, String> {
        if self.len() != 1 {
            return Err(format!(
                "expected a single value, got a tensor of shape {:?}",
                self.shape()
            ));
        }
        Ok(self.to_f32().iter().next().copied().unwrap_or(0.0))
    }

    /// The single value of a one-element tensor, as i64.
    pub(crate) fn scalar_i64(&self) -> Result<i64, String> {
        let v = self.to_i64_vec()?;
        match v.as_slice() {
            [x] => Ok(*x),
            _ => Err(format!(
                "expected a single value, got a tensor of shape {:?}",
                self.shape()
            )),
        }
    }

    pub(crate) fn from_i64_vec(v: Vec<i64>) -> Tensor {
        let n = v.len();
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("1-D shape matches length"))
    }

    /// Applies a layout-only transformation (reshape, slice, gather, transpose...) to either element type.
    pub(crate) fn map_layout(
        &self,
        f32f: impl FnOnce(&ArrayD<f32>) -> Result<ArrayD<f32>, String>,
        i64f: impl FnOnce(&ArrayD<i64>) -> Result<ArrayD<i64>, String>,
    ) -> Result<Tensor, String> {
        Ok(match self {
            Tensor::F32(a) => Tensor::F32(f32f(a)?),
            Tensor::I64(a) => Tensor::I64(i64f(a)?),
        })
    }
}

/// `Π dims` with overflow and size checks.
pub(crate) fn checked_numel(dims: &[usize]) -> Result<usize, String> {
    let mut n: usize = 1;
    for &d in dims {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_NUMEL)
            .ok_or_else(|| format!("tensor of shape {dims:?} is too large"))?;
    }
    Ok(n)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as u32;
    match exp {
        0 => sign * (mant as f32) * (1.0 / 16_777_216.0), // subnormal: mant · 2⁻²⁴
        31 => {
            if mant == 0 {
                sign * f32::INFINITY
            } else {
                f32::NAN
            }
        }
        _ => f32::from_bits(
            (if sign < 0.0 { 1u32 << 31 } else { 0 }) | (((exp + 112) as u32) << 23) | (mant << 13),
        ),
    }
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Reads the bytes of externally stored tensor data (`data_location = EXTERNAL`), relative to `base_dir`.
fn read_external(t: &TensorProto, base_dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.as_str())
    };
    let location = get("location").ok_or("external data without a 'location'")?;
    let rel = Path::new(location);
    // Like onnxruntime, only files inside the model's directory may be read.
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "external data location '{location}' must be a relative path inside the model's directory"
        ));
    }
    let base = base_dir.ok_or("external data, but the model's directory is unknown")?;
    let file = base.join(rel);
    let parse = |k: &str| -> Result<Option<u64>, String> {
        get(k)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("external data {k} '{v}' is not a number"))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let length = parse("length")?;
    let bytes = std::fs::read(&file)
        .map_err(|e| format!("cannot read external data {}: {e}", file.display()))?;
    let start =
        usize::try_from(offset).map_err(|_| "external data offset too large".to_string())?;
    let end = match length {
        Some(l) => {
            start.checked_add(usize::try_from(l).map_err(|_| "external data length too large")?)
        }
        None => Some(bytes.len()),
    };
    match end {
        Some(end) if start <= end && end <= bytes.len() => Ok(bytes[start..end].to_vec()),
        _ => Err(format!(
            "external data offset {offset} / length {length:?} outside the file {} ({} bytes)",
            file.display(),
            bytes.len()
        )),
    }
}

/// Like [`checked_numel`], for constants computed at load time ([`MAX_COMPUTED_NUMEL`]).
pub(crate) fn checked_computed_numel(dims: &[usize]) -> Result<usize, String> {
    let n = checked_numel(dims)?;
    if n > MAX_COMPUTED_NUMEL {
        return Err(format!("computed constant of shape {dims:?} is too large"));
    }
    Ok(n)
}

/// Decodes a `TensorProto` (raw little-endian data, typed fields or external data).
pub(crate) fn decode(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor, String> {
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension in {:?}", t.dims));
        }
        dims.push(usize::try_from(d).map_err(|_| format!("dimension {d} too large"))?);
    }
    let n = checked_numel(&dims)?;
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let external;
    let raw: &[u8] = if t.data_location == DATA_LOCATION_EXTERNAL {
        external = read_external(t, base_dir)?;
        &external
    } else {
        &t.raw_data
    };
    let dt = t.data_type;
    let elem_size = match dt {
        data_type::FLOAT | data_type::INT32 | data_type::UINT32 => 4,
        data_type::DOUBLE | data_type::INT64 | data_type::UINT64 => 8,
        data_type::FLOAT16 | data_type::BFLOAT16 | data_type::INT16 | data_type::UINT16 => 2,
        data_type::INT8 | data_type::UINT8 | data_type::BOOL => 1,
        _ => {
            return Err(format!(
                "tensor data type {} is not supported",
                data_type::name(dt)
            ));
        }
    };
    let is_float = matches!(
        dt,
        data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16
    );
    let shape = IxDyn(&dims);
    let count_err = |got: usize| {
        format!(
            "{} values stored for a tensor of shape {dims:?} ({n} elements)",
            got
        )
    };
    if !raw.is_empty() || t.data_location == DATA_LOCATION_EXTERNAL {
        if raw.len() != n * elem_size {
            return Err(format!(
                "{} bytes of {} data for a tensor of shape {dims:?} ({n} elements)",
                raw.len(),
                data_type::name(dt)
            ));
        }
        let chunks = raw.chunks_exact(elem_size);
        if is_float {
            let v: Vec<f32> = match dt {
                data_type::FLOAT => chunks
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                data_type::DOUBLE => chunks
                    .map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                    })
                    .collect(),
                data_type::FLOAT16 => chunks
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                _ => chunks
                    .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            };
            return ArrayD::from_shape_vec(shape, v)
                .map(Tensor::F32)
                .map_err(|e| e.to_string());
        }
        let v: Vec<i64> = match dt {
            data_type::INT64 => chunks
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            data_type::UINT64 => chunks
                .map(|c| {
                    u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as i64
                })
                .collect(),
            data_type::INT32 => chunks
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            data_type::UINT32 => chunks
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            data_type::INT16 => chunks
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            data_type::UINT16 => chunks
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
            data_type::INT8 => chunks.map(|c| c[0] as i8 as i64).collect(),
            data_type::BOOL => chunks.map(|c| (c[0] != 0) as i64).collect(),
            _ => chunks.map(|c| c[0] as i64).collect(), // UINT8
        };
        return ArrayD::from_shape_vec(shape, v)
            .map(Tensor::I64)
            .map_err(|e| e.to_string());
    }
    // Typed fields.
    match dt {
        data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16 => {
            let v: Vec<f32> = match dt {
                data_type::FLOAT => t.float_data.clone(),
                data_type::DOUBLE => t.double_data.iter().map(|&x| x as f32).collect(),
                data_type::FLOAT16 => t.int32_data.iter().map(|&x| f16_to_f32(x as u16)).collect(),
                _ => t
                    .int32_data
                    .iter()
                    .map(|&x| bf16_to_f32(x as u16))
                    .collect(),
            };
            if v.len() != n {
                return Err(count_err(v.len()));
            }
            ArrayD::from_shape_vec(shape, v)
                .map(Tensor::F32)
                .map_err(|e| e.to_string())
        }
        _ => {
            let v: Vec<i64> = match dt {
                data_type::INT64 => t.int64_data.clone(),
                data_type::UINT64 | data_type::UINT32 => {
                    t.uint64_data.iter().map(|&x| x as i64).collect()
                }
                data_type::BOOL => t.int32_data.iter().map(|&x| (x != 0) as i64).collect(),
                _ => t.int32_data.iter().map(|&x| x as i64).collect(),
            };
            if v.len() != n {
                return Err(count_err(v.len()));
            }
            ArrayD::from_shape_vec(shape, v)
                .map(Tensor::I64)
                .map_err(|e| e.to_string())
        }
    }
}

/// Numpy broadcast of two shapes, `None` if incompatible.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// Elementwise binary op with numpy broadcasting.
fn zip_broadcast<A: Copy, B: Copy, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>, String> {
    let shape = broadcast_shape(a.shape(), b.shape()).ok_or_else(|| {
        format!(
            "shapes {:?} and {:?} do not broadcast",
            a.shape(),
            b.shape()
        )
    })?;
    checked_computed_numel(&shape)?;
    let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

/// The four arithmetic ops on constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a ∘ b` with broadcasting; integer if both are integers (division truncates, like onnxruntime), else float.
pub(crate) fn arith(op: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    match (a, b) {
        (Tensor::I64(x), Tensor::I64(y)) => {
            if op == Arith::Div && y.iter().any(|&v| v == 0) {
                return Err("integer division by zero".into());
            }
            zip_broadcast(x, y, |p, q| match op {
                Arith::Add => p.wrapping_add(q),
                Arith::Sub => p.wrapping_sub(q),
                Arith::Mul => p.wrapping_mul(q),
                Arith::Div => p.wrapping_div(q),
            })
            .map(Tensor::I64)
        }
        _ => zip_broadcast(&a.to_f32(), &b.to_f32(), |p, q| match op {
            Arith::Add => p + q,
            Arith::Sub => p - q,
            Arith::Mul => p * q,
            Arith::Div => p / q,
        })
        .map(Tensor::F32),
    }
}

/// `Equal` (result 0/1).
pub(crate) fn equal(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    match (a, b) {
        (Tensor::I64(x), Tensor::I64(y)) => {
            zip_broadcast(x, y, |p, q| (p == q) as i64).map(Tensor::I64)
        }
        _ => zip_broadcast(&a.to_f32(), &b.to_f32(), |p, q| (p == q) as i64).map(Tensor::I64),
    }
}

/// `Where(cond, a, b)` with broadcasting.
pub(crate) fn where_(c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    let c = c.to_i64()?;
    let ab_shape =
        broadcast_shape(a.shape(), b.shape()).ok_or("Where operands do not broadcast")?;
    let shape =
        broadcast_shape(c.shape(), &ab_shape).ok_or("Where condition does not broadcast")?;
    checked_computed_numel(&shape)?;
    let cv = c.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    fn pick<T: Copy>(
        cv: &ndarray::ArrayViewD<i64>,
        a: &ArrayD<T>,
        b: &ArrayD<T>,
        shape: &[usize],
    ) -> Result<ArrayD<T>, String> {
        let av = a.broadcast(IxDyn(shape)).ok_or("broadcast failed")?;
        let bv = b.broadcast(IxDyn(shape)).ok_or("broadcast failed")?;
        Ok(Zip::from(cv)
            .and(&av)
            .and(&bv)
            .map_collect(|&c, &x, &y| if c != 0 { x } else { y }))
    }
    match (a, b) {
        (Tensor::I64(x), Tensor::I64(y)) => pick(&cv, x, y, &shape).map(Tensor::I64),
        _ => pick(&cv, &a.to_f32(), &b.to_f32(), &shape).map(Tensor::F32),
    }
}

/// Reinterprets the elements (row-major) with a new shape of the same size.
pub(crate) fn reshape<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .map_err(|_| format!("cannot reshape {:?} to {shape:?}", a.shape()))
}

/// Selects `indices` (already non-negative and in range) along `axis`; the output has `index_shape` in place of
/// that axis.
pub(crate) fn gather<T: Clone>(
    a: &ArrayD<T>,
    axis: usize,
    indices: &[usize],
    index_shape: &[usize],
) -> Result<ArrayD<T>, String> {
    let sel = a.select(Axis(axis), indices);
    let mut shape = a.shape()[..axis].to_vec();
    shape.extend_from_slice(index_shape);
    shape.extend_from_slice(&a.shape()[axis + 1..]);
    reshape(&sel, &shape)
}

/// Strided selection: on axis `k`, output element `i` reads `start[k] + i·step[k]`, for `len[k]` elements.
pub(crate) fn strided<T: Clone>(a: &ArrayD<T>, axes: &[(usize, isize, usize)]) -> ArrayD<T> {
    let out: Vec<usize> = axes.iter().map(|a| a.2).collect();
    ArrayD::from_shape_fn(IxDyn(&out), |idx| {
        let src: Vec<usize> = (0..axes.len())
            .map(|k| (axes[k].0 as isize + idx[k] as isize * axes[k].1) as usize)
            .collect();
        a[IxDyn(&src)].clone()
    })
}

/// Permutes axes (`perm` already validated).
pub(crate) fn transpose<T: Clone>(a: &ArrayD<T>, perm: &[usize]) -> ArrayD<T> {
    a.clone()
        .permuted_axes(IxDyn(perm))
        .as_standard_layout()
        .into_owned()
}

/// Concatenates along `axis` (shapes checked by ndarray).
pub(crate) fn concat(ts: &[Tensor], axis: usize) -> Result<Tensor, String> {
    let err = |e: ndarray::ShapeError| format!("cannot concatenate: {e}");
    // ndarray asserts (panics) on an axis out of range for any operand.
    if ts.iter().any(|t| t.shape().len() <= axis) {
        return Err(format!(
            "concatenation axis {axis} out of range for an operand"
        ));
    }
    if ts.iter().all(|t| matches!(t, Tensor::I64(_))) {
        let arrs: Vec<ArrayD<i64>> = ts.iter().map(|t| t.to_i64()).collect::<Result<_, _>>()?;
        let views: Vec<_> = arrs.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(axis), &views)
            .map(Tensor::I64)
            .map_err(err)
    } else {
        let arrs: Vec<ArrayD<f32>> = ts.iter().map(|t| t.to_f32()).collect();
        let views: Vec<_> = arrs.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(axis), &views)
            .map(Tensor::F32)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversions() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_shape(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shape(&[2], &[3]), None);
        let a = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1, 2]).unwrap());
        let b = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![10, 20, 30]).unwrap());
        let c = arith(Arith::Mul, &a, &b).unwrap();
        assert_eq!(c.to_i64_vec().unwrap(), vec![10, 20, 30, 20, 40, 60]);
        assert!(arith(Arith::Div, &a, &Tensor::from_i64_vec(vec![0])).is_err());
    }

    #[test]
    fn decode_typed_and_raw() {
        let mut t = TensorProto {
            dims: vec![2],
            data_type: data_type::INT32,
            int32_data: vec![-3, 7],
            ..Default::default()
        };
        assert_eq!(decode(&t, None).unwrap().to_i64_vec().unwrap(), vec![-3, 7]);
        t.int32_data.clear();
        t.raw_data = [(-3i32).to_le_bytes(), 7i32.to_le_bytes()].concat();
        assert_eq!(decode(&t, None).unwrap().to_i64_vec().unwrap(), vec![-3, 7]);
        t.raw_data.pop();
        assert!(decode(&t, None).is_err());
        let d = TensorProto {
            dims: vec![1, 2],
            data_type: data_type::DOUBLE,
            double_data: vec![0.5, -1.25],
            ..Default::default()
        };
        assert_eq!(
            decode(&d, None)
                .unwrap()
                .to_f32()
                .into_raw_vec_and_offset()
                .0,
            vec![0.5, -1.25]
        );
        let huge = TensorProto {
            dims: vec![1 << 40, 1 << 40],
            data_type: data_type::FLOAT,
            ..Default::default()
        };
        assert!(decode(&huge, None).is_err());
    }
}
