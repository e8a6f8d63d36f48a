//! Renderers: a self-contained HTML report (inline CSS and SVG, no network access) and a Markdown report, both
//! built from an [`EvidenceFile`] and its gate results only, so a report can be re-rendered from evidence alone.

use crate::compliance;
use crate::evidence::{
    Completeness, Determinism, EvidenceFile, EvidenceRecord, MethodFamily, Series, SeriesKind,
    Soundness, Verdict,
};
use crate::gate::GateResult;
use crate::plan::{PropertyKind, Threat};
use crate::svg;
use std::fmt::Write as _;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escapes text for a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Short class label of a record's method, e.g. `formal · complete · sound (real) · deterministic`.
pub fn class_label(r: &EvidenceRecord) -> String {
    let c = match r.method.completeness {
        Completeness::Complete => "complete",
        Completeness::Incomplete => "incomplete",
    };
    let s = match r.method.soundness {
        Soundness::SoundReal => "sound for the real-valued network",
        Soundness::SoundFloat => "sound for floating-point execution",
        Soundness::Unsound => "no proof",
    };
    let d = match r.method.determinism {
        Determinism::Deterministic => "deterministic",
        Determinism::Statistical => "statistical",
    };
    format!("{} · {c} · {s} · {d}", r.method.family.name())
}

fn series_title(kind: SeriesKind) -> &'static str {
    match kind {
        SeriesKind::RobustAccuracyVsEps => "Robust accuracy vs perturbation budget ε",
        SeriesKind::CertifiedAccuracyVsRadius => "Certified accuracy vs radius",
        SeriesKind::CorruptionDrop => "Accuracy drop under corruption",
        SeriesKind::Other => "Other measurements",
    }
}

/// The data line of the plan section: inline points or the test set file.
fn data_text(p: &crate::plan::Plan) -> String {
    let d = &p.data;
    match &d.file {
        Some(f) => format!(
            "test set {f}{}{}",
            d.labels_file
                .as_ref()
                .map(|l| format!(", labels {l}"))
                .unwrap_or_default(),
            p.budgets
                .test_points
                .map(|n| format!("; the first {n} points for testing and smoothing"))
                .unwrap_or_default()
        ),
        None => format!(
            "{} reference points{}",
            d.points.len(),
            if d.labels.is_some() {
                ", labelled"
            } else {
                ", labels = model predictions"
            }
        ),
    }
}

/// The budgets of the families that run.
fn budget_text(p: &crate::plan::Plan, fams: &[MethodFamily]) -> String {
    let b = &p.budgets;
    let mut parts = Vec::new();
    if fams.contains(&MethodFamily::Formal) {
        parts.push(format!("formal: {} s per check", fmt_num(b.check_time_s)));
    }
    if fams.contains(&MethodFamily::Empirical) {
        parts.push(format!(
            "empirical: {} attack, {} steps × {} restarts, {} Square queries",
            match p.methods.attack {
                crate::plan::Attack::Ensemble => "ensemble",
                crate::plan::Attack::Pgd => "PGD",
            },
            b.attack_steps,
            b.attack_restarts,
            b.square_queries
        ));
    }
    if fams.contains(&MethodFamily::Statistical) {
        parts.push(format!(
            "statistical: smoothing σ = {}, n0 = {}, n = {}, α = {}",
            fmt_num(b.smoothing_sigma),
            b.smoothing_n0,
            b.smoothing_n,
            b.alpha
        ));
    }
    parts.push(format!("seed {}", b.seed));
    parts.join("; ")
}

/// Every acceptance threshold of a property, in words.
fn threshold_text(q: &crate::plan::PropertySpec) -> String {
    let mut t = Vec::new();
    if q.perturbation != crate::plan::Perturbation::Corruption && q.wants(MethodFamily::Formal) {
        t.push(format!(
            "≥ {}% of formal checks proved",
            fmt_num(q.min_proved_fraction * 100.0)
        ));
    }
    if let Some(v) = q.min_robust_accuracy {
        t.push(format!("robust accuracy ≥ {} at every ε", fmt_num(v)));
    }
    if let Some(v) = q.min_certified_accuracy {
        t.push(format!(
            "certified accuracy ≥ {} at every radius",
            fmt_num(v)
        ));
    }
    if let Some(v) = q.max_accuracy_drop {
        t.push(format!("mean accuracy drop ≤ {}", fmt_num(v)));
    }
    t.join("; ")
}

