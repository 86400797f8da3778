"""Compare the verdicts of two reproduction reports (e.g. the same preset with two base seeds).

Prints a Markdown table, one row per finding: verdict and effect [95 % CI] of each report, and
whether the verdicts agree; then the counts of agreeing verdicts and of findings that reverse
between "holds" and "does not hold".

    python bench/compare_reports.py docs/reproduction/results.json \
        runs/quick-seed2/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OPPOSITE = {("holds", "does not hold"), ("does not hold", "holds")}


def _fmt(f: dict) -> str:
    if f.get("effect") is None:
        return "-"
    lo, hi = f["ci"]
    return f"{f['effect']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def compare(a: dict, b: dict) -> tuple[list[str], dict]:
    fb = {f["id"]: f for f in b["findings"]}
    rows = ["| finding | verdict A | effect A [95 % CI] | verdict B | effect B [95 % CI] | |",
            "| --- | --- | --- | --- | --- | --- |"]
    counts = {"findings": 0, "agree": 0, "reversed": 0}
    for f in a["findings"]:
        g = fb.get(f["id"])
        if g is None:
            continue
        counts["findings"] += 1
        same = f["verdict"] == g["verdict"]
        counts["agree"] += same
        counts["reversed"] += (f["verdict"], g["verdict"]) in OPPOSITE
        rows.append(f"| {f['id']} | {f['verdict']} | {_fmt(f)} | {g['verdict']} | {_fmt(g)} | "
                    f"{'' if same else 'differs'} |")
    return rows, counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="results.json of report A")
    p.add_argument("b", type=Path, help="results.json of report B")
    args = p.parse_args()
    a, b = (json.loads(x.read_text()) for x in (args.a, args.b))
    rows, c = compare(a, b)
    print("\n".join(rows))
    print(f"\n{c['agree']} of {c['findings']} verdicts agree; {c['reversed']} reverse between "
          "holds and does not hold.")
    for name, r in (("A", a), ("B", b)):
        print(f"{name}: seeds {r.get('replicate_seeds')}, commit "
              f"{r.get('environment', {}).get('git_commit')}")


if __name__ == "__main__":
    main()
