#!/usr/bin/env bash
# `tgd online` end to end on one simulated 128x128x32 study with the paper's width-64 DnCNN:
# wall time of the whole command (simulation, planning, 200 TGD-N2N iterations, denoising,
# writing), float32 and --amp bf16, then how far the bf16 image is from the float32 one.
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
"$TGD" train --width 64 --depth 8 --seeds 0 --iterations 2 --sim-shape 64 --sim-slices 4 \
    --out "$W/ck64" --no-progress > /dev/null
for amp in none bf16; do
    a=""
    [ "$amp" = bf16 ] && a="--amp bf16"
    uptime
    /usr/bin/time -f "WALL %e s (amp=$amp, $IT iterations, $TH threads)" "$TGD" online \
        -c "$W/ck64" --simulate-study 500 --unseen bladder --iterations "$IT" --threads "$TH" \
        $a --out "$W/o-$amp" --no-progress | grep -E "train_time_s|time_per_iteration"
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
