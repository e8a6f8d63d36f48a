#!/usr/bin/env python3
"""Makes a small labelled point set for the bundled toy classifier (randomized smoothing examples and tests).

    python3 scripts/make_toy_points.py        # writes examples/toy/points.npy and examples/toy/labels.npy

200 points uniform in [-1, 1]^5 (float32) and, as labels, the toy network's own predictions (int64): the toy has
no ground truth, so certified accuracy on this set measures how stable its decisions are under noise.
Uses the weights of scripts/make_examples.py (same seed). Needs numpy and onnx. Deterministic.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_examples import OUT, forward  # noqa: E402  (builds the same seeded weights; writes nothing)


def main():
    rng = np.random.default_rng(24029_7)
    x = rng.uniform(-1, 1, (200, 5)).astype(np.float32)
    labels = forward(x).argmax(1).astype(np.int64)
    np.save(os.path.join(OUT, "points.npy"), x)
    np.save(os.path.join(OUT, "labels.npy"), labels)
    print(f"points.npy {x.shape}, labels.npy: class counts {np.bincount(labels, minlength=3).tolist()}")


if __name__ == "__main__":
    sys.exit(main())
