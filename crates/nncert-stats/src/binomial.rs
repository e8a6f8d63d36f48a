//! Exact binomial inference: tail probabilities, Clopper–Pearson confidence bounds, the two-sided binomial test at
//! one half (randomized smoothing's abstention rule), and sample-size planning.
//!
//! The Clopper–Pearson bounds are the Beta quantiles `Beta(α; k, n-k+1)` and `Beta(1-α; k+1, n-k)`. They are
//! computed here by bisection on the exact binomial tail (the identity `P(X >= k; n, p) = I_p(k, n-k+1)`) rather
//! than by `statrs`'s inverse incomplete beta, because `statrs` evaluates the incomplete beta with a continued
//! fraction capped at 140 terms, which has not converged for shape parameters above roughly 2·10⁴ — exactly the
//! sample sizes smoothing uses — and returns the unconverged value without saying so. The tail sum below is exact
//! up to rounding for any `n`, and the bisection keeps the side of the bracket that makes the bound conservative.

use crate::StatsError;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::gamma::ln_gamma;

/// `ln P(X = k)` for `X ~ Binomial(n, p)`, `0 < p < 1`.
fn ln_pmf(k: u64, n: u64, p: f64) -> f64 {
    let (k, nf) = (k as f64, n as f64);
    ln_gamma(nf + 1.0) - ln_gamma(k + 1.0) - ln_gamma(nf - k + 1.0)
        + k * p.ln()
        + (nf - k) * (-p).ln_1p()
}

/// Sums `P(X = j)` from `j = start` stepping by `dir` (±1) while terms shrink; exact to rounding because the caller
/// only starts on the side of the mode where terms decrease geometrically away from `start`.
fn tail_sum(start: u64, n: u64, p: f64, down: bool) -> f64 {
    let mut term = ln_pmf(start, n, p).exp();
    let mut sum = term;
    let odds = p / (1.0 - p);
    let mut j = start;
    loop {
        // pmf(j+1)/pmf(j) = (n-j)/(j+1) · p/(1-p); pmf(j-1)/pmf(j) = j/(n-j+1) · (1-p)/p.
        if down {
            if j == 0 {
                break;
            }
            term *= j as f64 / (n - j + 1) as f64 / odds;
            j -= 1;
        } else {
            if j == n {
                break;
            }
            term *= (n - j) as f64 / (j + 1) as f64 * odds;
            j += 1;
        }
        sum += term;
        if term <= sum * 1e-18 {
            break;
        }
    }
    sum.min(1.0)
}

/// `P(X <= k)` for `X ~ Binomial(n, p)`.
pub fn cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    if (k as f64) <= n as f64 * p {
        tail_sum(k, n, p, true)
    } else {
        1.0 - tail_sum(k + 1, n, p, false)
    }
}

/// `P(X >= k)` for `X ~ Binomial(n, p)`.
pub fn sf(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    if (k as f64) >= n as f64 * p {
        tail_sum(k, n, p, false)
    } else {
        1.0 - tail_sum(k - 1, n, p, true)
    }
}

/// Finds the `p` where the decreasing-in-`p` (`increasing == false`) or increasing function `f` crosses `target`,
/// returning the end of the final bracket on the side `keep_low`.
fn bisect(f: impl Fn(f64) -> f64, target: f64, increasing: bool, keep_low: bool) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..2000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || hi - lo <= 1e-13 * hi {
            break;
        }
        let above = f(mid) > target;
        if above == increasing {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if keep_low { lo } else { hi }
}

fn check(k: u64, n: u64, alpha: f64) -> Result<(), StatsError> {
    if n == 0 {
        return Err(StatsError::Invalid(
            "a binomial bound needs at least one sample".into(),
        ));
    }
    if k > n {
        return Err(StatsError::Invalid(format!(
            "{k} successes out of {n} samples"
        )));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::Invalid(format!(
            "the error probability must lie strictly between 0 and 1, got {alpha}"
        )));
    }
    Ok(())
}

