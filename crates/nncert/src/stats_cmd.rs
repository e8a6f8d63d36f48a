//! `nncert smooth` and `nncert estimate`: the statistical assessment commands (randomized smoothing certificates
//! and failure probabilities), printing a summary and writing a JSON record that states the guarantee in words.

use crate::io;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use nncert_stats::binomial;
use nncert_stats::failure::{self, AmsOptions, AmsOutcome, InputDistribution, PropertyScorer};
use nncert_stats::smoothing::{self, SmoothedClassifier};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `nncert smooth`.
#[derive(Args, Debug)]
#[command(after_help = "\
Example:
  nncert smooth examples/toy/toy.onnx --data examples/toy/points.npy --labels examples/toy/labels.npy \\
      --sigma 0.25 --n 10000 --out smooth.json

Guarantee: with probability at least 1 - alpha over the sampling noise (for each point separately), a certified
point's smoothed prediction is the reported class everywhere within the reported L2 radius. Abstentions count as
wrong in the certified accuracy.")]
pub struct SmoothArgs {
    /// The base classifier (.onnx or .nnet); its outputs are class scores.
    model: PathBuf,
    /// The points: a .npy array of f32 or f64, [N, input size] (or [N, ...] with the model's input size).
    #[arg(long)]
    data: PathBuf,
    /// The labels: a .npy array of N integers (int64, int32, uint8, ...).
    #[arg(long)]
    labels: PathBuf,
    /// Standard deviation of the Gaussian noise, in input units.
    #[arg(long)]
    sigma: f64,
    /// Noise samples used to select the top class.
    #[arg(long, default_value_t = 100)]
    n0: u64,
    /// Noise samples used to bound the top class's probability.
    #[arg(long, default_value_t = 100_000)]
    n: u64,
    /// Failure probability of each certificate (the bounds hold with probability 1 - alpha).
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Radii at which to report the certified accuracy, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1")]
    radii: Vec<f64>,
    /// Run PREDICT (smoothed prediction with abstention, from --n samples) instead of CERTIFY: reports the
    /// smoothed classifier's accuracy, abstentions and errors rather than radii.
    #[arg(long)]
    predict: bool,
    /// Only use the first this many points.
    #[arg(long)]
    max_points: Option<usize>,
    /// Noisy copies per network evaluation.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Seed of the noise; the same seed gives the same result on any number of threads.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the JSON record here (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Input distributions of `nncert estimate`, built from each case's input box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistributionKind {
    /// Uniform on the case's input box.
    Uniform,
    /// Gaussian around the box centre (std --sigma, default a quarter of each side), clipped to the box.
    Gaussian,
    /// Uniform on the L2 ball of --radius around the box centre, clipped to the box.
    L2,
}

/// Estimation methods of `nncert estimate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Plain Monte Carlo with exact Clopper–Pearson intervals.
    Mc,
    /// Adaptive multilevel splitting (rare events; approximate interval).
    Ams,
}

/// Arguments of `nncert estimate`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  nncert estimate examples/toy/toy.onnx examples/toy/robust_wide.vnnlib --samples 100000
  nncert estimate examples/toy/toy.onnx examples/toy/robust_narrow.vnnlib --method ams --distribution gaussian
  nncert estimate --plan-only --target-p 1e-4 --confidence 0.95

