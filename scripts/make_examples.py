#!/usr/bin/env python3
"""Makes nncert's bundled example: a small ReLU classifier and two VNN-LIB properties with known answers.

    python3 scripts/make_examples.py            # writes examples/toy/

The network (5 inputs -> 16 -> 16 -> 3, seeded random weights) is written as ONNX with a symbolic batch
dimension, as PyTorch exports do. The properties are local robustness around one point:
  robust_wide.vnnlib   eps chosen so that a sampled point changes the class: the answer is `sat`;
  robust_narrow.vnnlib eps small enough that interval arithmetic (computed here) proves it: `unsat`.
Needs numpy and onnx (pip install numpy onnx). Deterministic: the same files every run.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "toy")
rng = np.random.default_rng(24029)
sizes = [5, 16, 16, 3]
weights = [rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
biases = [rng.normal(0, 0.1, b).astype(np.float32) for b in sizes[1:]]


def forward(x):
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.astype(np.float64) + b
        if i + 1 < len(weights):
            h = np.maximum(h, 0)
    return h


def interval_margin_lower(lo, hi, label):
    """Lower bound of y_label - y_j for all j != label over the box, by interval arithmetic (f64)."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        w = w.astype(np.float64)
        c, r = (lo + hi) / 2, (hi - lo) / 2
        c, r = c @ w + b, r @ np.abs(w)
        lo, hi = c - r, c + r
        if i + 1 < len(weights):
            lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
    return min(lo[label] - hi[j] for j in range(len(lo)) if j != label)


def write_property(path, center, eps, label, comment):
    n, m = len(center), sizes[-1]
    lines = [f"; {comment}", f"; robustness of class {label} within L-inf eps={eps} around the point below", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(n)] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(m)] + [""]
    for i, v in enumerate(center):
        lines.append(f"(assert (>= X_{i} {v - eps:.9f}))")
        lines.append(f"(assert (<= X_{i} {v + eps:.9f}))")
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(m) if j != label)
    lines += ["", "; the bad case: another class scores at least as high", f"(assert (or {others}))", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    os.makedirs(OUT, exist_ok=True)
    inits, nodes, prev = [], [], "input"
    for i, (w, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"mm{i}"], name=f"matmul{i}"))
        out = f"fc{i}" if i + 1 < len(weights) else "output"
        nodes.append(helper.make_node("Add", [f"mm{i}", f"B{i}"], [out], name=f"add{i}"))
        if i + 1 < len(weights):
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"], name=f"relu{i}"))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes, "toy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits)
    model = helper.make_model(graph, producer_name="nncert scripts/make_examples.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "toy.onnx"))

    center = np.round(rng.uniform(-1, 1, sizes[0]), 3)
    label = int(np.argmax(forward(center[None])[0]))
    # Narrow: the largest eps (halving) that interval arithmetic proves.
    eps = 0.5
    while interval_margin_lower(center - eps, center + eps, label) <= 0:
        eps /= 2
    narrow = eps
    # Wide: grow eps until random sampling finds another class.
    eps, found = 0.05, None
    while found is None:
        eps *= 1.5
        xs = center + rng.uniform(-eps, eps, (20000, sizes[0]))
        ys = forward(xs)
        bad = np.nonzero(ys.argmax(1) != label)[0]
        if len(bad):
            found = xs[bad[0]]
    write_property(os.path.join(OUT, "robust_narrow.vnnlib"), center, narrow, label,
                   "expected answer: unsat (proved by interval arithmetic in scripts/make_examples.py)")
    write_property(os.path.join(OUT, "robust_wide.vnnlib"), center, float(np.ceil(eps * 1e6) / 1e6), label,
                   "expected answer: sat (scripts/make_examples.py found a counterexample by sampling)")
    print(f"toy.onnx: {sizes}, label {label} at {center.tolist()}; narrow eps {narrow}, wide eps {eps:.4f}")


if __name__ == "__main__":
    sys.exit(main())
