//! Randomized smoothing (Cohen, Rosenfeld & Kolter, "Certified adversarial robustness via randomized smoothing",
//! ICML 2019).
//!
//! The smoothed classifier `g(x) = argmax_c P(f(x + ε) = c)`, `ε ~ N(0, σ²I)`, is robust in L2: if the top class
//! has probability `p_A >= p̲_A > 1/2` then `g` is constant on the ball of radius `σ·Φ⁻¹(p̲_A)` around `x`.
//! [`SmoothedClassifier::certify`] estimates `p̲_A` from samples with an exact one-sided Clopper–Pearson bound, so
//! the radius it returns is valid with probability at least `1 - α` over the sampling;
//! [`SmoothedClassifier::predict`] returns `g(x)` or abstains, and returns a wrong class with probability at most
//! `α`.
//!
//! Noisy copies are evaluated in f32 in batches; batch `j` of phase `phase` for point `point` draws its noise from
//! [`crate::stream`]`(seed, [point, phase, j])`, so results are independent of the number of threads.

use crate::{StatsError, binomial};
use ndarray::{Array2, s};
use nncert_model::Graph;
use nncert_model::eval::Evaluator;
use rand::RngExt;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;

/// Stream ids of the three sampling phases, so that selection and estimation noise never coincide.
const PHASE_SELECT: u64 = 0;
const PHASE_ESTIMATE: u64 = 1;
const PHASE_PREDICT: u64 = 2;

/// Class counts of `f` on noisy copies of one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// How many noisy copies `f` put in each class.
    pub per_class: Vec<u64>,
    /// Copies whose outputs contained NaN: counted for no class, which can only lower `p_A` (conservative).
    pub invalid: u64,
}

impl Counts {
    /// The class with the most votes (the lowest index among ties) and its count.
    pub fn top(&self) -> (usize, u64) {
        let mut best = (0, 0);
        for (c, &k) in self.per_class.iter().enumerate() {
            if k > best.1 {
                best = (c, k);
            }
        }
        best
    }
}

/// The outcome of [`SmoothedClassifier::predict`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The predicted class, or `None` when the binomial test could not separate the top two classes.
    pub class: Option<usize>,
    /// Votes of the top class.
    pub n_a: u64,
    /// Votes of the runner-up.
    pub n_b: u64,
    /// p-value of the two-sided binomial test of `n_a` against `n_b` at one half.
    pub p_value: f64,
}

/// The outcome of [`SmoothedClassifier::certify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Certificate {
    /// The certified class, or `None` (abstain) when `p̲_A <= 1/2`.
    pub class: Option<usize>,
    /// The class chosen from the selection samples (reported even when abstaining).
    pub selected: usize,
    /// Votes for `selected` among the `n` estimation samples.
    pub n_a: u64,
    /// Number of estimation samples.
    pub n: u64,
    /// One-sided Clopper–Pearson lower bound on `P(f(x + ε) = selected)` at confidence `1 - α`.
    pub p_lower: f64,
    /// Certified L2 radius `σ·Φ⁻¹(p_lower)`; 0 when abstaining.
    pub radius: f64,
}

/// A base classifier (a [`Graph`] whose outputs are class scores) smoothed with Gaussian noise.
pub struct SmoothedClassifier<'g> {
    eval: Evaluator<'g, f32>,
    input_size: usize,
    num_classes: usize,
    sigma: f64,
    batch: usize,
    seed: u64,
}

