#!/usr/bin/env bash
# The test suite and the GPU benchmarks on a CUDA machine (not yet run on one: each step has a
# timeout; worst case about 12 minutes, expected 4-6 on an H100 with pytest-xdist present).
#
#   bash bench/gpu/run_all.sh          (from the repository root; results under $OUT or ./gpu-out)
#
# Writes to $OUT: summary.md, env.txt, pytest-*.txt, and gpu-results.tar.gz holding those and:
# env.txt (python, torch, GPU), pytest-cuda.txt and pytest-all.txt (test logs),
# step_2d.json, step_2d_cl.json, step_3d.json (bench_step: TGD step plain / activation /
# parameter on CUDA), denoise_2d.json, denoise_3d.json (bench_denoise: eager vs tgd denoise vs
# compiled vs bf16 on CUDA), online.json (bench_online: TGD-N2N step time split on CUDA),
# summary.md (the table printed at the end), and a .log of every benchmark.
# Environment: PYTHON (default python3), OUT (default ./gpu-out), SKIP_TESTS=1 to skip pytest,
# FULL_SUITE=0 to run only tests/cuda, CPU_BENCH=1 to add the CPU benchmarks on that machine's
# otherwise idle cores with 2 threads (cpu_step_2d[_cl].json, cpu_denoise_2d.json,
# cpu_online[_bf16].json: about 3 more minutes).
set -u
OUT=${OUT:-./gpu-out}
PY=${PYTHON:-python3}
R="$OUT/raw"
mkdir -p "$R"
START=$(date +%s)
say() { echo "[run_all $(( $(date +%s) - START ))s] $*"; }

if "$PY" -c 'import torch' 2>/dev/null; then
    say "torch found: $("$PY" -c 'import torch; print(torch.__version__)')"
else
    say "torch not importable by $PY: running $PY -m pip install -q -e .[dev]"
    "$PY" -m pip install -q -e '.[dev]' || say "pip install failed (no network or wheel cache?)"
fi
# The project's other runtime and test dependencies, installed only when missing: from wheels in
# ./.whl if there are any (a machine without network), else with pip.
DEPS="numpy scipy safetensors nibabel pydicom tqdm matplotlib pytest hypothesis"
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in '$DEPS'.split() if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        say "missing: $missing; installing the wheels in .whl into /tmp/tgd-site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/tgd-site \
            .whl/*.whl && export PYTHONPATH="/tmp/tgd-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        say "missing: $missing; running $PY -m pip install -q $missing"
        "$PY" -m pip install -q $missing || say "pip install failed; continuing"
    fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's tgd, installed or not

{
    echo "date: $(date -u)"
    "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda",
      torch.version.cuda, "| cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(0))
EOF
    nvidia-smi --query-gpu=name,memory.total,driver_version,utilization.gpu --format=csv 2>&1
    echo "cpu cores: $(nproc)"
} | tee "$R/env.txt"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    say "CUDA is not available to torch: the CUDA tests would skip and the benchmarks fail; stop"
    exit 1
fi

if [ "${SKIP_TESTS:-0}" != 1 ]; then
    say "pytest tests/cuda (must pass, none skipped)"
    timeout 180 "$PY" -m pytest -q -rs tests/cuda -p no:cacheprovider 2>&1 \
        | tee "$R/pytest-cuda.txt" | tail -5
fi
if [ "${SKIP_TESTS:-0}" != 1 ] && [ "${FULL_SUITE:-1}" != 0 ]; then
    say "full pytest suite with CUDA visible"
    xdist=""
    "$PY" -c 'import xdist' 2>/dev/null && xdist="-n 8"  # pytest-xdist: 8 workers
    timeout 180 "$PY" -m pytest -q -x -p no:cacheprovider $xdist --ignore=tests/cuda tests 2>&1 \
        | tee "$R/pytest-all.txt" | tail -3
fi

bench() {  # name, timeout, command...
    local name=$1 t=$2
    shift 2
    say "bench $name"
    timeout "$t" "$@" > "$R/$name.log" 2>&1 || say "  $name failed or timed out (see $name.log)"
    tail -n 12 "$R/$name.log"
}
bench step_2d 45 "$PY" bench/bench_step.py --device cuda --batch 32 --size 128 --rounds 5 \
    --steps 5 --no-hooks --json "$R/step_2d.json"
