//! Fuzz target for the VNN-LIB parser: any input must give `Ok` or `Err` without panicking, and
//! a parsed property must be well-formed and survive writing and reading back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nncert_spec::{parse_str, write_vnnlib};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(p) = parse_str(&text, "fuzz.vnnlib") else {
        return;
    };
    assert!(p.num_inputs > 0 && p.num_outputs > 0);
    for case in &p.cases {
        assert_eq!(case.input.dim(), p.num_inputs);
        assert_eq!(case.input.upper.len(), p.num_inputs);
        for (l, u) in case.input.lower.iter().zip(&case.input.upper) {
            assert!(l.is_finite() && u.is_finite() && l <= u);
        }
        for conj in &case.output.disjuncts {
            for c in &conj.constraints {
                assert_eq!(c.coeffs.len(), p.num_outputs);
                assert!(c.rhs.is_finite() && c.coeffs.iter().all(|a| a.is_finite()));
            }
        }
    }
    match parse_str(&write_vnnlib(&p), "written.vnnlib") {
        Ok(q) => assert_eq!(q, p, "write/parse round trip changed the property"),
        // Writing several cases as (or (and box (or ...)) ...) can exceed the DNF size limit
        // that the original formulation stayed under; anything else is a bug.
        Err(e) if e.to_string().contains("too large") => {}
        Err(e) => panic!("the written property does not parse: {e}"),
    }
});