/// One-sided Clopper–Pearson lower bound: with probability at least `1 - alpha` over the sampling, the true success
/// probability is `>=` the returned value, having seen `k` successes in `n` trials (`Beta(alpha; k, n-k+1)`).
///
/// # Errors
/// [`StatsError::Invalid`] if `n == 0`, `k > n` or `alpha` is not in (0, 1).
pub fn lower_bound(k: u64, n: u64, alpha: f64) -> Result<f64, StatsError> {
    check(k, n, alpha)?;
    if k == 0 {
        return Ok(0.0);
    }
    // P(X >= k; p) increases in p; the bound is where it reaches alpha. Keep the low end: conservative.
    Ok(bisect(|p| sf(k, n, p), alpha, true, true))
}

/// One-sided Clopper–Pearson upper bound: with probability at least `1 - alpha`, the true success probability is
/// `<=` the returned value (`Beta(1 - alpha; k+1, n-k)`). With `k == 0` this is `1 - alpha^(1/n)`.
///
/// # Errors
/// As [`lower_bound`].
pub fn upper_bound(k: u64, n: u64, alpha: f64) -> Result<f64, StatsError> {
    check(k, n, alpha)?;
    if k == n {
        return Ok(1.0);
    }
    // P(X <= k; p) decreases in p; the bound is where it falls to alpha. Keep the high end: conservative.
    Ok(bisect(|p| cdf(k, n, p), alpha, false, false))
}

/// Two-sided Clopper–Pearson interval at confidence `1 - alpha` (each tail `alpha / 2`).
///
/// # Errors
/// As [`lower_bound`].
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> Result<(f64, f64), StatsError> {
    Ok((
        lower_bound(k, n, alpha / 2.0)?,
        upper_bound(k, n, alpha / 2.0)?,
    ))
}

/// The two-sided binomial test of `p = 1/2` for `a` successes against `b` failures (the p-value of SciPy's
/// `binom_test(a, a + b, 0.5)`): by symmetry `min(1, 2·P(X >= max(a, b)))`.
pub fn binom_test_half(a: u64, b: u64) -> f64 {
    let m = a + b;
    if m == 0 || a == b {
        return 1.0;
    }
    (2.0 * sf(a.max(b), m, 0.5)).min(1.0)
}

/// `Φ`, the standard normal distribution function.
pub fn phi(x: f64) -> f64 {
    std_normal().cdf(x)
}

/// `Φ⁻¹`, the standard normal quantile function (`-inf` at 0, `+inf` at 1).
pub fn phi_inv(p: f64) -> f64 {
    if p <= 0.0 {
        f64::NEG_INFINITY
    } else if p >= 1.0 {
        f64::INFINITY
    } else {
        std_normal().inverse_cdf(p)
    }
}

/// `1 - Φ(x)` without cancellation for large `x`.
pub fn phi_upper(x: f64) -> f64 {
    std_normal().sf(x)
}

fn std_normal() -> Normal {
    Normal::standard()
}

