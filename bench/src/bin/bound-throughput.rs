//! Bounding throughput of the dense engine: sub-domains bounded per second on one core.
//!
//! `cargo run --release -p nncert-bench --bin bound-throughput -- MODEL PROPERTY [--batch B] [--boxes N]`
//! cuts N random sub-boxes (each dimension a random 1/8 of the property's first input box, the size of a
//! mid-depth branch-and-bound domain) and bounds them in batches of B on one thread: all layer bounds
//! ([`DenseReluNet::bound_boxes`]) plus the property's objective rows by backward CROWN (or α-CROWN with
//! `--alpha N`), exactly the work of one branch-and-bound step.

use anyhow::{Context, bail};
use clap::Parser;
use nncert_bounds::dense::{DenseReluNet, ObjectiveOptions};
use nncert_spec::InputBox;
use rand::{RngExt, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    model: PathBuf,
    property: PathBuf,
    /// Sub-domains per bounding call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Sub-domains in all.
    #[arg(long, default_value_t = 2000)]
    boxes: usize,
    /// α-CROWN iterations on the objective (0: CROWN).
    #[arg(long, default_value_t = 0)]
    alpha: usize,
    /// Skip the backward refinement of unstable intermediate neurons.
    #[arg(long)]
    no_refine: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let graph = nncert_model::load_model(&args.model)?;
    let prop = nncert_spec::parse_file(&args.property)?;
    prop.check_dims(graph.input_size(), graph.output_size())
        .context("the property does not fit the model")?;
    let Some(net) = DenseReluNet::from_graph(&graph) else {
        bail!("not a feed-forward ReLU network: the dense engine does not apply");
    };
    let net = net.with_backward_refinement(!args.no_refine);
    let case = &prop.cases[0];
    let rows: Vec<Vec<f64>> = case
        .output
        .disjuncts
        .iter()
        .flat_map(|d| d.constraints.iter().map(|k| k.coeffs.clone()))
        .collect();
    let c = ndarray::Array2::from_shape_fn((rows.len(), graph.output_size()), |(r, j)| rows[r][j]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let boxes: Vec<InputBox> = (0..args.boxes)
        .map(|_| {
            let mut b = case.input.clone();
            for j in 0..b.lower.len() {
                let w = (b.upper[j] - b.lower[j]) / 8.0;
                if w > 0.0 {
                    let lo = b.lower[j] + rng.random_range(0.0..7.0) * w;
                    b.lower[j] = lo;
                    b.upper[j] = lo + w;
                }
            }
            b
        })
        .collect();
    let opts = ObjectiveOptions {
        alpha_iterations: args.alpha,
        ..Default::default()
    };
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let mut unstable = 0usize;
    let mut checksum = 0.0;
    for chunk in boxes.chunks(args.batch.max(1)) {
        let priors = vec![None; chunk.len()];
        let all = net.bound_boxes(chunk, &priors);
        for (bx, b) in chunk.iter().zip(&all) {
            unstable += b.unstable();
            let ob = net.objective_lower_with(bx, b, c.view(), opts);
            checksum += ob.lower.iter().sum::<f64>();
        }
    }
    let wall = start.elapsed().as_secs_f64();
    // CPU time of this thread, so that other processes sharing the cores do not count; wall time without it.
    let secs = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => wall,
    };
    println!(
        "{} sub-domains, batch {}, {secs:.3} s CPU ({wall:.3} s wall) on one thread: {:.0} sub-domains/s/core \
         (mean unstable ReLUs {:.1}, checksum {checksum:.6e})",
        boxes.len(),
        args.batch,
        boxes.len() as f64 / secs,
        unstable as f64 / boxes.len() as f64
    );
    Ok(())
}

/// This thread's CPU time (Linux: the first field of /proc/thread-self/schedstat, in ns).
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}
