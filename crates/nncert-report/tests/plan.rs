//! Plan parsing and validation: the rules that keep a plan honest for a technical file.

use nncert_report::evidence::MethodFamily;
use nncert_report::plan::{Criticality, Plan, default_families};
use std::path::Path;

fn example_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/toy/plan.toml"),
    )
    .expect("example plan")
}

fn parse(text: &str) -> Result<Plan, String> {
    Plan::parse(text, Path::new("p.toml")).map_err(|e| e.to_string())
}

#[test]
fn example_plan_parses_with_tier_defaults() {
    let plan = parse(&example_text()).expect("valid");
    assert_eq!(plan.system.criticality, Criticality::High);
    assert_eq!(plan.properties.len(), 7);
    let (fams, why) = plan.families();
    assert_eq!(fams, vec![MethodFamily::Formal, MethodFamily::Empirical]);
    assert!(why.contains("formal method is required"), "{why}");
}

#[test]
fn tiers_select_formal_methods_only_where_required() {
    assert!(
        !default_families(Criticality::Low)
            .0
            .contains(&MethodFamily::Formal)
    );
    assert!(
        !default_families(Criticality::Medium)
            .0
            .contains(&MethodFamily::Formal)
    );
    assert!(
        default_families(Criticality::High)
            .0
            .contains(&MethodFamily::Formal)
    );
    assert_eq!(default_families(Criticality::Critical).0.len(), 3);
}

#[test]
fn every_threat_must_be_addressed_and_exclusions_need_a_reason() {
    let t = example_text().replace(
        "[threats.confidentiality]\nin_scope = false\nreason = \"the model runs on-device without a query interface\"",
        "",
    );
    let err = parse(&t).expect_err("missing threat");
    assert!(err.contains("`confidentiality` is not addressed"), "{err}");
    // Unknown threat names are rejected, not ignored.
    let t = example_text().replace("[threats.confidentiality]", "[threats.unused_table]");
    let err = parse(&t).expect_err("unknown threat");
    assert!(err.contains("unknown variant `unused_table`"), "{err}");
    let t = example_text().replace(
        "reason = \"the model runs on-device without a query interface\"",
        "",
    );
    let err = parse(&t).expect_err("no reason");
    assert!(err.contains("out of scope without a reason"), "{err}");
    // A property may not claim a threat the plan excludes.
    let t = example_text().replace(
        "threats = [\"distribution_shift\"]",
        "threats = [\"poisoning\"]",
    );
    let err = parse(&t).expect_err("excluded threat");
    assert!(err.contains("marks out of scope"), "{err}");
}

#[test]
fn method_overrides_need_a_rationale_and_high_tiers_need_formal() {
    let t = example_text().replace("# formal = true", "formal = false");
    let err = parse(&t).expect_err("formal off at high");
    assert!(err.contains("requires a formal method"), "{err}");
    let t = example_text()
        .replace("criticality = \"high\"", "criticality = \"low\"")
        .replace("# formal = true", "formal = true")
        .replace(
            "rationale = \"the tier's default: proofs on the reference point, attacks on it as a cross-check\"",
            "",
        );
    let err = parse(&t).expect_err("override without rationale");
    assert!(err.contains("add rationale"), "{err}");
    let t = t.replace(
        "formal = true",
        "formal = true\nrationale = \"proofs are cheap on this model\"",
    );
    let plan = parse(&t).expect("override with rationale");
    let (fams, why) = plan.families();
    assert_eq!(fams, vec![MethodFamily::Formal, MethodFamily::Empirical]);
    assert!(why.starts_with("override"), "{why}");
}

#[test]
fn property_errors_name_the_property() {
    let t = example_text().replace("max_output_change = 0.5", "");
    let err = parse(&t).expect_err("sensitivity without bound");
    assert!(err.contains("property `sensitivity`"), "{err}");
    let t = example_text().replace("id = \"reach-wide\"", "id = \"reach-narrow\"");
    let err = parse(&t).expect_err("duplicate id");
    assert!(err.contains("used twice"), "{err}");
    let t = example_text().replace("labels = [0]", "labels = [0, 1]");
    let err = parse(&t).expect_err("label count");
    assert!(
        err.contains("data.labels has 2 entries for 1 points"),
        "{err}"
    );
    let err = parse("[system]\nname = 1").expect_err("syntax");
    assert!(err.starts_with("p.toml:"), "{err}");
}

fn digits_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits/plan.toml"),
    )
    .expect("digits plan")
}

#[test]
fn data_files_thresholds_and_engine_budgets_are_validated() {
    let plan = parse(&digits_text()).expect("digits plan is valid");
    assert_eq!(plan.data.file.as_deref(), Some("x_test.npy"));
    assert_eq!(plan.budgets.test_points, Some(100));
    for (from, to, msg) in [
        (
            "labels_file = \"y_test.npy\"",
            "labels_file = \"y_test.npy\"\npoints = [[0.0]]",
            "not both",
        ),
        (
            "min_robust_accuracy = 0.3",
            "min_robust_accuracy = 1.5",
            "min_robust_accuracy must be in [0, 1]",
        ),
        (
            "alpha = 0.001",
            "alpha = 0.0",
            "budgets.alpha must be in (0, 1)",
        ),
        (
            "smoothing_sigma = 0.25",
            "smoothing_sigma = -1",
            "smoothing_sigma must be a positive",
        ),
        (
            "smoothing_n = 10000",
            "smoothing_n = 0",
            "smoothing_n and smoothing_n0",
        ),
        ("attack_steps = 50", "attack_steps = 0", "attack_steps"),
        (
            "test_points = 100",
            "test_points = 0",
            "test_points must be at least 1",
        ),
        ("range = [0.0, 1.0]", "range = [1.0, 0.0]", "data.range"),
        (
            "points = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
            "",
            "formal checks need points",
        ),
        ("corruptions = [", "corruptions_unused = [", "unknown field"),
    ] {
        let t = digits_text();
        assert!(t.contains(from), "edit `{from}` applies");
        let err = parse(&t.replace(from, to)).expect_err(msg);
        assert!(err.contains(msg), "{msg}: {err}");
    }
    // A corruption property needs the domain's corruptions.
    let t = digits_text().replace(
        "corruptions = [\"gaussian_noise\", \"impulse_noise\", \"gaussian_blur\", \"brightness\", \"contrast\"]",
        "",
    );
    let err = parse(&t).expect_err("no corruptions");
    assert!(err.contains("needs domain.corruptions"), "{err}");
    // Preprocessing without a file is refused rather than ignored.
    let err = parse(&example_text().replace("labels = [0]", "labels = [0]\nscale = 0.5"))
        .expect_err("scale without file");
    assert!(err.contains("describe data.file"), "{err}");
}
