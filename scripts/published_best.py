#!/usr/bin/env python3
"""Published VNN-COMP results per suite, scored against the ground truth.

For each suite folder of the benchmarks directory (default ../shared/benchmarks, or the first argument),
reads tool_results.csv and truth.csv and counts per (tool, year):
  sat ok    -- answered sat on an instance whose truth is sat
  unsat ok  -- answered unsat on an instance whose truth is unsat
  wrong     -- answered sat/unsat on an instance whose truth is the other one
  no truth  -- answered sat/unsat on an instance whose truth is unknown (neither counted as solved nor wrong)
solved = sat ok + unsat ok. Runs are ranked by solved (desc), then wrong (asc), then total time of the solved
instances (asc). Prints the full per-run counts to stderr with --all, and a markdown table of the best 3 runs
per suite to stdout. Standard library only.
"""

import csv
import os
import sys


def score_suite(folder):
    truth = {}
    with open(os.path.join(folder, "truth.csv"), newline="") as f:
        for row in csv.DictReader(f):
            truth[row["instance_id"]] = row["expected"].strip().lower()
    runs = {}
    with open(os.path.join(folder, "tool_results.csv"), newline="") as f:
        for row in csv.DictReader(f):
            key = (row["tool"], row["year"])
            r = runs.setdefault(
                key, {"sat": 0, "unsat": 0, "wrong": 0, "no_truth": 0, "answered": 0, "time": 0.0}
            )
            r["answered"] += 1
            result = row["result"].strip().lower()
            if result not in ("sat", "unsat"):
                continue
            expected = truth.get(row["instance_id"], "unknown")
            if expected not in ("sat", "unsat"):
                r["no_truth"] += 1
            elif result == expected:
                r[result] += 1
                try:
                    r["time"] += float(row["time_s"])
                except ValueError:
                    pass
            else:
                r["wrong"] += 1
    ranked = sorted(
        runs.items(),
        key=lambda kv: (-(kv[1]["sat"] + kv[1]["unsat"]), kv[1]["wrong"], kv[1]["time"], kv[0]),
    )
    return len(truth), ranked


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_all = "--all" in sys.argv[1:]
    root = args[0] if args else "../shared/benchmarks"
    suites = sorted(
        d
        for d in os.listdir(root)
        if os.path.isfile(os.path.join(root, d, "tool_results.csv"))
        and os.path.isfile(os.path.join(root, d, "truth.csv"))
    )
    print("| suite | instances | rank | tool | year | sat ✓ | unsat ✓ | solved | wrong | answered without truth | time of solved s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for suite in suites:
        n, ranked = score_suite(os.path.join(root, suite))
        if show_all:
            for (tool, year), r in ranked:
                print(
                    f"{suite},{tool},{year},sat={r['sat']},unsat={r['unsat']},"
                    f"solved={r['sat'] + r['unsat']},wrong={r['wrong']},no_truth={r['no_truth']},"
                    f"rows={r['answered']}",
                    file=sys.stderr,
                )
        for i, ((tool, year), r) in enumerate(ranked[:3], 1):
            print(
                f"| {suite} | {n} | {i} | {tool} | {year} | {r['sat']} | {r['unsat']} | "
                f"{r['sat'] + r['unsat']} | {r['wrong']} | {r['no_truth']} | {r['time']:.1f} |"
            )


if __name__ == "__main__":
    main()
