//! Technical-file content: the ISO/IEC 24029-1 workflow, the mapping to ISO/IEC 24029-1/-2 clauses, the
//! ISO/IEC TR 24028 trustworthiness dimensions and the EU AI Act Art. 15 / Annex IV 2(g) items, and the
//! operational-risk reading of each verdict.
//!
//! All texts are nncert's own paraphrases; clause numbers refer to ISO/IEC TR 24029-1:2021 and
//! ISO/IEC 24029-2:2023 and should be checked against the purchased editions.

use crate::evidence::{EvidenceRecord, MethodFamily, Soundness, Verdict};
use crate::plan::PropertyKind;

/// The five workflow steps (ISO/IEC TR 24029-1, 4.1.2) and where the report documents each.
pub const WORKFLOW: [(&str, &str); 5] = [
    (
        "Goals",
        "System, intended use, criticality tier and the threats in scope (section 1).",
    ),
    (
        "Plan",
        "Domain, properties with their criteria and thresholds, methods with rationale, budgets (section 2).",
    ),
    (
        "Run",
        "Every check executed by an engine, with hashes of all inputs, seeds, machine and times (section 3).",
    ),
    (
        "Analysis",
        "Verdicts per check, acceptance per property, charts and counterexamples (section 4).",
    ),
    (
        "Interpretation",
        "What each verdict covers and does not cover, and what it means for operation (section 5).",
    ),
];

/// Rows `(clause, topic, where nncert addresses it, status)` of the ISO/IEC 24029 mapping table.
/// `ran`: families with at least one evidence record; `planned`: families the plan selected.
pub fn iso24029_rows(
    ran: &[MethodFamily],
    planned: &[MethodFamily],
    kinds: &[PropertyKind],
) -> Vec<[String; 4]> {
    let fam_status = |f: MethodFamily| -> String {
        if ran.contains(&f) {
            "addressed".into()
        } else if planned.contains(&f) {
            "planned, not run (no engine in this build)".into()
        } else {
            "not in this plan".into()
        }
    };
    let kind = |k: PropertyKind| kinds.contains(&k);
    let status = |b: bool| if b { "addressed" } else { "not in this plan" }.to_string();
    vec![
        [
            "24029-1, 4.1.2".into(),
            "Typical workflow for assessing robustness".into(),
            "Report structure (sections 1–5)".into(),
            "addressed".into(),
        ],
        [
            "24029-1, 4.2".into(),
            "Classification of assessment methods".into(),
            "Method class of each record (family, completeness, soundness, determinism)".into(),
            "addressed".into(),
        ],
        [
            "24029-1, clause 5".into(),
            "Statistical methods".into(),
            "Statistical engine records (confidence in figures)".into(),
            fam_status(MethodFamily::Statistical),
        ],
        [
            "24029-1, clause 6".into(),
            "Formal methods".into(),
            "Formal engine: bound propagation, branch-and-bound, checked counterexamples".into(),
            fam_status(MethodFamily::Formal),
        ],
        [
            "24029-1, clause 7".into(),
            "Empirical methods".into(),
            "Empirical engine records (attacks, corruptions)".into(),
            fam_status(MethodFamily::Empirical),
        ],
        [
            "24029-2, clause 5 (domain)".into(),
            "Notion of the input domain".into(),
            "Plan section 2: feature ranges, budgets, semantic perturbations".into(),
            "addressed".into(),
        ],
        [
            "24029-2, clause 5 (stability)".into(),
            "Stability property".into(),
            "Properties of kind stability".into(),
            status(kind(PropertyKind::Stability)),
        ],
        [
            "24029-2, clause 5 (sensitivity)".into(),
            "Sensitivity property".into(),
            "Properties of kind sensitivity".into(),
            status(kind(PropertyKind::Sensitivity)),
        ],
        [
            "24029-2, clause 5 (relevance)".into(),
            "Relevance property".into(),
            "Properties of kind relevance".into(),
            status(kind(PropertyKind::Relevance)),
        ],
        [
            "24029-2, clause 5 (reachability)".into(),
            "Reachability property".into(),
            "Properties of kind reachability (VNN-LIB or output range)".into(),
            status(kind(PropertyKind::Reachability)),
        ],
        [
            "24029-2, clauses 6–8".into(),
            "Applicability of formal methods, life cycle, verification and validation".into(),
            "Proof scope of each record; this report as a verification-phase artefact".into(),
            "partly (life-cycle phases other than V&V are out of scope)".into(),
        ],
    ]
}

