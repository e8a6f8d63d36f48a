//! Rigorous norms of dense matrices in f64: the induced L∞ norm (max row abs-sum) and an upper bound on the
//! spectral norm by Gram iteration, both with explicit floating-point error terms, plus a power-iteration
//! estimate (a lower bound in exact arithmetic) that is reported next to the bound and used to stop early.
//!
//! ## Why Gram iteration and not "power iteration + residual"
//! Power iteration on `AᵀA` converges to a Rayleigh quotient `ρ ≤ λ_max`; the residual `‖AᵀAv − ρv‖` only
//! proves that *some* eigenvalue lies within it of `ρ`, not that `λ_max` does (a tiny component of `v` along
//! the top eigenvector is invisible to a few matrix–vector products). No method that only applies `A` a few
//! times can certify an upper bound. Gram iteration (Delattre, Barthélemy, Araujo, Allauzen, *Efficient bound
//! of Lipschitz constant for convolutional layers by Gram iteration*, ICML 2023) uses the whole matrix:
//! with `G₀ = A`, `G_{t+1} = G_tᵀG_t`, `σ_max(A) ≤ ‖G_t‖_F^{1/2^t}`, and the ratio to `σ_max` is at most
//! `rank^{1/2^{t+1}}`, so a handful of squarings gives a bound within 0.1 % of the true norm.
//!
//! ## Floating point
//! `u = 2⁻⁵³`. A computed product `fl(XY)` of inner dimension `K` satisfies `|fl(XY) − XY| ≤ γ_K |X||Y|`
//! entrywise (Higham, §3.5), hence `‖fl(XY) − XY‖_F ≤ γ_K ‖X‖_F ‖Y‖_F`. Each squaring is symmetrized (one more
//! rounding, `u‖P‖_F`), and by Weyl's inequality `λ_max(S) ≤ λ_max(S̃) + ‖S − S̃‖₂` for symmetric `S, S̃`, so
//! every level adds its error term before the square root back to the level above. Scaling by powers of two
//! (exact) keeps the iterates near norm 1. Final values are rounded up by a few ulps.

use nncert_bounds::gamma;

use ndarray::{Array1, Array2};

pub(crate) const U: f64 = f64::EPSILON / 2.0;

/// `x` moved up by a few ulps: covers the rounding of the handful of operations that produced it.
pub(crate) fn up(x: f64) -> f64 {
    if x.is_nan() {
        return f64::INFINITY;
    }
    (x * (1.0 + 8.0 * U) + f64::MIN_POSITIVE).next_up()
}

/// Upper bound of `sqrt(x)` for `x ≥ 0`.
fn sqrt_up(x: f64) -> f64 {
    up(x.max(0.0).sqrt())
}

/// Upper bound of the Frobenius norm.
pub(crate) fn frobenius_up(a: &Array2<f64>) -> f64 {
    let s: f64 = a.iter().map(|v| v * v).sum();
    sqrt_up(s * (1.0 + gamma(a.len() + 2)))
}

/// Upper bound of the induced L∞ norm `max_i Σ_j |a_ij|` (exact up to the rounding of the sums).
pub fn linf_norm_up(a: &Array2<f64>) -> f64 {
    let g = 1.0 + gamma(a.ncols() + 2);
    a.rows()
        .into_iter()
        .map(|r| up(r.iter().map(|v| v.abs()).sum::<f64>() * g))
        .fold(0.0, f64::max)
}

/// Upper bound of the induced L1 norm `max_j Σ_i |a_ij|`.
pub fn l1_norm_up(a: &Array2<f64>) -> f64 {
    let g = 1.0 + gamma(a.nrows() + 2);
    a.columns()
        .into_iter()
        .map(|c| up(c.iter().map(|v| v.abs()).sum::<f64>() * g))
        .fold(0.0, f64::max)
}

