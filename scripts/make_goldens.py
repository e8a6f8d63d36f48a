#!/usr/bin/env python3
"""Makes golden outputs of onnxruntime on the benchmark networks, for nncert-model's `tests/golden.rs`.

    python3 scripts/make_goldens.py [BENCHMARKS_DIR [OUT_DIR]]

BENCHMARKS_DIR defaults to `../shared/benchmarks` beside the repository, OUT_DIR to `target/goldens` in it.
For every distinct ONNX model named in `BENCHMARKS_DIR/*/instances.csv` (column `onnx`, relative to the suite
folder), the input box is read from the vnnlib file of the model's first instance (per variable, the hull of all
`(<= X_i c)` / `(>= X_i c)` bounds in the file; [-1, 1] where a variable has none), 20 float32 points are drawn
uniformly in it (fixed seed) and run one at a time through onnxruntime (CPU, graph optimizations disabled, so it
computes the model as written). Written per model, with NAME = `<suite>__<model file stem>`:

    OUT_DIR/NAME.x.npy   float32 [20, input_size]   (flattened row-major from the model's input shape)
    OUT_DIR/NAME.y.npy   float32 [20, output_size]  (the first graph output, flattened)

and `OUT_DIR/manifest.csv` with columns `suite,onnx,name` (onnx relative to the suite folder).
Needs numpy, onnx and onnxruntime (pip install numpy onnx onnxruntime). Deterministic inputs.
"""
import csv
import os
import re
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

SAMPLES = 20
SEED = 24029

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
# (<= X_i c), (>= X_i c) and the mirrored (<= c X_i), (>= c X_i).
ATOM_VAR_FIRST = re.compile(r"\(\s*(<=|>=)\s+X_(\d+)\s+" + NUM + r"\s*\)")
ATOM_NUM_FIRST = re.compile(r"\(\s*(<=|>=)\s+" + NUM + r"\s+X_(\d+)\s*\)")


def input_box(vnnlib_path, n):
    """Per-variable hull of all bounds on X_i in the file; [-1, 1] for variables without a bound."""
    with open(vnnlib_path) as f:
        text = f.read()
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)

    def bound(var, is_upper, c):
        if var >= n:
            return
        if is_upper:
            hi[var] = max(hi[var], c)
        else:
            lo[var] = min(lo[var], c)

    for op, var, c in ATOM_VAR_FIRST.findall(text):
        bound(int(var), op == "<=", float(c))
    for op, c, var in ATOM_NUM_FIRST.findall(text):
        # (<= c X_i) is X_i >= c.
        bound(int(var), op == ">=", float(c))
    missing_lo = ~np.isfinite(lo)
    missing_hi = ~np.isfinite(hi)
    both = missing_lo & missing_hi
    lo[both], hi[both] = -1.0, 1.0
    only_lo = missing_lo & ~both  # an upper bound only: [min(-1, hi), hi]
    lo[only_lo] = np.minimum(-1.0, hi[only_lo])
    only_hi = missing_hi & ~both  # a lower bound only: [lo, max(1, lo)]
    hi[only_hi] = np.maximum(1.0, lo[only_hi])
    unbounded = int((missing_lo | missing_hi).sum())
    return lo, hi, unbounded


def dims(value_info):
    """Concrete dims of a graph input/output; symbolic or unknown dims become 1."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
            for d in value_info.type.tensor_type.shape.dim]


def main():
    bench = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "benchmarks")
    out = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else os.path.join(ROOT, "target", "goldens")
    bench = os.path.normpath(bench)
    if not os.path.isdir(bench):
        sys.exit(f"make_goldens: benchmarks directory {bench} not found (pass it as the first argument)")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()

    models = []  # (suite, onnx_rel, vnnlib_rel)
    seen = set()
    for suite in sorted(os.listdir(bench)):
        inst = os.path.join(bench, suite, "instances.csv")
        if not os.path.isfile(inst):
            continue
        with open(inst, newline="") as f:
            for row in csv.DictReader(f):
                key = (suite, row["onnx"].strip())
                if key in seen:
                    continue
                seen.add(key)
                models.append((suite, row["onnx"].strip(), row["vnnlib"].strip()))

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3

    rows = []
    names = set()
    for suite, onnx_rel, vnnlib_rel in models:
        path = os.path.join(bench, suite, onnx_rel)
        stem = os.path.splitext(os.path.basename(onnx_rel))[0]
        name = f"{suite}__{stem}"
        if name in names:  # same file stem in two folders of one suite
            name = f"{suite}__" + os.path.splitext(onnx_rel)[0].replace("/", "_").replace("\\", "_")
        names.add(name)

        model = onnx.load(path)
        inits = {i.name for i in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in inits]
        if len(inputs) != 1:
            sys.exit(f"make_goldens: {path}: expected one graph input, found {[i.name for i in inputs]}")
        in_shape = dims(inputs[0])
        n_in = int(np.prod(in_shape, dtype=np.int64))

        lo, hi, unbounded = input_box(os.path.join(bench, suite, vnnlib_rel), n_in)
        rng = np.random.default_rng(SEED)
        u = rng.random((SAMPLES, n_in))
        x = (lo + u * (hi - lo)).astype(np.float32)
        # Keep float32 rounding inside the box.
        x = np.clip(x, lo.astype(np.float32), hi.astype(np.float32))

        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        out_name = sess.get_outputs()[0].name
        ys = []
        for k in range(SAMPLES):
            (y,) = sess.run([out_name], {in_name: x[k].reshape(in_shape)})
            ys.append(np.asarray(y, dtype=np.float32).reshape(-1))
        y = np.stack(ys)

        np.save(os.path.join(out, name + ".x.npy"), x)
        np.save(os.path.join(out, name + ".y.npy"), y)
        rows.append((suite, onnx_rel, name))
        note = f", {unbounded} input(s) without bounds -> [-1,1]" if unbounded else ""
        print(f"{name}: input {in_shape} ({n_in}) box from {vnnlib_rel}{note}; "
              f"output {y.shape[1]}, |y| max {np.abs(y).max():.4g}")

    with open(os.path.join(out, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["suite", "onnx", "name"])
        w.writerows(rows)
    print(f"make_goldens: {len(rows)} models, {SAMPLES} samples each, written to {out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
