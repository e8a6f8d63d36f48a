//! # nncert-empirical
//!
//! Empirical robustness testing (ISO/IEC 24029-1, empirical methods): adversarial attacks, corruptions and the
//! metrics built on them.
//!
//! - Attacks ([`attack`]): FGSM, PGD (L∞ and L2, random restarts, step-size schedule), APGD-CE and APGD-DLR
//!   (Croce & Hein 2020, with targeted variants), the Square attack (L∞, score-based, no gradients), and an
//!   ensemble that runs them from cheap to strong and stops per sample at its first success.
//! - Every reported adversarial example lies in the ε-ball and the valid input range (checked in f64) and was
//!   re-executed with the f32 model: a success is a misclassification of that exact input ([`confirm`]).
//! - Corruptions ([`corrupt`]): image noise, blur, brightness, contrast, pixelation, JPEG-like quantization;
//!   tabular feature noise and missing-value imputation; five severities each.
//! - Metrics ([`metrics`]): clean and robust accuracy with Clopper–Pearson intervals, per-corruption accuracy,
//!   performance drop, mean corruption error.
//!
//! Work is split into fixed chunks of samples (independent of the thread count) run in parallel with rayon, and
//! every random choice comes from a stream seeded by `(seed, attack, sample, restart)`, so results do not depend on
//! the number of threads.

// Errors carry file names for the user; they are rare and never on a hot path.
#![allow(clippy::result_large_err)]

pub mod attack;
pub mod corrupt;
pub mod metrics;

pub use attack::{AttackKind, AttackOptions, Norm, SampleOutcome};

use ndarray::{Array2, ArrayView2, Axis};
use nncert_model::Graph;
use nncert_model::eval::Evaluator;

/// Everything that can go wrong in an empirical assessment.
#[derive(Debug, thiserror::Error)]
pub enum EmpiricalError {
    #[error(transparent)]
    Model(#[from] nncert_model::ModelError),
    #[error(transparent)]
    Data(#[from] nncert_data::DataError),
    /// Options that cannot be used (negative ε, zero steps, ...).
    #[error("{0}")]
    Options(String),
}

/// Per-sample losses, per-sample margins, and the input gradient of the loss `[N, inputs]`.
pub(crate) type LossGrad = (Vec<f32>, Vec<f32>, Array2<f32>);

/// A classifier under test: the model evaluated in f32, the precision it is deployed in.
pub struct Model<'g> {
    ev: Evaluator<'g, f32>,
    classes: usize,
}

impl<'g> Model<'g> {
    /// Wraps `graph`; its output is read as one score (logit) per class.
    pub fn new(graph: &'g Graph) -> Result<Self, EmpiricalError> {
        let classes = graph.output_size();
        if classes < 2 {
            return Err(EmpiricalError::Options(format!(
                "the model has {classes} output; a classifier needs one score per class (at least 2)"
            )));
        }
        Ok(Model {
            ev: Evaluator::new(graph),
            classes,
        })
    }

    /// Number of classes (outputs).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of input values per sample.
    pub fn inputs(&self) -> usize {
        self.ev.graph().input_size()
    }

    /// Logits `[N, classes]` of a batch `[N, inputs]`.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, EmpiricalError> {
        Ok(self.ev.forward(x)?)
    }

    /// Predicted classes (first index of the largest logit) of a batch.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Vec<usize>, EmpiricalError> {
        let z = self.logits(x)?;
        Ok(z.rows().into_iter().map(|r| argmax(&r.to_vec())).collect())
    }

    /// Loss values, margins and input gradients of the loss for a batch.
    pub(crate) fn loss_grad(
        &self,
        x: ArrayView2<'_, f32>,
        labels: &[usize],
        targets: Option<&[usize]>,
        loss: attack::Loss,
    ) -> Result<LossGrad, EmpiricalError> {
        let trace = self.ev.trace(x)?;
        let z = trace.output();
        let mut cot = Array2::<f32>::zeros(z.raw_dim());
        let mut losses = Vec::with_capacity(labels.len());
        let mut margins = Vec::with_capacity(labels.len());
        for (i, (zr, mut cr)) in z
            .axis_iter(Axis(0))
            .zip(cot.axis_iter_mut(Axis(0)))
            .enumerate()
        {
            let zr: Vec<f32> = zr.to_vec();
            let t = targets.map(|t| t[i]);
            let (l, m) = attack::loss_and_cotangent(
                &zr,
                labels[i],
                t,
                loss,
                cr.as_slice_mut().expect("fresh array"),
            );
            losses.push(l);
            margins.push(m);
        }
        let g = self.ev.backward(&trace, cot.view());
        Ok((losses, margins, g))
    }
}

/// Index of the first largest value (NaN never wins).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// `z[label] - max_{j != label} z[j]`: negative means misclassified.
pub fn margin(z: &[f32], label: usize) -> f32 {
    let other = z
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != label)
        .map(|(_, v)| *v)
        .fold(f32::NEG_INFINITY, f32::max);
    z[label] - other
}

/// Checks candidate adversarial examples independently of the attack that made them: each must lie in its sample's
/// ε-ball (`norm`, computed in f64) and in `[lower, upper]`, and the f32 model, re-executed on it, must not predict
/// the label. Returns the predicted class of each candidate that passes, `None` for the others.
#[allow(clippy::too_many_arguments)]
pub fn confirm(
    model: &Model,
    x0: ArrayView2<'_, f32>,
    adv: ArrayView2<'_, f32>,
    labels: &[usize],
    eps: &[f32],
    norm: Norm,
    lower: &[f32],
    upper: &[f32],
) -> Result<Vec<Option<usize>>, EmpiricalError> {
    let preds = model.predict(adv)?;
    Ok((0..labels.len())
        .map(|i| {
            let (a, o) = (adv.row(i), x0.row(i));
            let in_range = a
                .iter()
                .zip(lower.iter().zip(upper))
                .all(|(v, (lo, hi))| v >= lo && v <= hi);
            let dist = attack::distance(a.iter().copied(), o.iter().copied(), norm);
            let ok = in_range && dist <= eps[i] as f64 && preds[i] != labels[i];
            ok.then_some(preds[i])
        })
        .collect())
}
