#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB — nothing to prepare (no daemon, no GPU), but fail
# early, with the reason, when the model or the property cannot be loaded.
set -euo pipefail
[ "$#" -eq 4 ] || { echo "usage: $0 v1 CATEGORY ONNX VNNLIB" >&2; exit 1; }
[ "$1" = "v1" ] || { echo "expected version string v1, got $1" >&2; exit 1; }
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${NNCERT_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nncert}"
pkill -f "$bin verify" 2>/dev/null || true
"$bin" inspect "$3" >/dev/null
