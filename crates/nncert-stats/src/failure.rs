//! The probability that a property fails when inputs are drawn from a distribution.
//!
//! A [`Scorer`] maps inputs to scores where `score >= 0` means failure (for a VNN-LIB case: the negated margin of
//! its bad output region, see [`PropertyScorer`]). [`monte_carlo`] estimates `p = P(score(X) >= 0)` with an exact
//! Clopper–Pearson interval; [`multilevel_splitting`] estimates very small `p` (down to 1e-10 and below) by adaptive
//! multilevel splitting as in Webb, Rainforth, Teh & Kumar, "A statistical approach to assessing neural network
//! robustness" (ICLR 2019): particles climb through score levels set at empirical quantiles, the killed fraction
//! is replaced by copies of survivors, which are decorrelated by Metropolis moves that keep the input
//! distribution restricted to the current level set invariant; `log p` is the sum of the log survival fractions.
//!
//! Every distribution is sampled through a *latent* vector whose prior has a simple reversible random walk
//! (uniform cube: reflected Gaussian steps; L2 ball: Gaussian steps rejected outside the ball; standard normal:
//! the preconditioned Crank–Nicolson move), mapped to an input by a fixed function (scaling, shifting, clipping).

use crate::{StatsError, binomial};
use ndarray::ArrayView2;
use nncert_model::Graph;
use nncert_model::eval::Evaluator;
use nncert_spec::OutputCondition;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;

/// Rows per parallel job and per random stream: a fixed unit, so results are independent of the thread count.
const CHUNK: usize = 1000;
/// Stream tags of the different random uses.
const TAG_MC: u64 = 1;
const TAG_AMS_INIT: u64 = 2;
const TAG_AMS_RESAMPLE: u64 = 3;
const TAG_AMS_MOVE: u64 = 4;

/// An input distribution. Bounds `lower`/`upper` are the valid input range; samples are clipped to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputDistribution {
    /// Uniform on the box `[lower, upper]` (e.g. a VNN-LIB case's input box).
    UniformBox {
        /// Lower corner.
        lower: Vec<f64>,
        /// Upper corner.
        upper: Vec<f64>,
    },
    /// Uniform on the L2 ball of `radius` around `center`, then clipped to `[lower, upper]`.
    UniformL2 {
        /// Centre of the ball.
        center: Vec<f64>,
        /// Radius of the ball.
        radius: f64,
        /// Lower end of the valid range.
        lower: Vec<f64>,
        /// Upper end of the valid range.
        upper: Vec<f64>,
    },
    /// `N(center, diag(sigma²))`, then clipped to `[lower, upper]` (bounds may be infinite).
    Gaussian {
        /// Mean.
        center: Vec<f64>,
        /// Standard deviation per input.
        sigma: Vec<f64>,
        /// Lower end of the valid range.
        lower: Vec<f64>,
        /// Upper end of the valid range.
        upper: Vec<f64>,
    },
}

fn invalid(msg: String) -> StatsError {
    StatsError::Invalid(msg)
}

