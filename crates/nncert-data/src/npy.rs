//! `.npy` and `.npz` reading: float32/float64/uint8/int64 (and the other plain integer types), C order.

use crate::DataError;
use npyz::{DType, NpyFile, Order, TypeChar};
use std::io::Read;
use std::path::Path;

/// An n-d array read from a file, converted to f32 (values of integer types up to 2^24 are exact).
#[derive(Clone, Debug, PartialEq)]
pub struct RawArray {
    /// The array's shape, first axis = samples.
    pub shape: Vec<usize>,
    /// The values in C (row-major) order.
    pub values: Vec<f32>,
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<RawArray, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_npy_bytes(&bytes, path, "")
}

/// Reads `.npy` bytes; `path` and `what` only name the source in errors.
pub fn read_npy_bytes(bytes: &[u8], path: &Path, what: &str) -> Result<RawArray, DataError> {
    let fmt = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message: format!("{what}{message}"),
    };
    let npy = NpyFile::new(bytes).map_err(|e| fmt(format!("not a valid .npy array ({e})")))?;
    if npy.order() == Order::Fortran {
        return Err(fmt(
            "array is in Fortran order; save it in C order (numpy.ascontiguousarray)".into(),
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let DType::Plain(ts) = npy.dtype() else {
        return Err(fmt(format!(
            "dtype {} is not supported (use float32, float64, uint8 or int64)",
            npy.dtype().descr()
        )));
    };
    let rd = |e: std::io::Error| fmt(format!("cannot read data ({e})"));
    let values: Vec<f32> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => npy.into_vec::<f32>().map_err(rd)?,
        (TypeChar::Float, 8) => conv(npy.into_vec::<f64>().map_err(rd)?, |v| v as f32),
        (TypeChar::Uint, 1) => conv(npy.into_vec::<u8>().map_err(rd)?, f32::from),
        (TypeChar::Uint, 2) => conv(npy.into_vec::<u16>().map_err(rd)?, f32::from),
        (TypeChar::Uint, 4) => conv(npy.into_vec::<u32>().map_err(rd)?, |v| v as f32),
        (TypeChar::Uint, 8) => conv(npy.into_vec::<u64>().map_err(rd)?, |v| v as f32),
        (TypeChar::Int, 1) => conv(npy.into_vec::<i8>().map_err(rd)?, f32::from),
        (TypeChar::Int, 2) => conv(npy.into_vec::<i16>().map_err(rd)?, f32::from),
        (TypeChar::Int, 4) => conv(npy.into_vec::<i32>().map_err(rd)?, |v| v as f32),
        (TypeChar::Int, 8) => conv(npy.into_vec::<i64>().map_err(rd)?, |v| v as f32),
        (TypeChar::Bool, 1) => conv(npy.into_vec::<bool>().map_err(rd)?, |v| v as u8 as f32),
        _ => {
            return Err(fmt(format!(
                "dtype {} is not supported (use float32, float64, uint8 or int64)",
                ts
            )));
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(fmt(format!(
            "value {} at flat index {i} is not finite (NaN or infinite); impute or drop it first",
            values[i]
        )));
    }
    Ok(RawArray { shape, values })
}

fn conv<T: Copy>(v: Vec<T>, f: impl Fn(T) -> f32) -> Vec<f32> {
    v.into_iter().map(f).collect()
}

/// Reads array `key` of a `.npz` archive (stored or deflate-compressed, as `numpy.savez[_compressed]` writes).
/// Without a key: `default_key`, else the archive's only array.
pub fn read_npz(path: &Path, key: Option<&str>, default_key: &str) -> Result<RawArray, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let fmt = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fmt(format!("not a valid .npz (zip) archive ({e})")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| {
            n.ok()
                .and_then(|n| n.strip_suffix(".npy").map(str::to_string))
        })
        .collect();
    let name = match key {
        Some(k) => k.to_string(),
        None if names.iter().any(|n| n == default_key) => default_key.to_string(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(fmt(format!(
                "no array named '{default_key}' among {names:?}; name one as `{}:NAME`",
                path.display()
            )));
        }
    };
    let mut entry = zip
        .by_name(&format!("{name}.npy"))
        .map_err(|_| fmt(format!("no array named '{name}' (arrays: {names:?})")))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| fmt(format!("cannot decompress array '{name}' ({e})")))?;
    read_npy_bytes(&bytes, path, &format!("array '{name}': "))
}
