"""Start-up time of the ``tgd`` command line: wall time of whole processes (``python -m tgd.cli
ARGS``) for each source tree given, interleaved round by round, median of the rounds.

    python bench/startup.py --src src /tmp/base/src --rounds 15

Each candidate is a ``src`` folder put first on ``PYTHONPATH``; the commands timed are
``--version``, ``--help``, ``train --help`` and ``denoise --help``, plus ``import torch`` alone
(the floor a command that needs torch cannot beat).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "tgd --version": ["-m", "tgd.cli", "--version"],
    "tgd --help": ["-m", "tgd.cli", "--help"],
    "tgd train --help": ["-m", "tgd.cli", "train", "--help"],
    "tgd denoise --help": ["-m", "tgd.cli", "denoise", "--help"],
    "import torch": ["-c", "import torch"],
}


def once(src: str, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", nargs="+", required=True, help="source trees to compare")
    p.add_argument("--rounds", type=int, default=11)
    a = p.parse_args()
    times = {(s, c): [] for s in a.src for c in COMMANDS}
    for _ in range(a.rounds):
        for c, args in COMMANDS.items():
            for s in a.src:
                times[(s, c)].append(once(s, args))
    print(f"{'command':<22}" + "".join(f"{s[-28:]:>30}" for s in a.src))
    for c in COMMANDS:
        meds = [statistics.median(times[(s, c)]) for s in a.src]
        print(f"{c:<22}" + "".join(f"{m:>29.3f}s" for m in meds)
              + ("" if len(meds) < 2 else f"   ratio {meds[0] / meds[1]:.3f}"))


if __name__ == "__main__":
    main()
