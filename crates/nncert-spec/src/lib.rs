//! VNN-LIB 1.0 properties for nncert.
//!
//! A VNN-LIB file declares input variables `X_0..X_{n-1}` and output variables `Y_0..Y_{m-1}`
//! and asserts constraints on them. The assertions describe the **bad** case: the property is
//! violated (`sat`) iff some input `x` satisfying the input constraints produces an output
//! `y = f(x)` satisfying the output constraints; it holds (`unsat`) iff no such `x` exists.
//!
//! [`parse_file`] / [`parse_str`] turn a file into a [`Property`]: a list of [`Case`]s, each an
//! input box ([`InputBox`]) and a bad output region ([`OutputCondition`]) in disjunctive normal
//! form over linear constraints `Σ_j coeffs[j]·Y_j <= rhs` ([`LinearConstraint`]). A counterexample
//! exists iff for some case some `x` in `case.input` has `f(x)` in `case.output`.
//!
//! The full grammar used in VNN-COMP is accepted: `declare-const`, `assert`, comments, the
//! comparisons `<= >= < > =` (both sides may be terms, chains like `(<= a b c)` mean
//! `a <= b and b <= c`), `and` / `or` nested arbitrarily, linear terms built with `+`, `-`, `*`
//! (by constants) and `/` (by constants), and numbers in any decimal or scientific form. The
//! conjunction of all assertions is converted to DNF; each disjunct must bound every input from
//! below and above (constraints on inputs must be bounds on single inputs) and may constrain the
//! outputs linearly. Disjuncts with the same input box form one case.
//!
//! [`Property::robustness_linf`] and [`Property::output_range`] build the two common properties
//! in code, and [`write_vnnlib`] prints any property as VNN-LIB text.
//!
//! # Example
//! ```
//! use nncert_spec::parse_str;
//!
//! let text = "
//! ; a 2-input, 3-class classifier must keep class 0 on this box
//! (declare-const X_0 Real)
//! (declare-const X_1 Real)
//! (declare-const Y_0 Real)
//! (declare-const Y_1 Real)
//! (declare-const Y_2 Real)
//! (assert (>= X_0 -0.1))
//! (assert (<= X_0 0.1))
//! (assert (>= X_1 0.4))
//! (assert (<= X_1 0.6))
//! (assert (or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0))))
//! ";
//! let property = parse_str(text, "example.vnnlib")?;
//! assert_eq!((property.num_inputs, property.num_outputs), (2, 3));
//! assert_eq!(property.cases.len(), 1);
//! let case = &property.cases[0];
//! assert_eq!(case.input.lower, vec![-0.1, 0.4]);
//! assert_eq!(case.input.upper, vec![0.1, 0.6]);
//! // (>= Y_1 Y_0) is normalized to Y_0 - Y_1 <= 0.
//! assert_eq!(case.output.disjuncts[0].constraints[0].coeffs, vec![1.0, -1.0, 0.0]);
//! assert_eq!(case.output.disjuncts[0].constraints[0].rhs, 0.0);
//!
//! // An output where class 2 wins is bad; one where class 0 wins is not.
//! assert!(case.output.is_satisfied(&[0.1, 0.2, 0.9], 0.0));
//! assert!(!case.output.is_satisfied(&[0.9, 0.2, 0.1], 0.0));
//! # Ok::<(), nncert_spec::SpecError>(())
//! ```
//!
//! Errors name the place and say what was expected and what was found, e.g.
//! ```text
//! example.vnnlib:12:17: expected a declared variable, found `X_7`, which is not declared; add (declare-const X_7 Real) before its first use
//! ```

mod error;
mod lexer;
mod parser;
mod writer;

use std::path::Path;

pub use error::SpecError;
pub use parser::{MAX_DENSE_VALUES, MAX_DEPTH, MAX_DNF_ATOMS};
pub use writer::write_vnnlib;