impl InputDistribution {
    /// Uniform on the L∞ ball of radius `eps` around `center` intersected with the valid range `[lower, upper]`.
    ///
    /// # Errors
    /// [`StatsError::Invalid`] if the sizes differ, `eps` is negative or the intersection is empty.
    pub fn uniform_linf(
        center: &[f64],
        eps: f64,
        lower: &[f64],
        upper: &[f64],
    ) -> Result<Self, StatsError> {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(invalid(format!(
                "the L-infinity radius must be finite and >= 0, got {eps}"
            )));
        }
        if center.len() != lower.len() || center.len() != upper.len() {
            return Err(invalid("centre and valid range differ in size".into()));
        }
        let lo: Vec<f64> = center
            .iter()
            .zip(lower)
            .map(|(c, l)| (c - eps).max(*l))
            .collect();
        let hi: Vec<f64> = center
            .iter()
            .zip(upper)
            .map(|(c, u)| (c + eps).min(*u))
            .collect();
        let d = InputDistribution::UniformBox {
            lower: lo,
            upper: hi,
        };
        d.validate()?;
        Ok(d)
    }

    /// The number of inputs.
    pub fn dim(&self) -> usize {
        match self {
            InputDistribution::UniformBox { lower, .. } => lower.len(),
            InputDistribution::UniformL2 { center, .. }
            | InputDistribution::Gaussian { center, .. } => center.len(),
        }
    }

    /// Checks sizes, finiteness and ordering.
    ///
    /// # Errors
    /// [`StatsError::Invalid`] naming the first problem.
    pub fn validate(&self) -> Result<(), StatsError> {
        let range =
            |lower: &[f64], upper: &[f64], n: usize, finite: bool| -> Result<(), StatsError> {
                if lower.len() != n || upper.len() != n {
                    return Err(invalid(format!(
                        "the valid range has {} lower and {} upper bounds for {n} inputs",
                        lower.len(),
                        upper.len()
                    )));
                }
                for (i, (l, u)) in lower.iter().zip(upper).enumerate() {
                    if l.is_nan()
                        || u.is_nan()
                        || l > u
                        || (finite && !(l.is_finite() && u.is_finite()))
                    {
                        return Err(invalid(format!(
                            "input {i}: bounds [{l}, {u}] do not form a (finite) interval"
                        )));
                    }
                }
                Ok(())
            };
        match self {
            InputDistribution::UniformBox { lower, upper } => {
                if lower.is_empty() {
                    return Err(invalid("the distribution has no inputs".into()));
                }
                range(lower, upper, lower.len(), true)
            }
            InputDistribution::UniformL2 {
                center,
                radius,
                lower,
                upper,
            } => {
                if !(radius.is_finite() && *radius >= 0.0) {
                    return Err(invalid(format!(
                        "the L2 radius must be finite and >= 0, got {radius}"
                    )));
                }
                if center.is_empty() || center.iter().any(|c| !c.is_finite()) {
                    return Err(invalid("the centre must be non-empty and finite".into()));
                }
                range(lower, upper, center.len(), false)
            }
            InputDistribution::Gaussian {
                center,
                sigma,
                lower,
                upper,
            } => {
                if center.is_empty() || center.iter().any(|c| !c.is_finite()) {
                    return Err(invalid("the centre must be non-empty and finite".into()));
                }
                if sigma.len() != center.len()
                    || sigma.iter().any(|s| !(s.is_finite() && *s >= 0.0))
                {
                    return Err(invalid(format!(
                        "sigma needs {} finite values >= 0, got {:?}",
                        center.len(),
                        sigma
                    )));
                }
                range(lower, upper, center.len(), false)
            }
        }
    }

    /// Draws one latent vector from the prior.
    fn sample_latent(&self, rng: &mut ChaCha8Rng, out: &mut [f64]) {
        match self {
            InputDistribution::UniformBox { .. } => {
                out.iter_mut().for_each(|v| *v = rng.random::<f64>())
            }
            InputDistribution::UniformL2 { radius, .. } => {
                // Uniform in the ball: a uniform direction times radius · U^(1/d).
                let mut norm = 0.0;
                while norm == 0.0 {
                    for v in out.iter_mut() {
                        *v = rng.sample(StandardNormal);
                    }
                    norm = out.iter().map(|v| v * v).sum::<f64>().sqrt();
                }
                let r = radius * rng.random::<f64>().powf(1.0 / out.len() as f64);
                out.iter_mut().for_each(|v| *v *= r / norm);
            }
            InputDistribution::Gaussian { .. } => {
                out.iter_mut().for_each(|v| *v = rng.sample(StandardNormal))
            }
        }
    }

    /// A proposal from `cur` by a random walk that is reversible for the prior; `false` if it left the support
    /// (then it must be rejected). `step` in (0, 1] scales the move.
    fn propose(&self, rng: &mut ChaCha8Rng, cur: &[f64], step: f64, out: &mut [f64]) -> bool {
        match self {
            InputDistribution::UniformBox { .. } => {
                // Reflecting at the faces keeps the Gaussian step symmetric, so the uniform law is invariant.
                for (o, &c) in out.iter_mut().zip(cur) {
                    let z: f64 = rng.sample(StandardNormal);
                    let mut v = (c + step * z).rem_euclid(2.0);
                    if v > 1.0 {
                        v = 2.0 - v;
                    }
                    *o = v;
                }
                true
            }
            InputDistribution::UniformL2 { radius, .. } => {
                let mut norm2 = 0.0;
                for (o, &c) in out.iter_mut().zip(cur) {
                    let z: f64 = rng.sample(StandardNormal);
                    *o = c + step * radius * z;
                    norm2 += *o * *o;
                }
                norm2 <= radius * radius
            }
            InputDistribution::Gaussian { .. } => {
                // Preconditioned Crank–Nicolson: reversible for N(0, I) with no accept/reject of its own.
                let keep = (1.0 - step * step).max(0.0).sqrt();
                for (o, &c) in out.iter_mut().zip(cur) {
                    let z: f64 = rng.sample(StandardNormal);
                    *o = keep * c + step * z;
                }
                true
            }
        }
    }

    /// Maps a latent vector to an input.
    fn to_input(&self, latent: &[f64], x: &mut [f32]) {
        match self {
            InputDistribution::UniformBox { lower, upper } => {
                for (((o, &u), &l), &h) in x.iter_mut().zip(latent).zip(lower).zip(upper) {
                    *o = (l + u * (h - l)).clamp(l, h) as f32;
                }
            }
            InputDistribution::UniformL2 {
                center,
                lower,
                upper,
                ..
            } => {
                for ((((o, &v), &c), &l), &h) in
                    x.iter_mut().zip(latent).zip(center).zip(lower).zip(upper)
                {
                    *o = (c + v).clamp(l, h) as f32;
                }
            }
            InputDistribution::Gaussian {
                center,
                sigma,
                lower,
                upper,
            } => {
                for (((((o, &z), &c), &s), &l), &h) in x
                    .iter_mut()
                    .zip(latent)
                    .zip(center)
                    .zip(sigma)
                    .zip(lower)
                    .zip(upper)
                {
                    *o = (c + s * z).clamp(l, h) as f32;
                }
            }
        }
    }

    /// Maps a latent vector to an input in f64 (for reporting).
    pub fn input_of(&self, latent: &[f64]) -> Vec<f64> {
        let mut x = vec![0f32; latent.len()];
        self.to_input(latent, &mut x);
        x.into_iter().map(f64::from).collect()
    }
}

