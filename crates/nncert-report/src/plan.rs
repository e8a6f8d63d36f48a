//! The assessment plan (`plan.toml`): what system is assessed, on which model, data and input domain, which
//! properties (by the kinds of ISO/IEC 24029-2), against which threats, with which methods, budgets and
//! acceptance thresholds.
//!
//! The plan is the "planning" step of the ISO/IEC 24029-1 workflow (goals → plan → run → analysis →
//! interpretation): everything the run does is derived from it, and it is hashed into the audit trail.
//! [`Plan::load`] parses and validates; every error names the plan file and says what to change.

use crate::error::ReportError;
use crate::evidence::MethodFamily;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed, validated plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The system under assessment.
    pub system: System,
    /// The model file.
    pub model: ModelSpec,
    /// Reference inputs (points) the local properties are checked around.
    #[serde(default)]
    pub data: DataSpec,
    /// The input domain: feature ranges, perturbation budgets, semantic perturbations.
    #[serde(default)]
    pub domain: Domain,
    /// The properties to assess.
    #[serde(rename = "property")]
    pub properties: Vec<PropertySpec>,
    /// Every threat of the taxonomy, in scope or not (with a reason).
    pub threats: BTreeMap<Threat, ThreatScope>,
    /// Method selection; defaults follow the criticality tier.
    #[serde(default)]
    pub methods: MethodsSpec,
    /// Time budgets and the seed.
    #[serde(default)]
    pub budgets: Budgets,
}

/// The system under assessment (for the technical file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// Name of the system.
    pub name: String,
    /// Version of the system.
    pub version: String,
    /// Intended use (the operating context robustness is judged against).
    pub intended_use: String,
    /// Criticality tier; it decides the default methods.
    pub criticality: Criticality,
    /// Who is responsible for the system.
    pub owner: String,
}

/// Criticality tier of the system.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    /// Failures are a nuisance.
    Low,
    /// Failures cost money or time.
    Medium,
    /// Failures can harm people or rights; a formal method is required.
    High,
    /// Failures can be catastrophic; a formal method is required.
    Critical,
}

impl Criticality {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Criticality::Low => "low",
            Criticality::Medium => "medium",
            Criticality::High => "high",
            Criticality::Critical => "critical",
        }
    }
}

/// The model under assessment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Path to the `.onnx` or `.nnet` file, relative to the plan's folder.
    pub path: String,
    /// Optional class names, one per output.
    #[serde(default)]
    pub class_names: Vec<String>,
}

/// Reference inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Where the points come from (for the report), e.g. a data set name.
    #[serde(default)]
    pub description: String,
    /// The points, each with the model's number of inputs.
    #[serde(default)]
    pub points: Vec<Vec<f64>>,
    /// Their labels; if absent, the model's prediction at each point is used (and the report says so).
    #[serde(default)]
    pub labels: Option<Vec<usize>>,
    /// A test set file instead of inline points: `.npy`, `.npz` (`file.npz:key`), `.csv` (label in the last
    /// column) or a folder of PNG images, relative to the plan's folder. Read with the declared preprocessing below.
    #[serde(default)]
    pub file: Option<String>,
    /// The labels of `file` (`.npy`/`.npz`), one class index per sample; CSV files and PNG folders carry their own.
    #[serde(default)]
    pub labels_file: Option<String>,
    /// Multiply raw values by this (e.g. `1/255` for 8-bit images); default 1 (PNG folders: 1/255).
    #[serde(default)]
    pub scale: Option<f32>,
    /// Per-channel mean subtracted after scaling (one value or one per channel).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after subtracting the mean.
    #[serde(default)]
    pub std: Vec<f32>,
    /// Layout of image data in the file: `nchw` (default) or `nhwc` (transposed to NCHW).
    #[serde(default)]
    pub layout: Option<String>,
    /// Valid range `[lo, hi]` of every feature after scaling, before normalization (e.g. `[0, 1]` for images):
    /// perturbed inputs are clipped to it, and it is the domain range when `domain.lower`/`upper` are not given.
    #[serde(default)]
    pub range: Option<[f32; 2]>,
}

