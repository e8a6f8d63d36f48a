//! Common corruptions at five severities, and the accuracy table they give.
//!
//! Image corruptions work in unit pixel space: each feature's valid range `[lower, upper]` is mapped to `[0, 1]`
//! (so they need a finite range), corrupted, clipped, and mapped back. Severity parameters follow the spirit of
//! Hendrycks & Dietterich's ImageNet-C, scaled for small images. Tabular corruptions work in model units, relative
//! to each feature's spread in the dataset.

use crate::attack::{chw, stream};
use crate::metrics::{Accuracy, Drop, mean_corruption_error};
use crate::{EmpiricalError, Model};
use ndarray::{Array2, Axis};
use nncert_data::Dataset;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

/// A corruption family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// Additive Gaussian noise (σ 0.08 … 0.38 of the range).
    GaussianNoise,
    /// Poisson (photon) noise, λ 60 … 3 photons at full intensity.
    ShotNoise,
    /// Salt-and-pepper noise on 3 % … 27 % of the values.
    ImpulseNoise,
    /// Gaussian blur, σ 0.5 … 1.5 pixels.
    GaussianBlur,
    /// Brightness shift, +0.1 … +0.5 of the range.
    Brightness,
    /// Contrast reduction towards each channel's mean, factor 0.4 … 0.05.
    Contrast,
    /// Block averaging to 75 % … 30 % of the resolution.
    Pixelate,
    /// JPEG-like 8×8 DCT quantization, quality 25 … 7.
    Jpeg,
    /// Additive Gaussian noise on each feature, σ 0.1 … 0.8 of the feature's standard deviation in the dataset.
    FeatureNoise,
    /// 5 % … 50 % of the features missing, imputed with the dataset's mean of that feature.
    MissingValues,
}

/// The image corruptions.
pub const IMAGE: [Corruption; 8] = [
    Corruption::GaussianNoise,
    Corruption::ShotNoise,
    Corruption::ImpulseNoise,
    Corruption::GaussianBlur,
    Corruption::Brightness,
    Corruption::Contrast,
    Corruption::Pixelate,
    Corruption::Jpeg,
];

/// The tabular corruptions.
pub const TABULAR: [Corruption; 2] = [Corruption::FeatureNoise, Corruption::MissingValues];

impl Corruption {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::Pixelate => "pixelate",
            Corruption::Jpeg => "jpeg",
            Corruption::FeatureNoise => "feature_noise",
            Corruption::MissingValues => "missing_values",
        }
    }

    fn is_image(self) -> bool {
        !TABULAR.contains(&self)
    }

    fn param(self, severity: usize) -> f64 {
        let s = severity.clamp(1, 5) - 1;
        let table: [f64; 5] = match self {
            Corruption::GaussianNoise => [0.08, 0.12, 0.18, 0.26, 0.38],
            Corruption::ShotNoise => [60.0, 25.0, 12.0, 5.0, 3.0],
            Corruption::ImpulseNoise => [0.03, 0.06, 0.09, 0.17, 0.27],
            Corruption::GaussianBlur => [0.5, 0.75, 1.0, 1.25, 1.5],
            Corruption::Brightness => [0.1, 0.2, 0.3, 0.4, 0.5],
            Corruption::Contrast => [0.4, 0.3, 0.2, 0.1, 0.05],
            Corruption::Pixelate => [0.75, 0.6, 0.5, 0.4, 0.3],
            Corruption::Jpeg => [25.0, 18.0, 15.0, 10.0, 7.0],
            Corruption::FeatureNoise => [0.1, 0.2, 0.3, 0.5, 0.8],
            Corruption::MissingValues => [0.05, 0.1, 0.2, 0.3, 0.5],
        };
        table[s]
    }
}

