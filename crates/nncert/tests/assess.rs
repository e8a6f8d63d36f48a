//! `nncert assess` end to end on examples/toy: known answers per property kind, schema validity, resume after an
//! interruption, gate exit codes and JUnit, signing and tamper detection.

use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;

use common::{nncert, repo, text};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The example plan copied into `dir` with its file paths made absolute, `edit` applied to its text.
fn plan_in(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let toy = repo().join("examples/toy");
    let mut t = std::fs::read_to_string(toy.join("plan.toml")).expect("read plan");
    for f in ["toy.onnx", "robust_narrow.vnnlib", "robust_wide.vnnlib"] {
        t = t.replace(&format!("\"{f}\""), &format!("\"{}\"", s(&toy.join(f))));
    }
    let p = dir.join("plan.toml");
    std::fs::write(&p, edit(t)).expect("write plan");
    p
}

fn evidence(dir: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join("evidence.json")).expect("evidence.json"),
    )
    .expect("evidence is JSON")
}

fn verdict_of(ev: &Value, check: &str) -> String {
    ev["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["check_id"] == check)
        .unwrap_or_else(|| panic!("no record {check}"))["verdict"]
        .as_str()
        .expect("verdict")
        .to_string()
}

#[test]
fn example_plan_gives_the_known_answers_and_valid_evidence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let junit = dir.path().join("junit.xml");
    let o = nncert(&[
        "assess",
        s(&repo().join("examples/toy/plan.toml")),
        "--out",
        s(&out),
        "--gate",
        "--junit",
        s(&junit),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let ev = evidence(&out);
    // Known answers from scripts/make_examples.py.
    assert_eq!(verdict_of(&ev, "reach-narrow"), "proved");
    assert_eq!(verdict_of(&ev, "reach-wide"), "counterexample");
    assert_eq!(verdict_of(&ev, "stability-linf/p0/eps0.03125"), "proved");
    assert_eq!(
        verdict_of(&ev, "stability-linf/p0/eps0.379688"),
        "counterexample"
    );
    // The L∞ box of the wide property is the same region as robust_wide.vnnlib (±0.379688, within the domain).
    assert_eq!(verdict_of(&ev, "stability-l2/p0/eps0.03125"), "proved");
    assert_eq!(verdict_of(&ev, "stability-semantic/p0/semantic"), "proved");
    assert_eq!(verdict_of(&ev, "sensitivity/p0/eps0.01"), "proved");
    // X_4 over [-2, 2] changes the class (found by the falsifier, re-checked).
    assert_eq!(verdict_of(&ev, "relevance-x4/p0"), "counterexample");
    let kinds: std::collections::BTreeSet<&str> = ev["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds.len(), 4, "all four property kinds: {kinds:?}");
    // Every counterexample is really one: its recorded margin is non-positive.
    for r in ev["records"].as_array().expect("records") {
        if r["verdict"] == "counterexample" {
            assert!(r["counterexample"]["margin"].as_f64().expect("margin") <= 0.0);
        }
    }
    // Valid against the committed schema.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/evidence.schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = v.iter_errors(&ev).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // Audit trail: plan, model and both property files hashed.
    let roles: Vec<&str> = ev["audit"]["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "property").count(), 2);
    assert!(roles.contains(&"plan") && roles.contains(&"model") && roles.contains(&"data"));
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("id=\"verdicts\"") && html.contains("<svg"));
    assert!(html.contains("Certified accuracy vs radius"));
    let md = std::fs::read_to_string(out.join("report.md")).expect("md");
    assert!(md.contains("| `reach-wide` | reachability |"));
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("<testsuite name=\"reach-narrow\""));
}

/// Records without what legitimately changes between runs (times, and the hashes that cover them).
fn stable_records(ev: &Value) -> Vec<Value> {
    ev["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().expect("object");
            for k in ["timing", "hash", "prev_hash"] {
                o.remove(k);
            }
            r
        })
        .collect()
}

#[test]
fn an_interrupted_assessment_resumes_with_the_same_evidence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan_in(dir.path(), |t| t);
    let out = dir.path().join("out");
    let o = nncert(&["assess", s(&plan), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let full = evidence(&out);

    // Simulate a crash after 3 finished checks: the state file holds its header and 3 records, no outputs yet.
    let state = out.join("state.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&state)
        .expect("state")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        lines.len(),
        13,
        "header + 10 formal and 2 empirical records"
    );
    std::fs::write(&state, lines[..4].join("\n") + "\n").expect("truncate");
    for f in ["evidence.json", "report.html", "report.md"] {
        std::fs::remove_file(out.join(f)).expect("remove");
    }
    let o = nncert(&["assess", s(&plan), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("resuming: 3 finished checks"), "{err}");
    assert_eq!(err.matches("already done").count(), 3, "{err}");
    let resumed = evidence(&out);
    assert_eq!(stable_records(&resumed), stable_records(&full));
    assert_eq!(resumed["audit"]["started"], full["audit"]["started"]);

    // A torn last line (cut mid-record) loses only that record.
    let text_now = std::fs::read_to_string(&state).expect("state");
    std::fs::write(&state, &text_now[..text_now.len() - 40]).expect("tear");
    let o = nncert(&["assess", s(&plan), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("ignoring an incomplete last record"));
    assert_eq!(stable_records(&evidence(&out)), stable_records(&full));

    // State of another plan is refused, not mixed in.
    let plan2 = plan_in(dir.path(), |t| t.replace("seed = 0", "seed = 1"));
    let o = nncert(&["assess", s(&plan2), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("different plan or model"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn gate_fails_with_code_4_and_one_line_per_failed_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    // reach-wide must now be proved: it has a counterexample, so the gate fails.
    let plan = plan_in(dir.path(), |t| {
        t.replace("vnnlib = \"", "min_proved_fraction = 1.0\nvnnlib = \"")
            .replace(
                &format!("{}\"\nmin_proved_fraction = 0.0", "robust_wide.vnnlib"),
                "robust_wide.vnnlib\"",
            )
    });
    let t = std::fs::read_to_string(&plan).expect("plan");
    assert!(t.contains("robust_wide.vnnlib\"\n\n"), "edit applied:\n{t}");
    let junit = dir.path().join("j.xml");
    let out = dir.path().join("out");
    let o = nncert(&[
        "assess",
        s(&plan),
        "--out",
        s(&out),
        "--gate",
        "--junit",
        s(&junit),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("GATE FAILED reach-wide: 0/1 formal checks proved"),
        "{stdout}"
    );
    assert!(stdout.contains("  reach-wide: counterexample:"), "{stdout}");
    assert!(!stdout.contains("GATE FAILED reach-narrow"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("<failure"), "{xml}");
    // Without --gate the same run reports but exits 0.
    let o = nncert(&["assess", s(&plan), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn bad_plans_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan_in(dir.path(), |t| {
        t.replace("[threats.poisoning]", "[threats.poisoningx]")
    });
    let o = nncert(&["assess", s(&plan), "--out", s(&dir.path().join("o"))]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o.stderr).contains("plan.toml"), "{}", text(&o.stderr));
    let plan = plan_in(dir.path(), |t| {
        t.replace("# formal = true", "formal = false")
    });
    let o = nncert(&["assess", s(&plan), "--out", s(&dir.path().join("o"))]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("requires a formal method"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn signed_reports_detect_a_flipped_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan_in(dir.path(), |t| t);
    let out = dir.path().join("out");
    assert_eq!(
        nncert(&["assess", s(&plan), "--out", s(&out)])
            .status
            .code(),
        Some(0)
    );
    let key = dir.path().join("key");
    let o = nncert(&["keygen", "--out", s(&key)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pubkey = dir.path().join("key.pub");
    let o = nncert(&["sign", s(&out), "--key", s(&key)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = nncert(&["verify-report", s(&out), "--pubkey", s(&pubkey)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(text(&o.stdout).starts_with("OK"));
    for file in ["evidence.json", "report.html"] {
        let p = out.join(file);
        let orig = std::fs::read(&p).expect("read");
        let mut bytes = orig.clone();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        std::fs::write(&p, &bytes).expect("write");
        let o = nncert(&["verify-report", s(&out), "--pubkey", s(&pubkey)]);
        assert_eq!(o.status.code(), Some(5), "{file}: {}", text(&o.stdout));
        assert!(
            text(&o.stdout).contains(&format!("{file} changed after signing")),
            "{}",
            text(&o.stdout)
        );
        std::fs::write(&p, &orig).expect("restore");
    }
    // A re-signed evidence file with an edited record still fails: the hash chain breaks.
    let p = out.join("evidence.json");
    let t = std::fs::read_to_string(&p).expect("read");
    std::fs::write(
        &p,
        t.replacen(
            "\"verdict\": \"counterexample\"",
            "\"verdict\": \"inconclusive\"",
            1,
        ),
    )
    .expect("write");
    assert_eq!(
        nncert(&["sign", s(&out), "--key", s(&key)]).status.code(),
        Some(0)
    );
    let o = nncert(&["verify-report", s(&out), "--pubkey", s(&pubkey)]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("altered"), "{}", text(&o.stdout));
    // keygen refuses to overwrite a key.
    assert_eq!(nncert(&["keygen", "--out", s(&key)]).status.code(), Some(3));
}

/// The digits plan with absolute paths and small budgets: all three method families run on a data file.
fn digits_plan_in(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let digits = repo().join("examples/digits");
    let mut t = std::fs::read_to_string(digits.join("plan.toml")).expect("read plan");
    for f in ["mlp.onnx", "x_test.npy", "y_test.npy"] {
        t = t.replace(&format!("\"{f}\""), &format!("\"{}\"", s(&digits.join(f))));
    }
    let t = t
        .replace("test_points = 100", "test_points = 40")
        .replace("attack_steps = 50", "attack_steps = 10")
        .replace("square_queries = 1000", "square_queries = 100")
        .replace("smoothing_n = 10000", "smoothing_n = 1000");
    let p = dir.join("plan.toml");
    std::fs::write(&p, edit(t)).expect("write plan");
    p
}

fn figure(r: &Value, name: &str) -> f64 {
    r["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no figure {name} in {}", r["check_id"]))["value"]
        .as_f64()
        .expect("value")
}

#[test]
fn digits_plan_runs_all_three_families_honestly_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = digits_plan_in(dir.path(), |t| t);
    let out = dir.path().join("out");
    let o = nncert(&["assess", s(&plan), "--out", s(&out), "--gate"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let ev = evidence(&out);
    let records = ev["records"].as_array().expect("records");
    let families: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["method"]["family"].as_str().expect("family"))
        .collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        ["empirical", "formal", "statistical"]
    );
    assert!(ev["not_run"].as_array().expect("not_run").is_empty());
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/evidence.schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = v.iter_errors(&ev).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");

    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r["check_id"] == id)
            .unwrap_or_else(|| panic!("no record {id}"))
    };
    // Attacks: robust accuracy never exceeds clean accuracy and falls with ε; a counterexample is a real one.
    let attack = by_id("stability-attack/attack");
    let clean = figure(attack, "clean_accuracy");
    let mut prev = clean;
    for e in ["0.02", "0.05", "0.1"] {
        let ra = figure(attack, &format!("robust_accuracy@{e}"));
        assert!(ra <= prev, "robust accuracy {ra} at {e} above {prev}");
        prev = ra;
    }
    assert!(clean > 0.9, "the bundled MLP is ~97% accurate, got {clean}");
    assert_ne!(attack["verdict"], "proved");
    if attack["verdict"] == "counterexample" {
        assert!(attack["counterexample"]["margin"].as_f64().expect("margin") <= 0.0);
    }
    assert_eq!(attack["series"][0]["kind"], "robust_accuracy_vs_eps");
    let corr = by_id("corruption/corruptions");
    assert_eq!(corr["series"].as_array().expect("series").len(), 5);
    assert_eq!(corr["series"][0]["kind"], "corruption_drop");
    // Smoothing: a statistical method whose scope names the smoothed classifier and the confidence.
    let sm = by_id("stability-smoothed/smoothing");
    assert_eq!(sm["method"]["determinism"], "statistical");
    let holds = sm["scope"]["holds_for"].as_str().expect("scope");
    assert!(
        holds.contains("smoothed classifier") && holds.contains("not the network f"),
        "{holds}"
    );
    assert!(holds.contains("1 − 0.001"), "{holds}");
    assert_eq!(sm["series"][0]["kind"], "certified_accuracy_vs_radius");
    // Only formal records and the smoothed classifier's certificate may say "proved".
    for r in records {
        let fam = r["method"]["family"].as_str().expect("family");
        if r["verdict"] == "proved" {
            assert!(
                fam == "formal"
                    || (fam == "statistical"
                        && r["scope"]["holds_for"]
                            .as_str()
                            .expect("scope")
                            .contains("not the network f")),
                "{} claims proved",
                r["check_id"]
            );
        }
        if fam == "empirical" {
            assert_eq!(r["method"]["soundness"], "unsound");
        }
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    for title in [
        "Robust accuracy vs perturbation budget ε",
        "Certified accuracy vs radius",
        "Accuracy drop under corruption",
    ] {
        assert!(html.contains(&format!("aria-label=\"{title}")), "{title}");
    }
    // The smoothed classifier's curve (L2) is not drawn on the formal curve's axes (L∞ budgets of the network).
    assert!(html.contains("aria-label=\"Certified accuracy vs radius — radius (L2)\""));
    assert!(html.contains("aria-label=\"Certified accuracy vs radius — radius ε (L∞)\""));

    // Resume after losing the last two records (the statistical and one empirical) gives the same evidence.
    let state = out.join("state.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&state)
        .expect("state")
        .lines()
        .map(String::from)
        .collect();
    std::fs::write(&state, lines[..lines.len() - 2].join("\n") + "\n").expect("truncate");
    let o = nncert(&["assess", s(&plan), "--out", s(&out), "--gate"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("already done"));
    assert_eq!(stable_records(&evidence(&out)), stable_records(&ev));

    // A threshold the measurement misses fails the gate with a line for it.
    let plan2 = digits_plan_in(dir.path(), |t| {
        t.replace(
            "min_certified_accuracy = 0.6",
            "min_certified_accuracy = 0.99",
        )
    });
    let o = nncert(&[
        "assess",
        s(&plan2),
        "--out",
        s(&dir.path().join("out2")),
        "--gate",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("GATE FAILED stability-smoothed: 0/1 measurements meet their thresholds"),
        "{stdout}"
    );
    assert!(!stdout.contains("GATE FAILED stability-attack"), "{stdout}");
}

#[test]
fn a_data_file_plan_needs_explicit_formal_points_and_valid_indices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = digits_plan_in(dir.path(), |t| {
        t.replace("points = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n", "")
    });
    let o = nncert(&["assess", s(&plan), "--out", s(&dir.path().join("o"))]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("formal checks need points"),
        "{}",
        text(&o.stderr)
    );
    let plan = digits_plan_in(dir.path(), |t| {
        t.replace("points = [0, 1, 2", "points = [1000, 1, 2")
    });
    let o = nncert(&["assess", s(&plan), "--out", s(&dir.path().join("o"))]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("point index 1000 is out of range"),
        "{}",
        text(&o.stderr)
    );
    assert!(!text(&o.stderr).contains("panicked"));
}
