"""Digest of the numbers the ``tiny`` reproduction preset gives, for refactors that must not
change results.

Runs ``tgd reproduce --preset tiny`` into a temporary folder and prints the SHA-256 of its
``results.json`` with everything that depends on the clock or the machine removed: durations
(keys ending in ``_s``), the clock column of validation curves, time to quality and the finding
built on it, the environment and the command.
Two commits with the same digest computed the same numbers, bit for bit.

    PYTHONPATH=src python bench/tiny_digest.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

VOLATILE_KEYS = {"environment", "timings", "command", "train_time_s", "wall_s", "seconds",
                 "seconds_ci", "time_to_quality"}
VOLATILE_FINDINGS = {"time"}


def strip(x):
    if isinstance(x, dict):
        return {k: ([[row[0], *row[2:]] for row in v] if k == "val_curve" else strip(v))
                for k, v in x.items() if k not in VOLATILE_KEYS and not k.endswith("_s")}
    if isinstance(x, list):
        return [strip(v) for v in x
                if not (isinstance(v, dict) and v.get("id") in VOLATILE_FINDINGS)]
    return x


def digest(results: dict) -> str:
    text = json.dumps(strip(results), sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", help="write the report here instead of a temporary folder")
    p.add_argument("--results", help="digest this results.json instead of running the preset")
    a = p.parse_args()
    if a.results:
        print(digest(json.loads(Path(a.results).read_text())))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.keep or Path(tmp) / "tiny")
        subprocess.run([sys.executable, "-m", "tgd.cli", "reproduce", "--preset", "tiny",
                        "--out", str(out), "--overwrite", "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
        print(digest(json.loads((out / "results.json").read_text())))


if __name__ == "__main__":
    main()
