//! Adversarial attacks, batched over samples.
//!
//! All attacks work on a chunk of samples at once (one forward and one backward pass per step for the whole chunk)
//! and drop a sample from the batch as soon as it is misclassified. Chunks are fixed by sample index, run in
//! parallel with rayon, and every random choice comes from a stream seeded by `(seed, attack, sample, restart)`.

use crate::{EmpiricalError, Model, argmax, confirm, margin};
use ndarray::{Array2, ArrayView2, Axis, s};
use nncert_data::Dataset;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;

/// The norm of the threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Max-norm: every feature may move by ε.
    Linf,
    /// Euclidean norm.
    L2,
}

impl std::str::FromStr for Norm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l-inf" => Ok(Norm::Linf),
            "l2" | "2" => Ok(Norm::L2),
            _ => Err(format!("unknown norm '{s}' (use linf or l2)")),
        }
    }
}

/// Which attack to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// Fast gradient sign method: one step of size ε (one gradient).
    Fgsm,
    /// Projected gradient ascent on the cross-entropy, `steps` steps, `restarts` starts (the first at the clean
    /// point, the others uniform in the ball), step size 2.5ε/steps halved at 60 % and 85 % of the steps.
    Pgd,
    /// Auto-PGD on the cross-entropy (momentum, step size halved at checkpoints when progress stalls).
    ApgdCe,
    /// Auto-PGD on the difference-of-logits-ratio loss (scale invariant); the margin loss for 2 classes.
    ApgdDlr,
    /// Targeted APGD on the targeted DLR loss, against the `targets` highest-scoring wrong classes.
    ApgdT,
    /// The Square attack (L∞, score-based: random square updates accepted when the margin drops).
    Square,
    /// FGSM, PGD, APGD-CE, APGD-DLR, APGD-T, Square in that order; each sample stops at its first success.
    Ensemble,
}

impl AttackKind {
    fn tag(self) -> u64 {
        self as u64 + 1
    }
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd => "pgd",
            AttackKind::ApgdCe => "apgd-ce",
            AttackKind::ApgdDlr => "apgd-dlr",
            AttackKind::ApgdT => "apgd-t",
            AttackKind::Square => "square",
            AttackKind::Ensemble => "ensemble",
        }
    }
}

impl std::str::FromStr for AttackKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "fgsm" => AttackKind::Fgsm,
            "pgd" => AttackKind::Pgd,
            "apgd" | "apgd-ce" => AttackKind::ApgdCe,
            "apgd-dlr" => AttackKind::ApgdDlr,
            "apgd-t" => AttackKind::ApgdT,
            "square" => AttackKind::Square,
            "ensemble" => AttackKind::Ensemble,
            _ => {
                return Err(format!(
                    "unknown attack '{s}' (use fgsm, pgd, apgd, apgd-dlr, apgd-t, square or ensemble)"
                ));
            }
        })
    }
}

/// Options of an attack run.
#[derive(Clone, Debug, Serialize)]
pub struct AttackOptions {
    /// The attack.
    pub kind: AttackKind,
    /// The threat model's norm (Square supports L∞ only).
    pub norm: Norm,
    /// Gradient steps per restart (PGD, APGD).
    pub steps: usize,
    /// Starts per sample (PGD, APGD; per target class for APGD-T).
    pub restarts: usize,
    /// Queries of the Square attack.
    pub queries: usize,
    /// Number of target classes of APGD-T.
    pub targets: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Samples per batch (one forward/backward pass per step for the batch).
    pub batch: usize,
}

impl Default for AttackOptions {
    fn default() -> Self {
        AttackOptions {
            kind: AttackKind::Pgd,
            norm: Norm::Linf,
            steps: 50,
            restarts: 1,
            queries: 1000,
            targets: 3,
            seed: 0,
            batch: 32,
        }
    }
}

/// The loss an attack ascends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Cross-entropy of the label (targeted: minus the cross-entropy of the target).
    Ce,
    /// Difference of logits ratio (targeted: the targeted DLR of Croce & Hein).
    Dlr,
}

