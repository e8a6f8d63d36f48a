//! Lipschitz bench: global L∞ and L2 bounds for every network of the given suites (all if none), with the
//! time taken, and local analysis (interval Jacobian, box certification) over the boxes of up to
//! `--instances` instances per network. A box certified on an instance whose truth is `sat` is counted as
//! **WRONG** (it must be 0; the exit code is 1 otherwise).
//!
//! ```sh
//! cargo run --release -p nncert-bench --bin lipschitz -- acasxu mnist_fc --instances 3 --markdown
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use nncert_bench::read_csv;
use nncert_verify::lipschitz::{Analyzer, Norm, global_bound};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    about = "Global and local Lipschitz bounds for every network of VNN-COMP suites, with timings"
)]
struct Args {
    /// Suite names (folders of the benchmarks directory); all of them if none given.
    suites: Vec<String>,
    /// The benchmarks directory.
    #[arg(long, default_value = "../shared/benchmarks")]
    benchmarks: PathBuf,
    /// Local analysis on the boxes of at most this many instances per network (0: none).
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// Print the table as Markdown.
    #[arg(long)]
    markdown: bool,
}

struct Row {
    suite: String,
    net: String,
    params: usize,
    linf: f64,
    linf_product: f64,
    l2: f64,
    l2_product: f64,
    global_s: f64,
    analysed: usize,
    local_linf_median: f64,
    certified: usize,
    wrong: usize,
    local_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut suites = args.suites.clone();
    if suites.is_empty() {
        for e in std::fs::read_dir(&args.benchmarks)
            .with_context(|| format!("{}", args.benchmarks.display()))?
        {
            let e = e?;
            if e.path().join("instances.csv").exists() {
                suites.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        suites.sort();
    }
    let mut rows = Vec::new();
    for suite in &suites {
        let dir = args.benchmarks.join(suite);
        let instances = read_csv(&dir.join("instances.csv"))?;
        let truth: HashMap<String, String> = read_csv(&dir.join("truth.csv"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| Some((r.get("instance_id")?.clone(), r.get("expected")?.clone())))
            .collect();
        // Networks sorted by name, each with its instances in file order.
        let mut nets: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for r in &instances {
            let (Some(id), Some(onnx), Some(vnnlib)) =
                (r.get("instance_id"), r.get("onnx"), r.get("vnnlib"))
            else {
                continue;
            };
            nets.entry(onnx.clone())
                .or_default()
                .push((id.clone(), vnnlib.clone()));
        }
        for (onnx, insts) in &nets {
            let graph = match nncert_model::load_model(&dir.join(onnx)) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("{suite}/{onnx}: cannot load: {e}");
                    continue;
                }
            };
            let t = Instant::now();
            let gl = global_bound(&graph, Norm::Linf);
            let g2 = global_bound(&graph, Norm::L2);
            let global_s = t.elapsed().as_secs_f64();
            let (linf, linf_product, l2, l2_product) =
                (gl.bound, gl.product_bound, g2.bound, g2.product_bound);
            let analyzer = Analyzer::new(&graph, vec![gl, g2]);
            let t = Instant::now();
            let (mut analysed, mut certified, mut wrong) = (0, 0, 0);
            let mut locals = Vec::new();
            for (id, vnnlib) in insts.iter().take(args.instances) {
                let prop = match nncert_spec::parse_file(&dir.join(vnnlib)) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("{suite}/{vnnlib}: {e}");
                        continue;
                    }
                };
                let mut all = !prop.cases.is_empty();
                for (i, case) in prop.cases.iter().enumerate() {
                    match analyzer.analyze_case(i, case) {
                        Ok(a) => {
                            locals.push(a.local[0].1);
                            all &= a.box_certified;
                        }
                        Err(e) => {
                            eprintln!("{suite}/{onnx} {vnnlib}: {e}");
                            all = false;
                        }
                    }
                }
                analysed += 1;
                if all {
                    certified += 1;
                    if truth.get(id).map(String::as_str) == Some("sat") {
                        wrong += 1;
                        eprintln!("WRONG: {suite} instance {id} certified but its truth is sat");
                    }
                }
            }
            let row = Row {
                suite: suite.clone(),
                net: onnx.rsplit('/').next().unwrap_or(onnx).to_string(),
                params: graph.num_parameters(),
                linf,
                linf_product,
                l2,
                l2_product,
                global_s,
                analysed,
                local_linf_median: median(locals),
                certified,
                wrong,
                local_s: t.elapsed().as_secs_f64(),
            };
            eprintln!(
                "{:<16} {:<40} L∞ {:.3e} L2 {:.3e} ({:.2} s); local: {} inst, median L∞ {:.3e}, {} certified ({:.1} s)",
                row.suite,
                row.net,
                row.linf,
                row.l2,
                row.global_s,
                row.analysed,
                row.local_linf_median,
                row.certified,
                row.local_s
            );
            rows.push(row);
        }
    }
    if args.markdown {
        println!(
            "| suite | network | params | global L∞ | L∞ product | global L2 | L2 product | global s | instances | median local L∞ | certified | WRONG | local s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.3e} | {:.3e} | {:.3e} | {:.3e} | {:.2} | {} | {:.3e} | {} | {} | {:.1} |",
                r.suite,
                r.net,
                r.params,
                r.linf,
                r.linf_product,
                r.l2,
                r.l2_product,
                r.global_s,
                r.analysed,
                r.local_linf_median,
                r.certified,
                r.wrong,
                r.local_s
            );
        }
    }
    let wrong: usize = rows.iter().map(|r| r.wrong).sum();
    if wrong > 0 {
        eprintln!("{wrong} WRONG certificate(s)");
        std::process::exit(1);
    }
    Ok(())
}