impl<'g> SmoothedClassifier<'g> {
    /// Smooths `graph` with noise level `sigma` (standard deviation, in input units); `seed` fixes every draw.
    ///
    /// # Errors
    /// [`StatsError::Invalid`] if `sigma` is not finite and positive or the model has fewer than two outputs.
    pub fn new(graph: &'g Graph, sigma: f64, seed: u64) -> Result<Self, StatsError> {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(StatsError::Invalid(format!(
                "the noise level sigma must be a positive number, got {sigma}"
            )));
        }
        if graph.output_size() < 2 {
            return Err(StatsError::Invalid(format!(
                "randomized smoothing needs a classifier with at least 2 outputs, the model has {}",
                graph.output_size()
            )));
        }
        Ok(SmoothedClassifier {
            eval: Evaluator::new(graph),
            input_size: graph.input_size(),
            num_classes: graph.output_size(),
            sigma,
            batch: 1000,
            seed,
        })
    }

    /// Sets how many noisy copies go through the network at once (default 1,000). Results do not depend on it
    /// only if it stays the same: the batch is the unit of the random streams.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The noise level σ.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn check_input(&self, x: &[f64]) -> Result<(), StatsError> {
        if x.len() != self.input_size {
            return Err(StatsError::Invalid(format!(
                "an input has {} values but the model takes {}",
                x.len(),
                self.input_size
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(StatsError::Invalid(format!(
                "input value {i} is not finite ({})",
                x[i]
            )));
        }
        Ok(())
    }

    fn check_alpha(alpha: f64) -> Result<(), StatsError> {
        if alpha > 0.0 && alpha < 1.0 {
            Ok(())
        } else {
            Err(StatsError::Invalid(format!(
                "the failure probability alpha must lie strictly between 0 and 1, got {alpha}"
            )))
        }
    }

    /// Counts the classes `f` gives to `num` noisy copies of `x`; `point` and `phase` name the random streams.
    ///
    /// # Errors
    /// [`StatsError::Invalid`] for a wrongly sized or non-finite `x`; [`StatsError::Model`] if evaluation fails.
    pub fn sample_counts(
        &self,
        x: &[f64],
        num: u64,
        point: u64,
        phase: u64,
    ) -> Result<Counts, StatsError> {
        self.check_input(x)?;
        let d = self.input_size;
        let batch = self.batch as u64;
        let batches = num.div_ceil(batch);
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let zero = || Counts {
            per_class: vec![0; self.num_classes],
            invalid: 0,
        };
        (0..batches)
            .into_par_iter()
            .map_init(
                || Array2::<f32>::zeros((self.batch, d)),
                |buf, j| -> Result<Counts, StatsError> {
                    let rows = (num - j * batch).min(batch) as usize;
                    let mut rng = crate::stream(self.seed, &[point, phase, j]);
                    for mut row in buf.rows_mut().into_iter().take(rows) {
                        for (v, &c) in row.iter_mut().zip(&xf) {
                            let z: f64 = rng.sample(StandardNormal);
                            *v = c + (self.sigma * z) as f32;
                        }
                    }
                    let y = self.eval.forward(buf.slice(s![..rows, ..]))?;
                    let mut counts = zero();
                    let y = y.as_standard_layout();
                    let flat = y.as_slice().expect("standard layout is contiguous");
                    for row in flat.chunks(self.num_classes) {
                        match argmax(row) {
                            Some(c) => counts.per_class[c] += 1,
                            None => counts.invalid += 1,
                        }
                    }
                    Ok(counts)
                },
            )
            .try_reduce(zero, |mut a, b| {
                for (x, y) in a.per_class.iter_mut().zip(&b.per_class) {
                    *x += y;
                }
                a.invalid += b.invalid;
                Ok(a)
            })
    }

    /// PREDICT: the smoothed class of `x` from `n` noisy copies, or abstention when the two-sided binomial test of
    /// the top two counts at one half has p-value above `alpha`. The returned class differs from `g(x)` with
    /// probability at most `alpha`.
    ///
    /// # Errors
    /// As [`Self::sample_counts`], and [`StatsError::Invalid`] for `n == 0` or `alpha` outside (0, 1).
    pub fn predict(
        &self,
        x: &[f64],
        point: u64,
        n: u64,
        alpha: f64,
    ) -> Result<Prediction, StatsError> {
        Self::check_alpha(alpha)?;
        if n == 0 {
            return Err(StatsError::Invalid(
                "predict needs at least one noise sample".into(),
            ));
        }
        let counts = self.sample_counts(x, n, point, PHASE_PREDICT)?;
        let (a, n_a) = counts.top();
        let n_b = counts
            .per_class
            .iter()
            .enumerate()
            .filter(|&(c, _)| c != a)
            .map(|(_, &k)| k)
            .max()
            .unwrap_or(0);
        let p_value = binomial::binom_test_half(n_a, n_b);
        Ok(Prediction {
            class: (n_a > n_b && p_value <= alpha).then_some(a),
            n_a,
            n_b,
            p_value,
        })
    }

    /// CERTIFY: selects the top class from `n0` noisy copies, bounds its probability from `n` fresh copies with an
    /// exact one-sided Clopper–Pearson bound at confidence `1 - alpha`, and returns the class with the certified
    /// radius `σ·Φ⁻¹(p̲_A)`, or abstains when `p̲_A <= 1/2`.
    ///
    /// With probability at least `1 - alpha` over the noise, a returned class is the smoothed classifier's
    /// prediction at every point within the returned L2 radius of `x`.
    ///
    /// # Errors
    /// As [`Self::predict`], and for `n0 == 0`.
    pub fn certify(
        &self,
        x: &[f64],
        point: u64,
        n0: u64,
        n: u64,
        alpha: f64,
    ) -> Result<Certificate, StatsError> {
        Self::check_alpha(alpha)?;
        if n0 == 0 || n == 0 {
            return Err(StatsError::Invalid(format!(
                "certify needs at least one selection and one estimation sample, got n0 = {n0}, n = {n}"
            )));
        }
        let (selected, _) = self.sample_counts(x, n0, point, PHASE_SELECT)?.top();
        let counts = self.sample_counts(x, n, point, PHASE_ESTIMATE)?;
        let n_a = counts.per_class[selected];
        let p_lower = binomial::lower_bound(n_a, n, alpha)?;
        let certified = p_lower > 0.5;
        Ok(Certificate {
            class: certified.then_some(selected),
            selected,
            n_a,
            n,
            p_lower,
            radius: if certified {
                self.sigma * binomial::phi_inv(p_lower)
            } else {
                0.0
            },
        })
    }
}

impl SmoothedClassifier<'_> {
    /// [`Self::predict`] on every row of `xs` (row `i` is point `i`), in parallel over the points; `progress` is
    /// called after each point with the number done.
    ///
    /// # Errors
    /// As [`Self::predict`], for the first failing point.
    pub fn predict_all(
        &self,
        xs: ndarray::ArrayView2<'_, f64>,
        n: u64,
        alpha: f64,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Prediction>, StatsError> {
        let done = std::sync::atomic::AtomicUsize::new(0);
        (0..xs.nrows())
            .into_par_iter()
            .map(|i| {
                let row = xs.row(i).to_vec();
                let p = self
                    .predict(&row, i as u64, n, alpha)
                    .map_err(|e| match e {
                        StatsError::Invalid(m) => StatsError::Invalid(format!("point {i}: {m}")),
                        other => other,
                    })?;
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                Ok(p)
            })
            .collect()
    }

    /// [`Self::certify`] on every row of `xs` (row `i` is point `i` for the random streams), in parallel over the
    /// points as well as over each point's noise batches; `progress` is called after each point with the number
    /// done. Returns each certificate with the seconds it took.
    ///
    /// # Errors
    /// As [`Self::certify`], for the first failing point.
    pub fn certify_all(
        &self,
        xs: ndarray::ArrayView2<'_, f64>,
        n0: u64,
        n: u64,
        alpha: f64,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<(Certificate, f64)>, StatsError> {
        let done = std::sync::atomic::AtomicUsize::new(0);
        (0..xs.nrows())
            .into_par_iter()
            .map(|i| {
                let start = std::time::Instant::now();
                let row = xs.row(i).to_vec();
                let c = self
                    .certify(&row, i as u64, n0, n, alpha)
                    .map_err(|e| match e {
                        StatsError::Invalid(m) => StatsError::Invalid(format!("point {i}: {m}")),
                        other => other,
                    })?;
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                Ok((c, start.elapsed().as_secs_f64()))
            })
            .collect()
    }
}

/// The index of the largest value (the lowest among ties); `None` if any value is NaN.
fn argmax(y: &[f32]) -> Option<usize> {
    let mut best = 0;
    for (i, &v) in y.iter().enumerate() {
        if v.is_nan() {
            return None;
        }
        if v > y[best] {
            best = i;
        }
    }
    Some(best)
}

/// Certified accuracy at each radius: the fraction of points whose certified class equals the label and whose
/// certified radius is at least the radius (abstentions never count).
///
/// # Errors
/// [`StatsError::Invalid`] if `certificates` and `labels` differ in length or are empty.
pub fn certified_accuracy(
    certificates: &[Certificate],
    labels: &[usize],
    radii: &[f64],
) -> Result<Vec<f64>, StatsError> {
    if certificates.len() != labels.len() || labels.is_empty() {
        return Err(StatsError::Invalid(format!(
            "{} certificates for {} labels",
            certificates.len(),
            labels.len()
        )));
    }
    let n = labels.len() as f64;
    Ok(radii
        .iter()
        .map(|&r| {
            let hits = certificates
                .iter()
                .zip(labels)
                .filter(|&(c, &l)| c.class == Some(l) && c.radius >= r)
                .count();
            hits as f64 / n
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_first_and_rejects_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[1.0, f32::NAN]), None);
    }

    #[test]
    fn curve_counts_correct_certified_points() {
        let cert = |class, radius| Certificate {
            class,
            selected: 0,
            n_a: 0,
            n: 1,
            p_lower: 0.0,
            radius,
        };
        let certs = [
            cert(Some(0), 0.3),
            cert(Some(1), 0.9),
            cert(None, 0.0),
            cert(Some(2), 2.0),
        ];
        let labels = [0, 1, 1, 0];
        let acc = certified_accuracy(&certs, &labels, &[0.0, 0.5, 1.0]).unwrap();
        assert_eq!(acc, vec![0.5, 0.25, 0.0]);
        assert!(certified_accuracy(&certs, &labels[..2], &[0.0]).is_err());
    }
}