/// Power-iteration estimate of `σ_max(A)`: `‖Av‖/‖v‖` after `iters` steps of `v ← AᵀAv`. A lower bound in
/// exact arithmetic (any `v` gives one); here only an estimate, reported next to the rigorous bound.
pub fn spectral_estimate(a: &Array2<f64>, iters: usize) -> f64 {
    let n = a.ncols();
    if n == 0 || a.nrows() == 0 {
        return 0.0;
    }
    // A deterministic start with no special structure (all-ones can be orthogonal to the top vector).
    let mut v = Array1::from_shape_fn(n, |i| {
        1.0 + 0.5 * ((i as f64 * 0.618_033_988_7).fract() - 0.5)
    });
    let mut est = 0.0;
    for _ in 0..iters {
        let norm = v.dot(&v).sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return est;
        }
        v /= norm;
        let av = a.dot(&v);
        est = av.dot(&av).sqrt();
        v = a.t().dot(&av);
    }
    est
}

/// A rigorous upper bound on the spectral norm `σ_max(A) = ‖A‖₂` with how it was obtained.
#[derive(Clone, Copy, Debug)]
pub struct SpectralBound {
    /// Sound upper bound (real arithmetic, rounding errors included).
    pub upper: f64,
    /// Power-iteration estimate (≈ the true norm, from below).
    pub estimate: f64,
    /// Gram squarings performed.
    pub squarings: usize,
}

/// Scales `m` by the power of two nearest `1/‖m‖_F` (exact), returning the exponent `k` (`m ← 2^k m`).
fn normalize_pow2(m: &mut Array2<f64>) -> i32 {
    let f: f64 = m.iter().map(|v| v * v).sum::<f64>().sqrt();
    if !(f.is_finite() && f > 0.0) {
        return 0;
    }
    let k = -f.log2().round() as i32;
    // Stay well inside the exponent range: never scale by more than 2^±900 in one go.
    let k = k.clamp(-900, 900);
    let s = 2f64.powi(k);
    m.mapv_inplace(|v| v * s);
    k
}

/// Symmetrizes `p` in place: `(p + pᵀ)/2`.
fn symmetrize(p: &mut Array2<f64>) {
    let n = p.nrows();
    for i in 0..n {
        for j in i + 1..n {
            let s = (p[[i, j]] + p[[j, i]]) * 0.5;
            p[[i, j]] = s;
            p[[j, i]] = s;
        }
    }
}

/// Rigorous upper bound on `‖A‖₂` by Gram iteration (see the module docs), stopping when the bound is within
/// `rel_tol` of the power-iteration estimate or after `max_squarings` squarings.
pub fn spectral_norm_up(a: &Array2<f64>, rel_tol: f64, max_squarings: usize) -> SpectralBound {
    let (m, n) = a.dim();
    if m == 0 || n == 0 {
        return SpectralBound {
            upper: 0.0,
            estimate: 0.0,
            squarings: 0,
        };
    }
    if a.iter().any(|v| !v.is_finite()) {
        return SpectralBound {
            upper: f64::INFINITY,
            estimate: f64::NAN,
            squarings: 0,
        };
    }
    let estimate = spectral_estimate(a, 60);
    let fro = frobenius_up(a);
    if fro == 0.0 {
        return SpectralBound {
            upper: 0.0,
            estimate,
            squarings: 0,
        };
    }
    // Work on a copy scaled to Frobenius norm ≈ 1 (exact power of two), undo at the end.
    let mut a_s = a.clone();
    let k0 = normalize_pow2(&mut a_s);
    let fro_s = frobenius_up(&a_s);
    // Level 1: the Gram matrix on the smaller side (same non-zero spectrum).
    let (mut h, inner) = if m <= n {
        (a_s.dot(&a_s.t()), n)
    } else {
        (a_s.t().dot(&a_s), m)
    };
    symmetrize(&mut h);
    let size = h.nrows();
    // σ_max(A_s)² ≤ ‖H₁‖₂ + e₁ with e₁ = γ‖A_s‖_F² + u‖H₁‖_F.
    let mut errs = vec![up(gamma(inner + 2) * fro_s * fro_s
        + 2.0 * U * frobenius_up(&h)
        + 1e-300)];
    // Scales: H_t(stored) = 2^{k_t} · (the exact-chain matrix at level t).
    let mut scales = vec![normalize_pow2(&mut h)];
    let mut levels = vec![h];
    let mut best = bound_from_chain(&levels, &errs, &scales, k0).min(fro);
    let mut squarings = 0;
    while squarings < max_squarings && best > estimate * (1.0 + rel_tol) {
        let cur = levels.last().expect("one level at least");
        let cur_fro = frobenius_up(cur);
        let mut p = cur.dot(cur);
        symmetrize(&mut p);
        // 1e-300 covers underflow in the product (γ assumes none).
        errs.push(up(gamma(size + 2) * cur_fro * cur_fro
            + 2.0 * U * frobenius_up(&p)
            + 1e-300));
        scales.push(normalize_pow2(&mut p));
        levels.push(p);
        // Only the last two levels are needed to extend the chain; older matrices can go.
        let keep = levels.len() - 1;
        for l in levels.iter_mut().take(keep) {
            if l.len() > 1 {
                *l = Array2::zeros((1, 1));
            }
        }
        squarings += 1;
        best = best.min(bound_from_chain(&levels, &errs, &scales, k0));
        if !best.is_finite() {
            break;
        }
    }
    SpectralBound {
        upper: best,
        estimate,
        squarings,
    }
}