/// Series derived from formal records: for each stability property checked at two or more budgets, the
/// fraction of its points proved at each budget (certified accuracy when the plan gives true labels).
pub fn derived_series(ev: &EvidenceFile) -> Vec<Series> {
    let labelled = ev.plan.data.labels.is_some() || ev.plan.data.file.is_some();
    let mut out = Vec::new();
    for p in ev
        .plan
        .properties
        .iter()
        .filter(|p| p.kind == PropertyKind::Stability)
    {
        let mut by_eps: Vec<(f64, usize, usize)> = Vec::new();
        for r in ev
            .records
            .iter()
            .filter(|r| r.property_id == p.id && r.method.family == MethodFamily::Formal)
        {
            let Some(eps) = r
                .figures
                .iter()
                .find(|f| f.name == "epsilon")
                .map(|f| f.value)
            else {
                continue;
            };
            let proved = usize::from(r.verdict == Verdict::Proved);
            match by_eps.iter_mut().find(|e| e.0 == eps) {
                Some(e) => {
                    e.1 += proved;
                    e.2 += 1;
                }
                None => by_eps.push((eps, proved, 1)),
            }
        }
        if by_eps.len() < 2 {
            continue;
        }
        by_eps.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.push(Series {
            name: format!("{} (formal)", p.id),
            kind: SeriesKind::CertifiedAccuracyVsRadius,
            x_label: format!(
                "radius ε ({})",
                if p.norm == crate::plan::Norm::L2 {
                    "L2"
                } else {
                    "L∞"
                }
            ),
            y_label: if labelled {
                "certified accuracy".into()
            } else {
                "fraction of points proved stable".into()
            },
            points: by_eps
                .iter()
                .map(|&(e, k, n)| [e, k as f64 / n as f64])
                .collect(),
        });
    }
    out
}

/// The charts of all series in `ev` (records' and [`derived_series`]), one per series kind (kinds in a fixed
/// order), as `(title, svg)`.
pub fn charts(ev: &EvidenceFile) -> Vec<(String, String)> {
    let derived = derived_series(ev);
    let kinds = [
        SeriesKind::RobustAccuracyVsEps,
        SeriesKind::CertifiedAccuracyVsRadius,
        SeriesKind::CorruptionDrop,
        SeriesKind::Other,
    ];
    let mut out = Vec::new();
    for k in kinds {
        let all: Vec<&Series> = ev
            .records
            .iter()
            .flat_map(|r| r.series.iter())
            .chain(derived.iter())
            .filter(|s| s.kind == k)
            .collect();
        // Series on different axes (an L∞ budget of the network vs an L2 radius of a smoothed classifier) get
        // separate charts: one chart would read one as the other.
        let mut axes: Vec<(&str, &str)> = Vec::new();
        for s in &all {
            if !axes.contains(&(s.x_label.as_str(), s.y_label.as_str())) {
                axes.push((s.x_label.as_str(), s.y_label.as_str()));
            }
        }
        for &(x, y) in &axes {
            // The y label tells same-x groups apart on the chart itself; the title names the x axis.
            let group: Vec<&Series> = all
                .iter()
                .copied()
                .filter(|s| s.x_label == x && s.y_label == y)
                .collect();
            let t = if axes.len() > 1 {
                format!("{} — {x}", series_title(k))
            } else {
                series_title(k).to_string()
            };
            let svg = svg::line_chart(&t, &group);
            out.push((t, svg));
        }
    }
    out
}

/// Families that produced evidence.
fn ran(ev: &EvidenceFile) -> Vec<MethodFamily> {
    MethodFamily::ALL
        .into_iter()
        .filter(|f| ev.records.iter().any(|r| r.method.family == *f))
        .collect()
}

fn kinds(ev: &EvidenceFile) -> Vec<PropertyKind> {
    let mut k: Vec<PropertyKind> = ev.plan.properties.iter().map(|p| p.kind).collect();
    k.sort();
    k.dedup();
    k
}

