//! # nncert-data
//!
//! Datasets for empirical and statistical robustness assessment: `.npy` / `.npz` arrays (float32, float64, uint8,
//! int64; C order), CSV files (feature columns and one label column, with or without a header) and folders of PNG
//! images (one sub-folder per class, classes in name order).
//!
//! Preprocessing is declared by the user, never guessed: a scale factor, per-channel mean and standard deviation,
//! the layout of the source images (NCHW or NHWC; the model is assumed to take NCHW, the ONNX convention) and the
//! valid input range, in the same units as the raw data after scaling. The range is mapped through the same
//! normalization, so attacks can clip each feature to what a real input could be.
//!
//! ```no_run
//! use nncert_data::{load, Preprocess, Source};
//! let pre = Preprocess { range: Some((0.0, 1.0)), ..Preprocess::default() };
//! let data = load(&Source::parse("x_test.npy"), Some(&Source::parse("y_test.npy")), &pre, Some(&[1, 8, 8]))?;
//! assert_eq!(data.x.nrows(), data.labels.len());
//! # Ok::<(), nncert_data::DataError>(())
//! ```

// Errors carry file names and positions for the user; they are rare and never on a hot path.
#![allow(clippy::result_large_err)]

mod csvfile;
mod npy;
mod png;

pub use npy::{RawArray, read_npy, read_npy_bytes, read_npz};

use ndarray::Array2;
use std::path::PathBuf;

/// Everything that can go wrong reading a dataset. Messages name the file and, where it helps, the line or entry.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not of the format its name claims, or that uses a feature nncert does not read.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// The samples' shape does not fit the model or the declared preprocessing.
    #[error("{path}: {message}")]
    Shape { path: PathBuf, message: String },
    /// Labels that are not class indices, or not one per sample.
    #[error("{path}: {message}")]
    Label { path: PathBuf, message: String },
    /// A preprocessing declaration that cannot be applied.
    #[error("invalid preprocessing: {0}")]
    Preprocess(String),
}

/// Layout of the channel axis in image data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Channels first (`[N, C, H, W]`), what PyTorch-exported ONNX models take.
    #[default]
    Nchw,
    /// Channels last (`[N, H, W, C]`); converted to NCHW when loaded.
    Nhwc,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            _ => Err(format!("unknown layout '{s}' (use nchw or nhwc)")),
        }
    }
}

/// Preprocessing declared by the user, applied in this order: `x * scale`, then `(x - mean[c]) / std[c]`.
#[derive(Clone, Debug)]
pub struct Preprocess {
    /// Multiply raw values by this (e.g. `1/255` for 8-bit images). `None`: 1, except PNG folders, read as 1/255.
    pub scale: Option<f32>,
    /// Per-channel mean (one value, or one per channel), subtracted after scaling.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (one value, or one per channel), divided by after subtracting the mean.
    pub std: Vec<f32>,
    /// Layout of the source data; NHWC is transposed to NCHW.
    pub layout: Layout,
    /// Valid input range after scaling and before normalization, e.g. `(0, 1)` for images. `None`: unbounded.
    pub range: Option<(f32, f32)>,
    /// Index of the label column of a CSV file (negative counts from the end). Default: the last column.
    pub label_column: isize,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            scale: None,
            mean: Vec::new(),
            std: Vec::new(),
            layout: Layout::Nchw,
            range: None,
            label_column: -1,
        }
    }
}

/// Where samples or labels come from: a file (`.npy`, `.npz`, `.csv`) or a folder of PNG images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The file or folder.
    pub path: PathBuf,
    /// For `.npz`: the array's name (`archive.npz:name`). `None`: `x` for samples, `y` for labels, or the only array.
    pub key: Option<String>,
}

impl Source {
    /// Parses `path` or `archive.npz:key`.
    pub fn parse(s: &str) -> Source {
        if let Some(idx) = s.to_ascii_lowercase().rfind(".npz:") {
            let (p, k) = s.split_at(idx + 4);
            return Source {
                path: PathBuf::from(p),
                key: Some(k[1..].to_string()),
            };
        }
        Source {
            path: PathBuf::from(s),
            key: None,
        }
    }

