//! `nncert assess`, `keygen`, `sign`, `verify-report`: runs an assessment plan through the engine registry,
//! keeps resumable state, writes evidence.json, report.html and report.md, applies the CI gate, and signs and
//! verifies report folders.
//!
//! Resumability: after each finished check the whole state file (`DIR/state.jsonl`: a header line, then one
//! evidence record per line) is rewritten atomically, so an interruption (Ctrl-C, crash) loses at most the
//! check in progress; a re-run with the same plan and model skips the recorded checks.

use crate::io::write_atomically;
use anyhow::{Context, Result, bail};
use ndarray::Array2;
use nncert_model::eval::Evaluator;
use nncert_model::ir::{Linear, Op};
use nncert_model::{Graph, GraphBuilder};
use nncert_report::audit;
use nncert_report::evidence::{
    Artifact, Audit, Budget, Completeness, CounterexampleData, Determinism, EvidenceFile,
    EvidenceRecord, Figure, MethodFamily, MethodInfo, NotRun, ProofScope, SCHEMA_VERSION, Series,
    SeriesKind, Soundness, Timing, Tool, Verdict,
};
use nncert_report::gate;
use nncert_report::plan::{Norm, Perturbation, Plan, PropertyKind};
use nncert_spec::{Case, Conjunction, InputBox, LinearConstraint, OutputCondition, Property};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The state file's name inside the output folder.
pub const STATE_FILE: &str = "state.jsonl";

/// First line of the state file: what the recorded checks were computed from.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct StateHeader {
    nncert_state: u32,
    plan_sha256: String,
    model_sha256: String,
    started: String,
}

/// One unit of work: a property instance (a point, a budget) that one engine answers with one record.
struct Check {
    id: String,
    prop: usize,
    description: String,
    /// The property in the (possibly transformed) network's input space.
    property: Property,
    /// Which network to run: the model, or the model with the semantic transformation prepended.
    transformed: Option<usize>,
    /// The reference point (original input space), for counterexample display.
    reference: Option<Vec<f64>>,
    /// For L2 checks, the L2 radius a counterexample must respect (the box is the L∞ ball around it).
    l2: Option<f64>,
    scope: ProofScope,
    /// Figures that identify the check (point index, budget), for derived charts.
    figures: Vec<Figure>,
}

/// One unit of work of any engine: a formal check, or a test-set measurement of one property.
enum Job {
    /// A property instance answered by the formal engine.
    Formal(Box<Check>),
    /// Robust accuracy under attack at each ε of a stability property (empirical).
    Attack { prop: usize },
    /// Accuracy drop under the domain's corruptions (empirical).
    Corruption { prop: usize },
    /// Randomized smoothing certificates on the test set (statistical).
    Smoothing { prop: usize },
}

impl Job {
    fn id(&self, plan: &Plan) -> String {
        match self {
            Job::Formal(c) => c.id.clone(),
            Job::Attack { prop } => format!("{}/attack", plan.properties[*prop].id),
            Job::Corruption { prop } => format!("{}/corruptions", plan.properties[*prop].id),
            Job::Smoothing { prop } => format!("{}/smoothing", plan.properties[*prop].id),
        }
    }
}

/// An engine of the registry: the method family it belongs to and how it answers a job.
trait Engine {
    fn family(&self) -> MethodFamily;
    fn supports(&self, job: &Job) -> bool;
    fn run(&self, job: &Job, ctx: &EngineContext) -> Result<EvidenceRecord>;
}

/// What engines share: the plan, the model, its transformations, the test set.
struct EngineContext {
    /// The plan with a data file's points and the data range filled in (what the checks were built from).
    plan: Plan,
    graph: Graph,
    /// Semantic transforms: (graph, reference point index).
    transformed: Vec<(Graph, Vec<f64>)>,
    /// The test points of the empirical and statistical engines (the first `budgets.test_points`).
    test: Option<nncert_data::Dataset>,
    /// `plan.model.path (SHA-256 …)`, for scope texts.
    model_desc: String,
}

/// The engines this build has: each returns [`EvidenceRecord`]s for the jobs of its family.
fn registry() -> Vec<Box<dyn Engine>> {
    vec![
        Box::new(FormalEngine),
        Box::new(EmpiricalEngine),
        Box::new(StatisticalEngine),
    ]
}

/// nncert-verify: CROWN bounds, falsifier, input-splitting branch-and-bound.
struct FormalEngine;

impl Engine for FormalEngine {
    fn family(&self) -> MethodFamily {
        MethodFamily::Formal
    }
    fn supports(&self, job: &Job) -> bool {
        matches!(job, Job::Formal(_))
    }
    fn run(&self, job: &Job, ctx: &EngineContext) -> Result<EvidenceRecord> {
        let Job::Formal(check) = job else {
            bail!("the formal engine was given a job of another family");
        };
        let p = &ctx.plan.properties[check.prop];
        let graph = match check.transformed {
            Some(t) => &ctx.transformed[t].0,
            None => &ctx.graph,
        };
        let opts = nncert_verify::VerifyOptions {
            timeout: Duration::from_secs_f64(ctx.plan.budgets.check_time_s),
            seed: ctx.plan.budgets.seed,
            // LP leaves for ReLU splitting when HiGHS is built in (rigorous; makes that search complete).
            leaf_solver: crate::milp_cmd::leaf_solver(graph, &check.property, None)?,
            ..Default::default()
        };
        let started = audit::now_utc();
        let t0 = Instant::now();
        let result = nncert_verify::verify(graph, &check.property, &opts);
        let elapsed = t0.elapsed().as_secs_f64();
        let completeness = if nncert_verify::search_is_complete(graph, &check.property, &opts) {
            Completeness::Complete
        } else {
            Completeness::Incomplete
        };
        let mut counterexample = None;
        let mut scope = check.scope.clone();
        let (verdict, name, reason) = match &result.verdict {
            nncert_verify::Verdict::Unsat { method } => (
                Verdict::Proved,
                // The short name for tables; the full description (with the rounding treatment) is the reason.
                method.split(" (").next().unwrap_or(method).to_string(),
                format!("no input of the region reaches the bad outputs: proved by {method}"),
            ),
            nncert_verify::Verdict::Sat(c) => {
                // For semantic checks the counterexample is in parameter space: map it to the input it produces.
                let input = match check.transformed {
                    Some(t) => apply_semantic(&ctx.transformed[t].1, &c.input),
                    None => c.input.clone(),
                };
                let outside_l2 = match (check.l2, &check.reference) {
                    (Some(r), Some(x0)) => {
                        let d: f64 = input
                            .iter()
                            .zip(x0)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f64>()
                            .sqrt();
                        (d > r).then_some(d)
                    }
                    _ => None,
                };
                let data = CounterexampleData {
                    input,
                    input_shape: ctx.graph.input().shape.iter().map(|&d| d as u64).collect(),
                    reference: check.reference.clone(),
                    output: c.output_f64.clone(),
                    margin: c.margin_f64,
                };
                if let Some(d) = outside_l2 {
                    // The formal engine searched the L∞ box around the L2 ball: this point is not in the ball.
                    (
                        Verdict::Inconclusive,
                        "falsifier on the enclosing L∞ box".to_string(),
                        format!(
                            "the violating input found is at L2 distance {d:.4e} > ε: outside the L2 ball, so \
                             neither proof nor counterexample for the L2 property"
                        ),
                    )
                } else {
                    scope.holds_for =
                        "the single input shown (a counterexample disproves the property for the \
                                       whole region)"
                            .into();
                    counterexample = Some(data);
                    (
                        Verdict::Counterexample,
                        "falsifier / branch-and-bound, counterexample re-executed in f32 and f64"
                            .to_string(),
                        format!(
                            "input in the region with output in the bad region (margin {:.3e} in f64, {:.3e} in \
                             f32)",
                            c.margin_f64, c.margin_f32
                        ),
                    )
                }
            }
            nncert_verify::Verdict::Unknown | nncert_verify::Verdict::Timeout => (
                Verdict::Inconclusive,
                "CROWN bounds, falsifier, input-splitting branch-and-bound".to_string(),
                format!(
                    "{} after {:.1} s: neither proved nor refuted (best falsifier margin {:.3e}, {} sub-domains)",
                    result.verdict.word(),
                    elapsed,
                    result.best_margin,
                    result.domains
                ),
            ),
        };
        Ok(EvidenceRecord {
            check_id: check.id.clone(),
            property_id: p.id.clone(),
            kind: p.kind,
            threats: p.threats.clone(),
            description: check.description.clone(),
            method: MethodInfo {
                family: MethodFamily::Formal,
                engine: "formal".into(),
                name,
                completeness,
                soundness: Soundness::SoundReal,
                determinism: Determinism::Deterministic,
            },
            budget: Budget {
                time_s: Some(ctx.plan.budgets.check_time_s),
                samples: None,
                seed: Some(ctx.plan.budgets.seed),
            },
            verdict,
            reason,
            scope,
            counterexample,
            figures: check.figures.clone(),
            series: vec![],
            acceptance: None,
            timing: Timing {
                started,
                finished: audit::now_utc(),
                elapsed_s: elapsed,
            },
            prev_hash: String::new(),
            hash: String::new(),
        })
    }
}

