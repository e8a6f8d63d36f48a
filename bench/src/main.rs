//! Bench harness: runs VNN-COMP suites through nncert and scores every answer against the ground truth.
//!
//! ```sh
//! cargo run --release -p nncert-bench -- acasxu test --timeout-scale 0.1 --csv bench/results.csv
//! ```
//! Each suite folder holds `instances.csv` (instance_id,onnx,vnnlib,timeout,...) and `truth.csv`
//! (instance_id,...,expected,...). A `sat` whose truth is `unsat` (or the reverse) is counted as **wrong**.

use anyhow::{Context, Result};
use clap::Parser;
use nncert_bench::read_suite;
use nncert_verify::{Verdict, VerifyOptions};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which engine answers each instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Method {
    /// Bounds + falsifier + branch-and-bound (`nncert_verify::verify`).
    Bab,
    /// HiGHS on the MILP encoding (`nncert_milp`).
    Milp,
    /// z3 on the QF_LRA encoding (`nncert_smt`).
    Smt,
}

#[derive(Parser, Debug)]
#[command(about = "Run VNN-COMP suites through nncert and score the answers against truth.csv")]
struct Args {
    /// Suite names (folders of the benchmarks directory); all of them if none given.
    suites: Vec<String>,
    /// The benchmarks directory.
    #[arg(long, default_value = "../shared/benchmarks")]
    benchmarks: PathBuf,
    /// Multiply every instance's timeout by this.
    #[arg(long, default_value_t = 1.0)]
    timeout_scale: f64,
    /// Cap every instance's timeout (seconds).
    #[arg(long)]
    max_timeout: Option<f64>,
    /// Only instances whose expected answer is this (sat, unsat, unknown).
    #[arg(long)]
    expected: Option<String>,
    /// Write per-instance rows here (CSV).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Seed passed to the engines.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Send feed-forward ReLU networks through the generic engine instead of the dense fast path (to compare).
    #[arg(long)]
    no_dense_path: bool,
    /// Dense path without the generic engine's α-CROWN root bounds (to compare).
    #[arg(long)]
    no_alpha_root: bool,
    /// Only instances whose onnx path contains this (e.g. 256x2).
    #[arg(long)]
    onnx_contains: Option<String>,
    /// Only instances whose vnnlib path contains this (e.g. prop_7).
    #[arg(long)]
    vnnlib_contains: Option<String>,
    /// The engine.
    #[arg(long, value_enum, default_value = "bab")]
    method: Method,
    /// ReLU-splitting branch-and-bound hands sub-domains with at most this many unstable ReLUs to HiGHS
    /// (0, the default as in `nncert verify`: LP leaves only, whose refutations are certified; more: small
    /// MILPs, sound up to HiGHS tolerances).
    #[arg(long, default_value_t = 0)]
    leaves: usize,
    /// No leaf solver (bounds only), to compare.
    #[arg(long)]
    no_leaves: bool,
}

struct Row {
    suite: String,
    id: String,
    onnx: String,
    vnnlib: String,
    result: String,
    time: f64,
    expected: String,
    verdict: &'static str,
    /// Sub-domains bounded by branch-and-bound (0 for the other engines).
    domains: u64,
}

fn score(result: &str, expected: &str) -> &'static str {
    match (result, expected) {
        ("sat", "unsat") | ("unsat", "sat") => "WRONG",
        ("sat", "sat") | ("unsat", "unsat") => "correct",
        ("sat" | "unsat", _) => "unchecked",
        _ => "unsolved",
    }
}

