//! Mutation testing: thousands of deterministic mutants of real and hand-written VNN-LIB files
//! (truncations, byte flips, token deletions/swaps/duplications, inserted parentheses) must make
//! the parser return `Ok` or `Err`, never panic, and every `Ok` must satisfy the invariants that
//! the rest of nncert relies on.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Instant;

use nncert_spec::{Property, SpecError, parse_str, write_vnnlib};

/// splitmix64: a tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Byte ranges of rough tokens: parentheses and whitespace-separated runs.
fn tokens(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'(' || b == b')' {
            out.push((i, i + 1));
            i += 1;
        } else {
            let s = i;
            while i < text.len() && !text[i].is_ascii_whitespace() && !b"()".contains(&text[i]) {
                i += 1;
            }
            out.push((s, i));
        }
    }
    out
}

const INTERESTING: &[u8] = b"()();|\"-+.eE0123456789XY_ \n\t<=>*/\x00\xff";

/// One random mutation of `text`.
fn mutate(text: &[u8], toks: &[(usize, usize)], rng: &mut Rng) -> (Vec<u8>, &'static str) {
    let n = text.len().max(1);
    let mut t = text.to_vec();
    match rng.below(8) {
        0 => {
            t.truncate(rng.below(n));
            (t, "truncate")
        }
        1 => {
            for _ in 0..1 + rng.below(3) {
                if !t.is_empty() {
                    let i = rng.below(t.len());
                    t[i] = if rng.below(2) == 0 {
                        INTERESTING[rng.below(INTERESTING.len())]
                    } else {
                        rng.next() as u8
                    };
                }
            }
            (t, "byte flip")
        }
        2 if !toks.is_empty() => {
            let (s, e) = toks[rng.below(toks.len())];
            t.drain(s..e);
            (t, "token deletion")
        }
        3 if toks.len() >= 2 => {
            let (a, b) = (toks[rng.below(toks.len())], toks[rng.below(toks.len())]);
            let (a, b) = if a.0 <= b.0 { (a, b) } else { (b, a) };
            if a.1 > b.0 {
                return (t, "token swap (same)");
            }
            let mut out = Vec::with_capacity(t.len());
            out.extend_from_slice(&text[..a.0]);
            out.extend_from_slice(&text[b.0..b.1]);
            out.extend_from_slice(&text[a.1..b.0]);
            out.extend_from_slice(&text[a.0..a.1]);
            out.extend_from_slice(&text[b.1..]);
            (out, "token swap")
        }
        4 if !toks.is_empty() => {
            let (s, e) = toks[rng.below(toks.len())];
            let copy = text[s..e].to_vec();
            let at = if rng.below(2) == 0 { e } else { s };
            t.splice(at..at, copy.into_iter().chain(std::iter::once(b' ')));
            (t, "token duplication")
        }
        5 => {
            let at = rng.below(n).min(t.len());
            let p: &[u8] = match rng.below(4) {
                0 => b"(",
                1 => b")",
                2 => b"()",
                _ => b"(or ",
            };
            t.splice(at..at, p.iter().copied());
            (t, "parenthesis insertion")
        }
        6 if !toks.is_empty() => {
            // Replace a token by another token of the file (operator/variable/number confusion).
            let (s, e) = toks[rng.below(toks.len())];
            let (s2, e2) = toks[rng.below(toks.len())];
            let other = text[s2..e2].to_vec();
            t.splice(s..e, other);
            (t, "token replacement")
        }
        _ => {
            // Several mutations at once.
            let (a, _) = mutate(text, toks, rng);
            let ta = tokens(&a);
            let (b, _) = mutate(&a, &ta, rng);
            (b, "double mutation")
        }
    }
}

/// The invariants of a parsed property.
fn check_invariants(p: &Property) -> Result<(), String> {
    if p.num_inputs == 0 || p.num_outputs == 0 {
        return Err("zero inputs or outputs".into());
    }
    for (k, c) in p.cases.iter().enumerate() {
        if c.input.lower.len() != p.num_inputs || c.input.upper.len() != p.num_inputs {
            return Err(format!("case {k}: box of the wrong size"));
        }
        for (l, u) in c.input.lower.iter().zip(&c.input.upper) {
            if !(l.is_finite() && u.is_finite() && l <= u) {
                return Err(format!("case {k}: bad bounds [{l}, {u}]"));
            }
        }
        for d in &c.output.disjuncts {
            for lc in &d.constraints {
                if lc.coeffs.len() != p.num_outputs
                    || !lc.rhs.is_finite()
                    || lc.coeffs.iter().any(|a| !a.is_finite())
                {
                    return Err(format!("case {k}: bad constraint {lc:?}"));
                }
            }
        }
    }
    Ok(())
}

