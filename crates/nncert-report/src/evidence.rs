//! Evidence records: what every engine (formal, empirical, statistical) returns, in one shape.
//!
//! A record says which check it answers, which method answered it and what kind of method that is (complete or
//! not, sound or not, deterministic or statistical), under which budget, with what verdict and why, what the
//! verdict covers (the proof scope), and the figures and series an engine measured. Engines built later plug in
//! by filling an [`EvidenceRecord`]; the report renders whatever figures and series a record carries.
//!
//! The file format is versioned ([`SCHEMA_VERSION`]); its JSON Schema is generated from these types with
//! `schemars` and committed as `schemas/evidence.schema.json` (a test keeps it up to date).

use crate::plan::{Plan, PropertyKind, Threat};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the evidence file format; bumped on any incompatible change of these types.
pub const SCHEMA_VERSION: &str = "1.0.0";

/// `evidence.json`: an assessment's plan, audit data and hash-chained records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFile {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: String,
    /// The tool that wrote the file.
    pub tool: Tool,
    /// The plan as read (paths as written in the plan file).
    pub plan: Plan,
    /// Hashes, seeds, machine and times.
    pub audit: Audit,
    /// One record per finished check, in plan order; each record's hash covers the previous one's.
    pub records: Vec<EvidenceRecord>,
    /// Method families the plan asked for that no engine of this build can run (reported, never faked).
    pub not_run: Vec<NotRun>,
}

/// Name and version of the tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Always `nncert`.
    pub name: String,
    /// The crate version.
    pub version: String,
}

/// The audit trail of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// SHA-256 of every file the assessment read (plan, model, data, property files).
    pub artifacts: Vec<Artifact>,
    /// Every seed used, by name.
    pub seeds: BTreeMap<String, u64>,
    /// Where the assessment ran.
    pub machine: Machine,
    /// Start of the first run (UTC, RFC 3339).
    pub started: String,
    /// End of the run that completed the assessment (UTC, RFC 3339).
    pub finished: String,
}

/// A hashed input file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// plan, model, data or property.
    pub role: String,
    /// The path as given in the plan (relative to the plan's folder) or on the command line.
    pub path: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The machine an assessment ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Host name (empty if unknown).
    pub hostname: String,
    /// Operating system and architecture, e.g. `linux x86_64`.
    pub os: String,
    /// Logical cores available to the process.
    pub cores: u64,
}

/// A method family of ISO/IEC 24029-1 (clause 5 overview: statistical, formal and empirical approaches).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MethodFamily {
    /// Proof-based methods (ISO/IEC 24029-2).
    Formal,
    /// Testing, attacks, corruptions.
    Empirical,
    /// Sampling-based estimates with confidence levels.
    Statistical,
}

impl MethodFamily {
    /// All families, in report order.
    pub const ALL: [MethodFamily; 3] = [
        MethodFamily::Formal,
        MethodFamily::Empirical,
        MethodFamily::Statistical,
    ];
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            MethodFamily::Formal => "formal",
            MethodFamily::Empirical => "empirical",
            MethodFamily::Statistical => "statistical",
        }
    }
}

/// Whether a method answers every instance given enough budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// Decides every instance given enough time (a "no" comes with a counterexample, a "yes" with a proof).
    Complete,
    /// May end undecided.
    Incomplete,
}

/// What a positive answer of the method guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Soundness {
    /// A proof holds for the real-valued network (exact arithmetic) with its stored weights.
    SoundReal,
    /// A proof holds also for the network executed in floating point.
    SoundFloat,
    /// No guarantee: evidence from tests or estimates only.
    Unsound,
}

/// Whether re-running gives the same answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Determinism {
    /// Same inputs and seed, same answer; the answer carries no error probability.
    Deterministic,
    /// The answer holds with a stated confidence (see the record's figures).
    Statistical,
}

/// The method that produced a record, and its class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodInfo {
    /// Method family.
    pub family: MethodFamily,
    /// Engine name in the registry, e.g. `formal`.
    pub engine: String,
    /// What actually decided, e.g. `CROWN bounds` or `PGD falsifier`.
    pub name: String,
    /// Complete or incomplete.
    pub completeness: Completeness,
    /// What a proof guarantees.
    pub soundness: Soundness,
    /// Deterministic or statistical.
    pub determinism: Determinism,
}

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The property holds on the whole region (formal), or the criterion is met (empirical/statistical).
    Proved,
    /// A concrete input violating the property was found and re-checked.
    Counterexample,
    /// Neither; the record's reason says why.
    Inconclusive,
}

