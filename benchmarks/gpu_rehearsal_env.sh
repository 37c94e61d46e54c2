#!/usr/bin/env bash
# The rehearsal environment of the GPU check: a virtual environment (outside the repository) holding
# what the GPU machine's image has, at its versions where they are known (Python 3.12, torch 2.11.0,
# torchvision 0.26.0, numpy 2.5.2; the rest at constraints.txt's pins), and nothing of the project
# itself, plus the carried wheels (benchmarks/gpu_wheels.sh) installed as they are there: pip
# --no-index --no-deps --target <venv>/site, found through PYTHONPATH. Then rehearse with
#   PYTHON=<venv>/bin/python PYTHONPATH=<venv>/site bash benchmarks/gpu_check.sh --rehearse
# torch comes from PyPI, whose x86-64 build of 2.11.0 is the CUDA one (it runs on the CPU too).
#   bash benchmarks/gpu_rehearsal_env.sh [VENV]     (default ~/gpuvenv; about 5 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-$HOME/gpuvenv}
PY312=${PYTHON312:-}
if [ -z "$PY312" ]; then  # the first Python 3.12 that runs (a pyenv shim on the PATH may not)
  for c in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python; do
    if "$c" -c "import sys; sys.exit(sys.version_info[:2] != (3, 12))" 2>/dev/null; then PY312=$c; break; fi
  done
fi
[ -n "$PY312" ] || { echo "gpu_rehearsal_env: no Python 3.12 found (set PYTHON312)" >&2; exit 1; }
case "$(realpath -m "$VENV")/" in "$(pwd -P)"/*) echo "gpu_rehearsal_env: $VENV is inside the repository" >&2; exit 1;; esac
# the image's versions where its package list gives them; constraints.txt's pins for the others
IMAGE=(torch==2.11.0 torchvision==0.26.0 numpy==2.5.2 triton==3.6.0 safetensors==0.8.0)
OTHERS=()
for p in timm pandas pyarrow pillow scikit-learn scipy PyYAML tqdm matplotlib pytest; do
  OTHERS+=("$(grep -iE "^${p}==" constraints.txt)")
done
"$PY312" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "${IMAGE[@]}" "${OTHERS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
bash benchmarks/gpu_wheels.sh
rm -rf "$VENV/site"
"$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$VENV/site" .whl/*.whl
"$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as md, sys
print("python", sys.version.split()[0])
for p in ("torch", "torchvision", "numpy", "triton", "timm", "pandas", "pyarrow", "pillow", "scikit-learn", "scipy",
          "PyYAML", "tqdm", "matplotlib", "pytest"):
    print(f"{p} {md.version(p)}")
PYEOF
echo "carried (in $VENV/site): $(ls .whl)"
