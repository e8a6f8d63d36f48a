#!/usr/bin/env python3
"""Trains the bundled empirical-testing examples and exports them to ONNX with PyTorch.

    python3 scripts/make_digits.py [digits|cancer|all|goldens]

digits: scikit-learn's load_digits (8x8 grey images, values scaled from 0..16 to [0, 1]); an MLP (64-128-64-10)
        and a small CNN (two 3x3 convolutions, then a linear layer). Outputs examples/digits/{mlp,cnn}.onnx.
cancer: load_breast_cancer (30 features, standardized with the training split's mean and std); an MLP
        (30-32-16-2). Outputs examples/cancer/mlp.onnx.
Each folder also gets x_test.npy (float32, in the model's input layout: [N, 64] for the MLP; the CNN takes the same
rows reshaped to [N, 1, 8, 8]), y_test.npy (int64), meta.json (split, preprocessing, accuracies) and
ort_logits_<model>.npy (onnxruntime's outputs on x_test, the reference of nncert's evaluation test; `goldens`
remakes only these).

Needs torch, scikit-learn, numpy, onnx, onnxruntime. Deterministic (fixed seeds, one thread). CI does not run this:
the outputs are committed.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def train(model, x, y, epochs, lr, seed):
    """Adam on cross-entropy, mini-batches of 64, fixed shuffling."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    return model


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model, example, path):
    """The classic TorchScript exporter: Gemm for Linear, Conv, Relu, Flatten, as most deployed models look."""
    torch.onnx.export(
        model,
        (torch.from_numpy(example),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)))
    # The exported file must compute what the trained model computes.
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": example})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(example)).numpy()
    err = float(np.abs(got - want).max())
    assert err < 1e-4, f"{path}: onnxruntime differs from torch by {err}"
    ops = sorted({n.op_type for n in onnx.load(str(path)).graph.node})
    print(f"  {path.relative_to(ROOT)}: ops {ops}, max |ort - torch| = {err:.2e}")


def make_digits():
    torch.manual_seed(0)
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    out = ROOT / "examples" / "digits"
    out.mkdir(parents=True, exist_ok=True)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    train(mlp, xtr, ytr, epochs=60, lr=2e-3, seed=1)
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    train(cnn, xtr.reshape(-1, 1, 8, 8), ytr, epochs=60, lr=2e-3, seed=2)
    acc = {
        "mlp": accuracy(mlp, xte, yte),
        "cnn": accuracy(cnn, xte.reshape(-1, 1, 8, 8), yte),
    }
    print(f"digits: test accuracy {acc}")
    export(mlp, xte[:4], out / "mlp.onnx")
    export(cnn, xte[:4].reshape(-1, 1, 8, 8), out / "cnn.onnx")
    np.save(out / "x_test.npy", xte)
    np.save(out / "y_test.npy", yte)
    meta = {
        "source": "sklearn.datasets.load_digits",
        "split": "train_test_split(test_size=0.2, random_state=0, stratify=y)",
        "preprocessing": "x = pixel / 16 (valid input range [0, 1]); the CNN takes x as [N, 1, 8, 8]",
        "test_samples": int(len(yte)),
        "test_accuracy": acc,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def make_cancer():
    torch.manual_seed(0)
    d = load_breast_cancer()
    x = d.data.astype(np.float64)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    mean, std = xtr.mean(0), xtr.std(0)
    xtr = ((xtr - mean) / std).astype(np.float32)
    xte = ((xte - mean) / std).astype(np.float32)
    out = ROOT / "examples" / "cancer"
    out.mkdir(parents=True, exist_ok=True)
    mlp = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))
    train(mlp, xtr, ytr, epochs=100, lr=1e-3, seed=3)
    acc = accuracy(mlp, xte, yte)
    print(f"cancer: test accuracy {acc:.4f}")
    export(mlp, xte[:4], out / "mlp.onnx")
    np.save(out / "x_test.npy", xte)
    np.save(out / "y_test.npy", yte)
    meta = {
        "source": "sklearn.datasets.load_breast_cancer",
        "split": "train_test_split(test_size=0.2, random_state=0, stratify=y)",
        "preprocessing": "standardized with the training split's per-feature mean and std (below); unbounded range",
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "test_samples": int(len(yte)),
        "test_accuracy": {"mlp": acc},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def save_goldens():
    """onnxruntime's logits of every bundled model on its test set, for nncert's evaluation test (no retraining)."""
    for d, models in [("digits", ["mlp", "cnn"]), ("cancer", ["mlp"])]:
        out = ROOT / "examples" / d
        x = np.load(out / "x_test.npy")
        for m in models:
            sess = ort.InferenceSession(str(out / f"{m}.onnx"), providers=["CPUExecutionProvider"])
            xi = x.reshape(-1, 1, 8, 8) if m == "cnn" else x
            np.save(out / f"ort_logits_{m}.npy", sess.run(None, {"input": xi})[0].astype(np.float32))


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which == "goldens":
        save_goldens()
        sys.exit(0)
    if which in ("digits", "all"):
        make_digits()
    if which in ("cancer", "all"):
        make_cancer()
    save_goldens()