fn run_suite(args: &Args, suite: &str, rows: &mut Vec<Row>) -> Result<()> {
    let dir = args.benchmarks.join(suite);
    let mut models = HashMap::new();
    for inst in read_suite(&dir)? {
        let nncert_bench::Instance {
            id,
            onnx,
            vnnlib,
            timeout,
            expected,
        } = inst;
        let (onnx, vnnlib) = (&onnx, &vnnlib);
        if args.expected.as_ref().is_some_and(|e| *e != expected)
            || args
                .onnx_contains
                .as_ref()
                .is_some_and(|s| !onnx.contains(s.as_str()))
            || args
                .vnnlib_contains
                .as_ref()
                .is_some_and(|s| !vnnlib.contains(s.as_str()))
        {
            continue;
        }
        let mut t = timeout * args.timeout_scale;
        if let Some(m) = args.max_timeout {
            t = t.min(m);
        }
        let start = Instant::now();
        let mut domains = 0u64;
        let result = (|| -> Result<Verdict> {
            if !models.contains_key(onnx) {
                models.insert(onnx.clone(), nncert_model::load_model(&dir.join(onnx))?);
            }
            let graph = &models[onnx];
            let prop = nncert_spec::parse_file(&dir.join(vnnlib))?;
            prop.check_dims(graph.input_size(), graph.output_size())?;
            let opts = VerifyOptions {
                timeout: Duration::from_secs_f64(t),
                seed: args.seed,
                dense_path: !args.no_dense_path,
                alpha_root: !args.no_alpha_root,
                leaf_solver: if args.no_leaves {
                    None
                } else {
                    nncert_milp::leaf::leaf_solver_for(graph, &prop, args.leaves)
                },
                ..VerifyOptions::default()
            };
            match args.method {
                Method::Bab => {
                    let r = nncert_verify::verify(graph, &prop, &opts);
                    domains = r.domains;
                    Ok(r.verdict)
                }
                Method::Milp => {
                    let mopts = nncert_milp::MilpOptions {
                        timeout: opts.timeout,
                    };
                    Ok(nncert_milp::verify_milp(graph, &prop, &mopts)?
                        .result
                        .verdict)
                }
                Method::Smt => smt(graph, &prop, opts.timeout),
            }
        })();
        let word = match &result {
            Ok(v) => v.word().to_string(),
            Err(e) => {
                eprintln!("{suite}/{id}: error: {e:#}");
                "error".to_string()
            }
        };
        let time = start.elapsed().as_secs_f64();
        let verdict = score(&word, &expected);
        println!(
            "{suite:<16} {id:>4} {onnx:<42} {vnnlib:<40} {word:<8} {time:>8.2}s expected {expected:<7} {verdict:<8} {domains} sub-domains"
        );
        rows.push(Row {
            suite: suite.to_string(),
            id,
            onnx: onnx.clone(),
            vnnlib: vnnlib.clone(),
            result: word,
            time,
            expected,
            verdict,
            domains,
        });
    }
    Ok(())
}

#[cfg(feature = "smt")]
fn smt(
    graph: &nncert_model::Graph,
    prop: &nncert_spec::Property,
    timeout: Duration,
) -> Result<Verdict> {
    let opts = nncert_smt::solve::SmtOptions {
        timeout,
        ..Default::default()
    };
    Ok(nncert_smt::solve::verify_smt(graph, prop, &opts)?.0.verdict)
}

#[cfg(not(feature = "smt"))]
fn smt(_: &nncert_model::Graph, _: &nncert_spec::Property, _: Duration) -> Result<Verdict> {
    bail!("--method smt needs the `smt` feature (libz3-dev)")
}

fn summary(rows: &[Row]) {
    let mut suites: Vec<&str> = rows.iter().map(|r| r.suite.as_str()).collect();
    suites.dedup();
    println!(
        "\n| suite | instances | sat ✓ | unsat ✓ | unknown/timeout | errors | WRONG | total s | median s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in suites {
        let rs: Vec<&Row> = rows.iter().filter(|r| r.suite == s).collect();
        let count = |f: &dyn Fn(&Row) -> bool| rs.iter().filter(|r| f(r)).count();
        let mut times: Vec<f64> = rs.iter().map(|r| r.time).collect();
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        println!(
            "| {s} | {} | {} | {} | {} | {} | {} | {:.1} | {:.2} |",
            rs.len(),
            count(&|r| r.result == "sat" && r.verdict == "correct"),
            count(&|r| r.result == "unsat" && r.verdict == "correct"),
            count(&|r| r.verdict == "unsolved" && r.result != "error"),
            count(&|r| r.result == "error"),
            count(&|r| r.verdict == "WRONG"),
            times.iter().sum::<f64>(),
            median
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let suites = if args.suites.is_empty() {
        let mut v: Vec<String> = std::fs::read_dir(&args.benchmarks)
            .with_context(|| format!("{}", args.benchmarks.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("instances.csv").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    } else {
        args.suites.clone()
    };
    let mut rows = Vec::new();
    for s in &suites {
        run_suite(&args, s, &mut rows)?;
    }
    summary(&rows);
    if let Some(path) = &args.csv {
        let mut f = std::fs::File::create(path)?;
        writeln!(
            f,
            "suite,instance_id,onnx,vnnlib,result,time_s,expected,verdict,domains"
        )?;
        for r in &rows {
            writeln!(
                f,
                "{},{},{},{},{},{:.3},{},{},{}",
                r.suite, r.id, r.onnx, r.vnnlib, r.result, r.time, r.expected, r.verdict, r.domains
            )?;
        }
    }
    let wrong = rows.iter().filter(|r| r.verdict == "WRONG").count();
    if wrong > 0 {
        eprintln!("{wrong} WRONG answer(s)");
        std::process::exit(1);
    }
    Ok(())
}
