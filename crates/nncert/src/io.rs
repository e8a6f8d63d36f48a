//! File-facing commands: inspect, eval, and atomic output.

use anyhow::{Context, Result, bail};
use ndarray::Array2;
use nncert_model::Graph;
use nncert_model::eval::{Evaluator, Real};
use npyz::WriterBuilder;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so that a reader never
/// sees a half-written file and a failure leaves any previous file intact.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("{}: cannot write: {e}", path.display())
    })
}

pub fn inspect(path: &Path, print_graph: bool) -> Result<()> {
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        let info = nncert_model::onnx::inspect(path)?;
        print!("{info}");
    }
    let graph = nncert_model::load_model(path)?;
    println!("canonical IR:");
    println!(
        "  input  '{}' shape {:?} ({} values)",
        graph.input().name,
        graph.input().shape,
        graph.input_size()
    );
    println!(
        "  output '{}' shape {:?} ({} values)",
        graph.output().name,
        graph.output().shape,
        graph.output_size()
    );
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for n in graph.nodes().iter().skip(1) {
        *ops.entry(n.op.kind()).or_default() += 1;
    }
    let ops: Vec<String> = ops.iter().map(|(k, v)| format!("{k}×{v}")).collect();
    println!("  {} nodes: {}", graph.nodes().len() - 1, ops.join(", "));
    println!("  {} parameters", graph.num_parameters());
    if print_graph {
        println!("{graph}");
    }
    Ok(())
}

/// Reads a .npy array of f32 or f64 values as `[N, size]` where `size` is the model's input size.
pub fn read_inputs(path: &Path, size: usize) -> Result<Array2<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: not a valid .npy file", path.display()))?;
    let shape: Vec<u64> = npy.shape().to_vec();
    let values: Vec<f64> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>()
                .with_context(|| format!("{}: cannot read f32 data", path.display()))?
                .into_iter()
                .map(f64::from)
                .collect()
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            npy.into_vec::<f64>()
                .with_context(|| format!("{}: cannot read f64 data", path.display()))?
        }
        other => bail!(
            "{}: dtype {} is not supported (use float32 or float64)",
            path.display(),
            other.descr()
        ),
    };
    if values.is_empty() || !values.len().is_multiple_of(size) {
        bail!(
            "{}: array of shape {shape:?} ({} values) is not a whole number of model inputs of {size} values",
            path.display(),
            values.len()
        );
    }
    let n = values.len() / size;
    Ok(Array2::from_shape_vec((n, size), values).expect("size checked"))
}

fn run_eval<T: Real>(graph: &Graph, x: &Array2<f64>) -> Result<Array2<f64>> {
    let xt = x.mapv(T::from_f64);
    let y = Evaluator::<T>::new(graph).forward(xt.view())?;
    Ok(y.mapv(Real::to_f64))
}