/// The plan the checks are built from, and the test set of the empirical and statistical engines.
///
/// With `data.file`, the file is read with the declared preprocessing; its rows become the reference points of the
/// formal checks (selected by each property's `points`) and the data range becomes the domain range when the plan
/// gives none. With inline points, they are the test set (labels: the plan's, else the model's predictions).
fn test_set(
    plan: &Plan,
    plan_path: &Path,
    graph: &Graph,
) -> Result<(Plan, Option<nncert_data::Dataset>)> {
    let mut eff = plan.clone();
    let n = graph.input_size();
    let d = &plan.data;
    let range = d.range.map(|[lo, hi]| (lo, hi));
    let data = if let Some(file) = &d.file {
        let layout = match &d.layout {
            Some(l) => l.parse().map_err(|e: String| {
                anyhow::anyhow!("{}: data.layout: {e}", plan_path.display())
            })?,
            None => nncert_data::Layout::Nchw,
        };
        let pre = nncert_data::Preprocess {
            scale: d.scale,
            mean: d.mean.clone(),
            std: d.std.clone(),
            layout,
            range,
            label_column: -1,
        };
        let src = nncert_data::Source::parse(&Plan::resolve(plan_path, file).to_string_lossy());
        let labels = d
            .labels_file
            .as_ref()
            .map(|l| nncert_data::Source::parse(&Plan::resolve(plan_path, l).to_string_lossy()));
        let shape: Vec<usize> = graph.input().shape.iter().skip(1).copied().collect();
        let ds = nncert_data::load(&src, labels.as_ref(), &pre, Some(&shape))
            .with_context(|| format!("{}: data.file", plan_path.display()))?;
        ds.check_model(n, graph.output_size())
            .with_context(|| format!("{}: data.file", plan_path.display()))?;
        for p in &plan.properties {
            if let Some(bad) = p
                .points
                .as_ref()
                .and_then(|idx| idx.iter().find(|&&i| i >= ds.len()))
            {
                bail!(
                    "{}: property `{}`: point index {bad} is out of range ({} has {} points)",
                    plan_path.display(),
                    p.id,
                    file,
                    ds.len()
                );
            }
        }
        eff.data.points =
            ds.x.rows()
                .into_iter()
                .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                .collect();
        eff.data.labels = Some(ds.labels.clone());
        if eff.domain.lower.is_none() && ds.lower.iter().chain(&ds.upper).all(|v| v.is_finite()) {
            eff.domain.lower = Some(ds.lower.iter().map(|&v| f64::from(v)).collect());
            eff.domain.upper = Some(ds.upper.iter().map(|&v| f64::from(v)).collect());
        }
        ds
    } else if !d.points.is_empty() {
        if d.points[0].len() != n {
            bail!(
                "{}: data.points have {} values, the model has {n} inputs",
                plan_path.display(),
                d.points[0].len()
            );
        }
        let x = Array2::from_shape_fn((d.points.len(), n), |(i, j)| d.points[i][j] as f32);
        let labels = match &d.labels {
            Some(l) => l.clone(),
            None => nncert_empirical::attack::predictions(
                &nncert_empirical::Model::new(graph)?,
                x.view(),
            )?,
        };
        let (lower, upper) = match (&plan.domain.lower, &plan.domain.upper) {
            (Some(lo), Some(hi)) => (
                lo.iter().map(|&v| v as f32).collect(),
                hi.iter().map(|&v| v as f32).collect(),
            ),
            _ => (vec![f32::NEG_INFINITY; n], vec![f32::INFINITY; n]),
        };
        let ds = nncert_data::Dataset {
            x,
            labels,
            shape: graph.input().shape.iter().skip(1).copied().collect(),
            lower,
            upper,
            origin: format!("{} [data] points", plan_path.display()),
        };
        ds.check_model(n, graph.output_size())
            .with_context(|| format!("{}: data.labels", plan_path.display()))?;
        ds
    } else {
        return Ok((eff, None));
    };
    let k = plan
        .budgets
        .test_points
        .unwrap_or(data.len())
        .min(data.len());
    let test = nncert_data::Dataset {
        x: data.x.slice(ndarray::s![..k, ..]).to_owned(),
        labels: data.labels[..k].to_vec(),
        ..data
    };
    Ok((eff, Some(test)))
}

fn record_base(
    ctx: &EngineContext,
    id: String,
    prop: usize,
    description: String,
    method: MethodInfo,
) -> EvidenceRecord {
    let p = &ctx.plan.properties[prop];
    EvidenceRecord {
        check_id: id,
        property_id: p.id.clone(),
        kind: p.kind,
        threats: p.threats.clone(),
        description,
        method,
        budget: Budget::default(),
        verdict: Verdict::Inconclusive,
        reason: String::new(),
        scope: ProofScope {
            holds_for: String::new(),
            under: String::new(),
            not_covered: String::new(),
        },
        counterexample: None,
        figures: vec![],
        series: vec![],
        acceptance: None,
        timing: Timing {
            started: audit::now_utc(),
            finished: String::new(),
            elapsed_s: 0.0,
        },
        prev_hash: String::new(),
        hash: String::new(),
    }
}

fn test_of<'a>(ctx: &'a EngineContext, what: &str) -> Result<&'a nncert_data::Dataset> {
    ctx.test.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "{what} needs a test set: give data.file (with data.labels_file) or data.points"
        )
    })
}

/// nncert-empirical: attacks (robust accuracy per ε) and corruptions (accuracy drop) on the test points.
/// An attack can refute stability at a point (a confirmed adversarial example) but never prove it.
struct EmpiricalEngine;