/// Loss at logits `z` and its gradient w.r.t. `z` (written to `cot`), and the untargeted margin. Larger loss = more
/// adversarial.
pub(crate) fn loss_and_cotangent(
    z: &[f32],
    y: usize,
    target: Option<usize>,
    loss: Loss,
    cot: &mut [f32],
) -> (f32, f32) {
    let m = margin(z, y);
    cot.fill(0.0);
    let k = z.len();
    match (loss, target) {
        (Loss::Ce, _) => {
            // log-sum-exp with the max subtracted, in f64 for a stable gradient.
            let zmax = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = z.iter().map(|&v| (v as f64 - zmax).exp()).sum();
            let lse = zmax + sum.ln();
            let c = target.unwrap_or(y);
            let sign = if target.is_some() { -1.0 } else { 1.0 };
            // p_c - 1 is computed as minus the other probabilities: no cancellation when p_c is close to 1.
            let mut rest = 0.0;
            for j in 0..k {
                if j != c {
                    let p = (z[j] as f64 - lse).exp();
                    rest += p;
                    cot[j] = (sign * p) as f32;
                }
            }
            cot[c] = (-sign * rest) as f32;
            ((sign * (lse - z[c] as f64)) as f32, m)
        }
        (Loss::Dlr, _) if k < 3 || (target.is_some() && k < 4) => {
            // DLR needs the 3rd (targeted: 4th) largest logit; with fewer classes use the margin loss instead.
            let j = target.unwrap_or_else(|| best_other(z, y));
            cot[y] = -1.0;
            cot[j] += 1.0;
            (z[j] - z[y], m)
        }
        (Loss::Dlr, None) => {
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
            let j = best_other(z, y);
            let num = z[y] - z[j];
            let den = z[order[0]] - z[order[2]] + 1e-12;
            // L = -num / den.
            cot[y] -= 1.0 / den;
            cot[j] += 1.0 / den;
            cot[order[0]] += num / (den * den);
            cot[order[2]] -= num / (den * den);
            (-num / den, m)
        }
        (Loss::Dlr, Some(t)) => {
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
            let num = z[y] - z[t];
            let den = z[order[0]] - 0.5 * (z[order[2]] + z[order[3]]) + 1e-12;
            cot[y] -= 1.0 / den;
            cot[t] += 1.0 / den;
            cot[order[0]] += num / (den * den);
            cot[order[2]] -= 0.5 * num / (den * den);
            cot[order[3]] -= 0.5 * num / (den * den);
            (-num / den, m)
        }
    }
}

fn best_other(z: &[f32], y: usize) -> usize {
    let mut j = if y == 0 { 1 } else { 0 };
    for (i, &v) in z.iter().enumerate() {
        if i != y && v > z[j] {
            j = i;
        }
    }
    j
}

/// Distance between two points in `norm`, computed in f64.
pub fn distance(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>, norm: Norm) -> f64 {
    let d = a.zip(b).map(|(x, y)| (x as f64 - y as f64).abs());
    match norm {
        Norm::Linf => d.fold(0.0, f64::max),
        Norm::L2 => d.map(|v| v * v).sum::<f64>().sqrt(),
    }
}

/// Projects `x` onto the intersection of the ε-ball around `x0` and the box `[lo, hi]`, so that the f64 check of
/// [`confirm`] passes exactly (f32 rounding of `x0 ± ε` can otherwise leave the ball by an ulp).
fn project(x: &mut [f32], x0: &[f32], eps: f32, norm: Norm, lo: &[f32], hi: &[f32]) {
    match norm {
        Norm::Linf => {
            for i in 0..x.len() {
                let mut v = x[i].clamp(x0[i] - eps, x0[i] + eps).clamp(lo[i], hi[i]);
                while (v as f64 - x0[i] as f64).abs() > eps as f64 {
                    v = if v > x0[i] {
                        v.next_down()
                    } else {
                        v.next_up()
                    };
                }
                x[i] = v;
            }
        }
        Norm::L2 => {
            // Radial scaling, shrinking a little more on each retry: f32 rounding of x0 + δ can land just outside.
            for k in 0..40 {
                let n = distance(x.iter().copied(), x0.iter().copied(), Norm::L2);
                if n <= eps as f64 {
                    break;
                }
                let f = eps as f64 / n * (1.0 - 1e-7 * f64::powi(2.0, k));
                for i in 0..x.len() {
                    let d = (x[i] as f64 - x0[i] as f64) * f;
                    x[i] = ((x0[i] as f64 + d) as f32).clamp(lo[i], hi[i]);
                }
            }
            // Clipping to a box containing x0 only moves points towards x0, so the ball still holds.
            for i in 0..x.len() {
                x[i] = x[i].clamp(lo[i], hi[i]);
            }
            if distance(x.iter().copied(), x0.iter().copied(), Norm::L2) > eps as f64 {
                x.copy_from_slice(x0);
            }
        }
    }
}

