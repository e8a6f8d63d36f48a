//! `nncert attack` and `nncert corrupt`: empirical robustness testing on a labelled dataset.

use crate::io::write_atomically;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nncert_data::{Dataset, Layout, Preprocess, Source};
use nncert_empirical::attack::{AttackKind, AttackOptions, Norm, minimal_eps, robustness_curve};
use nncert_empirical::corrupt::{self, IMAGE, TABULAR};
use nncert_empirical::metrics::Accuracy;
use nncert_empirical::{Model, corrupt::predict_batched};
use npyz::WriterBuilder;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Where the samples come from and how they are preprocessed.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Samples: a .npy file ([N, ...] float32/float64/uint8/int64), an .npz archive (`file.npz` reads array `x`,
    /// `file.npz:NAME` any array), a .csv file (feature columns and a label column), or a folder of PNG images with
    /// one sub-folder per class (classes numbered in name order, pixels scaled by 1/255 unless --scale is given).
    #[arg(long, value_name = "PATH")]
    data: String,
    /// Labels: a .npy/.npz array of N integers (`file.npz` reads array `y`). Not needed for CSV and PNG folders.
    #[arg(long, value_name = "PATH")]
    labels: Option<String>,
    /// Multiply raw values by this before normalization (e.g. 0.00392157 for 0..255 pixels).
    #[arg(long)]
    scale: Option<f32>,
    /// Per-channel mean subtracted after scaling: one value or one per channel, comma-separated.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    mean: Vec<f32>,
    /// Per-channel standard deviation divided by after the mean: one value or one per channel.
    #[arg(long, value_delimiter = ',')]
    std: Vec<f32>,
    /// Layout of image arrays in the file: nchw, or nhwc (transposed to the model's NCHW).
    #[arg(long, default_value = "nchw")]
    layout: Layout,
    /// Valid input range `LO,HI` after scaling and before normalization (e.g. 0,1 for images). Adversarial
    /// examples and corruptions are clipped to it. Default: unbounded.
    #[arg(long, value_parser = parse_range, allow_hyphen_values = true, value_name = "LO,HI")]
    range: Option<(f32, f32)>,
    /// Label column of a CSV file (0-based; negative counts from the end).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    label_column: isize,
    /// Use only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
}

fn parse_range(s: &str) -> Result<(f32, f32), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [lo, hi] = parts[..] else {
        return Err(format!("expected LO,HI, got '{s}'"));
    };
    let lo: f32 = lo
        .trim()
        .parse()
        .map_err(|_| format!("'{lo}' is not a number"))?;
    let hi: f32 = hi
        .trim()
        .parse()
        .map_err(|_| format!("'{hi}' is not a number"))?;
    if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
        return Err(format!("empty range [{lo}, {hi}]"));
    }
    Ok((lo, hi))
}

impl DataArgs {
    fn load(&self, graph: &nncert_model::Graph) -> Result<Dataset> {
        let pre = Preprocess {
            scale: self.scale,
            mean: self.mean.clone(),
            std: self.std.clone(),
            layout: self.layout,
            range: self.range,
            label_column: self.label_column,
        };
        let labels = self.labels.as_deref().map(Source::parse);
        // ONNX exporters keep a batch axis of 1 in the declared input shape ([1, 64], [1, C, H, W]): a sample's
        // shape is what follows it.
        let mut shape = graph.input().shape.clone();
        if matches!(shape.len(), 2 | 4) && shape[0] == 1 {
            shape.remove(0);
        }
        let mut data = nncert_data::load(
            &Source::parse(&self.data),
            labels.as_ref(),
            &pre,
            Some(&shape),
        )?;
        if let Some(k) = self.limit {
            let k = k.min(data.len());
            data.x = data.x.slice(ndarray::s![..k, ..]).to_owned();
            data.labels.truncate(k);
        }
        data.check_model(graph.input_size(), graph.output_size())?;
        Ok(data)
    }
}