/// The bound of the chain whose innermost level is the last of `levels` (the others are only needed for
/// their scales and error terms, so they may have been dropped).
fn bound_from_chain(levels: &[Array2<f64>], errs: &[f64], scales: &[i32], k0: i32) -> f64 {
    let last = levels.len() - 1;
    let mut b = frobenius_up(&levels[last]);
    for t in (0..last).rev() {
        b = sqrt_up(up(b * 2f64.powi(-scales[t + 1])) + errs[t + 1]);
    }
    let s = sqrt_up(up(b * 2f64.powi(-scales[0])) + errs[0]);
    up(s * 2f64.powi(-k0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn diagonal_and_rank_one_are_tight() {
        let a = arr2(&[[3.0, 0.0], [0.0, -2.0]]);
        let b = spectral_norm_up(&a, 1e-6, 30);
        assert!(b.upper >= 3.0 && b.upper < 3.0 * (1.0 + 1e-5), "{b:?}");
        let r = arr2(&[[1.0, 2.0, 2.0], [2.0, 4.0, 4.0]]); // rank 1: σ = sqrt(5)·3
        let b = spectral_norm_up(&r, 1e-9, 30);
        let exact = 5f64.sqrt() * 3.0;
        assert!(b.upper >= exact && b.upper < exact * (1.0 + 1e-9), "{b:?}");
        assert_eq!(linf_norm_up(&a), linf_norm_up(&a).max(3.0));
        assert!(linf_norm_up(&r) >= 10.0 && linf_norm_up(&r) < 10.0 + 1e-12);
        assert!(l1_norm_up(&r) >= 6.0 && l1_norm_up(&r) < 6.0 + 1e-12);
    }

    #[test]
    fn close_singular_values_still_bounded() {
        // Two nearly equal top singular values: the bound must stay above the largest.
        let a = arr2(&[[1.0, 0.0, 0.0], [0.0, 0.999_999, 0.0], [0.0, 0.0, 0.5]]);
        let b = spectral_norm_up(&a, 1e-7, 40);
        assert!(b.upper >= 1.0 && b.upper < 1.0 + 1e-3, "{b:?}");
    }

    #[test]
    fn zero_and_nonfinite() {
        assert!(spectral_norm_up(&Array2::zeros((3, 2)), 1e-3, 5).upper < 1e-300);
        let a = arr2(&[[f64::NAN]]);
        assert_eq!(spectral_norm_up(&a, 1e-3, 5).upper, f64::INFINITY);
    }
}
