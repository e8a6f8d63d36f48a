//! Evidence schema, hash chain, rendering of synthetic records (series charts, image counterexamples), gate,
//! JUnit and signatures.

use nncert_report::audit;
use nncert_report::evidence::*;
use nncert_report::gate;
use nncert_report::plan::{Plan, PropertyKind, Threat};
use nncert_report::render;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example_plan() -> Plan {
    Plan::load(&repo().join("examples/toy/plan.toml")).expect("the example plan is valid")
}

/// The committed schemas equal the generated ones; `NNCERT_UPDATE_SCHEMAS=1` rewrites them.
#[test]
fn committed_schemas_are_up_to_date() {
    for (file, text) in [
        ("schemas/evidence.schema.json", evidence_schema_json()),
        (
            "schemas/plan.schema.json",
            nncert_report::plan::plan_schema_json(),
        ),
    ] {
        let path = repo().join(file);
        if std::env::var_os("NNCERT_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &text).expect("write schema");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{file} is out of date: run NNCERT_UPDATE_SCHEMAS=1 cargo test -p nncert-report --test evidence"
        );
    }
}

fn record(id: &str, prop: &str, verdict: Verdict) -> EvidenceRecord {
    EvidenceRecord {
        check_id: id.into(),
        property_id: prop.into(),
        kind: PropertyKind::Stability,
        threats: vec![Threat::Evasion],
        description: "synthetic".into(),
        method: MethodInfo {
            family: MethodFamily::Formal,
            engine: "synthetic".into(),
            name: "PGD".into(),
            completeness: Completeness::Incomplete,
            soundness: Soundness::Unsound,
            determinism: Determinism::Deterministic,
        },
        budget: Budget {
            time_s: Some(1.0),
            samples: Some(100),
            seed: Some(7),
        },
        verdict,
        reason: "synthetic reason".into(),
        scope: ProofScope {
            holds_for: "a".into(),
            under: "b".into(),
            not_covered: "c".into(),
        },
        counterexample: None,
        figures: vec![Figure {
            name: "robust_accuracy".into(),
            value: 0.75,
            unit: None,
        }],
        series: vec![],
        acceptance: None,
        timing: Timing {
            started: "2026-01-01T00:00:00Z".into(),
            finished: "2026-01-01T00:00:01Z".into(),
            elapsed_s: 1.0,
        },
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Synthetic evidence as empirical and statistical engines will produce it: series of all three chart kinds and
/// an image-shaped counterexample.
fn synthetic() -> EvidenceFile {
    let plan = example_plan();
    let mut a = record(
        "stability-linf/p0/eps0.1",
        "stability-linf",
        Verdict::Proved,
    );
    a.series = vec![
        Series {
            name: "PGD-20".into(),
            kind: SeriesKind::RobustAccuracyVsEps,
            x_label: "ε (L∞)".into(),
            y_label: "robust accuracy".into(),
            points: vec![[0.0, 0.98], [0.01, 0.9], [0.03, 0.6], [0.1, 0.1]],
        },
        Series {
            name: "smoothing σ=0.25".into(),
            kind: SeriesKind::CertifiedAccuracyVsRadius,
            x_label: "radius (L2)".into(),
            y_label: "certified accuracy".into(),
            points: vec![[0.0, 0.9], [0.25, 0.7], [0.5, 0.4]],
        },
        Series {
            name: "gaussian noise".into(),
            kind: SeriesKind::CorruptionDrop,
            x_label: "severity".into(),
            y_label: "accuracy drop".into(),
            points: vec![[1.0, 0.01], [3.0, 0.05], [5.0, 0.2]],
        },
    ];
    let mut b = record(
        "stability-linf/p0/eps0.4",
        "stability-linf",
        Verdict::Counterexample,
    );
    b.counterexample = Some(CounterexampleData {
        input: (0..64).map(|i| i as f64 / 64.0).collect(),
        input_shape: vec![1, 1, 8, 8],
        reference: Some(vec![0.5; 64]),
        output: vec![0.1, 0.9],
        margin: -0.8,
    });
    let mut records = vec![a, b];
    let mut prev = audit::GENESIS.to_string();
    for r in &mut records {
        audit::seal(r, &prev);
        prev = r.hash.clone();
    }
    EvidenceFile {
        schema_version: SCHEMA_VERSION.into(),
        tool: Tool {
            name: "nncert".into(),
            version: "0.1.0".into(),
        },
        plan,
        audit: Audit {
            artifacts: vec![Artifact {
                role: "model".into(),
                path: "toy.onnx".into(),
                sha256: audit::sha256_hex(b"x"),
                bytes: 1,
            }],
            seeds: [("formal".to_string(), 0)].into_iter().collect(),
            machine: audit::machine(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: "2026-01-01T00:00:02Z".into(),
        },
        records,
        not_run: vec![NotRun {
            family: MethodFamily::Statistical,
            reason: "test".into(),
        }],
    }
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&evidence_schema_json()).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

#[test]
fn evidence_validates_against_schema_and_round_trips() {
    let ev = synthetic();
    let value = serde_json::to_value(&ev).expect("serialize");
    let v = validator();
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}");
    let back: EvidenceFile = serde_json::from_value(value).expect("round trip");
    assert_eq!(back, ev);
}

#[test]
fn schema_rejects_bad_evidence() {
    let v = validator();
    let mut value = serde_json::to_value(synthetic()).expect("serialize");
    value["records"][0]["verdict"] = "probably".into();
    assert!(!v.is_valid(&value), "an unknown verdict must be rejected");
    let mut value = serde_json::to_value(synthetic()).expect("serialize");
    value["records"][0]
        .as_object_mut()
        .expect("object")
        .remove("scope");
    assert!(
        !v.is_valid(&value),
        "a record without proof scope must be rejected"
    );
}

#[test]
fn hash_chain_detects_edits_and_reordering() {
    let ev = synthetic();
    assert!(audit::check_chain(&ev.records).is_ok());
    let mut edited = ev.records.clone();
    edited[0].reason.push('!');
    let err = audit::check_chain(&edited).expect_err("edit detected");
    assert!(err.contains("altered"), "{err}");
    let mut swapped = ev.records.clone();
    swapped.swap(0, 1);
    assert!(audit::check_chain(&swapped).is_err());
    let dropped = ev.records[1..].to_vec();
    assert!(audit::check_chain(&dropped).is_err());
}

#[test]
fn html_renders_a_chart_per_series_kind_and_image_counterexamples() {
    let ev = synthetic();
    let results = gate::evaluate(&ev.plan, &ev.records);
    let html = render::html(&ev, &results);
    for title in [
        "Robust accuracy vs perturbation budget ε",
        "Certified accuracy vs radius",
        "Accuracy drop under corruption",
    ] {
        assert!(
            html.contains(&format!("aria-label=\"{title}\"")),
            "missing chart {title}"
        );
    }
    assert_eq!(html.matches("class=\"chart\"").count(), 3);
    // The 8×8 counterexample is drawn as an image (64 pixels), next to its reference.
    assert!(html.contains("<figcaption>counterexample</figcaption>"));
    assert!(html.contains("<figcaption>reference</figcaption>"));
    // Self-contained: no external resources.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(html.contains("id=\"verdicts\""));
    let md = render::markdown(&ev, &results);
    assert!(
        md.contains("| 0.03 | 0.6 |"),
        "series rendered as table rows"
    );
}

#[test]
fn gate_applies_thresholds_and_junit_reports_failures() {
    let ev = synthetic();
    let results = gate::evaluate(&ev.plan, &ev.records);
    let linf = results
        .iter()
        .find(|g| g.property_id == "stability-linf")
        .expect("property present");
    // 1 of 2 proved, threshold 0.5 in the example plan.
    assert!(linf.passed && linf.proved == 1 && linf.total == 2);
    // Properties without records fail: nothing was shown.
    let l2 = results
        .iter()
        .find(|g| g.property_id == "stability-l2")
        .expect("property present");
    assert!(!l2.passed);
    let lines = gate::failure_lines(&results);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GATE FAILED stability-l2"))
    );
    let xml = gate::junit_xml(&ev.plan, &ev.records, &results);
    assert!(xml.contains("<testsuite name=\"stability-linf\""));
    assert!(xml.contains("no check of this property ran"));
}

#[test]
fn signatures_detect_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = synthetic();
    let results = gate::evaluate(&ev.plan, &ev.records);
    let d = dir.path();
    std::fs::write(
        d.join("evidence.json"),
        serde_json::to_string_pretty(&ev).expect("json"),
    )
    .expect("w");
    std::fs::write(d.join("report.html"), render::html(&ev, &results)).expect("w");
    std::fs::write(d.join("report.md"), render::markdown(&ev, &results)).expect("w");
    let (sk, pk) = audit::keygen().expect("keygen");
    std::fs::write(d.join("k"), sk).expect("w");
    std::fs::write(d.join("k.pub"), &pk).expect("w");
    let sig = audit::sign_dir(d, &d.join("k")).expect("sign");
    std::fs::write(d.join(audit::SIGNATURE_FILE), sig).expect("w");
    audit::verify_dir(d, &d.join("k.pub")).expect("intact report verifies");

    // Another key does not verify.
    let (_, other) = audit::keygen().expect("keygen");
    std::fs::write(d.join("other.pub"), other).expect("w");
    assert!(audit::verify_dir(d, &d.join("other.pub")).is_err());

    // One flipped byte in the HTML report.
    let html_path = d.join("report.html");
    let mut bytes = std::fs::read(&html_path).expect("r");
    bytes[100] ^= 1;
    std::fs::write(&html_path, &bytes).expect("w");
    let err = audit::verify_dir(d, &d.join("k.pub")).expect_err("tamper detected");
    assert!(err.to_string().contains("report.html changed"), "{err}");
}
