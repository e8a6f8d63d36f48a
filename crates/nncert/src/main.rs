//! `nncert`: robustness assessment of neural networks. The binary is thin: it parses arguments, calls the
//! library crates and maps results to output files and exit codes.

mod assess_cmd;
mod empirical_cmd;
mod io;
mod lipschitz_cmd;
mod milp_cmd;
mod smt_cmd;
mod stats_cmd;
mod verify_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nncert_verify::VerifyOptions;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use verify_cmd::VerifyMethod;

const EXIT_CODES: &str = "\
Exit codes:
  0  unsat: the property is proved (no counterexample exists)
  1  sat: a counterexample was found and checked
  2  unknown or timeout
  3  error (bad arguments, unreadable or unsupported model or property)
  4  assess --gate: an acceptance threshold failed (one line per failed check is printed)
  5  verify-report: the signed report was altered or the signature does not match";

/// Robustness assessment of neural networks (ISO/IEC 24029): formal verification, testing, evidence.
#[derive(Parser, Debug)]
#[command(name = "nncert", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Summarize a model: inputs, outputs, operations, parameters, and which ops nncert supports.
    Inspect {
        /// The model (.onnx or .nnet).
        model: PathBuf,
        /// Also print the canonical IR, one node per line.
        #[arg(long)]
        graph: bool,
    },
    /// Evaluate a model on inputs from a .npy file ([N, ...] or one sample) and print or save the outputs.
    Eval {
        /// The model (.onnx or .nnet).
        model: PathBuf,
        /// Inputs: a .npy array of f32 or f64, N samples of the model's input size.
        #[arg(long, short)]
        input: PathBuf,
        /// Write the outputs here as .npy ([N, output size]) instead of printing them.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Evaluate in f64 instead of f32.
        #[arg(long)]
        f64: bool,
    },
    /// Sound bounds on the outputs and on the property's constraints over each input box of a VNN-LIB property.
    ///
    /// For each case (input box) prints every output's [lower, upper] and, for every constraint `c·y <= rhs` of
    /// the bad region, a lower bound of `c·y - rhs`: a positive value proves that constraint (hence its
    /// disjunct) impossible. Bounds are sound for the real-valued network (explicit rounding-error terms).
    Bounds {
        /// The model (.onnx or .nnet).
        model: PathBuf,
        /// The property (.vnnlib).
        property: PathBuf,
        /// ibp (interval arithmetic), crown (backward linear relaxation, CROWN/DeepPoly) or alpha (α-CROWN:
        /// CROWN with the objective's lower ReLU slopes optimized by gradient ascent; on feed-forward ReLU
        /// networks by the dense engine, elsewhere on every op of the IR).
        #[arg(long, value_enum, default_value = "crown")]
        method: io::BoundsMethod,
        /// Iterations of α-CROWN's slope optimization on the property's objectives (with --method alpha).
        #[arg(long, default_value_t = 20)]
        alpha_iterations: usize,
        /// Iterations of α-CROWN per intermediate node's bounds (with --method alpha, generic engine; 0: CROWN
        /// there). Tighter on deep convolutional nets, at several times CROWN's time.
        #[arg(long, default_value_t = 5)]
        alpha_intermediate: usize,
    },
    /// Decide a VNN-LIB property: sat (counterexample found and re-checked), unsat (proved) or unknown.
    ///
    /// Runs sound linear-relaxation bounds first (answer `unsat` when they prove the property), then the
    /// falsifier (random sampling and PGD on the property margin, seeded) and branch-and-bound: input splitting
    /// when at most 16 inputs vary, ReLU splitting for wider feed-forward ReLU networks. `sat` only with a
    /// counterexample that was re-executed in f32 and f64; `unsat` only with a proof sound under floating point.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// The model (.onnx or .nnet).
        model: PathBuf,
        /// The property (.vnnlib): the assertions describe the bad case.
        property: PathBuf,
        /// Time budget in seconds.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// Write a VNN-COMP result file here (written atomically).
        #[arg(long)]
        result_file: Option<PathBuf>,
        /// Seed of every random choice; the same seed gives the same answer.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Memory the branch-and-bound queue may use, in MiB (default: a quarter of the RAM). Past it the
        /// answer is `unknown` instead of running out of memory.
        #[arg(long)]
        memory_limit_mb: Option<usize>,
        /// Method: bab (bounds + falsifier + branch-and-bound, the default), milp (HiGHS) or smt (z3).
        #[arg(long, value_enum, default_value = "bab")]
        method: VerifyMethod,
        /// With --method bab on wide ReLU networks (ReLU splitting): hand sub-domains with at most N unstable
        /// ReLUs to HiGHS. N = 0 (the default when built with HiGHS): LP leaves only (every ReLU fixed), whose
        /// refutations are certified from the LP duals with rounding-error terms, so proofs stay sound under
        /// floating point and the search is complete. N > 0: also small MILPs, whose refutations hold up to
        /// HiGHS's tolerances (the verdict and method class then say so).
        #[arg(long, value_name = "N", conflicts_with = "no_leaves")]
        leaves: Option<usize>,
        /// ReLU-splitting branch-and-bound without a leaf solver (bounds only; incomplete).
        #[arg(long)]
        no_leaves: bool,
        /// Also write the result as a JSON evidence record here (verdict, method and its class, counterexample,
        /// budget, SHA-256 of the model and property), written atomically.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Write a property's verification problem for an external solver: `--milp OUT.lp|OUT.mps` (one model per
    /// output disjunct, minimizing the margin) and/or `--smtlib OUT.smt2` (SMT-LIB 2, QF_LRA, exact rationals;
    /// one (push 1) ... (check-sat) (pop 1) block per input box).
    Export {
        /// The model (.onnx or .nnet).
        model: PathBuf,
        /// The property (.vnnlib).
        property: PathBuf,
        /// Write the MILP here (.lp or .mps; several disjuncts give OUT.case<c>.disjunct<d>.lp).
        #[arg(long)]
        milp: Option<PathBuf>,
        /// Write SMT-LIB 2 here.
        #[arg(long)]
        smtlib: Option<PathBuf>,
    },
    /// Randomized smoothing: certified L2 radii and certified accuracy on a labelled data set.
    Smooth(stats_cmd::SmoothArgs),
    /// Failure probability of a property under an input distribution (Monte Carlo or multilevel splitting).
    Estimate(stats_cmd::EstimateArgs),
    /// Adversarial attacks on a labelled dataset: robust accuracy per ε with 95% Clopper-Pearson intervals.
    ///
    /// Every counted success is an adversarial example inside the ε-ball and the valid input range, re-executed
    /// with the f32 model. Robust accuracy from attacks is an upper bound (a stronger attack can only lower it).
    /// Exit code 0 when the assessment ran, 3 on errors.
    ///
    /// Example: nncert attack examples/digits/mlp.onnx --data examples/digits/x_test.npy
    /// --labels examples/digits/y_test.npy --range 0,1 --eps 0.02,0.05,0.1 --attack ensemble --out result.json
    Attack(empirical_cmd::AttackArgs),
    /// Accuracy under common corruptions (noise, blur, brightness, contrast, pixelate, JPEG; or tabular feature
    /// noise and missing values) at five severities, with performance drop and mean corruption error.
    ///
    /// Example: nncert corrupt examples/digits/cnn.onnx --data examples/digits/x_test.npy
    /// --labels examples/digits/y_test.npy --range 0,1
    Corrupt(empirical_cmd::CorruptArgs),
    /// Run an assessment plan (plan.toml): every check through the engine registry, with resumable state;
    /// writes evidence.json, report.html and report.md to --out.
    #[command(after_help = EXIT_CODES)]
    Assess {
        /// The plan (TOML; see examples/toy/plan.toml and schemas/plan.schema.json).
        plan: PathBuf,
        /// Output folder (created); holds state.jsonl, so a re-run resumes where the last one stopped.
        #[arg(long)]
        out: PathBuf,
        /// Exit with code 4 when a property misses its acceptance threshold.
        #[arg(long)]
        gate: bool,
        /// Write JUnit XML here (one suite per property, one case per check).
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Lipschitz bounds: how far the outputs can move when the inputs move (sound upper bounds).
    ///
    /// Prints, per norm, a GLOBAL bound L with ‖f(x) − f(x')‖ ≤ L·‖x − x'‖ for all inputs (same norm on inputs
    /// and outputs): per-layer operator norms composed over the graph (exact max row abs-sums for L∞; a
    /// rigorous Gram-iteration or kernel bound for L2, with the power-iteration estimate alongside), and a
    /// bound from the interval Jacobian, whichever is smaller.
    ///
    /// With --property, for each input box: the LOCAL bound over the box (from sound bounds on the Jacobian);
    /// for each bad-region constraint c·y <= rhs, a sound lower bound m of c·f(centre) − rhs and of its value
    /// over the box (> 0: the constraint cannot hold in the box, a proof); the certified radius around the box
    /// centre (no input that close reaches the bad region); and the sensitivity table of ISO/IEC 24029-2: a
    /// bound on the change of each output when a single input attribute varies over its range in the box.
    ///
    /// Method class: incomplete; sound upper bound in real arithmetic with explicit float error margin.
    /// A certificate is a proof; a failure to certify proves nothing.
    ///
    /// Example: nncert lipschitz examples/toy/toy.onnx --property examples/toy/robust_narrow.vnnlib --json lip.json
    Lipschitz {
        /// The model (.onnx or .nnet).
        model: PathBuf,
        /// Norm on inputs and outputs: l2, linf or both.
        #[arg(long, default_value = "both")]
        norm: lipschitz_cmd::NormChoice,
        /// A VNN-LIB property: local bounds, certification, radii and sensitivity per input box.
        #[arg(long)]
        property: Option<PathBuf>,
        /// Write every number as JSON here (written atomically), with the method class.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Rows of the printed sensitivity table (inputs with the largest bounds first; --json has all).
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Pre-activation bounds over each box, which fix the derivative ranges: crown or ibp.
        #[arg(long, default_value = "crown")]
        method: nncert_bounds::Method,
    },
    /// Make an Ed25519 key pair: the secret key in --out (mode 0600), the public key in <out>.pub.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a report folder (evidence.json, report.html, report.md) into DIR/signature.json.
    Sign {
        /// The report folder written by `assess`.
        dir: PathBuf,
        /// The secret key from `keygen`.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a signed report folder: signature, file hashes and the evidence hash chain (exit 5 if altered).
    #[command(after_help = EXIT_CODES)]
    VerifyReport {
        /// The report folder.
        dir: PathBuf,
        /// The public key (<key>.pub from `keygen`).
        #[arg(long)]
        pubkey: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 3 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// Loads a model and a property and checks that their sizes agree.
fn load_pair(
    model: &std::path::Path,
    property: &std::path::Path,
) -> Result<(nncert_model::Graph, nncert_spec::Property)> {
    let graph = nncert_model::load_model(model)?;
    let prop = nncert_spec::parse_file(property)?;
    prop.check_dims(graph.input_size(), graph.output_size())
        .with_context(|| {
            format!(
                "property {} does not fit model {}",
                property.display(),
                model.display()
            )
        })?;
    Ok((graph, prop))
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Smooth(args) => stats_cmd::smooth(args),
        Command::Estimate(args) => stats_cmd::estimate(args),
        Command::Attack(args) => empirical_cmd::attack(args),
        Command::Corrupt(args) => empirical_cmd::corrupt(args),
        Command::Inspect { model, graph } => io::inspect(&model, graph).map(|_| 0),
        Command::Eval {
            model,
            input,
            output,
            f64,
        } => io::eval(&model, &input, output.as_deref(), f64).map(|_| 0),
        Command::Bounds {
            model,
            property,
            method,
            alpha_iterations,
            alpha_intermediate,
        } => {
            let (graph, prop) = load_pair(&model, &property)?;
            io::print_bounds(&graph, &prop, method, alpha_iterations, alpha_intermediate)?;
            Ok(0)
        }
        Command::Verify {
            model,
            property,
            timeout,
            result_file,
            seed,
            memory_limit_mb,
            method,
            leaves,
            no_leaves,
            json,
        } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                anyhow::bail!("--timeout must be a positive number of seconds, got {timeout}");
            }
            let started_utc = nncert_report::audit::now_utc();
            let (graph, prop) = load_pair(&model, &property)?;
            let mut opts = VerifyOptions {
                timeout: Duration::from_secs_f64(timeout),
                seed,
                ..VerifyOptions::default()
            };
            if let Some(mb) = memory_limit_mb {
                opts.memory_limit = mb.saturating_mul(1 << 20);
            }
            if leaves.is_some() && method != VerifyMethod::Bab {
                anyhow::bail!("--leaves applies to --method bab");
            }
            if method == VerifyMethod::Bab && !no_leaves {
                opts.leaf_solver = milp_cmd::leaf_solver(&graph, &prop, leaves)?;
            }
            let result = match method {
                VerifyMethod::Bab => None,
                VerifyMethod::Milp => Some(milp_cmd::verify(&graph, &prop, timeout)?),
                VerifyMethod::Smt => Some(smt_cmd::verify(
                    &graph,
                    &prop,
                    Duration::from_secs_f64(timeout),
                )?),
            };
            let result = result.unwrap_or_else(|| nncert_verify::verify(&graph, &prop, &opts));
            let text = nncert_verify::vnncomp_result(&result.verdict);
            if let Some(path) = &result_file {
                io::write_atomically(path, text.as_bytes())?;
            }
            print!("{text}");
            let class = verify_cmd::method_class(method, &graph, &prop, &opts, &result);
            verify_cmd::print_summary(&class, &result);
            if let Some(path) = &json {
                verify_cmd::write_record(
                    path,
                    &verify_cmd::RunRecord {
                        model: &model,
                        property: &property,
                        method,
                        class: &class,
                        opts: &opts,
                        result: &result,
                        started_utc,
                    },
                )?;
            }
            Ok(result.verdict.exit_code() as u8)
        }
        Command::Export {
            model,
            property,
            milp,
            smtlib,
        } => {
            if milp.is_none() && smtlib.is_none() {
                anyhow::bail!(
                    "nothing to export: give --milp OUT.lp|OUT.mps and/or --smtlib OUT.smt2"
                );
            }
            let (graph, prop) = load_pair(&model, &property)?;
            if let Some(out) = &milp {
                milp_cmd::export(&graph, &prop, out)?;
            }
            if let Some(out) = &smtlib {
                smt_cmd::export_smtlib(&graph, &prop, &model, &property, out)?;
            }
            Ok(0)
        }
        Command::Assess {
            plan,
            out,
            gate,
            junit,
        } => assess_cmd::assess(&plan, &out, gate, junit.as_deref()),
        Command::Lipschitz {
            model,
            norm,
            property,
            json,
            top,
            method,
        } => lipschitz_cmd::run(
            &model,
            norm,
            property.as_deref(),
            json.as_deref(),
            top,
            method,
        ),
        Command::Keygen { out } => assess_cmd::keygen(&out),
        Command::Sign { dir, key } => assess_cmd::sign(&dir, &key),
        Command::VerifyReport { dir, pubkey } => assess_cmd::verify_report(&dir, &pubkey),
    }
}