fn seeds() -> Vec<(String, String, usize)> {
    // (name, text, number of mutants)
    let mut out = vec![
        (
            "inline-acas-like".to_string(),
            "; c\n(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n\
             (declare-const Y_1 Real)\n(assert (<= X_0 0.5))\n(assert (>= X_0 -0.5))\n\
             (assert (or (and (<= X_1 1e-3) (>= X_1 -1E+2) (<= Y_0 Y_1)) (and (>= X_1 .5) \
             (<= X_1 5.) (>= (+ (* 2 Y_0) (- Y_1)) (/ 3 4)))))\n(assert (= Y_1 |Y_1|))\n"
                .to_string(),
            20_000,
        ),
        (
            "inline-nested".to_string(),
            "(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n\
             (assert (and (<= 0 X_0 1) (or (< Y_0 1) (and (> Y_1 2) (or (= Y_0 Y_1) true)))))\n\
             (check-sat)\n"
                .to_string(),
            20_000,
        ),
    ];
    let Some(dir) = common::benchmarks_dir() else {
        return out;
    };
    let mut add = |rel: &str, count: usize| {
        let path: PathBuf = dir.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => out.push((rel.to_string(), text, count)),
            Err(e) => panic!("{}: {e}", path.display()),
        }
    };
    for f in [
        "test/test_nano.vnnlib",
        "test/test_tiny.vnnlib",
        "test/test_small.vnnlib",
        "test/test_prop.vnnlib",
    ] {
        add(f, 8000);
    }
    for k in 1..=10 {
        add(&format!("acasxu/vnnlib/prop_{k}.vnnlib"), 3000);
    }
    add("collins_rul_cnn/vnnlib/if_then_5levels_w20.vnnlib", 600);
    add("mnist_fc/vnnlib/prop_0_0.03.vnnlib", 300);
    add(
        "oval21/vnnlib/cifar_base_kw-img8194-eps0.018300653594771243.vnnlib",
        100,
    );
    out
}

#[test]
fn mutants_never_panic() {
    let start = Instant::now();
    let mut rng = Rng(0x5EED_0FAB_1E00);
    let (mut ok, mut err, mut total) = (0usize, 0usize, 0usize);
    for (name, text, count) in seeds() {
        let original = parse_str(&text, &name).expect("the seeds parse");
        check_invariants(&original).unwrap();
        let bytes = text.as_bytes();
        let toks = tokens(bytes);
        for k in 0..count {
            let (mutant, kind) = mutate(bytes, &toks, &mut rng);
            let mutant = String::from_utf8_lossy(&mutant).into_owned();
            let result = catch_unwind(AssertUnwindSafe(|| parse_str(&mutant, "mutant")));
            total += 1;
            match result {
                Err(_) => {
                    let path = std::env::temp_dir().join("nncert-spec-panicking-mutant.vnnlib");
                    let _ = std::fs::write(&path, &mutant);
                    panic!(
                        "parse_str panicked on mutant {k} ({kind}) of {name}; the mutant is \
                         saved in {}",
                        path.display()
                    );
                }
                Ok(Ok(p)) => {
                    ok += 1;
                    if let Err(why) = check_invariants(&p) {
                        panic!("mutant {k} ({kind}) of {name} parsed to a bad property: {why}");
                    }
                    // What was parsed can be written and read back unchanged.
                    match parse_str(&write_vnnlib(&p), "written") {
                        Ok(q) if q == p => {}
                        Ok(_) => panic!("mutant {k} ({kind}) of {name}: round trip differs"),
                        Err(e) => panic!("mutant {k} ({kind}) of {name}: round trip fails: {e}"),
                    }
                }
                Ok(Err(e)) => {
                    err += 1;
                    let s = e.to_string();
                    assert!(
                        s.starts_with("mutant:") && s.len() > 12,
                        "mutant {k} ({kind}) of {name}: odd message {s:?}"
                    );
                    if let SpecError::Parse { line, col, .. } = e {
                        assert!(line >= 1 && col >= 1);
                    }
                }
            }
        }
    }
    eprintln!(
        "{total} mutants: {ok} parsed, {err} rejected, in {:.2?}",
        start.elapsed()
    );
    // Both outcomes must occur, or the mutants say nothing.
    assert!(
        ok > total / 20 && err > total / 4,
        "ok {ok}, err {err} of {total}"
    );
}