pub fn eval(model: &Path, input: &Path, output: Option<&Path>, in_f64: bool) -> Result<()> {
    let graph = nncert_model::load_model(model)?;
    let x = read_inputs(input, graph.input_size())?;
    let y = if in_f64 {
        run_eval::<f64>(&graph, &x)?
    } else {
        run_eval::<f32>(&graph, &x)?
    };
    match output {
        Some(path) => {
            let mut buf = Vec::new();
            let shape = [y.nrows() as u64, y.ncols() as u64];
            if in_f64 {
                let mut w = npyz::WriteOptions::<f64>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(&mut buf)
                    .begin_nd()?;
                w.extend(y.iter().copied())?;
                w.finish()?;
            } else {
                let mut w = npyz::WriteOptions::<f32>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(&mut buf)
                    .begin_nd()?;
                w.extend(y.iter().map(|&v| v as f32))?;
                w.finish()?;
            }
            write_atomically(path, &buf)?;
            eprintln!("wrote {} outputs to {}", y.nrows(), path.display());
        }
        None => {
            use std::io::Write as _;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = y.rows().into_iter().try_for_each(|row| {
                let cells: Vec<String> = row.iter().map(|v| format!("{v:.7e}")).collect();
                writeln!(out, "{}", cells.join(" "))
            });
            // A reader that stops early (`| head`) is not an error: stop quietly.
            match written.and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The bound methods of `nncert bounds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BoundsMethod {
    /// Interval bound propagation.
    Ibp,
    /// Backward linear relaxation (CROWN / DeepPoly).
    Crown,
    /// α-CROWN: CROWN with optimized lower ReLU slopes.
    Alpha,
}

/// Prints the output bounds and the lower bounds of every constraint's `c·y − rhs` per case, and whether they
/// prove the property.
pub fn print_bounds(
    graph: &Graph,
    prop: &nncert_spec::Property,
    method: BoundsMethod,
    alpha_iterations: usize,
    alpha_intermediate: usize,
) -> anyhow::Result<()> {
    let mut proved = true;
    // α-CROWN takes the dense engine on feed-forward ReLU nets (α on every layer's objective there), the
    // generic one (α on the output objective) on everything else.
    let dense = nncert_bounds::dense::DenseReluNet::from_graph(graph)
        .filter(|_| method == BoundsMethod::Alpha);
    let name = match method {
        BoundsMethod::Ibp => "interval (IBP)".to_string(),
        BoundsMethod::Crown => "CROWN".to_string(),
        BoundsMethod::Alpha if dense.is_some() => {
            format!("α-CROWN ({alpha_iterations} iterations, dense engine)")
        }
        BoundsMethod::Alpha => format!(
            "α-CROWN ({alpha_iterations} iterations on the objective, {alpha_intermediate} per intermediate node)"
        ),
    };
    let print_case = |ci: usize, dim: usize, out: (&[f64], &[f64])| {
        println!("case {ci}: {dim} inputs in a box");
        for (j, (l, u)) in out.0.iter().zip(out.1).enumerate() {
            println!("  Y_{j} in [{l:.6e}, {u:.6e}]");
        }
    };
    let print_disjunct = |di: usize, margins: &[f64], refuted: bool| {
        let margins: Vec<String> = margins.iter().map(|m| format!("{m:.4e}")).collect();
        println!(
            "  disjunct {di}: lower bounds of c·y - rhs: [{}] -> {}",
            margins.join(", "),
            if refuted {
                "impossible (proved)"
            } else {
                "not excluded"
            }
        );
    };
    if let Some(net) = &dense {
        for (ci, case) in prop.cases.iter().enumerate() {
            let res = nncert_verify::incomplete::dense_case_bounds(net, case, alpha_iterations);
            print_case(ci, case.input.dim(), (&res.output.lower, &res.output.upper));
            for (di, m) in res.margins.iter().enumerate() {
                print_disjunct(di, m, res.refuted[di]);
            }
            proved &= res.refuted.iter().all(|&r| r);
        }
    } else {
        let generic = match method {
            BoundsMethod::Ibp => nncert_bounds::Method::Interval,
            BoundsMethod::Crown => nncert_bounds::Method::Crown,
            BoundsMethod::Alpha => nncert_bounds::Method::Alpha {
                iterations: alpha_iterations,
                intermediate: alpha_intermediate,
            },
        };
        let model = nncert_bounds::BoundModel::new(graph);
        let bounder = model.bounder();
        for (ci, case) in prop.cases.iter().enumerate() {
            // The bounds that decide the proof are the ones printed (on the ulp-widened box).
            let res = nncert_verify::incomplete::refute_case_detailed(
                &bounder, case, generic, None, true,
            );
            let out = &res.bounds[graph.output_id().0];
            print_case(ci, case.input.dim(), (&out.lower, &out.upper));
            // The bounds that decided the refutation, one per constraint in disjunct order.
            let mut lower = res.lower.iter();
            for (di, d) in case.output.disjuncts.iter().enumerate() {
                let margins: Vec<f64> = d
                    .constraints
                    .iter()
                    .zip(&mut lower)
                    .map(|(k, lb)| lb - k.rhs)
                    .collect();
                print_disjunct(di, &margins, res.refuted[di]);
            }
            proved &= res.refuted.iter().all(|&r| r);
        }
    }
    println!(
        "property {} by {name} bounds",
        if proved {
            "PROVED (unsat)"
        } else {
            "not proved"
        }
    );
    Ok(())
}