/// A warning that the acceptance rests on fewer method families than planned.
fn not_run_note(ev: &EvidenceFile) -> String {
    if ev.not_run.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = ev.not_run.iter().map(|n| n.family.name()).collect();
    format!(
        " Planned but not run: {} methods — acceptance rests on the evidence of the other families only.",
        names.join(", ")
    )
}

fn fmt_num(v: f64) -> String {
    // Plan values such as 0.379688 are shown as written (shortest exact form); long computed values are rounded.
    let short = format!("{v}");
    if short.len() <= 10 {
        short
    } else if v.abs() >= 1e-3 && v.abs() < 1e5 {
        format!("{v:.5}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.4e}")
    }
}

fn overall(gate: &[GateResult]) -> (bool, usize) {
    let failed = gate.iter().filter(|g| !g.passed).count();
    (failed == 0, failed)
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1180px;margin:0 auto;\
padding:24px;color:#1a1a1a;line-height:1.45}h1{font-size:26px;margin-bottom:4px}h2{border-bottom:2px solid #334;\
padding-bottom:4px;margin-top:36px}h3{margin-top:22px}table{border-collapse:collapse;width:100%;margin:8px 0 16px;\
font-size:13px}th,td{border:1px solid #ccd;padding:5px 7px;text-align:left;vertical-align:top}th{background:#eef0f5}\
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}\
.v-proved{background:#d8f3dc;font-weight:bold}.v-counterexample{background:#ffd6d6;font-weight:bold}\
.v-inconclusive{background:#fff1c2;font-weight:bold}.pass{color:#11652b;font-weight:bold}.fail{color:#a11;font-weight:bold}\
.banner{padding:12px 16px;border-radius:6px;margin:12px 0;font-size:17px}.banner.pass{background:#d8f3dc}\
.banner.fail{background:#ffd6d6}.workflow{display:flex;gap:6px;flex-wrap:wrap;margin:10px 0}.workflow div{flex:1;\
min-width:170px;background:#eef0f5;border-radius:6px;padding:8px;font-size:13px}.workflow b{display:block}\
.muted{color:#555;font-size:13px}.chart{border:1px solid #ccd;margin:6px 12px 12px 0}\
.scope td:first-child{width:180px}td.t{white-space:nowrap}";

/// The self-contained HTML report.
pub fn html(ev: &EvidenceFile, gate: &[GateResult]) -> String {
    let p = &ev.plan;
    let sys = &p.system;
    let mut h = String::new();
    let title = format!("Robustness assessment — {} {}", sys.name, sys.version);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"muted\">Assessment of the robustness of a neural network following the workflow of \
         ISO/IEC TR 24029-1 (4.1.2) with the formal-method properties of ISO/IEC 24029-2. Generated by {} {} \
         (evidence schema {}), run {} to {}.</p>",
        esc(&title),
        esc(&ev.tool.name),
        esc(&ev.tool.version),
        esc(&ev.schema_version),
        esc(&ev.audit.started),
        esc(&ev.audit.finished)
    );
    let (ok, nfail) = overall(gate);
    let proved = ev
        .records
        .iter()
        .filter(|r| r.verdict == Verdict::Proved)
        .count();
    let cex = ev
        .records
        .iter()
        .filter(|r| r.verdict == Verdict::Counterexample)
        .count();
    let inc = ev.records.len() - proved - cex;
    let _ = write!(
        h,
        "<div class=\"banner {}\">{}: {} of {} properties meet their acceptance threshold. Checks: {} proved, {} \
         counterexample, {} inconclusive.{}</div>",
        if ok { "pass" } else { "fail" },
        if ok { "ACCEPTED" } else { "NOT ACCEPTED" },
        gate.len() - nfail,
        gate.len(),
        proved,
        cex,
        inc,
        not_run_note(ev)
    );
    h.push_str("<div class=\"workflow\">");
    for (i, (step, what)) in compliance::WORKFLOW.iter().enumerate() {
        let _ = write!(h, "<div><b>{}. {}</b>{}</div>", i + 1, step, esc(what));
    }
    h.push_str("</div>");

    // 1. Goals.
    let _ = write!(
        h,
        "<h2>1. Goals</h2><table><tr><th>System</th><td>{} (version {})</td></tr><tr><th>Intended use</th><td>{}</td></tr>\
         <tr><th>Criticality tier</th><td>{}</td></tr><tr><th>Owner</th><td>{}</td></tr></table>",
        esc(&sys.name),
        esc(&sys.version),
        esc(&sys.intended_use),
        sys.criticality.name(),
        esc(&sys.owner)
    );
    h.push_str("<h3>Threats (ISO/IEC TR 24029-1 taxonomy; EU AI Act Art. 15(5))</h3><table><tr><th>Threat</th><th>In scope</th><th>Reason / how addressed</th><th>Properties</th></tr>");
    for t in Threat::ALL {
        let sc = p.threats.get(&t);
        let props: Vec<&str> = p
            .properties
            .iter()
            .filter(|q| q.threats.contains(&t))
            .map(|q| q.id.as_str())
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            t.title(),
            if sc.is_some_and(|s| s.in_scope) {
                "pass"
            } else {
                "muted"
            },
            if sc.is_some_and(|s| s.in_scope) {
                "yes"
            } else {
                "no — not assessed"
            },
            esc(sc.map(|s| s.reason.as_str()).unwrap_or("")),
            esc(&props.join(", "))
        );
    }
    h.push_str("</table>");

    // 2. Plan.
    let (fams, rationale) = p.families();
    let fam_names: Vec<&str> = fams.iter().map(|f| f.name()).collect();
    let _ = write!(
        h,
        "<h2>2. Plan</h2><table><tr><th>Model</th><td class=\"mono\">{}</td></tr><tr><th>Data</th><td>{} ({})</td></tr>\
         <tr><th>Domain</th><td>{}</td></tr><tr><th>Methods</th><td>{}<br><span class=\"muted\">Rationale: {}</span></td></tr>\
         <tr><th>Budgets</th><td>{}</td></tr></table>",
        esc(&p.model.path),
        esc(&p.data.description),
        esc(&data_text(p)),
        esc(&domain_text(ev)),
        esc(&fam_names.join(", ")),
        esc(&rationale),
        esc(&budget_text(p, &fams))
    );
    if !ev.not_run.is_empty() {
        h.push_str("<p><b>Planned but not run:</b></p><ul>");
        for n in &ev.not_run {
            let _ = write!(h, "<li>{}: {}</li>", n.family.name(), esc(&n.reason));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h3>Properties (ISO/IEC 24029-2 kinds)</h3><table><tr><th>Id</th><th>Kind</th><th>Criterion</th><th>Threats</th><th>Threshold</th></tr>");
    for q in &p.properties {
        let th: Vec<&str> = q.threats.iter().map(|t| t.key()).collect();
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&q.id),
            q.kind.name(),
            esc(&q.criterion),
            esc(&th.join(", ")),
            esc(&threshold_text(q))
        );
    }
    h.push_str("</table>");

    // 3. Run.
    let a = &ev.audit;
    let _ = write!(
        h,
        "<h2>3. Run and audit trail</h2><table><tr><th>Tool</th><td>{} {}</td></tr><tr><th>Machine</th><td>{} — {}, {} cores</td></tr>\
         <tr><th>Started / finished</th><td>{} / {}</td></tr><tr><th>Seeds</th><td>{}</td></tr></table>\
         <table><tr><th>Role</th><th>File</th><th>SHA-256</th><th>Bytes</th></tr>",
        esc(&ev.tool.name),
        esc(&ev.tool.version),
        esc(&a.machine.hostname),
        esc(&a.machine.os),
        a.machine.cores,
        esc(&a.started),
        esc(&a.finished),
        esc(&a
            .seeds
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", "))
    );
    for art in &a.artifacts {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&art.role),
            esc(&art.path),
            esc(&art.sha256),
            art.bytes
        );
    }
    let _ = write!(
        h,
        "</table><p class=\"muted\">Evidence records are hash-chained (each record's SHA-256 covers the previous \
         record's hash); chain head <code>{}</code>. Sign the report folder with <code>nncert sign</code> and check \
         it with <code>nncert verify-report</code>.</p>",
        esc(ev
            .records
            .last()
            .map(|r| r.hash.as_str())
            .unwrap_or(crate::audit::GENESIS))
    );

    // 4. Analysis.
    h.push_str("<h2>4. Analysis</h2><h3>Acceptance per property</h3><table><tr><th>Property</th><th>Formal checks proved</th><th>Proof threshold</th><th>Measurements meeting their threshold</th><th>Result</th></tr>");
    for g in gate {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&g.property_id),
            if g.total > 0 {
                format!("{} / {}", g.proved, g.total)
            } else {
                "—".into()
            },
            if g.total > 0 {
                format!("{}%", fmt_num(g.threshold * 100.0))
            } else {
                "—".into()
            },
            if g.measured > 0 {
                format!("{} / {}", g.measured_ok, g.measured)
            } else {
                "—".into()
            },
            if g.passed { "pass" } else { "fail" },
            if g.passed && g.threshold == 0.0 && g.measured == 0 {
                "PASS (informative: nothing required)"
            } else if g.passed {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
    h.push_str("</table>");
    // Charts first: the curves summarize what the long tables below detail.
    let ch = charts(ev);
    if !ch.is_empty() {
        h.push_str("<h3>Charts</h3><div>");
        for (_, s) in &ch {
            h.push_str(s);
        }
        h.push_str("</div>");
    }
    h.push_str("<h3>Verdicts</h3><table id=\"verdicts\"><tr><th>Check</th><th>Kind</th><th>What was checked</th><th>Method (class)</th><th>Verdict</th><th>Reason</th><th>Time</th></tr>");
    for r in &ev.records {
        let v = r.verdict.word();
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}<br><span class=\"muted\">{}</span></td>\
             <td class=\"v-{v}\">{v}</td><td>{}</td><td class=\"t\">{:.3} s</td></tr>",
            esc(&r.check_id),
            r.kind.name(),
            esc(&r.description),
            esc(&r.method.name),
            esc(&class_label(r)),
            esc(&r.reason),
            r.timing.elapsed_s
        );
    }
    h.push_str("</table>");
    // `point` and `epsilon` only identify a check (they are in its description); the rest are measurements.
    let measured = |f: &&crate::evidence::Figure| f.name != "point" && f.name != "epsilon";
    let with_figures: Vec<&EvidenceRecord> = ev
        .records
        .iter()
        .filter(|r| r.figures.iter().any(|f| measured(&f)))
        .collect();
    if !with_figures.is_empty() {
        h.push_str("<h3>Figures</h3><table><tr><th>Check</th><th>Figure</th><th>Value</th></tr>");
        for r in with_figures {
            for f in r.figures.iter().filter(measured) {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{} {}</td></tr>",
                    esc(&r.check_id),
                    esc(&f.name),
                    fmt_num(f.value),
                    esc(f.unit.as_deref().unwrap_or(""))
                );
            }
        }
        h.push_str("</table>");
    }
    let cexs: Vec<&EvidenceRecord> = ev
        .records
        .iter()
        .filter(|r| r.counterexample.is_some())
        .collect();
    if !cexs.is_empty() {
        h.push_str("<h3>Counterexamples</h3><p class=\"muted\">Each input below was re-executed: its output lies in the property's bad region (margin ≤ 0).</p>");
        for r in cexs {
            if let Some(c) = &r.counterexample {
                h.push_str(&cex_html(r, c, &ev.plan.model.class_names));
            }
        }
    }

    // 5. Interpretation.
    h.push_str("<h2>5. Interpretation</h2><h3>Proof scope and operational risk per check</h3><table class=\"scope\"><tr><th>Check</th><th>Holds for</th><th>Under</th><th>Not covered</th><th>Operational-risk reading</th></tr>");
    for r in &ev.records {
        let _ = write!(
            h,
            "<tr><td><code>{}</code><br><span class=\"v-{v}\">{v}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.check_id),
            esc(&r.scope.holds_for),
            esc(&r.scope.under),
            esc(&r.scope.not_covered),
            esc(&compliance::risk_reading(r)),
            v = r.verdict.word()
        );
    }
    h.push_str("</table>");

    // 6. Compliance mapping.
    h.push_str("<h2>6. Mapping to standards and regulation</h2><p class=\"muted\">Paraphrased; clause numbers refer to ISO/IEC TR 24029-1:2021 and ISO/IEC 24029-2:2023 and should be checked against the editions in use.</p><h3>ISO/IEC 24029-1 / 24029-2</h3><table><tr><th>Clause</th><th>Topic</th><th>In this report</th><th>Status</th></tr>");
    for row in compliance::iso24029_rows(&ran(ev), &ev.plan.families().0, &kinds(ev)) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&row[0]),
            esc(&row[1]),
            esc(&row[2]),
            esc(&row[3])
        );
    }
    h.push_str("</table><h3>ISO/IEC TR 24028 trustworthiness dimensions</h3><table><tr><th>Dimension</th><th>Status</th><th>How</th></tr>");
    let sec = [Threat::Evasion, Threat::Poisoning, Threat::Confidentiality]
        .iter()
        .any(|t| ev.plan.threats.get(t).is_some_and(|s| s.in_scope));
    for row in compliance::tr24028_rows(sec) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            row[0],
            row[1],
            esc(row[2])
        );
    }
    h.push_str("</table><h3>EU AI Act</h3><table><tr><th>Item</th><th>Requirement (paraphrase)</th><th>Where</th></tr>");
    for row in compliance::EU_AI_ACT {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            row[0],
            esc(row[1]),
            esc(row[2])
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

fn domain_text(ev: &EvidenceFile) -> String {
    let d = &ev.plan.domain;
    let mut parts = Vec::new();
    if let (Some(lo), Some(hi)) = (&d.lower, &d.upper) {
        let ranges: Vec<String> = lo
            .iter()
            .zip(hi)
            .map(|(l, u)| format!("[{}, {}]", fmt_num(*l), fmt_num(*u)))
            .collect();
        parts.push(format!("feature ranges {}", ranges.join(" ")));
    }
    if !d.linf.is_empty() {
        let v: Vec<String> = d.linf.iter().map(|e| fmt_num(*e)).collect();
        parts.push(format!("L∞ budgets {}", v.join(", ")));
    }
    if !d.l2.is_empty() {
        let v: Vec<String> = d.l2.iter().map(|e| fmt_num(*e)).collect();
        parts.push(format!("L2 budgets {}", v.join(", ")));
    }
    if let Some(s) = &d.semantic {
        parts.push(format!(
            "semantic: brightness ±{}, contrast ×[{}, {}], noise ±{}",
            fmt_num(s.brightness),
            fmt_num(1.0 - s.contrast),
            fmt_num(1.0 + s.contrast),
            fmt_num(s.noise)
        ));
    }
    if parts.is_empty() {
        "not restricted".into()
    } else {
        parts.join("; ")
    }
}

fn cex_html(
    r: &EvidenceRecord,
    c: &crate::evidence::CounterexampleData,
    names: &[String],
) -> String {
    let mut h = format!(
        "<h4><code>{}</code> — margin {}</h4>",
        esc(&r.check_id),
        fmt_num(c.margin)
    );
    if let Some((ch, ht, wd)) = svg::image_dims(&c.input_shape) {
        let scale = (160 / ht.max(wd)).max(1);
        h.push_str("<div>");
        if let Some(rf) = &c.reference {
            let _ = write!(
                h,
                "<figure style=\"display:inline-block\">{}<figcaption>reference</figcaption></figure>",
                svg::image(rf, ch, ht, wd, scale)
            );
        }
        let _ = write!(
            h,
            "<figure style=\"display:inline-block\">{}<figcaption>counterexample</figcaption></figure></div>",
            svg::image(&c.input, ch, ht, wd, scale)
        );
    } else {
        h.push_str("<table><tr><th>Input</th>");
        for i in 0..c.input.len() {
            let _ = write!(h, "<th>X_{i}</th>");
        }
        h.push_str("</tr>");
        if let Some(rf) = &c.reference {
            h.push_str("<tr><td>reference</td>");
            for v in rf {
                let _ = write!(h, "<td>{}</td>", fmt_num(*v));
            }
            h.push_str("</tr>");
        }
        h.push_str("<tr><td>counterexample</td>");
        for v in &c.input {
            let _ = write!(h, "<td class=\"mono\">{v}</td>");
        }
        h.push_str("</tr></table>");
    }
    h.push_str("<table><tr><th>Output</th>");
    for j in 0..c.output.len() {
        let n = names
            .get(j)
            .map(|s| format!(" ({})", esc(s)))
            .unwrap_or_default();
        let _ = write!(h, "<th>Y_{j}{n}</th>");
    }
    h.push_str("</tr><tr><td>at counterexample</td>");
    for v in &c.output {
        let _ = write!(h, "<td>{}</td>", fmt_num(*v));
    }
    h.push_str("</tr></table>");
    h
}

/// The Markdown report (the same sections as the HTML report; series as tables instead of charts).
pub fn markdown(ev: &EvidenceFile, gate: &[GateResult]) -> String {
    let p = &ev.plan;
    let sys = &p.system;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Robustness assessment — {} {}\n",
        sys.name, sys.version
    );
    let (ok, nfail) = overall(gate);
    let _ = writeln!(
        m,
        "Generated by {} {} (evidence schema {}), run {} to {}. Workflow of ISO/IEC TR 24029-1 (4.1.2): goals → plan \
         → run → analysis → interpretation.\n\n**{}**: {} of {} properties meet their acceptance threshold.\n",
        ev.tool.name,
        ev.tool.version,
        ev.schema_version,
        ev.audit.started,
        ev.audit.finished,
        if ok { "ACCEPTED" } else { "NOT ACCEPTED" },
        gate.len() - nfail,
        gate.len()
    );
    let note = not_run_note(ev);
    if !note.is_empty() {
        let _ = writeln!(m, "{}\n", note.trim());
    }
    let _ = writeln!(
        m,
        "## 1. Goals\n\n| | |\n|---|---|\n| System | {} (version {}) |\n| Intended use | {} |\n| Criticality | {} |\n| Owner | {} |\n",
        md(&sys.name),
        md(&sys.version),
        md(&sys.intended_use),
        sys.criticality.name(),
        md(&sys.owner)
    );
    m.push_str("| Threat | In scope | Reason / how addressed |\n|---|---|---|\n");
    for t in Threat::ALL {
        let sc = p.threats.get(&t);
        let _ = writeln!(
            m,
            "| {} | {} | {} |",
            t.title(),
            if sc.is_some_and(|s| s.in_scope) {
                "yes"
            } else {
                "no"
            },
            md(sc.map(|s| s.reason.as_str()).unwrap_or(""))
        );
    }
    let (fams, rationale) = p.families();
    let fam_names: Vec<&str> = fams.iter().map(|f| f.name()).collect();
    let _ = writeln!(
        m,
        "\n## 2. Plan\n\n- Model: `{}`\n- Data: {} ({})\n- Domain: {}\n- Methods: {} — {}\n- Budget: {}\n",
        p.model.path,
        md(&p.data.description),
        md(&data_text(p)),
        domain_text(ev),
        fam_names.join(", "),
        rationale,
        md(&budget_text(p, &fams))
    );
    for n in &ev.not_run {
        let _ = writeln!(
            m,
            "- Planned but not run: {}: {}",
            n.family.name(),
            n.reason
        );
    }
    m.push_str("\n| Property | Kind | Criterion | Threshold |\n|---|---|---|---|\n");
    for q in &p.properties {
        let _ = writeln!(
            m,
            "| `{}` | {} | {} | {} |",
            q.id,
            q.kind.name(),
            md(&q.criterion),
            md(&threshold_text(q))
        );
    }
    let a = &ev.audit;
    let _ = writeln!(
        m,
        "\n## 3. Run and audit trail\n\n- Tool: {} {}\n- Machine: {} — {}, {} cores\n- Started / finished: {} / {}\n- Chain head: `{}`\n\n| Role | File | SHA-256 |\n|---|---|---|",
        ev.tool.name,
        ev.tool.version,
        a.machine.hostname,
        a.machine.os,
        a.machine.cores,
        a.started,
        a.finished,
        ev.records
            .last()
            .map(|r| r.hash.as_str())
            .unwrap_or(crate::audit::GENESIS)
    );
    for art in &a.artifacts {
        let _ = writeln!(m, "| {} | `{}` | `{}` |", art.role, art.path, art.sha256);
    }
    m.push_str(
        "\n## 4. Analysis\n\n| Property | Formal proved | Threshold | Measurements OK | Result |\n|---|---|---|---|---|\n",
    );
    for g in gate {
        let _ = writeln!(
            m,
            "| `{}` | {}/{} | {}% | {}/{} | {} |",
            g.property_id,
            g.proved,
            g.total,
            fmt_num(g.threshold * 100.0),
            g.measured_ok,
            g.measured,
            if g.passed { "PASS" } else { "**FAIL**" }
        );
    }
    m.push_str("\n| Check | Kind | Method (class) | Verdict | Reason |\n|---|---|---|---|---|\n");
    for r in &ev.records {
        let _ = writeln!(
            m,
            "| `{}` | {} | {} ({}) | **{}** | {} |",
            r.check_id,
            r.kind.name(),
            md(&r.method.name),
            class_label(r),
            r.verdict.word(),
            md(&r.reason)
        );
    }
    for r in &ev.records {
        for s in &r.series {
            let _ = writeln!(
                m,
                "\n**{}** — {} ({} vs {})\n\n| {} | {} |\n|---|---|",
                series_title(s.kind),
                md(&s.name),
                md(&s.y_label),
                md(&s.x_label),
                md(&s.x_label),
                md(&s.y_label)
            );
            for pt in &s.points {
                let _ = writeln!(m, "| {} | {} |", fmt_num(pt[0]), fmt_num(pt[1]));
            }
        }
        if let Some(c) = &r.counterexample {
            let xs: Vec<String> = c.input.iter().map(|v| format!("{v}")).collect();
            let ys: Vec<String> = c.output.iter().map(|v| fmt_num(*v)).collect();
            let _ = writeln!(
                m,
                "\nCounterexample of `{}` (margin {}): input [{}] → output [{}]",
                r.check_id,
                fmt_num(c.margin),
                xs.join(", "),
                ys.join(", ")
            );
        }
    }
    for s in derived_series(ev) {
        let _ = writeln!(
            m,
            "\n**{}** — {}\n\n| {} | {} |\n|---|---|",
            series_title(s.kind),
            md(&s.name),
            md(&s.x_label),
            md(&s.y_label)
        );
        for pt in &s.points {
            let _ = writeln!(m, "| {} | {} |", fmt_num(pt[0]), fmt_num(pt[1]));
        }
    }
    m.push_str("\n## 5. Interpretation\n\n");
    for r in &ev.records {
        let _ = writeln!(
            m,
            "- `{}` ({}): holds for {}; under {}; not covered: {}. *Risk reading:* {}",
            r.check_id,
            r.verdict.word(),
            r.scope.holds_for,
            r.scope.under,
            r.scope.not_covered,
            compliance::risk_reading(r)
        );
    }
    m.push_str("\n## 6. Mapping to standards and regulation\n\n| Clause | Topic | In this report | Status |\n|---|---|---|---|\n");
    for row in compliance::iso24029_rows(&ran(ev), &ev.plan.families().0, &kinds(ev)) {
        let _ = writeln!(m, "| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
    }
    m.push_str("\n| ISO/IEC TR 24028 dimension | Status | How |\n|---|---|---|\n");
    let sec = [Threat::Evasion, Threat::Poisoning, Threat::Confidentiality]
        .iter()
        .any(|t| ev.plan.threats.get(t).is_some_and(|s| s.in_scope));
    for row in compliance::tr24028_rows(sec) {
        let _ = writeln!(m, "| {} | {} | {} |", row[0], row[1], row[2]);
    }
    m.push_str("\n| EU AI Act | Requirement (paraphrase) | Where |\n|---|---|---|\n");
    for row in compliance::EU_AI_ACT {
        let _ = writeln!(m, "| {} | {} | {} |", row[0], row[1], row[2]);
    }
    m
}