/// What a VNN-LIB file says: a counterexample exists iff some case has an input `x` in
/// `case.input` whose output `y = f(x)` lies in `case.output` (VNN-LIB semantics: the assertions
/// describe the **bad** case).
///
/// A property with no cases is trivially `unsat` (the file's constraints are contradictory).
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// Number of input variables `X_0..X_{n-1}`.
    pub num_inputs: usize,
    /// Number of output variables `Y_0..Y_{m-1}`.
    pub num_outputs: usize,
    /// The cases; the bad set is their union.
    pub cases: Vec<Case>,
}

/// One input box together with the outputs that are bad for inputs in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The input region of this case.
    pub input: InputBox,
    /// The bad output region for inputs in `input`.
    pub output: OutputCondition,
}

/// An axis-aligned box `lower[i] <= x_i <= upper[i]`; parsed boxes have finite bounds with
/// `lower <= upper` and length `num_inputs`.
///
/// Strict input bounds (`<`, `>`) are read as non-strict: the box is their closure, a superset,
/// so a proof (`unsat`) on the box is a proof for the file.
#[derive(Debug, Clone, PartialEq)]
pub struct InputBox {
    /// Lower bounds, one per input.
    pub lower: Vec<f64>,
    /// Upper bounds, one per input.
    pub upper: Vec<f64>,
}

/// The bad output region in disjunctive normal form: `y` is bad iff it satisfies at least one
/// conjunction. No disjunct means no output is bad; one empty conjunction means every output is
/// bad (the whole input box is a counterexample region).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputCondition {
    /// The conjunctions, any one of which makes an output bad.
    pub disjuncts: Vec<Conjunction>,
}

/// A conjunction of linear constraints on the outputs; empty means `true`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conjunction {
    /// The constraints, all of which must hold.
    pub constraints: Vec<LinearConstraint>,
}

/// `Σ_j coeffs[j]·Y_j <= rhs` with dense `coeffs` of length `num_outputs`.
///
/// `strict` records that the file said `<` or `>`; the methods here compare with tolerances and
/// treat strict and non-strict alike (VNN-COMP checks counterexamples within a tolerance too).
/// A `>=` in the file is stored negated (`a >= b` becomes `b - a <= 0`), and `=` becomes two
/// constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearConstraint {
    /// One coefficient per output.
    pub coeffs: Vec<f64>,
    /// The right-hand side.
    pub rhs: f64,
    /// Whether the file wrote a strict comparison.
    pub strict: bool,
}