/// Per-feature mean and standard deviation of the dataset (for tabular corruptions).
fn feature_stats(data: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let n = data.len().max(1) as f64;
    let mut mean = vec![0.0f64; data.features()];
    let mut sq = vec![0.0f64; data.features()];
    for row in data.x.rows() {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let m: Vec<f32> = mean.iter().map(|v| (v / n) as f32).collect();
    let s: Vec<f32> = mean
        .iter()
        .zip(&sq)
        .map(|(a, b)| ((b / n - (a / n).powi(2)).max(0.0)).sqrt() as f32)
        .collect();
    (m, s)
}

/// Returns a corrupted copy of the samples (deterministic in `seed`; sample `i` uses its own random stream).
pub fn apply(
    data: &Dataset,
    c: Corruption,
    severity: usize,
    seed: u64,
) -> Result<Array2<f32>, EmpiricalError> {
    if !(1..=5).contains(&severity) {
        return Err(EmpiricalError::Options(format!(
            "severity must be 1 to 5, got {severity}"
        )));
    }
    if c.is_image()
        && (data.lower.iter().any(|v| !v.is_finite()) || data.upper.iter().any(|v| !v.is_finite()))
    {
        return Err(EmpiricalError::Options(format!(
            "{}: image corruptions need a finite valid input range (e.g. --range 0,1); for tabular data use \
             --kind tabular",
            c.name()
        )));
    }
    if data.lower.len() != data.features() || data.upper.len() != data.features() {
        return Err(EmpiricalError::Options(format!(
            "{}: the input range has {} / {} bounds for {} features",
            data.origin,
            data.lower.len(),
            data.upper.len(),
            data.features()
        )));
    }
    let (ch, h, w) = chw(&data.shape);
    if ch * h * w != data.features() {
        return Err(EmpiricalError::Options(format!(
            "{}: sample shape {:?} does not hold {} features",
            data.origin,
            data.shape,
            data.features()
        )));
    }
    let (mean, sd) = feature_stats(data);
    let p = c.param(severity);
    let mut out = data.x.as_standard_layout().into_owned();
    let nf = data.features().max(1);
    let flat = out.as_slice_mut().expect("standard layout");
    flat.par_chunks_mut(nf).enumerate().for_each(|(i, row)| {
        let mut rng = stream(seed, 100 + c as u64, i, severity);
        if c.is_image() {
            let (lo, hi) = (&data.lower, &data.upper);
            let mut u: Vec<f64> = row
                .iter()
                .enumerate()
                .map(|(j, &v)| {
                    let wdt = (hi[j] - lo[j]) as f64;
                    if wdt > 0.0 {
                        (v - lo[j]) as f64 / wdt
                    } else {
                        0.0
                    }
                })
                .collect();
            image_corrupt(c, p, &mut u, (ch, h, w), &mut rng);
            for (j, v) in row.iter_mut().enumerate() {
                let x = lo[j] as f64 + u[j].clamp(0.0, 1.0) * (hi[j] - lo[j]) as f64;
                *v = (x as f32).clamp(lo[j], hi[j]);
            }
        } else {
            for (j, v) in row.iter_mut().enumerate() {
                match c {
                    Corruption::FeatureNoise => {
                        let g: f64 = rng.sample(StandardNormal);
                        *v += (p * g) as f32 * sd[j];
                    }
                    _ => {
                        if rng.random::<f64>() < p {
                            *v = mean[j];
                        }
                    }
                }
                *v = v.clamp(data.lower[j], data.upper[j]);
            }
        }
    });
    Ok(out)
}

fn image_corrupt(
    c: Corruption,
    p: f64,
    u: &mut [f64],
    (ch, h, w): (usize, usize, usize),
    rng: &mut ChaCha8Rng,
) {
    match c {
        Corruption::GaussianNoise => {
            for v in u.iter_mut() {
                let g: f64 = rng.sample(StandardNormal);
                *v += p * g;
            }
        }
        Corruption::ShotNoise => {
            for v in u.iter_mut() {
                let lam = (v.clamp(0.0, 1.0)) * p;
                *v = if lam > 0.0 {
                    Poisson::new(lam).map_or(*v, |d| d.sample(rng) / p)
                } else {
                    0.0
                };
            }
        }
        Corruption::ImpulseNoise => {
            for v in u.iter_mut() {
                if rng.random::<f64>() < p {
                    *v = if rng.random::<bool>() { 1.0 } else { 0.0 };
                }
            }
        }
        Corruption::GaussianBlur => {
            let r = (3.0 * p).ceil() as isize;
            let k: Vec<f64> = (-r..=r)
                .map(|d| (-(d * d) as f64 / (2.0 * p * p)).exp())
                .collect();
            let ks: f64 = k.iter().sum();
            let k: Vec<f64> = k.iter().map(|v| v / ks).collect();
            let at = |a: isize, n: usize| a.clamp(0, n as isize - 1) as usize;
            let mut tmp = vec![0.0; u.len()];
            for c0 in 0..ch {
                let base = c0 * h * w;
                for y in 0..h {
                    for x in 0..w {
                        tmp[base + y * w + x] = (-r..=r)
                            .map(|d| k[(d + r) as usize] * u[base + y * w + at(x as isize + d, w)])
                            .sum();
                    }
                }
                for y in 0..h {
                    for x in 0..w {
                        u[base + y * w + x] = (-r..=r)
                            .map(|d| {
                                k[(d + r) as usize] * tmp[base + at(y as isize + d, h) * w + x]
                            })
                            .sum();
                    }
                }
            }
        }
        Corruption::Brightness => u.iter_mut().for_each(|v| *v += p),
        Corruption::Contrast => {
            for c0 in 0..ch {
                let plane = &mut u[c0 * h * w..(c0 + 1) * h * w];
                let m = plane.iter().sum::<f64>() / plane.len() as f64;
                plane.iter_mut().for_each(|v| *v = (*v - m) * p + m);
            }
        }
        Corruption::Pixelate => {
            let sh = ((h as f64 * p).round() as usize).max(1);
            let sw = ((w as f64 * p).round() as usize).max(1);
            for c0 in 0..ch {
                let plane = &mut u[c0 * h * w..(c0 + 1) * h * w];
                let mut sum = vec![0.0; sh * sw];
                let mut cnt = vec![0usize; sh * sw];
                let block = |y: usize, x: usize| (y * sh / h) * sw + x * sw / w;
                for y in 0..h {
                    for x in 0..w {
                        sum[block(y, x)] += plane[y * w + x];
                        cnt[block(y, x)] += 1;
                    }
                }
                for y in 0..h {
                    for x in 0..w {
                        let b = block(y, x);
                        plane[y * w + x] = sum[b] / cnt[b] as f64;
                    }
                }
            }
        }
        Corruption::Jpeg => {
            for c0 in 0..ch {
                jpeg_plane(&mut u[c0 * h * w..(c0 + 1) * h * w], h, w, p);
            }
        }
        Corruption::FeatureNoise | Corruption::MissingValues => {}
    }
}

/// The JPEG standard's luminance quantization table (ITU-T T.81, Annex K).
const LUMA_Q: [f64; 64] = [
    16., 11., 10., 16., 24., 40., 51., 61., 12., 12., 14., 19., 26., 58., 60., 55., 14., 13., 16.,
    24., 40., 57., 69., 56., 14., 17., 22., 29., 51., 87., 80., 62., 18., 22., 37., 56., 68., 109.,
    103., 77., 24., 35., 55., 64., 81., 104., 113., 92., 49., 64., 78., 87., 103., 121., 120.,
    101., 72., 92., 95., 98., 112., 100., 103., 99.,
];

/// Quantizes one plane (values in [0, 1]) in 8×8 DCT blocks at JPEG quality `quality` (edges replicated into
/// partial blocks).
fn jpeg_plane(plane: &mut [f64], h: usize, w: usize, quality: f64) {
    let scale = if quality < 50.0 {
        5000.0 / quality
    } else {
        200.0 - 2.0 * quality
    };
    let q: Vec<f64> = LUMA_Q
        .iter()
        .map(|t| ((t * scale + 50.0) / 100.0).floor().max(1.0))
        .collect();
    let cosv: Vec<f64> = (0..64)
        .map(|i| {
            let (x, u) = (i / 8, i % 8);
            ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
        })
        .collect();
    let cu = |u: usize| {
        if u == 0 {
            std::f64::consts::FRAC_1_SQRT_2
        } else {
            1.0
        }
    };
    for by in (0..h).step_by(8) {
        for bx in (0..w).step_by(8) {
            let mut blk = [0.0f64; 64];
            for y in 0..8 {
                for x in 0..8 {
                    let (yy, xx) = ((by + y).min(h - 1), (bx + x).min(w - 1));
                    blk[y * 8 + x] = plane[yy * w + xx] * 255.0 - 128.0;
                }
            }
            let mut coef = [0.0f64; 64];
            for v in 0..8 {
                for u in 0..8 {
                    let mut s = 0.0;
                    for y in 0..8 {
                        for x in 0..8 {
                            s += blk[y * 8 + x] * cosv[x * 8 + u] * cosv[y * 8 + v];
                        }
                    }
                    let c = 0.25 * cu(u) * cu(v) * s;
                    coef[v * 8 + u] = (c / q[v * 8 + u]).round() * q[v * 8 + u];
                }
            }
            for y in 0..8 {
                for x in 0..8 {
                    if by + y >= h || bx + x >= w {
                        continue;
                    }
                    let mut s = 0.0;
                    for v in 0..8 {
                        for u in 0..8 {
                            s +=
                                cu(u) * cu(v) * coef[v * 8 + u] * cosv[x * 8 + u] * cosv[y * 8 + v];
                        }
                    }
                    plane[(by + y) * w + bx + x] = (0.25 * s + 128.0) / 255.0;
                }
            }
        }
    }
}

/// Accuracy under one corruption at one severity.
#[derive(Clone, Debug, Serialize)]
pub struct CorruptionRow {
    /// The corruption.
    pub corruption: Corruption,
    /// 1 (mild) to 5 (severe).
    pub severity: usize,
    /// Accuracy on the corrupted samples.
    pub accuracy: Accuracy,
    /// Drop from the clean accuracy.
    pub drop: Drop,
}

/// The corruption table of a model on a dataset.
#[derive(Clone, Debug, Serialize)]
pub struct CorruptionReport {
    /// Accuracy on the clean samples.
    pub clean: Accuracy,
    /// One row per corruption and severity.
    pub rows: Vec<CorruptionRow>,
    /// Mean corruption error: error averaged over corruptions and severities (no baseline model normalization).
    pub mean_corruption_error: f64,
    /// Mean corruption error minus the clean error.
    pub relative_mean_corruption_error: f64,
}

/// Evaluates the model on every corruption of `set` at severities 1–5. `progress` is called once per
/// (corruption, severity).
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    set: &[Corruption],
    seed: u64,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<CorruptionReport, EmpiricalError> {
    data.check_model(model.inputs(), model.classes())?;
    let clean = Accuracy::of(&predict_batched(model, &data.x)?, &data.labels);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for &c in set {
        let mut e = Vec::new();
        for severity in 1..=5 {
            let x = apply(data, c, severity, seed)?;
            let acc = Accuracy::of(&predict_batched(model, &x)?, &data.labels);
            e.push(1.0 - acc.accuracy);
            rows.push(CorruptionRow {
                corruption: c,
                severity,
                accuracy: acc,
                drop: Drop::between(clean.accuracy, acc.accuracy),
            });
            progress(1);
        }
        errors.push(e);
    }
    let mce = mean_corruption_error(&errors, None);
    Ok(CorruptionReport {
        clean,
        rows,
        mean_corruption_error: mce,
        relative_mean_corruption_error: mce - (1.0 - clean.accuracy),
    })
}

/// Predictions in parallel batches of 256 rows.
pub fn predict_batched(model: &Model, x: &Array2<f32>) -> Result<Vec<usize>, EmpiricalError> {
    let parts: Vec<Result<Vec<usize>, EmpiricalError>> = x
        .axis_chunks_iter(Axis(0), 256)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|chunk| model.predict(chunk))
        .collect();
    let mut out = Vec::with_capacity(x.nrows());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}