    fn ext(&self) -> Option<String> {
        self.path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}:{k}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// Samples with labels, in the model's input layout and units.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `[N, features]`: one flattened (row-major, NCHW for images) model input per row.
    pub x: Array2<f32>,
    /// One class index per sample.
    pub labels: Vec<usize>,
    /// The per-sample shape (`[C, H, W]` for images, `[features]` for tabular data).
    pub shape: Vec<usize>,
    /// Lowest valid value of each feature (model units); `-inf` where unbounded.
    pub lower: Vec<f32>,
    /// Highest valid value of each feature (model units); `+inf` where unbounded.
    pub upper: Vec<f32>,
    /// Where the samples came from, for messages and evidence.
    pub origin: String,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of features per sample.
    pub fn features(&self) -> usize {
        self.x.ncols()
    }

    /// Checks that the samples fit a model taking `input_size` values and giving `classes` scores.
    pub fn check_model(&self, input_size: usize, classes: usize) -> Result<(), DataError> {
        if self.features() != input_size {
            return Err(DataError::Shape {
                path: PathBuf::from(&self.origin),
                message: format!(
                    "samples have {} values (shape {:?}) but the model takes {input_size}",
                    self.features(),
                    self.shape
                ),
            });
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            return Err(DataError::Label {
                path: PathBuf::from(&self.origin),
                message: format!(
                    "label {l} of sample {i} is not a class of the model, which has {classes} outputs"
                ),
            });
        }
        Ok(())
    }
}

/// Loads samples (and labels, unless they come with the samples: CSV and PNG folders carry their own) and applies
/// the declared preprocessing. `model_shape` (the model's per-sample input shape) lets flat or NHWC arrays be
/// checked and laid out; without it the array's own trailing shape is kept.
pub fn load(
    data: &Source,
    labels: Option<&Source>,
    pre: &Preprocess,
    model_shape: Option<&[usize]>,
) -> Result<Dataset, DataError> {
    let is_dir = data.path.is_dir();
    let (mut raw, embedded_labels, default_scale) = if is_dir {
        let (raw, labels) = png::read_folder(&data.path)?;
        (raw, Some(labels), 1.0 / 255.0)
    } else {
        match data.ext().as_deref() {
            Some("csv") | Some("txt") => {
                let (raw, labels) = csvfile::read_csv(&data.path, pre.label_column)?;
                (raw, Some(labels), 1.0)
            }
            Some("npz") => (read_npz(&data.path, data.key.as_deref(), "x")?, None, 1.0),
            _ => (read_npy(&data.path)?, None, 1.0),
        }
    };
    let origin = data.to_string();
    if raw.shape.is_empty() || raw.shape[0] == 0 {
        return Err(DataError::Shape {
            path: data.path.clone(),
            message: format!("no samples (array shape {:?})", raw.shape),
        });
    }
    let labels_file = labels.map(|s| s.path.as_path());
    let labels = match (labels, embedded_labels) {
        (Some(src), _) => read_labels(src)?,
        (None, Some(l)) => l,
        (None, None) => {
            return Err(DataError::Label {
                path: data.path.clone(),
                message: "no labels: pass a labels file (.npy of integers, or `archive.npz:y`)"
                    .into(),
            });
        }
    };
    let n = raw.shape[0];
    if labels.len() != n {
        return Err(DataError::Label {
            path: labels_file.unwrap_or(&data.path).to_path_buf(),
            message: format!(
                "{} labels for {n} samples (from {origin}); there must be one label per sample",
                labels.len()
            ),
        });
    }
    // Layout: image data arrives [N, C, H, W] or [N, H, W, C]; PNG folders are read NHWC.
    let source_layout = if is_dir { Layout::Nhwc } else { pre.layout };
    let mut shape: Vec<usize> = raw.shape[1..].to_vec();
    if shape.is_empty() {
        shape = vec![1];
    }
    if source_layout == Layout::Nhwc && shape.len() == 3 {
        raw.values = nhwc_to_nchw(&raw.values, n, &shape);
        shape = vec![shape[2], shape[0], shape[1]];
    }
    let per: usize = shape.iter().product();
    if let Some(ms) = model_shape {
        let want: usize = ms.iter().product();
        if want != per {
            return Err(DataError::Shape {
                path: data.path.clone(),
                message: format!(
                    "each sample has {per} values (shape {shape:?}) but the model takes {want} (shape {ms:?})"
                ),
            });
        }
        shape = ms.to_vec();
    }
    let channels = if shape.len() == 3 { shape[0] } else { 1 };
    let spatial = per / channels.max(1);
    let scale = pre.scale.unwrap_or(default_scale);
    if !(scale.is_finite() && scale != 0.0) {
        return Err(DataError::Preprocess(format!(
            "scale must be a finite non-zero number, got {scale}"
        )));
    }
    let mean = per_channel(&pre.mean, channels, 0.0, "mean")?;
    let std = per_channel(&pre.std, channels, 1.0, "std")?;
    if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(DataError::Preprocess(format!(
            "std values must be positive, got {s}"
        )));
    }
    let mut x = Array2::from_shape_vec((n, per), raw.values).map_err(|e| DataError::Shape {
        path: data.path.clone(),
        message: e.to_string(),
    })?;
    for mut row in x.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            let c = j / spatial;
            *v = (*v * scale - mean[c]) / std[c];
        }
    }
    let (mut lower, mut upper) = (vec![f32::NEG_INFINITY; per], vec![f32::INFINITY; per]);
    if let Some((lo, hi)) = pre.range {
        if lo
            .partial_cmp(&hi)
            .is_none_or(|o| o == std::cmp::Ordering::Greater)
        {
            return Err(DataError::Preprocess(format!(
                "input range [{lo}, {hi}] is empty"
            )));
        }
        for j in 0..per {
            let c = j / spatial;
            lower[j] = (lo - mean[c]) / std[c];
            upper[j] = (hi - mean[c]) / std[c];
        }
        // A sample outside its declared range is a declaration error, not something to clip silently. A little
        // slack absorbs the rounding of the normalization itself.
        for (i, row) in x.rows().into_iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let slack = 1e-5 * (1.0 + upper[j].abs().max(lower[j].abs()));
                if !(v >= lower[j] - slack && v <= upper[j] + slack) {
                    return Err(DataError::Preprocess(format!(
                        "{origin}: sample {i} feature {j} is {v} after preprocessing, outside the declared input \
                         range [{lo}, {hi}] (normalized [{}, {}]); check --scale/--range",
                        lower[j], upper[j]
                    )));
                }
            }
        }
    }
    Ok(Dataset {
        x,
        labels,
        shape,
        lower,
        upper,
        origin,
    })
}