/// Reads and parses a VNN-LIB file; error messages name the file.
///
/// # Errors
/// [`SpecError::Io`] if the file cannot be read; otherwise as [`parse_str`], with the path as
/// origin. Files need not be valid UTF-8 (comments in Latin-1 are fine).
pub fn parse_file(path: &Path) -> Result<Property, SpecError> {
    let bytes = std::fs::read(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    parser::Parser::new(&bytes, &origin).parse()
}

/// Parses VNN-LIB text; `origin` (usually the file name) prefixes error messages
/// (`origin:line:col: ...`).
///
/// # Errors
/// [`SpecError::Parse`] (with line and column) for syntax errors, undeclared or badly named
/// variables, operators outside VNN-LIB 1.0, nonlinear terms, constraints that mix inputs and
/// outputs or relate several inputs, non-finite numbers, nesting deeper than [`MAX_DEPTH`] and a
/// DNF expansion beyond [`MAX_DNF_ATOMS`]; [`SpecError::Property`] for gaps in the declarations,
/// an input without a lower or upper bound in some case, or a result beyond
/// [`MAX_DENSE_VALUES`]. Never panics.
pub fn parse_str(text: &str, origin: &str) -> Result<Property, SpecError> {
    parser::Parser::new(text.as_bytes(), origin).parse()
}

impl LinearConstraint {
    /// `coeffs·y - rhs`: `<= 0` means the constraint is satisfied. NaN if `y` has the wrong
    /// length or contains NaN.
    pub fn violation(&self, y: &[f64]) -> f64 {
        if y.len() != self.coeffs.len() {
            return f64::NAN;
        }
        let dot: f64 = self.coeffs.iter().zip(y).map(|(a, b)| a * b).sum();
        dot - self.rhs
    }
}

impl Conjunction {
    /// The largest violation over the constraints (`<= 0` iff all are satisfied); `-inf` if the
    /// conjunction is empty; NaN if any violation is NaN.
    pub fn margin(&self, y: &[f64]) -> f64 {
        let mut m = f64::NEG_INFINITY;
        for c in &self.constraints {
            let v = c.violation(y);
            if v.is_nan() {
                return f64::NAN;
            }
            m = m.max(v);
        }
        m
    }

    /// Whether every constraint is satisfied within `tol` (`margin(y) <= tol`).
    pub fn is_satisfied(&self, y: &[f64], tol: f64) -> bool {
        self.margin(y) <= tol
    }
}

impl OutputCondition {
    /// The smallest conjunction margin (`<= 0` iff `y` is bad); `+inf` if there is no disjunct.
    /// NaN margins are skipped unless all are NaN. A falsifier minimizes this.
    pub fn margin(&self, y: &[f64]) -> f64 {
        let mut m = f64::INFINITY;
        let mut any_number = self.disjuncts.is_empty();
        for c in &self.disjuncts {
            let v = c.margin(y);
            if !v.is_nan() {
                any_number = true;
                m = m.min(v);
            }
        }
        if any_number { m } else { f64::NAN }
    }

    /// Whether `y` is bad within `tol`: some conjunction has margin `<= tol`.
    pub fn is_satisfied(&self, y: &[f64], tol: f64) -> bool {
        self.disjuncts.iter().any(|c| c.is_satisfied(y, tol))
    }
}

impl InputBox {
    /// How many inputs vary (`lower < upper`); the others are fixed.
    pub fn free_dims(&self) -> usize {
        self.lower
            .iter()
            .zip(&self.upper)
            .filter(|(l, u)| l < u)
            .count()
    }

    /// The box moved outward by one ulp on every side. The parser rounds the file's decimal bounds to f64;
    /// the widened box contains the real-valued box the file states, so a proof over it holds for that one.
    pub fn widened_one_ulp(&self) -> InputBox {
        InputBox {
            lower: self.lower.iter().map(|v| v.next_down()).collect(),
            upper: self.upper.iter().map(|v| v.next_up()).collect(),
        }
    }

    /// Whether `x` has the box's dimension and `lower - tol <= x <= upper + tol` componentwise
    /// (false for NaN).
    pub fn contains(&self, x: &[f64], tol: f64) -> bool {
        x.len() == self.lower.len()
            && x.len() == self.upper.len()
            && x.iter()
                .zip(self.lower.iter().zip(&self.upper))
                .all(|(&v, (&l, &u))| l - tol <= v && v <= u + tol)
    }

    /// The number of inputs.
    pub fn dim(&self) -> usize {
        self.lower.len()
    }
}

/// The smallest `f64` above `x` (for finite `x`).
fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let b = x.to_bits();
    if x > 0.0 {
        f64::from_bits(b + 1)
    } else {
        f64::from_bits(b - 1)
    }
}

fn next_down(x: f64) -> f64 {
    -next_up(-x)
}

/// `a + b` rounded down (`dir < 0`) or up (`dir > 0`): the exact sum lies in the result's direction.
fn add_directed(a: f64, b: f64, dir: i8) -> f64 {
    let s = a + b;
    if !s.is_finite() {
        return s;
    }
    // TwoSum: s + err == a + b exactly.
    let bb = s - a;
    let err = (a - (s - bb)) + (b - bb);
    if dir < 0 && err < 0.0 {
        next_down(s)
    } else if dir > 0 && err > 0.0 {
        next_up(s)
    } else {
        s
    }
}

