//! Bounds on real benchmark networks (test and acasxu suites) against dense sampling of each property's box:
//! every sampled output lies inside the IBP, CROWN and α-CROWN bounds. Skipped, loudly, without
//! `../shared/benchmarks`.

use ndarray::Array2;
use nncert_bounds::{BoundModel, Method};
use nncert_model::eval::Evaluator;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write as _; // skips are written to stderr directly: the harness captures eprintln!
use std::path::PathBuf;

fn benchmarks() -> Option<PathBuf> {
    let dir = std::env::var_os("NNCERT_BENCHMARKS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/benchmarks")
        });
    if dir.join("acasxu/instances.csv").exists() {
        Some(dir)
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {} not found: benchmark bound tests not run",
            dir.display()
        );
        None
    }
}

#[test]
fn sampled_outputs_lie_inside_the_bounds() {
    let Some(dir) = benchmarks() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0usize;
    for suite in ["test", "acasxu"] {
        let text = std::fs::read_to_string(dir.join(suite).join("instances.csv")).unwrap();
        // Every 7th ACAS Xu instance (all properties, many networks) and every test instance.
        let step = if suite == "acasxu" { 7 } else { 1 };
        for line in text.lines().skip(1).step_by(step) {
            let f: Vec<&str> = line.split(',').collect();
            let graph = nncert_model::load_model(&dir.join(suite).join(f[1])).unwrap();
            let prop = nncert_spec::parse_file(&dir.join(suite).join(f[2])).unwrap();
            let model = BoundModel::new(&graph);
            let bounder = model.bounder();
            let ev = Evaluator::<f64>::new(&graph);
            for case in &prop.cases {
                let n = case.input.dim();
                let count = 5000;
                let x = Array2::from_shape_fn((count, n), |(i, j)| {
                    let (lo, hi) = (case.input.lower[j], case.input.upper[j]);
                    // A quarter of the points on vertices, where extremes of piecewise-linear nets often are.
                    let t: f64 = if i < count / 4 {
                        rng.random_range(0..2) as f64
                    } else {
                        rng.random()
                    };
                    (lo + t * (hi - lo)).clamp(lo, hi)
                });
                let y = ev.forward(x.view()).unwrap();
                let alpha = Method::Alpha {
                    iterations: 10,
                    intermediate: 3,
                };
                for method in [Method::Interval, Method::Crown, alpha] {
                    let b = &bounder.node_bounds(&case.input, method)[graph.output_id().0];
                    for row in y.rows() {
                        for (e, &v) in row.iter().enumerate() {
                            assert!(
                                b.lower[e] <= v && v <= b.upper[e],
                                "{suite} {line}: {method:?} output {e} = {v} outside [{}, {}]",
                                b.lower[e],
                                b.upper[e]
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("{checked} sampled outputs inside their bounds");
    assert!(checked > 1_000_000);
}