/// The sample size needed to show `p < p0` with confidence `1 - delta` when up to `failures` failures may be seen:
/// the smallest `n` whose one-sided Clopper–Pearson upper bound with `failures` failures is below `p0`.
///
/// With `failures == 0` this is the zero-failure rule `n >= ln(delta) / ln(1 - p0)` (≈ `3/p0` at 95 %).
///
/// # Errors
/// [`StatsError::Invalid`] if `p0` or `delta` is not in (0, 1), or the answer exceeds 2⁶².
pub fn plan_sample_size(p0: f64, delta: f64, failures: u64) -> Result<u64, StatsError> {
    if !(p0 > 0.0 && p0 < 1.0) {
        return Err(StatsError::Invalid(format!(
            "the target probability must lie strictly between 0 and 1, got {p0}"
        )));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(StatsError::Invalid(format!(
            "1 - confidence must lie strictly between 0 and 1, got {delta}"
        )));
    }
    // Upper bound < p0 iff P(X <= failures; n, p0) < delta (the CDF at p0 falls with n): bracket then bisect on n.
    let ok = |n: u64| n > failures && cdf(failures, n, p0) < delta;
    let zero = (delta.ln() / (-p0).ln_1p()).ceil().max(1.0);
    let mut lo = failures; // not ok
    let mut hi = (zero as u64).max(failures + 1);
    while !ok(hi) {
        lo = hi;
        hi = hi.checked_mul(2).filter(|&h| h < 1 << 62).ok_or_else(|| {
            StatsError::Invalid(format!(
                "more than 2^62 samples would be needed to show p < {p0}"
            ))
        })?;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) { hi = mid } else { lo = mid }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::distribution::Beta;

    #[test]
    fn tails_match_direct_sums() {
        for &(n, p) in &[(10u64, 0.3), (50, 0.01), (7, 0.9)] {
            let pmf: Vec<f64> = (0..=n).map(|k| ln_pmf(k, n, p).exp()).collect();
            for k in 0..=n {
                let c: f64 = pmf[..=k as usize].iter().sum();
                let s: f64 = pmf[k as usize..].iter().sum();
                assert!((cdf(k, n, p) - c).abs() < 1e-12, "cdf {k} {n} {p}");
                assert!((sf(k, n, p) - s).abs() < 1e-12, "sf {k} {n} {p}");
            }
        }
    }

    #[test]
    fn clopper_pearson_matches_beta_quantiles_for_small_n() {
        for &(k, n) in &[(0u64, 10u64), (3, 10), (10, 10), (17, 40), (99, 100)] {
            let (lo, hi) = clopper_pearson(k, n, 0.05).unwrap();
            if k > 0 {
                let b = Beta::new(k as f64, (n - k + 1) as f64)
                    .unwrap()
                    .inverse_cdf(0.025);
                assert!(
                    (lo - b).abs() < 1e-9 && lo <= b + 1e-12,
                    "{k}/{n}: {lo} vs {b}"
                );
            } else {
                assert_eq!(lo, 0.0);
            }
            if k < n {
                let b = Beta::new((k + 1) as f64, (n - k) as f64)
                    .unwrap()
                    .inverse_cdf(0.975);
                assert!(
                    (hi - b).abs() < 1e-9 && hi >= b - 1e-12,
                    "{k}/{n}: {hi} vs {b}"
                );
            } else {
                assert_eq!(hi, 1.0);
            }
        }
    }

    #[test]
    fn zero_failure_bound_is_closed_form() {
        for &n in &[1u64, 30, 1000, 1_000_000] {
            let u = upper_bound(0, n, 0.05).unwrap();
            let exact = 1.0 - 0.05f64.powf(1.0 / n as f64);
            assert!((u - exact).abs() <= 1e-10 * exact, "{n}: {u} vs {exact}");
        }
    }

    #[test]
    fn large_n_bounds_bracket_the_estimate() {
        // n = 10^5 is beyond statrs's continued fraction; check the defining tail equations instead.
        let (k, n) = (99_000u64, 100_000u64);
        let lo = lower_bound(k, n, 0.001).unwrap();
        assert!(lo < 0.99 && lo > 0.985, "{lo}");
        assert!((sf(k, n, lo) - 0.001).abs() < 1e-6);
        assert!(sf(k, n, lo) <= 0.001 + 1e-12);
    }

    #[test]
    fn planning_follows_the_zero_failure_rule() {
        let n = plan_sample_size(1e-4, 0.05, 0).unwrap();
        let rule = (0.05f64.ln() / (1.0f64 - 1e-4).ln()).ceil() as u64;
        assert_eq!(n, rule);
        assert_eq!(n, 29_956);
        // Allowing failures needs more samples, and the plan is tight.
        let n2 = plan_sample_size(1e-4, 0.05, 2).unwrap();
        assert!(n2 > n);
        assert!(upper_bound(2, n2, 0.05).unwrap() < 1e-4);
        assert!(upper_bound(2, n2 - 1, 0.05).unwrap() >= 1e-4 * (1.0 - 1e-9));
        assert!(plan_sample_size(0.0, 0.05, 0).is_err());
        assert!(plan_sample_size(0.1, 1.0, 0).is_err());
    }

    #[test]
    fn binomial_test_at_one_half() {
        assert_eq!(binom_test_half(5, 5), 1.0);
        // 9 of 10: 2·(11/1024).
        assert!((binom_test_half(9, 1) - 22.0 / 1024.0).abs() < 1e-15);
        assert!((binom_test_half(1, 9) - 22.0 / 1024.0).abs() < 1e-15);
        assert_eq!(binom_test_half(0, 0), 1.0);
    }

    #[test]
    fn normal_functions_invert() {
        for &p in &[1e-12, 0.001, 0.5, 0.9, 1.0 - 1e-9] {
            assert!((phi(phi_inv(p)) - p).abs() <= 1e-9 * p.min(1.0 - p) + 1e-15);
        }
        assert!((phi_upper(5.612) - 1.0e-8).abs() < 0.01e-8);
    }
}