/// The input domain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Per-feature lower bounds of valid inputs (perturbed regions are clipped to them).
    #[serde(default)]
    pub lower: Option<Vec<f64>>,
    /// Per-feature upper bounds of valid inputs.
    #[serde(default)]
    pub upper: Option<Vec<f64>>,
    /// L∞ perturbation budgets (used by stability properties that list none of their own).
    #[serde(default)]
    pub linf: Vec<f64>,
    /// L2 perturbation budgets.
    #[serde(default)]
    pub l2: Vec<f64>,
    /// Semantic perturbations, compiled into an affine transformation prepended to the network.
    #[serde(default)]
    pub semantic: Option<Semantic>,
    /// Corruptions evaluated by the empirical engine for `perturbation = "corruption"` properties, by name:
    /// gaussian_noise, shot_noise, impulse_noise, gaussian_blur, brightness, contrast, pixelate, jpeg (images),
    /// feature_noise, missing_values (tabular). Each is applied at severities 1 to 5.
    #[serde(default)]
    pub corruptions: Vec<String>,
}

/// Semantic perturbations of an input `x`: `x' = c·x + b + δ` with `|b| ≤ brightness`,
/// `|c − 1| ≤ contrast`, `‖δ‖∞ ≤ noise`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Semantic {
    /// Largest additive brightness shift.
    #[serde(default)]
    pub brightness: f64,
    /// Largest relative contrast change.
    #[serde(default)]
    pub contrast: f64,
    /// Largest additive per-feature noise (L∞).
    #[serde(default)]
    pub noise: f64,
}

/// Property kinds of ISO/IEC 24029-2 (clause 5: stability, sensitivity, relevance, reachability).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PropertyKind {
    /// The decision does not change under bounded perturbations of a point.
    Stability,
    /// The outputs move by at most a given amount under bounded perturbations.
    Sensitivity,
    /// Features declared irrelevant cannot change the decision.
    Relevance,
    /// Outputs stay in (or never reach) a region for all inputs of a region.
    Reachability,
}

impl PropertyKind {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            PropertyKind::Stability => "stability",
            PropertyKind::Sensitivity => "sensitivity",
            PropertyKind::Relevance => "relevance",
            PropertyKind::Reachability => "reachability",
        }
    }
}

/// The norm of a perturbation budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// Max-norm: every feature moves by at most ε.
    #[default]
    Linf,
    /// Euclidean norm.
    L2,
}

/// How a stability property perturbs its points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Perturbation {
    /// A norm ball of radius ε ([`PropertySpec::norm`]).
    #[default]
    Norm,
    /// The domain's semantic perturbations (brightness, contrast, noise).
    Semantic,
    /// The domain's corruptions at severities 1–5 (empirical only: accuracy drop on the test set).
    Corruption,
}

