//! Exact rationals for the encoding.
//!
//! Every stored weight (f32) and every bound of the property (f64) is a dyadic rational `m / 2^k`; it is turned
//! into a [`Rat`] without any rounding ([`exact`]) and written as an SMT-LIB decimal, which is exact too: a dyadic
//! `m / 2^k` equals `m·5^k / 10^k`, a decimal with at most `k` fractional digits. So the formula z3 (or any other
//! solver) reads is the real-valued network with exactly the stored weights.

use num_bigint::{BigInt, Sign};
use num_rational::BigRational;
use num_traits::{Signed, Zero};

/// An exact rational number.
pub type Rat = BigRational;

/// The exact value of a finite `f64` (every `f32` widens to `f64` exactly). `None` for NaN and ±∞.
pub fn exact(v: f64) -> Option<Rat> {
    // `from_float` decomposes the float into mantissa and exponent: no rounding happens.
    BigRational::from_float(v)
}

/// The SMT-LIB 2 term of `r`: a decimal literal (`0.5`, `3.0`), wrapped in `(- …)` when negative, when the
/// denominator is a power of two (always the case for values from floats); `(/ n.0 d.0)` otherwise.
pub fn smt_literal(r: &Rat) -> String {
    let body = abs_literal(r);
    if r.is_negative() {
        format!("(- {body})")
    } else {
        body
    }
}

fn abs_literal(r: &Rat) -> String {
    let num = r.numer().abs();
    let den = r.denom().clone();
    // den = 2^k exactly? Then num / 2^k = num·5^k / 10^k.
    let k = den.trailing_zeros().unwrap_or(0);
    if den == (BigInt::from(1) << k) {
        let scaled = num * BigInt::from(5).pow(k as u32);
        let digits = scaled.to_str_radix(10);
        let k = k as usize;
        if k == 0 {
            return format!("{digits}.0");
        }
        let digits = if digits.len() <= k {
            format!("{}{digits}", "0".repeat(k + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = digits.split_at(digits.len() - k);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{int}.0")
        } else {
            format!("{int}.{frac}")
        }
    } else {
        format!("(/ {num}.0 {den}.0)")
    }
}

/// Parses the numeral terms that [`smt_literal`] writes and that z3 prints in models: `3`, `3.0`, `0.125`,
/// `(- t)`, `(/ a b)` (nested). `None` for anything else (e.g. irrational algebraic numbers, which QF_LRA never
/// produces).
pub fn parse_literal(s: &str) -> Option<Rat> {
    let tokens: Vec<String> = s
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut pos = 0;
    let r = parse_term(&tokens, &mut pos, 0)?;
    (pos == tokens.len()).then_some(r)
}

fn parse_term(t: &[String], pos: &mut usize, depth: usize) -> Option<Rat> {
    if depth > 16 {
        return None;
    }
    let tok = t.get(*pos)?;
    *pos += 1;
    if tok != "(" {
        return parse_decimal(tok);
    }
    let op = t.get(*pos)?.clone();
    *pos += 1;
    let mut args = Vec::new();
    while t.get(*pos)? != ")" {
        args.push(parse_term(t, pos, depth + 1)?);
    }
    *pos += 1;
    match (op.as_str(), args.as_slice()) {
        ("-", [a]) => Some(-a.clone()),
        ("-", [a, b]) => Some(a - b),
        ("/", [a, b]) if !b.is_zero() => Some(a / b),
        _ => None,
    }
}

fn parse_decimal(tok: &str) -> Option<Rat> {
    let (int, frac) = tok.split_once('.').unwrap_or((tok, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = BigInt::parse_bytes(format!("{int}{frac}").as_bytes(), 10)?;
    let den = BigInt::from(10).pow(frac.len() as u32);
    Some(BigRational::new(digits, den))
}

/// Nearest `f64` to `r` (for handing a model's point to the f32/f64 re-execution, which checks it anyway).
pub fn to_f64(r: &Rat) -> f64 {
    // Via a decimal string with 40 significant digits: correctly rounded parsing of that string is within
    // 1e-40 relative of the exact value, far below f64 resolution.
    let neg = r.is_negative();
    let num = r.numer().abs();
    let den = r.denom();
    if num.is_zero() {
        return 0.0;
    }
    // Scale so that the integer quotient has about 40 digits.
    let nd = num.to_str_radix(10).len() as i64;
    let dd = den.to_str_radix(10).len() as i64;
    let shift = 40 - (nd - dd);
    let q = if shift >= 0 {
        (num * BigInt::from(10).pow(shift as u32)) / den
    } else {
        num / (den * BigInt::from(10).pow((-shift) as u32))
    };
    let s = format!("{}e{}", q.to_str_radix(10), -shift);
    let v: f64 = s.parse().unwrap_or(f64::NAN);
    if neg { -v } else { v }
}

/// The sign of `r` as -1, 0 or 1.
pub fn sign(r: &Rat) -> i32 {
    match r.numer().sign() {
        Sign::Minus => -1,
        Sign::NoSign => 0,
        Sign::Plus => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_round_trip_exactly() {
        for v in [
            0.0f64,
            1.0,
            -1.0,
            0.5,
            0.1,
            -0.1,
            0.1f32 as f64,
            1e-45f32 as f64,
            f32::MAX as f64,
            f64::MIN_POSITIVE,
            3.0e30,
            -123.456,
        ] {
            let r = exact(v).unwrap();
            let s = smt_literal(&r);
            assert_eq!(parse_literal(&s), Some(r.clone()), "{v} -> {s}");
            assert_eq!(to_f64(&r), v, "{v}");
        }
        assert_eq!(smt_literal(&exact(0.5).unwrap()), "0.5");
        assert_eq!(smt_literal(&exact(-2.0).unwrap()), "(- 2.0)");
        assert_eq!(
            smt_literal(&exact(0.1f32 as f64).unwrap()),
            "0.100000001490116119384765625"
        );
        let third = BigRational::new(1.into(), 3.into());
        assert_eq!(smt_literal(&third), "(/ 1.0 3.0)");
        assert_eq!(parse_literal("(/ 1.0 3.0)"), Some(third));
        assert_eq!(parse_literal("(- (/ 1 4))"), exact(-0.25));
        assert_eq!(parse_literal("x"), None);
        assert_eq!(exact(f64::NAN), None);
    }
}