/// Scores inputs: `score >= 0` means the property fails.
pub trait Scorer: Sync {
    /// The number of inputs.
    fn input_size(&self) -> usize;
    /// Writes one score per row of `x` (`[rows, input_size]`) into `out`.
    ///
    /// # Errors
    /// [`StatsError::Model`] if evaluation fails.
    fn scores(&self, x: ArrayView2<'_, f32>, out: &mut [f64]) -> Result<(), StatsError>;
}

/// A VNN-LIB case as a scorer: the score of `x` is `-margin(f(x))`, the negated margin of the bad output region
/// (`>= 0` iff the output is bad), evaluated in f32. An output containing NaN scores `+inf` (counted as failure:
/// the conservative choice for a failure probability).
pub struct PropertyScorer<'g> {
    eval: Evaluator<'g, f32>,
    condition: OutputCondition,
    outputs: usize,
}

impl<'g> PropertyScorer<'g> {
    /// Scores `graph`'s outputs against `condition` (the bad region).
    ///
    /// # Errors
    /// [`StatsError::Invalid`] if a constraint's size differs from the model's outputs.
    pub fn new(graph: &'g Graph, condition: OutputCondition) -> Result<Self, StatsError> {
        let outputs = graph.output_size();
        for d in &condition.disjuncts {
            for c in &d.constraints {
                if c.coeffs.len() != outputs {
                    return Err(invalid(format!(
                        "an output constraint has {} coefficients but the model has {outputs} outputs",
                        c.coeffs.len()
                    )));
                }
            }
        }
        Ok(PropertyScorer {
            eval: Evaluator::new(graph),
            condition,
            outputs,
        })
    }
}