/// One property of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertySpec {
    /// Unique id (letters, digits, `-`, `_`).
    pub id: String,
    /// The kind.
    pub kind: PropertyKind,
    /// The acceptance criterion in words (for the report).
    pub criterion: String,
    /// Threats this property addresses (each must be in scope).
    #[serde(default)]
    pub threats: Vec<Threat>,
    /// Indices into `data.points` (default: all points). Stability, sensitivity, relevance.
    #[serde(default)]
    pub points: Option<Vec<usize>>,
    /// Perturbation model (stability).
    #[serde(default)]
    pub perturbation: Perturbation,
    /// Norm of `eps` (stability, sensitivity).
    #[serde(default)]
    pub norm: Norm,
    /// Budgets (stability, sensitivity); default: the domain's budgets of this norm.
    #[serde(default)]
    pub eps: Vec<f64>,
    /// Largest allowed output change (sensitivity).
    #[serde(default)]
    pub max_output_change: Option<f64>,
    /// Features that must not matter (relevance): each varies over its whole domain range.
    #[serde(default)]
    pub irrelevant_features: Vec<usize>,
    /// A VNN-LIB file (reachability), relative to the plan's folder; its assertions describe the bad case.
    #[serde(default)]
    pub vnnlib: Option<String>,
    /// Output index (reachability without a file): it must stay in `[output_min, output_max]` on the domain.
    #[serde(default)]
    pub output: Option<usize>,
    /// Lower end of the allowed output range (reachability).
    #[serde(default)]
    pub output_min: Option<f64>,
    /// Upper end of the allowed output range (reachability).
    #[serde(default)]
    pub output_max: Option<f64>,
    /// Acceptance threshold: fraction of this property's formal checks that must be proved (default 1).
    #[serde(default = "one")]
    pub min_proved_fraction: f64,
    /// Which method families answer this property (default: every family the plan runs that supports it).
    #[serde(default)]
    pub methods: Option<Vec<MethodFamily>>,
    /// Acceptance threshold of the empirical engine: the robust accuracy under attack on the test points, at
    /// every ε of the property, must be at least this. Without it the figures are recorded but not gated.
    #[serde(default)]
    pub min_robust_accuracy: Option<f64>,
    /// Acceptance threshold of the statistical engine: the smoothed classifier's certified accuracy at every ε
    /// of the property (an L2 radius) must be at least this. Without it the figures are recorded but not gated.
    #[serde(default)]
    pub min_certified_accuracy: Option<f64>,
    /// Acceptance threshold of a corruption property: the mean accuracy drop over the corruptions and
    /// severities (absolute, 0..1) must be at most this. Without it the figures are recorded but not gated.
    #[serde(default)]
    pub max_accuracy_drop: Option<f64>,
}

impl PropertySpec {
    /// Whether the property asks for `family` (all families unless `methods` restricts them).
    pub fn wants(&self, family: MethodFamily) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(&family))
    }
}

fn one() -> f64 {
    1.0
}

/// The threat taxonomy (ISO/IEC 24029-1 and EU AI Act Art. 15(5)).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Threat {
    /// Evasion: adversarial examples crafted at inference time.
    Evasion,
    /// Natural distribution shift and input corruption.
    DistributionShift,
    /// Poisoning of training data or of the model.
    Poisoning,
    /// Confidentiality attacks (model extraction, membership inference).
    Confidentiality,
    /// Flaws of the model itself (errors on valid inputs, unsafe output regions).
    ModelFlaws,
}

impl Threat {
    /// Every threat, in report order.
    pub const ALL: [Threat; 5] = [
        Threat::Evasion,
        Threat::DistributionShift,
        Threat::Poisoning,
        Threat::Confidentiality,
        Threat::ModelFlaws,
    ];
    /// The snake_case key used in plans.
    pub fn key(self) -> &'static str {
        match self {
            Threat::Evasion => "evasion",
            Threat::DistributionShift => "distribution_shift",
            Threat::Poisoning => "poisoning",
            Threat::Confidentiality => "confidentiality",
            Threat::ModelFlaws => "model_flaws",
        }
    }
    /// A readable name.
    pub fn title(self) -> &'static str {
        match self {
            Threat::Evasion => "Evasion / adversarial examples",
            Threat::DistributionShift => "Distribution shift and corruption",
            Threat::Poisoning => "Data or model poisoning",
            Threat::Confidentiality => "Confidentiality attacks",
            Threat::ModelFlaws => "Model flaws",
        }
    }
}

/// Whether a threat is assessed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThreatScope {
    /// In scope of this assessment.
    pub in_scope: bool,
    /// Why it is out of scope (required when `in_scope` is false), or how it is addressed.
    #[serde(default)]
    pub reason: String,
}

/// Method selection per family.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodsSpec {
    /// Run the formal family (default: by criticality tier, see [`default_families`]).
    #[serde(default)]
    pub formal: Option<bool>,
    /// Run the empirical family.
    #[serde(default)]
    pub empirical: Option<bool>,
    /// Run the statistical family.
    #[serde(default)]
    pub statistical: Option<bool>,
    /// The empirical engine's attack: `ensemble` (FGSM, PGD, APGD-CE/DLR/T, Square; default) or `pgd`.
    #[serde(default)]
    pub attack: Attack,
    /// Why this selection (required when it departs from the tier's defaults).
    #[serde(default)]
    pub rationale: String,
}