impl Property {
    /// "The classifier is robust at `center` within `eps` in L∞": the box
    /// `[center - eps, center + eps]` (rounded outward so that it contains the exact real box),
    /// intersected with `[clip_lo, clip_hi]` if `clip` is given; an output is bad iff some class
    /// `j != label` has `Y_j >= Y_label`, i.e. one disjunct `Y_label - Y_j <= 0` per `j != label`
    /// in increasing `j` (the form of the VNN-COMP MNIST and CIFAR files).
    ///
    /// # Errors
    /// [`SpecError::InvalidArgument`] for an empty or non-finite center, a negative or
    /// non-finite `eps`, fewer than 2 outputs, `label >= num_outputs`, a bad clip range, or a
    /// center so far outside the clip range that the box is empty.
    pub fn robustness_linf(
        center: &[f64],
        eps: f64,
        label: usize,
        num_outputs: usize,
        clip: Option<(f64, f64)>,
    ) -> Result<Property, SpecError> {
        let bad = |m: String| Err(SpecError::InvalidArgument(m));
        if center.is_empty() {
            return bad("the center has no inputs".into());
        }
        if let Some(i) = center.iter().position(|v| !v.is_finite()) {
            return bad(format!("center[{i}] = {} is not finite", center[i]));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return bad(format!("eps = {eps} must be finite and >= 0"));
        }
        if num_outputs < 2 {
            return bad(format!(
                "a robustness property needs at least 2 outputs, found {num_outputs}"
            ));
        }
        if label >= num_outputs {
            return bad(format!(
                "label {label} is out of range for {num_outputs} outputs"
            ));
        }
        if let Some((lo, hi)) = clip
            && !(lo.is_finite() && hi.is_finite() && lo <= hi)
        {
            return bad(format!(
                "clip range ({lo}, {hi}) must be finite with lo <= hi"
            ));
        }
        let mut lower = Vec::with_capacity(center.len());
        let mut upper = Vec::with_capacity(center.len());
        for (i, &c) in center.iter().enumerate() {
            let mut l = add_directed(c, -eps, -1);
            let mut u = add_directed(c, eps, 1);
            if let Some((lo, hi)) = clip {
                l = l.max(lo);
                u = u.min(hi);
            }
            if !(l.is_finite() && u.is_finite()) {
                return bad(format!("center[{i}] ± eps overflows"));
            }
            if l > u {
                return bad(format!(
                    "center[{i}] = {c} lies outside the clip range by more than eps, so the box \
                     is empty"
                ));
            }
            lower.push(l + 0.0);
            upper.push(u + 0.0);
        }
        let disjuncts = (0..num_outputs)
            .filter(|&j| j != label)
            .map(|j| {
                let mut coeffs = vec![0.0; num_outputs];
                coeffs[label] = 1.0;
                coeffs[j] = -1.0;
                Conjunction {
                    constraints: vec![LinearConstraint {
                        coeffs,
                        rhs: 0.0,
                        strict: false,
                    }],
                }
            })
            .collect();
        Ok(Property {
            num_inputs: center.len(),
            num_outputs,
            cases: vec![Case {
                input: InputBox { lower, upper },
                output: OutputCondition { disjuncts },
            }],
        })
    }

