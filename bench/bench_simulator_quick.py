"""Time one quick-preset study (96 x 96 x 8 slices, 7 durations, v1 and v2), warm caches.

    PYTHONPATH=<src> .venv/bin/python bench/bench_simulator_quick.py

Prints the seconds of seeds 1001-1003 after a warm-up study and the load average (JSON). Run it
alternately with two ``src/`` trees (e.g. a ``git archive`` of an older commit) to compare.
"""

import json
import os
import time

import torch

from tgd.repro.sim import simulate_study

torch.set_num_threads(1)
simulate_study(1000, shape=96, n_slices=8)  # builds and caches the system matrices
ts = []
for s in (1001, 1002, 1003):
    t = time.perf_counter()
    simulate_study(s, shape=96, n_slices=8)
    ts.append(time.perf_counter() - t)
print(json.dumps({"times": ts, "load": os.getloadavg()}))