/// The attack of the empirical engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// FGSM, PGD, APGD-CE, APGD-DLR, APGD-T and Square; each point stops at its first success.
    #[default]
    Ensemble,
    /// Projected gradient descent alone (faster, weaker).
    Pgd,
}

/// Time, sample and query budgets, and the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Time limit of one formal check in seconds.
    #[serde(default = "default_check_time")]
    pub check_time_s: f64,
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Test points the empirical and statistical engines use: the first this many of the data (default: all).
    #[serde(default)]
    pub test_points: Option<usize>,
    /// Gradient steps per restart of PGD and APGD.
    #[serde(default = "default_attack_steps")]
    pub attack_steps: usize,
    /// Restarts per point of PGD and APGD.
    #[serde(default = "one_usize")]
    pub attack_restarts: usize,
    /// Queries of the Square attack (ensemble).
    #[serde(default = "default_square_queries")]
    pub square_queries: usize,
    /// Noise level σ of randomized smoothing (input units).
    #[serde(default = "default_sigma")]
    pub smoothing_sigma: f64,
    /// Noise samples per point that estimate the top class's probability (smoothing CERTIFY's n).
    #[serde(default = "default_smoothing_n")]
    pub smoothing_n: u64,
    /// Noise samples per point that select the top class (smoothing CERTIFY's n0).
    #[serde(default = "default_smoothing_n0")]
    pub smoothing_n0: u64,
    /// Failure probability of each smoothing certificate: it holds with probability at least 1 − alpha.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

fn default_attack_steps() -> usize {
    50
}
fn one_usize() -> usize {
    1
}
fn default_square_queries() -> usize {
    1000
}
fn default_sigma() -> f64 {
    0.25
}
fn default_smoothing_n() -> u64 {
    1000
}
fn default_smoothing_n0() -> u64 {
    100
}
fn default_alpha() -> f64 {
    0.001
}

fn default_check_time() -> f64 {
    30.0
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            check_time_s: default_check_time(),
            seed: 0,
            test_points: None,
            attack_steps: default_attack_steps(),
            attack_restarts: one_usize(),
            square_queries: default_square_queries(),
            smoothing_sigma: default_sigma(),
            smoothing_n: default_smoothing_n(),
            smoothing_n0: default_smoothing_n0(),
            alpha: default_alpha(),
        }
    }
}

/// The families a tier selects by default, with the reason: low → empirical; medium → empirical and
/// statistical; high → formal and empirical; critical → all three. High and critical require a formal method
/// because only a proof covers every input of a region (ISO/IEC 24029-1 discusses the limits of testing).
pub fn default_families(tier: Criticality) -> (Vec<MethodFamily>, &'static str) {
    use MethodFamily::*;
    match tier {
        Criticality::Low => (
            vec![Empirical],
            "low criticality: empirical testing gives proportionate evidence",
        ),
        Criticality::Medium => (
            vec![Empirical, Statistical],
            "medium criticality: testing plus statistical estimates with stated confidence",
        ),
        Criticality::High => (
            vec![Formal, Empirical],
            "high criticality: a formal method is required so that claims cover whole input regions, \
             complemented by testing",
        ),
        Criticality::Critical => (
            vec![Formal, Empirical, Statistical],
            "critical: formal proofs on the specified regions, testing beyond them, and statistical estimates of \
             the residual failure probability",
        ),
    }
}

