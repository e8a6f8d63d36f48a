//! Acceptance thresholds (the CI gate) and JUnit XML.

use crate::evidence::{EvidenceRecord, Verdict};
use crate::plan::Plan;
use serde::{Deserialize, Serialize};

/// Exit code of `nncert assess --gate` when a threshold fails (0–3 keep their `verify` meanings).
pub const GATE_FAILED_EXIT: u8 = 4;

/// The acceptance result of one property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The property.
    pub property_id: String,
    /// Checks proved.
    pub proved: usize,
    /// Checks run.
    pub total: usize,
    /// The threshold (fraction of checks proved).
    pub threshold: f64,
    /// Whether the threshold is met.
    pub passed: bool,
    /// One line per check that is not proved: `check-id: verdict: reason`.
    pub failures: Vec<String>,
}

/// Applies each property's `min_proved_fraction` to its records. A property with no records fails (nothing was
/// shown).
pub fn evaluate(plan: &Plan, records: &[EvidenceRecord]) -> Vec<GateResult> {
    plan.properties
        .iter()
        .map(|p| {
            let mine: Vec<&EvidenceRecord> =
                records.iter().filter(|r| r.property_id == p.id).collect();
            let proved = mine.iter().filter(|r| r.verdict == Verdict::Proved).count();
            let total = mine.len();
            // Compare counts, not rounded fractions: proved/total >= t  <=>  proved >= t·total.
            let passed = total > 0 && proved as f64 >= p.min_proved_fraction * total as f64;
            let failures = mine
                .iter()
                .filter(|r| r.verdict != Verdict::Proved)
                .map(|r| format!("{}: {}: {}", r.check_id, r.verdict.word(), r.reason))
                .collect();
            GateResult {
                property_id: p.id.clone(),
                proved,
                total,
                threshold: p.min_proved_fraction,
                passed,
                failures,
            }
        })
        .collect()
}

/// One line per failed property (and its unproved checks) for the console.
pub fn failure_lines(results: &[GateResult]) -> Vec<String> {
    let mut out = Vec::new();
    for g in results.iter().filter(|g| !g.passed) {
        out.push(format!(
            "GATE FAILED {}: {}/{} checks proved, threshold {:.0}%",
            g.property_id,
            g.proved,
            g.total,
            g.threshold * 100.0
        ));
        for f in &g.failures {
            out.push(format!("  {f}"));
        }
    }
    out
}

/// JUnit XML: one test suite per property, one test case per check; a check that is not proved is a failure
/// when its property fails its threshold, and passes (with the verdict in its output) otherwise.
pub fn junit_xml(plan: &Plan, records: &[EvidenceRecord], results: &[GateResult]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("nncert assess");
    for (p, g) in plan.properties.iter().zip(results) {
        let mut suite = TestSuite::new(p.id.as_str());
        for r in records.iter().filter(|r| r.property_id == p.id) {
            let status = if r.verdict == Verdict::Proved || g.passed {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(format!("{}: {}", r.verdict.word(), r.reason));
                s
            };
            let mut case = TestCase::new(r.check_id.as_str(), status);
            case.set_classname(format!("{}.{}", p.kind.name(), p.id));
            case.set_time(std::time::Duration::from_secs_f64(
                r.timing.elapsed_s.max(0.0),
            ));
            case.set_system_out(format!(
                "verdict: {}\nmethod: {}\nreason: {}",
                r.verdict.word(),
                r.method.name,
                r.reason
            ));
            suite.add_test_case(case);
        }
        if suite.test_cases.is_empty() {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message("no check of this property ran");
            suite.add_test_case(TestCase::new(format!("{}/none", p.id), s));
        }
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}
