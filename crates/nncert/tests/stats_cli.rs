//! End-to-end tests of `nncert smooth` and `nncert estimate` on the bundled toy example.

use serde_json::Value;
use std::path::Path;

mod common;

use common::{nncert, repo, text};

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn estimate_finds_a_positive_failure_probability_on_the_wide_property() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("e.json");
    let out = nncert(&[
        "estimate",
        "examples/toy/toy.onnx",
        "examples/toy/robust_wide.vnnlib",
        "--samples",
        "50000",
        "--seed",
        "3",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v = json(&out_path);
    let est = &v["cases"][0]["estimate"];
    let failures = est["failures"].as_u64().unwrap();
    assert!(failures > 0, "{est}");
    let (lo, hi) = (
        est["interval"][0].as_f64().unwrap(),
        est["interval"][1].as_f64().unwrap(),
    );
    assert!(lo > 0.0 && lo < hi && hi < 0.05, "{est}");
    assert!(
        v["cases"][0]["guarantee"]
            .as_str()
            .unwrap()
            .contains("with probability at least 0.95")
    );
    // The reported failing input is a real counterexample of the property.
    let x: Vec<f64> = est["example"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let prop = nncert_spec::parse_file(&repo().join("examples/toy/robust_wide.vnnlib")).unwrap();
    assert!(prop.cases[0].input.contains(&x, 1e-6), "{x:?}");
    // Multilevel splitting agrees with Monte Carlo within their intervals.
    let ams_path = dir.path().join("a.json");
    let out = nncert(&[
        "estimate",
        "examples/toy/toy.onnx",
        "examples/toy/robust_wide.vnnlib",
        "--method",
        "ams",
        "--particles",
        "1000",
        "--out",
        ams_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let a = json(&ams_path);
    let ae = &a["cases"][0]["estimate"];
    assert_eq!(ae["outcome"], "reached", "{ae}");
    let (alo, ahi) = (
        ae["interval"][0].as_f64().unwrap(),
        ae["interval"][1].as_f64().unwrap(),
    );
    assert!(
        alo <= hi && lo <= ahi,
        "AMS [{alo}, {ahi}] vs MC [{lo}, {hi}]"
    );
}

#[test]
fn estimate_shows_the_narrow_property_below_the_target() {
    // The narrow property is proved, so no failure can be sampled and the planned size shows p < target.
    let out = nncert(&[
        "estimate",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--target-p",
        "1e-3",
        "--distribution",
        "gaussian",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("0 failures in 2995 samples"), "{s}");
    assert!(s.contains("p < 1e-3 shown"), "{s}");
}

#[test]
fn plan_only_prints_the_sample_size() {
    let out = nncert(&[
        "estimate",
        "--plan-only",
        "--target-p",
        "1e-4",
        "--confidence",
        "0.95",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "29956");
    assert!(
        text(&out.stderr).contains("up to 1 failures: 47437 samples"),
        "{}",
        text(&out.stderr)
    );
    let out = nncert(&[
        "estimate",
        "--plan-only",
        "--target-p",
        "1e-6",
        "--confidence",
        "0.99",
    ]);
    // ln(0.01) / ln(1 - 1e-6) = 4605168.3...
    assert_eq!(text(&out.stdout).trim(), "4605168");
}

#[test]
fn smooth_certifies_the_toy_points() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("s.json");
    let out = nncert(&[
        "smooth",
        "examples/toy/toy.onnx",
        "--data",
        "examples/toy/points.npy",
        "--labels",
        "examples/toy/labels.npy",
        "--sigma",
        "0.25",
        "--n",
        "2000",
        "--max-points",
        "40",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v = json(&out_path);
    let curve: Vec<f64> = v["curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["certified_accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(curve.len(), 5);
    // Labels are the model's own predictions: most points are certified at radius 0, fewer at larger radii.
    assert!(curve[0] > 0.7, "{curve:?}");
    assert!(curve.windows(2).all(|w| w[0] >= w[1]), "{curve:?}");
    assert!(curve[4] < curve[0], "{curve:?}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 40);
    for r in results {
        // sigma · Φ⁻¹(p_lower) is the radius when certified; abstentions have radius 0.
        let radius = r["radius"].as_f64().unwrap();
        if r["prediction"].is_null() {
            assert_eq!(radius, 0.0);
        } else {
            assert!(r["p_lower"].as_f64().unwrap() > 0.5 && radius > 0.0, "{r}");
        }
    }
    assert!(v["guarantee"].as_str().unwrap().contains("at least 0.999"));
}

#[test]
fn statistical_commands_reject_bad_input() {
    let cases: &[&[&str]] = &[
        &[
            "smooth",
            "examples/toy/toy.onnx",
            "--data",
            "examples/toy/points.npy",
            "--labels",
            "examples/toy/points.npy",
            "--sigma",
            "0.25",
        ],
        &[
            "smooth",
            "examples/toy/toy.onnx",
            "--data",
            "examples/toy/points.npy",
            "--labels",
            "examples/toy/labels.npy",
            "--sigma",
            "-1",
        ],
        &[
            "smooth",
            "examples/toy/toy.onnx",
            "--data",
            "examples/toy/labels.npy",
            "--labels",
            "examples/toy/labels.npy",
            "--sigma",
            "0.25",
        ],
        &["estimate", "examples/toy/toy.onnx"],
        &[
            "estimate",
            "examples/toy/toy.onnx",
            "examples/toy/robust_wide.vnnlib",
            "--confidence",
            "1.5",
        ],
        &[
            "estimate",
            "examples/toy/toy.onnx",
            "examples/toy/robust_wide.vnnlib",
            "--samples",
            "0",
        ],
        &["estimate", "--plan-only", "--target-p", "0"],
    ];
    for args in cases {
        let out = nncert(args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn splitting_on_a_proved_property_gives_no_estimate_but_says_so() {
    // robust_narrow is proved (no failure exists in the box), so splitting cannot reach the failure region: it
    // must not invent a probability, only report an approximate upper estimate.
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("a.json");
    let out = nncert(&[
        "estimate",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--method",
        "ams",
        "--particles",
        "200",
        "--mcmc-steps",
        "5",
        "--target-p",
        "1e-8",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v = json(&out_path);
    let est = &v["cases"][0]["estimate"];
    let outcome = est["outcome"].as_str().unwrap();
    assert!(outcome == "below_minimum" || outcome == "stalled", "{est}");
    assert!(est["level_probability"].as_f64().unwrap() < 1e-8, "{est}");
    let s = text(&out.stdout);
    assert!(s.contains("below"), "{s}");
}

#[test]
fn smooth_predict_reports_accuracy_with_abstention() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("p.json");
    let out = nncert(&[
        "smooth",
        "examples/toy/toy.onnx",
        "--data",
        "examples/toy/points.npy",
        "--labels",
        "examples/toy/labels.npy",
        "--sigma",
        "0.12",
        "--n",
        "1000",
        "--predict",
        "--max-points",
        "50",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v = json(&out_path);
    let (acc, abst, wrong) = (
        v["accuracy"].as_f64().unwrap(),
        v["abstained"].as_u64().unwrap(),
        v["wrong"].as_u64().unwrap(),
    );
    // Labels are the toy's own predictions: small noise keeps most decisions, abstaining near the boundaries.
    assert!(acc > 0.8, "{v}");
    assert_eq!((acc * 50.0).round() as u64 + abst + wrong, 50);
    for r in v["results"].as_array().unwrap() {
        if !r["prediction"].is_null() {
            assert!(r["p_value"].as_f64().unwrap() <= 0.001, "{r}");
        }
    }
}
