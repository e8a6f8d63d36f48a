//! Metrics: exact binomial intervals, accuracy, performance drop, corruption error.

use serde::Serialize;
use statrs::distribution::{Beta, ContinuousCDF};

/// Two-sided Clopper–Pearson interval of a binomial proportion with `k` successes in `n` trials, at confidence
/// `1 - alpha`. Exact (never narrower than the true coverage requires); `(0, 1)` when `n == 0`.
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (kf, nf) = (k as f64, n as f64);
    let lower = if k == 0 {
        0.0
    } else {
        Beta::new(kf, nf - kf + 1.0).map_or(0.0, |b| b.inverse_cdf(alpha / 2.0))
    };
    let upper = if k == n {
        1.0
    } else {
        Beta::new(kf + 1.0, nf - kf).map_or(1.0, |b| b.inverse_cdf(1.0 - alpha / 2.0))
    };
    (lower, upper)
}

/// An accuracy with its 95 % Clopper–Pearson interval.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Accuracy {
    /// Correct samples.
    pub correct: usize,
    /// Samples.
    pub total: usize,
    /// `correct / total`.
    pub accuracy: f64,
    /// 95 % Clopper–Pearson interval.
    pub ci95: (f64, f64),
}

impl Accuracy {
    /// From counts.
    pub fn new(correct: usize, total: usize) -> Self {
        Accuracy {
            correct,
            total,
            accuracy: if total == 0 {
                0.0
            } else {
                correct as f64 / total as f64
            },
            ci95: clopper_pearson(correct as u64, total as u64, 0.05),
        }
    }

    /// Counts the positions where `pred == labels`.
    pub fn of(pred: &[usize], labels: &[usize]) -> Self {
        let correct = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
        Accuracy::new(correct, labels.len())
    }
}

/// Performance drop from `clean` to `degraded` accuracy.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Drop {
    /// `clean - degraded` (accuracy points, 0..1).
    pub absolute: f64,
    /// `(clean - degraded) / clean` (0 when the clean accuracy is 0).
    pub relative: f64,
}

impl Drop {
    /// The drop between two accuracies.
    pub fn between(clean: f64, degraded: f64) -> Self {
        Drop {
            absolute: clean - degraded,
            relative: if clean > 0.0 {
                (clean - degraded) / clean
            } else {
                0.0
            },
        }
    }
}

/// Mean corruption error: the error rate averaged over corruptions and severities (`errors[c][s]`). With a baseline
/// (`baseline[c][s]`, e.g. a reference model's errors) each corruption's summed error is divided by the baseline's
/// first, as in Hendrycks & Dietterich (2019); corruptions where the baseline never errs are skipped.
pub fn mean_corruption_error(errors: &[Vec<f64>], baseline: Option<&[Vec<f64>]>) -> f64 {
    let per: Vec<f64> = match baseline {
        None => errors
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| e.iter().sum::<f64>() / e.len() as f64)
            .collect(),
        Some(b) => errors
            .iter()
            .zip(b)
            .filter_map(|(e, b)| {
                let den: f64 = b.iter().sum();
                (den > 0.0).then(|| e.iter().sum::<f64>() / den)
            })
            .collect(),
    };
    if per.is_empty() {
        0.0
    } else {
        per.iter().sum::<f64>() / per.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_known_values() {
        // Reference values (R: binom.test(x, n)$conf.int).
        let (lo, hi) = clopper_pearson(7, 10, 0.05);
        assert!((lo - 0.3475471).abs() < 1e-6, "{lo}");
        assert!((hi - 0.9332605).abs() < 1e-6, "{hi}");
        let (lo, hi) = clopper_pearson(0, 20, 0.05);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.1684335).abs() < 1e-6, "{hi}");
        let (lo, hi) = clopper_pearson(20, 20, 0.05);
        assert!((lo - 0.8315665).abs() < 1e-6, "{lo}");
        assert_eq!(hi, 1.0);
    }

    #[test]
    fn drop_and_mce() {
        let d = Drop::between(0.9, 0.6);
        assert!((d.absolute - 0.3).abs() < 1e-12 && (d.relative - 1.0 / 3.0).abs() < 1e-12);
        let e = vec![vec![0.1, 0.3], vec![0.2, 0.2]];
        assert!((mean_corruption_error(&e, None) - 0.2).abs() < 1e-12);
        let b = vec![vec![0.2, 0.2], vec![0.4, 0.4]];
        assert!((mean_corruption_error(&e, Some(&b)) - 0.75).abs() < 1e-12);
        assert_eq!(Accuracy::of(&[1, 2, 3], &[1, 0, 3]).correct, 2);
    }
}
