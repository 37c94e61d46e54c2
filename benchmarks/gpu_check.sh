#!/usr/bin/env bash
# One prepared check of the GPU paths, under 10 minutes on one GPU (each part has its own time budget
# and its own process; a part that fails or runs out of time prints why and the next one runs):
#   1. ViT-L/16 224 px x 16 frames pretraining step in bf16, batch 24: clips/s, model FLOPs (target
#      encoder, context encoder, predictor, counted from the shapes as run) and utilisation,
#      without and then with torch.compile;
#   2. ViT-H/16 384 px with activation checkpointing at per-GPU batch 10: peak memory;
#   3. the loader with the GPU transform against the step's consumption of clips;
#   4. a short pretraining of the default profile's small model on the small suite, then the
#      attentive (and linear) probe on it against a random encoder (the `learn` stage), in a scratch
#      folder with tracking off, so that no result of the checkout is overwritten.
# Every part also merges its figures into one JSON (--results PATH; default $OUT/gpu_check.json where
# OUT is set, else benchmarks/gpu_check.json), with the device, versions and commit, and each
# part's status and seconds.
# Run from the repository root:
#   bash benchmarks/gpu_check.sh [--results PATH]   # on a GPU (without one it says so, exit 0)
#   bash benchmarks/gpu_check.sh --rehearse         # every part at tiny sizes on the CPU, same budgets
#   bash benchmarks/gpu_check.sh --rehearse --dry   # imports and arguments only (CI)
# It needs only what the GPU machine's image has plus the wheels of benchmarks/gpu_wheels.sh
# (README, "GPU users"); the project need not be installed.
set -u
PY=${PYTHON:-python}
REHEARSE=() DRY=() RESULTS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rehearse) REHEARSE=(--rehearse) ;;
    --dry) DRY=(--dry) ;;
    --results) RESULTS=${2:?--results needs a path}; shift ;;
    *) echo "gpu_check: unknown argument '$1' (--rehearse, --dry, --results PATH)" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#DRY[@]} -gt 0 ] && [ ${#REHEARSE[@]} -eq 0 ]; then
  echo "gpu_check: --dry goes with --rehearse" >&2; exit 2
fi
cd "$(dirname "$0")/.."
if [ -z "$RESULTS" ]; then
  if [ -n "${OUT:-}" ]; then RESULTS=$OUT/gpu_check.json; else RESULTS=benchmarks/gpu_check.json; fi
fi
RESULTS=$(realpath -m "$RESULTS")
if ! $PY -c "import torch" 2>/dev/null; then
  echo "gpu_check: '$PY' cannot import torch; activate the project's environment (or set PYTHON)" >&2
  exit 1
fi
if [ ${#REHEARSE[@]} -eq 0 ] && ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU visible to torch on $(hostname); nothing to measure (exit 0; --rehearse runs it on the CPU)"
  exit 0
fi
rm -f "$RESULTS"
mkdir -p "$(dirname "$RESULTS")"
ARGS=(--results "$RESULTS" ${REHEARSE[@]+"${REHEARSE[@]}"} ${DRY[@]+"${DRY[@]}"})
$PY benchmarks/gpu_check.py --part env "${ARGS[@]}" || exit 1
[ ${#REHEARSE[@]} -gt 0 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
T0=$SECONDS
FAILED=0

part() {  # part <name> <budget seconds> <gpu_check.py arguments...>: under a hard time limit, report failures
  local name=$1 budget=$2; shift 2
  local t=$SECONDS
  echo "== $name (budget ${budget} s)"
  timeout --kill-after=10 "$budget" $PY benchmarks/gpu_check.py "$@" "${ARGS[@]}"
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "   $name: stopped at its ${budget} s budget"
  elif [ $rc -ne 0 ]; then echo "   $name: failed (exit $rc), see the lines above"; fi
  [ $rc -eq 0 ] || FAILED=$((FAILED + 1))
  $PY benchmarks/gpu_check.py --part status --name "$name" --rc $rc --seconds $((SECONDS - t)) --results "$RESULTS"
  echo "   ($((SECONDS - T0)) s since start)"
}

part "1a ViT-L/16 step, eager" 80 --part vitl --budget 70
part "1b ViT-L/16 step, torch.compile" 170 --part vitl --compile --budget 160
part "2 ViT-H/16 384 px, activation checkpointing, batch 10" 90 --part vith384 --budget 80
part "3 loader with the GPU transform" 60 --part loader --budget 50
part "4 small model on the small suite vs a random encoder (attentive probe)" 190 --part learn --budget 180
echo "gpu_check done in $((SECONDS - T0)) s; $FAILED of 5 parts failed or ran out of time; results: $RESULTS"
[ $FAILED -eq 0 ]