impl Engine for EmpiricalEngine {
    fn family(&self) -> MethodFamily {
        MethodFamily::Empirical
    }
    fn supports(&self, job: &Job) -> bool {
        matches!(job, Job::Attack { .. } | Job::Corruption { .. })
    }
    fn run(&self, job: &Job, ctx: &EngineContext) -> Result<EvidenceRecord> {
        match job {
            Job::Attack { prop } => run_attack(*prop, job.id(&ctx.plan), ctx),
            Job::Corruption { prop } => run_corruptions(*prop, job.id(&ctx.plan), ctx),
            _ => bail!("the empirical engine was given a job of another family"),
        }
    }
}

fn run_attack(prop: usize, id: String, ctx: &EngineContext) -> Result<EvidenceRecord> {
    let plan = &ctx.plan;
    let p = &plan.properties[prop];
    let data = test_of(ctx, &format!("property `{}` (empirical)", p.id))?;
    let t0 = Instant::now();
    let model = nncert_empirical::Model::new(&ctx.graph)?;
    let b = &plan.budgets;
    let (kind, kind_name) = match plan.methods.attack {
        nncert_report::plan::Attack::Ensemble => (
            nncert_empirical::AttackKind::Ensemble,
            "attack ensemble (FGSM, PGD, APGD-CE, APGD-DLR, APGD-T, Square)",
        ),
        nncert_report::plan::Attack::Pgd => (nncert_empirical::AttackKind::Pgd, "PGD attack"),
    };
    let (norm, norm_name) = match p.norm {
        Norm::Linf => (nncert_empirical::Norm::Linf, "L∞"),
        Norm::L2 => (nncert_empirical::Norm::L2, "L2"),
    };
    let opts = nncert_empirical::AttackOptions {
        kind,
        norm,
        steps: b.attack_steps,
        restarts: b.attack_restarts,
        queries: b.square_queries,
        seed: b.seed,
        ..Default::default()
    };
    let eps = plan.eps_for(p);
    let eps32: Vec<f32> = eps.iter().map(|&e| e as f32).collect();
    let clean_pred = nncert_empirical::attack::predictions(&model, data.x.view())?;
    let clean = nncert_empirical::metrics::Accuracy::of(&clean_pred, &data.labels);
    let curve = nncert_empirical::attack::robustness_curve(&model, data, &eps32, &opts, &|_| {})?;
    let mut rec = record_base(
        ctx,
        id,
        prop,
        format!(
            "{} test points, {norm_name} ε ∈ {{{}}}",
            data.len(),
            eps.iter()
                .map(|e| fmt_eps(*e))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        MethodInfo {
            family: MethodFamily::Empirical,
            engine: "empirical".into(),
            name: kind_name.into(),
            completeness: Completeness::Incomplete,
            soundness: Soundness::Unsound,
            determinism: Determinism::Deterministic,
        },
    );
    rec.figures.push(fig("test_points", data.len() as f64));
    rec.figures.push(fig("clean_accuracy", clean.accuracy));
    rec.figures
        .push(fig("clean_accuracy_ci95_low", clean.ci95.0));
    rec.figures
        .push(fig("clean_accuracy_ci95_high", clean.ci95.1));
    let mut evaluations = 0;
    let mut points = vec![[0.0, clean.accuracy]];
    for (e, r) in eps.iter().zip(&curve) {
        let e = fmt_eps(*e);
        rec.figures
            .push(fig(&format!("robust_accuracy@{e}"), r.robust_accuracy));
        rec.figures
            .push(fig(&format!("robust_accuracy@{e}_ci95_low"), r.ci95.0));
        rec.figures
            .push(fig(&format!("robust_accuracy@{e}_ci95_high"), r.ci95.1));
        evaluations += r.evaluations;
    }
    let mut by_eps: Vec<(f64, f64)> = eps
        .iter()
        .copied()
        .zip(curve.iter().map(|r| r.robust_accuracy))
        .collect();
    by_eps.sort_by(|a, b| a.0.total_cmp(&b.0));
    points.extend(
        by_eps
            .iter()
            .filter(|(e, _)| *e > 0.0)
            .map(|&(e, a)| [e, a]),
    );
    rec.series.push(Series {
        name: format!("{} ({} attack)", p.id, kind.name()),
        kind: SeriesKind::RobustAccuracyVsEps,
        x_label: format!("ε ({norm_name})"),
        y_label: "robust accuracy".into(),
        points,
    });
    // The counterexample shown: a confirmed adversarial example of a correctly classified point, at the
    // smallest ε where one was found.
    let mut order: Vec<usize> = (0..eps.len()).collect();
    order.sort_by(|&a, &b| eps[a].total_cmp(&eps[b]));
    // The f32 confirmation of the attack is re-done in f64, as for formal counterexamples: only an input that
    // is misclassified in both is shown.
    let eval64 = Evaluator::<f64>::new(&ctx.graph);
    let mut found = None;
    'outer: for &k in &order {
        for o in &curve[k].samples {
            if o.broken
                && o.clean_pred == o.label
                && let Some(adv) = &o.adv
            {
                let x: Vec<f64> = adv.iter().map(|&v| f64::from(v)).collect();
                let y = eval64.forward(Array2::from_shape_vec((1, x.len()), x.clone())?.view())?;
                let out: Vec<f64> = y.iter().copied().collect();
                let other = out
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != o.label)
                    .map(|(_, &v)| v)
                    .fold(f64::NEG_INFINITY, f64::max);
                let margin = out[o.label] - other;
                if margin <= 0.0 {
                    found = Some((k, o.index, o.label, x, out, margin));
                    break 'outer;
                }
            }
        }
    }
    let worst = curve
        .iter()
        .map(|r| r.robust_accuracy)
        .fold(f64::INFINITY, f64::min);
    rec.acceptance = p.min_robust_accuracy.map(|t| worst >= t);
    let scope_under = format!(
        "the network in {} executed in f32 by nncert's evaluator; adversarial examples are confirmed by \
         re-execution; inputs clipped to the data range",
        ctx.model_desc
    );
    if let Some((k, i, label, x, out, margin)) = found {
        rec.counterexample = Some(CounterexampleData {
            input: x,
            input_shape: ctx.graph.input().shape.iter().map(|&d| d as u64).collect(),
            reference: Some(data.x.row(i).iter().map(|&v| f64::from(v)).collect()),
            margin,
            output: out,
        });
        rec.verdict = Verdict::Counterexample;
        rec.reason = format!(
            "the attack found confirmed adversarial examples (the one shown: test point {i}, label {label}, \
             ε = {}); robust accuracy {} (clean {:.3}): an upper bound, a stronger attack can only lower it",
            fmt_eps(eps[k]),
            curve_text(&eps, &curve),
            clean.accuracy
        );
        rec.scope.holds_for = format!(
            "the counterexample: stability fails at test point {i} for ε = {} (one input disproves it for the \
             whole ball); the robust accuracy figures: the {} test points only",
            fmt_eps(eps[k]),
            data.len()
        );
    } else {
        rec.reason = format!(
            "no adversarial example found (robust accuracy {}, clean {:.3}): testing cannot prove robustness",
            curve_text(&eps, &curve),
            clean.accuracy
        );
        rec.scope.holds_for = format!(
            "the {} test points and the attacks run; an upper bound on their robust accuracy",
            data.len()
        );
    }
    rec.scope.under = scope_under;
    rec.scope.not_covered =
        "no proof: points where no attack succeeded may still have adversarial examples; \
         other inputs than the test points; other perturbation kinds"
            .into();
    rec.budget = Budget {
        time_s: None,
        samples: Some(evaluations),
        seed: Some(b.seed),
    };
    rec.timing.elapsed_s = t0.elapsed().as_secs_f64();
    rec.timing.finished = audit::now_utc();
    Ok(rec)
}