bench step_2d_cl 45 "$PY" bench/bench_step.py --device cuda --batch 32 --size 128 --rounds 5 \
    --steps 5 --no-hooks --channels-last --json "$R/step_2d_cl.json"
bench step_3d 45 "$PY" bench/bench_step.py --device cuda --dims 3 --width 32 --depth 6 \
    --batch 4 --size 64 --rounds 5 --steps 5 --no-hooks --channels-last \
    --json "$R/step_3d.json"
bench denoise_2d 100 "$PY" bench/bench_denoise.py --device cuda --slices 128 --size 256 \
    --batch 16 --rounds 5 --compile --amp --json "$R/denoise_2d.json"
bench denoise_3d 100 "$PY" bench/bench_denoise.py --device cuda --dims 3 --slices 64 \
    --size 128 --rounds 5 --compile --amp --json "$R/denoise_3d.json"
bench online 45 "$PY" bench/bench_online.py --device cuda --iters 60 --channels-last \
    --json "$R/online.json"

if [ "${CPU_BENCH:-0}" = 1 ]; then
    bench cpu_step_2d 90 "$PY" bench/bench_step.py --threads 2 --rounds 5 --steps 3 \
        --no-hooks --json "$R/cpu_step_2d.json"
    bench cpu_step_2d_cl 90 "$PY" bench/bench_step.py --threads 2 --rounds 5 --steps 3 \
        --no-hooks --channels-last --json "$R/cpu_step_2d_cl.json"
    bench cpu_denoise_2d 150 "$PY" bench/bench_denoise.py --threads 2 --rounds 5 --compile \
        --amp --json "$R/cpu_denoise_2d.json"
    bench cpu_online 60 "$PY" bench/bench_online.py --threads 2 --iters 8 \
        --json "$R/cpu_online.json"
    bench cpu_online_bf16 60 "$PY" bench/bench_online.py --threads 2 --iters 8 --amp bf16 \
        --json "$R/cpu_online_bf16.json"
fi

"$PY" - "$R" <<'EOF' | tee "$R/summary.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(n):
    p = out / f"{n}.json"
    return json.loads(p.read_text()) if p.exists() else None
print("| benchmark | candidate | time | vs baseline |\n| --- | --- | --- | --- |")
def rows(names):
    """Each present result of ``names``; a missing GPU one is reported as failed."""
    for n in names:
        r = load(n)
        if r is None and not n.startswith("cpu"):
            print(f"| {n} | (failed) | | |")
        if r is not None:
            yield n, r
for n, r in rows(("step_2d", "step_2d_cl", "step_3d", "cpu_step_2d", "cpu_step_2d_cl")):
    for k, v in r["results"].items():
        print(f"| {n} ({r['device']}) | {k} | {v['median_ms']:.1f} ms/step | "
              f"{v['ratio_to_plain']:.3f}x plain |")
for n, r in rows(("denoise_2d", "denoise_3d", "cpu_denoise_2d")):
    for k, v in r["results"].items():
        print(f"| {n} ({r['device_name']}) | {k} | {v['slices_per_s']:.0f} slices/s | "
              f"{v['speedup']:.2f}x eager (max rel err {v['max_rel_error_vs_eager']:.1e}) |")
    if r.get("compile_s") is not None:
        print(f"| {n} | compile time | {r['compile_s']:.1f} s | pays back after "
              f"{r.get('compile_pays_back_after_volumes')} volumes |")
for n in ("online", "cpu_online", "cpu_online_bf16"):
    r = load(n)
    if r is None:
        continue
    split = ", ".join(f"{k} {v:.1f}" for k, v in r["per_iteration_ms"].items())
    print(f"| {n} ({r['device']}, amp {r['amp']}) | TGD-N2N step, ms: {split} | "
          f"{r['step_ms']:.1f} ms/it | |")
EOF
# $OUT keeps a few files (a device tool returns at most 8): the raw results go in one archive.
cp "$R"/summary.md "$R"/env.txt "$R"/pytest-*.txt "$OUT"/ 2>/dev/null
tar -czf "$OUT/gpu-results.tar.gz" -C "$R" . && rm -rf "$R"
say "done; $OUT holds summary.md, env.txt, pytest-*.txt and gpu-results.tar.gz (every log and JSON)"
