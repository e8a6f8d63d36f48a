#!/usr/bin/env bash
# VNN-COMP: install_tool.sh v1 — builds nncert (release) with the machine's cargo.
set -euo pipefail
[ "${1:-v1}" = "v1" ] || { echo "expected version string v1, got $1" >&2; exit 1; }
cd "$(dirname "$0")/.."
# The default build links z3 (the SMT engine): Debian's libz3-dev.
if ! dpkg -s libz3-dev >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libz3-dev pkg-config
fi
cargo build --release -p nncert
