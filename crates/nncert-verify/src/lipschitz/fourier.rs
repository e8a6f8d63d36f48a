//! A rigorous upper bound on the spectral norm of a 2-D convolution from its kernel, without materializing
//! the convolution's matrix.
//!
//! 1. **Strides by polyphase decomposition.** Output `a` at kernel offset `k` reads input row
//!    `a·s + k·d − p`. Writing `k·d − p = q·s + r` (`0 ≤ r < s`), the read is row `(a + q)·s + r`: element
//!    `a + q` of the phase-`r` subsampled input. Splitting the input into its `s₀·s₁` phases (a permutation of
//!    its elements, so an isometry) turns the convolution into a stride-1 convolution with `C_in·s₀·s₁` input
//!    channels and kernel offsets `q`.
//! 2. **Circular embedding.** On a torus `Z_N²` with `N` larger than every index the restricted map touches
//!    (outputs `a ∈ [0, OH)`, reads `a + q`, inputs `[0, ⌈H/s⌉)`), nothing wraps around, so the convolution is
//!    `P·C_N·Q` with `Q` an isometric embedding and `P` a restriction: `‖A‖₂ ≤ ‖C_N‖₂`. Padding and dilation
//!    need nothing special (padding only removes inputs; dilation only spaces the offsets).
//! 3. **Fourier diagonalization.** The DFT block-diagonalizes `C_N`:
//!    `‖C_N‖₂ = max over the N² frequencies ω of σ_max(K̂(ω))`, `K̂(ω) = Σ_q K[:, :, q]·e^{iω·q}` a
//!    `C_out × C_in·s₀·s₁` complex matrix (Sedghi, Gupta, Long, *The singular values of convolutional layers*,
//!    ICLR 2019). `K̂(−ω)` is the conjugate of `K̂(ω)`, so half the frequencies suffice.
//! 4. **Per frequency**, `σ_max` of the complex matrix equals that of its real embedding
//!    `[[Re, −Im], [Im, Re]]`, bounded rigorously by Gram iteration ([`super::linalg`]).
//!
//! Floating point: phases are reduced exactly in integers (`ω·q = 2π·t/N` with `t = (j·q) mod N`), so each
//! `cos`/`sin` has an error far below `10⁻¹⁴`; with the summation error, each entry of `K̂` is within
//! `10⁻¹²·Σ_q |K[o, c, q]|` of the exact value, and `σ_max(K̂) ≤ σ_max(fl(K̂)) + ‖E‖_F`.

use super::linalg::{self, up};
use ndarray::{Array2, Array4};

/// Work limit: frequencies × (matrix entries) beyond which the bound is not attempted.
const MAX_WORK: usize = 400_000_000;

/// One kernel entry of the polyphase kernel: (output channel, input column, value).
type Entry = (usize, usize, f64);

