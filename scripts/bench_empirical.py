#!/usr/bin/env python3
"""Empirical-testing measurements on the bundled digits models, in one run:

  * robust accuracy for eps in {0.02, 0.05, 0.1}: nncert's ensemble vs nncert's 50-step PGD with 5 restarts (L-inf);
  * throughput (PGD steps x samples per second) of nncert, and of the same PGD written in PyTorch on CPU
    (same loss, steps, restarts, step-size schedule, same number of threads), when torch is installed;
  * corruption tables (digits MLP and CNN, cancer MLP).

    python3 scripts/bench_empirical.py [path/to/nncert]   (default: $CARGO_TARGET_DIR or target, release build)

Prints a Markdown report. Needs numpy; torch is optional (the PyTorch column is skipped without it).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EPS = [0.02, 0.05, 0.1]
STEPS, RESTARTS = 50, 5
THREADS = int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count() or 1))


def nncert_bin():
    if len(sys.argv) > 1:
        return sys.argv[1]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "release" / "nncert")


def run(args):
    t = time.perf_counter()
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{p.stderr}")
    return p.stdout, time.perf_counter() - t


def attack(model, kind):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        run([nncert_bin(), "attack", f"examples/digits/{model}.onnx", "--data", "examples/digits/x_test.npy",
             "--labels", "examples/digits/y_test.npy", "--range", "0,1", "--eps", ",".join(map(str, EPS)),
             "--attack", kind, "--steps", str(STEPS), "--restarts", str(RESTARTS), "--out", str(out)])
        return json.loads(out.read_text())


def torch_pgd(model_name):
    """The PGD of nncert (CE loss, first start at the sample, 2.5 eps/steps halved at 60 % and 85 %), in PyTorch,
    batched over all samples, without early stopping; returns robust accuracies and steps x samples per second."""
    import onnx
    import torch
    from onnx import numpy_helper

    torch.set_num_threads(THREADS)
    m = onnx.load(str(ROOT / "examples" / "digits" / f"{model_name}.onnx"))
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    layers = []
    for n in m.graph.node:
        if n.op_type == "Gemm":
            layers.append(("gemm", w[n.input[1]], w[n.input[2]]))
        elif n.op_type == "Conv":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            layers.append(("conv", w[n.input[1]], w[n.input[2]], a.get("strides", [1, 1])[0], a.get("pads", [0] * 4)[0]))
        elif n.op_type == "Relu":
            layers.append(("relu",))
        elif n.op_type == "Flatten":
            layers.append(("flatten",))

    def f(x):
        if model_name == "cnn":
            x = x.reshape(-1, 1, 8, 8)
        for L in layers:
            if L[0] == "gemm":
                x = x @ L[1].T + L[2]
            elif L[0] == "conv":
                x = torch.nn.functional.conv2d(x, L[1], L[2], stride=L[3], padding=L[4])
            elif L[0] == "relu":
                x = torch.relu(x)
            else:
                x = x.flatten(1)
        return x

    x = torch.from_numpy(np.load(ROOT / "examples/digits/x_test.npy"))
    y = torch.from_numpy(np.load(ROOT / "examples/digits/y_test.npy"))
    g = torch.Generator().manual_seed(0)
    out, steps_done, t0 = {}, 0, time.perf_counter()
    with torch.no_grad():
        clean_ok = f(x).argmax(1) == y
    for eps in EPS:
        robust = clean_ok.clone()
        for r in range(RESTARTS):
            xa = x.clone() if r == 0 else (x + eps * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0, 1)
            for t in range(STEPS + 1):
                xa.requires_grad_(True)
                z = f(xa)
                loss = torch.nn.functional.cross_entropy(z, y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, xa)
                steps_done += len(x)
                with torch.no_grad():
                    robust &= z.argmax(1) == y
                    if t == STEPS:
                        break
                    frac = t / STEPS
                    decay = 1.0 if frac < 0.6 else (0.5 if frac < 0.85 else 0.25)
                    xa = xa.detach() + 2.5 * eps / STEPS * decay * grad.sign()
                    xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
        out[eps] = float(robust.float().mean())
    return out, steps_done / (time.perf_counter() - t0)


def corrupt(model, data, extra):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "c.json"
        run([nncert_bin(), "corrupt", f"examples/{model}.onnx", "--data", f"examples/{data}/x_test.npy",
             "--labels", f"examples/{data}/y_test.npy", *extra, "--out", str(out)])
        return json.loads(out.read_text())["report"]


def main():
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    print(f"# Empirical testing measurements ({THREADS} threads, {STEPS} steps, {RESTARTS} restarts, L-inf)\n")
    print("| model | eps | clean | PGD-50x5 robust acc [95% CI] | ensemble robust acc [95% CI] |"
          + (" PyTorch PGD robust acc |" if have_torch else ""))
    print("|---|---|---|---|---|" + ("---|" if have_torch else ""))
    speed = []
    for model in ["mlp", "cnn"]:
        pgd = attack(model, "pgd")
        ens = attack(model, "ensemble")
        tp = torch_pgd(model) if have_torch else None
        for i, eps in enumerate(EPS):
            a, b = pgd["results"][i], ens["results"][i]
            assert b["robust"] <= a["robust"], f"{model} eps {eps}: ensemble weaker than PGD"
            row = (f"| {model} | {eps} | {pgd['clean_accuracy']['accuracy']:.4f} | "
                   f"{a['robust_accuracy']:.4f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] | "
                   f"{b['robust_accuracy']:.4f} [{b['ci95'][0]:.3f}, {b['ci95'][1]:.3f}] |")
            if tp:
                row += f" {tp[0][eps]:.4f} |"
            print(row)
        speed.append((model, pgd["evaluations"] / pgd["seconds"], tp[1] if tp else None, pgd["seconds"],
                      ens["seconds"]))
    print("\n| model | nncert PGD steps x samples / s | PyTorch PGD steps x samples / s | nncert PGD s | ensemble s |")
    print("|---|---|---|---|---|")
    for m, a, b, s1, s2 in speed:
        print(f"| {m} | {a:,.0f} | {f'{b:,.0f}' if b else 'n/a'} | {s1:.2f} | {s2:.2f} |")
    for title, model, data, extra in [
        ("digits MLP", "digits/mlp", "digits", ["--range", "0,1", "--kind", "image", "--image-shape", "1,8,8"]),
        ("digits CNN", "digits/cnn", "digits", ["--range", "0,1"]),
        ("cancer MLP", "cancer/mlp", "cancer", []),
    ]:
        rep = corrupt(model, data, extra)
        print(f"\n### Corruptions: {title} (clean accuracy {rep['clean']['accuracy']:.4f}, "
              f"mean corruption error {rep['mean_corruption_error']:.4f})\n")
        print("| corruption | s1 | s2 | s3 | s4 | s5 | mean abs. drop | mean rel. drop |")
        print("|---|---|---|---|---|---|---|---|")
        names = list(dict.fromkeys(r["corruption"] for r in rep["rows"]))
        for n in names:
            rows = [r for r in rep["rows"] if r["corruption"] == n]
            accs = " | ".join(f"{r['accuracy']['accuracy']:.3f}" for r in rows)
            da = sum(r["drop"]["absolute"] for r in rows) / len(rows)
            dr = sum(r["drop"]["relative"] for r in rows) / len(rows)
            print(f"| {n} | {accs} | {da:.3f} | {dr:.3f} |")


if __name__ == "__main__":
    main()
