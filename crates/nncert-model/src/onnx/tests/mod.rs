//! Tests of the ONNX importer on models built here, in Rust, with the prost types of [`super::proto`].
//!
//! The semantic tests compare nncert's evaluation of each imported model with onnxruntime's outputs, recorded in
//! `expected.rs` by `tests/onnxruntime_expected.py` (run the tests with `NNCERT_DUMP_ONNX=dir` to write the
//! models, then the script on that directory).

use super::proto::tensor_shape_proto::{Dimension, dimension};
use super::proto::*;
use super::*;
use crate::canon::canonicalize;
use crate::eval::Evaluator;
use crate::ir::Op;
use ndarray::Array2;

mod expected;

// ---------------------------------------------------------------------------------------------------------------
// Model construction

fn ftensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

/// The same as [`ftensor`] with the values in `raw_data` (as exporters usually write them).
fn ftensor_raw(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn itensor(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::INT64,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

/// Deterministic weights in [-1, 1).
fn vals(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn wtensor(name: &str, dims: &[i64], seed: u64) -> TensorProto {
    let n = dims.iter().product::<i64>() as usize;
    ftensor(name, dims, &vals(n, seed))
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..Default::default()
    }
}
fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: v,
        ..Default::default()
    }
}
fn attr_is(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}
fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}
fn attr_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::TENSOR,
        t: Some(t),
        ..Default::default()
    }
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_{}", outs.first().copied().unwrap_or("")),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// A tensor value info; a negative dim is symbolic ("N").
fn vinfo(name: &str, dims: &[i64], elem: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(if d < 0 {
                                dimension::Value::DimParam("N".into())
                            } else {
                                dimension::Value::DimValue(d)
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model with input `x` (float, `dims`) and output `y`.
fn model(opset: i64, dims: &[i64], nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> ModelProto {
    ModelProto {
        ir_version: if opset >= 21 {
            10
        } else if opset >= 15 {
            8
        } else {
            7
        },
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "nncert-tests".into(),
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            initializer: inits,
            input: vec![vinfo("x", dims, data_type::FLOAT)],
            output: vec![ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn load_model(m: &ModelProto) -> Result<Graph, ModelError> {
    load_bytes(&m.encode_to_vec(), Path::new("test.onnx"))
}

/// The test input: the same formula in `tests/onnxruntime_expected.py` (computed in f32).
fn test_input(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 + 11) % 101) as f32 / 50.0 - 1.0)
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The semantic cases

#[allow(clippy::vec_init_then_push)] // one push per case reads better than a 40-element literal
fn cases() -> Vec<(&'static str, ModelProto)> {
    let n = node;
    let mut v = Vec::new();
    v.push((
        "gemm_transb",
        model(
            13,
            &[1, 3],
            vec![n(
                "Gemm",
                &["x", "W", "C"],
                &["y"],
                vec![
                    attr_f("alpha", 0.5),
                    attr_f("beta", 2.0),
                    attr_i("transB", 1),
                ],
            )],
            vec![wtensor("W", &[2, 3], 1), wtensor("C", &[2], 2)],
        ),
    ));
    v.push((
        "gemm_transa_cmatrix",
        model(
            9,
            &[3, 1],
            vec![n(
                "Gemm",
                &["x", "W", "C"],
                &["y"],
                vec![attr_i("transA", 1)],
            )],
            vec![wtensor("W", &[3, 2], 3), wtensor("C", &[1, 2], 4)],
        ),
    ));
    v.push((
        "matmul_add_symbolic_batch",
        model(
            13,
            &[-1, 4],
            vec![
                n("MatMul", &["x", "W"], &["m"], vec![]),
                n("Add", &["B", "m"], &["y"], vec![]),
            ],
            vec![
                ftensor_raw("W", &[4, 3], &vals(12, 5)),
                ftensor_raw("B", &[3], &vals(3, 6)),
            ],
        ),
    ));
    v.push((
        "matmul_const_left_vector",
        model(
            14,
            &[3],
            vec![
                n("MatMul", &["W", "x"], &["m"], vec![]),
                n("Add", &["m", "B"], &["y"], vec![]),
            ],
            vec![wtensor("W", &[2, 3], 7), wtensor("B", &[2], 8)],
        ),
    ));
    v.push((
        "matmul_const_left_matrix",
        model(
            14,
            &[3, 2],
            vec![
                n("MatMul", &["W", "x"], &["m"], vec![]),
                n("Relu", &["m"], &["y"], vec![]),
            ],
            vec![wtensor("W", &[4, 3], 9)],
        ),
    ));
    v.push((
        "matmul_vector_weight",
        model(
            13,
            &[2, 3],
            vec![n("MatMul", &["x", "w"], &["y"], vec![])],
            vec![wtensor("w", &[3], 10)],
        ),
    ));
    v.push((
        "arith_constants",
        model(
            13,
            &[1, 2, 3],
            vec![
                n("Sub", &["c0", "x"], &["t1"], vec![]),
                n("Mul", &["t1", "c1"], &["t2"], vec![]),
                n("Div", &["t2", "c2"], &["t3"], vec![]),
                n("Add", &["t3", "c3"], &["t4"], vec![]),
                n("Neg", &["t4"], &["t5"], vec![]),
                n("Sub", &["t5", "c4"], &["y"], vec![]),
            ],
            vec![
                wtensor("c0", &[3], 11),
                wtensor("c1", &[2, 1], 12),
                ftensor("c2", &[], &[0.25]),
                wtensor("c3", &[1, 1, 1, 3], 13),
                wtensor("c4", &[3], 14),
            ],
        ),
    ));
    v.push((
        "variable_add_sub_activations",
        model(
            13,
            &[1, 4],
            vec![
                n("Relu", &["x"], &["a"], vec![]),
                n("Sigmoid", &["x"], &["b"], vec![]),
                n("Tanh", &["x"], &["t"], vec![]),
                n("Add", &["a", "b"], &["s"], vec![]),
                n("Sub", &["s", "t"], &["d"], vec![]),
                n("LeakyRelu", &["d"], &["y"], vec![attr_f("alpha", 0.2)]),
            ],
            vec![],
        ),
    ));
    v.push((
        "conv_same_upper_stride2",
        model(
            13,
            &[1, 2, 5, 5],
            vec![n(
                "Conv",
                &["x", "W", "B"],
                &["y"],
                vec![
                    attr_s("auto_pad", "SAME_UPPER"),
                    attr_is("strides", &[2, 2]),
                ],
            )],
            vec![wtensor("W", &[3, 2, 2, 2], 15), wtensor("B", &[3], 16)],
        ),
    ));
    v.push((
        "conv_same_lower",
        model(
            13,
            &[1, 1, 4, 5],
            vec![n(
                "Conv",
                &["x", "W"],
                &["y"],
                vec![
                    attr_s("auto_pad", "SAME_LOWER"),
                    attr_is("kernel_shape", &[2, 3]),
                ],
            )],
            vec![wtensor("W", &[2, 1, 2, 3], 17)],
        ),
    ));
    v.push((
        "conv_groups_dilations_pads",
        model(
            11,
            &[1, 4, 6, 6],
            vec![n(
                "Conv",
                &["x", "W"],
                &["y"],
                vec![
                    attr_i("group", 2),
                    attr_is("dilations", &[2, 1]),
                    attr_is("pads", &[1, 0, 2, 1]),
                    attr_is("strides", &[1, 2]),
                ],
            )],
            vec![wtensor("W", &[4, 2, 3, 3], 18)],
        ),
    ));
    v.push((
        "conv1d",
        model(
            13,
            &[1, 2, 7],
            vec![n(
                "Conv",
                &["x", "W", "B"],
                &["y"],
                vec![attr_is("pads", &[1, 1]), attr_is("strides", &[2])],
            )],
            vec![wtensor("W", &[3, 2, 3], 19), wtensor("B", &[3], 20)],
        ),
    ));
    v.push((
        "conv_transpose",
        model(
            13,
            &[1, 2, 3, 3],
            vec![n(
                "ConvTranspose",
                &["x", "W", "B"],
                &["y"],
                vec![
                    attr_is("strides", &[2, 2]),
                    attr_is("pads", &[1, 1, 1, 1]),
                    attr_is("output_padding", &[1, 1]),
                ],
            )],
            vec![wtensor("W", &[2, 3, 3, 3], 21), wtensor("B", &[3], 22)],
        ),
    ));
    v.push((
        "conv_transpose_output_shape_groups",
        model(
            13,
            &[1, 4, 3, 3],
            vec![n(
                "ConvTranspose",
                &["x", "W"],
                &["y"],
                vec![
                    attr_is("strides", &[2, 2]),
                    attr_is("output_shape", &[5, 6]),
                    attr_i("group", 2),
                ],
            )],
            vec![wtensor("W", &[4, 1, 2, 2], 23)],
        ),
    ));
    v.push((
        "conv_transpose_1d",
        model(
            13,
            &[1, 2, 4],
            vec![n(
                "ConvTranspose",
                &["x", "W"],
                &["y"],
                vec![attr_is("strides", &[3]), attr_is("output_padding", &[1])],
            )],
            vec![wtensor("W", &[2, 2, 2], 24)],
        ),
    ));
    v.push((
        "conv_batchnorm_relu",
        model(
            13,
            &[1, 2, 4, 4],
            vec![
                n(
                    "Conv",
                    &["x", "W"],
                    &["c"],
                    vec![attr_is("pads", &[1, 1, 1, 1])],
                ),
                n(
                    "BatchNormalization",
                    &["c", "g", "b", "m", "v"],
                    &["bn"],
                    vec![attr_f("epsilon", 1e-3)],
                ),
                n("Relu", &["bn"], &["y"], vec![]),
            ],
            vec![
                wtensor("W", &[3, 2, 3, 3], 25),
                wtensor("g", &[3], 26),
                wtensor("b", &[3], 27),
                wtensor("m", &[3], 28),
                ftensor("v", &[3], &[0.5, 1.5, 2.0]),
            ],
        ),
    ));
    v.push((
        "gemm_batchnorm_2d",
        model(
            9,
            &[1, 4],
            vec![
                n("Gemm", &["x", "W", "C"], &["h"], vec![attr_i("transB", 1)]),
                n(
                    "BatchNormalization",
                    &["h", "g", "b", "m", "v"],
                    &["y"],
                    vec![],
                ),
            ],
            vec![
                wtensor("W", &[3, 4], 29),
                wtensor("C", &[3], 30),
                wtensor("g", &[3], 31),
                wtensor("b", &[3], 32),
                wtensor("m", &[3], 33),
                ftensor("v", &[3], &[0.3, 1.0, 4.0]),
            ],
        ),
    ));
    v.push((
        "maxpool_ceil",
        model(
            13,
            &[1, 2, 7, 7],
            vec![n(
                "MaxPool",
                &["x"],
                &["y"],
                vec![
                    attr_is("kernel_shape", &[2, 2]),
                    attr_is("strides", &[2, 2]),
                    attr_i("ceil_mode", 1),
                ],
            )],
            vec![],
        ),
    ));
    v.push((
        "maxpool_pads_dilations",
        model(
            13,
            &[1, 1, 6, 7],
            vec![n(
                "MaxPool",
                &["x"],
                &["y"],
                vec![
                    attr_is("kernel_shape", &[3, 2]),
                    attr_is("strides", &[1, 2]),
                    attr_is("pads", &[1, 1, 1, 0]),
                    attr_is("dilations", &[2, 1]),
                ],
            )],
            vec![],
        ),
    ));
    v.push((
        "avgpool_exclude_pad",
        model(
            13,
            &[1, 2, 4, 4],
            vec![n(
                "AveragePool",
                &["x"],
                &["y"],
                vec![
                    attr_is("kernel_shape", &[3, 3]),
                    attr_is("pads", &[1, 1, 1, 1]),
                ],
            )],
            vec![],
        ),
    ));
    v.push((
        "avgpool_include_pad",
        model(
            13,
            &[1, 2, 5, 4],
            vec![n(
                "AveragePool",
                &["x"],
                &["y"],
                vec![
                    attr_is("kernel_shape", &[2, 2]),
                    attr_is("strides", &[2, 2]),
                    attr_is("pads", &[1, 1, 0, 0]),
                    attr_i("count_include_pad", 1),
                ],
            )],
            vec![],
        ),
    ));
    v.push((
        "avgpool_same_upper",
        model(
            11,
            &[1, 1, 5, 5],
            vec![n(
                "AveragePool",
                &["x"],
                &["y"],
                vec![
                    attr_is("kernel_shape", &[2, 2]),
                    attr_is("strides", &[2, 2]),
                    attr_s("auto_pad", "SAME_UPPER"),
                ],
            )],
            vec![],
        ),
    ));
    v.push((
        "pools_1d_and_global",
        model(
            13,
            &[1, 2, 9],
            vec![
                n(
                    "MaxPool",
                    &["x"],
                    &["m"],
                    vec![attr_is("kernel_shape", &[3]), attr_is("strides", &[2])],
                ),
                n(
                    "AveragePool",
                    &["m"],
                    &["a"],
                    vec![attr_is("kernel_shape", &[2])],
                ),
                n("GlobalAveragePool", &["a"], &["y"], vec![]),
            ],
            vec![],
        ),
    ));
    v.push((
        "global_average_pool",
        model(
            13,
            &[1, 3, 2, 5],
            vec![n("GlobalAveragePool", &["x"], &["y"], vec![])],
            vec![],
        ),
    ));
    v.push((
        "pad_opset11_inputs",
        model(
            11,
            &[1, 2, 3],
            vec![n("Pad", &["x", "p", "v"], &["y"], vec![])],
            vec![
                itensor("p", &[6], &[0, 0, 1, 0, 1, 2]),
                ftensor("v", &[], &[0.5]),
            ],
        ),
    ));
    v.push((
        "pad_opset7_attributes",
        model(
            7,
            &[1, 2, 3],
            vec![n(
                "Pad",
                &["x"],
                &["y"],
                vec![attr_is("pads", &[0, 1, 1, 0, 0, 1]), attr_f("value", -1.0)],
            )],
            vec![],
        ),
    ));
    v.push((
        "reshape_family_opset11",
        model(
            11,
            &[1, 2, 3, 4],
            vec![
                n("Flatten", &["x"], &["f"], vec![attr_i("axis", 2)]),
                n("Reshape", &["f", "s"], &["r"], vec![]),
                n("Unsqueeze", &["r"], &["u"], vec![attr_is("axes", &[0, 3])]),
                n("Squeeze", &["u"], &["q"], vec![attr_is("axes", &[-2])]),
                n(
                    "Transpose",
                    &["q"],
                    &["t"],
                    vec![attr_is("perm", &[0, 3, 1, 2])],
                ),
                n("Relu", &["t"], &["y"], vec![]),
            ],
            vec![itensor("s", &[3], &[0, -1, 3])],
        ),
    ));
    v.push((
        "reshape_family_opset14",
        model(
            14,
            &[1, 6, 1],
            vec![
                n("Squeeze", &["x", "a2"], &["q"], vec![]),
                n("Unsqueeze", &["q", "a1"], &["u"], vec![]),
                n("Reshape", &["u", "s"], &["r"], vec![attr_i("allowzero", 0)]),
                n("Transpose", &["r"], &["y"], vec![]),
            ],
            vec![
                itensor("a2", &[1], &[2]),
                itensor("a1", &[1], &[-1]),
                itensor("s", &[3], &[0, 3, -1]),
            ],
        ),
    ));
    v.push((
        "concat_with_constant_and_slice_opset9",
        model(
            9,
            &[1, 4, 3],
            vec![
                n("Concat", &["x", "c"], &["cat"], vec![attr_i("axis", 1)]),
                n(
                    "Slice",
                    &["cat"],
                    &["y"],
                    vec![
                        attr_is("starts", &[1, 0]),
                        attr_is("ends", &[100, -1]),
                        attr_is("axes", &[1, 2]),
                    ],
                ),
            ],
            vec![wtensor("c", &[1, 2, 3], 34)],
        ),
    ));
    v.push((
        "slice_opset13_negative_steps",
        model(
            13,
            &[1, 6, 5],
            vec![n("Slice", &["x", "st", "en", "ax", "sp"], &["y"], vec![])],
            vec![
                itensor("st", &[2], &[-1, 4]),
                itensor("en", &[2], &[i64::MIN, 0]),
                itensor("ax", &[2], &[1, -1]),
                itensor("sp", &[2], &[-2, -3]),
            ],
        ),
    ));
    v.push((
        "gather_scalar_and_matrix_indices",
        model(
            13,
            &[1, 5, 3],
            vec![
                n("Gather", &["x", "i0"], &["g1"], vec![attr_i("axis", 1)]),
                n("Gather", &["x", "i1"], &["g2"], vec![attr_i("axis", -2)]),
                n("Reshape", &["g2", "s"], &["r"], vec![]),
                n("Concat", &["g1", "r"], &["y"], vec![attr_i("axis", 1)]),
            ],
            vec![
                itensor("i0", &[], &[-1]),
                itensor("i1", &[2, 2], &[0, 4, 2, -3]),
                itensor("s", &[2], &[1, 12]),
            ],
        ),
    ));
    v.push((
        "split_opset13_input",
        model(
            13,
            &[1, 6],
            vec![
                n("Split", &["x", "sp"], &["a", "b"], vec![attr_i("axis", 1)]),
                n("Relu", &["a"], &["ra"], vec![]),
                n("Concat", &["b", "ra"], &["y"], vec![attr_i("axis", -1)]),
            ],
            vec![itensor("sp", &[2], &[2, 4])],
        ),
    ));
    v.push((
        "split_opset11_equal",
        model(
            11,
            &[1, 6],
            vec![
                n(
                    "Split",
                    &["x"],
                    &["o0", "o1", "o2"],
                    vec![attr_i("axis", 1)],
                ),
                n("Sub", &["o0", "o1"], &["d"], vec![]),
                n("Add", &["d", "o2"], &["y"], vec![]),
            ],
            vec![],
        ),
    ));
    v.push((
        "split_opset18_num_outputs",
        model(
            18,
            &[1, 7],
            vec![
                n(
                    "Split",
                    &["x"],
                    &["o0", "o1", "o2"],
                    vec![attr_i("axis", 1), attr_i("num_outputs", 3)],
                ),
                n(
                    "Concat",
                    &["o2", "o0", "o1"],
                    &["y"],
                    vec![attr_i("axis", 1)],
                ),
            ],
            vec![],
        ),
    ));
    v.push((
        "clip_opset7_attributes",
        model(
            7,
            &[1, 5],
            vec![n(
                "Clip",
                &["x"],
                &["y"],
                vec![attr_f("min", -0.5), attr_f("max", 0.3)],
            )],
            vec![],
        ),
    ));
    v.push((
        "clip_opset13_min_only",
        model(
            13,
            &[1, 5],
            vec![n("Clip", &["x", "lo", ""], &["y"], vec![])],
            vec![ftensor("lo", &[], &[-0.2])],
        ),
    ));
    v.push((
        "softmax_opset11_coerced",
        model(
            11,
            &[1, 2, 3],
            vec![n("Softmax", &["x"], &["y"], vec![attr_i("axis", 1)])],
            vec![],
        ),
    ));
    v.push((
        "softmax_opset13_axis1",
        model(
            13,
            &[1, 2, 3],
            vec![n("Softmax", &["x"], &["y"], vec![attr_i("axis", 1)])],
            vec![],
        ),
    ));
    v.push((
        "softmax_opset11_default",
        model(
            11,
            &[1, 4],
            vec![n("Softmax", &["x"], &["y"], vec![])],
            vec![],
        ),
    ));
    v.push((
        "pytorch_flatten_shape_arithmetic",
        model(
            11,
            &[-1, 2, 3, 2],
            vec![
                n("Shape", &["x"], &["s"], vec![]),
                n("Gather", &["s", "zero"], &["b"], vec![attr_i("axis", 0)]),
                n("Unsqueeze", &["b"], &["u"], vec![attr_is("axes", &[0])]),
                n(
                    "Concat",
                    &["u", "minus1"],
                    &["shape"],
                    vec![attr_i("axis", 0)],
                ),
                n("Reshape", &["x", "shape"], &["f"], vec![]),
                n("Gemm", &["f", "W", "C"], &["y"], vec![attr_i("transB", 1)]),
            ],
            vec![
                itensor("zero", &[], &[0]),
                itensor("minus1", &[1], &[-1]),
                wtensor("W", &[2, 12], 35),
                wtensor("C", &[2], 36),
            ],
        ),
    ));
    v.push((
        "identity_dropout_cast_constants",
        model(
            13,
            &[1, 4],
            vec![
                n("Identity", &["x"], &["i"], vec![]),
                n("Dropout", &["i", "ratio"], &["d", "mask"], vec![]),
                n(
                    "Cast",
                    &["d"],
                    &["c"],
                    vec![attr_i("to", data_type::FLOAT as i64)],
                ),
                n("Shape", &["c"], &["s"], vec![]),
                n(
                    "ConstantOfShape",
                    &["s"],
                    &["twos"],
                    vec![attr_t("value", ftensor("", &[1], &[2.0]))],
                ),
                n("Mul", &["c", "twos"], &["m"], vec![]),
                n("Range", &["r0", "r4", "r1"], &["r"], vec![]),
                n(
                    "Cast",
                    &["r"],
                    &["rf"],
                    vec![attr_i("to", data_type::FLOAT as i64)],
                ),
                n(
                    "Constant",
                    &[],
                    &["k"],
                    vec![attr_t("value", ftensor("", &[], &[0.1]))],
                ),
                n("Mul", &["rf", "k"], &["rk"], vec![]),
                n("Add", &["m", "rk"], &["y"], vec![]),
            ],
            vec![
                ftensor("ratio", &[], &[0.3]),
                itensor("r0", &[], &[0]),
                itensor("r4", &[], &[4]),
                itensor("r1", &[], &[1]),
            ],
        ),
    ));
    // Initializers of other element types, converted with Cast.
    let double = TensorProto {
        name: "Wd".into(),
        dims: vec![3, 2],
        data_type: data_type::DOUBLE,
        double_data: vals(6, 37).iter().map(|&v| v as f64).collect(),
        ..Default::default()
    };
    let half = TensorProto {
        name: "Bh".into(),
        dims: vec![2],
        data_type: data_type::FLOAT16,
        raw_data: vec![0x00, 0x3c, 0x00, 0xb8], // 1.0, -0.5
        ..Default::default()
    };
    let int32 = TensorProto {
        name: "Ki".into(),
        dims: vec![2],
        data_type: data_type::INT32,
        int32_data: vec![3, -2],
        ..Default::default()
    };
    v.push((
        "initializer_types",
        model(
            13,
            &[1, 3],
            vec![
                n("Cast", &["Wd"], &["W"], vec![attr_i("to", 1)]),
                n("Cast", &["Bh"], &["B"], vec![attr_i("to", 1)]),
                n("Cast", &["Ki"], &["K"], vec![attr_i("to", 1)]),
                n("MatMul", &["x", "W"], &["m"], vec![]),
                n("Add", &["m", "B"], &["a"], vec![]),
                n("Mul", &["a", "K"], &["y"], vec![]),
            ],
            vec![double, half, int32],
        ),
    ));
    v
}

#[test]
fn hand_built_models_match_onnxruntime() {
    let dump = std::env::var_os("NNCERT_DUMP_ONNX").map(std::path::PathBuf::from);
    let mut failures = Vec::new();
    for (name, m) in cases() {
        if let Some(dir) = &dump {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{name}.onnx")), m.encode_to_vec()).unwrap();
            continue;
        }
        let raw = load_model(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        let g = canonicalize(raw.clone());
        let Some(&(_, shape, want)) = expected::EXPECTED.iter().find(|e| e.0 == name) else {
            failures.push(format!(
                "{name}: no expected values (regenerate expected.rs)"
            ));
            continue;
        };
        if g.output().shape != shape {
            failures.push(format!(
                "{name}: output shape {:?}, onnxruntime {shape:?}",
                g.output().shape
            ));
            continue;
        }
        let x = test_input(g.input_size());
        let x64 =
            Array2::from_shape_vec((1, x.len()), x.iter().map(|&v| v as f64).collect()).unwrap();
        let x32 = Array2::from_shape_vec((1, x.len()), x.clone()).unwrap();
        for (which, graph) in [("imported", &raw), ("canonical", &g)] {
            let run = std::panic::catch_unwind(|| {
                (
                    Evaluator::<f64>::new(graph).forward(x64.view()).unwrap(),
                    Evaluator::<f32>::new(graph).forward(x32.view()).unwrap(),
                )
            });
            let Ok((y64, y32)) = run else {
                failures.push(format!(
                    "{name} ({which}): evaluation panicked; graph:\n{graph}"
                ));
                continue;
            };
            for (k, &w) in want.iter().enumerate() {
                let tol = 1e-4 * (1.0 + w.abs() as f64);
                let (a, b) = (y64[[0, k]], y32[[0, k]] as f64);
                if (a - w as f64).abs() > tol || (b - w as f64).abs() > tol {
                    failures.push(format!(
                        "{name} ({which}): output {k} is {a} (f64) / {b} (f32), onnxruntime {w}"
                    ));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------------
// Structure of the imported graphs

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.nodes().iter().map(|n| n.op.kind()).collect()
}

#[test]
fn gemm_and_matmul_become_linear_layers() {
    let cases = cases();
    let get = |name: &str| {
        let m = &cases.iter().find(|c| c.0 == name).unwrap().1;
        canonicalize(load_model(m).unwrap())
    };
    assert_eq!(kinds(&get("gemm_transb")), ["Input", "Linear"]);
    assert_eq!(
        kinds(&get("matmul_add_symbolic_batch")),
        ["Input", "Linear"]
    );
    assert_eq!(kinds(&get("matmul_const_left_vector")), ["Input", "Linear"]);
    assert_eq!(
        kinds(&get("conv_batchnorm_relu")),
        ["Input", "Conv", "Relu"]
    );
    assert_eq!(kinds(&get("gemm_batchnorm_2d")), ["Input", "Linear"]);
    let g = get("pytorch_flatten_shape_arithmetic");
    assert_eq!(kinds(&g), ["Input", "Reshape", "Linear"]);
    assert_eq!(g.input().shape, vec![1, 2, 3, 2]);
    assert_eq!(g.nodes()[1].shape, vec![1, 12]);
    // The raw (uncanonicalized) import names nodes after the ONNX nodes.
    let raw = load_model(&cases.iter().find(|c| c.0 == "gemm_transb").unwrap().1).unwrap();
    assert_eq!(raw.nodes()[1].name, "Gemm_y");
}

#[test]
fn raw_and_typed_initializers_load_the_same() {
    let w = vals(6, 40);
    let mk = |t: TensorProto| {
        model(
            13,
            &[1, 3],
            vec![node("MatMul", &["x", "W"], &["y"], vec![])],
            vec![t],
        )
    };
    let a = load_model(&mk(ftensor("W", &[3, 2], &w))).unwrap();
    let b = load_model(&mk(ftensor_raw("W", &[3, 2], &w))).unwrap();
    assert_eq!(a, b);
    let Op::Linear(l) = &a.nodes()[1].op else {
        panic!()
    };
    assert_eq!(l.weight.shape(), &[2, 3]);
    assert_eq!(l.weight[[1, 0]], w[1]); // weight = Wᵀ
}

#[test]
fn dead_branches_are_not_imported() {
    let m = model(
        13,
        &[1, 2],
        vec![
            node("LSTM", &["x"], &["unused"], vec![]),
            node("Relu", &["x"], &["y"], vec![]),
        ],
        vec![],
    );
    assert_eq!(kinds(&load_model(&m).unwrap()), ["Input", "Relu"]);
}

#[test]
fn nodes_out_of_order_are_imported() {
    let m = model(
        13,
        &[1, 2],
        vec![
            node("Relu", &["h"], &["y"], vec![]),
            node("Neg", &["x"], &["h"], vec![]),
        ],
        vec![],
    );
    assert_eq!(kinds(&load_model(&m).unwrap()), ["Input", "Affine", "Relu"]);
}

#[test]
fn external_data_is_read_relative_to_the_model() {
    let dir = std::env::temp_dir().join(format!("nncert-onnx-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = vals(6, 41);
    let mut bytes = vec![0u8; 8]; // offset 8
    bytes.extend(w.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("weights.bin"), &bytes).unwrap();
    let entry = |k: &str, v: &str| StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    };
    let t = TensorProto {
        name: "W".into(),
        dims: vec![3, 2],
        data_type: data_type::FLOAT,
        data_location: DATA_LOCATION_EXTERNAL,
        external_data: vec![
            entry("location", "weights.bin"),
            entry("offset", "8"),
            entry("length", "24"),
        ],
        ..Default::default()
    };
    let m = model(
        13,
        &[1, 3],
        vec![node("MatMul", &["x", "W"], &["y"], vec![])],
        vec![t.clone()],
    );
    let path = dir.join("model.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let g = load(&path);
    let mut bad = t;
    bad.external_data[0].value = "../weights.bin".into();
    let m2 = model(
        13,
        &[1, 3],
        vec![node("MatMul", &["x", "W"], &["y"], vec![])],
        vec![bad],
    );
    let e = load_bytes(&m2.encode_to_vec(), &path)
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).ok();
    let g = g.unwrap();
    let Op::Linear(l) = &g.nodes()[1].op else {
        panic!()
    };
    assert_eq!(l.weight[[0, 1]], w[2]);
    assert!(e.contains("inside the model's directory"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

fn err_of(m: &ModelProto) -> String {
    load_model(m)
        .expect_err("the model should not load")
        .to_string()
}

#[test]
fn unsupported_op_names_node_op_opset_and_the_supported_list() {
    let m = model(
        13,
        &[1, 2],
        vec![
            node("Relu", &["x"], &["h"], vec![]),
            node("LSTM", &["h"], &["y"], vec![]),
        ],
        vec![],
    );
    let e = load_model(&m).unwrap_err();
    assert!(matches!(e, ModelError::UnsupportedOp { .. }), "{e:?}");
    let s = e.to_string();
    assert!(
        s.contains(
            "test.onnx: node 'LSTM_y' uses op LSTM (opset 13), which nncert does not support"
        ),
        "{s}"
    );
    assert!(
        s.contains("Supported ops: Add, AveragePool, BatchNormalization"),
        "{s}"
    );

    // Unnamed nodes are named by their first output.
    let mut m = model(
        13,
        &[1, 2],
        vec![node("Erf", &["x"], &["y"], vec![])],
        vec![],
    );
    m.graph.as_mut().unwrap().node[0].name.clear();
    assert!(err_of(&m).contains("node 'y' uses op Erf (opset 13)"));

    // Other domains.
    let mut m = model(
        13,
        &[1, 2],
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
    );
    m.graph.as_mut().unwrap().node[0].domain = "com.microsoft".into();
    assert!(err_of(&m).contains("from domain 'com.microsoft'"));
}

#[test]
fn unsupported_attribute_values_are_named() {
    let pad = model(
        11,
        &[1, 2, 3],
        vec![node(
            "Pad",
            &["x", "p"],
            &["y"],
            vec![attr_s("mode", "reflect")],
        )],
        vec![itensor("p", &[6], &[0, 0, 1, 0, 0, 1])],
    );
    assert!(err_of(&pad).contains("uses op Pad (opset 11) with mode='reflect'"));
    let neg = model(
        11,
        &[1, 2, 3],
        vec![node("Pad", &["x", "p"], &["y"], vec![])],
        vec![itensor("p", &[6], &[0, 0, -1, 0, 0, 1])],
    );
    assert!(err_of(&neg).contains("with negative pads"));
    let conv3d = model(
        13,
        &[1, 1, 3, 3, 3],
        vec![node("Conv", &["x", "W"], &["y"], vec![])],
        vec![wtensor("W", &[1, 1, 2, 2, 2], 1)],
    );
    assert!(err_of(&conv3d).contains("Conv (opset 13) with 3 spatial dimensions"));
    let mul = model(
        13,
        &[1, 2],
        vec![node("Mul", &["x", "x"], &["y"], vec![])],
        vec![],
    );
    assert!(err_of(&mul).contains("Mul (opset 13) with two variable operands"));
    let div = model(
        13,
        &[1, 2],
        vec![node("Div", &["c", "x"], &["y"], vec![])],
        vec![wtensor("c", &[2], 1)],
    );
    assert!(err_of(&div).contains("with a variable divisor"));
    let bcast = model(
        13,
        &[1, 2],
        vec![node("Add", &["x", "c"], &["y"], vec![])],
        vec![wtensor("c", &[3, 1], 1)],
    );
    assert!(err_of(&bcast).contains("broadcasting the variable operand of shape [1, 2] to [3, 2]"));
    let gather = model(
        13,
        &[3],
        vec![node("Gather", &["c", "x"], &["y"], vec![])],
        vec![wtensor("c", &[3], 1)],
    );
    assert!(err_of(&gather).contains("Gather (opset 13)"));
    let cast = model(
        13,
        &[2],
        vec![node("Cast", &["x"], &["y"], vec![attr_i("to", 7)])],
        vec![],
    );
    assert!(err_of(&cast).contains("to INT64 on a variable"));
}

#[test]
fn invalid_models_get_clear_errors() {
    // Two real inputs.
    let mut m = model(
        13,
        &[1, 2],
        vec![node("Add", &["x", "z"], &["y"], vec![])],
        vec![],
    );
    m.graph
        .as_mut()
        .unwrap()
        .input
        .push(vinfo("z", &[1, 2], data_type::FLOAT));
    assert!(
        err_of(&m).contains("exactly one graph input"),
        "{}",
        err_of(&m)
    );
    // Two outputs.
    let mut m = model(
        13,
        &[1, 2],
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
    );
    m.graph
        .as_mut()
        .unwrap()
        .output
        .push(vinfo("x", &[1, 2], data_type::FLOAT));
    assert!(err_of(&m).contains("exactly one graph output"));
    // Integer input.
    let mut m = model(
        13,
        &[1, 2],
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
    );
    m.graph.as_mut().unwrap().input[0] = vinfo("x", &[1, 2], data_type::INT64);
    assert!(err_of(&m).contains("element type INT64"));
    // Too old an opset.
    let m = model(
        6,
        &[1, 2],
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
    );
    assert!(err_of(&m).contains("opset 6 is older"));
    // A value nobody produces.
    let m = model(
        13,
        &[1, 2],
        vec![node("Add", &["x", "nowhere"], &["y"], vec![])],
        vec![],
    );
    assert!(
        err_of(&m).contains("reads 'nowhere', but no graph input, initializer or node produces it")
    );
    // An output that does not depend on the input.
    let m = model(
        13,
        &[1, 2],
        vec![node("Identity", &["c"], &["y"], vec![])],
        vec![wtensor("c", &[2], 1)],
    );
    assert!(err_of(&m).contains("does not depend on the input"));
    // A MaxPool's Indices output.
    let m = model(
        13,
        &[1, 1, 4, 4],
        vec![
            node(
                "MaxPool",
                &["x"],
                &["p", "idx"],
                vec![attr_is("kernel_shape", &[2, 2])],
            ),
            node("Cast", &["idx"], &["y"], vec![attr_i("to", 1)]),
        ],
        vec![],
    );
    assert!(
        err_of(&m).contains("optional output of node 'MaxPool_p' (MaxPool)"),
        "{}",
        err_of(&m)
    );
    // Shape errors name the node.
    let m = model(
        13,
        &[1, 3],
        vec![node("Gemm", &["x", "W"], &["y"], vec![attr_i("transB", 1)])],
        vec![wtensor("W", &[2, 4], 1)],
    );
    let e = load_model(&m).unwrap_err();
    assert!(matches!(e, ModelError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("node 'Gemm_y' (Linear)"), "{e}");
    // Bad initializer data.
    let m = model(
        13,
        &[1, 3],
        vec![node("MatMul", &["x", "W"], &["y"], vec![])],
        vec![ftensor("W", &[3, 2], &[1.0; 5])],
    );
    assert!(err_of(&m).contains("initializer 'W': 5 values stored for a tensor of shape [3, 2]"));
    // Not protobuf.
    let e = load_bytes(b"\xff\xff\xff not onnx", Path::new("junk.onnx")).unwrap_err();
    assert!(matches!(e, ModelError::Protobuf { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("junk.onnx: not a valid ONNX model")
    );
}

#[test]
fn inspect_lists_shapes_ops_and_unsupported_ops() {
    let m = model(
        13,
        &[-1, 2],
        vec![
            node("Relu", &["x"], &["h"], vec![]),
            node("Erf", &["h"], &["e"], vec![]),
            node("Relu", &["e"], &["y"], vec![]),
        ],
        vec![wtensor("unused", &[4, 5], 1)],
    );
    let info = inspect_bytes(&m.encode_to_vec(), Path::new("m.onnx")).unwrap();
    assert_eq!(info.opset, Some(13));
    assert_eq!(info.producer_name, "nncert-tests");
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].to_string(), "x: FLOAT[N, 2]");
    assert_eq!(
        info.op_histogram,
        vec![("Erf".to_string(), 1), ("Relu".to_string(), 2)]
    );
    assert_eq!(info.unsupported_ops(), vec!["Erf".to_string()]);
    assert_eq!(info.parameters, 20);
    assert!(!info.nodes[1].supported && info.nodes[0].supported);
    let text = info.to_string();
    assert!(
        text.contains("Erf                  1  (not supported)"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Robustness

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Loads `count` deterministic mutants of `bytes` (truncations, byte flips, small-integer overwrites and
/// duplicated spans) and asserts none panics. Returns how many loaded.
pub(crate) fn mutants_never_panic(bytes: &[u8], count: usize, seed: u64) -> usize {
    let mut rng = Rng(seed);
    let mut ok = 0;
    for k in 0..count {
        let mut b = bytes.to_vec();
        match k % 4 {
            0 => b.truncate(rng.below(b.len())),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                // Varints and lengths: small values, 0, 0xff, 0x80 (continuation).
                let i = rng.below(b.len());
                b[i] = [0u8, 1, 2, 3, 0x7f, 0x80, 0xff][rng.below(7)];
            }
            _ => {
                let i = rng.below(b.len());
                let j = (i + 1 + rng.below(16)).min(b.len());
                let span = b[i..j].to_vec();
                b.splice(i..i, span);
            }
        }
        let r =
            std::panic::catch_unwind(|| load_bytes(&b, Path::new("mutant.onnx")).map(canonicalize));
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => {}
            Err(_) => panic!("mutant {k} (seed {seed}) panicked; bytes: {b:?}"),
        }
    }
    ok
}

#[test]
fn mutated_hand_built_models_never_panic() {
    // Every semantic case, mutated (NNCERT_MUTANTS per case, default 60; raise it for a longer search).
    let count = std::env::var("NNCERT_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut loaded = 0;
    for (i, (_, m)) in cases().into_iter().enumerate() {
        loaded += mutants_never_panic(&m.encode_to_vec(), count, i as u64);
    }
    assert!(
        loaded > 0,
        "some mutants (e.g. changed weights) should still load"
    );
}