The failure probability is P(f(X) in the bad output region) for X drawn from the distribution on each case's input
box (VNN-LIB semantics: the property's assertions describe the bad region). Monte Carlo intervals are exact
(Clopper–Pearson): with probability at least the confidence over the sampling, p lies in the interval. Multilevel
splitting intervals are approximate (asymptotic, assuming well-mixed Metropolis chains).")]
pub struct EstimateArgs {
    /// The model (.onnx or .nnet). Not needed with --plan-only.
    model: Option<PathBuf>,
    /// The property (.vnnlib). Not needed with --plan-only.
    property: Option<PathBuf>,
    /// The input distribution on each case's box.
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: DistributionKind,
    /// Gaussian standard deviation (same for every input); default: a quarter of each side of the box.
    #[arg(long)]
    sigma: Option<f64>,
    /// L2 radius for --distribution l2; default: half the shortest side of the box.
    #[arg(long)]
    radius: Option<f64>,
    /// Confidence level of the interval.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Monte Carlo sample size (default 100,000, or the planned size with --target-p).
    #[arg(long, conflicts_with = "plan_only")]
    samples: Option<u64>,
    /// The probability to show the failure probability is below: plans the Monte Carlo sample size (zero-failure
    /// rule), or sets how far multilevel splitting goes (stops at target-p / 100).
    #[arg(long)]
    target_p: Option<f64>,
    /// Estimation method.
    #[arg(long, value_enum, default_value = "mc")]
    method: Method,
    /// Multilevel splitting: number of particles.
    #[arg(long, default_value_t = 2000)]
    particles: usize,
    /// Multilevel splitting: Metropolis sweeps per level.
    #[arg(long, default_value_t = 20)]
    mcmc_steps: usize,
    /// Multilevel splitting: fraction of particles killed per level.
    #[arg(long, default_value_t = 0.1)]
    kill_fraction: f64,
    /// Only print the sample size needed to show p < --target-p at --confidence, without running anything.
    #[arg(long, requires = "target_p")]
    plan_only: bool,
    /// Seed of the sampling; the same seed gives the same result on any number of threads.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the JSON record here (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

fn write_json(path: Option<&Path>, value: &Value) -> Result<()> {
    if let Some(path) = path {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        io::write_atomically(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Reads class labels from a .npy array of integers.
// To be replaced by nncert-data's label reader.
fn read_labels(path: &Path) -> Result<Vec<usize>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: not a valid .npy file", path.display()))?;
    let dtype = npy.dtype();
    let npyz::DType::Plain(t) = &dtype else {
        bail!(
            "{}: labels must be a plain integer array, got {}",
            path.display(),
            dtype.descr()
        );
    };
    let read_err = || format!("{}: cannot read the labels", path.display());
    let values: Vec<i128> = match (t.type_char(), t.size_field()) {
        (npyz::TypeChar::Int, 8) => npy
            .into_vec::<i64>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        (npyz::TypeChar::Int, 4) => npy
            .into_vec::<i32>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        (npyz::TypeChar::Int, 2) => npy
            .into_vec::<i16>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        (npyz::TypeChar::Int, 1) => npy
            .into_vec::<i8>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        (npyz::TypeChar::Uint, 8) => npy
            .into_vec::<u64>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        (npyz::TypeChar::Uint, 4) => npy
            .into_vec::<u32>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        (npyz::TypeChar::Uint, 2) => npy
            .into_vec::<u16>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        (npyz::TypeChar::Uint, 1) => npy
            .into_vec::<u8>()
            .with_context(read_err)?
            .into_iter()
            .map(i128::from)
            .collect(),
        _ => bail!(
            "{}: labels must be integers (int8..int64 or uint8..uint64), got dtype {}",
            path.display(),
            dtype.descr()
        ),
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            usize::try_from(v)
                .map_err(|_| anyhow::anyhow!("{}: label {i} is negative ({v})", path.display()))
        })
        .collect()
}

/// `nncert smooth`: certifies every point and prints the certified accuracy at each radius.
pub fn smooth(args: SmoothArgs) -> Result<u8> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        bail!(
            "--alpha must lie strictly between 0 and 1, got {}",
            args.alpha
        );
    }
    if args.n0 == 0 || args.n == 0 {
        bail!("--n0 and --n must be at least 1");
    }
    if let Some(r) = args.radii.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
        bail!("--radii must be finite and >= 0, got {r}");
    }
    let graph = nncert_model::load_model(&args.model)?;
    let x = io::read_inputs(&args.data, graph.input_size())?;
    let labels = read_labels(&args.labels)?;
    if labels.len() != x.nrows() {
        bail!(
            "{} has {} points but {} has {} labels",
            args.data.display(),
            x.nrows(),
            args.labels.display(),
            labels.len()
        );
    }
    if let Some((i, l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l >= graph.output_size())
    {
        bail!(
            "{}: label {i} is {l} but the model has only {} classes",
            args.labels.display(),
            graph.output_size()
        );
    }
    let points = args.max_points.unwrap_or(x.nrows()).min(x.nrows());
    if points == 0 {
        bail!("no points to certify");
    }
    let sc = SmoothedClassifier::new(&graph, args.sigma, args.seed)
        .map_err(anyhow::Error::from)
        .context("--sigma")?
        .with_batch(args.batch);
    if args.predict {
        return smooth_predict(
            &args,
            &sc,
            x.slice(ndarray::s![..points, ..]),
            &labels[..points],
        );
    }
    let pb = bar(points as u64, "certify");
    let start = Instant::now();
    let xs = x.slice(ndarray::s![..points, ..]);
    let done = sc
        .certify_all(xs, args.n0, args.n, args.alpha, &|k| {
            pb.set_position(k as u64)
        })
        .with_context(|| format!("{}", args.data.display()))?;
    let records: Vec<Value> = done
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, ((c, secs), &label))| {
            json!({
                "index": i,
                "label": label,
                "prediction": c.class,
                "correct": c.class == Some(label),
                "radius": c.radius,
                "p_lower": c.p_lower,
                "n_a": c.n_a,
                "seconds": secs,
            })
        })
        .collect();
    let certs: Vec<_> = done.into_iter().map(|(c, _)| c).collect();
    pb.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let labels = &labels[..points];
    let acc = smoothing::certified_accuracy(&certs, labels, &args.radii)?;
    let abstained = certs.iter().filter(|c| c.class.is_none()).count();
    let samples = points as u64 * (args.n0 + args.n);
    println!(
        "randomized smoothing: sigma {}, n0 {}, n {}, alpha {} on {points} points",
        args.sigma, args.n0, args.n, args.alpha
    );
    println!("  radius  certified accuracy");
    for (r, a) in args.radii.iter().zip(&acc) {
        println!("  {r:>6.3}  {a:.4}");
    }
    println!(
        "  abstained on {abstained}; {:.3} s per point; {:.3e} noisy forward passes/s",
        elapsed / points as f64,
        samples as f64 / elapsed
    );
    let guarantee = format!(
        "With probability at least {} (1 - alpha) over the sampling noise, separately for each point, the \
         smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, {}^2 I), returns the certified class at \
         every input within the certified L2 radius of the point. Abstentions count as errors.",
        1.0 - args.alpha,
        args.sigma
    );
    let value = json!({
        "kind": "randomized_smoothing",
        "method": "Cohen, Rosenfeld & Kolter 2019, CERTIFY with exact one-sided Clopper-Pearson bound",
        "model": args.model.display().to_string(),
        "data": args.data.display().to_string(),
        "labels": args.labels.display().to_string(),
        "settings": {"sigma": args.sigma, "n0": args.n0, "n": args.n, "alpha": args.alpha,
                     "seed": args.seed, "batch": args.batch},
        "guarantee": guarantee,
        "points": points,
        "abstained": abstained,
        "curve": args.radii.iter().zip(&acc).map(|(r, a)| json!({"radius": r, "certified_accuracy": a}))
            .collect::<Vec<_>>(),
        "seconds": elapsed,
        "seconds_per_point": elapsed / points as f64,
        "forward_samples_per_second": samples as f64 / elapsed,
        "results": records,
    });
    write_json(args.out.as_deref(), &value)?;
    Ok(0)
}