fn per_channel(
    v: &[f32],
    channels: usize,
    default: f32,
    what: &str,
) -> Result<Vec<f32>, DataError> {
    match v.len() {
        0 => Ok(vec![default; channels]),
        1 => Ok(vec![v[0]; channels]),
        k if k == channels => Ok(v.to_vec()),
        k => Err(DataError::Preprocess(format!(
            "{k} {what} values for {channels} channels (give one value, or one per channel)"
        ))),
    }
}

fn nhwc_to_nchw(v: &[f32], n: usize, hwc: &[usize]) -> Vec<f32> {
    let (h, w, c) = (hwc[0], hwc[1], hwc[2]);
    let mut out = vec![0.0; v.len()];
    for s in 0..n {
        let base = s * h * w * c;
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    out[base + (k * h + y) * w + x] = v[base + (y * w + x) * c + k];
                }
            }
        }
    }
    out
}

/// Reads class labels: a `.npy`/`.npz` array of integers (any integer type, or floats with integral values), one
/// per sample (shape `[N]` or `[N, 1]`).
pub fn read_labels(src: &Source) -> Result<Vec<usize>, DataError> {
    let arr = match src.ext().as_deref() {
        Some("npz") => read_npz(&src.path, src.key.as_deref(), "y")?,
        _ => read_npy(&src.path)?,
    };
    let rows = arr.shape.first().copied().unwrap_or(1);
    if arr.values.len() != rows {
        return Err(DataError::Label {
            path: src.path.clone(),
            message: format!(
                "labels must be one integer per sample (shape [N] or [N, 1]), got shape {:?}",
                arr.shape
            ),
        });
    }
    arr.values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
                Ok(v as usize)
            } else {
                Err(DataError::Label {
                    path: src.path.clone(),
                    message: format!(
                        "entry {i} is {v}, not a class index (a non-negative integer)"
                    ),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npz_source_syntax() {
        assert_eq!(
            Source::parse("a/b.npz:x_test"),
            Source {
                path: "a/b.npz".into(),
                key: Some("x_test".into())
            }
        );
        assert_eq!(Source::parse("a/b.npy").key, None);
    }

    #[test]
    fn nhwc_transpose() {
        // One sample, 1x2 pixels, 2 channels: [[[a0,a1],[b0,b1]]] -> channel planes [a0,b0],[a1,b1].
        let v = nhwc_to_nchw(&[1.0, 2.0, 3.0, 4.0], 1, &[1, 2, 2]);
        assert_eq!(v, vec![1.0, 3.0, 2.0, 4.0]);
    }
}
