//! How many instances of each suite every bound method proves on its own (no branching, no falsifier).
//!
//! `cargo run --release -p nncert-bench --bin bounds-census -- acasxu mnist_fc eran oval21`
//!
//! Methods: interval arithmetic (IBP), CROWN, α-CROWN on the output objective's ReLU slopes, and α-CROWN on
//! every intermediate node's too, on the generic engine (every op of the IR); for feed-forward ReLU networks
//! also the dense engine's CROWN (forward relaxation refined backward) and α-CROWN. A method
//! "proves" an instance when it refutes every disjunct of every case. A proof of an instance whose truth is
//! `sat` is counted as WRONG (the harness exits non-zero).

use anyhow::{Context, Result};
use clap::Parser;
use nncert_bench::read_suite;
use nncert_bounds::dense::DenseReluNet;
use nncert_verify::incomplete;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    suites: Vec<String>,
    #[arg(long, default_value = "../shared/benchmarks")]
    benchmarks: PathBuf,
    /// α-CROWN iterations on the objective.
    #[arg(long, default_value_t = 20)]
    alpha_iterations: usize,
    /// α-CROWN iterations per intermediate node (the "α-CROWN full" column).
    #[arg(long, default_value_t = 5)]
    alpha_intermediate: usize,
    /// Budget of the generic CROWN pass per instance (past it, intermediate bounds fall back to IBP).
    #[arg(long, default_value_t = 30.0)]
    crown_budget: f64,
}

const METHODS: [&str; 5] = [
    "IBP",
    "CROWN",
    "α-CROWN",
    "CROWN (dense)",
    "α-CROWN (dense)",
];

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "| suite | instances (unsat in truth) | IBP | CROWN | α-CROWN | α-CROWN full | CROWN dense | α-CROWN dense | WRONG | seconds per method |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut wrong_total = 0;
    for suite in &args.suites {
        let dir = args.benchmarks.join(suite);
        let instances = read_suite(&dir)?;
        let mut proved = [0usize; 6];
        let mut applicable = [0usize; 6];
        let mut seconds = [0f64; 6];
        let mut wrong = 0;
        let mut models = std::collections::HashMap::new();
        for inst in &instances {
            if !models.contains_key(&inst.onnx) {
                let g = nncert_model::load_model(&dir.join(&inst.onnx))
                    .with_context(|| inst.onnx.clone())?;
                let dense = DenseReluNet::from_graph(&g);
                models.insert(inst.onnx.clone(), (g, dense));
            }
            let (graph, dense) = &models[&inst.onnx];
            let prop = nncert_spec::parse_file(&dir.join(&inst.vnnlib))?;
            prop.check_dims(graph.input_size(), graph.output_size())?;
            let mut results: [Option<bool>; 6] = [None; 6];
            for (m, result) in results.iter_mut().enumerate() {
                let start = Instant::now();
                *result = match m {
                    0..=3 => {
                        let method = match m {
                            0 => nncert_bounds::Method::Interval,
                            1 => nncert_bounds::Method::Crown,
                            2 => nncert_bounds::Method::Alpha {
                                iterations: args.alpha_iterations,
                                intermediate: 0,
                            },
                            _ => nncert_bounds::Method::Alpha {
                                iterations: args.alpha_iterations,
                                intermediate: args.alpha_intermediate,
                            },
                        };
                        let deadline = start + Duration::from_secs_f64(args.crown_budget);
                        Some(incomplete::prove(graph, &prop, method, deadline))
                    }
                    _ => dense.as_ref().map(|net| {
                        let iters = if m == 5 { args.alpha_iterations } else { 0 };
                        prop.cases.iter().all(|case| {
                            incomplete::dense_case_bounds(net, case, iters)
                                .refuted
                                .iter()
                                .all(|&r| r)
                        })
                    }),
                };
                seconds[m] += start.elapsed().as_secs_f64();
                if let Some(p) = *result {
                    applicable[m] += 1;
                    if p {
                        proved[m] += 1;
                        if inst.expected == "sat" {
                            wrong += 1;
                            eprintln!(
                                "WRONG: {} proves {suite}/{} (truth: sat)",
                                METHODS[m], inst.id
                            );
                        }
                    }
                }
            }
            eprintln!(
                "{suite} {:>4} {:<40} {:<36} {:?} (truth {})",
                inst.id, inst.onnx, inst.vnnlib, results, inst.expected
            );
        }
        let cell = |m: usize| {
            if applicable[m] == 0 {
                "n/a".to_string()
            } else if applicable[m] < instances.len() {
                format!("{} (of {} applicable)", proved[m], applicable[m])
            } else {
                proved[m].to_string()
            }
        };
        let unsat = instances.iter().filter(|i| i.expected == "unsat").count();
        println!(
            "| {suite} | {} ({unsat}) | {} | {} | {} | {} | {} | {} | {wrong} | {} |",
            instances.len(),
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            cell(5),
            seconds
                .iter()
                .map(|s| format!("{s:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
        wrong_total += wrong;
    }
    if wrong_total > 0 {
        anyhow::bail!("{wrong_total} WRONG proofs");
    }
    Ok(())
}
