#!/usr/bin/env bash
# VNN-COMP: install_tool.sh v1 — builds nncert (release) with the machine's cargo.
set -euo pipefail
[ "${1:-v1}" = "v1" ] || { echo "expected version string v1, got $1" >&2; exit 1; }
cd "$(dirname "$0")/.."
# The default build links z3 (the SMT engine: Debian's libz3-dev) and builds HiGHS from C++ source (the MILP
# engine: cmake, g++, libclang-dev).
missing=""
for pkg in libz3-dev pkg-config cmake g++ libclang-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
cargo build --release -p nncert