/// `nncert smooth --predict`: the smoothed classifier's accuracy with abstention.
fn smooth_predict(
    args: &SmoothArgs,
    sc: &SmoothedClassifier<'_>,
    xs: ndarray::ArrayView2<'_, f64>,
    labels: &[usize],
) -> Result<u8> {
    let points = labels.len();
    let pb = bar(points as u64, "predict");
    let start = Instant::now();
    let preds = sc
        .predict_all(xs, args.n, args.alpha, &|k| pb.set_position(k as u64))
        .with_context(|| format!("{}", args.data.display()))?;
    pb.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let correct = preds
        .iter()
        .zip(labels)
        .filter(|(p, l)| p.class == Some(**l))
        .count();
    let abstained = preds.iter().filter(|p| p.class.is_none()).count();
    let wrong = points - correct - abstained;
    println!(
        "smoothed prediction: sigma {}, n {}, alpha {} on {points} points",
        args.sigma, args.n, args.alpha
    );
    println!(
        "  accuracy {:.4}, abstained {abstained}, wrong {wrong}; {:.3e} noisy forward passes/s",
        correct as f64 / points as f64,
        (points as u64 * args.n) as f64 / elapsed
    );
    let value = json!({
        "kind": "randomized_smoothing_predict",
        "method": "Cohen, Rosenfeld & Kolter 2019, PREDICT (two-sided binomial test of the top two counts)",
        "model": args.model.display().to_string(),
        "data": args.data.display().to_string(),
        "labels": args.labels.display().to_string(),
        "settings": {"sigma": args.sigma, "n": args.n, "alpha": args.alpha, "seed": args.seed,
                     "batch": args.batch},
        "guarantee": format!(
            "For each point separately, with probability at least {} over the sampling noise, a returned class \
             is the smoothed classifier's prediction argmax_c P(f(x + e) = c), e ~ N(0, {}^2 I); otherwise the \
             point is abstained on.",
            1.0 - args.alpha,
            args.sigma
        ),
        "points": points,
        "accuracy": correct as f64 / points as f64,
        "abstained": abstained,
        "wrong": wrong,
        "seconds": elapsed,
        "results": preds.iter().zip(labels).enumerate().map(|(i, (p, l))| json!({
            "index": i, "label": l, "prediction": p.class, "n_a": p.n_a, "n_b": p.n_b, "p_value": p.p_value,
        })).collect::<Vec<_>>(),
    });
    write_json(args.out.as_deref(), &value)?;
    Ok(0)
}