impl Plan {
    /// Reads, parses and validates a plan file.
    ///
    /// # Errors
    /// [`ReportError::Io`], [`ReportError::PlanSyntax`] (TOML errors with line and column) or
    /// [`ReportError::Plan`] for an inconsistent plan.
    pub fn load(path: &Path) -> Result<Plan, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
        Plan::parse(&text, path)
    }

    /// Parses and validates plan text; `path` names the plan in messages.
    ///
    /// # Errors
    /// As [`Plan::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Plan, ReportError> {
        let plan: Plan = toml::from_str(text).map_err(|e| ReportError::PlanSyntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        plan.validate().map_err(|message| ReportError::Plan {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(plan)
    }

    /// The method families this plan runs and the written rationale (the tier's default or the override's).
    pub fn families(&self) -> (Vec<MethodFamily>, String) {
        let (defaults, why) = default_families(self.system.criticality);
        let pick = |f: MethodFamily, o: Option<bool>| o.unwrap_or(defaults.contains(&f));
        let chosen: Vec<MethodFamily> = [
            (MethodFamily::Formal, self.methods.formal),
            (MethodFamily::Empirical, self.methods.empirical),
            (MethodFamily::Statistical, self.methods.statistical),
        ]
        .into_iter()
        .filter(|&(f, o)| pick(f, o))
        .map(|(f, _)| f)
        .collect();
        let rationale = if chosen == defaults {
            if self.methods.rationale.trim().is_empty() {
                format!("default for the tier: {why}")
            } else {
                format!(
                    "{} (default for the tier: {why})",
                    self.methods.rationale.trim()
                )
            }
        } else {
            format!(
                "override of the tier's default: {}",
                self.methods.rationale.trim()
            )
        };
        (chosen, rationale)
    }

    /// Resolves a path of the plan against the plan's folder.
    pub fn resolve(plan_path: &Path, rel: &str) -> PathBuf {
        let p = Path::new(rel);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            plan_path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.system;
        for (k, v) in [
            ("system.name", &s.name),
            ("system.version", &s.version),
            ("system.intended_use", &s.intended_use),
            ("system.owner", &s.owner),
        ] {
            if v.trim().is_empty() {
                return Err(format!("{k} is empty; say it for the technical file"));
            }
        }
        for t in Threat::ALL {
            match self.threats.get(&t) {
                None => {
                    return Err(format!(
                        "threat `{}` is not addressed: add [threats.{}] with in_scope = true, or in_scope = false \
                         and a reason",
                        t.key(),
                        t.key()
                    ));
                }
                Some(sc) if !sc.in_scope && sc.reason.trim().is_empty() => {
                    return Err(format!(
                        "threat `{}` is out of scope without a reason: add reason = \"...\"",
                        t.key()
                    ));
                }
                _ => {}
            }
        }
        let (defaults, _) = default_families(s.criticality);
        let (chosen, _) = self.families();
        if chosen != defaults && self.methods.rationale.trim().is_empty() {
            return Err(
                "[methods] departs from the criticality tier's defaults: add rationale = \"...\" saying why"
                    .into(),
            );
        }
        if s.criticality >= Criticality::High && !chosen.contains(&MethodFamily::Formal) {
            return Err(format!(
                "criticality `{}` requires a formal method: set [methods] formal = true",
                s.criticality.name()
            ));
        }
        if !(self.budgets.check_time_s.is_finite() && self.budgets.check_time_s > 0.0) {
            return Err(format!(
                "budgets.check_time_s must be a positive number of seconds, got {}",
                self.budgets.check_time_s
            ));
        }
        let d = &self.domain;
        let n_lo = d.lower.as_ref().map(Vec::len);
        let n_hi = d.upper.as_ref().map(Vec::len);
        if n_lo != n_hi {
            return Err(
                "domain.lower and domain.upper must be given together, with equal lengths".into(),
            );
        }
        if let (Some(lo), Some(hi)) = (&d.lower, &d.upper) {
            for (i, (l, h)) in lo.iter().zip(hi).enumerate() {
                if !(l.is_finite() && h.is_finite() && l <= h) {
                    return Err(format!(
                        "domain range of feature {i} is [{l}, {h}]: need finite lower <= upper"
                    ));
                }
            }
        }
        for (name, list) in [("domain.linf", &d.linf), ("domain.l2", &d.l2)] {
            if list.iter().any(|e| !(e.is_finite() && *e >= 0.0)) {
                return Err(format!("{name} must hold finite, non-negative budgets"));
            }
        }
        if let Some(sem) = &d.semantic {
            for (k, v) in [
                ("brightness", sem.brightness),
                ("contrast", sem.contrast),
                ("noise", sem.noise),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!(
                        "domain.semantic.{k} must be finite and non-negative, got {v}"
                    ));
                }
            }
        }
        let b = &self.budgets;
        if b.attack_steps == 0 || b.attack_restarts == 0 || b.square_queries == 0 {
            return Err(
                "budgets.attack_steps, attack_restarts and square_queries must be at least 1"
                    .into(),
            );
        }
        if !(b.smoothing_sigma.is_finite() && b.smoothing_sigma > 0.0) {
            return Err(format!(
                "budgets.smoothing_sigma must be a positive number, got {}",
                b.smoothing_sigma
            ));
        }
        if b.smoothing_n == 0 || b.smoothing_n0 == 0 {
            return Err("budgets.smoothing_n and smoothing_n0 must be at least 1".into());
        }
        if !(b.alpha > 0.0 && b.alpha < 1.0) {
            return Err(format!("budgets.alpha must be in (0, 1), got {}", b.alpha));
        }
        if b.test_points == Some(0) {
            return Err("budgets.test_points must be at least 1 (or omitted: all points)".into());
        }
        let data = &self.data;
        if data.file.is_some() {
            if !data.points.is_empty() || data.labels.is_some() {
                return Err(
                    "give the test set either inline (data.points, data.labels) or as data.file (with \
                     data.labels_file), not both"
                        .into(),
                );
            }
        } else if data.labels_file.is_some()
            || data.scale.is_some()
            || !data.mean.is_empty()
            || !data.std.is_empty()
            || data.layout.is_some()
        {
            return Err(
                "data.labels_file, scale, mean, std and layout describe data.file, which is not given".into(),
            );
        }
        if let Some([lo, hi]) = data.range
            && !(lo.is_finite() && hi.is_finite() && lo < hi)
        {
            return Err(format!("data.range is [{lo}, {hi}]: need finite lo < hi"));
        }
        let npts = self.data.points.len();
        if let Some(first) = self.data.points.first() {
            for (i, p) in self.data.points.iter().enumerate() {
                if p.len() != first.len() || p.iter().any(|v| !v.is_finite()) {
                    return Err(format!(
                        "data.points[{i}] must have {} finite values like data.points[0]",
                        first.len()
                    ));
                }
            }
        }
        if let Some(labels) = &self.data.labels
            && labels.len() != npts
        {
            return Err(format!(
                "data.labels has {} entries for {npts} points",
                labels.len()
            ));
        }
        if self.properties.is_empty() {
            return Err("no [[property]]: add at least one".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.properties {
            let id = &p.id;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "property id `{id}`: use letters, digits, `-` and `_` only"
                ));
            }
            if !seen.insert(id.clone()) {
                return Err(format!("property id `{id}` is used twice"));
            }
            if p.criterion.trim().is_empty() {
                return Err(format!("property `{id}`: criterion is empty"));
            }
            if !(0.0..=1.0).contains(&p.min_proved_fraction) {
                return Err(format!(
                    "property `{id}`: min_proved_fraction must be in [0, 1]"
                ));
            }
            for t in &p.threats {
                if !self.threats.get(t).is_some_and(|s| s.in_scope) {
                    return Err(format!(
                        "property `{id}` addresses threat `{}`, which the plan marks out of scope",
                        t.key()
                    ));
                }
            }
            // With a data file the number of points is known once it is read (checked by the run).
            if let Some(idx) = &p.points
                && data.file.is_none()
                && let Some(bad) = idx.iter().find(|&&i| i >= npts)
            {
                return Err(format!(
                    "property `{id}`: point index {bad} is out of range (data has {npts} points)"
                ));
            }
            if p.eps.iter().any(|e| !(e.is_finite() && *e >= 0.0)) {
                return Err(format!(
                    "property `{id}`: eps must be finite and non-negative"
                ));
            }
            let local = matches!(
                p.kind,
                PropertyKind::Stability | PropertyKind::Sensitivity | PropertyKind::Relevance
            );
            for (name, v) in [
                ("min_robust_accuracy", p.min_robust_accuracy),
                ("min_certified_accuracy", p.min_certified_accuracy),
                ("max_accuracy_drop", p.max_accuracy_drop),
            ] {
                if let Some(v) = v
                    && !(0.0..=1.0).contains(&v)
                {
                    return Err(format!(
                        "property `{id}`: {name} must be in [0, 1], got {v}"
                    ));
                }
            }
            if p.perturbation == Perturbation::Corruption {
                if p.kind != PropertyKind::Stability {
                    return Err(format!(
                        "property `{id}`: perturbation = \"corruption\" is for stability properties"
                    ));
                }
                if d.corruptions.is_empty() {
                    return Err(format!(
                        "property `{id}`: perturbation = \"corruption\" needs domain.corruptions = [...]"
                    ));
                }
            }
            let (chosen, _) = self.families();
            if data.file.is_some()
                && local
                && p.points.is_none()
                && p.wants(MethodFamily::Formal)
                && chosen.contains(&MethodFamily::Formal)
                && p.perturbation != Perturbation::Corruption
            {
                return Err(format!(
                    "property `{id}`: with a data file, formal checks need points = [...] (indices into the test \
                     set): a proof per test point of the whole set is rarely affordable"
                ));
            }
            if local && npts == 0 && data.file.is_none() {
                return Err(format!(
                    "property `{id}` ({}) needs reference points: add data.points",
                    p.kind.name()
                ));
            }
            match p.kind {
                PropertyKind::Stability => {
                    if p.perturbation == Perturbation::Corruption {
                        // Severities 1–5 of the domain's corruptions: no ε.
                    } else if p.perturbation == Perturbation::Semantic {
                        if d.semantic.is_none() {
                            return Err(format!(
                                "property `{id}`: perturbation = \"semantic\" needs [domain.semantic]"
                            ));
                        }
                    } else if self.eps_for(p).is_empty() {
                        return Err(format!(
                            "property `{id}`: no budget: give eps = [...] or domain.{}",
                            if p.norm == Norm::L2 { "l2" } else { "linf" }
                        ));
                    }
                }
                PropertyKind::Sensitivity => {
                    if self.eps_for(p).is_empty() {
                        return Err(format!("property `{id}`: no budget: give eps = [...]"));
                    }
                    if !p
                        .max_output_change
                        .is_some_and(|v| v.is_finite() && v >= 0.0)
                    {
                        return Err(format!(
                            "property `{id}`: sensitivity needs max_output_change = <non-negative number>"
                        ));
                    }
                }
                PropertyKind::Relevance => {
                    if p.irrelevant_features.is_empty() {
                        return Err(format!(
                            "property `{id}`: relevance needs irrelevant_features = [...]"
                        ));
                    }
                    if d.lower.is_none() {
                        return Err(format!(
                            "property `{id}`: relevance varies features over their domain range: add \
                             domain.lower and domain.upper"
                        ));
                    }
                }
                PropertyKind::Reachability => {
                    let by_range = p.output.is_some();
                    if p.vnnlib.is_some() == by_range {
                        return Err(format!(
                            "property `{id}`: reachability needs either vnnlib = \"file\" or output = <index> \
                             with output_min/output_max"
                        ));
                    }
                    if by_range {
                        if p.output_min.is_none() && p.output_max.is_none() {
                            return Err(format!(
                                "property `{id}`: give output_min and/or output_max"
                            ));
                        }
                        if d.lower.is_none() {
                            return Err(format!(
                                "property `{id}`: an output range is checked over the domain: add \
                                 domain.lower and domain.upper"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The budgets of a stability or sensitivity property: its own, else the domain's of its norm.
    pub fn eps_for(&self, p: &PropertySpec) -> Vec<f64> {
        if !p.eps.is_empty() {
            return p.eps.clone();
        }
        match p.norm {
            Norm::Linf => self.domain.linf.clone(),
            Norm::L2 => self.domain.l2.clone(),
        }
    }

    /// The point indices of a local property.
    pub fn points_for(&self, p: &PropertySpec) -> Vec<usize> {
        p.points
            .clone()
            .unwrap_or_else(|| (0..self.data.points.len()).collect())
    }
}

/// The JSON Schema of the plan (the TOML file's structure), pretty-printed with a final newline.
pub fn plan_schema_json() -> String {
    let schema = schemars::schema_for!(Plan);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