/// A random stream for one (attack, sample, restart): independent of chunking and threads.
pub(crate) fn stream(seed: u64, attack: u64, sample: usize, restart: usize) -> ChaCha8Rng {
    // SplitMix64 finalizer over the combined key: distinct keys give unrelated seeds.
    let mut z = seed
        ^ attack.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (sample as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ (restart as u64).wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// Adds `step` times the steepest-ascent direction of `g` for `norm` (sign for L∞, unit vector for L2).
fn ascend(x: &mut [f32], g: &[f32], step: f32, norm: Norm) {
    match norm {
        Norm::Linf => {
            for (v, &d) in x.iter_mut().zip(g) {
                if d > 0.0 {
                    *v += step;
                } else if d < 0.0 {
                    *v -= step;
                }
            }
        }
        Norm::L2 => {
            let n = g
                .iter()
                .map(|v| (*v as f64) * (*v as f64))
                .sum::<f64>()
                .sqrt();
            if n > 0.0 {
                let f = (step as f64 / n) as f32;
                for (v, &d) in x.iter_mut().zip(g) {
                    *v += f * d;
                }
            }
        }
    }
}

/// A uniformly random point of the ball (L∞: uniform per feature; L2: uniform direction, radius ε·u^(1/d)).
fn random_start(x: &mut [f32], x0: &[f32], eps: f32, norm: Norm, rng: &mut ChaCha8Rng) {
    match norm {
        Norm::Linf => {
            for (v, &o) in x.iter_mut().zip(x0) {
                *v = o + eps * rng.random_range(-1.0f32..=1.0);
            }
        }
        Norm::L2 => {
            let d: Vec<f64> = (0..x.len()).map(|_| rng.sample(StandardNormal)).collect();
            let n = d.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-30);
            let r = eps as f64 * rng.random::<f64>().powf(1.0 / x.len() as f64);
            for ((v, &o), di) in x.iter_mut().zip(x0).zip(&d) {
                *v = (o as f64 + r * di / n) as f32;
            }
        }
    }
}

/// The samples of one chunk still under attack, and where each one's best point so far is kept.
struct Chunk<'a> {
    x0: ArrayView2<'a, f32>,
    labels: &'a [usize],
    eps: &'a [f32],
    global: &'a [usize],
    lo: &'a [f32],
    hi: &'a [f32],
    /// Per sample: the adversarial example found (first success), if any.
    found: Vec<Option<(Vec<f32>, AttackKind)>>,
    /// Per sample: the lowest margin seen.
    best_margin: Vec<f32>,
    /// Model evaluations (forward or forward+backward) per sample, summed.
    evals: u64,
}

impl Chunk<'_> {
    fn open(&self) -> Vec<usize> {
        (0..self.labels.len())
            .filter(|&i| self.found[i].is_none())
            .collect()
    }

    /// Records margins at the rows of `x` (sample ids `ids`); returns which rows are now misclassified.
    fn record(
        &mut self,
        x: ArrayView2<'_, f32>,
        ids: &[usize],
        margins: &[f32],
        kind: AttackKind,
    ) -> Vec<bool> {
        self.evals += ids.len() as u64;
        ids.iter()
            .zip(margins)
            .enumerate()
            .map(|(r, (&i, &m))| {
                self.best_margin[i] = self.best_margin[i].min(m);
                if m < 0.0 && self.found[i].is_none() {
                    self.found[i] = Some((x.row(r).to_vec(), kind));
                    true
                } else {
                    m < 0.0
                }
            })
            .collect()
    }

    fn rows(&self, ids: &[usize]) -> Array2<f32> {
        self.x0.select(Axis(0), ids)
    }
}

/// Keeps the rows of `a` and the entries of the vectors where `keep` is true.
fn keep_rows(a: &Array2<f32>, keep: &[bool]) -> Array2<f32> {
    let rows: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
    a.select(Axis(0), &rows)
}

fn keep_vec<T: Clone>(v: &[T], keep: &[bool]) -> Vec<T> {
    v.iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(x, _)| x.clone())
        .collect()
}

fn fgsm(model: &Model, c: &mut Chunk, opts: &AttackOptions) -> Result<(), EmpiricalError> {
    let ids = c.open();
    if ids.is_empty() {
        return Ok(());
    }
    let labels: Vec<usize> = ids.iter().map(|&i| c.labels[i]).collect();
    let mut x = c.rows(&ids);
    let (_, _, g) = model.loss_grad(x.view(), &labels, None, Loss::Ce)?;
    c.evals += ids.len() as u64;
    for (r, &i) in ids.iter().enumerate() {
        let row = x.row_mut(r).into_slice().expect("standard layout");
        ascend(
            row,
            g.row(r).as_slice().expect("standard layout"),
            c.eps[i],
            opts.norm,
        );
        project(
            row,
            c.x0.row(i).as_slice().expect("rows"),
            c.eps[i],
            opts.norm,
            c.lo,
            c.hi,
        );
    }
    let z = model.logits(x.view())?;
    let m: Vec<f32> = ids
        .iter()
        .enumerate()
        .map(|(r, &i)| margin(z.row(r).as_slice().expect("rows"), c.labels[i]))
        .collect();
    c.record(x.view(), &ids, &m, AttackKind::Fgsm);
    Ok(())
}

