#!/usr/bin/env bash
# One call on a lent CUDA machine (about 9 minutes): the CUDA tests, the GPU benchmarks
# (bench/gpu/run_all.sh), the `medium` reproduction preset on the GPU, then the full suite with
# CUDA visible. Each stage has its own time limit, so one overrun cannot take the others' time.
#
#   OUT=./gpu-out bash bench/gpu/device_session.sh     (from the repository root; .whl/ holds
#                                                      wheels of packages the machine lacks)
# Writes to $OUT (at most 8 files): summary.md, env.txt, pytest-cuda.txt, pytest-all.txt,
# gpu-results.tar.gz (run_all.sh), medium.log and reproduction-medium.tar.gz.
set -u
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
START=$(date +%s)
say() { echo "[session $(( $(date +%s) - START ))s] $*"; }
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/tgd-site \
        .whl/*.whl && export PYTHONPATH="/tmp/tgd-site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

say "CUDA tests and GPU benchmarks (run_all.sh, full suite later)"
FULL_SUITE=0 timeout 290 bash bench/gpu/run_all.sh 2>&1 | grep -v "^\s*$" | tail -45

say "medium preset on the GPU"
timeout "${MEDIUM_S:-200}" python3 -m tgd.repro reproduce --preset medium \
    --out /tmp/reproduction-medium --no-progress > "$OUT/medium.log" 2>&1
say "medium: exit $? ; $(tail -n 2 "$OUT/medium.log")"
[ -d /tmp/reproduction-medium ] && tar -czf "$OUT/reproduction-medium.tar.gz" \
    -C /tmp reproduction-medium

left=$(( 555 - ($(date +%s) - START) ))
if [ "$left" -gt 40 ]; then
    say "full suite with CUDA visible ($left s left)"
    xdist=""
    python3 -c 'import xdist' 2>/dev/null && xdist="-n 12"
    timeout "$left" python3 -m pytest -v -p no:cacheprovider $xdist tests \
        > "$OUT/pytest-all.txt" 2>&1
    # -v names every test as it ends, so a run cut by its time limit still names its failures
    grep -E "(FAILED|ERROR)" "$OUT/pytest-all.txt" | head -20
    tail -n 4 "$OUT/pytest-all.txt"
fi
say "done"
