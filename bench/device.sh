#!/usr/bin/env bash
# The GPU figures of the study loop and the fused engine, in one run on a machine with a CUDA
# device; run by hand, never by CI. Each step has its own time limit, so one that hangs or fails
# costs its own minutes and the next still runs; the whole stays under about 8 minutes.
#
#   bash bench/device.sh              # on the GPU machine, from the repository root
#   bash bench/device.sh --rehearse   # here, on the CPU, with small sizes: checks the plumbing
#
# Steps, each writing its output to OUT (default /tmp/dynl2-device) as STEP.txt:
#   0. setup: the wheels in .whl/ (../shared/device/carry-wheels.sh prepares them where the
#      machine cannot download) installed into /tmp/site; nvidia-smi, torch and CUDA versions.
#   1. throughput: bench/throughput.py on the device: the Optuna-example baseline, dynl2
#      unfused, fused at K = 32, 128, 512 (engine % of the matmul peak), then `dynl2 run` of
#      the 512 trials with the default group size, with the GPU's busy fraction (not --batch 1:
#      minutes of one trial at a time).
#   2. compile: bench/compile_step.py at K = 128: eager, torch.compile, and on CUDA
#      mode="reduce-overhead" (CUDA graphs): compile time against step time.
#   3. loop: bench/loop.py, the study loop with an instant objective (300 trials, random and TPE,
#      SQLite, 1 worker): what the bookkeeping costs per trial next to the GPU's step time.
set -u
cd "$(dirname "$0")/.." || exit 2
rehearse=0
[ "${1:-}" = "--rehearse" ] && rehearse=1
out=${OUT:-/tmp/dynl2-device}
mkdir -p "$out"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, not an installed dynl2

if [ "$rehearse" = 1 ]; then
  device=cpu
  throughput=(--device cpu --trials 16 --epochs 2 --repeats 1 --slow-trials 2 --ks 8)
  compile=(--device cpu --k 4 --epochs 1)
  loop=(--trials 60 --epochs 2 --workers 1 --samplers random --backends sqlite)
  limits=(300 300 120)
else
  device=cuda
  throughput=(--device cuda --trials 512 --epochs 20 --repeats 2 --slow-trials 8 --ks 32,128,512
    --skip-batch-1)
  compile=(--device cuda --k 128 --epochs 10)
  loop=(--trials 300 --epochs 5 --workers 1 --samplers random,tpe --backends sqlite)
  limits=(270 150 100)
fi

step() {  # step NAME LIMIT_S COMMAND...: runs it with a time limit; its output to OUT/NAME.txt
  local name=$1 limit=$2 started rc
  shift 2
  started=$(date +%s)
  echo "== $name (at most ${limit} s): $*" | tee "$out/$name.txt"
  timeout --kill-after=10 "$limit" "$@" >>"$out/$name.txt" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - started)) s" | tee -a "$out/$name.txt"
  tail -n 25 "$out/$name.txt" | sed '1{/^== /d}'  # the header was printed above
}

{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi
  python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  python3 -c 'import optuna, sqlalchemy; print("optuna", optuna.__version__, "sqlalchemy",
sqlalchemy.__version__)'
} >"$out/setup.txt" 2>&1
cat "$out/setup.txt"
if [ "$device" = cuda ] && ! python3 -c 'import torch; assert torch.cuda.is_available()'; then
  echo "bench/device.sh: torch sees no CUDA device here; use --rehearse on a CPU" >&2
  exit 2
fi

step throughput "${limits[0]}" python3 bench/throughput.py "${throughput[@]}"
step compile "${limits[1]}" python3 bench/compile_step.py "${compile[@]}"
step loop "${limits[2]}" python3 bench/loop.py "${loop[@]}"
echo "outputs: $out"
