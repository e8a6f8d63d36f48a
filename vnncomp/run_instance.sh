#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT — writes sat (with the counterexample),
# unsat, unknown or timeout to RESULTS_FILE. nncert's exit codes 0/1/2 are verdicts, not failures; 3 is an error.
set -uo pipefail
[ "$#" -eq 6 ] || { echo "usage: $0 v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2; exit 1; }
[ "$1" = "v1" ] || { echo "expected version string v1, got $1" >&2; exit 1; }
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${NNCERT_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nncert}"
# Leave a margin for loading and writing the result inside the competition's timeout.
budget=$(awk -v t="$6" 'BEGIN { b = t - 1; if (b < 0.5) b = t * 0.8; print b }')
"$bin" verify "$3" "$4" --timeout "$budget" --result-file "$5" >/dev/null
code=$?
if [ "$code" -le 2 ]; then exit 0; fi
echo "nncert failed on $3 $4 (exit $code)" >&2
exit 1
