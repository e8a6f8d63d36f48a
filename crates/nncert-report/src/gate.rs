//! Acceptance thresholds (the CI gate) and JUnit XML.

use crate::evidence::{EvidenceRecord, MethodFamily, Verdict};
use crate::plan::Plan;
use serde::{Deserialize, Serialize};

/// Exit code of `nncert assess --gate` when a threshold fails (0–3 keep their `verify` meanings).
pub const GATE_FAILED_EXIT: u8 = 4;

/// The acceptance result of one property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The property.
    pub property_id: String,
    /// Formal checks proved.
    pub proved: usize,
    /// Formal checks run.
    pub total: usize,
    /// The threshold (fraction of formal checks proved).
    pub threshold: f64,
    /// Empirical and statistical measurements gated by a threshold of the plan.
    pub measured: usize,
    /// Of those, the ones that meet their threshold.
    pub measured_ok: usize,
    /// Whether the thresholds are met.
    pub passed: bool,
    /// One line per formal check that is not proved and per measurement that misses its threshold:
    /// `check-id: verdict: reason`.
    pub failures: Vec<String>,
}

/// Applies the thresholds of each property: `min_proved_fraction` to its formal records, and each empirical or
/// statistical record's own threshold (its `acceptance`). Empirical and statistical records without a threshold
/// are informational. A property with neither formal records nor gated measurements fails (nothing was shown).
pub fn evaluate(plan: &Plan, records: &[EvidenceRecord]) -> Vec<GateResult> {
    plan.properties
        .iter()
        .map(|p| {
            let mine: Vec<&EvidenceRecord> =
                records.iter().filter(|r| r.property_id == p.id).collect();
            let formal: Vec<&&EvidenceRecord> = mine
                .iter()
                .filter(|r| r.method.family == MethodFamily::Formal)
                .collect();
            let gated: Vec<&&EvidenceRecord> = mine
                .iter()
                .filter(|r| r.method.family != MethodFamily::Formal && r.acceptance.is_some())
                .collect();
            let proved = formal
                .iter()
                .filter(|r| r.verdict == Verdict::Proved)
                .count();
            let total = formal.len();
            let measured_ok = gated.iter().filter(|r| r.acceptance == Some(true)).count();
            // Compare counts, not rounded fractions: proved/total >= t  <=>  proved >= t·total.
            let formal_ok = total == 0 || proved as f64 >= p.min_proved_fraction * total as f64;
            let passed =
                (total > 0 || !gated.is_empty()) && formal_ok && measured_ok == gated.len();
            let mut failures: Vec<String> = formal
                .iter()
                .filter(|r| r.verdict != Verdict::Proved)
                .map(|r| format!("{}: {}: {}", r.check_id, r.verdict.word(), r.reason))
                .collect();
            failures.extend(
                gated
                    .iter()
                    .filter(|r| r.acceptance == Some(false))
                    .map(|r| format!("{}: threshold not met: {}", r.check_id, r.reason)),
            );
            if total == 0 && gated.is_empty() && !mine.is_empty() {
                failures.push(format!(
                    "{}: only measurements without a threshold: set min_robust_accuracy, \
                     min_certified_accuracy or max_accuracy_drop in the plan",
                    p.id
                ));
            }
            GateResult {
                property_id: p.id.clone(),
                proved,
                total,
                threshold: p.min_proved_fraction,
                measured: gated.len(),
                measured_ok,
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
        let mut parts = Vec::new();
        if g.total > 0 {
            parts.push(format!(
                "{}/{} formal checks proved, threshold {:.0}%",
                g.proved,
                g.total,
                g.threshold * 100.0
            ));
        }
        if g.measured > 0 {
            parts.push(format!(
                "{}/{} measurements meet their thresholds",
                g.measured_ok, g.measured
            ));
        }
        if parts.is_empty() {
            parts.push("no gated evidence".into());
        }
        out.push(format!(
            "GATE FAILED {}: {}",
            g.property_id,
            parts.join("; ")
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
            let status = if r.verdict == Verdict::Proved || r.acceptance == Some(true) || g.passed {
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
