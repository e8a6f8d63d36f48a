//! `nncert lipschitz` end to end on the bundled toy model: the printed report, the JSON file (method class,
//! global bounds, per-case certification, radii and sensitivity) and clear errors.

mod common;

use common::{nncert, text};

#[test]
fn toy_report_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("lip.json");
    let out = nncert(&[
        "lipschitz",
        "examples/toy/toy.onnx",
        "--property",
        "examples/toy/robust_narrow.vnnlib",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("GLOBAL L∞ LIPSCHITZ BOUND"), "{stdout}");
    assert!(stdout.contains("GLOBAL L2 LIPSCHITZ BOUND"), "{stdout}");
    assert!(
        stdout.contains("sound upper bound in real arithmetic"),
        "{stdout}"
    );
    assert!(stdout.contains("sensitivity (ISO/IEC 24029-2)"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["method_class"].as_str().unwrap().contains("incomplete"));
    let globals = v["global"].as_array().unwrap();
    assert_eq!(globals.len(), 2);
    for g in globals {
        let b = g["bound"].as_f64().unwrap();
        assert!(b > 0.0 && b <= g["product_bound"].as_f64().unwrap());
    }
    let case = &v["cases"][0];
    assert!(case["box_certified"].is_boolean());
    let r = &case["certified_radius"][0];
    assert!(r["local_within_box"].as_f64().unwrap() >= r["global"].as_f64().unwrap());
    let sens = &case["sensitivity"]["output_change_bound"];
    assert_eq!(sens.as_array().unwrap().len(), 3); // one row per output
    assert_eq!(sens[0].as_array().unwrap().len(), 5); // one column per input
}

#[test]
fn help_explains_the_numbers_and_errors_are_clear() {
    let help = text(&nncert(&["lipschitz", "--help"]).stdout);
    assert!(help.contains("for all inputs"), "{help}");
    assert!(help.contains("certified radius"), "{help}");
    let out = nncert(&["lipschitz", "no/such/model.onnx"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no/such/model.onnx"));
    let out = nncert(&["lipschitz", "examples/toy/toy.onnx", "--norm", "l7"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("l7"));
}