impl Scorer for PropertyScorer<'_> {
    fn input_size(&self) -> usize {
        self.eval.graph().input_size()
    }

    fn scores(&self, x: ArrayView2<'_, f32>, out: &mut [f64]) -> Result<(), StatsError> {
        let y = self.eval.forward(x)?;
        let y = y.as_standard_layout();
        let flat = y.as_slice().expect("standard layout is contiguous");
        let mut yf = vec![0f64; self.outputs];
        for (o, row) in out.iter_mut().zip(flat.chunks(self.outputs)) {
            for (a, &b) in yf.iter_mut().zip(row) {
                *a = f64::from(b);
            }
            let m = self.condition.margin(&yf);
            *o = if yf.iter().any(|v| v.is_nan()) || m.is_nan() {
                f64::INFINITY
            } else {
                -m
            };
        }
        Ok(())
    }
}

/// Scores latent rows `latents` (`rows × d`, row-major) into `out`, reusing the caller's input buffer.
fn score_rows(
    dist: &InputDistribution,
    scorer: &dyn Scorer,
    latents: &[f64],
    xbuf: &mut Vec<f32>,
    out: &mut [f64],
) -> Result<(), StatsError> {
    let d = dist.dim();
    let rows = out.len();
    xbuf.resize(rows * d, 0.0);
    for (lat, x) in latents.chunks(d).zip(xbuf.chunks_mut(d)) {
        dist.to_input(lat, x);
    }
    let view = ArrayView2::from_shape((rows, d), &xbuf[..]).expect("buffer sized rows × d");
    scorer.scores(view, out)
}

fn check_pair(dist: &InputDistribution, scorer: &dyn Scorer) -> Result<(), StatsError> {
    dist.validate()?;
    if dist.dim() != scorer.input_size() {
        return Err(invalid(format!(
            "the distribution has {} inputs but the model takes {}",
            dist.dim(),
            scorer.input_size()
        )));
    }
    Ok(())
}

fn check_confidence(confidence: f64) -> Result<(), StatsError> {
    if confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(invalid(format!(
            "the confidence must lie strictly between 0 and 1, got {confidence}"
        )))
    }
}

/// A plain Monte Carlo estimate of a failure probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McEstimate {
    /// Number of samples drawn.
    pub samples: u64,
    /// Number of failures among them.
    pub failures: u64,
    /// `failures / samples`.
    pub p_hat: f64,
    /// Two-sided Clopper–Pearson interval at `confidence`.
    pub interval: (f64, f64),
    /// One-sided Clopper–Pearson upper bound at `confidence`.
    pub upper: f64,
    /// The confidence level of both bounds.
    pub confidence: f64,
    /// A failing input (the first in sampling order), if any.
    pub example: Option<Vec<f64>>,
}

/// One Monte Carlo batch's failures and its first failing input (with its sample index).
type BatchTally = (u64, Option<(u64, Vec<f64>)>);