impl Verdict {
    /// The word used in reports.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Proved => "proved",
            Verdict::Counterexample => "counterexample",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The budget a check ran under.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Wall-clock limit in seconds.
    pub time_s: Option<f64>,
    /// Sample or query limit (empirical and statistical engines).
    pub samples: Option<u64>,
    /// Seed of the engine's random choices.
    pub seed: Option<u64>,
}

/// What a verdict covers: "holds for inputs in …, under …; not covered: …".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofScope {
    /// The input region the verdict speaks about.
    pub holds_for: String,
    /// The assumptions (arithmetic, model file, tolerances).
    pub under: String,
    /// What the verdict says nothing about.
    pub not_covered: String,
}

/// A concrete violating input, re-executed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterexampleData {
    /// The input values (flattened, row-major).
    pub input: Vec<f64>,
    /// The model's per-sample input shape (to show image-shaped inputs as images).
    pub input_shape: Vec<u64>,
    /// The reference point the check perturbs, if any (same length as `input`).
    pub reference: Option<Vec<f64>>,
    /// The outputs at `input` (f64 evaluation).
    pub output: Vec<f64>,
    /// The property's margin at `input` (≤ 0: inside the bad region).
    pub margin: f64,
}

/// A named measured number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// Name, e.g. `robust_accuracy`.
    pub name: String,
    /// The value (finite; infinite values are written as null by JSON and rejected on read).
    pub value: f64,
    /// Unit, if any.
    pub unit: Option<String>,
}

/// The kind of a series, which decides its chart's title and axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// Robust accuracy (y) against perturbation budget ε (x), from attacks.
    RobustAccuracyVsEps,
    /// Certified accuracy (y) against certified radius (x), from proofs or smoothing.
    CertifiedAccuracyVsRadius,
    /// Accuracy drop (y) against corruption severity (x).
    CorruptionDrop,
    /// Anything else; the labels say what.
    Other,
}

/// A series of points for a chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// What is plotted.
    pub kind: SeriesKind,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// `[x, y]` pairs.
    pub points: Vec<[f64; 2]>,
}

/// Start, end and duration of a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Start (UTC, RFC 3339).
    pub started: String,
    /// End (UTC, RFC 3339).
    pub finished: String,
    /// Duration in seconds.
    pub elapsed_s: f64,
}

/// The answer to one check, by one method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    /// Unique id of the check, `property-id/…`.
    pub check_id: String,
    /// Id of the plan property the check belongs to.
    pub property_id: String,
    /// Kind of the property (ISO/IEC 24029-2).
    pub kind: PropertyKind,
    /// Threats the property addresses.
    pub threats: Vec<Threat>,
    /// A one-line description of the check (region, point, budget).
    pub description: String,
    /// The method and its class.
    pub method: MethodInfo,
    /// The budget.
    pub budget: Budget,
    /// The verdict.
    pub verdict: Verdict,
    /// Why this verdict (what proved it, or what ran out).
    pub reason: String,
    /// What the verdict covers.
    pub scope: ProofScope,
    /// A counterexample, when the verdict is `counterexample`.
    pub counterexample: Option<CounterexampleData>,
    /// Named numbers.
    pub figures: Vec<Figure>,
    /// Series for charts.
    pub series: Vec<Series>,
    /// Times.
    pub timing: Timing,
    /// For empirical and statistical records measured against a plan threshold (`min_robust_accuracy`,
    /// `min_certified_accuracy`, `max_accuracy_drop`): whether the measured figure meets it. The verdict says what
    /// was shown about the property; this says whether the measurement is acceptable. Absent for formal records
    /// (gated by `min_proved_fraction`) and for measurements without a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<bool>,
    /// Hash of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this record with `hash` empty (see [`crate::audit::record_hash`]).
    pub hash: String,
}

/// A method family the plan selected that this build cannot run, and what that means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotRun {
    /// The family.
    pub family: MethodFamily,
    /// Why it did not run.
    pub reason: String,
}

/// The JSON Schema of [`EvidenceFile`], pretty-printed with a final newline (the committed schema file).
pub fn evidence_schema_json() -> String {
    let schema = schemars::schema_for!(EvidenceFile);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