/// Rows `(dimension, status, how)` for the ISO/IEC TR 24028 trustworthiness dimensions.
pub fn tr24028_rows(in_scope_security: bool) -> Vec<[&'static str; 3]> {
    let sec = if in_scope_security {
        "partly covered"
    } else {
        "not covered"
    };
    vec![
        [
            "Robustness",
            "covered",
            "The properties and verdicts of this report",
        ],
        [
            "Reliability",
            "partly covered",
            "Proved regions; empirical and statistical figures where run",
        ],
        [
            "Resilience",
            "partly covered",
            "Semantic and corruption perturbations where planned",
        ],
        [
            "Safety",
            "partly covered",
            "Reachability properties on unsafe output regions",
        ],
        [
            "Security",
            sec,
            "Evasion (adversarial examples) by stability checks; poisoning and confidentiality only as marked in the threat table",
        ],
        [
            "Transparency",
            "partly covered",
            "Full plan, method classes and proof scopes are disclosed",
        ],
        [
            "Explainability",
            "partly covered",
            "Relevance properties only; no explanation method",
        ],
        [
            "Accountability",
            "covered",
            "Owner, signed report, hash-chained evidence, audit trail",
        ],
        [
            "Controllability",
            "not covered",
            "Human oversight is outside this assessment",
        ],
        ["Bias and fairness", "not covered", "Not assessed by nncert"],
        ["Privacy", "not covered", "Not assessed by nncert"],
    ]
}

/// Rows `(item, paraphrase, where in this report)` for EU AI Act Art. 15 and Annex IV 2(g).
pub const EU_AI_ACT: [[&str; 3]; 6] = [
    [
        "Art. 15(1)",
        "Appropriate accuracy, robustness and cybersecurity over the life cycle",
        "Sections 2, 4, 5 (this assessment is one point in the life cycle)",
    ],
    [
        "Art. 15(3)",
        "Accuracy levels and metrics declared",
        "Figures and acceptance thresholds per property (sections 2, 4)",
    ],
    [
        "Art. 15(4)",
        "Resilience to errors, faults and inconsistencies of inputs",
        "Stability, sensitivity and semantic perturbation properties",
    ],
    [
        "Art. 15(5)",
        "Resilience against attacks: poisoning, adversarial examples / evasion, confidentiality, model flaws",
        "Threat table (section 1): each threat in scope or out of scope with a reason",
    ],
    [
        "Annex IV 2(g)",
        "Validation and testing procedures, data used, metrics for accuracy and robustness",
        "Sections 2–4 and evidence.json",
    ],
    [
        "Annex IV 2(g)",
        "Test logs and reports, dated and signed by the responsible persons",
        "Audit trail (section 3); signature by nncert sign, checked by nncert verify-report",
    ],
];

/// What a record's verdict means for operation, in one or two sentences.
pub fn risk_reading(r: &EvidenceRecord) -> String {
    let region = match r.kind {
        PropertyKind::Stability => "perturbation of this size around this input",
        PropertyKind::Sensitivity => "perturbation of this size around this input",
        PropertyKind::Relevance => "change of the features declared irrelevant",
        PropertyKind::Reachability => "input of the stated region",
    };
    match (r.verdict, r.method.soundness) {
        (Verdict::Proved, Soundness::SoundReal | Soundness::SoundFloat) => format!(
            "No {region} can violate the property: the operational risk within the region is eliminated for \
             the assessed model file. Residual risk lies outside the region and in the assumptions of the scope."
        ),
        (Verdict::Proved, Soundness::Unsound) => format!(
            "The criterion was met on the inputs tried, but some {region} may still violate the property: \
             residual risk is reduced, not eliminated."
        ),
        (Verdict::Counterexample, _) => format!(
            "A concrete {region} violates the property. In operation, a natural variation or an attacker \
             producing such an input causes a wrong output: treat the requirement as not met at this budget."
        ),
        (Verdict::Inconclusive, _) => {
            "Nothing was shown either way: treat the property as not demonstrated (increase the budget or use a \
             complete method)."
                .to_string()
        }
    }
}