fn pgd(model: &Model, c: &mut Chunk, opts: &AttackOptions) -> Result<(), EmpiricalError> {
    let steps = opts.steps.max(1);
    for restart in 0..opts.restarts.max(1) {
        let mut ids = c.open();
        if ids.is_empty() {
            return Ok(());
        }
        let mut x = c.rows(&ids);
        if restart > 0 {
            for (r, &i) in ids.iter().enumerate() {
                let mut rng = stream(opts.seed, AttackKind::Pgd.tag(), c.global[i], restart);
                let row = x.row_mut(r).into_slice().expect("rows");
                let x0 = c.x0.row(i);
                let x0 = x0.as_slice().expect("rows");
                random_start(row, x0, c.eps[i], opts.norm, &mut rng);
                project(row, x0, c.eps[i], opts.norm, c.lo, c.hi);
            }
        }
        for t in 0..=steps {
            let labels: Vec<usize> = ids.iter().map(|&i| c.labels[i]).collect();
            let (_, m, g) = model.loss_grad(x.view(), &labels, None, Loss::Ce)?;
            let hit = c.record(x.view(), &ids, &m, AttackKind::Pgd);
            if t == steps {
                break;
            }
            let keep: Vec<bool> = hit.iter().map(|h| !h).collect();
            let g = keep_rows(&g, &keep);
            x = keep_rows(&x, &keep);
            ids = keep_vec(&ids, &keep);
            if ids.is_empty() {
                break;
            }
            // 2.5ε/steps lets the iterate cross the ball; halving late refines the point near the boundary.
            let frac = t as f32 / steps as f32;
            let decay = if frac < 0.6 {
                1.0
            } else if frac < 0.85 {
                0.5
            } else {
                0.25
            };
            for (r, &i) in ids.iter().enumerate() {
                let alpha = 2.5 * c.eps[i] / steps as f32 * decay;
                let row = x.row_mut(r).into_slice().expect("rows");
                ascend(
                    row,
                    g.row(r).as_slice().expect("rows"),
                    alpha.max(c.eps[i] / steps as f32 * 0.25),
                    opts.norm,
                );
                project(
                    row,
                    c.x0.row(i).as_slice().expect("rows"),
                    c.eps[i],
                    opts.norm,
                    c.lo,
                    c.hi,
                );
            }
        }
    }
    Ok(())
}

/// Per-sample state of APGD.
#[derive(Clone)]
struct ApgdState {
    id: usize,
    target: usize,
    prev: Vec<f32>,
    xbest: Vec<f32>,
    gbest: Vec<f32>,
    fbest: f32,
    flast: f32,
    eta: f32,
    increases: usize,
    fbest_at_check: f32,
    reduced_at_check: bool,
}

fn apgd(
    model: &Model,
    c: &mut Chunk,
    opts: &AttackOptions,
    loss: Loss,
    targeted: bool,
) -> Result<(), EmpiricalError> {
    let kind = match (loss, targeted) {
        (_, true) => AttackKind::ApgdT,
        (Loss::Ce, false) => AttackKind::ApgdCe,
        (Loss::Dlr, false) => AttackKind::ApgdDlr,
    };
    let n_iter = opts.steps.max(1);
    // Checkpoint schedule of Croce & Hein: first after 22 % of the steps, then shrinking by 3 % to at least 6 %.
    let first = ((0.22 * n_iter as f64) as usize).max(1);
    let min_len = ((0.06 * n_iter as f64) as usize).max(1);
    let decr = ((0.03 * n_iter as f64) as usize).max(1);
    let n_targets = if targeted {
        opts.targets.clamp(1, model.classes() - 1)
    } else {
        1
    };
    let clean = model.logits(c.x0)?;
    for tk in 0..n_targets {
        for restart in 0..opts.restarts.max(1) {
            let ids = c.open();
            if ids.is_empty() {
                return Ok(());
            }
            let mut x = c.rows(&ids);
            let stream_key = tk * 1000 + restart;
            let mut st: Vec<ApgdState> = Vec::with_capacity(ids.len());
            for (r, &i) in ids.iter().enumerate() {
                let x0 = c.x0.row(i);
                let x0 = x0.as_slice().expect("rows");
                let row = x.row_mut(r).into_slice().expect("rows");
                if restart > 0 {
                    let mut rng = stream(opts.seed, kind.tag(), c.global[i], stream_key);
                    random_start(row, x0, c.eps[i], opts.norm, &mut rng);
                    project(row, x0, c.eps[i], opts.norm, c.lo, c.hi);
                }
                // Target: the (tk+1)-th highest-scoring wrong class at the clean point.
                let z = clean.row(i).to_vec();
                let mut order: Vec<usize> = (0..z.len()).filter(|&j| j != c.labels[i]).collect();
                order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
                st.push(ApgdState {
                    id: i,
                    target: order[tk.min(order.len() - 1)],
                    prev: row.to_vec(),
                    xbest: row.to_vec(),
                    gbest: Vec::new(),
                    fbest: f32::NEG_INFINITY,
                    flast: f32::NEG_INFINITY,
                    eta: 2.0 * c.eps[i],
                    increases: 0,
                    fbest_at_check: f32::NEG_INFINITY,
                    reduced_at_check: true,
                });
            }
            let mut checkpoint = first;
            let mut since = 0usize;
            for it in 0..=n_iter {
                // Evaluate the current iterate.
                let ids: Vec<usize> = st.iter().map(|s| s.id).collect();
                let labels: Vec<usize> = ids.iter().map(|&i| c.labels[i]).collect();
                let targets: Vec<usize> = st.iter().map(|s| s.target).collect();
                let (f, m, g) =
                    model.loss_grad(x.view(), &labels, targeted.then_some(&targets[..]), loss)?;
                let hit = c.record(x.view(), &ids, &m, kind);
                for (r, s) in st.iter_mut().enumerate() {
                    if it > 0 && f[r] > s.flast {
                        s.increases += 1;
                    }
                    s.flast = f[r];
                    if f[r] > s.fbest || s.gbest.is_empty() {
                        s.fbest = f[r];
                        s.xbest = x.row(r).to_vec();
                        s.gbest = g.row(r).to_vec();
                    }
                }
                let keep: Vec<bool> = hit.iter().map(|h| !h).collect();
                x = keep_rows(&x, &keep);
                let mut g = keep_rows(&g, &keep);
                st = keep_vec(&st, &keep);
                if st.is_empty() || it == n_iter {
                    break;
                }
                if it > 0 {
                    since += 1;
                    if since == checkpoint {
                        for (r, s) in st.iter_mut().enumerate() {
                            let oscillating = (s.increases as f64) < 0.75 * checkpoint as f64;
                            let stalled = !s.reduced_at_check && s.fbest_at_check >= s.fbest;
                            let reduce = oscillating || stalled;
                            s.reduced_at_check = reduce;
                            s.fbest_at_check = s.fbest;
                            s.increases = 0;
                            if reduce {
                                s.eta *= 0.5;
                                // Restart from the best point: no momentum across the jump.
                                x.row_mut(r)
                                    .as_slice_mut()
                                    .expect("rows")
                                    .copy_from_slice(&s.xbest);
                                s.prev.copy_from_slice(&s.xbest);
                                g.row_mut(r)
                                    .as_slice_mut()
                                    .expect("rows")
                                    .copy_from_slice(&s.gbest);
                            }
                        }
                        checkpoint = checkpoint.saturating_sub(decr).max(min_len);
                        since = 0;
                    }
                }
                // z = P(x + η·dir(g)); x' = P(x + α(z − x) + (1 − α)(x − x_prev)), α = 1 on the first step.
                let alpha = if it == 0 { 1.0 } else { 0.75 };
                for (r, s) in st.iter_mut().enumerate() {
                    let i = s.id;
                    let x0 = c.x0.row(i);
                    let x0 = x0.as_slice().expect("rows");
                    let row = x.row_mut(r).into_slice().expect("rows");
                    let cur = row.to_vec();
                    let mut zstep = cur.clone();
                    ascend(
                        &mut zstep,
                        g.row(r).as_slice().expect("rows"),
                        s.eta,
                        opts.norm,
                    );
                    project(&mut zstep, x0, c.eps[i], opts.norm, c.lo, c.hi);
                    for j in 0..row.len() {
                        row[j] = cur[j]
                            + alpha * (zstep[j] - cur[j])
                            + (1.0 - alpha) * (cur[j] - s.prev[j]);
                    }
                    project(row, x0, c.eps[i], opts.norm, c.lo, c.hi);
                    s.prev = cur;
                }
            }
        }
    }
    Ok(())
}