/// Plain Monte Carlo: draws `samples` inputs from `dist` and counts failures, with exact Clopper–Pearson bounds.
/// `progress` is called with the number of samples done after each batch.
///
/// # Errors
/// [`StatsError::Invalid`] for mismatched sizes, `samples == 0` or a confidence outside (0, 1);
/// [`StatsError::Model`] if evaluation fails.
pub fn monte_carlo(
    dist: &InputDistribution,
    scorer: &dyn Scorer,
    samples: u64,
    confidence: f64,
    seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<McEstimate, StatsError> {
    check_pair(dist, scorer)?;
    check_confidence(confidence)?;
    if samples == 0 {
        return Err(invalid("Monte Carlo needs at least one sample".into()));
    }
    let d = dist.dim();
    let chunk = CHUNK as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    // Per batch: failure count and the first failing latent row.
    let (failures, example) = (0..samples.div_ceil(chunk))
        .into_par_iter()
        .map_init(
            || (vec![0f64; CHUNK * d], Vec::new(), vec![0f64; CHUNK]),
            |(lat, xbuf, sc), j| -> Result<BatchTally, StatsError> {
                let rows = (samples - j * chunk).min(chunk) as usize;
                let mut rng = crate::stream(seed, &[TAG_MC, j]);
                for row in lat[..rows * d].chunks_mut(d) {
                    dist.sample_latent(&mut rng, row);
                }
                score_rows(dist, scorer, &lat[..rows * d], xbuf, &mut sc[..rows])?;
                let fails = sc[..rows].iter().filter(|&&s| s >= 0.0).count() as u64;
                let first = sc[..rows].iter().position(|&s| s >= 0.0).map(|i| {
                    (
                        j * chunk + i as u64,
                        dist.input_of(&lat[i * d..(i + 1) * d]),
                    )
                });
                let now =
                    done.fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed) + rows as u64;
                progress(now);
                Ok((fails, first))
            },
        )
        .try_reduce(
            || (0, None),
            |a, b| {
                let ex = match (a.1, b.1) {
                    (Some(x), Some(y)) => Some(if x.0 <= y.0 { x } else { y }),
                    (x, y) => x.or(y),
                };
                Ok((a.0 + b.0, ex))
            },
        )?;
    let alpha = 1.0 - confidence;
    Ok(McEstimate {
        samples,
        failures,
        p_hat: failures as f64 / samples as f64,
        interval: binomial::clopper_pearson(failures, samples, alpha)?,
        upper: binomial::upper_bound(failures, samples, alpha)?,
        confidence,
        example: example.map(|e| e.1),
    })
}

