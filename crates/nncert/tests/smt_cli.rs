//! `nncert verify --method smt` and `nncert export --smtlib` on the bundled toy example (known answers:
//! robust_wide is sat, robust_narrow unsat; scripts/make_examples.py).

mod common;

use common::{nncert, text};

#[test]
fn smt_method_decides_the_toy_properties_and_prints_its_method_class() {
    let wide = nncert(&[
        "verify",
        "examples/toy/toy.onnx",
        "examples/toy/robust_wide.vnnlib",
        "--method",
        "smt",
        "--timeout",
        "20",
    ]);
    assert_eq!(wide.status.code(), Some(1), "{}", text(&wide.stderr));
    assert!(text(&wide.stdout).starts_with("sat\n"));
    assert!(text(&wide.stderr).contains("exact rational arithmetic"));
    let narrow = nncert(&[
        "verify",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--method",
        "smt",
        "--timeout",
        "20",
    ]);
    assert_eq!(narrow.status.code(), Some(0), "{}", text(&narrow.stderr));
    assert_eq!(text(&narrow.stdout), "unsat\n");
    assert!(
        text(&narrow.stderr).contains("proves the real-valued network"),
        "{}",
        text(&narrow.stderr)
    );
    let milp = nncert(&[
        "verify",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--method",
        "milp",
    ]);
    // The MILP engine (HiGHS) decides it too, and says what kind of proof it gives.
    assert_eq!(milp.status.code(), Some(0), "{}", text(&milp.stderr));
    assert_eq!(text(&milp.stdout), "unsat\n");
    assert!(
        text(&milp.stderr).contains("HiGHS"),
        "{}",
        text(&milp.stderr)
    );
}

#[test]
fn export_writes_an_smtlib_file_with_one_block_per_case() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("narrow.smt2");
    let r = nncert(&[
        "export",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--smtlib",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let smt = std::fs::read_to_string(&out).unwrap();
    assert!(smt.contains("(set-logic QF_LRA)"));
    assert!(smt.contains("\n(push 1)\n") && smt.contains("\n(check-sat)\n(pop 1)\n"));
    assert!(smt.contains("(declare-fun X_0 () Real)") && smt.contains("(declare-fun Y_0 () Real)"));
    // Nothing to export is an error (exit 3), as is --milp in this build.
    let none = nncert(&[
        "export",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
    ]);
    assert_eq!(none.status.code(), Some(3));
    let milp = nncert(&[
        "export",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--milp",
        dir.path().join("x.lp").to_str().unwrap(),
    ]);
    assert_eq!(milp.status.code(), Some(0), "{}", text(&milp.stderr));
    let lp: String = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".lp"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(lp.contains("min") && lp.contains("margin"), "{lp}");
}

/// `verify --json` writes an evidence record with the engine's method class, the verdict and the hashes of
/// the inputs; `--leaves` is refused with another method, accepted (and harmless) with branch-and-bound.
#[test]
fn verify_json_records_the_method_class_of_each_engine() {
    let dir = tempfile::tempdir().unwrap();
    for (method, soundness, verdict, code) in [
        ("bab", "sound_float", "unsat", 0),
        ("milp", "sound_real", "unsat", 0),
        ("smt", "sound_real", "unsat", 0),
    ] {
        let path = dir.path().join(format!("{method}.json"));
        let r = nncert(&[
            "verify",
            "examples/toy/toy.onnx",
            "examples/toy/robust_narrow.vnnlib",
            "--method",
            method,
            "--json",
            path.to_str().unwrap(),
        ]);
        assert_eq!(r.status.code(), Some(code), "{method}: {}", text(&r.stderr));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["schema"], "nncert.verify/1");
        assert_eq!(v["method"]["engine"], method);
        assert_eq!(v["method"]["class"]["completeness"], "complete", "{method}");
        assert_eq!(v["method"]["class"]["soundness"], soundness, "{method}");
        assert_eq!(v["result"]["verdict"], verdict);
        assert_eq!(v["model"]["sha256"].as_str().unwrap().len(), 64);
        assert!(v["counterexample"].is_null());
    }
    let path = dir.path().join("wide.json");
    let r = nncert(&[
        "verify",
        "examples/toy/toy.onnx",
        "examples/toy/robust_wide.vnnlib",
        "--leaves",
        "0",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", text(&r.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["result"]["verdict"], "sat");
    let input = v["counterexample"]["input"].as_array().unwrap();
    assert_eq!(input.len(), 5);
    assert!(v["counterexample"]["margin_f64"].as_f64().unwrap() <= 0.0);
    let refused = nncert(&[
        "verify",
        "examples/toy/toy.onnx",
        "examples/toy/robust_wide.vnnlib",
        "--method",
        "smt",
        "--leaves",
        "0",
    ]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(text(&refused.stderr).contains("--leaves applies to --method bab"));
}
