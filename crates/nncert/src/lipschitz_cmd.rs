//! `nncert lipschitz`: global Lipschitz bounds, and with a property the local bounds, certified radii and
//! per-attribute sensitivity over each of its input boxes.

use crate::io;
use anyhow::{Context, Result};
use nncert_verify::lipschitz::{self, Analyzer, CaseAnalysis, GlobalBound, METHOD_CLASS, Norm};
use serde_json::{Value, json};
use std::path::Path;

/// Which norms to bound.
#[derive(Clone, Copy, Debug)]
pub enum NormChoice {
    L2,
    Linf,
    Both,
}

impl std::str::FromStr for NormChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "both" => Ok(NormChoice::Both),
            other => match other.parse::<Norm>()? {
                Norm::L2 => Ok(NormChoice::L2),
                Norm::Linf => Ok(NormChoice::Linf),
            },
        }
    }
}

impl NormChoice {
    fn norms(self) -> Vec<Norm> {
        match self {
            NormChoice::L2 => vec![Norm::L2],
            NormChoice::Linf => vec![Norm::Linf],
            NormChoice::Both => vec![Norm::Linf, Norm::L2],
        }
    }
}

fn symbol(n: Norm) -> &'static str {
    match n {
        Norm::Linf => "L∞",
        Norm::L2 => "L2",
    }
}

/// A JSON number, or the string "inf" for an unbounded value (JSON has no infinity).
fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!("nan")
    } else if x > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, num)
}