/// Settings of [`multilevel_splitting`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmsOptions {
    /// Number of particles `N`.
    pub particles: usize,
    /// Fraction of particles killed at each level (Webb et al.'s quantile ρ).
    pub kill_fraction: f64,
    /// Metropolis sweeps over all particles after each resampling.
    pub mcmc_steps: usize,
    /// Stop with [`AmsOutcome::BelowMinimum`] once the estimate falls below this probability.
    pub min_probability: f64,
    /// Upper limit on the number of levels.
    pub max_levels: usize,
    /// Confidence level of the reported (approximate) interval.
    pub confidence: f64,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for AmsOptions {
    fn default() -> Self {
        AmsOptions {
            particles: 2000,
            kill_fraction: 0.1,
            mcmc_steps: 20,
            min_probability: 1e-30,
            max_levels: 5000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// How a multilevel splitting run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AmsOutcome {
    /// The levels reached the failure region: the estimate is complete.
    Reached,
    /// The probability of the last level fell below `min_probability` before the failure region was reached: no
    /// estimate (`p_hat` is NaN); the failure probability is approximately below `level_probability`.
    BelowMinimum,
    /// All particles had the same score below the failure threshold, so no level could be raised (e.g. a flat
    /// region of the network, or inputs clipped to a corner of the valid range); no estimate, only the
    /// approximate upper estimate `level_probability`.
    Stalled,
    /// `max_levels` were used up before reaching the failure region; no estimate.
    MaxLevels,
}

/// An adaptive multilevel splitting estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmsEstimate {
    /// How the run ended.
    pub outcome: AmsOutcome,
    /// The estimate of `p`; NaN unless the outcome is [`AmsOutcome::Reached`].
    pub p_hat: f64,
    /// `log10(p_hat)`.
    pub log10_p: f64,
    /// Approximate interval at `confidence` (log-normal, from the asymptotic variance of the estimator); when the
    /// failure region was not reached, `(0, approximate upper bound from level_probability)`.
    pub interval: (f64, f64),
    /// The confidence level of `interval`.
    pub confidence: f64,
    /// Estimated relative standard deviation of `p_hat`.
    pub relative_std: f64,
    /// Estimated probability of exceeding the last level (`Π survivors/N`): an approximate upper estimate of the
    /// failure probability whatever the outcome, since the last level lies below the failure threshold.
    pub level_probability: f64,
    /// Number of levels.
    pub levels: usize,
    /// The score levels, in order.
    pub level_scores: Vec<f64>,
    /// Number of network evaluations.
    pub evaluations: u64,
    /// Mean Metropolis acceptance rate.
    pub acceptance: f64,
}

/// Adaptive multilevel splitting for `p = P(score(X) >= 0)`, `X ~ dist`.
///
/// At each level the `kill_fraction` quantile of the particles' scores becomes the level `L`; particles with
/// score `<= L` are replaced by copies of uniformly chosen survivors, and all particles then make `mcmc_steps`
/// Metropolis moves that keep `dist` restricted to `{score > L}` invariant (proposal reversible for the prior,
/// accepted iff its score exceeds `L`), with the step size tuned between sweeps towards an acceptance rate of
/// 0.2–0.4. The run ends when the level reaches 0: `p̂ = Π (survivors/N) · (failing/N)`.
///
/// The interval is approximate: it uses the asymptotic variance of the idealized estimator
/// (`Var(log p̂) ≈ Σ_k (1-r_k)/(N r_k)` over the level survival fractions `r_k`, Cérou & Guyader 2007), which
/// assumes well-mixed Metropolis chains; correlated particles make the true spread larger.
///
/// # Errors
/// [`StatsError::Invalid`] for mismatched sizes or options out of range; [`StatsError::Model`] if evaluation
/// fails.
pub fn multilevel_splitting(
    dist: &InputDistribution,
    scorer: &dyn Scorer,
    opts: &AmsOptions,
    progress: &(dyn Fn(usize, f64) + Sync),
) -> Result<AmsEstimate, StatsError> {
    check_pair(dist, scorer)?;
    check_confidence(opts.confidence)?;
    let n = opts.particles;
    if n < 10 {
        return Err(invalid(format!(
            "multilevel splitting needs at least 10 particles, got {n}"
        )));
    }
    if !(opts.kill_fraction > 0.0 && opts.kill_fraction < 1.0) {
        return Err(invalid(format!(
            "the kill fraction must lie in (0, 1), got {}",
            opts.kill_fraction
        )));
    }
    if !(opts.min_probability > 0.0 && opts.min_probability < 1.0) {
        return Err(invalid(format!(
            "the minimum probability must lie in (0, 1), got {}",
            opts.min_probability
        )));
    }
    let d = dist.dim();
    let seed = opts.seed;
    let mut lat = vec![0f64; n * d];
    let mut score = vec![0f64; n];
    let mut evaluations = n as u64;
    lat.par_chunks_mut(CHUNK * d)
        .zip(score.par_chunks_mut(CHUNK))
        .enumerate()
        .try_for_each_init(Vec::new, |xbuf, (c, (l, s))| {
            let mut rng = crate::stream(seed, &[TAG_AMS_INIT, c as u64]);
            for row in l.chunks_mut(d) {
                dist.sample_latent(&mut rng, row);
            }
            score_rows(dist, scorer, l, xbuf, s)
        })?;

    let kill = ((opts.kill_fraction * n as f64).ceil() as usize).clamp(1, n - 1);
    let mut log_p = 0.0f64;
    let mut var_log = 0.0f64;
    let mut level_scores = Vec::new();
    let mut step = 0.5f64;
    let (mut proposed, mut accepted) = (0u64, 0u64);
    let mut sorted = vec![0f64; n];
    let mut proposals = vec![0f64; n * d];
    let mut new_scores = vec![0f64; n];
    let outcome = loop {
        sorted.copy_from_slice(&score);
        sorted.sort_unstable_by(f64::total_cmp);
        let level = sorted[kill - 1];
        if level >= 0.0 {
            break AmsOutcome::Reached;
        }
        if level_scores.len() >= opts.max_levels {
            break AmsOutcome::MaxLevels;
        }
        let survivors: Vec<usize> = (0..n).filter(|&i| score[i] > level).collect();
        if survivors.is_empty() {
            break AmsOutcome::Stalled;
        }
        let r = survivors.len() as f64 / n as f64;
        log_p += r.ln();
        var_log += (1.0 - r) / (r * n as f64);
        level_scores.push(level);
        progress(level_scores.len(), log_p / std::f64::consts::LN_10);
        if log_p < opts.min_probability.ln() {
            break AmsOutcome::BelowMinimum;
        }
        let k = level_scores.len() as u64;
        let mut rng = crate::stream(seed, &[TAG_AMS_RESAMPLE, k]);
        for i in 0..n {
            if score[i] <= level {
                let j = survivors[rng.random_range(0..survivors.len())];
                lat.copy_within(j * d..(j + 1) * d, i * d);
                score[i] = score[j];
            }
        }
        for sweep in 0..opts.mcmc_steps as u64 {
            let acc: u64 = lat
                .par_chunks_mut(CHUNK * d)
                .zip(score.par_chunks_mut(CHUNK))
                .zip(proposals.par_chunks_mut(CHUNK * d))
                .zip(new_scores.par_chunks_mut(CHUNK))
                .enumerate()
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(xbuf, inside), (c, (((l, s), p), ns))| -> Result<u64, StatsError> {
                        let mut rng = crate::stream(seed, &[TAG_AMS_MOVE, k, sweep, c as u64]);
                        inside.clear();
                        inside.resize(s.len(), false);
                        for ((cur, prop), ok) in
                            l.chunks(d).zip(p.chunks_mut(d)).zip(inside.iter_mut())
                        {
                            *ok = dist.propose(&mut rng, cur, step, prop);
                        }
                        score_rows(dist, scorer, p, xbuf, ns)?;
                        let mut a = 0;
                        for i in 0..s.len() {
                            if inside[i] && ns[i] > level {
                                l[i * d..(i + 1) * d].copy_from_slice(&p[i * d..(i + 1) * d]);
                                s[i] = ns[i];
                                a += 1;
                            }
                        }
                        Ok(a)
                    },
                )
                .try_reduce(|| 0, |a, b| Ok(a + b))?;
            evaluations += n as u64;
            proposed += n as u64;
            accepted += acc;
            // Tune the step between sweeps from an integer count, so the tuning is deterministic too.
            let rate = acc as f64 / n as f64;
            if rate < 0.2 {
                step = (step * 0.7).max(1e-4);
            } else if rate > 0.4 {
                step = (step * 1.3).min(1.0);
            }
        }
    };
    let z = binomial::phi_inv(0.5 + opts.confidence / 2.0);
    let acceptance = if proposed > 0 {
        accepted as f64 / proposed as f64
    } else {
        0.0
    };
    let sd_levels = var_log.sqrt();
    let p_hat = match outcome {
        AmsOutcome::Reached => {
            let hits = score.iter().filter(|&&s| s >= 0.0).count() as f64 / n as f64;
            var_log += (1.0 - hits) / (hits * n as f64);
            (log_p + hits.ln()).exp()
        }
        _ => f64::NAN,
    };
    let sd = var_log.sqrt();
    let interval = if outcome == AmsOutcome::Reached {
        (p_hat * (-z * sd).exp(), (p_hat * (z * sd).exp()).min(1.0))
    } else {
        // The failure region was not reached: only the last level's probability bounds p (approximately).
        (0.0, (log_p + z * sd_levels).exp().min(1.0))
    };
    Ok(AmsEstimate {
        outcome,
        p_hat,
        log10_p: p_hat.log10(),
        interval,
        confidence: opts.confidence,
        relative_std: sd,
        level_probability: log_p.exp(),
        levels: level_scores.len(),
        level_scores,
        evaluations,
        acceptance,
    })
}