/// Options of `nncert attack`.
#[derive(Args, Debug)]
pub struct AttackArgs {
    /// The model (.onnx or .nnet); its outputs are read as class scores.
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Radii, comma-separated, in model input units (after normalization).
    #[arg(long, value_delimiter = ',', required = true)]
    eps: Vec<f32>,
    /// fgsm, pgd, apgd (APGD-CE), apgd-dlr, apgd-t (targeted APGD-DLR), square (L∞, no gradients), or ensemble
    /// (all of them from cheap to strong, each sample stopping at its first success).
    #[arg(long, default_value = "pgd")]
    attack: AttackKind,
    /// Threat model: linf or l2.
    #[arg(long, default_value = "linf")]
    norm: Norm,
    /// Gradient steps per restart (PGD, APGD).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Starts per sample: the first at the sample, the others random in the ball (PGD, APGD; per target for APGD-T).
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    /// Queries of the Square attack.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Target classes of APGD-T (the highest-scoring wrong classes).
    #[arg(long, default_value_t = 3)]
    targets: usize,
    /// Seed of every random choice; the same seed gives the same results with any number of threads.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per batch (one forward/backward pass per step for the batch).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Also find each sample's minimal ε up to this radius, by bisection.
    #[arg(long, value_name = "EPS_MAX")]
    minimal_eps: Option<f32>,
    /// Bisection halvings of --minimal-eps.
    #[arg(long, default_value_t = 10)]
    bisection_steps: usize,
    /// Write the results here as JSON (per-ε robust accuracy with 95% Clopper-Pearson interval, per-sample outcomes).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Save the adversarial examples found: DIR/adv_eps<ε>.npy (float32 [K, features]) and DIR/adv_eps<ε>_index.npy
    /// (int64 sample indices).
    #[arg(long, value_name = "DIR")]
    save_adv: Option<PathBuf>,
}

/// Options of `nncert corrupt`.
#[derive(Args, Debug)]
pub struct CorruptArgs {
    /// The model (.onnx or .nnet); its outputs are read as class scores.
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// image (noise, blur, brightness, contrast, pixelate, JPEG; needs --range) or tabular (feature noise, missing
    /// values). Default: image for [C, H, W] inputs, else tabular.
    #[arg(long)]
    kind: Option<Kind>,
    /// Image shape `C,H,W` of the flattened samples, for image corruptions on a model that takes flat vectors
    /// (e.g. 1,8,8 for the digits MLP). The model's input layout must be the row-major flattening of it.
    #[arg(long, value_delimiter = ',', value_name = "C,H,W")]
    image_shape: Vec<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the table here as JSON.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// Families of corruptions.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kind {
    /// Noise, blur, brightness, contrast, pixelate, JPEG.
    Image,
    /// Feature noise, missing values.
    Tabular,
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} {per_sec} elapsed {elapsed_precise} ETA {eta_precise}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

fn npy_bytes<T: npyz::AutoSerialize + Copy>(shape: &[u64], values: &[T]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()?;
    w.extend(values.iter().copied())?;
    w.finish()?;
    Ok(buf)
}

