#!/usr/bin/env bash
# `tgd online` end to end on one 128x128x32 study with the paper's width-64 DnCNN: wall time
# of the whole command (planning, 200 TGD-N2N iterations, denoising, writing), float32 and
# --amp bf16, for one simulated study read from two NIfTI halves (the command takes files only;
# the simulation is not timed); then how far the bf16 image is from the float32 one.
#
#   bash bench/online_study_time.sh [ITERATIONS] [THREADS]     (defaults 200 and 2)
#
# 200 iterations: where the quick reproduction's label-free stopping rule settles (its best
# validation at 170-200 of 200 in every replicate, docs/reproduction/results.json).
set -eu
IT=${1:-200}
TH=${2:-2}
TGD=${TGD:-.venv/bin/tgd}
PY=${PY:-.venv/bin/python}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# any width-64 checkpoint will do for timing: two iterations of training from scratch
"$TGD" simulate --out "$W/sim" --seed 0 --n-studies 1 --shape 64 --n-slices 4 \
    --versions v1 > /dev/null
"$TGD" train --width 64 --depth 8 --data "$W/sim/manifest_v1.json" --iterations 2 \
    --out "$W/ck64" --no-progress > /dev/null
# the study as two NIfTI halves, the clinical case (files in)
"$PY" - "$W" <<'PYEOF'
import sys

import numpy as np

from tgd.data.io import write_nifti
from tgd.repro.sim import simulate_study
from tgd.repro.studies import study_affine

st = simulate_study(500, n_slices=32, shape=128, durations=(120, 600), versions=("v2",),
                    unseen="bladder")
for name, half in zip(("h1", "h2"), st.noise2noise("v2", 120), strict=True):
    write_nifti(f"{sys.argv[1]}/{name}.nii.gz", np.asarray(half, np.float32),
                affine=study_affine(st))
PYEOF
for amp in none bf16; do
    a=""
    [ "$amp" = bf16 ] && a="--amp bf16"
    uptime
    /usr/bin/time -f "WALL %e s (amp=$amp, $IT iterations, $TH threads)" \
        "$TGD" online -c "$W/ck64" --half1 "$W/h1.nii.gz" --half2 "$W/h2.nii.gz" \
        --iterations "$IT" --threads "$TH" $a --out "$W/o-$amp" --no-progress \
        | grep -E "train_time_s|time_per_iteration"
done
"$PY" - "$W" <<'PYEOF'
import sys

import nibabel as nib
import numpy as np

a = nib.load(f"{sys.argv[1]}/o-none/denoised.nii.gz").get_fdata()
b = nib.load(f"{sys.argv[1]}/o-bf16/denoised.nii.gz").get_fdata()
print(f"bf16 vs float32 image: max |diff| {np.abs(a - b).max() / np.abs(a).max():.1e} of the "
      f"peak, RMS diff {np.sqrt(((a - b) ** 2).mean() / (a ** 2).mean()):.1e} of the RMS")
PYEOF