/// A rigorous upper bound on `‖A‖₂` of the convolution with `weight` `[C_out, C_in/groups, kH, kW]` from
/// spatial size `in_hw` to `out_hw`, or `None` when too expensive.
pub fn conv_spectral_bound(
    weight: &Array4<f32>,
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    groups: usize,
    in_hw: [usize; 2],
    out_hw: [usize; 2],
) -> Option<f64> {
    let [c_out, cg_in, kh, kw]: [usize; 4] = weight.shape().try_into().ok()?;
    if groups == 0 || c_out % groups != 0 || strides.contains(&0) {
        return None;
    }
    let c_in = cg_in * groups;
    let cg_out = c_out / groups;
    let (s0, s1) = (strides[0], strides[1]);
    // Polyphase offsets per axis: kernel index → (q, r).
    let split = |k: usize, d: usize, p: usize, s: usize| -> (isize, usize) {
        let u = (k * d) as isize - p as isize;
        (u.div_euclid(s as isize), u.rem_euclid(s as isize) as usize)
    };
    let qs0: Vec<(isize, usize)> = (0..kh)
        .map(|k| split(k, dilations[0], pads[0], s0))
        .collect();
    let qs1: Vec<(isize, usize)> = (0..kw)
        .map(|k| split(k, dilations[1], pads[1], s1))
        .collect();
    let range = |qs: &[(isize, usize)]| {
        let lo = qs.iter().map(|q| q.0).min().unwrap_or(0);
        let hi = qs.iter().map(|q| q.0).max().unwrap_or(0);
        (lo, hi)
    };
    let size_n = |(qlo, qhi): (isize, isize), out: usize, input: usize, s: usize| -> usize {
        let m = input.div_ceil(s) as isize;
        let top = (out as isize - 1 + qhi).max(m - 1).max(0);
        let bottom = qlo.min(0);
        (top - bottom + 2) as usize
    };
    let n0 = size_n(range(&qs0), out_hw[0], in_hw[0], s0);
    let n1 = size_n(range(&qs1), out_hw[1], in_hw[1], s1);
    let cols = c_in * s0 * s1;
    // Half the frequencies (conjugate symmetry) × the cost of one Gram iteration on the embedding.
    let side = 2 * c_out.min(cols);
    let work = (n0 * n1 / 2 + 1).saturating_mul(side * side * side * 12 + c_out * cols * kh * kw);
    if work > MAX_WORK {
        return None;
    }
    // Distinct offsets q with the kernel entries that land on them.
    let mut terms: std::collections::BTreeMap<(isize, isize), Vec<Entry>> = Default::default();
    let mut abs_sum = Array2::<f64>::zeros((c_out, cols));
    for o in 0..c_out {
        let g = o / cg_out;
        for ci in 0..cg_in {
            let c = g * cg_in + ci;
            for (ki, &(q0, r0)) in qs0.iter().enumerate() {
                for (kj, &(q1, r1)) in qs1.iter().enumerate() {
                    let v = weight[[o, ci, ki, kj]] as f64;
                    if v == 0.0 {
                        continue;
                    }
                    let col = (c * s0 + r0) * s1 + r1;
                    terms.entry((q0, q1)).or_default().push((o, col, v));
                    abs_sum[[o, col]] += v.abs();
                }
            }
        }
    }
    if abs_sum.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // ‖E‖_F for the entry errors 1e-12·Σ|K|, the same at every frequency.
    let err_f = up(1e-12 * linalg::frobenius_up(&abs_sum));
    let cos0: Vec<(f64, f64)> = (0..n0)
        .map(|t| {
            let a = 2.0 * std::f64::consts::PI * t as f64 / n0 as f64;
            (a.cos(), a.sin())
        })
        .collect();
    let cos1: Vec<(f64, f64)> = (0..n1)
        .map(|t| {
            let a = 2.0 * std::f64::consts::PI * t as f64 / n1 as f64;
            (a.cos(), a.sin())
        })
        .collect();
    let mut worst = 0.0f64;
    let mut emb = Array2::<f64>::zeros((2 * c_out, 2 * cols));
    // Frequencies (j0, j1) up to conjugation: j0 in [0, n0/2], all j1.
    for j0 in 0..=n0 / 2 {
        for j1 in 0..n1 {
            emb.fill(0.0);
            for (&(q0, q1), list) in &terms {
                let t0 = ((j0 as isize * q0).rem_euclid(n0 as isize)) as usize;
                let t1 = ((j1 as isize * q1).rem_euclid(n1 as isize)) as usize;
                // e^{i(θ0 + θ1)} from the two tables.
                let (c0, s0_) = cos0[t0];
                let (c1, s1_) = cos1[t1];
                let (re, im) = (c0 * c1 - s0_ * s1_, s0_ * c1 + c0 * s1_);
                for &(o, col, v) in list {
                    emb[[o, col]] += v * re;
                    emb[[o + c_out, col]] += v * im;
                }
            }
            // Complete the real embedding [[Re, −Im], [Im, Re]].
            for o in 0..c_out {
                for col in 0..cols {
                    let (re, im) = (emb[[o, col]], emb[[o + c_out, col]]);
                    emb[[o, col + cols]] = -im;
                    emb[[o + c_out, col + cols]] = re;
                }
            }
            // The embedding doubles every singular value's multiplicity, which slows Gram iteration's
            // convergence (ratio 2^{1/2^{t+1}}); 0.5% is reached in 7 squarings.
            let b = linalg::spectral_norm_up(&emb, 5e-3, 9).upper;
            worst = worst.max(b);
            if !worst.is_finite() {
                return None;
            }
        }
    }
    // The complex error matrix has entries of modulus ≤ √2·(the per-part bound): ‖E‖_F ≤ 2·err_f.
    Some(up(worst + 2.0 * err_f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-channel identity kernel is an isometry on the interior: the bound must be ≥ 1 and close to it.
    #[test]
    fn identity_kernel() {
        let mut w = Array4::<f32>::zeros((1, 1, 3, 3));
        w[[0, 0, 1, 1]] = 1.0;
        let b = conv_spectral_bound(&w, [1, 1], [1, 1, 1, 1], [1, 1], 1, [8, 8], [8, 8]).unwrap();
        assert!((1.0..1.01).contains(&b), "{b}");
    }

    /// A box-sum kernel of ones has spectral norm close to k² (its DC gain) on large inputs.
    #[test]
    fn ones_kernel_stride_two() {
        let w = Array4::<f32>::from_elem((1, 1, 2, 2), 1.0);
        // Stride 2, non-overlapping windows: each output sums 4 distinct inputs → norm exactly 2.
        let b = conv_spectral_bound(&w, [2, 2], [0; 4], [1, 1], 1, [8, 8], [4, 4]).unwrap();
        assert!((2.0..2.01).contains(&b), "{b}");
    }
}