/// Runs `nncert attack`; returns the exit code.
pub fn attack(a: AttackArgs) -> Result<u8> {
    if a.eps.is_empty() || a.eps.iter().any(|e| !(e.is_finite() && *e >= 0.0)) {
        bail!("--eps must be non-negative numbers, got {:?}", a.eps);
    }
    let graph = nncert_model::load_model(&a.model)?;
    let data = a.data.load(&graph)?;
    let model = Model::new(&graph)?;
    let opts = AttackOptions {
        kind: a.attack,
        norm: a.norm,
        steps: a.steps,
        restarts: a.restarts,
        queries: a.queries,
        targets: a.targets,
        seed: a.seed,
        batch: a.batch,
    };
    let clean = Accuracy::of(&predict_batched(&model, &data.x)?, &data.labels);
    eprintln!(
        "{}: {} samples of shape {:?}; clean accuracy {:.4} ({}/{})",
        data.origin,
        data.len(),
        data.shape,
        clean.accuracy,
        clean.correct,
        clean.total
    );
    let pb = bar((data.len() * a.eps.len()) as u64, a.attack.name());
    let start = Instant::now();
    let curve = robustness_curve(&model, &data, &a.eps, &opts, &|k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let evaluations: u64 = curve.iter().map(|r| r.evaluations).sum();
    println!(
        "attack {} ({:?}, {} steps, {} restarts, seed {}) on {} samples; clean accuracy {:.4}",
        a.attack.name(),
        a.norm,
        a.steps,
        a.restarts,
        a.seed,
        data.len(),
        clean.accuracy
    );
    println!("{:>10}  {:>15}  {:>17}", "eps", "robust accuracy", "95% CI");
    for r in &curve {
        println!(
            "{:>10}  {:>15.4}  [{:.4}, {:.4}]",
            r.eps, r.robust_accuracy, r.ci95.0, r.ci95.1
        );
    }
    println!(
        "{evaluations} model evaluations (forward+backward per sample) in {seconds:.2} s: {:.0} per second",
        evaluations as f64 / seconds.max(1e-9)
    );
    let minimal = match a.minimal_eps {
        Some(emax) => {
            if !(emax.is_finite() && emax > 0.0) {
                bail!("--minimal-eps must be a positive radius, got {emax}");
            }
            let pb = bar((data.len() * (a.bisection_steps + 1)) as u64, "minimal ε");
            let m = minimal_eps(&model, &data, emax, a.bisection_steps, &opts, &|k| {
                pb.inc(k as u64)
            })?;
            pb.finish_and_clear();
            let found: Vec<f32> = m.iter().flatten().copied().collect();
            let mut sorted = found.clone();
            sorted.sort_by(f32::total_cmp);
            let median = sorted.get(sorted.len() / 2).copied();
            println!(
                "minimal ε (bisection up to {emax}): found for {}/{} samples, median {}",
                found.len(),
                m.len(),
                median.map_or("-".into(), |v| format!("{v:.5}"))
            );
            Some(m)
        }
        None => None,
    };
    if let Some(dir) = &a.save_adv {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        for r in &curve {
            let found: Vec<_> = r.samples.iter().filter(|s| s.adv.is_some()).collect();
            let mut flat: Vec<f32> = Vec::with_capacity(found.len() * data.features());
            for s in &found {
                flat.extend(s.adv.as_deref().unwrap_or_default());
            }
            let idx: Vec<i64> = found.iter().map(|s| s.index as i64).collect();
            let shape = [found.len() as u64, data.features() as u64];
            write_atomically(
                &dir.join(format!("adv_eps{}.npy", r.eps)),
                &npy_bytes(&shape, &flat)?,
            )?;
            write_atomically(
                &dir.join(format!("adv_eps{}_index.npy", r.eps)),
                &npy_bytes(&[idx.len() as u64], &idx)?,
            )?;
        }
        eprintln!("adversarial examples saved in {}", dir.display());
    }
    if let Some(out) = &a.out {
        let doc = json!({
            "tool": "nncert",
            "version": env!("CARGO_PKG_VERSION"),
            "command": "attack",
            "model": a.model.display().to_string(),
            "data": data.origin,
            "samples": data.len(),
            "sample_shape": data.shape,
            "clean_accuracy": clean,
            "options": opts,
            "seconds": seconds,
            "evaluations": evaluations,
            "notes": "robust accuracy is an upper bound on the true robust accuracy: every counted success is an \
                      adversarial example inside the ε-ball and input range, re-executed in f32; failures to find one \
                      prove nothing",
            "results": curve,
            "minimal_eps": minimal,
        });
        write_atomically(out, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(0)
}

/// Runs `nncert corrupt`; returns the exit code.
pub fn corrupt(a: CorruptArgs) -> Result<u8> {
    let graph = nncert_model::load_model(&a.model)?;
    let mut data = a.data.load(&graph)?;
    if !a.image_shape.is_empty() {
        let size: usize = a.image_shape.iter().product();
        if a.image_shape.len() != 3 || size != data.features() {
            bail!(
                "--image-shape {:?} must be C,H,W with {} values per sample",
                a.image_shape,
                data.features()
            );
        }
        data.shape = a.image_shape.clone();
    }
    let model = Model::new(&graph)?;
    let kind = a.kind.unwrap_or(if data.shape.len() == 3 {
        Kind::Image
    } else {
        Kind::Tabular
    });
    let set: &[corrupt::Corruption] = match kind {
        Kind::Image => &IMAGE,
        Kind::Tabular => &TABULAR,
    };
    let pb = bar((set.len() * 5) as u64, "corruptions");
    let rep = corrupt::evaluate(&model, &data, set, a.seed, &|k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    println!(
        "{} on {} samples: clean accuracy {:.4} [{:.4}, {:.4}]",
        a.model.display(),
        data.len(),
        rep.clean.accuracy,
        rep.clean.ci95.0,
        rep.clean.ci95.1
    );
    println!(
        "{:<16} {:>7} {:>7} {:>7} {:>7} {:>7}   {:>9}",
        "corruption", "s1", "s2", "s3", "s4", "s5", "mean drop"
    );
    for c in set {
        let rows: Vec<_> = rep.rows.iter().filter(|r| r.corruption == *c).collect();
        let accs: Vec<String> = rows
            .iter()
            .map(|r| format!("{:>7.4}", r.accuracy.accuracy))
            .collect();
        let drop = rows.iter().map(|r| r.drop.absolute).sum::<f64>() / rows.len().max(1) as f64;
        println!("{:<16} {}   {:>9.4}", c.name(), accs.join(" "), drop);
    }
    println!(
        "mean corruption error {:.4} (clean error {:.4}, relative {:+.4})",
        rep.mean_corruption_error,
        1.0 - rep.clean.accuracy,
        rep.relative_mean_corruption_error
    );
    if let Some(out) = &a.out {
        let doc = json!({
            "tool": "nncert",
            "version": env!("CARGO_PKG_VERSION"),
            "command": "corrupt",
            "model": a.model.display().to_string(),
            "data": data.origin,
            "samples": data.len(),
            "seed": a.seed,
            "report": rep,
        });
        write_atomically(out, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(0)
}
