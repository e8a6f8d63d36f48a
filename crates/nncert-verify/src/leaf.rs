//! Exact solvers for small sub-problems of ReLU-splitting branch-and-bound.
//!
//! Branch-and-bound on wide networks ends in sub-domains whose bound still does not decide although few (or
//! no) ReLUs are left unstable: there the relaxation is nearly exact and one more bound pass cannot close the
//! gap, but an LP (no unstable ReLU: the network is affine on the sub-domain) or a small MILP decides it
//! outright. This crate cannot link a solver (the MILP engine depends on it), so the search takes one through
//! [`LeafSolver`]; `nncert-milp` provides the HiGHS one.
//!
//! What a leaf answer may claim is part of the method class: a refutation that is `rigorous` (an LP whose
//! optimal value was re-derived from the solver's duals with explicit rounding-error terms) keeps the search's
//! proof sound under floating point; one that is not (a MILP dual bound, exact only up to the solver's
//! tolerances) downgrades the proof to "real arithmetic up to solver tolerances", and the verdict says so.

use nncert_bounds::dense::LayerBounds;
use nncert_spec::{InputBox, Property};
use std::time::Instant;

/// One sub-domain handed to a [`LeafSolver`]: the input box with some ReLUs fixed.
#[derive(Clone, Copy, Debug)]
pub struct Leaf<'a> {
    pub property: &'a Property,
    /// The case whose input box and disjuncts this leaf belongs to.
    pub case: usize,
    /// Disjuncts of the case still open on this sub-domain (indices into `cases[case].output.disjuncts`).
    pub disjuncts: &'a [usize],
    /// The input box (widened outward by one ulp, as the bounds were computed on it).
    pub input: &'a InputBox,
    /// Sound bounds on every Linear layer's output of the dense network, valid on the sub-domain; the last
    /// entry bounds the network outputs. A split ReLU has its pre-activation interval clamped at 0: lower
    /// bound 0 means fixed active (`z ≥ 0`), upper bound 0 fixed inactive (`z ≤ 0`).
    pub layers: &'a [LayerBounds],
    /// Pre-activations whose interval still straddles 0.
    pub unstable: usize,
    /// Give up (answer [`LeafAnswer::Unknown`]) by then.
    pub deadline: Instant,
}

/// What a leaf solver established about a [`Leaf`].
#[derive(Clone, Debug, PartialEq)]
pub enum LeafAnswer {
    /// No point of the sub-domain satisfies any open disjunct. `rigorous`: the proof holds for the
    /// real-valued network despite floating-point rounding (otherwise only up to the solver's tolerances).
    Refuted { rigorous: bool },
    /// A point of the input box the solver believes violates the property; the search re-executes it before
    /// believing it.
    Candidate(Vec<f64>),
    /// Undecided (time limit, numerical trouble, or a refutation the solver could not certify).
    Unknown,
}

/// An exact solver for leaves of ReLU-splitting branch-and-bound (see the module docs).
pub trait LeafSolver: Send + Sync + std::fmt::Debug {
    /// Sub-domains with at most this many unstable ReLUs are handed over.
    fn max_unstable(&self) -> usize;
    /// How the solver answers, for the verdict's method description (e.g. `HiGHS LP/MILP leaves`).
    fn describe(&self) -> String;
    /// Decides the leaf, or gives up.
    fn solve(&self, leaf: &Leaf<'_>) -> LeafAnswer;
}