fn print_global(g: &GlobalBound) {
    println!(
        "\nglobal {} bound: ‖f(x) − f(x')‖ ≤ L·‖x − x'‖ for ALL inputs x, x' ({} norm on both sides)",
        symbol(g.norm),
        symbol(g.norm)
    );
    println!(
        "  {:<28} {:<18} {:>11} {:>11} {:>12}  method",
        "node", "op", "factor", "estimate", "cumulative"
    );
    for l in &g.layers {
        let f = l.factor.map_or("-".to_string(), |f| format!("{f:.5e}"));
        let e = l.estimate.map_or("-".to_string(), |e| format!("{e:.5e}"));
        println!(
            "  {:<28} {:<18} {:>11} {:>11} {:>12.5e}  {}",
            truncate(&l.node, 28),
            l.op,
            f,
            e,
            l.cumulative,
            l.method
        );
    }
    println!(
        "  composition of per-node bounds:       {:.6e}",
        g.product_bound
    );
    match (g.jacobian_bound, &g.jacobian_note) {
        (Some(j), _) => println!("  interval Jacobian over all inputs:    {j:.6e}"),
        (None, Some(n)) => println!("  interval Jacobian over all inputs:    not computed ({n})"),
        (None, None) => {}
    }
    println!(
        "  GLOBAL {} LIPSCHITZ BOUND:             {:.6e}   ({:.3} s)",
        symbol(g.norm),
        g.bound,
        g.elapsed.as_secs_f64()
    );
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

fn global_json(g: &GlobalBound) -> Value {
    json!({
        "norm": g.norm.name(),
        "bound": num(g.bound),
        "product_bound": num(g.product_bound),
        "jacobian_bound": opt(g.jacobian_bound),
        "jacobian_note": g.jacobian_note,
        "elapsed_s": g.elapsed.as_secs_f64(),
        "layers": g.layers.iter().map(|l| json!({
            "node": l.node,
            "op": l.op,
            "factor": opt(l.factor),
            "l2_estimate": opt(l.estimate),
            "method": l.method,
            "cumulative": num(l.cumulative),
        })).collect::<Vec<_>>(),
    })
}

fn print_case(c: &CaseAnalysis, top: usize) {
    let max_hw = c.half_width.iter().copied().fold(0.0, f64::max);
    println!(
        "\ncase {}: input box with {} inputs, largest half-width {:.4e} ({:.3} s)",
        c.case,
        c.half_width.len(),
        max_hw,
        c.elapsed.as_secs_f64()
    );
    for (n, l) in &c.local {
        println!(
            "  local {} bound over the box (inputs x, x' in the box): {:.6e}",
            symbol(*n),
            l
        );
    }
    println!("  bad-region constraints c·y <= rhs (m = sound lower bound of c·f(centre) − rhs):");
    for k in &c.constraints {
        let lips: Vec<String> = k
            .lipschitz
            .iter()
            .map(|(n, l, g)| format!("{} local {l:.3e} / global {g:.3e}", symbol(*n)))
            .collect();
        println!(
            "    conj {} #{}: m = {:+.4e}, max change in box {:.4e}, lower bound in box {:+.4e} => {}; Lipschitz of c·f: {}",
            k.disjunct,
            k.constraint,
            k.margin_at_center,
            k.max_change_in_box,
            k.margin_lower_in_box,
            if k.excluded_on_box() {
                "cannot hold in the box (proved)"
            } else {
                "not excluded"
            },
            lips.join(", ")
        );
    }
    if c.box_certified {
        println!(
            "  BOX CERTIFIED: a proof (sound Lipschitz bound) that no input of this box reaches the bad region"
        );
    } else {
        println!(
            "  box not certified by Lipschitz bounds (inconclusive: this proves nothing either way; try `nncert verify`)"
        );
    }
    for r in &c.radii {
        println!(
            "  certified {} radius around the centre: {:.6e} (any input), {:.6e} (inputs inside the box)",
            symbol(r.norm),
            r.global,
            r.local
        );
    }
    let (m, n) = c.sensitivity.dim();
    println!(
        "  sensitivity (ISO/IEC 24029-2): bound on |Δy_k| when only input j varies over its range in the box"
    );
    let mut order: Vec<usize> = (0..n).collect();
    let worst = |j: usize| {
        (0..m)
            .map(|k| c.output_change_bound(k, j))
            .fold(0.0, f64::max)
    };
    order.sort_by(|&a, &b| worst(b).total_cmp(&worst(a)));
    let show_outputs = m <= 10;
    let header: Vec<String> = if show_outputs {
        (0..m).map(|k| format!("{:>10}", format!("y{k}"))).collect()
    } else {
        vec![format!("{:>10}", "max_k")]
    };
    println!("    {:>8} {:>11} {}", "input", "range", header.join(" "));
    for &j in order.iter().take(top) {
        let cells: Vec<String> = if show_outputs {
            (0..m)
                .map(|k| format!("{:>10.3e}", c.output_change_bound(k, j)))
                .collect()
        } else {
            vec![format!("{:>10.3e}", worst(j))]
        };
        println!(
            "    {:>8} {:>11.4e} {}",
            format!("x{j}"),
            2.0 * c.half_width[j],
            cells.join(" ")
        );
    }
    if n > top {
        println!("    … {} more inputs (all in --json)", n - top);
    }
}

fn case_json(c: &CaseAnalysis) -> Value {
    let (m, n) = c.sensitivity.dim();
    json!({
        "case": c.case,
        "elapsed_s": c.elapsed.as_secs_f64(),
        "local_bound": c.local.iter().map(|(n, l)| (n.name().to_string(), num(*l))).collect::<serde_json::Map<_, _>>(),
        "box_certified": c.box_certified,
        "certification": if c.box_certified {
            "proof: sound Lipschitz bounds show that no input of the box reaches the bad region"
        } else {
            "inconclusive: the Lipschitz bounds do not exclude the bad region (proves nothing)"
        },
        "disjunct_excluded": c.disjunct_excluded,
        "constraints": c.constraints.iter().map(|k| json!({
            "disjunct": k.disjunct,
            "constraint": k.constraint,
            "margin_at_center_lower": num(k.margin_at_center),
            "max_change_in_box": num(k.max_change_in_box),
            "margin_lower_in_box": num(k.margin_lower_in_box),
            "excluded_on_box": k.excluded_on_box(),
            "lipschitz": k.lipschitz.iter().map(|(n, l, g)| json!({
                "norm": n.name(), "local": num(*l), "global": num(*g)
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "certified_radius": c.radii.iter().map(|r| json!({
            "norm": r.norm.name(),
            "global": num(r.global),
            "local_within_box": num(r.local),
        })).collect::<Vec<_>>(),
        "center": c.center,
        "sensitivity": {
            "meaning": "max_abs_partial[k][j] bounds |dy_k/dx_j| over the box; output_change_bound[k][j] = max_abs_partial[k][j] * range[j] bounds |Δy_k| when only input j varies within the box",
            "range": c.half_width.iter().map(|h| num(2.0 * h)).collect::<Vec<_>>(),
            "max_abs_partial": (0..m).map(|k| (0..n).map(|j| num(c.sensitivity[[k, j]])).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "output_change_bound": (0..m).map(|k| (0..n).map(|j| num(c.output_change_bound(k, j))).collect::<Vec<_>>()).collect::<Vec<_>>(),
        },
    })
}

/// Runs the command; returns the exit code.
pub fn run(
    model: &Path,
    norm: NormChoice,
    property: Option<&Path>,
    json_path: Option<&Path>,
    top: usize,
    method: nncert_bounds::Method,
) -> Result<u8> {
    let graph = nncert_model::load_model(model)?;
    println!(
        "nncert lipschitz: {} ({} inputs, {} outputs)",
        model.display(),
        graph.input_size(),
        graph.output_size()
    );
    println!("method class: {METHOD_CLASS}");
    let globals: Vec<GlobalBound> = norm
        .norms()
        .into_iter()
        .map(|n| lipschitz::global_bound(&graph, n))
        .collect();
    for g in &globals {
        print_global(g);
    }
    let mut out = json!({
        "tool": "nncert lipschitz",
        "version": env!("CARGO_PKG_VERSION"),
        "model": model.display().to_string(),
        "inputs": graph.input_size(),
        "outputs": graph.output_size(),
        "method_class": METHOD_CLASS,
        "global": globals.iter().map(global_json).collect::<Vec<_>>(),
    });
    if let Some(p) = property {
        let prop = nncert_spec::parse_file(p)?;
        prop.check_dims(graph.input_size(), graph.output_size())
            .with_context(|| {
                format!(
                    "property {} does not fit model {}",
                    p.display(),
                    model.display()
                )
            })?;
        let mut analyzer = Analyzer::new(&graph, globals);
        analyzer.method = method;
        let mut cases = Vec::new();
        for (i, case) in prop.cases.iter().enumerate() {
            let c = analyzer.analyze_case(i, case)?;
            print_case(&c, top);
            cases.push(case_json(&c));
        }
        let certified = cases
            .iter()
            .filter(|c| c["box_certified"] == json!(true))
            .count();
        println!(
            "\n{certified} of {} case(s) certified by Lipschitz bounds ({})",
            cases.len(),
            METHOD_CLASS
        );
        out["property"] = json!(p.display().to_string());
        out["cases"] = json!(cases);
    }
    if let Some(path) = json_path {
        let text = serde_json::to_string_pretty(&out)?;
        io::write_atomically(path, text.as_bytes())?;
    }
    Ok(0)
}
