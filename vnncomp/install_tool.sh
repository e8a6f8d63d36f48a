#!/usr/bin/env bash
# VNN-COMP: install_tool.sh v1 — builds nncert (release) with the machine's cargo.
set -euo pipefail
[ "${1:-v1}" = "v1" ] || { echo "expected version string v1, got $1" >&2; exit 1; }
cd "$(dirname "$0")/.."
cargo build --release -p nncert
