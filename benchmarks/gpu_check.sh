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
#      copy of the repository so that no result here is overwritten.
# Run from the repository root:  bash benchmarks/gpu_check.sh   (without a GPU it says so, exit 0)
set -u
PY=${PYTHON:-python}
if [ "${1:-}" = "--learn" ]; then  # part 4, run by the script itself under its time limit
  cd "$2" && export PYTHONPATH="$2"
  for stage in "prepare" "pretrain 0" "learn 0"; do
    if ! $PY -m pipeline $stage >"stage.log" 2>&1; then
      echo "   python -m pipeline $stage failed:"; tail -n 15 stage.log; exit 1
    fi
  done
  exec $PY - <<'PYEOF'
import json
pre, learn = (json.load(open(f"metrics/{s}/seed0.json")) for s in ("pretrain", "learn"))
print(f"   pretraining: {pre['steps']} steps in {pre['wall_s']:.0f} s, {pre['clips_per_s']:.0f} clips/s, "
      f"final loss {pre['final_loss']:.4f}")
for task, r in learn["top1"].items():
    for kind in r["pretrained"]:
        print(f"   {task} {kind} probe top-1: pretrained {r['pretrained'][kind]:.1f} vs random "
              f"{r['random'][kind]:.1f} (margin {learn['margin'][task][kind]:+.1f} points)")
PYEOF
fi
cd "$(dirname "$0")/.."
if ! $PY -c "import torch" 2>/dev/null; then
  echo "gpu_check: '$PY' cannot import torch; activate the project's environment (or set PYTHON)" >&2
  exit 1
fi
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU visible to torch on $(hostname); nothing to measure (exit 0)"
  exit 0
fi
$PY -c "import torch; print('gpu_check on', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
T0=$SECONDS

part() {  # part <name> <budget seconds> <command...>: run under a hard time limit, report failures
  local name=$1 budget=$2; shift 2
  echo "== $name (budget ${budget} s)"
  timeout --kill-after=10 "$budget" "$@"
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "   $name: stopped at its ${budget} s budget"
  elif [ $rc -ne 0 ]; then echo "   $name: failed (exit $rc), see the lines above"; fi
  echo "   ($((SECONDS - T0)) s since start)"
}

part "1a ViT-L/16 step, eager" 80 $PY benchmarks/gpu_check.py --part vitl --budget 70 --json "$tmp/vitl.json"
part "1b ViT-L/16 step, torch.compile" 170 $PY benchmarks/gpu_check.py --part vitl --compile --budget 160
part "2 ViT-H/16 384 px, activation checkpointing, batch 10" 90 $PY benchmarks/gpu_check.py --part vith384 --budget 80
part "3 loader with the GPU transform" 60 $PY benchmarks/gpu_check.py --part loader --budget 50 --json "$tmp/vitl.json"

# 4: the default profile end to end on its small suite, in a scratch copy of the tracked files
git ls-files -z | xargs -0 cp --parents -t "$tmp"
part "4 small model on the small suite vs a random encoder (attentive probe)" 190 bash "$0" --learn "$tmp"
echo "gpu_check done in $((SECONDS - T0)) s"