/// The distribution of `kind` on `case`'s input box.
fn distribution(args: &EstimateArgs, case: &nncert_spec::Case) -> Result<InputDistribution> {
    let (lo, hi) = (case.input.lower.clone(), case.input.upper.clone());
    let center: Vec<f64> = lo.iter().zip(&hi).map(|(l, h)| 0.5 * (l + h)).collect();
    let d = match args.distribution {
        DistributionKind::Uniform => InputDistribution::UniformBox {
            lower: lo,
            upper: hi,
        },
        DistributionKind::Gaussian => {
            let sigma = match args.sigma {
                Some(s) if s.is_finite() && s > 0.0 => vec![s; center.len()],
                Some(s) => bail!("--sigma must be a positive number, got {s}"),
                None => lo.iter().zip(&hi).map(|(l, h)| 0.25 * (h - l)).collect(),
            };
            InputDistribution::Gaussian {
                center,
                sigma,
                lower: lo,
                upper: hi,
            }
        }
        DistributionKind::L2 => {
            let radius = match args.radius {
                Some(r) if r.is_finite() && r > 0.0 => r,
                Some(r) => bail!("--radius must be a positive number, got {r}"),
                None => lo
                    .iter()
                    .zip(&hi)
                    .map(|(l, h)| 0.5 * (h - l))
                    .fold(f64::INFINITY, f64::min),
            };
            InputDistribution::UniformL2 {
                center,
                radius,
                lower: lo,
                upper: hi,
            }
        }
    };
    d.validate()?;
    Ok(d)
}

fn plan_table(p0: f64, delta: f64) -> Result<Vec<(u64, u64)>> {
    (0..4u64)
        .map(|k| Ok((k, binomial::plan_sample_size(p0, delta, k)?)))
        .collect()
}

