//! Counterexample checking: a candidate becomes a `sat` answer only after it is re-executed.
//!
//! The candidate is first snapped to f32 values inside the input box (the model's own input type, so the point
//! can be replayed by any runtime exactly), then evaluated in f32 *and* f64; both outputs must lie in the bad
//! region with no tolerance. A point that passes is reported as is; one that fails is dropped, never rounded
//! into a `sat`.

use nncert_model::Graph;
use nncert_model::eval::Evaluator;
use nncert_spec::{InputBox, Property};

use ndarray::Array2;

/// A checked counterexample: an input inside the property's region whose output is in the bad region.
#[derive(Clone, Debug, PartialEq)]
pub struct Counterexample {
    /// Which case (input box) of the property it belongs to.
    pub case: usize,
    /// The input, inside the box; every value exactly representable in f32 unless its interval holds no f32
    /// (see [`snap_to_f32_in_box`]).
    pub input: Vec<f64>,
    /// The output evaluated in f32 (widened).
    pub output_f32: Vec<f64>,
    /// The output evaluated in f64.
    pub output_f64: Vec<f64>,
    /// The bad-region margin (≤ 0 means inside) in f32 and f64 evaluation.
    pub margin_f32: f64,
    pub margin_f64: f64,
}

/// Rounds `x` to f32 values inside `[lower, upper]` (in the f64 sense). A coordinate whose interval holds no
/// f32 at all (a fixed input written with more digits than f32 has, `lower == upper`) keeps its f64 value in
/// the interval: the f64 execution then uses the exact value, the f32 execution its nearest f32 (as a
/// runtime reading the decimal would). `None` only for an empty interval or a non-finite value.
pub fn snap_to_f32_in_box(x: &[f64], b: &InputBox) -> Option<Vec<f64>> {
    x.iter()
        .zip(b.lower.iter().zip(&b.upper))
        .map(|(&v, (&lo, &hi))| {
            if !(v.is_finite() && lo <= hi) {
                return None;
            }
            let inside = v.clamp(lo, hi);
            let mut s = inside as f32;
            if (s as f64) < lo {
                s = s.next_up();
            }
            if (s as f64) > hi {
                s = s.next_down();
            }
            Some(if (s as f64) >= lo && (s as f64) <= hi {
                s as f64
            } else {
                inside
            })
        })
        .collect()
}

/// Re-executes a candidate for case `case` and returns it as a [`Counterexample`] if it really is one.
pub fn check_candidate(
    graph: &Graph,
    property: &Property,
    case: usize,
    x: &[f64],
) -> Option<Counterexample> {
    let c = property.cases.get(case)?;
    let input = snap_to_f32_in_box(x, &c.input)?;
    if !c.input.contains(&input, 0.0) {
        return None;
    }
    let n = input.len();
    let x64 = Array2::from_shape_vec((1, n), input.clone()).ok()?;
    let x32 = x64.mapv(|v| v as f32);
    let y32 = Evaluator::<f32>::new(graph).forward(x32.view()).ok()?;
    let y64 = Evaluator::<f64>::new(graph).forward(x64.view()).ok()?;
    let output_f32: Vec<f64> = y32.iter().map(|&v| v as f64).collect();
    let output_f64: Vec<f64> = y64.iter().copied().collect();
    let margin_f32 = c.output.margin(&output_f32);
    let margin_f64 = c.output.margin(&output_f64);
    let inside = |y: &[f64]| {
        c.output.disjuncts.iter().any(|d| {
            d.constraints.iter().all(|k| {
                let v = k.violation(y);
                if k.strict { v < 0.0 } else { v <= 0.0 }
            })
        })
    };
    (inside(&output_f32) && inside(&output_f64)).then_some(Counterexample {
        case,
        input,
        output_f32,
        output_f64,
        margin_f32,
        margin_f64,
    })
}