/// Fraction of pixels changed per Square step at query `i` of `n` (Andriushchenko et al.'s schedule, rescaled to
/// `n` queries).
fn square_fraction(i: usize, n: usize) -> f64 {
    let it = (i as f64) * 10000.0 / (n.max(1) as f64);
    let halvings = [
        10.0, 50.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0,
    ]
    .iter()
    .filter(|&&b| it > b)
    .count();
    0.05 / f64::powi(2.0, halvings as i32)
}

/// (channels, height, width) of a per-sample shape; tabular data is one row of features.
pub(crate) fn chw(shape: &[usize]) -> (usize, usize, usize) {
    match shape {
        [c, h, w] | [1, c, h, w] => (*c, *h, *w),
        [h, w] => (1, *h, *w),
        _ => (1, 1, shape.iter().product()),
    }
}

fn square(
    model: &Model,
    c: &mut Chunk,
    opts: &AttackOptions,
    shape: &[usize],
) -> Result<(), EmpiricalError> {
    let ids = c.open();
    if ids.is_empty() {
        return Ok(());
    }
    let (ch, h, w) = chw(shape);
    let mut rngs: Vec<ChaCha8Rng> = ids
        .iter()
        .map(|&i| stream(opts.seed, AttackKind::Square.tag(), c.global[i], 0))
        .collect();
    // Start: vertical stripes of ±ε (one sign per channel and column).
    let mut x = c.rows(&ids);
    for (r, &i) in ids.iter().enumerate() {
        let row = x.row_mut(r).into_slice().expect("rows");
        for k in 0..ch {
            for col in 0..w {
                let sgn = if rngs[r].random::<bool>() { 1.0 } else { -1.0 };
                for y in 0..h {
                    row[(k * h + y) * w + col] += sgn * c.eps[i];
                }
            }
        }
        project(
            row,
            c.x0.row(i).as_slice().expect("rows"),
            c.eps[i],
            Norm::Linf,
            c.lo,
            c.hi,
        );
    }
    let z = model.logits(x.view())?;
    let mut ids = ids;
    let mut best: Vec<f32> = ids
        .iter()
        .enumerate()
        .map(|(r, &i)| margin(z.row(r).as_slice().expect("rows"), c.labels[i]))
        .collect();
    let hit = c.record(x.view(), &ids, &best, AttackKind::Square);
    let keep: Vec<bool> = hit.iter().map(|h| !h).collect();
    x = keep_rows(&x, &keep);
    ids = keep_vec(&ids, &keep);
    best = keep_vec(&best, &keep);
    rngs = keep_vec(&rngs, &keep);
    for q in 1..opts.queries.max(1) {
        if ids.is_empty() {
            break;
        }
        let p = square_fraction(q, opts.queries);
        let mut cand = x.clone();
        for (r, &i) in ids.iter().enumerate() {
            let rng = &mut rngs[r];
            let side = if h == 1 {
                ((p * w as f64).round() as usize).clamp(1, w)
            } else {
                ((p * (h * w) as f64).sqrt().round() as usize).clamp(1, h.min(w))
            };
            let sh = side.min(h);
            let y0 = rng.random_range(0..=h - sh);
            let x0c = rng.random_range(0..=w - side);
            let orig = c.x0.row(i);
            let row = cand.row_mut(r).into_slice().expect("rows");
            for k in 0..ch {
                let sgn = if rng.random::<bool>() { 1.0 } else { -1.0 };
                for y in y0..y0 + sh {
                    for xx in x0c..x0c + side {
                        let j = (k * h + y) * w + xx;
                        row[j] = orig[j] + sgn * c.eps[i];
                    }
                }
            }
            project(
                row,
                orig.as_slice().expect("rows"),
                c.eps[i],
                Norm::Linf,
                c.lo,
                c.hi,
            );
        }
        let z = model.logits(cand.view())?;
        let m: Vec<f32> = ids
            .iter()
            .enumerate()
            .map(|(r, &i)| margin(z.row(r).as_slice().expect("rows"), c.labels[i]))
            .collect();
        // Accept improving proposals only (the margin loss of the paper).
        for r in 0..ids.len() {
            if m[r] < best[r] {
                best[r] = m[r];
                x.row_mut(r).assign(&cand.row(r));
            }
        }
        let hit = c.record(x.view(), &ids, &best, AttackKind::Square);
        let keep: Vec<bool> = hit.iter().map(|h| !h).collect();
        if keep.iter().any(|k| !k) {
            x = keep_rows(&x, &keep);
            ids = keep_vec(&ids, &keep);
            best = keep_vec(&best, &keep);
            rngs = keep_vec(&rngs, &keep);
        }
    }
    Ok(())
}