/// `nncert estimate`: failure probability of each case of a property, or a sample-size plan.
pub fn estimate(args: EstimateArgs) -> Result<u8> {
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        bail!(
            "--confidence must lie strictly between 0 and 1, got {}",
            args.confidence
        );
    }
    if let Some(p) = args.target_p
        && !(p > 0.0 && p < 1.0)
    {
        bail!("--target-p must lie strictly between 0 and 1, got {p}");
    }
    let delta = 1.0 - args.confidence;
    if args.plan_only {
        let p0 = args.target_p.context("--plan-only needs --target-p")?;
        let table = plan_table(p0, delta)?;
        println!("{}", table[0].1);
        eprintln!(
            "{} samples with no failure show p < {p0:e} with confidence {} (zero-failure rule n >= ln(delta)/ln(1-p0), \
             delta = {delta:.3e}); allowing failures (exact Clopper-Pearson):",
            table[0].1, args.confidence
        );
        for (k, n) in &table {
            eprintln!("  up to {k} failures: {n} samples");
        }
        let value = json!({
            "kind": "sample_size_plan",
            "target_p": p0,
            "confidence": args.confidence,
            "samples_by_allowed_failures": table.iter().map(|(k, n)| json!({"failures": k, "samples": n}))
                .collect::<Vec<_>>(),
            "guarantee": format!(
                "If n = {} independent samples from the input distribution show no failure, then with probability \
                 at least {} over the sampling the failure probability is below {p0:e}.",
                table[0].1, args.confidence
            ),
        });
        write_json(args.out.as_deref(), &value)?;
        return Ok(0);
    }
    let (Some(model), Some(property)) = (&args.model, &args.property) else {
        bail!("estimate needs a MODEL and a PROPERTY (or --plan-only --target-p P)");
    };
    let (graph, prop) = crate::load_pair(model, property)?;
    if prop.cases.is_empty() {
        bail!(
            "{}: the property has no case (its constraints are contradictory)",
            property.display()
        );
    }
    let samples = match (args.samples, args.target_p) {
        (Some(n), _) => n,
        (None, Some(p0)) => {
            let n = binomial::plan_sample_size(p0, delta, 0)?;
            if args.method == Method::Mc {
                eprintln!(
                    "planned {n} samples per case: with no failure among them, p < {p0:e} is shown at confidence {}",
                    args.confidence
                );
            }
            n
        }
        (None, None) => 100_000,
    };
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    let mut cases = Vec::new();
    for (ci, case) in prop.cases.iter().enumerate() {
        let dist = distribution(&args, case)?;
        let scorer = PropertyScorer::new(&graph, case.output.clone())?;
        let start = Instant::now();
        let record = match args.method {
            Method::Mc => {
                let pb = bar(samples, &format!("case {ci}"));
                let est = failure::monte_carlo(
                    &dist,
                    &scorer,
                    samples,
                    args.confidence,
                    args.seed,
                    &|done| pb.set_position(done),
                )?;
                pb.finish_and_clear();
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "case {ci}: {} failures in {} samples: p = {:.4e}, {}% interval [{:.4e}, {:.4e}], upper bound \
                     {:.4e} ({:.2e} samples/s)",
                    est.failures,
                    est.samples,
                    est.p_hat,
                    100.0 * args.confidence,
                    est.interval.0,
                    est.interval.1,
                    est.upper,
                    est.samples as f64 / secs
                );
                let shown = args.target_p.map(|p0| est.upper < p0);
                if let Some(p0) = args.target_p {
                    println!(
                        "  p < {p0:e} {} at confidence {}",
                        if est.upper < p0 { "shown" } else { "NOT shown" },
                        args.confidence
                    );
                }
                json!({
                    "case": ci,
                    "distribution": dist,
                    "method": "monte_carlo",
                    "estimate": est,
                    "target_p_shown": shown,
                    "seconds": secs,
                    "guarantee": format!(
                        "With probability at least {c} over the sampling, the failure probability lies in \
                         [{:.4e}, {:.4e}] (exact two-sided Clopper-Pearson), and separately, with probability at \
                         least {c}, it is at most {:.4e} (one-sided).",
                        est.interval.0, est.interval.1, est.upper, c = args.confidence
                    ),
                })
            }
            Method::Ams => {
                let opts = AmsOptions {
                    particles: args.particles,
                    kill_fraction: args.kill_fraction,
                    mcmc_steps: args.mcmc_steps,
                    min_probability: args.target_p.map_or(1e-30, |p| p / 100.0),
                    confidence: args.confidence,
                    seed: args.seed,
                    ..AmsOptions::default()
                };
                let pb = ProgressBar::new_spinner();
                pb.set_message(format!("case {ci}: splitting"));
                let est =
                    failure::multilevel_splitting(&dist, &scorer, &opts, &|level, log10_p| {
                        pb.set_message(format!(
                            "case {ci}: level {level}, log10 p <= {log10_p:.2}"
                        ));
                        pb.tick();
                    })?;
                pb.finish_and_clear();
                let secs = start.elapsed().as_secs_f64();
                let words = match est.outcome {
                    AmsOutcome::Reached => {
                        println!(
                            "case {ci}: p ≈ {:.4e}, approximate {}% interval [{:.4e}, {:.4e}] ({} levels, {} \
                             evaluations, {:.1} s)",
                            est.p_hat,
                            100.0 * args.confidence,
                            est.interval.0,
                            est.interval.1,
                            est.levels,
                            est.evaluations,
                            secs
                        );
                        if let Some(p0) = args.target_p {
                            println!(
                                "  p < {p0:e} {} (approximate: the interval's upper end is {:.4e})",
                                if est.interval.1 < p0 {
                                    "supported"
                                } else {
                                    "NOT supported"
                                },
                                est.interval.1
                            );
                        }
                        format!(
                            "Approximate {} interval [{:.4e}, {:.4e}] for the failure probability from adaptive \
                             multilevel splitting (asymptotic log-normal; assumes well-mixed Metropolis chains, so \
                             it is an estimate with a stated uncertainty, not a guarantee).",
                            args.confidence, est.interval.0, est.interval.1
                        )
                    }
                    AmsOutcome::BelowMinimum => {
                        println!(
                            "case {ci}: p below {:.4e} (splitting stopped there, {} levels, {:.1} s)",
                            est.level_probability, est.levels, secs
                        );
                        format!(
                            "Multilevel splitting estimated the probability of the last level at {:.4e}; the \
                             failure probability is approximately below it (no guarantee).",
                            est.level_probability
                        )
                    }
                    AmsOutcome::Stalled | AmsOutcome::MaxLevels => {
                        println!(
                            "case {ci}: no estimate: splitting {} after {} levels without reaching the failure \
                             region; p is approximately below {:.4e} (the last level's probability)",
                            if est.outcome == AmsOutcome::Stalled {
                                "stalled (all particles scored alike)"
                            } else {
                                "ran out of levels"
                            },
                            est.levels,
                            est.level_probability
                        );
                        format!(
                            "No estimate: multilevel splitting could not reach the failure region (flat scores or \
                             too many levels); the failure probability is approximately below {:.4e}, the \
                             estimated probability of the last level (no guarantee). Monte Carlo gives a guaranteed \
                             upper bound.",
                            est.level_probability
                        )
                    }
                };
                json!({
                    "case": ci,
                    "distribution": dist,
                    "method": "adaptive_multilevel_splitting",
                    "options": opts,
                    "estimate": est,
                    "seconds": secs,
                    "guarantee": words,
                })
            }
        };
        cases.push(record);
    }
    let value = json!({
        "kind": "failure_probability",
        "model": model.display().to_string(),
        "property": property.display().to_string(),
        "confidence": args.confidence,
        "seed": args.seed,
        "note": "failure = the output lies in the property's bad region (VNN-LIB semantics); outputs in f32",
        "cases": cases,
    });
    write_json(args.out.as_deref(), &value)?;
    Ok(0)
}