    /// "Output `Y_index` stays within `[lo, hi]` on the box `input`": an output is bad iff it
    /// leaves the range, i.e. the two disjuncts `Y_index < lo` (stored as `coeffs = e_index`,
    /// `rhs = lo`, strict) and `Y_index > hi` (stored as `coeffs = -e_index`, `rhs = -hi`,
    /// strict). An infinite `lo` or `hi` omits that side.
    ///
    /// # Errors
    /// [`SpecError::InvalidArgument`] for a box with mismatched, empty, non-finite or inverted
    /// bounds, `index >= num_outputs`, or `lo > hi` (or NaN).
    pub fn output_range(
        input: InputBox,
        num_outputs: usize,
        index: usize,
        lo: f64,
        hi: f64,
    ) -> Result<Property, SpecError> {
        let bad = |m: String| Err(SpecError::InvalidArgument(m));
        if input.lower.is_empty() || input.lower.len() != input.upper.len() {
            return bad(format!(
                "the input box needs as many lower bounds ({}) as upper bounds ({}), at least one",
                input.lower.len(),
                input.upper.len()
            ));
        }
        for (i, (&l, &u)) in input.lower.iter().zip(&input.upper).enumerate() {
            if !(l.is_finite() && u.is_finite() && l <= u) {
                return bad(format!(
                    "input {i} has bounds [{l}, {u}]; they must be finite with lower <= upper"
                ));
            }
        }
        if index >= num_outputs {
            return bad(format!(
                "output index {index} is out of range for {num_outputs} outputs"
            ));
        }
        if lo.is_nan() || hi.is_nan() || lo > hi || lo == f64::INFINITY || hi == f64::NEG_INFINITY {
            return bad(format!("the range [{lo}, {hi}] must satisfy lo <= hi"));
        }
        let unit = |s: f64| {
            let mut c = vec![0.0; num_outputs];
            c[index] = s;
            c
        };
        let mut disjuncts = Vec::new();
        if lo.is_finite() {
            disjuncts.push(Conjunction {
                constraints: vec![LinearConstraint {
                    coeffs: unit(1.0),
                    rhs: lo,
                    strict: true,
                }],
            });
        }
        if hi.is_finite() {
            disjuncts.push(Conjunction {
                constraints: vec![LinearConstraint {
                    coeffs: unit(-1.0),
                    rhs: -hi + 0.0,
                    strict: true,
                }],
            });
        }
        Ok(Property {
            num_inputs: input.lower.len(),
            num_outputs,
            cases: vec![Case {
                input,
                output: OutputCondition { disjuncts },
            }],
        })
    }

    /// Checks that the property fits a model with `num_inputs` inputs and `num_outputs`
    /// outputs (the model's flattened sizes).
    ///
    /// # Errors
    /// [`SpecError::DimensionMismatch`] naming both counts.
    pub fn check_dims(&self, num_inputs: usize, num_outputs: usize) -> Result<(), SpecError> {
        if self.num_inputs != num_inputs {
            return Err(SpecError::DimensionMismatch {
                what: "inputs",
                property: self.num_inputs,
                model: num_inputs,
            });
        }
        if self.num_outputs != num_outputs {
            return Err(SpecError::DimensionMismatch {
                what: "outputs",
                property: self.num_outputs,
                model: num_outputs,
            });
        }
        Ok(())
    }

    /// Whether `(x, y)` is a counterexample within `tol`: some case contains `x` and has `y` in
    /// its bad output region.
    pub fn is_counterexample(&self, x: &[f64], y: &[f64], tol: f64) -> bool {
        self.cases
            .iter()
            .any(|c| c.input.contains(x, tol) && c.output.is_satisfied(y, tol))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directed_rounding_brackets_the_exact_sum() {
        // 1 + 1e-20 rounds to 1 (error term > 0); 0.7 - 0.1 is inexact too.
        assert_eq!(add_directed(1.0, 1e-20, -1), 1.0);
        assert_eq!(add_directed(1.0, 1e-20, 1), 1.0 + f64::EPSILON);
        assert_eq!(add_directed(-1.0, -1e-20, -1), -1.0 - f64::EPSILON);
        assert_eq!(add_directed(-1.0, -1e-20, 1), -1.0);
        let (lo, hi) = (add_directed(0.7, -0.1, -1), add_directed(0.7, -0.1, 1));
        assert!(lo < hi && lo <= 0.7 - 0.1 && 0.7 - 0.1 <= hi);
        // Exact sums are not widened.
        assert_eq!(add_directed(0.5, 0.25, -1), 0.75);
        assert_eq!(add_directed(0.5, 0.25, 1), 0.75);
        assert_eq!(next_up(0.0), f64::from_bits(1));
        assert_eq!(next_down(1.0), 1.0 - f64::EPSILON / 2.0);
    }
}