fn run_kind(
    model: &Model,
    c: &mut Chunk,
    opts: &AttackOptions,
    kind: AttackKind,
    shape: &[usize],
) -> Result<(), EmpiricalError> {
    match kind {
        AttackKind::Fgsm => fgsm(model, c, opts),
        AttackKind::Pgd => pgd(model, c, opts),
        AttackKind::ApgdCe => apgd(model, c, opts, Loss::Ce, false),
        AttackKind::ApgdDlr => apgd(model, c, opts, Loss::Dlr, false),
        AttackKind::ApgdT => apgd(model, c, opts, Loss::Dlr, true),
        AttackKind::Square => {
            if opts.norm == Norm::Linf {
                square(model, c, opts, shape)
            } else {
                Ok(())
            }
        }
        AttackKind::Ensemble => {
            for k in [
                AttackKind::Fgsm,
                AttackKind::Pgd,
                AttackKind::ApgdCe,
                AttackKind::ApgdDlr,
                AttackKind::ApgdT,
                AttackKind::Square,
            ] {
                run_kind(model, c, opts, k, shape)?;
            }
            Ok(())
        }
    }
}

/// The outcome of attacking one sample at one ε.
#[derive(Clone, Debug, Serialize)]
pub struct SampleOutcome {
    /// Index of the sample in the dataset.
    pub index: usize,
    /// Its label.
    pub label: usize,
    /// The model's prediction on the clean sample.
    pub clean_pred: usize,
    /// True when an adversarial example was found, confirmed by re-execution (or the clean sample is misclassified).
    pub broken: bool,
    /// The prediction on the adversarial example (confirmed), if one was found.
    pub adv_pred: Option<usize>,
    /// The attack that found it.
    pub found_by: Option<AttackKind>,
    /// Distance of the adversarial example from the sample, in the attack's norm.
    pub distance: Option<f64>,
    /// The lowest margin (true-class logit minus the best other) the attack reached; negative when broken.
    pub best_margin: f32,
    /// The adversarial example (model input units), if one was found.
    #[serde(skip)]
    pub adv: Option<Vec<f32>>,
}

/// Result of one attack run: outcomes per sample and the number of model evaluations.
#[derive(Clone, Debug)]
pub struct AttackRun {
    /// One outcome per sample, in dataset order.
    pub outcomes: Vec<SampleOutcome>,
    /// Forward (and backward) passes, counted per sample.
    pub evaluations: u64,
}

