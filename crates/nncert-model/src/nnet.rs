//! Import of the `.nnet` format (the original ACAS Xu networks): fully connected ReLU layers, linear output.
//!
//! The file also records input bounds and a normalization (means and ranges). [`load`] returns the *raw*
//! network, on normalized inputs and outputs, which is how the VNN-COMP ONNX conversions and VNN-LIB
//! properties of ACAS Xu are written; [`load_with_normalization`] returns the normalization too, for users who
//! want to state properties in physical units.

use crate::error::ModelError;
use crate::ir::{Graph, GraphBuilder, Linear, Op};
use ndarray::{Array1, Array2};
use std::path::Path;

/// The input bounds and normalization stored in a `.nnet` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    pub input_min: Vec<f64>,
    pub input_max: Vec<f64>,
    /// Input means, then the output mean (one more than the input size).
    pub means: Vec<f64>,
    /// Input ranges, then the output range.
    pub ranges: Vec<f64>,
}

/// Loads the raw network of a `.nnet` file.
pub fn load(path: &Path) -> Result<Graph, ModelError> {
    load_with_normalization(path).map(|(g, _)| g)
}

/// Loads the raw network and the normalization of a `.nnet` file.
pub fn load_with_normalization(path: &Path) -> Result<(Graph, Normalization), ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses `.nnet` text; `path` is used in messages only.
pub fn parse(text: &str, path: &Path) -> Result<(Graph, Normalization), ModelError> {
    let err = |line: usize, message: String| ModelError::Nnet {
        path: path.to_owned(),
        line,
        message,
    };
    // Numeric lines (1-based line numbers kept for messages), header comments skipped.
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with("//"));
    let mut last_line = 0;
    let mut next_numbers = |what: &str| -> Result<(usize, Vec<f64>), ModelError> {
        let (no, line) = lines.next().ok_or_else(|| {
            err(
                last_line + 1,
                format!("file ends where {what} was expected"),
            )
        })?;
        last_line = no;
        let nums = line
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<f64>()
                    .map_err(|_| err(no, format!("'{t}' is not a number (reading {what})")))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        Ok((no, nums))
    };
    let as_count = |no: usize, v: f64, what: &str| -> Result<usize, ModelError> {
        if v >= 1.0 && v.fract() == 0.0 && v < 1e7 {
            Ok(v as usize)
        } else {
            Err(err(
                no,
                format!("{what} must be a positive integer, got {v}"),
            ))
        }
    };

    let (no, head) = next_numbers("the header (layers, inputs, outputs, max layer size)")?;
    if head.len() < 3 {
        return Err(err(no, "the header needs at least 3 numbers".into()));
    }
    let num_layers = as_count(no, head[0], "the number of layers")?;
    let (no, sizes) = next_numbers("the layer sizes")?;
    if sizes.len() < num_layers + 1 {
        return Err(err(
            no,
            format!(
                "expected {} layer sizes, got {}",
                num_layers + 1,
                sizes.len()
            ),
        ));
    }
    let sizes = sizes[..num_layers + 1]
        .iter()
        .map(|&s| as_count(no, s, "a layer size"))
        .collect::<Result<Vec<_>, _>>()?;
    let n_in = sizes[0];
    if as_count(no, head[1], "the input size")? != n_in
        || as_count(no, head[2], "the output size")? != sizes[num_layers]
    {
        return Err(err(no, "layer sizes disagree with the header".into()));
    }
    next_numbers("the (unused) symmetric flag")?;
    let mut vector = |what: &str, len: usize| -> Result<Vec<f64>, ModelError> {
        let (no, v) = next_numbers(what)?;
        if v.len() < len {
            return Err(err(
                no,
                format!("{what}: expected {len} values, got {}", v.len()),
            ));
        }
        Ok(v[..len].to_vec())
    };
    let norm = Normalization {
        input_min: vector("the input minimums", n_in)?,
        input_max: vector("the input maximums", n_in)?,
        means: vector("the means", n_in + 1)?,
        ranges: vector("the ranges", n_in + 1)?,
    };

    let mut b = GraphBuilder::new("input", vec![n_in]);
    let mut cur = b.input_id();
    for layer in 0..num_layers {
        let (fan_in, fan_out) = (sizes[layer], sizes[layer + 1]);
        let mut weight = Array2::<f32>::zeros((fan_out, fan_in));
        for r in 0..fan_out {
            let row = vector(&format!("row {r} of the weights of layer {layer}"), fan_in)?;
            for (c, v) in row.into_iter().enumerate() {
                weight[[r, c]] = v as f32;
            }
        }
        let mut bias = Array1::<f32>::zeros(fan_out);
        for r in 0..fan_out {
            bias[r] = vector(&format!("bias {r} of layer {layer}"), 1)?[0] as f32;
        }
        let shape_err = |source| ModelError::Shape {
            path: path.to_owned(),
            source,
        };
        cur = b
            .push(
                format!("layer{layer}"),
                Op::Linear(Linear {
                    weight,
                    bias: Some(bias),
                }),
                vec![cur],
                None,
            )
            .map_err(shape_err)?;
        if layer + 1 < num_layers {
            cur = b
                .push(format!("relu{layer}"), Op::Relu, vec![cur], None)
                .map_err(shape_err)?;
        }
    }
    Ok((b.finish(cur), norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Evaluator;
    use ndarray::arr2;

    const TINY: &str = "// a tiny net\n// second comment\n2,2,1,3,\n2,3,1,\n0,\n-1,-1,\n1,1,\n0,0,0,\n1,1,1,\n\
        1.0,-1.0,\n0.5,0.5,\n2.0,0.0,\n0.0,\n1.0,\n-1.0,\n1.0,1.0,-1.0,\n0.25,\n";

    #[test]
    fn tiny_network_evaluates_as_written() {
        let (g, norm) = parse(TINY, Path::new("tiny.nnet")).unwrap();
        assert_eq!(g.input_size(), 2);
        assert_eq!(g.output_size(), 1);
        assert_eq!(norm.means.len(), 3);
        let y = Evaluator::<f64>::new(&g)
            .forward(arr2(&[[1.0, 2.0]]).view())
            .unwrap();
        // h = relu([1-2+0, 0.5+1+1, 2-1]) = [0, 2.5, 1]; y = 0 + 2.5 - 1 + 0.25
        assert!((y[[0, 0]] - 1.75).abs() < 1e-6);
    }

    #[test]
    fn errors_name_the_line() {
        let bad = TINY.replace("0.5,0.5,", "0.5,oops,");
        let e = parse(&bad, Path::new("t.nnet")).unwrap_err().to_string();
        assert!(e.starts_with("t.nnet:11:"), "{e}");
        assert!(e.contains("'oops' is not a number"), "{e}");
        let truncated = &TINY[..TINY.len() - 6];
        let e = parse(truncated, Path::new("t.nnet"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("file ends where bias 0 of layer 1"), "{e}");
    }
}
