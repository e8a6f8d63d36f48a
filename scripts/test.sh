#!/usr/bin/env bash
# Runs nncert's whole test suite, setting up what the tests need first (idempotent):
#   - Python oracles (numpy, onnx, onnxruntime) for the golden outputs, installed with pip if missing;
#   - golden outputs of onnxruntime on the benchmark networks (target dir, regenerated when missing);
#   - then `cargo test --workspace --release`.
# Benchmarks are read from $NNCERT_BENCHMARKS (default ../shared/benchmarks beside the repository); without them,
# the tests that need them print SKIPPED and pass.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export NNCERT_BENCHMARKS=${NNCERT_BENCHMARKS:-$root/../shared/benchmarks}
target=${CARGO_TARGET_DIR:-$root/target}

if [ -d "$NNCERT_BENCHMARKS" ]; then
  if ! python3 -c "import numpy, onnx, onnxruntime" 2>/dev/null; then
    echo "== installing the Python test oracles (numpy, onnx, onnxruntime)"
    python3 -m pip install --quiet --disable-pip-version-check numpy onnx onnxruntime
  fi
  export NNCERT_GOLDENS=${NNCERT_GOLDENS:-$target/goldens}
  if [ ! -f "$NNCERT_GOLDENS/manifest.csv" ]; then
    echo "== making onnxruntime goldens in $NNCERT_GOLDENS"
    python3 scripts/make_goldens.py "$NNCERT_BENCHMARKS" "$NNCERT_GOLDENS"
  fi
else
  echo "SKIPPED: $NNCERT_BENCHMARKS not found: benchmark and golden tests will be skipped" >&2
fi

echo "== cargo test --workspace --release"
cargo test --workspace --release "$@"