/// Attacks every sample of `data` within its own radius `eps[i]` (`eps.len() == data.len()`). Clean
/// misclassifications count as broken without an attack; samples with `skip[i]` are not attacked (reported
/// unbroken). `progress` is called with the number of samples finished by each chunk.
pub fn attack_samples(
    model: &Model,
    data: &Dataset,
    eps: &[f32],
    skip: Option<&[bool]>,
    opts: &AttackOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<AttackRun, EmpiricalError> {
    check(model, data, opts)?;
    if eps.len() != data.len() {
        return Err(EmpiricalError::Options(format!(
            "{} radii for {} samples",
            eps.len(),
            data.len()
        )));
    }
    if let Some(e) = eps.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
        return Err(EmpiricalError::Options(format!(
            "ε must be a non-negative number, got {e}"
        )));
    }
    // Rows are handed to the attacks as contiguous slices: a dataset built in another memory order is copied once.
    let xs = data.x.as_standard_layout();
    let batch = opts.batch.max(1);
    let n = data.len();
    let starts: Vec<usize> = (0..n).step_by(batch).collect();
    let parts: Vec<Result<(Vec<SampleOutcome>, u64), EmpiricalError>> = starts
        .par_iter()
        .map(|&s0| {
            let e0 = (s0 + batch).min(n);
            let x0 = xs.slice(s![s0..e0, ..]);
            let labels = &data.labels[s0..e0];
            let global: Vec<usize> = (s0..e0).collect();
            let clean = model.predict(x0)?;
            let mut c = Chunk {
                x0,
                labels,
                eps: &eps[s0..e0],
                global: &global,
                lo: &data.lower,
                hi: &data.upper,
                found: vec![None; e0 - s0],
                best_margin: vec![f32::INFINITY; e0 - s0],
                evals: 0,
            };
            // Misclassified or skipped samples are not attacked: mark them as done with a placeholder.
            let placeholder = |i: usize| Some((c.x0.row(i).to_vec(), AttackKind::Fgsm));
            let mut pre_done = vec![false; e0 - s0];
            for i in 0..e0 - s0 {
                if clean[i] != labels[i] || skip.is_some_and(|sk| sk[s0 + i]) {
                    pre_done[i] = true;
                }
            }
            for (i, done) in pre_done.iter().enumerate() {
                if *done {
                    c.found[i] = placeholder(i);
                }
            }
            run_kind(model, &mut c, opts, opts.kind, &data.shape)?;
            // Independent confirmation of every success: ball, range, and the re-executed f32 prediction.
            let cand: Vec<usize> = (0..e0 - s0)
                .filter(|&i| !pre_done[i] && c.found[i].is_some())
                .collect();
            let mut confirmed: Vec<Option<usize>> = vec![None; e0 - s0];
            if !cand.is_empty() {
                let mut adv = Array2::<f32>::zeros((cand.len(), data.features()));
                for (r, &i) in cand.iter().enumerate() {
                    let (v, _) = c.found[i].as_ref().expect("candidate");
                    adv.row_mut(r)
                        .as_slice_mut()
                        .expect("rows")
                        .copy_from_slice(v);
                }
                let x0s = c.rows(&cand);
                let labs: Vec<usize> = cand.iter().map(|&i| labels[i]).collect();
                let epss: Vec<f32> = cand.iter().map(|&i| c.eps[i]).collect();
                let ok = confirm(
                    model,
                    x0s.view(),
                    adv.view(),
                    &labs,
                    &epss,
                    opts.norm,
                    &data.lower,
                    &data.upper,
                )?;
                for (r, &i) in cand.iter().enumerate() {
                    confirmed[i] = ok[r];
                }
            }
            let out: Vec<SampleOutcome> = (0..e0 - s0)
                .map(|i| {
                    let misclassified = clean[i] != labels[i];
                    let (adv, found_by, distance) = match (&c.found[i], confirmed[i]) {
                        (Some((v, k)), Some(_)) => (
                            Some(v.clone()),
                            Some(*k),
                            Some(distance(
                                v.iter().copied(),
                                x0.row(i).iter().copied(),
                                opts.norm,
                            )),
                        ),
                        _ => (None, None, None),
                    };
                    SampleOutcome {
                        index: s0 + i,
                        label: labels[i],
                        clean_pred: clean[i],
                        broken: misclassified || confirmed[i].is_some(),
                        adv_pred: confirmed[i],
                        found_by,
                        distance,
                        best_margin: if misclassified {
                            margin_of(model, x0.row(i).to_vec(), labels[i])
                        } else {
                            c.best_margin[i]
                        },
                        adv,
                    }
                })
                .collect();
            progress(e0 - s0);
            Ok((out, c.evals))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(n);
    let mut evaluations = 0;
    for p in parts {
        let (o, e) = p?;
        outcomes.extend(o);
        evaluations += e;
    }
    Ok(AttackRun {
        outcomes,
        evaluations,
    })
}

fn margin_of(model: &Model, x: Vec<f32>, label: usize) -> f32 {
    let a = Array2::from_shape_vec((1, x.len()), x).expect("one row");
    model
        .logits(a.view())
        .map(|z| margin(z.row(0).as_slice().expect("row"), label))
        .unwrap_or(f32::NAN)
}

fn check(model: &Model, data: &Dataset, opts: &AttackOptions) -> Result<(), EmpiricalError> {
    data.check_model(model.inputs(), model.classes())?;
    if data.is_empty() {
        return Err(EmpiricalError::Options(format!(
            "{}: no samples to attack",
            data.origin
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
    if opts.kind == AttackKind::Square && opts.norm == Norm::L2 {
        return Err(EmpiricalError::Options(
            "the Square attack is implemented for L∞ only (use --norm linf)".into(),
        ));
    }
    if opts.steps == 0 || opts.restarts == 0 || opts.queries == 0 {
        return Err(EmpiricalError::Options(
            "steps, restarts and queries must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Robust accuracy at one ε.
#[derive(Clone, Debug, Serialize)]
pub struct EpsResult {
    /// The radius.
    pub eps: f32,
    /// Samples still correctly classified under attack.
    pub robust: usize,
    /// Samples.
    pub total: usize,
    /// `robust / total`.
    pub robust_accuracy: f64,
    /// 95 % Clopper–Pearson interval of the robust accuracy (an upper bound on true robust accuracy only in the
    /// sense of the attack: a stronger attack can only lower it).
    pub ci95: (f64, f64),
    /// Model evaluations spent.
    pub evaluations: u64,
    /// Per-sample outcomes.
    pub samples: Vec<SampleOutcome>,
}

/// Robust accuracy for every ε of `eps_list` (ascending order is used internally: a sample broken at a smaller ε is
/// broken at every larger one with the same example, which keeps the curve monotone and saves work).
pub fn robustness_curve(
    model: &Model,
    data: &Dataset,
    eps_list: &[f32],
    opts: &AttackOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<EpsResult>, EmpiricalError> {
    let mut order: Vec<usize> = (0..eps_list.len()).collect();
    order.sort_by(|&a, &b| eps_list[a].total_cmp(&eps_list[b]));
    let mut prev: Option<Vec<SampleOutcome>> = None;
    let mut results: Vec<Option<EpsResult>> = vec![None; eps_list.len()];
    for &k in &order {
        let eps = eps_list[k];
        let skip: Option<Vec<bool>> = prev.as_ref().map(|p| p.iter().map(|o| o.broken).collect());
        let run = attack_samples(
            model,
            data,
            &vec![eps; data.len()],
            skip.as_deref(),
            opts,
            progress,
        )?;
        let mut samples = run.outcomes;
        if let Some(p) = &prev {
            for (o, q) in samples.iter_mut().zip(p) {
                if q.broken {
                    *o = q.clone();
                }
            }
        }
        let robust = samples.iter().filter(|o| !o.broken).count();
        let total = samples.len();
        results[k] = Some(EpsResult {
            eps,
            robust,
            total,
            robust_accuracy: robust as f64 / total as f64,
            ci95: crate::metrics::clopper_pearson(robust as u64, total as u64, 0.05),
            evaluations: run.evaluations,
            samples: samples.clone(),
        });
        prev = Some(samples);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every ε run"))
        .collect())
}

/// Smallest ε (up to `eps_max`) at which the attack finds an adversarial example, per sample, by bisection with
/// `iters` halvings: `Some(e)` means a confirmed adversarial example exists within `e` (so the true minimal radius
/// is at most `e`, and the attack failed at `e - eps_max / 2^iters`); `None` means none was found within `eps_max`
/// (or the clean sample is misclassified: minimal ε 0 is then reported as `Some(0)`).
pub fn minimal_eps(
    model: &Model,
    data: &Dataset,
    eps_max: f32,
    iters: usize,
    opts: &AttackOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Option<f32>>, EmpiricalError> {
    let n = data.len();
    let first = attack_samples(model, data, &vec![eps_max; n], None, opts, progress)?;
    let mut hi: Vec<Option<f32>> = first
        .outcomes
        .iter()
        .map(|o| {
            if o.clean_pred != o.label {
                Some(0.0)
            } else if o.broken {
                Some(eps_max)
            } else {
                None
            }
        })
        .collect();
    let mut lo = vec![0.0f32; n];
    for _ in 0..iters {
        let mid: Vec<f32> = (0..n)
            .map(|i| hi[i].map_or(0.0, |h| 0.5 * (lo[i] + h)))
            .collect();
        let skip: Vec<bool> = (0..n).map(|i| hi[i].is_none_or(|h| h == 0.0)).collect();
        let run = attack_samples(model, data, &mid, Some(&skip), opts, progress)?;
        for (i, o) in run.outcomes.iter().enumerate() {
            if skip[i] {
                continue;
            }
            if o.adv_pred.is_some() {
                hi[i] = Some(mid[i]);
            } else {
                lo[i] = mid[i];
            }
        }
    }
    Ok(hi)
}

/// Helper for tests and benches: the model's argmax predictions on raw rows.
pub fn predictions(model: &Model, x: ArrayView2<'_, f32>) -> Result<Vec<usize>, EmpiricalError> {
    let z = model.logits(x)?;
    Ok(z.rows().into_iter().map(|r| argmax(&r.to_vec())).collect())
}