fn curve_text(eps: &[f64], curve: &[nncert_empirical::attack::EpsResult]) -> String {
    eps.iter()
        .zip(curve)
        .map(|(e, r)| {
            format!(
                "{:.3} at ε = {} (95% CI {:.3}–{:.3})",
                r.robust_accuracy,
                fmt_eps(*e),
                r.ci95.0,
                r.ci95.1
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_corruptions(prop: usize, id: String, ctx: &EngineContext) -> Result<EvidenceRecord> {
    use nncert_empirical::corrupt;
    let plan = &ctx.plan;
    let p = &plan.properties[prop];
    let data = test_of(ctx, &format!("property `{}` (corruptions)", p.id))?;
    let t0 = Instant::now();
    let known: Vec<corrupt::Corruption> = corrupt::IMAGE
        .iter()
        .chain(&corrupt::TABULAR)
        .copied()
        .collect();
    let mut set = Vec::new();
    for name in &plan.domain.corruptions {
        match known.iter().find(|c| c.name() == name) {
            Some(c) => set.push(*c),
            None => bail!(
                "domain.corruptions: unknown corruption `{name}` (known: {})",
                known
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let model = nncert_empirical::Model::new(&ctx.graph)?;
    let rep = corrupt::evaluate(&model, data, &set, plan.budgets.seed, &|_| {})?;
    let mut rec = record_base(
        ctx,
        id,
        prop,
        format!(
            "{} test points under {} at severities 1–5",
            data.len(),
            plan.domain.corruptions.join(", ")
        ),
        MethodInfo {
            family: MethodFamily::Empirical,
            engine: "empirical".into(),
            name: "corruption benchmark".into(),
            completeness: Completeness::Incomplete,
            soundness: Soundness::Unsound,
            determinism: Determinism::Deterministic,
        },
    );
    let mean_drop =
        rep.rows.iter().map(|r| r.drop.absolute).sum::<f64>() / rep.rows.len().max(1) as f64;
    rec.figures.push(fig("test_points", data.len() as f64));
    rec.figures.push(fig("clean_accuracy", rep.clean.accuracy));
    rec.figures.push(fig("mean_accuracy_drop", mean_drop));
    rec.figures
        .push(fig("mean_corruption_error", rep.mean_corruption_error));
    for c in &set {
        let rows: Vec<_> = rep.rows.iter().filter(|r| r.corruption == *c).collect();
        let worst = rows
            .iter()
            .map(|r| r.accuracy.accuracy)
            .fold(f64::INFINITY, f64::min);
        rec.figures
            .push(fig(&format!("accuracy_{}_worst_severity", c.name()), worst));
        rec.series.push(Series {
            name: c.name().replace('_', " "),
            kind: SeriesKind::CorruptionDrop,
            x_label: "severity".into(),
            y_label: "accuracy drop".into(),
            points: rows
                .iter()
                .map(|r| [r.severity as f64, r.drop.absolute])
                .collect(),
        });
    }
    rec.acceptance = p.max_accuracy_drop.map(|t| mean_drop <= t);
    rec.reason = format!(
        "clean accuracy {:.3}; mean accuracy drop {:.3} over {} corruptions × 5 severities (a measurement, not a \
         proof)",
        rep.clean.accuracy,
        mean_drop,
        set.len()
    );
    rec.scope = ProofScope {
        holds_for: format!(
            "the {} test points under the named corruptions (seeded draws)",
            data.len()
        ),
        under: format!(
            "the network in {} executed in f32 by nncert's evaluator",
            ctx.model_desc
        ),
        not_covered: "other corruptions, severities, draws and inputs; adversarial perturbations"
            .into(),
    };
    rec.budget = Budget {
        time_s: None,
        samples: Some((data.len() * rep.rows.len()) as u64),
        seed: Some(plan.budgets.seed),
    };
    rec.timing.elapsed_s = t0.elapsed().as_secs_f64();
    rec.timing.finished = audit::now_utc();
    Ok(rec)
}

/// nncert-stats: randomized smoothing CERTIFY on the test points. It certifies the smoothed classifier, not the
/// network, each certificate with probability at least 1 − α.
struct StatisticalEngine;

impl Engine for StatisticalEngine {
    fn family(&self) -> MethodFamily {
        MethodFamily::Statistical
    }
    fn supports(&self, job: &Job) -> bool {
        matches!(job, Job::Smoothing { .. })
    }
    fn run(&self, job: &Job, ctx: &EngineContext) -> Result<EvidenceRecord> {
        let Job::Smoothing { prop } = job else {
            bail!("the statistical engine was given a job of another family");
        };
        let prop = *prop;
        let plan = &ctx.plan;
        let p = &plan.properties[prop];
        let data = test_of(ctx, &format!("property `{}` (smoothing)", p.id))?;
        let b = &plan.budgets;
        let t0 = Instant::now();
        let n_in = ctx.graph.input_size();
        // Smoothing certifies L2 radii; an L∞ ball of radius ε lies in the L2 ball of radius ε·√d.
        let (radii, norm_text): (Vec<f64>, String) = match p.norm {
            Norm::L2 => (plan.eps_for(p), "L2 radius ε".into()),
            Norm::Linf => (
                plan.eps_for(p)
                    .iter()
                    .map(|e| e * (n_in as f64).sqrt())
                    .collect(),
                format!("L2 radius ε·√{n_in} (the L2 ball containing the L∞ ball of radius ε)"),
            ),
        };
        let sc = nncert_stats::smoothing::SmoothedClassifier::new(
            &ctx.graph,
            b.smoothing_sigma,
            b.seed,
        )?;
        let xs = data.x.mapv(f64::from);
        let certs: Vec<nncert_stats::smoothing::Certificate> = sc
            .certify_all(xs.view(), b.smoothing_n0, b.smoothing_n, b.alpha, &|_| {})?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let acc = nncert_stats::smoothing::certified_accuracy(&certs, &data.labels, &radii)?;
        // The curve: from 0 to beyond the largest certified radius, plus the plan's radii.
        let rmax = certs
            .iter()
            .map(|c| c.radius)
            .fold(0.0, f64::max)
            .max(radii.iter().copied().fold(0.0, f64::max));
        let mut grid: Vec<f64> = (0..=20).map(|i| rmax * i as f64 / 20.0).collect();
        grid.extend(&radii);
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        let curve = nncert_stats::smoothing::certified_accuracy(&certs, &data.labels, &grid)?;
        let eps = plan.eps_for(p);
        let mut rec = record_base(
            ctx,
            job.id(plan),
            prop,
            format!(
                "{} test points, smoothing σ = {}, n0 = {}, n = {}, α = {}; certified at ε ∈ {{{}}} ({norm_text})",
                data.len(),
                b.smoothing_sigma,
                b.smoothing_n0,
                b.smoothing_n,
                b.alpha,
                eps.iter()
                    .map(|e| fmt_eps(*e))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            MethodInfo {
                family: MethodFamily::Statistical,
                engine: "statistical".into(),
                name: "randomized smoothing CERTIFY (Cohen et al. 2019)".into(),
                completeness: Completeness::Incomplete,
                soundness: Soundness::Unsound,
                determinism: Determinism::Statistical,
            },
        );
        let abstain = certs.iter().filter(|c| c.class.is_none()).count();
        rec.figures.push(fig("test_points", data.len() as f64));
        rec.figures.push(fig("sigma", b.smoothing_sigma));
        rec.figures.push(fig("alpha", b.alpha));
        rec.figures.push(fig("abstentions", abstain as f64));
        for ((e, r), a) in eps.iter().zip(&radii).zip(&acc) {
            rec.figures
                .push(fig(&format!("certified_accuracy@{}", fmt_eps(*e)), *a));
            if p.norm == Norm::Linf {
                rec.figures
                    .push(fig(&format!("l2_radius@{}", fmt_eps(*e)), *r));
            }
        }
        rec.series.push(Series {
            name: format!("{} (smoothing σ = {})", p.id, b.smoothing_sigma),
            kind: SeriesKind::CertifiedAccuracyVsRadius,
            x_label: "radius (L2)".into(),
            y_label: "certified accuracy of the smoothed classifier".into(),
            points: grid.iter().zip(&curve).map(|(&r, &a)| [r, a]).collect(),
        });
        let worst = acc.iter().copied().fold(f64::INFINITY, f64::min);
        let summary = eps
            .iter()
            .zip(&acc)
            .map(|(e, a)| format!("{a:.3} at ε = {}", fmt_eps(*e)))
            .collect::<Vec<_>>()
            .join(", ");
        match p.min_certified_accuracy {
            Some(t) if worst >= t => {
                rec.verdict = Verdict::Proved;
                rec.acceptance = Some(true);
                rec.reason = format!(
                    "certified accuracy of the smoothed classifier {summary} ≥ {t} (each certificate with probability \
                     ≥ 1 − {}); {abstain} abstentions",
                    b.alpha
                );
            }
            Some(t) => {
                rec.acceptance = Some(false);
                rec.reason = format!(
                    "certified accuracy of the smoothed classifier {summary} < {t}; {abstain} abstentions \
                     (a failed certificate is not a counterexample)"
                );
            }
            None => {
                rec.reason = format!(
                    "certified accuracy of the smoothed classifier {summary} (no threshold in the plan); {abstain} \
                     abstentions"
                );
            }
        }
        rec.scope = ProofScope {
            holds_for: format!(
                "the smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, {}² I) — not the network f: \
                 at each counted test point g returns the label within the certified radius, with probability \
                 ≥ 1 − {} per point (≥ 1 − {} for all {} points together, by the union bound)",
                b.smoothing_sigma,
                b.alpha,
                b.alpha * data.len() as f64,
                data.len()
            ),
            under: format!(
                "the network in {} executed in f32 by nncert's evaluator on Gaussian noise (not clipped to the \
                 data range); exact Clopper–Pearson bounds",
                ctx.model_desc
            ),
            not_covered: "the base network f itself (deployed without smoothing it has no certificate); other \
                          inputs than the test points; L∞ radii beyond the L2 ball stated"
                .into(),
        };
        rec.budget = Budget {
            time_s: None,
            samples: Some((b.smoothing_n + b.smoothing_n0) * data.len() as u64),
            seed: Some(b.seed),
        };
        rec.timing.elapsed_s = t0.elapsed().as_secs_f64();
        rec.timing.finished = audit::now_utc();
        Ok(rec)
    }
}

/// `x' = c·x0 + b + δ` for parameters `θ = (b, c − 1, δ_0, …)`.
fn apply_semantic(x0: &[f64], theta: &[f64]) -> Vec<f64> {
    let (b, dc) = (
        theta.first().copied().unwrap_or(0.0),
        theta.get(1).copied().unwrap_or(0.0),
    );
    x0.iter()
        .enumerate()
        .map(|(i, &x)| x + dc * x + b + theta.get(2 + i).copied().unwrap_or(0.0))
        .collect()
}

/// The model with an affine map `x = W θ + x0` prepended, `θ = (b, c − 1, δ_0..δ_{n−1})` and
/// `W = [1 | x0 | I]`: brightness `b`, contrast `c` and additive noise `δ` become input dimensions, so the
/// formal engine reasons about them exactly (a Graph transformation; no box over-approximation).
fn prepend_semantic(graph: &Graph, x0: &[f64]) -> Result<Graph> {
    let n = graph.input_size();
    let k = n + 2;
    let mut w = Array2::<f32>::zeros((n, k));
    for i in 0..n {
        w[(i, 0)] = 1.0;
        w[(i, 1)] = x0[i] as f32;
        w[(i, 2 + i)] = 1.0;
    }
    let bias = ndarray::Array1::from_iter(x0.iter().map(|&v| v as f32));
    // The f32 rounding of x0 is the model's own input type: the reference point is taken as its f32 value.
    let mut b = GraphBuilder::new("semantic_parameters", vec![1, k]);
    let lin = b.push(
        "semantic_affine",
        Op::Linear(Linear {
            weight: w,
            bias: Some(bias),
        }),
        vec![b.input_id()],
        None,
    )?;
    let orig_shape = graph.input().shape.clone();
    let entry = if orig_shape == vec![1, n] {
        lin
    } else {
        b.push("semantic_reshape", Op::Reshape, vec![lin], Some(orig_shape))?
    };
    let mut map = vec![entry; graph.nodes().len()];
    for (i, node) in graph.nodes().iter().enumerate().skip(1) {
        let inputs = node.inputs.iter().map(|j| map[j.0]).collect();
        map[i] = b.push(
            node.name.clone(),
            node.op.clone(),
            inputs,
            Some(node.shape.clone()),
        )?;
    }
    Ok(b.finish(map[graph.output_id().0]))
}

/// `Y_label − Y_j ≤ 0` for each `j ≠ label`: the decision is not (uniquely) `label`.
fn decision_change(label: usize, m: usize) -> OutputCondition {
    OutputCondition {
        disjuncts: (0..m)
            .filter(|&j| j != label)
            .map(|j| {
                let mut coeffs = vec![0.0; m];
                coeffs[label] = 1.0;
                coeffs[j] = -1.0;
                Conjunction {
                    constraints: vec![LinearConstraint {
                        coeffs,
                        rhs: 0.0,
                        strict: false,
                    }],
                }
            })
            .collect(),
    }
}

/// The box `[x − r, x + r]` rounded outward, intersected with the domain's ranges.
fn ball_box(plan: &Plan, x: &[f64], r: f64) -> Result<InputBox> {
    let mut lower: Vec<f64> = x.iter().map(|v| (v - r).next_down()).collect();
    let mut upper: Vec<f64> = x.iter().map(|v| (v + r).next_up()).collect();
    if let (Some(lo), Some(hi)) = (&plan.domain.lower, &plan.domain.upper) {
        for i in 0..x.len() {
            lower[i] = lower[i].max(lo[i]);
            upper[i] = upper[i].min(hi[i]);
            if lower[i] > upper[i] {
                bail!(
                    "feature {i} of the reference point ({}) lies outside the domain range [{}, {}] by more than \
                     the budget",
                    x[i],
                    lo[i],
                    hi[i]
                );
            }
        }
    }
    Ok(InputBox { lower, upper })
}

fn one_case(
    num_inputs: usize,
    num_outputs: usize,
    input: InputBox,
    output: OutputCondition,
) -> Property {
    Property {
        num_inputs,
        num_outputs,
        cases: vec![Case { input, output }],
    }
}

fn fig(name: &str, value: f64) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit: None,
    }
}

fn fmt_eps(e: f64) -> String {
    format!("{e}")
}

/// Expands the plan's properties into checks for the formal engine; also prepares semantic transforms.
fn build_checks(
    plan: &Plan,
    plan_path: &Path,
    graph: &Graph,
    model_desc: &str,
    transformed: &mut Vec<(Graph, Vec<f64>)>,
) -> Result<Vec<Check>> {
    let n = graph.input_size();
    let m = graph.output_size();
    if let Some(lo) = &plan.domain.lower
        && lo.len() != n
    {
        bail!(
            "{}: domain.lower has {} values, the model has {n} inputs",
            plan_path.display(),
            lo.len()
        );
    }
    if let Some(p) = plan.data.points.first()
        && p.len() != n
    {
        bail!(
            "{}: data.points have {} values, the model has {n} inputs",
            plan_path.display(),
            p.len()
        );
    }
    // Reference outputs (f64) and labels.
    let pts = &plan.data.points;
    let outputs: Vec<Vec<f64>> = if pts.is_empty() {
        vec![]
    } else {
        let x = Array2::from_shape_fn((pts.len(), n), |(i, j)| pts[i][j]);
        let y = Evaluator::<f64>::new(graph).forward(x.view())?;
        y.rows().into_iter().map(|r| r.to_vec()).collect()
    };
    let labels: Vec<usize> = match &plan.data.labels {
        Some(l) => {
            if let Some(bad) = l.iter().find(|&&c| c >= m) {
                bail!(
                    "{}: label {bad} but the model has {m} outputs",
                    plan_path.display()
                );
            }
            l.clone()
        }
        None => outputs
            .iter()
            .map(|y| {
                y.iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                    )
                    .0
            })
            .collect(),
    };
    let under = format!(
        "exact real arithmetic on the network stored in {model_desc} (f32 weights as stored; bounds carry explicit \
         floating-point error terms)"
    );
    let not_local = "inputs outside this region; other perturbation kinds; differences between a deployed runtime's \
                     floating-point execution and real arithmetic; preprocessing outside the model file";
    let mut checks = Vec::new();
    for (pi, p) in plan.properties.iter().enumerate() {
        let ctx = |what: &str| format!("{}: property `{}`: {what}", plan_path.display(), p.id);
        if !p.wants(MethodFamily::Formal) || p.perturbation == Perturbation::Corruption {
            continue;
        }
        match p.kind {
            PropertyKind::Stability if p.perturbation == Perturbation::Semantic => {
                let sem = plan.domain.semantic.clone().unwrap_or_default();
                for k in plan.points_for(p) {
                    let x0 = &pts[k];
                    let g =
                        prepend_semantic(graph, x0).with_context(|| ctx("semantic transform"))?;
                    let mut lower = vec![-sem.brightness, -sem.contrast];
                    let mut upper = vec![sem.brightness, sem.contrast];
                    lower.extend(std::iter::repeat_n(-sem.noise, n));
                    upper.extend(std::iter::repeat_n(sem.noise, n));
                    let ti = transformed.len();
                    transformed.push((g, x0.clone()));
                    checks.push(Check {
                        id: format!("{}/p{k}/semantic", p.id),
                        prop: pi,
                        description: format!(
                            "point {k} (label {}): brightness ±{}, contrast ×[{}, {}], noise ±{}",
                            labels[k],
                            sem.brightness,
                            1.0 - sem.contrast,
                            1.0 + sem.contrast,
                            sem.noise
                        ),
                        property: one_case(n + 2, m, InputBox { lower, upper }, decision_change(labels[k], m)),
                        transformed: Some(ti),
                        reference: Some(x0.clone()),
                        l2: None,
                        figures: vec![fig("point", k as f64)],
                        scope: ProofScope {
                            holds_for: format!(
                                "all inputs c·x{k} + b + δ with |b| ≤ {}, |c − 1| ≤ {}, ‖δ‖∞ ≤ {} (compiled as an \
                                 affine layer prepended to the network, with x{k} rounded to f32; not clipped to the domain ranges)",
                                sem.brightness, sem.contrast, sem.noise
                            ),
                            under: under.clone(),
                            not_covered: not_local.into(),
                        },
                    });
                }
            }
            PropertyKind::Stability | PropertyKind::Sensitivity => {
                for k in plan.points_for(p) {
                    for eps in plan.eps_for(p) {
                        let x0 = &pts[k];
                        let bx = ball_box(plan, x0, eps).with_context(|| ctx("region"))?;
                        let norm = match p.norm {
                            Norm::Linf => "L∞",
                            Norm::L2 => "L2",
                        };
                        let (output, desc, holds) = if p.kind == PropertyKind::Stability {
                            (
                                decision_change(labels[k], m),
                                format!(
                                    "point {k} (label {}), {norm} ε = {}",
                                    labels[k],
                                    fmt_eps(eps)
                                ),
                                format!(
                                    "decision stays {} for all x with ‖x − x{k}‖{} ≤ {} inside the domain ranges",
                                    labels[k],
                                    if p.norm == Norm::L2 { "₂" } else { "∞" },
                                    fmt_eps(eps)
                                ),
                            )
                        } else {
                            let delta = p.max_output_change.unwrap_or(0.0);
                            let y0 = &outputs[k];
                            let mut disjuncts = Vec::new();
                            for j in 0..m {
                                let mut c = vec![0.0; m];
                                c[j] = 1.0;
                                disjuncts.push(Conjunction {
                                    constraints: vec![LinearConstraint {
                                        coeffs: c.clone(),
                                        rhs: y0[j] - delta,
                                        strict: true,
                                    }],
                                });
                                c[j] = -1.0;
                                disjuncts.push(Conjunction {
                                    constraints: vec![LinearConstraint {
                                        coeffs: c,
                                        rhs: -(y0[j] + delta),
                                        strict: true,
                                    }],
                                });
                            }
                            (
                                OutputCondition { disjuncts },
                                format!(
                                    "point {k}, {norm} ε = {}, every output within ±{delta} of f(x{k})",
                                    fmt_eps(eps)
                                ),
                                format!(
                                    "|f_j(x) − f_j(x{k})| ≤ {delta} for every output j and all x with ‖x − x{k}‖{} ≤ {} inside the domain ranges",
                                    if p.norm == Norm::L2 { "₂" } else { "∞" },
                                    fmt_eps(eps)
                                ),
                            )
                        };
                        let l2_note = if p.norm == Norm::L2 {
                            " (proved on the enclosing L∞ box, which contains the L2 ball)"
                        } else {
                            ""
                        };
                        checks.push(Check {
                            id: format!("{}/p{k}/eps{}", p.id, fmt_eps(eps)),
                            prop: pi,
                            description: desc,
                            property: one_case(n, m, bx, output),
                            transformed: None,
                            reference: Some(x0.clone()),
                            l2: (p.norm == Norm::L2).then_some(eps),
                            figures: vec![fig("point", k as f64), fig("epsilon", eps)],
                            scope: ProofScope {
                                holds_for: format!("{holds}{l2_note}"),
                                under: under.clone(),
                                not_covered: not_local.into(),
                            },
                        });
                    }
                }
            }
            PropertyKind::Relevance => {
                let (lo, hi) = match (&plan.domain.lower, &plan.domain.upper) {
                    (Some(l), Some(h)) => (l, h),
                    _ => bail!(ctx("relevance needs domain.lower/upper")),
                };
                if let Some(bad) = p.irrelevant_features.iter().find(|&&i| i >= n) {
                    bail!(ctx(&format!(
                        "feature {bad} does not exist (the model has {n} inputs)"
                    )));
                }
                for k in plan.points_for(p) {
                    // The fixed features are rounded to f32, the model's input type: a degenerate interval at a
                    // value no f32 equals would hold no input a counterexample could be re-executed at.
                    let x0: Vec<f64> = pts[k].iter().map(|&v| f64::from(v as f32)).collect();
                    let x0 = &x0;
                    let mut b = InputBox {
                        lower: x0.clone(),
                        upper: x0.clone(),
                    };
                    for &i in &p.irrelevant_features {
                        b.lower[i] = lo[i];
                        b.upper[i] = hi[i];
                    }
                    let feats: Vec<String> = p
                        .irrelevant_features
                        .iter()
                        .map(|i| format!("X_{i}"))
                        .collect();
                    checks.push(Check {
                        id: format!("{}/p{k}", p.id),
                        prop: pi,
                        description: format!(
                            "point {k} (label {}): {} varied over the whole domain range",
                            labels[k],
                            feats.join(", ")
                        ),
                        property: one_case(n, m, b, decision_change(labels[k], m)),
                        transformed: None,
                        reference: Some(x0.clone()),
                        l2: None,
                        figures: vec![fig("point", k as f64)],
                        scope: ProofScope {
                            holds_for: format!(
                                "decision stays {} when {} take any values in their domain ranges, the other \
                                 features fixed at point {k}",
                                labels[k],
                                feats.join(", ")
                            ),
                            under: under.clone(),
                            not_covered: "other reference points; joint changes of the declared-irrelevant and \
                                          other features; inputs outside the domain ranges"
                                .into(),
                        },
                    });
                }
            }
            PropertyKind::Reachability => {
                let (property, desc, holds) = if let Some(file) = &p.vnnlib {
                    let path = Plan::resolve(plan_path, file);
                    let prop = nncert_spec::parse_file(&path)?;
                    prop.check_dims(n, m)
                        .with_context(|| ctx(&format!("{file} does not fit the model")))?;
                    (
                        prop,
                        format!("VNN-LIB property {file} ({} input boxes)", 0),
                        format!(
                            "every input box of {file}: no input reaches the output region its assertions describe"
                        ),
                    )
                } else {
                    let (lo, hi) = match (&plan.domain.lower, &plan.domain.upper) {
                        (Some(l), Some(h)) => (l.clone(), h.clone()),
                        _ => bail!(ctx("an output range needs domain.lower/upper")),
                    };
                    let j = p.output.unwrap_or(0);
                    let (a, b) = (
                        p.output_min.unwrap_or(f64::NEG_INFINITY),
                        p.output_max.unwrap_or(f64::INFINITY),
                    );
                    let prop = Property::output_range(
                        InputBox {
                            lower: lo,
                            upper: hi,
                        },
                        m,
                        j,
                        a,
                        b,
                    )
                    .map_err(|e| anyhow::anyhow!(ctx(&e.to_string())))?;
                    (
                        prop,
                        format!("Y_{j} in [{a}, {b}] over the whole domain"),
                        format!("{a} ≤ Y_{j} ≤ {b} for every input in the domain ranges"),
                    )
                };
                let desc = desc.replace(
                    " (0 input boxes)",
                    &format!(" ({} input boxes)", property.cases.len()),
                );
                checks.push(Check {
                    id: p.id.clone(),
                    prop: pi,
                    description: desc,
                    property,
                    transformed: None,
                    reference: None,
                    l2: None,
                    figures: vec![],
                    scope: ProofScope {
                        holds_for: holds,
                        under: under.clone(),
                        not_covered:
                            "inputs outside the stated region; the real-world meaning of the region"
                                .into(),
                    },
                });
            }
        }
    }
    Ok(checks)
}

fn artifact(role: &str, shown: &str, path: &Path) -> Result<Artifact> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Artifact {
        role: role.into(),
        path: shown.into(),
        sha256: audit::sha256_hex(&bytes),
        bytes: bytes.len() as u64,
    })
}

fn read_state(path: &Path, header: &StateHeader) -> Result<(String, Vec<EvidenceRecord>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((header.started.clone(), vec![]));
        }
        Err(e) => bail!("{}: cannot read: {e}", path.display()),
    };
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let old: StateHeader = serde_json::from_str(first).with_context(|| {
        format!(
            "{}: not an nncert state file (delete it to start over)",
            path.display()
        )
    })?;
    if old.plan_sha256 != header.plan_sha256 || old.model_sha256 != header.model_sha256 {
        bail!(
            "{}: holds results of a different plan or model; use another --out folder or delete the file to start \
             over",
            path.display()
        );
    }
    let rest: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let mut records = Vec::new();
    for (i, l) in rest.iter().enumerate() {
        match serde_json::from_str::<EvidenceRecord>(l) {
            Ok(r) => records.push(r),
            // A torn last line (the file cut by hand or by a full disk) loses only that check.
            Err(_) if i + 1 == rest.len() => {
                eprintln!(
                    "warning: {}: ignoring an incomplete last record",
                    path.display()
                );
            }
            Err(e) => bail!(
                "{}: record {} is corrupt: {e}; delete the file to start over",
                path.display(),
                i + 1
            ),
        }
    }
    audit::check_chain(&records)
        .map_err(|m| anyhow::anyhow!("{}: {m}; delete the file to start over", path.display()))?;
    Ok((old.started, records))
}

fn write_state(path: &Path, header: &StateHeader, records: &[EvidenceRecord]) -> Result<()> {
    let mut s = serde_json::to_string(header)?;
    s.push('\n');
    for r in records {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    write_atomically(path, s.as_bytes())
}

/// Runs `nncert assess`. Returns the exit code: 0, or [`gate::GATE_FAILED_EXIT`] with `--gate` when a
/// threshold fails.
pub fn assess(plan_path: &Path, out: &Path, use_gate: bool, junit: Option<&Path>) -> Result<u8> {
    let plan = Plan::load(plan_path)?;
    let plan_bytes = std::fs::read(plan_path)
        .with_context(|| format!("{}: cannot read", plan_path.display()))?;
    let model_path = Plan::resolve(plan_path, &plan.model.path);
    let graph = nncert_model::load_model(&model_path)?;
    let mut artifacts = vec![
        artifact("plan", &plan_path.display().to_string(), plan_path)?,
        artifact("model", &plan.model.path, &model_path)?,
    ];
    for p in &plan.properties {
        if let Some(f) = &p.vnnlib {
            artifacts.push(artifact("property", f, &Plan::resolve(plan_path, f))?);
        }
    }
    // Inline data is part of the plan (hashed with it); say so as its own artifact line.
    if !plan.data.points.is_empty() {
        let data = serde_json::to_vec(&(&plan.data.points, &plan.data.labels))?;
        artifacts.push(Artifact {
            role: "data".into(),
            path: "plan.toml [data] (inline points and labels, as JSON)".into(),
            sha256: audit::sha256_hex(&data),
            bytes: data.len() as u64,
        });
    }
    for (role, f) in [
        ("data", &plan.data.file),
        ("labels", &plan.data.labels_file),
    ] {
        if let Some(f) = f {
            let path = Plan::resolve(plan_path, f);
            // A PNG folder is not one file: its images are not hashed one by one here.
            if !path.is_dir() {
                artifacts.push(artifact(role, f, &path)?);
            }
        }
    }
    let model_sha = artifacts[1].sha256.clone();
    let model_desc = format!("{} (SHA-256 {}…)", plan.model.path, &model_sha[..16]);
    let (eff, test) = test_set(&plan, plan_path, &graph)?;
    let mut transformed = Vec::new();
    let checks = build_checks(&eff, plan_path, &graph, &model_desc, &mut transformed)?;
    let mut jobs: Vec<Job> = checks
        .into_iter()
        .map(|c| Job::Formal(Box::new(c)))
        .collect();
    for (pi, p) in plan.properties.iter().enumerate() {
        if p.kind != PropertyKind::Stability {
            continue;
        }
        if p.wants(MethodFamily::Empirical) {
            match p.perturbation {
                Perturbation::Norm => jobs.push(Job::Attack { prop: pi }),
                Perturbation::Corruption => jobs.push(Job::Corruption { prop: pi }),
                Perturbation::Semantic => {}
            }
        }
        if p.wants(MethodFamily::Statistical) && p.perturbation == Perturbation::Norm {
            jobs.push(Job::Smoothing { prop: pi });
        }
    }

    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let state_path = out.join(STATE_FILE);
    let header = StateHeader {
        nncert_state: 1,
        plan_sha256: audit::sha256_hex(&plan_bytes),
        model_sha256: model_sha.clone(),
        started: audit::now_utc(),
    };
    let (started, mut records) = read_state(&state_path, &header)?;
    let header = StateHeader {
        started: started.clone(),
        ..header
    };
    if !records.is_empty() {
        eprintln!(
            "resuming: {} finished checks in {}",
            records.len(),
            state_path.display()
        );
    }
    let (families, _) = plan.families();
    let engines = registry();
    let mut not_run = Vec::new();
    for f in &families {
        if !engines.iter().any(|e| e.family() == *f) {
            not_run.push(NotRun {
                family: *f,
                reason: format!(
                    "no {} engine in this build of nncert; the evidence of this family is missing and the report \
                     does not claim it",
                    f.name()
                ),
            });
        }
    }
    let ctx = EngineContext {
        plan: eff,
        graph,
        transformed,
        test,
        model_desc,
    };
    let active: Vec<&dyn Engine> = engines
        .iter()
        .filter(|e| families.contains(&e.family()))
        .map(|b| b.as_ref())
        .collect();
    let total = jobs
        .iter()
        .filter(|j| active.iter().any(|e| e.supports(j)))
        .count();
    let mut done = 0;
    for engine in &active {
        for job in &jobs {
            if !engine.supports(job) {
                continue;
            }
            done += 1;
            let id = job.id(&plan);
            if records
                .iter()
                .any(|r| r.check_id == id && r.method.family == engine.family())
            {
                eprintln!(
                    "[{done}/{total}] {id} ({}): already done",
                    engine.family().name()
                );
                continue;
            }
            eprint!("[{done}/{total}] {id} ({}) ... ", engine.family().name());
            let mut rec = engine.run(job, &ctx)?;
            let prev = records
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| audit::GENESIS.to_string());
            audit::seal(&mut rec, &prev);
            eprintln!("{} ({:.2} s)", rec.verdict.word(), rec.timing.elapsed_s);
            records.push(rec);
            write_state(&state_path, &header, &records)?;
        }
    }
    // Records in plan order is the order they were run in; a plan edited between runs is refused above.
    let ev = EvidenceFile {
        schema_version: SCHEMA_VERSION.into(),
        tool: Tool {
            name: "nncert".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        plan,
        audit: Audit {
            artifacts,
            seeds: active
                .iter()
                .map(|e| (e.family().name().to_string(), ctx.plan.budgets.seed))
                .collect(),
            machine: audit::machine(),
            started,
            finished: audit::now_utc(),
        },
        records,
        not_run,
    };
    let results = gate::evaluate(&ev.plan, &ev.records);
    write_outputs(out, &ev, &results)?;
    if let Some(j) = junit {
        write_atomically(
            j,
            gate::junit_xml(&ev.plan, &ev.records, &results).as_bytes(),
        )?;
    }
    let failed = gate::failure_lines(&results);
    let proved = ev
        .records
        .iter()
        .filter(|r| r.verdict == Verdict::Proved)
        .count();
    eprintln!(
        "{} checks: {proved} proved; {} of {} properties accepted; wrote {}",
        ev.records.len(),
        results.iter().filter(|g| g.passed).count(),
        results.len(),
        out.display()
    );
    for l in &failed {
        println!("{l}");
    }
    Ok(if use_gate && !failed.is_empty() {
        gate::GATE_FAILED_EXIT
    } else {
        0
    })
}

/// Writes evidence.json, report.html and report.md atomically.
fn write_outputs(out: &Path, ev: &EvidenceFile, results: &[gate::GateResult]) -> Result<()> {
    let mut json = serde_json::to_string_pretty(ev)?;
    json.push('\n');
    write_atomically(&out.join("evidence.json"), json.as_bytes())?;
    write_atomically(
        &out.join("report.html"),
        nncert_report::render::html(ev, results).as_bytes(),
    )?;
    write_atomically(
        &out.join("report.md"),
        nncert_report::render::markdown(ev, results).as_bytes(),
    )?;
    Ok(())
}

/// `nncert keygen --out KEY`: writes the secret key to KEY (mode 0600 on Unix) and the public key to KEY.pub.
pub fn keygen(out: &Path) -> Result<u8> {
    if out.exists() {
        bail!("{}: exists; refusing to overwrite a key", out.display());
    }
    let (sk, pk) = audit::keygen()?;
    write_atomically(out, format!("{sk}\n").as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}: cannot restrict permissions", out.display()))?;
    }
    let mut pub_path: PathBuf = out.as_os_str().to_owned().into();
    pub_path.as_mut_os_string().push(".pub");
    write_atomically(&pub_path, format!("{pk}\n").as_bytes())?;
    eprintln!(
        "secret key: {}\npublic key: {} ({pk})",
        out.display(),
        pub_path.display()
    );
    Ok(0)
}

/// `nncert sign DIR --key KEY`.
pub fn sign(dir: &Path, key: &Path) -> Result<u8> {
    let text = audit::sign_dir(dir, key)?;
    let path = dir.join(audit::SIGNATURE_FILE);
    write_atomically(&path, text.as_bytes())?;
    eprintln!(
        "signed {} → {}",
        audit::SIGNED_FILES.join(", "),
        path.display()
    );
    Ok(0)
}

/// Exit code of `verify-report` when the report does not verify.
pub const VERIFY_FAILED_EXIT: u8 = 5;

/// `nncert verify-report DIR --pubkey KEY.pub`: 0 if intact, [`VERIFY_FAILED_EXIT`] if tampered.
pub fn verify_report(dir: &Path, pubkey: &Path) -> Result<u8> {
    match audit::verify_dir(dir, pubkey) {
        Ok(msg) => {
            println!("{msg}");
            Ok(0)
        }
        Err(e @ nncert_report::ReportError::Tampered(_)) => {
            println!("FAILED: {e}");
            Ok(VERIFY_FAILED_EXIT)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prepended affine layer computes exactly `c·x0 + b + δ`: the transformed network at θ equals the model
    /// at `apply_semantic(x0, θ)`.
    #[test]
    fn semantic_transform_matches_the_perturbed_input() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/toy/toy.onnx");
        let graph = nncert_model::load_model(&path).expect("toy model");
        // Values exact in f32, so the f32 weights of the prepended layer hold x0 exactly.
        let x0 = [0.25, -0.5, 0.125, 0.75, -1.0];
        let g = prepend_semantic(&graph, &x0).expect("transform");
        assert_eq!(g.input_size(), 7);
        let theta = [0.03, -0.02, 0.001, -0.004, 0.0, 0.002, 0.005];
        let x = apply_semantic(&x0, &theta);
        let y_t = Evaluator::<f64>::new(&g)
            .forward(
                Array2::from_shape_vec((1, 7), theta.to_vec())
                    .expect("shape")
                    .view(),
            )
            .expect("eval");
        let y = Evaluator::<f64>::new(&graph)
            .forward(Array2::from_shape_vec((1, 5), x).expect("shape").view())
            .expect("eval");
        for (a, b) in y_t.iter().zip(y.iter()) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }
}
