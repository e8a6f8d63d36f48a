//! # nncert-stats
//!
//! Statistical robustness assessment (ISO/IEC 24029-1, statistical methods):
//!
//! - [`smoothing`]: randomized smoothing (Cohen, Rosenfeld & Kolter 2019): `predict` with abstention by the
//!   binomial test, `certify` with an exact Clopper–Pearson lower bound on the top-class probability and the
//!   certified L2 radius `σ·Φ⁻¹(p_A)`, and certified-accuracy-versus-radius curves;
//! - [`failure`]: the probability that a property fails under an input distribution (uniform on a box or an L2
//!   ball, Gaussian), by plain Monte Carlo with exact intervals or by adaptive multilevel splitting for rare
//!   events (Webb et al. 2019);
//! - [`binomial`]: exact binomial bounds and sample-size planning ("how many samples show `p < p0`").
//!
//! Every random draw comes from a ChaCha stream keyed by the user's seed and by the position of the draw (point,
//! batch, level, …), never by the thread that makes it, so results do not depend on the number of threads.

#![warn(missing_docs)]

pub mod binomial;
pub mod failure;
pub mod smoothing;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A parameter or input is out of its domain; the message says which and what is allowed.
    #[error("{0}")]
    Invalid(String),
    /// The model could not be evaluated on the sampled inputs (boxed: model errors are large and rare).
    #[error("model evaluation failed: {0}")]
    Model(Box<nncert_model::ModelError>),
}

impl From<nncert_model::ModelError> for StatsError {
    fn from(e: nncert_model::ModelError) -> Self {
        StatsError::Model(Box::new(e))
    }
}

/// SplitMix64's finalizer: a bijective mix, so distinct keys give unrelated words.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream for the draw identified by `ids` (e.g. purpose, point, batch) under `seed`.
///
/// A counter-based scheme: the 256-bit ChaCha key is a hash of `(seed, ids)`, so the numbers a batch gets depend
/// only on what the batch is, not on which thread or in which order it runs.
pub fn stream(seed: u64, ids: &[u64]) -> ChaCha8Rng {
    let mut h = mix(seed ^ 0x6E6E_6365_7274_5354);
    for &id in ids {
        h = mix(h ^ mix(id));
    }
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        h = mix(h.wrapping_add(i as u64));
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    #[test]
    fn streams_depend_on_every_id() {
        let a: u64 = super::stream(1, &[2, 3]).random();
        assert_eq!(a, super::stream(1, &[2, 3]).random::<u64>());
        assert_ne!(a, super::stream(1, &[3, 2]).random::<u64>());
        assert_ne!(a, super::stream(2, &[2, 3]).random::<u64>());
        assert_ne!(a, super::stream(1, &[2, 3, 0]).random::<u64>());
    }
}
